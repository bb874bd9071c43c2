"""The RAFT authors' training augmentation for optical flow, on numpy arrays.

Images are (H, W, 3) RGB, uint8 or float in 0..255 (the dtype comes back unchanged);
flows are (H, W, 2) float32 with channel 0 = u (x, right), 1 = v (y, down); ``valid`` is
(H, W). Every random number comes from the ``numpy.random.Generator`` the caller hands
in, so a caller seeding it per (seed, epoch, index) gets the same sample every time.

Geometry stays consistent with the flow: images are resized with OpenCV's bilinear
(half-pixel centres), the flow is resized the same way and multiplied by the per-axis
scale, a horizontal flip negates u and a vertical flip negates v, and the crop cuts
images and flow at the same offset.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np

from datamodules.colour_jitter import ColorJitter, as_dtype
from framework.errors import UserError


def _check_pair(img1, img2, flow, valid=None) -> None:
    for name, arr in (("image1", img1), ("image2", img2)):
        if not isinstance(arr, np.ndarray) or arr.ndim != 3 or arr.shape[2] != 3:
            raise UserError(f"flow augmentation: {name} must be a numpy array (H, W, 3), got "
                            f"{getattr(arr, 'shape', type(arr).__name__)}")
    if not isinstance(flow, np.ndarray) or flow.ndim != 3 or flow.shape[2] != 2:
        raise UserError(f"flow augmentation: flow must be a numpy array (H, W, 2), got "
                        f"{getattr(flow, 'shape', type(flow).__name__)}")
    if img1.shape != img2.shape or img1.shape[:2] != flow.shape[:2]:
        raise UserError(f"flow augmentation: image1 {img1.shape}, image2 {img2.shape} and flow {flow.shape} "
                        f"differ in size")
    if valid is not None and np.shape(valid) != flow.shape[:2]:
        raise UserError(f"flow augmentation: valid {np.shape(valid)} does not match flow {flow.shape}")


def _crop_size(crop_size) -> tuple[int, int]:
    try:
        h, w = (int(c) for c in crop_size)
    except (TypeError, ValueError):
        raise UserError(f"flow augmentation: crop_size must be (height, width), got {crop_size!r}") from None
    if h <= 0 or w <= 0:
        raise UserError(f"flow augmentation: crop_size must be positive, got {crop_size!r}")
    return h, w


class FlowAugmentor:
    """Dense-flow augmentation (FlyingChairs, FlyingThings3D, Sintel, synthetic data).

    Photometric: colour jitter, different on the two frames with probability
    ``asymmetric_color_aug_prob`` (else one draw for both); with ``eraser_aug_prob`` 1-2
    boxes of side in ``eraser_bounds`` px (upper bound exclusive) in frame 2 filled with its
    mean colour (lower the bounds for tiny frames). Spatial: scale 2^U(min_scale, max_scale),
    each axis stretched by 2^U(-max_stretch, max_stretch) with ``stretch_prob``, applied with
    ``spatial_aug_prob`` and never below what the crop needs (crop + 8 px); flips; random crop.
    """

    def __init__(self, crop_size: Sequence[int], min_scale: float = -0.2, max_scale: float = 0.5,
                 do_flip: bool = True, photometric: bool = True, brightness: float = 0.4,
                 contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.5 / math.pi,
                 asymmetric_color_aug_prob: float = 0.2, eraser_aug_prob: float = 0.5,
                 eraser_bounds: Sequence[int] = (50, 100), spatial_aug_prob: float = 0.8,
                 stretch_prob: float = 0.8, max_stretch: float = 0.2, h_flip_prob: float = 0.5,
                 v_flip_prob: float = 0.1):
        self.crop_size = _crop_size(crop_size)
        if min_scale > max_scale:
            raise UserError(f"flow augmentation: min_scale {min_scale} exceeds max_scale {max_scale}")
        lo, hi = (int(b) for b in eraser_bounds)
        if not 0 < lo < hi:
            raise UserError(f"flow augmentation: eraser_bounds must be (low, high) with 0 < low < high, "
                            f"got {tuple(eraser_bounds)}")
        self.min_scale, self.max_scale, self.do_flip = float(min_scale), float(max_scale), bool(do_flip)
        self.photometric = bool(photometric)
        self.jitter = ColorJitter(brightness, contrast, saturation, hue)
        self.asymmetric_color_aug_prob = asymmetric_color_aug_prob
        self.eraser_aug_prob, self.eraser_bounds = eraser_aug_prob, (lo, hi)
        self.spatial_aug_prob, self.stretch_prob, self.max_stretch = spatial_aug_prob, stretch_prob, max_stretch
        self.h_flip_prob, self.v_flip_prob = h_flip_prob, v_flip_prob

    # photometric -------------------------------------------------------------------------------
    def color_transform(self, img1, img2, rng: np.random.Generator, asymmetric: bool = True):
        if asymmetric and rng.random() < self.asymmetric_color_aug_prob:
            return self.jitter(img1, rng), self.jitter(img2, rng)
        order, factors = self.jitter.sample(rng)
        # one jitter over both frames stacked: the contrast mean is shared, as the authors do
        both = self.jitter.apply(np.concatenate((img1, img2), axis=0), order, factors)
        return both[: img1.shape[0]], both[img1.shape[0]:]

    def eraser_transform(self, img1, img2, rng: np.random.Generator):
        h, w = img1.shape[:2]
        if rng.random() < self.eraser_aug_prob:
            img2 = img2.astype(np.float32).copy()
            mean_colour = img2.reshape(-1, 3).mean(axis=0)
            for _ in range(int(rng.integers(1, 3))):
                x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
                dx, dy = (int(rng.integers(*self.eraser_bounds)) for _ in range(2))
                img2[y0:y0 + dy, x0:x0 + dx] = mean_colour
        return img1, img2

    def photometric_transform(self, img1, img2, rng, asymmetric: bool = True):
        if not self.photometric:
            return img1.astype(np.float32), img2.astype(np.float32)
        img1, img2 = self.color_transform(img1, img2, rng, asymmetric)
        return self.eraser_transform(img1, img2, rng)

    # spatial -----------------------------------------------------------------------------------
    def _fit_scale(self, h: int, w: int) -> float:
        """The smallest scale at which the frame still holds the crop with 8 px to spare."""
        ch, cw = self.crop_size
        return max((ch + 8) / h, (cw + 8) / w)

    def _crop(self, arrays, rng, margin_y: int = 0, margin_x: int = 0):
        ch, cw = self.crop_size
        h, w = arrays[0].shape[:2]
        if h < ch or w < cw:
            raise UserError(f"flow augmentation: frame {h} x {w} is smaller than the crop {ch} x {cw}")
        y0 = int(np.clip(rng.integers(0, h - ch + margin_y + 1), 0, h - ch))
        x0 = int(np.clip(rng.integers(-margin_x, w - cw + margin_x + 1), 0, w - cw))
        return [a[y0:y0 + ch, x0:x0 + cw] for a in arrays]

    def spatial_transform(self, img1, img2, flow, rng: np.random.Generator):
        h, w = img1.shape[:2]
        fit = self._fit_scale(h, w)
        scale = 2.0 ** rng.uniform(self.min_scale, self.max_scale)
        sx = sy = scale
        if rng.random() < self.stretch_prob:
            sx *= 2.0 ** rng.uniform(-self.max_stretch, self.max_stretch)
            sy *= 2.0 ** rng.uniform(-self.max_stretch, self.max_stretch)
        if rng.random() >= self.spatial_aug_prob:
            sx = sy = 1.0  # no rescaling this time, unless the crop would not fit
        sx, sy = max(sx, fit), max(sy, fit)
        if (sx, sy) != (1.0, 1.0):
            img1 = cv2.resize(img1, None, fx=sx, fy=sy, interpolation=cv2.INTER_LINEAR)
            img2 = cv2.resize(img2, None, fx=sx, fy=sy, interpolation=cv2.INTER_LINEAR)
            flow = cv2.resize(flow, None, fx=sx, fy=sy, interpolation=cv2.INTER_LINEAR)
            flow = flow * np.array([sx, sy], dtype=np.float32)
        if self.do_flip:
            if rng.random() < self.h_flip_prob:
                img1, img2 = img1[:, ::-1], img2[:, ::-1]
                flow = flow[:, ::-1] * np.array([-1.0, 1.0], dtype=np.float32)
            if rng.random() < self.v_flip_prob:
                img1, img2 = img1[::-1], img2[::-1]
                flow = flow[::-1] * np.array([1.0, -1.0], dtype=np.float32)
        return self._crop([img1, img2, flow], rng)

    def __call__(self, img1: np.ndarray, img2: np.ndarray, flow: np.ndarray, rng: np.random.Generator):
        """-> (img1, img2, flow) augmented and cropped, contiguous, images in the input dtype."""
        _check_pair(img1, img2, flow)
        like = img1
        a, b = self.photometric_transform(img1, img2, rng)
        a, b, f = self.spatial_transform(a.astype(np.float32), b.astype(np.float32),
                                         flow.astype(np.float32), rng)
        return (np.ascontiguousarray(as_dtype(a, like)), np.ascontiguousarray(as_dtype(b, like)),
                np.ascontiguousarray(f, dtype=np.float32))


def resize_sparse_flow(flow: np.ndarray, valid: np.ndarray, sx: float, sy: float,
                       size: Optional[tuple[int, int]] = None):
    """Rescale a sparse flow map by scattering its valid points (no blending with invalid ones).

    A point at pixel (x, y) goes to the nearest pixel of ((x + 0.5) sx - 0.5, (y + 0.5) sy - 0.5),
    the same half-pixel convention as OpenCV's image resize, with its flow times (sx, sy);
    points that land outside the new frame are dropped. ``size`` (H, W) is the new frame
    size (that of the resized images); by default the rounded scaled size.
    """
    h, w = flow.shape[:2]
    nh, nw = (int(round(h * sy)), int(round(w * sx))) if size is None else (int(size[0]), int(size[1]))
    ys, xs = np.nonzero(np.asarray(valid) > 0.5)
    vals = flow[ys, xs] * np.array([sx, sy], dtype=np.float32)
    nx = np.rint((xs + 0.5) * sx - 0.5).astype(np.int64)
    ny = np.rint((ys + 0.5) * sy - 0.5).astype(np.int64)
    keep = (nx >= 0) & (nx < nw) & (ny >= 0) & (ny < nh)
    out_flow = np.zeros((nh, nw, 2), dtype=np.float32)
    out_valid = np.zeros((nh, nw), dtype=np.float32)
    out_flow[ny[keep], nx[keep]] = vals[keep]
    out_valid[ny[keep], nx[keep]] = 1.0
    return out_flow, out_valid


class SparseFlowAugmentor(FlowAugmentor):
    """Sparse-flow augmentation (KITTI) as the authors do it: the same jitter on both frames
    (0.3, 0.3, 0.3, hue 0.3/pi), eraser, isotropic scale only, horizontal flip only, a crop
    that may start up to 20 px below / 50 px beside the frame (then clamped), and the flow
    rescaled by scattering valid points instead of interpolating."""

    def __init__(self, crop_size: Sequence[int], min_scale: float = -0.2, max_scale: float = 0.5,
                 do_flip: bool = False, brightness: float = 0.3, contrast: float = 0.3,
                 saturation: float = 0.3, hue: float = 0.3 / math.pi, margin_y: int = 20,
                 margin_x: int = 50, **kwargs):
        super().__init__(crop_size, min_scale, max_scale, do_flip, brightness=brightness, contrast=contrast,
                         saturation=saturation, hue=hue, **kwargs)
        self.margin_y, self.margin_x = int(margin_y), int(margin_x)

    def spatial_transform(self, img1, img2, flow, rng: np.random.Generator, valid: Optional[np.ndarray] = None):
        h, w = img1.shape[:2]
        fit = self._fit_scale(h, w)
        scale = 2.0 ** rng.uniform(self.min_scale, self.max_scale)
        if rng.random() >= self.spatial_aug_prob:
            scale = 1.0
        s = max(scale, fit)
        if s != 1.0:
            img1 = cv2.resize(img1, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
            img2 = cv2.resize(img2, None, fx=s, fy=s, interpolation=cv2.INTER_LINEAR)
            flow, valid = resize_sparse_flow(flow, valid, s, s, img1.shape[:2])
        if self.do_flip and rng.random() < self.h_flip_prob:
            img1, img2, valid = img1[:, ::-1], img2[:, ::-1], valid[:, ::-1]
            flow = flow[:, ::-1] * np.array([-1.0, 1.0], dtype=np.float32)
        return self._crop([img1, img2, flow, valid], rng, self.margin_y, self.margin_x)

    def __call__(self, img1, img2, flow, valid, rng: np.random.Generator):
        """-> (img1, img2, flow, valid) augmented and cropped; valid float32 0/1."""
        _check_pair(img1, img2, flow, valid)
        like = img1
        a, b = self.photometric_transform(img1, img2, rng, asymmetric=False)
        a, b, f, v = self.spatial_transform(a.astype(np.float32), b.astype(np.float32), flow.astype(np.float32),
                                            rng, np.asarray(valid, dtype=np.float32))
        return (np.ascontiguousarray(as_dtype(a, like)), np.ascontiguousarray(as_dtype(b, like)),
                np.ascontiguousarray(f, dtype=np.float32), np.ascontiguousarray(v, dtype=np.float32))
