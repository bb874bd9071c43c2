"""What the point-tracking readers share: the item layout, query sampling and frames decoded on demand.

The readers themselves are :mod:`datamodules.readers.tapvid` (TAP-Vid DAVIS and Kinetics pickles)
and :mod:`datamodules.readers.crohd` (CroHD head tracks, MOT layout). Every item is one video (or
clip) as a dict of numpy values, in the convention of :mod:`metrics.tracking`:

- ``frames``: uint8 RGB (T, H, W, 3), an array or a :class:`LazyFrames` that decodes frames when
  indexed (``np.asarray(frames)`` decodes them all);
- ``trajs``: float32 (T, N, 2) pixels (x, y) of those frames; finite everywhere (positions where
  nothing is annotated hold the nearest annotated one, so code that ignores ``valid`` sees no NaN);
- ``visible``: bool (T, N) ground-truth visibility; ``valid``: bool (T, N) annotated;
- ``queries``: float32 (N, 3) as (t, x, y): the frame a tracker starts each point from;
- ``track_ids``: int64 (N,) the annotated track each column comes from (strided queries repeat tracks);
- ``name``: str; ``index``: int, the item's dataset index.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Optional

import cv2
import numpy as np

from framework.errors import UserError

QUERY_MODES = ("first", "strided")


def check_query_mode(query_mode: str, query_stride: int, where: str) -> None:
    if query_mode not in QUERY_MODES:
        raise UserError(f"{where}: query_mode must be one of {QUERY_MODES}, got {query_mode!r}")
    if isinstance(query_stride, bool) or not isinstance(query_stride, (int, np.integer)) or query_stride < 1:
        raise UserError(f"{where}: query_stride must be an integer >= 1, got {query_stride!r}")


def check_resize(resize: Any, where: str) -> Optional[tuple[int, int]]:
    """``resize`` as (H, W) ints, or None to keep the frames' size."""
    if resize is None:
        return None
    if (isinstance(resize, (str, bytes)) or not isinstance(resize, Sequence) or len(resize) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in resize)):
        raise UserError(f"{where}: resize must be [height, width], two positive integers, or None; got {resize!r}")
    return int(resize[0]), int(resize[1])


def resize_frame(frame: np.ndarray, size: Optional[tuple[int, int]]) -> np.ndarray:
    """(H, W, 3) uint8 -> (size[0], size[1], 3); area averaging when shrinking, so it does not alias."""
    if size is None or frame.shape[:2] == tuple(size):
        return frame
    shrink = size[0] * size[1] < frame.shape[0] * frame.shape[1]
    return cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def decode_image_bytes(data: Any, where: str) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 (H, W, 3)."""
    if not isinstance(data, (bytes, bytearray, memoryview, np.bytes_)):
        raise UserError(f"{where}: expected encoded image bytes, got {type(data).__name__}")
    bgr = cv2.imdecode(np.frombuffer(bytes(data), dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"{where}: bytes that OpenCV cannot decode as an image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class LazyFrames(Sequence):
    """A video's frames, decoded (and resized) only when indexed.

    ``decode(source, where)`` turns one source (a path, encoded bytes) into RGB uint8 (H, W, 3);
    every frame must have the size of the first, or one ``UserError`` names the frame. Indexing
    with a slice gives another ``LazyFrames``; ``np.asarray`` decodes everything into (T, H, W, 3).
    """

    def __init__(self, sources: Sequence[Any], decode: Callable[[Any, str], np.ndarray], names: Sequence[str],
                 resize: Optional[tuple[int, int]] = None, frame_size: Optional[tuple[int, int]] = None):
        if len(sources) != len(names):
            raise ValueError("LazyFrames: one name per source")
        self.sources, self.names = list(sources), list(names)
        self.decode, self.resize, self.frame_size = decode, resize, frame_size

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return LazyFrames(self.sources[i], self.decode, self.names[i], self.resize, self.frame_size)
        if isinstance(i, (int, np.integer)):
            frame = self.decode(self.sources[i], self.names[i])
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise UserError(f"{self.names[i]}: expected an RGB uint8 frame, got {frame.dtype} {tuple(frame.shape)}")
            if self.frame_size is None:
                self.frame_size = tuple(frame.shape[:2])
            elif tuple(frame.shape[:2]) != tuple(self.frame_size):
                raise UserError(f"{self.names[i]}: frame of {frame.shape[1]} x {frame.shape[0]} (W x H) in a video "
                                f"of {self.frame_size[1]} x {self.frame_size[0]}")
            return resize_frame(frame, self.resize)
        raise TypeError(f"LazyFrames indices must be integers or slices, not {type(i).__name__}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, H, W, 3) after resizing; decodes the first frame when the size is not known yet."""
        if self.resize is not None:
            return (len(self), *self.resize, 3)
        if self.frame_size is None and len(self):
            self[0]
        return (len(self), *(self.frame_size or (0, 0)), 3)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        frames = np.stack([self[i] for i in range(len(self))]) if len(self) else np.zeros((0, 0, 0, 3), np.uint8)
        return frames if dtype is None else frames.astype(dtype)


def fill_unannotated(trajs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(T, N, 2) positions where ``valid`` is False replaced by the nearest earlier valid one in time
    (the first valid one before any), 0 for tracks never annotated."""
    out = np.array(trajs, dtype=np.float32)
    T = out.shape[0]
    idx = np.where(valid, np.arange(T)[:, None], -1)
    last = np.maximum.accumulate(idx, axis=0)  # latest valid frame up to t
    first = np.where(valid.any(0), np.argmax(valid, axis=0), 0)
    src = np.where(last >= 0, last, first[None, :])
    cols = np.broadcast_to(np.arange(out.shape[1]), src.shape)
    out = out[src, cols]
    out[:, ~valid.any(0)] = 0.0
    return out


def first_queries(visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Query each track at its first visible frame; tracks never visible are dropped.
    Returns (track_ids, query frames), both (N',) int64."""
    seen = visible.any(0)
    ids = np.flatnonzero(seen).astype(np.int64)
    return ids, np.argmax(visible[:, ids], axis=0).astype(np.int64)


def strided_queries(visible: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """TAP-Vid's strided sampling: at frames 0, stride, 2 stride... every track visible there becomes a
    query (so a track may give several). Returns (track_ids, query frames), grouped by frame."""
    ids, frames = [], []
    for t in range(0, visible.shape[0], stride):
        here = np.flatnonzero(visible[t])
        ids.append(here)
        frames.append(np.full(len(here), t))
    if not ids:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ids).astype(np.int64), np.concatenate(frames).astype(np.int64)


def make_item(frames: Any, trajs: np.ndarray, visible: np.ndarray, valid: np.ndarray, query_mode: str,
              query_stride: int, name: str, index: int, track_ids: Optional[np.ndarray] = None) -> dict[str, Any]:
    """The item dict of the module doc from whole-video tracks (T, N, 2), sampling queries as TAP-Vid
    does; ``track_ids`` (N,) names the columns (default 0..N-1)."""
    visible = visible & valid
    if query_mode == "first":
        cols, qt = first_queries(visible)
    else:
        cols, qt = strided_queries(visible, query_stride)
    trajs = fill_unannotated(trajs, valid)
    queries = np.concatenate((qt[:, None].astype(np.float32), trajs[qt, cols]), axis=1) if len(cols) \
        else np.zeros((0, 3), np.float32)
    ids = np.arange(trajs.shape[1], dtype=np.int64) if track_ids is None else np.asarray(track_ids, np.int64)
    return {
        "frames": frames,
        "trajs": np.ascontiguousarray(trajs[:, cols], dtype=np.float32),
        "visible": np.ascontiguousarray(visible[:, cols]),
        "valid": np.ascontiguousarray(valid[:, cols]),
        "queries": queries.astype(np.float32),
        "track_ids": ids[cols],
        "name": name,
        "index": int(index),
    }
