"""CroHD (HT21) head tracks in the MOT layout, as point tracks.

A sequence folder holds ``img1/000001.jpg ...`` and ``gt/gt.txt``, one box a line:
``frame, id, left, top, width, height, conf, class, visibility`` (frames 1-based; only the first
six columns are required). Each head id is one track: its box centre (left + width / 2,
top + height / 2) per frame, valid where the id has a box, visible where the visibility column is
above ``min_visibility`` (PIPs' CroHD loaders use this column; without it, wherever the box
exists). Rows with conf 0 are the MOT mark for "do not evaluate" and are skipped. Where an id has
no box, the track holds its nearest annotated position (``valid`` is False there).

``root`` is one sequence folder or a folder of them (e.g. ``HT21/train``). An item is a whole
sequence, or a clip of it with ``clip_length``; frames can be thinned with ``frame_step`` (PIPs
keeps every 3rd) and tracks subsampled with ``max_tracks`` (a seeded draw per item). Each track is
queried at its first visible frame of the clip; tracks never visible in it are left out. Frames
are decoded lazily (a sequence is thousands of 1080p frames). Items follow
:mod:`datamodules.readers.tracking_datasets`.
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from datamodules.readers.common import require_dir, require_file
from datamodules.readers.flow_formats import read_image
from datamodules.readers.tracking_datasets import LazyFrames, check_resize, make_item
from framework.errors import UserError

_FRAME = re.compile(r"^(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)
COLUMNS = "frame, id, left, top, width, height[, conf, class, visibility]"


class MotTracks(NamedTuple):
    """Dense tracks of one sequence: (T, N) over all frames and ids (``ids`` sorted)."""

    ids: np.ndarray  # (N,) int64
    centres: np.ndarray  # (T, N, 2) float32
    valid: np.ndarray  # (T, N) bool
    visible: np.ndarray  # (T, N) bool


def _rows(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(rows (M, C) float64, their line numbers (M,)) of a MOT text file; blank lines skipped."""
    lines = path.read_text(errors="replace").splitlines()
    numbers = [i + 1 for i, line in enumerate(lines) if line.strip()]
    kept = [lines[i - 1] for i in numbers]
    if not kept:
        raise UserError(f"{path}: no rows (expected lines of {COLUMNS})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rows = np.loadtxt(kept, delimiter=",", ndmin=2, dtype=np.float64)
    except ValueError:
        rows = None
    width = len(kept[0].split(","))
    if rows is None:  # find the line at fault, to name it
        for n, line in zip(numbers, kept):
            fields = line.split(",")
            if len(fields) != width:
                raise UserError(f"{path}: line {n} has {len(fields)} values, line {numbers[0]} has {width}")
            try:
                [float(f) for f in fields]
            except ValueError:
                raise UserError(f"{path}: line {n} is not {len(fields)} comma-separated numbers: "
                                f"{line[:80]!r}") from None
        raise UserError(f"{path}: not a comma-separated table of numbers")
    if rows.shape[1] < 6:
        raise UserError(f"{path}: line {numbers[0]} has {rows.shape[1]} values; expected at least 6: {COLUMNS}")
    return rows, np.asarray(numbers)


def read_mot_tracks(path: str | os.PathLike, num_frames: int, min_visibility: float = 0.0) -> MotTracks:
    """``gt.txt`` -> dense tracks over frames 1..``num_frames``; a bad row is one UserError naming its line."""
    path = require_file(path, "CroHD ground truth")
    rows, lines = _rows(path)

    def fail(bad: np.ndarray, what: str):
        k = int(np.flatnonzero(bad)[0])
        raise UserError(f"{path}: line {lines[k]}: {what} (row {', '.join(f'{v:g}' for v in rows[k][:9])})")

    check = np.isfinite(rows[:, :6]).all(1)
    if not check.all():
        fail(~check, "non-finite value")
    frame, ident = rows[:, 0], rows[:, 1]
    for col, name in ((frame, "frame"), (ident, "id")):
        bad = (col != np.round(col)) | (col < (1 if name == "frame" else 0))
        if bad.any():
            fail(bad, f"{name} must be a {'positive ' if name == 'frame' else 'non-negative '}integer")
    bad = (rows[:, 4] < 0) | (rows[:, 5] < 0)
    if bad.any():
        fail(bad, "negative box width or height")
    bad = frame > num_frames
    if bad.any():
        fail(bad, f"frame {int(frame[np.flatnonzero(bad)[0]])} beyond the {num_frames} images of the sequence")
    if rows.shape[1] >= 7:  # MOT: conf 0 marks a box to be ignored
        keep = rows[:, 6] != 0
        rows, lines = rows[keep], lines[keep]
        frame, ident = rows[:, 0], rows[:, 1]
    f_idx = frame.astype(np.int64) - 1
    ids, col = np.unique(ident.astype(np.int64), return_inverse=True)
    key = f_idx * max(len(ids), 1) + col
    _, first, counts = np.unique(key, return_index=True, return_counts=True)
    if (counts > 1).any():
        dup = np.zeros(len(key), bool)
        k = first[np.flatnonzero(counts > 1)[0]]
        dup[np.flatnonzero(key == key[k])[1]] = True
        fail(dup, f"a second box for id {int(ident[k])} in frame {int(frame[k])}")
    T, N = num_frames, len(ids)
    centres = np.zeros((T, N, 2))
    valid = np.zeros((T, N), bool)
    visible = np.zeros((T, N), bool)
    centres[f_idx, col, 0] = rows[:, 2] + rows[:, 4] / 2
    centres[f_idx, col, 1] = rows[:, 3] + rows[:, 5] / 2
    valid[f_idx, col] = True
    if rows.shape[1] >= 9:
        vis = rows[:, 8]
        visible[f_idx, col] = np.isfinite(vis) & (vis > min_visibility)
    else:
        visible[f_idx, col] = True
    return MotTracks(ids, centres.astype(np.float32), valid, visible)


def list_frames(folder: Path) -> list[Path]:
    """The frame images 1..T of ``img1``; a gap in the numbering is one UserError naming it."""
    found = {}
    for p in folder.iterdir():
        m = _FRAME.match(p.name)
        if m and p.is_file():
            found[int(m.group(1))] = p
    if not found:
        raise UserError(f"CroHD: no frame images (000001.jpg ...) in {folder}")
    missing = [n for n in range(1, max(found) + 1) if n not in found]
    if missing:
        raise UserError(f"CroHD: {folder} has frames up to {max(found):06d} but not {missing[0]:06d}")
    return [found[n] for n in range(1, max(found) + 1)]


class Clip(NamedTuple):
    sequence: int
    start: int  # in kept frames
    stop: int


class CroHD(Dataset):
    """CroHD sequences (or clips of them) as point-track videos; see the module doc."""

    def __init__(self, root: str | os.PathLike, sequences: Optional[Sequence[str]] = None,
                 clip_length: Optional[int] = None, clip_stride: Optional[int] = None, frame_step: int = 1,
                 max_tracks: Optional[int] = None, resize: Optional[Sequence[int]] = None,
                 min_visibility: float = 0.0, seed: int = 0):
        root = require_dir(root, "CroHD root")
        where = f"CroHD {root}"
        for name, value, low, optional in (("frame_step", frame_step, 1, False), ("clip_length", clip_length, 2, True),
                                           ("clip_stride", clip_stride, 1, True), ("max_tracks", max_tracks, 1, True)):
            if value is None and optional:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise UserError(f"{where}: {name} must be an integer >= {low}{' or None' if optional else ''}, "
                                f"got {value!r}")
        self.resize = check_resize(resize, where)
        self.frame_step, self.max_tracks, self.seed = int(frame_step), max_tracks, int(seed)
        self.min_visibility = float(min_visibility)
        folders = [root] if (root / "img1").is_dir() else sorted(p for p in root.iterdir() if (p / "img1").is_dir())
        if not folders:
            raise UserError(f"{where}: neither a sequence folder (with img1/ and gt/gt.txt) nor a folder of them")
        if sequences is not None:
            names = [p.name for p in folders]
            missing = [s for s in sequences if s not in names]
            if missing:
                raise UserError(f"{where}: sequence(s) {', '.join(missing)} not found (found: {', '.join(names)})")
            folders = [p for p in folders if p.name in set(sequences)]
        self.sequences: list[str] = []
        self._frames: list[list[Path]] = []
        self._tracks: list[MotTracks] = []
        self._size: list[tuple[int, int]] = []
        self.clips: list[Clip] = []
        for s, folder in enumerate(folders):
            frames = list_frames(folder / "img1")
            gt = require_file(folder / "gt" / "gt.txt", f"CroHD ground truth of {folder.name}")
            tracks = read_mot_tracks(gt, len(frames), self.min_visibility)
            kept = list(range(0, len(frames), self.frame_step))
            self.sequences.append(folder.name)
            self._frames.append([frames[k] for k in kept])
            self._tracks.append(MotTracks(tracks.ids, tracks.centres[kept], tracks.valid[kept], tracks.visible[kept]))
            self._size.append(read_image(frames[0]).shape[:2])
            length = len(kept) if clip_length is None else int(clip_length)
            stride = length if clip_stride is None else int(clip_stride)
            for start in range(0, len(kept), stride):
                stop = min(start + length, len(kept))
                if stop - start >= 2 or len(kept) == 1:
                    self.clips.append(Clip(s, start, stop))
                if stop == len(kept):
                    break
        if not self.clips:
            raise UserError(f"{where}: no clips")

    @property
    def video_of_index(self) -> list[str]:
        """Sequence name of every dataset index (for per-video metric breakdowns)."""
        return [self.sequences[c.sequence] for c in self.clips]

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        seq, start, stop = self.clips[index]
        tracks = self._tracks[seq]
        h, w = self._size[seq]
        valid = tracks.valid[start:stop]
        visible = tracks.visible[start:stop]
        cols = np.flatnonzero(visible.any(0))
        if self.max_tracks is not None and len(cols) > self.max_tracks:
            rng = np.random.default_rng((self.seed, index))
            cols = np.sort(rng.choice(cols, self.max_tracks, replace=False))
        trajs = tracks.centres[start:stop, cols]
        if self.resize is not None:
            trajs = trajs * np.array([self.resize[1] / w, self.resize[0] / h])
        paths = self._frames[seq][start:stop]
        frames = LazyFrames(paths, lambda p, _name: read_image(p), [str(p) for p in paths], self.resize, (h, w))
        name = self.sequences[seq] if (start, stop) == (0, len(self._frames[seq])) \
            else f"{self.sequences[seq]}@{start * self.frame_step + 1:06d}"
        return make_item(frames, trajs, visible[:, cols], valid[:, cols], "first", 1, name, index,
                         track_ids=tracks.ids[cols])
