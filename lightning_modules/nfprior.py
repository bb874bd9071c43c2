"""The weakly supervised 3D pose and shape regressor with a normalizing-flow prior (Zanfir et al.
2020): the multistage network of ``nets/nf_regressor.py`` predicts the body (pose in the prior's
latent space or its rotations, shape, global orientation) from a crop; translation comes from a
weak-perspective fit of the predicted keypoints to the 2D ones; test-time refinement optimises the
prediction against the keypoints (and part masks) under the prior (``body_fitting.py``).

Losses (weights in ``model.weights``), on the source (``supervision: full``: L_fs + L_ws) or on the
target's 2D labels only (``weak``: L_ws, the paper's COCO continuation):

- 2D stages: ``heatmaps`` (MSE to Gaussians at the keypoints), ``parts`` (cross-entropy);
- L_fs: ``vertices`` (mean squared error, pelvis-relative, m^2), ``pose`` (MSE of the rotations in
  the prior's representation, and of the global orientation's matrix), ``shape`` (MSE of beta) on
  every 3D stage;
- L_ws: ``keypoints`` (L_KA, px^2), ``alignment`` (L_BA, mean px; against the part masks, or the
  network's own segmentation with ``predicted_masks``), ``prior`` (|z|^2 / 2 or -log p(theta)),
  ``betas`` (|beta|^2), on the last stage.

The prior comes from a checkpoint of the ``pose_prior`` stage (``model.prior_checkpoint``) and is
frozen; its settings (kind, representation, body model) travel with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F

from framework.checks import OneOf, at_least, check
from framework.config import method_schema, to_plain
from framework.errors import UserError
from framework.io import load_checkpoint
from framework.methods import MethodSpec, register
from geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rotation_6d, rotation_6d_to_matrix
from lightning_modules.base import MethodModule
from lightning_modules.body_fitting import (BodyFitting, FitConfig, check_mask_size, fit_metric_collection,
                                            to_representation, translation_for, upright_orientations,
                                            validate_fit_config)
from lightning_modules.nfprior_losses import keypoint_alignment, part_alignment
from lightning_modules.pose_prior import REPRESENTATIONS, PosePriorModelConfig, make_prior
from nets.nf_regressor import MultistageRegressor, RegressorSize, gaussian_heatmaps, heatmap_keypoints, part_targets
from nets.pose_prior import NormalizingFlowPrior
from nets.smpl import body_model_from_config

TERMS = ("heatmaps", "parts", "vertices", "pose", "shape", "keypoints", "alignment", "prior", "betas")
FULL_ONLY = ("vertices", "pose", "shape")


@dataclass
class RegressorWeights:
    heatmaps: float = 1000.0
    parts: float = 1.0
    vertices: float = 100.0
    pose: float = 1.0
    shape: float = 0.1
    keypoints: float = 0.01
    alignment: float = 0.1
    prior: float = 0.01
    betas: float = 0.01


@dataclass
class NFRegressorModelConfig:
    prior_checkpoint: Optional[str] = None  # a pose_prior checkpoint; None: no prior (rotations predicted)
    output: str = "latent"  # latent: the pose head predicts the flow's z; ambient: the rotations
    width: int = 128
    kernel: int = 7
    convs: int = 5
    stages: int = 6
    backbone: int = 64
    supervision: str = "full"  # full: L_fs + L_ws; weak: L_ws (2D labels only)
    predicted_masks: bool = False  # L_BA against the network's own segmentation
    weights: RegressorWeights = field(default_factory=RegressorWeights)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    fit: FitConfig = field(default_factory=FitConfig)
    starts: str = "prediction"  # test-time starts: prediction | zero (four headings) | both
    # what refinement fits: labels (the data's keypoints and part masks) | predicted (the network's own
    # keypoints, weighted by their confidence, and its part segmentation: the paper's 3DPW refinement)
    evidence: str = "labels"
    init_from: Optional[str] = None  # an nfprior checkpoint whose network starts this training (the weak stage)


def load_prior(path: Optional[str]) -> tuple[PosePriorModelConfig, Optional[dict]]:
    """The pose prior's settings and weights from a pose_prior checkpoint (None: no prior)."""
    if path is None:
        return PosePriorModelConfig(kind="none"), None
    if not Path(path).expanduser().is_file():
        raise UserError(f"model.prior_checkpoint: {path} does not exist; train the prior first (python train.py "
                        f"--config configs/nfprior/prior_quick.yaml) or set model.prior_checkpoint=null (no prior)")
    ckpt = load_checkpoint(path)
    params = ckpt.get("hyper_parameters", {})
    if ckpt.get("method") != "pose_prior" or "model" not in params:
        raise UserError(f"model.prior_checkpoint: {path} is not a pose_prior checkpoint (train one with "
                        f"train.py --config configs/nfprior/prior.yaml)")
    model = dict(params["model"])
    model.pop("fit", None)
    state = {k[len("prior."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("prior.")}
    return PosePriorModelConfig(**model), state


class NFRegressorModule(MethodModule, BodyFitting):
    method = "nfprior"

    def __init__(self, method: str, model: dict, **extra):
        super().__init__(method, model, **extra)
        model = dict(model)
        self.cfg = c = NFRegressorModelConfig(**{**model, "fit": FitConfig(**model.get("fit", {})),
                                                 "weights": RegressorWeights(**model.get("weights", {}))})
        check(c, "model", output=OneOf(("latent", "ambient")), supervision=OneOf(("full", "weak")),
              starts=OneOf(("prediction", "zero", "both")), evidence=OneOf(("labels", "predicted")), width=at_least(1),
              convs=at_least(1), stages=at_least(1))
        for term, w in vars(c.weights).items():
            if not w >= 0:
                raise UserError(f"model.weights.{term}: must be >= 0, got {w}")
        validate_fit_config(c.fit)
        prior_cfg, state = load_prior(c.prior_checkpoint)
        self.body = body_model_from_config(prior_cfg.body_model)
        self.prior = make_prior(prior_cfg, len(self.body.pose_joints))
        if state is not None:
            self.prior.load_state_dict(state)
        self.prior.requires_grad_(False)
        self.prior_rep, self.fit_cfg = REPRESENTATIONS[prior_cfg.representation], c.fit
        if c.output == "latent" and not isinstance(self.prior, NormalizingFlowPrior):
            raise UserError("model.output=latent needs a flow prior (model.prior_checkpoint of a realnvp or prelu "
                            "pose_prior); use model.output=ambient")
        self.pose_numbers = self.prior.dim if c.output == "latent" else len(self.body.pose_joints) * self.prior_rep
        self.net = MultistageRegressor(17, len(self.body.part_names), self.pose_numbers + 6, self.body.num_betas,
                                       RegressorSize(c.width, c.kernel, c.convs, c.stages, c.backbone))
        if c.init_from is not None:
            self.load_network(c.init_from)
        self.register_buffer("upright", matrix_to_rotation_6d(axis_angle_to_matrix(upright_orientations(1)[0])),
                             persistent=False)
        self.val_metrics = fit_metric_collection(len(self.body.part_names))
        self.test_metrics = fit_metric_collection(len(self.body.part_names))

    def load_network(self, path: str) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.get("method") != "nfprior":
            raise UserError(f"model.init_from: {path} is not an nfprior checkpoint (written by {ckpt.get('method')!r})")
        state = {k[len("net."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
        try:
            self.net.load_state_dict(state)
        except RuntimeError as e:
            raise UserError(f"model.init_from: {path} holds another network size ({str(e).splitlines()[0]}); "
                            f"keep model.width, kernel, convs, stages, backbone as it was trained") from None

    # ---------------------------------------------------------------- the network's bodies
    def rotations(self, pose: torch.Tensor) -> torch.Tensor:
        """The pose head's numbers -> the body's rotations (B, J, R)."""
        if self.cfg.output == "latent":
            return self.prior.inverse(pose)
        return pose.unflatten(-1, (len(self.body.pose_joints), self.prior_rep))

    def stage_bodies(self, out: dict) -> list[dict]:
        """Per 3D stage: pose (the head's numbers), rotations, orientation (angle-axis), betas."""
        stages = []
        for pose, betas in zip(out["poses"], out["shapes"]):
            numbers, orient6 = pose[:, :self.pose_numbers], pose[:, self.pose_numbers:] + self.upright
            orient = rotation_6d_to_matrix(orient6)
            stages.append({"pose": numbers, "theta": self.rotations(numbers), "orient_matrix": orient,
                           "orient": matrix_to_axis_angle(orient), "betas": betas})
        return stages

    def placed_body(self, stage: dict, keypoints2d: torch.Tensor, weights: torch.Tensor, camera: torch.Tensor):
        """The stage's body at the translation that fits its keypoints to ``keypoints2d``."""
        at_origin = self.body(stage["theta"], stage["betas"], stage["orient"], torch.zeros_like(stage["orient"]))
        with torch.no_grad():
            transl = translation_for(at_origin.keypoints.float(), keypoints2d, weights, camera)
        return self.body(stage["theta"], stage["betas"], stage["orient"], transl), transl

    # ---------------------------------------------------------------- training
    def configure_optimizers(self):
        return torch.optim.AdamW(self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)

    def losses(self, out: dict, batch: dict) -> dict[str, torch.Tensor]:
        c, w = self.cfg, self.cfg.weights
        size = out["heatmaps"].shape[-2:]
        weights = batch["keypoint_visible"].float()
        labels = part_targets(batch["part_mask"], size)
        terms = {"heatmaps": F.mse_loss(out["heatmaps"], gaussian_heatmaps(batch["keypoints"].float(), weights, size)),
                 "parts": F.cross_entropy(out["part_logits"], labels)}
        stages = self.stage_bodies(out)
        camera = batch["camera"].float()
        if c.supervision == "full":
            truth = self.body(batch["pose"].float(), batch["betas"].float(), batch["global_orient"].float(),
                              batch["transl"].float())
            true_vertices = truth.vertices.float() - truth.joints[:, :1].float()
            true_theta = to_representation(batch["pose"].float(), self.prior_rep)
            true_orient = axis_angle_to_matrix(batch["global_orient"].float())
            per_stage = []
            for s in stages:
                mine = self.body(s["theta"], s["betas"], s["orient"], torch.zeros_like(s["orient"]))
                vertices = mine.vertices.float() - mine.joints[:, :1].float()
                per_stage.append((((vertices - true_vertices) ** 2).sum(-1).mean(),
                                  F.mse_loss(s["theta"], true_theta) + F.mse_loss(s["orient_matrix"], true_orient),
                                  F.mse_loss(s["betas"], batch["betas"].float())))
            for i, name in enumerate(FULL_ONLY):
                terms[name] = torch.stack([p[i] for p in per_stage]).mean()
        last = stages[-1]
        body, _ = self.placed_body(last, batch["keypoints"].float(), weights, camera)
        terms["keypoints"] = keypoint_alignment(self.project(body.keypoints.float(), camera),
                                                batch["keypoints"].float(), weights).mean()
        if w.alignment > 0:
            masks = (out["part_logits"].argmax(1) if c.predicted_masks else labels) - 1
            stride = batch["image"].shape[-1] / size[-1]
            terms["alignment"] = part_alignment(self.project(body.vertices.float(), camera) / stride,
                                                self.body.vertex_parts, masks, num_parts=len(self.body.part_names)
                                                ).mean() * stride
        terms["prior"] = (0.5 * (last["pose"] ** 2).sum(-1) if c.output == "latent"
                          else self.prior.nll(last["theta"])).mean()
        terms["betas"] = (last["betas"] ** 2).sum(-1).mean()
        return terms

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.check_batch(batch)
        check_mask_size(batch)
        terms = self.losses(self.net(batch["image"]), batch)
        loss = sum(getattr(self.cfg.weights, k) * v for k, v in terms.items())
        self.log_dict({"train/loss": loss, **{f"train/{k}": v for k, v in terms.items()}},
                      batch_size=batch["image"].shape[0])
        return loss

    # ---------------------------------------------------------------- protocol
    def predicted_variables(self, batch: dict) -> dict[str, torch.Tensor]:
        """The regressor's body as fitting variables: translation from the predicted keypoints."""
        out = self.net(batch["image"])
        stage = self.stage_bodies(out)[-1]
        keypoints, confidence = heatmap_keypoints(out["heatmaps"], batch["image"].shape[-1] / out["heatmaps"].shape[-1])
        _, transl = self.placed_body(stage, keypoints, confidence, batch["camera"].float())
        pose = stage["pose"]
        if self.latent() and self.cfg.output == "ambient":
            pose = self.prior(stage["theta"])[0]
        elif not self.latent():
            pose = stage["theta"]
        return {"pose": pose, "betas": stage["betas"], "orient": stage["orient"], "transl": transl}

    def initial_variables(self, batch: dict) -> list[dict[str, torch.Tensor]]:
        """The prediction, four headings from zero, or both (``model.starts``)."""
        self.check_fit_batch(batch)
        starts = []
        if self.cfg.starts in ("prediction", "both"):
            with torch.no_grad():  # the predicted body, placed over the keypoints the refinement fits
                start = self.predicted_variables(batch)
                start["transl"] = self.placed(self.pose_of(start), start["betas"], start["orient"], batch)
            starts.append(start)
        if self.cfg.starts in ("zero", "both"):
            starts += super().initial_variables(batch)
        return starts

    def evidence(self, batch: dict) -> dict:
        """``model.evidence=predicted``: the network's keypoints (weighted by confidence) and part
        segmentation (upsampled to the crop, nearest) in place of the labels."""
        if self.cfg.evidence == "labels":
            return batch
        with torch.no_grad():
            out = self.net(batch["image"])
            keypoints, confidence = heatmap_keypoints(out["heatmaps"], batch["image"].shape[-1] / out["heatmaps"].shape[-1])
            parts = F.interpolate(out["part_logits"].argmax(1, keepdim=True).float(), size=batch["image"].shape[-2:],
                                  mode="nearest")[:, 0].long()
        return {**batch, "keypoints": keypoints.float(), "keypoint_visible": confidence.float(), "part_mask": parts}

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.variable_outputs(self.predicted_variables(batch), batch)

    def update_metrics(self, metrics, outputs: dict, batch: dict) -> None:
        self.update_fit_metrics(metrics, outputs, batch)

    def on_test_epoch_end(self) -> None:  # real targets lack some truths (COCO: no 3D)
        self.log_metrics(self.test_metrics, self.test_stage, updated_only=True)


@register("nfprior")
def method() -> MethodSpec:
    from callbacks.body_writer import on_pictures
    from callbacks.output_optimisation import InstanceOrVideoConfig, output_optimisation
    from datamodules.people_crops import CropsDataConfig, PeopleCropsDataModule

    return MethodSpec(
        name="nfprior",
        schema=method_schema("nfprior", data=CropsDataConfig, model=NFRegressorModelConfig,
                             adaptation=InstanceOrVideoConfig),
        module=NFRegressorModule,
        datamodule=lambda cfg, domain: PeopleCropsDataModule(cfg.data, test_domain=domain),
        adaptation=lambda cfg: output_optimisation(to_plain(cfg.adaptation)),
        writer=on_pictures,
    )
