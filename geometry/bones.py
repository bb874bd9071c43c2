"""Bone vectors and lengths along a skeleton's kinematic tree (bone losses, limb priors)."""
from __future__ import annotations

import torch

from framework.errors import UserError
from geometry.skeletons import Skeleton


def bone_vectors(pose: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """(..., J, D) -> (..., J-1, D): child minus parent, in ``skeleton.bones`` order."""
    if pose.dim() < 2 or pose.shape[-2] != skeleton.num_joints:
        raise UserError(f"bone_vectors: pose of shape {tuple(pose.shape)} does not have "
                        f"{skeleton.num_joints} joints of skeleton {skeleton.name} in dim -2")
    children = [c for c, _ in skeleton.bones]
    parents = [p for _, p in skeleton.bones]
    return pose[..., children, :] - pose[..., parents, :]


def bone_lengths(pose: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """(..., J, D) -> (..., J-1) Euclidean bone lengths, in ``skeleton.bones`` order."""
    return torch.linalg.vector_norm(bone_vectors(pose, skeleton), dim=-1)
