"""What train.py and adapt.py share: error handling, the trainer, run folders across DDP ranks."""
from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

import pytorch_lightning as pl
from pytorch_lightning.accelerators import CPUAccelerator
from pytorch_lightning.callbacks import ProgressBar
from pytorch_lightning.utilities import rank_zero_warn

from framework.config import to_plain
from framework.errors import UserError
from framework.io import AtomicCheckpointIO
from framework.progress import EpochProgressBar

RUN_DIR_ENV = "MOTION_ADAPT_RUN_DIR"


class _NotActionable(logging.Filter):
    """Drops Lightning's advertisements, which tell a user nothing about their run."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).lstrip().startswith("💡")


def quiet_lightning() -> None:
    """Silence what a user cannot act on: Lightning's tips and the deprecation notice its own pytree
    helper triggers inside torch; warnings about the user's settings stay."""
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
        logging.getLogger(name).addFilter(_NotActionable())
        for child in ("utilities.rank_zero",):
            logging.getLogger(f"{name}.{child}").addFilter(_NotActionable())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")


def run_main(body: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run a command; a UserError becomes one line on stderr and exit status 2."""
    quiet_lightning()
    try:
        return body(sys.argv[1:] if argv is None else argv) or 0
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def apply_threads(cfg) -> None:
    """Set torch's intra-op thread count from ``threads`` (before any work is done)."""
    import torch
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise UserError(f"threads: must be at least 1 (or null for torch's default), got {cfg.threads}")
        torch.set_num_threads(int(cfg.threads))
        os.environ["OMP_NUM_THREADS"] = str(cfg.threads)  # Lightning's DDP launcher sets its own count otherwise


def shared_run_dir(choose: Callable[[], Path]) -> Path:
    """The run folder, chosen once by the launching process and inherited by the
    processes Lightning's DDP launcher starts (they re-run this script)."""
    existing = os.environ.get(RUN_DIR_ENV)
    if existing:
        return Path(existing)
    run_dir = choose()
    os.environ[RUN_DIR_ENV] = str(run_dir)
    return run_dir


def build_trainer(cfg, run_dir: Path, loggers: list, callbacks: list,
                  find_unused_parameters: bool = False) -> pl.Trainer:
    kwargs = to_plain(cfg.trainer)
    if kwargs.get("strategy") == "ddp" and find_unused_parameters:
        # Methods with several optimisers (ISO: generator and discriminator) backpropagate losses that
        # each reach only part of the parameters; plain DDP stops on the first such step.
        kwargs["strategy"] = "ddp_find_unused_parameters_true"
    if kwargs.get("enable_progress_bar") is not False and not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks = [*callbacks, EpochProgressBar()]
    try:
        trainer = pl.Trainer(**kwargs, logger=loggers or False, callbacks=callbacks,
                             plugins=[AtomicCheckpointIO()], default_root_dir=str(run_dir))
    except (ValueError, TypeError) as e:  # Lightning's own checks of devices, strategy, precision ...
        raise UserError(f"trainer: {str(e).splitlines()[0]}") from None
    if "bf16" in str(kwargs.get("precision")) and isinstance(trainer.accelerator, CPUAccelerator):
        rank_zero_warn("trainer.precision=bf16-mixed on a CPU runs these models many times slower than 32-true; "
                       "it is meant for GPUs")
    return trainer

