"""Loading PIPs weights from the authors' files, strictly.

The authors' ``saverloader.save`` writes ``{'model_state_dict': ..., 'optimizer_state_dict': ...}``
(sometimes also scheduler / EMA entries) with the model's own key names, no ``module.`` prefix;
``model-000200000.pth`` is such a file. Their loader uses ``strict=False``, which would silently
leave a renamed layer random, so here every key must match in name and shape. A plain state dict,
or one saved from DataParallel (every key ``module.``-prefixed), is accepted too.
"""
from __future__ import annotations

import os
from typing import Mapping, Optional

import torch

from framework.errors import UserError
from framework.io import load_checkpoint, save_torch


def _listing(keys: list[str], shown: int = 3) -> str:
    head = ", ".join(repr(k) for k in keys[:shown])
    return head + (f" and {len(keys) - shown} more" if len(keys) > shown else "")


def _model_state(ckpt: Mapping, where: str) -> dict[str, torch.Tensor]:
    if "model_state_dict" in ckpt:
        sd = ckpt["model_state_dict"]
        if not isinstance(sd, Mapping):
            raise UserError(f"{where}: 'model_state_dict' holds a {type(sd).__name__}, expected a state dict")
    else:
        sd = ckpt
    if not sd:
        raise UserError(f"{where} holds no weights")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not torch.is_tensor(v)]
    if bad:
        raise UserError(f"{where} is not a PIPs checkpoint (expected a state dict or a dict with "
                        f"'model_state_dict'); non-tensor entries: {_listing([str(k) for k in bad])}")
    prefixed = [k.startswith("module.") for k in sd]
    if all(prefixed):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    elif any(prefixed):
        plain = [k for k in sd if not k.startswith("module.")]
        raise UserError(f"{where} mixes 'module.'-prefixed keys with unprefixed ones: {_listing(plain)}")
    return dict(sd)


def load_pips_state_dict(net: torch.nn.Module, path_or_state_dict) -> None:
    """Load the authors' weights (file path, checkpoint dict or state dict) into ``net``
    (nets.pips.PIPs); every key present, nothing extra, every shape equal."""
    if isinstance(path_or_state_dict, (str, os.PathLike)):
        where = f"PIPs checkpoint {os.fspath(path_or_state_dict)}"
        ckpt = load_checkpoint(path_or_state_dict)
    elif isinstance(path_or_state_dict, Mapping):
        where, ckpt = "PIPs state dict", path_or_state_dict
    else:
        raise UserError(f"PIPs weights must be a path or a state dict, got {type(path_or_state_dict).__name__}")
    sd = _model_state(ckpt, where)
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd]
    if missing:
        raise UserError(f"{where} is missing key(s) {_listing(missing)}")
    unexpected = [k for k in sd if k not in expected]
    if unexpected:
        raise UserError(f"{where} has unexpected key(s) {_listing(unexpected)}")
    wrong = [k for k, v in expected.items() if tuple(sd[k].shape) != tuple(v.shape)]
    if wrong:
        k = wrong[0]
        raise UserError(f"{where}: key {k!r} has shape {tuple(sd[k].shape)}, the model expects "
                        f"{tuple(expected[k].shape)}" + (f" ({len(wrong) - 1} more keys differ)" if len(wrong) > 1 else ""))
    net.load_state_dict(sd, strict=True)


def save_authors_checkpoint(net: torch.nn.Module, path, optimizer: Optional[torch.optim.Optimizer] = None):
    """Write ``net`` in the authors' layout, so files made here load in their code and ours."""
    ckpt = {"model_state_dict": net.state_dict()}
    if optimizer is not None:
        ckpt["optimizer_state_dict"] = optimizer.state_dict()
    return save_torch(path, ckpt)
