"""Per-video test-time refinement, the loop of "Refining Pre-Trained Motion Models" shared by
the flow (RAFT) and tracking (PIPs) methods.

Before the first test pair of a video is predicted, the callback makes a training set for that
video (pseudo-labels from the frozen pre-trained weights, or just frames for the self-supervised
baselines) and fine-tunes the module on it for ``steps`` optimiser steps; the video is then
predicted with the refined weights. ``per_video`` mode resets to the pre-trained weights before
every video; ``online`` carries the weights from one video to the next (each video gets its own
optimiser and schedule). The teacher is always the pre-trained weights, called functionally on
the snapshot the base class keeps, so no second copy of the network is needed.

Test loaders must keep each video's pairs together and in order (dataset order does); under DDP
each rank refines the videos it is handed, and the per-video reports are gathered at the end of
the test so every rank's summary lists every video once (where a dataset lists no videos,
DistributedSampler's padding may repeat one: its first report is kept).
"""
from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from torch.func import functional_call

from callbacks.adaptation_base import (AdaptationCallback, autocast, batch_size_of, cat_outputs, grad_enabled,
                                       grad_scaler, slice_batch)
from framework.errors import UserError
from lightning_modules.base import ADAPTED_OUTPUTS

MODES = ("per_video", "online")
SCHEDULES = ("onecycle", "cosine", "constant")


@dataclass
class FineTuneConfig:
    mode: str = "per_video"  # per_video | online
    steps: int = 1000  # optimiser steps per video
    batch_size: int = 12
    accumulate: int = 1  # gradient accumulation: samples per step = batch_size * accumulate
    lr: float = 1e-4
    weight_decay: float = 1e-4
    eps: float = 1e-8
    schedule: str = "onecycle"  # onecycle (linear, pct_start) | cosine | constant
    pct_start: float = 0.1
    grad_clip: Optional[float] = 5.0
    seed: int = 0


def validate_finetune_config(c: FineTuneConfig, key: str = "adaptation") -> None:
    if c.mode not in MODES:
        raise UserError(f"{key}.mode: must be one of {', '.join(MODES)}, got {c.mode!r}")
    if c.schedule not in SCHEDULES:
        raise UserError(f"{key}.schedule: must be one of {', '.join(SCHEDULES)}, got {c.schedule!r}")
    for name in ("steps", "batch_size", "accumulate"):
        if getattr(c, name) < 1:
            raise UserError(f"{key}.{name}: must be at least 1, got {getattr(c, name)}")
    if c.lr <= 0:
        raise UserError(f"{key}.lr: must be > 0, got {c.lr}")
    if not 0 < c.pct_start < 1:
        raise UserError(f"{key}.pct_start: must lie in (0, 1), got {c.pct_start}")


def make_schedule(optimizer: torch.optim.Optimizer, c: FineTuneConfig):
    if c.schedule == "onecycle":  # the authors' RAFT schedule, total = steps + 100 as theirs
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=c.lr, total_steps=c.steps + 100,
                                                   pct_start=c.pct_start, cycle_momentum=False,
                                                   anneal_strategy="linear")
    if c.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=c.steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


class TrainingSet:
    """What one video's fine-tuning draws from: ``batch(step, part)`` is a dict of tensors (the
    ``part``-th accumulation slice of step ``step``), a pure function of its arguments."""

    @abstractmethod
    def batch(self, step: int, part: int) -> dict[str, torch.Tensor]:
        ...

    def stats(self) -> dict[str, float]:
        return {}

    @property
    def empty(self) -> bool:
        """True when there is nothing to learn from (no pseudo-label survived): fine-tuning is skipped."""
        return False


def test_dataset(trainer: pl.Trainer) -> Any:
    """The dataset behind the (first) test loader: where the refinement reads a whole video or,
    for the report only, its ground truth."""
    loader = trainer.test_dataloaders
    return (loader[0] if isinstance(loader, (list, tuple)) else loader).dataset


def gather_reports(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's per-video reports, one per video, in video order (this rank's alone without DDP)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return reports
    gathered: list[Optional[list[dict]]] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, reports)
    first: dict[int, dict[str, Any]] = {}
    for rank_reports in gathered:
        for report in rank_reports or []:
            first.setdefault(int(report["video"]), report)
    return [first[v] for v in sorted(first)]


class VideoRefinement(AdaptationCallback):
    """A subclass names its config dataclass and validator; the config may come as a plain dict."""

    config_class: type = FineTuneConfig
    validate: Callable[[Any], None] = staticmethod(validate_finetune_config)

    def __init__(self, cfg: Any):
        super().__init__()
        cfg = cfg if isinstance(cfg, self.config_class) else self.config_class(**cfg)
        validate_finetune_config(cfg)
        self.validate(cfg)
        self.cfg = cfg
        self.reports: list[dict[str, Any]] = []
        self.label_pictures: list[np.ndarray] = []  # logged as pictures/pseudo_labels at test end

    def settings(self) -> dict:
        return asdict(self.cfg)

    def summary(self) -> dict:
        """Per-video refinement statistics (written into the adaptation report)."""
        return {"videos": list(self.reports)}

    # ------------------------------------------------------------ method specific
    def video_ids(self, batch: dict) -> torch.Tensor:
        """(B,) int64 id of the video each row of a test batch belongs to."""
        if "video" not in batch:
            raise UserError("refinement works per video, but the test batches carry no 'video' key; use a "
                            "dataset made of videos (the synthetic videos, a real video dataset or footage) "
                            "as data.target")
        return batch["video"]

    @abstractmethod
    def training_set(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> TrainingSet:
        """Make the video's (pseudo-labelled) training set. ``rows`` are the rows of the current
        test batch that belong to the video: the whole video where an item is a video (tracking),
        only some of its pairs where an item is a frame pair (flow reads the rest from the data)."""

    @abstractmethod
    def loss(self, pl_module, batch: dict) -> torch.Tensor:
        """The objective minimised on one training batch."""

    # --------------------------------------------------------------------- hooks
    def on_test_start(self, trainer: pl.Trainer, pl_module) -> None:
        if not self.active:
            return
        super().on_test_start(trainer, pl_module)
        self.current: Optional[int] = None
        self.refined_videos = 0
        self.reports = []
        self.label_pictures = []

    def on_test_end(self, trainer: pl.Trainer, pl_module) -> None:
        if self.active:
            self.reports = gather_reports(self.reports)
        if self.active and self.label_pictures:
            from framework.images import log_images
            log_images(trainer, "pictures/pseudo_labels", self.label_pictures)
        super().on_test_end(trainer, pl_module)

    def teacher_predict(self, pl_module, batch: dict, task: str = "predict") -> dict:
        """``pl_module(batch, task)`` with the pre-trained weights, whatever the current weights are."""
        return functional_call(pl_module, self.original, (batch,), {"task": task}, strict=False)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not self.active:
            return
        pl_module.check_batch(batch)
        videos = self.video_ids(batch)
        size = batch_size_of(batch)
        outputs, start = [], 0
        while start < size:  # runs of rows from one video
            stop = start + 1
            while stop < size and int(videos[stop]) == int(videos[start]):
                stop += 1
            video = int(videos[start])
            rows = slice_batch(batch, start, stop)
            if video != self.current:
                self.refine(trainer, pl_module, video, rows)
            with torch.no_grad(), autocast(trainer):
                outputs.append(pl_module.predict(rows))
            start = stop
        batch[ADAPTED_OUTPUTS] = cat_outputs(outputs)

    # ---------------------------------------------------------------- refinement
    def refine(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> None:
        c = self.cfg
        began = time.perf_counter()
        if c.mode == "per_video":
            self.restore(pl_module)
        with grad_enabled():
            data = self.training_set(trainer, pl_module, video, rows)
            label_seconds = time.perf_counter() - began
            losses = [] if data.empty else self.finetune(trainer, pl_module, data)
        self.current = video
        self.refined_videos += 1
        report = {"video": video, **data.stats(), "steps": len(losses), "label_seconds": label_seconds,
                  "seconds": time.perf_counter() - began,
                  "first_loss": losses[0] if losses else float("nan"),
                  "last_loss": losses[-1] if losses else float("nan")}
        self.reports.append(report)

    def finetune(self, trainer: pl.Trainer, pl_module, data: TrainingSet) -> list[float]:
        """``steps`` AdamW steps on ``data`` with the configured schedule, accumulation and clipping;
        returns the loss of every step."""
        c = self.cfg
        params = [p for group in pl_module.adaptation_parameters().values() for p in group]
        optimizer = torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay, eps=c.eps)
        schedule = make_schedule(optimizer, c)
        scaler = grad_scaler(trainer)
        losses = []
        for step in range(c.steps):
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for part in range(c.accumulate):
                with autocast(trainer):
                    loss = self.loss(pl_module, data.batch(step, part)) / c.accumulate
                if not torch.isfinite(loss):
                    raise UserError(f"refinement diverged at step {step}: the loss is {loss.item()}; "
                                    f"lower adaptation.lr")
                (scaler.scale(loss) if scaler is not None else loss).backward()
                total += loss.item()
            if scaler is not None:
                scaler.unscale_(optimizer)
            if c.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, c.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            schedule.step()
            losses.append(total)
        optimizer.zero_grad(set_to_none=True)
        return losses

