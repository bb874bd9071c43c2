"""MuPoTS-3D (Mehta et al. 2018), read from the released ``MultiPersonTestSet`` folders.

``root/TS<n>/`` for n = 1..20 (TS1-TS5 indoor, TS6-TS20 outdoor) holds
- ``annot.mat`` (MATLAB v5) with ``annotations``: a (num_frames, num_people) cell array whose
  cells are 1x1 structs with ``annot2`` (2, 17) pixels, ``annot3`` (3, 17) camera-frame mm,
  ``univ_annot3`` (3, 17) mm (rescaled to the universal skeleton) and ``isValidFrame`` (1, 1);
  a (frames, people) struct array with the same fields reads the same;
- ``occlusion.mat`` with ``occlusion_labels``: (num_frames, num_people) cells of (1, 17), 1 where
  the joint is occluded;
- ``img_%06d.jpg``: the pictures, numbered from 0 by annotation row.
Joints are in the MPI-INF-3DHP test order (``MPI_INF_3DHP17``, pelvis = 14) and come out in H36M
order (``MPI_INF_3DHP_TO_H36M``), metres.

Checked against public code that reads the release: ``zju3dv/SMAP`` ``lib/eval/mupots_smap.m``
(a version of the authors' MATLAB evaluation: ``annotations{i,k}.isValidFrame``,
``occlusion_labels{i,k}``, ``univ_annot3(:, 15)`` as the root, picture ``img_%06d.jpg`` of row
i - 1) and ``lib/eval/util_smap/mpii_get_multiperson_test_seq_info.m`` (TS1-5 2048 x 2048, the
others 1920 x 1080); ``3dpose/3D-Multi-Person-Pose`` ``eval_mupots_pck.py`` (annot2 sliced
``[:, joints]``, pelvis column 14, occlusion indexed [frame][person]); ``open-mmlab/mmhuman3d``
``mmhuman3d/data/data_converters/mupots3d.py`` (``dt['annot2'][0, 0]`` and
``dt['isValidFrame'][0, 0][0, 0]`` on ``loadmat(...)['annotations'][i, j]``, which only works
for a cell of 1x1 structs, and mm -> m by / 1000).

Each item is one frame (keys in :mod:`datamodules.readers.people_frames`); ``person_id`` is the
person's column in the file, people fill the slots in column order. A person whose
``isValidFrame`` is 0 in a frame is left out of that frame (the release marks those annotations
as not to be used); ``valid_only`` (default) drops the frames where nobody is left. Every
annotated joint of a valid person is valid. ``camera`` is fitted per sequence from the valid
``annot2`` / ``annot3`` pairs by least squares (x = fx X / Z + cx, y = fy Y / Z + cy), as the
release ships no intrinsics.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import scipy.io

from datamodules.readers.common import check_shape, require_dir, require_file
from datamodules.readers.people_frames import (DEFAULT_MAX_PEOPLE, NUM_JOINTS, PeopleFrameDataset, PeopleVideo,
                                               check_positive_int, frames_to_keep, optional_names,
                                               warn_dropped_people)
from framework.errors import UserError
from geometry.skeletons import MPI_INF_3DHP_TO_H36M

SEQUENCES = tuple(range(1, 21))
INDOOR_SEQUENCES = tuple(range(1, 6))
OUTDOOR_SEQUENCES = tuple(range(6, 21))
ANNOT_FIELDS = ("annot2", "annot3", "univ_annot3", "isValidFrame")
_SEQUENCE_DIR = re.compile(r"^TS(\d+)$")


def load_mat_variable(path: Path, name: str) -> np.ndarray:
    """One variable of a MATLAB v5 file, structs as objects with attributes, nothing squeezed."""
    try:
        contents = scipy.io.loadmat(str(path), squeeze_me=False, struct_as_record=False)
    except NotImplementedError:  # scipy's answer to v7.3 (HDF5) files
        raise UserError(f"{path}: a MATLAB v7.3 file; expected MATLAB v5 as released") from None
    except Exception as e:  # scipy raises ValueError, OSError, MatReadError... on a broken file
        raise UserError(f"{path}: not a readable MATLAB .mat file ({type(e).__name__}: {e})") from None
    if name not in contents:
        found = ", ".join(sorted(k for k in contents if not k.startswith("__"))) or "none"
        raise UserError(f"{path}: missing variable '{name}' (found: {found})")
    return contents[name]


def _grid(value: Any, path: Path, name: str) -> np.ndarray:
    """A (frames, people) cell or struct array as a 2D object array."""
    if not isinstance(value, np.ndarray) or value.ndim != 2 or value.dtype != object:
        shape = getattr(value, "shape", None)
        raise UserError(f"{path}: '{name}' should be a (frames, people) cell or struct array, "
                        f"got {type(value).__name__} of shape {shape}")
    return value


def _unwrap(value: Any) -> Any:
    """The struct inside a cell (a (1, 1) object array); a struct-array element is already one."""
    if isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        return value.flat[0]
    return value


def _struct_field(cell: Any, field_name: str, where: str) -> Any:
    struct = _unwrap(cell)
    fields = getattr(struct, "_fieldnames", None)
    if fields is None:
        raise UserError(f"{where}: expected a struct with fields {', '.join(ANNOT_FIELDS)}, "
                        f"got {type(struct).__name__}")
    if field_name not in fields:
        raise UserError(f"{where}: missing field '{field_name}' (found: {', '.join(fields) or 'none'})")
    return getattr(struct, field_name)


def read_annotations(path: Path) -> dict[str, np.ndarray]:
    """``annot.mat`` -> annot2 (F, P, 17, 2), annot3 / univ_annot3 (F, P, 17, 3) mm, valid (F, P), 3DHP order."""
    grid = _grid(load_mat_variable(path, "annotations"), path, "annotations")
    frames, people = grid.shape
    out = {"annot2": np.zeros((frames, people, NUM_JOINTS, 2)), "annot3": np.zeros((frames, people, NUM_JOINTS, 3)),
           "univ_annot3": np.zeros((frames, people, NUM_JOINTS, 3)), "valid": np.zeros((frames, people), bool)}
    for i in range(frames):
        for j in range(people):
            where = f"{path}: annotations{{{i + 1},{j + 1}}}"
            for name, rows in (("annot2", 2), ("annot3", 3), ("univ_annot3", 3)):
                value = check_shape(_struct_field(grid[i, j], name, where), (rows, NUM_JOINTS), f"{where}.{name}")
                out[name][i, j] = value.T
            flag = np.asarray(_struct_field(grid[i, j], "isValidFrame", where))
            if flag.size != 1:
                raise UserError(f"{where}.isValidFrame: expected a scalar, got shape {flag.shape}")
            out["valid"][i, j] = bool(float(flag.reshape(())) != 0)
    return out


def read_occlusion(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """``occlusion.mat`` -> (F, P, 17) bool, True where occluded, 3DHP order."""
    grid = _grid(load_mat_variable(path, "occlusion_labels"), path, "occlusion_labels")
    if grid.shape != shape:
        raise UserError(f"{path}: occlusion_labels has shape {grid.shape}, the annotations {shape} (frames, people)")
    occluded = np.zeros(shape + (NUM_JOINTS,), dtype=bool)
    for i in range(shape[0]):
        for j in range(shape[1]):
            where = f"{path}: occlusion_labels{{{i + 1},{j + 1}}}"
            labels = _unwrap(grid[i, j])
            if np.size(labels) != NUM_JOINTS:  # (1, 17) as released; (17, 1) or (17,) read the same
                raise UserError(f"{where}: expected {NUM_JOINTS} labels (1, 17), got shape {np.shape(labels)}")
            occluded[i, j] = check_shape(np.reshape(labels, -1), (NUM_JOINTS,), where) != 0
    return occluded


def fit_intrinsics(joints2d: np.ndarray, joints3d: np.ndarray, mask: np.ndarray, where: str) -> np.ndarray:
    """(fx, fy, cx, cy) from pixel / camera-frame pairs by least squares on x = fx X/Z + cx (and y)."""
    use = mask & (joints3d[..., 2] > 0)
    px, cam = joints2d[use], joints3d[use]
    camera = []
    for axis in (0, 1):
        ratio = cam[:, axis] / cam[:, 2]
        design = np.stack([ratio, np.ones_like(ratio)], axis=1)
        if len(ratio) < 2 or np.ptp(ratio) < 1e-9:
            raise UserError(f"{where}: too few valid joints in front of the camera to fit the intrinsics")
        (focal, centre), *_ = np.linalg.lstsq(design, px[:, axis], rcond=None)
        camera.append((focal, centre))
    (fx, cx), (fy, cy) = camera
    return np.array([fx, fy, cx, cy], dtype=np.float64)


def _sequence_numbers(root: Path, sequences: Optional[Sequence[Any]]) -> list[int]:
    """Sorted sequence numbers: the TS<n> folders found, or those asked for."""
    names = optional_names(sequences, "MuPoTS-3D sequences")
    if names is None:
        found = sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := _SEQUENCE_DIR.match(p.name)))
        if not found:
            raise UserError(f"MuPoTS-3D: no TS<n> sequence folders in {root}")
        return found
    numbers = []
    for name in names:
        m = _SEQUENCE_DIR.match(name) if isinstance(name, str) else None
        if m is None and not (isinstance(name, (int, np.integer)) and not isinstance(name, bool)):
            raise UserError(f"MuPoTS-3D: sequences are numbers 1..20 or names 'TS<n>', got {name!r}")
        numbers.append(int(m.group(1)) if m else int(name))
    return sorted(set(numbers))


def _people_in_slots(valid: np.ndarray, max_people: int) -> tuple[np.ndarray, int]:
    """(F, max_people) file column of each slot (-1 empty): valid people in column order; frames cut short."""
    frames, people = valid.shape
    columns = np.full((frames, max_people), -1, dtype=np.int64)
    crowded = 0
    for i in range(frames):
        kept = np.flatnonzero(valid[i])
        crowded += len(kept) > max_people
        kept = kept[:max_people]
        columns[i, :len(kept)] = kept
    return columns, crowded


def _gather(values: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """values (F, P, ...) -> (F, slots, ...) by column index, zeros in empty slots."""
    frames = np.arange(len(columns))[:, None]
    out = values[frames, np.maximum(columns, 0)]
    out[columns < 0] = 0
    return out


class MuPoTS3D(PeopleFrameDataset):
    """MuPoTS-3D frames with every person's 2D and 3D joints; ``sequences`` numbers or 'TS<n>' names."""

    def __init__(self, root: str | Path, sequences: Optional[Sequence[int | str]] = None,
                 max_people: int = DEFAULT_MAX_PEOPLE, stride: int = 1, valid_only: bool = True) -> None:
        what = "MuPoTS-3D"
        max_people = check_positive_int(max_people, "max_people", what)
        stride = check_positive_int(stride, "stride", what)
        root = require_dir(root, "MuPoTS-3D root")
        videos, crowded = [], 0
        for n in _sequence_numbers(root, sequences):
            video, lost = self._read_sequence(root / f"TS{n}", max_people, stride, valid_only)
            videos.append(video)
            crowded += lost
        warn_dropped_people(crowded, max_people, f"{what} in {root}")
        self.sequences = [v.name for v in videos]
        super().__init__(videos, f"{what} in {root} ({', '.join(self.sequences)})")

    @staticmethod
    def _read_sequence(folder: Path, max_people: int, stride: int, valid_only: bool) -> tuple[PeopleVideo, int]:
        annot_path = require_file(folder / "annot.mat", "MuPoTS-3D annotations")
        occlusion_path = require_file(folder / "occlusion.mat", "MuPoTS-3D occlusion labels")
        annot = read_annotations(annot_path)
        occluded = read_occlusion(occlusion_path, annot["valid"].shape)
        order = list(MPI_INF_3DHP_TO_H36M)
        joints2d, joints3d = annot["annot2"][:, :, order], annot["annot3"][:, :, order] / 1000.0
        univ = annot["univ_annot3"][:, :, order] / 1000.0
        finite = np.isfinite(joints2d).all(-1) & np.isfinite(joints3d).all(-1) & np.isfinite(univ).all(-1)
        joint_valid = annot["valid"][..., None] & finite
        camera = fit_intrinsics(joints2d, joints3d, joint_valid, f"{annot_path}: camera fit")
        columns, crowded = _people_in_slots(annot["valid"], max_people)
        person_valid = columns >= 0
        joint_valid = _gather(joint_valid, columns)
        video = PeopleVideo(
            name=folder.name, frames=np.arange(len(columns)),
            images=[folder / f"img_{i:06d}.jpg" for i in range(len(columns))],
            joints2d=_gather(np.nan_to_num(joints2d), columns),
            joints3d=_gather(np.nan_to_num(joints3d), columns),
            joint_valid=joint_valid,
            joint_visible=joint_valid & ~_gather(occluded[:, :, order], columns),
            person_id=columns, person_valid=person_valid, camera=camera,
            extra={"joints3d_univ": _gather(np.nan_to_num(univ), columns)})
        keep = frames_to_keep(person_valid.any(axis=1) if valid_only else np.ones(len(columns), bool), stride)
        return video.take(keep), crowded
