"""The pose priors: exact invertibility and log-determinants of the flows, maximum likelihood
learning a correlated distribution, and the GMM baseline."""
from __future__ import annotations

import math

import pytest
import torch

from framework.errors import UserError
from nets.pose_prior import GMMPrior, NoPrior, NormalizingFlowPrior, parameter_count


def trained_flow(kind: str, steps: int = 4) -> NormalizingFlowPrior:
    """A small flow with non-trivial weights (random, not the identity-like start)."""
    torch.manual_seed(0)
    flow = NormalizingFlowPrior(joints=2, rep=3, kind=kind, steps=steps, hidden=16).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow


@pytest.mark.parametrize("kind", ["realnvp", "prelu"])
def test_flow_inverts_exactly_and_its_log_det_is_the_jacobians(kind):
    flow = trained_flow(kind)
    theta = torch.randn(5, 2, 3, dtype=torch.float64)
    z, logdet = flow(theta)
    assert torch.allclose(flow.inverse(z), theta, atol=1e-5)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(lambda x: flow(x.view(1, 2, 3))[0][0], theta[i].flatten())
        assert logdet[i].item() == pytest.approx(torch.linalg.slogdet(jac)[1].item(), abs=1e-6)


def correlated(n: int, seed: int) -> torch.Tensor:
    """A banana-shaped, strongly correlated distribution in 6 dimensions."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 1, generator=g)
    x = torch.cat([a, 0.9 * a + 0.1 * torch.randn(n, 1, generator=g), a ** 2 + 0.2 * torch.randn(n, 1, generator=g),
                   torch.randn(n, 3, generator=g) * torch.tensor([0.5, 1.0, 2.0])], 1)
    return x.view(n, 2, 3)


def diagonal_gaussian_nll(train: torch.Tensor, test: torch.Tensor) -> float:
    mean, std = train.flatten(1).mean(0), train.flatten(1).std(0)
    return float((0.5 * ((test.flatten(1) - mean) / std) ** 2 + std.log() + 0.5 * math.log(2 * math.pi)).sum(1).mean())


@pytest.mark.parametrize("kind", ["realnvp", "prelu"])
def test_maximum_likelihood_lowers_nll_and_beats_a_diagonal_gaussian(kind):
    torch.manual_seed(0)
    train, test = correlated(2000, 0), correlated(500, 1)
    flow = NormalizingFlowPrior(joints=2, rep=3, kind=kind, steps=4, hidden=32)
    flow.set_normalisation(train)
    with torch.no_grad():
        start = float(flow.nll(test).mean())
    optimiser = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for step in range(300):
        batch = train[torch.randint(0, len(train), (256,))]
        optimiser.zero_grad()
        flow.nll(batch).mean().backward()
        optimiser.step()
    with torch.no_grad():
        end = float(flow.nll(test).mean())
    assert end < start - 1.0
    assert end < diagonal_gaussian_nll(train, test) - 1.0  # it learnt the correlations


def test_latent_prior_is_the_standard_normal_and_sampling_decodes():
    flow = trained_flow("realnvp")
    z = torch.zeros(3, 6, dtype=torch.float64)
    assert torch.allclose(flow.latent_nll(z), torch.full((3,), 3 * math.log(2 * math.pi), dtype=torch.float64))
    samples = flow.sample(4, torch.Generator().manual_seed(0))
    assert samples.shape == (4, 2, 3) and torch.isfinite(samples).all()


def test_gmm_prior_fits_modes_and_prefers_them():
    g = torch.Generator().manual_seed(0)
    modes = torch.tensor([[1.0] * 6, [-1.0] * 6]).view(2, 2, 3)
    poses = torch.cat([modes[0] + 0.1 * torch.randn(300, 2, 3, generator=g),
                       modes[1] + 0.1 * torch.randn(300, 2, 3, generator=g)])
    gmm = GMMPrior(joints=2, rep=3, components=2).fit(poses, iterations=30)
    assert sorted(gmm.means[:, 0].tolist()) == pytest.approx([-1.0, 1.0], abs=0.05)
    at_mode, between = gmm.nll(modes).max(), gmm.nll(torch.zeros(1, 2, 3))
    assert float(at_mode) < float(between) - 10
    exact = GMMPrior(joints=2, rep=3, components=2, closest=False)
    exact.load_state_dict(gmm.state_dict())
    assert torch.all(exact.nll(modes) <= gmm.nll(modes) + 1e-9)  # the mixture is at least the closest mode's density


def test_bad_inputs_are_one_error():
    flow = NormalizingFlowPrior(joints=2, rep=3, steps=1, hidden=8)
    with pytest.raises(UserError, match=r"expected \(\.\.\., 2, 3\) or \(\.\.\., 6\), got \(4, 3, 3\)"):
        flow.nll(torch.zeros(4, 3, 3))
    with pytest.raises(UserError, match="kind must be one of realnvp, prelu"):
        NormalizingFlowPrior(joints=2, kind="maf")
    with pytest.raises(UserError, match="latent codes must be"):
        flow.inverse(torch.zeros(2, 5))
    with pytest.raises(UserError, match="3 poses cannot fit 8 components"):
        GMMPrior(joints=2).fit(torch.zeros(3, 2, 3))
    assert NoPrior(joints=2).nll(torch.ones(4, 2, 3)).tolist() == [0.0] * 4


def test_lighter_prior_has_the_papers_size_on_smpl_poses():
    # 23 SMPL joints in angle-axis, the PReLU variant at 19 steps: about the 93k parameters the paper compares to VPoser
    assert 85_000 < parameter_count(NormalizingFlowPrior(joints=23, rep=3, kind="prelu", steps=19)) < 100_000
