"""Flow-pose bootstrapping at test time: per video, rounds of flow fine-tuning and pose optimisation.

Before a video's first pair is scored, the network is reset to its pre-trained weights, the pose
variables start from the estimates (``initial_variables``) and each round of ``rounds`` runs in
order, the paper's being ``[flow, pose, flow]`` (once for the pose, twice for the flow):

- ``flow``: the current weights predict every pair; the targets are those flows with the current
  pose's sketch painted over them (``tuning_targets``); the network is fine-tuned towards them one
  pair at a time, pairs in frame order, for ``flow.epochs`` passes over the video (Adam).
- ``pose``: the current weights predict every pair; the pose variables are optimised against the
  module's terms under ``pose`` (stages with term weights; the per-frame terms averaged over the
  frames, as the paper's expectations), the weights frozen.

The video's outputs are then the flow of the final weights and the optimised poses.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.output_optimisation import OptimiseConfig, StageConfig, run_stages, validate_optimise_config, video_terms
from callbacks.per_video import PerVideoCallback, whole_video
from callbacks.test_time import autocast, autograd_copy, frozen_weights, grad_enabled, grad_scaler, slice_batch
from callbacks.weight_snapshot import WeightSnapshot
from framework.checks import EachOneOf, OneOf, at_least, check, positive
from framework.config import dataclass_from, to_plain
from framework.errors import UserError
from framework.optimisation import make_optimiser, minimise
from lightning_modules.capabilities import FlowPoseAgreement

ROUNDS = ("flow", "pose")
# per-frame keys of a frame-pair video: (pairs, 2, ...) -> (frames, ...)
FRAME_KEYS = ("init_joints3d", "detections2d", "detection_confidence", "joints2d", "joints3d", "joint_visible")
PAPER_WEIGHTS = {"flow": 0.01, "init": 400.0, "detections": 0.01, "position": 300.0, "camera": 0.1, "bone": 1e4}


@dataclass
class FlowTuneConfig:
    epochs: int = 8  # passes over the video's pairs per flow round (the paper: 8; 50 in its 2D-only setting)
    lr: float = 1e-5


@dataclass
class BootstrapConfig:
    rounds: list[str] = field(default_factory=lambda: ["flow", "pose", "flow"])
    space: str = "3d"  # 3d: 3D joints and a camera per frame; 2d: the 2D joints themselves
    flow: FlowTuneConfig = field(default_factory=FlowTuneConfig)
    pose: OptimiseConfig = field(default_factory=lambda: OptimiseConfig(
        optimizer="adam", lr=1e-3, stages=[StageConfig(iterations=1500, weights=dict(PAPER_WEIGHTS))]))
    pictures: int = 1  # videos drawn (sketch target, flow before / after, skeletons before / after)
    flow_batch: int = 4  # pairs predicted at once when the current flow is measured


def validate_bootstrap_config(c: BootstrapConfig, key: str = "adaptation") -> None:
    check(c, key, rounds=EachOneOf(ROUNDS), space=OneOf(("3d", "2d")), pictures=at_least(0), flow_batch=at_least(1))
    check(c.flow, f"{key}.flow", epochs=at_least(0), lr=positive())
    validate_optimise_config(c.pose, f"{key}.pose")
    if not c.rounds:
        raise UserError(f"{key}.rounds: give at least one round (flow, pose)")


def check_space(space: str, pairs: dict, video: int) -> None:
    """3D optimisation needs 3D estimates; a file of 2D ones is one clear error."""
    if space == "3d" and "has_joints3d_estimate" in pairs and not bool(pairs["has_joints3d_estimate"].all()):
        raise UserError(f"video {video}: the pose estimates have no joints3d, so there is nothing to optimise in 3D; "
                        f"set adaptation.space=2d")


def pairs_to_frames(pairs: dict) -> dict:
    """A video given as consecutive frame pairs -> its frames: each per-frame key's frame t of every
    pair and frame t + 1 of the last one."""
    frame = pairs["frame"]
    if frame.numel() > 1 and not bool((frame[1:] - frame[:-1] == 1).all()):
        raise UserError(f"bootstrapping needs a video's pairs consecutive and in order; got frames "
                        f"{frame.tolist()[:8]}")
    out = {}
    for key in FRAME_KEYS:
        if key in pairs:
            out[key] = torch.cat([pairs[key][:, 0], pairs[key][-1:, 1]])
    missing = [k for k in ("init_joints3d", "detections2d", "detection_confidence") if k not in out]
    if missing:
        raise UserError(f"bootstrapping needs pose estimates in the test data ({', '.join(missing)} missing); set "
                        f"data.poses")
    return out


class BootstrapRefinement(PerVideoCallback):
    requires = FlowPoseAgreement

    def __init__(self, cfg: Any) -> None:
        super().__init__()
        self.cfg = dataclass_from(BootstrapConfig, to_plain(cfg), "adaptation")
        validate_bootstrap_config(self.cfg)
        self.picture_tag = "pictures/bootstrap"

    def settings(self) -> dict:
        return asdict(self.cfg)

    def on_test_start(self, trainer: pl.Trainer, pl_module) -> None:
        if not self.active:
            return
        super().on_test_start(trainer, pl_module)
        self.snapshot = WeightSnapshot(pl_module)
        self.cache: dict[int, dict[str, torch.Tensor]] = {}

    def on_test_end(self, trainer: pl.Trainer, pl_module) -> None:
        if not self.active:
            return
        super().on_test_end(trainer, pl_module)
        self.snapshot.restore(pl_module)  # leave the in-memory module as it was loaded

    # ----------------------------------------------------------------- rounds
    def current_flows(self, trainer: pl.Trainer, pl_module, pairs: dict) -> torch.Tensor:
        """(pairs, 2, H, W) flow of every pair under the current weights."""
        n, flows = pairs["image1"].shape[0], []
        with torch.no_grad(), autocast(trainer):
            for start in range(0, n, self.cfg.flow_batch):
                stop = min(n, start + self.cfg.flow_batch)
                flows.append(pl_module.flow(pairs["image1"][start:stop], pairs["image2"][start:stop]).float())
        return torch.cat(flows)

    def tune_flow(self, trainer: pl.Trainer, pl_module, pairs: dict, targets: torch.Tensor) -> list[float]:
        c = self.cfg.flow
        n = targets.shape[0]
        params = [p for group in pl_module.adaptation_parameters().values() for p in group]
        optimiser = make_optimiser("adam", params, c.lr, key="adaptation.flow")

        def loss_of(step: int, part: int) -> torch.Tensor:
            i = step % n  # pairs one by one, in frame order, epoch after epoch
            with autocast(trainer):
                return pl_module.tuning_loss(slice_batch(pairs, i, i + 1), targets[i:i + 1])

        return minimise(loss_of, params, optimiser, c.epochs * n, scaler=grad_scaler(trainer), desc="fine-tuning")

    def prepare_video(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> dict[str, Any]:
        self.snapshot.restore(pl_module)  # from the pre-trained weights at every video
        pairs = autograd_copy(whole_video(trainer, video, pl_module.device))
        check_space(self.cfg.space, pairs, video)
        rounds, drawn = [], {}
        with grad_enabled():  # also for what is made from the rows: a tensor made in inference mode takes no gradient
            frames = {**pairs_to_frames(pairs), "space": self.cfg.space}
            variables = pl_module.initial_variables(frames)[0]
            start_pose = {k: v.detach().clone() for k, v in variables.items()}
            for name in self.cfg.rounds:
                began = time.perf_counter()
                frames["flow_estimate"] = self.current_flows(trainer, pl_module, pairs)
                drawn.setdefault("flow_before", frames["flow_estimate"])
                if name == "flow":
                    targets = pl_module.tuning_targets(variables, frames)
                    drawn.setdefault("target", targets)
                    losses = self.tune_flow(trainer, pl_module, pairs, targets)
                    entry = {"round": "flow", "steps": len(losses),
                             "first_loss": losses[0] if losses else float("nan"),
                             "last_loss": losses[-1] if losses else float("nan")}
                else:
                    with frozen_weights(pl_module):
                        variables, final, iterations = run_stages(video_terms(pl_module, frames, "mean"), variables,
                                                                  self.cfg.pose, trainer, key="adaptation.pose")
                    entry = {"round": "pose", "final_loss": float(final[0]), "iterations": iterations}
                rounds.append({**entry, "seconds": time.perf_counter() - began})
        with torch.no_grad():
            outputs = pl_module.variable_outputs(variables, frames)
            before = pl_module.variable_outputs(start_pose, frames)
        self.cache = {int(i): {k: v[t] for k, v in outputs.items()} for t, i in enumerate(pairs["index"].tolist())}
        if len(self.pictures) < self.cfg.pictures:
            self.pictures.append(self.picture(trainer, pl_module, pairs, drawn, before, outputs))
        moved = float((outputs["joints2d"] - before["joints2d"]).norm(dim=-1).mean())
        return {"pairs": int(pairs["image1"].shape[0]), "rounds": rounds, "pose_moved_px": moved}

    def video_outputs(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> dict[str, torch.Tensor]:
        with torch.no_grad(), autocast(trainer):
            flow = {"flow": pl_module.flow(rows["image1"], rows["image2"])}
            if "flow" not in rows:  # footage: the label-free metrics also need the backward flow
                flow["flow_bw"] = pl_module.flow(rows["image2"], rows["image1"])
        missing = [i for i in rows["index"].tolist() if int(i) not in self.cache]
        if missing:
            raise UserError(f"bootstrapping: rows {missing[:5]} of video {video} are not among its listed pairs")
        picked = [self.cache[int(i)] for i in rows["index"].tolist()]
        return {**flow, **{k: torch.stack([p[k] for p in picked]) for k in picked[0]}}

    # ----------------------------------------------------------------- pictures
    def picture(self, trainer, pl_module, pairs: dict, drawn: dict, before: dict, after: dict) -> np.ndarray:
        """The middle pair: frame with the skeletons before (white) and after (identity colour), the
        sketch target, the flow before and after."""
        from callbacks.flow_pictures import fit_height, put_label
        from callbacks.people_pictures import PREDICTION_COLOUR, draw_people
        from geometry.flow import flow_to_color

        t = pairs["image1"].shape[0] // 2
        after_flow = self.current_flows(trainer, pl_module, slice_batch(pairs, t, t + 1))[0]
        frame = np.ascontiguousarray(pairs["image1"][t].permute(1, 2, 0).clamp(0, 255).byte().cpu().numpy())
        draw_people(frame, before["joints2d"][t:t + 1].cpu().numpy(), colour_of=[PREDICTION_COLOUR], thickness=1)
        draw_people(frame, after["joints2d"][t:t + 1].cpu().numpy())
        flows = [drawn.get("target", drawn["flow_before"])[t], drawn["flow_before"][t], after_flow]
        scale = float(max(f.norm(dim=0).max() for f in flows)) or 1.0
        size = frame.shape[0]
        panels = [put_label(frame, "pose before (white) / after")]
        for name, f in zip(("sketch target", "flow before", "flow after"), flows):
            panels.append(put_label(fit_height(flow_to_color(f.cpu().numpy(), max_norm=scale), size), name))
        return np.ascontiguousarray(np.concatenate(panels, axis=1))
