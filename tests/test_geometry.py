"""Closed-form checks of geometry/: cameras, rotations, Procrustes, bones, flips."""
import math

import pytest
import torch

from framework.errors import UserError
from geometry import (
    H36M17,
    Skeleton,
    axis_angle_to_matrix,
    bone_lengths,
    bone_vectors,
    denormalize_screen,
    flip_horizontal,
    matrix_to_axis_angle,
    matrix_to_rotation_6d,
    normalize_screen,
    perspective_project,
    procrustes_align,
    project_root_relative,
    rotate_about_root,
    rotation_6d_to_matrix,
    rotation_x,
    rotation_y,
    rotation_z,
    sample_view_rotations,
    scale_align,
    weak_perspective_project,
)

D = torch.float64


def random_rotations(n, generator):
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=D), dim=-1)
    angle = torch.rand(n, 1, generator=generator, dtype=D) * math.pi
    return axis_angle_to_matrix(axis * angle)


def assert_rotation(r, atol=1e-6):
    eye = torch.eye(3, dtype=r.dtype).expand_as(r)
    torch.testing.assert_close(r @ r.transpose(-1, -2), eye, atol=atol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(r), torch.ones(r.shape[:-2], dtype=r.dtype), atol=atol, rtol=0)


# ---------------------------------------------------------------- camera

def test_perspective_project_known_points():
    pts = torch.tensor([[[1.0, 2.0, 4.0], [0.0, -1.0, 2.0]]])
    out = perspective_project(pts, 2.0, torch.tensor([0.5, -0.5]))
    torch.testing.assert_close(out, torch.tensor([[[1.0, 0.5], [0.5, -1.5]]]))
    # per-pose, per-axis focal lengths (B, 2)
    pts2 = pts.expand(2, 2, 3)
    out2 = perspective_project(pts2, torch.tensor([[1.0, 2.0], [4.0, 4.0]]))
    torch.testing.assert_close(out2[0, 0], torch.tensor([0.25, 1.0]))
    torch.testing.assert_close(out2[1, 1], torch.tensor([0.0, -2.0]))


def test_perspective_project_zero_depth_is_finite_and_bad_focal_raises():
    out = perspective_project(torch.tensor([[1.0, 1.0, 0.0]]), 1.0)
    assert torch.isfinite(out).all() and out[0, 0] > 100
    with pytest.raises(UserError, match="focal"):
        perspective_project(torch.zeros(4, 2, 3), torch.ones(4))


def test_weak_perspective_project():
    pts = torch.tensor([[[1.0, 2.0, 9.0]], [[1.0, 2.0, -3.0]]])
    out = weak_perspective_project(pts, torch.tensor([2.0, 0.5]), torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    torch.testing.assert_close(out, torch.tensor([[[3.0, 4.0]], [[0.5, 0.0]]]))


def test_normalize_screen_formula_and_round_trip():
    px = torch.tensor([[250.0, 125.0], [1000.0, 500.0], [0.0, 0.0]])
    out = normalize_screen(px, 1000, 500)
    torch.testing.assert_close(out, torch.tensor([[-0.5, -0.25], [1.0, 0.5], [-1.0, -0.5]]))
    g = torch.Generator().manual_seed(0)
    px = torch.rand(5, 17, 2, generator=g, dtype=D) * torch.tensor([1920.0, 1080.0], dtype=D)
    torch.testing.assert_close(denormalize_screen(normalize_screen(px, 1920, 1080), 1920, 1080), px)


def test_project_root_relative_places_pose_at_depth():
    pose = torch.tensor([[0.0, 0.0, 0.0], [0.5, -0.25, 1.0]])
    out = project_root_relative(pose, 2.0, 4.0)
    torch.testing.assert_close(out, torch.tensor([[0.0, 0.0], [0.2, -0.1]]))
    batch = torch.stack([pose, pose])
    out = project_root_relative(batch, 2.0, torch.tensor([4.0, 9.0]))
    torch.testing.assert_close(out[1, 1], torch.tensor([0.1, -0.05]))
    # root-centred even when the root is not joint 0 and not at the origin
    shifted = pose + torch.tensor([0.1, 0.2, 0.0])
    out = project_root_relative(shifted, 2.0, 4.0, root=1)
    assert torch.all(out[1] == 0)


# ---------------------------------------------------------------- rotations

def test_axis_rotations_orthonormal_and_rotate_known_vectors():
    angles = torch.linspace(-3, 3, 7, dtype=D)
    for fn in (rotation_x, rotation_y, rotation_z):
        assert_rotation(fn(angles))
    quarter = torch.tensor(math.pi / 2, dtype=D)
    ex, ey, ez = torch.eye(3, dtype=D)
    torch.testing.assert_close(rotation_z(quarter) @ ex, ey)
    torch.testing.assert_close(rotation_x(quarter) @ ey, ez)
    torch.testing.assert_close(rotation_y(quarter) @ ez, ex)
    assert rotation_x(torch.zeros(4, 2)).shape == (4, 2, 3, 3)


def test_axis_angle_matrix_round_trip_including_near_zero_and_pi():
    g = torch.Generator().manual_seed(1)
    axis = torch.nn.functional.normalize(torch.randn(9, 3, generator=g, dtype=D), dim=-1)
    angles = torch.tensor([0.0, 1e-12, 1e-7, 1e-3, 0.7, 2.0, math.pi - 1e-3, math.pi - 1e-8, math.pi], dtype=D)
    aa = axis * angles[:, None]
    r = axis_angle_to_matrix(aa)
    assert_rotation(r, atol=1e-12)
    back = matrix_to_axis_angle(r)
    torch.testing.assert_close(axis_angle_to_matrix(back), r, atol=1e-10, rtol=0)
    torch.testing.assert_close(back.norm(dim=-1), angles, atol=1e-7, rtol=0)
    # away from pi the vector itself is recovered (at pi, +axis and -axis are the same rotation)
    torch.testing.assert_close(back[:-2], aa[:-2], atol=1e-7, rtol=0)
    torch.testing.assert_close(axis_angle_to_matrix(torch.tensor([0.0, 0.0, 0.3], dtype=D)), rotation_z(torch.tensor(0.3, dtype=D)))


def test_axis_angle_float32_near_zero_and_pi_and_finite_gradients():
    aa = torch.tensor([[0.0, 0.0, 0.0], [1e-4, 0.0, 0.0], [0.0, 0.0, math.pi - 1e-4]], requires_grad=True)
    r = axis_angle_to_matrix(aa)
    assert_rotation(r.detach(), atol=1e-6)
    back = matrix_to_axis_angle(r)
    torch.testing.assert_close(back, aa.detach(), atol=2e-4, rtol=0)
    (r.sum() + back.sum()).backward()
    assert torch.isfinite(aa.grad).all()


def test_rotation_6d_round_trip_and_gram_schmidt():
    g = torch.Generator().manual_seed(2)
    r = random_rotations(16, g)
    d6 = matrix_to_rotation_6d(r)
    torch.testing.assert_close(d6[:, :3], r[:, :, 0])
    torch.testing.assert_close(rotation_6d_to_matrix(d6), r)
    arbitrary = torch.randn(16, 6, generator=g, dtype=D)
    m = rotation_6d_to_matrix(arbitrary)
    assert_rotation(m, atol=1e-12)
    torch.testing.assert_close(m[:, :, 0], torch.nn.functional.normalize(arbitrary[:, :3], dim=-1))


def test_sample_view_rotations_ranges_and_distinct():
    g = torch.Generator().manual_seed(3)
    r = sample_view_rotations(2000, generator=g, dtype=D)
    assert r.shape == (2000, 3, 3)
    assert_rotation(r, atol=1e-12)
    azimuth = torch.atan2(r[:, 0, 2], r[:, 0, 0])
    elevation = torch.atan2(r[:, 2, 1], r[:, 1, 1])
    assert azimuth.min() < -3.0 and azimuth.max() > 3.0
    assert elevation.abs().max() <= math.pi / 9 + 1e-12 and elevation.abs().max() > 0.3
    torch.testing.assert_close(r, rotation_x(elevation) @ rotation_y(azimuth))
    assert torch.unique(azimuth).numel() == 2000
    narrow = sample_view_rotations(100, (0.5, 1.0), (-0.1, 0.0), generator=g)
    az = torch.atan2(narrow[:, 0, 2], narrow[:, 0, 0])
    el = torch.atan2(narrow[:, 2, 1], narrow[:, 1, 1])
    assert narrow.dtype == torch.float32
    assert az.min() >= 0.5 - 1e-5 and az.max() <= 1.0 + 1e-5 and el.min() >= -0.1 - 1e-5 and el.max() <= 1e-5
    again = sample_view_rotations(3, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(again, sample_view_rotations(3, generator=torch.Generator().manual_seed(7)))


def test_rotate_about_root_keeps_root_and_lengths():
    pose = torch.tensor([[[1.0, 1.0, 1.0], [2.0, 1.0, 1.0], [1.0, 3.0, 1.0]]], dtype=D)
    out = rotate_about_root(pose, rotation_z(torch.tensor([math.pi / 2], dtype=D)))
    torch.testing.assert_close(out, torch.tensor([[[1.0, 1.0, 1.0], [1.0, 2.0, 1.0], [-1.0, 1.0, 1.0]]], dtype=D))
    out = rotate_about_root(pose, rotation_x(torch.tensor(0.4, dtype=D)), root=2)
    torch.testing.assert_close(out[:, 2], pose[:, 2])


# ---------------------------------------------------------------- Procrustes

def test_procrustes_recovers_similarity_transform():
    g = torch.Generator().manual_seed(4)
    target = torch.randn(8, 17, 3, generator=g, dtype=D)
    r = random_rotations(8, g)
    scale = torch.rand(8, 1, 1, generator=g, dtype=D) + 0.5
    shift = torch.randn(8, 1, 3, generator=g, dtype=D)
    pred = scale * target @ r.transpose(-1, -2) + shift
    torch.testing.assert_close(procrustes_align(pred, target), target, atol=1e-10, rtol=0)
    # without scale the shape is rotated back but keeps the wrong size
    no_scale = procrustes_align(pred, target, scale=False)
    centred = no_scale - no_scale.mean(1, keepdim=True)
    torch.testing.assert_close(centred.norm(dim=(1, 2)), (target - target.mean(1, keepdim=True)).norm(dim=(1, 2)) * scale.flatten())


def test_procrustes_reflection_is_not_used():
    g = torch.Generator().manual_seed(5)
    target = torch.randn(4, 10, 3, generator=g, dtype=D)
    mirrored = target * torch.tensor([-1.0, 1.0, 1.0], dtype=D)
    aligned = procrustes_align(mirrored, target)
    x = mirrored - mirrored.mean(1, keepdim=True)
    y = aligned - aligned.mean(1, keepdim=True)
    linear = torch.linalg.lstsq(x, y).solution  # aligned = x @ linear = s x R^T
    assert (torch.linalg.det(linear) > 0).all()
    assert ((aligned - target).norm(dim=-1).mean(-1) > 1e-2).all()  # a rotation cannot undo a mirror


def test_procrustes_gradients_and_low_precision():
    g = torch.Generator().manual_seed(6)
    target = torch.randn(3, 17, 3, generator=g)
    pred = (target + 0.1 * torch.randn(3, 17, 3, generator=g)).requires_grad_()
    ((procrustes_align(pred, target) - target) ** 2).sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    out = procrustes_align(pred.detach().bfloat16(), target.bfloat16())
    assert out.dtype == torch.bfloat16 and out.shape == (3, 17, 3)


def test_scale_align_recovers_scale():
    g = torch.Generator().manual_seed(7)
    target = torch.randn(5, 17, 3, generator=g, dtype=D)
    factors = torch.tensor([0.5, 1.0, 2.0, 3.0, 0.1], dtype=D)[:, None, None]
    torch.testing.assert_close(scale_align(target * factors, target), target)
    with pytest.raises(UserError):
        scale_align(target, target[:, :3])


# ---------------------------------------------------------------- bones and flips

TOY = Skeleton(name="toy", joint_names=("a", "b", "c", "d"), parents=(-1, 0, 1, 0), left=(), right=())


def test_bone_vectors_and_lengths_on_hand_pose():
    pose = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    torch.testing.assert_close(bone_vectors(pose, TOY), torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]]))
    torch.testing.assert_close(bone_lengths(pose, TOY), torch.tensor([1.0, 2.0, 3.0]))
    assert bone_vectors(torch.zeros(2, 5, 17, 2), H36M17).shape == (2, 5, 16, 2)
    with pytest.raises(UserError, match="h36m17"):
        bone_lengths(torch.zeros(2, 16, 3), H36M17)


def test_flip_horizontal_swaps_sides_and_is_an_involution():
    g = torch.Generator().manual_seed(8)
    pose = torch.randn(3, 17, 3, generator=g)
    flipped = flip_horizontal(pose, H36M17)
    torch.testing.assert_close(flip_horizontal(flipped, H36M17), pose)
    lh, rh = H36M17.index("left_hip"), H36M17.index("right_hip")
    torch.testing.assert_close(flipped[:, lh], pose[:, rh] * torch.tensor([-1.0, 1.0, 1.0]))
    torch.testing.assert_close(flipped[:, 0], pose[:, 0] * torch.tensor([-1.0, 1.0, 1.0]))
