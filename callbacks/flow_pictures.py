"""Optical-flow pictures: frame 1, ground-truth and predicted flow on one colour scale, and the
end-point-error map, for the first validation / test samples (and before / after refinement)."""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.sample_pictures import SamplePictures, to_numpy
from geometry.flow import flow_to_color

ERROR_SCALE_PX = 5.0  # end-point errors at or above this many pixels are drawn at full intensity


def fit_height(image: np.ndarray, height: int) -> np.ndarray:
    scale = height / image.shape[0]
    return cv2.resize(image, (max(1, round(image.shape[1] * scale)), height), interpolation=cv2.INTER_NEAREST)


def put_label(image: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(image, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 2, cv2.LINE_AA)
    cv2.putText(image, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def render_flow_panel(image1: np.ndarray, pred: np.ndarray, gt: Optional[np.ndarray] = None,
                      valid: Optional[np.ndarray] = None, size: int = 256) -> np.ndarray:
    """(3,H,W) 0..255 frame, (2,H,W) flows, (H,W) valid -> RGB uint8 panels ``size`` pixels high."""
    frame = np.clip(image1.transpose(1, 2, 0), 0, 255).astype(np.uint8)
    scale = float(np.linalg.norm(gt if gt is not None else pred, axis=0).max()) or 1.0
    panels = [put_label(fit_height(frame, size), "frame 1")]
    if gt is not None:
        panels.append(put_label(fit_height(flow_to_color(gt, max_norm=scale), size), "ground truth"))
    panels.append(put_label(fit_height(flow_to_color(pred, max_norm=scale), size), "prediction"))
    if gt is not None:
        error = np.linalg.norm(pred - gt, axis=0)
        mask = np.ones_like(error, dtype=bool) if valid is None else valid >= 0.5
        heat = cv2.applyColorMap(np.clip(error / ERROR_SCALE_PX * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
        heat = cv2.cvtColor(heat, cv2.COLOR_BGR2RGB)
        heat[~mask] = 128
        epe = float(error[mask].mean()) if mask.any() else float("nan")
        panels.append(put_label(fit_height(heat, size), f"EPE {epe:.2f} px"))
    return np.ascontiguousarray(np.concatenate(panels, axis=1))


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

    def render(self, pl_module: pl.LightningModule, sample: Any) -> np.ndarray:
        return render_flow_panel(*sample, size=self.size)
