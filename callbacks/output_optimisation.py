"""Test-time optimisation of outputs: the module's variables (poses, latent codes, cameras) are
optimised against its loss terms while the weights stay as they are.

- ``PerInstanceOptimisation``: each test instance is its own problem (the NF-prior regressor's
  latent-space refinement of one image).
- ``PerVideoOptimisation``: a whole video, or each window of ``window`` consecutive frames, is one
  problem: its per-frame terms plus terms over the frames (the NF-prior regressor's smoothness with
  the shape tied across frames, the dual network's trajectory and bone-length terms); with
  ``frames_first`` each window starts from its frames' own best per-instance fits, as the NF-prior
  paper's video refinement does.

Both run a list of stages, each with its own term weights, iteration count and optionally its own
optimiser and learning rate (a fresh optimiser per stage); start from every set of initial
variables the module offers and keep, per instance (per video), the start whose final loss under
the last stage's weights is lowest; and stop a stage early for an instance whose loss changed by
less than ``tolerance`` of itself in one step.

Independent instances never couple. With Adam, AdamW or SGD the instances of a batch are
optimised together on the sum of their losses, which is exact: each instance's terms depend only
on its own row, and these optimisers' updates are element-wise; an instance that has converged is
held where it stopped. L-BFGS is not element-wise (one line search, one curvature history), so
each instance is solved as a problem of its own; it stops on its own tolerance (the loss change
below ``tolerance`` times the stage's starting loss).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Callable, Optional

import pytorch_lightning as pl
import torch

from callbacks.per_video import PerVideoCallback, whole_video
from callbacks.test_time import (ADAPTED_OUTPUTS, TestTimeCallback, autocast, autograd_copy, batch_size_of, cat_outputs, frozen_weights,
                                 grad_enabled, grad_scaler, slice_batch)
from framework.errors import UserError
from framework.optimisation import OPTIMISERS, make_optimiser, minimise
from lightning_modules.capabilities import OutputOptimisation

Variables = dict[str, torch.Tensor]
Terms = Callable[[Variables], dict[str, torch.Tensor]]  # variables -> term -> (R,) losses of R problems


@dataclass
class StageConfig:
    iterations: int = 100
    # term -> weight; a term the stage does not name keeps weight 1
    weights: dict[str, float] = field(default_factory=dict)
    optimizer: Optional[str] = None  # None: the section's
    lr: Optional[float] = None  # None: the section's


@dataclass
class OptimiseConfig:
    optimizer: str = "adam"  # adam | adamw | sgd | lbfgs (strong-Wolfe line search)
    lr: float = 1e-2
    # a stage stops for an instance once one step changes its loss by less than this share of it (0: never)
    tolerance: float = 0.0
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])


@dataclass
class VideoOptimiseConfig(OptimiseConfig):
    window: int = 0  # consecutive frames optimised as one problem (0: the whole video)
    frames_first: bool = False  # start each window from its frames' best per-instance fits (per-frame terms)
    frame_stages: list[StageConfig] = field(default_factory=list)  # those fits' stages (none: ``stages``)


@dataclass
class InstanceOrVideoConfig(VideoOptimiseConfig):
    per: str = "instance"  # instance: every test instance its own problem; video: windows of a video's frames


def validate_optimise_config(c: OptimiseConfig, key: str = "adaptation.optimise") -> None:
    if c.optimizer not in OPTIMISERS:
        raise UserError(f"{key}.optimizer: must be one of {', '.join(OPTIMISERS)}, got {c.optimizer!r}")
    if not c.lr > 0:
        raise UserError(f"{key}.lr: must be > 0, got {c.lr}")
    if not c.tolerance >= 0:
        raise UserError(f"{key}.tolerance: must be >= 0, got {c.tolerance}")
    if not c.stages:
        raise UserError(f"{key}.stages: give at least one stage")
    for i, s in enumerate(c.stages):
        where = f"{key}.stages[{i}]"
        if s.iterations < 1:
            raise UserError(f"{where}.iterations: must be at least 1, got {s.iterations}")
        if s.optimizer is not None and s.optimizer not in OPTIMISERS:
            raise UserError(f"{where}.optimizer: must be one of {', '.join(OPTIMISERS)}, got {s.optimizer!r}")
        if s.lr is not None and not s.lr > 0:
            raise UserError(f"{where}.lr: must be > 0, got {s.lr}")
        for term, w in s.weights.items():
            if not w >= 0:
                raise UserError(f"{where}.weights.{term}: must be >= 0, got {w}")
    if isinstance(c, VideoOptimiseConfig):
        if c.window < 0:
            raise UserError(f"{key}.window: must be >= 0 (0: the whole video), got {c.window}")
        if c.frame_stages:
            validate_optimise_config(OptimiseConfig(c.optimizer, c.lr, c.tolerance, c.frame_stages), key)
    if isinstance(c, InstanceOrVideoConfig):
        if c.per not in ("instance", "video"):
            raise UserError(f"{key}.per: must be instance or video, got {c.per!r}")
        if c.per == "instance" and (c.window or c.frames_first or c.frame_stages):
            raise UserError(f"{key}.window, {key}.frames_first and {key}.frame_stages work on videos: set "
                            f"{key}.per=video")


def as_optimise_config(cfg: Any, kind: type = OptimiseConfig) -> OptimiseConfig:
    """``kind`` from a config section; keys another kind of section holds are left out."""
    if isinstance(cfg, kind):
        return cfg
    names = {f.name for f in fields(kind)}
    cfg = {k: v for k, v in dict(cfg).items() if k in names}
    for key in ("stages", "frame_stages"):
        if key in names:
            cfg[key] = [s if isinstance(s, StageConfig) else StageConfig(**s) for s in cfg.get(key, [{}] if key == "stages" else [])]
    return kind(**cfg)


def without_terms(cfg: OptimiseConfig, names: set[str]) -> OptimiseConfig:
    """``cfg`` with the stages' weights of ``names`` dropped (the video terms, for per-frame fits)."""
    stages = [replace(s, weights={k: w for k, w in s.weights.items() if k not in names}) for s in cfg.stages]
    return OptimiseConfig(cfg.optimizer, cfg.lr, cfg.tolerance, stages)


def tied(variables: Variables, names: tuple[str, ...]) -> Variables:
    """The variables of a video problem: each tied one as the mean of its frames' rows, (1, ...)."""
    return {k: (v.mean(0, keepdim=True) if k in names else v) for k, v in variables.items()}


def untied(variables: Variables, names: tuple[str, ...], rows: int) -> Variables:
    """Per-frame variables again: each tied one's single row handed to all ``rows`` frames."""
    return {k: (v.expand(rows, *v.shape[1:]) if k in names else v) for k, v in variables.items()}


def weighted(terms: dict[str, torch.Tensor], weights: dict[str, float], where: str) -> torch.Tensor:
    unknown = sorted(set(weights) - set(terms))
    if unknown:
        raise UserError(f"{where}.weights: no term named {', '.join(unknown)}; the method's terms are "
                        f"{', '.join(sorted(terms))}")
    return sum(float(weights.get(name, 1.0)) * value.float() for name, value in terms.items())


class RowStopper:
    """Per-problem early stopping for problems optimised side by side: a row whose loss has
    settled is put back where it settled after every later step."""

    def __init__(self, variables: Variables, tolerance: float):
        self.variables, self.tolerance = variables, tolerance
        self.step, self.previous, self.done = -1, None, None

    def see(self, step: int, rows: torch.Tensor) -> None:
        """Called with every evaluation; the first one of a step is at the step's starting point."""
        if step == self.step:
            return
        self.step, self.current = step, rows.detach()
        self.point = {k: v.detach().clone() for k, v in self.variables.items()}
        if self.done is None:
            self.done = torch.zeros(rows.shape[0], dtype=torch.bool, device=rows.device)
            self.frozen = {k: v.clone() for k, v in self.point.items()}

    def after_step(self, step: int, loss: float) -> bool:
        if self.previous is not None:
            change = (self.previous - self.current).abs()
            newly = ~self.done & (change <= self.tolerance * self.previous.abs().clamp_min(1e-12))
            for k in self.frozen:
                self.frozen[k][newly] = self.point[k][newly]
            self.done |= newly
        self.previous = self.current
        if bool(self.done.all()):
            return True
        if bool(self.done.any()):
            with torch.no_grad():
                for k, v in self.variables.items():
                    v[self.done] = self.frozen[k][self.done]
        return False


def run_stages(terms_of: Terms, initial: Variables, cfg: OptimiseConfig, trainer: pl.Trainer,
               key: str = "adaptation.optimise") -> tuple[Variables, torch.Tensor, list[int]]:
    """Optimise one start through every stage: its variables, the final losses (R,) under the last
    stage's weights, and the iterations each stage took."""
    variables = {k: v.detach().clone().float().requires_grad_(True) for k, v in initial.items()}
    params = list(variables.values())
    scaler = grad_scaler(trainer)
    iterations = []
    for i, stage in enumerate(cfg.stages):
        where = f"{key}.stages[{i}]"
        name = stage.optimizer or cfg.optimizer
        optimiser = make_optimiser(name, params, stage.lr or cfg.lr, key=f"{where}.optimizer")
        lbfgs = isinstance(optimiser, torch.optim.LBFGS)
        # per-row stopping copies the variables every step: only when asked for (L-BFGS stops on its own)
        stopper = RowStopper(variables, cfg.tolerance) if cfg.tolerance > 0 and not lbfgs else None

        def loss_of(step: int, part: int, weights: dict = stage.weights, where: str = where) -> torch.Tensor:
            with autocast(trainer):
                rows = weighted(terms_of(variables), weights, where)
            if stopper is not None:
                stopper.see(step, rows)
            return rows.sum()

        losses = minimise(loss_of, params, optimiser, stage.iterations, scaler=None if lbfgs else scaler,
                          tolerance=cfg.tolerance if lbfgs else 0.0,
                          after_step=stopper.after_step if stopper is not None else None,
                          desc=f"optimising, stage {i + 1}/{len(cfg.stages)}")
        iterations.append(int(optimiser.state[params[0]].get("n_iter", 0)) if lbfgs else len(losses))
    with torch.no_grad(), autocast(trainer):
        final = weighted(terms_of(variables), cfg.stages[-1].weights, f"{key}.stages[{len(cfg.stages) - 1}]")
    return {k: v.detach() for k, v in variables.items()}, final.detach().float(), iterations


def best_of_starts(results: list[tuple[Variables, torch.Tensor, list[int]]]) -> tuple[Variables, torch.Tensor, torch.Tensor]:
    """Per problem row, the start with the lowest final loss: its variables, its loss and the start index."""
    finals = torch.stack([r[1] for r in results])  # (K, R)
    best = finals.argmin(0)
    rows = torch.arange(finals.shape[1], device=finals.device)
    variables = {k: torch.stack([r[0][k] for r in results])[best, rows] for k in results[0][0]}
    return variables, finals[best, rows], best


def check_starts(starts: list[Variables], method: str, rows: Optional[int]) -> None:
    if not starts:
        raise UserError(f"method '{method}': initial_variables gave no start")
    for k, start in enumerate(starts):
        if set(start) != set(starts[0]):
            raise UserError(f"method '{method}': start {k} has variables {sorted(start)}, start 0 {sorted(starts[0])}")
        for name, v in start.items():
            if rows is not None and (v.dim() == 0 or v.shape[0] != rows):
                raise UserError(f"method '{method}': variable '{name}' of start {k} has shape {tuple(v.shape)}; "
                                f"its first dimension must be the batch's {rows} instances")


def video_terms(pl_module, video: dict, frames_reduced: str = "sum") -> Terms:
    """A whole video as one problem: each per-frame term summed (or averaged: ``"mean"``, for terms
    weighted as expectations over frames) over the frames, and the video terms. The module's
    ``tied_variables`` come as one row and are handed to every frame."""
    names, rows = tuple(getattr(pl_module, "tied_variables", ())), batch_size_of(video)

    def terms_of(variables: Variables) -> dict[str, torch.Tensor]:
        variables = untied(variables, names, rows)
        frames = {k: getattr(v, frames_reduced)().reshape(1)
                  for k, v in pl_module.variable_losses(variables, video).items()}
        whole = {k: v.reshape(1) for k, v in pl_module.video_losses(variables, video).items()}
        clash = sorted(set(frames) & set(whole))
        if clash:
            raise UserError(f"method '{pl_module.method}': {', '.join(clash)} named both a per-frame and a "
                            f"video term")
        return {**frames, **whole}
    return terms_of


class _OptimisingCallback:
    """Settings and the report shared by both callbacks."""

    requires = OutputOptimisation
    config_kind: type = OptimiseConfig

    def _setup(self, cfg: Any) -> None:
        self.cfg = as_optimise_config(cfg, self.config_kind)
        validate_optimise_config(self.cfg)
        self.stats: dict[str, Any] = {}

    def settings(self) -> dict:
        return asdict(self.cfg)

    def _reset_stats(self) -> None:
        self.runs = 0
        self.stats = {"problems": 0, "loss_sum": 0.0, "start_wins": {}, "iterations_sum": [0] * len(self.cfg.stages)}

    def _count(self, final: torch.Tensor, best: torch.Tensor, iterations: list[list[int]]) -> None:
        s = self.stats
        s["problems"] += int(final.numel())
        s["loss_sum"] += float(final.sum())
        for k in best.tolist():
            s["start_wins"][k] = s["start_wins"].get(k, 0) + 1
        for run in iterations:
            for i, n in enumerate(run):
                s["iterations_sum"][i] += n

    def optimise_instances(self, trainer: pl.Trainer, pl_module, batch: dict, cfg: OptimiseConfig,
                           count: bool = True) -> Variables:
        """The batch's optimised variables, each instance its own problem, best start per instance."""
        size = batch_size_of(batch)
        starts = pl_module.initial_variables(batch)
        check_starts(starts, pl_module.method, size)
        lbfgs = cfg.optimizer == "lbfgs" or any(s.optimizer == "lbfgs" for s in cfg.stages)
        # L-BFGS couples whatever it optimises together: one problem per instance
        pieces = [(b, b + 1) for b in range(size)] if lbfgs else [(0, size)]
        chosen = []
        for lo, hi in pieces:
            rows = slice_batch(batch, lo, hi) if lbfgs else batch
            results = []
            for start in starts:
                part = {k: v[lo:hi] for k, v in start.items()}
                results.append(run_stages(lambda v: pl_module.variable_losses(v, rows), part, cfg, trainer))
            variables, final, best = best_of_starts(results)
            if count:
                self._count(final, best, [r[2] for r in results])
                self.runs += len(results)
            chosen.append(variables)
        return cat_outputs(chosen)

    def _summary(self, runs: int) -> dict:
        s = self.stats
        if not s or not s["problems"]:
            return {}
        return {"problems": s["problems"], "mean_final_loss": s["loss_sum"] / s["problems"],
                "start_wins": {str(k): v for k, v in sorted(s["start_wins"].items())},
                "mean_iterations_per_stage": [n / max(runs, 1) for n in s["iterations_sum"]]}


class PerInstanceOptimisation(_OptimisingCallback, TestTimeCallback):
    def __init__(self, cfg: Any):
        super().__init__()
        self._setup(cfg)

    def summary(self) -> dict:
        return self._summary(self.runs)

    def on_test_start(self, trainer: pl.Trainer, pl_module) -> None:
        if not self.active:
            return
        super().on_test_start(trainer, pl_module)
        self._reset_stats()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if not self.active:
            return
        pl_module.check_batch(batch)
        with grad_enabled(), frozen_weights(pl_module):
            variables = self.optimise_instances(trainer, pl_module, pl_module.evidence(autograd_copy(batch)), self.cfg)
        with torch.no_grad(), autocast(trainer):
            batch[ADAPTED_OUTPUTS] = pl_module.variable_outputs(variables, batch)


class PerVideoOptimisation(_OptimisingCallback, PerVideoCallback):
    """A video's rows are optimised before its first row is scored, window by window (each window
    its own problem, the best of its starts kept); every row of the video is then answered from
    the cache (rows are matched by the batch's ``index``)."""

    config_kind = VideoOptimiseConfig

    def __init__(self, cfg: Any):
        super().__init__()
        self._setup(cfg)
        self.picture_tag = "pictures/optimised"

    def summary(self) -> dict:
        return {**super().summary(), **self._summary(self.runs)}

    def on_test_start(self, trainer: pl.Trainer, pl_module) -> None:
        if not self.active:
            return
        super().on_test_start(trainer, pl_module)
        self._reset_stats()
        self.cache: dict[int, dict[str, torch.Tensor]] = {}

    def window_starts(self, trainer: pl.Trainer, pl_module, rows: dict) -> list[Variables]:
        """The module's starts for the window's frames, or (``frames_first``) the one start made of
        each frame's own best fit under the per-frame terms."""
        if not self.cfg.frames_first:
            starts = pl_module.initial_variables(rows)
            check_starts(starts, pl_module.method, batch_size_of(rows))
            return starts
        first = pl_module.initial_variables(rows)[0]
        names = set(pl_module.video_losses(first, rows))
        stages = replace(self.cfg, stages=self.cfg.frame_stages) if self.cfg.frame_stages else self.cfg
        return [self.optimise_instances(trainer, pl_module, rows, without_terms(stages, names), count=False)]

    def prepare_video(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> dict[str, Any]:
        frames = autograd_copy(whole_video(trainer, video, pl_module.device))
        with grad_enabled(), torch.no_grad():  # out of the test loop's inference mode: the fit takes gradients
            evidence = pl_module.evidence(frames)
        if "index" not in frames:
            raise UserError("per-video optimisation matches rows by their 'index', but the test data has none")
        began, size = time.perf_counter(), batch_size_of(frames)
        names = tuple(pl_module.tied_variables)
        step = self.cfg.window or size
        outputs, finals, wins, iterations = [], [], [], []
        for lo in range(0, size, step):
            window = slice_batch(evidence, lo, min(lo + step, size))
            with grad_enabled(), frozen_weights(pl_module):
                starts = self.window_starts(trainer, pl_module, window)
                terms_of = video_terms(pl_module, window)
                results = [run_stages(terms_of, tied(start, names), self.cfg, trainer) for start in starts]
            final = torch.stack([r[1] for r in results])[:, 0]  # (K,): the window is one problem
            best = int(final.argmin())
            self._count(final[best:best + 1], torch.tensor([best]), [r[2] for r in results])
            self.runs += len(results)
            with torch.no_grad(), autocast(trainer):
                chosen = untied(results[best][0], names, batch_size_of(window))
                outputs.append(pl_module.variable_outputs(chosen, window))
            finals.append(float(final[best]))
            wins.append(best)
            iterations.append(results[best][2])
        outputs = cat_outputs(outputs)
        self.cache = {}  # one video at a time: rows of a video arrive together
        for i, index in enumerate(frames["index"].tolist()):
            self.cache[int(index)] = {k: v[i] for k, v in outputs.items()}
        return {"frames": len(self.cache), "windows": len(finals), "final_loss": sum(finals), "starts": wins,
                "iterations": iterations, "optimise_seconds": time.perf_counter() - began}

    def video_outputs(self, trainer: pl.Trainer, pl_module, video: int, rows: dict) -> dict[str, torch.Tensor]:
        missing = [i for i in rows["index"].tolist() if int(i) not in self.cache]
        if missing:
            raise UserError(f"per-video optimisation: rows {missing[:5]} of video {video} are not among the video's "
                            f"frames listed by the test data")
        picked = [self.cache[int(i)] for i in rows["index"].tolist()]
        return {k: torch.stack([p[k] for p in picked]) for k in picked[0]}


def output_optimisation(cfg: Any) -> TestTimeCallback:
    """The callback an ``InstanceOrVideoConfig`` section asks for (``per``)."""
    c = as_optimise_config(cfg, InstanceOrVideoConfig)
    validate_optimise_config(c, "adaptation")
    return (PerVideoOptimisation if c.per == "video" else PerInstanceOptimisation)(cfg)
