"""Writes every test flow to disk, so flow refined on a user's own footage (which has no ground
truth to score against) can be kept and looked at: ``<name>.flo`` (Middlebury, readable by
``read_flo`` and other tools) and ``<name>.png`` (its colour picture), both written atomically.

``name`` is ``<video:03d>_<frame:05d>`` when the batch says where each pair sits in its video,
else ``<index:06d>``. Set ``active = False`` to pause writing (e.g. during a "before" pass).
"""
from __future__ import annotations

from typing import Any

import torch

from callbacks.output_writer import OutputWriter
from datamodules.readers.flow_formats import write_flo
from framework.errors import UserError
from framework.images import png_bytes
from framework.io import atomic_write
from geometry.flow import flow_to_color


def _row_names(batch: Any, count: int) -> list[str]:
    """One output name per row, from the batch's ``video``/``frame`` or else ``index`` tensors."""
    if not isinstance(batch, dict):
        raise UserError(f"FlowWriter: expected a dict batch with 'index' (or 'video' and 'frame'), "
                        f"got {type(batch).__name__}")
    if torch.is_tensor(batch.get("video")) and torch.is_tensor(batch.get("frame")):
        videos, frames = batch["video"].reshape(-1).tolist(), batch["frame"].reshape(-1).tolist()
        names = [f"{int(v):03d}_{int(f):05d}" for v, f in zip(videos, frames)]
    elif torch.is_tensor(batch.get("index")):
        names = [f"{int(i):06d}" for i in batch["index"].reshape(-1).tolist()]
    else:
        raise UserError("FlowWriter: the batch has neither 'video' and 'frame' nor 'index' tensors to name files by")
    if len(names) != count:
        raise UserError(f"FlowWriter: {count} flows but {len(names)} names in the batch")
    return names


class FlowWriter(OutputWriter):
    """Saves each predicted test flow as ``.flo`` + colour ``.png`` under ``folder``."""

    key = "flow"

    def write(self, outputs: dict, batch: Any) -> None:
        flow = outputs["flow"]
        if flow.ndim != 4 or flow.shape[1] != 2:
            raise UserError(f"FlowWriter: expected outputs['flow'] of shape (B, 2, H, W), got {tuple(flow.shape)}")
        flows = flow.detach().float().cpu().numpy()
        for name, row in zip(_row_names(batch, len(flows)), flows):
            flo = write_flo(self.folder / f"{name}.flo", row.transpose(1, 2, 0))  # atomic, creates the folder
            picture = png_bytes(flow_to_color(row))
            atomic_write(self.folder / f"{name}.png", lambda f, data=picture: f.write(data))
            self.written.append(flo)
