#!/usr/bin/env python
"""RAFT pseudo-label refinement on the synthetic clean -> final shift, and RAFT's speed and memory.

``gain``: train one RAFT-small on the source domain (train.py, benchmarks/raft.yaml), then for
every seed test it on that seed's target videos as trained, after pseudo-label refinement, after
each photometric baseline and with each filter alone (the paper's Table V ablation). Reports
mean EPE and 1 px accuracy (mean and spread over seeds), the change against no refinement, the
share of videos whose EPE improved, the mean pseudo-label share and the refinement time per
video as a ratio to plain inference of that video. Results: benchmarks/results/raft_gain.{json,md}.

``speed``: training-step and inference time of RAFT large and small at one frame size, and
peak memory of the all-pairs vs on-the-fly correlation at a large frame size (each measured in
a fresh process). Results: benchmarks/results/raft_speed.{json,md}.

    python benchmarks/raft.py gain                 # 3 seeds
    python benchmarks/raft.py gain --seeds 0 --variants before pseudo_labels -- adaptation.finetune.steps=20
    python benchmarks/raft.py speed
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from framework.config import load_config  # noqa: E402
from framework.io import write_json, write_text  # noqa: E402
from framework.methods import schema_for  # noqa: E402
from benchmarks.common import (add_gain_parser, improved_share, report_mean, run_variants,  # noqa: E402
                               spread, test_target, train_run)

CONFIGS = [str(ROOT / "configs/raft/quick.yaml"), str(ROOT / "benchmarks/raft.yaml")]
# variant -> refinement settings on top of the config's adaptation section (None: no refinement)
VARIANTS = {
    "before": None,
    "pseudo_labels": {},
    "colour_only": {"labels.filters": ["colour"]},
    "cycle_only": {"labels.filters": ["cycle"]},
    "photometric": {"objective": "photometric"},
    "photometric_smooth": {"objective": "photometric_smooth"},
    "photometric_edge": {"objective": "photometric_edge"},
}


# --------------------------------------------------------------------------- gain
def train_source(work: Path, overrides: list[str], reuse: bool) -> Path:
    return train_run(CONFIGS, "source", work, overrides, reuse)


def video_epe(test_metrics, datamodule) -> dict:
    """{video: mean EPE of its frame pairs} from the per-sample EPE the test metric holds (equal-sized
    frames: the pair mean is the pixel mean)."""
    from metrics.flow import per_video

    spans = datamodule.domain_dataset("target", "test").videos()
    video_of = {i: v for v, span in spans.items() for i in span.indices}
    index, epe, _ = test_metrics["epe"].sample_values()
    return per_video(epe, index, video_of)


def evaluate(seed: int, ckpt: Path, refinement: dict | None, overrides: list[str]) -> dict:
    """Target test of one seed's videos: per-video EPE, overall metrics, seconds, refinement reports."""
    metrics, seconds, reports, per_video = test_target("raft", CONFIGS, seed, ckpt, refinement, overrides,
                                                       breakdown=video_epe)
    return {"metrics": metrics, "video_epe": {str(v): e for v, e in per_video.items()},
            "seconds": seconds, "videos": len(per_video), "reports": reports}


def summarise(runs: dict[str, list[dict]]) -> dict:
    out = {}
    for variant, items in runs.items():
        epe = [r["metrics"]["epe"] for r in items]
        px1 = [r["metrics"]["1px"] for r in items]
        row = {"epe": epe, "1px": px1, "time_ratio": [r["time_ratio"] for r in items]}
        if variant != "before":
            base = runs["before"]
            row["epe_change_pct"] = [100 * (a - b["metrics"]["epe"]) / b["metrics"]["epe"] for a, b in zip(epe, base)]
            row["improved_videos_pct"] = improved_share(items, base, "video_epe")
            row["label_share_pct"] = [100 * v for v in report_mean(items, "label_share")]
            for key in ("label_epe", "teacher_epe"):  # how accurate the kept labels are, against all teacher pixels
                row[key] = report_mean(items, key)
        out[variant] = {k: spread(v) for k, v in row.items() if v}
    return out


def gain_markdown(summary: dict, meta: dict) -> str:
    lines = [f"# RAFT pseudo-label refinement, synthetic clean -> final ({meta['seeds']} seeds)", "",
             f"Command: `{meta['command']}`  ", f"Settings: {meta['settings']}", "",
             "| variant | EPE (px) | 1px (%) | EPE change | videos improved | pseudo-labels | label EPE / teacher EPE "
             "(px) | time / video vs plain |", "|---|---|---|---|---|---|---|---|"]

    def cell(row: dict, key: str, fmt: str, unit: str = "") -> str:
        if key not in row:
            return "-"
        return f"{row[key]['mean']:{fmt}} ± {row[key]['std']:{fmt}}{unit}"

    def labels(row: dict) -> str:
        if "label_epe" not in row:
            return "-"
        return f"{row['label_epe']['mean']:.2f} / {row['teacher_epe']['mean']:.2f}"

    for variant, row in summary.items():
        lines.append(f"| {variant} | {cell(row, 'epe', '.3f')} | {cell(row, '1px', '.1f')} | "
                     f"{cell(row, 'epe_change_pct', '+.1f', ' %')} | {cell(row, 'improved_videos_pct', '.0f', ' %')} | "
                     f"{cell(row, 'label_share_pct', '.1f', ' %')} | {labels(row)} | {row['time_ratio']['mean']:.0f}x |")
    lines += ["", "EPE change and videos improved are against `before` (the source-trained model on the same "
              "videos). Label EPE / teacher EPE: the teacher's error on the kept labels and on all pixels of the labelled "
              "pairs (the synthetic ground truth is read for this report only). Times: refinement plus prediction of a video over plain prediction of it, same run "
              f"(plain: {meta['plain_ms_per_video']:.0f} ms per video on {meta['device']})."]
    return "\n".join(lines) + "\n"


def gain(args) -> int:
    ckpt = Path(args.ckpt) if args.ckpt else train_source(Path(args.work), args.overrides, args.reuse)
    runs, plain = run_variants(evaluate, VARIANTS, args, ckpt,
                               lambda r: f"EPE {r['metrics']['epe']:.3f}, 1px {r['metrics']['1px']:.1f}")
    summary = summarise(runs)
    cfg = load_config(CONFIGS, args.overrides, schema_for)
    a = cfg.adaptation
    meta = {"seeds": len(args.seeds), "command": " ".join(["python", "benchmarks/raft.py"] + sys.argv[1:]),
            "checkpoint": str(ckpt), "device": "CPU", "plain_ms_per_video": 1000 * statistics.fmean(plain),
            "settings": (f"checkpoint {ckpt}" if args.ckpt else
                         f"RAFT-small trained on {cfg.data.train_videos} source videos for {cfg.trainer.max_epochs} "
                         f"epochs") + f"; {cfg.data.test_videos} target videos of {cfg.data.target.synthetic.frames} frames "
                        f"per seed; refinement {a.finetune.steps} steps, batch {a.finetune.batch_size}, lr {a.finetune.lr}, "
                        f"stride {a.labels.stride}, alpha1 {a.labels.alpha1}, alpha2 {a.labels.alpha2}, colour threshold "
                        f"{a.labels.colour_threshold}"}
    results = Path(args.results)
    write_json(results / "raft_gain.json", {"meta": meta, "summary": summary, "runs": runs})
    write_text(results / "raft_gain.md", gain_markdown(summary, meta))
    print(gain_markdown(summary, meta))
    return 0


# -------------------------------------------------------------------------- speed
def _measure(kind: str, small: bool, corr_mode: str, height: int, width: int, repeats: int) -> dict:
    """Runs in a fresh process: times (s) or peak resident memory (MiB) of one configuration."""
    from nets.raft import RAFT

    torch.manual_seed(0)
    net = RAFT(small=small, corr_mode=corr_mode)
    image1 = torch.rand(1, 3, height, width) * 255
    image2 = torch.rand(1, 3, height, width) * 255
    iters = 12
    if kind == "train":
        net.train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def run():
            optimizer.zero_grad()
            loss = sum(p.abs().mean() for p in net(image1, image2, iters=iters))
            loss.backward()
            optimizer.step()
    else:
        net.eval()

        def run():
            with torch.no_grad():
                net(image1, image2, iters=iters, test_mode=True)
    run()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        run()
    seconds = (time.perf_counter() - start) / repeats
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"seconds": seconds, "peak_mib": peak_mib}


def _in_fresh_process(**kwargs) -> dict:
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); from benchmarks.raft import _measure; "
            f"print(json.dumps(_measure(**{kwargs!r})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def speed(args) -> int:
    h, w = args.size
    rows = []
    for small in (False, True):
        name = "small" if small else "large"
        infer = _in_fresh_process(kind="infer", small=small, corr_mode="all_pairs", height=h, width=w,
                                  repeats=args.repeats)
        train = _in_fresh_process(kind="train", small=small, corr_mode="all_pairs", height=h, width=w,
                                  repeats=args.repeats)
        rows.append({"model": name, "size": [h, w], "infer_s": infer["seconds"], "train_step_s": train["seconds"],
                     "train_vs_infer": train["seconds"] / infer["seconds"]})
        print(rows[-1], flush=True)
    big_h, big_w = args.large_size
    memory = []
    for mode in ("all_pairs", "on_the_fly"):
        m = _in_fresh_process(kind="infer", small=False, corr_mode=mode, height=big_h, width=big_w, repeats=1)
        memory.append({"corr_mode": mode, "size": [big_h, big_w], "peak_mib": m["peak_mib"], "infer_s": m["seconds"]})
        print(memory[-1], flush=True)
    meta = {"command": " ".join(["python", "benchmarks/raft.py"] + sys.argv[1:]), "device": "CPU",
            "threads": torch.get_num_threads(), "iters": 12}
    results = Path(args.results)
    write_json(results / "raft_speed.json", {"meta": meta, "speed": rows, "memory": memory})
    lines = [f"# RAFT speed and correlation memory ({meta['device']}, {meta['threads']} threads, 12 iterations)", "",
             f"Command: `{meta['command']}`", "",
             "| model | frame | inference (s) | training step (s) | training / inference |", "|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['size'][0]}x{r['size'][1]} | {r['infer_s']:.3f} | {r['train_step_s']:.3f} | "
              f"{r['train_vs_infer']:.1f}x |" for r in rows]
    lines += ["", "| correlation | frame | peak resident memory (MiB) | inference (s) |", "|---|---|---|---|"]
    lines += [f"| {m['corr_mode']} | {m['size'][0]}x{m['size'][1]} | {m['peak_mib']:.0f} | {m['infer_s']:.2f} |"
              for m in memory]
    lines += ["", "Training step: batch 1, summed L1 of all 12 predictions, AdamW step. Peak memory is the whole "
              "process's (weights, activations, correlation) measured in a fresh process per row.",
              "Refinement time per video relative to plain inference is in raft_gain.md."]
    write_text(results / "raft_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results"))
    sub = parser.add_subparsers(dest="part", required=True)
    add_gain_parser(sub, list(VARIANTS), "RAFT")
    s = sub.add_parser("speed", help="RAFT speed and correlation memory")
    s.add_argument("--size", type=int, nargs=2, default=[368, 496], help="frame for the timings")
    s.add_argument("--large-size", type=int, nargs=2, default=[1088, 1920], help="frame for the memory comparison")
    s.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    return gain(args) if args.part == "gain" else speed(args)


if __name__ == "__main__":
    sys.exit(main())
