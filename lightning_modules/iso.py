"""ISO: a 2D-to-3D lifter trained jointly with fully- and self-supervised heads
and adapted to each test instance (Zhang, Nie, Feng, NeurIPS 2020)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from framework.checks import OneOf, check
from framework.config import method_schema, to_plain
from framework.methods import MethodSpec, register
from geometry.skeletons import flip_horizontal, get_skeleton
from lightning_modules.base import MethodModule
from lightning_modules.capabilities import SelfSupervisedAdaptation
from lightning_modules.iso_losses import SSLConfig, fsl_loss, ssl_losses
from metrics.pose3d import pose3d_metric_collection
from nets.lifter import ISOLifter


@dataclass
class ISOModelConfig:
    skeleton: str = "h36m17"
    width: int = 1024
    extractor_blocks: int = 3
    head_blocks: int = 1
    discriminator_blocks: int = 3
    dropout: float = 0.5
    # cycle | adversary | none (none trains the FSL-only baseline)
    ssl: str = "cycle"
    ssl_weight: float = 0.1
    # metres per network output unit: the FSL loss is taken in these units. In metres it would be
    # ~100x smaller than the SSL terms (whose 2D coordinates are O(0.1-1)) and the auxiliary SSL task
    # would dominate the shared extractor; Martinez-style lifters standardise their targets likewise.
    pose_unit: float = 0.1
    # weight of the adversarial term in the generator's SSL loss (the paper: 1)
    adversarial_weight: float = 1.0
    cycle_weight_2d: float = 10.0
    cycle_weight_3d: float = 0.1
    azimuth_deg: list[float] = field(default_factory=lambda: [-180.0, 180.0])
    elevation_deg: list[float] = field(default_factory=lambda: [-20.0, 20.0])
    lr: float = 2e-4
    discriminator_lr: float = 2e-4
    # multiplied into both learning rates after every epoch
    lr_decay: float = 0.99
    grad_clip: Optional[float] = 1.0
    flip_train: bool = True
    flip_test: bool = True
    # joints scored by the metrics (None: all), e.g. the 14-joint 3DPW protocol
    eval_joints: Optional[list[int]] = None


class ISOModule(MethodModule, SelfSupervisedAdaptation):
    method = "iso"
    ddp_find_unused_parameters = True  # generator and discriminator losses each reach part of the net

    def __init__(self, method: str, model: dict, **extra):
        super().__init__(method, model, **extra)
        self.cfg = ISOModelConfig(**model)
        check(self.cfg, "model", ssl=OneOf(("cycle", "adversary", "none")))
        self.skeleton = get_skeleton(self.cfg.skeleton)
        self.net = ISOLifter(self.skeleton.num_joints, self.cfg.width, self.cfg.extractor_blocks,
                             self.cfg.head_blocks, self.cfg.discriminator_blocks, self.cfg.dropout)
        self.ssl_cfg = SSLConfig(kind=self.cfg.ssl if self.cfg.ssl != "none" else "cycle",
                                 weight_2d=self.cfg.cycle_weight_2d, weight_3d=self.cfg.cycle_weight_3d,
                                 weight_adversarial=self.cfg.adversarial_weight,
                                 azimuth_deg=tuple(self.cfg.azimuth_deg), elevation_deg=tuple(self.cfg.elevation_deg))
        self.val_metrics = pose3d_metric_collection(joints=self.cfg.eval_joints)
        self.test_metrics = pose3d_metric_collection(joints=self.cfg.eval_joints)
        self.automatic_optimization = False

    # ------------------------------------------------------------------ helpers
    def centre(self, pose: torch.Tensor) -> torch.Tensor:
        return pose - pose[..., self.skeleton.root: self.skeleton.root + 1, :]

    def lift_ssl(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.lift(x, head="ssl")

    # ------------------------------------------------------------------ predict
    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        x = self.centre(batch["pose2d"])
        pose = self.net.lift(x)
        if self.cfg.flip_test:
            mirrored = self.net.lift(flip_horizontal(x, self.skeleton))
            pose = 0.5 * (pose + flip_horizontal(mirrored, self.skeleton))
        return {"pose3d": self.centre(pose) * self.cfg.pose_unit}

    def update_metrics(self, metrics, outputs: dict, batch: dict) -> None:
        metrics.update(outputs["pose3d"].float(), batch["pose3d"].float(), batch["index"])

    # ----------------------------------------------------------------- training
    def configure_optimizers(self):
        net = self.net
        gen_params = [*net.extractor.parameters(), *net.fsl_head.parameters(), *net.ssl_head.parameters()]
        opt_g = torch.optim.Adam(gen_params, lr=self.cfg.lr)
        opt_d = torch.optim.Adam(net.discriminator.parameters(), lr=self.cfg.discriminator_lr)
        sched = [torch.optim.lr_scheduler.ExponentialLR(o, gamma=self.cfg.lr_decay) for o in (opt_g, opt_d)]
        return [opt_g, opt_d], sched

    def _augment(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cfg.flip_train:
            return x, y
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        mask2, mask3 = flip[:, None, None], flip[:, None, None]
        return (torch.where(mask2, flip_horizontal(x, self.skeleton), x),
                torch.where(mask3, flip_horizontal(y, self.skeleton), y))

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.check_batch(batch)
        opt_g, opt_d = self.optimizers()
        x, target = self._augment(self.centre(batch["pose2d"]), batch["pose3d"])
        features = self.net.extractor(x)
        loss_fsl = fsl_loss(self.net.fsl_head(features), target / self.cfg.pose_unit, self.skeleton)
        loss = loss_fsl
        log = {"train/loss_fsl": loss_fsl}
        if self.cfg.ssl != "none":
            ssl = ssl_losses(x, self.lift_ssl, self.net.discriminator, self.skeleton.root, self.ssl_cfg)
            loss = loss + self.cfg.ssl_weight * ssl["generator"]
            log.update({"train/loss_ssl": ssl["generator"], "train/loss_disc": ssl["discriminator"]})
        opt_g.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if self.cfg.grad_clip:
            self.clip_gradients(opt_g, gradient_clip_val=self.cfg.grad_clip, gradient_clip_algorithm="norm")
        opt_g.step()
        if self.cfg.ssl != "none":
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(ssl["discriminator"])
            if self.cfg.grad_clip:
                self.clip_gradients(opt_d, gradient_clip_val=self.cfg.grad_clip, gradient_clip_algorithm="norm")
            opt_d.step()
        log["train/loss"] = loss
        self.log_dict(log, prog_bar=False, batch_size=x.shape[0])
        return loss

    def on_train_epoch_end(self) -> None:
        schedulers = self.lr_schedulers()
        # the FSL-only baseline never steps the discriminator, so its schedule stays put
        for scheduler in schedulers[:1] if self.cfg.ssl == "none" else schedulers:
            scheduler.step()

    # --------------------------------------------------------------- adaptation
    def adaptation_groups(self) -> dict[str, list[str]]:
        names = [n for n, _ in self.named_parameters()]
        return {
            "generator": [n for n in names if n.startswith(("net.extractor.", "net.ssl_head."))],
            "discriminator": [n for n in names if n.startswith("net.discriminator.")],
        }

    def adaptation_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.cfg.ssl == "none":
            raise ValueError("this ISO model was trained without a self-supervised head (model.ssl=none); "
                             "it cannot be adapted")
        return ssl_losses(self.centre(batch["pose2d"]), self.lift_ssl, self.net.discriminator,
                          self.skeleton.root, self.ssl_cfg)


@register("iso")
def method() -> MethodSpec:
    from callbacks.per_instance import PerInstanceAdaptation, PerInstanceAdaptationConfig
    from callbacks.skeleton_pictures import SkeletonPictures
    from datamodules.pose_lifting import PoseDataConfig, PoseLiftingDataModule

    return MethodSpec(
        name="iso",
        schema=method_schema("iso", data=PoseDataConfig, model=ISOModelConfig, adaptation=PerInstanceAdaptationConfig),
        module=ISOModule,
        datamodule=lambda cfg, domain: PoseLiftingDataModule(cfg.data, test_domain=domain),
        adaptation=lambda cfg: PerInstanceAdaptation(PerInstanceAdaptationConfig(**to_plain(cfg.adaptation))),
        pictures=lambda cfg: SkeletonPictures(cfg.pictures.num_samples, cfg.pictures.size),
    )
