"""Pseudo-labels for optical flow ("Refining Pre-Trained Motion Models", first stage).

The frozen teacher's forward flow is kept where it passes the forward-backward cycle check
and the colour-constancy check. Two additions of ours on top of the filters:

- densify: an unlabelled pixel takes the teacher's flow when enough of its neighbours are
  labelled and all of those agree with the teacher's flow at that pixel. The filters reject
  many correct pixels (occlusion borders, low texture where colours match poorly under
  noise); a locally smooth, verified neighbourhood vouches for them.
- re-balance: labels are weighted per motion-magnitude bin so every occupied bin carries the
  same total weight (each pixel's weight capped). Static and slow pixels pass the filters far
  more often than fast ones (the cycle bound grows slower than the error of a fast motion),
  so unweighted they drown the regions refinement should improve. Weights, not subsampling,
  so no verified label is thrown away.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from framework.checks import EachOneOf, OneOf, at_least, check, fraction
from framework.errors import UserError
from geometry.flow import backward_warp, colour_consistency, forward_backward_consistency

FILTERS = ("cycle", "colour")


@dataclass
class FlowLabelConfig:
    """``adaptation.labels`` of RAFT refinement."""

    stride: int = 2  # labelled pairs start every `stride` frames
    teacher_batch: int = 4  # pairs per teacher forward pass
    min_labels: int = 1  # labelled pixels a video needs to be fine-tuned at all
    # which checks a label must pass: any of cycle, colour; [] keeps every in-frame teacher pixel
    filters: list[str] = field(default_factory=lambda: list(FILTERS))
    alpha1: float = 0.002  # UnFlow's 0.01 and 0.5 scaled by 0.2, as the authors' label code
    alpha2: float = 0.1
    cycle_form: str = "squared"  # squared (UnFlow) | euclidean (the authors' released code)
    colour_threshold: float = 0.005  # mean |RGB/255| difference
    densify_radius: int = 2  # px; 0 turns densification off
    densify_support: float = 0.5  # share of the (2r+1)^2 window that must already be labelled
    densify_tolerance: float = 0.5  # px: largest disagreement with a labelled neighbour
    rebalance: bool = True
    rebalance_edges: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0, 16.0, 32.0])  # |flow| px
    rebalance_max_weight: float = 10.0  # cap on a pixel's weight relative to the mean


def validate_label_config(c: FlowLabelConfig, key: str = "adaptation.labels") -> None:
    check(c, key, stride=at_least(1), teacher_batch=at_least(1), min_labels=at_least(1), filters=EachOneOf(FILTERS), cycle_form=OneOf(("squared", "euclidean")), alpha1=at_least(0),
          alpha2=at_least(0), colour_threshold=at_least(0), densify_tolerance=at_least(0), densify_radius=at_least(0),
          densify_support=fraction())
    edges = list(c.rebalance_edges)
    if any(b <= a for a, b in zip(edges, edges[1:])) or any(e <= 0 for e in edges):
        raise UserError(f"{key}.rebalance_edges: must be positive and increasing, got {edges}")
    check(c, key, rebalance_max_weight=at_least(1))


def densify(mask: torch.Tensor, flow: torch.Tensor, radius: int, support: float, tolerance: float) -> torch.Tensor:
    """``mask`` (B, H, W) bool grown by pixels whose labelled neighbours (window 2r+1) make up at
    least ``support`` of the window and all lie within ``tolerance`` px of the pixel's own flow.
    Only pixels whose target stays inside the frame are added."""
    if radius <= 0:
        return mask
    b, _, h, w = flow.shape
    r = radius
    padded_mask = F.pad(mask.float(), (r, r, r, r))
    padded_flow = F.pad(flow.float(), (r, r, r, r))
    count = torch.zeros(b, h, w, device=flow.device)
    worst = torch.zeros(b, h, w, device=flow.device)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            m = padded_mask[:, dy:dy + h, dx:dx + w]
            f = padded_flow[:, :, dy:dy + h, dx:dx + w]
            count += m
            gap = torch.linalg.vector_norm(f - flow.float(), dim=1) * m
            worst = torch.maximum(worst, gap)
    _, inside = backward_warp(flow[:, :1].float(), flow.float())
    grown = (count >= support * (2 * r + 1) ** 2) & (worst < tolerance) & inside
    return mask | grown


def flow_pseudo_labels(image1: torch.Tensor, image2: torch.Tensor, flow_fw: torch.Tensor, flow_bw: torch.Tensor,
                       cfg: FlowLabelConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Bool (B, H, W) label mask for the forward flows and the share of pixels each step keeps."""
    cycle = forward_backward_consistency(flow_fw, flow_bw, cfg.alpha1, cfg.alpha2, cfg.cycle_form)
    colour = colour_consistency(image1, image2, flow_fw, cfg.colour_threshold)
    _, inside = backward_warp(flow_fw[:, :1], flow_fw)
    mask = inside.clone()
    if "cycle" in cfg.filters:
        mask &= cycle
    if "colour" in cfg.filters:
        mask &= colour
    filtered = mask
    mask = densify(mask, flow_fw, cfg.densify_radius, cfg.densify_support, cfg.densify_tolerance)
    stats = {"cycle_share": cycle.float().mean().item(), "colour_share": colour.float().mean().item(),
             "filtered_share": filtered.float().mean().item(), "label_share": mask.float().mean().item()}
    return mask, stats


def rebalance_weights(flows: torch.Tensor, masks: torch.Tensor, edges: list[float], max_weight: float) -> torch.Tensor:
    """(N, H, W) float weights, zero off the labels, mean 1 over the labels: every occupied
    magnitude bin gets the same total weight, no pixel more than ``max_weight`` times the mean."""
    magnitude = torch.linalg.vector_norm(flows.float(), dim=1)
    bins = torch.bucketize(magnitude, torch.tensor(edges, dtype=magnitude.dtype, device=magnitude.device))
    weights = torch.zeros_like(magnitude)
    labelled = masks.bool()
    total = int(labelled.sum())
    if total == 0:
        return weights
    counts = torch.bincount(bins[labelled], minlength=len(edges) + 1).double()
    occupied = counts > 0
    raw = torch.where(occupied, 1.0 / counts.clamp_min(1), torch.zeros_like(counts))  # equal total per bin
    # water-filling: bins whose weight would pass the cap sit at the cap, the rest share what is left
    capped = torch.zeros_like(occupied)
    per_bin = raw
    for _ in range(len(counts)):
        free = occupied & ~capped
        left = total - max_weight * counts[capped].sum()
        per_bin = torch.where(capped, torch.full_like(raw, max_weight), raw * left / (counts[free] * raw[free]).sum())
        over = free & (per_bin > max_weight)
        if not over.any():
            break
        capped |= over
    weights[labelled] = per_bin[bins[labelled]].to(weights.dtype)
    return weights
