"""Writes every test video's tracks to disk, so tracks refined on a user's own footage (which has no
ground truth to score against) can be kept and looked at: ``<name>.npz`` with ``tracks`` (T, N, 2)
pixels, ``visibility`` (T, N) probabilities and ``queries`` (N, 3) as (t, x, y), and
``<name>.mp4``, the tracks drawn over the frames at the source's rate (the batch's ``fps``; a
frame folder has none: ``FPS``). Both are written atomically; ``active = False`` pauses writing
(e.g. during the "before" pass).
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from callbacks.output_writer import OutputWriter
from callbacks.track_pictures import draw_tracks, frame_rgb, spread, track_colours
from framework.errors import UserError
from framework.io import atomic_write

FPS = 10.0  # frames without a known rate (a folder of images)


def write_overlay_video(path: Path, frames: np.ndarray, tracks: np.ndarray, visible: np.ndarray,
                        fps: float = FPS) -> Path:
    """``frames`` (T, 3, H, W) 0..255 with ``tracks`` (T, N, 2) drawn up to each frame, as mp4 at ``fps``."""
    if not fps > 0:
        raise UserError(f"{path}: the overlay video needs a positive frame rate, got {fps}")
    pick = spread(tracks.shape[1])
    colours = track_colours(len(pick))
    h, w = frames.shape[-2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=path.parent)
    os.close(fd)
    try:
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (w, h))
        if not writer.isOpened():
            raise UserError(f"{path}: OpenCV cannot write mp4 video here")
        for t in range(frames.shape[0]):
            picture = draw_tracks(frame_rgb(frames[t]), tracks[:, pick], visible[:, pick], colours, upto=t)
            writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        writer.release()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class TrackWriter(OutputWriter):
    """Saves each test video's predicted tracks as ``.npz`` + overlay ``.mp4`` under ``folder``."""

    key = "trajs"

    def write(self, outputs: dict, batch: Any) -> None:
        trajs = outputs["trajs"]
        if trajs.ndim != 4 or trajs.shape[-1] != 2:
            raise UserError(f"TrackWriter: expected outputs['trajs'] of shape (B, T, N, 2), got {tuple(trajs.shape)}")
        tracks = trajs.detach().float().cpu().numpy()
        vis = outputs["vis"].detach().float().cpu().numpy()
        frames = batch["frames"].detach().float().cpu().numpy()
        queries = batch["queries"].detach().float().cpu().numpy()
        rates = batch["fps"].reshape(-1).tolist() if torch.is_tensor(batch.get("fps")) else []
        for b, index in enumerate(batch["index"].reshape(-1).tolist()):
            name = f"{int(index):04d}"
            buffer = io.BytesIO()
            np.savez_compressed(buffer, tracks=tracks[b], visibility=vis[b], queries=queries[b])
            data = buffer.getvalue()
            self.written.append(atomic_write(self.folder / f"{name}.npz", lambda f, d=data: f.write(d)))
            fps = float(rates[b]) if b < len(rates) else FPS
            write_overlay_video(self.folder / f"{name}.mp4", frames[b], tracks[b], vis[b] > 0.5, fps)
