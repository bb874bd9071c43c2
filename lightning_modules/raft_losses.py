"""RAFT's losses: the supervised sequence L1 loss over all refinement iterations (Teed & Deng 2020),
used for training and for pseudo-label refinement, and the self-supervised objectives the refinement
paper compares against (photometric, + smoothness, + edge-aware smoothness)."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from framework.errors import UserError
from geometry.flow import backward_warp


def sequence_loss(predictions: Sequence[torch.Tensor], gt: torch.Tensor, valid: Optional[torch.Tensor] = None,
                  gamma: float = 0.8, max_flow: float = 400.0, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``sum_i gamma^(N-i-1) * mean(valid * weight * |pred_i - gt|)``, the authors' form.

    ``predictions``: N flows (B, 2, H, W); ``gt`` (B, 2, H, W); ``valid`` (B, H, W), >= 0.5 meaning
    valid (None: all). Pixels with ``|gt| >= max_flow`` are invalid. ``weight`` (B, H, W), optional,
    scales each pixel (re-balanced pseudo-labels). The mean runs over every element (invalid ones
    count as zeros), exactly as the authors' train.py.
    """
    if len(predictions) == 0:
        raise UserError("sequence_loss: no predictions")
    if gt.dim() != 4 or gt.shape[1] != 2:
        raise UserError(f"sequence_loss: gt must be (B, 2, H, W), got {tuple(gt.shape)}")
    if valid is None:
        valid = torch.ones(gt.shape[0], *gt.shape[2:], device=gt.device)
    if tuple(valid.shape) != (gt.shape[0], *gt.shape[2:]):
        raise UserError(f"sequence_loss: valid must be {(gt.shape[0], *gt.shape[2:])}, got {tuple(valid.shape)}")
    gt = gt.float()
    magnitude = torch.linalg.vector_norm(gt, dim=1)
    mask = ((valid >= 0.5) & (magnitude < max_flow)).to(gt.dtype)
    if weight is not None:
        if tuple(weight.shape) != tuple(mask.shape):
            raise UserError(f"sequence_loss: weight must be {tuple(mask.shape)}, got {tuple(weight.shape)}")
        mask = mask * weight.to(gt.dtype)
    mask = mask[:, None]
    n = len(predictions)
    loss = gt.new_zeros(())
    for i, pred in enumerate(predictions):
        if pred.shape != gt.shape:
            raise UserError(f"sequence_loss: prediction {i} has shape {tuple(pred.shape)}, gt {tuple(gt.shape)}")
        loss = loss + gamma ** (n - i - 1) * (mask * (pred.float() - gt).abs()).mean()
    return loss


def charbonnier(x: torch.Tensor, eps: float = 1e-3, power: float = 0.4) -> torch.Tensor:
    """Generalised Charbonnier penalty (x^2 + eps^2)^power, the robust norm of unsupervised flow."""
    return (x.square() + eps * eps).pow(power)


def photometric_loss(image1: torch.Tensor, image2: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Colour constancy: Charbonnier difference between frame 1 and frame 2 back-warped by ``flow``,
    on colours as x/255, averaged over pixels whose target lies inside frame 2."""
    warped, inside = backward_warp(image2.float(), flow.float())
    diff = charbonnier((image1.float() - warped) / 255.0).mean(1)
    inside = inside.to(diff.dtype)
    return (diff * inside).sum() / inside.sum().clamp_min(1.0)


def smoothness_loss(flow: torch.Tensor, image: Optional[torch.Tensor] = None, edge_weight: float = 0.0) -> torch.Tensor:
    """First-order smoothness: Charbonnier of the flow's x and y differences. With ``image`` and
    ``edge_weight`` > 0 each difference is down-weighted by exp(-edge_weight * |image gradient|)
    (colours as x/255, mean over channels), so flow may change across image edges."""
    flow = flow.float()
    dx = charbonnier(flow[..., :, 1:] - flow[..., :, :-1]).mean(1)
    dy = charbonnier(flow[..., 1:, :] - flow[..., :-1, :]).mean(1)
    if image is not None and edge_weight > 0:
        image = image.float() / 255.0
        dx = dx * torch.exp(-edge_weight * (image[..., :, 1:] - image[..., :, :-1]).abs().mean(1))
        dy = dy * torch.exp(-edge_weight * (image[..., 1:, :] - image[..., :-1, :]).abs().mean(1))
    return 0.5 * (dx.mean() + dy.mean())


def unsupervised_sequence_loss(predictions: Sequence[torch.Tensor], image1: torch.Tensor, image2: torch.Tensor,
                               gamma: float = 0.8, smooth_weight: float = 0.0, edge_weight: float = 0.0) -> torch.Tensor:
    """``sum_i gamma^(N-i-1) * (photometric_i + smooth_weight * smoothness_i)``: the self-supervised
    baselines of the refinement paper, weighted over iterations like the supervised loss."""
    if len(predictions) == 0:
        raise UserError("unsupervised_sequence_loss: no predictions")
    n = len(predictions)
    loss = image1.new_zeros((), dtype=torch.float32)
    for i, flow in enumerate(predictions):
        term = photometric_loss(image1, image2, flow)
        if smooth_weight > 0:
            term = term + smooth_weight * smoothness_loss(flow, image1, edge_weight)
        loss = loss + gamma ** (n - i - 1) * term
    return loss
