"""Per-video test-time refinement, the loop of "Refining Pre-Trained Motion Models" shared by
the flow (RAFT) and tracking (PIPs) methods.

Before the first test row of a video is scored, the callback makes a training set for that video
(pseudo-labels from the frozen pre-trained weights, or just frames for the self-supervised
baselines) and fine-tunes the module on it for ``steps`` optimiser steps; the video is then
predicted with the refined weights. ``per_video`` mode resets to the pre-trained weights before
every video; ``online`` carries the weights from one video to the next (each video gets its own
optimiser and schedule). The teacher is always the pre-trained weights, called functionally on
the snapshot (``WeightSnapshot``), so no second copy of the network is needed.
"""
from __future__ import annotations

import time
from abc import abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch

from callbacks.per_video import PerVideoCallback
from callbacks.test_time import autocast, grad_enabled, grad_scaler
from callbacks.weight_snapshot import WeightSnapshot
from framework.checks import OneOf, at_least, check, fraction, positive
from framework.config import dataclass_from
from framework.optimisation import SCHEDULES, make_optimiser, make_schedule, minimise
from lightning_modules.capabilities import TeacherRefinement

MODES = ("per_video", "online")


@dataclass
class FineTuneConfig:
    """``adaptation.finetune``: the optimiser and its schedule for one video's fine-tuning."""

    steps: int = 1000  # optimiser steps per video
    batch_size: int = 12
    accumulate: int = 1  # gradient accumulation: samples per step = batch_size * accumulate
    lr: float = 1e-4
    weight_decay: float = 1e-4
    eps: float = 1e-8
    schedule: str = "onecycle"  # onecycle (linear, pct_start) | cosine | constant
    pct_start: float = 0.1
    grad_clip: Optional[float] = 5.0
    iters: Optional[int] = None  # the network's refinement iterations while fine-tuning (None: its test_iters)


def validate_finetune_config(c: FineTuneConfig, key: str = "adaptation.finetune") -> None:
    check(c, key, schedule=OneOf(SCHEDULES), steps=at_least(1), batch_size=at_least(1), accumulate=at_least(1),
          lr=positive(), pct_start=fraction(open_low=True, open_high=True), iters=at_least(1, optional=True))


@dataclass
class RefinementConfig:
    """``adaptation``: what every per-video refinement shares; a method's config adds its
    ``objective`` and its ``labels`` and ``augment`` sections."""

    mode: str = "per_video"  # per_video | online
    seed: int = 0
    pictures: int = 2  # videos whose pseudo-labels are drawn in the logger
    finetune: FineTuneConfig = field(default_factory=FineTuneConfig)


class TrainingSet:
    """What one video's fine-tuning draws from: ``batch(step, part)`` is a dict of tensors (the
    ``part``-th accumulation slice of step ``step``), a pure function of its arguments."""

    @abstractmethod
    def batch(self, step: int, part: int) -> dict[str, torch.Tensor]:
        ...

    def stats(self) -> dict[str, float]:
        return {}

    @property
    def label_count(self) -> Optional[int]:
        """Pseudo-labels made (pixels, tracks); None where the objective needs none. A video with fewer
        than ``adaptation.labels.min_labels`` is left as it is."""
        cfg = getattr(self, "cfg", None)
        if cfg is None or cfg.objective != "pseudo_labels":
            return None
        return self.labels_made()

    def labels_made(self) -> int:
        return 0


class VideoRefinement(PerVideoCallback):
    """A subclass names its config dataclass and validator; the config may come as a plain dict."""

    requires = TeacherRefinement
    config_class: type = RefinementConfig
    validate: Callable[[Any], None] = staticmethod(lambda cfg: None)
    # what to change when no video got labels, for the line under the before/after table
    loosen: str = "loosen the label checks"

    def __init__(self, cfg: Any):
        super().__init__()
        cfg = dataclass_from(self.config_class, cfg, "adaptation")
        check(cfg, "adaptation", mode=OneOf(MODES), pictures=at_least(0))
        validate_finetune_config(cfg.finetune)
        self.validate(cfg)
        self.cfg = cfg
        self.picture_tag = "pictures/pseudo_labels"

    def settings(self) -> dict:
        return asdict(self.cfg)

    # ------------------------------------------------------------ method specific
    @abstractmethod
    def training_set(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> TrainingSet:
        """Make the video's (pseudo-labelled) training set from its rows (see ``prepare_video``)."""

    @abstractmethod
    def loss(self, pl_module, batch: dict) -> torch.Tensor:
        """The objective minimised on one training batch."""

    def notes(self) -> list[str]:
        idle = [r["video"] for r in self.reports if r["steps"] == 0]
        if not idle:
            return []
        return [f"{len(idle)} of {len(self.reports)} videos not adapted: fewer than adaptation.labels.min_labels="
                f"{self.cfg.labels.min_labels} pseudo-labels passed the checks; {self.loosen} or use a stronger model"]

    # --------------------------------------------------------------------- hooks
    def on_test_start(self, trainer: pl.Trainer, pl_module) -> None:
        if not self.active:
            return
        super().on_test_start(trainer, pl_module)
        self.snapshot = WeightSnapshot(pl_module)

    def on_test_end(self, trainer: pl.Trainer, pl_module) -> None:
        super().on_test_end(trainer, pl_module)
        if self.active:  # leave the in-memory module as it was loaded: adaptation is per test run
            self.snapshot.restore(pl_module)

    def teacher(self, pl_module, batch: dict) -> dict:
        """The teacher's prediction (the pre-trained weights), whatever the current weights are."""
        return self.snapshot.call(pl_module, pl_module.teacher_prediction, batch)

    # ---------------------------------------------------------------- refinement
    def prepare_video(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> dict[str, Any]:
        began = time.perf_counter()
        if self.cfg.mode == "per_video":
            self.snapshot.restore(pl_module)
        with grad_enabled():
            data = self.training_set(trainer, pl_module, video, rows)
            label_seconds = time.perf_counter() - began
            count = data.label_count
            enough = count is None or count >= self.cfg.labels.min_labels
            losses = self.finetune(trainer, pl_module, data) if enough else []
        return {**data.stats(), "steps": len(losses), "label_seconds": label_seconds,
                "first_loss": losses[0] if losses else float("nan"),
                "last_loss": losses[-1] if losses else float("nan")}

    def finetune(self, trainer: pl.Trainer, pl_module, data: TrainingSet) -> list[float]:
        """``steps`` AdamW steps on ``data`` with the configured schedule, accumulation and clipping;
        returns the loss of every step."""
        c = self.cfg.finetune
        params = [p for group in pl_module.adaptation_parameters().values() for p in group]
        optimiser = make_optimiser("adamw", params, c.lr, c.weight_decay, c.eps)
        schedule = make_schedule(c.schedule, optimiser, c.steps, c.lr, c.pct_start)

        def loss_of(step: int, part: int) -> torch.Tensor:
            with autocast(trainer):
                return self.loss(pl_module, data.batch(step, part))

        return minimise(loss_of, params, optimiser, c.steps, accumulate=c.accumulate, schedule=schedule,
                        scaler=grad_scaler(trainer), grad_clip=c.grad_clip, desc="fine-tuning")
