#!/usr/bin/env python
"""Flow-pose bootstrapping on the synthetic people world: studio-trained RAFT, street videos.

``gain``: train one RAFT-small on studio videos of one person (train.py, benchmarks/bootstrap.yaml),
then for every seed bootstrap it on that seed's street videos, starting from the simulated pose
estimates (``data.poses``), and report the pose (MPJPE, PA-MPJPE, 2D joint error) and the flow
(EPE at the true joints, on the person's pixels, everywhere) for the initial estimates, after
each round of the paper's schedule (flow; flow + pose; flow + pose + flow), and the paper's
ablations: pose only, and the full schedule without the temporal terms; and a control, the full
schedule from estimates simulated on another video's person (as noisy, but of the wrong motion). Targets: MPJPE at least
5 % and joint EPE at least 10 % below the initial estimates. Also the seconds per frame of each
kind of round. Results: benchmarks/results/bootstrap_gain.{json,md}.

    python benchmarks/bootstrap.py gain --jobs 2
    python benchmarks/bootstrap.py gain --seeds 0 --variants before full -- adaptation.flow.epochs=2
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import add_gain_parser, run_variants, spread, test_target, train_run  # noqa: E402
from framework.io import write_json, write_text  # noqa: E402

CONFIGS = [str(ROOT / "configs/bootstrap/quick.yaml"), str(ROOT / "benchmarks/bootstrap.yaml")]
PAPER = {"flow": 0.01, "init": 400.0, "detections": 0.01, "position": 300.0, "camera": 0.1, "bone": 1e4}
NO_TEMPORAL = {**PAPER, "position": 0.0, "camera": 0.0, "bone": 0.0}
# variant -> settings below adaptation (None: the initial estimates and the trained RAFT)
VARIANTS = {
    "before": None,
    "flow_1": {"rounds": ["flow"]},
    "flow_pose": {"rounds": ["flow", "pose"]},
    "full": {"rounds": ["flow", "pose", "flow"]},
    "pose_only": {"rounds": ["pose"]},
    "full_no_temporal": {"rounds": ["flow", "pose", "flow"],
                         "pose": {"optimizer": "adam", "lr": 1e-3,
                                  "stages": [{"iterations": 1500, "weights": NO_TEMPORAL}]}},
    # control: the full schedule from estimates of another video's person (as noisy, but wrong)
    "full_wrong_poses": {"rounds": ["flow", "pose", "flow"], "data": ["data.poses.control=other_video"]},
}
METRICS = ("mpjpe", "pa_mpjpe", "joints2d_error", "joint_epe", "human_epe", "epe")
TARGETS = {"mpjpe": -5.0, "joint_epe": -10.0}  # % change against the initial estimates


def evaluate(seed: int, ckpt: Path, refinement, overrides: list[str]) -> dict:
    if refinement is not None and "data" in refinement:  # a control changes the data, not the refinement
        refinement = dict(refinement)
        overrides = overrides + refinement.pop("data")
    metrics, seconds, reports, _ = test_target("bootstrap", CONFIGS, seed, ckpt, refinement, overrides)
    frames = sum(r["pairs"] + 1 for r in reports)
    per_round: dict[str, list[float]] = {}
    for r in reports:
        for entry in r["rounds"]:
            per_round.setdefault(entry["round"], []).append(entry["seconds"] / (r["pairs"] + 1))
    return {"metrics": metrics, "seconds": seconds, "videos": max(len(reports), 1), "frames": frames,
            "round_seconds_per_frame": {k: statistics.fmean(v) for k, v in per_round.items()}}


def gain(args) -> int:
    ckpt = Path(args.ckpt) if args.ckpt else train_run(CONFIGS, "source", Path(args.work), args.overrides, args.reuse)
    runs, _ = run_variants(evaluate, VARIANTS, args, ckpt,
                           lambda r: ", ".join(f"{k} {r['metrics'].get(k, float('nan')):.2f}" for k in METRICS))
    base = runs["before"]
    rows = []
    for variant, items in runs.items():
        row = {"variant": variant, **{k: spread([r["metrics"][k] for r in items]) for k in METRICS}}
        for key in TARGETS:
            row[f"{key}_change_pct"] = spread([100 * (r["metrics"][key] - b["metrics"][key]) / b["metrics"][key]
                                               for r, b in zip(items, base)])
        row["round_seconds_per_frame"] = {k: statistics.fmean(r["round_seconds_per_frame"].get(k, 0.0) for r in items)
                                          for k in ("flow", "pose") if any(k in r["round_seconds_per_frame"] for r in items)}
        rows.append(row)
    meta = {"command": " ".join(["python", "benchmarks/bootstrap.py"] + sys.argv[1:]), "seeds": args.seeds,
            "checkpoint": str(ckpt), "targets_pct": TARGETS}
    results = Path(args.results)
    write_json(results / "bootstrap_gain.json", {"meta": meta, "rows": rows})
    lines = summary(rows, meta)
    write_text(results / "bootstrap_gain.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def summary(rows: list[dict], meta: dict) -> list[str]:
    """The markdown table of ``rows`` (mean ± std over seeds) and whether the targets are met."""
    def cell(s: dict, signed: bool = False) -> str:
        return f"{s['mean']:{'+' if signed else ''}.2f} ± {s['std']:.2f}"

    def seconds(value) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines = ["# Flow-pose bootstrapping on the synthetic studio -> street people videos", "",
             f"Command: `{meta['command']}`; seeds {meta['seeds']}; mean ± std over seeds.", "",
             "| variant | " + " | ".join(METRICS) + " | MPJPE change (%) | joint EPE change (%) | s / frame: flow round | pose round |",
             "|---" * (len(METRICS) + 5) + "|"]
    for row in rows:
        times = row["round_seconds_per_frame"]
        lines.append(f"| {row['variant']} | " + " | ".join(cell(row[k]) for k in METRICS) +
                     f" | {cell(row['mpjpe_change_pct'], True)} | {cell(row['joint_epe_change_pct'], True)} | "
                     f"{seconds(times.get('flow'))} | {seconds(times.get('pose'))} |")
    full = next((r for r in rows if r["variant"] == "full"), None)
    if full is not None:
        verdicts = [f"{k} {full[f'{k}_change_pct']['mean']:+.1f} % (target {t:+.0f} %: "
                    f"{'met' if full[f'{k}_change_pct']['mean'] <= t else 'not met'})"
                    for k, t in meta["targets_pct"].items()]
        lines += ["", "Targets (full schedule against the initial estimates): " + "; ".join(verdicts)]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results"))
    sub = parser.add_subparsers(dest="command", required=True)
    add_gain_parser(sub, list(VARIANTS), "bootstrap RAFT").set_defaults(run=gain)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
