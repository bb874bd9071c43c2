"""Rotation matrices, their axis-angle / 6D parameterisations, and random virtual views.

All functions are batched over leading dims and differentiable. Half-precision inputs
are computed in float32 (small-angle formulas need the mantissa) and cast back.
"""
from __future__ import annotations

import math

import torch

from framework.errors import UserError

_HALF = (torch.float16, torch.bfloat16)


def _work(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in _HALF else x


def _check(x: torch.Tensor, tail: tuple[int, ...], fn: str) -> None:
    if x.dim() < len(tail) or tuple(x.shape[x.dim() - len(tail):]) != tail:
        raise UserError(f"{fn}: expected shape (..., {', '.join(map(str, tail))}), got {tuple(x.shape)}")


def _matrix(rows: list[list[torch.Tensor]]) -> torch.Tensor:
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def rotation_x(angle: torch.Tensor) -> torch.Tensor:
    """(...,) angles in radians -> (..., 3, 3) right-handed rotations about the x axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return _matrix([[one, zero, zero], [zero, c, -s], [zero, s, c]])


def rotation_y(angle: torch.Tensor) -> torch.Tensor:
    """(...,) angles in radians -> (..., 3, 3) right-handed rotations about the y axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return _matrix([[c, zero, s], [zero, one, zero], [-s, zero, c]])


def rotation_z(angle: torch.Tensor) -> torch.Tensor:
    """(...,) angles in radians -> (..., 3, 3) right-handed rotations about the z axis."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    return _matrix([[c, -s, zero], [s, c, zero], [zero, zero, one]])


def sample_view_rotations(n: int, azimuth_range: tuple[float, float] = (-math.pi, math.pi),
                          elevation_range: tuple[float, float] = (-math.pi / 9, math.pi / 9),
                          generator: torch.Generator | None = None, device=None, dtype=None) -> torch.Tensor:
    """n random virtual-camera rotations R_x(elevation) @ R_y(azimuth), angles uniform in their ranges.

    Azimuth turns about the camera's vertical (y) axis, elevation tilts about x, as in the
    random-projection adversary of Drover et al. / ISO. Recover the angles with
    azimuth = atan2(R[0, 2], R[0, 0]) and elevation = atan2(R[2, 1], R[1, 1]).
    """
    dtype = dtype or torch.get_default_dtype()
    u = torch.rand(2, n, generator=generator, device=device, dtype=torch.float64 if dtype == torch.float64 else torch.float32)
    azimuth = azimuth_range[0] + (azimuth_range[1] - azimuth_range[0]) * u[0]
    elevation = elevation_range[0] + (elevation_range[1] - elevation_range[0]) * u[1]
    return (rotation_x(elevation) @ rotation_y(azimuth)).to(dtype)


def _skew(v: torch.Tensor) -> torch.Tensor:
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return _matrix([[zero, -z, y], [z, zero, -x], [-y, x, zero]])


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: (..., 3) rotation vectors (axis * angle) -> (..., 3, 3).

    Uses R = I + a K + b K^2 with K the skew matrix of the (unnormalised) vector,
    a = sin t / t and b = (1 - cos t) / t^2 written as 0.5 * sinc(t/2)^2, with Taylor
    series at tiny t, so it is exact and has finite gradients at t = 0.
    """
    _check(axis_angle, (3,), "axis_angle_to_matrix")
    orig, v = axis_angle.dtype, _work(axis_angle)
    theta2 = (v * v).sum(-1)
    small = theta2 < torch.finfo(v.dtype).eps
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    half = theta / 2
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, 0.5 * (torch.sin(half) / half) ** 2)
    k = _skew(v)
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    return (eye + a[..., None, None] * k + b[..., None, None] * (k @ k)).to(orig)


def matrix_to_axis_angle(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations -> (..., 3) rotation vectors with angle in [0, pi].

    Angle from atan2(|sin part|, cos part), accurate everywhere. Away from pi the axis comes
    from the antisymmetric part; near pi (where that part vanishes) from the symmetric part
    n n^T = (sym(R) - cos I) / (1 - cos), its sign chosen to agree with the antisymmetric part.
    """
    _check(matrix, (3, 3), "matrix_to_axis_angle")
    orig, r = matrix.dtype, _work(matrix)
    tiny = torch.finfo(r.dtype).tiny
    eps = torch.finfo(r.dtype).eps
    sin_vec = 0.5 * torch.stack((r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]), -1)
    cos = ((r[..., 0, 0] + r[..., 1, 1] + r[..., 2, 2] - 1) / 2).clamp(-1, 1)
    sin = torch.sqrt((sin_vec * sin_vec).sum(-1).clamp(min=tiny))
    theta = torch.atan2(sin, cos)

    # Generic branch: axis * angle = sin_vec * theta / sin(theta).
    small = theta * theta < eps
    factor = torch.where(small, 1 + theta * theta / 6, theta / torch.where(small, torch.ones_like(sin), sin))
    generic = sin_vec * factor[..., None]

    # Near-pi branch: unit axis from the largest diagonal entry of n n^T.
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    outer = (0.5 * (r + r.transpose(-1, -2)) - cos[..., None, None] * eye) / (1 - cos).clamp(min=eps)[..., None, None]
    diag = torch.diagonal(outer, dim1=-2, dim2=-1)
    k = diag.argmax(-1, keepdim=True)
    column = torch.gather(outer, -1, k[..., None, :].expand(*outer.shape[:-1], 1)).squeeze(-1)
    axis = column / torch.sqrt(torch.gather(diag, -1, k).clamp(min=tiny))
    sign = torch.where((axis * sin_vec).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(r.dtype)
    near_pi = axis * sign * theta[..., None]

    use_pi = (cos < -0.5)[..., None]
    return torch.where(use_pi, near_pi, generic).to(orig)


def rotation_6d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Zhou et al. 6D (..., 6) = first two columns of R, concatenated -> (..., 3, 3).

    Gram-Schmidt: b1 = a1 / |a1|, b2 = normalised (a2 - (b1.a2) b1), b3 = b1 x b2;
    the result's columns are (b1, b2, b3).
    """
    _check(d6, (6,), "rotation_6d_to_matrix")
    orig, d6 = d6.dtype, _work(d6)
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1).to(orig)


def matrix_to_rotation_6d(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns, as :func:`rotation_6d_to_matrix` reads them."""
    _check(matrix, (3, 3), "matrix_to_rotation_6d")
    return torch.cat((matrix[..., :, 0], matrix[..., :, 1]), dim=-1)


def rotate_about_root(pose: torch.Tensor, rotation: torch.Tensor, root: int = 0) -> torch.Tensor:
    """Rotate a (..., J, 3) pose by (..., 3, 3) about its root joint; the root stays put."""
    if pose.dim() < 2 or pose.shape[-1] != 3:
        raise UserError(f"rotate_about_root: expected pose of shape (..., J, 3), got {tuple(pose.shape)}")
    _check(rotation, (3, 3), "rotate_about_root")
    origin = pose[..., root:root + 1, :]
    return (pose - origin) @ rotation.transpose(-1, -2).to(pose.dtype) + origin
