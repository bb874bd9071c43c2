"""Camera projections and screen-coordinate normalisation (pure torch, batched).

Conventions (those of VideoPose3D): camera frame x right, y down, z forward;
normalised screen coordinates u_n = u / w * 2 - 1, v_n = v / w * 2 - h / w.
"""
from __future__ import annotations

import numpy as np
import torch

from framework.errors import UserError

# Depths below this are clamped so points at or behind the camera never divide by zero.
MIN_DEPTH = 1e-4


def _as_xy(value, like: torch.Tensor, name: str):
    """Turn a float or a (..., 2) / (..., 1) tensor into something that broadcasts with (..., J, 2)."""
    if not torch.is_tensor(value):
        return float(value)
    value = value.to(device=like.device, dtype=like.dtype)
    if value.dim() == 0:
        return value
    if value.shape[-1] not in (1, 2):
        raise UserError(f"{name}: last dimension must be 1 or 2 (per-axis values), got shape {tuple(value.shape)}")
    return value.unsqueeze(-2)


def _check_points(points: torch.Tensor, dim: int, fn: str) -> None:
    if points.dim() < 2 or points.shape[-1] != dim:
        raise UserError(f"{fn}: expected points of shape (..., J, {dim}), got {tuple(points.shape)}")


def _check_last_dim(xy, fn: str) -> None:
    if xy.ndim < 1 or xy.shape[-1] != 2:
        raise UserError(f"{fn}: expected coordinates of shape (..., 2), got {tuple(xy.shape)}")


def perspective_project(points: torch.Tensor, focal, center=0.0, min_depth: float = MIN_DEPTH) -> torch.Tensor:
    """Pinhole projection (..., J, 3) -> (..., J, 2): focal * xy / z + center.

    ``focal`` and ``center`` are floats, 0-d tensors, or tensors of shape (..., 2) / (..., 1)
    (one value per pose, broadcast over joints). z is clamped to ``min_depth``.
    """
    _check_points(points, 3, "perspective_project")
    z = points[..., 2:3].clamp(min=min_depth)
    return points[..., :2] / z * _as_xy(focal, points, "focal") + _as_xy(center, points, "center")


def weak_perspective_project(points: torch.Tensor, scale, translation) -> torch.Tensor:
    """Scaled orthographic projection: scale * xy + translation.

    ``scale`` is a float or a (...,) tensor, ``translation`` a (..., 2) tensor (or a float),
    one value per pose.
    """
    _check_points(points, 3, "weak_perspective_project")
    if torch.is_tensor(scale):
        scale = scale.to(device=points.device, dtype=points.dtype)[..., None, None]
    if torch.is_tensor(translation):
        if translation.dim() == 0 or translation.shape[-1] != 2:
            raise UserError(f"weak_perspective_project: translation must have shape (..., 2), got {tuple(translation.shape)}")
        translation = translation.to(device=points.device, dtype=points.dtype).unsqueeze(-2)
    return points[..., :2] * scale + translation


def normalize_screen(px, width, height):
    """Pixels (..., 2) -> normalised screen coordinates: x in [-1, 1], aspect ratio kept.

    Works on torch tensors and numpy arrays alike (the dataset readers use numpy);
    ``width`` / ``height`` are floats or arrays broadcastable to ``px[..., 0]``.
    """
    _check_last_dim(px, "normalize_screen")
    u = px[..., 0] / width * 2 - 1
    v = px[..., 1] / width * 2 - height / width
    return torch.stack((u, v), dim=-1) if torch.is_tensor(px) else np.stack((u, v), axis=-1)


def denormalize_screen(xy: torch.Tensor, width, height) -> torch.Tensor:
    """Inverse of :func:`normalize_screen`: normalised coordinates (..., 2) -> pixels."""
    _check_last_dim(xy, "denormalize_screen")
    u = (xy[..., 0] + 1) * width / 2
    v = (xy[..., 1] + height / width) * width / 2
    return torch.stack((u, v), dim=-1)


def project_root_relative(pose3d_root_relative: torch.Tensor, focal, distance, root: int = 0,
                          min_depth: float = MIN_DEPTH) -> torch.Tensor:
    """Put a root-relative pose at depth ``distance`` on the optical axis, project, centre on the root.

    This is the virtual camera of the ISO / Drover et al. self-supervised cycle: the
    result is root-centred 2D in the same units as ``focal`` (use a focal length in
    normalised screen units, f_px * 2 / w, to match lifter inputs). ``distance`` is a
    float or a (...,) tensor (one depth per pose).
    """
    _check_points(pose3d_root_relative, 3, "project_root_relative")
    if torch.is_tensor(distance):
        distance = distance.to(device=pose3d_root_relative.device, dtype=pose3d_root_relative.dtype)[..., None]
    x, y, z = pose3d_root_relative.unbind(-1)
    placed = torch.stack((x, y, z + distance), dim=-1)
    projected = perspective_project(placed, focal, min_depth=min_depth)
    return projected - projected[..., root:root + 1, :]


def fit_weak_perspective(points3d: torch.Tensor, points2d: torch.Tensor,
                         weights: torch.Tensor | None = None) -> torch.Tensor:
    """The weak-perspective camera (s, tx, ty) of each (..., J, 3) pose best projecting it onto
    (..., J, 2) points in the weighted least-squares sense (x = s * X[:2] + t), as (..., 3); s is
    kept positive (a camera does not mirror the person)."""
    _check_points(points3d, 3, "fit_weak_perspective")
    _check_last_dim(points2d, "fit_weak_perspective")
    w = torch.ones_like(points2d[..., 0]) if weights is None else weights.to(points2d.dtype)
    w = w[..., None] / w.sum(-1, keepdim=True)[..., None].clamp_min(1e-12)
    xy = points3d[..., :2]
    mean3, mean2 = (w * xy).sum(-2, keepdim=True), (w * points2d).sum(-2, keepdim=True)
    a, b = xy - mean3, points2d - mean2
    scale = (w * a * b).sum((-1, -2)) / (w * a * a).sum((-1, -2)).clamp_min(1e-12)
    scale = scale.clamp_min(1e-6)
    shift = mean2[..., 0, :] - scale[..., None] * mean3[..., 0, :]
    return torch.cat((scale[..., None], shift), -1)
