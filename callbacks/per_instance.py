"""Per-instance test-time adaptation (ISO's inference stage optimisation).

Before each test instance is predicted, the module's self-supervised objective
is minimised for ``steps`` iterations on a mini-batch of ``copies`` of that
instance, updating only the parameters the module names.
- vanilla (episodic): every instance starts from the original weights;
- online: weights (and optimizer state) carry over from instance to instance;
- online with ``skip=k``: adapt on every k-th instance only; the instances in
  between are predicted with the latest weights (in one forward pass).
Vanilla mode adapts all instances of a batch at once, each with its own copy of
the weights (``torch.func.vmap`` over stacked parameters; Adam on the stacked
tensors is exactly independent Adam per instance because its update is
element-wise and the summed loss gives each slice only its own gradient).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import pytorch_lightning as pl
import torch
from torch.func import vmap

from callbacks.test_time import (ADAPTED_OUTPUTS, TestTimeCallback, autocast, batch_size_of, cat_outputs, grad_enabled,
                                 grad_scaler, slice_batch)
from callbacks.weight_snapshot import WeightSnapshot, call_with
from framework.checks import OneOf, at_least, check
from framework.errors import UserError
from framework.optimisation import make_optimiser, step_groups
from lightning_modules.capabilities import SelfSupervisedAdaptation


@dataclass
class PerInstanceAdaptationConfig:
    mode: str = "online"  # vanilla | online
    steps: int = 1  # T: optimisation steps per adapted instance
    skip: int = 1  # online mode: adapt on every k-th instance
    copies: int = 32  # mini-batch of copies of each instance
    optimizer: str = "adam"
    lr: float = 2e-5
    weight_decay: float = 0.0
    # vanilla mode: adapt the instances of a batch in parallel (torch.func), `chunk` at a time
    parallel: bool = True
    chunk: int = 16


def repeat_rows(batch: dict, start: int, stop: int, copies: int) -> dict:
    """(stop-start, copies, ...) tensors: each instance repeated ``copies`` times."""
    out = {}
    for k, v in batch.items():
        if torch.is_tensor(v) and v.dim() > 0:
            rows = v[start:stop].clone()
            out[k] = rows.unsqueeze(1).expand(rows.shape[0], copies, *rows.shape[1:]).contiguous()
        else:
            out[k] = v
    return out


class PerInstanceAdaptation(TestTimeCallback):
    requires = SelfSupervisedAdaptation

    def __init__(self, cfg: PerInstanceAdaptationConfig | dict):
        super().__init__()
        self.cfg = cfg if isinstance(cfg, PerInstanceAdaptationConfig) else PerInstanceAdaptationConfig(**cfg)
        c = self.cfg
        check(c, "adaptation", mode=OneOf(("vanilla", "online")), steps=at_least(1), skip=at_least(1),
              copies=at_least(1), chunk=at_least(1), optimizer=OneOf(("adam", "adamw", "sgd")))
        if c.mode == "vanilla" and c.skip != 1:
            raise UserError(f"adaptation.skip: must be 1 in vanilla mode (it resets every instance; skip applies "
                            f"to online mode), got {c.skip!r}")
        self.adapted_instances = 0  # how many instances triggered adaptation (for tests and reports)

    def settings(self) -> dict:
        return asdict(self.cfg)

    def on_test_start(self, trainer: pl.Trainer, pl_module) -> None:
        if not self.active:
            return
        super().on_test_start(trainer, pl_module)
        self.snapshot = WeightSnapshot(pl_module)
        self.original = self.snapshot.weights
        self.seen = 0
        self.adapted_instances = 0
        self.optimizers = None

    def on_test_end(self, trainer: pl.Trainer, pl_module) -> None:
        if self.active:  # leave the in-memory module as it was loaded: adaptation is per test run
            self.snapshot.restore(pl_module)
            super().on_test_end(trainer, pl_module)

    def restore(self, pl_module) -> None:
        self.snapshot.restore(pl_module)

    # ------------------------------------------------------------------ helpers
    def _params(self, pl_module) -> dict[str, list[torch.Tensor]]:
        return pl_module.adaptation_parameters()

    def _new_optimizers(self, params: dict[str, list[torch.Tensor]]) -> dict[str, torch.optim.Optimizer]:
        c = self.cfg
        return {g: make_optimiser(c.optimizer, ps, c.lr, c.weight_decay) for g, ps in params.items()}

    def _adapt(self, trainer, pl_module, instance_batch: dict) -> None:
        params = self._params(pl_module)
        if self.optimizers is None:
            self.optimizers = self._new_optimizers(params)
        for _ in range(self.cfg.steps):
            with autocast(trainer):
                losses = pl_module.adaptation_losses(instance_batch)
            step_groups(losses, params, self.optimizers, grad_scaler(trainer))
        self.adapted_instances += 1

    # -------------------------------------------------------------- main hook
    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not self.active:
            return
        pl_module.check_batch(batch)
        with grad_enabled():
            if self.cfg.mode == "vanilla" and self.cfg.parallel:
                outputs = self._vanilla_parallel(trainer, pl_module, batch)
            else:
                outputs = self._sequential(trainer, pl_module, batch)
        batch[ADAPTED_OUTPUTS] = outputs

    def _sequential(self, trainer, pl_module, batch: dict) -> dict:
        c = self.cfg
        size = batch_size_of(batch)
        outputs, i = [], 0
        while i < size:
            if c.mode == "vanilla":
                self.optimizers = None
                stop = i + 1
            else:
                stop = min(size, i + c.skip - self.seen % c.skip)
            if self.seen % c.skip == 0:
                single = {k: v[0] for k, v in repeat_rows(batch, i, i + 1, c.copies).items()}
                self._adapt(trainer, pl_module, single)
            with torch.no_grad(), autocast(trainer):
                outputs.append(pl_module.predict(slice_batch(batch, i, stop)))
            if c.mode == "vanilla":
                self.restore(pl_module)
            self.seen += stop - i
            i = stop
        return cat_outputs(outputs)

    def _vanilla_parallel(self, trainer, pl_module, batch: dict) -> dict:
        c = self.cfg
        groups = pl_module.adaptation_groups()
        size = batch_size_of(batch)
        scaler = grad_scaler(trainer)

        def losses_of(p, b):
            return call_with(pl_module, p, pl_module.adaptation_losses, b)

        def predict_with(p, b):
            return call_with(pl_module, p, pl_module.predict, b)

        outputs = []
        for start in range(0, size, c.chunk):
            stop = min(size, start + c.chunk)
            n = stop - start
            stacked = {name: self.original[name].unsqueeze(0).repeat(n, *[1] * self.original[name].dim())
                       .requires_grad_(True) for names in groups.values() for name in names}
            params = {g: [stacked[name] for name in names] for g, names in groups.items()}
            optimizers = self._new_optimizers(params)
            copies = repeat_rows(batch, start, stop, c.copies)
            batched_losses = vmap(losses_of, in_dims=(0, 0), randomness="different")
            for _ in range(c.steps):
                with autocast(trainer):
                    losses = {g: v.sum() for g, v in batched_losses(stacked, copies).items()}
                step_groups(losses, params, optimizers, scaler)
            with torch.no_grad(), autocast(trainer):
                single = repeat_rows(batch, start, stop, 1)
                detached = {k: v.detach() for k, v in stacked.items()}
                out = vmap(predict_with, in_dims=(0, 0), randomness="different")(detached, single)
            outputs.append({k: v.squeeze(1) for k, v in out.items()})
            self.adapted_instances += n
            self.seen += n
        return cat_outputs(outputs)
