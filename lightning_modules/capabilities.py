"""What test-time work a method module supports, declared by inheriting one of these interfaces.

A test-time callback names the interface it drives (``requires``) and checks it when the test
starts, so a method that lacks one gets a single line naming the method and the missing methods,
never an AttributeError from the middle of an adaptation loop.

- ``SelfSupervisedAdaptation``: weights change on a self-supervised objective of the test batch
  itself (ISO).
- ``TeacherRefinement``: weights are fine-tuned on labels the pre-trained weights (the teacher)
  make for a video (RAFT, PIPs pseudo-label refinement).
- ``OutputOptimisation``: the outputs are variables optimised against per-instance loss terms,
  and optionally terms over a whole video; the weights stay as they are.
- ``FlowPoseAgreement``: both, in alternating rounds: weights fine-tuned towards targets made from
  the current variables, variables optimised against what the current weights predict
  (flow-pose bootstrapping).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from framework.errors import UserError


class AdaptsWeights(ABC):
    """A module whose test-time work changes (some of) its weights."""

    @abstractmethod
    def adaptation_groups(self) -> dict[str, list[str]]:
        """Parameter names (as in ``named_parameters``) test-time work may update, by group; one
        optimiser per group."""

    def adaptation_parameters(self) -> dict[str, list[nn.Parameter]]:
        params = dict(self.named_parameters())
        return {g: [params[n] for n in names] for g, names in self.adaptation_groups().items()}


class SelfSupervisedAdaptation(AdaptsWeights):
    @abstractmethod
    def adaptation_losses(self, batch: dict) -> dict[str, torch.Tensor]:
        """Group -> scalar loss minimised w.r.t. that group's parameters, all from one forward pass."""


class TeacherRefinement(AdaptsWeights):
    #: frames one refinement sample spans (RAFT: a pair; PIPs: its S-frame window)
    clip_frames: int = 2

    @abstractmethod
    def teacher_prediction(self, batch: dict) -> dict[str, torch.Tensor]:
        """What the teacher says about one refinement input (called on the pre-trained weights):
        flow for ``image1``/``image2``, tracks for ``frames``/``xys``."""

    @abstractmethod
    def refinement_loss(self, batch: dict, objective: str, **options) -> torch.Tensor:
        """The scalar loss of one refinement batch under the named objective."""


class OutputOptimisation(ABC):
    """Test-time work on outputs. Variables are dicts of tensors whose first dimension is the
    batch's instances (B); several starts are several such dicts."""

    @abstractmethod
    def initial_variables(self, batch: dict) -> list[dict[str, torch.Tensor]]:
        """One dict of variables per start (at least one), each tensor (B, ...)."""

    @abstractmethod
    def variable_losses(self, variables: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        """Loss terms of each instance, term -> (B,): instance b's terms depend only on row b of
        the variables, so the best start can be kept per instance and instances never couple."""

    @abstractmethod
    def variable_outputs(self, variables: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        """The outputs the variables stand for, with the keys ``predict`` returns."""

    def evidence(self, batch: dict) -> dict:
        """The batch the terms are fitted to: the batch itself by default; a module may put its own
        estimates in place of the data's labels (the NF-prior regressor's predicted keypoints and
        part masks). Scores still read the original batch."""
        return batch

    #: variables that stand for one value per video problem (a body's shape), not one per frame:
    #: per-video optimisation holds each as (1, ...) and hands every frame the same row
    tied_variables: tuple[str, ...] = ()

    def video_losses(self, variables: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        """Scalar terms over one video whose rows are the batch, in frame order (smoothness,
        trajectories, latents shared across frames); none by default."""
        return {}


class FlowPoseAgreement(AdaptsWeights, OutputOptimisation):
    """A video is a batch of frames (instances) whose rows hold what its frame pairs predict under
    the current weights; the variables are per frame."""

    @abstractmethod
    def tuning_targets(self, variables: dict[str, torch.Tensor], frames: dict) -> torch.Tensor:
        """What the weights are fine-tuned towards on each of the video's frame pairs, made from the
        current variables and predictions (the sketch flow painted over the current flow)."""

    @abstractmethod
    def tuning_loss(self, pair: dict, target: torch.Tensor) -> torch.Tensor:
        """The scalar loss of one frame pair (a batch of one) against its target."""


def require(module: object, capability: type, user: str) -> None:
    """One clear error when ``module`` does not declare ``capability``."""
    if isinstance(module, capability):
        return
    wanted = sorted(name for name in dir(capability) if getattr(getattr(capability, name), "__isabstractmethod__", False))
    method = getattr(module, "method", type(module).__name__)
    raise UserError(f"method '{method}' cannot be adapted by {user}: it does not declare {capability.__name__} "
                    f"({', '.join(wanted)}; see lightning_modules/capabilities.py)")
