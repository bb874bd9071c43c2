"""Person boxes for the dual network's top-down branch: the true boxes made as wrong as a detector
is, or a user's file of detections.

``DetectionNoise`` (``data.detections`` in the dual method's configs), applied per frame with a
generator seeded by (seed, video, frame), so every run sees the same wrong boxes:
- ``jitter``: each box's centre moves by N(0, jitter x its size) and its size scales by
  exp(N(0, jitter)) in each direction;
- ``miss``: the share of people with no box;
- ``false_positives``: the mean number (Poisson) of boxes on nobody per frame, of the size of a
  random true box, anywhere in the frame;
- ``merge``: the chance that two people whose boxes overlap get one box around both instead.

A box file (``read_box_file``): one detection per line, ``frame, x0, y0, x1, y1[, score]`` in
pixels, comma or white-space separated; ``#`` starts a comment. Frames are numbered from 0 as
the video's frames are read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framework.checks import at_least, check, fraction
from framework.errors import UserError


@dataclass
class DetectionNoise:
    jitter: float = 0.0
    miss: float = 0.0
    false_positives: float = 0.0
    merge: float = 0.0


def validate_detection_noise(c: DetectionNoise, key: str = "data.detections") -> None:
    check(c, key, jitter=at_least(0.0), miss=fraction(), false_positives=at_least(0.0), merge=fraction())


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]))


def noisy_boxes(boxes: np.ndarray, valid: np.ndarray, noise: DetectionNoise, size: tuple[int, int],
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(P, 4) true boxes (x0, y0, x1, y1) and (P,) valid -> (D, 4) detections and (D,) the person
    each stands for (-1: a false positive or a merged box)."""
    h, w = size
    kept = [int(p) for p in np.flatnonzero(valid) if rng.random() >= noise.miss]
    out, owner = [], []
    for p in kept:
        x0, y0, x1, y1 = boxes[p]
        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        if noise.jitter > 0:
            cx, cy = cx + rng.normal(0, noise.jitter) * bw, cy + rng.normal(0, noise.jitter) * bh
            bw, bh = bw * np.exp(rng.normal(0, noise.jitter)), bh * np.exp(rng.normal(0, noise.jitter))
        out.append([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
        owner.append(p)
    if noise.merge > 0:
        i = 0
        while i < len(out):
            j = next((j for j in range(i + 1, len(out)) if _overlap(out[i], out[j])), None)
            if j is not None and rng.random() < noise.merge:
                a, b = out[i], out.pop(j)
                owner.pop(j)
                out[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                owner[i] = -1
            i += 1
    sizes = boxes[valid.astype(bool)]
    for _ in range(rng.poisson(noise.false_positives) if noise.false_positives > 0 and len(sizes) else 0):
        bw, bh = (lambda b: (b[2] - b[0], b[3] - b[1]))(sizes[rng.integers(len(sizes))])
        x0, y0 = rng.uniform(0, max(w - bw, 1)), rng.uniform(0, max(h - bh, 1))
        out.append([x0, y0, x0 + bw, y0 + bh])
        owner.append(-1)
    return np.asarray(out, np.float32).reshape(-1, 4), np.asarray(owner, np.int64)


def read_box_file(path: str | Path) -> dict[int, np.ndarray]:
    """Frame -> (D, 5) detections (x0, y0, x1, y1, score; score 1 where the file gives none)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"box file {path} does not exist")
    frames: dict[int, list[list[float]]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].replace(",", " ").split()
        if not text:
            continue
        if len(text) not in (5, 6):
            raise UserError(f"{path}:{number}: a detection is 'frame, x0, y0, x1, y1[, score]', got {len(text)} "
                            f"columns: {line.strip()!r}")
        try:
            values = [float(v) for v in text]
        except ValueError:
            raise UserError(f"{path}:{number}: not numbers: {line.strip()!r}") from None
        if not np.isfinite(values).all() or values[0] < 0 or values[0] != int(values[0]):
            raise UserError(f"{path}:{number}: the frame must be a whole number from 0 and the box finite: "
                            f"{line.strip()!r}")
        if values[3] <= values[1] or values[4] <= values[2]:
            raise UserError(f"{path}:{number}: x1 and y1 must be beyond x0 and y0: {line.strip()!r}")
        frames.setdefault(int(values[0]), []).append(values[1:5] + [values[5] if len(values) == 6 else 1.0])
    if not frames:
        raise UserError(f"box file {path} holds no detection")
    return {f: np.asarray(rows, np.float32) for f, rows in frames.items()}
