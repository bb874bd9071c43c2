"""The optimiser both motion networks (RAFT, PIPs) train with, as their authors do: AdamW with a
linear OneCycle schedule stepped every optimiser step (length total + 100, as their scripts), and
gradient-norm clipping from the model config unless the trainer sets its own."""
from __future__ import annotations

import torch

from framework.errors import UserError


class AdamWOneCycle:
    """Mixin for a LightningModule whose ``cfg`` has lr, weight_decay, eps, total_steps, pct_start
    and grad_clip, and whose trainable weights are ``self.net``."""

    def configure_optimizers(self):
        c = self.cfg
        optimizer = torch.optim.AdamW(self.net.parameters(), lr=c.lr, weight_decay=c.weight_decay, eps=c.eps)
        steps = c.total_steps
        if steps is None:
            steps = int(self.trainer.estimated_stepping_batches)
            if steps <= 0 or steps == float("inf"):
                raise UserError("model.total_steps: set it (or trainer.max_epochs / max_steps) so the "
                                "OneCycle schedule knows its length")
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=c.lr, total_steps=int(steps) + 100, pct_start=c.pct_start,
            cycle_momentum=False, anneal_strategy="linear")
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        value = gradient_clip_val if gradient_clip_val is not None else self.cfg.grad_clip
        if value:
            self.clip_gradients(optimizer, gradient_clip_val=value,
                                gradient_clip_algorithm=gradient_clip_algorithm or "norm")
