"""PIPs v1 point tracker (Harley, Fang & Fragkiadaki 2022, "Particle Video Revisited").

Module names and tensor shapes follow the authors' ``nets/pips.py`` so their released
``model-000200000.pth`` loads one-to-one (see nets/pips_checkpoints.py) and gives their outputs.
An S-frame window is encoded at 1/``stride`` resolution (trained with 8, evaluated with 4; the
weights do not depend on it, so ``forward`` and ``encode`` take the ``stride`` of one call, None
being the net's own). Each point's feature is correlated with every frame, a 4-level pyramid is
read in a radius-3 window around the current estimate, and an MLP-Mixer over the S time steps
updates positions and per-frame features.

Deliberate differences from the authors' code, none of which changes their outputs:
- no loss or visualisation inside ``forward``; the losses live in lightning_modules/pips_losses.py
  and read the score maps from :class:`PipsOutput`;
- the score maps are built only when the loss needs them (``return_scores``, by default in
  training mode); the authors always build them, which at evaluation size costs gigabytes;
- their ``is_train`` argument is ``self.training``: frame 0 is locked to the query in eval mode;
- a pyramid level that has shrunk to one pixel is sampled through ``nets.raft_corr.sample_pixels``,
  which is defined there (the authors' normalisation divides by zero and gives NaN); this only
  happens for frames smaller than 8 x stride pixels;
- the correlation runs in fp32 with autocast off, as our RAFT's does;
- ``mixer_dim`` / ``mixer_depth`` shrink the Mixer for fast tests (defaults are the authors').
``hidden_dim`` is kept for the authors' signature; as in theirs no layer uses it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from framework.errors import UserError
from nets.raft import ResidualBlock
from nets.raft_corr import sample_pixels, window_offsets

POS_EMB_DIM = 64  # sin/cos channels per coordinate of (dx, dy, t)


@dataclass
class PipsOutput:
    """What one PIPs window returns.

    coords: ``iters`` tensors (B, S, N, 2), (x, y) in full-resolution pixels, one per iteration.
    vis: (B, S, N) visibility logits from the final features.
    stride: the feature stride the window ran at (the score maps are at 1/stride).
    scores: ``iters`` tensors (B, S, N, H/stride, W/stride) or None: per iteration, each point's
        correlation with every frame, the pyramid levels upsampled to level 0 and summed; the
        score-map cross-entropy supervises them. Built when ``return_scores`` asks for them.
    feat_init: (B, N, latent) template feature of the points (sampled in frame 0, or the one
        passed in), when ``return_feat``; chaining hands it to the next window.
    """

    coords: List[torch.Tensor]
    vis: torch.Tensor
    stride: int
    scores: Optional[List[torch.Tensor]] = None
    feat_init: Optional[torch.Tensor] = None


class Encoder(nn.Module):
    """Residual stages at 1/2, 1/2, 1/4, 1/8, 1/16 scale, each resized to the output size and
    concatenated, so fine detail and context both reach the 1/stride feature map."""

    def __init__(self, out_dim: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.norm1 = nn.InstanceNorm2d(64)
        cin = 64
        for i, (width, stride) in enumerate(zip((64, 96, 128, 128), (1, 2, 2, 2)), start=1):
            setattr(self, f"layer{i}", nn.Sequential(ResidualBlock(cin, width, "instance", stride),
                                                     ResidualBlock(width, width, "instance", 1)))
            cin = width
        self.conv2 = nn.Conv2d(64 + 96 + 128 + 128, 2 * out_dim, 3, padding=1)
        self.norm2 = nn.InstanceNorm2d(2 * out_dim)
        self.conv3 = nn.Conv2d(2 * out_dim, out_dim, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        stages = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            stages.append(x)
        x = torch.cat([F.interpolate(s, size, mode="bilinear", align_corners=True) for s in stages], dim=1)
        return self.conv3(F.relu(self.norm2(self.conv2(x))))


class PreNormResidual(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.fn, self.norm = fn, nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x)) + x


def _feed_forward(dim: int, hidden: int, layer) -> nn.Sequential:
    # Identity where the authors have Dropout(0): keeps the weights at indices 0 and 3.
    return nn.Sequential(layer(dim, hidden), nn.GELU(), nn.Identity(), layer(hidden, dim), nn.Identity())


class MeanOverTime(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)


def mlp_mixer(S: int, input_dim: int, dim: int, output_dim: int, depth: int) -> nn.Sequential:
    """Token mixing over the S time steps (a 1x1 Conv1d whose channels are the steps), channel
    mixing over features, then a mean over time and one linear layer for all S outputs."""
    token = lambda: _feed_forward(S, 4 * S, lambda i, o: nn.Conv1d(i, o, 1))
    channel = lambda: _feed_forward(dim, 4 * dim, nn.Linear)
    return nn.Sequential(
        nn.Linear(input_dim, dim),
        *[nn.Sequential(PreNormResidual(dim, token()), PreNormResidual(dim, channel())) for _ in range(depth)],
        nn.LayerNorm(dim),
        MeanOverTime(),
        nn.Linear(dim, output_dim),
    )


def motion_embedding(xyt: torch.Tensor, dim: int = POS_EMB_DIM) -> torch.Tensor:
    """(..., 3) -> (..., 3*dim + 3): interleaved sin/cos of each coordinate, then the raw values.
    The frequencies are the authors' ``arange(0, dim, 2) * 1000/dim`` (not the usual geometric
    series); the released weights were trained with them."""
    freqs = torch.arange(0, dim, 2, device=xyt.device, dtype=torch.float32) * (1000.0 / dim)
    parts = []
    for k in range(3):
        angle = xyt[..., k:k + 1] * freqs
        parts.append(torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1).flatten(-2))
    return torch.cat(parts + [xyt], dim=-1)


class DeltaBlock(nn.Module):
    """Maps each point's S-step sequence of (feature, correlations, motion embedding) to S updates
    of (dx, dy, feature delta)."""

    def __init__(self, S: int, latent_dim: int, corr_levels: int, corr_radius: int,
                 mixer_dim: int = 512, mixer_depth: int = 12):
        super().__init__()
        self.S, self.latent_dim = S, latent_dim
        kitchen = corr_levels * (2 * corr_radius + 1) ** 2 + latent_dim + 3 * POS_EMB_DIM + 3
        self.to_delta = mlp_mixer(S, kitchen, mixer_dim, S * (latent_dim + 2), mixer_depth)

    def forward(self, feats: torch.Tensor, corrs: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        x = torch.cat([feats, corrs, motion_embedding(motion)], dim=2)
        return self.to_delta(x).reshape(x.shape[0], self.S, self.latent_dim + 2)


def sample_clamped(fmap: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling (B, C, H, W) at (B, N, 2) -> (B, N, C) with the four corners clamped into
    the map, so a point off the frame takes the border feature rather than zeros. This is how the
    authors read the template feature; the arithmetic follows theirs term by term."""
    b, c, h, w = fmap.shape
    x, y = xy[..., 0].float(), xy[..., 1].float()
    x0, y0 = torch.floor(x), torch.floor(y)
    x1, y1 = x0 + 1, y0 + 1
    flat = fmap.permute(0, 2, 3, 1).reshape(b, h * w, c)

    def at(xi, yi):
        idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long()
        return torch.gather(flat, 1, idx[..., None].expand(-1, -1, c))

    return (((x1 - x) * (y1 - y))[..., None] * at(x0, y0) + ((x - x0) * (y1 - y))[..., None] * at(x1, y0)
            + ((x1 - x) * (y - y0))[..., None] * at(x0, y1) + ((x - x0) * (y - y0))[..., None] * at(x1, y1))


class TrackCorrelation:
    """Correlation of each point's (per-frame) feature with its frame, on an average-pooled pyramid
    of the frame features, divided by sqrt(C)."""

    def __init__(self, fmaps: torch.Tensor, levels: int, radius: int):
        self.levels, self.radius = levels, radius
        b, s, c, h, w = fmaps.shape
        self.pyramid = [fmaps.float()]
        for _ in range(levels - 1):
            pooled = F.avg_pool2d(self.pyramid[-1].reshape(b * s, c, h, w), 2, stride=2)
            h, w = pooled.shape[-2:]
            self.pyramid.append(pooled.reshape(b, s, c, h, w))

    def correlate(self, feats: torch.Tensor) -> list[torch.Tensor]:
        """feats (B, S, N, C) -> per level (B, S, N, h, w)."""
        b, s, n, c = feats.shape
        out = []
        for fmaps in self.pyramid:
            h, w = fmaps.shape[-2:]
            corr = torch.matmul(feats.float(), fmaps.reshape(b, s, c, h * w)) / math.sqrt(c)
            out.append(corr.reshape(b, s, n, h, w))
        return out

    def lookup(self, corrs: list[torch.Tensor], coords: torch.Tensor) -> torch.Tensor:
        """coords (B, S, N, 2) at level 0 -> (B, S, N, levels*K*K), level-major, the window ordered
        as RAFT's (see nets.raft_corr.window_offsets)."""
        b, s, n, _ = coords.shape
        k = 2 * self.radius + 1
        delta = window_offsets(self.radius, coords.device).reshape(1, k, k, 2)
        centre = coords.float().reshape(b * s * n, 1, 1, 2)
        out = []
        for level, corr in enumerate(corrs):
            h, w = corr.shape[-2:]
            sampled = sample_pixels(corr.reshape(b * s * n, 1, h, w), centre / 2 ** level + delta)
            out.append(sampled.reshape(b, s, n, k * k))
        return torch.cat(out, dim=-1)

    @staticmethod
    def score_map(corrs: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Sum of all levels upsampled to level 0: (B, S, N, H, W)."""
        b, s, n = corrs[0].shape[:3]
        total = corrs[0].new_zeros(b, s, n, *size)
        for corr in corrs:
            up = F.interpolate(corr.reshape(b * s, n, *corr.shape[-2:]), size, mode="bilinear", align_corners=True)
            total = total + up.reshape(b, s, n, *size)
        return total


class PIPs(nn.Module):
    """PIPs v1. ``rgbs`` (B, S, 3, H, W) in [0, 255], H and W multiples of the stride (``stride``,
    or the one a call passes)."""

    def __init__(self, S: int = 8, stride: int = 4, hidden_dim: int = 256, latent_dim: int = 128,
                 corr_levels: int = 4, corr_radius: int = 3, mixer_dim: int = 512, mixer_depth: int = 12):
        super().__init__()
        self.S, self.stride = S, stride
        self.hidden_dim, self.latent_dim = hidden_dim, latent_dim
        self.corr_levels, self.corr_radius = corr_levels, corr_radius
        self.fnet = Encoder(latent_dim)
        self.delta_block = DeltaBlock(S, latent_dim, corr_levels, corr_radius, mixer_dim, mixer_depth)
        self.norm = nn.GroupNorm(1, latent_dim)
        self.ffeat_updater = nn.Sequential(nn.Linear(latent_dim, latent_dim), nn.GELU())
        self.vis_predictor = nn.Sequential(nn.Linear(latent_dim, 1))

    def _stride(self, stride: Optional[int]) -> int:
        return self.stride if stride is None else stride

    def _feature_size(self, h: int, w: int, stride: int) -> tuple[int, int]:
        if not isinstance(stride, int) or stride < 1:
            raise UserError(f"PIPs stride must be a positive integer, got {stride!r}")
        if h % stride or w % stride:
            raise UserError(f"PIPs input size {h}x{w} is not a multiple of the stride {stride}; "
                            f"resize or pad the frames")
        return h // stride, w // stride

    def encode(self, rgbs: torch.Tensor, stride: Optional[int] = None) -> torch.Tensor:
        """(B, S, 3, H, W) in [0, 255] -> features (B, S, latent, H/stride, W/stride); ``stride``
        None: the net's own."""
        if rgbs.dim() != 5 or rgbs.shape[2] != 3:
            raise UserError(f"PIPs rgbs must be (B, S, 3, H, W), got {tuple(rgbs.shape)}")
        b, s, _, h, w = rgbs.shape
        size = self._feature_size(h, w, self._stride(stride))
        x = 2 * (rgbs.reshape(b * s, 3, h, w) / 255.0) - 1.0
        return self.fnet(x, size).reshape(b, s, self.latent_dim, *size)

    def _check(self, xys, rgbs, coords_init, feat_init):
        if rgbs.dim() != 5 or rgbs.shape[2] != 3 or rgbs.shape[1] != self.S:
            raise UserError(f"PIPs rgbs must be (B, {self.S}, 3, H, W), got {tuple(rgbs.shape)}")
        b = rgbs.shape[0]
        if xys.dim() != 3 or xys.shape[0] != b or xys.shape[2] != 2:
            raise UserError(f"PIPs xys must be (B={b}, N, 2), got {tuple(xys.shape)}")
        n = xys.shape[1]
        if coords_init is not None and tuple(coords_init.shape) != (b, self.S, n, 2):
            raise UserError(f"PIPs coords_init must be {(b, self.S, n, 2)}, got {tuple(coords_init.shape)}")
        if feat_init is not None and tuple(feat_init.shape) != (b, n, self.latent_dim):
            raise UserError(f"PIPs feat_init must be {(b, n, self.latent_dim)}, got {tuple(feat_init.shape)}")

    def forward(self, xys: torch.Tensor, rgbs: torch.Tensor, iters: int = 6,
                coords_init: Optional[torch.Tensor] = None, feat_init: Optional[torch.Tensor] = None,
                return_feat: bool = False, return_scores: Optional[bool] = None,
                stride: Optional[int] = None) -> PipsOutput:
        """Track ``xys`` (B, N, 2), pixels in frame 0, through the window.

        ``coords_init`` (B, S, N, 2) pixels warm-starts the trajectory (default: static); as in the
        authors' code its frame 0 is then what the template is read at and what frame 0 is locked to.
        ``feat_init`` (B, N, latent) replaces the template feature (chaining). ``return_scores``:
        build the score maps for the loss (None: in training mode only). ``stride``: the feature
        stride of this call (None: the net's own ``stride``).
        """
        self._check(xys, rgbs, coords_init, feat_init)
        if return_scores is None:
            return_scores = self.training
        b, s = rgbs.shape[:2]
        n, c, stride = xys.shape[1], self.latent_dim, self._stride(stride)
        fmaps = self.encode(rgbs, stride)
        size = fmaps.shape[-2:]

        if coords_init is None:
            coords = (xys.float() / float(stride))[:, None].repeat(1, s, 1, 1)
        else:
            coords = coords_init.float() / stride
        anchor = coords[:, :1].clone()

        with torch.autocast(device_type=rgbs.device.type, enabled=False):
            corr = TrackCorrelation(fmaps, self.corr_levels, self.corr_radius)
            template = sample_clamped(fmaps[:, 0].float(), coords[:, 0]) if feat_init is None else feat_init
        feats = template[:, None].repeat(1, s, 1, 1)  # (B, S, N, C)
        # the authors' time channel is linspace(0, S, S), not 0..S-1; the weights expect it
        times = torch.linspace(0, s, s, device=rgbs.device).reshape(1, s, 1).repeat(b * n, 1, 1)

        predictions, scores = [], []
        for _ in range(iters):
            coords = coords.detach()
            with torch.autocast(device_type=rgbs.device.type, enabled=False):
                corrs = corr.correlate(feats)
                if return_scores:
                    scores.append(corr.score_map(corrs, size))
                local = corr.lookup(corrs, coords)
            # the mixer works on each track's whole time line: (B, S, N, .) -> (B*N, S, .)
            local = rearrange(local, "b s n k -> (b n) s k")
            motion = rearrange(coords - coords[:, :1], "b s n xy -> (b n) s xy")
            motion = torch.cat([motion, times], dim=2)
            feats_ = rearrange(feats, "b s n c -> (b n) s c")

            delta = self.delta_block(feats_, local, motion)  # (B*N, S, C+2)
            feats_ = self.ffeat_updater(self.norm(delta[..., 2:].reshape(b * n * s, c))) + feats_.reshape(b * n * s, c)
            feats = rearrange(feats_, "(b n s) c -> b s n c", b=b, n=n)
            coords = coords + rearrange(delta[..., :2], "(b n) s xy -> b s n xy", b=b)
            if not self.training:
                coords = torch.cat([anchor, coords[:, 1:]], dim=1)
            predictions.append(coords * stride)

        vis = self.vis_predictor(feats.reshape(b * s * n, c)).reshape(b, s, n)
        return PipsOutput(coords=predictions, vis=vis, stride=stride,
                          scores=scores if return_scores else None,
                          feat_init=template if return_feat else None)
