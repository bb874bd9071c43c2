"""The method registry: a method's own file registers its name, config schema, LightningModule,
datamodule, callbacks and weight sources (``@register``), and train.py and adapt.py only talk to
this. Nothing here names a method: ``get_method`` imports ``lightning_modules.<name>`` (a module
or a package) and, for the list of known methods, every module of that package."""
# no `from __future__ import annotations`: OmegaConf reads the schema dataclasses' annotations at run time
import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytorch_lightning as pl

from framework.config import to_plain
from framework.errors import UserError
from framework.io import load_checkpoint

METHODS_PACKAGE = "lightning_modules"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    schema: type
    module: type
    datamodule: Callable[[object, str], pl.LightningDataModule]  # (cfg, "source" | "target")
    adaptation: Callable[[object], pl.Callback]
    pictures: Optional[Callable[[object], pl.Callback]] = None
    # adapt.py: a callback writing the adapted predictions into the run folder (or None for this config)
    writer: Optional[Callable[[object, Path], Optional[pl.Callback]]] = None
    # weight files not trained by train.py that building the module loads (the authors' releases), by
    # role; adapt.py needs no checkpoint of this framework when every weight comes from them
    pretrained: Callable[[object], dict[str, str]] = lambda cfg: {}


REGISTRY: dict[str, Callable[[], MethodSpec]] = {}


def register(name: str) -> Callable[[Callable[[], MethodSpec]], Callable[[], MethodSpec]]:
    """Decorate the function that builds a method's spec (called only when the method is used, so
    its imports stay local to it)."""
    def add(factory: Callable[[], MethodSpec]) -> Callable[[], MethodSpec]:
        if name in REGISTRY and REGISTRY[name] is not factory:
            raise RuntimeError(f"method {name!r} is registered twice")
        REGISTRY[name] = factory
        return factory
    return add


def known_methods() -> list[str]:
    package = importlib.import_module(METHODS_PACKAGE)
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{METHODS_PACKAGE}.{info.name}")
    return sorted(REGISTRY)


def get_method(name: str) -> MethodSpec:
    if name not in REGISTRY and isinstance(name, str) and name.isidentifier():
        try:
            importlib.import_module(f"{METHODS_PACKAGE}.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"{METHODS_PACKAGE}.{name}":
                raise
    if name not in REGISTRY:
        raise UserError(f"method: unknown method {name!r}; must be one of {', '.join(known_methods())}")
    spec = REGISTRY[name]()
    if spec.name != name:
        raise RuntimeError(f"the spec registered as {name!r} calls itself {spec.name!r}")
    return spec


def schema_for(name: str) -> type:
    return get_method(name).schema


def build_module(spec: MethodSpec, cfg) -> pl.LightningModule:
    """The module of the config's model section. Its own checks raise UserError (one line naming the
    key); any other exception is a bug and keeps its traceback."""
    return spec.module(method=spec.name, model=to_plain(cfg.model))


def load_module(spec: MethodSpec, cfg, ckpt_path) -> pl.LightningModule:
    """The module described by ``cfg.model`` with the weights of a checkpoint of the same method."""
    ckpt = load_checkpoint(ckpt_path)
    method = ckpt.get("method") or ckpt.get("hyper_parameters", {}).get("method")
    if method != spec.name:
        raise UserError(f"checkpoint {ckpt_path} was written by method '{method}', not '{spec.name}'")
    if "state_dict" not in ckpt:
        raise UserError(f"checkpoint {ckpt_path} has no 'state_dict'")
    module = build_module(spec, cfg)
    own, theirs = module.state_dict(), ckpt["state_dict"]
    missing = [k for k in own if k not in theirs]
    unexpected = [k for k in theirs if k not in own]
    shapes = [k for k in own if k in theirs and own[k].shape != theirs[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:3]}")
        if shapes:
            parts.append(f"shape mismatch in {shapes[:3]}")
        raise UserError(f"checkpoint {ckpt_path} does not fit the model in the config ({'; '.join(parts)}); "
                        f"check the model section matches the one it was trained with")
    module.load_state_dict(theirs, strict=True)
    return module
