"""Experiment loggers from config: csv, tensorboard, wandb (offline unless logged in)."""
from __future__ import annotations

import netrc
import os
from pathlib import Path

from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

from framework.config import to_plain
from framework.errors import UserError

KINDS = ("csv", "tensorboard", "wandb", "none")


def wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


def build_loggers(cfg, run_dir: Path, name: str = "") -> list[Logger]:
    loggers: list[Logger] = []
    for kind in cfg.logger.kinds:
        if kind not in KINDS:
            raise UserError(f"logger.kinds: unknown logger {kind!r}; choose from {list(KINDS)}")
        if kind == "csv":
            loggers.append(CSVLogger(save_dir=str(run_dir), name="logs", version=name or None))
        elif kind == "tensorboard":
            loggers.append(TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version=name or None))
        elif kind == "wandb":
            w = cfg.logger.wandb
            mode = w.mode
            if mode == "auto":
                mode = os.environ.get("WANDB_MODE") or ("online" if wandb_logged_in() else "offline")
            if mode not in ("online", "offline", "disabled"):
                raise UserError(f"logger.wandb.mode: must be one of auto, online, offline, disabled, got {mode!r}")
            loggers.append(WandbLogger(project=w.project, entity=w.entity, save_dir=str(run_dir),
                                       name=f"{cfg.run_name}{'-' + name if name else ''}", mode=mode,
                                       tags=list(w.tags), config=to_plain(cfg)))
    return loggers
