"""What every test-time callback needs, written once.

Lightning runs ``Trainer.test`` under ``torch.inference_mode`` with the model in eval mode, and
calls callback hooks outside the precision plugin's autocast. Test-time work therefore leaves
inference mode and enables autograd itself (``grad_enabled``), runs forward passes inside the
precision plugin's context (``autocast``) and steps the unwrapped LightningModule's own tensors,
so a DDP wrapper never all-reduces test-time gradients (each rank works on its own share).
A callback hands its outputs to ``MethodModule.test_step`` in the batch under ``ADAPTED_OUTPUTS``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import pytorch_lightning as pl
import torch

from framework import progress
from framework.errors import UserError
from lightning_modules.base import ADAPTED_OUTPUTS, MethodModule
from lightning_modules.capabilities import require

__all__ = ["ADAPTED_OUTPUTS", "TestTimeCallback", "autocast", "autograd_copy", "batch_size_of", "cat_outputs", "frozen_weights", "grad_enabled",
           "grad_scaler", "slice_batch"]


@contextlib.contextmanager
def grad_enabled() -> Iterator[None]:
    """Normal autograd mode even inside ``Trainer.test``'s inference mode."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextlib.contextmanager
def frozen_weights(module: torch.nn.Module) -> Iterator[None]:
    """No gradient for any weight while outputs are optimised (none is computed, none is left behind)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def autocast(trainer: pl.Trainer):
    """The forward-pass context of the trainer's precision plugin (autocast for *-mixed)."""
    return trainer.precision_plugin.forward_context()


def grad_scaler(trainer: pl.Trainer):
    return getattr(trainer.precision_plugin, "scaler", None)


class TestTimeCallback(pl.Callback):
    """Base of every test-time callback. ``active = False`` makes it do nothing, so one trainer
    tests before and after; ``requires`` is the capability the module must declare."""

    __test__ = False  # not a pytest class, whatever its name
    active: bool = True
    requires: type = object

    def settings(self) -> dict:
        """The callback's settings, written into the adaptation report."""
        return {}

    def summary(self) -> dict:
        """What the last test run measured on its own (written into the report); may be empty."""
        return {}

    def notes(self) -> list[str]:
        """Lines a user must not miss about the last run (printed under the before/after table and
        written into the report), e.g. that nothing was adapted."""
        return []

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active:
            return
        if not isinstance(pl_module, MethodModule):
            raise UserError(f"{type(self).__name__} works on framework method modules, got {type(pl_module).__name__}")
        require(pl_module, self.requires, type(self).__name__)
        progress.show(trainer)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        progress.show(None)


def autograd_copy(batch: dict) -> dict:
    """The batch with every tensor copied out of inference mode (tensors the test loop made there
    cannot take part in a graph)."""
    with grad_enabled():
        return {k: (v.clone() if torch.is_tensor(v) else v) for k, v in batch.items()}


def slice_batch(batch: dict, start: int, stop: int) -> dict:
    """Rows start:stop of every tensor in the batch; other entries pass through."""
    return {k: (v[start:stop] if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in batch.items()}


def batch_size_of(batch: dict) -> int:
    for v in batch.values():
        if torch.is_tensor(v) and v.dim() > 0:
            return v.shape[0]
    raise UserError("test batch holds no tensors")


def cat_outputs(outputs: list[dict]) -> dict:
    return {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}
