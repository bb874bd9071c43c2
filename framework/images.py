"""Send pictures to whatever loggers a trainer has, and lay them out, from one place.

Every method's pictures (skeletons, later flow maps and tracks) are RGB uint8
HxWx3 arrays; this module knows how each logger wants them:
- TensorBoard: one ``add_image`` per picture under ``key/i``;
- Weights & Biases: one ``log_image`` call with all pictures (and captions);
- any other logger with a folder (CSVLogger...): PNG files under
  ``<log_dir>/images/<key with / -> _>_<step>_<i>.png``, written atomically.

The layout helpers (labels that wrap to fit, grids, colour bars, before/after pairs) live here too,
so every method's pictures read the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger

from framework.errors import UserError
from framework.io import atomic_write

BACKGROUND = (255, 255, 255)
LABEL_COLOR = (30, 30, 30)
GAP_COLOR = (200, 200, 200)
FONT = cv2.FONT_HERSHEY_SIMPLEX
MIN_FONT_SCALE = 0.3  # smaller Hershey text is no longer legible


def check_rgb(image: np.ndarray, what: str) -> np.ndarray:
    """Refuse anything but an RGB uint8 HxWx3 array (one clear message naming it)."""
    if not isinstance(image, np.ndarray):
        raise UserError(f"{what}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UserError(f"{what}: expected an RGB uint8 HxWx3 image, got dtype {image.dtype} shape {tuple(image.shape)}")
    return image


def png_bytes(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"cv2 could not encode a {image.shape} image as PNG")
    return buf.tobytes()


def logger_folder(logger: Logger) -> Optional[str]:
    for attr in ("log_dir", "save_dir"):
        folder = getattr(logger, attr, None)
        if folder:
            return str(folder)
    return None


def write_pngs(folder: str | Path, key: str, images: list[np.ndarray], step: int) -> list[Path]:
    stem = key.replace("/", "_")
    paths = []
    for i, img in enumerate(images):
        data = png_bytes(img)
        paths.append(atomic_write(Path(folder) / "images" / f"{stem}_{step}_{i}.png", lambda f, d=data: f.write(d)))
    return paths


def log_images(trainer, key: str, images: list[np.ndarray], step: Optional[int] = None,
               captions: Optional[list[str]] = None) -> None:
    """Log RGB uint8 pictures to every logger of ``trainer`` (global rank zero only).

    ``step`` defaults to the trainer's global step. No loggers: nothing happens.
    """
    if trainer is None or not trainer.is_global_zero or not trainer.loggers:
        return
    if not isinstance(images, (list, tuple)):
        raise UserError(f"log_images({key!r}): images must be a list of arrays, got {type(images).__name__}")
    images = [check_rgb(img, f"log_images({key!r}) image {i}") for i, img in enumerate(images)]
    if not images:
        return
    if captions is not None and len(captions) != len(images):
        raise UserError(f"log_images({key!r}): {len(captions)} captions for {len(images)} images")
    step = int(trainer.global_step if step is None else step)
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            for i, img in enumerate(images):
                logger.experiment.add_image(f"{key}/{i}", img, step, dataformats="HWC")
        elif isinstance(logger, WandbLogger):
            extra = {"caption": list(captions)} if captions is not None else {}
            logger.log_image(key=key, images=list(images), step=step, **extra)
        else:
            folder = logger_folder(logger)
            if folder is not None:
                write_pngs(folder, key, images, step)


def _labelled(images: list[np.ndarray], labels: list[str], axis: int, bar: int, gap: int, what: str) -> np.ndarray:
    """Pictures each under a label bar, padded to a common size across ``axis`` and joined along it
    (1: left to right, 0: top to bottom) with grey gaps between."""
    if not images:
        raise UserError(f"{what}: no images")
    if len(labels) != len(images):
        raise UserError(f"{what}: {len(labels)} labels for {len(images)} images")
    images = [check_rgb(img, f"{what} image {i}") for i, img in enumerate(images)]
    height = max(img.shape[0] for img in images) if axis == 1 else None
    width = max(img.shape[1] for img in images) if axis == 0 else None
    cells = []
    for img, label in zip(images, labels):
        h, w = img.shape[:2]
        cell = np.full((bar + (height or h), width or w, 3), BACKGROUND, dtype=np.uint8)
        cell[bar:bar + h, :w] = img
        cv2.putText(cell, str(label), (4, bar - 7), FONT, 0.5, LABEL_COLOR, 1, cv2.LINE_AA)
        cells.append(cell)
        gap_shape = (cell.shape[0], gap, 3) if axis == 1 else (gap, cell.shape[1], 3)
        cells.append(np.full(gap_shape, GAP_COLOR, dtype=np.uint8))
    return np.ascontiguousarray(np.concatenate(cells[:-1], axis=axis))


def side_by_side(images: list[np.ndarray], labels: list[str], bar: int = 24, gap: int = 4) -> np.ndarray:
    """Pictures padded to one height, placed left to right, each with its label in a bar on top."""
    return _labelled(images, labels, 1, bar, gap, "side_by_side")


def stacked(images: list[np.ndarray], labels: list[str], bar: int = 24, gap: int = 4) -> np.ndarray:
    """Pictures padded to one width, placed top to bottom, each with its label in a bar on top."""
    return _labelled(images, labels, 0, bar, gap, "stacked")


def before_after(before: np.ndarray, after: np.ndarray, labels: tuple[str, str] = ("before", "after")) -> np.ndarray:
    """One sample's two pictures for comparison: one above the other when they are wider than tall (a wide pair
    side by side gets shrunk to unreadable by a viewer), else side by side."""
    wide = max(before.shape[1], after.shape[1]) > max(before.shape[0], after.shape[0])
    return (stacked if wide else side_by_side)([before, after], list(labels))


def grid(images: list[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Pictures in rows of ``columns``, each cell padded (top left aligned) to its row's height and column's width,
    so panels stay at their own size instead of a long strip that a viewer shrinks."""
    if not images:
        raise UserError("grid: no images")
    if columns < 1:
        raise UserError(f"grid: columns must be >= 1, got {columns}")
    images = [check_rgb(img, f"grid image {i}") for i, img in enumerate(images)]
    rows = [images[i:i + columns] for i in range(0, len(images), columns)]
    widths = [max(img.shape[1] for img in images[c::columns]) for c in range(min(columns, len(images)))]
    heights = [max(img.shape[0] for img in row) for row in rows]
    out = np.full((sum(heights) + gap * (len(rows) - 1), sum(widths) + gap * (len(widths) - 1), 3), GAP_COLOR,
                  dtype=np.uint8)
    y = 0
    for row, height in zip(rows, heights):
        x = 0
        for img, width in zip(row, widths):
            out[y:y + height, x:x + width] = BACKGROUND
            out[y:y + img.shape[0], x:x + img.shape[1]] = img
            x += width + gap
        y += height + gap
    return out


def text_lines(text: str, width: int, scale: float = 0.4) -> tuple[list[str], float]:
    """``text`` split at newlines and wrapped at spaces into lines whose rendered width fits ``width`` pixels, and the
    font scale to draw them at (smaller, down to a legible minimum, when one word alone is too wide)."""
    while True:
        lines = []
        for paragraph in str(text).split("\n"):
            line = ""
            for word in paragraph.split(" "):
                candidate = f"{line} {word}" if line else word
                if line and cv2.getTextSize(candidate, FONT, scale, 1)[0][0] > width:
                    lines.append(line)
                    candidate = word
                line = candidate
            lines.append(line)
        widest = max(cv2.getTextSize(line, FONT, scale, 1)[0][0] for line in lines)
        if widest <= width or scale <= MIN_FONT_SCALE:
            return lines, scale
        scale = max(MIN_FONT_SCALE, scale * 0.9)


def put_label(image: np.ndarray, text: str, colours: Optional[list[tuple[int, int, int]]] = None,
              scale: float = 0.4, pad: int = 3) -> np.ndarray:
    """``text`` in the top left corner of ``image`` (in place) on a darkened box, wrapped to the picture's width so
    a long caption neither runs off the edge nor over itself; ``colours``: RGB of each line (default white)."""
    lines, scale = text_lines(text, image.shape[1] - 4 * pad, scale)
    (_, height), baseline = cv2.getTextSize("Mg", FONT, scale, 1)
    step = height + baseline + 2
    box_w = max(cv2.getTextSize(line, FONT, scale, 1)[0][0] for line in lines) + 2 * pad
    box_h = min(image.shape[0], step * len(lines) + 2 * pad)
    x0 = y0 = pad
    box = image[y0:y0 + box_h, x0:x0 + box_w]
    box[:] = (box.astype(np.float32) * 0.35).astype(np.uint8)
    for i, line in enumerate(lines):
        colour = tuple(int(c) for c in (colours[i] if colours and i < len(colours) else (255, 255, 255)))
        cv2.putText(image, line, (x0 + pad, y0 + pad + height + i * step), FONT, scale, colour, 1, cv2.LINE_AA)
    return image


def caption_bar(width: int, text: str, scale: float = 0.4, pad: int = 4) -> np.ndarray:
    """A white strip ``width`` pixels wide holding ``text`` (wrapped to fit), to put under a picture."""
    lines, scale = text_lines(text, width - 2 * pad, scale)
    (_, height), baseline = cv2.getTextSize("Mg", FONT, scale, 1)
    step = height + baseline + 2
    bar = np.full((step * len(lines) + 2 * pad, width, 3), BACKGROUND, dtype=np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(bar, line, (pad, pad + height + i * step), FONT, scale, LABEL_COLOR, 1, cv2.LINE_AA)
    return bar


def colour_bar(image: np.ndarray, colormap: int, vmax: float, unit: str, width: int = 12, scale: float = 0.35,
               ticks: int = 3) -> np.ndarray:
    """``image`` (a heat map drawn with cv2 ``colormap`` over 0..``vmax``) with its scale to the right: the colours
    bottom (0) to top (``vmax``, and beyond) and tick values, so the map can be read in ``unit``."""
    if not vmax > 0:
        raise UserError(f"colour_bar: vmax must be positive, got {vmax}")
    h = image.shape[0]
    (_, text_h), _ = cv2.getTextSize("0", FONT, scale, 1)
    top, bottom = text_h, h - text_h  # room for the end ticks' text
    ramp = np.linspace(255, 0, max(bottom - top, 2)).astype(np.uint8)[:, None].repeat(width, 1)
    ramp = cv2.cvtColor(cv2.applyColorMap(ramp, colormap), cv2.COLOR_BGR2RGB)
    values = [vmax * i / (ticks - 1) for i in range(ticks)]
    texts = [f"{v:g}" for v in values]
    texts[-1] = f">={texts[-1]} {unit}"
    text_w = max(cv2.getTextSize(t, FONT, scale, 1)[0][0] for t in texts)
    strip = np.full((h, 6 + width + 4 + text_w + 4, 3), BACKGROUND, dtype=np.uint8)
    strip[top:top + len(ramp), 6:6 + width] = ramp
    for value, text in zip(values, texts):
        y = int(round(top + (len(ramp) - 1) * (1 - value / vmax)))
        cv2.line(strip, (6 + width, y), (6 + width + 2, y), LABEL_COLOR, 1)
        cv2.putText(strip, text, (6 + width + 4, y + text_h // 2), FONT, scale, LABEL_COLOR, 1, cv2.LINE_AA)
    return np.ascontiguousarray(np.concatenate([check_rgb(image, "colour_bar image"), strip], axis=1))
