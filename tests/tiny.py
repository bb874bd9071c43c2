"""Tiny models and data shared by the tests."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from lightning_modules.iso import ISOModule


def tiny_iso(seed: int = 0, **model) -> ISOModule:
    torch.manual_seed(seed)
    cfg = {"width": 32, "dropout": 0.0, **model}
    return ISOModule("iso", cfg)


class RandomPoses(Dataset):
    """Random but fixed 2D/3D pose pairs in the batch format of the pose datamodules."""

    def __init__(self, n: int = 12, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.pose3d = torch.randn(n, 17, 3, generator=g) * 0.3
        self.pose3d -= self.pose3d[:, :1].clone()
        self.pose2d = self.pose3d[..., :2] * 0.4 + 0.1 * torch.randn(n, 1, 2, generator=g)

    def __len__(self) -> int:
        return len(self.pose3d)

    def __getitem__(self, i: int) -> dict:
        return {"pose2d": self.pose2d[i], "pose3d": self.pose3d[i], "index": torch.tensor(i)}


def loader(n: int = 12, batch_size: int = 4, seed: int = 0) -> DataLoader:
    return DataLoader(RandomPoses(n, seed), batch_size=batch_size, shuffle=False)


def batch_of(n: int = 4, seed: int = 0) -> dict:
    return next(iter(loader(n, n, seed)))
