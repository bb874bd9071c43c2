"""TAP-Vid DAVIS and Kinetics, read from the pickles as released.

- ``tapvid_davis.pkl``: a dict video name -> {'video': uint8 (T, H, W, 3), 'points': (N, T, 2)
  in [0, 1] as (x, y), 'occluded': bool (N, T)}.
- Kinetics, ``*_of_0010.pkl``: a list of such dicts (no names: an item is called
  ``<file stem>/<position>``), where 'video' may be a list of T JPEG-encoded frames.

As the reference evaluation: frames are resized (default 256 x 256), points become pixels of the
resized frames (x * W, y * H), every annotated point is valid and visible where not occluded, and
queries are drawn ``"first"`` (each track at its first visible frame; tracks never visible are
dropped) or ``"strided"`` (at frames 0, 5, 10..., every track visible there, so one track may give
several queries; ``track_ids`` says which). Items follow :mod:`datamodules.readers.tracking_datasets`.

Pickles can run code when loaded. These are read by an unpickler that only builds numpy arrays and
plain containers, and refuses anything else with an error naming the file; numpy's own array
reconstruction is still trusted, so open only files that come from the TAP-Vid release.

Every file is read once when the data set is built, to check it and count its videos; then a
Kinetics file is read again when one of its videos is asked for (the last one read stays in memory),
so the whole benchmark never has to fit in memory at once. JPEG frames are decoded per item.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
from torch.utils.data import Dataset

from datamodules.readers.common import require_file
from datamodules.readers.tracking_datasets import (LazyFrames, check_query_mode, check_resize, decode_image_bytes,
                                                   make_item, resize_frame)
from framework.errors import UserError

KEYS = ("video", "points", "occluded")
_NUMPY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray", "numpy.core.numeric", "numpy._core.numeric",
                   "numpy")
    for name in ("_reconstruct", "scalar", "_frombuffer", "ndarray", "dtype")
} | {("_codecs", "encode"), *((b, n) for b in ("builtins", "__builtin__") for n in ("bytes", "bytearray"))}


class _ArraysOnly(pickle.Unpickler):
    """Builds numpy arrays, dicts, lists, strings and bytes; any other global is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_GLOBALS or (module.startswith("numpy") and name.endswith("DType")
                                                 and module.endswith("dtypes")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to build {module}.{name}")


def load_pickle(path: Path) -> Any:
    """The object in a TAP-Vid pickle, read with :class:`_ArraysOnly`; any failure is one UserError."""
    try:
        with open(path, "rb") as f:
            return _ArraysOnly(f).load()
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: not a TAP-Vid pickle ({e}; only numpy arrays, dicts, lists, strings and "
                        f"bytes are expected)") from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError, OSError) as e:
        raise UserError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


class VideoInfo(NamedTuple):
    file: Path
    position: Any  # key in a dict pickle, index in a list pickle
    name: str
    frames: int
    points: int


def _entries(data: Any, path: Path) -> list[tuple[Any, str, Any]]:
    """(position, name, video dict) of every video in a loaded pickle."""
    if isinstance(data, Mapping):
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise UserError(f"{path}: video names must be strings, found {type(bad[0]).__name__} {bad[0]!r}")
        return [(k, k, v) for k, v in data.items()]
    if isinstance(data, (list, tuple)):
        return [(i, f"{path.stem}/{i}", v) for i, v in enumerate(data)]
    raise UserError(f"{path}: expected a dict of videos (DAVIS) or a list of videos (Kinetics), "
                    f"got {type(data).__name__}")


def check_video(entry: Any, where: str) -> tuple[int, int]:
    """(T, N) of one video dict, after checking its keys, types and shapes."""
    if not isinstance(entry, Mapping):
        raise UserError(f"{where}: expected a dict with keys {', '.join(KEYS)}, got {type(entry).__name__}")
    missing = [k for k in KEYS if k not in entry]
    if missing:
        raise UserError(f"{where}: missing key(s) {', '.join(repr(k) for k in missing)} "
                        f"(found: {', '.join(repr(k) for k in entry) or 'none'})")
    points, occluded, video = entry["points"], entry["occluded"], _frames_of(entry)
    if not isinstance(points, np.ndarray) or points.ndim != 3 or points.shape[2] != 2 \
            or not np.issubdtype(points.dtype, np.number):
        raise UserError(f"{where}: 'points' must be a numeric array (N, T, 2), got {_describe(points)}")
    n, t = points.shape[:2]
    if n == 0 or t == 0:
        raise UserError(f"{where}: 'points' holds no tracks or no frames (shape {points.shape})")
    if not isinstance(occluded, np.ndarray) or occluded.shape != (n, t) \
            or not (occluded.dtype == bool or np.issubdtype(occluded.dtype, np.integer)):
        raise UserError(f"{where}: 'occluded' must be a bool array (N, T) = ({n}, {t}) like 'points', "
                        f"got {_describe(occluded)}")
    if isinstance(video, np.ndarray):
        if video.dtype != np.uint8 or video.ndim != 4 or video.shape[3] != 3 or video.shape[0] != t:
            raise UserError(f"{where}: 'video' must be uint8 (T, H, W, 3) with T = {t} like 'points', "
                            f"got {_describe(video)}")
    elif isinstance(video, (list, tuple)):
        if len(video) != t:
            raise UserError(f"{where}: 'video' has {len(video)} encoded frames, 'points' has {t} frames")
        bad = next((i for i, f in enumerate(video) if not isinstance(f, (bytes, bytearray, np.bytes_))), None)
        if bad is not None:
            raise UserError(f"{where}: 'video' frame {bad} is {type(video[bad]).__name__}, expected JPEG bytes")
    else:
        raise UserError(f"{where}: 'video' must be a uint8 array (T, H, W, 3) or a list of JPEG bytes, "
                        f"got {type(video).__name__}")
    return t, n


def _frames_of(entry: Mapping) -> Any:
    """'video' as stored: a uint8 array, or the encoded frames as a list (also from an object array)."""
    video = entry["video"]
    return list(video) if isinstance(video, np.ndarray) and video.dtype == object else video


def _describe(x: Any) -> str:
    return f"{x.dtype} array of shape {tuple(x.shape)}" if isinstance(x, np.ndarray) else type(x).__name__


class TapVid(Dataset):
    """TAP-Vid videos from one or more pickles; see the module doc. Item i is one whole video."""

    def __init__(self, files: list[Path], query_mode: str = "first", resize: Optional[tuple[int, int]] = (256, 256),
                 query_stride: int = 5, what: str = "TAP-Vid"):
        check_query_mode(query_mode, query_stride, what)
        self.resize = check_resize(resize, what)
        self.query_mode, self.query_stride = query_mode, int(query_stride)
        self.videos: list[VideoInfo] = []
        self._cache: tuple[Optional[Path], Any] = (None, None)
        for path in files:
            data = load_pickle(path)
            for position, name, entry in _entries(data, path):
                t, n = check_video(entry, f"{path}: video {name!r}")
                self.videos.append(VideoInfo(path, position, name, t, n))
            self._cache = (path, data)
        if not self.videos:
            raise UserError(f"{what}: no videos in {', '.join(str(f) for f in files)}")
        if len(files) > 1:
            self._cache = (None, None)  # keep the memory until a video is asked for

    @property
    def video_of_index(self) -> list[str]:
        """Video name of every dataset index (for per-video metric breakdowns)."""
        return [v.name for v in self.videos]

    def __len__(self) -> int:
        return len(self.videos)

    def __getstate__(self) -> dict[str, Any]:
        """Loader workers started by spawn read the file themselves instead of receiving it pickled."""
        return {**self.__dict__, "_cache": (None, None)}

    def _entry(self, info: VideoInfo) -> Mapping:
        if self._cache[0] != info.file:
            self._cache = (None, None)  # drop the old file before reading the next
            self._cache = (info.file, load_pickle(info.file))
        data = self._cache[1]
        try:
            entry = data[info.position]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{info.file}: changed since the data set was built "
                            f"(video {info.name!r} is gone)") from None
        check_video(entry, f"{info.file}: video {info.name!r}")
        return entry

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} videos")
        info = self.videos[index]
        entry = self._entry(info)
        where = f"{info.file}: video {info.name!r}"
        video = _frames_of(entry)
        if isinstance(video, np.ndarray):
            frames = np.stack([resize_frame(f, self.resize) for f in video])
        else:
            names = [f"{where} frame {i}" for i in range(len(video))]
            frames = np.asarray(LazyFrames(video, decode_image_bytes, names, self.resize))
        height, width = frames.shape[1:3]
        points = np.asarray(entry["points"], dtype=np.float64)  # (N, T, 2) in [0, 1]
        finite = np.isfinite(points).all(-1)
        trajs = np.where(finite[..., None], points, 0.0) * np.array([width, height], dtype=np.float64)
        visible = ~np.asarray(entry["occluded"]).astype(bool)
        return make_item(frames, trajs.transpose(1, 0, 2), (visible & finite).T, finite.T, self.query_mode,
                         self.query_stride, info.name, index)


class TapVidDavis(TapVid):
    """TAP-Vid DAVIS: ``path`` is ``tapvid_davis.pkl`` (a dict video name -> video)."""

    def __init__(self, path: str | os.PathLike, query_mode: str = "first",
                 resize: Optional[tuple[int, int]] = (256, 256), query_stride: int = 5):
        path = require_file(path, "TAP-Vid DAVIS pickle")
        super().__init__([path], query_mode, resize, query_stride, what=f"TAP-Vid DAVIS {path}")


class TapVidKinetics(TapVid):
    """TAP-Vid Kinetics: ``path`` is one pickle or a folder of them (``*.pkl``, read in name order)."""

    def __init__(self, path: str | os.PathLike, query_mode: str = "first",
                 resize: Optional[tuple[int, int]] = (256, 256), query_stride: int = 5):
        p = Path(path).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.glob("*.pkl") if f.is_file())
            if not files:
                raise UserError(f"TAP-Vid Kinetics: no *.pkl files in {p}")
        else:
            files = [require_file(p, "TAP-Vid Kinetics pickle")]
        super().__init__(files, query_mode, resize, query_stride, what=f"TAP-Vid Kinetics {p}")
