"""Pictures of the first few validation / test samples, for any method.

A subclass says how to take samples out of a step's outputs and batch
(``extract``) and how to draw one (``render``); this base collects them on
global rank zero, logs them through :func:`framework.images.log_images` under
``pictures/val`` at every validation epoch end (not the sanity check) and
``pictures/test{tag}`` at test end, and keeps the last test pictures in
``test_images`` so adapt.py can put before/after side by side. What a subclass's ``reference``
takes from a sample in the first test pass (e.g. a colour scale) is handed to ``render`` in every
later test pass, so the before and after pictures of a sample are drawn on one scale.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn

from framework.errors import UserError
from framework.images import log_images


def to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


class SamplePictures(pl.Callback, ABC):
    def __init__(self, num_samples: int = 4, size: int = 256, tag: str = ""):
        super().__init__()
        if num_samples < 0:
            raise UserError(f"pictures.num_samples must be >= 0, got {num_samples}")
        if size < 64:
            raise UserError(f"pictures.size must be at least 64 pixels, got {size}")
        self.num_samples = num_samples
        self.size = size
        self.tag = tag
        self.samples: list[Any] = []
        self.val_images: list[np.ndarray] = []
        self.test_images: list[np.ndarray] = []
        self.references: Optional[list[Any]] = None  # per sample, from the first test pass
        self._warned = False

    @abstractmethod
    def extract(self, outputs: Any, batch: Any, take: int) -> Optional[list[Any]]:
        """Up to ``take`` samples (numpy) from one step, or None when the step holds nothing drawable."""

    @abstractmethod
    def render(self, pl_module: pl.LightningModule, sample: Any) -> np.ndarray:
        """One RGB uint8 picture of a sample; a subclass whose ``reference`` keeps something takes it as a third
        argument (it is passed only when there is one)."""

    def reference(self, sample: Any) -> Any:
        """What the first test pass fixes for this sample's later pictures (e.g. a colour scale); None: nothing."""
        return None

    def caption(self, i: int, sample: Any) -> str:
        return f"sample {i}"

    # ---------------------------------------------------------------- collect
    def _collect(self, trainer: pl.Trainer, outputs: Any, batch: Any) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or len(self.samples) >= self.num_samples:
            return
        samples = self.extract(outputs, batch, self.num_samples - len(self.samples))
        if samples is None:
            if not self._warned:
                rank_zero_warn(f"{type(self).__name__}: the step returned nothing it can draw; no pictures")
                self._warned = True
            return
        self.samples.extend(samples)

    def _log(self, trainer: pl.Trainer, pl_module: pl.LightningModule, key: str,
             references: Optional[list[Any]] = None) -> list[np.ndarray]:
        references = list(references or [])[:len(self.samples)]
        references += [None] * (len(self.samples) - len(references))
        images = [self.render(pl_module, s) if r is None else self.render(pl_module, s, r)
                  for s, r in zip(self.samples, references)]
        log_images(trainer, key, images, captions=[self.caption(i, s) for i, s in enumerate(self.samples)])
        self.samples = []
        return images

    # ------------------------------------------------------------- validation
    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.samples = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self.samples:
            return
        self.val_images = self._log(trainer, pl_module, "pictures/val")

    # ------------------------------------------------------------------- test
    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self.samples = []
        self.test_images = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero or not self.samples:
            return
        if self.references is None:
            self.references = [self.reference(s) for s in self.samples]
        self.test_images = self._log(trainer, pl_module, f"pictures/test{self.tag}", self.references)
