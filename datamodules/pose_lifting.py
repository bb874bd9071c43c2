"""Data for 2D -> 3D pose lifting: a source domain to train on, a target domain to adapt to.

Each domain is synthetic (the embedded default, ``SyntheticPoseDomain``) or a real
dataset read from its released files (Human3.6M / VideoPose3D npz, MPI-INF-3DHP
test npz, 3DPW pickles). Batches follow /work/spec.md: ``pose2d``, ``pose3d``,
``index`` (+ ``camera``, ``root_position``, ``root_depth`` where the dataset knows them).

Parts: ``train`` and ``val`` come from the source, ``test`` from ``test_domain``
("source" for train.py's final test, "target" for adapt.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.utils.data import DataLoader, Dataset, Subset

from datamodules.readers.h36m import TEST_SUBJECTS, TRAIN_SUBJECTS, H36MDataset
from datamodules.readers.mpi_inf_3dhp import DEFAULT_FILENAME, MPIInf3DHPDataset
from datamodules.readers.pw3d import PW3DDataset
from datamodules.sampling import EpochSeededSampler
from datamodules.synthetic.skeleton_poses import (SyntheticPoseDataset, SyntheticPoseDomain, lab_domain,
                                                  validate_domain, wild_domain)
from framework.errors import UserError

KINDS = ("synthetic", "h36m", "mpi_inf_3dhp", "3dpw")
DOMAINS = ("source", "target")
PARTS = ("train", "val", "test")


@dataclass
class PoseDomainConfig:
    """Where one domain's samples come from. Keys of other kinds are ignored."""

    kind: str = "synthetic"  # synthetic | h36m | mpi_inf_3dhp | 3dpw
    root: Optional[str] = None  # dataset folder (real kinds only)
    stride: int = 1  # keep every stride-th frame (real kinds)
    # h36m
    train_subjects: list[str] = field(default_factory=lambda: list(TRAIN_SUBJECTS))
    test_subjects: list[str] = field(default_factory=lambda: list(TEST_SUBJECTS))
    actions: list[str] = field(default_factory=list)  # empty: all; "Walking" also matches "Walking 1"
    keypoints: str = "gt"  # 2D file data_2d_h36m_<keypoints>.npz, or "projected"
    # mpi_inf_3dhp (test set only)
    filename: str = DEFAULT_FILENAME
    valid_only: bool = True  # 3dhp valid frames / 3dpw campose_valid
    # 3dpw
    train_split: str = "train"
    test_split: str = "test"
    # synthetic
    synthetic: SyntheticPoseDomain = field(default_factory=lab_domain)


@dataclass
class PoseDataConfig:
    source: PoseDomainConfig = field(default_factory=PoseDomainConfig)
    target: PoseDomainConfig = field(default_factory=lambda: PoseDomainConfig(synthetic=wild_domain()))
    # synthetic domains: samples per part (train/val from the source, test from either domain)
    train_length: int = 20000
    val_length: int = 1000
    test_length: int = 1000
    # real domains: validation = this share of the test part, evenly spaced
    val_fraction: float = 0.1
    batch_size: int = 64
    test_batch_size: int = 64
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = 0


# Synthetic seed of each (domain, part): seed * 8 + code, so every part draws its own poses.
_SEED_CODE = {("source", "train"): 0, ("source", "val"): 1, ("source", "test"): 2,
              ("target", "train"): 3, ("target", "val"): 4, ("target", "test"): 5}


def _plain(cfg: Any) -> Any:
    return OmegaConf.to_object(cfg) if OmegaConf.is_config(cfg) else cfg


class PoseLiftingDataModule(pl.LightningDataModule):
    def __init__(self, cfg: Any, test_domain: str = "source", key: str = "data") -> None:
        super().__init__()
        if test_domain not in DOMAINS:
            raise UserError(f"test_domain must be one of {', '.join(DOMAINS)}, got '{test_domain}'")
        cfg = _plain(cfg)
        if isinstance(cfg, dict):
            try:
                cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(PoseDataConfig), cfg))
            except OmegaConfBaseException as e:
                raise UserError(f"{key}: {str(e).splitlines()[0]}") from None
        self.cfg: PoseDataConfig = cfg
        self.key = key
        self.test_domain = test_domain
        self._validate()
        self._datasets: dict[tuple[str, str], Dataset] = {}

    # ---- validation -------------------------------------------------------------
    def _validate(self) -> None:
        c, k = self.cfg, self.key
        for name in ("train_length", "val_length", "test_length", "num_workers"):
            if getattr(c, name) < 0:
                raise UserError(f"{k}.{name}: must be >= 0, got {getattr(c, name)}")
        for name in ("batch_size", "test_batch_size"):
            if getattr(c, name) < 1:
                raise UserError(f"{k}.{name}: must be >= 1, got {getattr(c, name)}")
        if c.seed < 0:
            raise UserError(f"{k}.seed: must be >= 0, got {c.seed}")
        if not 0.0 < c.val_fraction <= 1.0:
            raise UserError(f"{k}.val_fraction: must lie in (0, 1], got {c.val_fraction}")
        for domain in DOMAINS:
            d = getattr(c, domain)
            if d.kind not in KINDS:
                raise UserError(f"{k}.{domain}.kind: unknown dataset kind '{d.kind}'; expected one of {', '.join(KINDS)}")
            if d.stride < 1:
                raise UserError(f"{k}.{domain}.stride: must be >= 1, got {d.stride}")
            if d.kind == "synthetic":
                validate_domain(_plain(d.synthetic), f"{k}.{domain}.synthetic")
        # roots are checked up front for the domain this run reads most: the source when
        # training (train.py), the target when adapting (adapt.py); others when first built
        used = "source" if self.test_domain == "source" else "target"
        self._check_root(used)
        if used == "source" and c.source.kind == "mpi_inf_3dhp":
            raise UserError(f"{k}.source.kind: mpi_inf_3dhp holds only the 3DHP test set; use it as the target")

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
            length = {"train": c.train_length, "val": c.val_length, "test": c.test_length}[part]
            return SyntheticPoseDataset(_plain(d.synthetic), length, c.seed * 8 + _SEED_CODE[(name, part)],
                                        key=f"{where}.synthetic")
        root = self._check_root(name)
        if part == "val":
            return self._evenly_spaced(self.domain_dataset(name, "test"), c.val_fraction)
        if d.kind == "h36m":
            subjects = d.train_subjects if part == "train" else d.test_subjects
            return H36MDataset.from_root(root, subjects, d.keypoints, d.actions or None, d.stride)
        if d.kind == "mpi_inf_3dhp":
            if part == "train":
                raise UserError(f"{where}.kind: mpi_inf_3dhp holds only the 3DHP test set; it has no train part")
            return MPIInf3DHPDataset.from_root(root, d.filename, d.valid_only, d.stride)
        split = d.train_split if part == "train" else d.test_split
        return PW3DDataset.from_root(root, split, d.stride, d.valid_only)

    @staticmethod
    def _evenly_spaced(dataset: Dataset, fraction: float) -> Dataset:
        n = len(dataset)
        count = max(1, int(round(n * fraction)))
        return Subset(dataset, np.unique(np.linspace(0, n - 1, count).round().astype(int)).tolist())

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit"):
            self.domain_dataset("source", "train")
        if stage in (None, "fit", "validate"):
            self.domain_dataset("source", "val")
        if stage in (None, "test", "predict"):
            self.domain_dataset(self.test_domain, "test")

    # ---- loaders ----------------------------------------------------------------
    def _loader(self, dataset: Dataset, batch_size: int, sampler: Any = None) -> DataLoader:
        workers = self.cfg.num_workers
        # the loader draws its workers' base seed from this generator, not from the global RNG
        generator = torch.Generator().manual_seed(self.cfg.seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                          pin_memory=self.cfg.pin_memory, persistent_workers=workers > 0, drop_last=False,
                          generator=generator)

    def train_dataloader(self) -> DataLoader:
        dataset = self.domain_dataset("source", "train")
        return self._loader(dataset, self.cfg.batch_size, EpochSeededSampler(len(dataset), self.cfg.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.domain_dataset("source", "val"), self.cfg.test_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.domain_dataset(self.test_domain, "test"), self.cfg.test_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
