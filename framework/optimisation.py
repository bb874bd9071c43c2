"""Optimisers, schedules and the minimisation loop, written once for training and test time.

Every test-time callback steps through ``minimise``: weight fine-tuning (RAFT, PIPs), and output
optimisation with several stages and starts (the methods that optimise poses or latent codes);
``step_groups`` is its counterpart for one step of several parameter groups with a loss each (ISO).
A loss is handed over as ``loss_of(step, part)`` so that one closure serves gradient accumulation,
L-BFGS's repeated evaluations and mixed-precision scaling alike.
"""
from __future__ import annotations

from typing import Callable, Iterable, Optional

import torch

from framework import progress
from framework.errors import UserError

OPTIMISERS = ("adam", "adamw", "sgd", "lbfgs")
SCHEDULES = ("onecycle", "cosine", "constant")


def make_optimiser(name: str, params: Iterable[torch.Tensor], lr: float, weight_decay: float = 0.0,
                   eps: float = 1e-8, key: str = "adaptation.optimizer", history: int = 10) -> torch.optim.Optimizer:
    """The optimiser called ``name``; L-BFGS with the strong-Wolfe line search (``minimise`` runs
    all of its iterations in one ``step``, which is how its history and line search work)."""
    params = list(params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, eps=eps)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, eps=eps)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "lbfgs":
        if weight_decay:
            raise UserError(f"{key}: lbfgs takes no weight decay (got {weight_decay}); add a prior term instead")
        return torch.optim.LBFGS(params, lr=lr, history_size=history, line_search_fn="strong_wolfe")
    raise UserError(f"{key}: must be one of {', '.join(OPTIMISERS)}, got {name!r}")


def make_schedule(name: str, optimiser: torch.optim.Optimizer, steps: int, lr: float,
                  pct_start: float = 0.1) -> torch.optim.lr_scheduler.LRScheduler:
    """``onecycle`` is the authors' RAFT and PIPs recipe: linear warm-up for ``pct_start`` of the
    run, then linear decay, over ``steps + 100`` steps as in their training scripts."""
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps + 100, pct_start=pct_start,
                                                   cycle_momentum=False, anneal_strategy="linear")
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: 1.0)
    raise UserError(f"schedule: must be one of {', '.join(SCHEDULES)}, got {name!r}")


def minimise(loss_of: Callable[[int, int], torch.Tensor], params: list[torch.Tensor],
             optimiser: torch.optim.Optimizer, steps: int, *, accumulate: int = 1,
             schedule: Optional[torch.optim.lr_scheduler.LRScheduler] = None, scaler=None,
             grad_clip: Optional[float] = None, tolerance: float = 0.0,
             after_step: Optional[Callable[[int, float], Optional[bool]]] = None, desc: str = "steps") -> list[float]:
    """Minimise ``sum_part loss_of(step, part) / accumulate`` for ``steps`` optimiser steps and
    return every step's loss. L-BFGS instead takes ``steps`` iterations within one ``step`` call
    and returns the loss of every evaluation (its line search evaluates several times an
    iteration); its stopping tolerance is ``tolerance`` times the starting loss.

    ``loss_of`` returns a scalar with its graph; it may be called more than once per step (L-BFGS's
    line search), so it must be a pure function of its arguments and the current ``params``.
    ``tolerance`` > 0 stops once the loss changes by less than that fraction of itself;
    ``after_step(step, loss)`` returning True stops too.
    ``scaler`` is the precision plugin's GradScaler (16-mixed), which L-BFGS cannot work with.
    The steps (L-BFGS: evaluations) and the loss show on a test-time bar named ``desc``.
    """
    lbfgs = isinstance(optimiser, torch.optim.LBFGS)
    if lbfgs and scaler is not None:
        raise UserError("lbfgs cannot run under 16-mixed precision (its line search needs unscaled losses); "
                        "use trainer.precision=32 or bf16-mixed")
    step = 0

    def closure() -> torch.Tensor:
        optimiser.zero_grad(set_to_none=True)
        total = 0.0
        for part in range(accumulate):
            loss = loss_of(step, part) / accumulate
            if not torch.isfinite(loss):
                raise UserError(f"test-time optimisation diverged at step {step}: the loss is {loss.item()}; "
                               f"lower the learning rate")
            (scaler.scale(loss) if scaler is not None else loss).backward()
            total += loss.item()
        if grad_clip and scaler is None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        return torch.tensor(total)

    with progress.bar(steps * 5 // 4 if lbfgs else steps, desc) as shown:
        losses: list[float] = []
        if lbfgs:
            for group in optimiser.param_groups:
                group["max_iter"], group["max_eval"] = steps, steps * 5 // 4

            def recorded() -> torch.Tensor:
                loss = closure()
                losses.append(float(loss))
                shown.update(1)
                shown.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
                return loss

            if tolerance > 0:
                with torch.no_grad():
                    start = abs(float(sum(loss_of(0, part) for part in range(accumulate)))) / accumulate
                for group in optimiser.param_groups:
                    group["tolerance_change"] = tolerance * max(start, 1e-12)
            optimiser.step(recorded)
            optimiser.zero_grad(set_to_none=True)
            return losses
        for step in range(steps):
            if scaler is not None:
                loss = closure()
                scaler.unscale_(optimiser)
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, grad_clip)
                scaler.step(optimiser)
                scaler.update()
            else:
                loss = closure()
                optimiser.step()
            if schedule is not None:
                schedule.step()
            value = float(loss)
            losses.append(value)
            shown.update(1)
            shown.set_postfix(loss=f"{value:.4g}", refresh=False)
            if after_step is not None and after_step(step, value):
                break
            if tolerance > 0 and len(losses) > 1 and abs(losses[-2] - value) <= tolerance * max(abs(losses[-2]), 1e-12):
                break
        optimiser.zero_grad(set_to_none=True)
        return losses


def step_groups(losses: dict[str, torch.Tensor], params: dict[str, list[torch.Tensor]],
                optimizers: dict[str, torch.optim.Optimizer], scaler=None) -> None:
    """One optimisation step per parameter group, each on its own loss: the loop for objectives
    whose groups want different losses (ISO's generator and discriminator), where ``minimise``
    takes one loss for all its parameters.

    All gradients come from the same forward pass and are taken before any parameter moves, so a
    group's step never changes another group's gradient (the split of a GAN objective needs this).
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
