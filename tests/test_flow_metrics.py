"""Flow metrics on hand-computed cases: EPE both ways, n-px accuracy, Fl-all, dedup, per video."""
import math

import pytest
import torch

from framework.errors import UserError
from metrics.flow import (EPE, FlAll, FlowAccuracy, epe, fl_all, flow_accuracy, flow_metric_collection,
                          per_video)


def row_flows(us, gts=None):
    """Flows of shape (B, 2, 1, W) with u from the rows of ``us``, v = 0."""
    us = torch.tensor(us, dtype=torch.float32)
    flow = torch.zeros(us.shape[0], 2, 1, us.shape[1])
    flow[:, 0, 0] = us
    if gts is None:
        return flow
    return flow, row_flows(gts)


# sample 0: errors 0, 2, 4, 10 on 4 valid pixels (mean 4)
# sample 1: errors 1, 1 on 2 valid pixels (the other two are invalid and have error 50)
PRED = row_flows([[0, 2, 4, 10], [1, 1, 50, 50]])
GT = torch.zeros_like(PRED)
VALID = torch.tensor([[[1, 1, 1, 1]], [[1, 1, 0, 0]]], dtype=torch.bool)
INDEX = torch.tensor([0, 1])


def test_per_sample_functions():
    assert torch.allclose(epe(PRED, GT, VALID), torch.tensor([4.0, 1.0]))
    assert torch.allclose(flow_accuracy(PRED, GT, VALID, 1.0), torch.tensor([0.25, 0.0]))  # strict <
    assert torch.allclose(flow_accuracy(PRED, GT, VALID, 3.0), torch.tensor([0.5, 1.0]))
    assert torch.allclose(epe(PRED, GT), torch.tensor([4.0, 25.5]))  # no mask: every pixel
    assert math.isnan(epe(PRED[:1], GT[:1], torch.zeros(1, 1, 4, dtype=torch.bool))[0])


def test_epe_pixel_weighted_vs_image_averaged():
    pixels, images = EPE(), EPE(reduction="images")
    for m in (pixels, images):
        m.update(PRED, GT, VALID, INDEX)
    assert pixels.compute().item() == pytest.approx((16 + 2) / 6)  # Sintel: over all pixels
    assert images.compute().item() == pytest.approx((4 + 1) / 2)  # KITTI: mean of per-image EPE


def test_accuracies_in_percent_over_pixels():
    expected = {1: 100 * 1 / 6, 3: 100 * 4 / 6, 5: 100 * 5 / 6}
    for t, want in expected.items():
        m = FlowAccuracy(t)
        m.update(PRED, GT, VALID.float(), INDEX)  # float masks count >= 0.5 as valid
        assert m.compute().item() == pytest.approx(want)
    images = FlowAccuracy(3, reduction="images")
    images.update(PRED, GT, VALID, INDEX)
    assert images.compute().item() == pytest.approx(100 * (0.5 + 1.0) / 2)


def test_fl_all_needs_both_absolute_and_relative_error():
    # |gt| = 100, 100, 10, 0, 0; errors 4, 6, 4, 3.5, 3
    # outlier iff err > 3 and err > 0.05|gt| (= 5, 5, 0.5, 0, 0): F, T, T, T, F
    gt = row_flows([[100, 100, 10, 0, 0]])
    pred = gt + row_flows([[4, 6, 4, 3.5, 3]])
    assert torch.allclose(fl_all(pred, gt), torch.tensor([0.6]))
    m = FlAll()
    m.update(pred, gt, None, torch.tensor([7]))
    assert m.compute().item() == pytest.approx(60.0)
    assert torch.allclose(fl_all(pred, gt, rel_threshold=0.0), torch.tensor([0.8]))


def test_repeated_indices_are_counted_once():
    m = EPE()
    m.update(PRED, GT, VALID, INDEX)
    m.update(PRED, GT, VALID, INDEX)  # DDP padding repeats samples
    assert m.compute().item() == pytest.approx(3.0)
    m2 = EPE(reduction="images")
    m2.update(PRED[:1], GT[:1], VALID[:1], torch.tensor([5]))
    m2.update(PRED[1:] * 0 + 100, GT[1:], VALID[1:], torch.tensor([5]))  # same index, other values: dropped
    m2.update(PRED[1:], GT[1:], VALID[1:], torch.tensor([6]))
    assert m2.compute().item() == pytest.approx(2.5)


def test_collections_follow_benchmark_conventions():
    sintel = flow_metric_collection("sintel", prefix="test/")
    sintel.update(PRED, GT, VALID, INDEX)
    out = {k: v.item() for k, v in sintel.compute().items()}
    assert out == pytest.approx({"test/epe": 3.0, "test/1px": 100 / 6, "test/3px": 400 / 6, "test/5px": 500 / 6})
    kitti = flow_metric_collection("kitti")
    kitti.update(PRED, GT, VALID, INDEX)
    out = {k: v.item() for k, v in kitti.compute().items()}
    # outliers: errors 4 and 10 of sample 0 (gt is 0, so every error > 3 counts)
    assert out == pytest.approx({"epe": 2.5, "fl_all": 100 * 2 / 6})
    pooled = flow_metric_collection("kitti", pooled=True)
    pooled.update(PRED, GT, VALID, INDEX)
    out = {k: v.item() for k, v in pooled.compute().items()}
    assert out == pytest.approx({"epe": 2.5, "fl_all": 100 * 2 / 6, "epe_pooled": 3.0})  # per image vs over pixels
    with pytest.raises(UserError, match="style"):
        flow_metric_collection("middlebury")


def test_per_video_breakdown():
    values = torch.tensor([1.0, 2.0, 3.0, 40.0, 5.0])
    index = torch.tensor([0, 1, 2, 1, 3])  # index 1 repeated: the second is dropped
    videos = {0: "alley", 1: "alley", 2: "cave", 3: "cave"}
    assert per_video(values, index, videos) == pytest.approx({"alley": 1.5, "cave": 4.0})
    assert per_video(values, index, ["alley", "alley", "cave", "cave"]) == pytest.approx({"alley": 1.5, "cave": 4.0})
    weighted = per_video(values, index, lambda i: "all", weights=torch.tensor([1.0, 3.0, 1.0, 1.0, 1.0]))
    assert weighted == pytest.approx({"all": (1 + 6 + 3 + 5) / 6})
    with pytest.raises(UserError, match="index 3"):
        per_video(values, index, {0: "a", 1: "a", 2: "b"})


def test_sample_values_feed_per_video():
    m = EPE()
    m.update(PRED, GT, VALID, INDEX)
    m.update(PRED, GT, VALID, INDEX)
    index, values, counts = m.sample_values()
    assert index.tolist() == [0, 1] and values.tolist() == [4.0, 1.0] and counts.tolist() == [4.0, 2.0]
    assert per_video(values, index, {0: "a", 1: "a"}, weights=counts) == pytest.approx({"a": 3.0})
    assert per_video(values, index, {0: "a", 1: "a"}) == pytest.approx({"a": 2.5})


def test_bad_inputs_name_the_shape():
    m = EPE()
    with pytest.raises(UserError, match=r"\(B, 2, H, W\)"):
        m.update(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2), None, torch.tensor([0]))
    with pytest.raises(UserError, match="valid"):
        m.update(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), torch.ones(1, 3, 2), torch.tensor([0]))
    with pytest.raises(UserError, match="reduction"):
        EPE(reduction="mean")


def test_accuracies_stay_apart_when_the_first_batch_makes_them_equal():
    # torchmetrics' compute groups would merge 1/3/5 px after a first batch where all three agree
    metrics = flow_metric_collection("sintel")
    gt = torch.zeros(1, 2, 4, 4)
    metrics.update(gt + 10, gt, None, torch.tensor([0]))  # an outlier at every threshold
    metrics.update(gt + 2, gt, None, torch.tensor([1]))  # within 3 and 5 px, not 1 px
    values = {k: float(v) for k, v in metrics.compute().items()}
    assert values["1px"] == 0.0 and values["3px"] == 50.0 and values["5px"] == 50.0
