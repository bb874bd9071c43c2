"""Pictures of what a flow pose prior has learnt, at every validation epoch end: bodies drawn from
it (z ~ N(0, I), decoded), and a walk in its latent space between two drawn codes (the paper's
figure 1). Skeletons of the H36M joints of the mean body, seen from the front."""
from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.skeleton_pictures import BACKGROUND, PRED_COLORS, draw_skeleton_2d, fit_view, to_pixels
from framework.images import log_images
from geometry.skeletons import H36M17
from nets.pose_prior import NormalizingFlowPrior


def skeleton_strip(joints: np.ndarray, size: int) -> np.ndarray:
    """(N, 17, 3) body-frame joints (y up) -> one RGB row of N front views sharing one scale."""
    views = [np.stack([j[:, 0], -j[:, 1]], -1) for j in joints]  # image y points down
    extent = max(float(np.ptp(np.concatenate(views), axis=0).max()), 1e-6)
    panels = []
    for view in views:
        canvas = np.full((size, size, 3), BACKGROUND, np.uint8)
        centre, scale = fit_view([view], size, margin=0.08 * size, extent=extent)
        draw_skeleton_2d(canvas, to_pixels(view, centre, scale, size), H36M17, PRED_COLORS)
        panels.append(canvas)
    return np.concatenate(panels, 1)


class PriorPictures(pl.Callback):
    def __init__(self, num_samples: int = 4, size: int = 256, steps: int = 6, seed: int = 0) -> None:
        super().__init__()
        self.num_samples, self.size, self.steps, self.seed = num_samples, max(size // 2, 64), steps, seed
        self.images: list[np.ndarray] = []
        self.test_images: list[np.ndarray] = []  # adapt.py's before / after pictures: the prior draws none at test

    def draw(self, pl_module) -> list[np.ndarray]:
        prior, body = pl_module.prior, pl_module.body
        g = torch.Generator(device="cpu").manual_seed(self.seed)
        codes = torch.randn(self.num_samples + 2, prior.dim, generator=g).to(prior.mean)
        ends = codes[-2:]
        walk = torch.stack([ends[0] + (ends[1] - ends[0]) * t for t in torch.linspace(0, 1, self.steps)])
        with torch.no_grad():
            rows = [body(prior.inverse(z)).joints.float().cpu().numpy() for z in (codes[:-2], walk)]
        return [skeleton_strip(r, self.size) for r in rows]

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.num_samples < 1 \
                or not isinstance(getattr(pl_module, "prior", None), NormalizingFlowPrior):
            return
        self.images = self.draw(pl_module)
        log_images(trainer, "pictures/prior", self.images, captions=["samples", "latent interpolation"])
