"""Point-tracking metrics: ATE, MTE, delta_avg and survival (PIPs on CroHD) and the TAP-Vid trio
occlusion accuracy, points within delta_x and average Jaccard.

Every metric is updated the same way, so one :func:`tracking_metric_collection` takes one call::

    update(pred, gt, visible, valid, index, queries=None, pred_visible=None, size=None)

- ``pred``, ``gt``: (B, T, N, 2) tracks in pixels, (x, y), of the frames they were measured on.
- ``visible``: (B, T, N) ground-truth visibility; ``valid``: (B, T, N) annotated points (None = all).
  Masks are bool, or float with >= 0.5 meaning true. Points padded into a batch are simply not valid.
- ``index``: (B,) int64 dataset indices; a repeated index (DDP padding) is counted once.
- ``queries``: (B, N, 3) as (t, x, y); only t, rounded, is used. None queries every point at frame 0.
- ``pred_visible``: (B, T, N) predicted visibility, needed by occlusion accuracy and Jaccard only.
- ``size``: (H, W) of those frames, a pair or a (B, 2) tensor; needed by the metrics that measure
  distances at 256 x 256 (``eval_size``), where x is scaled by 256 / W and y by 256 / H.

Which frames are scored, per point with query frame q (``query_mode``, TAP-Vid's rule):
``"first"`` scores frames after q (t > q); ``"strided"`` every frame but q. ATE and MTE also score
q itself (``include_query_frame``), as PIPs does on CroHD. Survival always looks forward from q.

Reductions (``reduction``): ``"videos"`` (the default of every metric) is the mean over samples of
each sample's own value, samples with nothing scored left out; ``"points"`` pools every scored point
(or track, for survival and per-track MTE) of the whole test set. A sample is what the data set
yields: a whole video for TAP-Vid, a clip of S frames for PIPs. The published numbers are per
sample: TAP-Vid's ``compute_tapvid_metrics`` gives each video its delta_avg, occlusion accuracy and
AJ and averages videos, and PIPs' CroHD script averages each clip's ATE over clips. The pooled
variants are in :func:`tracking_metric_collection` under ``<key>_pooled`` (``pooled=True``).
Fractions are in percent, distances in pixels (of the frames given, or of 256 x 256 where
``eval_size`` is set).

torchmetrics' compute groups share state between metrics whose states happen to be equal after the
first update (ATE over all and over visible points, when nothing is occluded in the first batch),
and would then never update them apart: the collection here turns them off.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torchmetrics import MetricCollection
from torchmetrics.utilities.data import dim_zero_cat

from framework.errors import UserError
from metrics.per_sample import PerSampleMetric

THRESHOLDS = (1.0, 2.0, 4.0, 8.0, 16.0)
EVAL_SIZE = 256
QUERY_MODES = ("first", "strided")
REDUCTIONS = ("points", "videos")
_DEFAULT = "default"  # eval_size left to the metric's own default


# ----------------------------------------------------------------------------------- inputs
@dataclass
class TrackBatch:
    """Checked inputs of one update; masks bool, coordinates float, ``query_frame`` (B, N) long."""

    pred: torch.Tensor
    gt: torch.Tensor
    visible: torch.Tensor
    valid: torch.Tensor
    query_frame: torch.Tensor
    pred_visible: Optional[torch.Tensor]
    size: Optional[torch.Tensor]  # (B, 2) float as (H, W)

    @property
    def num_frames(self) -> int:
        return self.gt.shape[1]

    def frame_of(self) -> torch.Tensor:
        """(1, T, 1) frame numbers, to compare with ``query_frame[:, None]``."""
        return torch.arange(self.num_frames, device=self.gt.device).view(1, -1, 1)

    def scored(self, query_mode: str, include_query_frame: bool = False) -> torch.Tensor:
        """(B, T, N) valid points scored under ``query_mode`` (see module doc)."""
        t, q = self.frame_of(), self.query_frame[:, None, :]
        if query_mode == "first":
            frames = t >= q if include_query_frame else t > q
        else:
            frames = torch.ones_like(self.valid) if include_query_frame else t != q
        return frames & self.valid

    def distance(self, eval_size: Optional[int], what: str) -> torch.Tensor:
        """(B, T, N) distance between prediction and truth, in pixels or at ``eval_size`` squared."""
        diff = self.pred - self.gt
        if eval_size is not None:
            if self.size is None:
                raise UserError(f"{what}: size=(H, W) of the frames is needed to measure distances at "
                                f"{eval_size} x {eval_size}")
            scale = eval_size / self.size.flip(-1)  # (B, 2) as (x, y)
            diff = diff * scale[:, None, None, :].to(diff.dtype)
        dist = torch.linalg.vector_norm(diff, dim=-1)
        return torch.where(self.valid, dist, torch.zeros_like(dist))  # NaN at unannotated points stays out


def _mask(x: Any, shape: tuple[int, ...], name: str, what: str) -> torch.Tensor:
    if not torch.is_tensor(x):
        raise UserError(f"{what}: {name} must be a tensor of shape {shape}, got {type(x).__name__}")
    if tuple(x.shape) != shape:
        raise UserError(f"{what}: {name} must have shape {shape} (B, T, N), got {tuple(x.shape)}")
    return x if x.dtype == torch.bool else x >= 0.5


def _size(size: Any, batch: int, device: torch.device, what: str) -> Optional[torch.Tensor]:
    if size is None:
        return None
    s = torch.as_tensor(size, dtype=torch.float64, device=device) if not torch.is_tensor(size) \
        else size.to(device=device, dtype=torch.float64)
    if s.shape == (2,):
        s = s.expand(batch, 2)
    if s.shape != (batch, 2) or not bool(torch.all(s > 0)):
        raise UserError(f"{what}: size must be the frames' (H, W), two positive numbers or a ({batch}, 2) "
                        f"tensor, got {size!r}")
    return s


def track_batch(pred, gt, visible, valid=None, queries=None, pred_visible=None, size=None,
                what: str = "tracking metric") -> TrackBatch:
    """Check the inputs of the module doc's convention and put them in one place."""
    if not (torch.is_tensor(pred) and torch.is_tensor(gt)) or pred.dim() != 4 or pred.shape[-1] != 2 \
            or pred.shape != gt.shape:
        raise UserError(f"{what}: pred and gt must both be tracks (B, T, N, 2); got "
                        f"{tuple(getattr(pred, 'shape', ()))} and {tuple(getattr(gt, 'shape', ()))}")
    B, T, N, _ = gt.shape
    dtype = torch.float64 if gt.dtype == torch.float64 else torch.float32
    pred, gt = pred.detach().to(dtype), gt.detach().to(dtype)
    shape = (B, T, N)
    visible = _mask(visible.detach() if torch.is_tensor(visible) else visible, shape, "visible", what)
    valid = torch.ones(shape, dtype=torch.bool, device=gt.device) if valid is None \
        else _mask(valid.detach() if torch.is_tensor(valid) else valid, shape, "valid", what)
    if pred_visible is not None:
        pred_visible = _mask(pred_visible.detach() if torch.is_tensor(pred_visible) else pred_visible,
                             shape, "pred_visible", what)
    if queries is None:
        query_frame = torch.zeros(B, N, dtype=torch.long, device=gt.device)
    else:
        if not torch.is_tensor(queries) or tuple(queries.shape) != (B, N, 3):
            raise UserError(f"{what}: queries must have shape {(B, N, 3)} as (t, x, y), "
                            f"got {tuple(getattr(queries, 'shape', ()))}")
        query_frame = queries.detach()[..., 0].round().long()
        outside = ((query_frame < 0) | (query_frame >= T)) & valid.any(1)  # padded points may hold anything
        if bool(outside.any()):
            bad = query_frame[outside]
            raise UserError(f"{what}: query frames must lie in 0..{T - 1}, got values from "
                            f"{int(bad.min())} to {int(bad.max())}")
        query_frame = query_frame.clamp(0, T - 1)
    return TrackBatch(pred, gt, visible, valid, query_frame, pred_visible, _size(size, B, gt.device, what))


def _counts(hits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T, N) values and mask -> (B,) masked sum, float32."""
    return (hits.float() * mask).flatten(1).sum(1)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.full_like(num, float("nan")))


def _lookup(video_of_index: Any) -> Callable[[int], Any]:
    if callable(video_of_index):
        return video_of_index
    if isinstance(video_of_index, (Mapping, Sequence)):
        return video_of_index.__getitem__
    raise UserError(f"per_video: video_of_index must be a mapping, a sequence or a callable, "
                    f"got {type(video_of_index).__name__}")


def first_occurrence(index: torch.Tensor) -> torch.Tensor:
    """(N,) bool: True at the first row of every index value (the rows :func:`unique_by_index` keeps)."""
    order = torch.argsort(index, stable=True)
    ordered = index[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    keep = torch.zeros_like(first)
    keep[order] = first
    return keep


# ---------------------------------------------------------------------------------- metrics
class TrackingMetric(PerSampleMetric):
    """Stores per-sample rows of counts (:meth:`rows`) and reduces them over points or videos."""

    higher_is_better = True
    scale = 100.0
    default_reduction = "videos"
    default_eval_size: Optional[int] = EVAL_SIZE
    needs_pred_visible = False

    def __init__(self, reduction: Optional[str] = None, query_mode: str = "first",
                 eval_size: Optional[int] | str = _DEFAULT, **kwargs) -> None:
        super().__init__(**kwargs)
        reduction = self.default_reduction if reduction is None else reduction
        if reduction not in REDUCTIONS:
            raise UserError(f"{type(self).__name__}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if query_mode not in QUERY_MODES:
            raise UserError(f"{type(self).__name__}: query_mode must be one of {QUERY_MODES}, got {query_mode!r}")
        if isinstance(eval_size, str) and eval_size == _DEFAULT:
            eval_size = self.default_eval_size
        if eval_size is not None and (isinstance(eval_size, bool) or not isinstance(eval_size, int) or eval_size < 1):
            raise UserError(f"{type(self).__name__}: eval_size must be a positive int or None, got {eval_size!r}")
        self.reduction, self.query_mode, self.eval_size = reduction, query_mode, eval_size

    @abstractmethod
    def rows(self, batch: TrackBatch) -> torch.Tensor:
        """(B, K) per-sample counts that :meth:`reduce` turns into the metric."""

    def update(self, pred, gt, visible, valid, index, queries=None, pred_visible=None, size=None) -> None:
        what = type(self).__name__
        batch = track_batch(pred, gt, visible, valid, queries, pred_visible, size, what)
        if self.needs_pred_visible and batch.pred_visible is None:
            raise UserError(f"{what}: pred_visible (B, T, N) is needed; build the collection with "
                            f"with_visibility=False for a tracker that predicts no visibility")
        if not torch.is_tensor(index) or index.shape != (gt.shape[0],):
            raise UserError(f"{what}: index must be a ({gt.shape[0]},) integer tensor, "
                            f"got {tuple(getattr(index, 'shape', ())) or type(index).__name__}")
        with torch.no_grad():
            rows = self.rows(batch).float()
        super().update(rows, index)

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        """(M, 2) rows of (sum, count) -> pooled or per-video mean, times ``scale``."""
        values = values.double()
        if self.reduction == "points":
            result = _ratio(values[:, 0].sum(), values[:, 1].sum())
        else:
            per = _ratio(values[:, 0], values[:, 1])
            per = per[~torch.isnan(per)]
            result = per.mean() if per.numel() else values.new_tensor(float("nan"))
        return (result * self.scale).float()

    def deduplicated(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(index, rows)`` of every sample seen, each once."""
        if isinstance(self.index, list) and len(self.index) == 0:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, 0)
        index, values = dim_zero_cat(self.index).long(), dim_zero_cat(self.values)
        keep = first_occurrence(index)
        return index[keep], values[keep]

    def per_video(self, video_of_index: Any) -> dict[Any, float]:
        """The metric on each video's own samples, reduced as the whole set is.

        ``video_of_index`` maps a dataset index to a video name: a mapping, a sequence or a callable.
        Videos come in order of first appearance. Under DDP every rank must call it (it gathers).
        """
        synced = self._is_synced
        with self.sync_context(should_sync=not synced, should_unsync=not synced):
            return self._per_video(video_of_index)

    def _per_video(self, video_of_index: Any) -> dict[Any, float]:
        index, rows = self.deduplicated()
        groups = self._groups(index, video_of_index)
        return {video: float(self.reduce(rows[sel])) for video, sel in groups.items()}

    @staticmethod
    def _groups(index: torch.Tensor, video_of_index: Any) -> dict[Any, torch.Tensor]:
        lookup = _lookup(video_of_index)
        names: list[Any] = []
        for i in index.tolist():
            try:
                names.append(lookup(i))
            except (KeyError, IndexError):
                raise UserError(f"per_video: no video known for sample index {i}") from None
        order = list(dict.fromkeys(names))
        return {v: torch.tensor([n == v for n in names], dtype=torch.bool, device=index.device) for v in order}


class ATE(TrackingMetric):
    """Average trajectory error, px: mean L2 over valid points, all of them or only the visible or
    occluded ones (``subset``), query frame included, per clip and then over clips (PIPs' CroHD ATE)."""

    higher_is_better = False
    scale = 1.0
    default_eval_size = None
    SUBSETS = ("all", "visible", "occluded")

    def __init__(self, subset: str = "all", include_query_frame: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if subset not in self.SUBSETS:
            raise UserError(f"ATE: subset must be one of {self.SUBSETS}, got {subset!r}")
        self.subset, self.include_query_frame = subset, bool(include_query_frame)

    def rows(self, batch):
        mask = batch.scored(self.query_mode, self.include_query_frame)
        if self.subset == "visible":
            mask = mask & batch.visible
        elif self.subset == "occluded":
            mask = mask & ~batch.visible
        dist = batch.distance(self.eval_size, "ATE")
        return torch.stack((_counts(dist, mask), _counts(torch.ones_like(dist), mask)), 1)


def _masked_median(values: torch.Tensor, mask: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Median along ``dim`` of the masked entries (mean of the two middle ones, as numpy), and their count."""
    count = mask.sum(dim, keepdim=True)
    filled = torch.where(mask, values, torch.full_like(values, float("inf")))
    ordered = filled.sort(dim).values
    lo = ((count - 1).clamp_min(0)) // 2
    hi = count.clamp_min(1) // 2
    med = (ordered.gather(dim, lo) + ordered.gather(dim, hi.clamp_max(values.shape[dim] - 1))) / 2
    return med.squeeze(dim), count.squeeze(dim)


def median(values: torch.Tensor) -> torch.Tensor:
    """Median of a 1-D tensor, averaging the two middle values; NaN when empty."""
    if values.numel() == 0:
        return torch.tensor(float("nan"), dtype=values.dtype if values.is_floating_point() else torch.float32)
    return _masked_median(values, torch.ones_like(values, dtype=torch.bool), 0)[0]


class MTE(TrackingMetric):
    """Median trajectory error, px, over the valid points ATE scores.

    ``per="points"`` (default): each sample's median over its scored points, averaged over samples
    (reduction ``"points"``: the median of every scored point of the set); the per-point errors are
    kept until :meth:`compute`.
    ``per="tracks"``: each track's median over its scored frames, averaged over tracks, as the
    PIPs++ scripts do (``median_l2``; they also measure it at 256 x 256: ``eval_size=256``).
    """

    higher_is_better = False
    scale = 1.0
    default_eval_size = None

    def __init__(self, per: str = "points", include_query_frame: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if per not in ("points", "tracks"):
            raise UserError(f"MTE: per must be 'points' or 'tracks', got {per!r}")
        self.per, self.include_query_frame = per, bool(include_query_frame)
        self.add_state("errors", default=[], dist_reduce_fx="cat")

    def rows(self, batch):
        mask = batch.scored(self.query_mode, self.include_query_frame)
        dist = batch.distance(self.eval_size, "MTE")
        track_median, track_count = _masked_median(dist, mask, 1)  # (B, N)
        has = track_count > 0
        # sample-major order; per track nothing is kept, but the state is never an empty list under DDP
        self.errors.append(dist.transpose(1, 2)[mask.transpose(1, 2)].float() if self.per == "points"
                           else dist.new_zeros(0, dtype=torch.float32))
        return torch.stack((mask.flatten(1).sum(1).to(dist.dtype), torch.where(has, track_median, 0).sum(1),
                            has.sum(1).to(dist.dtype)), 1)

    def _point_errors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Deduplicated ``(index, rows)`` and the kept per-point errors with the row each belongs to."""
        index, values = dim_zero_cat(self.index).long(), dim_zero_cat(self.values)
        errors = dim_zero_cat(self.errors) if len(self.errors) else torch.zeros(0, device=values.device)
        keep = first_occurrence(index)
        row_of_point = torch.repeat_interleave(torch.arange(len(index), device=index.device),
                                               values[:, 0].round().long())
        point_kept = keep[row_of_point]
        new_row = torch.cumsum(keep.long(), 0) - 1
        return index[keep], values[keep], errors[point_kept], new_row[row_of_point[point_kept]]

    def _reduce_points(self, n_rows: int, errors: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
        """Median of ``errors``, or the mean over rows of each row's median; ``owner`` is sorted."""
        errors = errors.double()
        if self.reduction == "points":
            return median(errors).float()
        sizes = torch.bincount(owner, minlength=n_rows).tolist()
        per = torch.stack([median(e) for e in torch.split(errors, sizes) if e.numel()]) if errors.numel() \
            else torch.zeros(0, dtype=torch.float64)
        return (per.mean() if per.numel() else torch.tensor(float("nan"))).float()

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        return super().reduce(values[:, 1:3])  # per track: (sum of medians, tracks)

    def compute(self) -> torch.Tensor:
        if self.per == "tracks":
            return super().compute()
        if isinstance(self.index, list) and len(self.index) == 0:
            return torch.tensor(float("nan"), device=self.device)
        index, _, errors, owner = self._point_errors()
        return self._reduce_points(len(index), errors, owner)

    def _per_video(self, video_of_index: Any) -> dict[Any, float]:
        if self.per == "tracks":
            return super()._per_video(video_of_index)
        if isinstance(self.index, list) and len(self.index) == 0:
            return {}
        index, _, errors, owner = self._point_errors()
        out = {}
        for video, sel in self._groups(index, video_of_index).items():
            renumber = torch.cumsum(sel.long(), 0) - 1  # row number among this video's rows
            mine = sel[owner]
            out[video] = float(self._reduce_points(int(sel.sum()), errors[mine], renumber[owner[mine]]))
        return out


def _within_counts(batch: TrackBatch, mask: torch.Tensor, thresholds: Sequence[float], eval_size, what):
    """(B, K) number of masked points closer than each threshold (strictly)."""
    dist = batch.distance(eval_size, what)
    return torch.stack([_counts(dist < t, mask) for t in thresholds], 1)


def _thresholds(thresholds: Sequence[float], what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(t) for t in thresholds)
    except (TypeError, ValueError):
        raise UserError(f"{what}: thresholds must be a list of numbers, got {thresholds!r}") from None
    if not out or any(not t > 0 for t in out):
        raise UserError(f"{what}: thresholds must be positive numbers, got {thresholds!r}")
    return out


class PointsWithin(TrackingMetric):
    """TAP-Vid < delta^x_avg, %: share of visible, scored points closer than each threshold (px at
    256 x 256), averaged over the thresholds. Per video, then the mean over videos."""

    def __init__(self, thresholds: Sequence[float] = THRESHOLDS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.thresholds = _thresholds(thresholds, type(self).__name__)

    def rows(self, batch):
        mask = batch.scored(self.query_mode) & batch.visible
        within = _within_counts(batch, mask, self.thresholds, self.eval_size, type(self).__name__)
        # every threshold shares the denominator, so the mean of ratios is the ratio of the mean count
        return torch.stack((within.mean(1), _counts(torch.ones_like(mask), mask)), 1)


class DeltaAvg(PointsWithin):
    """PIPs' delta_avg, %: the count of :class:`PointsWithin` (frames after the query frame, visible
    points, 256 x 256), per clip and then over clips. PIPs++' script masks by ``valid`` alone, not
    visibility; METHODS.md says visible points, which is what this counts."""


class Survival(TrackingMetric):
    """Share of the video, %, a track survives: it dies at the first valid frame after its query frame
    where it is farther than ``threshold`` (16 px at 256 x 256, strictly) from the truth. Per track:
    frames alive after q / frames after q (unannotated frames cannot kill it); tracks with no valid
    frame after q are left out. Pooled over tracks by default. PIPs++ averages over all frames,
    frame 0 included, which reads (1 + this x (T - 1)) / T for tracks queried at frame 0. Per clip,
    then over clips."""

    def __init__(self, threshold: float = 16.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = _thresholds([threshold], "Survival")[0]

    def rows(self, batch):
        after = batch.frame_of() > batch.query_frame[:, None, :]  # (B, T, N)
        dist = batch.distance(self.eval_size, "Survival")
        dead = torch.cumsum((after & batch.valid & (dist > self.threshold)).long(), 1) > 0
        n_after = after.sum(1)
        fraction = _ratio((after & ~dead).sum(1).double(), n_after.double())  # (B, N)
        counted = (after & batch.valid).any(1)
        return torch.stack((torch.where(counted, fraction, 0).sum(1), counted.sum(1).double()), 1)


class OcclusionAccuracy(TrackingMetric):
    """TAP-Vid occlusion accuracy, %: scored points whose predicted visibility equals the truth."""

    default_eval_size = None
    needs_pred_visible = True

    def rows(self, batch):
        mask = batch.scored(self.query_mode)
        return torch.stack((_counts(batch.pred_visible == batch.visible, mask),
                            _counts(torch.ones_like(mask), mask)), 1)


class AverageJaccard(TrackingMetric):
    """TAP-Vid average Jaccard, %: per threshold TP / (GT visible + FP) over the scored points, with
    TP = within & GT visible & predicted visible and FP = predicted visible & (GT occluded or not
    within), averaged over the thresholds (px at 256 x 256). Per video, then over videos."""

    needs_pred_visible = True

    def __init__(self, thresholds: Sequence[float] = THRESHOLDS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.thresholds = _thresholds(thresholds, "AverageJaccard")

    def rows(self, batch):
        mask = batch.scored(self.query_mode)
        dist = batch.distance(self.eval_size, "AverageJaccard")
        vis, pvis = batch.visible, batch.pred_visible
        gt_pos = _counts(vis, mask)
        tp, den = [], []
        for t in self.thresholds:
            within = dist < t
            tp.append(_counts(within & vis & pvis, mask))
            den.append(gt_pos + _counts(pvis & (~vis | ~within), mask))
        return torch.cat((torch.stack(tp, 1), torch.stack(den, 1)), 1)

    def reduce(self, values: torch.Tensor) -> torch.Tensor:
        """(M, 2K) rows of (TP per threshold, denominator per threshold)."""
        values = values.double()
        k = len(self.thresholds)
        tp, den = values[:, :k], values[:, k:]
        if self.reduction == "points":
            result = _ratio(tp.sum(0), den.sum(0)).mean()
        else:
            per = _ratio(tp, den).mean(1)
            per = per[~torch.isnan(per)]
            result = per.mean() if per.numel() else values.new_tensor(float("nan"))
        return (result * self.scale).float()


def tracking_metric_collection(query_mode: str = "first", with_visibility: bool = True, prefix: str = "",
                               eval_size: int = EVAL_SIZE, thresholds: Sequence[float] = THRESHOLDS,
                               survival_threshold: float = 16.0, pooled: bool = False) -> MetricCollection:
    """Every tracking metric under one update (module doc); keys ``ate_all``, ``ate_vis``, ``ate_occ``,
    ``mte`` (px of the given frames), ``delta_avg``, ``survival`` and, with ``with_visibility``,
    ``occlusion_acc``, ``pts_within``, ``avg_jaccard`` (%, distances at ``eval_size`` squared).

    Every key is per sample, then the mean over samples (the published convention, module doc);
    ``pooled`` adds each one again pooled over the whole set as ``<key>_pooled``. ``query_mode``
    must match how the data set drew its queries. Without ``with_visibility`` the metrics that need
    ``pred_visible`` are left out.
    """
    if query_mode not in QUERY_MODES:
        raise UserError(f"tracking_metric_collection: query_mode must be one of {QUERY_MODES}, got {query_mode!r}")

    def build(reduction: str) -> dict[str, TrackingMetric]:
        common = {"query_mode": query_mode, "reduction": reduction}
        metrics: dict[str, TrackingMetric] = {
            "ate_all": ATE("all", **common),
            "ate_vis": ATE("visible", **common),
            "ate_occ": ATE("occluded", **common),
            "mte": MTE(**common),
            "delta_avg": DeltaAvg(thresholds, eval_size=eval_size, **common),
            "survival": Survival(survival_threshold, eval_size=eval_size, **common),
        }
        if with_visibility:
            metrics.update({
                "occlusion_acc": OcclusionAccuracy(**common),
                "pts_within": PointsWithin(thresholds, eval_size=eval_size, **common),
                "avg_jaccard": AverageJaccard(thresholds, eval_size=eval_size, **common),
            })
        return metrics

    metrics = build("videos")
    if pooled:
        metrics.update({f"{key}_pooled": metric for key, metric in build("points").items()})
    return MetricCollection(metrics, prefix=prefix, compute_groups=False)


def tracking_per_video(collection: MetricCollection | Mapping[str, TrackingMetric],
                       video_of_index: Any) -> dict[str, dict[Any, float]]:
    """{metric key: {video: value}} for every tracking metric in ``collection``."""
    items = collection.items() if hasattr(collection, "items") else collection
    return {key: metric.per_video(video_of_index) for key, metric in items if isinstance(metric, TrackingMetric)}
