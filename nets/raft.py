"""RAFT optical flow (Teed & Deng 2020), large and small, laid out so the authors' released weights
load one-to-one (module names follow theirs, minus DataParallel's ``module.`` prefix and the second
copy of the downsample BatchNorm; see nets/raft_checkpoints.py) and give the authors' outputs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from framework.errors import UserError
from nets.raft_corr import CORRELATIONS

LARGE = dict(hidden=128, context=128, radius=4, fdim=256, stem=64, widths=(64, 96, 128))
SMALL = dict(hidden=96, context=64, radius=3, fdim=128, stem=32, widths=(32, 64, 96))
CORR_LEVELS = 4


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)  # no affine, no running stats: no state-dict entries
    if kind == "none":
        return nn.Identity()
    raise UserError(f"unknown norm {kind!r}; expected batch, instance or none")


class ResidualBlock(nn.Module):
    """Two 3x3 conv-norm-relu; a strided block projects its skip with a 1x1 conv and a norm."""

    def __init__(self, cin: int, cout: int, norm: str, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.norm1, self.norm2 = make_norm(norm, cout), make_norm(norm, cout)
        self.downsample = (None if stride == 1 else
                           nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride), make_norm(norm, cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(skip + y)


class BottleneckBlock(nn.Module):
    """1x1 down to a quarter width, 3x3 (strided), 1x1 back up; projected skip when strided."""

    def __init__(self, cin: int, cout: int, norm: str, stride: int = 1):
        super().__init__()
        mid = cout // 4
        self.conv1 = nn.Conv2d(cin, mid, 1)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, stride=stride)
        self.conv3 = nn.Conv2d(mid, cout, 1)
        self.norm1, self.norm2, self.norm3 = make_norm(norm, mid), make_norm(norm, mid), make_norm(norm, cout)
        self.downsample = (None if stride == 1 else
                           nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride), make_norm(norm, cout)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        y = F.relu(self.norm3(self.conv3(y)))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(skip + y)


class Encoder(nn.Module):
    """7x7/2 stem, three pairs of blocks (strides 1, 2, 2), 1x1 output conv: 1/8 resolution."""

    def __init__(self, out_dim: int, norm: str, small: bool):
        super().__init__()
        cfg = SMALL if small else LARGE
        block = BottleneckBlock if small else ResidualBlock
        self.conv1 = nn.Conv2d(3, cfg["stem"], 7, stride=2, padding=3)
        self.norm1 = make_norm(norm, cfg["stem"])
        cin = cfg["stem"]
        for i, (width, stride) in enumerate(zip(cfg["widths"], (1, 2, 2)), start=1):
            setattr(self, f"layer{i}", nn.Sequential(block(cin, width, norm, stride), block(width, width, norm, 1)))
            cin = width
        self.conv2 = nn.Conv2d(cin, out_dim, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.conv2(x)


class MotionEncoder(nn.Module):
    """Encodes correlation features and the current flow; the flow is appended to the output."""

    def __init__(self, small: bool):
        super().__init__()
        radius = (SMALL if small else LARGE)["radius"]
        planes = CORR_LEVELS * (2 * radius + 1) ** 2
        if small:
            self.convc1 = nn.Conv2d(planes, 96, 1)
            self.convc2 = None
            self.convf1, self.convf2 = nn.Conv2d(2, 64, 7, padding=3), nn.Conv2d(64, 32, 3, padding=1)
            self.conv = nn.Conv2d(96 + 32, 80, 3, padding=1)
        else:
            self.convc1 = nn.Conv2d(planes, 256, 1)
            self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
            self.convf1, self.convf2 = nn.Conv2d(2, 128, 7, padding=3), nn.Conv2d(128, 64, 3, padding=1)
            self.conv = nn.Conv2d(192 + 64, 126, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        c = F.relu(self.convc1(corr))
        if self.convc2 is not None:
            c = F.relu(self.convc2(c))
        f = F.relu(self.convf2(F.relu(self.convf1(flow))))
        out = F.relu(self.conv(torch.cat([c, f], dim=1)))
        return torch.cat([out, flow.to(out.dtype)], dim=1)


def _gru_step(convz, convr, convq, h, x):
    hx = torch.cat([h, x], dim=1)
    z, r = torch.sigmoid(convz(hx)), torch.sigmoid(convr(hx))
    q = torch.tanh(convq(torch.cat([r * h, x], dim=1)))
    return (1 - z) * h + z * q


class ConvGRU(nn.Module):
    """GRU with 3x3 convolutions (RAFT small)."""

    def __init__(self, hidden: int, inp: int):
        super().__init__()
        self.convz, self.convr, self.convq = (nn.Conv2d(hidden + inp, hidden, 3, padding=1) for _ in range(3))

    def forward(self, h, x):
        return _gru_step(self.convz, self.convr, self.convq, h, x)


class SepConvGRU(nn.Module):
    """Two GRU steps: 1x5 (horizontal) then 5x1 (vertical) convolutions (RAFT large)."""

    def __init__(self, hidden: int, inp: int):
        super().__init__()
        self.convz1, self.convr1, self.convq1 = (nn.Conv2d(hidden + inp, hidden, (1, 5), padding=(0, 2))
                                                 for _ in range(3))
        self.convz2, self.convr2, self.convq2 = (nn.Conv2d(hidden + inp, hidden, (5, 1), padding=(2, 0))
                                                 for _ in range(3))

    def forward(self, h, x):
        h = _gru_step(self.convz1, self.convr1, self.convq1, h, x)
        return _gru_step(self.convz2, self.convr2, self.convq2, h, x)


class FlowHead(nn.Module):
    def __init__(self, cin: int, hidden: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(cin, hidden, 3, padding=1), nn.Conv2d(hidden, 2, 3, padding=1)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    """Motion encoder -> GRU -> flow head (+ the convex-upsampling mask head for RAFT large)."""

    def __init__(self, small: bool):
        super().__init__()
        cfg = SMALL if small else LARGE
        hidden = cfg["hidden"]
        self.encoder = MotionEncoder(small)
        motion = 82 if small else 128
        self.gru = (ConvGRU if small else SepConvGRU)(hidden, motion + cfg["context"])
        self.flow_head = FlowHead(hidden, 128 if small else 256)
        self.mask = None if small else nn.Sequential(nn.Conv2d(hidden, 256, 3, padding=1), nn.ReLU(inplace=True),
                                                     nn.Conv2d(256, 64 * 9, 1))

    def forward(self, net, inp, corr, flow):
        motion = self.encoder(flow, corr)
        net = self.gru(net, torch.cat([inp, motion], dim=1))
        delta = self.flow_head(net)
        mask = None if self.mask is None else 0.25 * self.mask(net)  # scaled to balance its gradients
        return net, mask, delta


def coords_grid(b: int, h: int, w: int, device) -> torch.Tensor:
    """(B, 2, H, W) pixel coordinates, channel 0 = x, channel 1 = y."""
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([xs, ys]).float()[None].expand(b, -1, -1, -1).contiguous()


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """x8 upsampling: each fine pixel is a softmax-weighted mix of its coarse pixel's 3x3 neighbours."""
    b, _, h, w = flow.shape
    weights = torch.softmax(mask.reshape(b, 1, 9, 8, 8, h, w), dim=2)
    neigh = F.unfold(8 * flow, (3, 3), padding=1).reshape(b, 2, 9, 1, 1, h, w)
    up = (weights * neigh).sum(dim=2)
    return rearrange(up, "b c dy dx h w -> b c (h dy) (w dx)")


def bilinear_upsample8(flow: torch.Tensor) -> torch.Tensor:
    h, w = flow.shape[-2:]
    return 8 * F.interpolate(flow, size=(8 * h, 8 * w), mode="bilinear", align_corners=True)


class RAFT(nn.Module):
    """RAFT. Images are (B, 3, H, W) in [0, 255] with H, W multiples of 8 (see nets.padding.Padder).

    ``corr_mode``: "all_pairs" (the authors' volume) or "on_the_fly" (same numbers, memory linear in
    the frame size). Under autocast the correlation stays fp32.
    """

    def __init__(self, small: bool = False, corr_mode: str = "all_pairs", corr_chunk: int = 2048):
        super().__init__()
        if corr_mode not in CORRELATIONS:
            raise UserError(f"corr_mode {corr_mode!r} unknown; expected one of {sorted(CORRELATIONS)}")
        cfg = SMALL if small else LARGE
        self.small, self.corr_mode, self.corr_chunk = small, corr_mode, corr_chunk
        self.hidden_dim, self.context_dim, self.radius = cfg["hidden"], cfg["context"], cfg["radius"]
        self.fnet = Encoder(cfg["fdim"], "instance", small)
        self.cnet = Encoder(cfg["hidden"] + cfg["context"], "none" if small else "batch", small)
        self.update_block = UpdateBlock(small)

    def freeze_bn(self) -> None:
        """Put BatchNorm layers in eval mode (call again after every ``model.train()``)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()

    def _correlation(self, fmap1, fmap2):
        kwargs = {"chunk": self.corr_chunk} if self.corr_mode == "on_the_fly" else {}
        return CORRELATIONS[self.corr_mode](fmap1, fmap2, CORR_LEVELS, self.radius, **kwargs)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 12,
                flow_init: torch.Tensor | None = None, test_mode: bool = False):
        """Training: list of ``iters`` full-resolution flows. ``test_mode``: (1/8 flow, final full flow).
        ``flow_init`` (B, 2, H/8, W/8) warm-starts the iterations."""
        if image1.shape != image2.shape or image1.dim() != 4 or image1.shape[1] != 3:
            raise UserError(f"RAFT needs two (B, 3, H, W) images of one shape, got {tuple(image1.shape)} "
                            f"and {tuple(image2.shape)}")
        b, _, h, w = image1.shape
        if h % 8 or w % 8:
            raise UserError(f"RAFT input size {h}x{w} is not a multiple of 8; pad with nets.padding.Padder")
        image1 = (2 * (image1 / 255.0) - 1.0).contiguous()
        image2 = (2 * (image2 / 255.0) - 1.0).contiguous()

        fmap1, fmap2 = self.fnet(torch.cat([image1, image2], dim=0)).split([b, b], dim=0)
        corr_fn = self._correlation(fmap1.float(), fmap2.float())
        net, inp = self.cnet(image1).split([self.hidden_dim, self.context_dim], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)

        coords0 = coords_grid(b, h // 8, w // 8, image1.device)
        coords1 = coords0.clone()
        if flow_init is not None:
            if flow_init.shape != coords0.shape:
                raise UserError(f"flow_init has shape {tuple(flow_init.shape)}, expected {tuple(coords0.shape)}")
            coords1 = coords1 + flow_init

        predictions = []
        for _ in range(iters):
            coords1 = coords1.detach()
            corr = corr_fn(coords1)
            flow = coords1 - coords0
            net, mask, delta = self.update_block(net, inp, corr, flow)
            coords1 = coords1 + delta.float()
            low = coords1 - coords0
            up = bilinear_upsample8(low) if mask is None else convex_upsample(low, mask.float())
            predictions.append(up)
        if test_mode:
            return coords1 - coords0, predictions[-1]
        return predictions


def raft_large(**kwargs) -> RAFT:
    return RAFT(small=False, **kwargs)


def raft_small(**kwargs) -> RAFT:
    return RAFT(small=True, **kwargs)
