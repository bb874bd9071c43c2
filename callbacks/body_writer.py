"""Writes the bodies fitted to a user's own pictures (a COCO-format keypoints file: no truth to
score, so the bodies are the result). Per person crop, named ``<picture stem>_<annotation id>``:

- ``.npz``: ``pose`` (J, R) the body's joint rotations in the prior's representation, ``betas``,
  ``orient`` (3,) angle-axis and ``transl`` (3,) metres in the crop's camera frame, ``joints3d``
  (17, 3) H36M-17 and ``vertices`` (V, 3) in that frame, ``keypoints2d`` (17, 2) the body's COCO
  keypoints in crop pixels, ``camera`` (4,) the crop's pinhole (fx, fy, cx, cy);
- ``.png``: the crop with the body's part silhouettes blended over it, the labelled keypoints as
  white dots and the body's own as coloured ones.

Files are written atomically as each test batch ends.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl

from callbacks.output_writer import OutputWriter
from callbacks.per_video import test_dataset
from callbacks.people_pictures import part_colours
from framework.images import png_bytes
from framework.io import atomic_write
from geometry.raster import face_labels, part_silhouettes

ARRAYS = ("pose", "betas", "orient", "transl", "joints3d", "vertices", "keypoints2d")


class BodyWriter(OutputWriter):
    key = "vertices"

    def __init__(self, folder: str | Path, opacity: float = 0.5) -> None:
        super().__init__(folder)
        self.opacity = opacity

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self.module, self.dataset = pl_module, test_dataset(trainer)
        super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def name(self, index: int) -> str:
        named = getattr(self.dataset, "name", None)
        return named(index) if callable(named) else f"{index:06d}"

    def write(self, outputs: dict, batch: Any) -> None:
        body = self.module.body
        camera = batch["camera"].float()
        silhouettes = part_silhouettes(outputs["vertices"].float(), body.faces, face_labels(body.faces, body.vertex_parts),
                                       camera, tuple(batch["image"].shape[-2:])).cpu().numpy()
        colours = part_colours(len(body.part_names))
        for i, index in enumerate(batch["index"].tolist()):
            stem = self.folder / self.name(int(index))
            arrays = {k: outputs[k][i].detach().float().cpu().numpy() for k in ARRAYS if k in outputs}
            arrays["camera"] = camera[i].cpu().numpy()
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            self.written.append(atomic_write(stem.with_suffix(".npz"), lambda f, b=buffer: f.write(b.getvalue())))
            picture = self.overlay(batch, i, silhouettes[i], colours, arrays.get("keypoints2d"))
            self.written.append(atomic_write(stem.with_suffix(".png"), lambda f, p=picture: f.write(png_bytes(p))))

    def overlay(self, batch: dict, i: int, labels: np.ndarray, colours: np.ndarray, keypoints) -> np.ndarray:
        picture = batch["image"][i].permute(1, 2, 0).clamp(0, 255).byte().cpu().numpy().astype(np.float32)
        shown = labels > 0
        picture[shown] = (1 - self.opacity) * picture[shown] + self.opacity * colours[labels[shown]]
        picture = np.ascontiguousarray(picture.round().astype(np.uint8))
        labelled = batch["keypoint_visible"][i].bool().cpu().numpy()
        for x, y in batch["keypoints"][i].float().cpu().numpy()[labelled]:
            cv2.circle(picture, (int(round(x)), int(round(y))), 2, (255, 255, 255), -1, cv2.LINE_AA)
        if keypoints is not None:
            for x, y in keypoints[labelled]:
                cv2.circle(picture, (int(round(x)), int(round(y))), 1, (255, 60, 40), -1, cv2.LINE_AA)
        return picture


def on_pictures(cfg, run_dir: Path):
    """A method's ``MethodSpec.writer``: bodies are written for a COCO-format target (a user's pictures)."""
    return BodyWriter(run_dir / "bodies") if cfg.data.target.kind == "coco" else None
