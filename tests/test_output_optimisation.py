"""The output-optimisation protocol on toy problems whose answers are known: per-instance and
per-video callbacks, several starts, stages, L-BFGS per instance, early stopping."""
from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from callbacks.output_optimisation import (OptimiseConfig, PerInstanceOptimisation, PerVideoOptimisation, StageConfig,
                                           output_optimisation, run_stages)
from datamodules.videos import VideoSpan
from framework.errors import UserError
from framework.optimisation import make_optimiser, minimise
from lightning_modules.base import MethodModule
from lightning_modules.capabilities import OutputOptimisation
from tests.tiny import tiny_iso


class Targets(Dataset):
    """Scalar targets in videos: row i belongs to video ``videos[i]``; ``tilt`` picks the deeper
    well of the double-well problem per row."""

    def __init__(self, targets, videos=None, tilt=None):
        self.targets = torch.as_tensor(targets, dtype=torch.float32).reshape(-1, 1)
        n = len(self.targets)
        self.video_of = torch.as_tensor(videos if videos is not None else [0] * n)
        self.tilt = torch.as_tensor(tilt if tilt is not None else [0.0] * n, dtype=torch.float32)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return {"target": self.targets[i], "video": self.video_of[i], "tilt": self.tilt[i], "index": torch.tensor(i)}

    def videos(self):
        spans = {}
        for i, v in enumerate(self.video_of.tolist()):
            spans.setdefault(v, VideoSpan(str(v), [])).indices.append(i)
        return spans


class Toy(MethodModule, OutputOptimisation):
    """Variables x (B, 1). Terms: ``fit`` (x - target)^2; ``well`` (x^2 - 1)^2 + tilt x, whose two
    minima are near -1 and +1 (the deeper one on the side against the tilt); ``pull`` (x + 1)^2.
    Video term ``smooth``: squared differences of consecutive frames."""

    method = "toy"

    def __init__(self, starts=(0.0,), smooth=0.0, terms=("fit",)):
        super().__init__("toy", {})
        self.starts, self.smooth, self.terms = starts, smooth, terms
        self.scale = torch.nn.Parameter(torch.ones(()))  # a weight that must never move
        self.seen: list[float] = []

    def predict(self, batch):
        return {"x": torch.zeros_like(batch["target"])}

    test_metrics = None  # what it scores is recorded in ``seen``

    def update_metrics(self, metrics, outputs, batch):
        self.seen.extend(outputs["x"].flatten().tolist())

    def initial_variables(self, batch):
        return [{"x": torch.full_like(batch["target"], s)} for s in self.starts]

    def variable_losses(self, variables, batch):
        x = variables["x"][:, 0] * self.scale
        all_terms = {"fit": (x - batch["target"][:, 0]) ** 2, "well": (x ** 2 - 1) ** 2 + batch["tilt"] * x,
                     "pull": (x + 1) ** 2}
        return {k: all_terms[k] for k in self.terms}

    def variable_outputs(self, variables, batch):
        return {"x": variables["x"] * self.scale}

    def video_losses(self, variables, batch):
        if not self.smooth:
            return {}
        x = variables["x"][:, 0]
        return {"smooth": self.smooth * ((x[1:] - x[:-1]) ** 2).sum()}


def run(callback, module, dataset, batch_size=4):
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, callbacks=[callback])
    trainer.test(module, dataloaders=DataLoader(dataset, batch_size=batch_size, shuffle=False), verbose=False)
    return torch.tensor(module.seen)


def test_per_instance_optimisation_recovers_each_instance_minimum_and_leaves_weights_alone():
    targets = [0.5, -2.0, 3.0, 1.5, -0.25]
    module = Toy()
    x = run(PerInstanceOptimisation({"lr": 0.1, "stages": [{"iterations": 300}]}), module, Targets(targets))
    assert torch.allclose(x, torch.tensor(targets), atol=1e-3)
    assert module.scale.item() == 1.0 and module.scale.grad is None


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_the_best_start_is_kept_per_instance(optimizer):
    # tilt > 0 makes the well near -1 deeper, tilt < 0 the one near +1; each start falls into its own side's well
    tilt = [0.5, -0.5, 0.5, -0.5]
    module = Toy(starts=(-1.5, 1.5), terms=("well",))
    callback = PerInstanceOptimisation({"optimizer": optimizer, "lr": 0.05 if optimizer == "adam" else 1.0,
                                        "stages": [{"iterations": 200 if optimizer == "adam" else 30}]})
    x = run(callback, module, Targets([0.0] * 4, tilt=tilt))
    assert (x[[0, 2]] < -0.8).all() and (x[[1, 3]] > 0.8).all()
    assert callback.summary()["start_wins"] == {"0": 2, "1": 2}


def test_lbfgs_gives_each_instance_the_same_result_alone_and_in_a_batch():
    targets, tilt = [0.3, -1.7, 2.2, 0.9], [0.2, -0.4, 0.1, 0.3]
    cfg = {"optimizer": "lbfgs", "lr": 1.0, "stages": [{"iterations": 8}]}
    together = run(PerInstanceOptimisation(cfg), Toy(starts=(0.1,), terms=("fit", "well")), Targets(targets, tilt=tilt))
    alone = torch.cat([run(PerInstanceOptimisation(cfg), Toy(starts=(0.1,), terms=("fit", "well")),
                           Targets([t], tilt=[w])) for t, w in zip(targets, tilt)])
    assert torch.equal(together, alone)


def test_one_lbfgs_problem_over_a_batch_would_couple_the_instances():
    """Why the callback splits L-BFGS per instance: its shared line search and history do couple them."""
    targets = torch.tensor([0.3, -1.7, 2.2, 0.9])

    def solve(t):
        x = torch.full((len(t),), 0.1, requires_grad=True)
        opt = make_optimiser("lbfgs", [x], 1.0)
        minimise(lambda step, part: (((x ** 2 - 1) ** 2) + (x - t) ** 2).sum(), [x], opt, 3)
        return x.detach()

    batched = solve(targets)
    alone = torch.cat([solve(targets[i:i + 1]) for i in range(4)])
    assert not torch.allclose(batched, alone, atol=1e-4)


def test_stages_apply_their_weights_in_order():
    def final(stages):
        module = Toy(terms=("fit", "pull"))
        return run(PerInstanceOptimisation({"lr": 0.1, "stages": stages}), module, Targets([1.0]))[0].item()

    fit_then_pull = [{"iterations": 200, "weights": {"pull": 0.0}}, {"iterations": 200, "weights": {"fit": 0.0}}]
    pull_then_fit = [{"iterations": 200, "weights": {"fit": 0.0}}, {"iterations": 200, "weights": {"pull": 0.0}}]
    assert final(fit_then_pull) == pytest.approx(-1.0, abs=1e-2)
    assert final(pull_then_fit) == pytest.approx(1.0, abs=1e-2)


def test_a_stage_stops_per_instance_on_the_relative_tolerance():
    cfg = OptimiseConfig(optimizer="sgd", lr=0.25, tolerance=1e-3, stages=[StageConfig(iterations=500)])
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    module = Toy()
    batch = {"target": torch.tensor([[0.0], [100.0]]), "tilt": torch.zeros(2)}
    variables, _, iterations = run_stages(lambda v: module.variable_losses(v, batch), {"x": torch.zeros(2, 1)}, cfg,
                                          trainer)
    x = variables["x"]
    assert iterations[0] < 500  # both settled long before the stage's end
    assert x[0, 0].item() == 0.0  # already at its minimum: held there from the first step
    assert x[1, 0].item() == pytest.approx(100.0, rel=1e-2)


def test_per_video_terms_couple_only_the_frames_of_one_video():
    # two videos; a strong smoothness term pulls each video's frames to that video's mean target
    targets = [0.0, 1.0, 2.0, 10.0, 11.0, 12.0, 13.0]
    videos = [0, 0, 0, 1, 1, 1, 1]
    module = Toy(smooth=100.0)
    callback = PerVideoOptimisation({"lr": 0.05, "stages": [{"iterations": 1500}]})
    x = run(callback, module, Targets(targets, videos), batch_size=2)  # videos span batches
    assert torch.allclose(x[:3], torch.tensor(1.0), atol=0.05)
    assert torch.allclose(x[3:], torch.tensor(11.5), atol=0.05)
    reports = callback.summary()["videos"]
    assert [r["video"] for r in reports] == [0, 1] and [r["frames"] for r in reports] == [3, 4]


def test_windows_are_problems_of_their_own():
    # one video of six frames in windows of two: the smoothness couples the frames of a window only
    module = Toy(smooth=100.0)
    callback = PerVideoOptimisation({"lr": 0.05, "window": 2, "stages": [{"iterations": 1500}]})
    x = run(callback, module, Targets([0.0, 1.0, 2.0, 3.0, 10.0, 11.0], [0] * 6), batch_size=4)
    assert x.flatten().tolist() == pytest.approx([0.5, 0.5, 2.5, 2.5, 10.5, 10.5], abs=0.05)
    report = callback.summary()["videos"][0]
    assert report["frames"] == 6 and report["windows"] == 3 and len(report["iterations"]) == 3


class Tied(Toy):
    """x is one value per video problem."""

    tied_variables = ("x",)


def test_a_tied_variable_is_one_value_per_window():
    module = Tied()
    callback = PerVideoOptimisation({"lr": 0.05, "window": 3, "stages": [{"iterations": 1500}]})
    x = run(callback, module, Targets([0.0, 1.0, 2.0, 4.0, 5.0, 9.0], [0] * 6), batch_size=6)
    # the least-squares value of each window: its targets' mean
    assert x.flatten().tolist() == pytest.approx([1.0, 1.0, 1.0, 6.0, 6.0, 6.0], abs=0.02)


def test_frames_first_starts_each_window_from_its_frames_own_best_fits():
    # the deeper well is at -1 for frame 0 and at +1 for frame 1; a start shared by both frames
    # sends both to one side, so one of them ends in its shallow well; fitting each frame first
    # (best of both starts, each frame on its own) finds both deep wells and the weak smoothness keeps them
    data = Targets([0.0, 0.0], [0, 0], tilt=[0.5, -0.5])
    stages = [{"iterations": 400, "weights": {"well": 1.0, "smooth": 1.0}}]
    together = run(PerVideoOptimisation({"lr": 0.02, "stages": stages}),
                   Toy(starts=(-2.0, 2.0), smooth=0.01, terms=("well",)), data, batch_size=2)
    assert torch.sign(together[0]) == torch.sign(together[1])
    first = run(PerVideoOptimisation({"lr": 0.02, "frames_first": True, "stages": stages}),
                Toy(starts=(-2.0, 2.0), smooth=0.01, terms=("well",)), data, batch_size=2)
    assert first.flatten().tolist() == pytest.approx([-1.0, 1.0], abs=0.15)
    # the frames' own fits may follow a schedule of their own: one that weighs nothing leaves every
    # start as good as the first, so both frames start from it and end in one well
    short = run(PerVideoOptimisation({"lr": 0.02, "frames_first": True, "stages": stages,
                                      "frame_stages": [{"iterations": 2, "weights": {"well": 0.0}}]}),
                Toy(starts=(-2.0, 2.0), smooth=0.01, terms=("well",)), data, batch_size=2)
    assert torch.sign(short[0]) == torch.sign(short[1])


def test_the_instance_or_video_choice():
    assert isinstance(output_optimisation({"per": "video", "window": 4}), PerVideoOptimisation)
    assert type(output_optimisation({"stages": [{"iterations": 3}]})) is PerInstanceOptimisation
    with pytest.raises(UserError, match="adaptation.window, adaptation.frames_first and adaptation.frame_stages work "
                                        "on videos: set adaptation.per=video"):
        output_optimisation({"window": 4})
    with pytest.raises(UserError, match=r"adaptation.stages\[0\].iterations: must be at least 1"):
        output_optimisation({"per": "video", "frames_first": True, "frame_stages": [{"iterations": 0}]})
    with pytest.raises(UserError, match="adaptation.per: must be instance or video, got 'frame'"):
        output_optimisation({"per": "frame"})
    with pytest.raises(UserError, match=r"adaptation.window: must be >= 0 \(0: the whole video\), got -1"):
        output_optimisation({"per": "video", "window": -1})


def test_bad_settings_and_modules_give_one_clear_error():
    with pytest.raises(UserError, match=r"adaptation.optimise.stages\[1\].iterations"):
        PerInstanceOptimisation({"stages": [{"iterations": 5}, {"iterations": 0}]})
    with pytest.raises(UserError, match="adaptation.optimise.optimizer"):
        PerInstanceOptimisation({"optimizer": "newton"})
    with pytest.raises(UserError, match=r"stages\[0\].weights: no term named fitt"):
        run(PerInstanceOptimisation({"stages": [{"iterations": 2, "weights": {"fitt": 1.0}}]}), Toy(), Targets([1.0]))
    with pytest.raises(UserError, match="method 'iso' cannot be adapted by PerVideoOptimisation: it does not declare "
                                        "OutputOptimisation"):
        PerVideoOptimisation({}).on_test_start(None, tiny_iso())


class VideoData(pl.LightningDataModule):
    """Test rows by whole videos per rank, as the framework's datamodules hand them out under DDP."""

    def __init__(self, dataset):
        super().__init__()
        self.dataset = dataset

    def test_dataloader(self):
        from datamodules.sampling import VideoShardSampler
        spans = self.dataset.videos()
        sampler = VideoShardSampler(self.dataset, [spans[v].indices for v in sorted(spans)],
                                    self.trainer.world_size, self.trainer.global_rank)
        return DataLoader(self.dataset, batch_size=2, sampler=sampler)


class Reporting(PerVideoOptimisation):
    """Writes what this rank optimised, and the gathered report, where the test can read them."""

    def __init__(self, cfg, folder):
        super().__init__(cfg)
        self.folder = folder

    def on_test_end(self, trainer, pl_module):
        mine = [r["video"] for r in self.reports]
        super().on_test_end(trainer, pl_module)
        import json
        (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(
            {"optimised": mine, "reported": [r["video"] for r in self.summary()["videos"]],
             "seen": pl_module.seen}))


def test_under_two_process_ddp_every_video_is_optimised_once_and_reported_once(tmp_path):
    import json
    targets = [0.0, 1.0, 2.0, 10.0, 11.0, 5.0, 6.0, 7.0, 8.0]
    videos = [0, 0, 0, 1, 1, 2, 2, 2, 2]
    callback = Reporting({"lr": 0.05, "stages": [{"iterations": 600}]}, tmp_path)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, enable_model_summary=False, callbacks=[callback])
    trainer.test(Toy(smooth=100.0), datamodule=VideoData(Targets(targets, videos)), verbose=False)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(ranks[0]["optimised"] + ranks[1]["optimised"]) == [0, 1, 2]  # each video on one rank only
    assert ranks[0]["reported"] == ranks[1]["reported"] == [0, 1, 2]  # every rank's report lists each once
    seen = sorted(ranks[0]["seen"] + ranks[1]["seen"])
    means = sorted([1.0] * 3 + [10.5] * 2 + [6.5] * 4)  # each frame pulled to its own video's mean
    assert seen == pytest.approx(means, abs=0.1)
