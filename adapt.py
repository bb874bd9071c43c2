#!/usr/bin/env python
"""Adapt a trained method to its target domain: python adapt.py --config configs/iso/quick.yaml [ckpt=PATH] [key=value ...]

Runs Trainer.test on the target data twice, as trained and with the method's
adaptation callback, prints a before/after table and writes
adaptation_report.json into outputs/<method>/<run name>_adapt[_vN]/.
"""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import OmegaConf

from framework.cli import apply_threads, build_trainer, run_main, shared_run_dir
from framework.config import load_config, parse_args
from framework.errors import UserError
from framework.io import absolute, write_json, write_text
from framework.loggers import build_loggers
from framework.methods import build_module, get_method, load_module, schema_for
from framework.runs import new_adapt_dir, newest_checkpoint

STAGES = ("before", "after")


# a label-free "improvement" that shrinks the motion by more than this share is flagged under the table
SHRINK_WARNING = 0.25


def label_free_warnings(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """What the label-free numbers of footage say against the consistency share: a flow or track set
    driven towards zero motion is trivially consistent, so say so when it happened."""
    notes = []
    if "photometric" in before and after.get("photometric", float("-inf")) > before["photometric"]:
        notes.append(f"refinement raised the photometric error ({before['photometric']:.2f} -> "
                     f"{after['photometric']:.2f}): a higher consistency share is not a better flow here")
    for key, what in (("flow_magnitude", "mean flow magnitude"), ("track_motion", "mean track motion")):
        if key in before and before[key] > 0 and after.get(key, before[key]) < (1 - SHRINK_WARNING) * before[key]:
            notes.append(f"refinement shrank the {what} by {100 * (1 - after[key] / before[key]):.0f}% "
                         f"({before[key]:.2f} -> {after[key]:.2f} px): motion collapsing towards zero is "
                         f"trivially consistent; check the written results")
    return notes


def format_table(before: dict[str, float], after: dict[str, float]) -> str:
    rows = [("metric", "before", "after", "change")]
    for key in before:
        b, a = before[key], after.get(key, float("nan"))
        rows.append((key, f"{b:.2f}", f"{a:.2f}", f"{a - b:+.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def adapt(argv: list[str]) -> int:
    files, overrides = parse_args(argv, "Adapt a trained method to its target domain at test time.")
    cfg = load_config(files, overrides, schema_for)
    apply_threads(cfg)
    spec = get_method(cfg.method)
    # weights: ckpt=..., else the released weights the method's config names, else this config's newest run
    pretrained = ", ".join(spec.pretrained(cfg).values()) or None
    ckpt = Path(cfg.ckpt) if cfg.ckpt else (None if pretrained else newest_checkpoint(cfg))
    run_dir = shared_run_dir(lambda: new_adapt_dir(cfg))
    fresh = not run_dir.exists()
    try:
        return run(cfg, spec, ckpt, pretrained, run_dir)
    except UserError:
        # bad input found once the run had started: leave no half-made folder behind (nor push up _vN numbers)
        if fresh and run_dir.is_dir() and not (run_dir / "adaptation_report.json").exists():
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def run(cfg, spec, ckpt: Path | None, pretrained: str | None, run_dir: Path) -> int:
    datamodule = spec.datamodule(cfg, "target")
    adaptation = spec.adaptation(cfg)
    adaptation.active = False
    pictures = spec.pictures(cfg) if cfg.pictures.enabled and spec.pictures is not None else None
    writer = spec.writer(cfg, run_dir) if spec.writer is not None else None
    callbacks = [adaptation] + [c for c in (pictures, writer) if c is not None]
    trainer = build_trainer(cfg, run_dir, build_loggers(cfg, run_dir), callbacks,
                            spec.module.ddp_find_unused_parameters)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg))
        print(f"adapting {ckpt or pretrained} -> {run_dir}")

    metrics, seconds, images = {}, {}, {}
    for stage in STAGES:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        module = load_module(spec, cfg, ckpt) if ckpt is not None else build_module(spec, cfg)
        module.test_stage = f"target_{stage}"
        adaptation.active = stage == "after"
        if writer is not None:
            writer.active = stage == "after"
        if pictures is not None:
            pictures.tag = f"_{stage}"
        start = time.perf_counter()
        results = trainer.test(module, datamodule=datamodule, verbose=False)
        seconds[stage] = time.perf_counter() - start
        # a rank that was handed no test rows gets no results; the metrics were synchronised anyway
        metrics[stage] = {k.split("/", 1)[1]: float(v) for k, v in (results[0] if results else {}).items()}
        if pictures is not None:
            images[stage] = list(pictures.test_images)

    if trainer.is_global_zero:
        report = {"method": cfg.method, "run": absolute(run_dir),
                  "checkpoint": absolute(ckpt or pretrained) if Path(str(ckpt or pretrained)).expanduser().exists()
                  else str(pretrained), "before": metrics["before"],
                  "after": metrics["after"], "seconds": seconds, "adaptation": adaptation.settings()}
        summary = adaptation.summary()
        notes = adaptation.notes() + label_free_warnings(metrics["before"], metrics["after"])
        if summary:
            report["adaptation"]["summary"] = summary
        if notes:
            report["notes"] = notes
        write_json(run_dir / "adaptation_report.json", report)
        if images.get("before") and images.get("after"):
            from framework.images import before_after, log_images
            pairs = [before_after(b, a) for b, a in zip(images["before"], images["after"])]
            log_images(trainer, "pictures/before_after", pairs)
        print(format_table(metrics["before"], metrics["after"]))
        for note in notes:
            print(f"note: {note}")
        print(f"time: before {seconds['before']:.1f} s, after {seconds['after']:.1f} s")
        print(f"report: {run_dir / 'adaptation_report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(adapt))
