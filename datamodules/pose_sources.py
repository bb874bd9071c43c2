"""Where a video's initial pose estimates come from, for methods that refine them (bootstrapping).

A source adds three keys to every frame-pair item of a people video dataset, for frames t and t + 1:
``init_joints3d`` (2, 17, 3) root-relative camera-frame metres (H36M-17), ``detections2d`` (2, 17, 2)
pixels and ``detection_confidence`` (2, 17) in [0, 1]. Kinds (``data.poses.kind``):

- ``simulated``: the ground truth made wrong the ways real estimators are. The 3D estimate gets a
  per-video, per-joint bias (a consistent misjudgement of the person's proportions and posture),
  per-frame jitter, and now and then a left/right swap; the 2D detections get a smaller jitter and
  per-joint bias, and some joints are lost (replaced by a wrong point with low confidence). As in
  the paper (METRO for 3D, DCPose for 2D), the 2D detections are much more accurate than the
  projected 3D estimate. Every number is a pure function of (seed, video, frame).
- ``file``: the user's estimates, one ``<root>/<video name>.npz`` per video with ``joints2d``
  (T, 17, 2) pixels, ``confidence`` (T, 17) and optionally ``joints3d`` (T, 17, 3) metres (camera
  frame; made root-relative here). Without ``joints3d`` the 2D-only mode is the one to use.
- ``lifter``: 2D detections simulated as for ``simulated``, lifted to 3D by a pose lifter trained
  in this framework (an ISO checkpoint, ``data.poses.checkpoint``): a real estimator's errors,
  those of a lifter trained on another synthetic world (its skeletons and cameras).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.readers.common import check_finite, check_shape, npz_array, open_npz, require_dir, require_file
from datamodules.videos import listed_videos
from framework.checks import OneOf, Within, at_least, check, fraction
from framework.errors import UserError
from geometry.camera import normalize_screen
from geometry.skeletons import H36M17

KINDS = ("simulated", "file", "lifter")
NUM_JOINTS = H36M17.num_joints


@dataclass
class PoseSourceConfig:
    kind: str = "simulated"  # simulated | file | lifter
    root: Optional[str] = None  # file: the folder of <video name>.npz
    checkpoint: Optional[str] = None  # lifter: an ISO checkpoint of this framework
    seed: int = 0
    # simulated, 3D estimate (metres): per-video per-joint bias, per-frame jitter, share of frames swapped left/right
    bias_3d: float = 0.025
    jitter_3d: float = 0.01
    swap_3d: float = 0.02
    # simulated, 2D detections (pixels at a 256-pixel-high frame; scaled with the frame): bias, jitter, lost joints
    bias_2d: float = 1.0
    jitter_2d: float = 1.5
    lost_2d: float = 0.03  # share of joints replaced by a wrong point
    lost_offset: float = 20.0  # how far off a lost joint lands (pixels at 256)
    lost_confidence: float = 0.1
    # a control for experiments: "other_video" simulates each video's estimates from the next video's
    # ground truth (same frame), so they are as noisy as usual but of the wrong person and motion
    control: str = "none"


def validate_pose_source(c: PoseSourceConfig, key: str = "data.poses") -> None:
    check(c, key, kind=OneOf(KINDS), control=OneOf(("none", "other_video")), seed=at_least(0), bias_3d=Within(0, 1), jitter_3d=Within(0, 1),
          swap_3d=fraction(), bias_2d=at_least(0), jitter_2d=at_least(0), lost_2d=fraction(), lost_offset=at_least(0),
          lost_confidence=fraction())
    if c.kind == "file" and not c.root:
        raise UserError(f"{key}.root: must be set for kind=file (a folder of <video name>.npz pose estimates)")
    if c.kind == "lifter" and not c.checkpoint:
        raise UserError(f"{key}.checkpoint: must be set for kind=lifter (an ISO checkpoint, e.g. "
                        f"outputs/iso/quick/checkpoints/best.ckpt)")


def root_relative(joints: np.ndarray) -> np.ndarray:
    return joints - joints[..., :1, :]


class SimulatedEstimates:
    """Estimates of one frame from its ground truth (module doc)."""

    def __init__(self, cfg: PoseSourceConfig) -> None:
        self.cfg = cfg

    def frame(self, video: int, frame: int, joints3d: np.ndarray, joints2d: np.ndarray,
              height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.cfg
        per_video = np.random.default_rng([c.seed, video, 0xB1A5])
        bias3 = per_video.normal(scale=c.bias_3d, size=(NUM_JOINTS, 3))
        bias2 = per_video.normal(scale=c.bias_2d, size=(NUM_JOINTS, 2))
        rng = np.random.default_rng([c.seed, video, frame, 0xF4A])
        estimate = root_relative(joints3d) + bias3 + rng.normal(scale=c.jitter_3d, size=(NUM_JOINTS, 3))
        if rng.random() < c.swap_3d:
            estimate = estimate[list(H36M17.flip_permutation)]
        estimate = root_relative(estimate)
        px = height / 256.0
        detections = joints2d + px * (bias2 + rng.normal(scale=c.jitter_2d, size=(NUM_JOINTS, 2)))
        confidence = np.clip(0.9 + rng.normal(scale=0.05, size=NUM_JOINTS), 0.5, 1.0)
        lost = rng.random(NUM_JOINTS) < c.lost_2d
        angle = rng.uniform(0, 2 * np.pi, size=NUM_JOINTS)
        offset = px * c.lost_offset * np.stack([np.cos(angle), np.sin(angle)], -1)
        detections = np.where(lost[:, None], joints2d + offset, detections)
        confidence = np.where(lost, c.lost_confidence, confidence)
        return estimate, detections, confidence


class LiftedEstimates:
    """Simulated 2D detections of one frame, lifted to 3D by an ISO checkpoint (module doc)."""

    def __init__(self, cfg: PoseSourceConfig) -> None:
        from framework.io import load_checkpoint
        from framework.methods import get_method

        ckpt = load_checkpoint(cfg.checkpoint)
        params = ckpt.get("hyper_parameters", {})
        method = ckpt.get("method") or params.get("method")
        if method != "iso" or "state_dict" not in ckpt or "model" not in params:
            raise UserError(f"data.poses.checkpoint: {cfg.checkpoint} is not an ISO checkpoint of this framework "
                            f"(written by method {method!r})")
        self.lifter = get_method("iso").module(method="iso", model=params["model"])
        self.lifter.load_state_dict(ckpt["state_dict"])
        self.lifter.eval()
        self.detector = SimulatedEstimates(cfg)

    def frame(self, video: int, frame: int, joints3d: np.ndarray, joints2d: np.ndarray,
              height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, detections, confidence = self.detector.frame(video, frame, joints3d, joints2d, height)
        screen = normalize_screen(torch.from_numpy(detections).float(), width, height)  # the lifters' input units
        with torch.no_grad():
            lifted = self.lifter.predict({"pose2d": screen[None]})["pose3d"][0].double().numpy()
        return root_relative(lifted), detections, confidence


class FileEstimates:
    """Estimates read from ``<root>/<video name>.npz`` (module doc), one file per video, cached."""

    def __init__(self, cfg: PoseSourceConfig) -> None:
        self.root = require_dir(cfg.root, "data.poses.root")
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def video(self, name: str, frames: int) -> dict[str, np.ndarray]:
        if name not in self._cache:
            path = require_file(self.root / f"{name}.npz", f"pose estimates of video '{name}'")
            npz = open_npz(path)
            joints2d = check_shape(npz_array(npz, "joints2d", path), (NUM_JOINTS, 2), f"{path}: joints2d", ndim=3)
            confidence = check_shape(npz_array(npz, "confidence", path), (NUM_JOINTS,), f"{path}: confidence", ndim=2)
            out = {"joints2d": joints2d, "confidence": confidence}
            if "joints3d" in npz.files:
                out["joints3d"] = check_shape(npz["joints3d"], (NUM_JOINTS, 3), f"{path}: joints3d", ndim=3)
            for key, value in out.items():
                check_finite(value, f"{path}: {key}")
                if len(value) < frames:
                    raise UserError(f"{path}: {key} has {len(value)} frames, the video has {frames}")
            self._cache[name] = out
        return self._cache[name]


class WithPoseEstimates(Dataset):
    """A people frame-pair dataset (``PeopleFlowPairs`` or a real one with ``frame`` and ``video``)
    with the source's estimates of both frames added to each item (module doc)."""

    def __init__(self, base: Dataset, cfg: Any, key: str = "data.poses") -> None:
        self.cfg = cfg if isinstance(cfg, PoseSourceConfig) else PoseSourceConfig(**dict(cfg))
        validate_pose_source(self.cfg, key)
        self.base = base
        self.source = {"simulated": SimulatedEstimates, "file": FileEstimates, "lifter": LiftedEstimates}[
            self.cfg.kind](self.cfg)
        spans = listed_videos(base)
        self._names = {v: s.name for v, s in spans.items()}
        self._lengths = {v: len(s.indices) + 1 for v, s in spans.items()}  # pairs + 1 frames
        self._spans = [s.indices for _, s in sorted(spans.items())]

    def __len__(self) -> int:
        return len(self.base)

    def _other_video(self, index: int) -> int:
        """The same pair of the next video (the control's source of wrong poses)."""
        spans = self._spans  # listed once, at construction, not per item
        v = next(k for k, span in enumerate(spans) if index in span)
        other = spans[(v + 1) % len(spans)]
        return other[min(spans[v].index(index), len(other) - 1)]

    def videos(self):
        return listed_videos(self.base)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = dict(self.base[index])
        video, frame = int(item["video"]), int(item["frame"])
        if not isinstance(self.source, FileEstimates):
            truth = item if self.cfg.control == "none" else self.base[self._other_video(index)]
            if "joints3d" not in truth or "joints2d" not in truth:
                raise UserError(f"data.poses.kind={self.cfg.kind} needs the ground-truth joints3d and joints2d of "
                                f"the videos; use kind=file for data without them")
            size = dict(zip(("height", "width"), item["image1"].shape[-2:])) \
                if isinstance(self.source, LiftedEstimates) else {"height": item["image1"].shape[-2]}
            made = [self.source.frame(video, frame + k, truth["joints3d"][k].double().numpy(),
                                      truth["joints2d"][k].double().numpy(), **size) for k in (0, 1)]
            estimate, detections, confidence = (np.stack([m[i] for m in made]) for i in range(3))
        else:
            name = self._names.get(video, str(video))
            data = self.source.video(name, self._lengths.get(video, frame + 2))
            rows = [frame, frame + 1]
            detections, confidence = data["joints2d"][rows], data["confidence"][rows]
            estimate = root_relative(data["joints3d"][rows]) if "joints3d" in data else np.zeros((2, NUM_JOINTS, 3))
            item["has_joints3d_estimate"] = torch.tensor("joints3d" in data)
        item["init_joints3d"] = torch.from_numpy(estimate.astype(np.float32))
        item["detections2d"] = torch.from_numpy(detections.astype(np.float32))
        item["detection_confidence"] = torch.from_numpy(confidence.astype(np.float32))
        return item


def write_pose_estimates(path: str | Path, joints2d: np.ndarray, confidence: np.ndarray,
                         joints3d: Optional[np.ndarray] = None) -> Path:
    """One video's estimates in the ``file`` source's layout (atomically)."""
    from framework.io import atomic_write
    arrays = {"joints2d": np.asarray(joints2d, np.float32), "confidence": np.asarray(confidence, np.float32)}
    if joints3d is not None:
        arrays["joints3d"] = np.asarray(joints3d, np.float32)
    return atomic_write(path, lambda f: np.savez(f, **arrays))
