"""Priors over body poses: ``nll(theta)`` = -log p(theta), the term an optimiser or a training
loss adds to keep a pose plausible (Zanfir et al. 2020, section 2.1).

- ``NormalizingFlowPrior``: a bijection z = f(theta) onto a standard normal, trained by maximum
  likelihood. Each step is a trainable invertible dense layer (LU-parameterised, so its log-det
  is a sum) followed by a Real-NVP affine coupling (``kind="realnvp"``) or, in the lighter
  variant, an invertible parametric ReLU (``kind="prelu"``). Optimising the latent z with
  theta = f^-1(z) and prior |z|^2 / 2 is the paper's latent space; ``nll(theta)`` is its ambient one.
- ``GMMPrior``: the mixture of Gaussians of Bogo et al. (SMPLify), fitted by EM; its ``nll`` takes
  the closest mode, as they do (``closest=False``: the exact mixture density).
- ``NoPrior``: zero, for ablations.

Poses are (..., J, R) with R = 3 (angle-axis) or 6 (6D), flattened to D = J * R inside.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import nn

from framework.errors import UserError

LOG_2PI = math.log(2 * math.pi)
KINDS = ("realnvp", "prelu")


def flat_pose(theta: torch.Tensor, joints: int, rep: int, what: str = "pose") -> torch.Tensor:
    """(..., J, R) or (..., J * R) -> (..., J * R), checked."""
    if theta.dim() >= 2 and tuple(theta.shape[-2:]) == (joints, rep):
        return theta.flatten(-2)
    if theta.dim() >= 1 and theta.shape[-1] == joints * rep:
        return theta
    raise UserError(f"{what}: expected (..., {joints}, {rep}) or (..., {joints * rep}), got {tuple(theta.shape)}")


class LULinear(nn.Module):
    """y = W x + b, W = P L (U + diag(sign * exp(log_scale))): invertible while the diagonal is
    non-zero, which the exponential keeps; log|det W| = sum(log_scale)."""

    def __init__(self, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        q = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(q)  # a random rotation to start: mixes every dimension
        diag = torch.diagonal(upper)
        self.register_buffer("perm", p.float())
        self.register_buffer("sign", torch.sign(diag).float())
        # only the free entries are parameters: D^2 + D numbers in all, as a dense layer has
        self.register_buffer("below", torch.tril_indices(dim, dim, -1), persistent=False)
        self.register_buffer("above", torch.triu_indices(dim, dim, 1), persistent=False)
        self.lower = nn.Parameter(lower[self.below[0], self.below[1]].float())
        self.upper = nn.Parameter(upper[self.above[0], self.above[1]].float())
        self.log_scale = nn.Parameter(diag.abs().log().float())
        self.bias = nn.Parameter(torch.zeros(dim))

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        eye = torch.eye(len(self.bias), dtype=self.lower.dtype, device=self.lower.device)
        lower = eye.index_put((self.below[0], self.below[1]), self.lower)
        upper = torch.diag(self.sign * self.log_scale.exp()).index_put((self.above[0], self.above[1]), self.upper)
        return lower, upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lower, upper = self._factors()
        y = x @ (self.perm @ lower @ upper).T + self.bias
        return y, self.log_scale.sum().expand(x.shape[:-1])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        lower, upper = self._factors()
        rhs = ((y - self.bias) @ self.perm).reshape(-1, y.shape[-1]).T  # P^-1 = P^T
        a = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
        x = torch.linalg.solve_triangular(upper, a, upper=True)
        return x.T.reshape(y.shape)


class AffineCoupling(nn.Module):
    """Real-NVP (eq. 4): the second half scaled and shifted by a network of the first half; the
    scale is bounded (tanh) so early training cannot blow up, and the last layer starts at zero so
    the step starts as the identity."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.split = dim // 2
        rest = dim - self.split
        self.net = nn.Sequential(nn.Linear(self.split, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * rest))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def _scale_shift(self, x1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(x1).chunk(2, dim=-1)
        return torch.tanh(s), t

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = x[..., :self.split], x[..., self.split:]
        s, t = self._scale_shift(x1)
        return torch.cat([x1, x2 * s.exp() + t], -1), s.sum(-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        y1, y2 = y[..., :self.split], y[..., self.split:]
        s, t = self._scale_shift(y1)
        return torch.cat([y1, (y2 - t) * (-s).exp()], -1)


class InvertiblePReLU(nn.Module):
    """y = x for x >= 0, a x otherwise, with a per-dimension slope a = exp(log_slope) > 0."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_slope = nn.Parameter(torch.full((dim,), math.log(0.5)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        negative = x < 0
        y = torch.where(negative, x * self.log_slope.exp(), x)
        return y, torch.where(negative, self.log_slope, torch.zeros_like(x)).sum(-1)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return torch.where(y < 0, y * (-self.log_slope).exp(), y)


class NormalizingFlowPrior(nn.Module):
    """The flow prior (module doc) over poses of ``joints`` rotations of ``rep`` numbers each.

    The first bijection standardises the poses with the training set's mean and spread
    (``set_normalisation``), so the learnt steps see unit-scale inputs."""

    def __init__(self, joints: int, rep: int = 3, kind: str = "realnvp", steps: int = 8, hidden: int = 128,
                 seed: int = 0) -> None:
        super().__init__()
        if kind not in KINDS:
            raise UserError(f"pose prior: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if rep not in (3, 6):
            raise UserError(f"pose prior: a rotation is 3 (angle-axis) or 6 (6D) numbers, got {rep}")
        self.joints, self.rep, self.kind = int(joints), int(rep), kind
        self.dim = dim = self.joints * self.rep
        g = torch.Generator().manual_seed(int(seed))
        layers: list[nn.Module] = []
        for _ in range(int(steps)):
            layers += [LULinear(dim, g), AffineCoupling(dim, hidden) if kind == "realnvp" else InvertiblePReLU(dim)]
        layers.append(LULinear(dim, g))  # the latent is a dense mix of the last step, not half copied
        self.layers = nn.ModuleList(layers)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("spread", torch.ones(dim))
        self.register_buffer("normalised", torch.tensor(False))  # saved: a resumed run keeps its statistics

    def set_normalisation(self, poses: torch.Tensor) -> None:
        x = flat_pose(poses, self.joints, self.rep).reshape(-1, self.dim).to(self.mean)
        self.mean.copy_(x.mean(0))
        self.spread.copy_(x.std(0).clamp_min(1e-3))
        self.normalised.fill_(True)

    def forward(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """theta (..., J, R) -> z (..., D) and log|det dz/dtheta| (...,)."""
        x = (flat_pose(theta, self.joints, self.rep) - self.mean) / self.spread
        logdet = -self.spread.log().sum().expand(x.shape[:-1])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        """z (..., D) -> theta (..., J, R)."""
        if z.shape[-1] != self.dim:
            raise UserError(f"pose prior: latent codes must be (..., {self.dim}), got {tuple(z.shape)}")
        x = z
        for layer in reversed(self.layers):
            x = layer.inverse(x)
        return (x * self.spread + self.mean).unflatten(-1, (self.joints, self.rep))

    def log_prob(self, theta: torch.Tensor) -> torch.Tensor:
        z, logdet = self(theta)
        return -0.5 * (z ** 2).sum(-1) - 0.5 * self.dim * LOG_2PI + logdet

    def nll(self, theta: torch.Tensor) -> torch.Tensor:
        """The ambient-space prior psi(f(theta)) = -log p(theta), (...,)."""
        return -self.log_prob(theta)

    def latent_nll(self, z: torch.Tensor) -> torch.Tensor:
        """The latent-space prior psi(z) = -log N(z; 0, I), (...,)."""
        return 0.5 * (z ** 2).sum(-1) + 0.5 * self.dim * LOG_2PI

    def sample(self, n: int, generator: Optional[torch.Generator] = None, temperature: float = 1.0) -> torch.Tensor:
        z = torch.randn(n, self.dim, generator=generator, device=self.mean.device) * temperature
        return self.inverse(z)


def fit_gmm(x: np.ndarray, components: int = 8, iterations: int = 100, seed: int = 0,
            regulariser: float = 1e-4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a full-covariance mixture on (N, D) samples -> weights (K,), means (K, D), covariances
    (K, D, D). Starts from a k-means++ seeding (modes spread over the data, not K samples that may
    share one cluster) with each sample given to its nearest seed; ``regulariser`` is added to each
    diagonal (relative to the data's variance) so a mode on few samples stays invertible."""
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if n < components:
        raise UserError(f"GMM prior: {n} poses cannot fit {components} components")
    rng = np.random.default_rng(seed)
    seeds = [x[rng.integers(n)]]
    for _ in range(1, components):
        gap = np.min([((x - c) ** 2).sum(1) for c in seeds], axis=0)
        seeds.append(x[rng.choice(n, p=gap / gap.sum())] if gap.sum() > 0 else x[rng.integers(n)])
    nearest = np.argmin([((x - c) ** 2).sum(1) for c in seeds], axis=0)
    r = np.eye(components)[nearest]
    floor = regulariser * x.var(0).mean() * np.eye(d)
    means, covs = np.stack(seeds), np.zeros((components, d, d))
    for _ in range(iterations + 1):
        counts = r.sum(0) + 1e-10
        weights = counts / n
        means = (r.T @ x) / counts[:, None]
        for k in range(components):
            c = x - means[k]
            covs[k] = (r[:, k, None] * c).T @ c / counts[k] + floor
        log_r = _gaussian_log_densities(x, weights, means, covs)
        r = np.exp(log_r - np.logaddexp.reduce(log_r, axis=1, keepdims=True))
    return weights, means, covs


def _gaussian_log_densities(x: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> np.ndarray:
    """(N, K) log(w_k N(x; mu_k, Sigma_k))."""
    out = np.empty((len(x), len(weights)))
    for k, (w, mu, cov) in enumerate(zip(weights, means, covs)):
        chol = np.linalg.cholesky(cov)
        sol = np.linalg.solve(chol, (x - mu).T)
        out[:, k] = np.log(w) - 0.5 * (sol ** 2).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * x.shape[1] * LOG_2PI
    return out


class GMMPrior(nn.Module):
    """-log of a Gaussian mixture over poses (module doc); ``fit(poses)`` runs EM."""

    def __init__(self, joints: int, rep: int = 3, components: int = 8, closest: bool = True) -> None:
        super().__init__()
        self.joints, self.rep, self.closest = int(joints), int(rep), bool(closest)
        dim = self.joints * self.rep
        self.register_buffer("log_weights", torch.full((components,), -math.log(components)))
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("precision_chol", torch.eye(dim).repeat(components, 1, 1))  # L with Sigma^-1 = L L^T
        self.register_buffer("log_norm", torch.zeros(components))  # -0.5 log det(2 pi Sigma)

    def fit(self, poses: torch.Tensor, iterations: int = 100, seed: int = 0) -> "GMMPrior":
        x = flat_pose(poses, self.joints, self.rep).reshape(-1, self.means.shape[1]).double().cpu().numpy()
        weights, means, covs = fit_gmm(x, len(self.means), iterations, seed)
        precision = np.linalg.inv(covs)
        self.log_weights.copy_(torch.from_numpy(np.log(weights)))
        self.means.copy_(torch.from_numpy(means))
        self.precision_chol.copy_(torch.from_numpy(np.linalg.cholesky(precision)))
        self.log_norm.copy_(torch.from_numpy(-0.5 * np.linalg.slogdet(2 * np.pi * covs)[1]))
        return self

    def component_nll(self, theta: torch.Tensor) -> torch.Tensor:
        """(..., K): -log(w_k N(theta; mu_k, Sigma_k))."""
        x = flat_pose(theta, self.joints, self.rep)
        diff = x[..., None, :] - self.means.to(x)  # (..., K, D)
        maha = torch.einsum("...kd,kde->...ke", diff, self.precision_chol.to(x))
        return 0.5 * (maha ** 2).sum(-1) - self.log_weights.to(x) - self.log_norm.to(x)

    def nll(self, theta: torch.Tensor) -> torch.Tensor:
        per_mode = self.component_nll(theta)
        return per_mode.min(-1).values if self.closest else -torch.logsumexp(-per_mode, -1)


class NoPrior(nn.Module):
    def __init__(self, joints: int, rep: int = 3) -> None:
        super().__init__()
        self.joints, self.rep = int(joints), int(rep)

    def nll(self, theta: torch.Tensor) -> torch.Tensor:
        x = flat_pose(theta, self.joints, self.rep)
        return x.new_zeros(x.shape[:-1])


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
