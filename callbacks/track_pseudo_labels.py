"""Pseudo-labelled tracks for PIPs refinement ("Refining Pre-Trained Motion Models", tracking part).

The frozen teacher tracks query points forward through an S-frame clip, then tracks the
time-reversed clip from its own last-frame estimate; a track is a label only when the two agree
within ``tau`` pixels at every frame (and stay inside the frame). Queries are a grid on the clip's
first frame, densified by square windows of queries around seeds that passed (the authors' dense
windows: a consistent point vouches for its neighbourhood, which is tracked and checked in turn).
Re-balancing: fast tracks (mean speed above ``min_speed`` px / frame) fail the check more often,
so each group of ``group_size`` tracks draws a ``fast_share`` of them whenever a clip has any;
static, easy tracks would otherwise make up almost every group.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from framework.checks import OneOf, at_least, check, fraction
from framework.errors import UserError
from geometry.tracks import Tracker, consistent_tracks, grid_points, inside_frame, mean_speed, window_points


SELECTIONS = ("cycle", "random")


@dataclass
class TrackLabelConfig:
    """``adaptation.labels`` of PIPs refinement."""

    tau: float = 1.5  # px at any frame (the authors: 1.5 at 768x1280 CroHD, 3 at 256x448 Horse30)
    clip_stride: int = 8  # frames between the starts of labelled clips
    grid_spacing: int = 16  # px between seed queries on a clip's first frame
    dense_window: int = 24  # px side of the window of queries around a kept seed (0: no densifying)
    dense_spacing: int = 4  # px between the queries of a window
    dense_seeds: int = 8  # kept seeds per clip that get a window (the fastest first)
    margin: int = 2  # px: queries and labelled tracks keep this far from the frame border
    min_speed: float = 5.0  # px / frame: tracks faster than this on average count as fast
    fast_share: float = 0.5  # share of each group drawn from fast tracks (when a clip has any)
    group_size: int = 128  # tracks per training sample (the authors' N)
    # cycle: the check picks the labels; random: as many teacher tracks as the check keeps, picked at
    # random (the paper's control: does the check matter, or just fine-tuning on the teacher?)
    selection: str = "cycle"
    min_labels: int = 1  # labelled tracks a video needs to be fine-tuned at all


def validate_track_label_config(c: TrackLabelConfig, key: str = "adaptation.labels") -> None:
    check(c, key, min_labels=at_least(1), tau=at_least(0), min_speed=at_least(0), clip_stride=at_least(1),
          grid_spacing=at_least(1), dense_spacing=at_least(1), group_size=at_least(1), dense_window=at_least(0), dense_seeds=at_least(0),
          margin=at_least(0), selection=OneOf(SELECTIONS), fast_share=fraction())


def clip_labels(track: Tracker, clip: torch.Tensor, cfg: TrackLabelConfig,
                rng: Optional[np.random.Generator] = None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Cycle-consistent teacher tracks (S, K, 2) of one clip, from grid seeds and dense windows
    around the fastest kept seeds; the rejected tracks (S, R, 2), for pictures; queries made.
    ``selection="random"`` (needs ``rng``) keeps instead K of all the in-frame tracks made, at random."""
    if cfg.selection == "random" and rng is None:
        raise UserError("track labels: random selection needs a random generator")
    h, w = clip.shape[-2:]
    seeds = grid_points(h, w, cfg.grid_spacing, cfg.margin).to(clip.device)
    tracks, keep = consistent_tracks(track, clip, seeds, cfg.tau, cfg.margin)
    made, kept, queried = [tracks], [keep], len(seeds)
    if cfg.dense_window > 0 and cfg.dense_seeds > 0 and bool(keep.any()):
        speed = mean_speed(tracks[:, keep])
        chosen = tracks[0, keep][speed.argsort(descending=True)[:cfg.dense_seeds]]
        dense = window_points(chosen, cfg.dense_window, cfg.dense_spacing, h, w, cfg.margin)
        if len(dense):
            more, more_keep = consistent_tracks(track, clip, dense, cfg.tau, cfg.margin)
            made.append(more)
            kept.append(more_keep)
            queried += len(dense)
    tracks, keep = torch.cat(made, 1), torch.cat(kept)
    if cfg.selection == "random":  # the control: as many labels, drawn from everything the teacher made
        inside = np.flatnonzero(inside_frame(tracks[None], h, w, cfg.margin)[0].cpu().numpy())
        chosen = rng.choice(inside, int(keep.sum()), replace=False)
        keep = torch.zeros_like(keep)
        keep[torch.from_numpy(chosen).to(keep.device)] = True
    return tracks[:, keep], tracks[:, ~keep], queried


def draw_group(tracks: torch.Tensor, cfg: TrackLabelConfig, rng: np.random.Generator) -> torch.Tensor:
    """Indices of ``group_size`` tracks of one clip's labels (S, K, 2): a ``fast_share`` of fast
    tracks where there are any, the rest from all; with replacement only when K is too small."""
    k = tracks.shape[1]
    if k == 0:
        raise UserError("track labels: a clip without labels cannot give a group")
    fast = np.flatnonzero((mean_speed(tracks) > cfg.min_speed).cpu().numpy())
    n_fast = min(len(fast), int(round(cfg.fast_share * cfg.group_size))) if len(fast) else 0
    picks = [rng.choice(fast, n_fast, replace=False)] if n_fast else []
    rest = cfg.group_size - n_fast
    pool = np.setdiff1d(np.arange(k), picks[0]) if picks else np.arange(k)
    if len(pool) >= rest:
        picks.append(rng.choice(pool, rest, replace=False))
    else:
        picks.append(np.concatenate([pool, rng.choice(k, rest - len(pool), replace=True)]))
    return torch.from_numpy(np.concatenate(picks).astype(np.int64))
