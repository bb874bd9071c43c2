"""Shuffling that depends only on (seed, epoch), never on the global RNG.

A run resumed from a checkpoint at epoch k then sees exactly the sample order an
uninterrupted run would have seen, and nothing else that draws random numbers
(augmentation, dropout) can change the order. Under DDP, test items are sharded by whole
videos (``VideoShardSampler``) so that per-video refinement sees each video on one rank.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Dataset, DistributedSampler, Sampler

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


class VideoShardSampler(DistributedSampler):
    """Test-time DDP sharding by whole videos: each rank gets complete videos, their items in
    order, instead of DistributedSampler's every-``world``-th item (which would hand one video's
    frame pairs to every rank, so every rank would refine every video). ``videos`` lists each
    video's dataset indices in frame order; items of no video are taken one by one. Videos go to
    the least loaded rank, longest first; ranks may get different numbers of items. A rank left
    without any (fewer videos than ranks: one footage clip on two devices) repeats the shortest
    video, as DistributedSampler pads: Lightning skips the test loop, epoch-end hooks and their
    collectives included, on a rank with no batch, which would leave the others waiting; metrics
    count each sample once and per-video reports keep one per video."""

    def __init__(self, dataset: Dataset, videos: Sequence[Sequence[int]], num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        groups = [[int(i) for i in v] for v in videos if len(v)]
        listed = sorted(i for g in groups for i in g)
        if len(set(listed)) != len(listed) or (listed and not 0 <= listed[0] <= listed[-1] < len(dataset)):
            raise UserError(f"VideoShardSampler: the videos of {type(dataset).__name__} repeat an item or "
                            f"name one outside its {len(dataset)} items")
        rest = sorted(set(range(len(dataset))) - set(listed))
        groups += [[i] for i in rest]
        load, owned = [0] * num_replicas, [[] for _ in range(num_replicas)]
        for g in sorted(groups, key=lambda g: (-len(g), g[0])):
            least = min(range(num_replicas), key=lambda r: (load[r], r))
            load[least] += len(g)
            owned[least].append(g)
        if not owned[rank] and groups:
            owned[rank] = [min(groups, key=lambda g: (len(g), g[0]))]
        self.indices = [i for g in sorted(owned[rank], key=lambda g: g[0]) for i in g]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
