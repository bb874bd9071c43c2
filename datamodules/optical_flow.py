"""Data for optical flow: a source domain to train on, a target domain to adapt to.

Each domain is synthetic (``SyntheticFlowDomain``, the embedded default) or a real benchmark
read from its released files (MPI-Sintel, FlyingChairs, FlyingThings3D, KITTI 2015). Batches
hold ``image1``, ``image2`` (B, 3, H, W) in 0..255, ``flow`` (B, 2, H, W), ``valid`` (B, H, W),
``index`` (+ ``video``, ``frame`` where the set is made of videos).

Parts: ``train`` (augmented with the RAFT authors' augmentation and cropped) and ``val`` come from
the source, ``test`` from ``test_domain`` ("source" for train.py, "target" for adapt.py). The
augmentation of sample i in epoch e draws from ``default_rng((seed, e, i))``: the training sampler
hands the epoch along with the index, so it holds in worker processes and across resumes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.utils.data import DataLoader, Dataset

from datamodules.flow_augment import FlowAugmentor, SparseFlowAugmentor
from datamodules.readers.flow_datasets import (DENSE_VALID_LIMIT, FlyingChairs, FlyingThings3D, Kitti2015,
                                               MpiSintel)
from datamodules.sampling import EpochSeededSampler
from datamodules.synthetic.flow_scenes import (SyntheticFlowDomain, SyntheticFlowPairs, flow_source_domain,
                                               flow_target_domain, validate_domain)
from framework.errors import UserError

KINDS = ("synthetic", "sintel", "chairs", "things", "kitti")
DOMAINS = ("source", "target")
PARTS = ("train", "val", "test")
MIN_SIZE = 64  # smallest frame side RAFT takes: 1/8 resolution, then 3 poolings of the correlation


@dataclass
class FlowDomainConfig:
    """Where one domain's pairs come from. Keys of other kinds are ignored."""

    kind: str = "synthetic"  # synthetic | sintel | chairs | things | kitti
    root: Optional[str] = None  # dataset folder (real kinds only)
    pass_name: str = "clean"  # sintel: clean | final; things: the pass of the frames
    # split of each part (None: the kind's default; see _SPLITS)
    train_split: Optional[str] = None
    val_split: Optional[str] = None
    test_split: Optional[str] = None
    synthetic: SyntheticFlowDomain = field(default_factory=flow_source_domain)


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
# Synthetic seed of each (domain, part): seed * 8 + code, so every part renders its own videos.
_SEED_CODE = {("source", "train"): 0, ("source", "val"): 1, ("source", "test"): 2,
              ("target", "train"): 3, ("target", "val"): 4, ("target", "test"): 5}


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_object(cfg) if OmegaConf.is_config(cfg) else cfg


class EpochTaggedSampler(EpochSeededSampler):
    """An EpochSeededSampler that yields ``(epoch, index)``, for datasets that augment per epoch."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, i) for i in self.permutation().tolist()])


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
        item.pop("occlusion", None)  # not carried through the spatial transform
        item["image1"] = torch.from_numpy(np.ascontiguousarray(img1, dtype=np.float32)).permute(2, 0, 1).contiguous()
        item["image2"] = torch.from_numpy(np.ascontiguousarray(img2, dtype=np.float32)).permute(2, 0, 1).contiguous()
        item["flow"] = torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1).contiguous()
        item["valid"] = torch.from_numpy(np.ascontiguousarray(valid, dtype=np.float32))
        return item


class OpticalFlowDataModule(pl.LightningDataModule):
    def __init__(self, cfg: Any, test_domain: str = "source", key: str = "data") -> None:
        super().__init__()
        if test_domain not in DOMAINS:
            raise UserError(f"test_domain must be one of {', '.join(DOMAINS)}, got '{test_domain}'")
        cfg = _plain(cfg)
        if isinstance(cfg, dict):
            try:
                cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(FlowDataConfig), cfg))
            except OmegaConfBaseException as e:
                raise UserError(f"{key}: {str(e).splitlines()[0]}") from None
        self.cfg: FlowDataConfig = cfg
        self.key = key
        self.test_domain = test_domain
        self._validate()
        self._datasets: dict[tuple[str, str], Dataset] = {}

    # ---- validation -------------------------------------------------------------
    def _validate(self) -> None:
        c, k = self.cfg, self.key
        for name in ("train_videos", "val_videos", "test_videos", "num_workers", "seed"):
            if getattr(c, name) < 0:
                raise UserError(f"{k}.{name}: must be >= 0, got {getattr(c, name)}")
        for name in ("batch_size", "test_batch_size"):
            if getattr(c, name) < 1:
                raise UserError(f"{k}.{name}: must be >= 1, got {getattr(c, name)}")
        crop = list(c.crop_size)
        if len(crop) != 2 or any(int(v) < MIN_SIZE or int(v) % 8 for v in crop):
            raise UserError(f"{k}.crop_size: expected [height, width], multiples of 8 and at least {MIN_SIZE} "
                            f"(RAFT pools its correlation 3 times at 1/8 resolution), got {crop}")
        if c.min_scale > c.max_scale:
            raise UserError(f"{k}.min_scale: {c.min_scale} exceeds max_scale {c.max_scale}")
        for domain in DOMAINS:
            d = getattr(c, domain)
            if d.kind not in KINDS:
                raise UserError(f"{k}.{domain}.kind: unknown dataset kind '{d.kind}'; expected one of {', '.join(KINDS)}")
            if d.kind == "synthetic":
                validate_domain(_plain(d.synthetic), f"{k}.{domain}.synthetic")
            if d.pass_name not in ("clean", "final"):
                raise UserError(f"{k}.{domain}.pass_name: must be clean or final, got '{d.pass_name}'")
        # roots are checked up front for the domain this run reads most (source when training)
        self._check_root("source" if self.test_domain == "source" else "target")

    def _check_root(self, domain: str) -> Path | None:
        d = getattr(self.cfg, domain)
        if d.kind == "synthetic":
            return None
        if not d.root:
            raise UserError(f"{self.key}.{domain}.root: must be set for kind={d.kind}")
        root = Path(d.root).expanduser()
        if not root.exists():
            raise UserError(f"{self.key}.{domain}.root: {d.root} does not exist")
        return root

    # ---- datasets ---------------------------------------------------------------
    def domain_dataset(self, name: str, part: str = "test") -> Dataset:
        """The ``part`` (train / val / test) of domain ``name`` (source / target), built once."""
        if name not in DOMAINS:
            raise UserError(f"domain must be one of {', '.join(DOMAINS)}, got '{name}'")
        if part not in PARTS:
            raise UserError(f"part must be one of {', '.join(PARTS)}, got '{part}'")
        if (name, part) not in self._datasets:
            self._datasets[(name, part)] = self._build(name, part)
        return self._datasets[(name, part)]

    def _build(self, name: str, part: str) -> Dataset:
        c, d = self.cfg, getattr(self.cfg, name)
        where = f"{self.key}.{name}"
        if d.kind == "synthetic":
            videos = {"train": c.train_videos, "val": c.val_videos, "test": c.test_videos}[part]
            base: Dataset = SyntheticFlowPairs(_plain(d.synthetic), videos, c.seed * 8 + _SEED_CODE[(name, part)],
                                               key=f"{where}.synthetic")
        else:
            root = self._check_root(name)
            split = getattr(d, f"{part}_split") or _SPLITS[d.kind][part]
            try:
                if d.kind == "sintel":
                    base = MpiSintel(root, split=split, pass_name=d.pass_name)
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

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit"):
            self.domain_dataset("source", "train")
        if stage in (None, "fit", "validate"):
            self.domain_dataset("source", "val")
        if stage in (None, "test", "predict"):
            self.domain_dataset(self.test_domain, "test")

    # ---- loaders ----------------------------------------------------------------
    def _loader(self, dataset: Dataset, batch_size: int, sampler: Any = None, drop_last: bool = False) -> DataLoader:
        workers = self.cfg.num_workers
        generator = torch.Generator().manual_seed(self.cfg.seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                          pin_memory=self.cfg.pin_memory, persistent_workers=workers > 0, drop_last=drop_last,
                          generator=generator)

    def train_dataloader(self) -> DataLoader:
        dataset = self.domain_dataset("source", "train")
        cls = EpochTaggedSampler if isinstance(dataset, AugmentedFlowPairs) else EpochSeededSampler
        return self._loader(dataset, self.cfg.batch_size, cls(len(dataset), self.cfg.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.domain_dataset("source", "val"), self.cfg.test_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.domain_dataset(self.test_domain, "test"), self.cfg.test_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
