"""A user's own unlabelled footage as consecutive frame pairs, so flow can be refined on it.

``path`` is a video file (decoded once, at construction, into memory: user clips are short) or
a folder of image frames sorted by name (read lazily, sizes checked up front). Items carry the
keys of the benchmark readers (``datamodules.readers.flow_datasets``) minus ``flow`` / ``valid``:
there is no ground truth. One footage is one video (id 0); item i is the pair (i, i + 1) of the
kept frames, after keeping every ``frame_step``-th frame and at most ``max_frames`` of them.
``fps`` is the kept frames' rate (the video's own over ``frame_step``), None for a frame folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.readers.flow_formats import check_same_size, read_image
from datamodules.videos import VideoSpan
from framework.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff")
MAX_FPS = 1000.0  # a container reporting more (or nothing, 0) has no usable rate


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_options(where: str, max_frames, frame_step, resize, min_size) -> Optional[tuple[int, int]]:
    """The options as plain values; a bad one is one UserError naming it."""
    if not _is_int(frame_step) or frame_step < 1:
        raise UserError(f"{where}: frame_step must be an integer >= 1, got {frame_step!r}")
    if max_frames is not None and (not _is_int(max_frames) or max_frames < 2):
        raise UserError(f"{where}: max_frames must be an integer >= 2 (one pair needs two frames) or None, "
                        f"got {max_frames!r}")
    if not _is_int(min_size) or min_size < 1:
        raise UserError(f"{where}: min_size must be an integer >= 1, got {min_size!r}")
    if resize is None:
        return None
    if (isinstance(resize, (str, bytes)) or not isinstance(resize, Sequence) or len(resize) != 2
            or not all(_is_int(v) and v >= 1 for v in resize)):
        raise UserError(f"{where}: resize must be [height, width], two positive integers, or None; got {resize!r}")
    return int(resize[0]), int(resize[1])


class UserFootage(Dataset):
    """Consecutive frame pairs of one video file or image folder, without ground-truth flow."""

    def __init__(self, path: str | os.PathLike, max_frames: Optional[int] = None, frame_step: int = 1,
                 resize: Optional[Sequence[int]] = None, min_size: int = 64) -> None:
        self.path = Path(path).expanduser()
        where = f"footage {self.path}"
        self.resize = _check_options(where, max_frames, frame_step, resize, min_size)
        self.max_frames, self.frame_step, self.min_size = max_frames, int(frame_step), int(min_size)
        if not self.path.exists():
            raise UserError(f"{where}: does not exist (give a video file or a folder of image frames)")
        self._files: Optional[list[Path]] = None
        self._decoded: Optional[list[np.ndarray]] = None
        self.fps: Optional[float] = None
        if self.path.is_dir():
            self.name = self.path.resolve().name
            self._files = self._list_folder(where)
            self.frame_names = [p.stem for p in self._files]
            self.source_size = tuple(int(v) for v in check_same_size(self._files))
            size = self._resized(self.source_size)
        else:
            self.name = self.path.stem
            self._decoded = self._decode_video(where)
            self.frame_names = [f"{self.name}_{i:05d}" for i in range(len(self._decoded))]
            size = self._decoded[0].shape[:2]
        self.size = (int(size[0]), int(size[1]))  # (H, W) of the frames given out; source_size: as stored
        if min(self.size) < self.min_size:
            raise UserError(f"{where}: frames are {self.size[1]} x {self.size[0]} (W x H)"
                            f"{' after resize' if self.resize else ''}; the model needs at least {self.min_size} px on "
                            f"each side (set resize to enlarge them)")

    # ---- construction -------------------------------------------------------------
    def _keep(self, count: int) -> list[int]:
        """Positions kept out of ``count`` frames: every frame_step-th, at most max_frames."""
        kept = list(range(0, count, self.frame_step))
        return kept if self.max_frames is None else kept[: self.max_frames]

    def _too_few(self, where: str, kept: int, found: int) -> None:
        if kept < 2:
            raise UserError(f"{where}: {kept} frame(s) kept of {found} (frame_step={self.frame_step}, "
                            f"max_frames={self.max_frames}); a flow pair needs at least 2")

    def _list_folder(self, where: str) -> list[Path]:
        files = sorted((p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda p: p.name)
        if not files:
            raise UserError(f"{where}: folder holds no image files ({' '.join(IMAGE_SUFFIXES)})")
        kept = [files[i] for i in self._keep(len(files))]
        self._too_few(where, len(kept), len(files))
        return kept

    def _resized(self, size: Sequence[int]) -> tuple[int, int]:
        return self.resize if self.resize is not None else (int(size[0]), int(size[1]))

    def _apply_resize(self, rgb: np.ndarray) -> np.ndarray:
        if self.resize is None or tuple(rgb.shape[:2]) == self.resize:
            return rgb
        return cv2.resize(rgb, (self.resize[1], self.resize[0]), interpolation=cv2.INTER_AREA)

    def _decode_video(self, where: str) -> list[np.ndarray]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            if not capture.isOpened():
                raise UserError(f"{where}: OpenCV cannot open this file as a video (give a video file or a "
                                f"folder of image frames)")
            fps = float(capture.get(cv2.CAP_PROP_FPS))
            if 0 < fps <= MAX_FPS:
                self.fps = fps / self.frame_step
            frames, found = [], 0
            while self.max_frames is None or len(frames) < self.max_frames:
                try:
                    ok, bgr = capture.read()
                except cv2.error as e:
                    raise UserError(f"{where}: OpenCV failed to decode frame {found} ({e})") from None
                if not ok or bgr is None:
                    break
                if found == 0:
                    self.source_size = (int(bgr.shape[0]), int(bgr.shape[1]))
                if found % self.frame_step == 0:
                    frames.append(self._apply_resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
                found += 1
        finally:
            capture.release()
        if found == 0:
            raise UserError(f"{where}: OpenCV opened the video but decoded no frames")
        self._too_few(where, len(frames), found)
        return frames

    # ---- reading ----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frame_names) - 1

    def frame(self, i: int) -> torch.Tensor:
        """Kept frame ``i`` as float32 (3, H, W) RGB in 0..255."""
        if not 0 <= i < len(self.frame_names):
            raise IndexError(f"frame {i} out of range for {len(self.frame_names)} frames of {self.path}")
        if self._decoded is not None:
            rgb = self._decoded[i]
        else:
            rgb = self._apply_resize(read_image(self._files[i]))
            if tuple(rgb.shape[:2]) != self.size:  # the file changed since construction
                raise UserError(f"{self._files[i]}: size {rgb.shape[1]} x {rgb.shape[0]} (W x H) differs from "
                                f"{self.size[1]} x {self.size[0]} of the other frames of {self.path}")
        return torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1).contiguous()

    def videos(self) -> dict[int, VideoSpan]:
        """One footage is one video: {0: (name, every pair index in order)}."""
        return {0: VideoSpan(self.name, list(range(len(self))))}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} pairs")
        return {
            "image1": self.frame(index),
            "image2": self.frame(index + 1),
            "index": torch.tensor(index, dtype=torch.int64),
            "video": torch.tensor(0, dtype=torch.int64),
            "frame": torch.tensor(index, dtype=torch.int64),
        }
