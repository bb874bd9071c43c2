"""Point-tracking readers on tiny files written in each data set's own format: TAP-Vid DAVIS and
Kinetics pickles, a CroHD (MOT) sequence folder, and every malformed-file error."""
import pickle

import cv2
import numpy as np
import pytest
import torch

import json

from datamodules.readers.badja import Badja
from datamodules.readers.crohd import CroHD
from datamodules.readers.tapvid import TapVidDavis, TapVidKinetics
from datamodules.readers.tracking_datasets import LazyFrames, fill_unannotated
from framework.errors import UserError
from metrics.tracking import tracking_metric_collection

T, H, W = 6, 8, 10


def tapvid_video(value=0):
    """T frames whose red channel says the frame number; 3 tracks in [0, 1]:
    track 0 always visible, track 1 occluded in frames 0-2, track 2 never visible."""
    video = np.zeros((T, H, W, 3), np.uint8)
    video[..., 0] = (np.arange(T) * 40 + value)[:, None, None]
    video[..., 1] = 128
    points = np.zeros((3, T, 2), np.float32)
    points[0, :, 0] = np.linspace(0.1, 0.6, T)
    points[0, :, 1] = 0.5
    points[1] = [0.25, 0.75]
    points[2] = 0.9
    occluded = np.zeros((3, T), bool)
    occluded[1, :3] = True
    occluded[2] = True
    return {"video": video, "points": points, "occluded": occluded}


def write_pickle(path, obj):
    path.write_bytes(pickle.dumps(obj))
    return path


def jpeg_frames(video):
    return [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))[1].tobytes() for f in video]


def test_davis_first_queries_in_pixels(tmp_path):
    path = write_pickle(tmp_path / "tapvid_davis.pkl", {"bear": tapvid_video(), "car": tapvid_video(5)})
    ds = TapVidDavis(path, resize=None)
    assert len(ds) == 2 and ds.video_of_index == ["bear", "car"]
    item = ds[0]
    assert item["name"] == "bear" and item["index"] == 0
    assert item["frames"].dtype == np.uint8 and item["frames"].shape == (T, H, W, 3)
    assert item["frames"][3, 0, 0, 0] == 120
    # track 2 is never visible: dropped; track 1 first visible at frame 3
    assert item["track_ids"].tolist() == [0, 1]
    assert item["trajs"].dtype == np.float32 and item["trajs"].shape == (T, 2, 2)
    assert np.allclose(item["trajs"][:, 0, 0], np.linspace(0.1, 0.6, T) * W)
    assert np.allclose(item["trajs"][:, 1], [[0.25 * W, 0.75 * H]] * T)
    assert item["visible"].dtype == bool and item["visible"][:, 1].tolist() == [False] * 3 + [True] * 3
    assert item["valid"].all()
    assert item["queries"].dtype == np.float32
    assert np.allclose(item["queries"], [[0, 0.1 * W, 0.5 * H], [3, 0.25 * W, 0.75 * H]])


def test_davis_strided_queries_and_resize(tmp_path):
    path = write_pickle(tmp_path / "davis.pkl", {"bear": tapvid_video()})
    item = TapVidDavis(path, query_mode="strided")[0]  # default 256 x 256, stride 5: frames 0 and 5
    assert item["frames"].shape == (T, 256, 256, 3)
    assert item["track_ids"].tolist() == [0, 0, 1]
    assert item["queries"][:, 0].tolist() == [0, 5, 5]
    assert np.allclose(item["queries"][2, 1:], [0.25 * 256, 0.75 * 256])
    assert np.allclose(item["trajs"][:, 1, 0], np.linspace(0.1, 0.6, T) * 256)  # column 1 is track 0 again
    item = TapVidDavis(path, query_mode="strided", query_stride=2, resize=(16, 20))[0]  # frames 0, 2, 4
    assert item["track_ids"].tolist() == [0, 0, 0, 1] and item["queries"][:, 0].tolist() == [0, 2, 4, 4]
    assert item["frames"].shape == (T, 16, 20, 3) and np.allclose(item["trajs"][0, 3], [0.25 * 20, 0.75 * 16])


def test_kinetics_list_of_jpeg_videos_in_a_folder(tmp_path):
    videos = [tapvid_video(), tapvid_video(10)]
    for v in videos:
        v["video"] = jpeg_frames(v["video"])
    write_pickle(tmp_path / "0000_of_0010.pkl", videos)
    third = tapvid_video(20)
    third["video"] = np.array(jpeg_frames(third["video"]) + [b""], dtype=object)[:-1]  # an object array of bytes
    write_pickle(tmp_path / "0001_of_0010.pkl", [third])
    ds = TapVidKinetics(tmp_path, resize=None)
    assert len(ds) == 3 and ds.video_of_index == ["0000_of_0010/0", "0000_of_0010/1", "0001_of_0010/0"]
    item = ds[1]
    assert item["frames"].shape == (T, H, W, 3) and item["frames"].dtype == np.uint8
    assert abs(int(item["frames"][2, 4, 4, 0]) - 90) <= 3 and abs(int(item["frames"][2, 4, 4, 1]) - 128) <= 3
    assert item["track_ids"].tolist() == [0, 1]
    assert abs(int(ds[2]["frames"][1, 0, 0, 0]) - 60) <= 3 and ds[0]["name"] == "0000_of_0010/0"  # and back
    arrays = tapvid_video(20)  # uint8 arrays are accepted too
    write_pickle(tmp_path / "arrays.pkl", [arrays])
    assert TapVidKinetics(tmp_path / "arrays.pkl", resize=None)[0]["frames"][1, 0, 0, 0] == 60
    single = TapVidKinetics(tmp_path / "0000_of_0010.pkl", query_mode="strided")
    assert len(single) == 2 and single[0]["frames"].shape == (T, 256, 256, 3)


def test_reader_items_feed_the_metrics(tmp_path):
    item = TapVidDavis(write_pickle(tmp_path / "d.pkl", {"bear": tapvid_video()}), query_mode="strided")[0]
    batch = {k: torch.as_tensor(item[k])[None] for k in ("trajs", "visible", "valid", "queries")}
    c = tracking_metric_collection("strided")
    c.update(batch["trajs"], batch["trajs"], batch["visible"], batch["valid"], torch.tensor([0]),
             queries=batch["queries"], pred_visible=batch["visible"], size=(256, 256))
    out = {k: v.item() for k, v in c.compute().items()}
    assert out["avg_jaccard"] == 100 and out["occlusion_acc"] == 100 and out["ate_all"] == 0


@pytest.mark.parametrize("break_it, message", [
    (lambda v: v.pop("occluded"), "missing key.*'occluded'"),
    (lambda v: v.__setitem__("points", np.zeros((3, T, 3))), "'points' must be a numeric array \\(N, T, 2\\)"),
    (lambda v: v.__setitem__("occluded", np.zeros((3, T + 1), bool)), "'occluded' must be a bool array"),
    (lambda v: v.__setitem__("video", v["video"][:-1]), "'video' must be uint8 \\(T, H, W, 3\\) with T = 6"),
    (lambda v: v.__setitem__("video", v["video"].astype(np.float32)), "'video' must be uint8"),
    (lambda v: v.__setitem__("video", ["not bytes"] * T), "'video' frame 0 is str, expected JPEG bytes"),
    (lambda v: v.__setitem__("points", "nope"), "'points'"),
])
def test_malformed_davis_pickle_names_file_and_problem(tmp_path, break_it, message):
    video = tapvid_video()
    break_it(video)
    path = write_pickle(tmp_path / "broken.pkl", {"bear": video})
    with pytest.raises(UserError, match=f"broken.pkl: video 'bear': {message}"):
        TapVidDavis(path)


def test_bad_pickles(tmp_path):
    with pytest.raises(UserError, match="nowhere.pkl"):
        TapVidDavis(tmp_path / "nowhere.pkl")
    (tmp_path / "junk.pkl").write_bytes(b"this is not a pickle")
    with pytest.raises(UserError, match="junk.pkl: not a"):
        TapVidDavis(tmp_path / "junk.pkl")
    with pytest.raises(UserError, match="top.pkl: expected a dict of videos"):
        TapVidDavis(write_pickle(tmp_path / "top.pkl", 42))
    with pytest.raises(UserError, match="list.pkl: video 'list/0': expected a dict"):
        TapVidKinetics(write_pickle(tmp_path / "list.pkl", [[1, 2]]))

    class Sneaky:
        def __reduce__(self):
            return (print, ("ran code",))

    with pytest.raises(UserError, match="sneaky.pkl.*refusing to build builtins.print"):
        TapVidDavis(write_pickle(tmp_path / "sneaky.pkl", {"bear": Sneaky()}))
    video = tapvid_video()
    video["video"] = [b"\xff\xd8 broken jpeg"] * T
    ds = TapVidKinetics(write_pickle(tmp_path / "badjpeg.pkl", [video]))
    with pytest.raises(UserError, match="badjpeg.pkl: video 'badjpeg/0' frame 0: bytes that OpenCV cannot decode"):
        ds[0]
    with pytest.raises(UserError, match="query_mode"):
        TapVidDavis(write_pickle(tmp_path / "ok.pkl", {"a": tapvid_video()}), query_mode="last")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(UserError, match="no \\*.pkl"):
        TapVidKinetics(tmp_path / "empty_dir")


# ---------------------------------------------------------------------------------- CroHD
CH, CW = 8, 12
GT_ROWS = [
    # frame, id, left, top, width, height, conf, class, visibility
    *[f"{f},1,{f},2,2,2,1,1,1" for f in range(1, 6)],  # id 1: centre (f + 1, 3), visible in all 5 frames
    "2,7,4,4,4,2,1,1,0",  # id 7: frames 2-4, occluded in 2
    "3,7,5,4,4,2,1,1,0.8",
    "4,7,6,4,4,2,1,1,1",
    "5,9,1,1,1,1,0,1,1",  # id 9: conf 0 -> ignored
]


def crohd_sequence(root, rows=GT_ROWS, frames=5):
    seq = root / "HT21-01"
    (seq / "img1").mkdir(parents=True)
    (seq / "gt").mkdir()
    for i in range(1, frames + 1):
        img = np.full((CH, CW, 3), 30 * i, np.uint8)
        assert cv2.imwrite(str(seq / "img1" / f"{i:06d}.jpg"), img)
    (seq / "gt" / "gt.txt").write_text("\n".join(rows) + "\n")
    return seq


def test_crohd_tracks_are_box_centres(tmp_path):
    seq = crohd_sequence(tmp_path)
    for root in (seq, tmp_path):  # a sequence folder or a folder of them
        ds = CroHD(root)
        assert len(ds) == 1 and ds.video_of_index == ["HT21-01"]
    item = ds[0]
    assert item["name"] == "HT21-01" and item["track_ids"].tolist() == [1, 7]
    assert isinstance(item["frames"], LazyFrames) and len(item["frames"]) == 5
    frames = np.asarray(item["frames"])
    assert frames.shape == (5, CH, CW, 3) and frames.dtype == np.uint8 and abs(int(frames[2, 0, 0, 0]) - 90) <= 2
    assert np.allclose(item["trajs"][:, 0], [[f + 1, 3] for f in range(1, 6)])
    assert item["valid"][:, 1].tolist() == [False, True, True, True, False]
    assert item["visible"][:, 1].tolist() == [False, False, True, True, False]
    # unannotated frames hold the nearest annotated position
    assert np.allclose(item["trajs"][:, 1], [[6, 5], [6, 5], [7, 5], [8, 5], [8, 5]])
    assert np.allclose(item["queries"], [[0, 2, 3], [2, 7, 5]])


def test_crohd_subsampling_clips_and_resize(tmp_path):
    seq = crohd_sequence(tmp_path)
    ds = CroHD(seq, frame_step=2)  # frames 1, 3, 5
    item = ds[0]
    assert len(item["frames"]) == 3 and np.allclose(item["trajs"][:, 0, 0], [2, 4, 6])
    assert item["visible"][:, 1].tolist() == [False, True, False] and item["queries"][1, 0] == 1
    clips = CroHD(seq, clip_length=3, clip_stride=2)  # frames 1-3, 3-5
    assert len(clips) == 2 and clips.video_of_index == ["HT21-01", "HT21-01"]
    assert [clips[i]["name"] for i in range(2)] == ["HT21-01@000001", "HT21-01@000003"]
    assert np.allclose(clips[1]["trajs"][:, 0, 0], [4, 5, 6]) and clips[1]["queries"][1, 0] == 0
    few = CroHD(seq, max_tracks=1, seed=3)[0]
    again = CroHD(seq, max_tracks=1, seed=3)[0]
    assert few["trajs"].shape == (5, 1, 2) and few["track_ids"].tolist() == again["track_ids"].tolist()
    big = CroHD(seq, resize=(16, 36))[0]  # x scaled 3x, y 2x
    assert np.asarray(big["frames"]).shape == (5, 16, 36, 3) and big["frames"].shape == (5, 16, 36, 3)
    assert np.allclose(big["trajs"][0, 0], [6, 6])
    no_vis = crohd_sequence(tmp_path / "six", rows=[r.rsplit(",", 3)[0] for r in GT_ROWS[:-1]])
    assert CroHD(no_vis)[0]["visible"][:, 1].tolist() == [False, True, True, True, False]  # visible where boxed


@pytest.mark.parametrize("rows, message", [
    (GT_ROWS[:2] + ["3,1,a,2,2,2,1,1,1"], "line 3 is not 9 comma-separated numbers"),
    (GT_ROWS[:2] + ["3,1,2,2,2,2"], "line 3 has 6 values, line 1 has 9"),
    (["1,1,2,2,2"], "line 1 has 5 values; expected at least 6"),
    (GT_ROWS[:2] + ["2,1,3,3,2,2,1,1,1"], "line 3: a second box for id 1 in frame 2"),
    (GT_ROWS[:1] + ["9,1,2,2,2,2,1,1,1"], "line 2: frame 9 beyond the 5 images"),
    (GT_ROWS[:1] + ["0,1,2,2,2,2,1,1,1"], "line 2: frame must be a positive integer"),
    (GT_ROWS[:1] + ["2,1,2,2,-2,2,1,1,1"], "line 2: negative box width"),
    (GT_ROWS[:1] + ["2,1,2,nan,2,2,1,1,1"], "line 2: non-finite"),
    ([""], "no rows"),
])
def test_crohd_bad_rows_name_the_line(tmp_path, rows, message):
    seq = crohd_sequence(tmp_path, rows=rows)
    with pytest.raises(UserError, match=f"gt.txt: {message}"):
        CroHD(seq)


def test_crohd_missing_files(tmp_path):
    seq = crohd_sequence(tmp_path)
    (seq / "gt" / "gt.txt").unlink()
    with pytest.raises(UserError, match="HT21-01/gt/gt.txt does not exist"):
        CroHD(seq)
    seq = crohd_sequence(tmp_path / "b")
    (seq / "img1" / "000003.jpg").unlink()
    with pytest.raises(UserError, match="not 000003"):
        CroHD(seq)
    with pytest.raises(UserError, match="neither a sequence folder"):
        CroHD(tmp_path / "b" / "HT21-01" / "gt")
    with pytest.raises(UserError, match="HT21-99"):
        CroHD(tmp_path / "b", sequences=["HT21-99"])
    with pytest.raises(UserError, match="frame_step"):
        CroHD(tmp_path / "b", frame_step=0)
    with pytest.raises(UserError, match="clip_length must be an integer >= 2 or None"):
        CroHD(tmp_path / "b", clip_length=1.5)
    seq = crohd_sequence(tmp_path / "c")
    cv2.imwrite(str(seq / "img1" / "000002.jpg"), np.zeros((CH + 2, CW, 3), np.uint8))
    frames = CroHD(seq)[0]["frames"]
    with pytest.raises(UserError, match="000002.jpg: frame of 12 x 10"):
        np.asarray(frames)


def test_fill_unannotated_uses_nearest_earlier_then_first():
    trajs = np.arange(8, dtype=np.float32).reshape(4, 1, 2).repeat(2, 1)
    valid = np.array([[False, False], [True, False], [False, False], [True, False]])
    out = fill_unannotated(trajs, valid)
    assert out[:, 0, 0].tolist() == [2, 2, 2, 6] and (out[:, 1] == 0).all()


# ---------------------------------------------------------------------------------- BADJA
def badja_tree(root, entries=None, frames=range(3, 8)):
    """dog: frames 00003-00007, joints (y, x) annotated at 00003, 00005 and 00007; 3 joints in the file."""
    folder = root / "DAVIS" / "JPEGImages" / "Full-Resolution" / "dog"
    folder.mkdir(parents=True)
    for n in frames:
        assert cv2.imwrite(str(folder / f"{n:05d}.jpg"), np.full((CH, CW, 3), 20 * n, np.uint8))
    if entries is None:
        entries = [{"image_path": f"DAVIS/JPEGImages/Full-Resolution/dog/{n:05d}.jpg",
                    "segmentation_path": "unused.png",
                    "joints": [[1, n], [2, 2 * n], [0, 0]], "visibility": [1, int(n != 5), 0]} for n in (3, 5, 7)]
    (root / "joint_annotations").mkdir()
    (root / "joint_annotations" / "dog.json").write_text(json.dumps(entries))
    return root


def test_badja_sparse_keypoints(tmp_path):
    ds = Badja(badja_tree(tmp_path), joints=None)
    assert len(ds) == 1 and ds.video_of_index == ["dog"]
    item = ds[0]
    assert len(item["frames"]) == 5 and abs(int(item["frames"][1][0, 0, 0]) - 80) <= 2
    assert item["track_ids"].tolist() == [0, 1]  # joint 2 is never visible
    assert item["valid"][:, 0].tolist() == [True, False, True, False, True]
    assert item["valid"][:, 1].tolist() == [True, False, False, False, True]
    assert np.allclose(item["trajs"][[0, 2, 4], 0], [[3, 1], [5, 1], [7, 1]])  # (y, x) -> (x, y)
    assert np.allclose(item["queries"], [[0, 3, 1], [0, 6, 2]])
    assert Badja(tmp_path, joints=[1])[0]["track_ids"].tolist() == [1]
    assert np.allclose(Badja(tmp_path, joints=None, resize=(16, 24))[0]["trajs"][0, 0], [6, 2])


def test_badja_bad_files(tmp_path):
    good = {"image_path": "DAVIS/JPEGImages/Full-Resolution/dog/00003.jpg", "joints": [[1, 1]], "visibility": [1]}
    bad_cases = [
        ([{k: v for k, v in good.items() if k != "visibility"}], "dog.json: entry 0: missing key.*visibility"),
        ([{**good, "joints": [[1, 1, 1]]}], "dog.json: entry 0: 'joints' must be \\(J, 2\\)"),
        ({"not": "a list"}, "dog.json: expected a non-empty list"),
        ([good, {**good, "image_path": "DAVIS/JPEGImages/Full-Resolution/dog/00009.jpg"}], "frame 8 of dog is missing"),
    ]
    for k, (entries, message) in enumerate(bad_cases):
        with pytest.raises(UserError, match=message):
            Badja(badja_tree(tmp_path / str(k), entries), joints=None)
    with pytest.raises(UserError, match="joint 36 asked for, the file has 1 joints"):
        Badja(badja_tree(tmp_path / "j", [good]))
    with pytest.raises(UserError, match="cat"):
        Badja(tmp_path / "j", animals=["cat"])
