"""File formats of the optical-flow data sets: Middlebury ``.flo``, ``.pfm``, KITTI 16-bit PNG.

Every reader returns numpy arrays in the layout images use, rows top to bottom:
flow (H, W, 2) float32 with channel 0 = u (x, right) and 1 = v (y, down); images RGB
uint8 (H, W, 3). A file that is missing, truncated or not what its format promises is
one ``UserError`` naming the file, so a broken download is found without a traceback.

- ``.flo`` (MPI-Sintel, FlyingChairs): float32 202021.25 (the bytes "PIEH"), int32 width,
  int32 height, then H x W x 2 float32, all little-endian, row-major.
- ``.pfm`` (FlyingThings3D): text lines "PF" (3 channels) or "Pf" (1), "width height",
  and a scale whose sign gives the byte order (negative = little-endian); then float32
  rows from the bottom of the picture up. Flow files keep u, v in the first two channels.
- KITTI flow PNG: 16-bit, 3 channels stored R, G, B = u, v, valid with
  u = (R - 2^15) / 64; OpenCV hands the channels over as B, G, R.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from datamodules.readers.common import require_file
from framework.errors import UserError
from framework.io import atomic_write

FLO_MAGIC = 202021.25
KITTI_OFFSET = 2.0 ** 15
KITTI_SCALE = 64.0
_MAX_SIDE = 1 << 16  # a larger side in a header means the header is garbage


def _check_size(width: int, height: int, path: Path) -> None:
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise UserError(f"{path}: header gives an impossible size {width} x {height}")


def _check_flow_array(flow, what: str) -> np.ndarray:
    arr = np.asarray(flow)
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise UserError(f"{what}: expected a flow array (H, W, 2), got shape {tuple(arr.shape)}")
    return arr.astype(np.float32)


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Middlebury ``.flo`` -> (H, W, 2) float32."""
    path = require_file(path, "flow file")
    data = path.read_bytes()
    if len(data) < 12:
        raise UserError(f"{path}: truncated .flo file ({len(data)} bytes, the header alone takes 12)")
    magic = np.frombuffer(data, dtype="<f4", count=1)[0]
    if magic != np.float32(FLO_MAGIC):
        raise UserError(f"{path}: not a .flo file (magic number {magic!r}, expected {FLO_MAGIC})")
    width, height = (int(x) for x in np.frombuffer(data, dtype="<i4", count=2, offset=4))
    _check_size(width, height, path)
    want = 12 + width * height * 2 * 4
    if len(data) != want:
        raise UserError(f"{path}: .flo of {width} x {height} needs {want} bytes, the file has {len(data)} "
                        f"({'truncated' if len(data) < want else 'trailing data'})")
    return np.frombuffer(data, dtype="<f4", offset=12).reshape(height, width, 2).copy()


def write_flo(path: str | os.PathLike, flow) -> Path:
    """(H, W, 2) flow -> Middlebury ``.flo``, written atomically."""
    arr = _check_flow_array(flow, f"write_flo {path}")
    h, w, _ = arr.shape
    payload = (np.array([FLO_MAGIC], "<f4").tobytes() + np.array([w, h], "<i4").tobytes()
               + np.ascontiguousarray(arr, dtype="<f4").tobytes())
    return atomic_write(path, lambda f: f.write(payload))


def _pfm_header(data: bytes, path: Path) -> tuple[int, int, int, str, int]:
    """(channels, width, height, numpy byte order, offset of the pixel data)."""
    lines, pos = [], 0
    while len(lines) < 3:
        end = data.find(b"\n", pos)
        if end < 0:
            raise UserError(f"{path}: truncated .pfm header")
        line = data[pos:end].strip()
        pos = end + 1
        if line and not line.startswith(b"#"):
            lines.append(line)
    kinds = {b"PF": 3, b"Pf": 1}
    if lines[0] not in kinds:
        raise UserError(f"{path}: not a .pfm file (first line {lines[0][:20]!r}, expected 'PF' or 'Pf')")
    try:
        width, height = (int(t) for t in lines[1].split())
        scale = float(lines[2])
    except ValueError:
        raise UserError(f"{path}: bad .pfm header (size {lines[1][:40]!r}, scale {lines[2][:40]!r})") from None
    _check_size(width, height, path)
    if scale == 0 or not np.isfinite(scale):
        raise UserError(f"{path}: bad .pfm scale {scale} (its sign gives the byte order; it may not be 0)")
    return kinds[lines[0]], width, height, "<" if scale < 0 else ">", pos


def read_pfm(path: str | os.PathLike) -> np.ndarray:
    """``.pfm`` -> (H, W, C) float32, rows top to bottom."""
    path = require_file(path, "pfm file")
    data = path.read_bytes()
    channels, width, height, order, offset = _pfm_header(data, path)
    want = width * height * channels * 4
    if len(data) - offset < want:
        raise UserError(f"{path}: truncated .pfm data ({len(data) - offset} bytes for a {width} x {height} x "
                        f"{channels} picture that needs {want})")
    arr = np.frombuffer(data, dtype=order + "f4", count=width * height * channels, offset=offset)
    return np.flipud(arr.reshape(height, width, channels)).astype(np.float32)


def read_pfm_flow(path: str | os.PathLike) -> np.ndarray:
    """FlyingThings3D flow ``.pfm`` -> (H, W, 2) float32 (the first two channels)."""
    arr = read_pfm(path)
    if arr.shape[2] < 2:
        raise UserError(f"{Path(path)}: a flow .pfm needs at least 2 channels ('PF'), this one has {arr.shape[2]}")
    return np.ascontiguousarray(arr[..., :2])


def read_kitti_flow(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """KITTI 16-bit flow PNG -> (flow (H, W, 2) float32, valid (H, W) bool)."""
    path = require_file(path, "KITTI flow file")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UserError(f"{path}: not a readable PNG image")
    if raw.dtype != np.uint16 or raw.ndim != 3 or raw.shape[2] != 3:
        raise UserError(f"{path}: a KITTI flow PNG must be 16-bit with 3 channels, got {raw.dtype} "
                        f"with shape {tuple(raw.shape)}")
    bgr = raw.astype(np.float32)
    flow = (np.stack((bgr[..., 2], bgr[..., 1]), axis=-1) - KITTI_OFFSET) / KITTI_SCALE
    return flow, raw[..., 0] > 0


def write_kitti_flow(path: str | os.PathLike, flow, valid=None) -> Path:
    """(H, W, 2) flow and optional (H, W) valid mask -> KITTI 16-bit PNG, written atomically.

    Values are rounded to 1/64 px and clipped to what 16 bits hold (about +-512 px).
    """
    arr = _check_flow_array(flow, f"write_kitti_flow {path}")
    mask = np.ones(arr.shape[:2], dtype=bool) if valid is None else np.asarray(valid).astype(bool)
    if mask.shape != arr.shape[:2]:
        raise UserError(f"write_kitti_flow {path}: valid {tuple(mask.shape)} does not match flow {tuple(arr.shape)}")
    coded = np.clip(np.round(arr.astype(np.float64) * KITTI_SCALE + KITTI_OFFSET), 0, 65535).astype(np.uint16)
    bgr = np.stack((mask.astype(np.uint16), coded[..., 1], coded[..., 0]), axis=-1)
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise UserError(f"write_kitti_flow {path}: OpenCV could not encode the PNG")
    return atomic_write(path, lambda f: f.write(buf.tobytes()))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Any picture OpenCV reads (.png, .jpg, .ppm...) -> RGB uint8 (H, W, 3)."""
    path = require_file(path, "image file")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UserError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """(H, W) of an image or flow file, from the header where the format has one."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".flo":
        return read_flo(p).shape[:2]
    if suffix == ".pfm":
        p = require_file(p, "pfm file")
        with open(p, "rb") as f:
            head = f.read(256)
        _, width, height, _, _ = _pfm_header(head, p)
        return height, width
    p = require_file(p, "image file")
    raw = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise UserError(f"{p}: not a readable image")
    return raw.shape[:2]


def check_same_size(paths: Sequence[str | os.PathLike]) -> tuple[int, int]:
    """(H, W) shared by every file in ``paths`` (frames, flows); a file that differs is one error."""
    paths = list(paths)
    if not paths:
        raise UserError("check_same_size: no files given")
    first = frame_size(paths[0])
    for p in paths[1:]:
        size = frame_size(p)
        if tuple(size) != tuple(first):
            raise UserError(f"{Path(p)}: size {size[1]} x {size[0]} (W x H) differs from {first[1]} x {first[0]} "
                            f"of {Path(paths[0])}")
    return tuple(first)
