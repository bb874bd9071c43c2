"""Which checkpoint adapt.py picks when none is named."""
from __future__ import annotations

import os
import time

import pytest
from omegaconf import OmegaConf

from framework.errors import UserError
from framework.runs import newest_checkpoint


def run_with_checkpoint(root, name, age=0.0):
    ckpt = root / "pips" / name / "checkpoints" / "best.ckpt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"x")
    stamp = time.time() - age
    os.utime(ckpt.parents[1], (stamp, stamp))
    return ckpt


def test_an_overlay_run_without_checkpoints_falls_back_to_the_first_config_run(tmp_path):
    older = run_with_checkpoint(tmp_path, "quick", age=100)
    newer = run_with_checkpoint(tmp_path, "quick_v1")
    cfg = OmegaConf.create({"output_dir": str(tmp_path), "method": "pips", "run_name": "quick+footage"})
    assert newest_checkpoint(cfg) == newer != older
    own = run_with_checkpoint(tmp_path, "quick+footage", age=1000)  # a run of the overlay itself wins
    assert newest_checkpoint(cfg) == own


def test_no_checkpoint_names_every_run_it_looked_for(tmp_path):
    cfg = OmegaConf.create({"output_dir": str(tmp_path), "method": "pips", "run_name": "quick+footage"})
    with pytest.raises(UserError, match="no checkpoint for run 'quick\\+footage' or 'quick'"):
        newest_checkpoint(cfg)
