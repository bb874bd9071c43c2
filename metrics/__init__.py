"""torchmetrics metrics that count every test sample once under DDP."""
from metrics.per_sample import PerSampleMetric, unique_by_index
from metrics.pose3d import (
    AUC3D,
    MPJPE,
    NMPJPE,
    PAMPJPE,
    PCK3D,
    auc3d,
    joint_errors,
    mpjpe,
    n_mpjpe,
    pa_mpjpe,
    pck3d,
    pose3d_metric_collection,
)

__all__ = [
    "AUC3D", "MPJPE", "NMPJPE", "PAMPJPE", "PCK3D", "PerSampleMetric", "auc3d", "joint_errors", "mpjpe",
    "n_mpjpe", "pa_mpjpe", "pck3d", "pose3d_metric_collection", "unique_by_index",
]
