"""The original weights of what test-time work may change: kept to reset to, and to call the
teacher on without a second copy of the network."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call

from callbacks.test_time import grad_enabled
from framework.errors import UserError
from lightning_modules.base import freeze_batchnorm


class _Bound(nn.Module):
    """Lets ``functional_call`` (which calls ``forward``) run any method of a module."""

    def __init__(self, module: nn.Module, fn: Callable):
        super().__init__()
        self.module, self.fn = module, fn

    def forward(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def call_with(module: nn.Module, weights: dict[str, torch.Tensor], fn: Callable, *args, **kwargs) -> Any:
    """``fn(*args, **kwargs)``, a method of ``module``, with ``weights`` (name -> tensor, any
    subset of its parameters, stacked or not under ``vmap``) in place of the module's own."""
    return functional_call(_Bound(module, fn), {f"module.{k}": v for k, v in weights.items()}, args, kwargs,
                           strict=False)


class WeightSnapshot:
    """Copies of the parameters the module names in ``adaptation_groups`` (BatchNorm frozen)."""

    def __init__(self, module: nn.Module):
        groups = module.adaptation_groups()
        if not any(groups.values()):
            raise UserError(f"method '{getattr(module, 'method', type(module).__name__)}' names no parameters "
                            f"for test-time adaptation")
        self.groups = groups
        named = dict(module.named_parameters())
        with grad_enabled(), torch.no_grad():
            self.weights = {n: named[n].detach().clone() for names in groups.values() for n in names}
        freeze_batchnorm(module)

    def restore(self, module: nn.Module) -> None:
        named = dict(module.named_parameters())
        with grad_enabled(), torch.no_grad():
            for n, value in self.weights.items():
                named[n].copy_(value)
                named[n].grad = None

    def call(self, module: nn.Module, fn: Callable, *args, **kwargs) -> Any:
        """``fn`` (a method of ``module``) evaluated with the snapshot's weights, whatever the current ones are."""
        return call_with(module, self.weights, fn, *args, **kwargs)
