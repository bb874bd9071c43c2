"""The procedural body model: forward kinematics, rotation formats, surface, gradients, errors."""
import math

import pytest
import torch

from framework.errors import UserError
from geometry.rotations import axis_angle_to_matrix, matrix_to_rotation_6d, rotation_x
from geometry.skeletons import COCO17, H36M17
from nets.body_model import NUM_PARTS, PART_NAMES, POSE_JOINTS, ProceduralBody

BODY = ProceduralBody()


def random_body(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (0.4 * torch.randn(n, 15, 3, generator=g, dtype=torch.float64),
            torch.randn(n, 8, generator=g, dtype=torch.float64),
            0.5 * torch.randn(n, 3, generator=g, dtype=torch.float64),
            torch.randn(n, 3, generator=g, dtype=torch.float64))


def test_joints_follow_forward_kinematics_of_the_skeleton():
    rest = BODY(BODY.rest_pose(1))
    offsets = BODY.offsets(torch.zeros(1, 8, dtype=torch.float64))
    for j, parent in enumerate(H36M17.parents):  # rest: each joint sits at its parent plus its offset
        if parent >= 0:
            assert torch.allclose(rest.joints[0, j], rest.joints[0, parent] + offsets[0, j])
    # a 90 degree rotation of the left shoulder about x turns the whole arm, and nothing else
    pose = BODY.rest_pose(1)
    pose[0, POSE_JOINTS.index(11)] = torch.tensor([-math.pi / 2, 0.0, 0.0], dtype=torch.float64)
    out = BODY(pose)
    r = rotation_x(torch.tensor(-math.pi / 2, dtype=torch.float64))
    shoulder = out.joints[0, 11]
    assert torch.allclose(out.joints[0, 12], shoulder + r @ offsets[0, 12])
    assert torch.allclose(out.joints[0, 13], shoulder + r @ (offsets[0, 12] + offsets[0, 13]))
    assert torch.allclose(out.joints[0, 13, 2], shoulder[2] + 0.54)  # hanging arm now points forward (+z)
    untouched = [j for j in range(17) if j not in (12, 13)]
    assert torch.allclose(out.joints[0, untouched], rest.joints[0, untouched])
    # global orientation and translation move the body rigidly about the pelvis
    pose, betas, orient, transl = random_body()
    moved, still = BODY(pose, betas, orient, transl), BODY(pose, betas)
    rot = axis_angle_to_matrix(orient)
    assert torch.allclose(moved.joints, still.joints @ rot.transpose(-1, -2) + transl[:, None], atol=1e-12)


def test_6d_and_angle_axis_give_the_same_body():
    pose, betas, orient, transl = random_body()
    a = BODY(pose, betas, orient, transl)
    b = BODY(matrix_to_rotation_6d(axis_angle_to_matrix(pose)), betas,
             matrix_to_rotation_6d(axis_angle_to_matrix(orient)), transl)
    for name in ("joints", "keypoints", "vertices"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-10), name


def test_surface_parts_and_coco_keypoints():
    pose, betas, orient, transl = random_body(2)
    out = BODY(pose, betas, orient, transl)
    assert NUM_PARTS >= 14 and len(set(PART_NAMES)) == NUM_PARTS
    parts = BODY.vertex_parts
    assert parts.unique().numel() == NUM_PARTS and out.vertices.shape[1] == parts.numel()
    # every vertex lies on its own part's ellipsoid: |A^-1 (v - c)| = 1
    local = torch.linalg.solve(out.part_axes[:, parts], (out.vertices - out.part_centres[:, parts]).unsqueeze(-1))
    assert torch.allclose(local.squeeze(-1).norm(dim=-1), torch.ones(()).double(), atol=1e-9)
    assert BODY.faces.max() < out.vertices.shape[1]
    for name, j in (("left_wrist", 13), ("right_knee", 2), ("left_shoulder", 11)):
        assert torch.equal(out.keypoints[:, COCO17.index(name)], out.joints[:, j])
    nose, head = out.keypoints[:, COCO17.index("nose")], out.joints[:, 9]
    assert ((nose - head).norm(dim=-1) < 0.2).all()


def test_shape_factors_change_what_they_name():
    zero = torch.zeros(1, 8, dtype=torch.float64)
    height = lambda out: out.vertices[0, :, 1].max() - out.vertices[0, :, 1].min()  # noqa: E731
    base = BODY(BODY.rest_pose(1), zero)
    assert 1.6 < float(height(base)) < 1.8
    tall = zero.clone(); tall[0, 0] = 2.0
    assert height(BODY(BODY.rest_pose(1), tall)) == pytest.approx(float(height(base)) * math.exp(0.12))  # 2 sigma of 6 %
    girth = zero.clone(); girth[0, 6] = 2.0
    wide = BODY(BODY.rest_pose(1), girth)
    assert torch.allclose(wide.joints, base.joints)  # girth leaves the skeleton alone
    k = PART_NAMES.index("left_upper_leg")
    assert wide.part_axes[0, k].norm(dim=0)[0] > base.part_axes[0, k].norm(dim=0)[0] * 1.2


def test_gradients_reach_pose_shape_orientation_and_translation():
    pose, betas, orient, transl = (t.clone().requires_grad_(True) for t in random_body(2))
    out = BODY(pose, betas, orient, transl)
    (out.vertices.square().sum() + out.keypoints.sum()).backward()
    for name, t in (("pose", pose), ("betas", betas), ("global_orient", orient), ("transl", transl)):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0, name


def test_bad_inputs_are_one_clear_error():
    with pytest.raises(UserError, match=r"pose must be \(\.\.\., 15, 3 or 6\)"):
        BODY(torch.zeros(2, 17, 3))
    with pytest.raises(UserError, match="angle-axis"):
        BODY(torch.zeros(2, 15, 4))
    with pytest.raises(UserError, match="betas must have shape"):
        BODY(torch.zeros(2, 15, 3), torch.zeros(2, 10))
    with pytest.raises(UserError, match="transl"):
        BODY(torch.zeros(2, 15, 3), transl=torch.zeros(3, 3))
