"""Data for body pose priors and for fitting bodies with them.

- ``source``: the pose collection a prior learns from. ``synthetic`` (embedded): the people world's
  motions (``pose_collection``), 15 rotations of the procedural body; ``amass``: SMPL-family fits
  under ``root`` (``readers/amass.py``), for a prior of the SMPL body. Split by sequence: every
  ``val_every``-th sequence validates, so no validation pose is a neighbour frame of a training one.
  Items: ``pose`` float32 (J, 3) angle-axis, ``sequence`` and ``index`` int64.
- ``target``: single-person crops of the people world (``PeopleCrops``: image, COCO keypoints,
  H36M joints, part mask, the true body parameters, camera), what bodies are fitted to at test time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.domains import SourceTargetDataModule, plain
from datamodules.readers.amass import read_amass
from datamodules.synthetic.people_datasets import PeopleCrops
from datamodules.synthetic.people_scenes import as_people_domain, pose_collection, validate_people_domain
from framework.checks import OneOf, at_least, check
from framework.errors import UserError

COLLECTION_KINDS = ("synthetic", "amass")


@dataclass
class PoseCollectionConfig:
    kind: str = "synthetic"  # synthetic | amass
    root: Optional[str] = None  # amass: the folder of fits (searched recursively)
    stride: int = 1  # amass: every stride-th frame
    # synthetic: motions of this people-world domain, sequences x frames poses
    people: dict = field(default_factory=lambda: {"preset": "studio"})
    sequences: int = 400
    frames: int = 50


@dataclass
class CropDomainConfig:
    kind: str = "people"  # the people world's single-person crops
    people: dict = field(default_factory=lambda: {"preset": "street"})
    videos: int = 125
    crops_per_video: int = 4
    size: int = 128


@dataclass
class PriorDataConfig:
    source: PoseCollectionConfig = field(default_factory=PoseCollectionConfig)
    target: CropDomainConfig = field(default_factory=CropDomainConfig)
    val_every: int = 10
    batch_size: int = 256
    test_batch_size: int = 25
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = 0


class PoseCollection(Dataset):
    """Poses (module doc) held in memory: a collection is a few MB."""

    def __init__(self, pose: np.ndarray, sequence: np.ndarray) -> None:
        self.pose = torch.from_numpy(np.ascontiguousarray(pose, dtype=np.float32))
        self.sequence = torch.from_numpy(np.asarray(sequence, dtype=np.int64))

    @property
    def joints(self) -> int:
        return int(self.pose.shape[1])

    def __len__(self) -> int:
        return len(self.pose)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"pose": self.pose[index], "sequence": self.sequence[index], "index": torch.tensor(index)}


class PosePriorDataModule(SourceTargetDataModule):
    config_class = PriorDataConfig

    def _validate(self) -> None:
        c, k = self.cfg, self.key
        check(c, k, val_every=at_least(2), batch_size=at_least(1), test_batch_size=at_least(1),
              num_workers=at_least(0), seed=at_least(0))
        s = c.source
        check(s, f"{k}.source", kind=OneOf(COLLECTION_KINDS), stride=at_least(1), sequences=at_least(2),
              frames=at_least(1))
        if s.kind == "synthetic":
            validate_people_domain(as_people_domain(plain(s.people), f"{k}.source.people"), f"{k}.source.people")
        t = c.target
        check(t, f"{k}.target", kind=OneOf(("people",)), videos=at_least(1), crops_per_video=at_least(1),
              size=at_least(32))
        validate_people_domain(as_people_domain(plain(t.people), f"{k}.target.people"), f"{k}.target.people")

    def collection(self) -> dict[str, np.ndarray]:
        """The whole source collection (both parts), read or made once."""
        if not hasattr(self, "_collection"):
            s = self.cfg.source
            if s.kind == "amass":
                self._collection = read_amass(self._check_root("source"), s.stride)
            else:
                made = pose_collection(plain(s.people), s.sequences, s.frames, self.cfg.seed,
                                       key=f"{self.key}.source.people")
                self._collection = {"pose": made["pose"], "sequence": made["sequence"]}
        return self._collection

    def _build(self, name: str, part: str) -> Dataset:
        if name == "target":
            if part != "test":
                raise UserError(f"{self.key}.target: the crops are fitted at test time (adapt.py); "
                                f"priors train on {self.key}.source")
            t = self.cfg.target
            return PeopleCrops(plain(t.people), t.videos, self.synthetic_seed(name, part), t.size, t.crops_per_video,
                               key=f"{self.key}.target.people")
        data = self.collection()
        validating = data["sequence"] % self.cfg.val_every == 0
        keep = ~validating if part == "train" else validating
        if not keep.any():
            raise UserError(f"{self.key}.val_every: the collection has {len(np.unique(data['sequence']))} sequences, "
                            f"none left for the {part} part")
        return PoseCollection(data["pose"][keep], data["sequence"][keep])
