"""Multi-person frames: the item the people readers yield, and the helpers they share.

MuPoTS-3D (:mod:`datamodules.readers.mupots`) and JTA (:mod:`datamodules.readers.jta`) give one
item per frame, P = ``max_people`` person slots, 17 joints in H36M order (``H36M17``):

- ``image`` float32 (3, H, W): RGB, 0..255;
- ``joints2d`` float32 (P, 17, 2): pixels (x right, y down);
- ``joints3d`` float32 (P, 17, 3): camera frame, metres;
- ``joint_valid`` bool (P, 17): the joint is annotated;
- ``joint_visible`` bool (P, 17): annotated and not occluded;
- ``boxes`` float32 (P, 4): (x0, y0, x1, y1) pixels, the tight box of the valid 2D joints (not
  clipped to the picture; zeros where a slot has no valid joint);
- ``person_id`` int64 (P,): the data set's id of the person (-1 in an empty slot);
- ``person_valid`` bool (P,): the slot holds a person;
- ``camera`` float32 (4,): (fx, fy, cx, cy) in pixels;
- ``index``, ``video`` (the video's number in the data set's order), ``frame`` (as the data set
  numbers its frames): int64 scalars.

MuPoTS adds ``joints3d_univ`` float32 (P, 17, 3): ``univ_annot3`` (the skeleton rescaled to the
universal H36M height, what the official 3D PCK compares against), metres.

COCO keypoints (:mod:`datamodules.readers.coco_keypoints`) is 2D only and has no videos: ``image``,
``keypoints`` float32 (P, 17, 2) in COCO-17 order, ``keypoint_valid`` / ``keypoint_visible`` bool
(P, 17), ``boxes``, ``person_valid``, ``index`` and ``image_id`` int64.

Empty slots are zeros (``person_valid`` False) so the default collation stacks items. A frame with
more people than ``max_people`` keeps the first ``max_people`` (in the order each reader states)
and the reader warns once, when it is built, saying how many frames lost people.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import Dataset

from datamodules.readers.flow_formats import read_image
from datamodules.videos import VideoSpan
from framework.errors import UserError

DEFAULT_MAX_PEOPLE = 8
NUM_JOINTS = 17


def check_positive_int(value: Any, name: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise UserError(f"{what}: {name} must be an integer >= 1, got {value!r}")
    return int(value)


def warn_dropped_people(crowded_frames: int, max_people: int, what: str, unit: str = "frame") -> None:
    """One warning per data set: silently losing people would bias every metric."""
    if crowded_frames:
        rank_zero_warn(f"{what}: {crowded_frames} {unit}(s) have more than {max_people} people; "
                       f"kept the first {max_people} of each (raise max_people to keep them all)")


def slots_within_groups(groups: np.ndarray) -> np.ndarray:
    """Position of each entry among the entries of its group, in the given order.

    ``groups`` (N,) ints, e.g. the frame of each person; the result puts people into slots."""
    groups = np.asarray(groups)
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    first_of_group = np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    slots = np.empty(len(groups), dtype=np.int64)
    slots[order] = np.arange(len(groups)) - first_of_group
    return slots


def tight_boxes(joints2d: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(..., J, 2) pixels and (..., J) mask -> (..., 4) (x0, y0, x1, y1); zeros where nothing is valid."""
    big = np.finfo(np.float32).max
    lo = np.where(valid[..., None], joints2d, big).min(axis=-2)
    hi = np.where(valid[..., None], joints2d, -big).max(axis=-2)
    boxes = np.concatenate([lo, hi], axis=-1)
    return np.where(valid.any(axis=-1)[..., None], boxes, 0.0).astype(np.float32)


def read_rgb(path: Path) -> torch.Tensor:
    """A picture as float32 (3, H, W) RGB 0..255; a missing or unreadable file is a UserError naming it."""
    rgb = read_image(path)
    return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1).contiguous()


_PERSON_ARRAYS = {"joints2d": np.float32, "joints3d": np.float32, "joint_valid": bool,
                  "joint_visible": bool, "person_id": np.int64, "person_valid": bool}


@dataclass
class PeopleVideo:
    """One video's frames, people already in their slots (``max_people`` of them)."""

    name: str
    frames: np.ndarray  # (F,) frame numbers as the data set counts them
    images: list[Path]  # (F,) the picture of each frame
    joints2d: np.ndarray  # (F, P, 17, 2) pixels
    joints3d: np.ndarray  # (F, P, 17, 3) metres
    joint_valid: np.ndarray  # (F, P, 17)
    joint_visible: np.ndarray  # (F, P, 17)
    person_id: np.ndarray  # (F, P), -1 in empty slots
    person_valid: np.ndarray  # (F, P)
    camera: np.ndarray  # (4,) fx, fy, cx, cy
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # more (F, P, ...) float arrays

    def __post_init__(self) -> None:
        """Store the item dtypes at once: a long data set (JTA) must not sit in float64 in memory."""
        for name, dtype in _PERSON_ARRAYS.items():
            setattr(self, name, np.asarray(getattr(self, name), dtype=dtype))
        self.extra = {k: np.asarray(v, dtype=np.float32) for k, v in self.extra.items()}

    def take(self, keep: np.ndarray) -> "PeopleVideo":
        """The same video restricted to the frames ``keep`` (indices, in order)."""
        keep = np.asarray(keep, dtype=np.int64)
        return PeopleVideo(self.name, self.frames[keep], [self.images[i] for i in keep], self.joints2d[keep],
                           self.joints3d[keep], self.joint_valid[keep], self.joint_visible[keep],
                           self.person_id[keep], self.person_valid[keep], self.camera,
                           {k: v[keep] for k, v in self.extra.items()})


class PeopleFrameDataset(Dataset):
    """Frames of several videos, one item per frame (keys in this module's docstring)."""

    def __init__(self, videos: Sequence[PeopleVideo], what: str) -> None:
        if not videos or sum(len(v.frames) for v in videos) == 0:
            raise UserError(f"{what}: no frames")
        self.video_names = [v.name for v in videos]
        self.images = [p for v in videos for p in v.images]
        self.frame = np.concatenate([v.frames for v in videos]).astype(np.int64)
        self.video = np.repeat(np.arange(len(videos)), [len(v.frames) for v in videos]).astype(np.int64)
        self.cameras = np.stack([v.camera for v in videos]).astype(np.float32)
        self.joints2d = np.concatenate([v.joints2d for v in videos])
        self.joints3d = np.concatenate([v.joints3d for v in videos])
        self.joint_valid = np.concatenate([v.joint_valid for v in videos])
        self.joint_visible = np.concatenate([v.joint_visible for v in videos])
        self.person_id = np.concatenate([v.person_id for v in videos])
        self.person_valid = np.concatenate([v.person_valid for v in videos])
        self.extra = {k: np.concatenate([v.extra[k] for v in videos]) for k in videos[0].extra}

    def __len__(self) -> int:
        return len(self.frame)

    def videos(self) -> dict[int, VideoSpan]:
        """{video: (name, dataset indices in frame order)}; items are stored video by video, in order."""
        out: dict[int, VideoSpan] = {}
        for i, v in enumerate(self.video.tolist()):
            out.setdefault(v, VideoSpan(self.video_names[v], [])).indices.append(i)
        return out

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} frames")
        item = {"image": read_rgb(self.images[index])}
        for name in _PERSON_ARRAYS:
            item[name] = torch.tensor(getattr(self, name)[index])
        for name, values in self.extra.items():
            item[name] = torch.tensor(values[index])
        item["boxes"] = torch.from_numpy(tight_boxes(self.joints2d[index], self.joint_valid[index]))
        item["camera"] = torch.tensor(self.cameras[self.video[index]])
        item["index"] = torch.tensor(index, dtype=torch.int64)
        item["video"] = torch.tensor(int(self.video[index]), dtype=torch.int64)
        item["frame"] = torch.tensor(int(self.frame[index]), dtype=torch.int64)
        return item


def frames_to_keep(selectable: np.ndarray, stride: int) -> np.ndarray:
    """Indices of the selectable frames, every ``stride``-th of them."""
    return np.flatnonzero(selectable)[::stride]


def optional_names(values: Optional[Sequence[Any]], what: str) -> Optional[list[Any]]:
    """A list from a sequence argument; a bare string is one name, not its characters."""
    if values is None:
        return None
    if isinstance(values, (str, int, np.integer)):
        return [values]
    try:
        return list(values)
    except TypeError:
        raise UserError(f"{what}: expected a list, got {type(values).__name__}") from None
