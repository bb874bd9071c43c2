"""Run train.py / adapt.py the way a user does (a subprocess from the repo root) on tiny settings.

One torch thread per process: the tiny models are far too small to gain from more, and
several processes competing for 2 cores with multi-threaded kernels run 5-10x slower.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from framework.cli import RUN_DIR_ENV

ROOT = Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "configs/iso/quick.yaml")
# a few seconds per command; test_length is odd so that DDP's sampler pads by repeating a sample
TINY = ("model.width=32", "data.train_length=256", "data.val_length=64", "data.test_length=37",
        "data.batch_size=32", "data.test_batch_size=8", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "logger.kinds=[csv]")
RAFT_QUICK = str(ROOT / "configs/raft/quick.yaml")
# RAFT-small on 64x72 three-frame videos, 2 iterations: seconds per command
RAFT_TINY = ("data.train_videos=2", "data.val_videos=1", "data.test_videos=1", "data.source.synthetic.height=64",
             "data.source.synthetic.width=72", "data.source.synthetic.frames=3", "data.target.synthetic.height=64",
             "data.target.synthetic.width=72", "data.target.synthetic.frames=3", "data.crop_size=[64,64]",
             "data.eraser_bounds=[4,12]", "data.batch_size=2", "data.test_batch_size=2", "model.iters=2",
             "model.test_iters=2", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
             "logger.kinds=[csv]", "adaptation.finetune.steps=2", "adaptation.finetune.batch_size=2")
BOOTSTRAP_QUICK = str(ROOT / "configs/bootstrap/quick.yaml")
# RAFT-small on 64x64 three-frame people videos, a few pose iterations: seconds per command
BOOTSTRAP_TINY = ("data.train_videos=2", "data.val_videos=1", "data.test_videos=1", "data.crop_size=[64,64]",
                  *(f"data.{d}.people.{k}={v}" for d in ("source", "target")
                    for k, v in (("height", 64), ("width", 64), ("frames", 3))),
                  "data.eraser_bounds=[4,12]", "data.batch_size=2", "data.test_batch_size=2", "model.iters=2",
                  "model.test_iters=2", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                  "logger.kinds=[csv]", "adaptation.flow.epochs=1", "adaptation.pose.stages.0.iterations=5")
PIPS_QUICK = str(ROOT / "configs/pips/quick.yaml")
PRIOR_QUICK = str(ROOT / "configs/nfprior/prior_quick.yaml")
NFPRIOR_QUICK = str(ROOT / "configs/nfprior/quick.yaml")
# a narrow two-stage regressor on a few 64x64 crops, without a prior (tests that need one train it first)
NFPRIOR_TINY = ("model.prior_checkpoint=null", "model.output=ambient", "model.width=8", "model.convs=1",
                "model.stages=2", "model.backbone=8", "data.train_videos=2", "data.val_videos=1", "data.test_videos=1",
                "data.source.crops_per_video=2", "data.target.crops_per_video=2", "data.batch_size=4",
                *(f"data.{d}.people.{k}={v}" for d in ("source", "target") for k, v in
                  (("width", 96), ("height", 96), ("frames", 4))),
                "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger.kinds=[csv]",
                "adaptation.stages.0.iterations=5")
# a two-step flow on a few motions, two 64x64 crops fitted in a few steps
PRIOR_TINY = ("model.steps=2", "model.hidden=16", "data.source.sequences=20", "data.source.frames=10",
              "data.target.videos=1", "data.target.crops_per_video=2", "data.target.size=64",
              "data.target.people.width=96", "data.target.people.height=96", "data.target.people.frames=4",
              "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "logger.kinds=[csv]",
              "adaptation.stages.0.iterations=5", "adaptation.stages.1.iterations=10")
PIPS_SMALL_DOMAIN = {"height": 64, "width": 64, "frames": 10, "num_points": 6}
# a narrow PIPs on 64x64 ten-frame videos: seconds per command
PIPS_TINY = ("model.mixer_dim=32", "model.mixer_depth=2", "model.iters=2", "model.test_iters=2",
             "data.train_videos=2", "data.val_videos=1", "data.test_videos=1", "data.train_points=6",
             "data.crop_size=[64,64]", "data.batch_size=2",
             *(f"data.{d}.synthetic.{k}={v}" for d in ("source", "target") for k, v in PIPS_SMALL_DOMAIN.items()),
             "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger.kinds=[csv]",
             "adaptation.finetune.steps=2", "adaptation.finetune.batch_size=2", "adaptation.labels.group_size=4",
             "adaptation.labels.grid_spacing=16", "adaptation.labels.dense_window=0", "adaptation.labels.tau=1000")
DDP = ("trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp")
METRICS = {"mpjpe", "pa_mpjpe", "n_mpjpe", "pck", "auc"}


def cli(script: str, output_dir: Path, *overrides: str, config: str = QUICK, check: bool = True,
        timeout: int = 300, tiny: tuple[str, ...] = TINY) -> subprocess.CompletedProcess:
    """``python <script> --config <config> <tiny> output_dir=<output_dir> <overrides>`` (later overrides win)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop(RUN_DIR_ENV, None)  # each command chooses its own run folder
    cmd = [sys.executable, str(ROOT / script), "--config", config, *tiny, f"output_dir={output_dir}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} exited with {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return proc


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_digest(folder: Path) -> dict[str, str]:
    """Relative path -> content hash of every file under ``folder``."""
    return {str(p.relative_to(folder)): sha256(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def report(adapt_dir: Path) -> dict:
    return json.loads((Path(adapt_dir) / "adaptation_report.json").read_text())


def subdirs(folder: Path) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir() if p.is_dir())

