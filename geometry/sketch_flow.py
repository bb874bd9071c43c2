"""A person's motion drawn as flow: the stick figure of the pose in frame t, each of its pixels
carrying the displacement of its point on the bone to frame t + 1 (flow-pose bootstrapping).

The stick figure is the projected skeleton's bones drawn as lines, made thick by dilating them with
a cross of ``radius`` pixels (the paper's cross-shaped kernel). The paper replaces the (head, neck)
bone by (head, nose) and (nose, neck); the H36M-17 tree already runs thorax -> neck/nose -> head
top, which is that chain, so its bones are used as they are. A pixel covered by several bones' crosses
takes the displacement of the nearest point (ties averaged), so the result does not depend on the
order bones are drawn in.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch

from framework.errors import UserError
from geometry.skeletons import H36M17

SKETCH_BONES = H36M17.bones


def scaled_radius(radius: float, height: int, reference_height: float) -> int:
    """The cross's radius for frames ``height`` pixels high, given ``radius`` at ``reference_height``."""
    return max(1, int(round(radius * height / reference_height)))


def bone_points(joints: torch.Tensor, moved: torch.Tensor, bones: Sequence[tuple[int, int]] = SKETCH_BONES,
                points_per_bone: int = 20, spacing: float = 0.5,
                valid: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Points along every bone of (J, 2) ``joints`` and their displacements to (J, 2) ``moved``:
    at least ``points_per_bone`` (endpoints included) and at most ``spacing`` pixels apart, so the
    drawn line has no gap; bones with an invalid end (``valid`` (J,) False) are left out."""
    if joints.shape != moved.shape or joints.dim() != 2 or joints.shape[-1] != 2:
        raise UserError(f"sketch flow: joints and moved joints must both be (J, 2), got {tuple(joints.shape)} "
                        f"and {tuple(moved.shape)}")
    points, shifts = [], []
    for child, parent in bones:
        if valid is not None and not (bool(valid[child]) and bool(valid[parent])):
            continue
        a, b = joints[parent], joints[child]
        length = float(torch.linalg.vector_norm(b - a))
        n = max(points_per_bone, int(math.ceil(length / spacing)) + 1)
        s = torch.linspace(0, 1, n, dtype=joints.dtype, device=joints.device)[:, None]
        points.append(a + s * (b - a))
        da, db = moved[parent] - a, moved[child] - b
        shifts.append(da + s * (db - da))
    if not points:
        empty = joints.new_zeros(0, 2)
        return empty, empty
    return torch.cat(points), torch.cat(shifts)


def paint_cross(points: torch.Tensor, values: torch.Tensor, height: int, width: int,
                radius: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 2) points (x, y) with (N, C) values -> (C, H, W) image and (H, W) bool mask of the pixels
    within a cross of ``radius`` around some point's pixel; each takes its nearest point's value."""
    device = points.device
    offsets = torch.arange(-radius, radius + 1, device=device)
    arm = offsets[offsets != 0]
    cross = torch.cat([torch.stack([offsets, torch.zeros_like(offsets)], 1),
                       torch.stack([torch.zeros_like(arm), arm], 1)])  # (K, 2): a horizontal and a vertical bar
    centre = torch.round(points).long()  # (N, 2)
    pixel = centre[:, None, :] + cross[None]  # (N, K, 2)
    distance = torch.linalg.vector_norm(pixel.to(points.dtype) - points[:, None, :], dim=-1)  # (N, K)
    inside = (pixel[..., 0] >= 0) & (pixel[..., 0] < width) & (pixel[..., 1] >= 0) & (pixel[..., 1] < height)
    flat = (pixel[..., 1] * width + pixel[..., 0])[inside]
    distance = distance[inside]
    value = values[:, None, :].expand(-1, cross.shape[0], -1)[inside]  # (M, C)
    nearest = torch.full((height * width,), float("inf"), dtype=distance.dtype, device=device)
    nearest = nearest.scatter_reduce(0, flat, distance, reduce="amin")
    winner = distance <= nearest[flat] + 1e-9
    total = torch.zeros(height * width, values.shape[1], dtype=values.dtype, device=device)
    total.index_add_(0, flat[winner], value[winner])
    count = torch.zeros(height * width, dtype=values.dtype, device=device)
    count.index_add_(0, flat[winner], torch.ones_like(distance[winner], dtype=values.dtype))
    mask = count > 0
    image = torch.where(mask[:, None], total / count.clamp_min(1)[:, None], torch.zeros_like(total))
    return image.T.reshape(values.shape[1], height, width), mask.reshape(height, width)


def sketch_flow(joints: torch.Tensor, moved: torch.Tensor, height: int, width: int, radius: int,
                points_per_bone: int = 20, valid: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The pose's sketch flow: (2, H, W) displacements on the thick stick figure and its (H, W) mask."""
    points, shifts = bone_points(joints, moved, points_per_bone=points_per_bone, valid=valid)
    if not len(points):
        return joints.new_zeros(2, height, width), torch.zeros(height, width, dtype=torch.bool, device=joints.device)
    return paint_cross(points, shifts, height, width, radius)


def target_flow(flow: torch.Tensor, sketch: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The current flow (2, H, W) with the sketch painted over the stick figure's pixels."""
    return torch.where(mask[None], sketch.to(flow.dtype), flow)
