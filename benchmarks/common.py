"""What the benchmark scripts share: training a model with train.py in a subprocess (reusing a
previous run's checkpoint when asked), the refinement gain's runs over seeds and variants side by
side, and the means and spreads the summaries are made of."""
from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

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


def report_mean(items: list[dict], key: str) -> list[float]:
    """``[mean of key]`` over the refinement reports of every video in ``items`` (one run per seed),
    NaN left out; ``[]`` where no report has it (so the summary leaves the cell empty)."""
    values = [rep[key] for r in items for rep in r["reports"] if key in rep and rep[key] == rep[key]]
    return [statistics.fmean(values)] if values else []


def improved_share(items: list[dict], base: list[dict], key: str) -> list[float]:
    """Per seed, % of videos whose per-video error ``key`` is lower than in the ``base`` run."""
    return [100 * statistics.fmean(float(r[key][v] < b[key][v]) for v in b[key]) for r, b in zip(items, base)]


def run_variants(evaluate: Callable[..., dict], variants: dict[str, Optional[dict]], args: argparse.Namespace,
                 ckpt: Path, line: Callable[[dict], str]) -> tuple[dict[str, list[dict]], list[float]]:
    """``evaluate(seed, ckpt, variants[v], overrides)`` for every seed and chosen variant, ``before``
    (no refinement) always included as the reference: the runs of each variant (each with its
    ``time_ratio`` to ``before`` of the same seed) and the plain seconds per video of each seed."""
    import torch

    order = ["before"] + [v for v in args.variants if v != "before"]
    jobs = [(seed, variant) for seed in args.seeds for variant in order]
    runs: dict[str, list[dict]] = {v: [] for v in order}
    plain = []
    # one torch thread per job; --jobs N runs N of them side by side (times then share the machine)
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = {job: pool.submit(evaluate, job[0], ckpt, variants[job[1]], args.overrides) for job in jobs}
        for seed, variant in jobs:
            result = futures[(seed, variant)].result()
            print(f"seed {seed} {variant:>20}: {line(result)}, {result['seconds']:.1f} s", flush=True)
            if variant == "before":
                plain.append(result["seconds"] / result["videos"])
            result["time_ratio"] = result["seconds"] / futures[(seed, "before")].result()["seconds"]
            runs[variant].append(result)
    return runs, plain


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


def test_target(method: str, configs: list[str], seed: int, ckpt: Path, refinement: Optional[dict],
                overrides: list[str], breakdown: Optional[Callable[[Any, Any], Any]] = None
                ) -> tuple[dict[str, float], float, list[dict], Any]:
    """Test ``ckpt`` on one seed's target data, with the method's refinement callback (its config
    section updated by ``refinement``) or without it (None). Returns the test metrics (stage prefix
    dropped), the seconds ``trainer.test`` took, the per-video refinement reports and what
    ``breakdown(test_metrics, datamodule)`` made of the module's test metric collection (e.g.
    per-video values; None without ``breakdown``)."""
    import pytorch_lightning as pl

    class ReadTestMetrics(pl.Callback):
        """Reads the test metrics at the end of the test epoch: Lightning runs the callbacks' hook
        before the module's, which logs and resets them."""

        value: Any = None

        def on_test_epoch_end(self, trainer, pl_module) -> None:
            self.value = breakdown(pl_module.test_metrics, trainer.datamodule)

    from framework.methods import get_method, load_module

    cfg = load_config(configs, [f"data.seed={seed}"] + overrides, schema_for)
    spec = get_method(method)
    datamodule = spec.datamodule(cfg, "target")
    pl.seed_everything(seed, verbose=False)
    module = load_module(spec, cfg, ckpt)
    callbacks = []
    if refinement is not None:
        from omegaconf import OmegaConf
        shared = {k: v for k, v in (("seed", seed), ("pictures", 0)) if k in cfg.adaptation}
        for key, value in {**shared, **refinement}.items():  # keys below adaptation, dotted
            OmegaConf.update(cfg, f"adaptation.{key}", value, merge=True)  # a typed section takes a dict merged
        callbacks.append(spec.adaptation(cfg))
    reader = ReadTestMetrics()
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=callbacks + ([reader] if breakdown is not None else []))
    datamodule.setup("test")
    start = time.perf_counter()
    metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    seconds = time.perf_counter() - start
    reports = callbacks[0].summary().get("videos", []) if callbacks else []
    return {k.split("/", 1)[1]: float(v) for k, v in metrics.items()}, seconds, reports, reader.value

