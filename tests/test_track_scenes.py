"""The embedded synthetic tracking videos: exact tracks and visibility, determinism, a real domain gap."""
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datamodules.synthetic.track_scenes import (SyntheticTrackClips, SyntheticTrackDomain, SyntheticTrackVideos,
                                                as_track_domain, track_source_domain, track_target_domain,
                                                validate_track_domain)
from framework.errors import UserError
from geometry.flow import sample_points


def _bilinear(image: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear (N, C) values of an (H, W, C) image at (N, 2) points, via geometry.flow.sample_points."""
    chw = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float64).transpose(2, 0, 1))[None]
    return sample_points(chw, torch.from_numpy(np.asarray(xy, dtype=np.float64))[None])[0].numpy()


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_video_items_shapes_dtypes_and_determinism():
    d = replace(track_source_domain(), frames=10)
    first = SyntheticTrackVideos(d, num_videos=3, seed=5, num_points=40)
    second = SyntheticTrackVideos(d, num_videos=3, seed=5, num_points=40)
    late = first[2]
    item = first[1]
    _same(item, second[1])
    _same(late, second[2])  # order of access does not matter
    other = SyntheticTrackVideos(d, num_videos=3, seed=6, num_points=40)[1]
    assert not torch.equal(other["frames"], item["frames"]) and not torch.equal(other["trajs"], item["trajs"])
    h, w = d.height, d.width
    assert item["frames"].shape == (10, 3, h, w) and item["frames"].dtype == torch.float32
    assert item["trajs"].shape == (10, 40, 2) and item["trajs"].dtype == torch.float32
    assert item["visible"].shape == item["valid"].shape == (10, 40)
    assert item["visible"].dtype == item["valid"].dtype == torch.bool
    assert item["queries"].shape == (40, 3) and item["queries"].dtype == torch.float32
    assert int(item["video"]) == int(item["index"]) == 1 and item["video"].dtype == torch.int64
    assert 0 <= float(item["frames"].min()) and float(item["frames"].max()) <= 255
    # queries are pixel centres of frame 0, where the track starts, visible
    assert bool((item["queries"][:, 0] == 0).all()) and torch.equal(item["trajs"][0], item["queries"][:, 1:])
    assert bool(item["visible"][0].all()) and not bool((item["visible"] & ~item["valid"]).any())
    x, y = item["trajs"][..., 0], item["trajs"][..., 1]
    assert torch.equal(item["valid"], (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1))
    assert first.videos()[2].indices == [2]
    batch = torch.utils.data.default_collate([item, late])
    assert batch["trajs"].shape == (2, 10, 40, 2)


def test_tracks_and_visibility_agree_with_the_exact_flow():
    """Independent check: the flow videos' relative-motion formula and occlusion test, on every pixel."""
    d = track_target_domain()  # many layers, occluders, blur (which leaves geometry alone)
    videos = SyntheticTrackVideos(d, num_videos=2, seed=4)
    assert len(videos.scene(1).layers) > 21
    ys, xs = np.mgrid[0:d.height, 0:d.width]
    for t in (0, 9):
        queries = np.stack([np.full(xs.size, t), xs.ravel(), ys.ravel()], 1).astype(np.float64)
        trajs, visible, valid = videos.track(1, queries, [t, t + 1])
        flow, occluded = videos.renderer.flow(1, t)
        assert np.array_equal(trajs[0], queries[:, 1:])
        assert np.abs(trajs[1] - trajs[0] - flow.reshape(2, -1).T).max() < 1e-4
        assert np.array_equal(visible[1], ~occluded.ravel())
        assert occluded.mean() > 0.02  # the check is not trivial
        assert visible[0].all()


def test_colour_is_constant_along_visible_tracks_on_the_clean_domain():
    d = track_source_domain()
    assert d.motion_blur == 0 and d.noise_sigma == 0 and d.lighting_change == [0.0, 0.0]
    videos = SyntheticTrackVideos(d, num_videos=2, seed=2, num_points=150)
    errors, wrong = [], []
    for v in range(2):
        item = videos[v]
        frames = item["frames"].permute(0, 2, 3, 1).numpy().astype(np.float64)
        trajs, visible, q = item["trajs"].numpy(), item["visible"].numpy(), item["queries"].numpy()
        start = frames[0, q[:, 2].astype(int), q[:, 1].astype(int)]
        assert visible[1:].mean() > 0.4
        for t in range(1, d.frames):
            keep = visible[t]
            errors.append(np.abs(_bilinear(frames[t], trajs[t, keep]) - start[keep]).mean(1))
            wrong.append(np.abs(_bilinear(frames[t], trajs[t, keep] + [1.0, 0.0]) - start[keep]).mean(1))
    errors, wrong = np.concatenate(errors), np.concatenate(wrong)
    # bilinear sampling of a smooth texture; points on a shape's edge mix two layers
    assert np.median(errors) < 1.0 and np.quantile(errors, 0.9) < 4.0 and errors.mean() < 2.5, errors.mean()
    assert wrong.mean() > 3 * errors.mean()


def test_a_planted_occluder_hides_exactly_the_points_it_covers():
    d = replace(track_source_domain(), frames=10, num_layers=[1, 1], shape_kinds=["rectangle"], occluders=[1, 1])
    videos = SyntheticTrackVideos(d, num_videos=1, seed=0, num_points=300)
    background, square, occluder = videos.scene(0).layers
    for layer in (background, square, occluder):
        layer.omega, layer.log_rate, layer.angle0, layer.velocity = 0.0, 0.0, 0.0, np.zeros(2)
    background.centre0 = np.array([63.5, 47.5])
    square.kind, square.centre0, square.half = "rectangle", np.array([60.0, 48.0]), np.array([30.0, 25.0])
    occluder.kind, occluder.centre0, occluder.half = "rectangle", np.array([10.5, 48.0]), np.array([8.0, 40.0])
    occluder.velocity = np.array([8.0, 0.0])  # sweeps left to right over the square

    ys, xs = np.mgrid[0:d.height, 0:d.width].astype(np.float64)
    for t in (0.0, 5.0):  # shapes edited after construction: the bounding boxes follow
        labels = videos.renderer._labels(videos.scene(0), t, xs.ravel(), ys.ravel())
        assert np.array_equal(videos.renderer._label_grid(videos.scene(0), t), labels)

    def under_occluder(x, y, t):
        return (np.abs(x - (10.5 + 8.0 * t)) <= 8.0) & (np.abs(y - 48.0) <= 40.0)

    ys, xs = np.mgrid[23:74, 30:91]  # the square's pixels
    queries = np.stack([np.zeros(xs.size), xs.ravel(), ys.ravel()], 1)
    trajs, visible, valid = videos.track(0, queries)
    assert np.allclose(trajs, queries[None, :, 1:]) and valid.all()
    expected = np.stack([~under_occluder(queries[:, 1], queries[:, 2], t) for t in range(10)])
    assert np.array_equal(visible, expected)
    assert 0.1 < 1 - expected.mean() < 0.5
    # sampled queries obey the same rule: static points hidden under the occluder, its own points always seen
    item = videos[0]
    q, vis = item["queries"].numpy(), item["visible"].numpy()
    on_occluder = under_occluder(q[:, 1], q[:, 2], 0)
    on_square = (np.abs(q[:, 1] - 60) <= 30) & (np.abs(q[:, 2] - 48) <= 25) & ~on_occluder
    assert on_occluder.any() and on_square.any() and (~on_occluder & ~on_square).any()
    x, y = item["trajs"][..., 0].numpy(), item["trajs"][..., 1].numpy()
    assert np.allclose(x[:, on_occluder], q[None, on_occluder, 1] + 8.0 * np.arange(10)[:, None])
    assert np.array_equal(vis[:, on_occluder], item["valid"].numpy()[:, on_occluder])
    hidden = np.stack([under_occluder(q[:, 1], q[:, 2], t) for t in range(10)])
    assert np.array_equal(vis[:, on_square], ~hidden[:, on_square])
    background_points = ~on_occluder & ~on_square
    assert np.array_equal(vis[:, background_points], ~hidden[:, background_points])


def test_training_clips_and_strided_queries():
    d = replace(track_source_domain(), frames=16)
    clips = SyntheticTrackClips(d, num_videos=2, seed=1, num_points=32, clip_stride=4)
    assert clips.clips_per_video == 3 and len(clips) == 6 and clips.clips_of(1) == [3, 4, 5]
    assert clips.videos()[1].indices == [3, 4, 5]
    item = clips[4]  # video 1, second window: frames 4..11
    assert (int(item["video"]), int(item["clip"]), int(item["frame"]), int(item["index"])) == (1, 1, 4, 4)
    assert item["frames"].shape == (8, 3, d.height, d.width) and item["trajs"].shape == (8, 32, 2)
    assert bool(item["visible"][0].all()) and bool((item["queries"][:, 0] == 0).all())
    assert torch.equal(item["trajs"][0], item["queries"][:, 1:])
    whole = SyntheticTrackVideos(d, num_videos=2, seed=1)
    assert torch.equal(item["frames"], whole[1]["frames"][4:12])  # the same frames, bit for bit
    trajs, visible, _ = whole.track(1, np.concatenate([np.full((32, 1), 4.0), item["queries"][:, 1:].numpy()], 1))
    assert np.allclose(trajs[4:12], item["trajs"].numpy(), atol=1e-4)
    assert np.array_equal(visible[4:12], item["visible"].numpy())
    _same(item, SyntheticTrackClips(d, num_videos=2, seed=1, num_points=32, clip_stride=4)[4])
    with pytest.raises(IndexError):
        clips[6]
    # strided queries: points spread over frames 0, 5, 10, each starting visible at its own query frame
    strided = SyntheticTrackVideos(replace(d, frames=12, query_mode="strided", query_stride=5), num_videos=1,
                                   seed=1, num_points=30)[0]
    qt = strided["queries"][:, 0].long()
    assert sorted(set(qt.tolist())) == [0, 5, 10] and (qt == 5).sum() == 10
    at_query = strided["trajs"][qt, torch.arange(30)]
    assert torch.equal(at_query, strided["queries"][:, 1:]) and bool(strided["visible"][qt, torch.arange(30)].all())


def _lk_error(domain, videos: int = 2) -> float:
    """Pyramidal Lucas-Kanade chained frame to frame: mean L2 error on visible points."""
    cv2.setNumThreads(1)
    data = SyntheticTrackVideos(domain, num_videos=videos, seed=8)
    errors = []
    for v in range(videos):
        item = data[v]
        grey = [cv2.cvtColor(f.permute(1, 2, 0).numpy().astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in item["frames"]]
        points = item["queries"][:, 1:].numpy().reshape(-1, 1, 2).astype(np.float32)
        estimate = [points[:, 0]]
        for t in range(len(grey) - 1):
            moved, status, _ = cv2.calcOpticalFlowPyrLK(grey[t], grey[t + 1], points, None, winSize=(15, 15),
                                                        maxLevel=2)
            points = np.where(status[:, :, None] == 1, moved, points)
            estimate.append(points[:, 0])
        visible = item["visible"].numpy().copy()
        visible[0] = False
        errors.append(np.linalg.norm(np.stack(estimate) - item["trajs"].numpy(), axis=-1)[visible])
    return float(np.concatenate(errors).mean())


def test_target_is_a_crowd_and_clearly_harder_to_track():
    source, target = track_source_domain(), track_target_domain()
    assert target.num_layers[0] >= 20 and target.shape_kinds == ["ellipse"]
    assert target.shape_size[1] <= 0.5 * source.shape_size[0]
    assert target.motion_blur > 0 and target.noise_sigma > 0 and target.moving_share > source.moving_share
    src = SyntheticTrackVideos(source, num_videos=2, seed=3)
    tgt = SyntheticTrackVideos(target, num_videos=2, seed=3)

    def speed(item) -> float:
        both = item["visible"][1:] & item["visible"][:-1]
        return float((item["trajs"][1:] - item["trajs"][:-1]).norm(dim=-1)[both].mean())

    assert speed(tgt[0]) > 1.3 * speed(src[0])
    # a fixed classical tracker (no learning) is clearly worse on the target
    assert _lk_error(target) > 2 * _lk_error(source)


def test_validation_names_the_bad_key_and_configs_round_trip():
    validate_track_domain(track_source_domain())
    validate_track_domain(track_target_domain())
    key = "data.source.synthetic"
    cases = {"frames": {"frames": 1}, "num_points": {"num_points": 0}, "occluders": {"occluders": [3, 1]},
             "occluder_size": {"occluder_size": [0.0, 0.1]}, "moving_share": {"moving_share": 1.5},
             "query_mode": {"query_mode": "every"}, "query_stride": {"query_stride": 0},
             "moving_share_type": {"moving_share": "half"},
             "num_layers": {"num_layers": [40, 50]}, "speed": {"speed": -1.0}}
    for name, change in cases.items():
        with pytest.raises(UserError, match=rf"^data\.source\.synthetic\.{name.removesuffix('_type')}\b"):
            SyntheticTrackVideos(replace(track_source_domain(), **change), num_videos=1, key=key)
    with pytest.raises(UserError, match=r"data\.source\.synthetic: unknown key 'blurr'"):
        SyntheticTrackVideos({"blurr": 1.0}, num_videos=1, key=key)
    with pytest.raises(UserError, match=r"data\.source\.synthetic\.frames"):
        SyntheticTrackClips({"frames": 6}, num_videos=1, clip_frames=8, key=key)
    with pytest.raises(UserError, match="num_points"):
        SyntheticTrackVideos(None, num_videos=1, num_points=-3)
    node = OmegaConf.merge(OmegaConf.structured(SyntheticTrackDomain), {"frames": 12, "occluders": [1, 3]})
    domain = as_track_domain(node)
    assert domain.frames == 12 and domain.occluders == [1, 3] and domain.height == 96
