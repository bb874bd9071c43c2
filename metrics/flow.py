"""Optical-flow metrics: end-point error, n-px accuracy, KITTI Fl-all; per-video means.

Flows are (B, 2, H, W) in pixels; ``valid`` is (B, H, W) (bool, or float with >= 0.5 meaning
valid; None = every pixel). Every metric stores, per sample, a (sum, count) pair over its
valid pixels, deduplicated by dataset index (:mod:`metrics.per_sample`), and reduces them
one of two ways, chosen by ``reduction``:

- ``"pixels"``: sum over all samples / number of valid pixels over all samples, so every
  pixel weighs the same. This is the Sintel convention (EPE and 1/3/5 px accuracy over all
  pixels) and the KITTI convention for Fl-all.
- ``"images"``: mean over samples of each sample's own mean, so every image weighs the same
  (samples without a valid pixel are left out). This is the KITTI convention for EPE.

Defaults follow those conventions: :class:`EPE`, :class:`FlowAccuracy` and :class:`FlAll`
reduce over pixels; ask for ``EPE(reduction="images")`` for KITTI EPE, or build the set with
:func:`flow_metric_collection` (which can add the KITTI EPE over pixels as ``epe_pooled``). Accuracy counts a pixel when its EPE is strictly below the
threshold; Fl-all counts a pixel as an outlier when its EPE is > 3 px and > 5% of |gt|.
Errors are in pixels; accuracy and Fl-all in percent.
"""
from __future__ import annotations

from abc import abstractmethod

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Optional

import torch
from torchmetrics import MetricCollection
from torchmetrics.utilities.data import dim_zero_cat

from framework.errors import UserError
from geometry.flow import backward_warp, forward_backward_consistency
from metrics.per_sample import PerSampleMetric, unique_by_index

REDUCTIONS = ("pixels", "images")


def _check_inputs(pred: torch.Tensor, gt: torch.Tensor, valid: Optional[torch.Tensor], what: str) -> torch.Tensor:
    """Validate shapes; return ``valid`` as a bool (B, H, W) tensor."""
    if pred.dim() != 4 or pred.shape[1] != 2 or pred.shape != gt.shape:
        raise UserError(f"{what}: pred and gt must both be flows (B, 2, H, W); got {tuple(pred.shape)} and {tuple(gt.shape)}")
    want = (gt.shape[0], gt.shape[2], gt.shape[3])
    if valid is None:
        return torch.ones(want, dtype=torch.bool, device=gt.device)
    if tuple(valid.shape) != want:
        raise UserError(f"{what}: valid must have shape {want}, got {tuple(valid.shape)}")
    return valid if valid.dtype == torch.bool else valid >= 0.5


def end_point_error(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """(B, 2, H, W) x2 -> (B, H, W) Euclidean distance between predicted and true flow."""
    _check_inputs(pred, gt, None, "end_point_error")
    return torch.linalg.vector_norm(pred - gt, dim=1)


def _masked_sums(hits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(B, H, W) values and mask -> (B, 2): sum over valid pixels, number of valid pixels."""
    hits = hits.to(torch.float64 if hits.dtype == torch.float64 else torch.float32)
    total = (hits * valid).flatten(1).sum(1)
    count = valid.flatten(1).sum(1).to(total.dtype)
    return torch.stack((total, count), dim=1)


def epe_sums(pred, gt, valid=None) -> torch.Tensor:
    """(B, 2): summed EPE over valid pixels and their number."""
    valid = _check_inputs(pred, gt, valid, "epe")
    return _masked_sums(end_point_error(pred, gt), valid)


def accuracy_sums(pred, gt, valid=None, threshold: float = 1.0) -> torch.Tensor:
    """(B, 2): number of valid pixels with EPE < ``threshold`` and of valid pixels."""
    valid = _check_inputs(pred, gt, valid, "flow accuracy")
    return _masked_sums(end_point_error(pred, gt) < threshold, valid)


def fl_all_sums(pred, gt, valid=None, abs_threshold: float = 3.0, rel_threshold: float = 0.05) -> torch.Tensor:
    """(B, 2): number of valid outliers (EPE > abs AND EPE > rel * |gt|) and of valid pixels."""
    valid = _check_inputs(pred, gt, valid, "fl_all")
    epe = end_point_error(pred, gt)
    outlier = (epe > abs_threshold) & (epe > rel_threshold * torch.linalg.vector_norm(gt, dim=1))
    return _masked_sums(outlier, valid)


def _ratio(sums: torch.Tensor) -> torch.Tensor:
    """(N, 2) (sum, count) -> (N,) per-sample mean, NaN where a sample has no valid pixel."""
    return torch.where(sums[:, 1] > 0, sums[:, 0] / sums[:, 1].clamp_min(1), torch.full_like(sums[:, 0], float("nan")))


def epe(pred, gt, valid=None) -> torch.Tensor:
    """(B,) mean EPE over each sample's valid pixels (NaN without one)."""
    return _ratio(epe_sums(pred, gt, valid))


def flow_accuracy(pred, gt, valid=None, threshold: float = 1.0) -> torch.Tensor:
    """(B,) fraction of each sample's valid pixels with EPE < ``threshold``."""
    return _ratio(accuracy_sums(pred, gt, valid, threshold))


def fl_all(pred, gt, valid=None, abs_threshold: float = 3.0, rel_threshold: float = 0.05) -> torch.Tensor:
    """(B,) fraction of each sample's valid pixels that are KITTI outliers."""
    return _ratio(fl_all_sums(pred, gt, valid, abs_threshold, rel_threshold))


class _FlowMetric(PerSampleMetric):
    """Stores per-sample (sum, count) and reduces over pixels or images (see module doc)."""

    higher_is_better = False

    def __init__(self, reduction: str = "pixels", **kwargs) -> None:
        super().__init__(**kwargs)
        if reduction not in REDUCTIONS:
            raise UserError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        self.reduction = reduction

    @abstractmethod
    def sums(self, pred, gt, valid) -> torch.Tensor:
        """(B, 2): per-sample sum of the metric over valid pixels and the number of valid pixels."""

    def update(self, pred: torch.Tensor, gt: torch.Tensor, valid: Optional[torch.Tensor], index: torch.Tensor) -> None:
        with torch.no_grad():
            values = self.sums(pred.detach().float() if pred.dtype != torch.float64 else pred.detach(),
                               gt.detach().float() if gt.dtype != torch.float64 else gt.detach(), valid)
        super().update(values, index)

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        values = values.double()  # pixel counts over a data set overflow float32's exact integers
        if self.reduction == "pixels":
            count = values[:, 1].sum()
            result = values[:, 0].sum() / count if count > 0 else values.new_tensor(float("nan"))
        else:
            means = _ratio(values)
            means = means[~torch.isnan(means)]
            result = means.mean() if means.numel() else values.new_tensor(float("nan"))
        return (result * self.scale).float()

    def sample_values(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deduplicated ``(index, per-sample mean, valid-pixel count)`` for breakdowns (:func:`per_video`)."""
        if isinstance(self.index, list) and len(self.index) == 0:
            empty = torch.zeros(0)
            return empty.long(), empty, empty
        index, values = unique_by_index(dim_zero_cat(self.index).long(), dim_zero_cat(self.values))
        return index, _ratio(values) * self.scale, values[:, 1]


class EPE(_FlowMetric):
    """End-point error, px. Default over all pixels (Sintel); ``reduction="images"`` for KITTI."""

    def sums(self, pred, gt, valid):
        return epe_sums(pred, gt, valid)


class FlowAccuracy(_FlowMetric):
    """Percent of valid pixels with EPE < ``threshold`` px (1, 3 and 5 are the usual ones)."""

    scale = 100.0
    higher_is_better = True

    def __init__(self, threshold: float = 1.0, reduction: str = "pixels", **kwargs) -> None:
        super().__init__(reduction=reduction, **kwargs)
        self.threshold = float(threshold)

    def sums(self, pred, gt, valid):
        return accuracy_sums(pred, gt, valid, self.threshold)


class FlAll(_FlowMetric):
    """KITTI Fl-all: percent of valid pixels with EPE > 3 px and > 5% of |gt|, over all pixels."""

    scale = 100.0

    def __init__(self, abs_threshold: float = 3.0, rel_threshold: float = 0.05, reduction: str = "pixels", **kwargs) -> None:
        super().__init__(reduction=reduction, **kwargs)
        self.abs_threshold = float(abs_threshold)
        self.rel_threshold = float(rel_threshold)

    def sums(self, pred, gt, valid):
        return fl_all_sums(pred, gt, valid, self.abs_threshold, self.rel_threshold)


def flow_metric_collection(style: str = "sintel", prefix: str = "", pooled: bool = False,
                           **kwargs) -> MetricCollection:
    """The benchmark's metric set, each updated with (pred, gt, valid, index).

    ``"sintel"``: epe, 1px, 3px, 5px, all over pixels. ``"kitti"``: epe as the mean of
    per-image EPE, fl_all over pixels; ``pooled`` adds ``epe_pooled``, the EPE over all pixels.
    """
    if style == "sintel":
        metrics = {"epe": EPE(**kwargs), **{f"{t}px": FlowAccuracy(float(t), **kwargs) for t in (1, 3, 5)}}
    elif style == "kitti":
        metrics = {"epe": EPE(reduction="images", **kwargs), "fl_all": FlAll(**kwargs)}
        if pooled:
            metrics["epe_pooled"] = EPE(reduction="pixels", **kwargs)
    else:
        raise UserError(f"flow_metric_collection: style must be 'sintel' or 'kitti', got {style!r}")
    # compute groups off: torchmetrics would merge members whose first-batch states coincide (e.g. a
    # batch where every pixel is an outlier at 1, 3 and 5 px) and report one value for all of them after
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)


class _LabelFreeMetric(_FlowMetric):
    """Measured from the frames and the forward and backward flows alone (footage without ground
    truth); updated with (image1, image2, flow_fw, flow_bw, index)."""

    def sums(self, pred, gt, valid):
        raise UserError(f"{type(self).__name__} needs no ground truth; update it with frames and both flows")

    @abstractmethod
    def label_free_sums(self, image1, image2, flow_fw, flow_bw) -> torch.Tensor:
        """(B, 2): per-sample sum over counted pixels and their number."""

    def update(self, image1, image2, flow_fw, flow_bw, index) -> None:
        with torch.no_grad():
            values = self.label_free_sums(image1.detach().float(), image2.detach().float(),
                                          flow_fw.detach().float(), flow_bw.detach().float())
        PerSampleMetric.update(self, values, index)


class ForwardBackwardConsistency(_LabelFreeMetric):
    """Share of pixels (%) passing the UnFlow forward-backward check (its own alpha1 0.01, alpha2 0.5)."""

    higher_is_better = True
    scale = 100.0

    def label_free_sums(self, image1, image2, flow_fw, flow_bw):
        consistent = forward_backward_consistency(flow_fw, flow_bw, 0.01, 0.5).float()
        return torch.stack((consistent.flatten(1).sum(1), torch.full_like(consistent[:, 0, 0], consistent[0].numel())), 1)


class PhotometricError(_LabelFreeMetric):
    """Mean absolute colour difference (0..255) between frame 1 and frame 2 back-warped by the flow,
    over pixels whose target lies inside frame 2."""

    def label_free_sums(self, image1, image2, flow_fw, flow_bw):
        warped, inside = backward_warp(image2, flow_fw)
        diff = (image1 - warped).abs().mean(1) * inside
        return torch.stack((diff.flatten(1).sum(1), inside.flatten(1).sum(1).float()), 1)


class FlowMagnitude(_LabelFreeMetric):
    """Mean length of the forward flow, px. Not a quality on its own: it shows a refinement that
    collapses the flow towards zero, which the consistency share would reward."""

    def label_free_sums(self, image1, image2, flow_fw, flow_bw):
        length = torch.linalg.vector_norm(flow_fw, dim=1)
        return torch.stack((length.flatten(1).sum(1), torch.full_like(length[:, 0, 0], length[0].numel())), 1)


def unsupervised_flow_metric_collection(prefix: str = "") -> MetricCollection:
    """What can be measured on footage without ground truth: fb_consistent (%), the photometric error
    and the mean flow magnitude (to be read together: each alone can be gamed)."""
    return MetricCollection({"fb_consistent": ForwardBackwardConsistency(), "photometric": PhotometricError(),
                             "flow_magnitude": FlowMagnitude()}, prefix=prefix, compute_groups=False)


def per_video(values: torch.Tensor, index: torch.Tensor, video_of_index: Any,
              weights: Optional[torch.Tensor] = None) -> dict[str, float]:
    """Mean per video of per-sample ``values`` (N,), each sample counted once (dedup by ``index``).

    ``video_of_index`` maps a global sample index to its video name: a mapping, a sequence
    indexed by sample index, or a callable. With ``weights`` (N,) (e.g. valid-pixel counts
    from :meth:`_FlowMetric.sample_values`) the mean is weighted, i.e. over pixels; NaN
    values (samples without a valid pixel) are skipped. Videos come in order of first appearance.
    """
    values = torch.as_tensor(values).detach().double().reshape(-1)
    index = torch.as_tensor(index).detach().long().reshape(-1)
    w = torch.ones_like(values) if weights is None else torch.as_tensor(weights).detach().double().reshape(-1)
    if values.shape != index.shape or w.shape != values.shape:
        raise UserError(f"per_video: values {tuple(values.shape)}, index {tuple(index.shape)} and weights "
                        f"{tuple(w.shape)} must all be (N,)")
    index, values, w = unique_by_index(index, values, w)
    lookup: Callable[[int], Any]
    if callable(video_of_index):
        lookup = video_of_index
    elif isinstance(video_of_index, (Mapping, Sequence)):
        lookup = video_of_index.__getitem__
    else:
        raise UserError(f"per_video: video_of_index must be a mapping, a sequence or a callable, got {type(video_of_index).__name__}")
    sums: dict[str, list[float]] = {}
    for i, v, wi in zip(index.tolist(), values.tolist(), w.tolist()):
        try:
            video = lookup(i)
        except (KeyError, IndexError):
            raise UserError(f"per_video: no video known for sample index {i}") from None
        acc = sums.setdefault(video, [0.0, 0.0])
        if v == v and wi > 0:  # skip NaN
            acc[0] += v * wi
            acc[1] += wi
    return {video: (s / n if n > 0 else float("nan")) for video, (s, n) in sums.items()}
