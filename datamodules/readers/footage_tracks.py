"""A user's own footage as one unlabelled tracking video: all kept frames and the query points.

Queries are a regular grid on the first frame by default, or read from a file of points: ``.npy``
or text (``.txt`` / ``.csv``, comma or space separated), one point a row as ``x y`` (queried at
frame 0) or ``t x y``. Frames come from :class:`datamodules.readers.footage.UserFootage` (a video
file or a folder of frames), so sizes, steps and resizing behave as for flow footage.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from geometry.tracks import grid_points
from datamodules.readers.footage import UserFootage
from datamodules.videos import VideoSpan
from framework.errors import UserError


def _text_points(path: Path) -> tuple[np.ndarray, list[str]]:
    """Rows of a text points file and where each came from ("line N" of the file, comments and blank
    lines counted, so the number is the one an editor shows)."""
    rows, where = [], []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a readable points file ({e})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        values = line.replace(",", " ").split()
        try:
            row = [float(v) for v in values]
        except ValueError:
            raise UserError(f"{path}: line {number} ({line.strip()!r}) is not numbers; each line is 'x y' or "
                            f"'t x y'") from None
        if len(row) not in (2, 3) or (rows and len(row) != len(rows[0])):
            raise UserError(f"{path}: line {number} has {len(row)} numbers; every line must have 2 ('x y') or "
                            f"every line 3 ('t x y')")
        rows.append(row)
        where.append(f"line {number}")
    return np.asarray(rows, dtype=np.float64).reshape(len(rows), len(rows[0]) if rows else 3), where


def read_query_points(path: str | os.PathLike, frames: int, height: int, width: int) -> np.ndarray:
    """(N, 3) float32 (t, x, y) from a points file; every point must lie inside the video."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"query points file {path} does not exist")
    if path.suffix == ".npy":
        try:
            points = np.asarray(np.load(path, allow_pickle=False), dtype=np.float64)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: not a readable .npy array ({e})") from None
        if points.ndim != 2 or points.shape[1] not in (2, 3):
            raise UserError(f"{path}: expected an (N, 2) or (N, 3) array of 'x y' or 't x y', got shape {points.shape}")
        where = [f"row {i + 1}" for i in range(len(points))]
    else:
        points, where = _text_points(path)
    if len(points) == 0:
        raise UserError(f"{path}: holds no points (rows of 'x y' or 't x y')")
    if points.shape[1] == 2:
        points = np.concatenate([np.zeros((len(points), 1)), points], 1)
    finite = np.isfinite(points).all(1)
    if not finite.all():
        raise UserError(f"{path}: {where[int(np.flatnonzero(~finite)[0])]} holds NaN or Inf")
    t, x, y = points.T
    bad = (t < 0) | (t > frames - 1) | (t != np.round(t)) | (x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise UserError(f"{path}: {where[row]} ({' '.join(f'{v:g}' for v in points[row])}) lies outside the "
                        f"video ({frames} frames of {width} x {height} px, t an integer frame)")
    return points.astype(np.float32)


class FootageTracks(Dataset):
    """One item: ``frames`` (T, 3, H, W) float32 0..255, ``queries`` (N, 3), ``index`` and ``video`` 0, and for a
    video file ``fps``, its kept frames' rate (so the overlay video plays at the source's speed)."""

    def __init__(self, path: str | os.PathLike, queries: Optional[str] = None, grid_spacing: int = 16,
                 max_frames: Optional[int] = None, frame_step: int = 1, resize: Optional[Sequence[int]] = None,
                 min_size: int = 64) -> None:
        self.footage = UserFootage(path, max_frames=max_frames, frame_step=frame_step, resize=resize,
                                   min_size=min_size)
        self.name = self.footage.name
        frames = len(self.footage.frame_names)
        h, w = self.footage.size
        if queries:
            self.queries = read_query_points(queries, frames, h, w)
        else:
            grid = grid_points(h, w, grid_spacing, margin=2).numpy()
            self.queries = np.concatenate([np.zeros((len(grid), 1), np.float32), grid], 1)

    def __len__(self) -> int:
        return 1

    def videos(self) -> dict[int, VideoSpan]:
        """{0: (name, [0])}: the footage is one video, its one item (as ``UserFootage``'s pairs)."""
        return {0: VideoSpan(self.name, [0])}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index != 0:
            raise IndexError(f"footage {self.footage.path} is one video; index {index} is out of range")
        frames = torch.stack([self.footage.frame(i) for i in range(len(self.footage.frame_names))])
        item = {"frames": frames, "queries": torch.from_numpy(self.queries),
                "index": torch.tensor(0, dtype=torch.int64), "video": torch.tensor(0, dtype=torch.int64)}
        if self.footage.fps is not None:
            item["fps"] = torch.tensor(self.footage.fps, dtype=torch.float32)
        return item
