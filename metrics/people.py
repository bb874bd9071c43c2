"""Metrics of a person's flow, 2D pose and part masks.

- ``JointFlowEPE``: the flow's end-point error at the person's true joints, against the sparse flow
  the consecutive 2D labels make (the displacement of each joint from frame t to t + 1), over the
  joints annotated visible in both frames; pooled over joints (px).
- ``JointError2D``: the mean distance of the estimated 2D joints from the true ones per sample,
  then over samples (px).
- ``PartIoU``: the per-part intersection over union of a body's part silhouettes with the true part
  masks, averaged over the parts either shows, then over samples (%); what the NF-prior paper
  monitors on COCO, where there is no 3D truth.

All are updated per frame pair / frame with the dataset index, each sample counted once.
"""
from __future__ import annotations

from typing import Optional

import torch

from framework.errors import UserError
from geometry.flow import sample_points
from metrics.per_sample import PerSampleMetric


def joint_flow_sums(flow: torch.Tensor, joints: torch.Tensor, visible: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(B, 2, H, W) flow, (B, 2, J, 2) joints of frames t and t + 1, (B, 2, J) visibility ->
    (B, 2): summed EPE at the frame-t joints seen in both frames, and their number."""
    if flow.dim() != 4 or flow.shape[1] != 2 or joints.dim() != 4 or joints.shape[1:2] != (2,) or \
            joints.shape[-1] != 2 or joints.shape[0] != flow.shape[0]:
        raise UserError(f"joint flow EPE: flow must be (B, 2, H, W) and joints (B, 2, J, 2) (frames t and t + 1), "
                        f"got {tuple(flow.shape)} and {tuple(joints.shape)}")
    h, w = flow.shape[-2:]
    start, end = joints[:, 0].float(), joints[:, 1].float()
    inside = (start[..., 0] >= 0) & (start[..., 0] <= w - 1) & (start[..., 1] >= 0) & (start[..., 1] <= h - 1)
    counted = inside if visible is None else inside & visible[:, 0].bool() & visible[:, 1].bool()
    predicted = sample_points(flow.float(), start)  # (B, J, 2)
    error = torch.linalg.vector_norm(predicted - (end - start), dim=-1)
    return torch.stack(((error * counted).sum(1), counted.sum(1).float()), 1)


class JointFlowEPE(PerSampleMetric):
    """Flow EPE at the true joints (module doc), px; update(flow, joints, visible, index)."""

    higher_is_better = False

    def update(self, flow: torch.Tensor, joints: torch.Tensor, visible: Optional[torch.Tensor],
               index: torch.Tensor) -> None:
        with torch.no_grad():
            super().update(joint_flow_sums(flow.detach(), joints.detach(), visible), index)

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        values = values.double()
        count = values[:, 1].sum()
        return (values[:, 0].sum() / count if count > 0 else values.new_tensor(float("nan"))).float()


class JointError2D(PerSampleMetric):
    """Mean 2D joint error per sample, px, over the joints ``visible`` marks (all by default); samples
    with none are not counted. update(pred (B, J, 2), target (B, J, 2), index, visible (B, J) or None)."""

    higher_is_better = False

    def update(self, pred: torch.Tensor, target: torch.Tensor, index: torch.Tensor,
               visible: Optional[torch.Tensor] = None) -> None:
        if pred.shape != target.shape or pred.dim() != 3 or pred.shape[-1] != 2:
            raise UserError(f"2D joint error: pred and target must both be (B, J, 2), got {tuple(pred.shape)} and "
                            f"{tuple(target.shape)}")
        if visible is not None and visible.shape != pred.shape[:2]:
            raise UserError(f"2D joint error: visible must be {tuple(pred.shape[:2])}, got {tuple(visible.shape)}")
        with torch.no_grad():
            error = torch.linalg.vector_norm(pred.detach().float() - target.float(), dim=-1)
            if visible is None:
                super().update(error.mean(-1), index)
                return
            seen = visible.bool()
            rows = seen.any(-1)
            if rows.any():
                super().update((error * seen).sum(-1)[rows] / seen.sum(-1)[rows], index[rows])


def part_iou(pred: torch.Tensor, target: torch.Tensor, num_parts: int) -> torch.Tensor:
    """(B, H, W) part labels (0: background, k + 1: part k) -> (B,): the IoU of each part, averaged
    over the parts either labelling shows (NaN where neither shows any)."""
    parts = torch.arange(1, num_parts + 1, device=pred.device)[:, None, None, None]
    mine, truth = pred[None] == parts, target[None] == parts  # (K, B, H, W)
    inter, union = (mine & truth).flatten(2).sum(-1).double(), (mine | truth).flatten(2).sum(-1).double()
    shown = union > 0
    return ((inter / union.clamp_min(1)) * shown).sum(0) / shown.sum(0)  # 0 / 0: NaN


class PartIoU(PerSampleMetric):
    """Mean part IoU per sample (``part_iou``), then over the samples with any part, %;
    update(pred (B, H, W), target (B, H, W), index)."""

    higher_is_better = True
    scale = 100.0

    def __init__(self, num_parts: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_parts = int(num_parts)

    def update(self, pred: torch.Tensor, target: torch.Tensor, index: torch.Tensor) -> None:
        if pred.shape != target.shape or pred.dim() != 3:
            raise UserError(f"part IoU: predicted and true part masks must both be (B, H, W), got "
                            f"{tuple(pred.shape)} and {tuple(target.shape)}")
        super().update(part_iou(pred, target, self.num_parts).float(), index)

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        shown = values[~torch.isnan(values)]
        return shown.mean() * self.scale if len(shown) else values.new_tensor(float("nan"))
