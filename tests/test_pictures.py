"""Skeleton pictures and the one place that sends pictures to loggers."""
from __future__ import annotations

import inspect
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from torch.utils.data import DataLoader, Dataset

from callbacks.skeleton_pictures import (GT_COLORS, PRED_COLORS, SkeletonPictures, mpjpe_mm,
                                         render_pose_panel)
from framework.errors import UserError
from framework.images import log_images, side_by_side
from geometry.skeletons import H36M17


def random_sample(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.normal(0, 0.3, (17, 3))
    gt -= gt[:1]
    pred = gt + rng.normal(0, 0.05, gt.shape)
    pose2d = gt[:, :2] * 0.4 + 0.1
    return pose2d, pred, gt


def has_color(img: np.ndarray, rgb) -> bool:
    return bool((img == np.array(rgb, dtype=np.uint8)).all(axis=-1).any())


def fake_trainer(*loggers, rank_zero: bool = True, step: int = 7):
    return SimpleNamespace(is_global_zero=rank_zero, loggers=list(loggers), global_step=step)


# ----------------------------------------------------------------- drawing
def test_render_pose_panel_draws_prediction_and_ground_truth():
    pose2d, pred, gt = random_sample()
    img = render_pose_panel(pose2d, pred, gt, H36M17, size=128)
    assert img.shape == (128, 3 * 128, 3) and img.dtype == np.uint8
    assert has_color(img, PRED_COLORS.right) and has_color(img, PRED_COLORS.left)
    assert has_color(img, GT_COLORS.centre)
    # without ground truth only the prediction colours appear
    alone = render_pose_panel(pose2d, pred, None, H36M17, size=128)
    assert has_color(alone, PRED_COLORS.centre) and not has_color(alone, GT_COLORS.centre)


def test_render_pose_panel_changes_with_the_prediction():
    pose2d, pred, gt = random_sample(1)
    a = render_pose_panel(pose2d, pred, gt, size=128)
    b = render_pose_panel(pose2d, pred + np.random.default_rng(2).normal(0, 0.1, pred.shape), gt, size=128)
    assert (a != b).any(axis=-1).sum() > 100
    # the 2D input panel does not depend on the prediction
    assert (a[:, :128] == b[:, :128]).all()


def test_render_pose_panel_rejects_wrong_shapes():
    pose2d, pred, gt = random_sample()
    with pytest.raises(UserError, match="pred3d"):
        render_pose_panel(pose2d, pred[:16], gt)


def test_mpjpe_in_millimetres():
    gt = np.zeros((17, 3))
    pred = gt.copy()
    pred[:, 0] = 0.02
    assert mpjpe_mm(pred, gt) == pytest.approx(20.0)


def test_side_by_side_pads_to_the_tallest_and_adds_a_label_bar():
    a = np.zeros((50, 40, 3), np.uint8)
    b = np.full((70, 30, 3), 255, np.uint8)
    out = side_by_side([a, b], ["before", "after"], bar=20, gap=4)
    assert out.shape == (20 + 70, 40 + 4 + 30, 3) and out.dtype == np.uint8
    assert (out[20:70, :40] == 0).all()
    with pytest.raises(UserError, match="labels"):
        side_by_side([a, b], ["one"])


# ----------------------------------------------------------------- logging
def test_log_images_csv_writes_readable_pngs(tmp_path):
    logger = CSVLogger(str(tmp_path), name="logs")
    img = np.zeros((30, 50, 3), np.uint8)
    img[..., 0] = 255  # pure red in RGB
    log_images(fake_trainer(logger), "pictures/val", [img, img])
    files = sorted((Path(logger.log_dir) / "images").glob("*.png"))
    assert [f.name for f in files] == ["pictures_val_7_0.png", "pictures_val_7_1.png"]
    back = cv2.imread(str(files[0]))
    assert back.shape == (30, 50, 3)
    assert tuple(back[0, 0]) == (0, 0, 255)  # BGR on disk: red stays red


def test_log_images_only_on_global_rank_zero_and_checks_images(tmp_path):
    logger = CSVLogger(str(tmp_path), name="logs")
    img = np.zeros((8, 8, 3), np.uint8)
    log_images(fake_trainer(logger, rank_zero=False), "k", [img])
    assert not list(Path(tmp_path).rglob("*.png"))
    log_images(fake_trainer(), "k", [img])  # no loggers: nothing to do
    with pytest.raises(UserError, match="uint8"):
        log_images(fake_trainer(logger), "k", [img.astype(np.float32)])
    with pytest.raises(UserError, match="captions"):
        log_images(fake_trainer(logger), "k", [img], captions=["a", "b"])


def test_log_images_tensorboard_writes_events(tmp_path):
    logger = TensorBoardLogger(str(tmp_path), name="tb")
    log_images(fake_trainer(logger), "pictures/test", [np.zeros((16, 16, 3), np.uint8)])
    logger.experiment.flush()
    events = list(Path(logger.log_dir).glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 100
    assert not list(Path(tmp_path).rglob("*.png"))


def test_log_images_wandb_gets_one_call_with_captions():
    calls = []

    class RecordingWandb(WandbLogger):
        def __init__(self):  # no wandb run: only the call is checked
            pass

        def log_image(self, *args, **kwargs):
            inspect.signature(WandbLogger.log_image).bind(self, *args, **kwargs)
            calls.append(kwargs)

    img = np.zeros((8, 8, 3), np.uint8)
    log_images(fake_trainer(RecordingWandb(), step=3), "pictures/val", [img, img], captions=["a", "b"])
    assert len(calls) == 1
    assert calls[0]["key"] == "pictures/val" and calls[0]["step"] == 3 and calls[0]["caption"] == ["a", "b"]
    assert len(calls[0]["images"]) == 2


# -------------------------------------------------------------- end to end
class PoseDicts(Dataset):
    def __init__(self, n: int = 8):
        g = torch.Generator().manual_seed(0)
        self.pose3d = torch.randn(n, 17, 3, generator=g) * 0.3
        self.pose3d -= self.pose3d[:, :1].clone()
        self.pose2d = self.pose3d[..., :2] * 0.4

    def __len__(self) -> int:
        return len(self.pose3d)

    def __getitem__(self, i: int) -> dict:
        return {"pose2d": self.pose2d[i], "pose3d": self.pose3d[i]}


class TinyLifter(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(17 * 2, 17 * 3)

    def forward(self, pose2d):
        return self.net(pose2d.flatten(1)).view(-1, 17, 3)

    def training_step(self, batch, batch_idx):
        return (self(batch["pose2d"]) - batch["pose3d"]).square().mean()

    def validation_step(self, batch, batch_idx):
        return {"pose3d": self(batch["pose2d"])}

    def test_step(self, batch, batch_idx):
        return {"pose3d": self(batch["pose2d"])}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_skeleton_pictures_end_to_end(tmp_path):
    pl.seed_everything(0, verbose=False)
    logger = CSVLogger(str(tmp_path), name="logs")
    pictures = SkeletonPictures(2, size=96)
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=logger,
                         callbacks=[pictures], enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, accelerator="cpu", num_sanity_val_steps=1)
    data = DataLoader(PoseDicts(), batch_size=4)
    module = TinyLifter()
    trainer.fit(module, data, data)
    folder = Path(logger.log_dir) / "images"
    val = sorted(folder.glob("pictures_val_*.png"))
    # two samples, one validation epoch; the sanity check logged nothing (step 0)
    assert [f.name for f in val] == ["pictures_val_2_0.png", "pictures_val_2_1.png"]
    assert cv2.imread(str(val[0])).shape == (96, 3 * 96, 3)

    pictures.tag = "_before"
    trainer.test(module, data, verbose=False)
    assert len(pictures.test_images) == 2 and pictures.test_images[0].shape == (96, 3 * 96, 3)
    assert len(list(folder.glob("pictures_test_before_*.png"))) == 2


def test_flow_panel_shows_frame_flows_and_error():
    from callbacks.flow_pictures import render_flow_panel

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (3, 40, 48)).astype(np.float32)
    gt = np.zeros((2, 40, 48), np.float32)
    gt[0] = 3.0
    exact = render_flow_panel(image, gt.copy(), gt, None, size=64)
    assert exact.dtype == np.uint8 and exact.shape[0] == 64 and exact.shape[2] == 3
    wrong = gt.copy()
    wrong[1, :20] = 4.0  # a 4 px error on the top half
    off = render_flow_panel(image, wrong, gt, None, size=64)
    width = exact.shape[1] // 4
    assert np.array_equal(exact[:, :width], off[:, :width])  # the frame panel does not change
    assert not np.array_equal(exact[:, 3 * width:], off[:, 3 * width:])  # the error map does
    only_pred = render_flow_panel(image, gt, None, None, size=64)
    assert only_pred.shape[1] == 2 * width  # frame and prediction only, without ground truth


def test_flow_pictures_collects_samples_from_steps():
    from callbacks.flow_pictures import FlowPictures

    cb = FlowPictures(num_samples=3, size=64)
    batch = {"image1": torch.rand(2, 3, 16, 24) * 255, "flow": torch.zeros(2, 2, 16, 24), "valid": torch.ones(2, 16, 24)}
    assert len(cb.extract({"flow": torch.zeros(2, 2, 16, 24)}, batch, 3)) == 2
    assert cb.extract({"pose3d": torch.zeros(2, 17, 3)}, batch, 3) is None
