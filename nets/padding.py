"""Replicate padding of frames to a multiple of a network's stride, and its undoing.

One padder for every network here (RAFT needs multiples of 8, PIPs of its stride):

- ``"sintel"``: the padding split evenly top/bottom and left/right (the RAFT authors' InputPadder, Sintel);
- ``"kitti"``: split left/right, all vertical padding at the bottom (the RAFT authors' InputPadder, KITTI);
- ``"corner"``: all padding at the bottom and right, so pixel coordinates are unchanged and tracks
  or query points need no correction (PIPs).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from framework.errors import UserError

MODES = ("sintel", "kitti", "corner")


class Padder:
    """Pads (..., H, W) tensors of size ``dims[-2:]`` to multiples of ``multiple`` (replicate), any
    leading dimensions. ``pads`` is ``[left, right, top, bottom]`` (``F.pad``'s order)."""

    def __init__(self, dims: Sequence[int], mode: str = "sintel", multiple: int = 8):
        if mode not in MODES:
            raise UserError(f"Padder mode {mode!r} unknown; expected one of {', '.join(MODES)}")
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
            raise UserError(f"Padder multiple must be a positive integer, got {multiple!r}")
        self.ht, self.wd = dims[-2:]
        self.mode, self.multiple = mode, multiple
        pad_h, pad_w = (-self.ht) % multiple, (-self.wd) % multiple
        if mode == "corner":
            left, right, top, bottom = 0, pad_w, 0, pad_h
        else:
            left, right = pad_w // 2, pad_w - pad_w // 2
            top, bottom = (pad_h // 2, pad_h - pad_h // 2) if mode == "sintel" else (0, pad_h)
        self.pads = [left, right, top, bottom]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() in (3, 4):  # what replicate padding takes as it is
            return F.pad(x, self.pads, mode="replicate")
        if not any(self.pads):
            return x
        shape = x.shape
        flat = x.reshape(-1, *shape[-3:]) if x.dim() > 4 else x.reshape(1, 1, *shape[-2:])
        flat = F.pad(flat, self.pads, mode="replicate")
        return flat.reshape(*shape[:-2], *flat.shape[-2:])

    def pad(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Each input padded (a list, also for one input)."""
        return [self._pad(x) for x in inputs]

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """Cut a padded (..., H', W') tensor back to the original H x W."""
        left, right, top, bottom = self.pads
        h, w = x.shape[-2:]
        return x[..., top:h - bottom, left:w - right]
