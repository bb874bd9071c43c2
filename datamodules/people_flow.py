"""Data for flow-pose bootstrapping: videos of one person as frame pairs, with initial pose
estimates on the test part.

The optical-flow datamodule (``optical_flow.py``) with the synthetic people world as both domains
by default (``kind: people``: the ``studio`` source RAFT is trained on, the ``street`` target it is
adapted to) and the pose source of ``data.poses`` (``pose_sources.py``) added to every test item.
Batches hold the flow keys (``image1``, ``image2``, ``flow``, ``valid``) plus, on test parts,
``person_mask``, ``joints2d``, ``joints3d``, ``joint_visible`` (ground truth of frames t and t + 1)
and ``init_joints3d``, ``detections2d``, ``detection_confidence`` (the estimates).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from torch.utils.data import Dataset

from datamodules.optical_flow import FlowDataConfig, FlowDomainConfig, OpticalFlowDataModule
from datamodules.pose_sources import PoseSourceConfig, WithPoseEstimates, validate_pose_source
from datamodules.domains import plain


@dataclass
class PeopleFlowConfig(FlowDataConfig):
    source: FlowDomainConfig = field(default_factory=lambda: FlowDomainConfig(kind="people"))
    target: FlowDomainConfig = field(default_factory=lambda: FlowDomainConfig(kind="people",
                                                                              people={"preset": "street"}))
    train_videos: int = 60
    val_videos: int = 4
    test_videos: int = 8
    poses: PoseSourceConfig = field(default_factory=PoseSourceConfig)


class PeopleFlowDataModule(OpticalFlowDataModule):
    config_class = PeopleFlowConfig

    def _validate(self) -> None:
        super()._validate()
        validate_pose_source(plain(self.cfg.poses), f"{self.key}.poses")

    def _build(self, name: str, part: str) -> Dataset:
        base = super()._build(name, part)
        if part != "test":
            return base
        return WithPoseEstimates(base, plain(self.cfg.poses), f"{self.key}.poses")
