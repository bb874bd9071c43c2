"""Colour jitter shared by the flow and tracking augmentations and the refinement callbacks:
torchvision's brightness / contrast / saturation / hue jitter on numpy RGB arrays, every random
number drawn from the caller's generator."""
from __future__ import annotations

import math

import cv2
import numpy as np

from framework.errors import UserError


def _grey(img: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma, as PIL's 'L' conversion (what torchvision's jitter blends with)."""
    return img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114


class ColorJitter:
    """Brightness, contrast, saturation and hue jitter in random order, like torchvision's.

    Factors: brightness, contrast, saturation drawn from U[1 - s, 1 + s]; the hue shift from
    U[-hue, hue] of a full turn. Works on float RGB in 0..255, clipping after every step.
    """

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 hue: float = 0.5 / math.pi):
        for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if v < 0:
                raise UserError(f"ColorJitter: {name} must be >= 0, got {v}")
        if not 0 <= hue <= 0.5:
            raise UserError(f"ColorJitter: hue must lie in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, tuple[float, float, float, float]]:
        """(order of the four operations, (brightness, contrast, saturation, hue shift))."""
        order = rng.permutation(4)
        factors = (rng.uniform(max(0.0, 1 - self.brightness), 1 + self.brightness),
                   rng.uniform(max(0.0, 1 - self.contrast), 1 + self.contrast),
                   rng.uniform(max(0.0, 1 - self.saturation), 1 + self.saturation),
                   rng.uniform(-self.hue, self.hue))
        return order, factors

    @staticmethod
    def apply(img: np.ndarray, order, factors) -> np.ndarray:
        out = img.astype(np.float32)
        b, c, s, h = factors
        for op in order:
            if op == 0:
                out = out * b
            elif op == 1:
                out = out * c + float(_grey(out).mean()) * (1 - c)
            elif op == 2:
                out = out * s + _grey(out)[..., None] * (1 - s)
            elif h != 0:
                hsv = cv2.cvtColor(np.ascontiguousarray(out / 255.0), cv2.COLOR_RGB2HSV)
                hsv[..., 0] = np.mod(hsv[..., 0] + h * 360.0, 360.0)
                out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0
            out = np.clip(out, 0.0, 255.0)
        return out

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        order, factors = self.sample(rng)
        return self.apply(img, order, factors)


def as_dtype(img: np.ndarray, like: np.ndarray) -> np.ndarray:
    if like.dtype == np.uint8:
        return np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return img.astype(like.dtype)
