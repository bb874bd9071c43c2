"""Synthetic point-tracking videos for an S-frame (PIPs-style) tracker, with exact tracks.

The scenes are those of ``flow_scenes`` (textured layers under continuous affine motion, the
same renderer and degradations), plus occluders: extra top layers that cross the frame at a
random time, so that tracked points get covered and uncovered. A query point is a pixel
centre at its query frame; it belongs to the topmost layer there, and its track is that
layer's exact motion of the point's local coordinates, so tracks stay sub-pixel exact at every
frame with no chaining of flows. A point is visible where no higher layer covers it and it is
inside the frame (the occlusion rule of the flow videos); valid where it is inside the frame.

``track_source_domain`` is FlyingThings-like: a few large, colourful shapes. The target
``track_target_domain`` mimics a crowd (CroHD): 20-32 small, similar head-like ellipses that
move faster and pass over each other, under motion blur, noise and a dim, dull palette.
Video v depends only on (seed, v), as in the flow videos; frame t only on (seed, v, t).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.synthetic.flow_scenes import (SyntheticFlowDomain, SyntheticFlowVideos, _Layer,
                                               _Scene, _uniform, validate_domain)
from datamodules.videos import VideoSpan
from framework.config import dataclass_from
from framework.checks import OneOf, Span, check, fraction, integer
from framework.errors import UserError

QUERY_MODES = ("first", "strided")


@dataclass
class SyntheticTrackDomain(SyntheticFlowDomain):
    """The flow domain's parameters plus what tracking needs ([low, high] pairs drawn per video/layer)."""

    frames: int = 24
    num_points: int = 64  # query points per video (and per training clip)
    # occluders: extra layers above all shapes that cross the frame (count inclusive)
    occluders: list[int] = field(default_factory=lambda: [0, 2])
    occluder_size: list[float] = field(default_factory=lambda: [0.15, 0.3])  # radius / min(height, width)
    occluder_translation: list[float] = field(default_factory=lambda: [2.0, 6.0])  # px / frame, times `speed`
    # query points: this share is drawn on shapes (occluders included), the rest on the background
    moving_share: float = 0.5
    query_mode: str = "first"  # "first": every query on frame 0; "strided": frames 0, stride, 2 stride, ...
    query_stride: int = 5


def track_source_domain() -> SyntheticTrackDomain:
    """Source: a few large shapes with colourful textures, sharp and noiseless (FlyingThings-like)."""
    return SyntheticTrackDomain(num_layers=[3, 6], layer_translation=[0.5, 3.0])


def track_target_domain() -> SyntheticTrackDomain:
    """Target (CroHD-like crowd): 20-32 small, near-round, similar-looking heads over a nearly
    static background, faster motion, motion blur, noise and flicker; queries mostly on heads."""
    return SyntheticTrackDomain(
        name="crowd", speed=1.5, num_layers=[20, 32], shape_kinds=["ellipse"], shape_size=[0.035, 0.06],
        shape_aspect=[0.7, 1.0], layer_translation=[1.0, 3.5], layer_rotation=[0.0, 4.0],
        layer_scale=[-0.01, 0.01], background_translation=[0.0, 0.3], background_rotation=[0.0, 0.1],
        background_scale=[-0.002, 0.002], texture_frequency=[0.05, 0.2], texture_blob_size=[1.5, 4.0],
        texture_contrast=1.2, texture_hue=[15.0, 45.0], texture_saturation=[0.15, 0.45],
        texture_value=[0.15, 0.65], motion_blur=1.0, blur_samples=5, noise_sigma=5.0,
        lighting_change=[-0.05, 0.05], occluders=[0, 2], occluder_size=[0.1, 0.2], moving_share=0.9,
    )


def as_track_domain(domain: Any, key: str = "synthetic track domain") -> SyntheticTrackDomain:
    """Accept a SyntheticTrackDomain, an OmegaConf node or a plain dict."""
    return dataclass_from(SyntheticTrackDomain, domain, key)


def validate_track_domain(domain: SyntheticTrackDomain, key: str = "synthetic") -> None:
    """Raise one UserError naming the first bad field (``key.field``)."""
    validate_domain(domain, key)
    check(domain, key, occluders=Span(0, 32), occluder_size=Span(1e-3), occluder_translation=Span(0.0),
          num_points=integer(1, domain.height * domain.width), query_stride=integer(1), moving_share=fraction(),
          query_mode=OneOf(QUERY_MODES))


class _TrackScene(_Scene):
    """A flow scene plus occluders, drawn from their own stream so the shapes below match the
    flow scene of the same (seed, video)."""

    def __init__(self, d: SyntheticTrackDomain, seed: int, video: int) -> None:
        super().__init__(d, seed, video)
        rng = np.random.default_rng([seed, video, 1])
        occluder = replace(d, shape_size=d.occluder_size, layer_translation=d.occluder_translation)
        middle = (d.frames - 1) / 2
        for _ in range(int(rng.integers(int(d.occluders[0]), int(d.occluders[1]) + 1))):
            layer = _Layer(rng, occluder, background=False)
            # in the frame at a random time rather than always half-way through, so short clips see them too
            layer.centre0 = layer.centre0 + (middle - float(_uniform(rng, [0.0, d.frames - 1]))) * layer.velocity
            self.layers.append(layer)


class _TrackRenderer(SyntheticFlowVideos):
    scene_type = _TrackScene


class SyntheticTrackVideos(Dataset):
    """``num_videos`` tracking videos of one domain; video v is a pure function of (seed, v).

    Items: ``frames`` float32 (T, 3, H, W) in 0..255, ``trajs`` float32 (T, N, 2) pixel (x, y),
    ``visible`` bool (T, N), ``valid`` bool (T, N) (inside the frame), ``queries`` float32 (N, 3)
    (t, x, y), ``video`` and ``index`` int64 (equal). ``renderer`` is a SyntheticFlowVideos over
    the same scenes (single frames, exact flows); ``track`` follows any query points.
    """

    def __init__(self, domain: Any = None, num_videos: int = 16, seed: int = 0, num_points: Optional[int] = None,
                 key: str = "synthetic") -> None:
        self.domain = as_track_domain(track_source_domain() if domain is None else domain, key)
        validate_track_domain(self.domain, key)
        d = self.domain
        check({"num_points": num_points, "num_videos": num_videos, "seed": seed}, "SyntheticTrackVideos",
              num_points=integer(1, d.height * d.width, optional=True), num_videos=integer(0), seed=integer(0))
        self.num_points = int(d.num_points if num_points is None else num_points)
        self.seed = int(seed)
        self.renderer = _TrackRenderer(d, int(num_videos), self.seed, key)

    def __len__(self) -> int:
        return len(self.renderer)

    def scene(self, video: int) -> _TrackScene:
        return self.renderer.scene(video)

    def query_frames(self) -> list[int]:
        d = self.domain
        return [0] if d.query_mode == "first" else list(range(0, d.frames, d.query_stride))

    def sample_queries(self, video: int, frames: Sequence[int], rng: np.random.Generator) -> np.ndarray:
        """(len(frames), 3) queries (t, x, y): distinct pixel centres of frame t, ``moving_share`` of
        them on shapes and the rest on the background, either kind standing in when the other runs short."""
        d = self.domain
        frames = np.asarray(frames, dtype=np.int64)
        out = np.empty((len(frames), 3))
        for t in np.unique(frames):
            rows = np.flatnonzero(frames == t)
            n = len(rows)
            label = self.renderer._label_grid(self.scene(video), float(t))
            moving, still = np.flatnonzero(label > 0), np.flatnonzero(label == 0)
            n_moving = min(len(moving), max(n - len(still), int(round(n * d.moving_share))))
            picks = rng.permutation(np.concatenate([rng.choice(moving, n_moving, replace=False),
                                                    rng.choice(still, n - n_moving, replace=False)]))
            out[rows] = np.stack([np.full(n, float(t)), picks % d.width, picks // d.width], 1)
        return out

    def track(self, video: int, queries: np.ndarray, times: Optional[Sequence[int]] = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact tracks of query points (N, 3) (t, x, y) at ``times`` (default every frame):
        trajs float64 (T, N, 2), visible and valid bool (T, N)."""
        d = self.domain
        scene = self.scene(video)
        q = np.asarray(queries, dtype=np.float64).reshape(-1, 3)
        times = list(range(d.frames)) if times is None else [int(t) for t in times]
        layer_of = np.empty(len(q), dtype=np.int64)
        local = np.empty((len(q), 2))
        for tq in np.unique(q[:, 0]):
            rows = np.flatnonzero(q[:, 0] == tq)
            x, y = q[rows, 1], q[rows, 2]
            layer_of[rows] = label = self.renderer._labels(scene, float(tq), x, y)
            for k in np.unique(label):
                sel = label == k
                local[rows[sel]] = np.stack(scene.layers[k].to_local(float(tq), x[sel], y[sel]), 1)
        groups = [(scene.layers[k], layer_of == k) for k in np.unique(layer_of)]
        trajs = np.empty((len(times), len(q), 2))
        visible = np.empty((len(times), len(q)), dtype=bool)
        for i, t in enumerate(times):
            for layer, sel in groups:
                trajs[i, sel] = np.stack(layer.to_image(float(t), local[sel, 0], local[sel, 1]), 1)
            at_query = q[:, 0] == t
            trajs[i, at_query] = q[at_query, 1:]  # exactly, not up to the round trip's round-off
            # covered only by a higher layer: a point on its own layer's edge stays visible despite round-off
            visible[i] = self.renderer._labels(scene, float(t), trajs[i, :, 0], trajs[i, :, 1]) <= layer_of
        valid = ((trajs[..., 0] >= 0) & (trajs[..., 0] <= d.width - 1) &
                 (trajs[..., 1] >= 0) & (trajs[..., 1] <= d.height - 1))
        return trajs, visible & valid, valid

    def frames(self, video: int, times: Sequence[int]) -> np.ndarray:
        """float32 (len(times), 3, H, W), each frame rendered once."""
        return np.stack([self.renderer.frame(video, int(t)) for t in times])

    def videos(self) -> dict[int, VideoSpan]:
        """{video: (name, [index])}, the protocol of the flow datasets (one item per video here)."""
        return {v: VideoSpan(f"{self.domain.name}_{v:04d}", [v]) for v in range(len(self))}

    def __getitem__(self, video: int) -> dict[str, torch.Tensor]:
        video = int(video)
        if not 0 <= video < len(self):
            raise IndexError(f"video {video} out of range for {len(self)} videos")
        frames = self.query_frames()
        rng = np.random.default_rng([self.seed, video, 2])
        queries = self.sample_queries(video, [frames[i % len(frames)] for i in range(self.num_points)], rng)
        trajs, visible, valid = self.track(video, queries)
        return {"frames": torch.from_numpy(self.frames(video, range(self.domain.frames))),
                "trajs": torch.from_numpy(trajs.astype(np.float32)),
                "visible": torch.from_numpy(visible), "valid": torch.from_numpy(valid),
                "queries": torch.from_numpy(queries.astype(np.float32)),
                "video": torch.tensor(video, dtype=torch.int64), "index": torch.tensor(video, dtype=torch.int64)}


class SyntheticTrackClips(Dataset):
    """Training clips: ``clip_frames``-frame windows of ``SyntheticTrackVideos``, starting every
    ``clip_stride`` frames (default: back to back), with N points queried on (and so visible at)
    each window's first frame; index = video * clips_per_video + clip.

    Items: the video keys over the window (``frames`` (S, 3, H, W), ``trajs`` (S, N, 2),
    ``visible``, ``valid`` (S, N), ``queries`` (N, 3) with t = 0), plus int64 ``video``, ``index``,
    ``clip`` (window number in its video) and ``frame`` (the window's first frame in its video).
    """

    def __init__(self, domain: Any = None, num_videos: int = 16, seed: int = 0, num_points: Optional[int] = None,
                 clip_frames: int = 8, clip_stride: Optional[int] = None, key: str = "synthetic") -> None:
        self.tracks = SyntheticTrackVideos(domain, num_videos, seed, num_points, key)
        self.domain = self.tracks.domain
        stride = clip_frames if clip_stride is None else clip_stride
        check({"clip_frames": clip_frames, "clip_stride": stride}, "SyntheticTrackClips", clip_frames=integer(2),
              clip_stride=integer(1))
        if clip_frames > self.domain.frames:
            raise UserError(f"{key}.frames: videos of {self.domain.frames} frames cannot hold clips of "
                            f"{clip_frames} frames")
        self.clip_frames, self.clip_stride = int(clip_frames), int(stride)
        self.clips_per_video = (self.domain.frames - self.clip_frames) // self.clip_stride + 1

    def __len__(self) -> int:
        return len(self.tracks) * self.clips_per_video

    def clips_of(self, video: int) -> list[int]:
        if not 0 <= video < len(self.tracks):
            raise IndexError(f"video {video} out of range for {len(self.tracks)} videos")
        return list(range(video * self.clips_per_video, (video + 1) * self.clips_per_video))

    def videos(self) -> dict[int, VideoSpan]:
        """{video: (name, clip indices in frame order)}, for per-video refinement."""
        return {v: VideoSpan(f"{self.domain.name}_{v:04d}", self.clips_of(v)) for v in range(len(self.tracks))}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} clips")
        video, clip = divmod(index, self.clips_per_video)
        start = clip * self.clip_stride
        times = range(start, start + self.clip_frames)
        rng = np.random.default_rng([self.tracks.seed, video, 3, start])
        queries = self.tracks.sample_queries(video, [start] * self.tracks.num_points, rng)
        trajs, visible, valid = self.tracks.track(video, queries, times)
        queries[:, 0] = 0.0  # in clip time
        as64 = lambda v: torch.tensor(v, dtype=torch.int64)  # noqa: E731
        return {"frames": torch.from_numpy(self.tracks.frames(video, times)),
                "trajs": torch.from_numpy(trajs.astype(np.float32)),
                "visible": torch.from_numpy(visible), "valid": torch.from_numpy(valid),
                "queries": torch.from_numpy(queries.astype(np.float32)),
                "video": as64(video), "index": as64(index), "clip": as64(clip), "frame": as64(start)}
