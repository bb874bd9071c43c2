"""MPI-INF-3DHP test set (TS1-TS6) gathered into one npz.

Arrays (N samples, 17 joints in the 3DHP test order ``MPI_INF_3DHP17``):
- ``pose2d`` (N, 17, 2): pixels (``annot2``);
- ``pose3d`` (N, 17, 3): camera-frame millimetres (``univ_annot3`` or ``annot3``);
- the image size: ``image_size`` (N, 2) or (2,) as (width, height), or ``image_width`` and
  ``image_height`` (N,) or scalars (TS1-4: 2048 x 2048, TS5-6: 1920 x 1080);
- optional ``valid`` (N,): frames with ``valid_frame`` = 0 are dropped unless
  ``valid_only=False``.

Samples come out in H36M-17 order (``MPI_INF_3DHP_TO_H36M``), metres, root-relative.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from datamodules.readers.common import (check_finite, check_shape, npz_array, open_npz,
                                        pose_item, require_dir, require_file)
from framework.errors import UserError
from geometry.camera import normalize_screen
from geometry.skeletons import MPI_INF_3DHP_TO_H36M

DEFAULT_FILENAME = "mpi_inf_3dhp_test.npz"


class MPIInf3DHPDataset(Dataset):
    def __init__(self, path: str | Path, valid_only: bool = True, stride: int = 1) -> None:
        if int(stride) < 1:
            raise UserError(f"MPIInf3DHPDataset: stride must be >= 1, got {stride}")
        path = require_file(path, "MPI-INF-3DHP test set")
        npz = open_npz(path)
        pose2d = check_shape(npz_array(npz, "pose2d", path), (None, 17, 2), f"{path}: pose2d")
        n = len(pose2d)
        pose3d = check_shape(npz_array(npz, "pose3d", path), (n, 17, 3), f"{path}: pose3d")
        width, height = self._image_size(npz, path, n)
        valid = np.ones(n, dtype=bool)
        if "valid" in npz.files:
            valid = check_shape(npz["valid"], (n,), f"{path}: valid") > 0
        check_finite(pose2d, f"{path}: pose2d")
        check_finite(pose3d, f"{path}: pose3d")
        keep = np.flatnonzero(valid if valid_only else np.ones(n, dtype=bool))[::stride]
        if len(keep) == 0:
            raise UserError(f"{path}: no valid samples")
        order = list(MPI_INF_3DHP_TO_H36M)
        cam3d = pose3d[keep][:, order] / 1000.0
        self.pose3d = (cam3d - cam3d[:, :1]).astype(np.float32)
        self.root_position = cam3d[:, 0].astype(np.float32)
        self.pose2d = normalize_screen(pose2d[keep][:, order], width[keep][:, None], height[keep][:, None]).astype(np.float32)
        self.source_index = keep  # row of each sample in the npz

    @classmethod
    def from_root(cls, root: str | Path, filename: str = DEFAULT_FILENAME, valid_only: bool = True,
                  stride: int = 1) -> "MPIInf3DHPDataset":
        return cls(require_dir(root, "MPI-INF-3DHP root") / filename, valid_only, stride)

    @staticmethod
    def _image_size(npz: Any, path: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
        if "image_size" in npz.files:
            size = np.asarray(npz["image_size"])
            size = check_shape(size, (2,), f"{path}: image_size", ndim=size.ndim if size.ndim in (1, 2) else 2)
            if size.ndim == 2 and len(size) != n:
                raise UserError(f"{path}: image_size: expected shape ({n}, 2) or (2,), got {size.shape}")
            size = np.broadcast_to(size, (n, 2))
            width, height = size[:, 0], size[:, 1]
        elif "image_width" in npz.files and "image_height" in npz.files:
            sizes = []
            for key in ("image_width", "image_height"):
                v = np.asarray(npz[key], dtype=np.float64)
                if v.shape not in ((), (n,)):
                    raise UserError(f"{path}: {key}: expected shape ({n},) or a scalar, got {v.shape}")
                sizes.append(np.broadcast_to(v, (n,)))
            width, height = sizes
        else:
            raise UserError(f"{path}: missing the image size: an 'image_size' array (N, 2) "
                            f"or 'image_width' and 'image_height' (found: {', '.join(sorted(npz.files))})")
        check_finite(np.stack([width, height]), f"{path}: image size")
        if np.any(width <= 0) or np.any(height <= 0):
            raise UserError(f"{path}: image sizes must be positive")
        return np.asarray(width, dtype=np.float64), np.asarray(height, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.pose3d)

    def __getitem__(self, index: int) -> dict[str, Any]:
        i = int(index)
        return pose_item(i, self.pose2d[i], self.pose3d[i], root_position=self.root_position[i])
