"""What every test-time adaptation callback needs, written once.

Lightning runs ``Trainer.test`` under ``torch.inference_mode`` with the model in
eval mode, and calls callback hooks outside the precision plugin's autocast.
Adaptation therefore: leaves inference mode and enables autograd itself
(``grad_enabled``), runs forward passes inside the precision plugin's context
(``autocast``), keeps a copy of the original weights to reset to, and steps
the unwrapped LightningModule's own parameters, so a DDP wrapper never
all-reduces adaptation gradients (each rank adapts its own share of the data).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import pytorch_lightning as pl
import torch

from framework.errors import UserError
from lightning_modules.base import MethodModule, freeze_batchnorm

OPTIMIZERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
}


def make_optimizer(name: str, params: list[torch.Tensor], lr: float, weight_decay: float = 0.0,
                   **kwargs) -> torch.optim.Optimizer:
    try:
        cls = OPTIMIZERS[name]
    except KeyError:
        raise UserError(f"adaptation.optimizer: unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}") from None
    return cls(params, lr=lr, weight_decay=weight_decay, **kwargs)


@contextlib.contextmanager
def grad_enabled() -> Iterator[None]:
    """Normal autograd mode even inside ``Trainer.test``'s inference mode."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


def autocast(trainer: pl.Trainer):
    """The forward-pass context of the trainer's precision plugin (autocast for *-mixed)."""
    return trainer.precision_plugin.forward_context()


def grad_scaler(trainer: pl.Trainer):
    return getattr(trainer.precision_plugin, "scaler", None)


def step_groups(losses: dict[str, torch.Tensor], params: dict[str, list[torch.Tensor]],
                optimizers: dict[str, torch.optim.Optimizer], scaler=None) -> None:
    """One optimisation step per parameter group, each on its own loss.

    All gradients come from the same forward pass and are taken before any
    parameter moves, so a group's step never changes another group's gradient
    (the generator/discriminator split of a GAN objective needs this).
    """
    for group, loss in losses.items():
        if not torch.isfinite(loss).all():
            raise UserError(f"test-time adaptation diverged: the '{group}' loss is {loss.detach().float().sum().item()}; "
                            f"lower adaptation.lr")
    grads = {}
    names = list(params)
    for k, group in enumerate(names):
        loss = losses[group]
        if scaler is not None:
            loss = scaler.scale(loss)
        grads[group] = torch.autograd.grad(loss, params[group], retain_graph=k < len(names) - 1,
                                           allow_unused=True)
    for group in names:
        for p, g in zip(params[group], grads[group]):
            p.grad = None if g is None else g.to(p.dtype)
        if scaler is not None:
            scaler.step(optimizers[group])
        else:
            optimizers[group].step()
    if scaler is not None:
        scaler.update()


class AdaptationCallback(pl.Callback):
    """Base class: keeps and restores the original weights of the parameters the
    module lets adaptation change. With ``active = False`` the callback does
    nothing, so one trainer can test before and after adaptation."""

    active: bool = True

    def settings(self) -> dict:
        """The callback's settings, written into the adaptation report."""
        return {}

    def summary(self) -> dict:
        """What the last adaptation run measured on its own (written into the report); may be empty."""
        return {}

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active:
            return
        if not isinstance(pl_module, MethodModule):
            raise UserError(f"{type(self).__name__} adapts framework method modules, got {type(pl_module).__name__}")
        groups = pl_module.adaptation_groups()
        if not any(groups.values()):
            raise UserError(f"method '{pl_module.method}' names no parameters for test-time adaptation")
        self.groups = groups
        with grad_enabled(), torch.no_grad():
            named = dict(pl_module.named_parameters())
            self.original = {n: named[n].detach().clone() for names in groups.values() for n in names}
        freeze_batchnorm(pl_module)

    def restore(self, pl_module: pl.LightningModule) -> None:
        named = dict(pl_module.named_parameters())
        with grad_enabled(), torch.no_grad():
            for n, value in self.original.items():
                named[n].copy_(value)
                named[n].grad = None

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.active:
            return
        # Leave the in-memory module as it was loaded: adaptation is per test run.
        self.restore(pl_module)


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
