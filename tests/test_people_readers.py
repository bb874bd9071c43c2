"""Multi-person readers (MuPoTS-3D, JTA, COCO keypoints) and the Sintel human subset, on tiny
files written in each data set's own format."""
import json
import warnings

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from torch.utils.data import DataLoader

from datamodules.readers.coco_keypoints import COCOKeypoints
from datamodules.readers.flow_datasets import SINTEL_HUMAN_SCENES, MpiSintel
from datamodules.readers.flow_formats import write_flo
from datamodules.readers.jta import JTA, JTA_CAMERA, JTA_JOINTS
from datamodules.readers.mupots import MuPoTS3D
from framework.errors import UserError
from geometry.skeletons import COCO17, H36M17, MPI_INF_3DHP17, MPI_INF_3DHP_TO_H36M

COLOUR = (200, 60, 20)  # RGB of every test picture


def _err(fn, *needles):
    with pytest.raises(UserError) as info:
        fn()
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    return str(info.value)


def save_picture(path, rgb=COLOUR, h=6, w=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((h, w, 3), np.uint8) + np.array(rgb, np.uint8)
    assert cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def no_warnings(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


# ---------------------------------------------------------------- MuPoTS-3D
K_TRUE = (1500.0, 1490.0, 1010.0, 1030.0)


def mupots_annotations(frames=4, people=3, seed=0, camera=K_TRUE):
    """3DHP-order joints in mm, their projection with ``camera``, validity and occlusion."""
    rng = np.random.default_rng(seed)
    fx, fy, cx, cy = camera
    annot3 = rng.uniform(-800, 800, size=(frames, people, 3, 17))
    annot3[:, :, 2] = rng.uniform(3000, 6000, size=(frames, people, 17))
    ratio = annot3[:, :, :2] / annot3[:, :, 2:]
    annot2 = np.stack([fx * ratio[:, :, 0] + cx, fy * ratio[:, :, 1] + cy], axis=2)
    valid = np.ones((frames, people))
    valid[1, 1] = 0  # person 1 not to be used in frame 1
    valid[2, :] = 0  # nobody in frame 2
    occluded = rng.integers(0, 2, size=(frames, people, 1, 17)).astype(np.float64)
    return {"annot2": annot2, "annot3": annot3, "univ_annot3": annot3 * 0.9, "valid": valid, "occluded": occluded}


def write_mupots(root, n, a, layout="cell", drop_field=None, annot2_rows=2, images=True):
    folder = root / f"TS{n}"
    folder.mkdir(parents=True, exist_ok=True)
    frames, people = a["valid"].shape
    fields = {"annot2": lambda i, j: np.resize(a["annot2"][i, j], (annot2_rows, 17)),
              "annot3": lambda i, j: a["annot3"][i, j], "univ_annot3": lambda i, j: a["univ_annot3"][i, j],
              "isValidFrame": lambda i, j: np.array([[a["valid"][i, j]]])}
    fields = {k: v for k, v in fields.items() if k != drop_field}
    if layout == "cell":  # as released: a cell array of 1x1 structs
        annotations = np.empty((frames, people), dtype=object)
        for i in range(frames):
            for j in range(people):
                annotations[i, j] = {k: f(i, j) for k, f in fields.items()}
    else:  # a (frames, people) struct array
        annotations = np.empty((frames, people), dtype=[(k, object) for k in fields])
        for i in range(frames):
            for j in range(people):
                annotations[i, j] = tuple(f(i, j) for f in fields.values())
    scipy.io.savemat(folder / "annot.mat", {"annotations": annotations})
    occlusion = np.empty(a["occluded"].shape[:2], dtype=object)
    for i in range(occlusion.shape[0]):
        for j in range(occlusion.shape[1]):
            occlusion[i, j] = a["occluded"][i, j]
    scipy.io.savemat(folder / "occlusion.mat", {"occlusion_labels": occlusion})
    if images:
        for i in range(frames):
            save_picture(folder / f"img_{i:06d}.jpg")
    return folder


def test_mupots_layout_written_matches_public_readers(tmp_path):
    """Public code indexes loadmat(...)['annotations'][i, j]['annot2'][0, 0]: a cell of 1x1 structs."""
    a = mupots_annotations()
    folder = write_mupots(tmp_path, 1, a)
    cell = scipy.io.loadmat(folder / "annot.mat")["annotations"]  # scipy's defaults, as public code calls it
    assert cell.shape == (4, 3)
    dt = cell[1, 2]
    assert dt["annot2"][0, 0].shape == (2, 17) and dt["annot3"][0, 0].shape == (3, 17)
    assert dt["isValidFrame"][0, 0][0, 0] == 1
    occ = scipy.io.loadmat(folder / "occlusion.mat")["occlusion_labels"]
    assert occ.shape == (4, 3) and occ[0][1].shape == (1, 17)


def test_mupots_order_units_packing_visibility_boxes(tmp_path):
    a = mupots_annotations()
    write_mupots(tmp_path, 1, a)
    ds = no_warnings(lambda: MuPoTS3D(tmp_path))
    assert len(ds) == 3  # frame 2 has nobody valid
    assert ds.frame.tolist() == [0, 1, 3]
    order = list(MPI_INF_3DHP_TO_H36M)
    item = ds[1]  # frame 1: people 0 and 2 (person 1 is not valid there)
    assert int(item["frame"]) == 1 and int(item["index"]) == 1 and int(item["video"]) == 0
    assert item["person_id"].tolist() == [0, 2, -1, -1, -1, -1, -1, -1]
    assert item["person_valid"].tolist() == [True, True] + [False] * 6
    assert item["joints3d"].shape == (8, 17, 3) and item["joints3d"].dtype == torch.float32
    # the 3DHP pelvis column is H36M joint 0; head top (3DHP 0) is H36M head (10); mm -> m
    assert MPI_INF_3DHP17.joint_names[14] == H36M17.joint_names[0] == "pelvis"
    assert np.allclose(item["joints3d"][1, 0].numpy(), a["annot3"][1, 2, :, 14] / 1000, atol=1e-6)
    assert np.allclose(item["joints3d"][1, 10].numpy(), a["annot3"][1, 2, :, 0] / 1000, atol=1e-6)
    assert np.allclose(item["joints3d"][0].numpy(), a["annot3"][1, 0][:, order].T / 1000, atol=1e-6)
    assert np.allclose(item["joints3d_univ"][0].numpy(), a["univ_annot3"][1, 0][:, order].T / 1000, atol=1e-6)
    assert np.allclose(item["joints2d"][1].numpy(), a["annot2"][1, 2][:, order].T, atol=1e-3)
    assert torch.all(item["joints2d"][2:] == 0) and torch.all(item["joints3d"][2:] == 0)
    assert item["joint_valid"][:2].all() and not item["joint_valid"][2:].any()
    assert item["joint_visible"][1].tolist() == (a["occluded"][1, 2, 0, order] == 0).tolist()
    assert not item["joint_visible"][2:].any()
    xy = a["annot2"][1, 2].T
    assert np.allclose(item["boxes"][1].numpy(), [*xy.min(0), *xy.max(0)], atol=1e-3)
    assert torch.all(item["boxes"][2:] == 0)
    assert item["image"].shape == (3, 6, 8) and item["image"].dtype == torch.float32
    assert np.allclose(item["image"][:, 0, 0].numpy(), COLOUR, atol=3)  # RGB, not BGR


def test_mupots_camera_fit_recovers_intrinsics(tmp_path):
    a = mupots_annotations()
    a["annot3"][1, 1, 0] += 900  # garbage where the person is not valid: left out of the fit
    write_mupots(tmp_path, 3, a)
    ds = MuPoTS3D(tmp_path)
    assert ds[0]["camera"].dtype == torch.float32
    assert np.allclose(ds[0]["camera"].numpy(), K_TRUE, rtol=1e-5)


def test_mupots_struct_array_layout_reads_the_same(tmp_path):
    a = mupots_annotations()
    write_mupots(tmp_path / "cell", 1, a)
    write_mupots(tmp_path / "struct", 1, a, layout="struct")
    x, y = MuPoTS3D(tmp_path / "cell")[1], MuPoTS3D(tmp_path / "struct")[1]
    for key in x:
        assert torch.equal(x[key], y[key]), key


def test_mupots_sequences_videos_stride_and_valid_only(tmp_path):
    a = mupots_annotations()
    write_mupots(tmp_path, 2, a)
    other_camera = (1200.0, 1210.0, 950.0, 540.0)
    write_mupots(tmp_path, 10, mupots_annotations(frames=5, seed=1, camera=other_camera))
    ds = MuPoTS3D(tmp_path)
    assert np.allclose(ds[1]["camera"].numpy(), K_TRUE, rtol=1e-5)
    assert np.allclose(ds[5]["camera"].numpy(), other_camera, rtol=1e-5)  # one camera per sequence
    assert ds.sequences == ["TS2", "TS10"]  # numeric order, not by name
    videos = ds.videos()
    assert list(videos) == [0, 1]
    assert videos[0] == ("TS2", [0, 1, 2]) and videos[1].name == "TS10" and videos[1].indices == [3, 4, 5, 6]
    assert [int(ds[i]["video"]) for i in videos[1].indices] == [1] * 4
    assert [int(ds[i]["frame"]) for i in videos[1].indices] == [0, 1, 3, 4]
    everything = MuPoTS3D(tmp_path, sequences=["TS2"], valid_only=False)
    assert everything.frame.tolist() == [0, 1, 2, 3] and not everything[2]["person_valid"].any()
    assert MuPoTS3D(tmp_path, sequences=[2], valid_only=False, stride=2).frame.tolist() == [0, 2]
    assert MuPoTS3D(tmp_path, sequences="TS10", stride=2).frame.tolist() == [0, 3]
    _err(lambda: MuPoTS3D(tmp_path, sequences=[21]), "TS21", "annot.mat", "does not exist")
    _err(lambda: MuPoTS3D(tmp_path, sequences=["outdoor"]), "'outdoor'")
    _err(lambda: MuPoTS3D(tmp_path, stride=0), "stride")


def test_mupots_more_people_than_slots_warns_once_and_collates(tmp_path):
    a = mupots_annotations()
    write_mupots(tmp_path, 1, a)
    with pytest.warns(UserWarning, match="2 frame") as record:
        ds = MuPoTS3D(tmp_path, max_people=2)  # frames 0 and 3 have three valid people
    assert len([w for w in record if "max_people" in str(w.message)]) == 1
    assert ds[0]["person_id"].tolist() == [0, 1] and ds[1]["person_id"].tolist() == [0, 2]
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["joints2d"].shape == (3, 2, 17, 2) and batch["camera"].shape == (3, 4)
    assert batch["frame"].tolist() == [0, 1, 3]


def test_mupots_bad_inputs_name_the_file(tmp_path):
    _err(lambda: MuPoTS3D(tmp_path / "nope"), "nope", "does not exist")
    _err(lambda: MuPoTS3D(tmp_path), "no TS<n>")
    a = mupots_annotations()
    folder = write_mupots(tmp_path, 1, a)
    (folder / "occlusion.mat").unlink()
    _err(lambda: MuPoTS3D(tmp_path), "occlusion.mat", "does not exist")
    write_mupots(tmp_path, 1, a, annot2_rows=3)
    _err(lambda: MuPoTS3D(tmp_path), "annot.mat", "annot2", "(2, 17)", "(3, 17)")
    write_mupots(tmp_path, 1, a, drop_field="isValidFrame")
    _err(lambda: MuPoTS3D(tmp_path), "annot.mat", "isValidFrame")
    (folder / "annot.mat").write_text("this is not a MATLAB file at all, just some text " * 4)
    _err(lambda: MuPoTS3D(tmp_path), "annot.mat", "not a readable MATLAB")
    scipy.io.savemat(folder / "annot.mat", {"annots": np.zeros(3)})
    _err(lambda: MuPoTS3D(tmp_path), "annot.mat", "'annotations'", "annots")
    scipy.io.savemat(folder / "annot.mat", {"annotations": np.zeros((4, 3))})
    _err(lambda: MuPoTS3D(tmp_path), "annot.mat", "cell or struct array")
    write_mupots(tmp_path, 1, a, images=False)
    occlusion = np.empty((3, 3), dtype=object)
    for i in range(3):
        for j in range(3):
            occlusion[i, j] = np.zeros((1, 17))
    scipy.io.savemat(folder / "occlusion.mat", {"occlusion_labels": occlusion})
    _err(lambda: MuPoTS3D(tmp_path), "occlusion.mat", "(3, 3)", "(4, 3)")
    occlusion = np.empty((4, 3), dtype=object)
    for i in range(4):
        for j in range(3):
            occlusion[i, j] = np.zeros((1, 15))
    scipy.io.savemat(folder / "occlusion.mat", {"occlusion_labels": occlusion})
    _err(lambda: MuPoTS3D(tmp_path), "occlusion.mat", "17 labels")
    write_mupots(tmp_path, 1, a)
    (folder / "img_000001.jpg").unlink()
    ds = MuPoTS3D(tmp_path)
    _err(lambda: ds[1], "img_000001.jpg", "does not exist")
    (folder / "img_000001.jpg").write_bytes(b"not a jpeg")
    _err(lambda: ds[1], "img_000001.jpg", "not a readable image")


# ---------------------------------------------------------------- JTA
def jta_row(frame, person, joint, occluded=0, self_occluded=0):
    """A row whose coordinates encode (frame, person, joint), so a test can tell where it went."""
    x2d, y2d = 100.0 * person + joint, 10.0 * frame + joint
    return [frame, person, joint, x2d, y2d, 0.1 * joint, -0.01 * person, 5.0 + frame, occluded, self_occluded]


def jta_rows(frames=(1, 2, 3), people=(7, 3)):
    return [jta_row(f, p, j) for f in frames for p in people for j in range(len(JTA_JOINTS))]


def write_jta(root, k, rows, split="train", frames=3, images=True):
    folder = root / "annotations" / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"seq_{k}.json").write_text(json.dumps(rows))
    (root / "frames" / split / f"seq_{k}").mkdir(parents=True, exist_ok=True)
    if images:
        for n in range(1, frames + 1):
            save_picture(root / "frames" / split / f"seq_{k}" / f"{n}.jpg")


def test_jta_joint_map_units_camera_and_slots(tmp_path):
    rows = jta_rows()
    rows[rows.index(jta_row(2, 3, 16))] = jta_row(2, 3, 16, occluded=1)  # right hip occluded
    rows[rows.index(jta_row(2, 3, 9))] = jta_row(2, 3, 9, self_occluded=1)  # left elbow self-occluded
    rows.remove(jta_row(2, 7, 6))  # person 7 has no right wrist in frame 2
    write_jta(tmp_path, 5, rows)
    ds = no_warnings(lambda: JTA(tmp_path))
    assert len(ds) == 3 and ds.frame.tolist() == [1, 2, 3]
    item = ds[1]
    assert int(item["frame"]) == 2 and np.allclose(item["camera"].numpy(), JTA_CAMERA)
    assert item["person_id"].tolist()[:3] == [3, 7, -1]  # by increasing id
    assert item["person_valid"].tolist() == [True, True] + [False] * 6
    names = dict(zip(H36M17.joint_names, range(17)))
    jta = dict(zip(JTA_JOINTS, range(22)))
    person = 3
    for h36m, source in (("right_hip", "right_hip"), ("left_hip", "left_hip"), ("right_ankle", "right_ankle"),
                         ("left_wrist", "left_wrist"), ("head", "head_top"), ("neck_nose", "head_center"),
                         ("thorax", "neck"), ("spine", "spine2"), ("right_shoulder", "right_shoulder")):
        expect = jta_row(2, person, jta[source])
        assert item["joints2d"][0, names[h36m]].tolist() == expect[3:5], h36m
        assert np.allclose(item["joints3d"][0, names[h36m]].numpy(), expect[5:8]), h36m  # metres as stored
    hips = np.mean([jta_row(2, person, 16)[3:5], jta_row(2, person, 19)[3:5]], axis=0)
    assert np.allclose(item["joints2d"][0, 0].numpy(), hips)  # pelvis: the hips' midpoint
    visible = item["joint_visible"][0]
    assert not visible[names["right_hip"]] and not visible[names["pelvis"]]
    assert not visible[names["left_elbow"]] and visible[names["left_knee"]]
    assert item["joint_valid"][0].all()
    assert not item["joint_valid"][1, names["right_wrist"]] and item["joint_valid"][1].sum() == 16
    assert torch.all(item["joints2d"][1, names["right_wrist"]] == 0)
    valid = item["joints2d"][1][item["joint_valid"][1]].numpy()
    assert np.allclose(item["boxes"][1].numpy(), [*valid.min(0), *valid.max(0)])
    assert np.allclose(item["image"][:, 5, 7].numpy(), COLOUR, atol=3)


def test_jta_videos_gaps_stride_and_crowds(tmp_path):
    write_jta(tmp_path, 2, jta_rows(frames=(1, 2, 4), people=(1,)), frames=4)  # nobody annotated in frame 3
    write_jta(tmp_path, 10, jta_rows(frames=(1, 2), people=(4, 5, 6)), frames=2)
    with pytest.warns(UserWarning, match="2 frame") as record:
        ds = JTA(tmp_path, max_people=2)
    assert len([w for w in record if "max_people" in str(w.message)]) == 1
    assert ds.sequences == ["seq_2", "seq_10"]
    assert ds.videos() == {0: ("seq_2", [0, 1, 2, 3]), 1: ("seq_10", [4, 5])}
    assert not ds[2]["person_valid"].any() and int(ds[2]["frame"]) == 3
    assert ds[4]["person_id"].tolist() == [4, 5]
    strided = JTA(tmp_path, sequences=[2], stride=2)
    assert strided.frame.tolist() == [1, 3] and strided.images[1].name == "3.jpg"
    assert len(JTA(tmp_path, sequences="seq_10")) == 2


def test_jta_bad_inputs_name_the_file(tmp_path):
    _err(lambda: JTA(tmp_path / "nope"), "nope", "does not exist")
    _err(lambda: JTA(tmp_path, split="training"), "split")
    write_jta(tmp_path, 1, jta_rows(), images=False)
    _err(lambda: JTA(tmp_path, sequences=[4]), "seq_4.json", "does not exist")
    path = tmp_path / "annotations" / "train" / "seq_1.json"
    for content, needles in (
        ("{not json", ("not a JSON file",)),
        (json.dumps({"rows": []}), ("JSON list",)),
        (json.dumps([jta_row(1, 1, 0)[:9]]), ("row 0", "9 values", "10")),
        (json.dumps([jta_row(1, 1, 0), jta_row(1, 1, 22)]), ("row 1", "joint type")),
        (json.dumps([jta_row(0, 1, 0)]), ("row 0", "frame number below 1")),
        (json.dumps([jta_row(1, 1, 0)[:3] + ["x"] * 7]), ("numbers",)),
    ):
        path.write_text(content)
        _err(lambda: JTA(tmp_path), "seq_1.json", *needles)
    path.write_text(json.dumps(jta_rows()))
    (tmp_path / "frames" / "train" / "seq_1").rmdir()
    _err(lambda: JTA(tmp_path), "seq_1", "frames", "does not exist")
    write_jta(tmp_path, 1, jta_rows(), images=False)
    _err(lambda: JTA(tmp_path)[0], "1.jpg", "does not exist")


# ---------------------------------------------------------------- COCO keypoints
def coco_person(image_id, seed, iscrowd=0, category=1, labelled=17):
    rng = np.random.default_rng(seed)
    kps = np.zeros((17, 3))
    kps[:labelled, :2] = rng.uniform(0, 100, size=(labelled, 2)).round(1)
    kps[:labelled, 2] = rng.integers(1, 3, size=labelled)
    return {"id": 1000 + seed, "image_id": image_id, "category_id": category, "iscrowd": iscrowd,
            "keypoints": kps.reshape(-1).tolist(), "num_keypoints": labelled, "bbox": [10.0, 20.0, 30.0, 40.0 + seed]}


def write_coco(root, annotations, split="val2017", images=(11, 12, 13), categories=None):
    data = {
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 8, "height": 6} for i in images],
        "annotations": annotations,
        "categories": categories if categories is not None else
        [{"id": 1, "name": "person", "keypoints": list(COCO17.joint_names), "skeleton": []}],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(data))
    for i in images:
        save_picture(root / split / f"{i:012d}.jpg")
    return data


def test_coco_keypoints_flags_boxes_and_skipping(tmp_path):
    anns = [coco_person(11, 1), coco_person(11, 2, labelled=5), coco_person(11, 3, iscrowd=1),
            coco_person(12, 4, labelled=0), coco_person(13, 5, category=2), coco_person(13, 6)]
    write_coco(tmp_path, anns)
    ds = COCOKeypoints(tmp_path)
    assert len(ds) == 2 and ds.image_id.tolist() == [11, 13]  # 12 has only an unlabelled person
    item = ds[0]
    assert int(item["image_id"]) == 11 and int(item["index"]) == 0
    assert item["person_valid"].tolist() == [True, True] + [False] * 6
    kps = np.array(anns[1]["keypoints"]).reshape(17, 3)
    assert item["keypoints"].shape == (8, 17, 2) and item["keypoints"].dtype == torch.float32
    assert np.allclose(item["keypoints"][1].numpy(), kps[:, :2])
    assert item["keypoint_valid"][1].tolist() == (kps[:, 2] > 0).tolist()
    assert item["keypoint_visible"][1].tolist() == (kps[:, 2] == 2).tolist()
    assert not item["keypoint_valid"][1, 5:].any() and not item["keypoint_valid"][2:].any()
    assert np.allclose(item["boxes"][0].numpy(), [10, 20, 40, 61])  # x, y, w, h -> x0, y0, x1, y1
    assert torch.all(item["boxes"][2:] == 0)
    assert np.allclose(item["image"][:, 0, 0].numpy(), COLOUR, atol=3)
    assert COCOKeypoints(tmp_path, skip_crowd=False)[0]["person_valid"].sum() == 3
    assert len(COCOKeypoints(tmp_path, skip_unlabelled=False)) == 3
    with_empty = COCOKeypoints(tmp_path, keep_empty_images=True, skip_unlabelled=True)
    assert with_empty.image_id.tolist() == [11, 12, 13] and not with_empty[1]["person_valid"].any()
    with pytest.warns(UserWarning, match="1 image"):
        one = COCOKeypoints(tmp_path, max_people=1)
    assert one[0]["keypoints"].shape == (1, 17, 2)
    assert np.allclose(one[0]["keypoints"][0].numpy(), np.array(anns[0]["keypoints"]).reshape(17, 3)[:, :2])
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["keypoints"].shape == (2, 8, 17, 2) and batch["image_id"].tolist() == [11, 13]


def test_coco_bad_inputs_name_the_file(tmp_path):
    _err(lambda: COCOKeypoints(tmp_path / "nope"), "nope", "does not exist")
    _err(lambda: COCOKeypoints(tmp_path), "person_keypoints_val2017.json", "does not exist")
    good = coco_person(11, 1)
    for anns, categories, needles in (
        ([{k: v for k, v in good.items() if k != "bbox"}], None, ("annotation 0", "id 1001", "'bbox'")),
        ([{**good, "keypoints": good["keypoints"][:50]}], None, ("keypoints", "51 finite numbers", "(50,)")),
        ([{**good, "image_id": 99}], None, ("image_id 99",)),
        ([{**good, "keypoints": [3.0] * 51}], None, ("flags",)),
        ([good], [{"id": 1, "name": "dog"}], ("'person' category",)),
        ([good], [{"id": 1, "name": "person", "keypoints": ["nose"] * 14}], ("14 keypoints",)),
    ):
        write_coco(tmp_path, anns, categories=categories)
        _err(lambda: COCOKeypoints(tmp_path), "person_keypoints_val2017.json", *needles)
    path = tmp_path / "annotations" / "person_keypoints_val2017.json"
    path.write_text("[1, 2")
    _err(lambda: COCOKeypoints(tmp_path), "person_keypoints_val2017.json", "not a JSON file")
    path.write_text(json.dumps({"images": [], "annotations": []}))
    _err(lambda: COCOKeypoints(tmp_path), "person_keypoints_val2017.json", "'categories'")
    write_coco(tmp_path, [good])
    (tmp_path / "val2017" / "000000000011.jpg").write_bytes(b"\x00" * 10)
    _err(lambda: COCOKeypoints(tmp_path)[0], "000000000011.jpg", "not a readable image")


# ---------------------------------------------------------------- Sintel human scenes
SINTEL_TRAINING_SCENES = (
    "alley_1", "alley_2", "ambush_2", "ambush_4", "ambush_5", "ambush_6", "ambush_7", "bamboo_1", "bamboo_2",
    "bandage_1", "bandage_2", "cave_2", "cave_4", "market_2", "market_5", "market_6", "mountain_1", "shaman_2",
    "shaman_3", "sleeping_1", "sleeping_2", "temple_2", "temple_3",
)


def sintel_tree(root, scenes):
    for s, scene in enumerate(scenes):
        for i in (1, 2):
            for pass_name in ("clean", "final"):
                save_picture(root / "training" / pass_name / scene / f"frame_{i:04d}.png", (s, i, 0))
        (root / "training" / "flow" / scene).mkdir(parents=True, exist_ok=True)
        write_flo(root / "training" / "flow" / scene / "frame_0001.flo", np.full((6, 8, 2), s, np.float32))
    return root


def test_sintel_human_scenes_subset(tmp_path):
    assert len(set(SINTEL_HUMAN_SCENES)) == len(SINTEL_HUMAN_SCENES) == 22
    assert set(SINTEL_HUMAN_SCENES) < set(SINTEL_TRAINING_SCENES) and "mountain_1" not in SINTEL_HUMAN_SCENES
    root = sintel_tree(tmp_path / "sintel", SINTEL_TRAINING_SCENES)
    assert len(MpiSintel(root, pass_name="final")) == 23  # no subset unless asked for
    human = MpiSintel(root, pass_name="final", scenes=SINTEL_HUMAN_SCENES)
    assert len(human) == 22 and human.scenes == sorted(SINTEL_HUMAN_SCENES)
    assert [span.name for span in human.videos().values()] == sorted(SINTEL_HUMAN_SCENES)
    mountain = SINTEL_TRAINING_SCENES.index("mountain_1")
    assert all(int(human[i]["flow"][0, 0, 0]) != mountain for i in range(len(human)))
    one = MpiSintel(root, scenes="market_5")
    assert one.scenes == ["market_5"] and len(one) == 1
    message = _err(lambda: MpiSintel(root, scenes=["alley_1", "nope_3"]), "nope_3")
    assert "alley_1," not in message.split("found")[0]
    partial = sintel_tree(tmp_path / "partial", ["alley_1", "mountain_1"])
    _err(lambda: MpiSintel(partial, scenes=SINTEL_HUMAN_SCENES), "alley_2", "temple_3")
