"""Pairing the dual network's two branches before the integration network merges them (Cheng,
Wang, Tan, eq. 5-6): the top-down branch gives a pose per detected box, the bottom-up branch a
pose per group of its joint tags; the same person should be merged, everyone else passed on as is.

Similarity of a top-down pose a and a bottom-up pose b: sum over joints k of
min(c_a,k, c_b,k) x OKS_k, where OKS_k = exp(-d_k^2 / (2 s^2 sigma_k^2)) is COCO's keypoint
similarity with d_k the distance between the joints; a joint either branch is unsure of counts
for little. The paper measures d in the camera frame (both branches' poses are camera-centred 3D,
metres, s and sigma then in metres too); image poses (pixels, s the person's size) work alike.
Pairs are the one-to-one assignment of largest total similarity (scipy's
``linear_sum_assignment``); a pair whose similarity is not above ``min_similarity`` is two people,
each unmatched.
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
                    bottom_up_confidence: torch.Tensor, scale: float | torch.Tensor,
                    sigma: float | tuple[float, ...] = H36M17_KAPPA) -> torch.Tensor:
    """(P, J, D), (P, J), (Q, J, D), (Q, J), the scale s (a number or (P,) per top-down person, in the
    poses' unit), sigma (one number or one per joint) -> (P, Q)."""
    p, j = top_down.shape[:2]
    scale = torch.as_tensor(scale, dtype=top_down.dtype, device=top_down.device).expand(p)
    sigma = torch.as_tensor(sigma, dtype=top_down.dtype, device=top_down.device).expand(j)
    if bottom_up.shape[1:] != top_down.shape[1:] or top_down_confidence.shape != (p, j) \
            or bottom_up_confidence.shape != bottom_up.shape[:2]:
        raise UserError(f"pose similarity: top-down poses (P, J, D) with confidences (P, J), bottom-up poses "
                        f"(Q, J, D) with confidences (Q, J); got {tuple(top_down.shape)}, "
                        f"{tuple(top_down_confidence.shape)}, {tuple(bottom_up.shape)}, "
                        f"{tuple(bottom_up_confidence.shape)}")
    d2 = ((top_down[:, None] - bottom_up[None]) ** 2).sum(-1)  # (P, Q, J)
    oks = torch.exp(-d2 / (2 * scale[:, None, None] ** 2 * sigma ** 2))
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
