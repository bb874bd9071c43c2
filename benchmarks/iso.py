#!/usr/bin/env python
"""ISO on the synthetic lab -> wild shift: what each inference mode gains and costs.

For every seed: train the FSL-only baseline and the joint FSL+SSL model on the
source domain (train.py), then test both on the target domain, the joint model
also with vanilla (parallel and sequential), online and online-skip adaptation.
Reports PCK, AUC, MPJPE, PA-MPJPE (mean and spread over seeds) and the time
per sample of each mode relative to plain inference of the same model, all
measured in this one run. Results: benchmarks/results/iso.{json,md}.

    python benchmarks/iso.py                       # 3 seeds, benchmarks/iso.yaml settings
    python benchmarks/iso.py --seeds 0 --work /tmp/iso-bench trainer.max_epochs=2
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402

from framework.config import load_config, to_plain  # noqa: E402
from framework.io import write_json, write_text  # noqa: E402
from framework.methods import get_method, load_module, schema_for  # noqa: E402
from benchmarks.common import spread, train_run  # noqa: E402

CONFIGS = [str(ROOT / "configs/iso/quick.yaml"), str(ROOT / "benchmarks/iso.yaml")]
METRICS = ("pck", "auc", "mpjpe", "pa_mpjpe")
# mode -> (trained model, adaptation settings or None, config overrides of that mode)
MODES = {
    "baseline": ("baseline", None, []),
    "joint": ("joint", None, []),
    "vanilla": ("joint", {"mode": "vanilla", "steps": 10, "parallel": True}, []),
    "vanilla-sequential": ("joint", {"mode": "vanilla", "steps": 10, "parallel": False}, []),
    # the paper's cheaper vanilla: one step with a 10x learning rate
    "vanilla-lr": ("joint", {"mode": "vanilla", "steps": 1, "lr": 2e-4, "parallel": True}, []),
    "online": ("joint", {"mode": "online", "steps": 1, "skip": 1}, []),
    "online-skip10": ("joint", {"mode": "online", "steps": 1, "skip": 10}, []),
    # ablation: the geometric cycle alone, without the random-projection adversary
    "online-no-adversary": ("joint", {"mode": "online", "steps": 1, "skip": 1}, ["model.adversarial_weight=0"]),
}
MODELS = {"baseline": ["model.ssl=none"], "joint": []}


def train(seed: int, model: str, work: Path, overrides: list[str], reuse: bool) -> Path:
    return train_run(CONFIGS, f"{model}-s{seed}", work, [f"seed={seed}", f"data.seed={seed}"] + MODELS[model] + overrides,
                     reuse)


def evaluate(seed: int, ckpt: Path, adaptation: dict | None, overrides: list[str]) -> tuple[dict, float]:
    from callbacks.per_instance import PerInstanceAdaptation, PerInstanceAdaptationConfig

    cfg = load_config(CONFIGS, [f"seed={seed}", f"data.seed={seed}"] + overrides, schema_for)
    spec = get_method("iso")
    datamodule = spec.datamodule(cfg, "target")
    pl.seed_everything(seed, verbose=False)
    module = load_module(spec, cfg, ckpt)
    callbacks = []
    if adaptation is not None:
        settings = {**to_plain(cfg.adaptation), **adaptation}
        callbacks.append(PerInstanceAdaptation(PerInstanceAdaptationConfig(**settings)))
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    datamodule.setup("test")
    samples = len(datamodule.domain_dataset("target", "test"))
    start = time.perf_counter()
    result = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    per_sample = (time.perf_counter() - start) / samples
    return {k.split("/", 1)[1]: float(v) for k, v in result.items()}, per_sample


def summarise(runs: dict[str, list[dict]]) -> dict:
    out = {}
    for mode, items in runs.items():
        out[mode] = {key: spread([r[key] for r in items]) for key in METRICS + ("time_ratio",)}
    return out


def markdown(summary: dict, meta: dict) -> str:
    lines = [f"# ISO on the synthetic lab -> wild shift ({meta['seeds']} seeds)", "",
             f"Command: `{meta['command']}`  ", f"Settings: {meta['settings']}", "",
             "| mode | PCK (%) | AUC (%) | MPJPE (mm) | PA-MPJPE (mm) | time / sample vs plain |",
             "|---|---|---|---|---|---|"]
    for mode, row in summary.items():
        cells = [f"{row[k]['mean']:.1f} ± {row[k]['std']:.1f}" for k in METRICS]
        cells.append(f"{row['time_ratio']['mean']:.2f}x")
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    joint, online = summary["joint"], summary["online"]

    def change(key: str) -> str:
        before, after = joint[key]["mean"], online[key]["mean"]
        return f"{key} {before:.1f} -> {after:.1f} ({100 * (after - before) / before:+.1f}%)"

    lines += ["", "Online ISO against the same joint model without adaptation: "
              + ", ".join(change(k) for k in METRICS) + ".",
              "Times are ratios to plain inference of the joint model measured in the same run "
              f"(plain: {meta['plain_ms']:.3f} ms per sample on {meta['device']})."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", default=str(ROOT / "outputs/benchmarks"), help="where the trained models go")
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results"))
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--reuse", action="store_true", help="evaluate models a previous run trained in --work")
    parser.add_argument("overrides", nargs="*", help="config overrides for training and testing")
    args = parser.parse_args()
    work = Path(args.work)
    runs: dict[str, list[dict]] = {m: [] for m in args.modes}
    plain_times = []
    for seed in args.seeds:
        ckpts = {m: train(seed, m, work, args.overrides, args.reuse) for m in MODELS}
        plain = None
        for mode in ["joint"] + [m for m in args.modes if m != "joint"]:
            model, adaptation, mode_overrides = MODES[mode]
            metrics, per_sample = evaluate(seed, ckpts[model], adaptation, args.overrides + mode_overrides)
            if mode == "joint":
                plain = per_sample
                plain_times.append(per_sample)
            if mode in runs:
                runs[mode].append({**metrics, "time_ratio": per_sample / plain, "seconds_per_sample": per_sample})
            print(f"seed {seed} {mode:>20}: " + ", ".join(f"{k} {metrics[k]:.1f}" for k in METRICS)
                  + f", {per_sample * 1000:.2f} ms/sample", flush=True)
    summary = summarise(runs)
    cfg = load_config(CONFIGS, args.overrides, schema_for)
    meta = {"seeds": len(args.seeds), "command": " ".join(["python", "benchmarks/iso.py"] + sys.argv[1:]),
            "settings": f"model width {cfg.model.width}, {cfg.data.train_length} training samples, "
                        f"{cfg.trainer.max_epochs} epochs, {cfg.data.test_length} target samples, "
                        f"adaptation lr {cfg.adaptation.lr}, {cfg.adaptation.copies} copies",
            "plain_ms": 1000 * statistics.fmean(plain_times), "device": "CPU"}
    results = Path(args.results)
    write_json(results / "iso.json", {"meta": meta, "summary": summary, "runs": runs})
    write_text(results / "iso.md", markdown(summary, meta))
    print(markdown(summary, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
