"""Pairing the dual network's two branches before the integration network merges them (Cheng,
Wang, Tan): the top-down branch gives a pose per detected box, the bottom-up branch a pose per
group of its joint tags; the same person should be merged, everyone else passed on as is.

Similarity of a top-down pose a and a bottom-up pose b: sum over joints k of
min(c_a,k, c_b,k) x OKS_k, where OKS_k = exp(-d_k^2 / (2 s^2 kappa_k^2)) is COCO's keypoint
similarity (d_k the image distance, s the person's scale, kappa_k the per-joint constant);
a joint either branch is unsure of counts for little. Pairs are the one-to-one assignment of
largest total similarity (scipy's ``linear_sum_assignment``); a pair whose similarity is below
``min_similarity`` is two people, each unmatched.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from framework.errors import UserError

# COCO's per-keypoint OKS constants (sigmas), for the H36M-17 joints; the joints COCO lacks take
# those of the nearest COCO keypoint: pelvis and spine the hips', thorax the shoulders', neck/nose
# the nose's, head the ears'.
H36M17_KAPPA = (0.107, 0.107, 0.087, 0.089, 0.107, 0.087, 0.089, 0.107, 0.079, 0.026, 0.035,
                0.079, 0.072, 0.062, 0.079, 0.072, 0.062)


class BranchPairs(NamedTuple):
    pairs: list[tuple[int, int]]  # (top-down pose, bottom-up pose)
    top_down_only: list[int]
    bottom_up_only: list[int]


def pose_similarity(top_down: torch.Tensor, top_down_confidence: torch.Tensor, bottom_up: torch.Tensor,
                    bottom_up_confidence: torch.Tensor, scale: torch.Tensor,
                    kappa: tuple[float, ...] = H36M17_KAPPA) -> torch.Tensor:
    """(P, J, 2), (P, J), (Q, J, 2), (Q, J), (P,) the top-down people's scales (px) -> (P, Q)."""
    p, j = top_down.shape[:2]
    if top_down.shape[-1] != 2 or bottom_up.shape[1:] != (j, 2) or top_down_confidence.shape != (p, j) \
            or bottom_up_confidence.shape != bottom_up.shape[:2] or scale.shape != (p,) or len(kappa) != j:
        raise UserError(f"pose similarity: top-down poses (P, J, 2) with confidences (P, J) and scales (P,), "
                        f"bottom-up poses (Q, J, 2) with confidences (Q, J), {len(kappa)} joint constants; got "
                        f"{tuple(top_down.shape)}, {tuple(top_down_confidence.shape)}, {tuple(scale.shape)}, "
                        f"{tuple(bottom_up.shape)}, {tuple(bottom_up_confidence.shape)}")
    k = torch.as_tensor(kappa, dtype=top_down.dtype, device=top_down.device)
    d2 = ((top_down[:, None] - bottom_up[None]) ** 2).sum(-1)  # (P, Q, J)
    oks = torch.exp(-d2 / (2 * scale[:, None, None] ** 2 * k ** 2))
    weight = torch.minimum(top_down_confidence[:, None], bottom_up_confidence[None])
    return (weight * oks).sum(-1)


def match_branches(similarity: torch.Tensor, min_similarity: float = 0.0) -> BranchPairs:
    """The one-to-one pairs of largest total similarity (P, Q); the rest of each branch unmatched."""
    p, q = similarity.shape
    values = similarity.detach().double().cpu().numpy()
    rows, cols = linear_sum_assignment(-values) if p and q else (np.zeros(0, int), np.zeros(0, int))
    pairs = [(int(r), int(c)) for r, c in zip(rows, cols) if values[r, c] > min_similarity]
    matched_td, matched_bu = {a for a, _ in pairs}, {b for _, b in pairs}
    return BranchPairs(pairs, [i for i in range(p) if i not in matched_td], [i for i in range(q) if i not in matched_bu])
