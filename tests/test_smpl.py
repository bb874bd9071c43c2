"""The SMPL body on a tiny model file written here: rest pose, skinning, rotation formats, shape,
gradients, part labels, and one clear error for every bad model file."""
import math
import pickle

import numpy as np
import pytest
import torch

from framework.errors import UserError
from geometry.rotations import axis_angle_to_matrix, matrix_to_rotation_6d, rotation_x
from geometry.skeletons import COCO17, H36M17, SMPL24, smpl24_to_h36m17
from nets.body_model import PART_NAMES, ProceduralBody
from nets.smpl import SMPL_JOINT_PARTS, SMPLBody, body_model_from_config

V, B, KNEE = 60, 10, SMPL24.index("left_knee")


def tiny_arrays(seed=0, posedirs=True, vertices=V):
    """A valid SMPL model in the .npz layout: SMPL's tree, vertex i (i < 48) skinned to joint i % 24
    alone, the rest to a random blend; each joint regressed from three vertices."""
    rng = np.random.default_rng(seed)
    weights = np.zeros((vertices, 24))
    weights[np.arange(48), np.arange(48) % 24] = 1.0
    weights[48:] = rng.dirichlet(np.ones(24), vertices - 48)
    regressor = np.zeros((24, vertices))
    for j in range(24):
        regressor[j, rng.choice(vertices, 3, replace=False)] = 1 / 3
    kintree = np.array([[4294967295, *SMPL24.parents[1:]], list(range(24))], dtype=np.int64)
    return {
        "v_template": rng.normal(0, 0.3, (vertices, 3)),
        "shapedirs": rng.normal(0, 0.01, (vertices, 3, 12)),  # more than num_betas: the first 10 are kept
        "posedirs": rng.normal(0, 0.01, (vertices, 3, 207)) if posedirs else np.zeros((vertices, 3, 207)),
        "J_regressor": regressor,
        "weights": weights,
        "kintree_table": kintree,
        "f": rng.integers(0, vertices, (2 * vertices, 3)),
    }


def write_model(tmp_path, name="smpl.npz", **arrays):
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.fixture
def model(tmp_path):
    arrays = tiny_arrays()
    return SMPLBody(write_model(tmp_path, **arrays), dtype=torch.float64), arrays


def random_inputs(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (0.4 * torch.randn(n, 23, 3, generator=g, dtype=torch.float64),
            torch.randn(n, B, generator=g, dtype=torch.float64),
            0.5 * torch.randn(n, 3, generator=g, dtype=torch.float64),
            torch.randn(n, 3, generator=g, dtype=torch.float64))


def test_rest_pose_is_the_template_with_the_pelvis_at_transl(model):
    body, a = model
    rest_joints = a["J_regressor"] @ a["v_template"]
    out = body(body.rest_pose(1))
    pelvis = torch.tensor(rest_joints[0])
    assert torch.allclose(out.vertices[0], torch.tensor(a["v_template"]) - pelvis, atol=1e-12)
    expected = torch.tensor(smpl24_to_h36m17(rest_joints)) - pelvis
    assert torch.allclose(out.joints[0], expected, atol=1e-12)
    assert torch.allclose(out.joints[0, H36M17.index("left_knee")], torch.tensor(rest_joints[KNEE]) - pelvis)
    assert torch.allclose(out.joints[0, 0], torch.zeros(3, dtype=torch.float64), atol=1e-12)
    transl = torch.tensor([[0.5, 1.0, 3.0]], dtype=torch.float64)
    assert torch.allclose(body(body.rest_pose(1), transl=transl).joints[0, 0], transl[0])
    assert out.part_axes is None and out.rotations.shape == (1, 17, 3, 3)
    assert torch.allclose(out.rotations, torch.eye(3, dtype=torch.float64).expand(1, 17, 3, 3))


def test_skinning_of_one_rotated_knee_by_hand(tmp_path):
    a = tiny_arrays(posedirs=False)
    body = SMPLBody(write_model(tmp_path, **a), dtype=torch.float64)
    pose = body.rest_pose(1)
    pose[0, KNEE - 1] = torch.tensor([math.pi / 2, 0.0, 0.0], dtype=torch.float64)
    out = body(pose)
    joints = a["J_regressor"] @ a["v_template"]
    r = rotation_x(torch.tensor(math.pi / 2, dtype=torch.float64)).numpy()
    knee, pelvis = joints[KNEE], joints[0]
    turned = (a["v_template"] - knee) @ r.T + knee  # every vertex, had it been skinned to the knee alone
    below = [KNEE, SMPL24.index("left_ankle"), SMPL24.index("left_foot")]  # the knee and what hangs from it
    share = a["weights"][:, below].sum(1, keepdims=True)
    expected = (1 - share) * a["v_template"] + share * turned - pelvis
    assert np.allclose(out.vertices[0].numpy(), expected, atol=1e-12)
    knee_only, root_only = a["weights"][:, KNEE] == 1, a["weights"][:, 0] == 1
    assert np.allclose(out.vertices[0, knee_only].numpy(), turned[knee_only] - pelvis)
    assert np.allclose(out.vertices[0, root_only].numpy(), a["v_template"][root_only] - pelvis)
    ankle = H36M17.index("left_ankle")
    assert np.allclose(out.joints[0, ankle].numpy(), knee + r @ (joints[SMPL24.index("left_ankle")] - knee) - pelvis)
    assert torch.allclose(out.rotations[0, ankle], torch.tensor(r))  # the ankle's frame turned with the knee
    untouched = [j for j in range(17) if j != ankle]
    assert torch.allclose(out.joints[0, untouched], body(body.rest_pose(1)).joints[0, untouched])


def test_6d_angle_axis_and_posedirs_layouts_give_the_same_body(model, tmp_path):
    body, a = model
    pose, betas, orient, transl = random_inputs()
    first = body(pose, betas, orient, transl)
    six = body(matrix_to_rotation_6d(axis_angle_to_matrix(pose)), betas,
               matrix_to_rotation_6d(axis_angle_to_matrix(orient)), transl)
    flat = dict(a, posedirs=a["posedirs"].reshape(3 * V, 207))
    flat_body = SMPLBody(write_model(tmp_path, "flat.npz", **flat), dtype=torch.float64)
    for other in (six, flat_body(pose, betas, orient, transl)):
        for name in ("joints", "keypoints", "vertices", "part_centres", "rotations"):
            assert torch.allclose(getattr(first, name), getattr(other, name), atol=1e-10), name
    # the global orientation and the translation move the body rigidly about the pelvis
    still = body(pose, betas)
    rot = axis_angle_to_matrix(orient)
    assert torch.allclose(first.vertices, still.vertices @ rot.transpose(-1, -2) + transl[:, None], atol=1e-12)


def test_betas_add_the_shape_blend_shapes(model):
    body, a = model
    betas = torch.randn(2, B, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    moved = body(body.rest_pose(2), betas).vertices - body(body.rest_pose(2)).vertices
    offsets = np.einsum("vcb,nb->nvc", a["shapedirs"][:, :, :B], betas.numpy())
    pelvis_shift = np.einsum("v,nvc->nc", a["J_regressor"][0], offsets)  # transl keeps the pelvis in place
    assert np.allclose(moved.numpy(), offsets - pelvis_shift[:, None], atol=1e-12)


def test_gradients_reach_pose_and_betas(model):
    body, _ = model
    pose, betas, orient, transl = (t.requires_grad_() for t in random_inputs(2))
    out = body(pose, betas, orient, transl)
    (out.vertices.square().sum() + out.joints.square().sum() + out.keypoints.sum()).backward()
    for t in (pose, betas, orient, transl):
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    body32 = SMPLBody(body.path)  # float32 buffers, as by default, take float32 input
    assert body32(body32.rest_pose(2)).vertices.dtype == torch.float32


def test_parts_keypoints_and_factory(model, tmp_path):
    body, a = model
    out = body(*random_inputs(2))
    parts = body.vertex_parts
    assert parts.shape == (V,) and int(parts.min()) >= 0 and int(parts.max()) < len(PART_NAMES)
    assert set(body.part_names) <= set(ProceduralBody.part_names) and len(set(SMPL_JOINT_PARTS)) == len(PART_NAMES)
    assert torch.equal(parts, torch.tensor(SMPL_JOINT_PARTS)[torch.tensor(a["weights"]).argmax(1)])
    for k in parts.unique().tolist():
        assert torch.allclose(out.part_centres[:, k], out.vertices[:, parts == k].mean(1))
    assert out.part_centres.shape == (2, len(PART_NAMES), 3) and torch.isfinite(out.part_centres).all()
    assert body.faces.dtype == torch.long and body.faces.shape == (2 * V, 3) and body.state_dict() == {}
    head = out.joints[:, H36M17.index("neck_nose")]  # SMPL's head joint: the face of a non-SMPL mesh
    assert torch.allclose(out.keypoints[:, COCO17.index("nose")], head)
    assert torch.allclose(out.keypoints[:, COCO17.index("left_knee")], out.joints[:, H36M17.index("left_knee")])
    # the 6890-vertex mesh takes its face from fixed vertices
    big = tiny_arrays(vertices=6890, posedirs=False)
    path = tmp_path / "smpl6890.npz"
    np.savez_compressed(path, **big)
    full = body_model_from_config(str(path))
    rest = full(full.rest_pose(1))
    assert isinstance(full, SMPLBody)
    assert torch.equal(rest.keypoints[0, COCO17.index("left_eye")], rest.vertices[0, 2800])
    assert isinstance(body_model_from_config(None), ProceduralBody)
    joints = np.random.default_rng(3).normal(size=(4, 24, 3))
    assert np.allclose(smpl24_to_h36m17(torch.tensor(joints)).numpy(), smpl24_to_h36m17(joints))


class _Trap:
    """Unpickling this writes a file: the .pkl refusal must never get that far."""

    def __init__(self, flag):
        self.flag = flag

    def __reduce__(self):
        return (open, (str(self.flag), "w"))


def test_pkl_is_refused_without_unpickling(tmp_path):
    path, flag = tmp_path / "SMPL_NEUTRAL.pkl", tmp_path / "unpickled"
    path.write_bytes(pickle.dumps(_Trap(flag)))
    with pytest.raises(UserError, match=r"\.npz") as e:
        SMPLBody(path)
    assert str(path) in str(e.value) and "np.savez" in str(e.value) and not flag.exists()


@pytest.mark.parametrize("change, words", [
    (lambda a: a.pop("weights"), ["missing array 'weights'"]),
    (lambda a: a.update(weights=a["weights"][:, :23]), ["weights", "(60, 23)"]),
    (lambda a: a["shapedirs"].__setitem__((3, 1, 2), np.nan), ["shapedirs", "NaN"]),
    (lambda a: a.update(posedirs=a["posedirs"][:, :, :200]), ["posedirs", "(60, 3, 207)"]),
    (lambda a: a.update(J_regressor=np.array({"sparse": True}, dtype=object)), ["J_regressor", "dense"]),
    (lambda a: a["kintree_table"].__setitem__((0, 5), 3), ["kintree_table", "24-joint tree"]),
    (lambda a: a["f"].__setitem__((0, 0), V), [": f:", "[0, 60)"]),
    (lambda a: a["weights"].__setitem__((50, 0), 2.0), ["weights", "sum to 1"]),
])
def test_bad_model_files_are_one_clear_error(tmp_path, change, words):
    a = tiny_arrays()
    change(a)
    path = write_model(tmp_path, **a)
    with pytest.raises(UserError) as e:
        SMPLBody(path)
    assert str(path) in str(e.value)
    for word in words:
        assert word in str(e.value)


def test_bad_inputs_are_one_clear_error(model, tmp_path):
    body, _ = model
    with pytest.raises(UserError, match="pose must be"):
        body(torch.zeros(2, 15, 3))
    with pytest.raises(UserError, match="betas must have shape"):
        body(body.rest_pose(2), torch.zeros(2, 8, dtype=torch.float64))
    with pytest.raises(UserError, match="does not exist"):
        SMPLBody(tmp_path / "absent.npz")
    with pytest.raises(UserError, match="fewer than num_betas"):
        SMPLBody(body.path, num_betas=20)
