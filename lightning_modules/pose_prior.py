"""The pose prior as a method stage (Zanfir et al. 2020, section 2.1): train.py learns it by
maximum likelihood on a pose collection; adapt.py fits bodies to the target crops' 2D evidence
with it, from zero with several headings (their Table 1 experiment). The regressor method loads
a checkpoint of this stage for its losses and its own refinement.

``model.kind``: ``realnvp`` / ``prelu`` (normalizing flows; latent or ambient fitting),
``gmm`` (fitted by EM on the training poses when training starts; ambient) or ``none``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch
from torchmetrics import MeanMetric, MetricCollection

from framework.checks import OneOf, at_least, check
from framework.config import method_schema, to_plain
from framework.errors import UserError
from framework.methods import MethodSpec, register
from lightning_modules.base import MethodModule
from lightning_modules.body_fitting import BodyFitting, FitConfig, fit_metric_collection, to_representation, validate_fit_config
from nets.pose_prior import GMMPrior, NoPrior, NormalizingFlowPrior
from nets.smpl import body_model_from_config

PRIOR_KINDS = ("realnvp", "prelu", "gmm", "none")
REPRESENTATIONS = {"aa": 3, "6d": 6}


@dataclass
class PosePriorModelConfig:
    kind: str = "realnvp"  # realnvp | prelu | gmm | none
    representation: str = "aa"  # aa (angle-axis) | 6d
    steps: int = 8  # flow steps (a dense layer and a coupling / PReLU each)
    hidden: int = 128  # width of the coupling networks
    components: int = 8  # gmm modes (SMPLify's 8)
    gmm_iterations: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    # std of Gaussian noise added to the training poses: 6D vectors of rotations lie on a 3D
    # manifold per joint, where a flow's density would grow without bound; a little noise keeps it proper
    noise: float = 0.0
    body_model: Optional[str] = None  # None: the procedural body; a path: an SMPL model .npz
    seed: int = 0
    fit: FitConfig = field(default_factory=FitConfig)


def make_prior(c: PosePriorModelConfig, joints: int) -> torch.nn.Module:
    rep = REPRESENTATIONS[c.representation]
    if c.kind in ("realnvp", "prelu"):
        return NormalizingFlowPrior(joints, rep, c.kind, c.steps, c.hidden, c.seed)
    if c.kind == "gmm":
        return GMMPrior(joints, rep, c.components)
    return NoPrior(joints, rep)


class PosePriorModule(MethodModule, BodyFitting):
    method = "pose_prior"

    def __init__(self, method: str, model: dict, **extra):
        super().__init__(method, model, **extra)
        model = dict(model)
        self.cfg = c = PosePriorModelConfig(**{**model, "fit": FitConfig(**model.get("fit", {}))})
        check(c, "model", kind=OneOf(PRIOR_KINDS), representation=OneOf(tuple(REPRESENTATIONS)), steps=at_least(1),
              hidden=at_least(1), components=at_least(1), gmm_iterations=at_least(1), noise=at_least(0.0))
        validate_fit_config(c.fit)
        self.fit_cfg, self.prior_rep = c.fit, REPRESENTATIONS[c.representation]
        self.body = body_model_from_config(c.body_model)
        self.prior = make_prior(c, len(self.body.pose_joints))
        self.val_metrics = MetricCollection({"nll": MeanMetric()})
        self.test_metrics = MetricCollection({"nll": MeanMetric(), **fit_metric_collection(len(self.body.part_names))},
                                             compute_groups=False)

    # ---------------------------------------------------------------- the prior
    def poses(self, batch: dict) -> torch.Tensor:
        pose = batch["pose"].float()
        if pose.shape[-2] != len(self.body.pose_joints):
            raise UserError(f"data.source: the collection's poses have {pose.shape[-2]} joints; the body model "
                            f"(model.body_model={self.cfg.body_model}) poses {len(self.body.pose_joints)}")
        return to_representation(pose, self.prior_rep)

    def on_fit_start(self) -> None:
        poses = lambda: self.poses({"pose": self.trainer.datamodule.domain_dataset("source", "train").pose})  # noqa: E731
        if self.cfg.kind == "gmm":
            self.prior.fit(poses(), self.cfg.gmm_iterations, self.cfg.seed)
        elif isinstance(self.prior, NormalizingFlowPrior) and not bool(self.prior.normalised):
            self.prior.set_normalisation(poses())

    def configure_optimizers(self):
        if not isinstance(self.prior, NormalizingFlowPrior):
            return None  # nothing learnt by gradient: the GMM is fitted by EM
        return torch.optim.AdamW(self.prior.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def training_step(self, batch: dict, batch_idx: int) -> Optional[torch.Tensor]:
        if not isinstance(self.prior, NormalizingFlowPrior):
            return None
        self.check_batch(batch)
        x = self.poses(batch)
        if self.cfg.noise > 0:
            x = x + self.cfg.noise * torch.randn_like(x)
        loss = self.prior.nll(x).mean()
        self.log("train/nll", loss, batch_size=x.shape[0])
        return loss

    # ---------------------------------------------------------------- protocol
    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """A pose batch: each pose's -log p. A crop batch: the body fitting starts from."""
        if "keypoints" in batch:
            return self.fitted_start(batch)
        return {"nll": self.prior.nll(self.poses(batch))}

    def update_metrics(self, metrics, outputs: dict, batch: dict) -> None:
        if "nll" in outputs:
            metrics["nll"].update(outputs["nll"])
        else:
            self.update_fit_metrics(metrics, outputs, batch)

    def on_validation_epoch_end(self) -> None:
        self.log_metrics(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self.log_metrics(self.test_metrics, self.test_stage, updated_only=True)


@register("pose_prior")
def method() -> MethodSpec:
    from callbacks.output_optimisation import InstanceOrVideoConfig, output_optimisation
    from callbacks.prior_pictures import PriorPictures
    from datamodules.pose_priors import PosePriorDataModule, PriorDataConfig

    return MethodSpec(
        name="pose_prior",
        schema=method_schema("pose_prior", data=PriorDataConfig, model=PosePriorModelConfig,
                             adaptation=InstanceOrVideoConfig),
        module=PosePriorModule,
        datamodule=lambda cfg, domain: PosePriorDataModule(cfg.data, test_domain=domain),
        adaptation=lambda cfg: output_optimisation(to_plain(cfg.adaptation)),
        pictures=lambda cfg: PriorPictures(cfg.pictures.num_samples, cfg.pictures.size, seed=cfg.seed),
    )
