"""PIPs training augmentation: tracks stay on the image content, patches hide exactly the points
they cover, and a generator seed reproduces a sample."""
import numpy as np
import pytest

from datamodules.colour_jitter import ColorJitter
from datamodules.track_augment import (TrackAugmentor, covered, erase_patches, flip, replace_patches, rescale,
                                       trackable)
from framework.errors import UserError
from tests.test_track_scenes import _bilinear

S, H, W, N = 6, 72, 96, 300


def _smooth_clip(seed: int = 0) -> np.ndarray:
    """(S, H, W, 3) float frames of a slowly varying colour field, different per frame, so that
    bilinear sampling is accurate and a wrong frame or a wrong place shows."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float64)
    frames = np.empty((S, H, W, 3))
    for s in range(S):
        for c in range(3):
            f = rng.uniform(0.01, 0.03, 2) * rng.choice([-1, 1], 2)
            frames[s, :, :, c] = 128 + 90 * np.sin(2 * np.pi * (f[0] * xs + f[1] * ys) + rng.uniform(0, 6))
    return frames.astype(np.float32)


def _clip_tracks(seed: int = 0):
    rng = np.random.default_rng(seed + 100)
    trajs = np.stack([rng.uniform(2, [W - 3, H - 3], (N, 2)) for _ in range(S)]).astype(np.float32)
    return trajs, np.ones((S, N), bool), np.ones((S, N), bool)


def test_spatial_augmentation_keeps_tracks_on_the_image_content():
    frames = _smooth_clip()
    trajs, visible, valid = _clip_tracks()
    aug = TrackAugmentor((48, 64), photometric=False, pad_bounds=(0, 12), resize_lim=(0.6, 1.8), max_crop_offset=10)
    checked = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        out, t2, vis2, val2 = aug(frames, trajs, visible, valid, rng)
        assert out.shape == (S, 48, 64, 3) and out.dtype == np.float32 and t2.dtype == np.float32
        assert vis2.dtype == val2.dtype == np.bool_ and not (vis2 & ~val2).any()
        inside = (t2[..., 0] >= 0) & (t2[..., 0] <= 63) & (t2[..., 1] >= 0) & (t2[..., 1] <= 47)
        assert np.array_equal(val2, inside)
        for s in range(S):
            keep = vis2[s]
            before = _bilinear(frames[s], trajs[s, keep])
            after = _bilinear(out[s], t2[s, keep])
            error = np.abs(after - before).mean(1)
            assert error.mean() < 0.8 and np.quantile(error, 0.95) < 1.5, (seed, s, error.mean())
            # the check has teeth: one pixel off is clearly worse
            off = np.abs(_bilinear(out[s], t2[s, keep] + 1.0) - before).mean(1)
            assert off.mean() > 3 * error.mean() + 1.0
            checked += keep.sum()
    assert checked > 2000


def test_flips_and_zoom_map_points_exactly():
    frames = _smooth_clip(1)
    trajs, _, _ = _clip_tracks(1)
    out, t2 = flip(frames, trajs, np.random.default_rng(0), h_prob=1.0, v_prob=1.0)
    assert np.array_equal(out[2, H - 1 - 5, W - 1 - 7], frames[2, 5, 7])
    assert np.allclose(t2, np.stack([W - 1 - trajs[..., 0], H - 1 - trajs[..., 1]], -1))
    # integer pixel centres survive an exact 2x zoom of a linear ramp: value at the new position = old value
    ramp = np.broadcast_to(np.arange(W, dtype=np.float32)[None, :, None] * 2.0, (S, H, W, 3)).copy()
    scaled, t3 = rescale(ramp, trajs, np.random.default_rng(0), (0, 0), resize_lim=(2.0, 2.0), resize_delta=0.0)
    assert scaled[0].shape == (2 * H, 2 * W, 3)
    inner = (trajs[0, :, 0] > 1) & (trajs[0, :, 0] < W - 2)
    assert np.allclose(_bilinear(scaled[0], t3[0, inner])[:, 0], 2.0 * trajs[0, inner, 0], atol=1e-3)


@pytest.mark.parametrize("which", ["erase", "replace"])
def test_patches_hide_exactly_the_points_they_cover(which):
    rng = np.random.default_rng(3)
    frames = rng.uniform(20, 235, (S, H, W, 3)).astype(np.float32)  # noise: every pasted pixel changes
    ys, xs = np.mgrid[0:H, 0:W]
    grid = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    trajs = np.stack([grid + rng.uniform(-0.45, 0.45, grid.shape).astype(np.float32) for _ in range(S)])
    visible = np.ones(trajs.shape[:2], bool)
    visible[:, ::7] = False  # already hidden points stay hidden
    if which == "erase":
        out, vis = erase_patches(frames, trajs, visible, np.random.default_rng(5), prob=1.0, bounds=(2, 30))
    else:
        out, vis = replace_patches(frames, trajs, visible, np.random.default_rng(5), ColorJitter(0.2, 0.2, 0.2, 0.08),
                                   prob=1.0, bounds=(2, 30))
    assert np.array_equal(out[0], frames[0]) and vis[0].sum() == visible[0].sum()  # the query frame stays clean
    for s in range(1, S):
        changed = np.abs(out[s] - frames[s]).max(-1).ravel() > 1e-3  # per pixel = per point here
        assert changed.any()
        assert np.array_equal(vis[s], visible[s] & ~changed), s
    assert np.array_equal(covered(np.array([[1.49, 2.0], [1.51, 2.0], [3.0, 0.49], [3.0, 0.5]]), (2, 4, 1, 3)),
                          [False, True, False, True])


def test_full_augmentation_is_reproducible_and_keeps_dtypes():
    frames = _smooth_clip(2).astype(np.uint8)
    trajs, visible, valid = _clip_tracks(2)
    aug = TrackAugmentor((48, 64), eraser_bounds=(2, 20), replace_bounds=(2, 20), pad_bounds=(0, 10),
                         max_crop_offset=10)
    a = aug(frames, trajs, visible, valid, np.random.default_rng([7, 1, 3]))
    b = aug(frames, trajs, visible, valid, np.random.default_rng([7, 1, 3]))
    c = aug(frames, trajs, visible, valid, np.random.default_rng([7, 2, 3]))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])
    assert a[0].dtype == np.uint8 and a[0].shape == (S, 48, 64, 3)
    assert a[2].any() and not (a[2] & ~a[3]).any()
    assert np.array_equal(trackable(a[2]), a[2][0] & a[2][1:].any(0))
    # the inputs are untouched
    assert np.array_equal(visible, np.ones((S, N), bool))


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(UserError, match="crop_size"):
        TrackAugmentor((0, 64))
    with pytest.raises(UserError, match="eraser_bounds"):
        TrackAugmentor((48, 64), eraser_bounds=(30, 2))
    with pytest.raises(UserError, match="h_flip_prob"):
        TrackAugmentor((48, 64), h_flip_prob=1.5)
    with pytest.raises(UserError, match="blur_kernel"):
        TrackAugmentor((48, 64), blur_kernel=4)
    aug = TrackAugmentor((48, 64))
    trajs, visible, valid = _clip_tracks()
    with pytest.raises(UserError, match="trajs"):
        aug(_smooth_clip(), trajs[:3], visible, valid, np.random.default_rng(0))
    with pytest.raises(UserError, match="frames"):
        aug(_smooth_clip()[..., 0], trajs, visible, valid, np.random.default_rng(0))
    with pytest.raises(UserError, match="smaller than the crop"):
        TrackAugmentor((200, 64), spatial=False)(_smooth_clip(), trajs, visible, valid, np.random.default_rng(0))
