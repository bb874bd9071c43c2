"""Scores of every person's 3D pose in a frame, as the multi-person benchmarks define them.

People are matched frame by frame before anything is scored (``match_people``): a one-to-one
assignment (Hungarian, scipy's ``linear_sum_assignment``) minimising the mean image distance
between the joints both poses have, as MuPoTS-3D's evaluation matches in the image; a pair more
than ``max_distance`` pixels apart is no match. A true person left unmatched is a miss: all its
joints count as wrong in PCK, AUC and PCK_abs (MuPoTS' rule); it has no error to add to MPJPE.

Per frame (``frame_scores``), over the true people's valid joints:
- ``pck``: root-relative joints within 150 mm (strictly below, as the 3DHP / MuPoTS code);
- ``auc``: that share averaged over 31 thresholds evenly spaced in 0..150 mm;
- ``pck_abs``: camera-frame joints within 150 mm, no root alignment;
- ``mpjpe``, ``pa_mpjpe``: root-relative mean errors of the matched people (mm);
- ``ap_root``: RootNet's AP_25^root: predictions ranked by confidence over all frames; one is a
  true positive when its root lies within 25 cm of a true root of its frame that no better-ranked
  prediction of the frame claimed; AP is the area under the precision-recall curve (all points);
- ``f1@0.4`` / ``f1@0.8`` / ``f1@1.2``: JTA's joint detection score: per frame and joint type,
  predicted joints matched one-to-one to true joints by 3D distance (Hungarian); matched pairs
  within the threshold (metres) are true positives; F1 = 2 TP / (2 TP + FP + FN) over all.

``MultiPersonScores`` accumulates frames (deduplicated by dataset index under DDP) and gives the
means over sequences (each sequence's PCK pools its joints, as MuPoTS reports per sequence and
then averages) and the per-sequence breakdown.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from framework.errors import UserError
from geometry.procrustes import procrustes_align
from metrics.per_sample import unique_by_index

PCK_THRESHOLD = 0.150  # metres
AUC_STEPS = 31
ROOT_THRESHOLD = 0.25  # metres (AP_25^root)
F1_THRESHOLDS = (0.4, 0.8, 1.2)  # metres (JTA)
ROOT = 0  # the pelvis in H36M-17
# per frame: joints, pck, pck_abs, auc sums; matched people, their mpjpe and pa_mpjpe sums;
# true roots; then TP / FP / FN per F1 threshold
_COLUMNS = 8 + 3 * len(F1_THRESHOLDS)


def match_people(pred2d: np.ndarray, pred_valid: np.ndarray, true2d: np.ndarray, true_valid: np.ndarray,
                 joint_valid: np.ndarray, max_distance: float = float("inf")) -> list[tuple[int, int]]:
    """(P, J, 2), (P,), (G, J, 2), (G,), (G, J) -> the matched (prediction, true person) pairs."""
    preds, trues = np.flatnonzero(pred_valid), np.flatnonzero(true_valid)
    if len(preds) == 0 or len(trues) == 0:
        return []
    distance = np.linalg.norm(pred2d[preds][:, None] - true2d[trues][None], axis=-1)  # (p, g, J)
    weight = joint_valid[trues][None].astype(float)
    cost = (distance * weight).sum(-1) / np.maximum(weight.sum(-1), 1)
    cost = np.where(weight.sum(-1) > 0, cost, np.inf)
    finite = np.where(np.isfinite(cost), cost, 1e12)
    rows, cols = linear_sum_assignment(finite)
    return [(int(preds[r]), int(trues[c])) for r, c in zip(rows, cols) if cost[r, c] <= max_distance]


def _joint_f1_counts(pred: np.ndarray, pred_valid: np.ndarray, true: np.ndarray, joint_valid: np.ndarray,
                     true_valid: np.ndarray) -> np.ndarray:
    """(3 x thresholds,) TP, FP, FN summed over joint types of one frame."""
    counts = np.zeros((len(F1_THRESHOLDS), 3))
    p = pred[pred_valid]  # (p, J, 3)
    for j in range(true.shape[1]):
        t = true[true_valid & joint_valid[:, j], j]
        q = p[:, j]
        if len(q) == 0 or len(t) == 0:
            counts[:, 1] += len(q)
            counts[:, 2] += len(t)
            continue
        distance = np.linalg.norm(q[:, None] - t[None], axis=-1)
        rows, cols = linear_sum_assignment(distance)
        for k, threshold in enumerate(F1_THRESHOLDS):
            tp = int((distance[rows, cols] <= threshold).sum())
            counts[k] += (tp, len(q) - tp, len(t) - tp)
    return counts.ravel()


def _root_claims(pred_roots: np.ndarray, confidence: np.ndarray, true_roots: np.ndarray) -> np.ndarray:
    """(p,) 1 for a true positive, 0 otherwise, claiming in the order of confidence within one frame."""
    claimed = np.zeros(len(true_roots), bool)
    hits = np.zeros(len(pred_roots))
    for i in np.argsort(-confidence, kind="stable"):
        if not len(true_roots):
            break
        distance = np.linalg.norm(true_roots - pred_roots[i], axis=-1)
        distance[claimed] = np.inf
        best = int(distance.argmin())
        if distance[best] < ROOT_THRESHOLD:
            claimed[best] = True
            hits[i] = 1.0
    return hits


def frame_scores(pred: dict, truth: dict, max_distance: float = float("inf")) -> tuple[np.ndarray, np.ndarray]:
    """One frame's sums (``_COLUMNS``,) and its predictions' (confidence, true positive) rows (p, 2).

    ``pred``: ``joints3d`` (P, J, 3) camera frame metres, ``joints2d`` (P, J, 2), ``valid`` (P,),
    ``confidence`` (P,); ``truth``: ``joints3d`` (G, J, 3), ``joints2d`` (G, J, 2), ``joint_valid``
    (G, J), ``person_valid`` (G,). Numpy arrays."""
    pairs = match_people(pred["joints2d"], pred["valid"], truth["joints2d"], truth["person_valid"],
                         truth["joint_valid"], max_distance)
    true_valid = truth["person_valid"].astype(bool)
    joint_valid = truth["joint_valid"].astype(bool) & true_valid[:, None]
    row = np.zeros(_COLUMNS)
    row[0] = joint_valid.sum()
    thresholds = np.linspace(0, PCK_THRESHOLD, AUC_STEPS)
    for p, g in pairs:
        seen = joint_valid[g]
        mine, true = pred["joints3d"][p], truth["joints3d"][g]
        relative = np.linalg.norm((mine - mine[ROOT]) - (true - true[ROOT]), axis=-1)[seen]
        absolute = np.linalg.norm(mine - true, axis=-1)[seen]
        row[1] += (relative < PCK_THRESHOLD).sum()
        row[2] += (absolute < PCK_THRESHOLD).sum()
        row[3] += (relative[:, None] < thresholds).mean(-1).sum()
        if seen.any():
            aligned = procrustes_align(torch.from_numpy(mine - mine[ROOT])[None][:, seen],
                                       torch.from_numpy(true - true[ROOT])[None][:, seen], scale=True)[0].numpy()
            row[4] += 1
            row[5] += relative.mean()
            row[6] += np.linalg.norm(aligned - (true - true[ROOT])[seen], axis=-1).mean()
    row[7] = true_valid.sum()
    row[8:] = _joint_f1_counts(pred["joints3d"], pred["valid"].astype(bool), truth["joints3d"], joint_valid, true_valid)
    kept = pred["valid"].astype(bool)
    hits = _root_claims(pred["joints3d"][kept, ROOT], pred["confidence"][kept], truth["joints3d"][true_valid, ROOT])
    return row, np.stack([pred["confidence"][kept], hits], -1)


def average_precision(confidence: np.ndarray, hits: np.ndarray, positives: float) -> float:
    """All-points AP of ranked detections: the area under the precision envelope over recall."""
    if positives <= 0:
        return float("nan")
    order = np.argsort(-confidence, kind="stable")
    tp = np.cumsum(hits[order])
    precision = tp / np.arange(1, len(order) + 1)
    recall = tp / positives
    precision = np.concatenate([[0.0], precision, [0.0]])
    recall = np.concatenate([[0.0], recall, [recall[-1] if len(recall) else 0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


def scores_of(rows: np.ndarray, ranked: np.ndarray) -> dict[str, float]:
    """The scores of pooled frame sums (``_COLUMNS``,) and ranked (confidence, hit) rows."""
    joints, people = max(rows[0], 1), max(rows[4], 1)
    out = {"pck": 100 * rows[1] / joints, "pck_abs": 100 * rows[2] / joints, "auc": 100 * rows[3] / joints,
           "mpjpe": 1000 * rows[5] / people if rows[4] else float("nan"),
           "pa_mpjpe": 1000 * rows[6] / people if rows[4] else float("nan"),
           "ap_root": 100 * average_precision(ranked[:, 0], ranked[:, 1], rows[7])}
    for k, threshold in enumerate(F1_THRESHOLDS):
        tp, fp, fn = rows[8 + 3 * k: 11 + 3 * k]
        out[f"f1@{threshold}"] = 100 * 2 * tp / max(2 * tp + fp + fn, 1)
    return out


class MultiPersonScores(Metric):
    """``update(pred, truth, index, sequence)`` with a batch of frames: ``pred`` ``joints3d`` (B, P, J, 3),
    ``joints2d`` (B, P, J, 2), ``valid`` (B, P), ``confidence`` (B, P); ``truth`` ``joints3d`` (B, G, J, 3),
    ``joints2d``, ``joint_valid`` (B, G, J), ``person_valid`` (B, G); ``index`` and ``sequence`` (B,).
    ``compute()``: each score's mean over sequences; ``per_sequence()``: every sequence's scores."""

    full_state_update = False

    def __init__(self, max_distance: float = float("inf"), **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_distance = float(max_distance)
        for name in ("rows", "ranked", "index", "sequence", "ranked_index"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, pred: dict, truth: dict, index: torch.Tensor, sequence: torch.Tensor) -> None:
        keys = (("joints3d", 3), ("joints2d", 2))
        for source, extra in ((pred, ("valid", "confidence")), (truth, ("joint_valid", "person_valid"))):
            for key, d in keys:
                if key not in source or source[key].dim() != 4 or source[key].shape[-1] != d:
                    raise UserError(f"multi-person scores: '{key}' must be (B, people, joints, {d}), got "
                                    f"{tuple(source[key].shape) if key in source else 'nothing'}")
            missing = [k for k in extra if k not in source]
            if missing:
                raise UserError(f"multi-person scores: {', '.join(missing)} missing")
        as_np = lambda d: {k: v.detach().float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy()  # noqa: E731
                           for k, v in d.items() if torch.is_tensor(v)}
        p, t = as_np(pred), as_np(truth)
        rows, ranked, owner = [], [], []
        for b in range(len(index)):
            row, hits = frame_scores({k: v[b] for k, v in p.items()}, {k: v[b] for k, v in t.items()},
                                     self.max_distance)
            rows.append(row)
            ranked.append(hits)
            owner += [(int(index[b]), slot) for slot in range(len(hits))]
        self.rows.append(torch.tensor(np.stack(rows), dtype=torch.float64, device=self.device))
        self.ranked.append(torch.tensor(np.concatenate(ranked).reshape(-1, 2), dtype=torch.float64, device=self.device))
        self.ranked_index.append(torch.tensor(owner, dtype=torch.long, device=self.device).reshape(-1, 2))
        self.index.append(index.detach().long().to(self.device))
        self.sequence.append(sequence.detach().long().to(self.device))

    def _gathered(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Frame sums (F, _COLUMNS), their sequences (F,), ranked rows (R, 2) and their sequences (R,),
        every frame once (DDP's padding repeats some)."""
        if isinstance(self.index, list) and not self.index:
            return np.zeros((0, _COLUMNS)), np.zeros(0, int), np.zeros((0, 2)), np.zeros(0, int)
        index, sequence, rows = unique_by_index(dim_zero_cat(self.index), dim_zero_cat(self.sequence),
                                                dim_zero_cat(self.rows))
        ranked, owners = dim_zero_cat(self.ranked), dim_zero_cat(self.ranked_index)  # owners: (frame, slot)
        key = owners[:, 0] * (int(owners[:, 1].max()) + 1 if len(owners) else 1) + owners[:, 1]
        _, ranked, owners = unique_by_index(key, ranked, owners)
        sequence_of = dict(zip(index.tolist(), sequence.tolist()))
        ranked_sequence = np.array([sequence_of[int(f)] for f in owners[:, 0].tolist()], dtype=int)
        return rows.cpu().numpy(), sequence.cpu().numpy(), ranked.cpu().numpy(), ranked_sequence

    def per_sequence(self) -> dict[int, dict[str, float]]:
        rows, sequence, ranked, ranked_sequence = self._gathered()
        return {int(q): scores_of(rows[sequence == q].sum(0), ranked[ranked_sequence == q])
                for q in np.unique(sequence)}

    def compute(self) -> dict[str, torch.Tensor]:
        per = self.per_sequence()
        if not per:
            return {}
        names = next(iter(per.values())).keys()
        return {k: torch.tensor(float(np.nanmean([s[k] for s in per.values()]))) for k in names}


def pooled_scores(frames: Sequence[tuple[dict, dict]], max_distance: float = float("inf")) -> dict[str, float]:
    """The scores of a list of (pred, truth) frames pooled as one sequence (numpy inputs)."""
    scored = [frame_scores(pred, truth, max_distance) for pred, truth in frames]
    return scores_of(np.sum([row for row, _ in scored], 0),
                     np.concatenate([hits for _, hits in scored]) if scored else np.zeros((0, 2)))

