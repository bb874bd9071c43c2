"""COCO person keypoints, read from the released annotation JSON and image folders.

``root/annotations/person_keypoints_<split>.json`` (split e.g. ``train2017``, ``val2017``) with
- ``images``: ``id``, ``file_name`` (the picture is ``root/<split>/<file_name>``);
- ``annotations``: ``image_id``, ``keypoints`` (51 numbers: x, y, v for the 17 COCO joints,
  v = 0 not labelled, 1 labelled but not visible, 2 labelled and visible), ``bbox`` (x, y, w, h),
  ``iscrowd``, ``category_id``;
- ``categories``: the ``person`` category (its ``keypoints`` names, 17 of them).

One item per image (keys in :mod:`datamodules.readers.people_frames`), people in the order of the
annotation list, keypoints in COCO-17 order (``COCO17``), 2D only. Crowd regions and people with
no labelled keypoint are skipped by default, and so are the images left with nobody.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.readers.common import require_dir, require_file
from datamodules.readers.people_frames import (DEFAULT_MAX_PEOPLE, NUM_JOINTS, check_positive_int, read_rgb,
                                               warn_dropped_people)
from framework.errors import UserError


def read_json(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not a JSON file ({e})") from None
    except OSError as e:
        raise UserError(f"{path}: could not be read ({e})") from None


def _field(record: Any, key: str, where: str) -> Any:
    if not isinstance(record, dict):
        raise UserError(f"{where}: expected an object, got {type(record).__name__}")
    if key not in record:
        raise UserError(f"{where}: missing field '{key}'")
    return record[key]


def _numbers(value: Any, length: int, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UserError(f"{where}: expected {length} numbers") from None
    if arr.shape != (length,) or not np.all(np.isfinite(arr)):
        raise UserError(f"{where}: expected {length} finite numbers, got shape {arr.shape}")
    return arr


def _person_categories(categories: Any, path: Path) -> set[int]:
    if not isinstance(categories, list):
        raise UserError(f"{path}: 'categories' should be a list")
    ids = set()
    for c in categories:
        if isinstance(c, dict) and c.get("name") == "person":
            names = c.get("keypoints", [None] * NUM_JOINTS)
            if len(names) != NUM_JOINTS:
                raise UserError(f"{path}: the person category has {len(names)} keypoints, COCO has {NUM_JOINTS}")
            ids.add(_field(c, "id", f"{path}: person category"))
    if not ids:
        raise UserError(f"{path}: no 'person' category in 'categories'")
    return ids


class COCOKeypoints(Dataset):
    """COCO images with their people's 2D keypoints, padded to ``max_people``."""

    def __init__(self, root: str | Path, split: str = "val2017", max_people: int = DEFAULT_MAX_PEOPLE,
                 skip_crowd: bool = True, skip_unlabelled: bool = True, keep_empty_images: bool = False) -> None:
        what = f"COCO keypoints {split}"
        max_people = check_positive_int(max_people, "max_people", what)
        root = require_dir(root, "COCO root")
        path = require_file(root / "annotations" / f"person_keypoints_{split}.json", f"{what} annotations")
        image_dir = require_dir(root / split, f"{what} images")
        data = read_json(path)
        images = self._images(data, path)
        people = {image_id: [] for image_id in images}
        person_categories = _person_categories(_field(data, "categories", str(path)), path)
        annotations = _field(data, "annotations", str(path))
        if not isinstance(annotations, list):
            raise UserError(f"{path}: 'annotations' should be a list")
        for k, ann in enumerate(annotations):
            where = f"{path}: annotation {k}" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
            person = self._person(ann, where, person_categories, skip_crowd, skip_unlabelled)
            if person is None:
                continue
            image_id = _field(ann, "image_id", where)
            if image_id not in people:
                raise UserError(f"{where}: image_id {image_id} is not in 'images'")
            people[image_id].append(person)
        kept = [i for i in images if people[i] or keep_empty_images]
        if not kept:
            raise UserError(f"{what} in {root}: no image with a person left")
        warn_dropped_people(sum(len(people[i]) > max_people for i in kept), max_people, f"{what} in {root}", "image")
        self._store(kept, people, max_people)
        self.paths = [image_dir / images[i] for i in kept]

    @staticmethod
    def _images(data: Any, path: Path) -> dict[Any, str]:
        """{image id: file name}, in file order."""
        records = _field(data, "images", str(path))
        if not isinstance(records, list):
            raise UserError(f"{path}: 'images' should be a list")
        out = {}
        for k, rec in enumerate(records):
            where = f"{path}: image {k}"
            image_id = _field(rec, "id", where)
            if isinstance(image_id, bool) or not isinstance(image_id, int):
                raise UserError(f"{where}: 'id' should be an integer, got {image_id!r}")
            out[image_id] = str(_field(rec, "file_name", where))
        return out

    @staticmethod
    def _person(ann: Any, where: str, categories: set[int], skip_crowd: bool,
                skip_unlabelled: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """(keypoints (17, 3), box (4,) x0 y0 x1 y1), or None where the annotation is skipped."""
        keypoints = _numbers(_field(ann, "keypoints", where), 3 * NUM_JOINTS, f"{where}: keypoints")
        keypoints = keypoints.reshape(NUM_JOINTS, 3)
        if "category_id" in ann and ann["category_id"] not in categories:
            return None
        if not np.isin(keypoints[:, 2], (0, 1, 2)).all():
            raise UserError(f"{where}: keypoint flags v must be 0, 1 or 2, got {sorted(set(keypoints[:, 2].tolist()))}")
        x, y, w, h = _numbers(_field(ann, "bbox", where), 4, f"{where}: bbox")
        crowd = _field(ann, "iscrowd", where)
        if (skip_crowd and crowd) or (skip_unlabelled and not np.any(keypoints[:, 2] > 0)):
            return None
        return keypoints, np.array([x, y, x + w, y + h])

    def _store(self, kept: list[Any], people: dict[Any, list], max_people: int) -> None:
        n = len(kept)
        self.keypoints = np.zeros((n, max_people, NUM_JOINTS, 2), np.float32)
        self.flags = np.zeros((n, max_people, NUM_JOINTS), np.int8)
        self.boxes = np.zeros((n, max_people, 4), np.float32)
        self.person_valid = np.zeros((n, max_people), bool)
        self.image_id = np.array([int(i) for i in kept], dtype=np.int64)
        for row, image_id in enumerate(kept):
            for slot, (keypoints, box) in enumerate(people[image_id][:max_people]):
                self.keypoints[row, slot] = keypoints[:, :2]
                self.flags[row, slot] = keypoints[:, 2]
                self.boxes[row, slot] = box
                self.person_valid[row, slot] = True

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        flags = self.flags[index]
        return {
            "image": read_rgb(self.paths[index]),
            "keypoints": torch.tensor(self.keypoints[index]),
            "keypoint_valid": torch.from_numpy(flags > 0),
            "keypoint_visible": torch.from_numpy(flags == 2),
            "boxes": torch.tensor(self.boxes[index]),
            "person_valid": torch.tensor(self.person_valid[index]),
            "index": torch.tensor(index, dtype=torch.int64),
            "image_id": torch.tensor(int(self.image_id[index]), dtype=torch.int64),
        }
