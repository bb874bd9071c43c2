#!/usr/bin/env python
"""Train a method: python train.py --config configs/iso/quick.yaml [--config overlay.yaml] [key.sub=value ...]

Fits on the source domain, tests on it, and writes the resolved config,
checkpoints (best and last) and test metrics into outputs/<method>/<run name>/.
``resume=true`` continues the newest run of this config from its last checkpoint.
"""
from __future__ import annotations

import shlex
import sys

import pytorch_lightning as pl
from omegaconf import OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint

from framework.cli import apply_threads, build_trainer, run_main, shared_run_dir
from framework.config import load_config, parse_args
from framework.io import absolute, write_json, write_text
from framework.loggers import build_loggers
from framework.methods import build_module, get_method, schema_for
from framework.runs import BEST, CHECKPOINTS, LAST, new_run_dir, resume_target


def train(argv: list[str]) -> int:
    files, overrides = parse_args(argv, "Train a method on its source domain.")
    cfg = load_config(files, overrides, schema_for)
    apply_threads(cfg)
    spec = get_method(cfg.method)
    resume_dir, resume_ckpt = resume_target(cfg)
    run_dir = shared_run_dir(lambda: resume_dir or new_run_dir(cfg))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    datamodule = spec.datamodule(cfg, "source")
    module = build_module(spec, cfg)
    checkpoints = ModelCheckpoint(
        dirpath=str(run_dir / CHECKPOINTS), filename=BEST.removesuffix(".ckpt"), monitor=cfg.checkpoint.monitor,
        mode=cfg.checkpoint.mode, save_top_k=1, save_last=False, every_n_epochs=cfg.checkpoint.every_n_epochs,
        auto_insert_metric_name=False, enable_version_counter=False)
    # Lightning's save_last=True only rewrites last.ckpt when the monitored metric improves, so an
    # unmonitored checkpoint of its own keeps last.ckpt at the latest epoch (what resume=true needs).
    latest = ModelCheckpoint(
        dirpath=str(run_dir / CHECKPOINTS), filename=LAST.removesuffix(".ckpt"), monitor=None, save_top_k=1,
        every_n_epochs=cfg.checkpoint.every_n_epochs, auto_insert_metric_name=False, enable_version_counter=False)
    callbacks = [checkpoints, latest]
    if cfg.pictures.enabled and spec.pictures is not None:
        callbacks.append(spec.pictures(cfg))
    trainer = build_trainer(cfg, run_dir, build_loggers(cfg, run_dir), callbacks,
                            spec.module.ddp_find_unused_parameters)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
        print(f"run folder: {run_dir}" + (f" (resuming from {resume_ckpt})" if resume_ckpt else ""))

    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_ckpt) if resume_ckpt else None,
                    weights_only=True)
    except SystemExit:  # Lightning's graceful shutdown after Ctrl-C
        if trainer.interrupted and trainer.is_global_zero:
            again = " ".join(shlex.quote(a) for a in argv if not a.startswith("resume="))
            print(f"interrupted in epoch {trainer.current_epoch}; continue from the last saved epoch with: "
                  f"python train.py {again} resume=true", file=sys.stderr)
        raise
    # read both paths now: trainer.test(ckpt_path=best) restores the callbacks' state as saved in best.ckpt
    best, last = checkpoints.best_model_path or None, latest.best_model_path or None
    results = trainer.test(module, datamodule=datamodule, ckpt_path=best, weights_only=True, verbose=False)
    if trainer.is_global_zero:
        metrics = {k.split("/", 1)[1]: float(v) for k, v in (results[0] if results else {}).items()}
        write_json(run_dir / "metrics.json", {
            "method": cfg.method, "run": absolute(run_dir), "test_domain": "source",
            "best_checkpoint": absolute(best), "last_checkpoint": absolute(last),
            "test": metrics})
        print("source-domain test: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(run_main(train))
