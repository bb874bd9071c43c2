"""Synthetic 2D/3D human poses (H36M-17) for training and adapting pose lifters.

A pose is built by forward kinematics on the H36M tree: a rest skeleton whose bone
lengths come from a sampled body height and per-limb proportions, joint rotations
drawn inside per-group angle ranges, a body yaw and lean. The person stands on the
ground (y = 0 of a y-up world); a pinhole camera at a sampled horizontal distance
and height looks at the pelvis. The camera-frame pose is projected to pixels and
normalised like VideoPose3D (``geometry/camera.py``: u / w * 2 - 1, v / w * 2 - h / w).

Everything a domain shift consists of (pose range, proportions, viewpoint, camera)
is one ``SyntheticPoseDomain``; ``LAB`` (source) and ``WILD`` (target) are defaults.
Each sample depends only on (seed, index), so any worker, rank or resumed run sees
the same data.

Angles in the domain are degrees; conventions (person frame: x = person's left,
y = up, z = facing direction):
- hip/shoulder flexion: limb forward (+) / backward (-) in the sagittal plane;
- hip/shoulder abduction: limb sideways away from the body (+);
- hip/shoulder twist: internal rotation (+) about the limb axis;
- knee flexion bends the shin backward, elbow flexion the forearm forward (>= 0);
- spine bend forward (+), side bend, twist; neck bend forward (+), twist;
- body lean: the whole body pitched forward (+); body yaw 0 faces the camera.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from framework.config import dataclass_from
from framework.checks import Span, Within, at_least, check, fraction, positive
from geometry.skeletons import H36M17

PARENTS = H36M17.parents
NUM_JOINTS = H36M17.num_joints

# Rest pose in the person frame (x left, y up, z forward): arms hanging, legs straight.
# Each row is the unit direction of the bone that ends at that joint.
_REST = np.array([
    [0.0, 0.0, 0.0],      # pelvis (root)
    [-1.0, 0.0, 0.0],     # right_hip
    [0.0, -1.0, 0.0],     # right_knee
    [0.0, -1.0, 0.0],     # right_ankle
    [1.0, 0.0, 0.0],      # left_hip
    [0.0, -1.0, 0.0],     # left_knee
    [0.0, -1.0, 0.0],     # left_ankle
    [0.0, 1.0, 0.0],      # spine
    [0.0, 1.0, 0.0],      # thorax
    [0.0, 0.85, 0.5],     # neck_nose: up and forward of the thorax
    [0.0, 0.95, -0.3],    # head (top): up and slightly back of the nose
    [1.0, -0.05, 0.0],    # left_shoulder
    [0.0, -1.0, 0.0],     # left_elbow
    [0.0, -1.0, 0.0],     # left_wrist
    [-1.0, -0.05, 0.0],   # right_shoulder
    [0.0, -1.0, 0.0],     # right_elbow
    [0.0, -1.0, 0.0],     # right_wrist
])
REST_DIRECTIONS = np.zeros_like(_REST)
REST_DIRECTIONS[1:] = _REST[1:] / np.linalg.norm(_REST[1:], axis=1, keepdims=True)

# Bone lengths (m) of a ~1.70 m adult, roughly the Human3.6M average, before scaling.
BASE_BONE_LENGTHS = np.array([
    0.0, 0.13, 0.44, 0.43, 0.13, 0.44, 0.43, 0.23, 0.25, 0.12, 0.115, 0.15, 0.28, 0.25, 0.15, 0.28, 0.25,
])
BASE_FOOT_HEIGHT = 0.08  # ankle above the ground, scales with the legs

# Which proportion multiplier acts on each bone ("head" bones have none).
BONE_GROUP = ("root", "width", "leg", "leg", "width", "leg", "leg", "torso", "torso", "head", "head",
              "width", "arm", "arm", "width", "arm", "arm")
# One jitter factor per left/right bone pair (people are nearly symmetric).
JITTER_SLOT = (-1, 0, 1, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 7, 8, 9)
NUM_JITTER = 10

# Anatomical hard limits (degrees); scaled ranges are clipped into them.
HARD_LIMITS = {
    "hip_flexion": (-40.0, 135.0), "hip_abduction": (-20.0, 70.0), "hip_twist": (-60.0, 60.0),
    "knee_flexion": (0.0, 160.0), "spine_bend": (-30.0, 90.0), "spine_side": (-40.0, 40.0),
    "spine_twist": (-60.0, 60.0), "neck_bend": (-50.0, 60.0), "neck_twist": (-80.0, 80.0),
    "shoulder_flexion": (-60.0, 180.0), "shoulder_abduction": (0.0, 90.0),
    "shoulder_twist": (-90.0, 90.0), "elbow_flexion": (0.0, 160.0), "body_lean": (-30.0, 60.0),
}
CROUCH_LIMITS = {"crouch_hip_flexion": "hip_flexion", "crouch_knee_flexion": "knee_flexion"}


@dataclass
class SyntheticPoseDomain:
    """One domain's parameters; every [lo, hi] pair is sampled uniformly."""

    name: str = "lab"
    # --- pose: joint-angle ranges in degrees, multiplied by pose_range, clipped to HARD_LIMITS
    pose_range: float = 1.0
    hip_flexion: list[float] = field(default_factory=lambda: [-20.0, 40.0])
    hip_abduction: list[float] = field(default_factory=lambda: [-5.0, 20.0])
    hip_twist: list[float] = field(default_factory=lambda: [-15.0, 15.0])
    knee_flexion: list[float] = field(default_factory=lambda: [0.0, 45.0])
    spine_bend: list[float] = field(default_factory=lambda: [-5.0, 15.0])
    spine_side: list[float] = field(default_factory=lambda: [-8.0, 8.0])
    spine_twist: list[float] = field(default_factory=lambda: [-15.0, 15.0])
    neck_bend: list[float] = field(default_factory=lambda: [-15.0, 20.0])
    neck_twist: list[float] = field(default_factory=lambda: [-30.0, 30.0])
    shoulder_flexion: list[float] = field(default_factory=lambda: [-30.0, 60.0])
    shoulder_abduction: list[float] = field(default_factory=lambda: [5.0, 40.0])
    shoulder_twist: list[float] = field(default_factory=lambda: [-20.0, 40.0])
    elbow_flexion: list[float] = field(default_factory=lambda: [0.0, 90.0])
    body_lean: list[float] = field(default_factory=lambda: [-5.0, 10.0])
    # 0: legs and arms independent; 1: legs in opposite phase, arms counter-swinging (walking)
    gait_coupling: float = 0.6
    # share of sitting/crouching samples; their hip/knee angles ignore pose_range
    crouch_probability: float = 0.1
    crouch_hip_flexion: list[float] = field(default_factory=lambda: [70.0, 100.0])
    crouch_knee_flexion: list[float] = field(default_factory=lambda: [70.0, 110.0])
    # --- body proportions
    height: list[float] = field(default_factory=lambda: [1.55, 1.85])  # standing height (m)
    leg_scale: float = 1.0
    arm_scale: float = 1.0
    torso_scale: float = 1.0
    width_scale: float = 1.0  # shoulder and hip width
    bone_jitter: float = 0.03  # sigma of the per-sample multiplicative jitter of each bone (pair)
    # --- viewpoint and camera
    body_yaw: list[float] = field(default_factory=lambda: [-180.0, 180.0])  # degrees, 0 faces the camera
    camera_distance: list[float] = field(default_factory=lambda: [4.0, 6.0])  # horizontal, to the pelvis (m)
    camera_height: list[float] = field(default_factory=lambda: [1.0, 1.6])  # above the ground (m)
    camera_roll: list[float] = field(default_factory=lambda: [0.0, 0.0])  # degrees about the optical axis
    look_at_jitter: float = 0.05  # sigma (m) of the look-at point around the pelvis
    focal_length: list[float] = field(default_factory=lambda: [1100.0, 1200.0])  # px
    image_width: int = 1000
    image_height: int = 1000
    noise_2d: float = 0.0  # sigma (px) of Gaussian noise on the 2D joints
    # consecutive samples forming one recording: the same person (height, proportions) filmed by the
    # same camera (distance, height, roll, focal length); 1 draws every sample independently
    sequence_length: int = 1


def lab_domain() -> SyntheticPoseDomain:
    """Source domain: mostly upright poses, chest-height cameras 4-6 m away (H36M-like)."""
    return SyntheticPoseDomain()


def wild_domain() -> SyntheticPoseDomain:
    """Target domain: bending, crouching, raised arms; cameras from the floor to above the
    head (looking up and down); longer legs and a shorter torso; wider distances."""
    return SyntheticPoseDomain(
        name="wild",
        hip_flexion=[-25.0, 60.0], hip_abduction=[-10.0, 30.0], hip_twist=[-25.0, 25.0],
        knee_flexion=[0.0, 80.0], spine_bend=[-10.0, 35.0], spine_side=[-15.0, 15.0],
        spine_twist=[-25.0, 25.0], neck_bend=[-25.0, 35.0], neck_twist=[-45.0, 45.0],
        shoulder_flexion=[-40.0, 120.0], shoulder_abduction=[5.0, 70.0], shoulder_twist=[-30.0, 50.0],
        elbow_flexion=[0.0, 110.0], body_lean=[-10.0, 20.0],
        gait_coupling=0.4, crouch_probability=0.2,
        crouch_hip_flexion=[60.0, 110.0], crouch_knee_flexion=[60.0, 130.0],
        height=[1.5, 1.95], leg_scale=1.1, arm_scale=1.05, torso_scale=0.88, width_scale=1.1,
        bone_jitter=0.04,
        camera_distance=[3.0, 8.0], camera_height=[0.2, 3.0], camera_roll=[-8.0, 8.0],
        look_at_jitter=0.15, focal_length=[1700.0, 3100.0], image_width=1920, image_height=1080,
    )


LAB = lab_domain()
WILD = wild_domain()

_ANGLE_FIELDS = tuple(HARD_LIMITS)
_RANGE_FIELDS = _ANGLE_FIELDS + tuple(CROUCH_LIMITS) + (
    "height", "body_yaw", "camera_distance", "camera_height", "camera_roll", "focal_length")


def as_domain(domain: Any) -> SyntheticPoseDomain:
    """Accept a SyntheticPoseDomain, an OmegaConf node or a plain dict."""
    return dataclass_from(SyntheticPoseDomain, domain, "synthetic pose domain")


def validate_domain(domain: SyntheticPoseDomain, key: str = "synthetic") -> None:
    """Raise one UserError naming the first bad field (``key.field``)."""
    check(domain, key, **{name: Span() for name in _RANGE_FIELDS})
    # the nearest camera 1.5 m away at least, so the whole body stays in front of it
    check(domain, key, height=Span(0, open_low=True), focal_length=Span(0, open_low=True), image_width=positive(),
          image_height=positive(), sequence_length=positive(), camera_distance=Span(1.5), pose_range=positive(),
          leg_scale=positive(), arm_scale=positive(), torso_scale=positive(), width_scale=positive(),
          gait_coupling=fraction(), crouch_probability=fraction(), bone_jitter=Within(0, 0.2),  # a relative sigma
          look_at_jitter=at_least(0), noise_2d=at_least(0))


def effective_angle_ranges(domain: SyntheticPoseDomain) -> dict[str, tuple[float, float]]:
    """Degrees actually sampled: pose_range-scaled ranges clipped to the hard limits."""
    out = {}
    for name, (lo_lim, hi_lim) in HARD_LIMITS.items():
        lo, hi = (float(v) * domain.pose_range for v in getattr(domain, name))
        out[name] = (float(np.clip(lo, lo_lim, hi_lim)), float(np.clip(hi, lo_lim, hi_lim)))
    for name, limit_name in CROUCH_LIMITS.items():
        lo_lim, hi_lim = HARD_LIMITS[limit_name]
        lo, hi = (float(v) for v in getattr(domain, name))
        out[name] = (float(np.clip(lo, lo_lim, hi_lim)), float(np.clip(hi, lo_lim, hi_lim)))
    return out


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def standing_height(lengths: np.ndarray, foot: float) -> float:
    """Ground to head top of the rest pose (legs, spine and head stacked vertically)."""
    d = REST_DIRECTIONS
    return float(foot + lengths[2] + lengths[3] + lengths[7] + lengths[8]
                 + lengths[9] * d[9, 1] + lengths[10] * d[10, 1])


def bone_lengths(domain: SyntheticPoseDomain, height: float, jitter: np.ndarray) -> tuple[np.ndarray, float]:
    """Bone lengths (17,) (entry j: bone parent(j) -> j) and foot height for a body of ``height``.

    Proportions come from the group multipliers times ``1 + bone_jitter * jitter`` per
    bone pair; the whole skeleton is then scaled so the rest pose is ``height`` tall.
    """
    scale = {"root": 0.0, "head": 1.0, "leg": domain.leg_scale, "arm": domain.arm_scale,
             "torso": domain.torso_scale, "width": domain.width_scale}
    factors = 1.0 + domain.bone_jitter * np.clip(jitter, -2.5, 2.5)
    lengths = np.array([BASE_BONE_LENGTHS[j] * scale[BONE_GROUP[j]] * (factors[JITTER_SLOT[j]] if j else 0.0)
                        for j in range(NUM_JOINTS)])
    foot = BASE_FOOT_HEIGHT * domain.leg_scale
    s = height / standing_height(lengths, foot)
    return lengths * s, foot * s


def forward_kinematics(lengths: np.ndarray, local: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Joint positions (17, 3) with the pelvis at the origin.

    ``local[j]`` rotates the bone ending at joint j (and everything below it) in its
    parent's frame; ``root`` orients the whole body.
    """
    frames = np.empty((NUM_JOINTS, 3, 3))
    pos = np.zeros((NUM_JOINTS, 3))
    frames[0] = root
    for j in range(1, NUM_JOINTS):  # H36M order lists every parent before its children
        p = PARENTS[j]
        frames[j] = frames[p] @ local[j]
        pos[j] = pos[p] + frames[j] @ (REST_DIRECTIONS[j] * lengths[j])
    return pos


def look_at(position: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """World (y up) -> OpenCV camera rotation (rows: right, down, forward)."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, np.array([0.0, 1.0, 0.0]))
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    return rot_z(roll) @ np.stack([right, down, forward])


# Uniform draws per sample, by slot.
_U = {name: k for k, name in enumerate((
    "crouch", "leg_phase_l", "leg_phase_r", "hip_abd_l", "hip_abd_r", "hip_twist_l", "hip_twist_r",
    "knee_l", "knee_r", "crouch_hip", "crouch_knee", "crouch_hip_d", "crouch_knee_d",
    "spine_bend", "spine_side", "spine_twist", "neck_bend", "neck_twist",
    "sh_flex_l", "sh_flex_r", "sh_abd_l", "sh_abd_r", "sh_twist_l", "sh_twist_r", "elbow_l", "elbow_r",
    "lean", "height", "yaw", "distance", "cam_height", "focal", "roll"))}


# latent draws shared by all samples of one recording (see SyntheticPoseDomain.sequence_length)
SEQUENCE_SLOTS = ("height", "distance", "cam_height", "focal", "roll")


class SyntheticPoseDataset(Dataset):
    """``length`` poses of one domain; sample i is a pure function of (seed, i).

    Items (the batch keys of ``datamodules/pose_lifting.py``): ``pose2d`` (17, 2) normalised screen coordinates,
    ``pose3d`` (17, 3) root-relative camera-frame metres, ``index`` int64, plus
    ``camera`` (4,) = (f_x, f_y, c_x, c_y) in normalised screen units (so
    pose2d = f * X / Z + c for the camera-frame joints X = pose3d + root_position,
    exactly when noise_2d = 0), ``root_position`` (3,) camera-frame pelvis (m) and
    ``root_depth`` (its z, a scalar).
    """

    def __init__(self, domain: Any = None, length: int = 1000, seed: int = 0, key: str = "synthetic") -> None:
        self.domain = as_domain(LAB if domain is None else domain)
        validate_domain(self.domain, key)
        check({"length": length, "seed": seed}, "SyntheticPoseDataset", length=at_least(0), seed=at_least(0))
        self.length = int(length)
        self.seed = int(seed)
        self.ranges = {k: tuple(math.radians(v) for v in r) for k, r in effective_angle_ranges(self.domain).items()}
        # an item depends on (seed, index) only, so every epoch after the first reads it back: generating a
        # sample costs about as much as a training step of the quick lifter on it (~0.7 ms, numpy-bound)
        self._items: dict[int, dict[str, torch.Tensor]] = {}

    def __len__(self) -> int:
        return self.length

    def _angle(self, name: str, u: float) -> float:
        lo, hi = self.ranges[name]
        return lo + u * (hi - lo)

    def _local_rotations(self, u: np.ndarray) -> tuple[np.ndarray, bool]:
        d = self.domain
        c = d.gait_coupling
        local = np.tile(np.eye(3), (NUM_JOINTS, 1, 1))
        crouch = u[_U["crouch"]] < d.crouch_probability
        phase_l = u[_U["leg_phase_l"]]
        phase_r = (1 - c) * u[_U["leg_phase_r"]] + c * (1 - phase_l)
        if crouch:
            lo, hi = self.ranges["crouch_hip_flexion"]
            hip_common = self._angle("crouch_hip_flexion", u[_U["crouch_hip"]])
            knee_common = self._angle("crouch_knee_flexion", u[_U["crouch_knee"]])
            hip_d = 0.15 * (hi - lo) * (u[_U["crouch_hip_d"]] - 0.5)
            klo, khi = self.ranges["crouch_knee_flexion"]
            knee_d = 0.15 * (khi - klo) * (u[_U["crouch_knee_d"]] - 0.5)
            hip_flex = (float(np.clip(hip_common + hip_d, lo, hi)), float(np.clip(hip_common - hip_d, lo, hi)))
            knee = (float(np.clip(knee_common + knee_d, klo, khi)), float(np.clip(knee_common - knee_d, klo, khi)))
        else:
            hip_flex = (self._angle("hip_flexion", phase_l), self._angle("hip_flexion", phase_r))
            knee = (self._angle("knee_flexion", u[_U["knee_l"]]), self._angle("knee_flexion", u[_U["knee_r"]]))
        # side: (left, right) with the sign that makes +abduction outward and +twist internal
        for k, (thigh, shin, side) in enumerate(((5, 6, 1.0), (2, 3, -1.0))):
            suffix = "lr"[k]
            abd = self._angle("hip_abduction", u[_U["hip_abd_" + suffix]])
            twist = self._angle("hip_twist", u[_U["hip_twist_" + suffix]])
            local[thigh] = rot_x(-hip_flex[k]) @ rot_z(side * abd) @ rot_y(-side * twist)
            local[shin] = rot_x(knee[k])
        bend = self._angle("spine_bend", u[_U["spine_bend"]])
        lateral = self._angle("spine_side", u[_U["spine_side"]])
        twist = self._angle("spine_twist", u[_U["spine_twist"]])
        half = rot_x(bend / 2) @ rot_z(lateral / 2) @ rot_y(twist / 2)
        local[7] = half
        local[8] = half
        local[9] = rot_x(self._angle("neck_bend", u[_U["neck_bend"]])) @ rot_y(self._angle("neck_twist", u[_U["neck_twist"]]))
        # arms swing against the opposite leg when gait_coupling > 0
        arm_phase = ((1 - c) * u[_U["sh_flex_l"]] + c * phase_r, (1 - c) * u[_U["sh_flex_r"]] + c * phase_l)
        for k, (upper, fore, side) in enumerate(((12, 13, 1.0), (15, 16, -1.0))):
            suffix = "lr"[k]
            flex = self._angle("shoulder_flexion", arm_phase[k])
            abd = self._angle("shoulder_abduction", u[_U["sh_abd_" + suffix]])
            twist = self._angle("shoulder_twist", u[_U["sh_twist_" + suffix]])
            local[upper] = rot_x(-flex) @ rot_z(side * abd) @ rot_y(-side * twist)
            local[fore] = rot_x(-self._angle("elbow_flexion", u[_U["elbow_" + suffix]]))
        return local, bool(crouch)

    def generate(self, index: int) -> dict[str, Any]:
        """All arrays of sample ``index`` plus the latent parameters that made it (numpy)."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for a dataset of {self.length}")
        d = self.domain
        rng = np.random.default_rng([self.seed, int(index)])
        u = rng.random(len(_U))
        jitter = rng.standard_normal(NUM_JITTER)
        look_jitter = rng.standard_normal(3) * d.look_at_jitter
        noise = rng.standard_normal((NUM_JOINTS, 2)) * d.noise_2d
        if d.sequence_length > 1:
            recording = np.random.default_rng([self.seed, 1, int(index) // d.sequence_length])
            shared = recording.random(len(_U))
            for slot in SEQUENCE_SLOTS:
                u[_U[slot]] = shared[_U[slot]]
            jitter = recording.standard_normal(NUM_JITTER)
            look_jitter = recording.standard_normal(3) * d.look_at_jitter

        def pick(name: str, slot: str) -> float:
            lo, hi = getattr(d, name)
            return float(lo) + u[_U[slot]] * (float(hi) - float(lo))

        height = pick("height", "height")
        lengths, foot = bone_lengths(d, height, jitter)
        local, crouch = self._local_rotations(u)
        yaw = math.radians(pick("body_yaw", "yaw"))
        lean = self._angle("body_lean", u[_U["lean"]])
        body = forward_kinematics(lengths, local, rot_y(math.pi + yaw) @ rot_x(lean))
        # stand on the ground: lowest ankle at foot height
        pelvis_height = foot - min(body[3, 1], body[6, 1])
        world = body + np.array([0.0, pelvis_height, 0.0])

        distance = pick("camera_distance", "distance")
        cam_height = pick("camera_height", "cam_height")
        cam_pos = np.array([0.0, cam_height, -distance])
        target = world[0] + look_jitter
        rotation = look_at(cam_pos, target, math.radians(pick("camera_roll", "roll")))
        cam = (world - cam_pos) @ rotation.T

        focal = pick("focal_length", "focal")
        w, h = float(d.image_width), float(d.image_height)
        px = focal * cam[:, :2] / cam[:, 2:3] + np.array([w / 2, h / 2]) + noise
        pose2d = px / w * 2 - np.array([1.0, h / w])
        f_n = 2 * focal / w
        return {
            "pose2d": pose2d, "pose3d": cam - cam[0], "root_position": cam[0],
            "camera": np.array([f_n, f_n, 0.0, 0.0]),  # principal point at the image centre -> (0, 0)
            "params": {
                "height": height, "bone_lengths": lengths, "foot_height": foot, "crouch": crouch,
                "yaw": yaw, "lean": lean, "camera_distance": distance, "camera_height": cam_height,
                "pelvis_height": pelvis_height, "focal_length": focal,
                # angle of the camera above the pelvis, seen from the pelvis (+: looking down)
                "elevation": math.atan2(cam_height - world[0, 1], distance),
                "min_depth": float(cam[:, 2].min()),
            },
        }

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = int(index)
        item = self._items.get(index)
        if item is None:
            item = self._items[index] = self._make(index)
        return dict(item)

    def _make(self, index: int) -> dict[str, torch.Tensor]:
        s = self.generate(index)
        return {
            "pose2d": torch.from_numpy(s["pose2d"].astype(np.float32)),
            "pose3d": torch.from_numpy(s["pose3d"].astype(np.float32)),
            "index": torch.tensor(int(index), dtype=torch.int64),
            "camera": torch.from_numpy(s["camera"].astype(np.float32)),
            "root_position": torch.from_numpy(s["root_position"].astype(np.float32)),
            "root_depth": torch.tensor(float(s["root_position"][2]), dtype=torch.float32),
        }
