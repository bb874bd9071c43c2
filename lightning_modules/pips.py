"""PIPs point tracking (Harley et al. 2022) as a MethodModule: supervised training on S-frame
clips with the authors' losses and optimiser, tracking whole videos by chaining windows.

Training batches are clips: ``frames`` (B, S, 3, H, W) in 0..255, ``trajs`` (B, S, N, 2) pixels,
``visible`` and ``valid`` (B, S, N), every point queried at frame 0. Test batches are whole
videos: the same keys with T frames plus ``queries`` (B, N, 3) as (t, x, y); footage has no
``trajs`` and is scored by the label-free cycle-consistent share. The network runs at stride
``stride`` in training and ``test_stride`` at test, with the same weights, as the authors do.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from framework.checks import at_least, check, fraction
from framework.config import method_schema
from framework.errors import UserError
from framework.methods import MethodSpec, register
from geometry.flow import sample_points
from geometry.tracks import consistent_tracks
from lightning_modules.base import MethodModule
from lightning_modules.capabilities import TeacherRefinement
from lightning_modules.optimisation import AdamWOneCycle
from lightning_modules.pips_losses import pips_total_loss
from metrics.tracking import tracking_metric_collection
from nets.padding import Padder
from nets.pips import PIPs
from nets.pips_chain import pips_window_fn, track_long

TRACK_KEYS = ("trajs", "visible", "valid")


@dataclass
class PIPsModelConfig:
    S: int = 8  # frames per window
    stride: int = 8  # feature stride in training (the authors: 8)
    test_stride: int = 4  # at test and during refinement (the authors: 4), same weights
    hidden_dim: int = 256
    latent_dim: int = 128
    corr_levels: int = 4
    corr_radius: int = 3
    mixer_dim: int = 512  # the delta block's MLP-Mixer width and depth (the authors': 512, 12)
    mixer_depth: int = 12
    iters: int = 4  # refinement iterations in training
    test_iters: int = 6
    gamma: float = 0.8
    vis_weight: float = 10.0
    score_weight: float = 1.0
    lr: float = 5e-4
    weight_decay: float = 1e-4
    eps: float = 1e-8
    total_steps: Optional[int] = None  # OneCycleLR length (None: the trainer's estimate); it runs total + 100
    pct_start: float = 0.05
    grad_clip: Optional[float] = 5.0
    visible_threshold: float = 0.5  # predicted visibility probability counted as visible (TAP-Vid metrics)
    pooled_metrics: bool = False  # also every test metric pooled over all points, as test/<key>_pooled
    cycle_tau: float = 2.0  # px: forward/backward disagreement of a cycle-consistent track (label-free metric)
    pretrained: Optional[str] = None  # the authors' checkpoint (model-000200000.pth layout)


def _padded(frames: torch.Tensor, stride: int) -> torch.Tensor:
    """(..., H, W) replicate-padded at the bottom and right to multiples of ``stride``: pixel
    coordinates are unchanged, so tracks need no correction."""
    return Padder(frames.shape, mode="corner", multiple=stride).pad(frames)[0]


def constancy_loss(coords: list[torch.Tensor], maps: torch.Tensor, scale: float, gamma: float) -> torch.Tensor:
    """``sum_i gamma^(I-i-1) mean |m_t(x_i,t) - m_0(x_0)|`` over tracks ``coords`` (I x (B, S, N, 2),
    full-resolution pixels) and value maps ``maps`` (B, S, C, h, w) at 1/``scale`` resolution."""
    b, s, ch, h, w = maps.shape
    flat = maps.reshape(b * s, ch, h, w)
    total = maps.new_zeros(())
    for i, xy in enumerate(coords):
        n = xy.shape[2]
        values = sample_points(flat, xy.reshape(b * s, n, 2) / scale).reshape(b, s, n, ch)
        target = values[:, :1].detach()
        total = total + gamma ** (len(coords) - i - 1) * (values[:, 1:] - target).abs().mean()
    return total


class PIPsModule(AdamWOneCycle, MethodModule, TeacherRefinement):
    method = "pips"

    def __init__(self, method: str, model: dict, **extra):
        super().__init__(method, model, **extra)
        self.cfg = PIPsModelConfig(**model)
        c = self.cfg
        check(c, "model", S=at_least(1), stride=at_least(1), test_stride=at_least(1), iters=at_least(1),
              test_iters=at_least(1), gamma=fraction(open_low=True),
              visible_threshold=fraction(open_low=True, open_high=True))
        self.net = PIPs(S=c.S, stride=c.stride, hidden_dim=c.hidden_dim, latent_dim=c.latent_dim,
                        corr_levels=c.corr_levels, corr_radius=c.corr_radius, mixer_dim=c.mixer_dim,
                        mixer_depth=c.mixer_depth)
        if c.pretrained:
            from nets.pips_checkpoints import load_pips_state_dict
            load_pips_state_dict(self.net, c.pretrained)
        self.val_metrics = tracking_metric_collection()
        self.test_metrics = tracking_metric_collection(pooled=c.pooled_metrics)
        self.cycle_shares: list[torch.Tensor] = []

    # ------------------------------------------------------------------ checks
    def _check_frames(self, frames: torch.Tensor) -> None:
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise UserError(f"PIPs: expected frames of shape (B, T, 3, H, W), got {tuple(frames.shape)}")
        smallest = self.cfg.stride * 2 ** (self.cfg.corr_levels - 1)
        if min(frames.shape[-2:]) < smallest:
            raise UserError(f"PIPs: frames of {frames.shape[-2]}x{frames.shape[-1]} px are too small; the "
                            f"{self.cfg.corr_levels}-level correlation pyramid at stride {self.cfg.stride} "
                            f"needs at least {smallest} px")

    # ------------------------------------------------------------------ predict
    def window(self, frames: torch.Tensor, xys: torch.Tensor, iters: Optional[int] = None):
        """One S-frame window at test stride: the network's output for points queried at frame 0."""
        self._check_frames(frames)
        stride = self.cfg.test_stride
        return self.net(xys, _padded(frames, stride), iters=iters or self.cfg.test_iters, stride=stride)

    def track(self, frames: torch.Tensor, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tracks of (B, N, 3) queries (t, x, y) through a whole video: (B, T, N, 2) pixels and
        (B, T, N) visibility probabilities."""
        self._check_frames(frames)
        if queries.dim() != 3 or queries.shape[-1] != 3 or queries.shape[0] != frames.shape[0]:
            raise UserError(f"PIPs: queries must be (B, N, 3) as (t, x, y) for {frames.shape[0]} videos, "
                            f"got {tuple(queries.shape)}")
        stride = self.cfg.test_stride
        return track_long(pips_window_fn(self.net, self.cfg.test_iters, stride), _padded(frames, stride),
                          queries.float())

    @property
    def clip_frames(self) -> int:
        """A refinement sample is one S-frame window."""
        return self.cfg.S

    def teacher_prediction(self, batch: dict) -> dict[str, torch.Tensor]:
        """Pseudo-label refinement's teacher: one window's final-iteration tracks of ``xys``."""
        return {"trajs": self.window(batch["frames"], batch["xys"]).coords[-1]}

    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        trajs, vis = self.track(batch["frames"], batch["queries"])
        outputs = {"trajs": trajs, "vis": vis}
        if "trajs" not in batch:  # footage: the label-free score needs the cycle check
            outputs["cycle_share"] = self.cycle_share(batch["frames"], batch["queries"])
        return outputs

    def cycle_share(self, frames: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """(B,) share of query points that pass the cycle check (``cycle_tau``) over the S-frame
        window starting at their query frame: the label-free score of footage, the same check
        pseudo-labels pass."""
        def track(clip: torch.Tensor, xys: torch.Tensor) -> torch.Tensor:
            return self.window(clip, xys).coords[-1]

        S, shares = self.cfg.S, []
        for b in range(frames.shape[0]):
            starts = queries[b, :, 0].round().long()
            kept = 0
            for t0 in starts.unique().tolist():
                sel = starts == t0
                clip = frames[b:b + 1, t0:t0 + S]
                if clip.shape[1] < S:  # a window past the video's end: repeat its last frame, as chaining does
                    clip = torch.cat([clip, clip[:, -1:].expand(-1, S - clip.shape[1], -1, -1, -1)], 1)
                _, keep = consistent_tracks(track, clip, queries[b, sel, 1:], self.cfg.cycle_tau, 0.0)
                kept += int(keep.sum())
            shares.append(kept / max(queries.shape[1], 1))
        return torch.tensor(shares, device=frames.device)

    def update_metrics(self, metrics, outputs: dict, batch: dict) -> None:
        h, w = batch["frames"].shape[-2:]
        metrics.update(outputs["trajs"].float(), batch["trajs"].float(), batch["visible"].bool(),
                       batch["valid"].bool(), batch["index"], queries=batch["queries"].float(),
                       pred_visible=outputs["vis"] > self.cfg.visible_threshold, size=(h, w))

    def update_test_metrics(self, outputs: dict, batch: dict) -> None:
        """Footage (no ``trajs`` in the batch) is scored by its cycle-consistent share instead."""
        if "trajs" not in batch:
            self.cycle_shares.append(outputs["cycle_share"].detach().cpu())
            return
        super().update_test_metrics(outputs, batch)

    def on_test_epoch_start(self) -> None:
        self.cycle_shares = []

    def on_test_epoch_end(self) -> None:
        if self.any_rank(self.cycle_shares):  # footage: the mean over videos of every rank
            shares = torch.cat(self.cycle_shares).float() if self.cycle_shares else torch.zeros(0)
            total = torch.stack((shares.sum(), torch.tensor(float(shares.numel())))).to(self.device)
            total = self.trainer.strategy.reduce(total, reduce_op="sum")
            self.log(f"{self.test_stage}/cycle_consistent_pct", 100 * total[0] / total[1].clamp_min(1))
            return
        super().on_test_epoch_end()

    # -------------------------------------------------------------- refinement
    def adaptation_groups(self) -> dict[str, list[str]]:
        """Refinement fine-tunes the whole network, as the authors do."""
        return {"net": [n for n, _ in self.named_parameters() if n.startswith("net.")]}

    def refinement_loss(self, batch: dict, objective: str, iters: Optional[int] = None) -> torch.Tensor:
        """Loss of one refinement batch at test stride: the training loss without its visibility term
        on pseudo-labelled tracks, or a constancy objective of the self-supervised baselines: the
        colour (``photometric``) or the frozen encoder's feature (``feature``) under each track
        stays that of its query, summed over iterations with the sequence weights."""
        iters = iters or self.cfg.test_iters
        if objective == "pseudo_labels":
            return self.clip_loss(batch, iters, 0.0, self.cfg.test_stride)[0]
        stride = self.cfg.test_stride
        frames = _padded(batch["frames"], stride)
        self._check_frames(frames)
        out = self.net(batch["trajs"][:, 0], frames, iters=iters, stride=stride)
        if objective == "feature":
            with torch.no_grad():
                maps = self.net.encode(frames, stride)  # (B, S, C, H/stride, W/stride)
            scale = stride
        else:
            maps, scale = frames / 255.0, 1
        return constancy_loss(out.coords, maps, scale, self.cfg.gamma)

    def clip_loss(self, batch: dict, iters: int, vis_weight: float, stride: int
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The authors' loss on S-frame clips (``weight`` (B, N), optional, scales each track) and
        its terms, detached (for logging)."""
        frames = batch["frames"]
        self._check_frames(frames)
        out = self.net(batch["trajs"][:, 0], _padded(frames, stride), iters=iters,
                       return_scores=self.cfg.score_weight > 0, stride=stride)
        total, parts = pips_total_loss(out, batch["trajs"], batch["visible"].float(), batch["valid"].float(),
                                       vis_weight=vis_weight, score_weight=self.cfg.score_weight,
                                       gamma=self.cfg.gamma, weight=batch.get("weight"))
        return total, {k: v.detach() for k, v in parts.items()}

    # ----------------------------------------------------------------- training
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.check_batch(batch)
        loss, parts = self.clip_loss(batch, self.cfg.iters, self.cfg.vis_weight, self.cfg.stride)
        self.log_dict({"train/loss": loss, **{f"train/{k}": v for k, v in parts.items()}},
                      batch_size=batch["frames"].shape[0])
        return loss


@register("pips")
def method() -> MethodSpec:
    from callbacks.output_writer import on_footage
    from callbacks.track_pictures import TrackPictures
    from callbacks.track_refinement import TrackRefinement, TrackRefinementConfig
    from callbacks.track_writer import TrackWriter
    from datamodules.point_tracking import PointTrackingDataModule, TrackDataConfig

    return MethodSpec(
        name="pips",
        schema=method_schema("pips", data=TrackDataConfig, model=PIPsModelConfig, adaptation=TrackRefinementConfig),
        module=PIPsModule,
        datamodule=lambda cfg, domain: PointTrackingDataModule(cfg.data, test_domain=domain),
        adaptation=lambda cfg: TrackRefinement(cfg.adaptation),
        pictures=lambda cfg: TrackPictures(cfg.pictures.num_samples, cfg.pictures.size),
        writer=on_footage(TrackWriter, "tracks"),
        pretrained=lambda cfg: {"pips": cfg.model.pretrained} if cfg.model.pretrained else {},
    )
