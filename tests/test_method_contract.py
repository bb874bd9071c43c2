"""What every registered method must do, checked for each one found in the registry: built from
its quick config (with the tiny sizes of tests/commands.py where it has them), it predicts a
batch, takes a training step, runs its own test-time callback on a target batch and reports."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from framework.config import load_config
from framework.methods import build_module, get_method, known_methods, schema_for
from lightning_modules.base import MethodModule
from tests.commands import BOOTSTRAP_TINY, NFPRIOR_TINY, PIPS_TINY, PRIOR_QUICK, PRIOR_TINY, RAFT_TINY, ROOT, TINY

TINY_BY_METHOD = {"iso": TINY, "raft": RAFT_TINY, "pips": PIPS_TINY, "bootstrap": BOOTSTRAP_TINY,
                  "pose_prior": PRIOR_TINY, "nfprior": NFPRIOR_TINY}
QUICK_BY_METHOD = {"pose_prior": PRIOR_QUICK}  # the methods whose quick config is not configs/<method>/quick.yaml
TEST_ONLY_KEYS = ("trainer.", "logger.")  # the tests build their own trainers


def contract_config(name: str, tmp_path: Path):
    quick = Path(QUICK_BY_METHOD.get(name, ROOT / "configs" / name / "quick.yaml"))
    assert quick.is_file(), f"method '{name}' has no quick config ({quick})"
    tiny = [o for o in TINY_BY_METHOD.get(name, ()) if not o.startswith(TEST_ONLY_KEYS)]
    return load_config([str(quick)], [*tiny, f"output_dir={tmp_path}", "pictures.enabled=false"], schema_for)


def trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_checkpointing=False, enable_model_summary=False, **kwargs)


def finite(values: dict) -> bool:
    return all(math.isfinite(float(v)) for v in values.values())


@pytest.mark.parametrize("name", known_methods())
def test_registered_method_trains_predicts_and_adapts(name, tmp_path):
    torch.manual_seed(0)
    cfg = contract_config(name, tmp_path)
    spec = get_method(name)
    assert spec.name == name and cfg.method == name
    module = build_module(spec, cfg)
    assert isinstance(module, MethodModule) and module.method == name

    # one training step on the source domain moves the weights
    source = spec.datamodule(cfg, "source")
    before = {k: v.detach().clone() for k, v in module.state_dict().items() if v.is_floating_point()}
    trainer(max_steps=1, limit_val_batches=1, num_sanity_val_steps=0).fit(module, datamodule=source)
    after = {k: v.detach().clone() for k, v in module.state_dict().items()}
    assert any(not torch.equal(before[k], after[k]) for k in before), "a training step changed no weight"

    # a target batch predicted as trained, then through the method's own test-time callback
    target = spec.datamodule(cfg, "target")
    plain = trainer(limit_test_batches=1).test(module, datamodule=target, verbose=False)[0]
    assert plain and finite(plain)
    callback = spec.adaptation(cfg)
    adapted = trainer(limit_test_batches=1, callbacks=[callback]).test(module, datamodule=target, verbose=False)[0]
    assert set(adapted) == set(plain) and finite(adapted)
    report = {"settings": callback.settings(), "summary": callback.summary()}
    json.dumps(report)  # what adapt.py writes must be plain JSON
    # the callback left the module's weights as loaded
    assert all(torch.equal(after[k], v) for k, v in module.state_dict().items() if k in after)
