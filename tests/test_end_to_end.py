"""train.py and adapt.py end to end, run as a user runs them: run folders, checkpoints,
reports, default checkpoint discovery, resume, bf16-mixed. Tiny settings on the CPU."""
import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from lightning_modules.iso import ISOModule
from tests.commands import METRICS, ROOT, cli, report, sha256, subdirs, tree_digest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny 2-epoch training run (dropout and flips on), shared by the tests below; read-only for them."""
    out = tmp_path_factory.mktemp("trained")
    proc = cli("train.py", out)
    return SimpleNamespace(out=out, run=out / "iso" / "quick", stdout=proc.stdout)


def finite_metrics(values: dict) -> bool:
    return set(values) == METRICS and all(isinstance(v, float) and math.isfinite(v) for v in values.values())


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_train_writes_config_checkpoints_and_metrics(trained):
    run = trained.run
    assert subdirs(trained.out / "iso") == ["quick"]
    assert f"run folder: {run}" in trained.stdout
    cfg = OmegaConf.load(run / "config.yaml")
    assert cfg.method == "iso" and cfg.run_name == "quick" and cfg.output_dir == str(trained.out)
    assert cfg.model.width == 32 and cfg.data.test_length == 37 and cfg.trainer.max_epochs == 2  # the overrides
    assert cfg.model.lr == pytest.approx(1e-3) and cfg.model.lr_decay == pytest.approx(0.8)  # quick.yaml

    shapes = {k: v.shape for k, v in ISOModule("iso", {"width": 32}).state_dict().items()}
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = load(run / "checkpoints" / name)
        assert ckpt["method"] == "iso"
        assert {k: v.shape for k, v in ckpt["state_dict"].items()} == shapes
    # last.ckpt is the final epoch even when validation did not improve in it (it is what resume continues)
    assert load(run / "checkpoints" / "last.ckpt")["epoch"] == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == "iso" and metrics["test_domain"] == "source"
    assert metrics["best_checkpoint"] == str(run / "checkpoints" / "best.ckpt")
    assert metrics["last_checkpoint"] == str(run / "checkpoints" / "last.ckpt")
    assert finite_metrics(metrics["test"])
    assert not list(run.rglob("*.tmp"))  # atomic writes leave no temporary files


def test_second_identical_run_goes_to_v1_and_leaves_the_first_alone(trained, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(trained.out, out)
    first = tree_digest(out / "iso" / "quick")
    proc = cli("train.py", out)
    assert subdirs(out / "iso") == ["quick", "quick_v1"]
    assert f"run folder: {out / 'iso' / 'quick_v1'}" in proc.stdout
    assert tree_digest(out / "iso" / "quick") == first
    second = out / "iso" / "quick_v1"
    assert OmegaConf.load(second / "config.yaml").output_dir == str(out)
    # seeded: the same config trains the same weights
    a, b = load(out / "iso/quick/checkpoints/last.ckpt"), load(second / "checkpoints/last.ckpt")
    assert all(torch.equal(v, b["state_dict"][k]) for k, v in a["state_dict"].items())


def test_adapt_finds_the_checkpoint_reports_and_leaves_it_untouched(trained):
    best = trained.run / "checkpoints" / "best.ckpt"
    digest = sha256(best)
    proc = cli("adapt.py", trained.out)
    assert sha256(best) == digest

    adapt_dir = trained.out / "iso" / "quick_adapt"
    rep = report(adapt_dir)
    assert set(rep) == {"method", "run", "checkpoint", "before", "after", "seconds", "adaptation"}
    assert rep["method"] == "iso" and rep["checkpoint"] == str(best) and rep["run"] == str(adapt_dir)
    assert finite_metrics(rep["before"]) and finite_metrics(rep["after"])
    assert rep["after"]["mpjpe"] != rep["before"]["mpjpe"]  # adaptation changed the predictions
    assert set(rep["seconds"]) == {"before", "after"} and all(v > 0 for v in rep["seconds"].values())
    adaptation = OmegaConf.to_container(OmegaConf.load(adapt_dir / "config.yaml").adaptation)
    assert rep["adaptation"] == adaptation
    assert (adaptation["mode"], adaptation["steps"], adaptation["copies"]) == ("online", 1, 32)  # quick.yaml

    # the before/after table, one row per metric with the reported values
    lines = proc.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["metric", "before", "after", "change"])
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 2: header + 2 + len(METRICS)]}
    assert set(rows) == METRICS
    for key, (before, after, change) in rows.items():
        assert before == f"{rep['before'][key]:.2f}" and after == f"{rep['after'][key]:.2f}"
        assert change == f"{rep['after'][key] - rep['before'][key]:+.2f}"


def test_adapt_uses_the_checkpoint_given_by_path(trained, tmp_path):
    last = trained.run / "checkpoints" / "last.ckpt"
    digest = sha256(last)
    # nothing trained under tmp_path: only the path can work; both paths relative, the report's absolute
    cli("adapt.py", Path(os.path.relpath(tmp_path, ROOT)), f"ckpt={os.path.relpath(last, ROOT)}")
    rep = report(tmp_path / "iso" / "quick_adapt")
    assert rep["checkpoint"] == str(last.resolve()) and rep["run"] == str((tmp_path / "iso" / "quick_adapt").resolve())
    assert finite_metrics(rep["before"]) and finite_metrics(rep["after"])
    assert sha256(last) == digest


def test_adapt_without_a_trained_run_says_to_train_first(tmp_path):
    proc = cli("adapt.py", tmp_path, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no checkpoint") and "run train.py" in lines[0]


def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(trained, tmp_path):
    """The shared run trained 2 epochs in one go; here 1 epoch, then resume to 2 (resume=true and resume=PATH)."""
    interrupted = tmp_path / "interrupted"
    cli("train.py", interrupted, "trainer.max_epochs=1")
    by_path = tmp_path / "by_path"
    shutil.copytree(interrupted, by_path)

    proc = cli("train.py", interrupted, "resume=true")
    assert "resuming from" in proc.stdout
    assert subdirs(interrupted / "iso") == ["quick"]  # continued in the same folder
    last = by_path / "iso/quick/checkpoints/last.ckpt"
    cli("train.py", by_path, f"resume={last}")
    assert subdirs(by_path / "iso") == ["quick"]

    reference = load(trained.run / "checkpoints" / "last.ckpt")
    for out in (interrupted, by_path):
        resumed = load(out / "iso/quick/checkpoints/last.ckpt")
        assert (resumed["epoch"], resumed["global_step"]) == (reference["epoch"], reference["global_step"])
        assert resumed["state_dict"].keys() == reference["state_dict"].keys()
        different = [k for k, v in reference["state_dict"].items() if not torch.equal(v, resumed["state_dict"][k])]
        assert not different, f"{out.name}: {len(different)} tensors differ, e.g. {different[:3]}"
        assert resumed["lr_schedulers"] == reference["lr_schedulers"]


def test_bf16_mixed_training_and_adaptation_on_cpu(tmp_path):
    cli("train.py", tmp_path, "trainer.precision=bf16-mixed", "trainer.max_epochs=1")
    run = tmp_path / "iso" / "quick"
    assert finite_metrics(json.loads((run / "metrics.json").read_text())["test"])
    weights = load(run / "checkpoints" / "best.ckpt")["state_dict"]
    assert all(v.dtype == torch.float32 for v in weights.values() if v.is_floating_point())  # bf16 compute only
    cli("adapt.py", tmp_path, "trainer.precision=bf16-mixed", "adaptation.lr=1e-3")
    rep = report(tmp_path / "iso" / "quick_adapt")
    assert finite_metrics(rep["before"]) and finite_metrics(rep["after"])
    assert rep["after"]["mpjpe"] != rep["before"]["mpjpe"]


def test_ctrl_c_says_in_one_line_how_to_resume(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from tests.commands import QUICK, ROOT, TINY
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MOTION_ADAPT_RUN_DIR", None)
    cmd = [sys.executable, str(ROOT / "train.py"), "--config", QUICK, *TINY, "trainer.max_epochs=1000",
           f"output_dir={tmp_path}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "iso" / "quick" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=240)  # a loaded machine takes long to unwind
    assert proc.returncode != 0
    lines = [line for line in err.splitlines() if "resume=true" in line]
    assert len(lines) == 1 and lines[0].startswith("interrupted in epoch ")
    assert f"output_dir={tmp_path}" in lines[0] and "trainer.max_epochs=1000" in lines[0]
