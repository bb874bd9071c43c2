"""RAFT optical flow (Teed & Deng 2020) as a MethodModule: supervised training with the sequence
loss, AdamW + OneCycleLR stepped every optimiser step, gradient clipping, optionally frozen BatchNorm."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from framework.checks import OneOf, at_least, check, fraction
from framework.config import method_schema
from framework.errors import UserError
from framework.methods import MethodSpec, register
from lightning_modules.base import MethodModule
from lightning_modules.capabilities import TeacherRefinement
from lightning_modules.optimisation import AdamWOneCycle
from lightning_modules.raft_losses import sequence_loss, unsupervised_sequence_loss
from metrics.flow import epe_sums, flow_metric_collection, unsupervised_flow_metric_collection
from nets.padding import Padder
from nets.raft import RAFT

MIN_SIZE = 64  # 1/8 resolution, then the correlation pyramid halves it 3 times


@dataclass
class RAFTModelConfig:
    small: bool = False
    corr_mode: str = "all_pairs"  # all_pairs | on_the_fly
    iters: int = 12  # refinement iterations in training
    test_iters: int = 24  # at validation / test (24 Chairs/KITTI, 32 Sintel)
    gamma: float = 0.8
    max_flow: float = 400.0
    lr: float = 4e-4
    weight_decay: float = 1e-4
    eps: float = 1e-8
    # OneCycleLR length in optimiser steps (None: the trainer's estimate); the schedule runs total + 100
    total_steps: Optional[int] = None
    pct_start: float = 0.05
    grad_clip: Optional[float] = 1.0
    freeze_bn: bool = False
    metrics: str = "sintel"  # sintel | kitti (also the Padder mode)
    pooled_metrics: bool = False  # kitti: also the EPE over all pixels, as test/epe_pooled
    # RAFT weights to start from (authors' or torchvision layout), loaded when the module is built
    pretrained: Optional[str] = None


class RAFTModule(AdamWOneCycle, MethodModule, TeacherRefinement):
    method = "raft"
    clip_frames = 2  # a refinement sample is one frame pair
    config_class = RAFTModelConfig  # a method built on RAFT names its own (a subclass)

    def __init__(self, method: str, model: dict, **extra):
        super().__init__(method, model, **extra)
        self.cfg = self.config_class(**model)
        c = self.cfg
        check(c, "model", metrics=OneOf(("sintel", "kitti")), iters=at_least(1), test_iters=at_least(1),
              gamma=fraction(open_low=True))
        self.net = RAFT(small=c.small, corr_mode=c.corr_mode)
        if c.pretrained:
            from nets.raft_checkpoints import load_raft_state_dict
            load_raft_state_dict(self.net, c.pretrained)
        self.val_metrics = flow_metric_collection(c.metrics)
        self.test_metrics = flow_metric_collection(c.metrics, pooled=c.pooled_metrics)
        self.unsupervised_metrics = unsupervised_flow_metric_collection()
        if c.freeze_bn:
            self.net.freeze_bn()

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True):
        """Lightning calls ``model.train()`` every epoch; frozen BatchNorm stays in eval mode."""
        super().train(mode)
        if mode and self.cfg.freeze_bn:
            self.net.freeze_bn()
        return self

    @staticmethod
    def _check_size(image: torch.Tensor) -> None:
        h, w = image.shape[-2:]
        if h < MIN_SIZE or w < MIN_SIZE:
            raise UserError(f"RAFT needs frames of at least {MIN_SIZE}x{MIN_SIZE} px (after padding to a multiple "
                            f"of 8), got {h}x{w}")

    # ------------------------------------------------------------------ predict
    def flow(self, image1: torch.Tensor, image2: torch.Tensor) -> torch.Tensor:
        """Test-mode flow from image1 to image2 at the input size (padded for the network, then cut)."""
        padder = Padder(image1.shape, mode=self.cfg.metrics, multiple=8)
        image1, image2 = padder.pad(image1, image2)
        self._check_size(image1)
        _, flow = self.net(image1, image2, iters=self.cfg.test_iters, test_mode=True)
        return padder.unpad(flow)

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """Forward flow; without ground truth (user footage) also the backward flow, which the
        label-free test metrics (forward-backward consistency) need."""
        outputs = {"flow": self.flow(batch["image1"], batch["image2"])}
        if "flow" not in batch:
            outputs["flow_bw"] = self.flow(batch["image2"], batch["image1"])
        return outputs

    def teacher_prediction(self, batch: dict) -> dict[str, torch.Tensor]:
        """Pseudo-label refinement's teacher: the forward flow of ``image1`` -> ``image2`` only."""
        return {"flow": self.flow(batch["image1"], batch["image2"])}

    def update_metrics(self, metrics, outputs: dict, batch: dict) -> None:
        metrics.update(outputs["flow"].float(), batch["flow"].float(), batch.get("valid"), batch["index"])

    def update_test_metrics(self, outputs: dict, batch: dict) -> None:
        """Footage (no ``flow`` in the batch) is scored by the label-free metrics instead."""
        if "flow" in batch:
            super().update_test_metrics(outputs, batch)
        else:
            self.unsupervised_metrics.update(batch["image1"].float(), batch["image2"].float(),
                                             outputs["flow"].float(), outputs["flow_bw"].float(), batch["index"])

    # -------------------------------------------------------------- refinement
    def adaptation_groups(self) -> dict[str, list[str]]:
        """Pseudo-label refinement fine-tunes the whole network, as the authors do."""
        return {"net": [n for n, _ in self.named_parameters() if n.startswith("net.")]}

    def refinement_loss(self, batch: dict, objective: str, iters: Optional[int] = None, gamma: float = 0.85,
                        smooth_weight: float = 0.0, edge_weight: float = 0.0) -> torch.Tensor:
        """Loss of one refinement batch: the weighted sequence loss on pseudo-labels (``flow``,
        ``weight``), or the photometric objective (+ smoothness) of the self-supervised baselines."""
        self._check_size(batch["image1"])
        predictions = self.net(batch["image1"], batch["image2"], iters=iters or self.cfg.test_iters)
        if objective == "pseudo_labels":
            return sequence_loss(predictions, batch["flow"], None, gamma, self.cfg.max_flow, weight=batch["weight"])
        return unsupervised_sequence_loss(predictions, batch["image1"], batch["image2"], gamma, smooth_weight,
                                          edge_weight)

    # ----------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.check_batch(batch)
        self._check_size(batch["image1"])
        predictions = self.net(batch["image1"], batch["image2"], iters=self.cfg.iters)
        loss = sequence_loss(predictions, batch["flow"], batch.get("valid"), self.cfg.gamma, self.cfg.max_flow)
        with torch.no_grad():
            sums = epe_sums(predictions[-1].detach().float(), batch["flow"].float(), batch.get("valid")).sum(0)
            train_epe = sums[0] / sums[1].clamp_min(1)  # over all valid pixels of the batch
        self.log_dict({"train/loss": loss, "train/epe": train_epe}, prog_bar=False,
                      batch_size=batch["image1"].shape[0])
        return loss

    def on_test_epoch_end(self) -> None:
        if self.any_rank(any(m.update_called for m in self.unsupervised_metrics.values())):
            self.log_metrics(self.unsupervised_metrics, self.test_stage)
            return
        super().on_test_epoch_end()


@register("raft")
def method() -> MethodSpec:
    from callbacks.flow_pictures import FlowPictures
    from callbacks.flow_refinement import FlowRefinement, FlowRefinementConfig
    from callbacks.flow_writer import FlowWriter
    from callbacks.output_writer import on_footage
    from datamodules.optical_flow import FlowDataConfig, OpticalFlowDataModule

    return MethodSpec(
        name="raft",
        schema=method_schema("raft", data=FlowDataConfig, model=RAFTModelConfig, adaptation=FlowRefinementConfig),
        module=RAFTModule,
        datamodule=lambda cfg, domain: OpticalFlowDataModule(cfg.data, test_domain=domain),
        adaptation=lambda cfg: FlowRefinement(cfg.adaptation),
        pictures=lambda cfg: FlowPictures(cfg.pictures.num_samples, cfg.pictures.size),
        writer=on_footage(FlowWriter, "flow"),
        pretrained=lambda cfg: {"raft": cfg.model.pretrained} if cfg.model.pretrained else {},
    )
