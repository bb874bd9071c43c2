"""3D pose metrics: MPJPE, PA-MPJPE, N-MPJPE (mm) and 3D PCK / AUC (percent).

Per-sample functions take root-relative poses in metres, (N, J, 3), and return (N,).
The metric classes accumulate them per sample (deduplicated by dataset index, see
:mod:`metrics.per_sample`). PCK counts a joint as correct when its error is strictly
below the threshold (as the MPI-INF-3DHP evaluation does); AUC is the mean PCK over
``steps`` thresholds evenly spaced in [0, max_threshold].
"""
from __future__ import annotations

from abc import abstractmethod

from collections.abc import Sequence

import torch
from torchmetrics import MetricCollection

from framework.errors import UserError
from geometry.procrustes import procrustes_align, scale_align
from metrics.per_sample import PerSampleMetric


def joint_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, J, 3) x2 -> (N, J) Euclidean distance per joint."""
    if pred.shape != target.shape or pred.dim() < 2 or pred.shape[-1] != 3:
        raise UserError(f"3D pose metric: pred and target must both be (N, J, 3); got {tuple(pred.shape)} and {tuple(target.shape)}")
    return torch.linalg.vector_norm(pred - target, dim=-1)


def mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean per-joint position error per sample (N,), in the input unit."""
    return joint_errors(pred, target).mean(-1)


def pa_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MPJPE after aligning pred to target by rotation, translation and scale (Procrustes)."""
    return mpjpe(procrustes_align(pred, target, scale=True), target)


def n_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MPJPE after the least-squares scaling of pred onto target."""
    return mpjpe(scale_align(pred, target), target)


def pck3d(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.150) -> torch.Tensor:
    """Fraction (N,) of joints whose error is below ``threshold`` (metres)."""
    errors = joint_errors(pred, target)
    return (errors < threshold).to(errors.dtype).mean(-1)


def auc3d(pred: torch.Tensor, target: torch.Tensor, max_threshold: float = 0.150, steps: int = 31) -> torch.Tensor:
    """Mean (N,) of PCK over thresholds linspace(0, max_threshold, steps)."""
    errors = joint_errors(pred, target)
    thresholds = torch.linspace(0, max_threshold, steps, device=errors.device, dtype=errors.dtype)
    return (errors[..., None] < thresholds).to(errors.dtype).mean((-1, -2))


class _Pose3DMetric(PerSampleMetric):
    """Shared update: optional joint subset, then a per-sample function of (pred, target)."""

    higher_is_better = False

    def __init__(self, joints: Sequence[int] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.joints = None if joints is None else [int(j) for j in joints]

    @abstractmethod
    def per_sample(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(N,) values of this metric, one per sample."""

    def update(self, pred: torch.Tensor, target: torch.Tensor, index: torch.Tensor) -> None:
        joint_errors(pred, target)
        if pred.dim() != 3:
            raise UserError(f"{type(self).__name__}.update: pred must be (N, J, 3), got {tuple(pred.shape)}")
        if self.joints is not None:
            if max(self.joints) >= pred.shape[1] or min(self.joints) < -pred.shape[1]:
                raise UserError(f"{type(self).__name__}: joints {self.joints} out of range for poses with {pred.shape[1]} joints")
            pred, target = pred[:, self.joints], target[:, self.joints]
        work = torch.float64 if pred.dtype == torch.float64 else torch.float32
        with torch.no_grad():
            values = self.per_sample(pred.detach().to(work), target.detach().to(work))
        super().update(values, index)


class MPJPE(_Pose3DMetric):
    """Mean per-joint position error, mm."""

    scale = 1000.0

    def per_sample(self, pred, target):
        return mpjpe(pred, target)


class PAMPJPE(_Pose3DMetric):
    """Procrustes-aligned MPJPE (rotation, translation, scale), mm."""

    scale = 1000.0

    def per_sample(self, pred, target):
        return pa_mpjpe(pred, target)


class NMPJPE(_Pose3DMetric):
    """Scale-normalised MPJPE, mm."""

    scale = 1000.0

    def per_sample(self, pred, target):
        return n_mpjpe(pred, target)


class PCK3D(_Pose3DMetric):
    """3D PCK at ``threshold`` metres (default 150 mm), percent."""

    scale = 100.0
    higher_is_better = True

    def __init__(self, threshold: float = 0.150, joints: Sequence[int] | None = None, **kwargs) -> None:
        super().__init__(joints=joints, **kwargs)
        self.threshold = float(threshold)

    def per_sample(self, pred, target):
        return pck3d(pred, target, self.threshold)


class AUC3D(_Pose3DMetric):
    """Area under the 3D PCK curve, thresholds 0..``max_threshold`` in ``steps`` steps, percent."""

    scale = 100.0
    higher_is_better = True

    def __init__(self, max_threshold: float = 0.150, steps: int = 31, joints: Sequence[int] | None = None, **kwargs) -> None:
        super().__init__(joints=joints, **kwargs)
        self.max_threshold = float(max_threshold)
        self.steps = int(steps)

    def per_sample(self, pred, target):
        return auc3d(pred, target, self.max_threshold, self.steps)


def pose3d_metric_collection(prefix: str = "", joints: Sequence[int] | None = None, **kwargs) -> MetricCollection:
    """mpjpe, pa_mpjpe, n_mpjpe (mm), pck, auc (percent), each updated with (pred, target, index).

    compute_groups is off: the members share state names, and torchmetrics would merge
    metrics whose first-batch states happen to coincide (e.g. a perfect first batch).
    """
    return MetricCollection(
        {
            "mpjpe": MPJPE(joints=joints, **kwargs),
            "pa_mpjpe": PAMPJPE(joints=joints, **kwargs),
            "n_mpjpe": NMPJPE(joints=joints, **kwargs),
            "pck": PCK3D(joints=joints, **kwargs),
            "auc": AUC3D(joints=joints, **kwargs),
        },
        prefix=prefix or None,
        compute_groups=False,
    )
