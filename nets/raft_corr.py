"""RAFT's correlation lookups: the all-pairs pyramid and a memory-light on-the-fly variant.

Both return, for every source pixel, the correlations at a (2r+1)^2 window around its current
target position on each of the pyramid levels, channel-ordered level-major then window offset
as the released weights expect. Everything here runs in fp32 with autocast switched off.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def window_offsets(radius: int, device: torch.device) -> torch.Tensor:
    """(K, K, 2) offsets. RAFT stacks ``meshgrid(dy, dx)`` and adds it to (x, y) coordinates, so the
    first window axis moves x and the second moves y; the released weights depend on this order."""
    steps = torch.linspace(-radius, radius, 2 * radius + 1, device=device)
    first, second = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([first, second], dim=-1)


def sample_pixels(img: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling at pixel coordinates ``xy`` (..., 2) = (x, y), zeros outside the image.

    Normalised as the authors do (``2x/(W-1) - 1``, corners aligned), which keeps the released
    weights' outputs bit-identical. Their form divides by zero on a 1-pixel pyramid level (small
    images give NaN there); such a level gets one zero row/column appended first, which is exactly
    the zeros-outside value, so the result is defined and unchanged in meaning."""
    h, w = img.shape[-2:]
    if h == 1 or w == 1:
        img = F.pad(img, (0, int(w == 1), 0, int(h == 1)))
        h, w = img.shape[-2:]
    gx = 2 * xy[..., :1] / (w - 1) - 1
    gy = 2 * xy[..., 1:] / (h - 1) - 1
    return F.grid_sample(img, torch.cat([gx, gy], dim=-1), mode="bilinear", align_corners=True)


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


class AllPairsCorrelation:
    """The full (H1 W1) x (H2 W2) volume f1^T f2 / sqrt(C), average-pooled over the target dims."""

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, radius: int = 4):
        self.num_levels, self.radius = num_levels, radius
        with _no_autocast(fmap1.device):
            b, c, h, w = fmap1.shape
            corr = torch.matmul(fmap1.float().reshape(b, c, h * w).transpose(1, 2),
                                fmap2.float().reshape(b, c, h * w)) / math.sqrt(c)
            corr = corr.reshape(b * h * w, 1, h, w)
            self.pyramid = [corr]
            for _ in range(num_levels - 1):
                corr = F.avg_pool2d(corr, 2, stride=2)
                self.pyramid.append(corr)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (B, 2, H, W) target positions at 1/8 scale -> (B, levels*K*K, H, W)."""
        with _no_autocast(coords.device):
            b, _, h, w = coords.shape
            k = 2 * self.radius + 1
            delta = window_offsets(self.radius, coords.device).reshape(1, k, k, 2)
            centre = coords.float().permute(0, 2, 3, 1).reshape(b * h * w, 1, 1, 2)
            out = []
            for level, corr in enumerate(self.pyramid):
                sampled = sample_pixels(corr, centre / 2 ** level + delta)  # (BHW, 1, K, K)
                out.append(sampled.reshape(b, h, w, k * k))
            return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous()


class OnTheFlyCorrelation:
    """Same lookups without the volume: per level, pool f2 (correlation is linear in f2, so pooling
    the volume over target dims equals correlating with pooled f2), sample f2's features bilinearly
    at the window and dot them with f1. Query pixels go in chunks so memory stays bounded."""

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, num_levels: int = 4, radius: int = 4,
                 chunk: int = 2048):
        self.num_levels, self.radius, self.chunk = num_levels, radius, chunk
        with _no_autocast(fmap1.device):
            self.fmap1 = fmap1.float()
            f2 = fmap2.float()
            self.pyramid = [f2]
            for _ in range(num_levels - 1):
                f2 = F.avg_pool2d(f2, 2, stride=2)
                self.pyramid.append(f2)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        with _no_autocast(coords.device):
            b, c, h, w = self.fmap1.shape
            k = 2 * self.radius + 1
            scale = 1.0 / math.sqrt(c)
            delta = window_offsets(self.radius, coords.device).reshape(1, 1, k * k, 2)
            centre = coords.float().permute(0, 2, 3, 1).reshape(b, h * w, 1, 2)
            f1 = self.fmap1.reshape(b, c, h * w)
            levels = []
            for level, f2 in enumerate(self.pyramid):
                parts = []
                for start in range(0, h * w, self.chunk):
                    stop = min(start + self.chunk, h * w)
                    xy = (centre[:, start:stop] / 2 ** level + delta).reshape(b, -1, 1, 2)
                    feats = sample_pixels(f2, xy).reshape(b, c, stop - start, k * k)
                    parts.append(torch.einsum("bcn,bcnk->bnk", f1[:, :, start:stop], feats) * scale)
                levels.append(torch.cat(parts, dim=1))
            out = torch.cat(levels, dim=-1)  # (B, HW, levels*K*K)
            return out.permute(0, 2, 1).reshape(b, -1, h, w).contiguous()


CORRELATIONS = {"all_pairs": AllPairsCorrelation, "on_the_fly": OnTheFlyCorrelation}
