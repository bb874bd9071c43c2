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
    assert img.shape == (128, 4 * 128, 3) and img.dtype == np.uint8  # with the joint-error panel
    assert has_color(img, PRED_COLORS.right) and has_color(img, PRED_COLORS.left)
    assert has_color(img, GT_COLORS.centre)
    # without ground truth only the prediction colours appear, and no error panel
    alone = render_pose_panel(pose2d, pred, None, H36M17, size=128)
    assert alone.shape == (128, 3 * 128, 3)
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
    assert cv2.imread(str(val[0])).shape == (96, 4 * 96, 3)  # 2D input, front, side, joint errors

    pictures.tag = "_before"
    trainer.test(module, data, verbose=False)
    assert len(pictures.test_images) == 2 and pictures.test_images[0].shape == (96, 4 * 96, 3)
    assert len(list(folder.glob("pictures_test_before_*.png"))) == 2


def test_flow_panel_shows_frame_flows_and_error():
    from callbacks.flow_pictures import render_flow_panel

    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (3, 40, 48)).astype(np.float32)
    gt = np.zeros((2, 40, 48), np.float32)
    gt[0] = 3.0
    exact = render_flow_panel(image, gt.copy(), gt, None, size=64)
    assert exact.dtype == np.uint8 and exact.shape[2] == 3
    wrong = gt.copy()
    wrong[1, 20:] = 4.0  # a 4 px error on the bottom half
    off = render_flow_panel(image, wrong, gt, None, size=64)
    # a 2 x 2 grid: frame | ground truth over error map | prediction
    assert np.array_equal(exact[:64], off[:64])  # the top row (frame, ground truth) does not change
    assert not np.array_equal(exact[64 + 4 + 40:64 + 4 + 64], off[64 + 4 + 40:64 + 4 + 64])  # the bottom row does
    only_pred = render_flow_panel(image, gt, None, None, size=64)
    assert only_pred.shape[0] < exact.shape[0]  # one row, frame and prediction, without ground truth


def test_flow_pictures_collects_samples_from_steps():
    from callbacks.flow_pictures import FlowPictures

    cb = FlowPictures(num_samples=3, size=64)
    batch = {"image1": torch.rand(2, 3, 16, 24) * 255, "flow": torch.zeros(2, 2, 16, 24), "valid": torch.ones(2, 16, 24)}
    assert len(cb.extract({"flow": torch.zeros(2, 2, 16, 24)}, batch, 3)) == 2
    assert cb.extract({"pose3d": torch.zeros(2, 17, 3)}, batch, 3) is None


# ------------------------------------------------ pictures worth looking at
def flow_sample(height: int, width: int, flow: np.ndarray, gt=None):
    image = np.random.default_rng(0).uniform(0, 255, (3, height, width)).astype(np.float32)
    return image, flow.astype(np.float32), gt, None


def test_before_after_stacks_wide_pictures_and_keeps_tall_ones_side_by_side():
    from framework.images import before_after

    wide, tall = np.zeros((100, 300, 3), np.uint8), np.zeros((300, 100, 3), np.uint8)
    assert before_after(wide, wide).shape[1] == 300  # one above the other
    assert before_after(tall, tall).shape[0] == 300 + 24  # side by side under the label bar


@pytest.mark.parametrize("height, width", [(64, 96), (96, 128)])  # RAFT quick crops and 4:3 target frames
def test_flow_before_after_is_a_grid_of_readable_panels(height, width):
    from callbacks.flow_pictures import render_flow_panel
    from framework.images import before_after

    gt = np.random.default_rng(1).normal(0, 3, (2, height, width))
    before = render_flow_panel(*flow_sample(height, width, gt * 0.5, gt), size=256)
    after = render_flow_panel(*flow_sample(height, width, gt * 0.9, gt), size=256)
    pair = before_after(before, after)
    # the old strip of 8 panels was 2732 px wide; now two panels (256 px high) and the error's colour bar
    panel_width = round(width * 256 / height)
    assert pair.shape[1] <= 2 * panel_width + 100 and before.shape[0] >= 2 * 256


def test_flow_colours_keep_the_first_test_pass_scale():
    from callbacks.flow_pictures import FlowPictures

    def prediction(fast: float) -> np.ndarray:
        flow = np.zeros((2, 32, 48))
        flow[0, 16:] = 3.0  # the bottom half moves 3 px in both passes
        flow[0, :16] = fast  # the top half's speed sets the prediction's own maximum
        return flow

    def picture(cb: FlowPictures, fast: float) -> np.ndarray:
        cb.on_test_epoch_start(fake_trainer(), None)
        cb.samples = [flow_sample(32, 48, prediction(fast))]  # footage: no ground truth
        cb.on_test_epoch_end(fake_trainer(), None)
        return cb.test_images[0]

    cb = FlowPictures(num_samples=1, size=128)
    before, after = picture(cb, 8.0), picture(cb, 4.0)
    x = 192 + 4 + 8  # inside the prediction panel (frame 192 px wide, a 4 px gap), left of its centre
    bottom = slice(90, 120)  # the 3 px half, below the label
    assert np.array_equal(before[bottom, x:x + 40], after[bottom, x:x + 40])
    assert len(np.unique(before[bottom, x:x + 40].reshape(-1, 3), axis=0)) == 1  # one colour, not a blank
    # a fresh callback colours the same 3 px by the second prediction's own maximum
    alone = picture(FlowPictures(num_samples=1, size=128), 4.0)
    assert not np.array_equal(alone[bottom, x:x + 40], after[bottom, x:x + 40])
    # and the scale is written under the grid: its strip changes with the scale
    assert not np.array_equal(alone[128:], after[128:]) and (after[128:] < 100).any()


def test_error_maps_carry_a_colour_bar():
    from callbacks.flow_pictures import ERROR_COLORMAP, render_flow_panel
    from framework.images import colour_bar

    lut = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[None], ERROR_COLORMAP), cv2.COLOR_BGR2RGB)[0]

    def colour(value: int) -> np.ndarray:
        return lut[value]

    heat = np.zeros((100, 60, 3), np.uint8)
    barred = colour_bar(heat, ERROR_COLORMAP, 5.0, "px")
    assert barred.shape[0] == 100 and barred.shape[1] > 60 and (barred[:, :60] == 0).all()
    ramp = barred[:, 60:]
    column = ramp[:, np.flatnonzero((ramp == colour(255)).all(-1).any(0))[0]]
    rows = np.flatnonzero((column == colour(255)).all(-1)), np.flatnonzero((column == colour(0)).all(-1))
    assert rows[0].size and rows[1].size and rows[0].max() < rows[1].min()  # the top is the saturated end
    # an exact prediction's error map is all zero, yet the picture shows the full colour range of its bar
    gt = np.ones((2, 32, 48))
    picture = render_flow_panel(*flow_sample(32, 48, gt, gt), size=64)
    shown = sum(has_color(picture, c) for c in lut)
    assert has_color(picture, colour(255)) and shown > 30  # the bar of a 64 px panel: ~50 rows of colours


def test_skeleton_error_bars_keep_the_first_test_pass_scale():
    pose2d, gt, _ = random_sample(3)
    rng = np.random.default_rng(4)
    worse, better = gt + rng.normal(0, 0.08, gt.shape), gt + rng.normal(0, 0.02, gt.shape)

    def picture(cb: SkeletonPictures, pred: np.ndarray) -> np.ndarray:
        cb.on_test_epoch_start(fake_trainer(), None)
        cb.samples = [(pose2d, pred, gt)]
        cb.on_test_epoch_end(fake_trainer(), None)
        return cb.test_images[0][:, 3 * 128:]  # the joint-error panel

    def bar_pixels(panel: np.ndarray) -> int:
        return sum(int((panel == np.array(c, np.uint8)).all(-1).sum()) for c in vars(PRED_COLORS).values())

    cb = SkeletonPictures(1, size=128)
    before, after = bar_pixels(picture(cb, worse)), bar_pixels(picture(cb, better))
    assert after < 0.5 * before  # a quarter of the error draws clearly shorter bars on the same scale
    # drawn on its own scale the better prediction's bars would look about as long: the test is sensitive
    assert bar_pixels(picture(SkeletonPictures(1, size=128), better)) > 0.5 * before


def test_pseudo_label_caption_fits_the_picture_on_separate_lines():
    from callbacks.track_pictures import KEPT_COLOUR, label_caption, label_picture
    from framework.images import text_lines

    clip = torch.full((4, 3, 64, 40), 100.0)  # a narrow clip: the picture is 192 x 120
    kept, rejected = torch.full((4, 540, 2), 30.0), torch.full((4, 920, 2), 30.0)
    kept[..., 1], rejected[..., 1] = 50.0, 55.0
    picture = label_picture(clip, kept, rejected)
    assert picture.shape == (192, 120, 3)
    lines, scale = text_lines(label_caption(540, 920), 120 - 12)
    assert len(lines) >= 2 and all(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] <= 108 for t in lines)
    assert (picture[:, -3:] == 100).all()  # the caption stays off the right edge
    text_rows = (picture[:60] > 150).any(-1).any(-1)
    runs = np.flatnonzero(np.diff(text_rows.astype(int)) == 1)
    assert len(runs) >= 2  # lines of text with an empty row between them: they do not overlap
    # the kept tracks are drawn where they are (x 30, y 50 of the clip -> 90, 150 of the picture), not shrunk
    green = np.argwhere((picture[60:] == np.array(KEPT_COLOUR, np.uint8)).all(-1)) + [60, 0]  # below the caption
    assert len(green) and np.abs(green.mean(0) - [150, 90]).max() < 4


def test_overlay_video_plays_at_the_source_rate(tmp_path):
    from torch.utils.data import default_collate

    from callbacks.track_writer import FPS, TrackWriter
    from datamodules.readers.footage_tracks import FootageTracks

    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 64))
    assert writer.isOpened(), "no MJPG writer on this machine"
    for t in range(4):
        writer.write(np.full((64, 64, 3), 40 * t, np.uint8))
    writer.release()
    folder = tmp_path / "folder"
    folder.mkdir()
    for t in range(4):
        cv2.imwrite(str(folder / f"{t:03d}.png"), np.full((64, 64, 3), 40 * t, np.uint8))

    def written_fps(source, out) -> float:
        batch = default_collate([FootageTracks(source, grid_spacing=32)[0]])
        n = batch["queries"].shape[1]
        outputs = {"trajs": batch["queries"][:, None, :, 1:].repeat(1, 4, 1, 1), "vis": torch.ones(1, 4, n)}
        TrackWriter(tmp_path / out).write(outputs, batch)
        capture = cv2.VideoCapture(str(tmp_path / out / "0000.mp4"))
        try:
            assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
            return float(capture.get(cv2.CAP_PROP_FPS))
        finally:
            capture.release()

    assert written_fps(video, "video") == pytest.approx(25.0, abs=0.01)
    assert written_fps(folder, "frames") == pytest.approx(FPS)  # a frame folder has no rate: the default
