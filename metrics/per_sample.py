"""Means over test samples that count every sample exactly once under DDP.

DDP's DistributedSampler pads the last batch by repeating samples, so a plain
running mean over-weights them. Here every update stores per-sample values with the
sample's global dataset index; after the cat-sync across processes each rank sees all
of them, and duplicates are dropped by index before averaging.
"""
from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from framework.errors import UserError


def unique_by_index(index: torch.Tensor, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Keep the first occurrence of every value of ``index`` (N,) and the matching rows of ``tensors``.

    Returns ``(index, *tensors)`` filtered, in their original order.
    """
    if index.dim() != 1:
        raise UserError(f"unique_by_index: index must have shape (N,), got {tuple(index.shape)}")
    for t in tensors:
        if t.shape[:1] != index.shape:
            raise UserError(f"unique_by_index: tensor of shape {tuple(t.shape)} does not have {index.shape[0]} rows like index")
    order = torch.argsort(index, stable=True)
    ordered = index[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    keep = order[first].sort().values
    return (index[keep], *(t[keep] for t in tensors))


class PerSampleMetric(Metric):
    """Mean of per-sample values, deduplicated by global sample index, times ``scale``.

    ``update(values, index)`` takes values of shape (N,) or (N, K) and int64 indices (N,).
    ``compute()`` returns :meth:`reduce` of the deduplicated values: by default their mean over
    samples times ``scale`` (a scalar for (N,), a (K,) vector for (N, K)). Subclasses override
    ``reduce`` for other aggregates (e.g. pixel-weighted means from (sum, count) columns).
    With no updates at all, ``compute()`` returns NaN (torchmetrics also warns), so an empty
    validation loop logs NaN instead of crashing. In DDP every rank should receive at least
    one update when values are (N, K).
    """

    full_state_update = False
    is_differentiable = False
    scale: float = 1.0

    def __init__(self, scale: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if scale is not None:
            self.scale = float(scale)
        self.add_state("values", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(self, values: torch.Tensor, index: torch.Tensor) -> None:
        if values.dim() not in (1, 2):
            raise UserError(f"{type(self).__name__}.update: values must have shape (N,) or (N, K), got {tuple(values.shape)}")
        if index.dim() != 1 or index.shape[0] != values.shape[0]:
            raise UserError(f"{type(self).__name__}.update: index must have shape ({values.shape[0]},) "
                            f"to match values, got {tuple(index.shape)}")
        if index.is_floating_point() or index.is_complex():
            raise UserError(f"{type(self).__name__}.update: index must be an integer tensor, got {index.dtype}")
        values = values.detach()
        if not values.is_floating_point() or values.dtype in (torch.float16, torch.bfloat16):
            values = values.float()
        self.values.append(values)
        self.index.append(index.detach().long())

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        """Aggregate the deduplicated per-sample values (M,) or (M, K)."""
        return values.mean(0) * self.scale

    def compute(self) -> torch.Tensor:
        if isinstance(self.index, list) and len(self.index) == 0:
            return torch.tensor(float("nan"), device=self.device)
        index = dim_zero_cat(self.index).long()
        values = dim_zero_cat(self.values)
        if index.numel() == 0:
            return torch.tensor(float("nan"), device=self.device)
        _, values = unique_by_index(index, values)
        return self.reduce(values)
