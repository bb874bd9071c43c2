"""Writes what bootstrapping made of a user's own video, which has no ground truth to score:
the refined flow of every pair (``.flo`` + colour ``.png``, as the RAFT footage mode), and per
video the refined poses, ``poses_<video>.npz`` with ``joints2d`` (T - 1, 17, 2) pixels and
``joints3d`` (T - 1, 17, 3) root-relative metres of the frames the pairs start at (H36M-17), plus
``skeleton_<video>.mp4``: the frames with the initial detections (white) and the refined
skeleton (colour). Everything is written atomically, the npz and video at the end of the test.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl

from callbacks.flow_writer import FlowWriter
from callbacks.people_pictures import PREDICTION_COLOUR, draw_people
from framework.io import atomic_write


class PoseFlowWriter(FlowWriter):
    def __init__(self, folder: str | Path, fps: float = 10.0) -> None:
        super().__init__(folder)
        self.fps = fps
        self._videos: dict[int, dict[str, list]] = {}

    def write(self, outputs: dict, batch: Any) -> None:
        super().write(outputs, batch)
        if "joints2d" not in outputs or "video" not in batch:
            return
        for i, video in enumerate(batch["video"].tolist()):
            rows = self._videos.setdefault(int(video), {"frame": [], "joints2d": [], "joints3d": [], "picture": []})
            rows["frame"].append(int(batch["frame"][i]))
            rows["joints2d"].append(outputs["joints2d"][i].detach().float().cpu().numpy())
            rows["joints3d"].append(outputs["joints3d"][i].detach().float().cpu().numpy())
            frame = np.ascontiguousarray(batch["image1"][i].permute(1, 2, 0).clamp(0, 255).byte().cpu().numpy())
            if "detections2d" in batch:
                draw_people(frame, batch["detections2d"][i, :1].float().cpu().numpy(), colour_of=[PREDICTION_COLOUR],
                            thickness=1)
            draw_people(frame, rows["joints2d"][-1][None])
            rows["picture"].append(frame)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for video, rows in sorted(self._videos.items()):
            order = np.argsort(rows["frame"])
            arrays = {"frame": np.asarray(rows["frame"])[order],
                      "joints2d": np.stack(rows["joints2d"])[order].astype(np.float32),
                      "joints3d": np.stack(rows["joints3d"])[order].astype(np.float32)}
            npz = self.folder / f"poses_{video:03d}.npz"
            atomic_write(npz, lambda f, a=arrays: np.savez(f, **a))
            self.written.append(npz)
            self.written.append(self._movie(self.folder / f"skeleton_{video:03d}.mp4",
                                            [rows["picture"][k] for k in order]))
        self._videos = {}

    def _movie(self, path: Path, pictures: list[np.ndarray]) -> Path:
        """An mp4 of the pictures, written beside ``path`` and renamed into place."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.partial.mp4")
        h, w = pictures[0].shape[:2]
        out = cv2.VideoWriter(str(partial), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
        for picture in pictures:
            out.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        out.release()
        partial.replace(path)
        return path
