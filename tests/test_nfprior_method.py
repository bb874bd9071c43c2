"""The NF-prior regressor: its fully and weakly supervised losses, the prior it takes from a
pose_prior checkpoint, refinement from its predictions, and train.py / adapt.py end to end."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from datamodules.people_crops import PeopleCropsDataModule
from datamodules.pose_priors import PosePriorDataModule
from framework.errors import UserError
from lightning_modules.nfprior import NFRegressorModule
from lightning_modules.pose_prior import PosePriorModule
from tests.commands import NFPRIOR_QUICK, NFPRIOR_TINY, cli, report

NET = {"width": 8, "kernel": 3, "convs": 1, "stages": 2, "backbone": 8}
PEOPLE = {"width": 96, "height": 96, "frames": 4}


@pytest.fixture(scope="module")
def prior_ckpt(tmp_path_factory) -> str:
    """A two-step flow prior trained for a few steps (the pose_prior stage's checkpoint)."""
    folder = tmp_path_factory.mktemp("prior")
    torch.manual_seed(0)
    module = PosePriorModule("pose_prior", {"steps": 2, "hidden": 16})
    trainer = pl.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, default_root_dir=folder)
    trainer.fit(module, datamodule=PosePriorDataModule({"source": {"sequences": 10, "frames": 5}, "val_every": 5}))
    trainer.save_checkpoint(folder / "prior.ckpt")
    return str(folder / "prior.ckpt")


def crops_batch(n: int = 4, domain: str = "source") -> dict:
    dm = PeopleCropsDataModule({"source": {"size": 64, "people": {"preset": "studio", **PEOPLE}},
                                "target": {"size": 64, "people": {"preset": "street", **PEOPLE}},
                                "train_videos": 2, "val_videos": 1, "test_videos": 1})
    data = dm.domain_dataset(domain, "train")
    return {k: torch.stack([data[i][k] for i in range(n)]) for k in data[0]}


def test_full_supervision_has_every_term_and_training_lowers_it(prior_ckpt):
    torch.manual_seed(0)
    module = NFRegressorModule("nfprior", {**NET, "prior_checkpoint": prior_ckpt})
    assert not any(p.requires_grad for p in module.prior.parameters())  # the prior is frozen
    batch = crops_batch()
    terms = module.losses(module.net(batch["image"]), batch)
    assert set(terms) == {"heatmaps", "parts", "vertices", "pose", "shape", "keypoints", "alignment", "prior", "betas"}
    assert all(torch.isfinite(v) for v in terms.values())
    optimiser = torch.optim.Adam(module.net.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        terms = module.losses(module.net(batch["image"]), batch)
        loss = sum(getattr(module.cfg.weights, k) * v for k, v in terms.items())
        loss.backward()
        optimiser.step()
        losses.append(float(loss))
    assert losses[-1] < 0.8 * losses[0]


def test_weak_supervision_uses_only_the_2d_labels(prior_ckpt):
    module = NFRegressorModule("nfprior", {**NET, "prior_checkpoint": prior_ckpt, "supervision": "weak",
                                           "predicted_masks": True})
    batch = crops_batch(domain="target")
    for key in ("pose", "betas", "global_orient", "transl", "joints3d"):
        batch.pop(key)  # a weakly labelled set has none of these
    terms = module.losses(module.net(batch["image"]), batch)
    assert set(terms) == {"heatmaps", "parts", "keypoints", "alignment", "prior", "betas"}


def test_refinement_starts_from_the_prediction_and_can_add_four_headings(prior_ckpt):
    module = NFRegressorModule("nfprior", {**NET, "prior_checkpoint": prior_ckpt, "starts": "both"}).eval()
    batch = crops_batch(2)
    starts = module.initial_variables(batch)
    assert len(starts) == 5 and starts[0]["pose"].shape == (2, module.prior.dim)
    with torch.no_grad():
        predicted = module.predict(batch)
        again = module.variable_outputs(starts[0], batch)
    # the same body, placed over the crop's keypoints (which the refinement fits) instead of the predicted ones
    relative = lambda j: j - j[:, :1]  # noqa: E731
    assert torch.allclose(relative(predicted["joints3d"]), relative(again["joints3d"]), atol=1e-5)
    assert (again["keypoints2d"] - batch["keypoints"]).norm(dim=-1).mean() < (
        predicted["keypoints2d"] - batch["keypoints"]).norm(dim=-1).mean()
    ambient = NFRegressorModule("nfprior", {**NET, "prior_checkpoint": prior_ckpt, "output": "ambient"})
    assert ambient.initial_variables(batch)[0]["pose"].shape == (2, module.prior.dim)  # mapped into the latent


def test_refinement_can_fit_the_networks_own_keypoints_and_parts(prior_ckpt):
    from callbacks.output_optimisation import PerInstanceOptimisation
    from callbacks.test_time import ADAPTED_OUTPUTS
    labels = NFRegressorModule("nfprior", {**NET, "prior_checkpoint": prior_ckpt}).eval()
    module = NFRegressorModule("nfprior", {**NET, "prior_checkpoint": prior_ckpt, "evidence": "predicted"}).eval()
    module.load_state_dict(labels.state_dict())
    batch = crops_batch(2, domain="target")
    assert labels.evidence(batch) is batch
    seen = module.evidence(batch)
    assert seen["part_mask"].shape == batch["part_mask"].shape and seen["keypoint_visible"].dtype == torch.float32
    assert not torch.equal(seen["keypoints"], batch["keypoints"]) and torch.equal(seen["image"], batch["image"])

    def fitted(m):
        rows = dict(batch)
        callback = PerInstanceOptimisation({"lr": 0.05, "stages": [{"iterations": 60}]})
        callback.on_test_start(pl.Trainer(accelerator="cpu", logger=False), m)
        callback.on_test_batch_start(pl.Trainer(accelerator="cpu", logger=False), m, rows, 0)
        return rows[ADAPTED_OUTPUTS]["keypoints2d"]

    weight = seen["keypoint_visible"][..., None]
    distance = lambda a, b: float(((a - b).norm(dim=-1, keepdim=True) * weight).sum() / weight.sum())  # noqa: E731
    # each fit lands nearer the evidence it was given
    assert distance(fitted(module), seen["keypoints"]) < distance(fitted(labels), seen["keypoints"])
    assert distance(fitted(labels), batch["keypoints"]) < distance(fitted(module), batch["keypoints"])


def test_per_video_refinement_fits_predicted_evidence_inside_the_test_loop(prior_ckpt):
    from torch.utils.data import DataLoader
    from callbacks.output_optimisation import PerVideoOptimisation
    module = NFRegressorModule("nfprior", {**NET, "prior_checkpoint": prior_ckpt, "evidence": "predicted",
                                           "fit": {"part_alignment": True}})
    dm = PeopleCropsDataModule({"target": {"size": 64, "crops_per_video": 3, "people": {"preset": "street", **PEOPLE}},
                                "test_videos": 1}, test_domain="target")
    callback = PerVideoOptimisation({"lr": 0.05, "frames_first": True, "stages": [
        {"iterations": 5, "weights": {"smoothness": 5.0}}]})
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[callback])
    trainer.test(module, dataloaders=DataLoader(dm.domain_dataset("target", "test"), batch_size=2), verbose=False)
    assert [(v["frames"], v["windows"]) for v in callback.summary()["videos"]] == [(3, 1)]


def test_bad_settings_are_one_error(prior_ckpt, tmp_path):
    with pytest.raises(UserError, match="model.prior_checkpoint: .*nowhere.ckpt does not exist; train the prior"):
        NFRegressorModule("nfprior", {**NET, "prior_checkpoint": str(tmp_path / "nowhere.ckpt")})
    with pytest.raises(UserError, match="model.output=latent needs a flow prior"):
        NFRegressorModule("nfprior", {**NET, "prior_checkpoint": None})
    regressor = NFRegressorModule("nfprior", {**NET, "prior_checkpoint": prior_ckpt})
    trainer = pl.Trainer(accelerator="cpu", logger=False)
    trainer.strategy.connect(regressor)
    trainer.save_checkpoint(tmp_path / "regressor.ckpt")
    with pytest.raises(UserError, match="is not a pose_prior checkpoint"):
        NFRegressorModule("nfprior", {**NET, "prior_checkpoint": str(tmp_path / "regressor.ckpt")})
    with pytest.raises(UserError, match="model.init_from: .* another network size"):
        NFRegressorModule("nfprior", {**NET, "width": 16, "prior_checkpoint": prior_ckpt,
                                      "init_from": str(tmp_path / "regressor.ckpt")})
    with pytest.raises(UserError, match="model.weights.prior"):
        NFRegressorModule("nfprior", {**NET, "prior_checkpoint": prior_ckpt, "weights": {"prior": -1}})
    with pytest.raises(UserError, match="model.evidence"):
        NFRegressorModule("nfprior", {**NET, "prior_checkpoint": prior_ckpt, "evidence": "guesses"})
    batch = crops_batch(2)
    batch["part_mask"] = batch["part_mask"][:, ::2, ::2]
    with pytest.raises(UserError, match=r"part_mask is 32 x 32 \(W x H\) but the image is 64 x 64"):
        regressor.training_step(batch, 0)
    with pytest.raises(UserError, match="part_mask is 32 x 32"):
        regressor.initial_variables(batch)
    batch = crops_batch(2)
    batch["keypoints"][1, 3] = float("nan")
    with pytest.raises(UserError, match=r"input 'keypoints' contains NaN or Inf \(samples \[1\]\)"):
        regressor.training_step(batch, 0)


def test_train_and_adapt_end_to_end_with_a_prior(prior_ckpt, tmp_path):
    tiny = [o for o in NFPRIOR_TINY if not o.startswith(("model.prior_checkpoint", "model.output"))]
    common = (f"model.prior_checkpoint={prior_ckpt}",)
    cli("train.py", tmp_path, *common, config=NFPRIOR_QUICK, tiny=tuple(tiny))
    ckpt = tmp_path / "nfprior" / "quick" / "checkpoints" / "best.ckpt"
    cli("train.py", tmp_path, *common, "data.train_domain=target", "model.supervision=weak", f"model.init_from={ckpt}",
        "run_name=quick_weak", config=NFPRIOR_QUICK, tiny=tuple(tiny))
    cli("adapt.py", tmp_path, *common, f"ckpt={tmp_path / 'nfprior' / 'quick_weak' / 'checkpoints' / 'best.ckpt'}",
        "adaptation.stages.0.iterations=100", config=NFPRIOR_QUICK, tiny=tuple(tiny))
    rep = report(tmp_path / "nfprior" / "quick_adapt")
    assert {"mpjpe", "pa_mpjpe", "mpvpe", "joints2d_error", "part_iou"} <= set(rep["after"])
    assert rep["after"]["joints2d_error"] < rep["before"]["joints2d_error"]
    assert np.isfinite(rep["after"]["mpjpe"])
    # per video: each video's two frames one problem, the shape tied, the smoothness 50x the prior
    cli("adapt.py", tmp_path, *common, f"ckpt={ckpt}", "adaptation.per=video", "adaptation.frames_first=true",
        "adaptation.stages.0.weights.smoothness=50", "run_name=quick_video", config=NFPRIOR_QUICK, tiny=tuple(tiny))
    rep = report(tmp_path / "nfprior" / "quick_video_adapt")
    videos = rep["adaptation"]["summary"]["videos"]
    assert [(v["frames"], v["windows"]) for v in videos] == [(2, 1)]
    assert rep["after"]["joints2d_error"] < rep["before"]["joints2d_error"]
