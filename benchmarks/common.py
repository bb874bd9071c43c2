"""What the benchmark scripts share: training a model with train.py in a subprocess (reusing a
previous run's checkpoint when asked) and mean / spread over seeds."""
from __future__ import annotations

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
