"""A procedural, differentiable human body with the interface SMPL exposes.

(pose, shape, global orientation, translation) -> 3D joints (H36M-17), COCO-17 keypoints, surface
vertices with a body part each, and the rigid frame of every part. The body is 16 ellipsoids,
each rigidly attached to one joint of the H36M tree (rigid skinning), so that a renderer can
ray-cast the very surface whose vertices the model returns, and exact optical flow follows from
moving a surface point with its part.

Conventions (the same as ``datamodules/synthetic/skeleton_poses.py``): a y-up body frame with
x = the person's left and z = the facing direction; metres. The rotation of joint j turns the
bones from j to its children (SMPL's convention), and ``transl`` is the pelvis position.
``pose`` holds one rotation for each of the 15 joints in ``POSE_JOINTS`` (the head top is a leaf
that turns nothing), as angle-axis (..., 15, 3) or 6D (..., 15, 6). ``betas`` (..., 8) are
log-scale shape factors, 0 = the mean body, 1 = about one standard deviation of adults:
height, leg length, torso length, arm length, shoulder width, hip width, limb girth, torso girth.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from framework.errors import UserError
from geometry.rotations import axis_angle_to_matrix, rotation_6d_to_matrix
from geometry.skeletons import COCO17, H36M17

PARENTS = H36M17.parents
NUM_JOINTS = H36M17.num_joints
POSE_JOINTS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16)  # every joint but the root and the head top
NUM_BETAS = 8
BETA_NAMES = ("height", "leg_length", "torso_length", "arm_length", "shoulder_width", "hip_width",
              "limb_girth", "torso_girth")

# Rest offsets from each joint's parent (metres, mean body, body frame): arms hanging, legs straight.
_REST_OFFSETS = np.array([
    [0.0, 0.0, 0.0],        # pelvis
    [-0.10, -0.03, 0.0],    # right_hip
    [0.0, -0.44, 0.0],      # right_knee
    [0.0, -0.42, 0.0],      # right_ankle
    [0.10, -0.03, 0.0],     # left_hip
    [0.0, -0.44, 0.0],      # left_knee
    [0.0, -0.42, 0.0],      # left_ankle
    [0.0, 0.22, 0.0],       # spine
    [0.0, 0.25, 0.0],       # thorax
    [0.0, 0.10, 0.06],      # neck_nose
    [0.0, 0.13, -0.05],     # head (top)
    [0.17, -0.02, 0.0],     # left_shoulder
    [0.0, -0.28, 0.0],      # left_elbow
    [0.0, -0.26, 0.0],      # left_wrist
    [-0.17, -0.02, 0.0],    # right_shoulder
    [0.0, -0.28, 0.0],      # right_elbow
    [0.0, -0.26, 0.0],      # right_wrist
])
# Which shape factors (beyond overall height) scale each bone's length.
_LEGS, _TORSO, _ARMS, _SHOULDERS, _HIPS = (2, 3, 5, 6), (7, 8), (12, 13, 15, 16), (11, 14), (1, 4)
_LENGTH_STD = {1: 0.05, 2: 0.05, 3: 0.05, 4: 0.07, 5: 0.07}  # per beta: log-scale std of the lengths it moves
_HEIGHT_STD, _GIRTH_STD = 0.06, 0.12


@dataclass(frozen=True)
class Part:
    """An ellipsoid on the bone ``joint -> child``: centred ``along`` of the way down the bone plus
    ``shift`` (metres, joint frame), semi-axis ``radii`` across, ``reach`` x half the bone length along
    it (or ``length`` metres where the part has no bone of its own: hands, feet, head)."""

    name: str
    joint: int
    child: int
    radii: tuple[float, float]  # across the bone: (x-ish, z-ish) semi-axes at the mean body, metres
    torso: bool = False  # girth scaled by the torso factor, not the limb one
    along: float = 0.5
    reach: float = 1.1
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    length: Optional[float] = None  # semi-axis along the part for parts sized by the body height
    axis: tuple[float, float, float] = (0.0, 1.0, 0.0)  # the long axis (joint frame) of a part without a bone


PARTS = (
    Part("head", 9, 10, (0.085, 0.10), along=0.35, length=0.115, shift=(0.0, 0.0, -0.02)),
    Part("neck", 8, 9, (0.05, 0.05), reach=0.9),
    Part("torso", 7, 8, (0.155, 0.10), torso=True, along=0.5, reach=1.3),
    Part("pelvis", 0, 7, (0.15, 0.10), torso=True, along=0.3, reach=1.0),
    Part("left_upper_arm", 11, 12, (0.045, 0.045)),
    Part("right_upper_arm", 14, 15, (0.045, 0.045)),
    Part("left_lower_arm", 12, 13, (0.037, 0.037), reach=1.05),
    Part("right_lower_arm", 15, 16, (0.037, 0.037), reach=1.05),
    Part("left_hand", 13, 13, (0.025, 0.045), length=0.08, shift=(0.0, -0.08, 0.0)),
    Part("right_hand", 16, 16, (0.025, 0.045), length=0.08, shift=(0.0, -0.08, 0.0)),
    Part("left_upper_leg", 4, 5, (0.075, 0.075), reach=1.05),
    Part("right_upper_leg", 1, 2, (0.075, 0.075), reach=1.05),
    Part("left_lower_leg", 5, 6, (0.055, 0.055), reach=1.05),
    Part("right_lower_leg", 2, 3, (0.055, 0.055), reach=1.05),
    Part("left_foot", 6, 6, (0.045, 0.035), length=0.12, shift=(0.0, -0.045, 0.07),
         axis=(0.0, 0.0, 1.0)),
    Part("right_foot", 3, 3, (0.045, 0.035), length=0.12, shift=(0.0, -0.045, 0.07), axis=(0.0, 0.0, 1.0)),
)
PART_NAMES = tuple(p.name for p in PARTS)
NUM_PARTS = len(PARTS)
FOOT_PARTS = (PART_NAMES.index("left_foot"), PART_NAMES.index("right_foot"))

# COCO-17 face points, fixed in the head part's frame (metres from the head joint, mean body).
_FACE = {"nose": (0.0, 0.02, 0.10), "left_eye": (0.035, 0.05, 0.085), "right_eye": (-0.035, 0.05, 0.085),
         "left_ear": (0.08, 0.035, 0.0), "right_ear": (-0.08, 0.035, 0.0)}
# COCO-17 body points taken from H36M joints.
_COCO_FROM_H36M = {"left_shoulder": 11, "right_shoulder": 14, "left_elbow": 12, "right_elbow": 15,
                   "left_wrist": 13, "right_wrist": 16, "left_hip": 4, "right_hip": 1, "left_knee": 5,
                   "right_knee": 2, "left_ankle": 6, "right_ankle": 3}
FACE_NAMES = tuple(name for name in COCO17.joint_names if name in _FACE)  # nose, eyes, ears: COCO order


def coco_keypoints(joints: torch.Tensor, face: torch.Tensor) -> torch.Tensor:
    """COCO-17 keypoints (..., 17, 3) from H36M-17 ``joints`` (..., 17, 3) and the face points
    (..., 5, 3) in ``FACE_NAMES`` order: the body points are H36M joints, the face has its own."""
    out = [face[..., FACE_NAMES.index(name), :] if name in _FACE else joints[..., _COCO_FROM_H36M[name], :]
           for name in COCO17.joint_names]
    return torch.stack(out, -2)


def _axis_to(direction: np.ndarray) -> np.ndarray:
    """The rotation taking the y axis to the unit ``direction`` (an ellipsoid's long axis to its bone)."""
    y = np.array([0.0, 1.0, 0.0])
    d = direction / np.linalg.norm(direction)
    v, c = np.cross(y, d), float(y @ d)
    if np.linalg.norm(v) < 1e-9:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def sphere_mesh(rings: int = 8, segments: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Unit-sphere vertices (V, 3) and triangles (F, 3), poles on the y axis."""
    verts = [[0.0, 1.0, 0.0]]
    for i in range(1, rings):
        phi = np.pi * i / rings
        for j in range(segments):
            theta = 2 * np.pi * j / segments
            verts.append([np.sin(phi) * np.cos(theta), np.cos(phi), np.sin(phi) * np.sin(theta)])
    verts.append([0.0, -1.0, 0.0])
    faces, last = [], len(verts) - 1
    ring = lambda i, j: 1 + (i - 1) * segments + j % segments  # noqa: E731
    for j in range(segments):
        faces.append([0, ring(1, j + 1), ring(1, j)])
        faces.append([last, ring(rings - 1, j), ring(rings - 1, j + 1)])
    for i in range(1, rings - 1):
        for j in range(segments):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [[a, b, d], [a, d, c]]
    return np.asarray(verts), np.asarray(faces, dtype=np.int64)


@dataclass
class BodyOutput:
    """What the body model gives for a batch (...,): all in the world frame, metres."""

    joints: torch.Tensor  # (..., 17, 3) H36M-17
    keypoints: torch.Tensor  # (..., 17, 3) COCO-17
    vertices: torch.Tensor  # (..., V, 3)
    part_centres: torch.Tensor  # (..., K, 3)
    # (..., K, 3, 3): columns = the ellipsoid's semi-axes (a surface point is c + A u, |u| = 1); None for a
    # mesh body (nets/smpl.py), whose parts are not ellipsoids
    part_axes: Optional[torch.Tensor]
    rotations: torch.Tensor  # (..., 17, 3, 3) world rotation of every joint's frame


def pose_matrices(pose: torch.Tensor, what: str = "pose") -> torch.Tensor:
    """(..., 3) angle-axis or (..., 6) 6D rotations -> (..., 3, 3)."""
    if pose.shape[-1] == 3:
        return axis_angle_to_matrix(pose)
    if pose.shape[-1] == 6:
        return rotation_6d_to_matrix(pose)
    raise UserError(f"{what}: rotations must be angle-axis (..., 3) or 6D (..., 6), got shape {tuple(pose.shape)}")


class ProceduralBody(nn.Module):
    """The embedded body model (module doc). ``forward(pose, betas, global_orient, transl)``."""

    num_joints = NUM_JOINTS
    num_betas = NUM_BETAS
    pose_joints = POSE_JOINTS
    part_names = PART_NAMES

    def __init__(self, rings: int = 8, segments: int = 12) -> None:
        super().__init__()
        self.register_buffer("rest_offsets", torch.tensor(_REST_OFFSETS), persistent=False)
        length_scale = np.zeros((NUM_BETAS, NUM_JOINTS))
        length_scale[0, 1:] = _HEIGHT_STD
        for beta, joints in ((1, _LEGS), (2, _TORSO), (3, _ARMS), (4, _SHOULDERS), (5, _HIPS)):
            length_scale[beta, list(joints)] = _LENGTH_STD[beta]
        self.register_buffer("length_scale", torch.tensor(length_scale), persistent=False)
        align = [_axis_to(_REST_OFFSETS[p.child] if p.child != p.joint else np.asarray(p.axis)) for p in PARTS]
        self.register_buffer("align", torch.tensor(np.stack(align)), persistent=False)
        sphere, faces = sphere_mesh(rings, segments)
        self.register_buffer("sphere", torch.tensor(sphere), persistent=False)
        n = len(sphere)
        self.register_buffer("faces", torch.tensor(np.concatenate([faces + k * n for k in range(NUM_PARTS)])),
                             persistent=False)
        self.register_buffer("vertex_parts", torch.arange(NUM_PARTS).repeat_interleave(n), persistent=False)
        face = torch.tensor([_FACE[name] for name in FACE_NAMES])
        self.register_buffer("face_points", face, persistent=False)

    # ---------------------------------------------------------------- shape
    def offsets(self, betas: torch.Tensor) -> torch.Tensor:
        """(..., 8) -> (..., 17, 3) bone offsets of that body."""
        scale = torch.exp(betas.to(self.length_scale.dtype) @ self.length_scale)  # (..., 17)
        return self.rest_offsets * scale[..., None]

    def girths(self, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., 8) -> limb and torso girth factors (...,), and the overall size factor (...,)."""
        b = betas if betas.is_floating_point() else betas.to(self.rest_offsets.dtype)  # keep the caller's precision
        size = torch.exp(_HEIGHT_STD * b[..., 0])
        return size * torch.exp(_GIRTH_STD * b[..., 6]), size * torch.exp(_GIRTH_STD * b[..., 7]), size

    # --------------------------------------------------------------- forward
    def forward(self, pose: torch.Tensor, betas: Optional[torch.Tensor] = None,
                global_orient: Optional[torch.Tensor] = None, transl: Optional[torch.Tensor] = None) -> BodyOutput:
        if pose.dim() < 2 or pose.shape[-2] != len(POSE_JOINTS):
            raise UserError(f"body model: pose must be (..., {len(POSE_JOINTS)}, 3 or 6), got {tuple(pose.shape)}")
        batch = pose.shape[:-2]
        dtype = self.rest_offsets.dtype if not pose.is_floating_point() else pose.dtype
        local = pose_matrices(pose.to(dtype))
        betas = torch.zeros(*batch, NUM_BETAS, dtype=dtype, device=pose.device) if betas is None else betas.to(dtype)
        root = torch.eye(3, dtype=dtype, device=pose.device).expand(*batch, 3, 3) if global_orient is None \
            else pose_matrices(global_orient.to(dtype), "global_orient")
        transl = torch.zeros(*batch, 3, dtype=dtype, device=pose.device) if transl is None else transl.to(dtype)
        for name, value, tail in (("betas", betas, (NUM_BETAS,)), ("global_orient", root, (3, 3)), ("transl", transl, (3,))):
            if tuple(value.shape) != (*batch, *tail):
                raise UserError(f"body model: {name} must have shape {(*batch, *tail)} for pose {tuple(pose.shape)}, "
                                f"got {tuple(value.shape)}")
        offsets = self.offsets(betas).to(dtype)
        eye = torch.eye(3, dtype=dtype, device=pose.device).expand(*batch, 3, 3)
        local_of = {j: local[..., k, :, :] for k, j in enumerate(POSE_JOINTS)}
        rotations, joints = [root], [transl]
        for j in range(1, NUM_JOINTS):
            parent = PARENTS[j]
            joints.append(joints[parent] + (rotations[parent] @ offsets[..., j, :, None])[..., 0])
            rotations.append(rotations[parent] @ local_of.get(j, eye))
        joints_t, rot_t = torch.stack(joints, -2), torch.stack(rotations, -3)
        centres, axes = self._parts(joints_t, rot_t, offsets, betas)
        vertices = (centres[..., :, None, :] + torch.einsum("...kij,vj->...kvi", axes, self.sphere.to(dtype)))
        head = PART_NAMES.index("head")
        face = joints_t[..., PARTS[head].joint, None, :] + torch.einsum(
            "...ij,fj->...fi", rot_t[..., PARTS[head].joint, :, :], self.face_points.to(dtype)) \
            * self.girths(betas)[2][..., None, None]
        keypoints = coco_keypoints(joints_t, face)
        return BodyOutput(joints_t, keypoints, vertices.flatten(-3, -2), centres, axes, rot_t)

    def _parts(self, joints, rotations, offsets, betas) -> tuple[torch.Tensor, torch.Tensor]:
        limb, torso, size = self.girths(betas)
        centres, axes = [], []
        for k, p in enumerate(PARTS):
            frame = rotations[..., p.joint, :, :]
            bone = offsets[..., p.child, :] if p.child != p.joint else torch.zeros_like(offsets[..., 0, :])
            shift = torch.tensor(p.shift, dtype=joints.dtype, device=joints.device) * size[..., None]
            centres.append(joints[..., p.joint, :] + (frame @ (bone * p.along + shift)[..., None])[..., 0])
            girth = torso if p.torso else limb
            half = 0.5 * p.reach * torch.linalg.vector_norm(bone, dim=-1) if p.length is None else p.length * size
            radii = torch.stack((p.radii[0] * girth, half, p.radii[1] * girth), -1)
            axes.append(frame @ self.align[k].to(joints.dtype) * radii[..., None, :])
        return torch.stack(centres, -2), torch.stack(axes, -3)

    def joint_parts(self, margin: float = 1.2) -> tuple[tuple[int, ...], ...]:
        """For each joint, the parts whose surface may be what a camera sees at it: those the joint
        belongs to, and those of its parent and children containing it (inflated by ``margin``) in the
        rest pose of the mean body."""
        rest = self(self.rest_pose(1))
        u = torch.linalg.solve(rest.part_axes[0], (rest.joints[0, :, None, :] - rest.part_centres[0]).unsqueeze(-1))
        inside = torch.linalg.vector_norm(u[..., 0], dim=-1) <= margin  # (17, K)
        near = [{j, PARENTS[j], *(c for c in range(NUM_JOINTS) if PARENTS[c] == j)} for j in range(NUM_JOINTS)]
        return tuple(tuple(k for k, p in enumerate(PARTS) if j in (p.joint, p.child) or
                           (bool(inside[j, k]) and p.joint in near[j])) for j in range(NUM_JOINTS))

    def rest_pose(self, *batch: int, dtype=torch.float64) -> torch.Tensor:
        """Zero rotations (..., 15, 3): the T-less rest pose with arms hanging."""
        return torch.zeros(*batch, len(POSE_JOINTS), 3, dtype=dtype, device=self.rest_offsets.device)
