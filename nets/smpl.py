"""SMPL (Loper et al., 2015) behind the interface of the embedded ``ProceduralBody``.

The SMPL model is licensed, so it is never shipped here: the user points to their own model file,
saved in the ``.npz`` layout (``load_smpl_arrays`` lists the arrays). The official ``.pkl`` release
is refused, and nothing here unpickles anything: a pickle can run code when it is loaded, and the
official one also needs chumpy. The refusal says how to convert it once, outside this framework.

Output is what ``ProceduralBody`` gives (``BodyOutput``), so losses and metrics take either body:
H36M-17 ``joints`` (SMPL-24 joints through ``geometry.skeletons.smpl24_to_h36m17``), COCO-17
``keypoints`` (the face from fixed vertices of the 6890-vertex mesh), the mesh ``vertices`` with a
``ProceduralBody`` part name each (``vertex_parts``), the world frame of every H36M joint, and the
centre of every part. ``part_axes`` is None: SMPL's parts are not ellipsoids.

Conventions: SMPL's own frame is ProceduralBody's (y up, x = the person's left, z = the facing
direction; metres), and a joint's rotation turns the bones from it to its children in both.
``transl`` is the pelvis position, as for ``ProceduralBody``: SMPL itself adds its translation to
the model origin, which leaves the pelvis at ``J_regressor . shaped vertices`` (a few cm off the
origin, and moving with ``betas``); here that rest pelvis is subtracted, so the pelvis lands exactly
on ``transl`` whatever the shape. ``global_orient`` turns the body about the pelvis, as in SMPL.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from datamodules.readers.common import check_finite, check_shape, npz_array, open_npz, require_file
from framework.errors import UserError
from geometry.skeletons import H36M17, SMPL24, SMPL24_TO_H36M17, smpl24_to_h36m17
from nets.body_model import FACE_NAMES, PART_NAMES, BodyOutput, ProceduralBody, coco_keypoints, pose_matrices

NUM_SMPL_JOINTS = SMPL24.num_joints
SMPL_POSE_JOINTS = tuple(range(1, NUM_SMPL_JOINTS))  # every joint but the root (global_orient turns that)
NUM_POSE_FEATURES = 9 * len(SMPL_POSE_JOINTS)  # (R - I) of every posed joint, flattened: 207
DEFAULT_NUM_BETAS = 10
SMPL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")

# COCO face points on the 6890-vertex SMPL mesh (the vertex ids SPIN, VIBE and others use).
SMPL_NUM_VERTICES = 6890
_FACE_VERTICES = {"nose": 332, "left_eye": 2800, "right_eye": 6260, "left_ear": 583, "right_ear": 4071}
_HEAD = SMPL24.index("head")

# The ProceduralBody part of the vertices each SMPL joint dominates (the largest skinning weight).
# The three spine joints and the collar bones make the torso, so the pelvis is the hips and seat;
# the wrist and the finger-base joint make the hand; the ankle and the toe joint make the foot.
_PART_OF_JOINT = {
    "pelvis": "pelvis", "left_hip": "left_upper_leg", "right_hip": "right_upper_leg", "spine1": "torso",
    "left_knee": "left_lower_leg", "right_knee": "right_lower_leg", "spine2": "torso", "left_ankle": "left_foot",
    "right_ankle": "right_foot", "spine3": "torso", "left_foot": "left_foot", "right_foot": "right_foot",
    "neck": "neck", "left_collar": "torso", "right_collar": "torso", "head": "head",
    "left_shoulder": "left_upper_arm", "right_shoulder": "right_upper_arm", "left_elbow": "left_lower_arm",
    "right_elbow": "right_lower_arm", "left_wrist": "left_hand", "right_wrist": "right_hand",
    "left_hand": "left_hand", "right_hand": "right_hand",
}
SMPL_JOINT_PARTS = tuple(PART_NAMES.index(_PART_OF_JOINT[name]) for name in SMPL24.joint_names)


def _pkl_refusal(path: Path) -> UserError:
    out = path.with_suffix(".npz")
    snippet = (f"import pickle, numpy as np, scipy.sparse as sp; d = pickle.load(open('{path}', 'rb'), "
               f"encoding='latin1'); np.savez('{out}', **{{k: d[k].toarray() if sp.issparse(d[k]) else "
               f"np.asarray(d[k]) for k in {SMPL_KEYS!r}}})")
    return UserError(f"{path}: SMPL .pkl files are pickles, which can run code when loaded, so this framework "
                     f"never reads them; convert it to .npz once, outside this framework (in a Python with chumpy "
                     f"and scipy, on a file you trust): python -c \"{snippet}\" and point to the .npz instead")


def _read(npz: Any, key: str, path: Path) -> np.ndarray:
    """One array of the archive; an object array (a scipy sparse matrix saved as is) cannot be read
    without pickle, so it is refused with the way to store it densely."""
    if key in npz.files:
        try:
            return npz[key]
        except ValueError:
            raise UserError(f"{path}: array '{key}' is stored as a Python object (e.g. a scipy sparse matrix), "
                            f"which only pickle can read and this framework never unpickles; save it as a dense "
                            f"numeric array (for a sparse matrix: {key}.toarray())") from None
    return npz_array(npz, key, path)  # the missing-key error, with the keys found


def _integers(a: np.ndarray, where: str, low: int, high: int) -> np.ndarray:
    if np.any(a != np.round(a)) or np.any(a < low) or np.any(a >= high):
        raise UserError(f"{where}: expected integers in [{low}, {high}), got values in [{a.min()}, {a.max()}]")
    return a.astype(np.int64)


def load_smpl_arrays(path: str | Path, num_betas: int = DEFAULT_NUM_BETAS) -> dict[str, np.ndarray]:
    """The SMPL arrays of an ``.npz`` model file, checked; V vertices, F triangles, B >= num_betas:

    ``v_template`` (V, 3) rest mesh; ``shapedirs`` (V, 3, B) shape blend shapes (the first
    ``num_betas`` are kept); ``posedirs`` (V, 3, 207) pose blend shapes, or the same flattened
    vertex-major to (V*3, 207) (row v*3 + c), as some conversions store it; ``J_regressor`` (24, V)
    dense; ``weights`` (V, 24) skinning weights, rows summing to 1; ``kintree_table`` (2, 24) parents
    over joint ids, SMPL's own tree (the root's parent entry is ignored); ``f`` (F, 3) triangles.
    Returned as float64, ``posedirs`` as (V*3, 207), ``kintree_table`` and ``f`` as int64.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() in (".pkl", ".pickle"):
        raise _pkl_refusal(path)
    require_file(path, "SMPL model")
    npz = open_npz(path)
    if not hasattr(npz, "files"):
        raise UserError(f"{path}: a single .npy array, not an .npz archive of the SMPL arrays {', '.join(SMPL_KEYS)}")
    with npz:
        raw = {key: _read(npz, key, path) for key in SMPL_KEYS}

    def where(key: str) -> str:
        return f"{path}: {key}"

    v_template = check_shape(raw["v_template"], (None, 3), where("v_template"))
    n = len(v_template)
    shapedirs = check_shape(raw["shapedirs"], (n, 3, None), where("shapedirs"))
    if shapedirs.shape[2] < num_betas:
        raise UserError(f"{where('shapedirs')}: {shapedirs.shape[2]} shape components, "
                        f"fewer than num_betas={num_betas}")
    layout = (n, 3, NUM_POSE_FEATURES) if np.ndim(raw["posedirs"]) == 3 else (3 * n, NUM_POSE_FEATURES)
    if np.shape(raw["posedirs"]) != layout:
        raise UserError(f"{where('posedirs')}: expected shape ({n}, 3, {NUM_POSE_FEATURES}) or "
                        f"({3 * n}, {NUM_POSE_FEATURES}), got {np.shape(raw['posedirs'])}")
    arrays = {
        "v_template": v_template,
        "shapedirs": shapedirs[:, :, :num_betas],
        "posedirs": check_shape(raw["posedirs"], layout, where("posedirs")).reshape(3 * n, NUM_POSE_FEATURES),
        "J_regressor": check_shape(raw["J_regressor"], (NUM_SMPL_JOINTS, n), where("J_regressor")),
        "weights": check_shape(raw["weights"], (n, NUM_SMPL_JOINTS), where("weights")),
        "kintree_table": check_shape(raw["kintree_table"], (2, NUM_SMPL_JOINTS), where("kintree_table")),
        "f": check_shape(raw["f"], (None, 3), where("f")),
    }
    for key, value in arrays.items():
        check_finite(value, where(key))
    sums = arrays["weights"].sum(1)
    if np.any(np.abs(sums - 1) > 1e-3):
        v = int(np.argmax(np.abs(sums - 1)))
        raise UserError(f"{where('weights')}: every vertex's skinning weights must sum to 1; "
                        f"vertex {v} sums to {sums[v]:.4g}")
    kintree = arrays["kintree_table"]
    ids = _integers(kintree[1], where("kintree_table"), 0, NUM_SMPL_JOINTS)
    parents = dict(zip(ids.tolist(), kintree[0, :].tolist()))
    if sorted(parents) != list(range(NUM_SMPL_JOINTS)) or \
            any(parents[j] != SMPL24.parents[j] for j in SMPL_POSE_JOINTS):
        raise UserError(f"{where('kintree_table')}: not SMPL's 24-joint tree (parents {list(SMPL24.parents[1:])} of "
                        f"joints 1..23); SMPL-H / SMPL-X files have other trees")
    arrays["kintree_table"] = kintree.astype(np.int64)
    arrays["f"] = _integers(arrays["f"], where("f"), 0, n)
    return arrays


class SMPLBody(nn.Module):
    """SMPL from the user's ``.npz`` model file (module doc), with ``ProceduralBody``'s interface:
    ``forward(pose, betas, global_orient, transl) -> BodyOutput``, ``pose`` (..., 23, 3 or 6) for
    ``pose_joints`` (SMPL joints 1..23), ``betas`` (..., num_betas). The model arrays are buffers
    left out of the state dict: they stay in the licensed file, which is read again at construction,
    and a checkpoint works with whichever copy of the model a user has."""

    num_joints = H36M17.num_joints
    pose_joints = SMPL_POSE_JOINTS
    part_names = PART_NAMES

    def __init__(self, path: str | Path, num_betas: int = DEFAULT_NUM_BETAS,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if int(num_betas) < 1:
            raise UserError(f"SMPL model: num_betas must be >= 1, got {num_betas}")
        arrays = load_smpl_arrays(path, int(num_betas))
        self.path = Path(path).expanduser()
        self.num_betas = int(num_betas)
        self.num_vertices = len(arrays["v_template"])
        for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
            name = "skin_weights" if key == "weights" else key  # "weights" alone reads as network weights
            self.register_buffer(name, torch.tensor(arrays[key], dtype=dtype), persistent=False)
        self.register_buffer("faces", torch.tensor(arrays["f"]), persistent=False)
        parts = torch.tensor(SMPL_JOINT_PARTS)[self.skin_weights.argmax(1)]
        self.register_buffer("vertex_parts", parts, persistent=False)
        # A part's centre is the mean of its vertices; a part without any (a coarse mesh) falls back
        # to the mean of its SMPL joints, so every centre is defined.
        members = (parts[None, :] == torch.arange(len(PART_NAMES))[:, None]).to(dtype)  # (K, V)
        counts = members.sum(1, keepdim=True)
        joint_members = (torch.tensor(SMPL_JOINT_PARTS)[None, :] == torch.arange(len(PART_NAMES))[:, None]).to(dtype)
        self.register_buffer("part_vertex_weights", members / counts.clamp(min=1), persistent=False)
        self.register_buffer("part_joint_weights", joint_members / joint_members.sum(1, keepdim=True) * (counts == 0),
                             persistent=False)
        self.face_vertices = [_FACE_VERTICES[name] for name in FACE_NAMES] \
            if self.num_vertices == SMPL_NUM_VERTICES else None

    def forward(self, pose: torch.Tensor, betas: Optional[torch.Tensor] = None,
                global_orient: Optional[torch.Tensor] = None, transl: Optional[torch.Tensor] = None) -> BodyOutput:
        if pose.dim() < 2 or pose.shape[-2] != len(SMPL_POSE_JOINTS):
            raise UserError(f"SMPL model: pose must be (..., {len(SMPL_POSE_JOINTS)}, 3 or 6), got {tuple(pose.shape)}")
        batch = pose.shape[:-2]
        dtype = pose.dtype if pose.is_floating_point() else self.v_template.dtype
        device = pose.device
        local = pose_matrices(pose.to(dtype))
        betas = torch.zeros(*batch, self.num_betas, dtype=dtype, device=device) if betas is None else betas.to(dtype)
        eye = torch.eye(3, dtype=dtype, device=device)
        root = eye.expand(*batch, 3, 3) if global_orient is None \
            else pose_matrices(global_orient.to(dtype), "global_orient")
        transl = torch.zeros(*batch, 3, dtype=dtype, device=device) if transl is None else transl.to(dtype)
        for name, value, tail in (("betas", betas, (self.num_betas,)), ("global_orient", root, (3, 3)),
                                  ("transl", transl, (3,))):
            if tuple(value.shape) != (*batch, *tail):
                raise UserError(f"SMPL model: {name} must have shape {(*batch, *tail)} for pose {tuple(pose.shape)}, "
                                f"got {tuple(value.shape)}")

        shaped = self.v_template.to(dtype) + torch.einsum("...b,vcb->...vc", betas, self.shapedirs.to(dtype))
        rest_joints = torch.einsum("jv,...vc->...jc", self.J_regressor.to(dtype), shaped)  # (..., 24, 3)
        features = (local - eye).flatten(-3)  # (..., 207)
        posed = shaped + (features @ self.posedirs.to(dtype).T).unflatten(-1, (self.num_vertices, 3))
        rotations, positions = self._kinematics(root, local, rest_joints)
        # Linear blend skinning: joint j moves the rest body rigidly, x -> R_j (x - J_j) + p_j; a vertex
        # moves by the blend of its joints' motions, weighted by its skinning weights.
        weights = self.skin_weights.to(dtype)
        shift = positions - (rotations @ rest_joints[..., None])[..., 0]
        blend = torch.einsum("vj,...jab->...vab", weights, rotations)
        vertices = (blend @ posed[..., None])[..., 0] + torch.einsum("vj,...ja->...va", weights, shift)
        # transl places the pelvis (module doc): the root's posed position is its rest position.
        offset = (transl - rest_joints[..., 0, :])[..., None, :]
        vertices, positions = vertices + offset, positions + offset

        joints = smpl24_to_h36m17(positions)
        frames = rotations[..., [j if j >= 0 else _HEAD for j in SMPL24_TO_H36M17], :, :]
        face = vertices[..., self.face_vertices, :] if self.face_vertices is not None \
            else positions[..., [_HEAD] * len(FACE_NAMES), :]
        centres = torch.einsum("kv,...vc->...kc", self.part_vertex_weights.to(dtype), vertices) + \
            torch.einsum("kj,...jc->...kc", self.part_joint_weights.to(dtype), positions)
        return BodyOutput(joints, coco_keypoints(joints, face), vertices, centres, None, frames)

    @staticmethod
    def _kinematics(root: torch.Tensor, local: torch.Tensor,
                    rest_joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World rotations (..., 24, 3, 3) and positions (..., 24, 3) of the SMPL joints, down the tree
        from the root (which stays at its rest position): each bone keeps its rest vector, turned by
        its parent's world rotation."""
        rotations, positions = [root], [rest_joints[..., 0, :]]
        for j in SMPL_POSE_JOINTS:
            parent = SMPL24.parents[j]
            bone = rest_joints[..., j, :] - rest_joints[..., parent, :]
            positions.append(positions[parent] + (rotations[parent] @ bone[..., None])[..., 0])
            rotations.append(rotations[parent] @ local[..., j - 1, :, :])
        return torch.stack(rotations, -3), torch.stack(positions, -2)

    def rest_pose(self, *batch: int, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        """Zero rotations (..., 23, 3): SMPL's rest pose (arms out in a T)."""
        return torch.zeros(*batch, len(SMPL_POSE_JOINTS), 3, dtype=dtype or self.v_template.dtype,
                           device=self.v_template.device)


def body_model_from_config(path: Optional[str | Path] = None) -> ProceduralBody | SMPLBody:
    """The body a config names: no path (None or "") -> the embedded ``ProceduralBody``; the path of
    an SMPL ``.npz`` model file -> ``SMPLBody(path)``."""
    return SMPLBody(path) if path else ProceduralBody()
