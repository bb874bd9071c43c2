"""AMASS (and other SMPL-family fits: CMU, Human3.6M) as a pose collection for training priors.

``root`` is searched recursively for ``*.npz``; each file is one motion sequence with ``poses``
(T, 3 + 3 J') angle-axis rotations, the global orientation first. The body joints kept are SMPL's
23 (72 numbers a frame: SMPL fits) or the 21 body joints of SMPL-H / SMPL-X (156 / 165 numbers:
their hand and face joints are left out, as body priors do). Files without ``poses`` (AMASS ships
``shape.npz`` beside the motions) are skipped; a file whose ``poses`` is malformed is one error.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules.readers.common import check_finite, open_npz, require_dir
from framework.errors import UserError

BODY_JOINTS = {72: 23, 156: 21, 165: 21}  # numbers a frame -> body joints after the global orientation


def read_amass(root: str | Path, stride: int = 1) -> dict[str, np.ndarray]:
    """Every ``stride``-th frame of every sequence: ``pose`` (N, J, 3) float32 angle-axis of the
    body joints and ``sequence`` (N,) int64, sequences numbered in sorted path order."""
    if int(stride) < 1:
        raise UserError(f"AMASS: stride must be >= 1, got {stride}")
    folder = require_dir(root, "pose collection root")
    poses, sequences, joints = [], [], None
    for path in sorted(folder.rglob("*.npz")):
        npz = open_npz(path)
        if "poses" not in npz.files:
            continue
        p = np.asarray(npz["poses"])
        if p.ndim != 2 or p.shape[1] not in BODY_JOINTS:
            raise UserError(f"{path}: poses must be (T, 72) SMPL, (T, 156) SMPL-H or (T, 165) SMPL-X angle-axis, "
                            f"got {p.shape}")
        j = BODY_JOINTS[p.shape[1]]
        if joints is not None and j != joints:
            raise UserError(f"{path}: {j} body joints a frame where earlier files have {joints}; "
                            f"keep one body model's fits under {folder}")
        joints = j
        body = p[::int(stride), 3:3 + 3 * j].reshape(-1, j, 3)
        check_finite(body, f"{path}: poses")
        poses.append(body.astype(np.float32))
        sequences.append(np.full(len(body), len(poses) - 1, dtype=np.int64))
    if not poses:
        raise UserError(f"pose collection root {folder}: no .npz file with a 'poses' array below it")
    return {"pose": np.concatenate(poses), "sequence": np.concatenate(sequences)}
