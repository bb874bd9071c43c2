"""Point-track pictures: tracks drawn over a frame (ground truth and prediction side by side, and
before / after refinement through adapt.py), and the kept vs rejected pseudo-labels of a clip."""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.sample_pictures import SamplePictures, to_numpy
from framework.images import put_label

MAX_TRACKS = 64  # drawn per picture, evenly spread over the points
KEPT_COLOUR, REJECTED_COLOUR = (40, 220, 40), (220, 40, 40)


def frame_rgb(frame: Any) -> np.ndarray:
    """(3, H, W) 0..255 tensor or array -> contiguous (H, W, 3) uint8."""
    array = to_numpy(frame) if torch.is_tensor(frame) else np.asarray(frame, dtype=np.float32)
    return np.ascontiguousarray(np.clip(array.transpose(1, 2, 0), 0, 255).astype(np.uint8))


def track_colours(n: int) -> np.ndarray:
    """(n, 3) distinct RGB colours, hue by point order."""
    hues = (np.arange(n) * 180 // max(n, 1)).astype(np.uint8)
    hsv = np.stack([hues, np.full(n, 220, np.uint8), np.full(n, 255, np.uint8)], -1)[None]
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(int)


def draw_tracks(image: np.ndarray, tracks: np.ndarray, visible: Optional[np.ndarray] = None,
                colours: Optional[np.ndarray] = None, upto: Optional[int] = None, scale: float = 1.0) -> np.ndarray:
    """Polylines of ``tracks`` (T, N, 2) px up to frame ``upto`` over ``image`` (H, W, 3) uint8, at
    ``scale`` times the image size; the head is a filled dot where visible, a ring where not."""
    out = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    out = np.ascontiguousarray(out)
    t_end = tracks.shape[0] if upto is None else upto + 1
    colours = track_colours(tracks.shape[1]) if colours is None else colours
    for n in range(tracks.shape[1]):
        colour = tuple(int(c) for c in colours[n])
        points = np.round(tracks[:t_end, n] * scale).astype(np.int32)
        if len(points) > 1:
            cv2.polylines(out, [points.reshape(-1, 1, 2)], False, colour, 1, cv2.LINE_AA)
        head = tuple(int(v) for v in points[-1])
        seen = True if visible is None else bool(visible[t_end - 1, n])
        cv2.circle(out, head, 2, colour, -1 if seen else 1, cv2.LINE_AA)
    return out


def spread(n: int, most: int = MAX_TRACKS) -> np.ndarray:
    return np.linspace(0, n - 1, min(n, most)).round().astype(int) if n else np.zeros(0, int)


def label_picture(clip: torch.Tensor, kept: torch.Tensor, rejected: torch.Tensor, size: int = 192) -> np.ndarray:
    """The clip's last frame with kept pseudo-label tracks in green and rejected ones in red."""
    frame = frame_rgb(clip[-1])
    scale = size / frame.shape[0]
    kept_np, rejected_np = to_numpy(kept), to_numpy(rejected)
    kept_np, rejected_np = kept_np[:, spread(kept_np.shape[1])], rejected_np[:, spread(rejected_np.shape[1])]
    out = draw_tracks(frame, rejected_np, colours=np.tile([REJECTED_COLOUR], (rejected_np.shape[1], 1)), scale=scale)
    out = draw_tracks(out, kept_np * scale, colours=np.tile([KEPT_COLOUR], (kept_np.shape[1], 1)))  # out is scaled
    return put_label(out, label_caption(kept.shape[1], rejected.shape[1]), [KEPT_COLOUR, REJECTED_COLOUR])


def label_caption(kept: int, rejected: int) -> str:
    """Two lines, each in its tracks' colour: one line would run past a small clip's width."""
    return f"kept {kept} ({100 * kept / max(kept + rejected, 1):.0f}%)\nrejected {rejected}"


def render_track_panel(frames: np.ndarray, pred: np.ndarray, pred_vis: np.ndarray, gt: Optional[np.ndarray],
                       visible: Optional[np.ndarray], size: int = 256) -> np.ndarray:
    """Tracks over the last frame: ground truth (when there is one) and prediction, same colours."""
    frame = frame_rgb(frames[-1])
    scale = size / frame.shape[0]
    pick = spread(pred.shape[1])
    colours = track_colours(len(pick))
    panels = []
    if gt is not None:
        panels.append(put_label(draw_tracks(frame, gt[:, pick], visible[:, pick], colours, scale=scale), "ground truth"))
    panels.append(put_label(draw_tracks(frame, pred[:, pick], pred_vis[:, pick], colours, scale=scale), "prediction"))
    return np.ascontiguousarray(np.concatenate(panels, axis=1))


class TrackPictures(SamplePictures):
    def extract(self, outputs: Any, batch: Any, take: int) -> Optional[list[Any]]:
        trajs = outputs.get("trajs") if isinstance(outputs, dict) else None
        if not torch.is_tensor(trajs) or not isinstance(batch, dict) or "frames" not in batch:
            return None
        take = min(take, trajs.shape[0])
        gt, visible = batch.get("trajs"), batch.get("visible")
        return [(to_numpy(batch["frames"][i]), to_numpy(trajs[i]), to_numpy(outputs["vis"][i]) > 0.5,
                 to_numpy(gt[i]) if torch.is_tensor(gt) else None,
                 to_numpy(visible[i]) > 0.5 if torch.is_tensor(visible) else None) for i in range(take)]

    def render(self, pl_module: pl.LightningModule, sample: Any) -> np.ndarray:
        return render_track_panel(*sample, size=self.size)
