"""The dual network's inter-person discriminator (Cheng, Wang, Tan, eq. 8-9): whether a pair of
interacting people is plausible, not only each person alone.

D1 scores one person-centric pose (root-relative), D2 the pair of camera-centred poses (where the
two stand and how they face each other); both end in a sigmoid, and the pair's score is
C = 0.25 (D1(P_a) + D1(P_b)) + 0.5 D2(P_a, P_b). The discriminator is trained to raise C on true
pairs and lower it on estimated ones (L_dis = log C_true + log(1 - C_estimated)); the integration
network against it. The MLP sizes are this framework's: the paper does not give them.
"""
from __future__ import annotations

import torch
from torch import nn

from framework.errors import UserError


def _mlp(inputs: int, width: int, layers: int) -> nn.Sequential:
    blocks, size = [], inputs
    for _ in range(layers):
        blocks += [nn.Linear(size, width), nn.LeakyReLU(0.2)]
        size = width
    return nn.Sequential(*blocks, nn.Linear(size, 1))


class PairDiscriminator(nn.Module):
    def __init__(self, joints: int = 17, width: int = 256, layers: int = 3, root: int = 0) -> None:
        super().__init__()
        self.joints, self.root = joints, root
        self.single = _mlp(joints * 3, width, layers)  # D1
        self.pair = _mlp(2 * joints * 3, width, layers)  # D2

    def scores(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, J, 3) camera-frame poses of the two people -> D1(a), D1(b), D2(a, b) and C, each (N,) in (0, 1)."""
        if a.shape != b.shape or a.dim() != 3 or a.shape[1:] != (self.joints, 3):
            raise UserError(f"pair discriminator: two (N, {self.joints}, 3) pose batches, got {tuple(a.shape)} and "
                            f"{tuple(b.shape)}")
        relative = lambda p: (p - p[:, self.root:self.root + 1]).flatten(1)  # noqa: E731
        d1a = torch.sigmoid(self.single(relative(a)))[:, 0]
        d1b = torch.sigmoid(self.single(relative(b)))[:, 0]
        d2 = torch.sigmoid(self.pair(torch.cat([a.flatten(1), b.flatten(1)], 1)))[:, 0]
        return {"d1a": d1a, "d1b": d1b, "d2": d2, "c": 0.25 * (d1a + d1b) + 0.5 * d2}

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """C (N,) for each pair."""
        return self.scores(a, b)["c"]


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """What the discriminator minimises: -(log C_true + log(1 - C_estimated)), averaged."""
    return -(torch.log(real.clamp_min(eps)) + torch.log((1 - fake).clamp_min(eps))).mean()


def adversarial_loss(fake: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """What the integration network minimises against it: -log C_estimated (the non-saturating form)."""
    return -torch.log(fake.clamp_min(eps)).mean()
