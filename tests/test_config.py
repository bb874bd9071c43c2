"""Config loading: merge order, overrides, and one clear error per mistake."""
import subprocess
import sys
from pathlib import Path

import pytest

from framework.config import load_config
from framework.errors import UserError
from framework.methods import schema_for

ROOT = Path(__file__).resolve().parents[1]
QUICK = str(ROOT / "configs/iso/quick.yaml")


def load(*overrides, files=(QUICK,)):
    return load_config(list(files), list(overrides), schema_for)


def test_files_merge_in_order_then_overrides(tmp_path):
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("model:\n  width: 48\n  lr: 0.001\n")
    cfg = load("model.lr=0.005", files=(QUICK, str(overlay)))
    assert cfg.model.width == 48 and cfg.model.lr == 0.005
    assert cfg.run_name == "quick+overlay"


@pytest.mark.parametrize("override,message", [
    ("model.widht=3", "unknown config key 'model.widht'"),
    ("trainer.max_epoch=3", "unknown config key 'trainer.max_epoch'"),
    ("model.width=wide", "config key 'model.width'"),
    ("adaptation.steps=1.5", "config key 'adaptation.steps'"),
    ("method=nope", "unknown method 'nope'"),
    ("novalue", "not of the form key.sub=value"),
])
def test_bad_keys_and_types_name_the_key(override, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(override)


def test_missing_file_and_missing_method(tmp_path):
    with pytest.raises(UserError, match="config file not found: .*nowhere.yaml"):
        load(files=(str(tmp_path / "nowhere.yaml"),))
    bare = tmp_path / "bare.yaml"
    bare.write_text("seed: 3\n")
    with pytest.raises(UserError, match="missing required config value 'method'"):
        load(files=(str(bare),))


def test_cli_prints_one_line_not_a_traceback():
    out = subprocess.run([sys.executable, str(ROOT / "train.py"), "--config", QUICK, "model.widht=3"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: unknown config key 'model.widht' (did you mean 'width'?)"


def test_overrides_reach_into_lists_and_open_sections():
    quick = str(ROOT / "configs/bootstrap/quick.yaml")
    cfg = load_config([quick], ["adaptation.pose.stages.0.iterations=7", "adaptation.pose.stages.0.weights.flow=0.5",
                                "data.target.people.noise=2.0"], schema_for)
    assert cfg.adaptation.pose.stages[0].iterations == 7 and cfg.adaptation.pose.stages[0].weights.flow == 0.5
    assert cfg.data.target.people.noise == 2.0 and cfg.data.target.people.preset == "street"
    with pytest.raises(UserError, match=r"override 'adaptation.pose.stages.3.iterations': no such list entry"):
        load_config([quick], ["adaptation.pose.stages.3.iterations=7"], schema_for)


def overlays():
    """Every config file: a method's base configs alone, every other file over its default.yaml."""
    for folder in sorted((ROOT / "configs").iterdir()):
        files = sorted(folder.glob("*.yaml"))
        bases = [f for f in files if f.stem in ("default", "quick") or "prior" in f.stem]
        for f in files:
            yield pytest.param([str(f)] if f in bases else [str(folder / "default.yaml"), str(f)],
                               id=f"{folder.name}/{f.stem}")


@pytest.mark.parametrize("files", list(overlays()))
def test_every_config_file_loads(files):
    """A shipped config with a stale or misspelt key would fail on a user's first run."""
    from omegaconf import OmegaConf
    merged = OmegaConf.merge(*(OmegaConf.load(f) for f in files))
    fill = [f"{key}=/data" for key in sorted(OmegaConf.missing_keys(merged))]  # the roots a user gives
    cfg = load_config(files, fill, schema_for)
    folder = Path(files[-1]).parent.name  # configs/nfprior holds the prior's stage too
    assert cfg.method == folder or (folder, cfg.method) == ("nfprior", "pose_prior")
