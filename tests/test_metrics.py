"""Hand-computed checks of metrics/: per-sample means, DDP dedup, 3D pose metrics."""
import math
import os
import socket
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from framework.errors import UserError
from geometry import axis_angle_to_matrix
from metrics import (
    AUC3D,
    MPJPE,
    NMPJPE,
    PAMPJPE,
    PCK3D,
    PerSampleMetric,
    auc3d,
    mpjpe,
    pck3d,
    pose3d_metric_collection,
    unique_by_index,
)

D = torch.float64


def offset_by(target, distances, generator):
    """target + a random direction per joint with the given lengths (N, J)."""
    direction = torch.nn.functional.normalize(torch.randn(target.shape, generator=generator, dtype=target.dtype), dim=-1)
    return target + direction * distances[..., None]


# ---------------------------------------------------------------- per-sample base

def test_unique_by_index_keeps_first_occurrence_in_order():
    index = torch.tensor([3, 1, 3, 2, 1])
    values = torch.tensor([10.0, 11.0, 12.0, 13.0, 14.0])
    extra = torch.arange(10).reshape(5, 2)
    idx, vals, ext = unique_by_index(index, values, extra)
    assert idx.tolist() == [3, 1, 2]
    assert vals.tolist() == [10.0, 11.0, 13.0]
    assert ext.tolist() == [[0, 1], [2, 3], [6, 7]]
    with pytest.raises(UserError):
        unique_by_index(index, values[:3])


def test_per_sample_metric_dedup_and_split_updates():
    m = PerSampleMetric(scale=2.0)
    m.update(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0, 1, 2]))
    m.update(torch.tensor([3.0, 6.0]), torch.tensor([2, 3]))  # sample 2 repeated, as DDP padding does
    assert m.compute().item() == pytest.approx(2.0 * (1 + 2 + 3 + 6) / 4)
    whole = PerSampleMetric()
    whole.update(torch.tensor([1.0, 2.0, 3.0, 6.0]), torch.tensor([0, 1, 2, 3]))
    m2 = PerSampleMetric()
    m2.update(torch.tensor([1.0, 2.0]), torch.tensor([0, 1]))
    m2.update(torch.tensor([3.0, 6.0]), torch.tensor([2, 3]))
    assert m2.compute().item() == pytest.approx(whole.compute().item())


def test_per_sample_metric_columns_empty_and_bad_input():
    m = PerSampleMetric()
    m.update(torch.tensor([[1.0, 10.0], [3.0, 30.0]]), torch.tensor([5, 6]))
    torch.testing.assert_close(m.compute(), torch.tensor([2.0, 20.0]))
    with pytest.warns(UserWarning):
        assert math.isnan(PerSampleMetric().compute().item())
    with pytest.raises(UserError, match="index"):
        PerSampleMetric().update(torch.ones(3), torch.tensor([0, 1]))
    with pytest.raises(UserError, match="integer"):
        PerSampleMetric().update(torch.ones(2), torch.tensor([0.0, 1.0]))


# ---------------------------------------------------------------- 3D pose functions and classes

def test_mpjpe_every_joint_off_by_10mm():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(4, 17, 3, generator=g, dtype=D) * 0.3
    pred = offset_by(target, torch.full((4, 17), 0.010, dtype=D), g)
    torch.testing.assert_close(mpjpe(pred, target), torch.full((4,), 0.010, dtype=D))
    m = MPJPE()
    m.update(pred, target, torch.arange(4))
    assert m.compute().item() == pytest.approx(10.0)


def test_pck_and_auc_hand_cases():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(2, 17, 3, generator=g, dtype=D) * 0.3
    distances = torch.full((2, 17), 0.2, dtype=D)
    distances[0, :10] = 0.1          # sample 0: 10 of 17 within 150 mm
    distances[1, :4] = 0.149         # sample 1: 4 of 17
    pred = offset_by(target, distances, g)
    torch.testing.assert_close(pck3d(pred, target), torch.tensor([10 / 17, 4 / 17], dtype=D))
    m = PCK3D()
    m.update(pred, target, torch.tensor([0, 1]))
    assert m.compute().item() == pytest.approx(100 * (10 / 17 + 4 / 17) / 2)

    # thresholds are 0, 5, ..., 150 mm; an error of 1 mm passes 30 of them, 72.5 mm passes 16, 200 mm none
    target = torch.zeros(1, 3, 3, dtype=D)
    pred = offset_by(target, torch.tensor([[0.001, 0.0725, 0.2]], dtype=D), g)
    expected = (30 + 16 + 0) / (31 * 3)
    torch.testing.assert_close(auc3d(pred, target), torch.tensor([expected], dtype=D))
    m = AUC3D()
    m.update(pred, target, torch.tensor([0]))
    assert m.compute().item() == pytest.approx(100 * expected)


def test_aligned_errors_vanish_for_similar_copies():
    g = torch.Generator().manual_seed(2)
    target = torch.randn(6, 17, 3, generator=g, dtype=D) * 0.3
    axis = torch.nn.functional.normalize(torch.randn(6, 3, generator=g, dtype=D), dim=-1)
    rotated = 1.3 * target @ axis_angle_to_matrix(axis * 0.8).transpose(-1, -2) + 0.05
    pa, mp_ = PAMPJPE(), MPJPE()
    pa.update(rotated, target, torch.arange(6))
    mp_.update(rotated, target, torch.arange(6))
    assert pa.compute().item() < 1e-3 and mp_.compute().item() > 50
    scaled = 0.7 * target
    n = NMPJPE()
    n.update(scaled, target, torch.arange(6))
    assert n.compute().item() < 1e-3


def test_joint_subset_ignores_other_joints():
    g = torch.Generator().manual_seed(3)
    target = torch.randn(3, 17, 3, generator=g) * 0.3
    distances = torch.full((3, 17), 0.010)
    distances[:, 14:] = 1.0  # huge errors only on the joints outside the subset
    pred = offset_by(target, distances, g)
    subset = MPJPE(joints=list(range(14)))
    subset.update(pred, target, torch.arange(3))
    assert subset.compute().item() == pytest.approx(10.0, rel=1e-4)
    full = MPJPE()
    full.update(pred, target, torch.arange(3))
    assert full.compute().item() > 100
    with pytest.raises(UserError, match="joints"):
        MPJPE(joints=[20]).update(pred, target, torch.arange(3))


def test_collection_keys_prefix_and_no_state_merging():
    g = torch.Generator().manual_seed(4)
    target = torch.randn(4, 17, 3, generator=g) * 0.3
    collection = pose3d_metric_collection(prefix="test/")
    collection.update(target.clone(), target, torch.arange(4))  # perfect first batch: all errors equal
    collection.update(1.2 * target + 0.01, target, torch.arange(4, 8))
    out = collection.compute()
    assert set(out) == {"test/mpjpe", "test/pa_mpjpe", "test/n_mpjpe", "test/pck", "test/auc"}
    assert out["test/pa_mpjpe"] < 1.0 < out["test/mpjpe"]
    assert out["test/n_mpjpe"] < out["test/mpjpe"] - 1.0  # torchmetrics compute groups would merge these two
    assert 0 < out["test/auc"] < out["test/pck"] <= 100
    with pytest.raises(UserError, match="pred and target"):
        collection.update(target, target[:, :16], torch.arange(4))


# ---------------------------------------------------------------- real two-process gloo run

SHARES = {0: ([1.0, 2.0, 3.0, 4.0], [0, 1, 2, 3]), 1: ([5.0, 6.0, 7.0, 1.0], [4, 5, 6, 0])}  # rank 1 pads with sample 0


def _ddp_worker(rank, world_size, port, out_dir):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        metric = PerSampleMetric()
        values, index = SHARES[rank]
        metric.update(torch.tensor(values[:2]), torch.tensor(index[:2]))
        metric.update(torch.tensor(values[2:]), torch.tensor(index[2:]))
        torch.save(metric.compute(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_counts_padded_sample_once():
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(_ddp_worker, args=(2, _free_port(), out_dir), nprocs=2, join=True)
        results = [torch.load(os.path.join(out_dir, f"rank{r}.pt"), weights_only=True) for r in range(2)]
    single = PerSampleMetric()
    single.update(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), torch.arange(7))
    expected = single.compute().item()
    assert expected == pytest.approx(4.0)
    for value in results:
        assert value.item() == pytest.approx(expected)
