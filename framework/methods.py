"""The registry that ties a method name to its config schema, LightningModule,
datamodule and callbacks. train.py and adapt.py only talk to this."""
# no `from __future__ import annotations`: OmegaConf reads the schema dataclasses' annotations at run time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytorch_lightning as pl

from framework.config import RunConfig, to_plain
from framework.errors import UserError
from framework.io import load_checkpoint


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


def _iso() -> MethodSpec:
    from callbacks.per_instance import PerInstanceAdaptation, PerInstanceAdaptationConfig
    from callbacks.skeleton_pictures import SkeletonPictures
    from datamodules.pose_lifting import PoseDataConfig, PoseLiftingDataModule
    from lightning_modules.iso import ISOModelConfig, ISOModule

    @dataclass
    class ISOConfig(RunConfig):
        method: str = "iso"
        data: PoseDataConfig = field(default_factory=PoseDataConfig)
        model: ISOModelConfig = field(default_factory=ISOModelConfig)
        adaptation: PerInstanceAdaptationConfig = field(default_factory=PerInstanceAdaptationConfig)

    return MethodSpec(
        name="iso",
        schema=ISOConfig,
        module=ISOModule,
        datamodule=lambda cfg, domain: PoseLiftingDataModule(cfg.data, test_domain=domain),
        adaptation=lambda cfg: PerInstanceAdaptation(PerInstanceAdaptationConfig(**to_plain(cfg.adaptation))),
        pictures=lambda cfg: SkeletonPictures(cfg.pictures.num_samples, cfg.pictures.size),
    )


def _raft_writer(cfg, run_dir: Path) -> Optional[pl.Callback]:
    """Footage has no ground truth to score: the refined flow itself is the result, so write it."""
    if cfg.data.target.kind != "footage":
        return None
    from callbacks.flow_writer import FlowWriter
    return FlowWriter(run_dir / "flow")


def _raft() -> MethodSpec:
    from callbacks.flow_pictures import FlowPictures
    from callbacks.flow_refinement import FlowRefinement, FlowRefinementConfig
    from datamodules.optical_flow import FlowDataConfig, OpticalFlowDataModule
    from lightning_modules.raft import RAFTModelConfig, RAFTModule

    @dataclass
    class RAFTConfig(RunConfig):
        method: str = "raft"
        data: FlowDataConfig = field(default_factory=FlowDataConfig)
        model: RAFTModelConfig = field(default_factory=RAFTModelConfig)
        adaptation: FlowRefinementConfig = field(default_factory=FlowRefinementConfig)

    return MethodSpec(
        name="raft",
        schema=RAFTConfig,
        module=RAFTModule,
        datamodule=lambda cfg, domain: OpticalFlowDataModule(cfg.data, test_domain=domain),
        adaptation=lambda cfg: FlowRefinement(FlowRefinementConfig(**to_plain(cfg.adaptation))),
        pictures=lambda cfg: FlowPictures(cfg.pictures.num_samples, cfg.pictures.size),
        writer=_raft_writer,
    )


def _pips_writer(cfg, run_dir: Path) -> Optional[pl.Callback]:
    """Footage has no ground truth: the refined tracks (npz) and an overlay video are the result."""
    if cfg.data.target.kind != "footage":
        return None
    from callbacks.track_writer import TrackWriter
    return TrackWriter(run_dir / "tracks")


def _pips() -> MethodSpec:
    from callbacks.track_pictures import TrackPictures
    from callbacks.track_refinement import TrackRefinement, TrackRefinementConfig
    from datamodules.point_tracking import TrackDataConfig, PointTrackingDataModule
    from lightning_modules.pips import PIPsModelConfig, PIPsModule

    @dataclass
    class PIPsConfig(RunConfig):
        method: str = "pips"
        data: TrackDataConfig = field(default_factory=TrackDataConfig)
        model: PIPsModelConfig = field(default_factory=PIPsModelConfig)
        adaptation: TrackRefinementConfig = field(default_factory=TrackRefinementConfig)

    return MethodSpec(
        name="pips",
        schema=PIPsConfig,
        module=PIPsModule,
        datamodule=lambda cfg, domain: PointTrackingDataModule(cfg.data, test_domain=domain),
        adaptation=lambda cfg: TrackRefinement(TrackRefinementConfig(**to_plain(cfg.adaptation))),
        pictures=lambda cfg: TrackPictures(cfg.pictures.num_samples, cfg.pictures.size),
        writer=_pips_writer,
    )


REGISTRY: dict[str, Callable[[], MethodSpec]] = {"iso": _iso, "raft": _raft, "pips": _pips}


def get_method(name: str) -> MethodSpec:
    try:
        return REGISTRY[name]()
    except KeyError:
        raise UserError(f"config key 'method': unknown method {name!r}; known: {sorted(REGISTRY)}") from None


def schema_for(name: str) -> type:
    return get_method(name).schema


def build_module(spec: MethodSpec, cfg) -> pl.LightningModule:
    try:
        return spec.module(method=spec.name, model=to_plain(cfg.model))
    except (TypeError, ValueError) as e:
        raise UserError(f"model: {e}") from None


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
