"""Dilated temporal convolutions over a 2D pose sequence (Pavllo et al.'s VideoPose3D design), the
dual network's two TCNs: one lifts each person's 2D sequence to the person-centric 3D pose, the
other gives the camera-centred root depth.

An expanding convolution of width w_0, then blocks of a dilated convolution (width w_i, dilation
w_0 ... w_(i-1)) and a 1x1 convolution, each with batch norm, ReLU and dropout, around a residual
connection cropped to the shorter output; a 1x1 convolution gives the outputs. Without padding, a
sequence of T frames gives T - receptive_field + 1 outputs, the one for frame t seeing frames
t - (R - 1) / 2 .. t + (R - 1) / 2 (``causal=False``) or t - R + 1 .. t (``causal=True``); the
widths' product is the receptive field (3, 3, 3, 3, 3: 243 frames, the paper's).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from framework.errors import UserError


class TemporalConvNet(nn.Module):
    def __init__(self, in_features: int, out_features: int, widths: Sequence[int] = (3, 3, 3, 3, 3),
                 channels: int = 1024, dropout: float = 0.25, causal: bool = False) -> None:
        super().__init__()
        if not widths or any(w < 1 or w % 2 == 0 for w in widths):
            raise UserError(f"temporal convolution widths must be odd and positive, got {list(widths)}")
        self.widths, self.causal = tuple(int(w) for w in widths), causal
        self.receptive_field = math.prod(self.widths)
        self.expand = nn.Sequential(nn.Conv1d(in_features, channels, self.widths[0], bias=False),
                                    nn.BatchNorm1d(channels, momentum=0.1), nn.ReLU(inplace=True), nn.Dropout(dropout))
        blocks, dilation = [], self.widths[0]
        for w in self.widths[1:]:
            blocks.append(nn.ModuleDict({
                "dilated": nn.Sequential(nn.Conv1d(channels, channels, w, dilation=dilation, bias=False),
                                         nn.BatchNorm1d(channels, momentum=0.1), nn.ReLU(inplace=True),
                                         nn.Dropout(dropout)),
                "pointwise": nn.Sequential(nn.Conv1d(channels, channels, 1, bias=False),
                                           nn.BatchNorm1d(channels, momentum=0.1), nn.ReLU(inplace=True),
                                           nn.Dropout(dropout))}))
            dilation *= w
        self.blocks = nn.ModuleList(blocks)
        self.shrink = nn.Conv1d(channels, out_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, in_features) -> (B, T - receptive_field + 1, out_features)."""
        if x.dim() != 3 or x.shape[-1] != self.expand[0].in_channels:
            raise UserError(f"temporal convolution: input must be (batch, frames, {self.expand[0].in_channels}), "
                            f"got {tuple(x.shape)}")
        if x.shape[1] < self.receptive_field:
            raise UserError(f"temporal convolution: {x.shape[1]} frames, fewer than the receptive field of "
                            f"{self.receptive_field}; pad the sequence (``pad_sequence``)")
        h = self.expand(x.transpose(1, 2))
        dilation = self.widths[0]
        for w, block in zip(self.widths[1:], self.blocks):
            lost = (w - 1) * dilation  # frames the dilated convolution consumes
            start = lost if self.causal else lost // 2
            residual = h[:, :, start:h.shape[2] - (lost - start)]
            h = residual + block["pointwise"](block["dilated"](h))
            dilation *= w
        return self.shrink(h).transpose(1, 2)

    def pad_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) repeated at its ends (the first and last frame) so that ``forward`` gives T outputs."""
        lost = self.receptive_field - 1
        before = lost if self.causal else lost // 2
        after = lost - before
        return torch.cat([x[:, :1].expand(-1, before, -1), x, x[:, -1:].expand(-1, after, -1)], 1)
