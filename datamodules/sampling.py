"""Shuffling that depends only on (seed, epoch), never on the global RNG.

A run resumed from a checkpoint at epoch k then sees exactly the sample order an
uninterrupted run would have seen, and nothing else that draws random numbers
(augmentation, dropout) can change the order.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from framework.errors import UserError


class EpochSeededSampler(Sampler[int]):
    """A fresh permutation of ``range(length)`` per epoch, drawn from ``default_rng([seed, epoch])``.

    Lightning calls ``set_epoch`` at the start of every training epoch (also through its
    distributed wrapper, which forwards the call and shards the order across ranks).
    """

    def __init__(self, length: int, seed: int = 0) -> None:
        if int(length) < 0:
            raise UserError(f"EpochSeededSampler: length must be >= 0, got {length}")
        if int(seed) < 0:
            raise UserError(f"EpochSeededSampler: seed must be >= 0, got {seed}")
        self.length = int(length)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def permutation(self, epoch: int | None = None) -> np.ndarray:
        epoch = self.epoch if epoch is None else int(epoch)
        return np.random.default_rng([self.seed, epoch]).permutation(self.length)

    def __iter__(self) -> Iterator[int]:
        return iter(self.permutation().tolist())

    def __len__(self) -> int:
        return self.length


class EpochTaggedSampler(EpochSeededSampler):
    """An EpochSeededSampler that yields ``(epoch, index)``, for datasets that augment per epoch."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return iter([(epoch, i) for i in self.permutation().tolist()])
