"""The dual network's test-time terms: the polynomial trajectory, the reprojection and the bone
length with latent lengths per person."""
from __future__ import annotations

import pytest
import torch

from framework.errors import UserError
from geometry.skeletons import H36M17
from lightning_modules.dual_losses import bone, extrapolation_weights, reprojection, trajectories, trajectory


@pytest.mark.parametrize("order", [1, 2, 3])
def test_a_polynomial_sequence_has_no_trajectory_loss_and_a_jolt_has(order):
    t = torch.arange(12, dtype=torch.float64)[:, None, None]
    g = torch.Generator().manual_seed(order)
    coefficients = torch.randn(order + 1, 17, 3, generator=g, dtype=torch.float64)
    poses = sum(c * (t / 10) ** k for k, c in enumerate(coefficients))  # (12, 17, 3), degree = order
    assert float(trajectory(poses, window=5, order=order)) == pytest.approx(0.0, abs=1e-18)
    jolted = poses.clone()
    jolted[8, 3] += 0.1
    assert float(trajectory(jolted, window=5, order=order)) > 1e-3
    if order > 1:  # a lower order cannot follow the curve
        assert float(trajectory(poses, window=5, order=order - 1)) > 1e-6


def test_extrapolation_is_the_least_squares_polynomial_and_respects_validity():
    a = extrapolation_weights(2, 1)
    assert a.tolist() == pytest.approx([-1.0, 2.0])  # a line through two points: x_t = 2 x_(t-1) - x_(t-2)
    assert extrapolation_weights(3, 0).tolist() == pytest.approx([1 / 3] * 3)  # a constant: the mean
    poses = torch.zeros(6, 2, 3)
    poses[5] = 1.0
    valid = torch.tensor([True, True, True, True, True, False])
    assert float(trajectory(poses, 2, 1)) > 0 and float(trajectory(poses, 2, 1, valid)) == 0.0
    assert float(trajectories(poses, [(2, 1), (5, 2), (5, 3)])) > float(trajectory(poses, 2, 1))
    with pytest.raises(UserError, match="order 3 needs a window of more than 3 frames"):
        extrapolation_weights(3, 3)


def test_reprojection_is_zero_on_the_estimates_and_weighs_by_confidence():
    joints = torch.randn(4, 17, 3, generator=torch.Generator().manual_seed(0)) * 0.3 + torch.tensor([0.0, 0.0, 5.0])
    camera = torch.tensor([500.0, 500.0, 320.0, 240.0])
    pixels = joints[..., :2] / joints[..., 2:] * 500 + torch.tensor([320.0, 240.0])
    confidence = torch.ones(4, 17)
    assert float(reprojection(joints, pixels, confidence, camera)) == pytest.approx(0.0, abs=1e-6)
    off = pixels.clone()
    off[1, 2] += torch.tensor([3.0, 4.0])  # 5 px off
    confidence[1, 2] = 0.5
    assert float(reprojection(joints, off, confidence, camera)) == pytest.approx(0.5 * 25, rel=1e-4)


def test_the_bone_term_drives_a_sequence_to_one_length_per_bone():
    g = torch.Generator().manual_seed(1)
    poses = (torch.randn(8, 17, 3, generator=g) * 0.3).requires_grad_(True)
    lengths = torch.full((16,), 0.25, requires_grad=True)
    optimiser = torch.optim.Adam([poses, lengths], lr=0.01)
    from geometry.bones import bone_lengths
    before = bone_lengths(poses.detach(), H36M17).std(0).mean()
    for _ in range(600):
        optimiser.zero_grad()
        bone(poses, lengths, H36M17).backward()
        optimiser.step()
    after = bone_lengths(poses.detach(), H36M17)
    assert after.std(0).mean() < 0.02 * before  # every frame's bone as long as in the other frames
    assert torch.allclose(after.mean(0), lengths.detach(), atol=0.01)
    with pytest.raises(UserError, match="bone: h36m17 has 16 bones, got lengths \\(15,\\)"):
        bone(poses, lengths[:15], H36M17)
