"""Losses of ISO (Zhang, Nie, Feng 2020): fully supervised joints + bones, and the
two self-supervised objectives (random-projection adversary, geometric cycle).

Projections are weak-perspective (orthographic with a per-sample scale fitted in
closed form to the input 2D pose), as in the random-projection adversary of
Drover et al. that ISO follows: no camera parameters are needed on target data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from geometry.bones import bone_vectors
from geometry.camera import weak_perspective_project
from geometry.rotations import rotate_about_root, sample_view_rotations
from geometry.skeletons import Skeleton


def fsl_loss(pred: torch.Tensor, target: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """MSE on joints plus MSE on bone vectors (ISO eq. 2)."""
    return F.mse_loss(pred, target) + F.mse_loss(bone_vectors(pred, skeleton), bone_vectors(target, skeleton))


def fit_projection_scale(pose2d: torch.Tensor, pose3d: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Least-squares scale s (...,) with s * pose3d[..., :2] ~ pose2d (both root-centred).
    Treated as a camera estimate: no gradient flows through it."""
    xy = pose3d[..., :2].detach()
    num = (pose2d.detach() * xy).sum(dim=(-1, -2))
    den = (xy * xy).sum(dim=(-1, -2)).clamp_min(eps)
    return num / den


@dataclass
class SSLConfig:
    kind: str = "cycle"  # cycle | adversary
    weight_adversarial: float = 1.0
    weight_2d: float = 10.0
    weight_3d: float = 0.1
    azimuth_deg: tuple[float, float] = (-180.0, 180.0)
    elevation_deg: tuple[float, float] = (-20.0, 20.0)


def gan_logit_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def ssl_losses(x: torch.Tensor, lift, discriminator, root: int, cfg: SSLConfig) -> dict[str, torch.Tensor]:
    """The self-supervised objective on root-centred 2D poses ``x`` (B, J, 2).

    Returns the generator loss (adversarial + cycle terms, minimised by the
    lifter) and the discriminator loss (real inputs vs random projections).
    ``lift`` maps 2D to root-relative 3D through the SSL head.
    """
    lifted = lift(x)
    scale = fit_projection_scale(x, lifted)
    azimuth = tuple(math.radians(a) for a in cfg.azimuth_deg)
    elevation = tuple(math.radians(a) for a in cfg.elevation_deg)
    rot = sample_view_rotations(x.shape[0], azimuth_range=azimuth, elevation_range=elevation,
                                device=x.device, dtype=lifted.dtype)
    fake = weak_perspective_project(rotate_about_root(lifted, rot, root=root), scale, 0.0)
    gen = cfg.weight_adversarial * gan_logit_loss(discriminator(fake), real=True)
    if cfg.kind == "cycle":
        relifted = rotate_about_root(lift(fake), rot.transpose(-1, -2), root=root)
        reprojected = weak_perspective_project(relifted, scale, 0.0)
        gen = gen + cfg.weight_2d * F.mse_loss(reprojected, x) + cfg.weight_3d * F.mse_loss(relifted, lifted)
    elif cfg.kind != "adversary":
        raise ValueError(f"unknown SSL kind {cfg.kind!r} (expected 'cycle' or 'adversary')")
    disc = gan_logit_loss(discriminator(x), real=True) + gan_logit_loss(discriminator(fake.detach()), real=False)
    return {"generator": gen, "discriminator": disc}
