"""JTA, Joint Track Auto (Fabbri et al. 2018), read in its released layout.

- ``root/annotations/<split>/seq_<k>.json`` (split ``train``, ``val`` or ``test``): a JSON list of
  rows ``[frame, person_id, joint_type, x2d, y2d, x3d, y3d, z3d, occluded, self_occluded]``, one
  per joint; frames counted from 1, 2D in pixels from the top-left corner, 3D in metres in the
  camera frame, 22 joint types (``JTA_JOINTS``);
- ``root/frames/<split>/seq_<k>/<frame>.jpg``: the 1920 x 1080 frames, as the authors'
  ``to_imgs.py`` extracts them from the videos (``<n>.jpg``, n from 1);
- one camera for every sequence: fx = fy = 1158, cx = 960, cy = 540 (``JTA_CAMERA``).

Checked against the authors' repository ``fabbrimatteo/JTA-Dataset``: ``README.md`` (row layout,
units, frames from 1, the intrinsic matrix, joint ids), ``joint.py`` (the 22 names; ``occ`` and
``soc`` flags, visible = neither), ``pose.py`` (limbs: neck -> spine0 -> ... -> spine4 -> both hips,
so spine0 is the top of the spine and spine4 its base) and ``to_imgs.py`` (frame file names).

Each item is one frame (keys in :mod:`datamodules.readers.people_frames`); a video runs over every
frame from 1 to the last annotated one (frames nobody is annotated in have only empty slots).
People fill the slots by increasing ``person_id``. A joint is valid where its row exists and
visible where it is neither occluded nor self-occluded. Every sequence file is read when the data
set is built (a few seconds each at full size) and kept as padded arrays.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from datamodules.readers.common import require_dir, require_file
from datamodules.readers.people_frames import (DEFAULT_MAX_PEOPLE, PeopleFrameDataset, PeopleVideo,
                                               check_positive_int, frames_to_keep, optional_names,
                                               slots_within_groups, warn_dropped_people)
from framework.errors import UserError

SPLITS = ("train", "val", "test")
JTA_JOINTS = (
    "head_top", "head_center", "neck", "right_clavicle", "right_shoulder", "right_elbow", "right_wrist",
    "left_clavicle", "left_shoulder", "left_elbow", "left_wrist", "spine0", "spine1", "spine2", "spine3",
    "spine4", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
)
JTA_CAMERA = (1158.0, 1158.0, 960.0, 540.0)
ROW_LENGTH = 10
_RIGHT_HIP, _LEFT_HIP = 16, 19

# JTA joint for each H36M-17 joint. pelvis: the midpoint of the two hips (-1 here), where H36M puts
# its root; spine4, the base of JTA's spine that both hips hang from, is a spine joint whose offset
# from the hip line the authors do not give. spine <- spine2, the middle of the five spine joints;
# thorax <- neck (the joint the clavicles hang from); neck_nose <- head_center; head <- head_top.
# Hips, knees, ankles, shoulders, elbows and wrists map one to one; the clavicles are not used.
JTA_TO_H36M = (-1, 16, 17, 18, 19, 20, 21, 13, 2, 1, 0, 8, 9, 10, 4, 5, 6)

_SEQUENCE_FILE = re.compile(r"^seq_(\d+)\.json$")


def read_rows(path: Path) -> np.ndarray:
    """A sequence file -> (N, 10) float64 rows, checked for shape, numbers and id ranges."""
    try:
        with open(path, "rb") as f:
            rows = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a JSON file ({e})") from None
    except OSError as e:
        raise UserError(f"{path}: could not be read ({e})") from None
    if not isinstance(rows, list) or not rows:
        raise UserError(f"{path}: expected a non-empty JSON list of rows "
                        f"[frame, person_id, joint_type, x2d, y2d, x3d, y3d, z3d, occluded, self_occluded]")
    bad = next((i for i, r in enumerate(rows) if not isinstance(r, list) or len(r) != ROW_LENGTH), None)
    if bad is not None:
        got = f"{len(rows[bad])} values" if isinstance(rows[bad], list) else type(rows[bad]).__name__
        raise UserError(f"{path}: row {bad} has {got}; expected {ROW_LENGTH} "
                        f"[frame, person_id, joint_type, x2d, y2d, x3d, y3d, z3d, occluded, self_occluded]")
    try:
        data = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{path}: rows must hold numbers only") from None
    _check_columns(data, path)
    return data


def _check_columns(data: np.ndarray, path: Path) -> None:
    ints = data[:, :3]
    checks = (
        (np.isfinite(data).all(axis=1), "non-finite values"),
        (np.all(ints == np.round(ints), axis=1), "a frame, person id or joint type that is not an integer"),
        (data[:, 0] >= 1, "a frame number below 1 (JTA counts frames from 1)"),
        ((data[:, 2] >= 0) & (data[:, 2] < len(JTA_JOINTS)), f"a joint type outside 0..{len(JTA_JOINTS) - 1}"),
        (np.isin(data[:, 8:10], (0, 1)).all(axis=1), "occlusion flags other than 0 / 1"),
    )
    for ok, problem in checks:
        if not ok.all():
            raise UserError(f"{path}: row {int(np.flatnonzero(~ok)[0])} has {problem}")


def jta_to_h36m(values: np.ndarray) -> np.ndarray:
    """(..., 22, D) -> (..., 17, D); the pelvis is the hips' midpoint."""
    idx = np.array(JTA_TO_H36M)
    out = values[..., np.maximum(idx, 0), :].copy()
    out[..., 0, :] = (values[..., _RIGHT_HIP, :] + values[..., _LEFT_HIP, :]) / 2
    return out


def jta_mask_to_h36m(mask: np.ndarray) -> np.ndarray:
    """(..., 22) -> (..., 17); the pelvis needs both hips."""
    out = mask[..., np.maximum(np.array(JTA_TO_H36M), 0)].copy()
    out[..., 0] = mask[..., _RIGHT_HIP] & mask[..., _LEFT_HIP]
    return out


def rows_to_slots(rows: np.ndarray, max_people: int) -> tuple[dict[str, np.ndarray], int]:
    """Rows -> per (frame, slot, JTA joint) arrays, frame n at n - 1, people by increasing id.

    Gives xy (F, P, 22, 2), xyz (F, P, 22, 3), present / visible (F, P, 22), person_id (F, P)
    (-1 where empty), person_valid (F, P), and how many frames had more than ``max_people`` people."""
    frame, person, joint = (rows[:, c].astype(np.int64) for c in range(3))
    num_frames = int(frame.max())
    span = int(person.max() - person.min()) + 1
    keys, row_pair = np.unique(frame * span + (person - person.min()), return_inverse=True)
    row_pair = row_pair.reshape(-1)
    pairs = np.stack([keys // span, keys % span + person.min()], axis=1)  # (frame, id), by frame then id
    slot = slots_within_groups(pairs[:, 0])
    crowded = int(np.count_nonzero(np.bincount(pairs[:, 0]) > max_people))
    kept = slot < max_people
    shape = (num_frames, max_people, len(JTA_JOINTS))
    out = {"xy": np.zeros(shape + (2,)), "xyz": np.zeros(shape + (3,)), "present": np.zeros(shape, bool),
           "visible": np.zeros(shape, bool), "person_id": np.full(shape[:2], -1, dtype=np.int64),
           "person_valid": np.zeros(shape[:2], bool)}
    out["person_id"][pairs[kept, 0] - 1, slot[kept]] = pairs[kept, 1]
    out["person_valid"][pairs[kept, 0] - 1, slot[kept]] = True
    use = kept[row_pair]
    at = (frame[use] - 1, slot[row_pair[use]], joint[use])
    out["xy"][at] = rows[use, 3:5]
    out["xyz"][at] = rows[use, 5:8]
    out["present"][at] = True
    out["visible"][at] = (rows[use, 8] == 0) & (rows[use, 9] == 0)
    return out, crowded


def _sequence_files(folder: Path, sequences: Optional[Sequence[Any]]) -> list[tuple[int, Path]]:
    """(k, path) of the sequences found, or of those asked for (ints or 'seq_<k>'), sorted by k."""
    names = optional_names(sequences, "JTA sequences")
    if names is None:
        found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := _SEQUENCE_FILE.match(p.name)))
        if not found:
            raise UserError(f"JTA: no seq_<k>.json files in {folder}")
        return found
    numbers = set()
    for name in names:
        m = re.fullmatch(r"seq_(\d+)", name) if isinstance(name, str) else None
        if m is None and not (isinstance(name, (int, np.integer)) and not isinstance(name, bool)):
            raise UserError(f"JTA: sequences are numbers or names 'seq_<k>', got {name!r}")
        numbers.add(int(m.group(1)) if m else int(name))
    return [(k, require_file(folder / f"seq_{k}.json", "JTA annotations")) for k in sorted(numbers)]


class JTA(PeopleFrameDataset):
    """JTA frames of one split with every annotated person's 2D and 3D joints."""

    def __init__(self, root: str | Path, split: str = "train", sequences: Optional[Sequence[int | str]] = None,
                 max_people: int = DEFAULT_MAX_PEOPLE, stride: int = 1) -> None:
        if split not in SPLITS:
            raise UserError(f"JTA: split must be one of {SPLITS}, got {split!r}")
        what = f"JTA {split}"
        max_people = check_positive_int(max_people, "max_people", what)
        stride = check_positive_int(stride, "stride", what)
        root = require_dir(root, "JTA root")
        annotations = require_dir(root / "annotations" / split, f"JTA {split} annotations")
        videos, crowded = [], 0
        for k, path in _sequence_files(annotations, sequences):
            frames = require_dir(root / "frames" / split / f"seq_{k}", f"JTA {split} frames")
            video, lost = self._read_sequence(path, frames, max_people)
            videos.append(video.take(frames_to_keep(np.ones(len(video.frames), bool), stride)))
            crowded += lost
        warn_dropped_people(crowded, max_people, f"{what} in {root}")
        self.sequences = [v.name for v in videos]
        super().__init__(videos, f"{what} in {root}")

    @staticmethod
    def _read_sequence(path: Path, frame_dir: Path, max_people: int) -> tuple[PeopleVideo, int]:
        raw, crowded = rows_to_slots(read_rows(path), max_people)
        joint_valid = jta_mask_to_h36m(raw["present"])
        num_frames = len(raw["person_id"])
        video = PeopleVideo(
            name=path.stem, frames=np.arange(1, num_frames + 1),
            images=[frame_dir / f"{n}.jpg" for n in range(1, num_frames + 1)],
            joints2d=np.where(joint_valid[..., None], jta_to_h36m(raw["xy"]), 0.0),
            joints3d=np.where(joint_valid[..., None], jta_to_h36m(raw["xyz"]), 0.0),
            joint_valid=joint_valid, joint_visible=joint_valid & jta_mask_to_h36m(raw["visible"]),
            person_id=raw["person_id"], person_valid=raw["person_valid"], camera=np.array(JTA_CAMERA))
        return video, crowded
