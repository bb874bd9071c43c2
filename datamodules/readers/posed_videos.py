"""Real videos of one person with ground-truth joints, as consecutive frame pairs: the Human3.6M
and 3DPW targets of flow-pose bootstrapping.

An item holds the footage keys (``image1``, ``image2``, ``index``, ``video``, ``frame``; see
``footage.py``) and, for frames t and t + 1 (the kept frames, after ``frame_step`` and
``resize``), what ``PeopleFlowPairs`` gives of the person, less the dense flow:
``joints2d`` (2, 17, 2) pixels, ``joints3d`` (2, 17, 3) camera frame metres, ``joint_visible``
(2, 17) bool, ``pose_valid`` (2,) bool (False where the data set calls the pose unreliable: no
metric counts that frame) and ``camera`` (4,) fx, fy, cx, cy in pixels of the given-out frames.
H36M-17 joint order.

The pairs of a video are counted from its joints (the videos may run a few frames longer than the
motion capture); its frames are read when one of its pairs is first asked for, and the last video
read is kept, so a per-video pass decodes each video once.

Frame layouts:
- Human3.6M: ``<frames>/<subject>/<action>.<camera id>/`` (a folder of images in frame order) or
  the release's ``<frames>/<subject>/Videos/<action>.<camera id>.mp4``; videos are named
  ``<subject>_<action>.<camera id>`` (e.g. ``S9_Walking 1.54138969``).
- 3DPW: ``<root>/imageFiles/<sequence>/`` (``image_00000.jpg``, ...); one video per person of a
  sequence, named ``<sequence>_<person>`` (e.g. ``downtown_walking_00_0``).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.readers.common import require_dir
from datamodules.readers.footage import UserFootage
from datamodules.readers.h36m import CAMERA_IDS, TEST_SUBJECTS, camera_sequences, checked_selection, h36m_paths, load_h36m
from datamodules.readers.pw3d import SPLITS, person_sequences
from datamodules.videos import VideoSpan
from framework.errors import UserError


class PosedVideo(NamedTuple):
    name: str
    frames: Path  # a video file or a folder of frames
    joints2d: np.ndarray  # (T, 17, 2) pixels of the stored frames
    joints3d: np.ndarray  # (T, 17, 3) camera frame, metres
    valid: np.ndarray  # (T,) bool: the ground truth of the frame is reliable
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy, pixels of the stored frames
    size: tuple[int, int]  # (height, width) of the stored frames


def open_frames(video: PosedVideo, frames: int, frame_step: int = 1, resize: Optional[Sequence[int]] = None,
                min_size: int = 64) -> UserFootage:
    """The video's first ``frames`` kept frames (every ``frame_step``-th), checked against its joints
    and camera: one error naming the file where they disagree."""
    footage = UserFootage(video.frames, max_frames=frames, frame_step=frame_step, resize=resize, min_size=min_size)
    if tuple(footage.source_size) != tuple(video.size):
        raise UserError(f"{video.frames}: frames are {footage.source_size[1]} x {footage.source_size[0]} "
                        f"(W x H); the data set's camera of video '{video.name}' films "
                        f"{video.size[1]} x {video.size[0]}")
    if len(footage.frame_names) < frames:
        raise UserError(f"{video.frames}: {len(footage.frame_names)} frames kept (frame_step="
                        f"{frame_step}); the joints of video '{video.name}' need {frames}")
    return footage


class PosedVideoItems(Dataset):
    """Items made of the kept frames of ``videos`` (every ``frame_step``-th, at most ``max_frames``
    a video), ``span`` frames each (1: a frame, 2: a pair), video after video; the frames of the
    last video asked for are kept."""

    span = 1
    unit = "frame"

    def __init__(self, videos: Sequence[PosedVideo], max_frames: Optional[int] = None, frame_step: int = 1,
                 resize: Optional[Sequence[int]] = None, min_size: int = 64) -> None:
        if not videos:
            raise UserError("posed videos: no videos selected")
        self.videos_ = list(videos)
        self.max_frames, self.frame_step, self.min_size = max_frames, frame_step, min_size
        self.resize = None if resize is None else (int(resize[0]), int(resize[1]))
        self.kept = []  # per video: the joint rows of its kept frames
        for v in self.videos_:
            rows = np.arange(0, len(v.joints3d), int(frame_step))[:max_frames]
            if len(rows) < self.span:
                raise UserError(f"video '{v.name}': {len(rows)} frame(s) kept of {len(v.joints3d)} "
                                f"(frame_step={frame_step}, max_frames={max_frames}); a {self.unit} needs {self.span}")
            self.kept.append(rows)
        self.starts = np.cumsum([0] + [len(r) - self.span + 1 for r in self.kept])
        self._loaded: tuple[int, Optional[UserFootage]] = (-1, None)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def videos(self) -> dict[int, VideoSpan]:
        return {i: VideoSpan(v.name, list(range(int(self.starts[i]), int(self.starts[i + 1]))))
                for i, v in enumerate(self.videos_)}

    def locate(self, index: int) -> tuple[int, int]:
        """(video, first kept frame) of item ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"{self.unit} {index} out of range for {len(self)} {self.unit}s")
        v = int(np.searchsorted(self.starts, index, side="right") - 1)
        return v, int(index - self.starts[v])

    def _footage(self, index: int) -> UserFootage:
        if self._loaded[0] != index:
            self._loaded = (index, open_frames(self.videos_[index], len(self.kept[index]), self.frame_step,
                                               self.resize, self.min_size))
        return self._loaded[1]


class PosedVideoPairs(PosedVideoItems):
    """Consecutive frame pairs of ``videos`` (module doc), optionally resized to ``resize`` = [height, width]."""

    span = 2
    unit = "pair"

    def _scale(self, video: PosedVideo) -> np.ndarray:
        """(sx, sy) from the stored frames to the given-out ones."""
        if self.resize is None:
            return np.ones(2)
        return np.array([self.resize[1] / video.size[1], self.resize[0] / video.size[0]])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        v, t = self.locate(index)
        video, footage = self.videos_[v], self._footage(v)
        rows = self.kept[v][[t, t + 1]]
        sx, sy = self._scale(video)
        fx, fy, cx, cy = video.intrinsics
        as_tensor = lambda a, dtype=torch.float32: torch.from_numpy(np.ascontiguousarray(a)).to(dtype)  # noqa: E731
        return {"image1": footage.frame(t), "image2": footage.frame(t + 1),
                "joints2d": as_tensor(video.joints2d[rows] * np.array([sx, sy])),
                "joints3d": as_tensor(video.joints3d[rows]),
                "joint_visible": as_tensor(np.repeat(video.valid[rows, None], video.joints3d.shape[1], 1), torch.bool),
                "pose_valid": as_tensor(video.valid[rows], torch.bool),
                "camera": as_tensor(np.array([fx * sx, fy * sy, cx * sx, cy * sy])),
                "index": torch.tensor(index), "video": torch.tensor(v), "frame": torch.tensor(t)}


def _first_existing(candidates: Sequence[Path], what: str) -> Path:
    for path in candidates:
        if path.exists():
            return path
    raise UserError(f"{what}: no frames; looked for {' and '.join(str(p) for p in candidates)}")


def h36m_videos(root: str | Path, frames: Optional[str | Path] = None, subjects: Sequence[str] = TEST_SUBJECTS,
                actions: Optional[Sequence[str]] = None, cameras: Optional[Sequence[int]] = None,
                keypoints: Optional[str] = "gt") -> list[PosedVideo]:
    """One video per (subject, action, camera) of the VideoPose3D folder ``root``; frames under
    ``frames`` (default: ``root``) in either layout of the module doc."""
    cameras = checked_selection(subjects, cameras, "Human3.6M videos")
    frames_root = require_dir(frames if frames is not None else root, "Human3.6M frames")
    out = []
    for seq in camera_sequences(*load_h36m(*h36m_paths(root, keypoints)), subjects, actions, cameras):
        stem = f"{seq.action}.{CAMERA_IDS[seq.camera]}"
        path = _first_existing([frames_root / seq.subject / stem, frames_root / seq.subject / "Videos" / f"{stem}.mp4"],
                               f"Human3.6M video {seq.name}")
        w, h = seq.size
        out.append(PosedVideo(seq.name, path, seq.joints2d, seq.joints3d, np.ones(len(seq.joints3d), bool),
                              seq.intrinsics, (int(h), int(w))))
    if not out:
        raise UserError(f"Human3.6M videos: none for subjects {list(subjects)} and actions {list(actions or [])}")
    return out


def pw3d_videos(root: str | Path, split: str = "test") -> list[PosedVideo]:
    """One video per person of every sequence of a 3DPW split (module doc)."""
    if split not in SPLITS:
        raise UserError(f"3DPW: unknown split '{split}'; expected one of {', '.join(SPLITS)}")
    root = require_dir(root, "3DPW root")
    files = sorted((require_dir(root / "sequenceFiles" / split, "3DPW split")).glob("*.pkl"))
    if not files:
        raise UserError(f"3DPW: no .pkl sequence files in {root / 'sequenceFiles' / split}")
    out = []
    for seq in person_sequences(files):
        path = require_dir(root / "imageFiles" / seq.sequence, f"3DPW frames of {seq.sequence}")
        w, h = seq.size
        out.append(PosedVideo(f"{seq.sequence}_{seq.person}", path, seq.joints2d, seq.joints3d, seq.valid,
                              seq.intrinsics, (int(h), int(w))))
    return out
