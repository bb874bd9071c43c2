"""Tracking metrics on hand-computed cases: ATE, MTE, delta_avg, survival, TAP-Vid in both query modes,
reductions, 256 x 256 rescaling, DDP duplicates, per-video breakdown, bad inputs."""
import math

import pytest
import torch

from framework.errors import UserError
from metrics.tracking import (ATE, MTE, AverageJaccard, DeltaAvg, OcclusionAccuracy, PointsWithin, Survival,
                              median, tracking_metric_collection, tracking_per_video)


def tracks(errors, directions=None):
    """gt at the origin, pred at the given distance per (t, n) along x, or along a given unit (dx, dy)."""
    err = torch.tensor(errors, dtype=torch.float32)  # (T, N)
    pred = torch.zeros(*err.shape, 2)
    if directions is None:
        pred[..., 0] = err
    else:
        pred[:] = err[..., None] * torch.tensor(directions, dtype=torch.float32)
    return pred[None], torch.zeros_like(pred)[None]


# Case A: T = 3, N = 2, every point queried at frame 0, frames 256 x 256 (no rescaling).
# Errors (rows = frames, columns = points); point 0 always visible, point 1 occluded at frame 2.
#   p0: 0, 5 (as (3, 4)), 10 (as (6, 8))       p1: 0, 2, 19
PRED_A, GT_A = tracks([[0, 0], [5, 2], [10, 19]], [[[1, 0], [1, 0]], [[0.6, 0.8], [1, 0]], [[0.6, 0.8], [0, 1]]])
VIS_A = torch.tensor([[[True, True], [True, True], [True, False]]])
VALID_A = torch.ones(1, 3, 2, dtype=torch.bool)
IDX_A = torch.tensor([0])
SIZE = (256, 256)


def updated(metric, *args, **kwargs):
    metric.update(*args, **kwargs)
    return metric.compute().item()


def test_ate_over_all_visible_and_occluded_points():
    # all: (0 + 5 + 10 + 0 + 2 + 19) / 6 = 6; visible: (0 + 5 + 10 + 0 + 2) / 5 = 3.4; occluded: 19
    assert updated(ATE("all"), PRED_A, GT_A, VIS_A, VALID_A, IDX_A) == pytest.approx(6.0)
    assert updated(ATE("visible"), PRED_A, GT_A, VIS_A, VALID_A, IDX_A) == pytest.approx(3.4)
    assert updated(ATE("occluded"), PRED_A, GT_A, VIS_A, VALID_A, IDX_A) == pytest.approx(19.0)
    # without the query frame: (5 + 10 + 2 + 19) / 4 = 9
    assert updated(ATE(include_query_frame=False), PRED_A, GT_A, VIS_A, VALID_A, IDX_A) == pytest.approx(9.0)
    # an unannotated point does not count, even with NaN ground truth there: (0+5+0+2+19) / 5 = 5.2
    valid = VALID_A.clone()
    valid[0, 2, 0] = False
    gt = GT_A.clone()
    gt[0, 2, 0] = float("nan")
    assert updated(ATE(), PRED_A, gt, VIS_A, valid, IDX_A) == pytest.approx(5.2)


def test_ate_points_versus_videos_reduction():
    # sample 0: errors 0, 5, 10, 0, 2, 19 (mean 6, 6 points); sample 1: one valid point with error 1
    pred1, gt1 = tracks([[0, 7], [1, 7]])
    valid1 = torch.tensor([[[False, False], [True, False]]])
    vis1 = torch.ones(1, 2, 2, dtype=torch.bool)
    points, videos = ATE(reduction="points"), ATE()  # PIPs averages per clip: the default
    for m in (points, videos):
        m.update(PRED_A, GT_A, VIS_A, VALID_A, IDX_A)
        m.update(pred1, gt1, vis1, valid1, torch.tensor([1]))
    assert points.compute().item() == pytest.approx(37 / 7)
    assert videos.compute().item() == pytest.approx((6 + 1) / 2)


def test_mte_median_over_points_and_over_tracks():
    # errors [0, 0, 2, 5, 10, 19] -> median (2 + 5) / 2 = 3.5
    assert updated(MTE(), PRED_A, GT_A, VIS_A, VALID_A, IDX_A) == pytest.approx(3.5)
    # track A: 0, 1, 2 (median 1); track B: 0, 10, 10 (median 10)
    pred, gt = tracks([[0, 0], [1, 10], [2, 10]])
    vis = torch.ones(1, 3, 2, dtype=torch.bool)
    assert updated(MTE(), pred, gt, vis, None, IDX_A) == pytest.approx(1.5)  # of 0, 0, 1, 2, 10, 10
    assert updated(MTE(per="tracks"), pred, gt, vis, None, IDX_A) == pytest.approx(5.5)  # (1 + 10) / 2
    assert median(torch.tensor([3.0, 1.0, 2.0])).item() == 2.0 and math.isnan(median(torch.zeros(0)).item())


def test_mte_videos_reduction_and_duplicates():
    pred, gt = tracks([[0, 0], [1, 10], [2, 10]])
    vis = torch.ones(1, 3, 2, dtype=torch.bool)
    m = MTE()
    m.update(PRED_A, GT_A, VIS_A, VALID_A, torch.tensor([0]))  # median 3.5
    m.update(pred, gt, vis, None, torch.tensor([1]))  # median 1.5
    m.update(pred * 100, gt, vis, None, torch.tensor([1]))  # DDP padding repeat: dropped
    assert m.compute().item() == pytest.approx((3.5 + 1.5) / 2)
    pooled = MTE(reduction="points")
    pooled.update(torch.cat((PRED_A, pred)), torch.cat((GT_A, gt)), torch.cat((VIS_A, vis)), None, torch.tensor([0, 1]))
    pooled.update(torch.cat((PRED_A, pred)) + 50, torch.cat((GT_A, gt)), torch.cat((VIS_A, vis)), None,
                  torch.tensor([1, 0]))
    # 0 0 2 5 10 19 and 0 0 1 2 10 10 -> sorted 0 0 0 0 1 2 2 5 10 10 10 19 -> (2 + 2) / 2
    assert pooled.compute().item() == pytest.approx(2.0)
    assert pooled.per_video({0: "a", 1: "b"}) == pytest.approx({"a": 3.5, "b": 1.5})


def test_delta_avg_and_survival():
    # scored: frames after the query (1, 2), visible: p0 5, p0 10, p1 2 (p1 at frame 2 is occluded)
    # within 1/2/4/8/16 (strict): 5 -> 2 thresholds, 10 -> 1, 2 -> 3: 6 of 15 = 40 %
    assert updated(DeltaAvg(), PRED_A, GT_A, VIS_A, VALID_A, IDX_A, size=SIZE) == pytest.approx(40.0)
    assert updated(DeltaAvg([4.0]), PRED_A, GT_A, VIS_A, VALID_A, IDX_A, size=SIZE) == pytest.approx(100 / 3)
    # survival: p0 never beyond 16 px -> 2/2; p1 dies at frame 2 (19 > 16, occluded but valid) -> 1/2
    assert updated(Survival(), PRED_A, GT_A, VIS_A, VALID_A, IDX_A, size=SIZE) == pytest.approx(75.0)
    # unannotated frames cannot kill a track
    valid = VALID_A.clone()
    valid[0, 2, 1] = False
    assert updated(Survival(), PRED_A, GT_A, VIS_A, valid, IDX_A, size=SIZE) == pytest.approx(100.0)


def test_survival_counts_from_each_query_frame():
    # T = 4; p0 queried at 0: errors 0, 1, 20, 1 -> dies at frame 2: alive 1 of 3 frames after the query
    # p1 queried at 2: errors 50, 50, 0, 3 -> only frame 3 counts and it survives: 1 of 1
    # p2 queried at 3: nothing after it -> left out.  Mean (1/3 + 1) / 2
    pred, gt = tracks([[0, 50, 9], [1, 50, 9], [20, 0, 9], [1, 3, 0]])
    queries = torch.tensor([[[0, 0, 0], [2, 0, 0], [3, 0, 0]]], dtype=torch.float32)
    vis = torch.ones(1, 4, 3, dtype=torch.bool)
    got = updated(Survival(), pred, gt, vis, None, IDX_A, queries=queries, size=SIZE)
    assert got == pytest.approx(100 * (1 / 3 + 1) / 2)


def test_distances_are_measured_at_256():
    # frames of H 512 x W 1024: x shrinks by 4, y by 2. Errors (8, 0) -> 2 and (0, 8) -> 4 at 256 x 256.
    pred = torch.zeros(1, 2, 2, 2)
    pred[0, 1, 0] = torch.tensor([8.0, 0.0])
    pred[0, 1, 1] = torch.tensor([0.0, 8.0])
    gt, vis = torch.zeros_like(pred), torch.ones(1, 2, 2, dtype=torch.bool)
    # < 4 strictly: only the first point (2) -> 50 %;  < 8: both
    assert updated(DeltaAvg([4.0]), pred, gt, vis, None, IDX_A, size=(512, 1024)) == pytest.approx(50.0)
    assert updated(DeltaAvg([8.0]), pred, gt, vis, None, IDX_A, size=(512, 1024)) == pytest.approx(100.0)
    assert updated(DeltaAvg([4.0]), pred, gt, vis, None, IDX_A, size=torch.tensor([[512, 1024]])) == pytest.approx(50.0)
    # ATE stays in the frames' pixels unless asked: (8 + 8) / 2 over frame 1; with eval_size (2 + 4) / 2
    assert updated(ATE(include_query_frame=False), pred, gt, vis, None, IDX_A) == pytest.approx(8.0)
    assert updated(ATE(include_query_frame=False, eval_size=256), pred, gt, vis, None, IDX_A,
                   size=(512, 1024)) == pytest.approx(3.0)


# Case T (TAP-Vid): T = 4, N = 2, frames 256 x 256.
#   track a, query frame 0: GT visible 1 1 0 1, error 0 3 50 10, predicted visible 1 1 1 0
#   track b, query frame 2: GT visible 0 1 1 1, error 30 1.5 0 5, predicted visible 1 0 1 1
PRED_T, GT_T = tracks([[0, 30], [3, 1.5], [50, 0], [10, 5]])
VIS_T = torch.tensor([[[1, 0], [1, 1], [0, 1], [1, 1]]], dtype=torch.bool)
PVIS_T = torch.tensor([[[1, 1], [1, 0], [1, 1], [0, 1]]], dtype=torch.bool)
Q_T = torch.tensor([[[0, 0, 0], [2, 0, 0]]], dtype=torch.float32)


def tapvid(metric):
    return updated(metric, PRED_T, GT_T, VIS_T, None, IDX_A, queries=Q_T, pred_visible=PVIS_T, size=SIZE)


def test_tapvid_first_mode():
    # scored: a at 1, 2, 3; b at 3.
    # OA: a1 right, a2 wrong, a3 wrong, b3 right -> 2 / 4
    assert tapvid(OcclusionAccuracy(query_mode="first")) == pytest.approx(50.0)
    # visible scored: a1 (3) -> 3 thresholds, a3 (10) -> 1, b3 (5) -> 2: 6 / 15
    assert tapvid(PointsWithin(query_mode="first")) == pytest.approx(40.0)
    # GT visible 3. FP: a2 (occluded, predicted visible) always, a1 when 3 >= t, b3 when 5 >= t.
    # t=1: 0/(3+3); t=2: 0/6; t=4: TP a1 = 1, FP a2 b3 -> 1/5; t=8: TP 2, FP 1 -> 2/4; t=16: 2/4
    assert tapvid(AverageJaccard(query_mode="first")) == pytest.approx(100 * (0.2 + 0.5 + 0.5) / 5)


def test_tapvid_strided_mode():
    # scored: a at 1, 2, 3; b at 0, 1, 3.
    # OA: a: right, wrong, wrong; b0 wrong (occluded, predicted visible), b1 wrong, b3 right -> 2 / 6
    assert tapvid(OcclusionAccuracy(query_mode="strided")) == pytest.approx(100 / 3)
    # visible scored: a1 3 -> 3, a3 10 -> 1, b1 1.5 -> 4, b3 5 -> 2: 10 / 20
    assert tapvid(PointsWithin(query_mode="strided")) == pytest.approx(50.0)
    # GT visible 4. FP: a2, b0 always; a1 when 3 >= t; b3 when 5 >= t. TP: a1 if 3 < t, b3 if 5 < t.
    # t=1: 0/8, t=2: 0/8, t=4: 1/(4+3), t=8: 2/(4+2), t=16: 2/6
    assert tapvid(AverageJaccard(query_mode="strided")) == pytest.approx(100 * (1 / 7 + 2 / 6 + 2 / 6) / 5)


def test_tapvid_per_video_mean_versus_pooled():
    # video 2: T = 2, one track queried at 0, visible and predicted visible, exact -> OA 1/1, AJ 1
    # (TP 1 of 1 at every threshold). Pooled with video 1 (first mode): OA (2 + 1) / (4 + 1);
    # Jaccard per threshold (0 + 1) / (6 + 1), 1/7, (1 + 1) / (5 + 1), (2 + 1) / (4 + 1), 3/5
    pred2, gt2 = tracks([[0], [0]])
    ones = torch.ones(1, 2, 1, dtype=torch.bool)
    for reduction, oa, aj in (("videos", (50 + 100) / 2, (24 + 100) / 2),
                              ("points", 100 * 3 / 5, 100 * (1 / 7 + 1 / 7 + 2 / 6 + 3 / 5 + 3 / 5) / 5)):
        mo, mj = OcclusionAccuracy(reduction=reduction), AverageJaccard(reduction=reduction)
        for m in (mo, mj):
            m.update(PRED_T, GT_T, VIS_T, None, IDX_A, queries=Q_T, pred_visible=PVIS_T, size=SIZE)
            m.update(pred2, gt2, ones, None, torch.tensor([1]), pred_visible=ones, size=SIZE)
        assert mo.compute().item() == pytest.approx(oa)
        assert mj.compute().item() == pytest.approx(aj)


def test_repeated_indices_are_counted_once():
    for m in (ATE(), DeltaAvg(), Survival(), AverageJaccard(), OcclusionAccuracy(), PointsWithin()):
        kwargs = dict(queries=Q_T, pred_visible=PVIS_T, size=SIZE)
        m.update(PRED_T, GT_T, VIS_T, None, torch.tensor([3]), **kwargs)
        once = m.compute().item()
        m.update(PRED_T, GT_T, VIS_T, None, torch.tensor([3]), **kwargs)  # DDP padding
        m.update(PRED_T + 40, GT_T, VIS_T, None, torch.tensor([3]), **kwargs)  # same index, other values
        assert m.compute().item() == pytest.approx(once), type(m).__name__


def test_collection_keys_values_and_no_shared_state():
    c = tracking_metric_collection(prefix="test/")
    c.update(PRED_A, GT_A, VIS_A, VALID_A, IDX_A, pred_visible=VIS_A, size=SIZE)
    out = {k: v.item() for k, v in c.compute().items()}
    # pred_visible = truth: OA 100; Jaccard over frames 1, 2: GT visible p0 (5, 10), p1 (2); p1 at 2 is occluded
    # and predicted occluded. t=1,2: TP 0, FP 3 (all predicted visible and off) -> 0; t=4: TP 1 (2), FP 2 -> 1/5;
    # t=8: TP 2, FP 1 -> 2/4; t=16: TP 3 -> 1
    assert out == pytest.approx({
        "test/ate_all": 6.0, "test/ate_vis": 3.4, "test/ate_occ": 19.0, "test/mte": 3.5, "test/delta_avg": 40.0,
        "test/survival": 75.0, "test/occlusion_acc": 100.0, "test/pts_within": 40.0,
        "test/avg_jaccard": 100 * (0.2 + 0.5 + 1.0) / 5})
    # the first batch has no occluded point, so ate_all and ate_vis start equal; they must still part
    c = tracking_metric_collection(with_visibility=False)
    assert set(c.keys()) == {"ate_all", "ate_vis", "ate_occ", "mte", "delta_avg", "survival"}
    all_vis = torch.ones_like(VIS_A)
    c.update(PRED_A, GT_A, all_vis, VALID_A, torch.tensor([0]), size=SIZE)
    c.update(PRED_A, GT_A, VIS_A, VALID_A, torch.tensor([1]), size=SIZE)
    out = {k: v.item() for k, v in c.compute().items()}
    # per clip: ate_vis 36 / 6 on the first, 17 / 5 on the second
    assert out["ate_all"] == pytest.approx(6.0) and out["ate_vis"] == pytest.approx((6 + 3.4) / 2)
    assert out["ate_occ"] == pytest.approx(19.0)


def test_collection_pooled_variants_under_their_own_names():
    c = tracking_metric_collection(with_visibility=False, pooled=True)
    assert set(c.keys()) == {f"{k}{s}" for k in ("ate_all", "ate_vis", "ate_occ", "mte", "delta_avg", "survival")
                             for s in ("", "_pooled")}
    c.update(PRED_A, GT_A, torch.ones_like(VIS_A), VALID_A, torch.tensor([0]), size=SIZE)
    c.update(PRED_A, GT_A, VIS_A, VALID_A, torch.tensor([1]), size=SIZE)
    out = {k: v.item() for k, v in c.compute().items()}
    assert out["ate_vis"] == pytest.approx((6 + 3.4) / 2) and out["ate_vis_pooled"] == pytest.approx((36 + 17) / 11)


def test_per_video_breakdown():
    c = tracking_metric_collection(with_visibility=False)
    pred1, gt1 = tracks([[0, 0], [1, 1], [1, 1]])
    vis1 = torch.ones(1, 3, 2, dtype=torch.bool)
    c.update(PRED_A, GT_A, VIS_A, VALID_A, torch.tensor([0]), size=SIZE)
    c.update(pred1, gt1, vis1, None, torch.tensor([1]), size=SIZE)
    c.update(pred1 * 3, gt1, vis1, None, torch.tensor([2]), size=SIZE)
    per = tracking_per_video(c, ["cave", "cave", "bamboo"])
    # ate_all per clip: cave (36 / 6 + 4 / 6) / 2; bamboo: 12 / 6
    assert per["ate_all"] == pytest.approx({"cave": 40 / 12, "bamboo": 2.0})
    # mte per clip: cave medians 3.5 (0 0 2 5 10 19) and 1 (0 0 1 1 1 1); bamboo 0 0 3 3 3 3 -> 3
    assert per["mte"] == pytest.approx({"cave": 2.25, "bamboo": 3.0})
    pooled = tracking_metric_collection(with_visibility=False, pooled=True)
    for args in ((PRED_A, GT_A, VIS_A, VALID_A, torch.tensor([0])), (pred1, gt1, vis1, None, torch.tensor([1]))):
        pooled.update(*args, size=SIZE)
    # pooled mte: 0 0 2 5 10 19 0 0 1 1 1 1 -> sorted 0 0 0 0 1 1 1 1 2 5 10 19 -> 1
    assert tracking_per_video(pooled, ["cave", "cave"])["mte_pooled"] == pytest.approx({"cave": 1.0})
    assert list(per["survival"]) == ["cave", "bamboo"]
    with pytest.raises(UserError, match="index 2"):
        c["ate_all"].per_video({0: "a", 1: "a"})


def test_bad_inputs_are_one_clear_error():
    m = ATE()
    with pytest.raises(UserError, match=r"\(B, T, N, 2\)"):
        m.update(torch.zeros(1, 3, 2, 3), torch.zeros(1, 3, 2, 3), VIS_A, None, IDX_A)
    with pytest.raises(UserError, match="visible"):
        m.update(PRED_A, GT_A, torch.ones(1, 3), None, IDX_A)
    with pytest.raises(UserError, match="queries"):
        m.update(PRED_A, GT_A, VIS_A, None, IDX_A, queries=torch.zeros(1, 2, 2))
    with pytest.raises(UserError, match="query frames"):
        m.update(PRED_A, GT_A, VIS_A, None, IDX_A, queries=torch.full((1, 2, 3), 7.0))
    with pytest.raises(UserError, match="index"):
        m.update(PRED_A, GT_A, VIS_A, None, torch.tensor([0, 1]))
    with pytest.raises(UserError, match="size"):
        DeltaAvg().update(PRED_A, GT_A, VIS_A, None, IDX_A)
    with pytest.raises(UserError, match="size"):
        DeltaAvg().update(PRED_A, GT_A, VIS_A, None, IDX_A, size=(0, 5))
    with pytest.raises(UserError, match="pred_visible"):
        OcclusionAccuracy().update(PRED_A, GT_A, VIS_A, None, IDX_A, size=SIZE)
    with pytest.raises(UserError, match="reduction"):
        ATE(reduction="mean")
    with pytest.raises(UserError, match="query_mode"):
        tracking_metric_collection("last")
    with pytest.raises(UserError, match="subset"):
        ATE("hidden")
    with pytest.warns(UserWarning):  # torchmetrics: compute before update
        assert math.isnan(ATE().compute().item())
