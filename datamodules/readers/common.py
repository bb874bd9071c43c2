"""Checks and conversions the real-dataset readers share.

Every problem with a file becomes one ``UserError`` that names the file and what
was expected, so a user can fix their download without reading a traceback.
"""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from framework.errors import UserError


def require_dir(root: str | Path, what: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise UserError(f"{what}: directory {path} does not exist")
    return path


def require_file(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{what}: file {path} does not exist")
    return path


def open_npz(path: Path, allow_pickle: bool = False) -> Any:
    try:
        return np.load(path, allow_pickle=allow_pickle)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise UserError(f"{path}: not a readable .npz file ({e})") from None


def npz_array(npz: Any, key: str, path: Path) -> np.ndarray:
    if key not in npz.files:
        raise UserError(f"{path}: missing array '{key}' (found: {', '.join(sorted(npz.files)) or 'none'})")
    try:
        return npz[key]
    except ValueError as e:  # e.g. an object array without allow_pickle
        raise UserError(f"{path}: array '{key}' could not be read ({e})") from None


def check_shape(arr: Any, tail: Sequence[Optional[int]], where: str, ndim: Optional[int] = None) -> np.ndarray:
    """``arr`` as a float64 array whose trailing dims match ``tail`` (None = any size)."""
    try:
        a = np.asarray(arr, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where}: expected a numeric array, got {type(arr).__name__}") from None
    ndim = len(tail) if ndim is None else ndim
    if a.ndim != ndim or any(t is not None and s != t for s, t in zip(a.shape[a.ndim - len(tail):], tail)):
        want = "(" + ", ".join("N" if t is None else str(t) for t in ([None] * (ndim - len(tail)) + list(tail))) + ")"
        raise UserError(f"{where}: expected shape {want}, got {tuple(a.shape)}")
    return a


def check_finite(a: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise UserError(f"{where}: contains {bad} NaN/Inf values")


def normalized_camera(fx, fy, cx, cy, width, height) -> np.ndarray:
    """Pixel intrinsics -> (f_x, f_y, c_x, c_y) in normalised screen units (..., 4)."""
    w = np.asarray(width, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    return np.stack(np.broadcast_arrays(2 * np.asarray(fx) / w, 2 * np.asarray(fy) / w,
                                        2 * np.asarray(cx) / w - 1, 2 * np.asarray(cy) / w - h / w), axis=-1)


def pose_item(index: int, pose2d: np.ndarray, pose3d: np.ndarray, camera: Optional[np.ndarray] = None,
              root_position: Optional[np.ndarray] = None) -> dict[str, torch.Tensor]:
    """The pose-lifting sample dict; ``camera`` / ``root_position`` only where the dataset knows them."""
    item = {
        "pose2d": torch.as_tensor(np.asarray(pose2d, dtype=np.float32)),
        "pose3d": torch.as_tensor(np.asarray(pose3d, dtype=np.float32)),
        "index": torch.tensor(int(index), dtype=torch.int64),
    }
    if camera is not None:
        item["camera"] = torch.as_tensor(np.asarray(camera, dtype=np.float32))
    if root_position is not None:
        item["root_position"] = torch.as_tensor(np.asarray(root_position, dtype=np.float32))
        item["root_depth"] = torch.tensor(float(root_position[2]), dtype=torch.float32)
    return item
