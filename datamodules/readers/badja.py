"""BADJA animal keypoint videos (Biggs et al. 2018) as point tracks, in the release's own layout.

``root/joint_annotations/<animal>.json`` is a list, one entry per annotated frame, of
``{"image_path": "DAVIS/JPEGImages/Full-Resolution/<animal>/00010.jpg", "joints": [[y, x], ...],
"visibility": [0 or 1, ...], ...}`` with paths relative to ``root``. Only some frames carry joints
(about every 5th); the video is every frame of that folder from the first annotated frame to the
last, as the PIPs loader does. Joints are stored (y, x) and become (x, y). A joint whose
visibility is 0 has no usable position, so it is neither valid nor visible there; frames without
annotation are not valid either. ``joints="annotated"`` keeps the 20 SMAL joints BADJA labels
(the PIPs evaluation's list), ``None`` every joint in the file. Each joint is queried at its first
visible frame. Items follow :mod:`datamodules.readers.tracking_datasets`; frames load lazily.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from torch.utils.data import Dataset

from datamodules.readers.common import require_dir
from datamodules.readers.flow_formats import read_image
from datamodules.readers.tracking_datasets import LazyFrames, check_resize, make_item
from framework.errors import UserError

ANNOTATED_JOINTS = (8, 9, 10, 12, 13, 14, 15, 18, 19, 20, 22, 23, 24, 25, 28, 31, 32, 33, 35, 36)
_NUMBER = re.compile(r"^(\d+)\.(jpg|jpeg|png)$", re.IGNORECASE)


def _frame_number(path: str, where: str) -> int:
    m = _NUMBER.match(Path(path).name)
    if not m:
        raise UserError(f"{where}: image_path {path!r} does not end in a frame number (00010.jpg)")
    return int(m.group(1))


def read_badja_annotations(path: Path, joints: Optional[Sequence[int]]) -> dict[str, Any]:
    """One animal's JSON -> its frame folder, frame numbers and per-frame joints; one UserError per problem."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(data, list) or not data:
        raise UserError(f"{path}: expected a non-empty list of per-frame annotations, got "
                        f"{type(data).__name__ if not isinstance(data, list) else 'an empty list'}")
    frames: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    folder, count = None, None
    for k, entry in enumerate(data):
        where = f"{path}: entry {k}"
        if not isinstance(entry, dict):
            raise UserError(f"{where}: expected an object, got {type(entry).__name__}")
        missing = [key for key in ("image_path", "joints", "visibility") if key not in entry]
        if missing:
            raise UserError(f"{where}: missing key(s) {', '.join(missing)} (found: {', '.join(entry) or 'none'})")
        try:
            xy = np.asarray(entry["joints"], dtype=np.float64)
            vis = np.asarray(entry["visibility"], dtype=np.float64)
        except (TypeError, ValueError):
            raise UserError(f"{where}: 'joints' and 'visibility' must be numbers") from None
        if xy.ndim != 2 or xy.shape[1] != 2 or vis.shape != (xy.shape[0],):
            raise UserError(f"{where}: 'joints' must be (J, 2) and 'visibility' (J,), got {xy.shape} and {vis.shape}")
        if count is None:
            count = xy.shape[0]
        elif xy.shape[0] != count:
            raise UserError(f"{where}: {xy.shape[0]} joints, entry 0 has {count}")
        image = str(entry["image_path"])
        here = str(Path(image).parent)
        if folder is None:
            folder = here
        elif here != folder:
            raise UserError(f"{where}: image in {here}, entry 0 in {folder}: one video per file is expected")
        frames[_frame_number(image, where)] = (xy[:, ::-1], (vis > 0.5) & np.isfinite(xy).all(1))
    keep = list(range(count)) if joints is None else list(joints)
    if keep and max(keep) >= count:
        raise UserError(f"{path}: joint {max(keep)} asked for, the file has {count} joints")
    return {"folder": folder, "frames": {f: (xy[keep], vis[keep]) for f, (xy, vis) in frames.items()},
            "joint_ids": np.asarray(keep, np.int64)}


class Badja(Dataset):
    """BADJA videos; see the module doc. Item i is one animal's video."""

    def __init__(self, root: str | os.PathLike, animals: Optional[Sequence[str]] = None,
                 joints: Optional[str | Sequence[int]] = "annotated", resize: Optional[Sequence[int]] = None):
        root = require_dir(root, "BADJA root")
        where = f"BADJA {root}"
        self.resize = check_resize(resize, where)
        if joints == "annotated":
            joints = ANNOTATED_JOINTS
        elif isinstance(joints, str):
            raise UserError(f"{where}: joints must be 'annotated', a list of joint numbers or None, got {joints!r}")
        files = sorted(require_dir(root / "joint_annotations", "BADJA annotations").glob("*.json"))
        found = [f.stem for f in files]
        if animals is not None:
            missing = [a for a in animals if a not in found]
            if missing:
                raise UserError(f"{where}: animal(s) {', '.join(missing)} not in {root / 'joint_annotations'} "
                                f"(found: {', '.join(found) or 'none'})")
            files = [f for f in files if f.stem in set(animals)]
        if not files:
            raise UserError(f"{where}: no <animal>.json files in {root / 'joint_annotations'}")
        self.videos: list[dict[str, Any]] = []
        for f in files:
            ann = read_badja_annotations(f, joints)
            folder = require_dir(root / ann["folder"], f"BADJA frames of {f.name}")
            numbers = sorted(ann["frames"])
            images = {int(m.group(1)): p for p in folder.iterdir() if (m := _NUMBER.match(p.name))}
            paths = []
            for n in range(numbers[0], numbers[-1] + 1):
                if n not in images:
                    raise UserError(f"{where}: frame {n} of {f.stem} is missing from {folder}")
                paths.append(images[n])
            self.videos.append({"name": f.stem, "paths": paths, "first": numbers[0], **ann})

    @property
    def video_of_index(self) -> list[str]:
        return [v["name"] for v in self.videos]

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        v = self.videos[index]
        paths = v["paths"]
        frames = LazyFrames(paths, lambda p, _name: read_image(p), [str(p) for p in paths], self.resize)
        J = len(v["joint_ids"])
        trajs = np.zeros((len(paths), J, 2))
        valid = np.zeros((len(paths), J), bool)
        for n, (xy, vis) in v["frames"].items():
            trajs[n - v["first"]] = np.where(vis[:, None], xy, 0.0)
            valid[n - v["first"]] = vis
        if self.resize is not None:
            h, w = read_image(paths[0]).shape[:2]
            trajs = trajs * np.array([self.resize[1] / w, self.resize[0] / h])
        return make_item(frames, trajs, valid.copy(), valid, "first", 1, v["name"], index, track_ids=v["joint_ids"])
