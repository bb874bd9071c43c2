"""What every source/target datamodule shares: config coercion, the per-(domain, part)
dataset cache, root checks and the loaders.

A subclass names its config dataclass (``config_class``), validates it (``_validate``)
and builds one part of one domain (``_build``). Train loaders shuffle with a sampler
that is a function of (seed, epoch), so a resumed run sees the same order and the
global RNG is never touched; val/test loaders keep dataset order (under DDP, test loaders
of video datasets give each rank whole videos).
"""
from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch.utils.data import DataLoader, Dataset, Sampler

from datamodules.sampling import EpochSeededSampler, VideoShardSampler
from datamodules.videos import listed_videos
from framework.errors import UserError

DOMAINS = ("source", "target")
EMBEDDED_KINDS = ("synthetic", "people")  # generated here: no root to read
PARTS = ("train", "val", "test")

# Synthetic seed of each (domain, part): seed * 8 + code, so every part draws its own samples.
SEED_CODE = {("source", "train"): 0, ("source", "val"): 1, ("source", "test"): 2,
             ("target", "train"): 3, ("target", "val"): 4, ("target", "test"): 5}


def plain(cfg: Any) -> Any:
    return OmegaConf.to_object(cfg) if OmegaConf.is_config(cfg) else cfg


class SourceTargetDataModule(pl.LightningDataModule):
    config_class: type

    def __init__(self, cfg: Any, test_domain: str = "source", key: str = "data") -> None:
        super().__init__()
        if test_domain not in DOMAINS:
            raise UserError(f"test_domain must be one of {', '.join(DOMAINS)}, got '{test_domain}'")
        cfg = plain(cfg)
        if isinstance(cfg, dict):
            try:
                cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(self.config_class), cfg))
            except OmegaConfBaseException as e:
                raise UserError(f"{key}: {str(e).splitlines()[0]}") from None
        self.cfg = cfg
        self.key = key
        self.test_domain = test_domain
        self._validate()
        # roots are checked up front for the domain this run reads most: the source when
        # training (train.py), the target when adapting (adapt.py); others when first built
        self._check_root("source" if test_domain == "source" else "target")
        self._datasets: dict[tuple[str, str], Dataset] = {}

    @abstractmethod
    def _validate(self) -> None:
        """Raise one UserError naming the first bad ``data.*`` key."""

    @abstractmethod
    def _build(self, name: str, part: str) -> Dataset:
        """The ``part`` of domain ``name``."""

    def synthetic_seed(self, name: str, part: str) -> int:
        return self.cfg.seed * 8 + SEED_CODE[(name, part)]

    def _check_root(self, domain: str) -> Optional[Path]:
        d = getattr(self.cfg, domain)
        if d.kind in EMBEDDED_KINDS:
            return None
        if not d.root:
            raise UserError(f"{self.key}.{domain}.root: must be set for kind={d.kind}")
        root = Path(d.root).expanduser()
        if not root.exists():
            raise UserError(f"{self.key}.{domain}.root: {d.root} does not exist")
        return root

    def domain_dataset(self, name: str, part: str = "test") -> Dataset:
        """The ``part`` (train / val / test) of domain ``name`` (source / target), built once."""
        if name not in DOMAINS:
            raise UserError(f"domain must be one of {', '.join(DOMAINS)}, got '{name}'")
        if part not in PARTS:
            raise UserError(f"part must be one of {', '.join(PARTS)}, got '{part}'")
        if (name, part) not in self._datasets:
            self._datasets[(name, part)] = self._build(name, part)
        return self._datasets[(name, part)]

    @property
    def train_domain(self) -> str:
        """The domain whose train part train.py learns from (validation stays on the source)."""
        return "source"

    def setup(self, stage: Optional[str] = None) -> None:
        if stage in (None, "fit"):
            self.domain_dataset(self.train_domain, "train")
        if stage in (None, "fit", "validate"):
            self.domain_dataset("source", "val")
        if stage in (None, "test", "predict"):
            self.domain_dataset(self.test_domain, "test")

    def train_sampler(self, dataset: Dataset) -> Sampler:
        return EpochSeededSampler(len(dataset), self.cfg.seed)

    def _loader(self, dataset: Dataset, batch_size: int, sampler: Any = None) -> DataLoader:
        workers = self.cfg.num_workers
        # the loader draws its workers' base seed from this generator, not from the global RNG
        generator = torch.Generator().manual_seed(self.cfg.seed)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                          pin_memory=self.cfg.pin_memory, persistent_workers=workers > 0, drop_last=False,
                          generator=generator)

    def train_dataloader(self) -> DataLoader:
        dataset = self.domain_dataset(self.train_domain, "train")
        return self._loader(dataset, self.cfg.batch_size, self.train_sampler(dataset))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.domain_dataset("source", "val"), self.cfg.test_batch_size)

    def test_sampler(self, dataset: Dataset) -> Optional[Sampler]:
        """Under DDP, whole videos per rank where the dataset lists its videos (``videos()``);
        otherwise Lightning's DistributedSampler (None: dataset order in one process)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size < 2:
            return None
        spans = listed_videos(dataset)
        if not spans:
            return None
        return VideoShardSampler(dataset, [spans[v].indices for v in sorted(spans)], trainer.world_size,
                                 trainer.global_rank)

    def test_dataloader(self) -> DataLoader:
        dataset = self.domain_dataset(self.test_domain, "test")
        return self._loader(dataset, self.cfg.test_batch_size, self.test_sampler(dataset))

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
