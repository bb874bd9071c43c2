"""What train.py and adapt.py say around a run: warnings a user can act on, nothing else."""
from __future__ import annotations

import logging
import warnings

import pytest
from omegaconf import OmegaConf

from framework.cli import build_trainer, quiet_lightning
from framework.config import TrainerConfig


def cfg_with(**trainer):
    return OmegaConf.create({"trainer": OmegaConf.structured(TrainerConfig(accelerator="cpu", devices=1, **trainer))})


def test_bf16_on_a_cpu_is_warned_about_once_and_fp32_is_not(tmp_path):
    with pytest.warns(UserWarning, match="bf16-mixed on a CPU runs these models many times slower"):
        build_trainer(cfg_with(precision="bf16-mixed"), tmp_path, [], [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_trainer(cfg_with(precision="32-true", enable_progress_bar=False), tmp_path, [], [])


def test_lightning_tips_are_dropped_and_real_messages_kept(caplog):
    quiet_lightning()
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    with caplog.at_level(logging.INFO, logger="pytorch_lightning.utilities.rank_zero"):
        log.info("💡 Tip: For seamless cloud logging, try installing litlogger")
        log.info("`Trainer.fit` stopped: `max_epochs=1` reached.")
    assert [r.getMessage() for r in caplog.records] == ["`Trainer.fit` stopped: `max_epochs=1` reached."]


def test_a_corrupt_video_gives_our_error_and_no_ffmpeg_chatter(tmp_path):
    import subprocess
    import sys
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(bytes(range(256)) * 20)  # not a video
    code = ("from datamodules.readers.footage import UserFootage\n"
            "from framework.errors import UserError\n"
            f"try:\n    UserFootage({str(bad)!r})\nexcept UserError as e:\n    print(e)\n")
    from tests.commands import ROOT
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "clip.mp4" in proc.stdout and "moov atom" not in proc.stderr and proc.stderr.strip() == ""


def test_logger_settings_are_checked_in_the_common_format(tmp_path):
    from framework.config import load_config
    from framework.errors import UserError
    from framework.loggers import build_loggers
    from framework.methods import schema_for
    from tests.commands import QUICK
    for override, message in (("logger.kinds=[csv,carrier_pigeon]", "logger.kinds: unknown logger 'carrier_pigeon'"),
                              ("logger.wandb.mode=loud",
                               "logger.wandb.mode: must be one of auto, online, offline, disabled, got 'loud'")):
        cfg = load_config([QUICK], [override, "logger.kinds=[wandb]" if "mode" in override else override], schema_for)
        with pytest.raises(UserError, match=message):
            build_loggers(cfg, tmp_path)
