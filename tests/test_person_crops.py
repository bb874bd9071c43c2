"""Real-picture person crops for the NF-prior methods: Human3.6M / 3DPW frames with their 3D truth
and COCO-format keypoint files (COCO, or a user's own pictures) with part masks, on tiny files
written in those layouts; and a user's pictures end to end, the fitted bodies written out."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from datamodules.people_crops import PeopleCropsDataModule
from datamodules.readers.person_crops import COCO_BODY_FROM_H36M, COCOCrops, PosedVideoCrops
from datamodules.readers.posed_videos import PosedVideo
from framework.errors import UserError
from geometry.camera import perspective_project

INTRINSICS = (150.0, 150.0, 79.5, 59.5)


def posed_video(tmp_path, frames: int = 3) -> PosedVideo:
    """A person of 17 joints 4 m away, moving right, filmed at 160 x 120; each frame shows a white
    dot on the left wrist (H36M joint 13)."""
    g = np.random.default_rng(0)
    joints3d = np.stack([g.normal(0, 0.3, (17, 3)) + [0.1 * t, 0.0, 4.0] for t in range(frames)])
    fx, fy, cx, cy = INTRINSICS
    joints2d = joints3d[..., :2] / joints3d[..., 2:] * [fx, fy] + [cx, cy]
    folder = tmp_path / "frames"
    folder.mkdir()
    for t in range(frames):
        picture = np.zeros((120, 160, 3), np.uint8)
        x, y = np.round(joints2d[t, 13]).astype(int)
        picture[y - 1:y + 2, x - 1:x + 2] = 255
        cv2.imwrite(str(folder / f"{t:05d}.png"), picture)
    valid = np.ones(frames, bool)
    valid[-1] = False  # the data set calls the last frame unreliable
    return PosedVideo("walker", folder, joints2d, joints3d, valid, INTRINSICS, (120, 160))


def test_video_crops_carry_a_camera_that_projects_the_truth_into_them(tmp_path):
    crops = PosedVideoCrops([posed_video(tmp_path)], size=64, margin=1.3)
    assert len(crops) == 3 and list(crops.videos()[0].indices) == [0, 1, 2]
    item = crops[1]
    camera = item["camera"][None]
    projected = perspective_project(item["joints3d"][None], camera[:, :2], camera[:, 2:])[0]
    assert torch.allclose(projected, item["joints2d"], atol=1e-3)
    assert item["joints2d"].min() >= 0 and item["joints2d"].max() <= 63  # the box, enlarged, holds them
    assert torch.equal(item["keypoints"][5:], item["joints2d"][list(COCO_BODY_FROM_H36M)])
    assert item["keypoint_visible"].tolist() == [False] * 5 + [True] * 12  # no face keypoints
    wrist = item["joints2d"][13].round().long()
    assert item["image"][:, wrist[1], wrist[0]].min() > 100  # the dot drawn on the wrist is there
    assert item["image"].shape == (3, 64, 64) and bool(item["pose_valid"])
    last = crops[2]
    assert not bool(last["pose_valid"]) and not last["keypoint_visible"].any()


def write_coco(root, people=((20.0, 30.0),), parts: bool = True, size=(100, 120)):
    """One picture (H x W = size) with one person per offset: 17 keypoints on a 40 x 60 frame-shaped
    figure, and a part mask PNG per annotation (part 3 under the left wrist, COCO keypoint 9)."""
    h, w = size
    (root / "val2017").mkdir(parents=True)
    cv2.imwrite(str(root / "val2017" / "pic.jpg"), np.full((h, w, 3), 90, np.uint8))
    g = np.random.default_rng(1)
    annotations = []
    for k, (x0, y0) in enumerate(people):
        points = np.stack([x0 + g.uniform(0, 40, 17), y0 + g.uniform(0, 60, 17)], -1)
        flags = np.full(17, 2.0)
        flags[:3] = 0  # three face keypoints not labelled
        annotations.append({"id": 100 + k, "image_id": 7, "category_id": 1, "iscrowd": 0,
                            "keypoints": np.concatenate([points, flags[:, None]], -1).flatten().tolist()})
        if parts:
            (root / "parts").mkdir(exist_ok=True)
            labels = np.zeros((h, w), np.uint8)
            x, y = np.round(points[9]).astype(int)
            labels[y - 2:y + 3, x - 2:x + 3] = 4  # part 3
            cv2.imwrite(str(root / "parts" / f"{100 + k}.png"), labels)
    (root / "annotations").mkdir()
    (root / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(
        {"images": [{"id": 7, "file_name": "pic.jpg", "width": w, "height": h}], "annotations": annotations,
         "categories": [{"id": 1, "name": "person"}]}))
    return annotations


def test_coco_crops_move_keypoints_masks_and_camera_together(tmp_path):
    annotations = write_coco(tmp_path, people=((20.0, 30.0), (50.0, 10.0)))
    crops = COCOCrops(tmp_path / "annotations" / "person_keypoints_val2017.json", tmp_path / "val2017", size=48,
                      parts=tmp_path / "parts")
    assert len(crops) == 2 and crops.name(1) == "pic_101"
    item = crops[0]
    assert item["keypoint_visible"].tolist() == [False] * 3 + [True] * 14
    wrist = item["keypoints"][9].round().long()
    assert int(item["part_mask"][wrist[1], wrist[0]]) == 4 and set(item["part_mask"].unique().tolist()) == {0, 4}
    # the crop's camera is the picture's (focal = the longer side, centred) scaled and shifted with it
    points = np.asarray(annotations[0]["keypoints"]).reshape(17, 3)[:, :2]
    fx, fy, cx, cy = item["camera"].tolist()
    scale = fx / 120.0
    assert fx == fy and np.allclose((points[3:] - [59.5, 49.5]) * scale + [cx, cy], item["keypoints"][3:].numpy(),
                                    atol=1e-3)


def test_coco_crops_bad_files_are_one_error(tmp_path):
    write_coco(tmp_path)
    json_path = tmp_path / "annotations" / "person_keypoints_val2017.json"
    with pytest.raises(UserError, match="part mask of annotation 100"):
        COCOCrops(json_path, tmp_path / "val2017", parts=tmp_path)[0]
    cv2.imwrite(str(tmp_path / "parts" / "100.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(UserError, match=r"100.png: 10 x 10 \(W x H\); its picture is 120 x 100"):
        COCOCrops(json_path, tmp_path / "val2017", parts=tmp_path / "parts")[0]
    data = json.loads(json_path.read_text())
    data["annotations"][0]["keypoints"] = data["annotations"][0]["keypoints"][:50]
    json_path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"annotations\[0\]: 'keypoints' must be 51 finite numbers"):
        COCOCrops(json_path, tmp_path / "val2017")
    json_path.write_text(json.dumps({"images": []}))
    with pytest.raises(UserError, match="not a COCO keypoints file"):
        COCOCrops(json_path, tmp_path / "val2017")


def test_the_datamodule_reads_real_targets_and_refuses_to_train_on_test_only_ones(tmp_path):
    write_coco(tmp_path)
    dm = PeopleCropsDataModule({"target": {"kind": "coco", "root": str(tmp_path), "split": "val2017",
                                           "parts": str(tmp_path / "parts"), "size": 64}}, test_domain="target")
    assert dm.domain_dataset("target", "test")[0]["part_mask"].shape == (64, 64)
    with pytest.raises(UserError, match="data.train_domain=target: data.target.kind=3dpw is test only"):
        PeopleCropsDataModule({"train_domain": "target", "target": {"kind": "3dpw", "root": str(tmp_path)}})
    with pytest.raises(UserError, match="data.source.kind"):
        PeopleCropsDataModule({"source": {"kind": "coco", "root": str(tmp_path)}})


def test_own_pictures_end_to_end_write_a_body_per_person(tmp_path):
    from tests.commands import NFPRIOR_QUICK, NFPRIOR_TINY, cli, report
    write_coco(tmp_path / "pictures", people=((20.0, 30.0), (50.0, 10.0)))
    cli("train.py", tmp_path, config=NFPRIOR_QUICK, tiny=NFPRIOR_TINY)
    ckpt = tmp_path / "nfprior" / "quick" / "checkpoints" / "best.ckpt"
    cli("adapt.py", tmp_path, f"ckpt={ckpt}", "data.target.kind=coco", f"data.target.root={tmp_path / 'pictures'}",
        "data.target.split=val2017", f"data.target.parts={tmp_path / 'pictures' / 'parts'}",
        "adaptation.stages.0.iterations=30", config=NFPRIOR_QUICK, tiny=NFPRIOR_TINY)
    run = tmp_path / "nfprior" / "quick_adapt"
    rep = report(run)
    assert set(rep["after"]) == {"keypoints_error", "part_iou"}  # no 3D truth: the 2D scores alone
    assert rep["after"]["keypoints_error"] < rep["before"]["keypoints_error"]
    written = sorted(p.name for p in (run / "bodies").iterdir())
    assert written == ["pic_100.npz", "pic_100.png", "pic_101.npz", "pic_101.png"]
    body = np.load(run / "bodies" / "pic_101.npz")
    assert body["joints3d"].shape == (17, 3) and body["keypoints2d"].shape == (17, 2) and body["camera"].shape == (4,)
    overlay = cv2.imread(str(run / "bodies" / "pic_101.png"))
    assert overlay.shape == (64, 64, 3)
