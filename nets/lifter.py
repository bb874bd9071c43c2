"""The residual-MLP 2D-to-3D lifter of Martinez et al., split as ISO needs it:
a shared feature extractor feeding a fully supervised (FSL) head and a
self-supervised (SSL) head, plus a 2D pose discriminator without BatchNorm.
"""
from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """(Linear -> [BN] -> LeakyReLU -> Dropout) x 2 with an identity skip."""

    def __init__(self, width: int, dropout: float = 0.5, batch_norm: bool = True, slope: float = 0.2):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(2):
            layers.append(nn.Linear(width, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers += [nn.LeakyReLU(slope), nn.Dropout(dropout)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FeatureExtractor(nn.Module):
    """Linear from the flattened input to ``width``, then ``num_blocks`` residual blocks."""

    def __init__(self, in_features: int, width: int = 1024, num_blocks: int = 3, dropout: float = 0.5,
                 batch_norm: bool = True, slope: float = 0.2):
        super().__init__()
        stem: list[nn.Module] = [nn.Linear(in_features, width)]
        if batch_norm:
            stem.append(nn.BatchNorm1d(width))
        stem += [nn.LeakyReLU(slope), nn.Dropout(dropout)]
        self.stem = nn.Sequential(*stem)
        self.blocks = nn.Sequential(*[ResidualBlock(width, dropout, batch_norm, slope) for _ in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x.flatten(1)))


class PoseHead(nn.Module):
    """Residual blocks then a linear layer to J x 3."""

    def __init__(self, num_joints: int, width: int = 1024, num_blocks: int = 1, dropout: float = 0.5,
                 slope: float = 0.2):
        super().__init__()
        self.num_joints = num_joints
        self.blocks = nn.Sequential(*[ResidualBlock(width, dropout, True, slope) for _ in range(num_blocks)])
        self.out = nn.Linear(width, num_joints * 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(features)).view(-1, self.num_joints, 3)


class PoseDiscriminator(nn.Module):
    """Scores flattened 2D poses as real (logit > 0) or fake; no BatchNorm, as in ISO."""

    def __init__(self, num_joints: int, width: int = 1024, num_blocks: int = 3, dropout: float = 0.5,
                 slope: float = 0.2):
        super().__init__()
        self.features = FeatureExtractor(num_joints * 2, width, num_blocks, dropout, batch_norm=False, slope=slope)
        self.out = nn.Linear(width, 1)

    def forward(self, pose2d: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(pose2d)).squeeze(-1)


class ISOLifter(nn.Module):
    """Shared extractor with FSL and SSL heads (both J x 3) and the discriminator."""

    def __init__(self, num_joints: int = 17, width: int = 1024, extractor_blocks: int = 3, head_blocks: int = 1,
                 discriminator_blocks: int = 3, dropout: float = 0.5, slope: float = 0.2):
        super().__init__()
        self.num_joints = num_joints
        self.extractor = FeatureExtractor(num_joints * 2, width, extractor_blocks, dropout, True, slope)
        self.fsl_head = PoseHead(num_joints, width, head_blocks, dropout, slope)
        self.ssl_head = PoseHead(num_joints, width, head_blocks, dropout, slope)
        self.discriminator = PoseDiscriminator(num_joints, width, discriminator_blocks, dropout, slope)

    def lift(self, pose2d: torch.Tensor, head: str = "fsl") -> torch.Tensor:
        features = self.extractor(pose2d)
        return (self.fsl_head if head == "fsl" else self.ssl_head)(features)
