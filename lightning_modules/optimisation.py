"""The optimiser both motion networks (RAFT, PIPs) train with, as their authors do: AdamW with a
linear OneCycle schedule stepped every optimiser step (length total + 100, as their scripts), and
gradient-norm clipping from the model config unless the trainer sets its own."""
from __future__ import annotations


from framework.errors import UserError
from framework.optimisation import make_optimiser, make_schedule


class AdamWOneCycle:
    """Mixin for a LightningModule whose ``cfg`` has lr, weight_decay, eps, total_steps, pct_start
    and grad_clip, and whose trainable weights are ``self.net``."""

    def configure_optimizers(self):
        c = self.cfg
        optimizer = make_optimiser("adamw", self.net.parameters(), c.lr, c.weight_decay, c.eps, key="model.optimizer")
        steps = c.total_steps
        if steps is None:
            steps = int(self.trainer.estimated_stepping_batches)
            if steps <= 0 or steps == float("inf"):
                raise UserError("model.total_steps: set it (or trainer.max_epochs / max_steps) so the "
                                "OneCycle schedule knows its length")
        scheduler = make_schedule("onecycle", optimizer, int(steps), c.lr, c.pct_start)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        value = gradient_clip_val if gradient_clip_val is not None else self.cfg.grad_clip
        if value:
            self.clip_gradients(optimizer, gradient_clip_val=value,
                                gradient_clip_algorithm=gradient_clip_algorithm or "norm")
