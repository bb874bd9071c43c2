"""Real-dataset flow readers on tiny trees written in each data set's own layout."""
import shutil

import cv2
import numpy as np
import pytest
import torch

from datamodules.flow_augment import FlowAugmentor, SparseFlowAugmentor
from datamodules.readers.flow_datasets import FlyingChairs, FlyingThings3D, Kitti2015, MpiSintel
from datamodules.readers.flow_formats import write_flo, write_kitti_flow
from framework.errors import UserError

H, W = 6, 8


def write_pfm(path, array):
    """(H, W, 3) float array as little-endian .pfm, rows bottom to top."""
    array = np.asarray(array, dtype=np.float32)
    header = b"PF\n" + f"{array.shape[1]} {array.shape[0]}".encode() + b"\n-1.0\n"
    path.write_bytes(header + np.flipud(array).astype("<f4").tobytes())


def image(value, h=H, w=W):
    """RGB picture whose red channel holds ``value`` (so a test can tell frames apart)."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = value
    img[..., 1] = np.arange(w)[None, :]
    img[..., 2] = np.arange(h)[:, None]
    return img


def save(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def flow_of(value, h=H, w=W):
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = value
    flow[..., 1] = -value / 2
    return flow


def sintel_tree(root, scenes={"alley_1": 3, "bamboo_2": 4}):
    for s, (scene, n) in enumerate(scenes.items()):
        for i in range(1, n + 1):
            for p, pass_name in enumerate(("clean", "final")):
                save(root / "training" / pass_name / scene / f"frame_{i:04d}.png", image(10 * s + i + 100 * p))
            if i < n:
                (root / "training" / "flow" / scene).mkdir(parents=True, exist_ok=True)
                write_flo(root / "training" / "flow" / scene / f"frame_{i:04d}.flo", flow_of(10 * s + i))
    return root


def test_sintel_pairs_values_and_videos(tmp_path):
    root = sintel_tree(tmp_path / "sintel")
    ds = MpiSintel(root, pass_name="final")
    assert len(ds) == 2 + 3
    item = ds[3]  # bamboo_2, frames 2 -> 3
    assert item["image1"].shape == (3, H, W) and item["image1"].dtype == torch.float32
    assert item["image1"][0, 0, 0] == 100 + 12 and item["image2"][0, 0, 0] == 100 + 13
    assert item["image1"][1, 0, 5] == 5 and item["image1"][2, 4, 0] == 4  # RGB order, rows top to bottom
    assert item["flow"].shape == (2, H, W)
    assert torch.all(item["flow"][0] == 12) and torch.all(item["flow"][1] == -6)
    assert item["valid"].dtype == torch.float32 and torch.all(item["valid"] == 1)
    assert item["index"].dtype == torch.int64 and int(item["index"]) == 3
    assert int(item["video"]) == 1 and int(item["frame"]) == 1
    videos = ds.videos()
    assert list(videos) == [0, 1]
    assert videos[0].name == "alley_1" and videos[0].indices == [0, 1]
    assert videos[1].name == "bamboo_2" and videos[1].indices == [2, 3, 4]
    assert [int(ds[i]["frame"]) for i in videos[1].indices] == [0, 1, 2]
    clean = MpiSintel(root, pass_name="clean", scenes=["bamboo_2"])
    assert len(clean) == 3 and clean[0]["image1"][0, 0, 0] == 11
    assert clean.videos() == {0: ("bamboo_2", [0, 1, 2])}


def test_sintel_large_flow_is_invalid(tmp_path):
    root = sintel_tree(tmp_path / "s", {"cave_4": 2})
    flow = flow_of(1.0)
    flow[2, 3, 0] = 1e9
    write_flo(root / "training" / "flow" / "cave_4" / "frame_0001.flo", flow)
    valid = MpiSintel(root)[0]["valid"]
    assert valid[2, 3] == 0 and valid.sum() == H * W - 1


def test_sintel_test_split_has_no_flow(tmp_path):
    for i in (1, 2):
        save(tmp_path / "test" / "clean" / "ambush_1" / f"frame_{i:04d}.png", image(i))
    item = MpiSintel(tmp_path, split="test")[0]
    assert "flow" not in item and item["image2"][0, 0, 0] == 2


def test_sintel_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(UserError, match="nowhere"):
        MpiSintel(tmp_path / "nowhere")
    root = sintel_tree(tmp_path / "s")
    missing = root / "training" / "flow" / "bamboo_2" / "frame_0002.flo"
    missing.unlink()
    with pytest.raises(UserError, match="bamboo_2/frame_0002.flo"):
        MpiSintel(root)
    with pytest.raises(UserError, match="scene"):
        MpiSintel(root, scenes=["nope"])
    root = sintel_tree(tmp_path / "t")
    big = root / "training" / "clean" / "alley_1" / "frame_0002.png"
    save(big, image(1, H + 2, W))
    with pytest.raises(UserError, match="alley_1/frame_0002.png"):
        MpiSintel(root)[0]


def chairs_tree(root, n=4, split=None):
    data = root / "data"
    for i in range(n):
        save(data / f"{i + 1:05d}_img1.ppm", image(2 * i))
        save(data / f"{i + 1:05d}_img2.ppm", image(2 * i + 1))
        write_flo(data / f"{i + 1:05d}_flow.flo", flow_of(i))
    if split is not None:
        (root / "FlyingChairs_train_val.txt").write_text("\n".join(str(s) for s in split) + "\n")
    return root


def test_chairs_split_and_values(tmp_path):
    root = chairs_tree(tmp_path / "chairs", split=[1, 2, 1, 1])
    train, val = FlyingChairs(root, "train"), FlyingChairs(root, "val")
    assert len(train) == 3 and len(val) == 1 and len(FlyingChairs(root, "all")) == 4
    assert val[0]["image1"][0, 0, 0] == 2 and val[0]["image2"][0, 0, 0] == 3
    assert torch.all(val[0]["flow"][0] == 1)
    assert [float(train[i]["flow"][0, 0, 0]) for i in range(3)] == [0, 2, 3]
    assert "video" not in train[0] and train.videos() == {}
    nosplit = chairs_tree(tmp_path / "c2", n=2)
    assert len(FlyingChairs(nosplit)) == 2
    with pytest.raises(UserError, match="FlyingChairs_train_val.txt"):
        FlyingChairs(nosplit, "val")


def test_chairs_bad_inputs(tmp_path):
    root = chairs_tree(tmp_path / "c", n=3, split=[1, 2])
    with pytest.raises(UserError, match="FlyingChairs_train_val.txt"):
        FlyingChairs(root)
    root = chairs_tree(tmp_path / "d", n=3)
    (root / "data" / "00002_flow.flo").unlink()
    with pytest.raises(UserError, match="00002_flow.flo"):
        FlyingChairs(root)
    root = chairs_tree(tmp_path / "e", n=1)
    write_flo(root / "data" / "00001_flow.flo", flow_of(1, H, W + 1))
    with pytest.raises(UserError, match="00001_flow.flo"):
        FlyingChairs(root)[0]


def things_tree(root, frames=(6, 7, 8)):
    for f in frames:
        for pass_name, off in (("clean", 0), ("final", 100)):
            save(root / f"frames_{pass_name}pass" / "TRAIN" / "A" / "0000" / "left" / f"{f:04d}.png", image(f + off))
        for direction, kind, sign in (("into_future", "Future", 1), ("into_past", "Past", -1)):
            d = root / "optical_flow" / "TRAIN" / "A" / "0000" / direction / "left"
            d.mkdir(parents=True, exist_ok=True)
            pfm = np.zeros((H, W, 3), np.float32)
            pfm[..., :2] = flow_of(sign * f)
            write_pfm(d / f"OpticalFlowInto{kind}_{f:04d}_L.pfm", pfm)
    return root


def test_things_forward_and_backward_pairs(tmp_path):
    root = things_tree(tmp_path / "things")
    ds = FlyingThings3D(root)
    assert len(ds) == 4
    fw = [(float(ds[i]["image1"][0, 0, 0]), float(ds[i]["image2"][0, 0, 0]), float(ds[i]["flow"][0, 0, 0]))
          for i in range(4)]
    assert fw == [(6, 7, 6), (7, 8, 7), (7, 6, -7), (8, 7, -8)]
    assert float(ds[2]["flow"][1, 5, 7]) == 3.5  # v read bottom-up and flipped back
    videos = ds.videos()
    assert [v.name for v in videos.values()] == ["clean/A/0000/left/into_future", "clean/A/0000/left/into_past"]
    both = FlyingThings3D(root, passes=("clean", "final"), directions=("into_future",))
    assert len(both) == 4 and both[2]["image1"][0, 0, 0] == 106


def test_things_bad_inputs(tmp_path):
    root = things_tree(tmp_path / "t")
    (root / "optical_flow" / "TRAIN" / "A" / "0000" / "into_past" / "left" / "OpticalFlowIntoPast_0008_L.pfm").unlink()
    with pytest.raises(UserError, match="OpticalFlowIntoPast_0008_L.pfm"):
        FlyingThings3D(root)
    shutil.rmtree(root / "frames_finalpass")
    with pytest.raises(UserError, match="frames_finalpass"):
        FlyingThings3D(root, passes=("final",))
    with pytest.raises(UserError, match="optical_flow/TEST"):
        FlyingThings3D(root, split="TEST")


def kitti_tree(root, n=2):
    for i in range(n):
        save(root / "training" / "image_2" / f"{i:06d}_10.png", image(i))
        save(root / "training" / "image_2" / f"{i:06d}_11.png", image(50 + i))
        valid = np.zeros((H, W), bool)
        valid[::2, 1::3] = True
        (root / "training" / "flow_occ").mkdir(parents=True, exist_ok=True)
        write_kitti_flow(root / "training" / "flow_occ" / f"{i:06d}_10.png", flow_of(i + 0.25), valid)
    return root


def test_kitti_sparse_flow(tmp_path):
    ds = Kitti2015(kitti_tree(tmp_path / "kitti"))
    assert len(ds) == 2
    item = ds[1]
    assert item["image1"][0, 0, 0] == 1 and item["image2"][0, 0, 0] == 51
    assert item["valid"][0, 1] == 1 and item["valid"][1, 1] == 0 and item["valid"].sum() == 3 * 3
    assert float(item["flow"][0, 0, 1]) == 1.25 and float(item["flow"][1, 0, 1]) == -0.625


def test_kitti_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="image_2"):
        Kitti2015(tmp_path)
    root = kitti_tree(tmp_path / "k")
    (root / "training" / "image_2" / "000001_11.png").unlink()
    with pytest.raises(UserError, match="000001_11.png"):
        Kitti2015(root)
    root = kitti_tree(tmp_path / "m", n=1)
    save(root / "training" / "image_2" / "000000_11.png", image(0, H, W + 3))
    with pytest.raises(UserError, match="000000_11.png"):
        Kitti2015(root)[0]


def test_augmented_items_are_cropped_and_reproducible(tmp_path):
    big_h, big_w = 40, 48
    root = tmp_path / "c"
    rng = np.random.default_rng(0)
    save(root / "data" / "00001_img1.ppm", rng.integers(0, 255, (big_h, big_w, 3), dtype=np.uint8))
    save(root / "data" / "00001_img2.ppm", rng.integers(0, 255, (big_h, big_w, 3), dtype=np.uint8))
    write_flo(root / "data" / "00001_flow.flo", flow_of(2.0, big_h, big_w))
    ds = FlyingChairs(root, augmentor=FlowAugmentor((16, 24), eraser_bounds=(3, 6)), seed=3)
    a, b = ds[0], ds[0]
    assert a["image1"].shape == (3, 16, 24) and a["flow"].shape == (2, 16, 24) and a["valid"].shape == (16, 24)
    assert all(torch.equal(a[k], b[k]) for k in a)
    changed = False
    for epoch in range(1, 6):
        ds.set_epoch(epoch)
        changed |= not torch.equal(ds[0]["image1"], a["image1"])
    assert changed
    kitti = Kitti2015(kitti_tree(tmp_path / "k", n=1), augmentor=SparseFlowAugmentor((4, 6), eraser_bounds=(1, 2)))
    item = kitti[0]
    assert item["image1"].shape == (3, 4, 6) and set(item["valid"].unique().tolist()) <= {0.0, 1.0}
