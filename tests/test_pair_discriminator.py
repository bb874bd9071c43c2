"""The inter-person discriminator: its score combines one-person and two-person judgements as the
paper weighs them, and training it separates plausible pairs from implausible ones."""
from __future__ import annotations

import pytest
import torch

from framework.errors import UserError
from nets.pair_discriminator import PairDiscriminator, adversarial_loss, discriminator_loss


def pairs(n: int, g: torch.Generator, apart: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Two people ``apart`` metres from each other, 5 m from the camera."""
    shape = torch.randn(n, 17, 3, generator=g) * 0.2
    a = shape + torch.tensor([-apart / 2, 0.0, 5.0])
    b = shape.roll(1, 0) + torch.tensor([apart / 2, 0.0, 5.0])
    return a, b


def test_the_score_is_a_quarter_of_each_person_and_half_the_pair():
    torch.manual_seed(0)
    d = PairDiscriminator(width=16, layers=1)
    a, b = pairs(4, torch.Generator().manual_seed(0), 1.0)
    s = d.scores(a, b)
    assert torch.allclose(s["c"], 0.25 * (s["d1a"] + s["d1b"]) + 0.5 * s["d2"])
    assert torch.allclose(d.scores(a + 3.0, b + 3.0)["d1a"], s["d1a"], atol=1e-6)  # D1: the pose, not where it is
    with pytest.raises(UserError, match=r"two \(N, 17, 3\) pose batches"):
        d(a, b[:, :16])


def test_training_tells_people_apart_from_people_inside_each_other():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    d = PairDiscriminator(width=32, layers=2)
    optimiser = torch.optim.Adam(d.parameters(), lr=3e-3)
    for _ in range(300):
        real, fake = pairs(64, g, 1.0), pairs(64, g, 0.0)  # true pairs stand a metre apart
        optimiser.zero_grad()
        discriminator_loss(d(*real), d(*fake)).backward()
        optimiser.step()
    with torch.no_grad():
        real, fake = d(*pairs(256, g, 1.0)), d(*pairs(256, g, 0.0))
    assert float(real.mean()) > 0.6 and float(fake.mean()) < 0.4
    assert float(adversarial_loss(fake)) > float(adversarial_loss(real))
