"""Human3.6M and 3DPW videos with their ground-truth joints as bootstrapping targets: the readers on
tiny files in the released layouts, and the scores a module gives where there is no dense flow."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from datamodules.people_flow import PeopleFlowDataModule
from datamodules.readers.h36m import CAMERA_IDS, INTRINSICS, world_to_camera
from datamodules.readers.posed_videos import PosedVideoPairs, h36m_videos, pw3d_videos
from framework.errors import UserError
from tests.test_pose_data import _write_3dpw, _write_h36m

CAM0, CAM1 = CAMERA_IDS[0], CAMERA_IDS[1]


def flat_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    """Frames whose level tells their number (checks the frame_step)."""
    return [np.full((height, width, 3), 10 * i, np.uint8) for i in range(count)]


def write_h36m_frames(root, count: int = 6):
    """S9 'Walking 1' as an image folder (camera 0) and as the release's mp4 (camera 1)."""
    w0, h0 = INTRINSICS[CAM0][4:]
    folder = root / "S9" / f"Walking 1.{CAM0}"
    folder.mkdir(parents=True)
    for i, frame in enumerate(flat_frames(count, h0, w0)):
        cv2.imwrite(str(folder / f"{i:06d}.png"), frame)
    w1, h1 = INTRINSICS[CAM1][4:]
    (root / "S9" / "Videos").mkdir()
    writer = cv2.VideoWriter(str(root / "S9" / "Videos" / f"Walking 1.{CAM1}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                             50, (w1, h1))
    for frame in flat_frames(count + 2, h1, w1):  # the videos run a few frames past the motion capture
        writer.write(frame)
    writer.release()


def test_h36m_videos_pair_frames_with_each_cameras_joints(tmp_path):
    positions, positions_2d = _write_h36m(tmp_path, frames=6)
    write_h36m_frames(tmp_path / "frames")
    videos = h36m_videos(tmp_path, tmp_path / "frames", subjects=["S9"], actions=["Walking"], cameras=[0, 1])
    pairs = PosedVideoPairs(videos, frame_step=2, resize=[64, 80])
    assert [s.name for s in pairs.videos().values()] == [f"S9_Walking 1.{CAM0}", f"S9_Walking 1.{CAM1}"]
    assert len(pairs) == 2 * 2  # frames 0, 2, 4 of each: two pairs
    item = pairs[3]  # camera 1, kept frames 1 and 2 = recorded frames 2 and 4
    assert int(item["video"]) == 1 and int(item["frame"]) == 1 and item["image1"].shape == (3, 64, 80)
    assert abs(float(item["image1"].mean()) - 20) < 3 and abs(float(item["image2"].mean()) - 40) < 3
    w, h = INTRINSICS[CAM1][4:]
    scale = np.array([80 / w, 64 / h])
    assert np.allclose(item["joints2d"].numpy(), positions_2d["S9"]["Walking 1"][1][[2, 4]] * scale, atol=1e-3)
    truth = world_to_camera(positions["S9"]["Walking 1"][[2, 4]][:, [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19,
                                                                     25, 26, 27]], "S9", 1)
    assert np.allclose(item["joints3d"].numpy(), truth, atol=1e-5)
    fx, fy, cx, cy = INTRINSICS[CAM1][:4]
    assert np.allclose(item["camera"].numpy(), [fx * scale[0], fy * scale[1], cx * scale[0], cy * scale[1]], rtol=1e-5)
    assert bool(item["joint_visible"].all()) and bool(item["pose_valid"].all())


def test_h36m_videos_bad_frames_name_the_file(tmp_path):
    _write_h36m(tmp_path, frames=6)
    (tmp_path / "frames").mkdir()
    with pytest.raises(UserError, match=r"S9_Walking 1\.54138969.*Videos/Walking 1\.54138969\.mp4"):
        h36m_videos(tmp_path, tmp_path / "frames", subjects=["S9"], cameras=[0])
    write_h36m_frames(tmp_path / "frames", count=3)  # fewer frames than the motion capture
    pairs = PosedVideoPairs(h36m_videos(tmp_path, tmp_path / "frames", subjects=["S9"], actions=["Walking"], cameras=[0]))
    with pytest.raises(UserError, match=r"Walking 1\.54138969: 3 frames kept .* need 6"):
        pairs[0]
    small = tmp_path / "small"
    (small / "S9" / f"Walking 1.{CAM0}").mkdir(parents=True)
    for i, frame in enumerate(flat_frames(6, 100, 100)):
        cv2.imwrite(str(small / "S9" / f"Walking 1.{CAM0}" / f"{i:06d}.png"), frame)
    pairs = PosedVideoPairs(h36m_videos(tmp_path, small, subjects=["S9"], actions=["Walking"], cameras=[0]))
    with pytest.raises(UserError, match="100 x 100 .* films 1000 x 1002"):
        pairs[0]
    with pytest.raises(UserError, match="camera index 4"):
        h36m_videos(tmp_path, small, subjects=["S9"], cameras=[4])


def test_3dpw_videos_give_each_person_and_mark_unreliable_frames(tmp_path):
    data = _write_3dpw(tmp_path, frames=4)
    folder = tmp_path / "imageFiles" / "downtown_test_00"
    folder.mkdir(parents=True)
    for i, frame in enumerate(flat_frames(4, 1920, 1080)):
        cv2.imwrite(str(folder / f"image_{i:05d}.jpg"), frame)
    pairs = PosedVideoPairs(pw3d_videos(tmp_path, "test"), resize=[128, 72])
    assert [s.name for s in pairs.videos().values()] == ["downtown_test_00_0", "downtown_test_00_1"]
    assert len(pairs) == 2 * 3
    second = [pairs[i] for i in pairs.videos()[1].indices]
    # campose_valid of person 1 is [1, 0, 1, 0]
    assert [item["pose_valid"].tolist() for item in second] == [[True, False], [False, True], [True, False]]
    assert not bool(second[0]["joint_visible"][1].any())
    world = data["jointPositions"][1][2].reshape(24, 3)
    cam = world @ data["cam_poses"][2, :3, :3].T + data["cam_poses"][2, :3, 3]
    assert np.allclose(second[2]["joints3d"][0, 0].numpy(), cam[0], atol=1e-5)  # the pelvis, frame 2
    K = data["cam_intrinsics"]
    px = cam[0, :2] / cam[0, 2] * K[[0, 1], [0, 1]] + K[:2, 2]
    assert np.allclose(second[2]["joints2d"][0, 0].numpy(), px * [72 / 1080, 128 / 1920], atol=1e-3)
    with pytest.raises(UserError, match="3DPW frames of downtown_test_00"):
        folder.rename(tmp_path / "elsewhere")
        pw3d_videos(tmp_path)


def test_bootstrap_data_on_h36m_videos_with_simulated_estimates(tmp_path):
    _write_h36m(tmp_path, frames=6)
    write_h36m_frames(tmp_path / "frames")
    dm = PeopleFlowDataModule({"target": {"kind": "h36m", "root": str(tmp_path), "frames": str(tmp_path / "frames"),
                                          "subjects": ["S9"], "actions": ["Walking"], "cameras": [0],
                                          "resize": [64, 64]},
                               "poses": {"kind": "simulated"}}, test_domain="target")
    data = dm.domain_dataset("target", "test")
    item = data[0]
    assert "flow" not in item and item["init_joints3d"].shape == (2, 17, 3) and item["detections2d"].shape == (2, 17, 2)
    from lightning_modules.bootstrap import BootstrapModule
    torch.manual_seed(0)
    module = BootstrapModule("bootstrap", {"small": True, "test_iters": 2})
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    scores = trainer.test(module, datamodule=dm, verbose=False)[0]
    # no dense flow: the label-free flow scores and the joints' own, nothing computed from absent labels
    assert {"test/mpjpe", "test/pa_mpjpe", "test/joint_epe", "test/joints2d_error", "test/fb_consistent"} <= set(scores)
    assert "test/epe" not in scores and all(np.isfinite(v) for v in scores.values())
    with pytest.raises(UserError, match="data.source.kind: h36m has no ground-truth flow"):
        PeopleFlowDataModule({"source": {"kind": "h36m", "root": str(tmp_path)}}).domain_dataset("source", "train")


def test_unreliable_frames_count_in_no_pose_metric():
    from lightning_modules.bootstrap import BootstrapModule
    module = BootstrapModule("bootstrap", {"small": True})
    truth = torch.zeros(2, 2, 17, 3)
    truth[..., 1, 0] = 0.1  # a 10 cm hip, the rest at the root
    mine = truth[:, 0].clone()
    mine[0, 1, 0] += 0.05  # 5 cm off at one joint of the reliable frame
    mine[1, 1:] += 1.0  # a metre off everywhere in the unreliable one
    batch = {"joints2d": torch.zeros(2, 2, 17, 2), "joints3d": truth, "pose_valid": torch.tensor([[True, True],
                                                                                                   [False, True]]),
             "index": torch.tensor([0, 1])}
    outputs = {"flow": torch.zeros(2, 2, 8, 8), "joints3d": mine, "joints2d": torch.zeros(2, 17, 2)}
    module.update_joint_metrics(module.test_metrics, outputs, batch)
    assert float(module.test_metrics["mpjpe"].compute()) == pytest.approx(50.0 / 17, rel=1e-4)  # mm, frame 0 only


@pytest.mark.parametrize("overlay", ["h36m", "3dpw"])
def test_overlays_load_over_the_default_config(overlay, tmp_path):
    from framework.config import load_config
    from framework.methods import schema_for
    from tests.commands import ROOT
    cfg = load_config([str(ROOT / "configs/bootstrap/default.yaml"), str(ROOT / f"configs/bootstrap/{overlay}.yaml")],
                      [f"data.target.root={tmp_path}", f"data.poses.root={tmp_path}"], schema_for)
    assert cfg.data.target.kind == overlay and cfg.data.poses.kind == "file" and cfg.adaptation.rounds[0] == "flow"
