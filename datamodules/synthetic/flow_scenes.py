"""Synthetic optical-flow videos: textured layers moving with affine motions, exact flow.

A video is a stack of layers drawn back to front: a background that fills the frame and
1..N shapes (ellipses, rectangles, star-shaped polygons). Every layer carries a
procedural texture defined in its own continuous coordinates (sums of sinusoids plus
Gaussian blobs, mapped through a three-colour palette), so rendering is inverse
mapping: each pixel is taken back through the layer's transform and the texture is
evaluated there, with no resampling of a texture image.

Layer k at time t maps its local point p to the image point x = c(t) + s(t) R(a(t)) p,
with c(t) = c0 + t * velocity, a(t) = a0 + t * omega and s(t) = exp(t * log_rate), so
motion is continuous in time (motion blur averages sub-frame renders) and the forward
flow of a pixel x of frame t whose topmost layer is k is exactly
x' - x with x' = c(t+1) + s(t+1)/s(t) R(a(t+1) - a(t)) (x - c(t)). A pixel is occluded
when x' leaves the frame or a layer above k covers x' at t+1 (tested analytically).

Everything a domain shift consists of (speed, blur, noise, fog, lighting, textures) is
one ``SyntheticFlowDomain``; ``flow_source_domain`` ("clean") and
``flow_target_domain`` ("final"-like) are the defaults. Degradations touch the images
only; flows and occlusions stay exact. Video v depends only on (seed, v) and frame t of
it only on (seed, v, t), so consecutive pairs share frames bit for bit.
Flows follow geometry/flow.py: (2, H, W), u then v, pixels.
"""
from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.videos import VideoSpan
from framework.config import dataclass_from
from framework.checks import EachOneOf, Span, at_least, check, integer, positive
from framework.errors import UserError

SHAPE_KINDS = ("ellipse", "rectangle", "polygon")


@dataclass
class SyntheticFlowDomain:
    """One domain's parameters; every [low, high] pair is sampled uniformly per video/layer."""

    name: str = "clean"
    # --- video
    height: int = 96
    width: int = 128
    frames: int = 6  # frames per video; a video gives frames - 1 pairs
    # --- layers
    num_layers: list[int] = field(default_factory=lambda: [2, 4])  # shapes above the background (inclusive)
    shape_kinds: list[str] = field(default_factory=lambda: list(SHAPE_KINDS))
    shape_size: list[float] = field(default_factory=lambda: [0.12, 0.3])  # radius / min(height, width)
    shape_aspect: list[float] = field(default_factory=lambda: [0.5, 1.0])  # minor / major half-axis
    polygon_vertices: list[int] = field(default_factory=lambda: [5, 8])
    # --- textures (frequencies in cycles per pixel of the layer at scale 1)
    texture_sinusoids: int = 6
    texture_frequency: list[float] = field(default_factory=lambda: [0.015, 0.1])
    texture_blobs: int = 4
    texture_blob_size: list[float] = field(default_factory=lambda: [4.0, 12.0])  # px
    texture_contrast: float = 2.5  # sharpness of the palette mix; larger = more saturated patches
    texture_hue: list[float] = field(default_factory=lambda: [0.0, 360.0])  # degrees
    texture_saturation: list[float] = field(default_factory=lambda: [0.3, 0.9])
    texture_value: list[float] = field(default_factory=lambda: [0.25, 0.95])
    # --- motion per frame (magnitudes; directions and signs are random), times `speed`
    speed: float = 1.0
    layer_translation: list[float] = field(default_factory=lambda: [0.5, 4.0])  # px / frame
    layer_rotation: list[float] = field(default_factory=lambda: [0.0, 3.0])  # deg / frame
    layer_scale: list[float] = field(default_factory=lambda: [-0.02, 0.02])  # relative change / frame
    background_translation: list[float] = field(default_factory=lambda: [0.25, 2.0])
    background_rotation: list[float] = field(default_factory=lambda: [0.0, 0.5])
    background_scale: list[float] = field(default_factory=lambda: [-0.005, 0.005])
    # --- image degradations (flow stays exact)
    motion_blur: float = 0.0  # exposure as a share of the frame interval (0 = sharp)
    blur_samples: int = 5  # sub-frame renders averaged when motion_blur > 0
    noise_sigma: float = 0.0  # Gaussian sensor noise, 0..255 units
    fog: list[float] = field(default_factory=lambda: [0.0, 0.0])  # haze opacity at the top of the frame
    fog_brightness: list[float] = field(default_factory=lambda: [180.0, 230.0])  # haze grey level
    lighting_change: list[float] = field(default_factory=lambda: [0.0, 0.0])  # log-gain step per frame


def flow_source_domain() -> SyntheticFlowDomain:
    """Source ("clean"): sharp, noiseless renders with moderate motion."""
    return SyntheticFlowDomain()


def flow_target_domain() -> SyntheticFlowDomain:
    """Target ("final"-like): twice the speed, full-frame motion blur, noise, haze, flicker,
    finer low-contrast textures in a cooler, duller palette."""
    return SyntheticFlowDomain(
        name="final", speed=2.0,
        layer_translation=[1.0, 5.0], layer_rotation=[0.0, 4.0], layer_scale=[-0.03, 0.03],
        background_translation=[0.5, 2.5], background_rotation=[0.0, 1.0],
        texture_frequency=[0.03, 0.18], texture_blob_size=[2.0, 8.0], texture_contrast=1.5,
        texture_hue=[150.0, 300.0], texture_saturation=[0.1, 0.6], texture_value=[0.3, 0.8],
        motion_blur=1.0, blur_samples=5, noise_sigma=4.0, fog=[0.15, 0.35], lighting_change=[-0.08, 0.08],
    )


_RANGE_FIELDS = ("num_layers", "shape_size", "shape_aspect", "polygon_vertices", "texture_frequency",
                 "texture_blob_size", "texture_hue", "texture_saturation", "texture_value",
                 "layer_translation", "layer_rotation", "layer_scale", "background_translation",
                 "background_rotation", "background_scale", "fog", "fog_brightness", "lighting_change")


def as_domain(domain: Any) -> SyntheticFlowDomain:
    """Accept a SyntheticFlowDomain, an OmegaConf node or a plain dict."""
    return dataclass_from(SyntheticFlowDomain, domain, "synthetic flow domain")


def validate_domain(domain: SyntheticFlowDomain, key: str = "synthetic") -> None:
    """Raise one UserError naming the first bad field (``key.field``)."""
    check(domain, key, **{name: Span() for name in _RANGE_FIELDS})
    bounds = {"num_layers": (0, 32), "shape_size": (1e-3, None), "shape_aspect": (1e-2, 1.0),
              "polygon_vertices": (5, 64), "texture_frequency": (0.0, 0.5), "texture_blob_size": (0.5, None),
              "texture_hue": (0.0, 360.0), "texture_saturation": (0.0, 1.0), "texture_value": (0.0, 1.0),
              "layer_translation": (0.0, None), "layer_rotation": (0.0, None), "layer_scale": (-0.5, 0.5),
              "background_translation": (0.0, None), "background_rotation": (0.0, None),
              "background_scale": (-0.5, 0.5), "fog": (0.0, 1.0), "fog_brightness": (0.0, 255.0)}
    check(domain, key, **{name: Span(low, high) for name, (low, high) in bounds.items()})
    check(domain, key, height=integer(8), width=integer(8), frames=integer(2), texture_sinusoids=integer(1),
          blur_samples=integer(1), texture_blobs=integer(0), speed=positive(), texture_contrast=positive(),
          motion_blur=at_least(0), noise_sigma=at_least(0))
    kinds = list(domain.shape_kinds)
    if not kinds:
        raise UserError(f"{key}.shape_kinds: must list at least one of {', '.join(SHAPE_KINDS)}, got {kinds}")
    check(domain, key, shape_kinds=EachOneOf(SHAPE_KINDS))


def _uniform(rng: np.random.Generator, pair, size=None):
    return rng.uniform(float(pair[0]), float(pair[1]), size)


class _Layer:
    """One layer's shape, texture and motion, all drawn from the video's generator."""

    def __init__(self, rng: np.random.Generator, d: SyntheticFlowDomain, background: bool) -> None:
        h, w = d.height, d.width
        self.kind = "plane" if background else str(d.shape_kinds[int(rng.integers(len(d.shape_kinds)))])
        radius = float(_uniform(rng, d.shape_size)) * min(h, w)
        self.half = np.array([radius, radius * float(_uniform(rng, d.shape_aspect))])
        if self.kind == "polygon":
            n = int(rng.integers(int(d.polygon_vertices[0]), int(d.polygon_vertices[1]) + 1))
            angles = 2 * np.pi * (np.arange(n) + rng.uniform(-0.3, 0.3, n)) / n + rng.uniform(0, 2 * np.pi)
            angles = np.sort(np.mod(angles, 2 * np.pi))
            radii = radius * rng.uniform(0.55, 1.0, n)
            self.angles = angles
            self.vertices = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
        # motion
        prefix = "background" if background else "layer"
        speed = float(_uniform(rng, getattr(d, prefix + "_translation"))) * d.speed
        direction = rng.uniform(0, 2 * np.pi)
        self.velocity = speed * np.array([math.cos(direction), math.sin(direction)])
        spin = math.radians(float(_uniform(rng, getattr(d, prefix + "_rotation")))) * d.speed
        self.omega = spin * (1.0 if rng.random() < 0.5 else -1.0)
        self.log_rate = math.log1p(float(_uniform(rng, getattr(d, prefix + "_scale")))) * d.speed
        self.angle0 = rng.uniform(0, 2 * np.pi)
        middle = (d.frames - 1) / 2
        if background:
            centre_mid = np.array([(w - 1) / 2, (h - 1) / 2])
            extent = 0.75 * math.hypot(h, w)
        else:  # centred somewhere in the frame half-way through the video
            centre_mid = np.array([rng.uniform(0.1, 0.9) * (w - 1), rng.uniform(0.1, 0.9) * (h - 1)])
            extent = radius
        self.centre0 = centre_mid - middle * self.velocity
        self.angle0 -= middle * self.omega
        # texture
        k = d.texture_sinusoids
        freq = _uniform(rng, d.texture_frequency, 2 * k)
        theta = rng.uniform(0, 2 * np.pi, 2 * k)
        self.wave = 2 * np.pi * np.stack([freq * np.cos(theta), freq * np.sin(theta)], 1)  # (2k, 2) rad / px
        self.phase = rng.uniform(0, 2 * np.pi, 2 * k)
        amp = rng.uniform(0.5, 1.0, (2, k))  # each half sums to a unit-variance field
        self.amp = (amp / np.sqrt(0.5 * (amp ** 2).sum(1, keepdims=True))).ravel()
        self.k = k
        nb = d.texture_blobs
        self.blob_centre = rng.uniform(-extent, extent, (nb, 2))
        self.blob_radius = _uniform(rng, d.texture_blob_size, nb)
        self.blob_height = rng.choice([-1.0, 1.0], nb) * rng.uniform(1.0, 2.0, nb)
        self.contrast = float(d.texture_contrast)
        palette = []
        for _ in range(3):
            hue = float(_uniform(rng, d.texture_hue)) / 360.0
            palette.append(colorsys.hsv_to_rgb(hue % 1.0, float(_uniform(rng, d.texture_saturation)),
                                               float(_uniform(rng, d.texture_value))))
        self.palette = np.array(palette) * 255.0  # (3 colours, RGB)
        self._wave_t = self.wave.T.astype(np.float32)
        self._phase = self.phase.astype(np.float32)
        self._mix = np.zeros((2 * k, 2), dtype=np.float32)  # amplitudes, summing each half into a field
        self._mix[:k, 0] = self.amp[:k]
        self._mix[k:, 1] = self.amp[k:]
        self._ones = np.ones((3, 1), dtype=np.float32)
        self._blob_centre = self.blob_centre.astype(np.float32)
        self._blob_scale = (-0.5 / self.blob_radius ** 2).astype(np.float32)
        self._blob_height = self.blob_height.astype(np.float32)
        self._palette = self.palette.astype(np.float32)

    def pose(self, t: float) -> tuple[np.ndarray, float, float]:
        return self.centre0 + t * self.velocity, self.angle0 + t * self.omega, math.exp(t * self.log_rate)

    def to_local(self, t: float, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image points at time t -> the layer's own coordinates (inverse of c + s R p)."""
        centre, angle, scale = self.pose(t)
        c, s = math.cos(angle), math.sin(angle)
        dx, dy = x - centre[0], y - centre[1]
        return (c * dx + s * dy) / scale, (-s * dx + c * dy) / scale

    def to_image(self, t: float, px: np.ndarray, py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The layer's own coordinates -> image points at time t (c + s R p)."""
        centre, angle, scale = self.pose(t)
        c, s = math.cos(angle), math.sin(angle)
        return centre[0] + scale * (c * px - s * py), centre[1] + scale * (s * px + c * py)

    @property
    def reach(self) -> float:
        """Local radius of a disc holding the whole shape (pixels beyond it need no inside test);
        derived on demand, so a shape edited after construction stays right."""
        if self.kind == "ellipse":
            return float(self.half.max())
        if self.kind == "rectangle":
            return math.hypot(*self.half)
        if self.kind == "polygon":
            return float(np.hypot(self.vertices[:, 0], self.vertices[:, 1]).max())
        return math.inf

    def inside(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        if self.kind == "plane":
            return np.ones(px.shape, dtype=bool)
        a, b = self.half
        if self.kind == "ellipse":
            return (px / a) ** 2 + (py / b) ** 2 <= 1.0
        if self.kind == "rectangle":
            return (np.abs(px) <= a) & (np.abs(py) <= b)
        # star-shaped polygon: find the wedge of the point, test the side of its edge
        phi = np.mod(np.arctan2(py, px), 2 * np.pi)
        i = (np.searchsorted(self.angles, phi, side="right") - 1) % len(self.angles)
        v1 = self.vertices[i]
        v2 = self.vertices[(i + 1) % len(self.angles)]
        cross = (v2[:, 0] - v1[:, 0]) * (py - v1[:, 1]) - (v2[:, 1] - v1[:, 1]) * (px - v1[:, 0])
        return cross >= 0

    def texture(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """RGB (N, 3) in 0..255 at local points."""
        # float32 throughout: numpy's vectorised float32 cos/exp are several times faster, and
        # the phase error at a few hundred radians (~1e-5 rad) is far below one grey level
        points = np.stack([px, py], 1).astype(np.float32)
        fields_ab = np.cos(points @ self._wave_t + self._phase) @ self._mix  # (N, 2): fields a, b
        a, b = fields_ab[:, 0], fields_ab[:, 1]
        if len(self.blob_radius):
            d2 = (points[:, :1] - self._blob_centre[:, 0]) ** 2 + (points[:, 1:] - self._blob_centre[:, 1]) ** 2
            a = a + np.exp(d2 * self._blob_scale) @ self._blob_height
        logits = self.contrast * np.stack([a, b, -0.5 * (a + b)], 1)
        logits -= np.maximum(np.maximum(logits[:, :1], logits[:, 1:2]), logits[:, 2:])
        weights = np.exp(logits)  # softmax over the three palette colours
        return (weights @ self._palette) / (weights @ self._ones)


class _Scene:
    """All latent parameters of one video."""

    def __init__(self, d: SyntheticFlowDomain, seed: int, video: int) -> None:
        rng = np.random.default_rng([seed, video])
        n = int(rng.integers(int(d.num_layers[0]), int(d.num_layers[1]) + 1))
        self.layers = [_Layer(rng, d, background=True)] + [_Layer(rng, d, background=False) for _ in range(n)]
        steps = _uniform(rng, d.lighting_change, d.frames - 1)
        self.gain = np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
        self.fog = float(_uniform(rng, d.fog))
        self.fog_level = float(_uniform(rng, d.fog_brightness))


class SyntheticFlowVideos(Dataset):
    """``num_videos`` videos of one domain; video v is a pure function of (seed, v).

    Items: ``frames`` float32 (T, 3, H, W) in 0..255, ``flow`` float32 (T-1, 2, H, W)
    forward flow t -> t+1, ``occlusion`` bool (T-1, H, W), ``valid`` float32
    (T-1, H, W) (all ones), ``video`` int64. ``frame(v, t)`` and ``flow(v, t)`` give one
    frame or one flow without rendering the rest.
    """

    scene_type = _Scene  # subclasses add layers (e.g. the tracking videos' occluders)

    def __init__(self, domain: Any = None, num_videos: int = 16, seed: int = 0, key: str = "synthetic") -> None:
        self.domain = as_domain(flow_source_domain() if domain is None else domain)
        validate_domain(self.domain, key)
        check({"num_videos": num_videos, "seed": seed}, "SyntheticFlowVideos", num_videos=at_least(0), seed=at_least(0))
        self.num_videos = int(num_videos)
        self.seed = int(seed)
        d = self.domain
        ys, xs = np.mgrid[0:d.height, 0:d.width].astype(np.float64)
        self._grid_x, self._grid_y = xs, ys
        self._xs, self._ys = xs.ravel(), ys.ravel()
        fade = 1.0 - np.arange(d.height) / max(d.height - 1, 1)  # haze thickest at the top (far away)
        self._fog_profile = (0.6 + 0.4 * fade)[:, None, None]
        self._cache: tuple[int, _Scene] | None = None

    def __len__(self) -> int:
        return self.num_videos

    @property
    def frames_per_video(self) -> int:
        return self.domain.frames

    def scene(self, video: int) -> _Scene:
        if not 0 <= video < self.num_videos:
            raise IndexError(f"video {video} out of range for {self.num_videos} videos")
        if self._cache is None or self._cache[0] != video:
            self._cache = (video, self.scene_type(self.domain, self.seed, video))
        return self._cache[1]

    def _labels(self, scene: _Scene, t: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index of the topmost layer at each point (0 = background)."""
        label = np.zeros(x.shape, dtype=np.int64)
        for k, layer in enumerate(scene.layers[1:], start=1):
            label[layer.inside(*layer.to_local(t, x, y))] = k
        return label

    def _label_grid(self, scene: _Scene, t: float) -> np.ndarray:
        """``_labels`` of every pixel (flattened), testing each shape only inside its bounding box
        so that crowds of small shapes stay cheap."""
        d = self.domain
        label = np.zeros((d.height, d.width), dtype=np.int64)
        for k, layer in enumerate(scene.layers[1:], start=1):
            centre, _, scale = layer.pose(t)
            r = layer.reach * scale + 1.0  # a pixel of margin against round-off
            if math.isinf(r):
                x0, x1, y0, y1 = 0, d.width, 0, d.height
            else:
                x0, x1 = max(0, math.floor(centre[0] - r)), min(d.width, math.ceil(centre[0] + r) + 1)
                y0, y1 = max(0, math.floor(centre[1] - r)), min(d.height, math.ceil(centre[1] + r) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            px, py = layer.to_local(t, self._grid_x[y0:y1, x0:x1].ravel(), self._grid_y[y0:y1, x0:x1].ravel())
            box = label[y0:y1, x0:x1]
            box[layer.inside(px, py).reshape(box.shape)] = k
        return label.ravel()

    @staticmethod
    def _groups(label: np.ndarray):
        """(layer, indices of its points in increasing order) for every layer present."""
        order = np.argsort(label, kind="stable")
        ends = np.cumsum(np.bincount(label))
        for k in np.flatnonzero(np.diff(ends, prepend=0)):
            yield int(k), order[ends[k - 1] if k else 0:ends[k]]

    def _render(self, scene: _Scene, t: float) -> np.ndarray:
        """Sharp (H*W, 3) picture at time t by inverse mapping every pixel into its layer."""
        x, y = self._xs, self._ys
        out = np.empty((x.size, 3))
        for k, sel in self._groups(self._label_grid(scene, t)):
            layer = scene.layers[k]
            out[sel] = layer.texture(*layer.to_local(t, x[sel], y[sel]))
        return out

    def frame(self, video: int, t: int) -> np.ndarray:
        """Frame t of a video, float32 (3, H, W) in 0..255, degradations applied."""
        d = self.domain
        if not 0 <= t < d.frames:
            raise IndexError(f"frame {t} out of range for videos of {d.frames} frames")
        scene = self.scene(video)
        if d.motion_blur > 0 and d.blur_samples > 1:
            times = t + d.motion_blur * (np.arange(d.blur_samples) / (d.blur_samples - 1) - 0.5)
            picture = sum(self._render(scene, float(s)) for s in times) / len(times)
        else:
            picture = self._render(scene, float(t))
        image = picture.reshape(d.height, d.width, 3) * scene.gain[t]
        if scene.fog > 0:
            alpha = scene.fog * self._fog_profile
            image = (1 - alpha) * image + alpha * scene.fog_level
        if d.noise_sigma > 0:
            rng = np.random.default_rng([self.seed, video, t, 7])
            image = image + rng.standard_normal(image.shape) * d.noise_sigma
        return np.clip(image, 0, 255).transpose(2, 0, 1).astype(np.float32)

    def flow(self, video: int, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact forward flow t -> t+1, float32 (2, H, W), and occlusion, bool (H, W)."""
        d = self.domain
        if not 0 <= t < d.frames - 1:
            raise IndexError(f"pair {t} out of range for videos of {d.frames} frames")
        scene = self.scene(video)
        x, y = self._xs, self._ys
        label = self._label_grid(scene, float(t))
        tx, ty = np.empty_like(x), np.empty_like(y)
        for k, sel in self._groups(label):
            c0, a0, s0 = scene.layers[k].pose(float(t))
            c1, a1, s1 = scene.layers[k].pose(float(t + 1))
            c, s, r = math.cos(a1 - a0), math.sin(a1 - a0), s1 / s0
            dx, dy = x[sel] - c0[0], y[sel] - c0[1]
            tx[sel] = c1[0] + r * (c * dx - s * dy)
            ty[sel] = c1[1] + r * (s * dx + c * dy)
        occluded = (tx < 0) | (tx > d.width - 1) | (ty < 0) | (ty > d.height - 1)
        for k, layer in enumerate(scene.layers[1:], start=1):
            above = label < k
            if above.any():
                px, py = layer.to_local(float(t + 1), tx[above], ty[above])
                occluded[above] |= layer.inside(px, py)
        flow = np.stack([tx - x, ty - y]).reshape(2, d.height, d.width).astype(np.float32)
        return flow, occluded.reshape(d.height, d.width)

    def __getitem__(self, video: int) -> dict[str, torch.Tensor]:
        video = int(video)
        t_all = range(self.domain.frames)
        frames = np.stack([self.frame(video, t) for t in t_all])
        flows, occ = zip(*(self.flow(video, t) for t in t_all[:-1]))
        return {"frames": torch.from_numpy(frames), "flow": torch.from_numpy(np.stack(flows)),
                "occlusion": torch.from_numpy(np.stack(occ)),
                "valid": torch.ones((len(flows),) + flows[0].shape[1:], dtype=torch.float32),
                "video": torch.tensor(video, dtype=torch.int64)}


class SyntheticFlowPairs(Dataset):
    """Frame pairs (t, t+1) of ``SyntheticFlowVideos``, flattened: index = video * (T-1) + t.

    Items (the flow batch keys): ``image1``, ``image2`` float32 (3, H, W) in 0..255, ``flow``
    float32 (2, H, W), ``valid`` float32 (H, W) all ones, ``occlusion`` bool (H, W), and int64
    ``index``, ``video``, ``frame``. ``pairs_of(v)`` lists the indices of one video, in order,
    and ``videos()`` all of them, for per-video refinement.
    """

    def __init__(self, domain: Any = None, num_videos: int = 16, seed: int = 0, key: str = "synthetic") -> None:
        self.clips = SyntheticFlowVideos(domain, num_videos, seed, key)
        self.domain = self.clips.domain
        self.pairs_per_video = self.domain.frames - 1

    def __len__(self) -> int:
        return len(self.clips) * self.pairs_per_video

    def pairs_of(self, video: int) -> list[int]:
        if not 0 <= video < len(self.clips):
            raise IndexError(f"video {video} out of range for {len(self.clips)} videos")
        return list(range(video * self.pairs_per_video, (video + 1) * self.pairs_per_video))

    def videos(self) -> dict[int, VideoSpan]:
        """{video: (name, pair indices in frame order)}, the protocol of the real flow datasets."""
        return {v: VideoSpan(f"{self.domain.name}_{v:04d}", self.pairs_of(v)) for v in range(len(self.clips))}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} pairs")
        video, t = divmod(index, self.pairs_per_video)
        flow, occluded = self.clips.flow(video, t)
        return {"image1": torch.from_numpy(self.clips.frame(video, t)),
                "image2": torch.from_numpy(self.clips.frame(video, t + 1)),
                "flow": torch.from_numpy(flow),
                "valid": torch.ones(flow.shape[1:], dtype=torch.float32),
                "occlusion": torch.from_numpy(occluded),
                "index": torch.tensor(index, dtype=torch.int64),
                "video": torch.tensor(video, dtype=torch.int64),
                "frame": torch.tensor(t, dtype=torch.int64)}
