"""Command-line configuration: YAML files merged in order, then dotted overrides,
validated against the method's schema (structured OmegaConf dataclasses).

Every problem becomes one ``UserError`` line that names the key or the file.
"""
from __future__ import annotations

import argparse
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from framework.errors import UserError


@dataclass
class TrainerConfig:
    """Keyword arguments of ``pl.Trainer``; anything here goes straight to it."""

    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Any = "32-true"
    max_epochs: Optional[int] = None
    max_steps: int = -1
    max_time: Optional[str] = None
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    limit_test_batches: Any = None
    val_check_interval: Any = None
    check_val_every_n_epoch: Optional[int] = 1
    num_sanity_val_steps: Optional[int] = None
    log_every_n_steps: Optional[int] = None
    accumulate_grad_batches: int = 1
    gradient_clip_val: Optional[float] = None
    gradient_clip_algorithm: Optional[str] = None
    deterministic: Optional[bool] = None
    benchmark: Optional[bool] = None
    inference_mode: bool = True
    enable_progress_bar: Optional[bool] = None
    enable_model_summary: Optional[bool] = None
    sync_batchnorm: bool = False
    detect_anomaly: bool = False
    fast_dev_run: bool = False


@dataclass
class WandbConfig:
    project: str = "motion-adapt"
    entity: Optional[str] = None
    # "auto": online when the user is logged in, offline otherwise (sync later with `wandb sync`).
    mode: str = "auto"
    tags: list[str] = field(default_factory=list)


@dataclass
class LoggerConfig:
    # any of: csv, tensorboard, wandb; an empty list (or ["none"]) logs nothing
    kinds: list[str] = field(default_factory=lambda: ["csv"])
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class CheckpointConfig:
    monitor: str = "val/mpjpe"
    mode: str = "min"
    every_n_epochs: int = 1


@dataclass
class PicturesConfig:
    enabled: bool = True
    num_samples: int = 4
    size: int = 256


@dataclass
class RunConfig:
    """Keys every method shares; a method's schema subclasses this and adds
    ``data``, ``model`` and ``adaptation``."""

    method: str = MISSING
    run_name: Optional[str] = None
    output_dir: str = "outputs"
    seed: int = 0
    # torch's intra-op threads per process (None: torch's default, one per core). One is the measured
    # choice on CPUs: these models gain little from more, and lose several times as soon as another
    # process competes for the cores (README, "Speed"); DDP runs one process per device anyway.
    threads: Optional[int] = 1
    # train.py: true resumes the newest run of this config from its last checkpoint, a path resumes from it
    resume: Any = False
    # adapt.py: the checkpoint to adapt; by default the newest one train.py wrote for this config
    ckpt: Optional[str] = None
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    pictures: PicturesConfig = field(default_factory=PicturesConfig)


def method_schema(method: str, **sections: type) -> type:
    """A method's config schema: the shared keys plus its own sections (``data``, ``model``,
    ``adaptation`` ...), each a dataclass. Built with ``make_dataclass`` so the section types are
    real classes whatever the caller's ``from __future__`` imports."""
    columns = [("method", str, field(default=method))]
    columns += [(name, section, field(default_factory=section)) for name, section in sections.items()]
    return make_dataclass(f"{method.title().replace('_', '')}Config", columns, bases=(RunConfig,))


def parse_args(argv: list[str], description: str) -> tuple[list[str], list[str]]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", action="append", default=[], metavar="YAML",
                        help="config file; repeat to merge several in order")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="dotted overrides applied after the files")
    args = parser.parse_args(argv)
    if not args.config:
        parser.error("at least one --config file is required (e.g. --config configs/iso/quick.yaml)")
    return args.config, args.overrides


def _read_yaml(path: str) -> DictConfig:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(p)
    except Exception as e:  # yaml syntax errors come in several types
        raise UserError(f"config file {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(cfg, DictConfig):
        raise UserError(f"config file {path} must hold a mapping at its top level")
    return cfg


def _explain(e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None) or getattr(e, "key", None)
    msg = str(e).splitlines()[0]
    name = type(e).__name__
    if ("Key" in name or "Attribute" in name) and ("not in struct" in msg or "not found" in msg or " not in '" in msg
                          or name == "ConfigKeyError"):
        hint = re.search(r"Did you mean: '([^']+)'", msg)
        return f"unknown config key '{key}'" + (f" (did you mean '{hint.group(1)}'?)" if hint else "")
    if key:
        return f"config key '{key}': {msg}"
    return msg


def load_config(files: list[str], overrides: list[str],
                schema_for: Callable[[str], type]) -> DictConfig:
    """Merge files then overrides onto the schema of the method they name."""
    raw = [_read_yaml(f) for f in files]
    parsed = []
    for item in overrides:
        if "=" not in item:
            raise UserError(f"override '{item}' is not of the form key.sub=value")
        key, value = item.split("=", 1)
        try:
            parsed.append((key.strip(), OmegaConf.from_dotlist([f"value={value}"]).value))
        except OmegaConfBaseException as e:
            raise UserError(f"could not parse override '{item}': {_explain(e)}") from None
    method = dict(parsed).get("method", OmegaConf.merge(*raw).get("method") if raw else None)
    if method is None:
        raise UserError("missing required config value 'method' (e.g. method: iso)")
    schema = schema_for(str(method))
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(schema), *raw)
    except OmegaConfBaseException as e:
        raise UserError(_explain(e)) from None
    # one override at a time onto the merged config, so that a dotted path reaches into lists
    # (adaptation.pose.stages.0.iterations=5) and a typed section rejects keys it does not have
    for key, value in parsed:
        try:
            OmegaConf.update(cfg, key, value, merge=True)
        except OmegaConfBaseException as e:
            if "is not a subclass" in str(e) or "out of range" in str(e):
                raise UserError(f"override '{key}': no such list entry (the list has fewer items)") from None
            raise UserError(_explain(e)) from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise UserError(f"missing required config value '{missing[0]}'")
    if cfg.run_name is None:
        cfg.run_name = "+".join(Path(f).stem for f in files)
    OmegaConf.set_struct(cfg, True)
    return cfg


def dataclass_from(cls: type, value: Any, what: str) -> Any:
    """``value`` as an instance of the config dataclass ``cls``: an instance, an OmegaConf node or a
    plain dict, nested sections (and lists of them) included; an unknown key is one UserError
    naming it."""
    if isinstance(value, cls):
        return value
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, dict):
        raise UserError(f"{what}: must be a {cls.__name__} or a mapping, got {type(value).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise UserError(f"{what}: unknown key '{unknown[0]}'")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, v in value.items():
        kind = hints.get(name)
        if is_dataclass(kind) and not isinstance(v, kind):
            v = dataclass_from(kind, v, f"{what}.{name}")
        elif typing.get_origin(kind) is list and isinstance(v, list):
            (item,) = typing.get_args(kind) or (None,)
            if is_dataclass(item):
                v = [dataclass_from(item, x, f"{what}.{name}[{i}]") for i, x in enumerate(v)]
        kwargs[name] = v
    return cls(**kwargs)


def to_plain(cfg: DictConfig | Any) -> Any:
    """A resolved plain-python copy (dicts, lists, scalars): safe to pickle with weights_only."""
    return OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg
