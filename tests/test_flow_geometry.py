"""Back-warping, the forward-backward and colour-constancy filters, and flow colour maps."""
import numpy as np
import pytest
import torch

from framework.errors import UserError
from geometry.flow import (backward_warp, colour_consistency, coords_grid, flow_to_color,
                           forward_backward_consistency)


def constant_flow(u, v, h, w, batch=1):
    flow = torch.zeros(batch, 2, h, w)
    flow[:, 0], flow[:, 1] = u, v
    return flow


def in_bounds_for(u, v, h, w):
    """Pixels (y, x) with x + u and y + v inside an h x w frame, for integer u, v."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return ((xs + u >= 0) & (xs + u <= w - 1) & (ys + v >= 0) & (ys + v <= h - 1))[None]


def translate(image, u, v):
    """Frame 2 of a scene moving by (u, v) >= 0: image2[y + v, x + u] = image1[y, x]; zeros elsewhere."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., v:, u:] = image[..., : h - v, : w - u]
    return out


def test_coords_grid_holds_x_then_y():
    grid = coords_grid(2, 3, 4)
    assert grid.shape == (2, 2, 3, 4)
    assert grid[1, 0, 2, 3] == 3 and grid[1, 1, 2, 3] == 2


def test_backward_warp_undoes_integer_translation():
    torch.manual_seed(0)
    h, w = 7, 9
    image1 = torch.rand(2, 3, h, w) * 255
    image2 = translate(image1, 2, 1)
    warped, mask = backward_warp(image2, constant_flow(2, 1, h, w, batch=2))
    expected = in_bounds_for(2, 1, h, w).expand(2, h, w)
    assert torch.equal(mask, expected)
    m = mask[:, None].expand_as(image1)
    assert torch.allclose(warped[m], image1[m], atol=1e-3)
    # a wrong flow does not reproduce it
    warped_bad, _ = backward_warp(image2, constant_flow(1, 1, h, w, batch=2))
    assert not torch.allclose(warped_bad[m], image1[m], atol=1e-1)


def test_backward_warp_rejects_bad_shapes():
    with pytest.raises(UserError, match="flow"):
        backward_warp(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4))
    with pytest.raises(UserError, match="differ"):
        backward_warp(torch.zeros(1, 3, 4, 5), torch.zeros(1, 2, 4, 4))


def test_forward_backward_consistent_pair_is_all_in_bounds():
    h, w = 6, 10
    fw, bw = constant_flow(2, 1, h, w), constant_flow(-2, -1, h, w)
    mask = forward_backward_consistency(fw, bw)
    assert torch.equal(mask, in_bounds_for(2, 1, h, w))
    assert mask.sum() == (h - 1) * (w - 2)


def test_forward_backward_planted_disagreement_gives_exact_mask():
    h, w = 6, 10
    fw, bw = constant_flow(2, 1, h, w), constant_flow(-2, -1, h, w)
    bw[:, :, 2:5, 4:8] = 5.0  # frame-2 region where the backward flow disagrees
    mask = forward_backward_consistency(fw, bw)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    lands_in_region = (ys + 1 >= 2) & (ys + 1 < 5) & (xs + 2 >= 4) & (xs + 2 < 8)
    expected = in_bounds_for(2, 1, h, w) & ~lands_in_region[None]
    assert torch.equal(mask, expected)
    assert (~mask[0, 1:4, 2:6]).all() and mask[0, 0, 0]


def test_forward_backward_tolerances():
    h, w = 3, 120
    # a 1 px cycle error fails the absolute term alone (1 > 0.01 * 7 + 0.5) ...
    small = forward_backward_consistency(constant_flow(2, 1, h, w), constant_flow(-1, -1, h, w))
    assert not small.any()
    # ... but passes next to a fast motion, through the relative term (1 < 0.01 * (10000 + 9801) + 0.5)
    fw, bw = constant_flow(100, 0, h, w), constant_flow(-99, 0, h, w)
    assert torch.equal(forward_backward_consistency(fw, bw), in_bounds_for(100, 0, h, w))
    assert not forward_backward_consistency(fw, bw, alpha1=0.0).any()
    # half a pixel passes the default absolute term
    half = forward_backward_consistency(constant_flow(2, 0, h, w), constant_flow(-1.5, 0, h, w))
    assert torch.equal(half, in_bounds_for(2, 0, h, w))


def test_colour_consistency_catches_planted_brightness_change():
    torch.manual_seed(1)
    h, w = 8, 11
    image1 = torch.randint(0, 246, (1, 3, h, w)).float()
    image2 = translate(image1, 3, 2)
    flow = constant_flow(3, 2, h, w)
    assert torch.equal(colour_consistency(image1, image2, flow), in_bounds_for(3, 2, h, w))
    image2[:, :, 4:7, 5:9] += 10  # 10/255 = 0.039 > 0.005
    mask = colour_consistency(image1, image2, flow)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    lands_in_region = (ys + 2 >= 4) & (ys + 2 < 7) & (xs + 3 >= 5) & (xs + 3 < 9)
    assert torch.equal(mask, in_bounds_for(3, 2, h, w) & ~lands_in_region[None])
    # a change below the threshold (1/255 = 0.0039) is kept
    image3 = translate(image1, 3, 2)
    image3[:, :, 4:7, 5:9] += 1
    assert torch.equal(colour_consistency(image1, image3, flow), in_bounds_for(3, 2, h, w))


def test_flow_to_color_zero_is_white_and_directions_differ():
    zero = flow_to_color(torch.zeros(2, 5, 6))
    assert zero.shape == (5, 6, 3) and zero.dtype == np.uint8
    assert (zero >= 250).all()
    right = flow_to_color(constant_flow(3, 0, 4, 4), max_norm=3.0)
    left = flow_to_color(constant_flow(-3, 0, 4, 4), max_norm=3.0)
    down = flow_to_color(constant_flow(0, 3, 4, 4), max_norm=3.0)
    assert right.shape == (1, 4, 4, 3)
    assert np.abs(right.astype(int) - left.astype(int)).sum() > 100
    assert np.abs(right.astype(int) - down.astype(int)).sum() > 100
    # full speed is saturated: some channel near 0; beyond max_norm it is darker
    assert right.min() < 30
    faster = flow_to_color(constant_flow(6, 0, 4, 4), max_norm=3.0)
    assert faster.astype(int).sum() < right.astype(int).sum()
    with pytest.raises(UserError, match="flow_to_color"):
        flow_to_color(np.zeros((3, 4, 4)))
