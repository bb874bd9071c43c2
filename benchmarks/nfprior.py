#!/usr/bin/env python
"""The NF-prior paper's Table 1 as an experiment on the synthetic people world.

``table1``: for every seed, learn the priors of ``benchmarks/nfprior.yaml`` on that seed's pose
collection (the people world's motions of every action: the mocap corpus) with train.py: a
Real-NVP flow on angle-axis and on 6D rotations, and the GMM of SMPLify (8 modes, EM). Then fit
bodies to the street crops of that seed from their ground-truth 2D keypoints (all keypoints inside
the crop, as the paper's ground-truth 2D joints), from zero with four headings, best start kept,
and score MPJPE (root-relative) and MPVPE (pelvis-relative) in mm:
GMM vs NF ambient vs NF latent, angle-axis vs 6D, keypoints alone (KA) and with the part masks
(KA + BA), and two controls: no prior, and an untrained flow (a random bijection with the data's
normalisation) in latent space. KA rows use every crop of the seed; every row with BA and its
KA twin (``*_sub``) use the first ``--ba-crops`` (L_BA costs about ten times KA per step).

Targets: NF latent (angle-axis, KA) at least 30 % lower MPJPE than the GMM (the paper: 7.9 -> 5.0
cm), latent below ambient, KA + BA below KA. Also the priors' parameter counts and the L-BFGS
seconds per instance (prior.yaml's schedule). Results: benchmarks/results/nfprior_table1.{json,md}.

``regressor``: per seed, the NF-latent prior of table1, the small regressor of
``benchmarks/nfprior_regressor.yaml`` fully supervised on studio crops (FS), and its weakly
supervised continuation on the street's train crops (FS+WS: 2D keypoints and part masks only).
Then on 8 street test videos of 16 consecutive frames, from their ground-truth 2D keypoints and
part masks: the networks' predictions, refined per crop from the prediction (OPT, KA or KA+BA),
and refined per video (windows of 4, 8 or 16 frames started from the per-crop fits, the shape
tied; with the smoothness at 50x the prior, and without it as the control); the same refinements
fitted to the network's own keypoints and part segmentation (``*_pred_*``, the paper's 3DPW setting). MPJPE, PA-MPJPE,
MPVPE, 2D error and part IoU; results in benchmarks/results/nfprior_regressor.{json,md}.

    python benchmarks/nfprior.py table1 --jobs 2
    python benchmarks/nfprior.py table1 --seeds 0 --crops 40 --ba-crops 20 --variants nf_latent_aa_ka gmm_ka
    python benchmarks/nfprior.py regressor --jobs 2
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import spread, train_run  # noqa: E402
from framework.io import write_json, write_text  # noqa: E402

CONFIGS = [str(ROOT / "configs/nfprior/prior.yaml"), str(ROOT / "benchmarks/nfprior.yaml")]
REGRESSOR_CONFIGS = [str(ROOT / "configs/nfprior/quick.yaml"), str(ROOT / "benchmarks/nfprior_regressor.yaml")]
# the weakly supervised continuation: the street's train crops, their 2D labels only, from the FS network
WEAK = ["data.train_domain=target", "model.supervision=weak", "data.train_videos=125", "trainer.max_epochs=10"]
PRIORS = {"nf_aa": ["model.kind=realnvp", "model.representation=aa"],
          "nf_6d": ["model.kind=realnvp", "model.representation=6d"],
          "gmm_aa": ["model.kind=gmm", "model.representation=aa", "trainer.max_epochs=1"]}
# variant -> (prior, fitting overrides, subset of crops)
VARIANTS = {
    "gmm_ka": ("gmm_aa", ["model.fit.space=ambient"], False),
    "nf_ambient_aa_ka": ("nf_aa", ["model.fit.space=ambient"], False),
    "nf_latent_aa_ka": ("nf_aa", [], False),
    "nf_ambient_6d_ka": ("nf_6d", ["model.fit.space=ambient"], False),
    "nf_latent_6d_ka": ("nf_6d", [], False),
    "none_ka": ("none", ["model.kind=none", "model.fit.space=ambient"], False),
    "untrained_latent_aa_ka": ("untrained", PRIORS["nf_aa"], False),
    "gmm_ka_sub": ("gmm_aa", ["model.fit.space=ambient"], True),
    "gmm_ka_ba": ("gmm_aa", ["model.fit.space=ambient", "model.fit.part_alignment=true"], True),
    "nf_ambient_aa_ka_sub": ("nf_aa", ["model.fit.space=ambient"], True),
    "nf_ambient_aa_ka_ba": ("nf_aa", ["model.fit.space=ambient", "model.fit.part_alignment=true"], True),
    "nf_latent_aa_ka_sub": ("nf_aa", [], True),
    "nf_latent_aa_ka_ba": ("nf_aa", ["model.fit.part_alignment=true"], True),
}
METRICS = ("mpjpe", "mpvpe", "pa_mpjpe", "joints2d_error")


def evaluate(seed: int, ckpt: Optional[str], overrides: list[str], crops: int, lbfgs: bool = False) -> dict:
    """Fit the first ``crops`` street crops of ``seed`` with the prior of ``ckpt`` (None: an untrained
    flow): the test metrics after fitting, the seconds, and the prior's parameter count."""
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import Subset

    from framework.config import load_config, to_plain
    from framework.methods import get_method, load_module, schema_for
    from nets.pose_prior import parameter_count

    cfg = load_config(CONFIGS, [f"data.seed={seed}", f"seed={seed}"] + overrides
                      + ([] if not lbfgs else ["adaptation.optimizer=lbfgs", "adaptation.lr=1.0"]), schema_for)
    spec = get_method("pose_prior")
    datamodule = spec.datamodule(cfg, "target")
    pl.seed_everything(seed, verbose=False)
    if ckpt is None:  # no prior, or an untrained flow given the data's normalisation
        module = spec.module(method="pose_prior", model=to_plain(cfg.model))
        if hasattr(module.prior, "set_normalisation"):
            source = spec.datamodule(cfg, "source").domain_dataset("source", "train")
            module.prior.set_normalisation(module.poses({"pose": source.pose}))
    else:
        module = load_module(spec, cfg, Path(ckpt))
    data = datamodule.domain_dataset("target", "test")
    subset = Subset(data, range(min(crops, len(data))))
    loader = torch.utils.data.DataLoader(subset, batch_size=cfg.data.test_batch_size)
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[spec.adaptation(cfg)])
    start = time.perf_counter()
    metrics = trainer.test(module, dataloaders=loader, verbose=False)[0]
    seconds = time.perf_counter() - start
    # a GMM's numbers are fitted, not trained: count its buffers
    size = parameter_count(module.prior) or sum(b.numel() for b in module.prior.buffers())
    return {"metrics": {k.split("/", 1)[1]: float(v) for k, v in metrics.items()}, "seconds": seconds,
            "instances": len(subset), "parameters": size}


def train_priors(args, seed: int) -> dict[str, str]:
    work = Path(args.work)
    return {name: str(train_run(CONFIGS, f"prior_{name}_s{seed}", work,
                                [f"seed={seed}", f"data.seed={seed}", *extra, *args.overrides], args.reuse))
            for name, extra in PRIORS.items()}


# the refinement schedule of benchmarks/nfprior_regressor.yaml, and the video window's: the frames
# start from their own fits under it, then one stage with the smoothness at 50x the prior (eq. 12)
FRAME_STAGES = [{"iterations": 100, "weights": {"keypoints": 1.0, "prior": 10.0, "shape": 10.0}},
                {"iterations": 200, "weights": {"keypoints": 1.0, "prior": 1.0, "shape": 1.0}}]


def video(window: int, smoothness: float) -> dict:
    return {"per": "video", "window": window, "frames_first": True, "frame_stages": FRAME_STAGES,
            "stages": [{"iterations": 200, "weights": {"keypoints": 1.0, "prior": 1.0, "shape": 1.0,
                                                       "smoothness": smoothness}}]}


BA = ["model.fit.part_alignment=true"]
PREDICTED = ["model.evidence=predicted"]
# variant -> (network, model overrides, refinement: None for the network's own prediction)
REGRESSOR_VARIANTS = {
    "fs": ("fs", [], None),
    "fs_opt_ka": ("fs", [], {}),
    "fs_opt_ka_ba": ("fs", BA, {}),
    "fs_ws": ("ws", [], None),
    "fs_ws_opt_ka_ba": ("ws", BA, {}),
    "fs_ws_video16_ka_ba": ("ws", BA, video(16, 0.0)),  # the shape tied, no smoothness: the control
    "fs_ws_video16_ka_ba_s": ("ws", BA, video(16, 50.0)),
    # the smoothness at 5x the prior: this L_KA is a mean over keypoints of a 64 px crop, far smaller
    # than the paper's, so 50x the prior outweighs the image evidence here
    "fs_ws_video16_ka_ba_s5": ("ws", BA, video(16, 5.0)),
    "fs_ws_video4_ka_ba_s": ("ws", BA, video(4, 50.0)),
    "fs_ws_video8_ka_ba_s": ("ws", BA, video(8, 50.0)),
    # fitted to the network's own keypoints and part segmentation, as the paper refines on 3DPW
    "fs_opt_pred_ka_ba": ("fs", BA + PREDICTED, {}),
    "fs_ws_opt_pred_ka_ba": ("ws", BA + PREDICTED, {}),
    "fs_ws_video16_pred_ka_ba": ("ws", BA + PREDICTED, video(16, 0.0)),
    "fs_ws_video16_pred_ka_ba_s5": ("ws", BA + PREDICTED, video(16, 5.0)),
}
REGRESSOR_METRICS = METRICS + ("part_iou",)


def evaluate_regressor(seed: int, ckpt: str, overrides: list[str], refinement: Optional[dict]) -> dict:
    from benchmarks.common import test_target

    metrics, seconds, _, _ = test_target("nfprior", REGRESSOR_CONFIGS, seed, Path(ckpt), refinement,
                                         [f"seed={seed}"] + overrides)
    return {"metrics": metrics, "seconds": seconds}


def train_regressors(args, seed: int) -> dict[str, str]:
    """One seed's flow prior (shared with table1), FS network and its weakly supervised continuation."""
    work = Path(args.work)
    prior = train_run(CONFIGS, f"prior_nf_aa_s{seed}", work, [f"seed={seed}", f"data.seed={seed}", *PRIORS["nf_aa"]],
                      args.reuse)
    common = [f"seed={seed}", f"data.seed={seed}", f"model.prior_checkpoint={prior}", *args.overrides]
    fs = train_run(REGRESSOR_CONFIGS, f"fs_s{seed}", work, common, args.reuse)
    ws = train_run(REGRESSOR_CONFIGS, f"ws_s{seed}", work, common + WEAK + [f"model.init_from={fs}"], args.reuse)
    # the weak stage has no target 3D to choose an epoch by (its validation is the source's, which it
    # drifts from): its fixed schedule's last epoch, as the paper trains it
    return {"prior": str(prior), "fs": str(fs), "ws": str(ws.parent / "last.ckpt")}


def regressor(args: argparse.Namespace) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(args.jobs) as pool:  # each training is a train.py subprocess
        models = dict(zip(args.seeds, pool.map(lambda seed: train_regressors(args, seed), args.seeds)))
    for seed, paths in models.items():
        print(f"seed {seed}: {paths}", flush=True)
    if args.train_only:
        return
    import torch

    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    cached = lambda seed, v: Path(args.work) / "evaluations" / f"{v}_s{seed}.json"  # noqa: E731
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = {}
        for seed in args.seeds:
            for v in args.variants:
                if args.reuse and cached(seed, v).is_file():
                    continue
                network, extra, refinement = REGRESSOR_VARIANTS[v]
                overrides = [f"model.prior_checkpoint={models[seed]['prior']}", *extra, *args.overrides]
                futures[(seed, v)] = pool.submit(evaluate_regressor, seed, models[seed][network], overrides, refinement)
        for seed in args.seeds:
            for v in args.variants:
                if (seed, v) in futures:
                    write_json(cached(seed, v), futures[(seed, v)].result())
                r = json.loads(cached(seed, v).read_text())
                m = r["metrics"]
                print(f"seed {seed} {v:>24}: MPJPE {m['mpjpe']:.1f} PA {m['pa_mpjpe']:.1f} MPVPE {m['mpvpe']:.1f} mm, "
                      f"2D {m['joints2d_error']:.2f} px, IoU {m['part_iou']:.1f} %, {r['seconds']:.0f} s", flush=True)
                runs[v].append(r)
    summary = {v: {k: spread([r["metrics"][k] for r in rs]) for k in REGRESSOR_METRICS} for v, rs in runs.items()}
    pairs = {"FS+OPT (KA) vs FS": ("fs_opt_ka", "fs"), "FS+OPT (KA+BA) vs FS": ("fs_opt_ka_ba", "fs"),
             "FS+WS vs FS": ("fs_ws", "fs"), "FS+WS+OPT (KA+BA) vs FS+WS": ("fs_ws_opt_ka_ba", "fs_ws"),
             "video 16 (S) vs per frame": ("fs_ws_video16_ka_ba_s", "fs_ws_opt_ka_ba"),
             "video 16 (S) vs video 16 without S": ("fs_ws_video16_ka_ba_s", "fs_ws_video16_ka_ba"),
             "video 16 (S at 5x) vs per frame": ("fs_ws_video16_ka_ba_s5", "fs_ws_opt_ka_ba"),
             "predicted 2D: FS+OPT vs FS": ("fs_opt_pred_ka_ba", "fs"),
             "predicted 2D: FS+WS+OPT vs FS+WS": ("fs_ws_opt_pred_ka_ba", "fs_ws"),
             "predicted 2D: video 16 (S at 5x) vs per frame": ("fs_ws_video16_pred_ka_ba_s5", "fs_ws_opt_pred_ka_ba"),
             "predicted 2D: video 16 (S at 5x) vs without S": ("fs_ws_video16_pred_ka_ba_s5", "fs_ws_video16_pred_ka_ba")}
    checks = {name: {key: spread(change(runs, a, b, key)) for key in ("mpjpe", "pa_mpjpe")}
              for name, (a, b) in pairs.items() if runs.get(a) and runs.get(b)}
    result = {"seeds": args.seeds, "overrides": args.overrides, "summary": summary, "changes": checks,
              "seconds": {v: spread([r["seconds"] for r in rs]) for v, rs in runs.items()}, "runs": runs}
    save("nfprior_regressor", result, regressor_markdown(result))


def regressor_markdown(result: dict) -> str:
    lines = [f"# NF-prior regressor on the synthetic street crops ({len(result['seeds'])} seeds, 8 videos x 16 "
             f"consecutive frames each; refined on their true 2D keypoints and part masks, *_pred_* rows on "
             f"the network's own)", "",
             "| rows | MPJPE (mm) | PA-MPJPE (mm) | MPVPE (mm) | 2D error (px) | part IoU (%) | s |",
             "|---|---|---|---|---|---|---|"]
    for v, s in result["summary"].items():
        cell = lambda k: f"{s[k]['mean']:.1f} ± {s[k]['std']:.1f}"  # noqa: E731
        lines.append(f"| {v} | {cell('mpjpe')} | {cell('pa_mpjpe')} | {cell('mpvpe')} | {cell('joints2d_error')} | "
                     f"{cell('part_iou')} | {result['seconds'][v]['mean']:.0f} |")
    lines += ["", "| change | MPJPE (%) | PA-MPJPE (%) |", "|---|---|---|"]
    for name, c in result["changes"].items():
        lines.append(f"| {name} | {c['mpjpe']['mean']:+.1f} ± {c['mpjpe']['std']:.1f} | "
                     f"{c['pa_mpjpe']['mean']:+.1f} ± {c['pa_mpjpe']['std']:.1f} |")
    return "\n".join(lines) + "\n"


def change(runs: dict, variant: str, base: str, key: str = "mpjpe") -> list[float]:
    return [100 * (a["metrics"][key] / b["metrics"][key] - 1) for a, b in zip(runs[variant], runs[base])]


def table1(args: argparse.Namespace) -> None:
    import torch

    priors = {seed: train_priors(args, seed) for seed in args.seeds}
    jobs = [(seed, v) for seed in args.seeds for v in args.variants]
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = {}
        for seed, v in jobs:
            prior, extra, sub = VARIANTS[v]
            ckpt = priors[seed].get(prior)  # None: no prior, or the untrained control
            extra = [o for o in PRIORS.get(prior, []) if o.startswith("model.")] + extra
            futures[(seed, v)] = pool.submit(evaluate, seed, ckpt, extra + args.overrides,
                                             args.ba_crops if sub else args.crops)
        timing = pool.submit(evaluate, args.seeds[0], priors[args.seeds[0]]["nf_aa"], PRIORS["nf_aa"] + args.overrides,
                             3, True)
        for seed, v in jobs:
            r = futures[(seed, v)].result()
            m = r["metrics"]
            print(f"seed {seed} {v:>24}: MPJPE {m['mpjpe']:.1f} MPVPE {m['mpvpe']:.1f} mm, {r['seconds']:.0f} s",
                  flush=True)
            runs[v].append(r)
        lbfgs = timing.result()
    summary = {v: {k: spread([r["metrics"][k] for r in rs]) for k in METRICS} for v, rs in runs.items() if rs}
    checks = {}
    pairs = {"nf_latent_vs_gmm (target <= -30 %)": ("nf_latent_aa_ka", "gmm_ka", -30.0),
             "latent_vs_ambient_aa (target < 0)": ("nf_latent_aa_ka", "nf_ambient_aa_ka", 0.0),
             "latent_vs_ambient_6d (target < 0)": ("nf_latent_6d_ka", "nf_ambient_6d_ka", 0.0),
             "ka_ba_vs_ka_latent (target < 0)": ("nf_latent_aa_ka_ba", "nf_latent_aa_ka_sub", 0.0),
             "ka_ba_vs_ka_ambient (target < 0)": ("nf_ambient_aa_ka_ba", "nf_ambient_aa_ka_sub", 0.0),
             "ka_ba_vs_ka_gmm (target < 0)": ("gmm_ka_ba", "gmm_ka_sub", 0.0)}
    for name, (a, b, target) in pairs.items():
        if runs.get(a) and runs.get(b):
            values = change(runs, a, b)
            checks[name] = {**spread(values), "met": all(x < target for x in values)}
    result = {"seeds": args.seeds, "crops": args.crops, "ba_crops": args.ba_crops, "overrides": args.overrides,
              "summary": summary, "checks": checks,
              "prior_parameters": {name: runs[v][0]["parameters"] for name, v in
                                   (("nf (Real-NVP)", "nf_latent_aa_ka"), ("gmm", "gmm_ka")) if runs.get(v)},
              "lbfgs_seconds_per_instance": lbfgs["seconds"] / lbfgs["instances"],
              "seconds": {v: spread([r["seconds"] / r["instances"] for r in rs]) for v, rs in runs.items() if rs},
              "runs": runs}
    save("nfprior_table1", result, markdown(result))


def save(name: str, result: dict, table: str) -> None:
    out = ROOT / "benchmarks/results"
    write_json(out / f"{name}.json", result)
    write_text(out / f"{name}.md", table)
    print(table)


def markdown(result: dict) -> str:
    lines = [f"# NF prior, Table 1 on the synthetic street crops ({len(result['seeds'])} seeds, "
             f"{result['crops']} crops per seed, {result['ba_crops']} for the KA+BA rows and their KA twins)", "",
             "| fitting | MPJPE (mm) | MPVPE (mm) | PA-MPJPE (mm) | 2D error (px) | s / crop |", "|---|---|---|---|---|---|"]
    for v, s in result["summary"].items():
        cell = lambda k: f"{s[k]['mean']:.1f} ± {s[k]['std']:.1f}"  # noqa: E731
        lines.append(f"| {v} | {cell('mpjpe')} | {cell('mpvpe')} | {cell('pa_mpjpe')} | {cell('joints2d_error')} | "
                     f"{result['seconds'][v]['mean']:.2f} |")
    lines += ["", "| check | MPJPE change (%) | met |", "|---|---|---|"]
    for name, c in result["checks"].items():
        lines.append(f"| {name} | {c['mean']:+.1f} ± {c['std']:.1f} | {'yes' if c['met'] else 'no'} |")
    lines += ["", f"Prior parameters (the GMM: its fitted numbers): {result['prior_parameters']}; L-BFGS (prior.yaml schedule): "
              f"{result['lbfgs_seconds_per_instance']:.1f} s per crop (one CPU thread)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("table1", help="priors x spaces x representations x losses")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    t.add_argument("--crops", type=int, default=500)
    t.add_argument("--ba-crops", type=int, default=100)
    t.add_argument("--work", default=str(ROOT / "outputs/benchmarks/nfprior"))
    t.add_argument("--reuse", action="store_true", help="reuse priors a previous run trained in --work")
    t.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    t.add_argument("--jobs", type=int, default=1)
    t.add_argument("overrides", nargs="*")
    r = sub.add_parser("regressor", help="FS vs FS+OPT vs FS+WS, and video refinement, on the street crops")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    r.add_argument("--work", default=str(ROOT / "outputs/benchmarks/nfprior"))
    r.add_argument("--reuse", action="store_true", help="reuse the models and evaluations of a previous run in --work")
    r.add_argument("--train-only", action="store_true", help="train the priors and networks, evaluate nothing")
    r.add_argument("--variants", nargs="+", default=list(REGRESSOR_VARIANTS), choices=list(REGRESSOR_VARIANTS))
    r.add_argument("--jobs", type=int, default=1)
    r.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    {"table1": table1, "regressor": regressor}[args.command](args)


if __name__ == "__main__":
    main()
