"""Base of the callbacks that save what the test predicts: on a user's own footage there is no
ground truth to score against, so the predictions themselves are the result."""
from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch


class OutputWriter(pl.Callback):
    """Calls ``write`` for each test batch whose outputs hold a tensor under ``key``; files go under
    ``folder`` and are listed in ``written``; ``active = False`` pauses writing (e.g. during a
    "before" pass)."""

    key: str = ""

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.folder = Path(folder).expanduser()
        self.active = True
        self.written: list[Path] = []

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        value = outputs.get(self.key) if isinstance(outputs, dict) else None
        if self.active and torch.is_tensor(value):
            self.write(outputs, batch)

    @abstractmethod
    def write(self, outputs: dict, batch: Any) -> None:
        """Save one batch's predictions (``outputs[self.key]`` is a tensor)."""


def on_footage(writer: Callable[[Path], pl.Callback], folder: str) -> Callable[[object, Path], Optional[pl.Callback]]:
    """A method's ``MethodSpec.writer``: footage has no ground truth to score, so the refined
    outputs themselves are the result and ``writer`` puts them in the run's ``folder``."""
    def make(cfg, run_dir: Path) -> Optional[pl.Callback]:
        return writer(run_dir / folder) if cfg.data.target.kind == "footage" else None
    return make
