"""Send pictures to whatever loggers a trainer has, from one place.

Every method's pictures (skeletons, later flow maps and tracks) are RGB uint8
HxWx3 arrays; this module knows how each logger wants them:
- TensorBoard: one ``add_image`` per picture under ``key/i``;
- Weights & Biases: one ``log_image`` call with all pictures (and captions);
- any other logger with a folder (CSVLogger...): PNG files under
  ``<log_dir>/images/<key with / -> _>_<step>_<i>.png``, written atomically.
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


def side_by_side(images: list[np.ndarray], labels: list[str], bar: int = 24, gap: int = 4) -> np.ndarray:
    """Pictures padded to one height, placed left to right, each with its label in a bar on top."""
    if not images:
        raise UserError("side_by_side: no images")
    if len(labels) != len(images):
        raise UserError(f"side_by_side: {len(labels)} labels for {len(images)} images")
    images = [check_rgb(img, f"side_by_side image {i}") for i, img in enumerate(images)]
    height = max(img.shape[0] for img in images)
    columns = []
    for img, label in zip(images, labels):
        h, w = img.shape[:2]
        column = np.full((bar + height, w, 3), BACKGROUND, dtype=np.uint8)
        column[bar:bar + h] = img
        cv2.putText(column, str(label), (4, bar - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.5, LABEL_COLOR, 1, cv2.LINE_AA)
        columns.append(column)
        columns.append(np.full((bar + height, gap, 3), 200, dtype=np.uint8))
    return np.ascontiguousarray(np.concatenate(columns[:-1], axis=1))
