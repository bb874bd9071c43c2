"""The PIPs authors' training augmentation for point tracks, on numpy arrays.

Clips are ``frames`` (S, H, W, 3) RGB, uint8 or float in 0..255 (the dtype comes back
unchanged), ``trajs`` (S, N, 2) pixel (x, y) with pixel centres at integers, ``visible`` and
``valid`` (S, N) bool. Every step is a function of the ``numpy.random.Generator`` handed in,
so a generator seeded by (seed, epoch, index) reproduces a sample.

What the authors do, in their order: on frames 1..S-1 (the query frame stays clean), erase
boxes to their mean colour and paste boxes cut from colour-jittered frames of the same clip;
points whose nearest pixel a box covers become invisible. Then per-frame colour jitter and
Gaussian blur, each for the whole clip with some probability. Spatially: zero padding, a zoom
that drifts smoothly over the clip (per-frame scale, the two axes pulled together), a crop
centred on the frame-0 visible points whose offset drifts too (a moving camera), and flips.
Tracks follow every step exactly: OpenCV's bilinear resize maps x to (x + 0.5) s - 0.5, a
flip maps x to W - 1 - x. A point leaving the crop is neither valid nor visible.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from datamodules.colour_jitter import ColorJitter, as_dtype
from framework.errors import UserError


def _check_clip(frames, trajs, visible, valid) -> None:
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[3] != 3:
        raise UserError(f"track augmentation: frames must be a numpy array (S, H, W, 3), got "
                        f"{getattr(frames, 'shape', type(frames).__name__)}")
    s = frames.shape[0]
    if np.ndim(trajs) != 3 or np.shape(trajs)[0] != s or np.shape(trajs)[2] != 2:
        raise UserError(f"track augmentation: trajs must be (S, N, 2) with S = {s}, got {np.shape(trajs)}")
    for name, arr in (("visible", visible), ("valid", valid)):
        if np.shape(arr) != np.shape(trajs)[:2]:
            raise UserError(f"track augmentation: {name} must be (S, N) = {np.shape(trajs)[:2]}, got {np.shape(arr)}")


def _bounds(name: str, value, low: float, integer: bool = True) -> tuple:
    try:
        lo, hi = (int(v) if integer else float(v) for v in value)
    except (TypeError, ValueError):
        raise UserError(f"track augmentation: {name} must be (low, high), got {value!r}") from None
    if not low <= lo <= hi:
        raise UserError(f"track augmentation: {name} must satisfy {low} <= low <= high, got {tuple(value)}")
    return lo, hi


def _random_box(rng: np.random.Generator, h: int, w: int, bounds) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1), half-open pixel ranges: a centre anywhere, sides in [low, high), clipped."""
    xc, yc = int(rng.integers(0, w)), int(rng.integers(0, h))
    dx, dy = (int(rng.integers(bounds[0], max(bounds[1], bounds[0] + 1))) for _ in range(2))
    x0, x1 = (int(np.clip(round(xc + f * dx / 2), 0, w)) for f in (-1, 1))
    y0, y1 = (int(np.clip(round(yc + f * dy / 2), 0, h)) for f in (-1, 1))
    return x0, x1, y0, y1


def covered(xy: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(N,) points whose nearest pixel lies in the box."""
    x0, x1, y0, y1 = box
    ix, iy = np.floor(xy[:, 0] + 0.5), np.floor(xy[:, 1] + 0.5)
    return (ix >= x0) & (ix < x1) & (iy >= y0) & (iy < y1)


def erase_patches(frames: np.ndarray, trajs: np.ndarray, visible: np.ndarray, rng: np.random.Generator,
                  prob: float = 0.9, bounds: Sequence[int] = (2, 100), max_patches: int = 10):
    """Occluders without texture: 1..max_patches boxes per frame (after the first, each frame with
    ``prob``) filled with their own mean colour. -> (float32 frames, visible)."""
    frames, visible = frames.astype(np.float32), visible.copy()
    s_len, h, w = frames.shape[:3]
    for s in range(1, s_len):
        if rng.random() < prob:
            for _ in range(int(rng.integers(1, max_patches + 1))):
                x0, x1, y0, y1 = box = _random_box(rng, h, w, bounds)
                if x0 < x1 and y0 < y1:
                    frames[s, y0:y1, x0:x1] = frames[s, y0:y1, x0:x1].reshape(-1, 3).mean(0)
                    visible[s] &= ~covered(trajs[s], box)
    return frames, visible


def replace_patches(frames: np.ndarray, trajs: np.ndarray, visible: np.ndarray, rng: np.random.Generator,
                    jitter: ColorJitter, prob: float = 0.9, bounds: Sequence[int] = (2, 100), max_patches: int = 20):
    """Textured occluders: boxes pasted from anywhere in a twice colour-jittered copy of any frame,
    so they look like the scene but move unlike it. -> (float32 frames, visible)."""
    frames, visible = frames.astype(np.float32), visible.copy()
    s_len, h, w = frames.shape[:3]
    alt = np.stack([jitter(jitter(f, rng), rng) for f in frames])
    for s in range(1, s_len):
        if rng.random() < prob:
            for _ in range(int(rng.integers(1, max_patches + 1))):
                x0, x1, y0, y1 = box = _random_box(rng, h, w, bounds)
                if x0 < x1 and y0 < y1:
                    ys, xs = int(rng.integers(0, h - (y1 - y0) + 1)), int(rng.integers(0, w - (x1 - x0) + 1))
                    src = alt[int(rng.integers(0, s_len))]
                    frames[s, y0:y1, x0:x1] = src[ys:ys + y1 - y0, xs:xs + x1 - x0]
                    visible[s] &= ~covered(trajs[s], box)
    return frames, visible


def color_jitter(frames: np.ndarray, rng: np.random.Generator, jitter: ColorJitter, prob: float = 0.5) -> np.ndarray:
    """With ``prob``, an independent jitter on every frame (lighting that flickers over the clip)."""
    frames = frames.astype(np.float32)
    if rng.random() < prob:
        frames = np.stack([jitter(f, rng) for f in frames])
    return frames


def gaussian_blur(frames: np.ndarray, rng: np.random.Generator, prob: float = 0.5, kernel: int = 11,
                  sigma: Sequence[float] = (0.1, 2.0)) -> np.ndarray:
    """With ``prob``, every frame blurred with its own sigma (focus and motion blur that vary)."""
    frames = frames.astype(np.float32)
    if rng.random() < prob:
        frames = np.stack([cv2.GaussianBlur(f, (kernel, kernel), float(rng.uniform(*sigma)),
                                            borderType=cv2.BORDER_REFLECT) for f in frames])
    return frames


def pad(frames: np.ndarray, trajs: np.ndarray, rng: np.random.Generator, bounds: Sequence[int] = (0, 100)):
    """Black borders of random widths in [low, high) on the four sides, so crops can leave the scene."""
    left, right, top, bottom = (int(rng.integers(bounds[0], max(bounds[1], bounds[0] + 1))) for _ in range(4))
    frames = np.pad(frames, ((0, 0), (top, bottom), (left, right), (0, 0)))
    return frames, trajs + np.array([left, top], dtype=trajs.dtype)


def rescale(frames: np.ndarray, trajs: np.ndarray, rng: np.random.Generator, min_size: Sequence[int],
            resize_lim: Sequence[float] = (0.25, 2.0), resize_delta: float = 0.2):
    """A zoom that drifts over the clip: frame 0 at scale U(resize_lim), then each frame's per-axis
    scale moves by a smoothed random step of up to ``resize_delta``, the two axes pulled halfway
    together; never below ``min_size`` (H, W). -> (list of S frames of varying size, trajs)."""
    s_len, h, w = frames.shape[:3]
    trajs = trajs.astype(np.float32)
    scale = float(rng.uniform(*resize_lim))
    sx = sy = scale
    step = np.zeros(2)
    out = []
    for s in range(s_len):
        if s >= 1:
            fresh = rng.uniform(-resize_delta, resize_delta, 2)
            step = fresh if s == 1 else 0.8 * step + 0.2 * fresh
            sx, sy = sx + step[0], sy + step[1]
            mean = (sx + sy) / 2
            sx, sy = (np.clip((v + mean) / 2, 0.8 * resize_lim[0], resize_lim[1]) for v in (sx, sy))
        nw, nh = max(int(w * sx), int(min_size[1])), max(int(h * sy), int(min_size[0]))
        sx, sy = nw / w, nh / h  # what the rounding (and the floor) made of it
        out.append(cv2.resize(frames[s], (nw, nh), interpolation=cv2.INTER_LINEAR))
        trajs[s] = (trajs[s] + 0.5) * np.array([sx, sy], dtype=np.float32) - 0.5
    return out, trajs


def crop(frames: Sequence[np.ndarray], trajs: np.ndarray, visible: np.ndarray, rng: np.random.Generator,
         crop_size: Sequence[int], max_offset: int = 100):
    """A (H, W) = ``crop_size`` window per frame, centred on frame 0's visible points, whose offset
    then drifts by smoothed random steps of up to ``max_offset`` px. -> (frames (S, H, W, 3), trajs)."""
    ch, cw = (int(c) for c in crop_size)
    trajs = trajs.astype(np.float32)
    h0, w0 = frames[0].shape[:2]
    centre = trajs[0, visible[0]].mean(0) if visible[0].any() else np.array([(w0 - 1) / 2, (h0 - 1) / 2])
    x0, y0 = int(centre[0] - cw // 2), int(centre[1] - ch // 2)
    step = np.zeros(2, dtype=np.int64)
    out = []
    for s, frame in enumerate(frames):
        h, w = frame.shape[:2]
        if h < ch or w < cw:
            raise UserError(f"track augmentation: frame {h} x {w} is smaller than the crop {ch} x {cw}")
        if s >= 1:
            fresh = rng.integers(-max_offset, max_offset + 1, 2)
            step = fresh if s == 1 else (0.8 * step + 0.2 * fresh).astype(np.int64)
            x0, y0 = x0 + int(step[0]), y0 + int(step[1])
        x0, y0 = int(np.clip(x0, 0, w - cw)), int(np.clip(y0, 0, h - ch))
        out.append(frame[y0:y0 + ch, x0:x0 + cw])
        trajs[s] -= np.array([x0, y0], dtype=np.float32)
    return np.stack(out), trajs


def random_crop(frames: np.ndarray, trajs: np.ndarray, rng: np.random.Generator, crop_size: Sequence[int]):
    """One window for the whole clip (no augmentation beyond making the size)."""
    ch, cw = (int(c) for c in crop_size)
    h, w = frames.shape[1:3]
    if h < ch or w < cw:
        raise UserError(f"track augmentation: frame {h} x {w} is smaller than the crop {ch} x {cw}")
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return frames[:, y0:y0 + ch, x0:x0 + cw], trajs - np.array([x0, y0], dtype=trajs.dtype)


def flip(frames: np.ndarray, trajs: np.ndarray, rng: np.random.Generator, h_prob: float = 0.5, v_prob: float = 0.5):
    """Mirror the whole clip left-right and/or up-down with the tracks."""
    h, w = frames.shape[1:3]
    trajs = trajs.astype(np.float32)
    if rng.random() < h_prob:
        frames, trajs[..., 0] = frames[:, :, ::-1], w - 1 - trajs[..., 0]
    if rng.random() < v_prob:
        frames, trajs[..., 1] = frames[:, ::-1], h - 1 - trajs[..., 1]
    return frames, trajs


def inside(trajs: np.ndarray, height: int, width: int) -> np.ndarray:
    return (trajs[..., 0] >= 0) & (trajs[..., 0] <= width - 1) & (trajs[..., 1] >= 0) & (trajs[..., 1] <= height - 1)


def trackable(visible: np.ndarray) -> np.ndarray:
    """(N,) points worth training on, as the authors keep them: visible at frame 0 and at least
    once more."""
    visible = np.asarray(visible, dtype=bool)
    return visible[0] & visible[1:].any(0)


class TrackAugmentor:
    """PIPs training augmentation (FlyingThings++); defaults are the authors', in pixels of
    540 x 960 frames: shrink ``*_bounds``, ``pad_bounds`` and ``max_crop_offset`` for small ones.

    ``photometric=False`` skips erase/replace/jitter/blur; ``spatial=False`` replaces pad, zoom,
    drifting crop and flips by one random crop (the authors' evaluation-time path).
    """

    def __init__(self, crop_size: Sequence[int], photometric: bool = True, spatial: bool = True,
                 brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.25 / 3.14,
                 color_aug_prob: float = 0.5, blur_aug_prob: float = 0.5, blur_kernel: int = 11,
                 blur_sigma: Sequence[float] = (0.1, 2.0), eraser_aug_prob: float = 0.9,
                 eraser_bounds: Sequence[int] = (2, 100), eraser_max: int = 10, replace_aug_prob: float = 0.9,
                 replace_bounds: Sequence[int] = (2, 100), replace_max: int = 20,
                 pad_bounds: Sequence[int] = (0, 100), resize_lim: Sequence[float] = (0.25, 2.0),
                 resize_delta: float = 0.2, max_crop_offset: int = 100, h_flip_prob: float = 0.5,
                 v_flip_prob: float = 0.5, crop_margin: int = 10):
        try:
            self.crop_size = tuple(int(c) for c in crop_size)
        except (TypeError, ValueError):
            self.crop_size = ()
        if len(self.crop_size) != 2 or min(self.crop_size) < 1:
            raise UserError(f"track augmentation: crop_size must be positive (height, width), got {crop_size!r}")
        self.photometric, self.spatial = bool(photometric), bool(spatial)
        self.jitter = ColorJitter(brightness, contrast, saturation, hue)
        for name, p in (("color_aug_prob", color_aug_prob), ("blur_aug_prob", blur_aug_prob),
                        ("eraser_aug_prob", eraser_aug_prob), ("replace_aug_prob", replace_aug_prob),
                        ("h_flip_prob", h_flip_prob), ("v_flip_prob", v_flip_prob)):
            if not 0 <= p <= 1:
                raise UserError(f"track augmentation: {name} must lie in [0, 1], got {p}")
        self.color_aug_prob, self.blur_aug_prob = float(color_aug_prob), float(blur_aug_prob)
        if int(blur_kernel) < 1 or int(blur_kernel) % 2 == 0:
            raise UserError(f"track augmentation: blur_kernel must be a positive odd integer, got {blur_kernel}")
        self.blur_kernel, self.blur_sigma = int(blur_kernel), _bounds("blur_sigma", blur_sigma, 1e-6, integer=False)
        self.eraser_aug_prob, self.eraser_bounds = float(eraser_aug_prob), _bounds("eraser_bounds", eraser_bounds, 1)
        self.replace_aug_prob = float(replace_aug_prob)
        self.replace_bounds = _bounds("replace_bounds", replace_bounds, 1)
        for name, v in (("eraser_max", eraser_max), ("replace_max", replace_max)):
            if int(v) < 1:
                raise UserError(f"track augmentation: {name} must be at least 1, got {v}")
        self.eraser_max, self.replace_max = int(eraser_max), int(replace_max)
        self.pad_bounds = _bounds("pad_bounds", pad_bounds, 0)
        self.resize_lim = _bounds("resize_lim", resize_lim, 1e-3, integer=False)
        if resize_delta < 0 or max_crop_offset < 0 or crop_margin < 0:
            raise UserError(f"track augmentation: resize_delta, max_crop_offset and crop_margin must be >= 0, got "
                            f"{resize_delta}, {max_crop_offset}, {crop_margin}")
        self.resize_delta, self.max_crop_offset, self.crop_margin = float(resize_delta), int(max_crop_offset), int(
            crop_margin)
        self.h_flip_prob, self.v_flip_prob = float(h_flip_prob), float(v_flip_prob)

    def photometric_transform(self, frames, trajs, visible, rng: np.random.Generator):
        frames, visible = erase_patches(frames, trajs, visible, rng, self.eraser_aug_prob, self.eraser_bounds,
                                        self.eraser_max)
        frames, visible = replace_patches(frames, trajs, visible, rng, self.jitter, self.replace_aug_prob,
                                          self.replace_bounds, self.replace_max)
        frames = color_jitter(frames, rng, self.jitter, self.color_aug_prob)
        return gaussian_blur(frames, rng, self.blur_aug_prob, self.blur_kernel, self.blur_sigma), visible

    def spatial_transform(self, frames, trajs, visible, rng: np.random.Generator):
        ch, cw = self.crop_size
        frames, trajs = pad(frames, trajs, rng, self.pad_bounds)
        # frames a little larger than the crop, so the crop still moves
        scaled, trajs = rescale(frames, trajs, rng, (ch + self.crop_margin, cw + self.crop_margin), self.resize_lim,
                                self.resize_delta)
        frames, trajs = crop(scaled, trajs, visible, rng, self.crop_size, self.max_crop_offset)
        return flip(frames, trajs, rng, self.h_flip_prob, self.v_flip_prob)

    def __call__(self, frames: np.ndarray, trajs: np.ndarray, visible: np.ndarray, valid: np.ndarray,
                 rng: np.random.Generator):
        """-> (frames (S, crop H, crop W, 3) in the input dtype, trajs float32 (S, N, 2), visible, valid bool)."""
        _check_clip(frames, trajs, visible, valid)
        like = frames
        trajs = np.asarray(trajs, dtype=np.float32)
        visible, valid = np.asarray(visible, dtype=bool), np.asarray(valid, dtype=bool)
        out = frames.astype(np.float32)
        if self.photometric:
            out, visible = self.photometric_transform(out, trajs, visible, rng)
        if self.spatial:
            out, trajs = self.spatial_transform(out, trajs, visible, rng)
        else:
            out, trajs = random_crop(out, trajs, rng, self.crop_size)
        valid = valid & inside(trajs, *self.crop_size)
        return (np.ascontiguousarray(as_dtype(out, like)), np.ascontiguousarray(trajs, dtype=np.float32),
                visible & valid, valid)
