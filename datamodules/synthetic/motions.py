"""Parametric human actions for the synthetic people: joint angles that move together, in time.

Each action maps a phase (cycles, any real number) and an amplitude (0..1) to joint angles in
degrees (flexion, abduction, twist per joint) plus how the root travels per cycle. A person's
motion is a sequence of actions, each with its own speed, amplitude and starting phase, cross-faded
where one ends and the next begins, varied per person by a small fixed offset per joint ("style"),
and clamped to the joint limits. Angles become the body model's per-joint rotations
(``nets/body_model.py``: angle-axis, the 15 ``POSE_JOINTS``) and the root's heading and position.

Why this and not independent random angles: a walking hip swings against the other hip and the
opposite shoulder, the knee bends in the swing phase, a squat bends hips, knees and ankles together;
a pose prior trained on these frames has correlations to learn, and temporal terms (smoothness,
constant bone lengths, trajectories) have a real motion to be right about.

Angle conventions (body frame: x = the person's left, y = up, z = forward):
- hip / shoulder ``flex``: limb forward and up (+); ``abduct``: limb out to its own side (+);
  ``twist``: internal rotation (+);
- knee ``flex`` bends the shin backward, elbow ``flex`` the forearm forward, ankle ``flex`` points
  the toes down (+), wrist ``flex`` bends the hand forward;
- spine / thorax / neck ``flex``: bend forward (+); ``abduct``: bend to the left (+); ``twist``:
  turn to the left (+).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from geometry.skeletons import H36M17
from nets.body_model import POSE_JOINTS

JOINT_NAMES = tuple(H36M17.joint_names[j] for j in POSE_JOINTS)

# Joint limits, degrees: (flex, abduct, twist) as (lo, hi) each.
LIMITS = {
    "hip": ((-35.0, 125.0), (-30.0, 70.0), (-40.0, 40.0)),
    "knee": ((0.0, 150.0), (0.0, 0.0), (-5.0, 5.0)),
    "ankle": ((-35.0, 45.0), (-15.0, 15.0), (-15.0, 15.0)),
    "spine": ((-25.0, 50.0), (-30.0, 30.0), (-40.0, 40.0)),
    "thorax": ((-15.0, 30.0), (-15.0, 15.0), (-25.0, 25.0)),
    "neck": ((-40.0, 50.0), (-35.0, 35.0), (-70.0, 70.0)),
    "shoulder": ((-60.0, 180.0), (-20.0, 175.0), (-70.0, 70.0)),
    "elbow": ((0.0, 150.0), (0.0, 0.0), (-10.0, 10.0)),
    "wrist": ((-70.0, 70.0), (-25.0, 25.0), (-30.0, 30.0)),
}


def limit_kind(joint: str) -> str:
    """'left_hip' -> 'hip'; 'neck_nose' -> 'neck'."""
    return joint.split("_")[-1] if joint not in ("spine", "thorax", "neck_nose") else joint.split("_")[0]


def side(joint: str) -> float:
    """+1 for left joints, -1 for right ones, 0 on the midline (abduction and twist mirror)."""
    return 1.0 if joint.startswith("left") else -1.0 if joint.startswith("right") else 0.0


@dataclass(frozen=True)
class Action:
    """``angles(phase, amp)`` -> {joint: (flex, abduct, twist)} (missing joints and entries: 0);
    ``speed``: cycles per second at speed 1; ``stride``: metres the root travels forward per cycle
    at amplitude 1; ``turn``: degrees of heading per cycle at amplitude 1; ``lift(phase, amp)``:
    metres the root rises above ground contact (a jump's flight)."""

    name: str
    angles: Callable[[float, float], dict[str, tuple[float, float, float]]]
    speed: float
    stride: float = 0.0
    turn: float = 0.0
    lift: Callable[[float, float], float] = lambda phase, amp: 0.0


def _wave(phase: float, shift: float = 0.0) -> float:
    return math.sin(2 * math.pi * (phase + shift))


def _rise(phase: float, start: float, end: float) -> float:
    """Smooth 0 -> 1 between ``start`` and ``end`` of a cycle (fraction of the cycle)."""
    x = min(max(((phase % 1.0) - start) / (end - start), 0.0), 1.0)
    return x * x * (3 - 2 * x)


def _bump(phase: float, start: float, end: float) -> float:
    """Smooth 0 -> 1 -> 0 over [start, end] of a cycle."""
    x = ((phase % 1.0) - start) / (end - start)
    return math.sin(math.pi * x) ** 2 if 0.0 <= x <= 1.0 else 0.0


def _hold(phase: float, up: float, down: float) -> float:
    """0 -> 1 until ``up``, held, 1 -> 0 from ``down`` to the end of the cycle."""
    return _rise(phase, 0.0, up) * (1.0 - _rise(phase, down, 1.0))


def walk(p: float, a: float) -> dict:
    s = _wave(p)
    return {
        "right_hip": (28 * a * s, 3, 0), "left_hip": (-28 * a * s, 3, 0),
        "right_knee": (5 + 32 * a * (1 + _wave(p, 0.17)), 0, 0), "left_knee": (5 + 32 * a * (1 + _wave(p, 0.67)), 0, 0),
        "right_ankle": (10 * a * _wave(p, -0.15), 0, 0), "left_ankle": (10 * a * _wave(p, 0.35), 0, 0),
        "right_shoulder": (-24 * a * s, 8, 0), "left_shoulder": (24 * a * s, 8, 0),
        "right_elbow": (18 + 14 * a * (1 - s), 0, 0), "left_elbow": (18 + 14 * a * (1 + s), 0, 0),
        "spine": (4, 0, 7 * a * s), "thorax": (0, 0, -5 * a * s), "neck_nose": (-3, 0, -2 * a * s),
    }


def run(p: float, a: float) -> dict:
    s = _wave(p)
    return {
        "right_hip": (10 + 42 * a * s, 4, 0), "left_hip": (10 - 42 * a * s, 4, 0),
        "right_knee": (25 + 50 * a * (1 + _wave(p, 0.2)), 0, 0), "left_knee": (25 + 50 * a * (1 + _wave(p, 0.7)), 0, 0),
        "right_ankle": (15 * a * _wave(p, -0.1), 0, 0), "left_ankle": (15 * a * _wave(p, 0.4), 0, 0),
        "right_shoulder": (-40 * a * s, 12, 0), "left_shoulder": (40 * a * s, 12, 0),
        "right_elbow": (85 + 10 * s, 0, 0), "left_elbow": (85 - 10 * s, 0, 0),
        "spine": (10 + 4 * a, 0, 10 * a * s), "thorax": (2, 0, -6 * a * s), "neck_nose": (-10, 0, 0),
    }


def squat(p: float, a: float) -> dict:
    g = a * (1 - math.cos(2 * math.pi * p)) / 2
    return {
        "right_hip": (100 * g, 12 * g, 0), "left_hip": (100 * g, 12 * g, 0),
        "right_knee": (125 * g, 0, 0), "left_knee": (125 * g, 0, 0),
        "right_ankle": (-28 * g, 0, 0), "left_ankle": (-28 * g, 0, 0),
        "spine": (30 * g, 0, 0), "neck_nose": (-20 * g, 0, 0),
        "right_shoulder": (85 * g, 5, 0), "left_shoulder": (85 * g, 5, 0),
        "right_elbow": (10 + 10 * g, 0, 0), "left_elbow": (10 + 10 * g, 0, 0),
    }


def jump(p: float, a: float) -> dict:
    crouch = a * (_bump(p, 0.0, 0.42) + 0.7 * _bump(p, 0.75, 1.0))
    arms = -45 * _bump(p, 0.05, 0.4) + 160 * a * _bump(p, 0.3, 0.85)
    tuck = 30 * a * _bump(p, 0.45, 0.7)
    return {
        "right_hip": (75 * crouch + tuck, 6, 0), "left_hip": (75 * crouch + tuck, 6, 0),
        "right_knee": (100 * crouch + 1.5 * tuck, 0, 0), "left_knee": (100 * crouch + 1.5 * tuck, 0, 0),
        "right_ankle": (-25 * crouch + 30 * _bump(p, 0.38, 0.7), 0, 0),
        "left_ankle": (-25 * crouch + 30 * _bump(p, 0.38, 0.7), 0, 0),
        "spine": (30 * crouch, 0, 0), "neck_nose": (-15 * crouch, 0, 0),
        "right_shoulder": (arms, 10, 0), "left_shoulder": (arms, 10, 0),
        "right_elbow": (15, 0, 0), "left_elbow": (15, 0, 0),
    }


def jump_lift(p: float, a: float) -> float:
    x = ((p % 1.0) - 0.42) / 0.33
    return 0.4 * a * 4 * x * (1 - x) if 0.0 <= x <= 1.0 else 0.0


def wave_hand(p: float, a: float) -> dict:
    w = _wave(2 * p)
    return {
        "right_shoulder": (20, 120 + 25 * a, 10), "right_elbow": (55 + 35 * a * w, 0, 0),
        "right_wrist": (15 * a * w, 0, 0), "left_shoulder": (5, 8, 0), "left_elbow": (15, 0, 0),
        "spine": (0, 5 * a * _wave(p), 5), "neck_nose": (5, 0, -12 * a),
        "right_hip": (0, 4, 0), "left_hip": (0, 4, 0), "right_knee": (4, 0, 0), "left_knee": (4, 0, 0),
    }


def reach(p: float, a: float) -> dict:
    g = a * _hold(p, 0.4, 0.6)
    return {
        "right_shoulder": (20 + 115 * g, 15 * g, 0), "left_shoulder": (45 * g, 10, 0),
        "right_elbow": (35 * (1 - g) + 5, 0, 0), "left_elbow": (40, 0, 0),
        "right_wrist": (-20 * g, 0, 0), "spine": (35 * g, -8 * g, 12 * g), "thorax": (8 * g, 0, 6 * g),
        "neck_nose": (-15 * g, 0, 0), "right_hip": (25 * g, 5, 0), "left_hip": (25 * g, 5, 0),
        "right_knee": (20 * g, 0, 0), "left_knee": (20 * g, 0, 0),
        "right_ankle": (-8 * g, 0, 0), "left_ankle": (-8 * g, 0, 0),
    }


def sit_down(p: float, a: float) -> dict:
    g = (0.6 + 0.4 * a) * _hold(p, 0.35, 0.65)
    lean = 25 * _bump(p, 0.1, 0.45) + 25 * _bump(p, 0.55, 0.9)
    return {
        "right_hip": (90 * g + 0.3 * lean, 10 * g, 0), "left_hip": (90 * g + 0.3 * lean, 10 * g, 0),
        "right_knee": (95 * g, 0, 0), "left_knee": (95 * g, 0, 0),
        "right_ankle": (-12 * g, 0, 0), "left_ankle": (-12 * g, 0, 0),
        "spine": (lean + 5 * g, 0, 0), "neck_nose": (-0.5 * lean, 0, 0),
        "right_shoulder": (35 * g + 0.6 * lean, 12, 0), "left_shoulder": (35 * g + 0.6 * lean, 12, 0),
        "right_elbow": (40 * g + 10, 0, 0), "left_elbow": (40 * g + 10, 0, 0),
    }


def turn(p: float, a: float) -> dict:
    s = _wave(2 * p)
    return {
        "right_hip": (15 * s, 8, -10 * a), "left_hip": (-15 * s, 8, 10 * a),
        "right_knee": (10 + 20 * max(s, 0.0), 0, 0), "left_knee": (10 + 20 * max(-s, 0.0), 0, 0),
        "right_shoulder": (-10 * s, 12, 0), "left_shoulder": (10 * s, 12, 0),
        "right_elbow": (25, 0, 0), "left_elbow": (25, 0, 0),
        "spine": (3, 0, 15 * a), "neck_nose": (0, 0, 25 * a),
    }


def kick(p: float, a: float) -> dict:
    chamber = _bump(p, 0.15, 0.55)
    strike = _bump(p, 0.35, 0.75)
    return {
        "right_hip": (95 * a * max(chamber, strike), 5, 0), "right_knee": (100 * chamber * (1 - strike) + 5, 0, 0),
        "right_ankle": (25 * strike, 0, 0), "left_knee": (12 * strike, 0, 0), "left_hip": (8 * strike, 5, 0),
        "spine": (-12 * a * strike, 6 * strike, 0), "neck_nose": (10 * strike, 0, 0),
        "right_shoulder": (-20 * strike, 35 * a, 0), "left_shoulder": (45 * a * strike, 30 * a, 0),
        "right_elbow": (50, 0, 0), "left_elbow": (50, 0, 0),
    }


def stand(p: float, a: float) -> dict:
    s = _wave(p)
    return {
        "spine": (2 + 2 * s, 2 * a * _wave(p, 0.3), 4 * a * s), "neck_nose": (3, 0, 15 * a * _wave(p, 0.1)),
        "right_shoulder": (3, 6 + 3 * s, 0), "left_shoulder": (3, 6 - 3 * s, 0),
        "right_elbow": (12, 0, 0), "left_elbow": (12, 0, 0),
        "right_hip": (2 * s, 4 + 3 * a * s, 0), "left_hip": (-2 * s, 4 - 3 * a * s, 0),
        "right_knee": (5 + 4 * max(s, 0.0), 0, 0), "left_knee": (5 + 4 * max(-s, 0.0), 0, 0),
    }


ACTIONS = {a.name: a for a in (
    Action("walk", walk, speed=0.9, stride=1.45),
    Action("run", run, speed=1.4, stride=2.8),
    Action("squat", squat, speed=0.35),
    Action("jump", jump, speed=0.6, stride=0.3, lift=jump_lift),
    Action("wave", wave_hand, speed=0.5),
    Action("reach", reach, speed=0.35),
    Action("sit_down", sit_down, speed=0.22),
    Action("turn", turn, speed=0.3, turn=200.0),
    Action("kick", kick, speed=0.5),
    Action("stand", stand, speed=0.2),
)}
ACTION_NAMES = tuple(ACTIONS)


@dataclass(frozen=True)
class Segment:
    """One action of a motion: from ``start`` seconds, at ``speed`` x the action's own rate."""

    action: str
    start: float
    speed: float
    amplitude: float
    phase: float


def angles_at(segments: list[Segment], t: float, crossfade: float) -> tuple[np.ndarray, float, float, float]:
    """Joint angles (15, 3) degrees, forward speed (m/s), turn rate (deg/s) and lift (m) at time t,
    cross-fading linearly over ``crossfade`` seconds after each segment change."""
    k = max(i for i, s in enumerate(segments) if s.start <= t) if t >= segments[0].start else 0
    parts = [(segments[k], 1.0)]
    if k > 0 and t - segments[k].start < crossfade:
        w = (t - segments[k].start) / crossfade
        parts = [(segments[k - 1], 1.0 - w), (segments[k], w)]
    angles = np.zeros((len(JOINT_NAMES), 3))
    speed = turn_rate = lift = 0.0
    for seg, w in parts:
        action = ACTIONS[seg.action]
        phase = seg.phase + (t - seg.start) * action.speed * seg.speed
        values = action.angles(phase, seg.amplitude)
        for j, name in enumerate(JOINT_NAMES):
            angles[j] += w * np.asarray(values.get(name, (0.0, 0.0, 0.0)), dtype=np.float64)
        rate = action.speed * seg.speed
        speed += w * action.stride * seg.amplitude * rate
        turn_rate += w * action.turn * seg.amplitude * rate
        lift += w * action.lift(phase, seg.amplitude)
    return angles, speed, turn_rate, lift


def clamp_to_limits(angles: np.ndarray) -> np.ndarray:
    """(..., 15, 3) degrees clipped to ``LIMITS`` joint by joint."""
    out = angles.copy()
    for j, name in enumerate(JOINT_NAMES):
        lim = np.asarray(LIMITS[limit_kind(name)])
        out[..., j, :] = np.clip(out[..., j, :], lim[:, 0], lim[:, 1])
    return out


def _rx(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


# Sign of each angle's rotation about x / z / y so that (+) means what the module doc says.
def _signs(joint: str) -> tuple[float, float, float]:
    kind, lr = limit_kind(joint), side(joint)
    if kind in ("hip", "shoulder", "elbow", "wrist"):
        flex = -1.0  # a limb hanging down swings forward under a negative x rotation
    elif kind == "ankle":
        flex = 1.0  # toes (forward, +z) point down under a positive x rotation
    elif kind == "knee":
        flex = 1.0  # the shin swings backward
    else:
        flex = 1.0  # spine, thorax, neck: an upward bone bends forward
    abduct = lr if lr else -1.0  # limbs: out to their own side; midline: bend to the left
    twist = -lr if lr else 1.0
    return flex, abduct, twist


_SIGNS = np.array([_signs(name) for name in JOINT_NAMES])  # (15, 3)


def local_rotations(angles: np.ndarray) -> np.ndarray:
    """(..., 15, 3) degrees (flex, abduct, twist) -> (..., 15, 3, 3) joint rotations R_x R_z R_y."""
    rad = np.deg2rad(angles) * _SIGNS
    return _rx(rad[..., 0]) @ _rz(rad[..., 1]) @ _ry(rad[..., 2])


def heading_rotation(yaw: np.ndarray, pitch: np.ndarray | float = 0.0) -> np.ndarray:
    """(...,) radians -> (..., 3, 3): turn about the world up axis, then lean forward (+ pitch)."""
    yaw = np.asarray(yaw, dtype=np.float64)
    return _ry(yaw) @ _rx(np.broadcast_to(np.asarray(pitch, dtype=np.float64), yaw.shape))
