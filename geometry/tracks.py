"""Geometry of point tracks (T, N, 2) in pixels: query layouts (grids, windows around seeds),
forward-backward cycle errors, staying inside the frame, speed."""
from __future__ import annotations

from typing import Callable

import torch

from framework.errors import UserError


def cycle_errors(forward: torch.Tensor, backward: torch.Tensor) -> torch.Tensor:
    """(B, S, N, 2) forward tracks and backward tracks put back in forward time order -> (B, N)
    largest disagreement over the frames."""
    if forward.shape != backward.shape or forward.dim() != 4 or forward.shape[-1] != 2:
        raise UserError(f"cycle_errors: expected two (B, S, N, 2) track sets, got {tuple(forward.shape)} "
                        f"and {tuple(backward.shape)}")
    return torch.linalg.vector_norm(forward.float() - backward.float(), dim=-1).amax(1)


def inside_frame(tracks: torch.Tensor, height: int, width: int, margin: float = 0.0) -> torch.Tensor:
    """(B, S, N, 2) -> (B, N): the track stays at least ``margin`` px inside the frame throughout."""
    x, y = tracks[..., 0], tracks[..., 1]
    ok = (x >= margin) & (x <= width - 1 - margin) & (y >= margin) & (y <= height - 1 - margin)
    return ok.all(1)


def mean_speed(tracks: torch.Tensor) -> torch.Tensor:
    """(..., S, N, 2) -> (..., N) mean displacement per frame in px."""
    return torch.linalg.vector_norm(tracks[..., 1:, :, :] - tracks[..., :-1, :, :], dim=-1).mean(-2)


def grid_points(height: int, width: int, spacing: int, margin: int) -> torch.Tensor:
    """(M, 2) x, y of a regular grid, centred in the frame, ``margin`` px from the border."""
    if min(height, width) - 1 < 2 * margin:
        raise UserError(f"track labels: a {height}x{width} frame has no room for queries {margin} px from its border")
    ys = torch.arange(margin, height - margin, spacing, dtype=torch.float32)
    xs = torch.arange(margin, width - margin, spacing, dtype=torch.float32)
    ys = ys + (height - 1 - margin - ys[-1]) / 2
    xs = xs + (width - 1 - margin - xs[-1]) / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx.flatten(), gy.flatten()), -1)


def window_points(seeds: torch.Tensor, window: int, spacing: int, height: int, width: int,
                  margin: int) -> torch.Tensor:
    """(K, 2) seeds -> the queries of a ``window`` px square around each (seeds themselves left
    out), clipped to the frame, as (M, 2)."""
    half = window / 2
    offsets = torch.arange(-half, half + 1e-6, spacing, dtype=torch.float32)
    oy, ox = torch.meshgrid(offsets, offsets, indexing="ij")
    offsets = torch.stack((ox.flatten(), oy.flatten()), -1)
    offsets = offsets[offsets.norm(dim=-1) > 0]
    points = (seeds[:, None, :] + offsets[None]).reshape(-1, 2)
    ok = ((points[:, 0] >= margin) & (points[:, 0] <= width - 1 - margin) &
          (points[:, 1] >= margin) & (points[:, 1] <= height - 1 - margin))
    return points[ok]


Tracker = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (1, S, 3, H, W), (1, M, 2) -> (1, S, M, 2)


def consistent_tracks(track: Tracker, clip: torch.Tensor, queries: torch.Tensor, tau: float,
                      margin: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Track ``queries`` (M, 2) through ``clip`` (1, S, 3, H, W) forward and back; returns the
    forward tracks (S, M, 2) and the (M,) mask of those that pass the cycle check."""
    forward = track(clip, queries[None])
    backward = track(clip.flip(1), forward[:, -1]).flip(1)
    h, w = clip.shape[-2:]
    inside = inside_frame(forward, h, w, margin)[0]
    keep = (cycle_errors(forward, backward)[0] < tau) & inside
    return forward[0], keep
