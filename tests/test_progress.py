"""What a user sees while a run works: the epoch count while training, and bars for test-time work
(which happens inside one test batch, where Lightning's test bar does not move)."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from callbacks.output_optimisation import PerVideoOptimisation
from framework import progress
from framework.optimisation import minimise
from framework.progress import EpochProgressBar
from tests.test_output_optimisation import Targets, Toy


class Line(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Recording(EpochProgressBar):
    def __init__(self):
        super().__init__()
        self.descriptions, self.shown = [], []

    def on_train_epoch_start(self, trainer, *args):
        super().on_train_epoch_start(trainer, *args)
        self.descriptions.append(self.train_progress_bar.desc.rstrip(": "))

    def on_train_batch_end(self, trainer, pl_module, *args):
        super().on_train_batch_end(trainer, pl_module, *args)
        self.shown.append(set(self.get_metrics(trainer, pl_module)))


def test_training_counts_epochs_from_one_of_all_and_hides_the_version(tmp_path):
    bar = Recording()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=pl.loggers.CSVLogger(tmp_path), callbacks=[bar],
                         enable_checkpointing=False, enable_model_summary=False)
    trainer.fit(Line(), DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=2))
    assert bar.descriptions == ["Epoch 1/2", "Epoch 2/2"]
    assert all("v_num" not in keys and "loss" in keys for keys in bar.shown)


class Bars:
    """Stands in for tqdm: records each bar's description, total, count and last postfix."""

    def __init__(self):
        self.made = []

    def __call__(self, total=None, desc="", **kwargs):
        bars = self

        class Bar:
            def __init__(self):
                self.desc, self.total, self.n, self.postfix, self.closed = desc, total, 0, {}, False
                bars.made.append(self)

            def update(self, n=1):
                self.n += n

            def set_postfix(self, refresh=True, **items):
                self.postfix = items

            def set_description(self, text):
                self.desc = text

            def close(self):
                self.closed = True

        return Bar()


def test_minimise_shows_its_steps_and_loss_only_when_bars_are_on(monkeypatch):
    import tqdm.auto
    bars = Bars()
    monkeypatch.setattr(tqdm.auto, "tqdm", bars)
    x = torch.nn.Parameter(torch.ones(1))

    def run(desc):
        x.data.fill_(1.0)
        minimise(lambda step, part: (x ** 2).sum(), [x], torch.optim.SGD([x], lr=0.1), 5, desc=desc)

    monkeypatch.setattr(progress, "_shown", False)
    run("quiet")
    assert bars.made == []
    monkeypatch.setattr(progress, "_shown", True)
    run("fine-tuning")
    (bar,) = bars.made
    assert (bar.desc, bar.total, bar.n, bar.closed) == ("fine-tuning", 5, 5, True)
    assert float(bar.postfix["loss"]) == pytest.approx(0.8 ** 8, rel=1e-3)  # the fifth step's loss: x = 0.8^4


def test_per_video_work_shows_the_videos_and_the_optimisation_stages(monkeypatch):
    import tqdm.auto
    bars = Bars()
    monkeypatch.setattr(tqdm.auto, "tqdm", bars)
    monkeypatch.setattr(progress, "terminal", lambda: True)
    callback = PerVideoOptimisation({"lr": 0.05, "stages": [{"iterations": 20}, {"iterations": 10}]})
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_model_summary=False,
                         callbacks=[callback])
    trainer.test(Toy(smooth=1.0), dataloaders=DataLoader(Targets([0.0, 1.0, 2.0], [0, 0, 1]), batch_size=2),
                 verbose=False)
    videos = [b for b in bars.made if b.desc.startswith("adapting video")]
    assert len(videos) == 1 and (videos[0].total, videos[0].n, videos[0].desc) == (2, 2, "adapting video 2")
    stages = [(b.desc, b.total, b.n) for b in bars.made if b.desc.startswith("optimising")]
    assert stages == [("optimising, stage 1/2", 20, 20), ("optimising, stage 2/2", 10, 10)] * 2  # two videos
    assert all(b.closed for b in bars.made)
    assert not progress._shown  # the test ended: bars are off again
    monkeypatch.setattr(progress, "terminal", lambda: False)  # a log file: no bars
    bars.made.clear()
    trainer.test(Toy(smooth=1.0), dataloaders=DataLoader(Targets([0.0, 1.0, 2.0], [0, 0, 1]), batch_size=2),
                 verbose=False)
    assert bars.made == []
