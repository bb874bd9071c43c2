"""RAFT's training loss (Teed & Deng 2020): the sequence L1 loss over all refinement iterations."""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from framework.errors import UserError


def sequence_loss(predictions: Sequence[torch.Tensor], gt: torch.Tensor, valid: Optional[torch.Tensor] = None,
                  gamma: float = 0.8, max_flow: float = 400.0) -> torch.Tensor:
    """``sum_i gamma^(N-i-1) * mean(valid * |pred_i - gt|)``, the authors' form.

    ``predictions``: N flows (B, 2, H, W); ``gt`` (B, 2, H, W); ``valid`` (B, H, W), >= 0.5 meaning
    valid (None: all). Pixels with ``|gt| >= max_flow`` are invalid. The mean runs over every
    element (invalid ones count as zeros), exactly as the authors' train.py.
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
    mask = ((valid >= 0.5) & (magnitude < max_flow)).to(gt.dtype)[:, None]
    n = len(predictions)
    loss = gt.new_zeros(())
    for i, pred in enumerate(predictions):
        if pred.shape != gt.shape:
            raise UserError(f"sequence_loss: prediction {i} has shape {tuple(pred.shape)}, gt {tuple(gt.shape)}")
        loss = loss + gamma ** (n - i - 1) * (mask * (pred.float() - gt).abs()).mean()
    return loss
