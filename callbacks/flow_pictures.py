"""Optical-flow pictures: frame 1, ground-truth and predicted flow on one colour scale, and the
end-point-error map with its colour bar, in a grid, for the first validation / test samples (and
before / after refinement, on the colour scale of the first test pass so both compare)."""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.sample_pictures import SamplePictures, to_numpy
from framework.images import caption_bar, colour_bar, grid, put_label
from geometry.flow import flow_to_color

ERROR_SCALE_PX = 5.0  # end-point errors at or above this many pixels are drawn at full intensity
ERROR_COLORMAP = cv2.COLORMAP_INFERNO


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    scale = height / image.shape[0]
    return cv2.resize(image, (max(1, round(image.shape[1] * scale)), height), interpolation=cv2.INTER_NEAREST)


def max_speed(flow: np.ndarray, valid: Optional[np.ndarray] = None) -> float:
    speed = np.nan_to_num(np.linalg.norm(flow, axis=0), nan=0.0, posinf=0.0)
    if valid is not None and (valid >= 0.5).any():
        speed = speed[valid >= 0.5]
    return float(speed.max()) if speed.size else 0.0


def flow_scale(pred: np.ndarray, gt: Optional[np.ndarray] = None, valid: Optional[np.ndarray] = None) -> float:
    """The speed at which flow colours saturate: the ground truth's largest (valid) speed, else the prediction's."""
    speed = max_speed(gt, valid) if gt is not None else max_speed(pred)
    return speed if speed > 0 else 1.0


def error_panel(pred: np.ndarray, gt: np.ndarray, valid: Optional[np.ndarray], size: int) -> np.ndarray:
    """End-point-error heat map (invalid pixels grey) with its colour bar, labelled with the mean EPE."""
    error = np.linalg.norm(pred - gt, axis=0)
    mask = np.ones_like(error, dtype=bool) if valid is None else valid >= 0.5
    heat = cv2.applyColorMap(np.clip(error / ERROR_SCALE_PX * 255, 0, 255).astype(np.uint8), ERROR_COLORMAP)
    heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
    heat[~mask] = 128
    epe = float(error[mask].mean()) if mask.any() else float("nan")
    return colour_bar(put_label(fit_height(heat, size), f"EPE {epe:.2f} px"), ERROR_COLORMAP, ERROR_SCALE_PX, "px")


def render_flow_panel(image1: np.ndarray, pred: np.ndarray, gt: Optional[np.ndarray] = None,
                      valid: Optional[np.ndarray] = None, size: int = 256,
                      max_norm: Optional[float] = None) -> np.ndarray:
    """(3,H,W) 0..255 frame, (2,H,W) flows, (H,W) valid -> RGB uint8 picture of panels ``size`` pixels high:
    frame | ground truth over error map | prediction (ground truth above prediction), without ground truth
    frame | prediction; flows coloured up to ``max_norm`` px (default :func:`flow_scale`), stated underneath."""
    frame = np.clip(image1.transpose(1, 2, 0), 0, 255).astype(np.uint8)
    scale = float(max_norm) if max_norm else flow_scale(pred, gt, valid)
    scale = scale if scale > 0 else 1.0

    def flow_panel(flow: np.ndarray, name: str, mask: Optional[np.ndarray] = None) -> np.ndarray:
        label = f"{name}, max {max_speed(flow, mask):.1f} px"
        return put_label(fit_height(flow_to_color(flow, max_norm=scale), size), label)

    panels = [put_label(fit_height(frame, size), "frame 1")]
    if gt is not None:
        panels += [flow_panel(gt, "ground truth", valid), error_panel(pred, gt, valid, size),
                   flow_panel(pred, "prediction")]
    else:
        panels.append(flow_panel(pred, "prediction"))
    picture = grid(panels, columns=2)
    note = f"flow colour saturates at {scale:.1f} px (white: still; faster: darker)"
    return np.ascontiguousarray(np.concatenate([picture, caption_bar(picture.shape[1], note)], axis=0))


class FlowPictures(SamplePictures):
    def extract(self, outputs: Any, batch: Any, take: int) -> Optional[list[Any]]:
        flow = outputs.get("flow") if isinstance(outputs, dict) else None
        if not torch.is_tensor(flow) or not isinstance(batch, dict) or "image1" not in batch:
            return None
        take = min(take, flow.shape[0])
        gt = batch.get("flow")
        valid = batch.get("valid")
        return [(to_numpy(batch["image1"][i]), to_numpy(flow[i]),
                 to_numpy(gt[i]) if torch.is_tensor(gt) else None,
                 to_numpy(valid[i]) if torch.is_tensor(valid) else None) for i in range(take)]

    def reference(self, sample: Any) -> float:
        """The colour scale of the first test pass, so the same flow gets the same colour before and after."""
        _, pred, gt, valid = sample
        return flow_scale(pred, gt, valid)

    def render(self, pl_module: pl.LightningModule, sample: Any, reference: Optional[float] = None) -> np.ndarray:
        return render_flow_panel(*sample, size=self.size, max_norm=reference)
