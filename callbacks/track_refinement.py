"""PIPs refinement on cycle-consistent pseudo-labels ("Refining Pre-Trained Motion Models",
tracking part) and the self-supervised baselines it is compared with, as one test-time callback.

Per video (a test item is a whole video): S-frame clips start every ``clip_stride`` frames; the
pre-trained weights (the teacher) label each clip with the tracks that pass the 8-frame cycle
check (``callbacks/track_pseudo_labels.py``); the network is fine-tuned on groups of those tracks
with the training loss, visibility term off, under colour jitter and flips (AdamW, cosine
schedule, batch with gradient accumulation, clipping: the authors' values by default). The
``photometric`` and ``feature`` objectives instead track a grid of queries and ask the colour
(or the teacher's feature) under each track to stay that of its query.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.track_pseudo_labels import (TrackLabelConfig, clip_labels, draw_group, grid_points,
                                           validate_track_label_config)
from callbacks.per_video import test_dataset
from callbacks.test_time import autocast
from callbacks.video_refinement import FineTuneConfig, RefinementConfig, TrainingSet, VideoRefinement
from datamodules.colour_jitter import ColorJitter
from framework import progress
from framework.checks import OneOf, check, fraction
from framework.errors import UserError

OBJECTIVES = ("pseudo_labels", "photometric", "feature")


def authors_finetune() -> FineTuneConfig:
    """The authors' PIPs fine-tuning: AdamW 1e-5, wd 1e-4, cosine, batch 1 x 8 accumulated, clip 5."""
    return FineTuneConfig(steps=3000, batch_size=1, accumulate=8, lr=1e-5, schedule="cosine")


@dataclass
class TrackAugmentConfig:
    """``adaptation.augment``: one colour jitter per clip (colour stays constant along a track), flips."""

    colour_jitter: bool = True  # pseudo-labels only: the constancy baselines need the colours as they are
    h_flip_prob: float = 0.5
    v_flip_prob: float = 0.1


@dataclass
class TrackRefinementConfig(RefinementConfig):
    objective: str = "pseudo_labels"  # pseudo_labels | photometric | feature
    finetune: FineTuneConfig = field(default_factory=authors_finetune)
    labels: TrackLabelConfig = field(default_factory=TrackLabelConfig)
    augment: TrackAugmentConfig = field(default_factory=TrackAugmentConfig)


def validate_track_refinement_config(c: TrackRefinementConfig, key: str = "adaptation") -> None:
    check(c, key, objective=OneOf(OBJECTIVES))
    validate_track_label_config(c.labels, f"{key}.labels")
    check(c.augment, f"{key}.augment", h_flip_prob=fraction(), v_flip_prob=fraction())


class TrackLabels(TrainingSet):
    """One video's labelled clips: ``clips`` (C, S, 3, H, W) in 0..255 and per clip its tracks
    (S, K, 2); batches are groups of tracks under colour jitter and flips."""

    def __init__(self, clips: torch.Tensor, tracks: list[torch.Tensor], cfg: TrackRefinementConfig,
                 seed: tuple[int, ...], stats: dict[str, float]):
        usable = [i for i, t in enumerate(tracks) if t.shape[1] > 0]
        self.clips = clips[usable] if usable else clips[:0]
        self.tracks = [tracks[i] for i in usable]
        self.cfg, self.seed, self._stats = cfg, seed, stats
        self.jitter = ColorJitter() if cfg.augment.colour_jitter and cfg.objective == "pseudo_labels" else None

    def stats(self) -> dict[str, float]:
        return dict(self._stats)

    def labels_made(self) -> int:
        return int(sum(t.shape[1] for t in self.tracks))

    def sample(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        c = self.cfg
        i = int(rng.integers(len(self.tracks)))
        frames, tracks = self.clips[i], self.tracks[i]
        tracks = tracks[:, draw_group(tracks, c.labels, rng)]
        if self.jitter is not None:  # one jitter for the whole clip: colour stays constant along a track
            s, _, h, w = frames.shape
            stacked = frames.permute(0, 2, 3, 1).reshape(s * h, w, 3).cpu().numpy()
            frames = torch.from_numpy(np.ascontiguousarray(self.jitter(stacked, rng), dtype=np.float32))
            frames = frames.reshape(s, h, w, 3).permute(0, 3, 1, 2).to(tracks.device)
        h, w = frames.shape[-2:]
        if rng.random() < c.augment.h_flip_prob:
            frames = frames.flip(-1)
            tracks = torch.stack((w - 1 - tracks[..., 0], tracks[..., 1]), -1)
        if rng.random() < c.augment.v_flip_prob:
            frames = frames.flip(-2)
            tracks = torch.stack((tracks[..., 0], h - 1 - tracks[..., 1]), -1)
        return {"frames": frames, "trajs": tracks}

    def batch(self, step: int, part: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng((*self.seed, step, part))
        samples = [self.sample(rng) for _ in range(self.cfg.finetune.batch_size)]
        frames = torch.stack([s["frames"] for s in samples]).float()
        trajs = torch.stack([s["trajs"] for s in samples]).float()
        ones = torch.ones(trajs.shape[:-1], device=trajs.device)
        return {"frames": frames, "trajs": trajs, "visible": ones, "valid": ones,
                "weight": torch.ones(trajs.shape[0], trajs.shape[2], device=trajs.device)}


def track_errors(truth: Callable, video: int, start: int, tracks: torch.Tensor) -> np.ndarray:
    """Distances (S-1, K) in px of tracks (S, K, 2) of the clip starting at frame ``start`` to the
    exact tracks of their first-frame points, ``truth(video, queries (K, 3), times)`` -> (trajs,
    visible, valid), at the frames after the query's; NaN where the truth leaves the frame. For
    the report only."""
    tracks = tracks.detach().double().cpu().numpy()
    queries = np.concatenate([np.full((tracks.shape[1], 1), float(start)), tracks[0]], 1)
    exact, _, valid = truth(video, queries, range(start, start + tracks.shape[0]))
    return np.where(valid, np.linalg.norm(tracks - exact, axis=-1), np.nan)[1:]


class TrackRefinement(VideoRefinement):
    config_class = TrackRefinementConfig
    validate = staticmethod(validate_track_refinement_config)
    loosen = "raise adaptation.labels.tau"

    def _clips(self, frames: torch.Tensor, S: int) -> tuple[torch.Tensor, list[int]]:
        """(T, 3, H, W) -> (C, S, 3, H, W) clips starting every ``clip_stride`` frames, and their starts."""
        t = frames.shape[0]
        if t < S:
            raise UserError(f"track refinement: a video of {t} frames is shorter than one {S}-frame window")
        starts = list(range(0, t - S + 1, self.cfg.labels.clip_stride))
        return torch.stack([frames[s:s + S] for s in starts]), starts

    def training_set(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> TrackLabels:
        c = self.cfg
        if rows["frames"].shape[0] != 1:
            raise UserError("track refinement adapts one video at a time: set data.test_batch_size=1")
        clips, starts = self._clips(rows["frames"][0].float(), pl_module.clip_frames)
        stats: dict[str, float] = {"clips": float(len(clips))}
        if c.objective == "pseudo_labels":
            def track(clip: torch.Tensor, xys: torch.Tensor) -> torch.Tensor:
                with torch.no_grad(), autocast(trainer):
                    return self.teacher(pl_module, {"frames": clip, "xys": xys})["trajs"].float()

            truth = getattr(test_dataset(trainer), "track", None)  # exact tracks of any query (synthetic data)
            tracks, queried, kept, errors = [], 0.0, 0.0, ([], [])
            rng = np.random.default_rng((c.seed, video, 1))  # the random-selection control only
            labelling = progress.open_bar(len(clips), "labelling clips")
            for i, (clip, start) in enumerate(zip(clips, starts)):
                labels, rejected, count = clip_labels(track, clip[None], c.labels, rng)
                labelling.update(1)
                tracks.append(labels)
                queried += count
                kept += labels.shape[1]
                if callable(truth):  # the labels are the first columns of all the teacher's tracks
                    distance = track_errors(truth, video, start, torch.cat([labels, rejected], 1))
                    errors[0].append(distance[:, :labels.shape[1]].ravel())
                    errors[1].append(distance.ravel())
                if i == 0 and len(self.pictures) < c.pictures:
                    from callbacks.track_pictures import label_picture
                    self.pictures.append(label_picture(clip, labels, rejected))
            labelling.close()
            stats.update({"queried": queried, "label_tracks": kept, "label_share": kept / max(queried, 1.0)})
            if callable(truth):  # how accurate the kept labels are, against all the teacher's tracks
                for key, side in zip(("label_ate", "teacher_ate"), errors):
                    values = np.concatenate(side)
                    values = values[~np.isnan(values)]
                    stats[key] = float(values.mean()) if values.size else float("nan")
        else:  # the baselines learn from a grid of queries on each clip's first frame
            h, w = clips.shape[-2:]
            grid = grid_points(h, w, c.labels.grid_spacing, c.labels.margin).to(clips.device)
            tracks = [grid[None].expand(clips.shape[1], -1, -1) for _ in range(len(clips))]
        return TrackLabels(clips, tracks, c, (c.seed, video), stats)

    def loss(self, pl_module, batch: dict) -> torch.Tensor:
        return pl_module.refinement_loss(batch, self.cfg.objective, iters=self.cfg.finetune.iters)
