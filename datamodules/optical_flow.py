"""Data for optical flow: a source domain to train on, a target domain to adapt to.

Each domain is synthetic (``SyntheticFlowDomain``, the embedded default) or a real benchmark
read from its released files (MPI-Sintel, FlyingChairs, FlyingThings3D, KITTI 2015), or the user's
own footage (a video file or a folder of frames; no ground truth, so only as a test / target part),
or Human3.6M / 3DPW videos with their ground-truth joints and no flow (``readers/posed_videos.py``;
test / target parts only, for the methods that score poses on them).
Batches hold ``image1``, ``image2`` (B, 3, H, W) in 0..255, ``flow`` (B, 2, H, W), ``valid`` (B, H, W)
(not for footage), ``index`` (+ ``video``, ``frame`` where the set is made of videos).

Parts: ``train`` (augmented with the RAFT authors' augmentation and cropped) and ``val`` come from
the source, ``test`` from ``test_domain`` ("source" for train.py, "target" for adapt.py). The
augmentation of sample i in epoch e draws from ``default_rng((seed, e, i))``: the training sampler
hands the epoch along with the index, so it holds in worker processes and across resumes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from datamodules.domains import DOMAINS, SourceTargetDataModule, plain
from datamodules.flow_augment import FlowAugmentor, SparseFlowAugmentor
from datamodules.readers.flow_datasets import (DENSE_VALID_LIMIT, SINTEL_HUMAN_SCENES, FlyingChairs, FlyingThings3D,
                                               Kitti2015, MpiSintel)
from datamodules.readers.footage import UserFootage
from datamodules.readers.posed_videos import PosedVideoPairs, h36m_videos, pw3d_videos
from datamodules.sampling import EpochSeededSampler, EpochTaggedSampler
from datamodules.synthetic.people_datasets import PeopleFlowPairs
from datamodules.synthetic.people_scenes import as_people_domain, validate_people_domain
from datamodules.synthetic.flow_scenes import (SyntheticFlowDomain, SyntheticFlowPairs, flow_source_domain,
                                               flow_target_domain, validate_domain)
from framework.checks import OneOf, at_least, check
from framework.errors import UserError

KINDS = ("synthetic", "people", "sintel", "chairs", "things", "kitti", "footage", "h36m", "3dpw")
TEST_ONLY_KINDS = ("footage", "h36m", "3dpw")
MIN_SIZE = 64  # smallest frame side RAFT takes: 1/8 resolution, then 3 poolings of the correlation


@dataclass
class FlowDomainConfig:
    """Where one domain's pairs come from. Keys of other kinds are ignored."""

    kind: str = "synthetic"  # synthetic | people | sintel | chairs | things | kitti | footage | h36m | 3dpw
    root: Optional[str] = None  # dataset folder (real kinds only); footage: a video file or a folder of frames
    # h36m only (root: the VideoPose3D folder): the videos' folder (None: root), which sequences, the 2D file
    frames: Optional[str] = None
    subjects: list[str] = field(default_factory=lambda: ["S9", "S11"])
    actions: Optional[list[str]] = None  # None: all
    cameras: Optional[list[int]] = None  # indices 0..3 of the four cameras; None: all
    keypoints: str = "gt"  # data_2d_h36m_<keypoints>.npz, or projected
    pass_name: str = "clean"  # sintel: clean | final; things: the pass of the frames
    scenes: Optional[list[str]] = None  # sintel: only these scenes ([humans]: those of SINTEL_HUMAN_SCENES); None: all
    # split of each part (None: the kind's default; see _SPLITS)
    train_split: Optional[str] = None
    val_split: Optional[str] = None
    test_split: Optional[str] = None
    # footage, h36m, 3dpw: keep every frame_step-th frame, at most max_frames of them (per video), resized to [height, width]
    max_frames: Optional[int] = None
    frame_step: int = 1
    resize: Optional[list[int]] = None
    synthetic: SyntheticFlowDomain = field(default_factory=flow_source_domain)
    # kind people: single-person videos of the synthetic people world (a preset name or its fields)
    people: dict = field(default_factory=lambda: {"preset": "studio"})


@dataclass
class FlowDataConfig:
    source: FlowDomainConfig = field(default_factory=FlowDomainConfig)
    target: FlowDomainConfig = field(default_factory=lambda: FlowDomainConfig(synthetic=flow_target_domain()))
    # synthetic domains: videos per part (each gives frames - 1 pairs)
    train_videos: int = 200
    val_videos: int = 10
    test_videos: int = 10
    # training crop (height, width) and augmentation
    crop_size: list[int] = field(default_factory=lambda: [64, 96])
    min_scale: float = -0.2
    max_scale: float = 0.5
    do_flip: bool = True
    eraser_bounds: list[int] = field(default_factory=lambda: [50, 100])
    augment: bool = True
    batch_size: int = 6
    test_batch_size: int = 4
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = 0


# default split of each (kind, part)
_SPLITS = {
    "sintel": {"train": "training", "val": "training", "test": "training"},
    "chairs": {"train": "train", "val": "val", "test": "val"},
    "things": {"train": "TRAIN", "val": "TEST", "test": "TEST"},
    "kitti": {"train": "training", "val": "training", "test": "training"},
}
_CARRIED = ("image1", "image2", "flow", "valid", "index", "video", "frame")


class AugmentedFlowPairs(Dataset):
    """Applies a flow augmentor to another flow-pair dataset. Keys are ``index`` or ``(epoch, index)``;
    the augmentation of ``(e, i)`` draws from ``default_rng((seed, e, i))``."""

    def __init__(self, base: Dataset, augmentor, seed: int = 0, sparse: bool = False) -> None:
        self.base, self.augmentor, self.seed, self.sparse = base, augmentor, int(seed), sparse

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        epoch, index = (0, key) if isinstance(key, (int, np.integer)) else key
        item = dict(self.base[int(index)])
        img1 = item["image1"].permute(1, 2, 0).numpy()
        img2 = item["image2"].permute(1, 2, 0).numpy()
        flow = item["flow"].permute(1, 2, 0).numpy()
        rng = np.random.default_rng((self.seed, int(epoch), int(index)))
        if self.sparse:
            img1, img2, flow, valid = self.augmentor(img1, img2, flow, item["valid"].numpy() >= 0.5, rng)
        else:
            img1, img2, flow = self.augmentor(img1, img2, flow, rng)
            valid = (np.abs(flow[..., 0]) < DENSE_VALID_LIMIT) & (np.abs(flow[..., 1]) < DENSE_VALID_LIMIT)
        for key in [k for k in item if k not in _CARRIED]:  # occlusion, masks, joints: not carried through the crop
            item.pop(key)
        item["image1"] = torch.from_numpy(np.ascontiguousarray(img1, dtype=np.float32)).permute(2, 0, 1).contiguous()
        item["image2"] = torch.from_numpy(np.ascontiguousarray(img2, dtype=np.float32)).permute(2, 0, 1).contiguous()
        item["flow"] = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1).contiguous()
        item["valid"] = torch.from_numpy(np.ascontiguousarray(valid, dtype=np.float32))
        return item


class OpticalFlowDataModule(SourceTargetDataModule):
    config_class = FlowDataConfig

    # ---- validation -------------------------------------------------------------
    def _validate(self) -> None:
        c, k = self.cfg, self.key
        check(c, k, train_videos=at_least(0), val_videos=at_least(0), test_videos=at_least(0), num_workers=at_least(0),
              seed=at_least(0), batch_size=at_least(1), test_batch_size=at_least(1))
        crop = list(c.crop_size)
        if len(crop) != 2 or any(int(v) < MIN_SIZE or int(v) % 8 for v in crop):
            raise UserError(f"{k}.crop_size: must be [height, width], multiples of 8 and at least {MIN_SIZE} "
                            f"(RAFT pools its correlation 3 times at 1/8 resolution), got {crop}")
        if c.min_scale > c.max_scale:
            raise UserError(f"{k}.min_scale: must be <= max_scale ({c.max_scale}), got {c.min_scale}")
        for domain in DOMAINS:
            d = getattr(c, domain)
            check(d, f"{k}.{domain}", kind=OneOf(KINDS))
            if d.kind == "synthetic":
                validate_domain(plain(d.synthetic), f"{k}.{domain}.synthetic")
            if d.kind == "people":
                validate_people_domain(as_people_domain(plain(d.people), f"{k}.{domain}.people"), f"{k}.{domain}.people")
            check(d, f"{k}.{domain}", pass_name=OneOf(("clean", "final")))
            self._validate_footage(d, f"{k}.{domain}")

    @staticmethod
    def _validate_footage(d: FlowDomainConfig, where: str) -> None:
        check(d, where, frame_step=at_least(1), max_frames=at_least(2, optional=True))  # a pair needs two frames
        if d.resize is not None and (len(d.resize) != 2 or any(int(v) < MIN_SIZE for v in d.resize)):
            raise UserError(f"{where}.resize: must be [height, width], each at least {MIN_SIZE} (RAFT's smallest "
                            f"frame), or null, got {list(d.resize)}")

    def _build(self, name: str, part: str) -> Dataset:
        c, d = self.cfg, getattr(self.cfg, name)
        where = f"{self.key}.{name}"
        videos = {"train": c.train_videos, "val": c.val_videos, "test": c.test_videos}[part]
        if d.kind == "synthetic":
            base: Dataset = SyntheticFlowPairs(plain(d.synthetic), videos, self.synthetic_seed(name, part),
                                               key=f"{where}.synthetic")
        elif d.kind == "people":
            base = PeopleFlowPairs(plain(d.people), videos, self.synthetic_seed(name, part), key=f"{where}.people")
        else:
            root = self._check_root(name)
            if d.kind in TEST_ONLY_KINDS:
                return self._footage(d, root, where, part)
            split = getattr(d, f"{part}_split") or _SPLITS[d.kind][part]
            try:
                if d.kind == "sintel":
                    scenes = d.scenes
                    if scenes == ["humans"]:  # the human scenes this copy of Sintel has
                        present = root / split / d.pass_name
                        scenes = [s for s in SINTEL_HUMAN_SCENES if (present / s).is_dir()]
                        if not scenes:
                            raise UserError(f"scenes: none of the Sintel human scenes is in {present}")
                    base = MpiSintel(root, split=split, pass_name=d.pass_name, scenes=scenes)
                elif d.kind == "chairs":
                    base = FlyingChairs(root, split=split)
                elif d.kind == "things":
                    base = FlyingThings3D(root, split=split, passes=(d.pass_name,))
                else:
                    base = Kitti2015(root, split=split)
            except UserError as e:
                raise UserError(f"{where}: {e}") from None
        if part == "train" and c.augment:
            sparse = d.kind == "kitti"
            cls = SparseFlowAugmentor if sparse else FlowAugmentor
            augmentor = cls(tuple(c.crop_size), c.min_scale, c.max_scale, do_flip=c.do_flip,
                            eraser_bounds=tuple(c.eraser_bounds))
            return AugmentedFlowPairs(base, augmentor, c.seed, sparse=sparse)
        return base

    @staticmethod
    def _footage(d: FlowDomainConfig, root, where: str, part: str) -> Dataset:
        if part != "test":
            raise UserError(f"{where}.kind: {d.kind} has no ground-truth flow; use it as data.target (adapt.py), "
                            f"not for training")
        resize = None if d.resize is None else list(d.resize)
        try:
            if d.kind == "footage":
                return UserFootage(root, max_frames=d.max_frames, frame_step=d.frame_step, resize=resize,
                                   min_size=MIN_SIZE)
            if d.kind == "h36m":
                videos = h36m_videos(root, d.frames, d.subjects, d.actions, d.cameras, d.keypoints)
            else:
                videos = pw3d_videos(root, d.test_split or "test")
            return PosedVideoPairs(videos, max_frames=d.max_frames, frame_step=d.frame_step, resize=resize,
                                   min_size=MIN_SIZE)
        except UserError as e:
            raise UserError(f"{where}: {e}") from None

    def train_sampler(self, dataset: Dataset) -> Sampler:
        cls = EpochTaggedSampler if isinstance(dataset, AugmentedFlowPairs) else EpochSeededSampler
        return cls(len(dataset), self.cfg.seed)
