"""Data for the NF-prior regressor: single-person crops of the people world (``PeopleCrops``: image,
COCO keypoints, H36M joints, part mask, the true body parameters, camera) in a source domain (the
studio, fully supervised) and a target domain (the street), or a real target
(``readers/person_crops.py``): Human3.6M or 3DPW frames with their 3D truth (test only), or a
COCO-format keypoints file with optional part masks (COCO, or a user's own pictures: test, and
train for the weakly supervised continuation).

``train_domain`` chooses whose train part train.py learns from: ``source`` for the fully supervised
stage, ``target`` for the weakly supervised continuation (the paper's COCO step), which then uses
only the target's 2D keypoints and part masks. Validation always comes from the source; the test
part from ``test_domain`` as for every datamodule.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from torch.utils.data import Dataset

from datamodules.domains import DOMAINS, SourceTargetDataModule, plain
from datamodules.readers.person_crops import COCOCrops, PosedVideoCrops
from datamodules.readers.posed_videos import h36m_videos, pw3d_videos
from datamodules.synthetic.people_datasets import PeopleCrops
from datamodules.synthetic.people_scenes import as_people_domain, validate_people_domain
from framework.checks import OneOf, at_least, check, positive
from framework.errors import UserError


KINDS = ("people", "h36m", "3dpw", "coco")
TEST_ONLY_KINDS = ("h36m", "3dpw")


@dataclass
class CropsDomainConfig:
    kind: str = "people"  # people (the embedded world) | h36m | 3dpw | coco (a COCO-format keypoints file)
    people: dict = field(default_factory=lambda: {"preset": "studio"})
    size: int = 128  # crop side, pixels (a multiple of 4: the heatmaps' stride)
    crops_per_video: int = 4
    margin: float = 1.2  # real crops: the keypoints' box enlarged by this
    root: Optional[str] = None  # h36m: the VideoPose3D folder; 3dpw: the release; coco: the data set's folder
    split: str = "test"  # 3dpw: train | validation | test; coco: the keypoints file's split (e.g. val2017)
    train_split: Optional[str] = None  # coco: the split of the train part (None: split)
    frames: Optional[str] = None  # h36m: the videos or frame folders (None: root)
    subjects: list[str] = field(default_factory=lambda: ["S9", "S11"])  # h36m
    frame_step: int = 1  # h36m, 3dpw: every frame_step-th frame
    max_frames: Optional[int] = None  # h36m, 3dpw: at most this many frames a video
    annotations: Optional[str] = None  # coco: the keypoints JSON (None: root/annotations/person_keypoints_<split>.json)
    images: Optional[str] = None  # coco: the pictures' folder (None: root/<split>)
    parts: Optional[str] = None  # coco: part-mask PNGs, <annotation id>.png (None: no part masks)
    focal: float = 1.0  # coco: focal length / the picture's longer side (such pictures have no camera)


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
            kinds = KINDS if domain == "target" else ("people",)  # validation reads the source: the people world
            check(d, f"{k}.{domain}", kind=OneOf(kinds), size=at_least(32), crops_per_video=at_least(1),
                  margin=at_least(1.0), frame_step=at_least(1), focal=positive())
            if d.size % 4:
                raise UserError(f"{k}.{domain}.size: must be a multiple of 4 (the heatmaps' stride), got {d.size}")
            if d.kind == "people":
                validate_people_domain(as_people_domain(plain(d.people), f"{k}.{domain}.people"),
                                       f"{k}.{domain}.people")
        if c.train_domain == "target" and c.target.kind in TEST_ONLY_KINDS:
            raise UserError(f"{k}.train_domain=target: data.target.kind={c.target.kind} is test only; the weakly "
                            f"supervised continuation trains on 2D labels and part masks (kind people or coco)")

    def _build(self, name: str, part: str) -> Dataset:
        d = getattr(self.cfg, name)
        if d.kind != "people":
            return self._real(d, f"{self.key}.{name}", part)
        videos = {"train": self.cfg.train_videos, "val": self.cfg.val_videos, "test": self.cfg.test_videos}[part]
        return PeopleCrops(plain(d.people), videos, self.synthetic_seed(name, part), d.size, d.crops_per_video,
                           key=f"{self.key}.{name}.people")

    def _real(self, d: CropsDomainConfig, key: str, part: str) -> Dataset:
        root = Path(d.root).expanduser()
        if d.kind == "coco":
            split = d.train_split or d.split if part == "train" else d.split
            annotations = d.annotations or root / "annotations" / f"person_keypoints_{split}.json"
            return COCOCrops(annotations, d.images or root / split, d.size, d.margin, d.parts, d.focal)
        if part == "train":
            raise UserError(f"{key}.kind={d.kind} is test only")
        videos = (h36m_videos(root, d.frames, subjects=d.subjects) if d.kind == "h36m" else pw3d_videos(root, d.split))
        return PosedVideoCrops(videos, d.size, d.margin, d.frame_step, d.max_frames)

    @property
    def train_domain(self) -> str:
        return self.cfg.train_domain
