"""User footage: frame folders and video files become consecutive pairs without ground truth."""
import cv2
import numpy as np
import pytest
import torch

from datamodules.optical_flow import OpticalFlowDataModule
from datamodules.readers.footage import UserFootage
from framework.errors import UserError

H, W = 72, 80


def write_folder(folder, count=5, height=H, width=W, seed=0, ext=".png"):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(count):
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"f{i:03d}{ext}"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        frames.append(rgb)
    return frames


def write_video(path, count=6, height=H, width=W):
    """Flat-coloured frames (MJPG keeps flat colours nearly exact) whose level tells the frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (width, height))
    assert writer.isOpened(), "no MJPG writer on this machine"
    for i in range(count):
        bgr = np.zeros((height, width, 3), np.uint8)
        bgr[..., 0] = 20 * i  # blue rises with the frame: checks order and BGR -> RGB
        bgr[..., 2] = 200
        writer.write(bgr)
    writer.release()
    return path


def test_folder_pairs_keys_shapes_and_order(tmp_path):
    frames = write_folder(tmp_path / "clip")
    (tmp_path / "clip" / "notes.txt").write_text("not a frame")
    ds = UserFootage(tmp_path / "clip")
    assert len(ds) == 4 and ds.frame_names == [f"f{i:03d}" for i in range(5)]
    item = ds[1]
    assert set(item) == {"image1", "image2", "index", "video", "frame"}
    assert item["image1"].shape == (3, H, W) and item["image1"].dtype == torch.float32
    assert item["index"].dtype == torch.int64 and int(item["video"]) == 0 and int(item["frame"]) == 1
    assert torch.equal(item["image1"], torch.from_numpy(frames[1]).permute(2, 0, 1).float())
    for i in range(len(ds) - 1):
        assert torch.equal(ds[i]["image2"], ds[i + 1]["image1"])
    assert torch.equal(ds.frame(4), ds[3]["image2"])
    span = ds.videos()[0]
    assert span.name == "clip" and span.indices == [0, 1, 2, 3]


def test_folder_step_cap_and_resize(tmp_path):
    frames = write_folder(tmp_path / "clip", count=7)
    ds = UserFootage(tmp_path / "clip", frame_step=2, max_frames=3, resize=[64, 96])
    assert ds.frame_names == ["f000", "f002", "f004"] and len(ds) == 2
    want = cv2.resize(frames[2], (96, 64), interpolation=cv2.INTER_AREA)
    assert ds[1]["image1"].shape == (3, 64, 96)
    assert torch.equal(ds[1]["image1"], torch.from_numpy(want).permute(2, 0, 1).float())


def test_video_file_pairs(tmp_path):
    path = write_video(tmp_path / "walk.avi")
    ds = UserFootage(path)
    assert len(ds) == 5 and ds.frame_names[:2] == ["walk_00000", "walk_00001"]
    assert ds.videos()[0].name == "walk"
    item = ds[2]
    assert item["image1"].shape == (3, H, W) and "flow" not in item
    # RGB order: red is the constant 200, blue rises 20 per frame
    assert abs(float(item["image1"][0].mean()) - 200) < 4
    assert abs(float(item["image1"][2].mean()) - 40) < 4 and abs(float(item["image2"][2].mean()) - 60) < 4
    stepped = UserFootage(path, frame_step=2, max_frames=2, resize=[64, 64])
    assert len(stepped) == 1 and stepped[0]["image2"].shape == (3, 64, 64)
    assert abs(float(stepped[0]["image2"][2].mean()) - 40) < 4  # frame 2 of the file


def test_footage_knows_the_rate_of_its_kept_frames(tmp_path):
    path = write_video(tmp_path / "walk.avi")  # written at 10 fps
    assert UserFootage(path).fps == pytest.approx(10.0)
    assert UserFootage(path, frame_step=2).fps == pytest.approx(5.0)  # every other frame: half the rate
    write_folder(tmp_path / "clip", count=3)
    assert UserFootage(tmp_path / "clip").fps is None  # image files carry no rate


def test_bad_footage_names_path_or_option(tmp_path):
    missing = tmp_path / "missing"
    with pytest.raises(UserError, match="missing.*does not exist"):
        UserFootage(missing)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(UserError, match="empty.*no image files"):
        UserFootage(tmp_path / "empty")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(UserError, match="junk.avi.*cannot open"):
        UserFootage(junk)
    empty_video = cv2.VideoWriter(str(tmp_path / "none.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (W, H))
    empty_video.release()  # a header and no frames
    with pytest.raises(UserError, match="none.avi.*no frames"):
        UserFootage(tmp_path / "none.avi")
    with pytest.raises(UserError, match="walk.avi.*at least 2"):
        UserFootage(write_video(tmp_path / "walk.avi", count=3), frame_step=3)
    write_folder(tmp_path / "two", count=2)
    with pytest.raises(UserError, match="two.*at least 2"):
        UserFootage(tmp_path / "two", frame_step=2)
    write_folder(tmp_path / "small", count=3, height=48, width=80)
    with pytest.raises(UserError, match="small.*at least 64"):
        UserFootage(tmp_path / "small")
    assert UserFootage(tmp_path / "small", resize=[64, 80]).size == (64, 80)
    write_folder(tmp_path / "clip")
    with pytest.raises(UserError, match="clip.*at least 64"):
        UserFootage(tmp_path / "clip", resize=[32, 80])
    mixed = tmp_path / "mixed"
    write_folder(mixed, count=3)
    cv2.imwrite(str(mixed / "f009.png"), np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(UserError, match="f009.png"):
        UserFootage(mixed)
    for kwargs, key in (({"frame_step": 0}, "frame_step"), ({"max_frames": 1}, "max_frames"),
                        ({"resize": [64]}, "resize"), ({"resize": "64x64"}, "resize")):
        with pytest.raises(UserError, match=f"clip.*{key}"):
            UserFootage(tmp_path / "clip", **kwargs)


def test_datamodule_reads_footage_as_target_test_only(tmp_path):
    write_folder(tmp_path / "clip", count=5)
    target = {"kind": "footage", "root": str(tmp_path / "clip"), "frame_step": 1, "max_frames": 4}
    dm = OpticalFlowDataModule({"target": target, "test_batch_size": 2}, test_domain="target")
    dm.setup("test")
    batches = list(dm.test_dataloader())
    assert [b["image1"].shape for b in batches] == [(2, 3, H, W), (1, 3, H, W)]
    assert torch.cat([b["frame"] for b in batches]).tolist() == [0, 1, 2]
    assert "flow" not in batches[0]
    for part in ("train", "val"):
        with pytest.raises(UserError, match=r"data\.target\.kind: footage has no ground-truth flow"):
            dm.domain_dataset("target", part)
    video = write_video(tmp_path / "walk.avi")
    dm = OpticalFlowDataModule({"target": {"kind": "footage", "root": str(video)}}, test_domain="target")
    assert len(dm.domain_dataset("target", "test")) == 5


def test_datamodule_footage_bad_keys(tmp_path):
    write_folder(tmp_path / "clip", count=3)
    root = str(tmp_path / "clip")
    for extra, key in (({"frame_step": 0}, "frame_step"), ({"max_frames": 1}, "max_frames"),
                       ({"resize": [32, 64]}, "resize"), ({"resize": [64, 64, 64]}, "resize")):
        with pytest.raises(UserError, match=rf"data\.target\.{key}"):
            OpticalFlowDataModule({"target": {"kind": "footage", "root": root, **extra}}, test_domain="target")
    with pytest.raises(UserError, match=r"data\.target\.root"):
        OpticalFlowDataModule({"target": {"kind": "footage", "root": str(tmp_path / "nope.mp4")}},
                              test_domain="target")
    dm = OpticalFlowDataModule({"target": {"kind": "footage", "root": root, "frame_step": 5}}, test_domain="target")
    with pytest.raises(UserError, match=r"data\.target: footage .*clip.*at least 2"):
        dm.setup("test")
