"""Similarity (Procrustes) and scale-only alignment, used by PA-MPJPE and N-MPJPE.

Batched over leading dims and differentiable (SVD gradients are finite unless the
cross-covariance has repeated singular values, e.g. degenerate collinear poses).
"""
from __future__ import annotations

import torch

from framework.errors import UserError

_HALF = (torch.float16, torch.bfloat16)


def _check_pair(pred: torch.Tensor, target: torch.Tensor, fn: str) -> None:
    if pred.shape != target.shape or pred.dim() < 2:
        raise UserError(f"{fn}: pred and target must share a shape (..., J, D); got {tuple(pred.shape)} and {tuple(target.shape)}")


def procrustes_align(pred: torch.Tensor, target: torch.Tensor, scale: bool = True) -> torch.Tensor:
    """pred (..., J, 3) moved onto target by the least-squares rotation, translation (and scale).

    Solves min |s R x_i + t - y_i|^2 over proper rotations (det R = +1): with centred
    points X, Y and Y^T X = U S V^T, R = U D V^T where D = diag(1, 1, sign det(U V^T)),
    s = tr(S D) / |X|^2. Half-precision inputs are solved in float32.
    """
    _check_pair(pred, target, "procrustes_align")
    # autocast would push the matrix products (and so the SVD) back to half precision
    with torch.autocast(device_type=pred.device.type, enabled=False):
        return _procrustes(pred, target, scale)


def _procrustes(pred: torch.Tensor, target: torch.Tensor, scale: bool) -> torch.Tensor:
    orig = pred.dtype
    work = torch.float32 if orig in _HALF else orig
    p, q = pred.to(work), target.to(work)
    mu_p, mu_q = p.mean(-2, keepdim=True), q.mean(-2, keepdim=True)
    x, y = p - mu_p, q - mu_q
    u, s, vh = torch.linalg.svd(y.transpose(-1, -2) @ x)
    det_sign = torch.sign(torch.linalg.det(u @ vh))
    det_sign = torch.where(det_sign == 0, torch.ones_like(det_sign), det_sign)
    d = torch.ones_like(s)
    d = torch.cat((d[..., :-1], det_sign[..., None]), dim=-1)
    rotation = (u * d[..., None, :]) @ vh
    aligned = x @ rotation.transpose(-1, -2)
    if scale:
        norm = (x * x).sum((-1, -2)).clamp(min=torch.finfo(work).tiny)
        factor = (s * d).sum(-1) / norm
        aligned = aligned * factor[..., None, None]
    return (aligned + mu_q).to(orig)


def scale_align(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred * s with s = <pred, target> / |pred|^2 per sample (no centring: inputs root-relative)."""
    _check_pair(pred, target, "scale_align")
    num = (pred * target).sum((-1, -2), keepdim=True)
    den = (pred * pred).sum((-1, -2), keepdim=True).clamp(min=torch.finfo(pred.dtype).tiny)
    return pred * (num / den)
