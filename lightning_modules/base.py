"""The small protocol every method's LightningModule follows, so that train.py,
adapt.py and the adaptation callbacks can drive any of them.

A method module:
- is built from plain-python config sections (saved as hyper-parameters, so
  checkpoints stay loadable with ``weights_only=True``) and records its method
  name in the checkpoint, so adapt.py can refuse another method's weights;
- predicts with ``predict(batch)`` and says with ``update_metrics(metrics, outputs, batch)`` how
  its outputs feed a metric collection; ``validation_step`` / ``test_step`` and the epoch ends
  that log ``val_metrics`` / ``test_metrics`` are written here once (``update_test_metrics`` and
  ``on_test_epoch_end`` are overridden for what the collections cannot score, e.g. footage);
  ``test_step`` uses outputs an adaptation callback left in the batch under
  ``ADAPTED_OUTPUTS`` when there are any, so callbacks decide which weights
  made each prediction without the module knowing about them;
- declares the test-time work it supports by inheriting the interfaces of
  ``lightning_modules/capabilities.py``, which the test-time callbacks check.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from framework.errors import UserError

ADAPTED_OUTPUTS = "_adapted_outputs"


class MethodModule(pl.LightningModule, ABC):
    method: str = ""
    # prefix of logged test metrics; adapt.py sets "target_before" / "target_after"
    test_stage: str = "test"
    # DDP must look for parameters a backward pass did not reach (several optimisers, partial losses)
    ddp_find_unused_parameters: bool = False

    def __init__(self, method: str, model: dict, **extra: Any):
        super().__init__()
        if method != type(self).method:
            raise ValueError(f"{type(self).__name__} is the '{type(self).method}' method, not '{method}'")
        self.save_hyperparameters()

    # ----------------------------------------------------------------- predict
    @abstractmethod
    def predict(self, batch: dict) -> dict[str, torch.Tensor]:
        """The outputs test metrics score, made with the current weights."""

    @abstractmethod
    def update_metrics(self, metrics, outputs: dict[str, torch.Tensor], batch: dict) -> None:
        """Feed one batch's outputs (what ``predict`` returns) to ``metrics``, the module's
        ``val_metrics`` or ``test_metrics``."""

    def update_test_metrics(self, outputs: dict[str, torch.Tensor], batch: dict) -> None:
        """Feed one test batch's outputs to the test metrics."""
        self.update_metrics(self.test_metrics, outputs, batch)

    def log_metrics(self, metrics, stage: str, updated_only: bool = False) -> dict[str, torch.Tensor]:
        """Compute (already synchronised across processes), log as ``stage/name`` and reset.
        ``updated_only``: only the metrics some process fed this epoch (a collection scoring
        several kinds of data, of which a run sees one)."""
        if updated_only:
            names = [k for k, m in metrics.items() if self.any_rank(m.update_called)]
            values = {f"{stage}/{k}": metrics[k].compute() for k in names}
        else:
            values = {f"{stage}/{k}": v for k, v in metrics.compute().items()}
        self.log_dict(values, sync_dist=False)
        metrics.reset()
        return values

    @staticmethod
    def check_batch(batch: dict) -> None:
        """NaN or Inf in any input is one clear error naming the key and the samples."""
        for key, value in batch.items():
            if torch.is_tensor(value) and value.is_floating_point():
                bad = ~torch.isfinite(value.reshape(value.shape[0], -1) if value.dim() else value.view(1, 1)).all(-1)
                if bad.any():
                    index = batch.get("index")
                    where = index[bad].tolist()[:5] if torch.is_tensor(index) else bad.nonzero().flatten().tolist()[:5]
                    raise UserError(f"input '{key}' contains NaN or Inf (samples {where})")

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return self.predict(batch)

    def validation_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        self.check_batch(batch)
        outputs = self.predict(batch)
        self.update_metrics(self.val_metrics, outputs, batch)
        return outputs

    def on_validation_epoch_end(self) -> None:
        self.log_metrics(self.val_metrics, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict[str, torch.Tensor]:
        outputs = batch.pop(ADAPTED_OUTPUTS, None)
        self.check_batch(batch)
        if outputs is None:
            outputs = self.predict(batch)
        self.update_test_metrics(outputs, batch)
        return outputs

    def any_rank(self, flag: bool) -> bool:
        """``flag`` on any process: a branch that synchronises metrics must be taken by every rank
        alike, also by one that was handed no test rows (one footage clip on two devices)."""
        return bool(self.trainer.strategy.reduce_boolean_decision(bool(flag), all=False))

    def on_test_epoch_end(self) -> None:
        metrics = getattr(self, "test_metrics", None)  # None: a module scoring in its own update_test_metrics
        if metrics is not None:
            self.log_metrics(metrics, self.test_stage)

    # ------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Saved so that a resumed run draws the same random numbers as an uninterrupted one.
        checkpoint["method"] = self.method
        checkpoint["rng_state"] = {"torch": torch.get_rng_state()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("rng_state")
        if state is not None:
            self._pending_rng_state = state["torch"]

    def on_train_start(self) -> None:
        state = getattr(self, "_pending_rng_state", None)
        if state is not None:
            torch.set_rng_state(state)
            self._pending_rng_state = None


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode (running statistics neither used from the batch nor updated)."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
