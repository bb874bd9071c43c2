"""Data for the NF-prior regressor: single-person crops of the people world (``PeopleCrops``: image,
COCO keypoints, H36M joints, part mask, the true body parameters, camera) in a source domain (the
studio, fully supervised) and a target domain (the street).

``train_domain`` chooses whose train part train.py learns from: ``source`` for the fully supervised
stage, ``target`` for the weakly supervised continuation (the paper's COCO step), which then uses
only the target's 2D keypoints and part masks. Validation always comes from the source; the test
part from ``test_domain`` as for every datamodule.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch.utils.data import Dataset

from datamodules.domains import DOMAINS, SourceTargetDataModule, plain
from datamodules.synthetic.people_datasets import PeopleCrops
from datamodules.synthetic.people_scenes import as_people_domain, validate_people_domain
from framework.checks import OneOf, at_least, check
from framework.errors import UserError


@dataclass
class CropsDomainConfig:
    kind: str = "people"
    people: dict = field(default_factory=lambda: {"preset": "studio"})
    size: int = 128  # crop side, pixels (a multiple of 4: the heatmaps' stride)
    crops_per_video: int = 4


@dataclass
class CropsDataConfig:
    source: CropsDomainConfig = field(default_factory=CropsDomainConfig)
    target: CropsDomainConfig = field(default_factory=lambda: CropsDomainConfig(people={"preset": "street"}))
    train_domain: str = "source"  # source: full supervision; target: the weakly supervised continuation
    train_videos: int = 500
    val_videos: int = 20
    test_videos: int = 125
    batch_size: int = 32
    test_batch_size: int = 25
    num_workers: int = 0
    pin_memory: bool = False
    seed: int = 0


class PeopleCropsDataModule(SourceTargetDataModule):
    config_class = CropsDataConfig

    def _validate(self) -> None:
        c, k = self.cfg, self.key
        check(c, k, train_domain=OneOf(DOMAINS), train_videos=at_least(1), val_videos=at_least(1),
              test_videos=at_least(1), batch_size=at_least(1), test_batch_size=at_least(1), num_workers=at_least(0),
              seed=at_least(0))
        for domain in DOMAINS:
            d = getattr(c, domain)
            check(d, f"{k}.{domain}", kind=OneOf(("people",)), size=at_least(32), crops_per_video=at_least(1))
            if d.size % 4:
                raise UserError(f"{k}.{domain}.size: must be a multiple of 4 (the heatmaps' stride), got {d.size}")
            validate_people_domain(as_people_domain(plain(d.people), f"{k}.{domain}.people"), f"{k}.{domain}.people")

    def _build(self, name: str, part: str) -> Dataset:
        d = getattr(self.cfg, name)
        videos = {"train": self.cfg.train_videos, "val": self.cfg.val_videos, "test": self.cfg.test_videos}[part]
        return PeopleCrops(plain(d.people), videos, self.synthetic_seed(name, part), d.size, d.crops_per_video,
                           key=f"{self.key}.{name}.people")

    @property
    def train_domain(self) -> str:
        return self.cfg.train_domain
