"""PIPs' training losses (Harley et al. 2022), as the authors' train.py combines them: sequence L1
over the iterations + 10 x balanced BCE on visibility + balanced cross-entropy on the correlation
score maps. Every term takes an optional per-track ``weight`` ((B, N), or (B, S, N) per frame) so
pseudo-label fine-tuning can drop or down-weight tracks; a weight of 0 equals leaving the track out.

Ground truth: ``trajs_g`` (B, S, N, 2) full-resolution pixels, ``vis_g`` (B, S, N) in [0, 1],
``valids`` (B, S, N), > 0 meaning the label exists.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from framework.errors import UserError
from nets.pips import PipsOutput

EPS = 1e-6  # the authors' masked-mean epsilon; an empty mask gives 0, not NaN


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / (EPS + mask.sum())


def _shape_check(name: str, t: torch.Tensor, shape: tuple) -> None:
    if tuple(t.shape) != tuple(shape):
        raise UserError(f"PIPs loss: {name} must be {tuple(shape)}, got {tuple(t.shape)}")


def _track_mask(valids: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    """valids (B, S, N) times the per-track (B, N) or per-frame (B, S, N) weight."""
    mask = valids.float()
    if weight is None:
        return mask
    b, s, n = mask.shape
    if tuple(weight.shape) == (b, n):
        weight = weight[:, None]
    elif tuple(weight.shape) != (b, s, n):
        raise UserError(f"PIPs loss: weight must be (B, N) = {(b, n)} or (B, S, N) = {(b, s, n)}, "
                        f"got {tuple(weight.shape)}")
    return mask * weight.float()


def balanced_bce(logits: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean BCE over positives (target > 0.95) plus mean over negatives (target < 0.05), so the rare
    class counts as much as the common one; targets in between are ignored, as in the authors' code."""
    if mask is None:
        mask = torch.ones_like(logits)
    loss = F.binary_cross_entropy_with_logits(logits.float(), (target > 0.95).float(), reduction="none")
    pos = (target > 0.95).float() * mask
    neg = (target < 0.05).float() * mask
    return masked_mean(loss, pos) + masked_mean(loss, neg)


def sequence_loss(out: PipsOutput, trajs_g: torch.Tensor, valids: torch.Tensor, gamma: float = 0.8,
                  weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``sum_i gamma^(I-i-1) * masked_mean(mean_xy |coords_i - trajs_g|) / I``: later iterations
    weigh more; dividing by I keeps the scale independent of the iteration count."""
    if not out.coords:
        raise UserError("PIPs sequence_loss: the output holds no iterations")
    _shape_check("trajs_g", trajs_g, out.coords[0].shape)
    _shape_check("valids", valids, trajs_g.shape[:3])
    mask = _track_mask(valids, weight)
    n = len(out.coords)
    loss = trajs_g.new_zeros((), dtype=torch.float32)
    for i, pred in enumerate(out.coords):
        err = (pred.float() - trajs_g.float()).abs().mean(dim=3)
        loss = loss + gamma ** (n - i - 1) * masked_mean(err, mask)
    return loss / n


def visibility_loss(out: PipsOutput, vis_g: torch.Tensor, valids: torch.Tensor,
                    weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Balanced BCE of the visibility logits against ``vis_g`` on valid labels."""
    _shape_check("vis_g", vis_g, out.vis.shape)
    _shape_check("valids", valids, out.vis.shape)
    return balanced_bce(out.vis, vis_g, _track_mask(valids, weight))


def score_map_loss(out: PipsOutput, trajs_g: torch.Tensor, vis_g: torch.Tensor, valids: torch.Tensor,
                   weight: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Balanced cross-entropy of every iteration's score map against a one-hot map at the rounded
    ground-truth position (at 1/stride), over visible, valid labels that land inside the map: it
    teaches the features to peak at the true match, not only the regressor to find it."""
    if out.scores is None or not out.scores:
        raise UserError("PIPs score_map_loss needs the score maps: run the net with return_scores=True "
                        "(the default in training mode)")
    b, s, n, h, w = out.scores[0].shape
    _shape_check("trajs_g", trajs_g, (b, s, n, 2))
    _shape_check("vis_g", vis_g, (b, s, n))
    _shape_check("valids", valids, (b, s, n))
    xy = torch.round(trajs_g.float() / float(out.stride)).long()
    x, y = xy[..., 0], xy[..., 1]
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1) & (valids > 0) & (vis_g > 0)
    track = inside.float() * _track_mask(torch.ones_like(valids, dtype=torch.float32), weight)  # (B, S, N)

    maps = torch.stack(out.scores, dim=2).float().reshape(b, s, -1, n, h * w)  # (B, S, I, N, HW)
    index = (y.clamp(0, h - 1) * w + x.clamp(0, w - 1))[:, :, None, :, None].expand(-1, -1, maps.shape[2], -1, 1)
    target = torch.zeros_like(maps).scatter_(4, index, 1.0)
    loss = F.binary_cross_entropy_with_logits(maps, target, reduction="none")
    track = track[:, :, None, :, None]
    return masked_mean(loss, target * track) + masked_mean(loss, (1.0 - target) * track)


def pips_losses(out: PipsOutput, trajs_g: torch.Tensor, vis_g: torch.Tensor, valids: torch.Tensor,
                gamma: float = 0.8, weight: Optional[torch.Tensor] = None,
                terms: tuple[str, ...] = ("seq", "vis", "score")) -> dict[str, torch.Tensor]:
    """The unweighted terms named in ``terms`` ("seq", "vis", "score")."""
    unknown = set(terms) - {"seq", "vis", "score"}
    if unknown:
        raise UserError(f"PIPs loss terms {sorted(unknown)} unknown; expected seq, vis, score")
    parts = {}
    if "seq" in terms:
        parts["seq"] = sequence_loss(out, trajs_g, valids, gamma, weight)
    if "vis" in terms:
        parts["vis"] = visibility_loss(out, vis_g, valids, weight)
    if "score" in terms:
        parts["score"] = score_map_loss(out, trajs_g, vis_g, valids, weight)
    return parts


def pips_total_loss(out: PipsOutput, trajs_g: torch.Tensor, vis_g: torch.Tensor, valids: torch.Tensor,
                    seq_weight: float = 1.0, vis_weight: float = 10.0, score_weight: float = 1.0,
                    gamma: float = 0.8, weight: Optional[torch.Tensor] = None
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``seq_weight * seq + vis_weight * vis + score_weight * score`` and the terms. A term whose
    weight is 0 is not computed (fine-tuning on pseudo-labels turns visibility off)."""
    weights = {"seq": seq_weight, "vis": vis_weight, "score": score_weight}
    parts = pips_losses(out, trajs_g, vis_g, valids, gamma, weight,
                        terms=tuple(k for k, v in weights.items() if v != 0))
    total = trajs_g.new_zeros((), dtype=torch.float32)
    for key, value in parts.items():
        total = total + weights[key] * value
    return total, parts
