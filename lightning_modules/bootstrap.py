"""Flow-pose bootstrapping (Arko, Little, Yi 2022): on each video of a person, RAFT and a pose
estimate are made to agree, in rounds (``callbacks/bootstrap_refinement.py``).

- Flow round: RAFT is fine-tuned (SmoothL1, Adam 1e-5, one pair at a time) towards a target flow:
  its own current flow with the pose's sketch painted over the stick figure's pixels
  (``geometry/sketch_flow.py``).
- Pose round: per-frame 3D joints X (root-relative, metres) and a weak-perspective camera
  C = (s, tx, ty) (pixels) are optimised so that the projected joints move as the current flow
  says, against the paper's terms (every one a SmoothL1, summed over coordinates and averaged over
  frames and joints):
    flow       |F_{t-1}(P(X_{t-1})) - (P(X_t) - P(X_{t-1}))|    (video term)
    init       |X_t - X~_t|                                      (per frame)
    detections w_t |x_t - P(X_t)|, w the detector's confidence   (per frame)
    position   |X_t - X_{t-1}|;  camera |C_t - C_{t-1}|;  bone  ||X_j - X_k||_t - ||X_j - X_k||_{t-1}  (video terms)
  with the paper's weights (0.01, 400, 0.01, 300, 0.1, 1e4) as the stage's ``weights``. In the
  2D-only space (``adaptation.space: 2d``) the variables are the 2D joints themselves, ``init``
  keeps them near the initial detections and the camera term is zero.

The network, its checkpoints and its training are RAFT's (``lightning_modules/raft.py``): train.py
trains RAFT on the source domain's people videos.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection

from framework.checks import at_least, check, positive
from framework.config import method_schema
from framework.errors import UserError
from framework.methods import MethodSpec, register
from geometry.bones import bone_lengths
from geometry.camera import fit_weak_perspective, weak_perspective_project
from geometry.flow import sample_points
from geometry.skeletons import H36M17
from geometry.sketch_flow import scaled_radius, sketch_flow, target_flow
from lightning_modules.capabilities import FlowPoseAgreement
from lightning_modules.raft import RAFTModelConfig, RAFTModule
from metrics.flow import EPE, FlowAccuracy
from metrics.people import JointError2D, JointFlowEPE
from metrics.pose3d import MPJPE, PAMPJPE
from nets.padding import Padder

SPACES = ("3d", "2d")
TERMS = ("flow", "init", "detections", "position", "camera", "bone")


@dataclass
class BootstrapModelConfig(RAFTModelConfig):
    # the sketch: the cross's radius is sketch_radius pixels on frames sketch_reference_height high
    sketch_radius: float = 15.0
    sketch_reference_height: float = 1000.0
    sketch_points: int = 20  # points per bone, endpoints included (more where a bone is long)
    tuning_beta: float = 1.0  # SmoothL1's quadratic zone of the flow fine-tuning loss, pixels


def smooth_l1(x: torch.Tensor) -> torch.Tensor:
    """SmoothL1 (beta 1) of every entry, summed over the last dimension (a joint's coordinates)."""
    return F.smooth_l1_loss(x, torch.zeros_like(x), reduction="none").sum(-1)


def root_relative(joints: torch.Tensor) -> torch.Tensor:
    return joints - joints[..., :1, :]


def pose_metric_collection() -> dict:
    return {"mpjpe": MPJPE(), "pa_mpjpe": PAMPJPE(), "joints2d_error": JointError2D()}


def flow_metric_set() -> dict:
    return {"epe": EPE(), "1px": FlowAccuracy(1.0), "3px": FlowAccuracy(3.0), "human_epe": EPE(),
            "joint_epe": JointFlowEPE()}


class BootstrapModule(RAFTModule, FlowPoseAgreement):
    method = "bootstrap"
    config_class = BootstrapModelConfig

    def __init__(self, method: str, model: dict, **extra):
        super().__init__(method, model, **extra)
        c = self.cfg
        check(c, "model", sketch_radius=positive(), sketch_reference_height=positive(), sketch_points=at_least(2),
              tuning_beta=positive())
        self.val_metrics = MetricCollection(flow_metric_set(), compute_groups=False)
        self.test_metrics = MetricCollection({**flow_metric_set(), **pose_metric_collection()}, compute_groups=False)

    # ---------------------------------------------------------------- predict
    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """RAFT's flow and, where the batch carries pose estimates, the initial pose of frame t: the
        3D estimate and its projection by the camera fitted to the detections."""
        outputs = super().predict(batch)
        if "init_joints3d" in batch:
            joints3d, detections = batch["init_joints3d"][:, 0], batch["detections2d"][:, 0]
            if bool(batch.get("has_joints3d_estimate", torch.tensor(True)).all()):
                camera = fit_weak_perspective(joints3d, detections, batch["detection_confidence"][:, 0])
                outputs["joints2d"] = weak_perspective_project(joints3d, camera[:, 0], camera[:, 1:])
            else:
                outputs["joints2d"] = detections
            outputs["joints3d"] = joints3d
        return outputs

    def update_metrics(self, metrics, outputs: dict, batch: dict) -> None:
        flow, index = outputs["flow"].float(), batch["index"]
        for name in ("epe", "1px", "3px"):
            metrics[name].update(flow, batch["flow"].float(), batch.get("valid"), index)
        if "person_mask" in batch:
            human = batch["person_mask"].float() * (batch["valid"] if "valid" in batch else 1.0)
            metrics["human_epe"].update(flow, batch["flow"].float(), human, index)
        self.update_joint_metrics(metrics, outputs, batch)

    @staticmethod
    def update_joint_metrics(metrics, outputs: dict, batch: dict) -> None:
        """The scores at the labelled joints: flow EPE there, and the poses of frame t where the
        data set trusts them (``pose_valid``, on 3DPW)."""
        if "joints2d" not in batch:
            return
        flow, index = outputs["flow"].float(), batch["index"]
        metrics["joint_epe"].update(flow, batch["joints2d"], batch.get("joint_visible"), index)
        if "mpjpe" in metrics and "joints3d" in outputs and "joints3d" in batch:
            keep = batch["pose_valid"][:, 0] if "pose_valid" in batch else torch.ones_like(index, dtype=torch.bool)
            if not bool(keep.any()):
                return
            truth = root_relative(batch["joints3d"][keep, 0].float())
            mine = root_relative(outputs["joints3d"][keep].float())
            metrics["mpjpe"].update(mine, truth, index[keep])
            metrics["pa_mpjpe"].update(mine, truth, index[keep])
            metrics["joints2d_error"].update(outputs["joints2d"][keep], batch["joints2d"][keep, 0], index[keep])

    def update_test_metrics(self, outputs: dict, batch: dict) -> None:
        """Without dense flow (footage, Human3.6M, 3DPW) the flow gets the label-free scores and the
        joints, where the data has them, their own."""
        super().update_test_metrics(outputs, batch)
        if "flow" not in batch:
            self.update_joint_metrics(self.test_metrics, outputs, batch)

    def on_test_epoch_end(self) -> None:
        if not self.any_rank(any(m.update_called for m in self.unsupervised_metrics.values())):
            return super().on_test_epoch_end()
        self.log_metrics(self.unsupervised_metrics, self.test_stage)
        self.log_metrics(self.test_metrics, self.test_stage, updated_only=True)

    # --------------------------------------------------------------- the poses
    @staticmethod
    def space(frames: dict) -> str:
        space = frames.get("space", "3d")
        if space not in SPACES:
            raise UserError(f"adaptation.space: must be one of {', '.join(SPACES)}, got {space!r}")
        return space

    def initial_variables(self, frames: dict) -> list[dict[str, torch.Tensor]]:
        detections = frames["detections2d"].float()
        if self.space(frames) == "2d":
            return [{"joints2d": detections.clone()}]
        joints3d = root_relative(frames["init_joints3d"].float())
        camera = fit_weak_perspective(joints3d, detections, frames["detection_confidence"].float())
        return [{"joints3d": joints3d.clone(), "camera": camera}]

    @staticmethod
    def projected(variables: dict[str, torch.Tensor]) -> torch.Tensor:
        if "joints2d" in variables:
            return variables["joints2d"]
        camera = variables["camera"]
        return weak_perspective_project(variables["joints3d"], camera[:, 0], camera[:, 1:])

    def variable_losses(self, variables: dict[str, torch.Tensor], frames: dict) -> dict[str, torch.Tensor]:
        x = self.projected(variables)
        detections, confidence = frames["detections2d"].float(), frames["detection_confidence"].float()
        terms = {"detections": (confidence * smooth_l1(x - detections)).mean(-1)}
        if "joints3d" in variables:
            terms["init"] = smooth_l1(variables["joints3d"] - root_relative(frames["init_joints3d"].float())).mean(-1)
        else:
            terms["init"] = smooth_l1(x - detections).mean(-1)
        return terms

    def video_losses(self, variables: dict[str, torch.Tensor], frames: dict) -> dict[str, torch.Tensor]:
        x = self.projected(variables)
        flow = frames["flow_estimate"].float()  # (T - 1, 2, H, W): frame t -> t + 1 under the current weights
        if flow.shape[0] != x.shape[0] - 1:
            raise UserError(f"bootstrapping: {flow.shape[0]} flows for {x.shape[0]} frames; a video of T frames has "
                            f"T - 1 frame pairs")
        moved = sample_points(flow, x[:-1])  # the flow at each joint of frame t
        pose = variables.get("joints3d", x)
        lengths = bone_lengths(pose, H36M17)
        camera = variables.get("camera")
        zero = x.sum() * 0
        return {"flow": smooth_l1(moved - (x[1:] - x[:-1])).mean(),
                "position": smooth_l1(pose[1:] - pose[:-1]).mean(),
                "camera": smooth_l1(camera[1:] - camera[:-1]).mean() if camera is not None else zero,
                "bone": F.smooth_l1_loss(lengths[1:], lengths[:-1])}

    def variable_outputs(self, variables: dict[str, torch.Tensor], frames: dict) -> dict[str, torch.Tensor]:
        joints3d = variables.get("joints3d")
        if joints3d is None:
            joints3d = root_relative(frames["init_joints3d"].float())
        return {"joints3d": joints3d, "joints2d": self.projected(variables)}

    # --------------------------------------------------------------- the flow
    def tuning_targets(self, variables: dict[str, torch.Tensor], frames: dict) -> torch.Tensor:
        """Per pair: the current flow with the sketch of the current 2D pose painted over it."""
        x = self.projected(variables).detach().float()
        flow = frames["flow_estimate"].float()
        h, w = flow.shape[-2:]
        c = self.cfg
        radius = scaled_radius(c.sketch_radius, h, c.sketch_reference_height)
        targets = []
        for t in range(flow.shape[0]):
            sketch, mask = sketch_flow(x[t], x[t + 1], h, w, radius, c.sketch_points)
            targets.append(target_flow(flow[t], sketch, mask))
        return torch.stack(targets)

    def tuning_loss(self, pair: dict, target: torch.Tensor) -> torch.Tensor:
        """SmoothL1 between RAFT's final flow (training mode, ``test_iters`` iterations) and the target."""
        image1, image2 = pair["image1"], pair["image2"]
        padder = Padder(image1.shape, mode=self.cfg.metrics, multiple=8)
        padded1, padded2 = padder.pad(image1, image2)
        self._check_size(padded1)
        final = padder.unpad(self.net(padded1, padded2, iters=self.cfg.test_iters)[-1])
        return F.smooth_l1_loss(final.float(), target.float(), beta=self.cfg.tuning_beta)


@register("bootstrap")
def method() -> MethodSpec:
    from callbacks.bootstrap_refinement import BootstrapConfig, BootstrapRefinement
    from callbacks.output_writer import on_footage
    from callbacks.people_pictures import PeoplePictures
    from callbacks.pose_flow_writer import PoseFlowWriter
    from datamodules.people_flow import PeopleFlowConfig, PeopleFlowDataModule

    return MethodSpec(
        name="bootstrap",
        schema=method_schema("bootstrap", data=PeopleFlowConfig, model=BootstrapModelConfig, adaptation=BootstrapConfig),
        module=BootstrapModule,
        datamodule=lambda cfg, domain: PeopleFlowDataModule(cfg.data, test_domain=domain),
        adaptation=lambda cfg: BootstrapRefinement(cfg.adaptation),
        pictures=lambda cfg: PeoplePictures(cfg.pictures.num_samples, cfg.pictures.size),
        writer=on_footage(PoseFlowWriter, "outputs"),
        pretrained=lambda cfg: {"raft": cfg.model.pretrained} if cfg.model.pretrained else {},
    )
