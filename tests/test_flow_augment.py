"""The flow augmentation keeps flow consistent with the images it moves, and its photometric parts behave."""
import cv2
import numpy as np
import pytest
import torch

from datamodules.colour_jitter import ColorJitter
from datamodules.flow_augment import FlowAugmentor, SparseFlowAugmentor, resize_sparse_flow
from framework.errors import UserError
from geometry.flow import backward_warp

H, W, PAD = 48, 64, 8


def shifted_pair(dx, dy, seed=0):
    """A smooth texture and the same texture moved by (dx, dy): frame 2 at x + (dx, dy) = frame 1 at x."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.normal(size=(H + 2 * PAD, W + 2 * PAD, 3)).astype(np.float32), (0, 0), 2.0)
    tex = (tex - tex.min()) / (tex.max() - tex.min()) * 255
    img1 = tex[PAD:PAD + H, PAD:PAD + W].copy()
    img2 = tex[PAD - dy:PAD - dy + H, PAD - dx:PAD - dx + W].copy()
    flow = np.zeros((H, W, 2), np.float32)
    flow[..., 0], flow[..., 1] = dx, dy
    return img1, img2, flow


def warp_error(img1, img2, flow, border=3):
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    warped, inside = backward_warp(t(img2), t(flow))
    mask = inside[0].clone()
    mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = False, False, False, False
    assert mask.sum() > 0.3 * mask.numel()
    return float((warped[0] - t(img1)[0]).abs().mean(0)[mask].mean())


def spatial_only(**kw):
    return FlowAugmentor((32, 40), min_scale=-0.2, max_scale=0.5, photometric=False, **kw)


def test_warping_frame2_by_augmented_flow_gives_frame1():
    img1, img2, flow = shifted_pair(3, -2)
    assert warp_error(img1, img2, flow) < 1e-3  # the fixture itself is exact
    aug = spatial_only(spatial_aug_prob=1.0, stretch_prob=1.0, h_flip_prob=0.5, v_flip_prob=0.5)
    scales = []
    for seed in range(8):
        a1, a2, af = aug(img1, img2, flow, np.random.default_rng(seed))
        assert a1.shape == (32, 40, 3) and af.shape == (32, 40, 2) and a1.dtype == np.float32
        assert af[..., 0].std() < 1e-3 and af[..., 1].std() < 1e-3  # a constant flow stays constant
        scales.append(abs(af[0, 0, 0]) / 3)
        err = warp_error(a1, a2, af)
        assert err < 1.5, (seed, err)
        # a flow that forgot the flip does not explain the images
        assert warp_error(a1, a2, af * np.array([-1, 1], np.float32)) > 5 * err + 3
        if abs(scales[-1] - 1) > 0.2:  # nor one that forgot the scale
            assert warp_error(a1, a2, af / scales[-1]) > 2 * err + 1
    assert max(scales) > 1.2 and np.ptp(scales) > 0.3


@pytest.mark.parametrize("h_flip, v_flip, sign", [(0.0, 0.0, (1, 1)), (1.0, 0.0, (-1, 1)),
                                                  (0.0, 1.0, (1, -1)), (1.0, 1.0, (-1, -1))])
def test_flips_negate_the_right_component(h_flip, v_flip, sign):
    img1, img2, flow = shifted_pair(3, -2, seed=1)
    aug = spatial_only(spatial_aug_prob=0.0, h_flip_prob=h_flip, v_flip_prob=v_flip)  # no resize: 48x64 fits
    a1, a2, af = aug(img1, img2, flow, np.random.default_rng(0))
    assert np.allclose(af[..., 0], 3 * sign[0]) and np.allclose(af[..., 1], -2 * sign[1])
    assert warp_error(a1, a2, af) < 1e-3


def test_same_generator_state_gives_same_sample_and_uint8_stays_uint8():
    img1, img2, flow = shifted_pair(1, 1, seed=2)
    img1, img2 = img1.astype(np.uint8), img2.astype(np.uint8)
    aug = FlowAugmentor((24, 32), eraser_bounds=(5, 10))
    out_a = aug(img1, img2, flow, np.random.default_rng(7))
    out_b = aug(img1, img2, flow, np.random.default_rng(7))
    assert all(np.array_equal(x, y) for x, y in zip(out_a, out_b))
    assert out_a[0].dtype == np.uint8 and out_a[2].dtype == np.float32
    outs = [aug(img1, img2, flow, np.random.default_rng(s))[0] for s in range(4)]
    assert any(not np.array_equal(outs[0], o) for o in outs[1:])


def test_color_jitter_symmetric_unless_asymmetric():
    img = shifted_pair(0, 0, seed=3)[0]
    common = dict(eraser_aug_prob=0.0)
    same = FlowAugmentor((8, 8), asymmetric_color_aug_prob=0.0, **common)
    diff = FlowAugmentor((8, 8), asymmetric_color_aug_prob=1.0, **common)
    a, b = same.color_transform(img, img.copy(), np.random.default_rng(0))
    assert np.allclose(a, b) and not np.allclose(a, img, atol=1)
    a, b = diff.color_transform(img, img.copy(), np.random.default_rng(0))
    assert not np.allclose(a, b, atol=1)
    assert a.min() >= 0 and a.max() <= 255


def test_color_jitter_operations():
    img = shifted_pair(0, 0, seed=4)[0]
    assert np.allclose(ColorJitter.apply(img, range(4), (1.0, 1.0, 1.0, 0.0)), img, atol=1e-3)
    assert np.allclose(ColorJitter.apply(img, [0], (0.5, 1, 1, 0)), img * 0.5, atol=1e-3)
    grey = ColorJitter.apply(img, [2], (1, 1, 0.0, 0))
    assert np.allclose(grey[..., 0], grey[..., 1], atol=1e-3) and np.allclose(grey[..., 1], grey[..., 2], atol=1e-3)
    full_turn = ColorJitter.apply(img, [3], (1, 1, 1, 0.5))
    back = ColorJitter.apply(full_turn, [3], (1, 1, 1, -0.5))
    assert not np.allclose(full_turn, img, atol=5) and np.allclose(back, img, atol=0.5)
    with pytest.raises(UserError, match="hue"):
        ColorJitter(hue=0.7)


def test_eraser_fills_boxes_in_frame2_with_its_mean():
    img1, img2, _ = shifted_pair(0, 0, seed=5)
    aug = FlowAugmentor((8, 8), eraser_aug_prob=1.0, eraser_bounds=(4, 7))
    a1, a2 = aug.eraser_transform(img1, img2, np.random.default_rng(1))
    assert a1 is img1
    changed = np.any(a2 != img2, axis=-1)
    assert 4 * 4 <= changed.sum() <= 2 * 6 * 6
    assert np.allclose(a2[changed], img2.reshape(-1, 3).mean(0), atol=1e-3)


def test_sparse_augmentor_moves_valid_points_with_their_flow():
    h, w = 20, 30
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    ramp = np.stack((xs, ys, np.zeros_like(xs)), axis=-1)  # pixel colour = its own coordinates
    flow = np.zeros((h, w, 2), np.float32)
    valid = np.zeros((h, w), np.float32)
    flow[6, 10], valid[6, 10] = (3.0, -2.0), 1.0
    aug = SparseFlowAugmentor((32, 52), min_scale=1.0, max_scale=1.0, do_flip=True, h_flip_prob=1.0,
                              photometric=False, spatial_aug_prob=1.0)
    for seed in range(3):
        a1, a2, af, av = aug(ramp, ramp.copy(), flow, valid, np.random.default_rng(seed))
        assert a1.shape == (32, 52, 3) and av.shape == (32, 52) and av.dtype == np.float32
        (y,), (x,) = np.nonzero(av)
        assert np.allclose(af[y, x], (-6.0, -4.0))  # scaled by 2, u negated by the flip
        assert np.abs(a1[y, x, :2] - (10, 6)).max() <= 0.5  # it sits where frame 1 showed the point
        assert np.count_nonzero(af) == 2


def test_resize_sparse_flow_drops_nothing_valid_when_enlarging():
    rng = np.random.default_rng(0)
    valid = (rng.random((10, 12)) < 0.3).astype(np.float32)
    flow = rng.normal(size=(10, 12, 2)).astype(np.float32) * valid[..., None]
    f2, v2 = resize_sparse_flow(flow, valid, 1.5, 1.5)
    assert f2.shape == (15, 18, 2) and v2.sum() == valid.sum()
    assert np.isclose(f2.sum(), 1.5 * flow.sum(), atol=1e-3)


def test_bad_inputs():
    img1, img2, flow = shifted_pair(0, 0)
    aug = FlowAugmentor((16, 16))
    with pytest.raises(UserError, match="flow"):
        aug(img1, img2, flow[:, :-1], np.random.default_rng(0))
    with pytest.raises(UserError, match="crop_size"):
        FlowAugmentor((0, 16))
    with pytest.raises(UserError, match="eraser_bounds"):
        FlowAugmentor((8, 8), eraser_bounds=(9, 3))
