"""Data for 2D -> 3D pose lifting: a source domain to train on, a target domain to adapt to.

Each domain is synthetic (the embedded default, ``SyntheticPoseDomain``) or a real
dataset read from its released files (Human3.6M / VideoPose3D npz, MPI-INF-3DHP
test npz, 3DPW pickles). Batches, the same for every domain: ``pose2d``, ``pose3d``,
``index`` (+ ``camera``, ``root_position``, ``root_depth`` where the dataset knows them).

Parts: ``train`` and ``val`` come from the source, ``test`` from ``test_domain``
("source" for train.py's final test, "target" for adapt.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
from torch.utils.data import Dataset, Subset

from datamodules.domains import DOMAINS, SourceTargetDataModule, plain
from datamodules.readers.h36m import TEST_SUBJECTS, TRAIN_SUBJECTS, H36MDataset
from datamodules.readers.mpi_inf_3dhp import DEFAULT_FILENAME, MPIInf3DHPDataset
from datamodules.readers.pw3d import PW3DDataset
from datamodules.synthetic.skeleton_poses import (SyntheticPoseDataset, SyntheticPoseDomain, lab_domain,
                                                  validate_domain, wild_domain)
from framework.checks import OneOf, at_least, check, fraction
from framework.errors import UserError

KINDS = ("synthetic", "h36m", "mpi_inf_3dhp", "3dpw")


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


class PoseLiftingDataModule(SourceTargetDataModule):
    config_class = PoseDataConfig

    # ---- validation -------------------------------------------------------------
    def _validate(self) -> None:
        c, k = self.cfg, self.key
        check(c, k, train_length=at_least(0), val_length=at_least(0), test_length=at_least(0), num_workers=at_least(0),
              batch_size=at_least(1), test_batch_size=at_least(1), seed=at_least(0),
              val_fraction=fraction(open_low=True))
        for domain in DOMAINS:
            d = getattr(c, domain)
            check(d, f"{k}.{domain}", kind=OneOf(KINDS), stride=at_least(1))
            if d.kind == "synthetic":
                validate_domain(plain(d.synthetic), f"{k}.{domain}.synthetic")
        if self.test_domain == "source" and c.source.kind == "mpi_inf_3dhp":
            raise UserError(f"{k}.source.kind: mpi_inf_3dhp holds only the 3DHP test set; use it as the target")

    def _build(self, name: str, part: str) -> Dataset:
        c, d = self.cfg, getattr(self.cfg, name)
        where = f"{self.key}.{name}"
        if d.kind == "synthetic":
            length = {"train": c.train_length, "val": c.val_length, "test": c.test_length}[part]
            return SyntheticPoseDataset(plain(d.synthetic), length, self.synthetic_seed(name, part),
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
