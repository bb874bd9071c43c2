"""3DPW (3D Poses in the Wild) from the released sequence pickles.

``root/sequenceFiles/{train,validation,test}/*.pkl``, one per sequence, each a dict with
- ``jointPositions``: list (one per person) of (T, 72) SMPL-24 world joints in metres;
- ``cam_poses`` (T, 4, 4): world -> camera transforms; ``cam_intrinsics`` (3, 3);
- ``campose_valid``: list (one per person) of (T,) flags, 1 where the pose is reliable.
Each sample is one (sequence, person, frame): SMPL joints moved into the camera frame,
mapped to H36M-17 (metres, root-relative), and their pinhole projection, normalised.

The image size is taken from ``image_size`` (w, h) or ``image_width``/``image_height``
when a pickle has them; otherwise 1080 wide x 1920 high (the portrait phone videos),
or 1920 x 1080 when the principal point says the sequence is landscape (c_x > c_y).
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
from torch.utils.data import Dataset

from datamodules.readers.common import (check_finite, check_shape, normalized_camera,
                                        pose_item, require_dir, require_file)
from framework.errors import UserError
from geometry.camera import normalize_screen
from geometry.skeletons import smpl24_to_h36m17

SPLITS = ("train", "validation", "test")

# H36M-17 joints to score on 3DPW: the 14 with a direct SMPL counterpart other than the
# root and the approximate spine: hips, knees, ankles, thorax, neck/nose, shoulders,
# elbows, wrists (the extrapolated head top is left out).
PW3D_EVAL_JOINTS = (1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 16)

_REQUIRED_KEYS = ("jointPositions", "cam_poses", "cam_intrinsics", "campose_valid")


def load_sequence(path: Path) -> dict:
    """Read one sequence pickle (python-2 pickles need encoding='latin1').

    Unpickling runs code from the file, which this format requires: only read files you trust.
    """
    try:
        with open(path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, ValueError) as e:
        raise UserError(f"{path}: not a readable 3DPW sequence pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a dict, got {type(data).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise UserError(f"{path}: missing key '{missing[0]}' (found: {', '.join(sorted(map(str, data)))})")
    return data


def _image_size(data: dict, intrinsics: np.ndarray, path: Path) -> tuple[float, float]:
    if "image_size" in data:
        size = check_shape(data["image_size"], (2,), f"{path}: image_size")
        w, h = float(size[0]), float(size[1])
    elif "image_width" in data and "image_height" in data:
        w, h = float(data["image_width"]), float(data["image_height"])
    else:
        w, h = (1920.0, 1080.0) if intrinsics[0, 2] > intrinsics[1, 2] else (1080.0, 1920.0)
    if not (w > 0 and h > 0):
        raise UserError(f"{path}: image size must be positive, got {w} x {h}")
    return w, h


class PersonSequence(NamedTuple):
    """One person of one sequence: every frame's joints in the moving phone camera."""

    sequence: str
    person: int
    joints2d: np.ndarray  # (T, 17, 2) pixels, the pinhole projection of joints3d
    joints3d: np.ndarray  # (T, 17, 3) camera frame, metres (H36M-17, head top extrapolated)
    valid: np.ndarray  # (T,) bool: campose_valid, the pose is reliable
    intrinsics: tuple[float, float, float, float]  # fx, fy, cx, cy in pixels
    size: tuple[float, float]  # width, height of the frames


def person_sequences(files: Sequence[str | Path]) -> Iterator[PersonSequence]:
    """Every person of every sequence pickle, checked (sequences in name order)."""
    if not files:
        raise UserError("3DPW: no sequence files given")
    for path in sorted(Path(p) for p in files):
        require_file(path, "3DPW sequence")
        data = load_sequence(path)
        poses = check_shape(data["cam_poses"], (None, 4, 4), f"{path}: cam_poses")
        K = check_shape(data["cam_intrinsics"], (3, 3), f"{path}: cam_intrinsics")
        check_finite(poses, f"{path}: cam_poses")
        check_finite(K, f"{path}: cam_intrinsics")
        w, h = _image_size(data, K, path)
        frames = len(poses)
        people, valid = data["jointPositions"], data["campose_valid"]
        if not isinstance(people, (list, tuple)) or not isinstance(valid, (list, tuple)) or len(people) != len(valid):
            raise UserError(f"{path}: jointPositions and campose_valid must be lists with one entry per person")
        name = str(data.get("sequence", path.stem))
        for person, (joints, flags) in enumerate(zip(people, valid)):
            where = f"{path}: jointPositions[{person}]"
            joints = check_shape(joints, (frames, 72), where)
            check_finite(joints, where)
            flags = check_shape(flags, (frames,), f"{path}: campose_valid[{person}]") > 0
            world = joints.reshape(-1, 24, 3)
            R, t = poses[:, :3, :3], poses[:, :3, 3]
            cam3d = smpl24_to_h36m17(np.einsum("tij,tkj->tki", R, world) + t[:, None])
            if np.any(cam3d[flags][..., 2] <= 0):
                raise UserError(f"{where}: joints behind the camera after cam_poses; is cam_poses world -> camera?")
            depth = np.where(cam3d[..., 2:3] > 0, cam3d[..., 2:3], 1.0)  # unreliable frames: anything finite
            px = cam3d[..., :2] / depth * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])
            yield PersonSequence(name, person, px, cam3d, flags, (K[0, 0], K[1, 1], K[0, 2], K[1, 2]), (w, h))


class PW3DDataset(Dataset):
    """All (sequence, person, frame) samples of the given pickles, every ``stride``-th frame."""

    def __init__(self, files: Sequence[str | Path], stride: int = 1, valid_only: bool = True) -> None:
        if int(stride) < 1:
            raise UserError(f"PW3DDataset: stride must be >= 1, got {stride}")
        pose2d, pose3d, roots, cams, meta = [], [], [], [], []
        self.sequences: list[str] = []
        for seq in person_sequences(files):
            if not self.sequences or self.sequences[-1] != seq.sequence:
                self.sequences.append(seq.sequence)
            keep = np.arange(0, len(seq.valid), stride)
            if valid_only:
                keep = keep[seq.valid[keep]]
            if len(keep) == 0:
                continue
            cam3d = seq.joints3d[keep]
            pose2d.append(normalize_screen(seq.joints2d[keep], *seq.size))
            pose3d.append(cam3d - cam3d[:, :1])
            roots.append(cam3d[:, 0])
            cams.append(np.repeat(normalized_camera(*seq.intrinsics, *seq.size)[None], len(keep), axis=0))
            meta.append(np.stack([np.full(len(keep), len(self.sequences) - 1), np.full(len(keep), seq.person), keep], 1))
        if not meta:
            raise UserError(f"3DPW: no valid samples in {len(files)} sequence file(s)")
        self.pose2d = np.concatenate(pose2d).astype(np.float32)
        self.pose3d = np.concatenate(pose3d).astype(np.float32)
        self.root_position = np.concatenate(roots).astype(np.float32)
        self.camera = np.concatenate(cams).astype(np.float32)
        self.sample_meta = np.concatenate(meta).astype(np.int64)  # sequence id, person, frame

    @classmethod
    def from_root(cls, root: str | Path, split: str = "test", stride: int = 1,
                  valid_only: bool = True) -> "PW3DDataset":
        if split not in SPLITS:
            raise UserError(f"3DPW: unknown split '{split}'; expected one of {', '.join(SPLITS)}")
        folder = require_dir(root, "3DPW root") / "sequenceFiles" / split
        require_dir(folder, "3DPW split")
        files = sorted(folder.glob("*.pkl"))
        if not files:
            raise UserError(f"3DPW: no .pkl sequence files in {folder}")
        return cls(files, stride, valid_only)

    def sample_info(self, index: int) -> tuple[str, int, int]:
        """(sequence name, person, frame) of sample ``index``."""
        sequence, person, frame = (int(v) for v in self.sample_meta[index])
        return self.sequences[sequence], person, frame

    def __len__(self) -> int:
        return len(self.sample_meta)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(index)
        return pose_item(i, self.pose2d[i], self.pose3d[i], self.camera[i], self.root_position[i])
