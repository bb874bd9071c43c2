"""Skeleton definitions shared by data readers, losses, metrics and drawing.

Each skeleton is a kinematic tree (``parents``) plus the left/right pairing a
horizontal flip needs. Joint order matters: checkpoints and datasets depend on it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch


@dataclass(frozen=True)
class Skeleton:
    name: str
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    root: int = 0
    flip_permutation: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.parents) != len(self.joint_names):
            raise ValueError(f"skeleton {self.name}: {len(self.parents)} parents for {len(self.joint_names)} joints")
        if len(self.left) != len(self.right):
            raise ValueError(f"skeleton {self.name}: left and right joint lists differ in length")
        perm = list(range(len(self.joint_names)))
        for a, b in zip(self.left, self.right):
            perm[a], perm[b] = b, a
        object.__setattr__(self, "flip_permutation", tuple(perm))

    @property
    def num_joints(self) -> int:
        return len(self.joint_names)

    @property
    def bones(self) -> tuple[tuple[int, int], ...]:
        """(child, parent) pairs: one bone for every non-root joint."""
        return tuple((j, p) for j, p in enumerate(self.parents) if p >= 0)

    def index(self, name: str) -> int:
        return self.joint_names.index(name)


H36M17 = Skeleton(
    name="h36m17",
    joint_names=(
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "spine", "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist",
        "right_shoulder", "right_elbow", "right_wrist",
    ),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    left=(4, 5, 6, 11, 12, 13),
    right=(1, 2, 3, 14, 15, 16),
    root=0,
)

# Order of the MPI-INF-3DHP test set annotations (``univ_annot3`` / ``annot2``).
MPI_INF_3DHP17 = Skeleton(
    name="mpi_inf_3dhp17",
    joint_names=(
        "head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
        "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
        "left_knee", "left_ankle", "pelvis", "spine", "head",
    ),
    parents=(16, 15, 1, 2, 3, 1, 5, 6, 14, 8, 9, 14, 11, 12, -1, 14, 1),
    left=(5, 6, 7, 11, 12, 13),
    right=(2, 3, 4, 8, 9, 10),
    root=14,
)

# 3DHP joint for each H36M joint (thorax ~ neck, neck/nose ~ head, head ~ head top).
MPI_INF_3DHP_TO_H36M = (14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4)

COCO17 = Skeleton(
    name="coco17",
    joint_names=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    parents=(-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14),
    left=(1, 3, 5, 7, 9, 11, 13, 15),
    right=(2, 4, 6, 8, 10, 12, 14, 16),
    root=0,
)

# The SMPL body model's own 24-joint tree (``kintree_table``). Models and datasets speak H36M-17,
# so this tree is left out of SKELETONS; SMPL joints reach them through smpl24_to_h36m17.
SMPL24 = Skeleton(
    name="smpl24",
    joint_names=(
        "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
        "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hand", "right_hand",
    ),
    parents=(-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21),
    left=(1, 4, 7, 10, 13, 16, 18, 20, 22),
    right=(2, 5, 8, 11, 14, 17, 19, 21, 23),
    root=0,
)

# SMPL joint for each H36M-17 joint. Approximate counterparts: spine <- spine2 (mid back),
# thorax <- neck (base of the neck), neck_nose <- head (centre of the head). The head top has
# none: it is extrapolated as head + (head - neck), marked -1 here.
SMPL24_TO_H36M17 = (0, 2, 5, 8, 1, 4, 7, 6, 12, 15, -1, 16, 18, 20, 17, 19, 21)
_SMPL_NECK, _SMPL_HEAD, _H36M_HEAD_TOP = 12, 15, 10

SKELETONS = {s.name: s for s in (H36M17, MPI_INF_3DHP17, COCO17)}

_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


def get_skeleton(name: str) -> Skeleton:
    try:
        return SKELETONS[name]
    except KeyError:
        raise ValueError(f"unknown skeleton {name!r}; known: {sorted(SKELETONS)}") from None


def smpl24_to_h36m17(joints: _Array) -> _Array:
    """(..., 24, 3) SMPL joints -> (..., 17, 3) H36M joints (head top extrapolated).

    Takes numpy arrays (dataset readers) and torch tensors (the SMPL body model) alike, and builds
    the result without writing in place, so gradients flow through it.
    """
    if joints.ndim < 2 or tuple(joints.shape[-2:]) != (SMPL24.num_joints, 3):
        raise ValueError(f"smpl24_to_h36m17: expected joints of shape (..., 24, 3), got {tuple(joints.shape)}")
    head, neck = joints[..., _SMPL_HEAD:_SMPL_HEAD + 1, :], joints[..., _SMPL_NECK:_SMPL_NECK + 1, :]
    pieces = (joints[..., list(SMPL24_TO_H36M17[:_H36M_HEAD_TOP]), :], head + (head - neck),
              joints[..., list(SMPL24_TO_H36M17[_H36M_HEAD_TOP + 1:]), :])
    return torch.cat(pieces, -2) if isinstance(joints, torch.Tensor) else np.concatenate(pieces, -2)


def flip_horizontal(pose: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """Mirror a (..., J, D) pose about the vertical image axis through the origin.

    The x coordinate changes sign and left/right joints swap, so the result is a
    plausible pose of a mirrored person (valid for 2D normalised screen
    coordinates and for camera-frame 3D alike).
    """
    if pose.shape[-2] != skeleton.num_joints:
        raise ValueError(f"flip_horizontal: pose has {pose.shape[-2]} joints, skeleton {skeleton.name} has {skeleton.num_joints}")
    flipped = pose[..., list(skeleton.flip_permutation), :].clone()
    flipped[..., 0] = -flipped[..., 0]
    return flipped
