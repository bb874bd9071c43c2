#!/usr/bin/env python
"""PIPs refinement on the synthetic source -> crowd shift, and PIPs' tracking speed.

``gain``: train one PIPs on the source domain (train.py, configs/pips/quick.yaml +
benchmarks/pips.yaml), then for every seed track that seed's target videos as trained, after
pseudo-label refinement, after the photometric and feature-constancy baselines, with randomly
selected teacher tracks instead of the cycle check (the control), and over a sweep of tau.
Reports ATE-Vis, ATE-Occ, MTE, delta_avg, survival and average Jaccard (mean and spread over
seeds), their change against no refinement, the share of videos whose ATE-Vis improved, the label
share, and the refinement time per video as a ratio to plain tracking of it.
Results: benchmarks/results/pips_gain.{json,md}.

``speed``: points x frames tracked per second for one 8-frame window and for a chained long
video, at one frame size, with the authors' network (random weights: speed does not depend on
them). Results: benchmarks/results/pips_speed.{json,md}.

    python benchmarks/pips.py gain                  # 3 seeds, all variants
    python benchmarks/pips.py gain --seeds 0 --variants before pseudo_labels -- adaptation.finetune.steps=20
    python benchmarks/pips.py speed
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks.common import (add_gain_parser, improved_share, report_mean, run_variants,  # noqa: E402
                               spread, test_target, train_run)
from framework.config import load_config  # noqa: E402
from framework.io import write_json, write_text  # noqa: E402
from framework.methods import schema_for  # noqa: E402

CONFIGS = [str(ROOT / "configs/pips/quick.yaml"), str(ROOT / "benchmarks/pips.yaml")]
METRICS = ("ate_vis", "ate_occ", "mte", "delta_avg", "survival", "avg_jaccard")
LOWER_IS_BETTER = {"ate_vis", "ate_occ", "mte"}
# px at 96x128; a CPU-trained teacher keeps no track below ~3 px (benchmarks/pips.yaml)
TAUS = (2.0, 4.0, 6.0, 8.0, 12.0)
# variant -> refinement settings on top of the config's adaptation section (None: no refinement)
VARIANTS = {
    "before": None,
    "pseudo_labels": {},
    "random_tracks": {"labels.selection": "random"},
    "photometric": {"objective": "photometric"},
    "feature": {"objective": "feature"},
    **{f"tau_{tau:g}": {"labels.tau": tau} for tau in TAUS},
}


# --------------------------------------------------------------------------- gain
def video_ate_vis(test_metrics, datamodule) -> dict:
    """{video: its ATE-Vis} from the test metric's per-video breakdown (a test item is a video)."""
    return test_metrics["ate_vis"].per_video(lambda index: index)


def evaluate(seed: int, ckpt: Path, refinement: dict | None, overrides: list[str]) -> dict:
    """Target test of one seed's videos: metrics, per-video ATE-Vis, seconds, refinement reports."""
    metrics, seconds, reports, per_video = test_target("pips", CONFIGS, seed, ckpt, refinement, overrides,
                                                       breakdown=video_ate_vis)
    return {"metrics": metrics, "video_ate_vis": {str(v): float(e) for v, e in per_video.items()},
            "seconds": seconds, "videos": len(per_video), "reports": reports}


def summarise(runs: dict[str, list[dict]]) -> dict:
    out = {}
    base = runs["before"]
    for variant, items in runs.items():
        row = {key: [r["metrics"][key] for r in items] for key in METRICS}
        row["time_ratio"] = [r["time_ratio"] for r in items]
        if variant != "before":
            for key in ("ate_vis", "ate_occ"):
                row[f"{key}_change_pct"] = [100 * (r["metrics"][key] - b["metrics"][key]) / b["metrics"][key]
                                            for r, b in zip(items, base)]
            row["improved_videos_pct"] = improved_share(items, base, "video_ate_vis")
            row["label_share_pct"] = [100 * v for v in report_mean(items, "label_share")]
            for key in ("label_ate", "teacher_ate"):  # how accurate the kept labels are, against all teacher tracks
                row[key] = report_mean(items, key)
        out[variant] = {k: spread(v) for k, v in row.items() if v}
    return out


def gain_markdown(summary: dict, meta: dict) -> str:
    lines = [f"# PIPs refinement, synthetic source -> crowd ({meta['seeds']} seeds)", "",
             f"Command: `{meta['command']}`  ", f"Settings: {meta['settings']}", "",
             "| variant | " + " | ".join(METRICS) + " | ATE-Vis change | ATE-Occ change | videos improved | "
             "labels | label ATE / teacher ATE | time / video vs plain |", "|---" * (len(METRICS) + 7) + "|"]

    def cell(row: dict, key: str, fmt: str, unit: str = "") -> str:
        return f"{row[key]['mean']:{fmt}} ± {row[key]['std']:{fmt}}{unit}" if key in row else "-"

    def labels(row: dict) -> str:
        if "teacher_ate" not in row:
            return "-"
        return (f"{row['label_ate']['mean']:.2f}" if "label_ate" in row else "none") + f" / {row['teacher_ate']['mean']:.2f}"

    for variant, row in summary.items():
        lines.append(f"| {variant} | " + " | ".join(cell(row, k, ".2f") for k in METRICS) + " | "
                     f"{cell(row, 'ate_vis_change_pct', '+.1f', ' %')} | {cell(row, 'ate_occ_change_pct', '+.1f', ' %')} | "
                     f"{cell(row, 'improved_videos_pct', '.0f', ' %')} | {cell(row, 'label_share_pct', '.1f', ' %')} | "
                     f"{labels(row)} | {row['time_ratio']['mean']:.0f}x |")
    lines += ["", "ATE/MTE in px (lower is better); delta_avg, survival, average Jaccard in % (higher is better). "
              "Changes and videos improved are against `before` (the source-trained model on the same videos); "
              "`random_tracks` fine-tunes on as many teacher tracks as the cycle check keeps, picked at random. "
              "Label ATE / teacher ATE: the teacher's error (px, frames after the query's) on the tracks kept as labels "
              "and on all it made (the synthetic ground truth is read for this report only). "
              f"Times: refinement plus tracking of a video over plain tracking of it, same run (plain: "
              f"{meta['plain_s_per_video']:.1f} s per video on {meta['device']})."]
    return "\n".join(lines) + "\n"


def gain(args) -> int:
    work = Path(args.work)
    ckpt = Path(args.ckpt) if args.ckpt else train_run(CONFIGS, "source", work, args.overrides, args.reuse)
    runs, plain = run_variants(evaluate, VARIANTS, args, ckpt,
                               lambda r: ", ".join(f"{k} {r['metrics'][k]:.2f}" for k in METRICS))
    summary = summarise(runs)
    cfg = load_config(CONFIGS, args.overrides, schema_for)
    a, t = cfg.adaptation, cfg.data.target.synthetic
    meta = {"seeds": len(args.seeds), "command": " ".join(["python", "benchmarks/pips.py"] + sys.argv[1:]),
            "checkpoint": str(ckpt), "device": "CPU", "plain_s_per_video": statistics.fmean(plain),
            "settings": (f"checkpoint {ckpt}" if args.ckpt else
                         f"PIPs trained on {cfg.data.train_videos} source videos for {cfg.trainer.max_epochs} epochs")
                        + f"; {cfg.data.test_videos} target videos of {t.frames} frames, {t.num_points} points per "
                          f"seed; refinement ({a.mode.replace('_', ' ')}) {a.finetune.steps} steps x "
                          f"{a.finetune.accumulate} groups of {a.labels.group_size} tracks, lr {a.finetune.lr}, "
                          f"{a.finetune.iters or cfg.model.test_iters} iterations, tau {a.labels.tau} px, "
                          f"clip stride {a.labels.clip_stride}"}
    results = Path(args.results)
    write_json(results / "pips_gain.json", {"meta": meta, "summary": summary, "runs": runs})
    write_text(results / "pips_gain.md", gain_markdown(summary, meta))
    print(gain_markdown(summary, meta))
    return 0


# -------------------------------------------------------------------------- speed
def speed(args) -> int:
    from nets.pips import PIPs
    from nets.pips_chain import pips_window_fn, track_long

    torch.manual_seed(0)
    net = PIPs(stride=4).eval()
    h, w = args.size
    rows = []
    for frames in (8, args.long_frames):
        rgbs = torch.rand(1, frames, 3, h, w) * 255
        queries = torch.cat([torch.zeros(1, args.points, 1), torch.rand(1, args.points, 2) * torch.tensor([w - 1, h - 1])], -1)
        window = pips_window_fn(net, args.iters)
        track_long(window, rgbs[:, :8], queries)  # warm-up
        start = time.perf_counter()
        for _ in range(args.repeats):
            track_long(window, rgbs, queries)
        seconds = (time.perf_counter() - start) / args.repeats
        rows.append({"frames": frames, "points": args.points, "size": [h, w], "seconds": seconds,
                     "point_frames_per_s": args.points * frames / seconds})
        print(rows[-1], flush=True)
    meta = {"command": " ".join(["python", "benchmarks/pips.py"] + sys.argv[1:]), "device": "CPU",
            "threads": torch.get_num_threads(), "iters": args.iters, "stride": 4}
    results = Path(args.results)
    write_json(results / "pips_speed.json", {"meta": meta, "speed": rows})
    lines = [f"# PIPs tracking speed ({meta['device']}, {meta['threads']} threads, {args.iters} iterations, stride 4)",
             "", f"Command: `{meta['command']}`", "",
             "| frames | points | frame size | seconds | points x frames / s |", "|---|---|---|---|---|"]
    lines += [f"| {r['frames']} | {r['points']} | {r['size'][0]}x{r['size'][1]} | {r['seconds']:.2f} | "
              f"{r['point_frames_per_s']:.0f} |" for r in rows]
    lines += ["", "Longer videos are tracked by chaining 8-frame windows; each window re-anchors at the latest "
              "confidently visible frame, so a video of T frames costs more than T/8 windows. Refinement time per "
              "video relative to plain tracking is in pips_gain.md."]
    write_text(results / "pips_speed.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results"))
    sub = parser.add_subparsers(dest="part", required=True)
    add_gain_parser(sub, list(VARIANTS), "PIPs")
    s = sub.add_parser("speed", help="tracking throughput")
    s.add_argument("--size", type=int, nargs=2, default=[256, 256], help="frame size")
    s.add_argument("--points", type=int, default=256)
    s.add_argument("--long-frames", type=int, default=48)
    s.add_argument("--iters", type=int, default=6)
    s.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    return gain(args) if args.part == "gain" else speed(args)


if __name__ == "__main__":
    sys.exit(main())
