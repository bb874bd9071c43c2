"""RAFT's supervised training path: the sequence loss, frozen BatchNorm, the data module's
errors, and train.py end to end on a tiny synthetic run."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from datamodules.optical_flow import OpticalFlowDataModule
from framework.cli import RUN_DIR_ENV
from framework.errors import UserError
from lightning_modules.raft import RAFTModule
from lightning_modules.raft_losses import sequence_loss
from tests.commands import ROOT

QUICK = str(ROOT / "configs/raft/quick.yaml")
TINY = ("data.train_videos=2", "data.val_videos=1", "data.test_videos=1", "data.source.synthetic.height=64",
        "data.source.synthetic.width=72", "data.source.synthetic.frames=3", "data.crop_size=[64,64]",
        "data.eraser_bounds=[4,12]", "data.batch_size=2", "data.test_batch_size=2", "model.iters=2",
        "model.test_iters=2", "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger.kinds=[csv]")


# ------------------------------------------------------------------------------ loss
def test_sequence_loss_matches_a_hand_computation():
    gt = torch.zeros(1, 2, 2, 2)
    gt[0, 0, 1, 1] = 500.0  # |gt| >= 400: invalid
    valid = torch.ones(1, 2, 2)
    valid[0, 0, 1] = 0.0  # marked invalid
    p1 = torch.full((1, 2, 2, 2), 1.0)  # |error| 1 everywhere valid
    p2 = torch.full((1, 2, 2, 2), 3.0)  # |error| 3 everywhere valid
    # valid pixels: (0,0), (1,0) -> 2 pixels x 2 channels = 4 elements of 8
    first, second = 1.0 * 4 / 8, 3.0 * 4 / 8
    expected = 0.8 ** 1 * first + 0.8 ** 0 * second
    assert sequence_loss([p1, p2], gt, valid, gamma=0.8) == pytest.approx(expected)
    # gamma weights follow the order: the last prediction has weight 1
    assert sequence_loss([p2, p1], gt, valid, gamma=0.5) == pytest.approx(0.5 * second + first)
    # without max_flow exclusion the big pixel counts (|1 - 500| + |1 - 0| and |3 - 500| + 3 more)
    loose = sequence_loss([p1, p2], gt, valid, gamma=0.8, max_flow=1e9)
    assert loose == pytest.approx(expected + 0.8 * (499 + 1) / 8 + (497 + 3) / 8)


def test_sequence_loss_reaches_every_prediction():
    gt = torch.randn(2, 2, 8, 8)
    preds = [torch.randn(2, 2, 8, 8, requires_grad=True) for _ in range(3)]
    sequence_loss(preds, gt).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in preds)


# ------------------------------------------------------------------------- frozen BN
def _pairs(n=2, h=64, w=64):
    g = torch.Generator().manual_seed(0)
    return [{"image1": torch.rand(3, h, w, generator=g) * 255, "image2": torch.rand(3, h, w, generator=g) * 255,
             "flow": torch.randn(2, h, w, generator=g), "valid": torch.ones(h, w),
             "index": torch.tensor(i)} for i in range(n)]


def test_frozen_batchnorm_stays_frozen_through_lightning_training():
    module = RAFTModule("raft", {"small": False, "iters": 1, "test_iters": 1, "freeze_bn": True,
                                 "total_steps": 10})
    bns = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns, "RAFT-large's context encoder has BatchNorm"
    stats = {n: b.clone() for n, b in module.named_buffers() if "running" in n}
    weights = {n: p.detach().clone() for n, p in module.named_parameters()}
    module.train()
    assert all(not m.training for m in bns)
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_steps=2, limit_val_batches=0, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=DataLoader(_pairs(), batch_size=2))
    assert all(not m.training for m in bns)
    for n, b in module.named_buffers():
        if n in stats:
            assert torch.equal(b, stats[n]), f"{n} changed"
    assert any(not torch.equal(p, weights[n]) for n, p in module.named_parameters()), "nothing was trained"


def test_predict_pads_and_returns_full_size_flow():
    module = RAFTModule("raft", {"small": True, "iters": 1, "test_iters": 2}).eval()
    batch = {"image1": torch.rand(1, 3, 60, 70) * 255, "image2": torch.rand(1, 3, 60, 70) * 255}
    with torch.no_grad():
        assert module.predict(batch)["flow"].shape == (1, 2, 60, 70)


# --------------------------------------------------------------------------- data
def test_datamodule_errors_name_the_key(tmp_path):
    with pytest.raises(UserError, match=r"data\.source\.kind"):
        OpticalFlowDataModule({"source": {"kind": "middlebury"}})
    with pytest.raises(UserError, match=r"data\.source\.root"):
        OpticalFlowDataModule({"source": {"kind": "sintel"}})
    with pytest.raises(UserError, match=r"data\.source\.root"):
        OpticalFlowDataModule({"source": {"kind": "things", "root": str(tmp_path / "missing")}})
    with pytest.raises(UserError, match=r"data\.target\.root"):
        OpticalFlowDataModule({"target": {"kind": "kitti"}}, test_domain="target")
    with pytest.raises(UserError, match=r"data\.crop_size"):
        OpticalFlowDataModule({"crop_size": [60, 64]})
    with pytest.raises(UserError, match=r"data\.crop_size"):
        OpticalFlowDataModule({"crop_size": [32, 64]})


def test_training_batches_are_augmented_crops_reproducible_per_epoch():
    cfg = {"train_videos": 2, "val_videos": 1, "test_videos": 1, "crop_size": [64, 64], "eraser_bounds": [4, 12],
           "batch_size": 2, "source": {"synthetic": {"height": 72, "width": 80, "frames": 3}}}
    dm = OpticalFlowDataModule(cfg)
    dm.setup("fit")
    first = next(iter(dm.train_dataloader()))
    again = next(iter(dm.train_dataloader()))
    assert first["image1"].shape == (2, 3, 64, 64) and first["flow"].shape == (2, 2, 64, 64)
    assert first["valid"].shape == (2, 64, 64)
    assert torch.equal(first["image1"], again["image1"]) and torch.equal(first["index"], again["index"])
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    later = next(iter(loader))
    assert not torch.equal(first["image1"], later["image1"])  # a new order and new augmentation
    val = next(iter(dm.val_dataloader()))
    assert val["image1"].shape[-2:] == (72, 80)
    # synthetic parts render different videos
    a, b = dm.domain_dataset("source", "val")[0], dm.domain_dataset("source", "test")[0]
    assert not torch.equal(a["image1"], b["image1"])


# --------------------------------------------------------------------- end to end
def test_train_py_runs_raft_end_to_end(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop(RUN_DIR_ENV, None)
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", QUICK, *TINY, f"output_dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    run = tmp_path / "raft" / "quick"
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == "raft"
    assert metrics["test"]["epe"] == metrics["test"]["epe"] and metrics["test"]["epe"] >= 0
    assert {"1px", "3px", "5px"} <= set(metrics["test"])
