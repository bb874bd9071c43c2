"""Loading RAFT weights from the authors' files and from torchvision's layout, strictly.

Our model's keys are the authors' names without DataParallel's ``module.`` prefix. The authors'
large model registers the strided residual blocks' skip BatchNorm twice (as ``norm3`` and inside
``downsample`` as ``downsample.1``), so their state dict holds it under both names: for the large
context encoder (batch norm) that is ``cnet.layer{2,3}.0.norm3.*`` next to ``...downsample.1.*``;
the instance-norm feature encoder and the small model (instance / no norm, its skip norm is
``norm4``) have no such entries since those norms hold no tensors.

torchvision's ``raft_large`` / ``raft_small`` hold the same tensors under other names; their model
expects images already in [-1, 1] while ours normalises [0, 255] inside, so the same weights give
the same flow when each model gets its own input range.
"""
from __future__ import annotations

import os
import re
from typing import Mapping

import torch

from framework.errors import UserError
from framework.io import load_checkpoint

# (our pattern, torchvision pattern): applied in order, first match wins.
_ENCODER = {"fnet": "feature_encoder", "cnet": "context_encoder"}
_RULES = [
    (r"^(fnet|cnet)\.conv1\.", r"{enc}.convnormrelu.0."),
    (r"^(fnet|cnet)\.norm1\.", r"{enc}.convnormrelu.1."),
    (r"^(fnet|cnet)\.conv2\.", r"{enc}.conv."),
    (r"^(fnet|cnet)\.(layer\d\.\d)\.conv(\d)\.", r"{enc}.\2.convnormrelu\3.0."),
    (r"^(fnet|cnet)\.(layer\d\.\d)\.norm(\d)\.", r"{enc}.\2.convnormrelu\3.1."),
    (r"^(fnet|cnet)\.(layer\d\.\d)\.downsample\.", r"{enc}.\2.downsample."),
    (r"^update_block\.encoder\.convc(\d)\.", r"update_block.motion_encoder.convcorr\1.0."),
    (r"^update_block\.encoder\.convf(\d)\.", r"update_block.motion_encoder.convflow\1.0."),
    (r"^update_block\.encoder\.conv\.", r"update_block.motion_encoder.conv.0."),
    (r"^update_block\.gru\.conv([zrq])(\d)\.", r"update_block.recurrent_block.convgru\2.conv\1."),
    (r"^update_block\.gru\.conv([zrq])\.", r"update_block.recurrent_block.convgru1.conv\1."),
    (r"^update_block\.flow_head\.", r"update_block.flow_head."),
    (r"^update_block\.mask\.0\.", r"mask_predictor.convrelu.0."),
    (r"^update_block\.mask\.2\.", r"mask_predictor.conv."),
]
_TV_RULES = [
    (r"^(feature_encoder|context_encoder)\.convnormrelu\.0\.", r"{enc}.conv1."),
    (r"^(feature_encoder|context_encoder)\.convnormrelu\.1\.", r"{enc}.norm1."),
    (r"^(feature_encoder|context_encoder)\.conv\.", r"{enc}.conv2."),
    (r"^(feature_encoder|context_encoder)\.(layer\d\.\d)\.convnormrelu(\d)\.0\.", r"{enc}.\2.conv\3."),
    (r"^(feature_encoder|context_encoder)\.(layer\d\.\d)\.convnormrelu(\d)\.1\.", r"{enc}.\2.norm\3."),
    (r"^(feature_encoder|context_encoder)\.(layer\d\.\d)\.downsample\.", r"{enc}.\2.downsample."),
    (r"^update_block\.motion_encoder\.convcorr(\d)\.0\.", r"update_block.encoder.convc\1."),
    (r"^update_block\.motion_encoder\.convflow(\d)\.0\.", r"update_block.encoder.convf\1."),
    (r"^update_block\.motion_encoder\.conv\.0\.", r"update_block.encoder.conv."),
    # large: convgru1/2 -> convz1/convz2; small (single ConvGRU): convgru1 -> convz (see _from_tv)
    (r"^update_block\.recurrent_block\.convgru(\d)\.conv([zrq])\.", r"update_block.gru.conv\2\1."),
    (r"^update_block\.flow_head\.", r"update_block.flow_head."),
    (r"^mask_predictor\.convrelu\.0\.", r"update_block.mask.0."),
    (r"^mask_predictor\.conv\.", r"update_block.mask.2."),
]
_TV_ENCODER = {v: k for k, v in _ENCODER.items()}


def _rename(key: str, rules, encoders: dict, layout: str) -> str:
    for pattern, repl in rules:
        m = re.match(pattern, key)
        if m:
            if "{enc}" in repl:
                repl = repl.replace("{enc}", encoders[m.group(1)])
            return re.sub(pattern, repl, key, count=1)
    raise UserError(f"unexpected key {key!r} in a RAFT state dict ({layout} layout)")


def _is_small_ours(sd: Mapping) -> bool:
    return not any(k.startswith("update_block.gru.convz1") for k in sd)


def _duplicate_norm_keys(sd: Mapping) -> dict[str, str]:
    """Map each authors' ``...norm3.X`` duplicate to the ``...downsample.1.X`` it copies (large model)."""
    out = {}
    for key in sd:
        m = re.match(r"^((?:fnet|cnet)\.layer\d\.\d)\.downsample\.1\.(.+)$", key)
        if m:
            out[f"{m.group(1)}.norm3.{m.group(2)}"] = key
    return out


def to_authors_layout(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys -> the authors' released-file keys (``module.`` prefix, duplicated skip BatchNorm)."""
    out = {}
    small = _is_small_ours(state_dict)
    dups = {} if small else _duplicate_norm_keys(state_dict)
    by_source = {src: dup for dup, src in dups.items()}
    for key, value in state_dict.items():
        if key in by_source:
            out["module." + by_source[key]] = value
        out["module." + key] = value
    return out


def to_torchvision_layout(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our keys -> torchvision ``raft_large`` / ``raft_small`` keys."""
    return {_rename(k, _RULES, _ENCODER, "ours"): v for k, v in state_dict.items()}


def _from_torchvision(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    small = not any(k.startswith("update_block.recurrent_block.convgru2.") for k in sd)
    out = {}
    for key, value in sd.items():
        new = _rename(key, _TV_RULES, _TV_ENCODER, "torchvision")
        if small:
            new = re.sub(r"^update_block\.gru\.conv([zrq])1\.", r"update_block.gru.conv\1.", new)
        out[new] = value
    return out


def _from_authors(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    prefixed = [k.startswith("module.") for k in sd]
    if any(prefixed) and not all(prefixed):
        bad = next(k for k in sd if not k.startswith("module."))
        raise UserError(f"authors' RAFT checkpoint mixes 'module.'-prefixed keys with {bad!r}")
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    dups = {} if _is_small_ours(sd) else _duplicate_norm_keys(sd)
    for dup, src in dups.items():
        if dup not in sd:
            raise UserError(f"authors' RAFT checkpoint lacks {dup!r} (their large model stores each "
                            f"strided block's skip BatchNorm also under that name)")
        if sd[dup].shape != sd[src].shape or not torch.equal(sd[dup], sd[src]):
            raise UserError(f"authors' RAFT checkpoint: {dup!r} differs from {src!r}, which it should copy")
        del sd[dup]
    return sd


def detect_source(sd: Mapping[str, torch.Tensor]) -> str:
    keys = [k[len("module."):] if k.startswith("module.") else k for k in sd]
    if any(k.startswith(("feature_encoder.", "context_encoder.")) for k in keys):
        return "torchvision"
    if any(k.startswith(("fnet.", "cnet.")) for k in keys):
        return "authors"
    raise UserError("state dict is neither the authors' RAFT layout (fnet./cnet. keys) nor torchvision's "
                    "(feature_encoder./context_encoder. keys)")


def _size_of(sd: Mapping[str, torch.Tensor]) -> str:
    stem = sd.get("fnet.conv1.weight")
    if stem is None:
        raise UserError("RAFT state dict lacks 'fnet.conv1.weight' (feature_encoder.convnormrelu.0.weight)")
    return "small" if stem.shape[0] == 32 else "large"


def _source_name(key: str, source: str) -> str:
    """How one of our keys is spelled in the checkpoint's own layout, for error messages."""
    if source == "torchvision":
        return to_torchvision_layout({key: None}).popitem()[0]
    return "module." + key


def load_raft_state_dict(model, state_dict_or_path, source: str = "auto") -> None:
    """Load weights into ``model`` (nets.raft.RAFT) strictly: every key present, nothing extra, shapes
    equal, small vs large matching. ``source``: "auto", "authors" or "torchvision"."""
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        sd = load_checkpoint(state_dict_or_path)
    else:
        sd = state_dict_or_path
    if not isinstance(sd, Mapping):
        raise UserError(f"RAFT weights must be a state dict, got {type(sd).__name__}")
    if source == "auto":
        source = detect_source(sd)
    if source == "authors":
        ours = _from_authors(sd)
    elif source == "torchvision":
        ours = _from_torchvision({k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()})
    else:
        raise UserError(f"source {source!r} unknown; expected 'auto', 'authors' or 'torchvision'")

    want = "small" if model.small else "large"
    got = _size_of(ours)
    if got != want:
        raise UserError(f"checkpoint holds RAFT-{got} (key 'fnet.conv1.weight' has "
                        f"{ours['fnet.conv1.weight'].shape[0]} channels) but the model is RAFT-{want}")
    expected = model.state_dict()
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in ours:
            ours[key] = expected[key]  # old files may lack this counter; it does not affect outputs
    missing = [k for k in expected if k not in ours]
    if missing:
        raise UserError(f"RAFT checkpoint ({source} layout) is missing key {_source_name(missing[0], source)!r}"
                        + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    unexpected = [k for k in ours if k not in expected]
    if unexpected:
        raise UserError(f"RAFT checkpoint ({source} layout) has unexpected key {unexpected[0]!r}"
                        + (f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""))
    for key, value in expected.items():
        if tuple(ours[key].shape) != tuple(value.shape):
            raise UserError(f"RAFT checkpoint key {key!r} has shape {tuple(ours[key].shape)}, "
                            f"model expects {tuple(value.shape)}")
    model.load_state_dict(ours, strict=True)
