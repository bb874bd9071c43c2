"""Data for point tracking: a source domain to train on, a target domain to adapt to.

Each domain is synthetic (``SyntheticTrackDomain``, the embedded default), a real benchmark read
from its released files (TAP-Vid DAVIS / Kinetics pickles, CroHD sequences), or the user's own
footage (a video file or a folder of frames, queried on a grid or from a points file; no ground
truth, so only as a test / target part).

Parts: ``train`` is S-frame clips of the source with every point queried (and visible) at the
clip's first frame, under the PIPs authors' augmentation; ``val`` and ``test`` are whole videos
(``test`` from ``test_domain``: "source" for train.py, "target" for adapt.py), tracked by
chaining windows. Batches hold ``frames`` (B, T, 3, H, W) in 0..255, ``trajs`` (B, T, N, 2)
pixels, ``visible`` and ``valid`` (B, T, N), ``queries`` (B, N, 3) as (t, x, y) (not in training
clips), ``index`` and ``video``. The augmentation of clip i in epoch e draws from
``default_rng((seed, e, i))``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from datamodules.domains import DOMAINS, SourceTargetDataModule, plain
from datamodules.sampling import EpochSeededSampler, EpochTaggedSampler
from datamodules.synthetic.track_scenes import (SyntheticTrackClips, SyntheticTrackDomain, SyntheticTrackVideos,
                                                track_source_domain, track_target_domain, validate_track_domain)
from datamodules.track_augment import TrackAugmentor, trackable
from datamodules.videos import VideoSpan
from framework.checks import OneOf, at_least, check
from framework.errors import UserError

KINDS = ("synthetic", "tapvid_davis", "tapvid_kinetics", "crohd", "badja", "footage")
REAL_KINDS = ("tapvid_davis", "tapvid_kinetics", "crohd", "badja")
MIN_SIZE = 64  # smallest frame side: the 4-level correlation pyramid at stride 8


@dataclass
class TrackDomainConfig:
    """Where one domain's videos come from. Keys of other kinds are ignored."""

    kind: str = "synthetic"  # synthetic | tapvid_davis | tapvid_kinetics | crohd | badja | footage
    # tapvid: the pickle (kinetics: or a folder of them); crohd: a sequence folder or a folder of them;
    # badja: the folder with joint_annotations/; footage: a video file or a folder of frames
    root: Optional[str] = None
    query_mode: str = "first"  # tapvid: first | strided
    resize: Optional[list[int]] = None  # [height, width] frames are resized to (tapvid: 256x256 as the benchmark)
    max_videos: Optional[int] = None
    max_tracks: Optional[int] = None  # crohd: tracks kept per sequence
    max_frames: Optional[int] = None  # crohd: frames per clip (a sequence is cut into clips); footage: kept frames
    frame_step: int = 1
    queries: Optional[str] = None  # footage: a points file (x y or t x y per row); None: a grid
    grid_spacing: int = 16  # footage: px between grid queries
    synthetic: SyntheticTrackDomain = field(default_factory=track_source_domain)


@dataclass
class TrackDataConfig:
    source: TrackDomainConfig = field(default_factory=TrackDomainConfig)
    target: TrackDomainConfig = field(default_factory=lambda: TrackDomainConfig(synthetic=track_target_domain()))
    # synthetic domains: videos per part
    train_videos: int = 200
    val_videos: int = 4
    test_videos: int = 8
    clip_frames: int = 8  # S of the training clips (the model's window)
    train_points: int = 64  # points per training clip (the authors: 768)
    # the authors' augmentation, bounds in pixels of the frames here (theirs: 540x960 FlyingThings)
    augment: bool = True
    crop_size: list[int] = field(default_factory=lambda: [96, 128])
    eraser_bounds: list[int] = field(default_factory=lambda: [2, 24])
    replace_bounds: list[int] = field(default_factory=lambda: [2, 24])
    pad_bounds: list[int] = field(default_factory=lambda: [0, 16])
    resize_lim: list[float] = field(default_factory=lambda: [0.75, 1.5])
    max_crop_offset: int = 16
    batch_size: int = 4
    test_batch_size: int = 1
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = 0


class AugmentedTrackClips(Dataset):
    """Training clips under the tracker's augmentation, with ``num_points`` points that stay
    trackable (visible at frame 0 and once more); keys are ``index`` or ``(epoch, index)``."""

    def __init__(self, base: Dataset, augmentor: TrackAugmentor, num_points: int, seed: int = 0) -> None:
        self.base, self.augmentor, self.num_points, self.seed = base, augmentor, int(num_points), int(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        epoch, index = (0, key) if isinstance(key, (int, np.integer)) else key
        item = dict(self.base[int(index)])
        rng = np.random.default_rng((self.seed, int(epoch), int(index)))
        frames, trajs, visible, valid = self.augmentor(item["frames"].permute(0, 2, 3, 1).numpy(), item["trajs"].numpy(),
                                                       item["visible"].numpy(), item["valid"].numpy(), rng)
        keep = np.flatnonzero(trackable(visible))
        if len(keep) == 0:  # everything left the crop or got covered: fall back to the clip as it was
            frames, trajs = item["frames"].permute(0, 2, 3, 1).numpy(), item["trajs"].numpy()
            visible, valid = item["visible"].numpy(), item["valid"].numpy()
            keep = np.flatnonzero(trackable(visible) | visible[0])
        pick = rng.choice(keep, self.num_points, replace=len(keep) < self.num_points)
        item.pop("queries", None)
        item["frames"] = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(0, 3, 1, 2).contiguous()
        item["trajs"] = torch.from_numpy(np.ascontiguousarray(trajs[:, pick], dtype=np.float32))
        item["visible"] = torch.from_numpy(np.ascontiguousarray(visible[:, pick]))
        item["valid"] = torch.from_numpy(np.ascontiguousarray(valid[:, pick]))
        return item


class TrackVideos(Dataset):
    """A real dataset's videos (numpy frames, HWC uint8) as the batch tensors, ``video`` = index."""

    def __init__(self, base: Dataset, max_videos: Optional[int] = None) -> None:
        self.base = base
        self.length = len(base) if max_videos is None else min(len(base), int(max_videos))

    def __len__(self) -> int:
        return self.length

    def videos(self) -> dict[int, VideoSpan]:
        """{video: (name, [its one item])}, the protocol of the flow datasets."""
        names = getattr(self.base, "video_of_index", None)
        return {i: VideoSpan(names[i] if names is not None else str(i), [i]) for i in range(len(self))}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        item = self.base[index]
        frames = torch.from_numpy(np.ascontiguousarray(np.asarray(item["frames"]), dtype=np.float32))
        return {"frames": frames.permute(0, 3, 1, 2).contiguous(),
                "trajs": torch.from_numpy(np.asarray(item["trajs"], dtype=np.float32)),
                "visible": torch.from_numpy(np.asarray(item["visible"], dtype=bool)),
                "valid": torch.from_numpy(np.asarray(item["valid"], dtype=bool)),
                "queries": torch.from_numpy(np.asarray(item["queries"], dtype=np.float32)),
                "index": torch.tensor(index, dtype=torch.int64), "video": torch.tensor(index, dtype=torch.int64)}


class PointTrackingDataModule(SourceTargetDataModule):
    config_class = TrackDataConfig

    # ---- validation -------------------------------------------------------------
    def _validate(self) -> None:
        c, k = self.cfg, self.key
        check(c, k, train_videos=at_least(0), val_videos=at_least(0), test_videos=at_least(0), num_workers=at_least(0),
              seed=at_least(0), max_crop_offset=at_least(0), batch_size=at_least(1), test_batch_size=at_least(1),
              train_points=at_least(1), clip_frames=at_least(2))
        crop = list(c.crop_size)
        if len(crop) != 2 or any(int(v) < MIN_SIZE or int(v) % 8 for v in crop):
            raise UserError(f"{k}.crop_size: must be [height, width], multiples of 8 and at least {MIN_SIZE}, "
                            f"got {crop}")
        for domain in DOMAINS:
            d = getattr(c, domain)
            where = f"{k}.{domain}"
            check(d, where, kind=OneOf(KINDS))
            if d.kind == "synthetic":
                validate_track_domain(plain(d.synthetic), f"{where}.synthetic")
            check(d, where, query_mode=OneOf(("first", "strided")))
            if d.resize is not None and (len(d.resize) != 2 or any(int(v) < MIN_SIZE for v in d.resize)):
                raise UserError(f"{where}.resize: must be [height, width], each at least {MIN_SIZE}, or null, "
                                f"got {list(d.resize)}")
            check(d, where, max_videos=at_least(1, optional=True), max_tracks=at_least(1, optional=True),
                  max_frames=at_least(1, optional=True), frame_step=at_least(1), grid_spacing=at_least(1))
            if d.kind in REAL_KINDS and c.test_batch_size != 1:
                raise UserError(f"{k}.test_batch_size: must be 1 for {d.kind} ({where}.kind): its videos hold "
                                f"different numbers of points and frames")

    # ---- building -----------------------------------------------------------------
    def _build(self, name: str, part: str) -> Dataset:
        c, d = self.cfg, getattr(self.cfg, name)
        where = f"{self.key}.{name}"
        if part == "train":
            if d.kind != "synthetic":
                raise UserError(f"{where}.kind: training clips come from the synthetic videos; {d.kind} is for "
                                f"testing and adaptation (data.target)")
            base = SyntheticTrackClips(plain(d.synthetic), c.train_videos, self.synthetic_seed(name, part),
                                       num_points=max(c.train_points, plain(d.synthetic).num_points),
                                       clip_frames=c.clip_frames, key=f"{where}.synthetic")
            augmentor = TrackAugmentor(tuple(c.crop_size), photometric=c.augment, spatial=c.augment,
                                       eraser_bounds=tuple(c.eraser_bounds), replace_bounds=tuple(c.replace_bounds),
                                       pad_bounds=tuple(c.pad_bounds), resize_lim=tuple(c.resize_lim),
                                       max_crop_offset=c.max_crop_offset)
            return AugmentedTrackClips(base, augmentor, c.train_points, c.seed)
        if d.kind == "synthetic":
            videos = {"val": c.val_videos, "test": c.test_videos}[part]
            return SyntheticTrackVideos(plain(d.synthetic), videos, self.synthetic_seed(name, part),
                                        key=f"{where}.synthetic")
        root = self._check_root(name)
        try:
            if d.kind == "footage":
                if part != "test":
                    raise UserError("footage has no ground-truth tracks; use it as data.target (adapt.py)")
                from datamodules.readers.footage_tracks import FootageTracks
                return FootageTracks(root, queries=d.queries, grid_spacing=d.grid_spacing, max_frames=d.max_frames,
                                     frame_step=d.frame_step, resize=None if d.resize is None else list(d.resize),
                                     min_size=MIN_SIZE)
            return self._real(d, root)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None

    @staticmethod
    def _real(d: TrackDomainConfig, root) -> Dataset:
        resize = None if d.resize is None else tuple(int(v) for v in d.resize)
        if d.kind in ("tapvid_davis", "tapvid_kinetics"):
            from datamodules.readers.tapvid import TapVidDavis, TapVidKinetics
            cls = TapVidDavis if d.kind == "tapvid_davis" else TapVidKinetics
            base = cls(root, query_mode=d.query_mode, resize=resize or (256, 256))
        elif d.kind == "crohd":
            from datamodules.readers.crohd import CroHD
            base = CroHD(root, clip_length=d.max_frames, frame_step=d.frame_step, max_tracks=d.max_tracks,
                         resize=resize)
        else:
            from datamodules.readers.badja import Badja
            base = Badja(root, resize=resize)
        return TrackVideos(base, d.max_videos)

    def train_sampler(self, dataset: Dataset) -> Sampler:
        cls = EpochTaggedSampler if isinstance(dataset, AugmentedTrackClips) else EpochSeededSampler
        return cls(len(dataset), self.cfg.seed)
