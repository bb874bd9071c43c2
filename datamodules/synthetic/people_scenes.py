"""Synthetic people: the scene of one video (people, their motion and clothing, room, camera).

A video is a pure function of (seed, video): people with a body shape, clothing colours and a
motion (``motions.py``) walk about a textured room filmed by a moving pinhole camera. The scene
holds everything in world coordinates (y up, metres, the floor at y = 0); ``people_render.py``
turns one frame of it into pixels and ground truth.

A domain (``PeopleDomain``) is the parameter set a video is drawn from. The source, ``studio``:
one person doing moderate, common actions in a plainly textured room, the camera at chest height.
The target, ``street``: 1-4 people (who occlude each other), other body shapes and clothing,
faster and less common actions (running, jumping, kicking, sitting down), cameras from knee
height to above the head, a cluttered background, motion blur and sensor noise. Every part of
the shift is something self-supervision can see in the target videos themselves (appearance,
occlusion, shape, viewpoint, pose distribution); none is only motion outside anything the source
shows, since every target action's joints move within the limits the source's actions also use.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

from framework.errors import UserError
from framework.checks import EachOneOf, Span, Within, at_least, check, fraction, positive
from framework.config import dataclass_from
from datamodules.synthetic.motions import (ACTION_NAMES, Segment, angles_at, clamp_to_limits, heading_rotation,
                                           local_rotations)
from nets.body_model import NUM_BETAS, PART_NAMES, ProceduralBody
from geometry.rotations import matrix_to_axis_angle

# Parts dressed by the shirt, the trousers, skin and shoes.
_CLOTHING = {
    "shirt": ("torso", "neck", "left_upper_arm", "right_upper_arm", "left_lower_arm", "right_lower_arm"),
    "trousers": ("pelvis", "left_upper_leg", "right_upper_leg", "left_lower_leg", "right_lower_leg"),
    "skin": ("head", "left_hand", "right_hand"),
    "shoes": ("left_foot", "right_foot"),
}
_GARMENT_OF_PART = np.array([next(i for i, parts in enumerate(_CLOTHING.values()) if name in parts)
                             for name in PART_NAMES])


@dataclass
class PeopleDomain:
    """One domain's parameters; each [lo, hi] pair is sampled uniformly."""

    name: str = "studio"
    width: int = 256
    height: int = 256
    frames: int = 16
    fps: float = 25.0
    # --- people and motion
    people: list[int] = field(default_factory=lambda: [1, 1])  # how many per video
    actions: list[str] = field(default_factory=lambda: ["walk", "wave", "reach", "squat", "turn", "stand"])
    segments: list[int] = field(default_factory=lambda: [1, 2])  # actions per person per video
    speed: list[float] = field(default_factory=lambda: [0.8, 1.2])  # x each action's own rate
    amplitude: list[float] = field(default_factory=lambda: [0.4, 0.8])
    style: float = 4.0  # degrees: sigma of a person's fixed offset of every joint angle
    crossfade: float = 0.5  # seconds over which one action blends into the next
    betas_mean: list[float] = field(default_factory=lambda: [0.0] * NUM_BETAS)
    betas_std: float = 0.5
    spacing: float = 0.9  # metres between people's starting positions, at least
    # --- appearance (colours in 0..255)
    skin: list[float] = field(default_factory=lambda: [90.0, 230.0])  # brightness of the skin tone
    cloth_saturation: list[float] = field(default_factory=lambda: [0.1, 0.45])
    cloth_brightness: list[float] = field(default_factory=lambda: [70.0, 200.0])
    pattern_contrast: list[float] = field(default_factory=lambda: [0.05, 0.25])  # stripes and blotches on clothes
    background_contrast: list[float] = field(default_factory=lambda: [0.1, 0.25])
    clutter: list[int] = field(default_factory=lambda: [0, 3])  # posters / boxes painted on the walls and floor
    # --- camera
    camera_height: list[float] = field(default_factory=lambda: [1.2, 1.5])  # metres above the floor
    camera_distance: list[float] = field(default_factory=lambda: [3.5, 5.0])  # to the people, horizontally
    focal: list[float] = field(default_factory=lambda: [0.9, 1.2])  # focal length / image width
    camera_pan: list[float] = field(default_factory=lambda: [-4.0, 4.0])  # degrees per second of yaw
    camera_drift: list[float] = field(default_factory=lambda: [0.0, 0.3])  # metres per second, sideways
    # --- sensor
    motion_blur: float = 0.0  # exposure as a fraction of the frame interval (0: sharp)
    noise: float = 0.0  # sigma of Gaussian sensor noise, 0..255


def studio_domain() -> PeopleDomain:
    """Source: one person, moderate common actions, plain room, chest-height camera."""
    return PeopleDomain()


def street_domain() -> PeopleDomain:
    """Target: crowds of 1-4, other shapes and clothes, rarer and faster actions, any camera height,
    cluttered backgrounds, motion blur and noise."""
    return PeopleDomain(
        name="street", people=[1, 4],
        actions=["walk", "run", "jump", "kick", "sit_down", "wave", "reach", "squat", "turn"],
        segments=[1, 3], speed=[0.9, 1.4], amplitude=[0.6, 1.0], style=6.0,
        betas_mean=[0.3, 0.5, -0.4, 0.3, 0.6, 0.6, 0.8, 1.0], betas_std=0.8, spacing=0.7,
        skin=[50.0, 240.0], cloth_saturation=[0.3, 0.9], cloth_brightness=[40.0, 240.0],
        pattern_contrast=[0.1, 0.45], background_contrast=[0.25, 0.5], clutter=[4, 10],
        camera_height=[0.5, 3.0], camera_distance=[4.0, 7.0], focal=[0.8, 1.4],
        camera_pan=[-8.0, 8.0], camera_drift=[0.0, 0.6], motion_blur=0.5, noise=4.0,
    )


PRESETS = {"studio": studio_domain, "street": street_domain}


def as_people_domain(domain: Any, key: str = "synthetic people domain") -> PeopleDomain:
    """A PeopleDomain from itself, a preset's name ("studio", "street"), or a mapping of fields
    (a dict or an OmegaConf node) whose optional ``preset`` names the domain it overrides."""
    if isinstance(domain, PeopleDomain):
        return domain
    if isinstance(domain, str):
        domain = {"preset": domain}
    if OmegaConf.is_config(domain):
        domain = OmegaConf.to_container(domain, resolve=True)
    if not isinstance(domain, dict):
        raise UserError(f"{key}: must be a preset name ({', '.join(PRESETS)}) or a mapping of domain fields, "
                        f"got {type(domain).__name__}")
    overrides = dict(domain)
    preset = overrides.pop("preset", "studio")
    if preset not in PRESETS:
        raise UserError(f"{key}.preset: must be one of {', '.join(PRESETS)}, got {preset!r}")
    base = dataclasses.asdict(PRESETS[preset]())
    return dataclass_from(PeopleDomain, {**base, **overrides}, key)


def validate_people_domain(d: PeopleDomain, key: str = "synthetic") -> None:
    """One UserError naming the first bad field (``key.field``)."""
    check(d, key, width=at_least(16), height=at_least(16), frames=at_least(1), fps=positive(),
          people=Span(1, 8, integer=True), actions=EachOneOf(ACTION_NAMES), segments=Span(1, 8, integer=True),
          speed=Span(0, open_low=True), amplitude=Span(0, 1), style=Within(0, 30), crossfade=at_least(0),
          betas_std=Within(0, 3), spacing=at_least(0), skin=Span(0, 255), cloth_saturation=Span(0, 1),
          cloth_brightness=Span(0, 255), pattern_contrast=Span(0, 1), background_contrast=Span(0, 1),
          clutter=Span(0, 50, integer=True), camera_height=Span(0.1, 10), camera_distance=Span(1.5, 30),
          focal=Span(0.2, 5), camera_pan=Span(-90, 90), camera_drift=Span(0, 5), motion_blur=fraction(),
          noise=Within(0, 50))
    if not d.actions:
        raise UserError(f"{key}.actions: must name at least one action, got an empty list")
    if len(d.betas_mean) != NUM_BETAS:
        raise UserError(f"{key}.betas_mean: must have {NUM_BETAS} numbers (one per shape factor), got {d.betas_mean!r}")


def _uniform(rng: np.random.Generator, pair) -> float:
    return float(rng.uniform(float(pair[0]), float(pair[1])))


def _integer(rng: np.random.Generator, pair) -> int:
    return int(rng.integers(int(pair[0]), int(pair[1]) + 1))


def _colour(rng: np.random.Generator, saturation, brightness) -> np.ndarray:
    hue = rng.uniform(0, 180)
    hsv = np.uint8([[[hue, 255 * _uniform(rng, saturation), _uniform(rng, brightness)]]])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64)


@dataclass
class Garments:
    """Per part of one person: base colour (K, 3) and a solid texture of ``waves`` sinusoids in the
    part's own coordinates (wavevectors (K, M, 3) per metre, phases (K, M), contrast (K,))."""

    colour: np.ndarray
    wavevectors: np.ndarray
    phases: np.ndarray
    contrast: np.ndarray


def sample_garments(rng: np.random.Generator, d: PeopleDomain, waves: int = 3) -> Garments:
    skin = _uniform(rng, d.skin)
    colours = [_colour(rng, d.cloth_saturation, d.cloth_brightness), _colour(rng, d.cloth_saturation, d.cloth_brightness),
               np.array([skin, skin * 0.8, skin * 0.65]), _colour(rng, [0.0, 0.3], [20.0, 120.0])]
    garment_contrast = [_uniform(rng, d.pattern_contrast), _uniform(rng, d.pattern_contrast), 0.04, 0.05]
    garment_waves = [rng.normal(size=(waves, 3)) * rng.uniform(15, 60, size=(waves, 1)) for _ in range(4)]
    garment_phase = [rng.uniform(0, 2 * np.pi, size=waves) for _ in range(4)]
    g = _GARMENT_OF_PART
    return Garments(np.stack([colours[i] for i in g]), np.stack([garment_waves[i] for i in g]),
                    np.stack([garment_phase[i] for i in g]), np.array([garment_contrast[i] for i in g]))


@dataclass
class Person:
    """One person's fixed traits and motion script."""

    betas: np.ndarray  # (8,)
    garments: Garments
    start: np.ndarray  # (2,) x, z on the floor
    heading: float  # radians, 0 = facing +z
    segments: list[Segment]
    style: np.ndarray  # (15, 3) degrees


@dataclass
class Camera:
    """Per frame: world-to-camera rotations (F, 3, 3) (OpenCV: x right, y down, z forward),
    centres (F, 3) and intrinsics (fx, fy, cx, cy) in pixels."""

    rotations: np.ndarray
    centres: np.ndarray
    intrinsics: np.ndarray

    def to_camera(self, points: np.ndarray, frame: int) -> np.ndarray:
        """(..., 3) world -> camera coordinates at ``frame``."""
        return (points - self.centres[frame]) @ self.rotations[frame].T


def look_at(centre: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera rotation of a camera at ``centre`` looking at ``target``, no roll (y-up world)."""
    forward = target - centre
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right = right / np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


@dataclass
class BodyStates:
    """Per person and frame (P, F, ...), world coordinates: the body model's outputs."""

    joints: np.ndarray  # (P, F, 17, 3)
    keypoints: np.ndarray  # (P, F, 17, 3) COCO-17
    part_centres: np.ndarray  # (P, F, K, 3)
    part_axes: np.ndarray  # (P, F, K, 3, 3)
    pose: np.ndarray  # (P, F, 15, 3) angle-axis
    global_orient: np.ndarray  # (P, F, 3) angle-axis
    transl: np.ndarray  # (P, F, 3)
    betas: np.ndarray  # (P, 8)


class PeopleScene:
    """Video ``video`` of ``domain`` under ``seed``: ``frames + 1`` frames of body states (the last
    one only for the flow of the last frame), the camera and the room's textures."""

    def __init__(self, domain: PeopleDomain, seed: int, video: int, body: ProceduralBody) -> None:
        self.domain = d = domain
        self.seed, self.video = seed, video
        rng = np.random.default_rng([seed, video, 0x9E0])
        self.num_frames = d.frames + 1
        self.times = np.arange(self.num_frames) / d.fps
        self.people = self._sample_people(rng)
        self.camera = self._sample_camera(rng)
        self.textures = self._sample_textures(rng)
        self._made: dict[int, np.ndarray] = {}
        self.states = self._body_states(body)

    # ------------------------------------------------------------------ people
    def _sample_people(self, rng: np.random.Generator) -> list[Person]:
        d = self.domain
        count = _integer(rng, d.people)
        spots: list[np.ndarray] = []
        people = []
        for _ in range(count):
            for _try in range(50):  # spread the group out, on a patch that grows with its size
                radius = 0.4 + 0.45 * (count - 1)
                spot = rng.uniform(-radius, radius, size=2) * np.array([1.0, 0.6])
                if all(np.linalg.norm(spot - s) >= d.spacing for s in spots):
                    break
            spots.append(spot)
            people.append(sample_person(rng, d, spot, self.times[-1]))
        return people

    def _body_states(self, body: ProceduralBody) -> BodyStates:
        pose, orient, roots, lifts = [], [], [], []
        for person in self.people:
            rot, heading, position, lift = person_motion(person, self.times, self.domain)
            pose.append(matrix_to_axis_angle(torch.from_numpy(rot)).numpy())
            orient.append(matrix_to_axis_angle(torch.from_numpy(heading_rotation(heading))).numpy())
            roots.append(position)
            lifts.append(lift)
        pose_t, orient_t = torch.from_numpy(np.stack(pose)), torch.from_numpy(np.stack(orient))
        betas = torch.from_numpy(np.stack([p.betas for p in self.people]))
        with torch.no_grad():
            out = body(pose_t, betas[:, None].expand(-1, self.num_frames, -1), orient_t)
        # stand on the floor: the lowest surface point at y = lift (a jump's flight)
        centres, axes = out.part_centres.numpy(), out.part_axes.numpy()
        lowest = (centres[..., 1] - np.linalg.norm(axes[..., 1, :], axis=-1)).min(-1)  # (P, F)
        roots_xz = np.stack(roots)  # (P, F, 2)
        shift = np.stack([roots_xz[..., 0], np.stack(lifts) - lowest, roots_xz[..., 1]], -1)  # (P, F, 3)
        return BodyStates(joints=out.joints.numpy() + shift[..., None, :], keypoints=out.keypoints.numpy() + shift[..., None, :],
                          part_centres=centres + shift[..., None, :], part_axes=axes, pose=np.stack(pose),
                          global_orient=np.stack(orient), transl=shift, betas=betas.numpy())

    # ------------------------------------------------------------------ camera
    def _sample_camera(self, rng: np.random.Generator) -> Camera:
        d = self.domain
        target = np.array([0.0, 0.9, 0.0]) + np.array([rng.normal(0, 0.15), rng.normal(0, 0.1), 0.0])
        yaw = rng.uniform(-0.35, 0.35)  # the camera's bearing from the group
        dist = _uniform(rng, d.camera_distance)
        centre = np.array([dist * math.sin(yaw), _uniform(rng, d.camera_height), -dist * math.cos(yaw)])
        base = look_at(centre, target)
        pan = math.radians(_uniform(rng, d.camera_pan))
        drift = _uniform(rng, d.camera_drift) * rng.choice([-1.0, 1.0])
        rotations, centres = [], []
        for t in self.times:
            c, s = math.cos(pan * t), math.sin(pan * t)
            turn = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])  # yaw about the world's up axis
            rotations.append(base @ turn)
            centres.append(centre + drift * t * base[0])
        f = _uniform(rng, d.focal) * d.width
        intrinsics = np.array([f, f, (d.width - 1) / 2, (d.height - 1) / 2])
        return Camera(np.stack(rotations), np.stack(centres), intrinsics)

    # ----------------------------------------------------------------- room
    def _sample_textures(self, rng: np.random.Generator) -> list[tuple]:
        """Floor, back wall, left, right and front wall: what each one's texture is drawn from
        (made on first use, see ``texture``: most frames show two or three of the five)."""
        d = self.domain
        base = [_colour(rng, [0.0, 0.35], [80.0, 200.0]) for _ in range(2)]
        return [(int(rng.integers(2 ** 31)), base[0] if plane == 0 else base[1], _uniform(rng, d.background_contrast),
                 _integer(rng, d.clutter)) for plane in range(5)]

    def texture(self, plane: int) -> np.ndarray:
        """(S, S, 3) float32 image tiled over ``plane``."""
        if plane not in self._made:
            seed, colour, contrast, clutter = self.textures[plane]
            self._made[plane] = _texture(np.random.default_rng(seed), colour, contrast, clutter)
        return self._made[plane]

def sample_person(rng: np.random.Generator, d: PeopleDomain, spot: np.ndarray, duration: float) -> Person:
    """A person of domain ``d`` starting at ``spot``: shape, clothes, and a script of actions over
    ``duration`` seconds."""
    n_seg = _integer(rng, d.segments)
    starts = np.sort(rng.uniform(0, duration + 1e-9, size=n_seg - 1)) if n_seg > 1 else np.zeros(0)
    segments = [Segment(str(rng.choice(d.actions)), float(s), _uniform(rng, d.speed), _uniform(rng, d.amplitude),
                        float(rng.uniform(0, 1))) for s in np.concatenate([[0.0], starts])]
    betas = np.asarray(d.betas_mean, dtype=np.float64) + d.betas_std * rng.normal(size=NUM_BETAS)
    return Person(betas=betas, garments=sample_garments(rng, d), start=spot, heading=float(rng.uniform(-np.pi, np.pi)),
                  segments=segments, style=rng.normal(scale=d.style, size=(15, 3)))


def person_motion(person: Person, times: np.ndarray, d: PeopleDomain) -> tuple[np.ndarray, ...]:
    """At each time: joint rotations (F, 15, 3, 3), heading (F,) radians, floor position (F, 2) and
    lift (F,) metres. The root is integrated frame by frame from the actions' speed and turn rate."""
    angles, headings, positions, lifts = [], [], [], []
    heading, position = person.heading, person.start.astype(np.float64).copy()
    for k, t in enumerate(times):
        a, speed, turn_rate, up = angles_at(person.segments, float(t), d.crossfade)
        angles.append(a + person.style)
        headings.append(heading)
        positions.append(position.copy())
        lifts.append(up)
        dt = times[k + 1] - t if k + 1 < len(times) else 0.0
        heading += math.radians(turn_rate) * dt
        position += speed * dt * np.array([math.sin(heading), math.cos(heading)])
    return local_rotations(clamp_to_limits(np.stack(angles))), np.array(headings), np.stack(positions), np.array(lifts)


def pose_collection(domain: Any = None, sequences: int = 200, frames: int = 100, seed: int = 0,
                    key: str = "synthetic people pose collection") -> dict[str, np.ndarray]:
    """Frames of many people's motions in pose-parameter form, for training pose priors:
    ``pose`` (N, 15, 3) angle-axis, ``global_orient`` (N, 3) (heading only), ``betas`` (N, 8) and
    ``sequence`` (N,), N = sequences x frames. Deterministic per (domain, seed); no rendering."""
    d = as_people_domain(studio_domain() if domain is None else domain, key)
    validate_people_domain(d, key)
    check({"sequences": sequences, "frames": frames}, key, sequences=at_least(1), frames=at_least(1))
    times = np.arange(frames) / d.fps
    pose, orient, betas, sequence = [], [], [], []
    for k in range(sequences):
        person = sample_person(np.random.default_rng([seed, k, 0xC0]), d, np.zeros(2), float(times[-1]))
        rot, heading, _, _ = person_motion(person, times, d)
        pose.append(rot)
        orient.append(heading_rotation(heading))
        betas.append(np.repeat(person.betas[None], frames, 0))
        sequence.append(np.full(frames, k))
    to_aa = lambda m: matrix_to_axis_angle(torch.from_numpy(np.concatenate(m))).numpy()  # noqa: E731
    return {"pose": to_aa(pose), "global_orient": to_aa(orient), "betas": np.concatenate(betas),
            "sequence": np.concatenate(sequence)}


TEXTURE_SIZE = 256
TEXEL = 0.04  # metres per texel: 10 m of wall per tile


NOISE_BANK = 64  # smooth noise fields shared by all videos; each video rolls, flips and tints its own


@functools.lru_cache(maxsize=NOISE_BANK)
def _noise_field(k: int) -> np.ndarray:
    """Tileable multi-scale noise (S, S), zero mean and unit-ish spread; a pure function of k."""
    rng = np.random.default_rng([k, 0x7E7])
    s = TEXTURE_SIZE
    noise = np.zeros((s, s), np.float32)
    for cells, weight in ((4, 1.0), (16, 0.5), (64, 0.25)):
        grid = rng.normal(size=(cells, cells)).astype(np.float32)
        noise += weight * cv2.resize(np.tile(grid, (3, 3)), (3 * s, 3 * s), interpolation=cv2.INTER_CUBIC)[s:2 * s, s:2 * s]
    return noise / 1.75


def _texture(rng: np.random.Generator, colour: np.ndarray, contrast: float, clutter: int) -> np.ndarray:
    """Smooth multi-scale noise around ``colour`` plus ``clutter`` soft-edged rectangles, tileable."""
    s = TEXTURE_SIZE
    noise = np.roll(_noise_field(int(rng.integers(NOISE_BANK))), tuple(rng.integers(0, s, size=2)), axis=(0, 1))
    if rng.random() < 0.5:
        noise = noise.T
    tint = rng.normal(scale=0.3, size=3).astype(np.float32)
    image = colour.astype(np.float32)[None, None, :] * (1 + contrast * (noise[..., None] * (1 + tint)))
    for _ in range(clutter):
        w, h = rng.integers(8, s // 3, size=2)
        x, y = rng.integers(0, s - w), rng.integers(0, s - h)
        image[y:y + h, x:x + w] = _colour(rng, [0.2, 0.9], [30.0, 240.0]) * (1 + 0.3 * contrast * noise[y:y + h, x:x + w, None])
    image = cv2.GaussianBlur(np.clip(image, 0, 255).astype(np.float32), (0, 0), 0.8, borderType=cv2.BORDER_REFLECT)
    return image
