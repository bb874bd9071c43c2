"""Square crops of one person from real pictures, with the keys of the people world's crops
(``PeopleCrops``), so the NF-prior methods fit, score and train on them unchanged:

- ``image`` float32 (3, S, S) RGB 0..255; ``camera`` float32 (4,) the crop's pinhole (fx, fy, cx,
  cy): the picture's camera with the crop's scale and offset folded in, so a body placed in the
  camera frame projects into the crop exactly;
- ``keypoints`` float32 (17, 2) COCO-17 in crop pixels, ``keypoint_visible`` bool (17,) the ones
  to fit (labelled);
- with 3D truth (Human3.6M, 3DPW): ``joints2d`` (17, 2), ``joints3d`` (17, 3) camera frame metres,
  ``joint_visible`` (17,), H36M-17 order, and ``pose_valid`` bool (False: the data set calls the
  frame's pose unreliable; no score counts it);
- with part masks (COCO with a folder of part PNGs): ``part_mask`` int64 (S, S), 0 background,
  k + 1 for part k of ``nets.body_model.PART_NAMES``;
- ``index``, ``video``, ``frame`` int64.

The crop is the box of the labelled keypoints (or joints) made square, enlarged by ``margin``
and resampled to S x S (bilinear for the picture, nearest for the masks), pixel centres at
integer coordinates throughout.

Sources:
- ``PosedVideoCrops``: videos with ground-truth joints (``posed_videos.h36m_videos`` and
  ``pw3d_videos``: Human3.6M's cameras, 3DPW's ``imageFiles``); the keypoints to fit are the
  COCO body joints of the true 2D joints (the paper's ground-truth 2D setting; the five face
  keypoints are not labelled), frames the data set calls unreliable have none.
- ``COCOCrops``: a COCO-format keypoints file (COCO itself, or a user's own pictures labelled in
  any tool that exports it), one crop per annotated person. Such pictures carry no camera: the
  focal length is taken as ``focal`` x the picture's longer side with the principal point in the
  middle (SMPLify's assumption). Part masks, optional: ``<parts>/<annotation id>.png``, one
  label PNG per person, in the picture's size.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.readers.coco_keypoints import read_json
from datamodules.readers.common import require_dir, require_file
from datamodules.readers.people_frames import read_rgb
from datamodules.readers.posed_videos import PosedVideo, PosedVideoItems
from datamodules.videos import VideoSpan
from framework.errors import UserError
from nets.body_model import NUM_PARTS

COCO_BODY_FROM_H36M = (11, 14, 12, 15, 13, 16, 4, 1, 5, 2, 6, 3)  # COCO-17 keypoints 5..16 as H36M-17 joints


def crop_box(points: np.ndarray, weights: np.ndarray, margin: float, what: str) -> tuple[float, float, float]:
    """(left, top, side) of the square around the weighted points, enlarged by ``margin``."""
    seen = points[weights > 0]
    if len(seen) < 2:
        raise UserError(f"{what}: fewer than two labelled keypoints, no box to crop")
    lo, hi = seen.min(0), seen.max(0)
    side = max(float((hi - lo).max()), 8.0) * margin
    centre = (lo + hi) / 2
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def crop(picture: np.ndarray, left: float, top: float, side: float, size: int, nearest: bool = False) -> np.ndarray:
    """The square (left, top, side) of an (H, W[, C]) array resampled to (size, size[, C]); a crop
    pixel (j, i) shows the picture's point (left + j side / size, top + i side / size)."""
    s = size / side
    warp = np.array([[s, 0.0, -left * s], [0.0, s, -top * s]])
    return cv2.warpAffine(picture, warp, (size, size), flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop_camera(camera: Sequence[float], left: float, top: float, side: float, size: int) -> np.ndarray:
    fx, fy, cx, cy = camera
    s = size / side
    return np.array([fx * s, fy * s, (cx - left) * s, (cy - top) * s], np.float32)


def to_crop(points: np.ndarray, left: float, top: float, side: float, size: int) -> np.ndarray:
    return ((points - np.array([left, top])) * (size / side)).astype(np.float32)


def _image_tensor(picture: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(picture.transpose(2, 0, 1))).float()


class PosedVideoCrops(PosedVideoItems):
    """Every ``frame_step``-th frame of each video (at most ``max_frames``), one crop each (module doc)."""

    unit = "crop"

    def __init__(self, videos: Sequence[PosedVideo], size: int = 128, margin: float = 1.2, frame_step: int = 1,
                 max_frames: Optional[int] = None) -> None:
        super().__init__(videos, max_frames, frame_step, min_size=16)
        self.size, self.margin = int(size), float(margin)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        v, t = self.locate(index)
        video, row = self.videos_[v], int(self.kept[v][t])
        joints2d = video.joints2d[row]
        left, top, side = crop_box(joints2d, np.ones(len(joints2d)), self.margin, f"video '{video.name}' frame {row}")
        picture = self._footage(v).frame(t).numpy().transpose(1, 2, 0)
        keypoints = np.zeros((17, 2), np.float32)
        keypoints[5:] = to_crop(joints2d[list(COCO_BODY_FROM_H36M)], left, top, side, self.size)
        valid = bool(video.valid[row])
        visible = np.zeros(17, bool)
        visible[5:] = valid
        return {"image": _image_tensor(crop(picture, left, top, side, self.size)),
                "keypoints": torch.from_numpy(keypoints), "keypoint_visible": torch.from_numpy(visible),
                "joints2d": torch.from_numpy(to_crop(joints2d, left, top, side, self.size)),
                "joints3d": torch.from_numpy(video.joints3d[row].astype(np.float32)),
                "joint_visible": torch.full((len(joints2d),), valid), "pose_valid": torch.tensor(valid),
                "camera": torch.from_numpy(crop_camera(video.intrinsics, left, top, side, self.size)),
                "index": torch.tensor(index), "video": torch.tensor(v), "frame": torch.tensor(row)}


class COCOCrops(Dataset):
    """One crop per annotated person of a COCO-format keypoints file (module doc): people with at
    least ``min_keypoints`` labelled keypoints, crowd regions left out."""

    def __init__(self, annotations: str | Path, images: str | Path, size: int = 128, margin: float = 1.2,
                 parts: Optional[str | Path] = None, focal: float = 1.0, min_keypoints: int = 6) -> None:
        path = require_file(annotations, "COCO keypoints file")
        self.images_root = require_dir(images, "COCO images folder")
        self.parts = None if parts is None else require_dir(parts, "part masks folder")
        self.size, self.margin, self.focal = int(size), float(margin), float(focal)
        data = read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("images"), list) or \
                not isinstance(data.get("annotations"), list):
            raise UserError(f"{path}: not a COCO keypoints file (needs 'images' and 'annotations' lists)")
        files = {}
        for i, image in enumerate(data["images"]):
            if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
                raise UserError(f"{path}: images[{i}] needs 'id' and 'file_name'")
            files[image["id"]] = str(image["file_name"])
        self.people: list[tuple[str, int, np.ndarray]] = []  # (file, annotation id, (17, 3) x y v)
        for i, ann in enumerate(data["annotations"]):
            where = f"{path}: annotations[{i}]"
            if not isinstance(ann, dict) or "keypoints" not in ann or "image_id" not in ann:
                raise UserError(f"{where} needs 'image_id' and 'keypoints'")
            if ann.get("iscrowd", 0):
                continue
            if ann["image_id"] not in files:
                raise UserError(f"{where}: image_id {ann['image_id']} is not among the file's images")
            keypoints = np.asarray(ann["keypoints"], dtype=np.float64)
            if keypoints.shape != (51,) or not np.isfinite(keypoints).all():
                raise UserError(f"{where}: 'keypoints' must be 51 finite numbers (x, y, v for the 17 COCO "
                                f"keypoints), got {keypoints.size}")
            keypoints = keypoints.reshape(17, 3)
            if (keypoints[:, 2] > 0).sum() >= min_keypoints:
                self.people.append((files[ann["image_id"]], int(ann.get("id", i)), keypoints))
        if not self.people:
            raise UserError(f"{path}: no person with {min_keypoints} or more labelled keypoints")

    def __len__(self) -> int:
        return len(self.people)

    def videos(self) -> dict[int, VideoSpan]:
        return {i: VideoSpan(Path(name).stem, [i]) for i, (name, _, _) in enumerate(self.people)}

    def name(self, index: int) -> str:
        """The crop's file stem: the picture's, and the annotation's id."""
        file, ann, _ = self.people[index]
        return f"{Path(file).stem}_{ann}"

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"crop {index} out of range for {len(self)} crops")
        file, ann, keypoints = self.people[index]
        picture = read_rgb(require_file(self.images_root / file, "COCO image")).numpy().transpose(1, 2, 0)
        h, w = picture.shape[:2]
        labelled = keypoints[:, 2] > 0
        left, top, side = crop_box(keypoints[:, :2], labelled, self.margin, f"annotation {ann}")
        camera = (self.focal * max(h, w), self.focal * max(h, w), (w - 1) / 2, (h - 1) / 2)
        item = {"image": _image_tensor(crop(picture, left, top, side, self.size)),
                "keypoints": torch.from_numpy(to_crop(keypoints[:, :2], left, top, side, self.size)),
                "keypoint_visible": torch.from_numpy(labelled),
                "camera": torch.from_numpy(crop_camera(camera, left, top, side, self.size)),
                "index": torch.tensor(index), "video": torch.tensor(index), "frame": torch.tensor(0)}
        if self.parts is not None:
            item["part_mask"] = torch.from_numpy(crop(self._part_labels(ann, (h, w)), left, top, side, self.size,
                                                      nearest=True).astype(np.int64))
        return item

    def _part_labels(self, ann: int, size: tuple[int, int]) -> np.ndarray:
        path = require_file(self.parts / f"{ann}.png", f"part mask of annotation {ann}")
        labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if labels is None or labels.ndim != 2:
            raise UserError(f"{path}: not a single-channel label PNG")
        if labels.shape != size:
            raise UserError(f"{path}: {labels.shape[1]} x {labels.shape[0]} (W x H); its picture is "
                            f"{size[1]} x {size[0]}")
        if labels.max() > NUM_PARTS:
            raise UserError(f"{path}: labels must be 0 (background) or 1..{NUM_PARTS} (part k + 1), found "
                            f"{int(labels.max())}")
        return labels.astype(np.uint8)  # what OpenCV resamples
