"""What the benchmark scripts share: training a model with train.py in a subprocess (reusing a
previous run's checkpoint when asked) and mean / spread over seeds."""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from framework.config import load_config
from framework.errors import UserError
from framework.methods import schema_for
from framework.runs import newest_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def train_run(configs: list[str], run_name: str, work: Path, overrides: list[str], reuse: bool) -> Path:
    """Best checkpoint of ``train.py --config <configs> run_name=<run_name> <overrides>`` under ``work``."""
    cfg = load_config(configs, [f"run_name={run_name}", f"output_dir={work}"] + overrides, schema_for)
    if reuse:
        try:
            return newest_checkpoint(cfg)
        except UserError:
            pass
    args = [sys.executable, str(ROOT / "train.py")] + sum((["--config", c] for c in configs), [])
    args += [f"run_name={run_name}", f"output_dir={work}", "logger.kinds=[]", "pictures.enabled=false",
             "trainer.enable_progress_bar=false"] + overrides
    env = {k: v for k, v in os.environ.items() if k != "MOTION_ADAPT_RUN_DIR"}
    subprocess.run(args, check=True, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    return newest_checkpoint(cfg)


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value) and the values themselves."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": list(values)}


def add_gain_parser(sub, variants: list[str], model: str) -> argparse.ArgumentParser:
    """The ``gain`` sub-command both refinement benchmarks share (seeds, source model, variants, jobs)."""
    g = sub.add_parser("gain", help="refinement gain on the synthetic target videos")
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    g.add_argument("--work", default=str(ROOT / "outputs/benchmarks"), help="where the source model goes")
    g.add_argument("--ckpt", help=f"a trained {model} checkpoint to use instead of training one")
    g.add_argument("--reuse", action="store_true", help="use the source model a previous run trained in --work")
    g.add_argument("--variants", nargs="+", default=list(variants), choices=list(variants))
    g.add_argument("--jobs", type=int, default=1, help="evaluations run side by side, one thread each")
    g.add_argument("overrides", nargs="*", help="config overrides for training and testing (after --)")
    return g

