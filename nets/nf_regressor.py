"""The multistage pose and shape regressor of Zanfir et al. 2020 (section 2.3).

image -> shared features -> keypoint heatmaps -> body-part segmentation (from the features and the
heatmaps) -> pose and shape (from the features, heatmaps and segmentation), the 3D part repeated in
stages that each see the previous stage's output maps, with a loss on every stage. A 3D stage is
five 7x7 convolutions of ``width`` channels, a 1x1 of ``width``, and an output convolution with one
map per predicted number; two dense layers read the pose (theta, or the prior's latent z) and the
shape (beta) from those maps. The paper's size: width 128, six stages; ``quick`` configs shrink
width, depth and stages so a CPU trains it in minutes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from framework.errors import UserError


@dataclass(frozen=True)
class RegressorSize:
    width: int = 128  # channels of every stage
    kernel: int = 7
    convs: int = 5  # 7x7 convolutions per stage
    stages: int = 6  # 3D stages
    backbone: int = 64  # channels of the shared feature extractor (stride 4)


def conv_stack(cin: int, width: int, kernel: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [nn.Conv2d(cin if i == 0 else width, width, kernel, padding=kernel // 2), nn.ReLU(inplace=True)]
    layers += [nn.Conv2d(width, width, 1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class Backbone(nn.Module):
    """Image (B, 3, H, W) in 0..255 -> features (B, C, H/4, W/4)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = max(channels // 2, 8)
        self.net = nn.Sequential(
            nn.Conv2d(3, half, 5, stride=2, padding=2), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, half, 3, padding=1), nn.BatchNorm2d(half), nn.ReLU(inplace=True),
            nn.Conv2d(half, channels, 3, stride=2, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image / 127.5 - 1.0)


class PoseShapeStage(nn.Module):
    """One 3D stage: conv stack -> output maps (one per number) -> dense pose and shape heads."""

    def __init__(self, cin: int, size: RegressorSize, pose_dim: int, shape_dim: int) -> None:
        super().__init__()
        self.body = conv_stack(cin, size.width, size.kernel, size.convs)
        self.maps = nn.Conv2d(size.width, pose_dim + shape_dim, 1)
        self.pose = nn.Linear(pose_dim + shape_dim, pose_dim)
        self.shape = nn.Linear(pose_dim + shape_dim, shape_dim)
        for head in (self.pose, self.shape):  # start at the zero pose / mean shape
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        maps = self.maps(self.body(x))
        pooled = maps.mean((-2, -1))
        return self.pose(pooled), self.shape(pooled), maps


class MultistageRegressor(nn.Module):
    """``forward(image)`` -> dict: ``heatmaps`` (B, J, h, w), ``part_logits`` (B, K + 1, h, w) (channel 0
    the background, k + 1 part k), ``poses`` / ``shapes``: one (B, pose_dim) / (B, shape_dim) per stage,
    the last the prediction; h, w = H / 4, W / 4."""

    def __init__(self, keypoints: int, parts: int, pose_dim: int, shape_dim: int,
                 size: RegressorSize = RegressorSize()) -> None:
        super().__init__()
        if size.stages < 1 or size.convs < 1 or size.width < 1:
            raise UserError(f"regressor: stages, convs and width must be >= 1, got {size}")
        self.size, self.pose_dim, self.shape_dim = size, pose_dim, shape_dim
        self.backbone = Backbone(size.backbone)
        c = size.backbone
        self.keypoint_stage = nn.Sequential(conv_stack(c, size.width, size.kernel, size.convs),
                                            nn.Conv2d(size.width, keypoints, 1))
        self.part_stage = nn.Sequential(conv_stack(c + keypoints, size.width, size.kernel, size.convs),
                                        nn.Conv2d(size.width, parts + 1, 1))
        evidence = c + keypoints + parts + 1
        self.stages = nn.ModuleList(
            PoseShapeStage(evidence + (0 if i == 0 else pose_dim + shape_dim), size, pose_dim, shape_dim)
            for i in range(size.stages))

    def forward(self, image: torch.Tensor) -> dict:
        if image.dim() != 4 or image.shape[1] != 3 or image.shape[-1] % 4 or image.shape[-2] % 4:
            raise UserError(f"regressor: images must be (B, 3, H, W) with H and W multiples of 4, "
                            f"got {tuple(image.shape)}")
        features = self.backbone(image)
        heatmaps = self.keypoint_stage(features)
        part_logits = self.part_stage(torch.cat([features, heatmaps], 1))
        evidence = torch.cat([features, heatmaps, part_logits.softmax(1)], 1)
        poses, shapes, x = [], [], evidence
        for stage in self.stages:
            pose, shape, maps = stage(x)
            poses.append(pose)
            shapes.append(shape)
            x = torch.cat([evidence, maps], 1)
        return {"heatmaps": heatmaps, "part_logits": part_logits, "poses": poses, "shapes": shapes}


def heatmap_keypoints(heatmaps: torch.Tensor, stride: float = 4.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, J, h, w) heatmaps trained towards unit Gaussians -> keypoints (B, J, 2) in input pixels
    (the centre of heatmap cell (i, j) is input pixel (stride * j + (stride - 1) / 2, ...)) and a
    confidence (B, J): the peak's value in [0, 1]. The peak cell is refined along each axis by the
    vertex of the parabola through the log-values of it and its two neighbours, exact for a
    Gaussian (a softmax over values in [0, 1] would be nearly flat and pull every keypoint to the
    middle)."""
    b, j, h, w = heatmaps.shape
    peak, at = heatmaps.detach().flatten(2).max(-1)
    rows, cols = at // w, at % w
    logs = heatmaps.detach().float().clamp_min(1e-6).log()

    def offset(along: torch.Tensor, size: int, value) -> torch.Tensor:
        inside = (along > 0) & (along < size - 1)
        before, here, after = value(along.clamp(1, size - 2) - 1), value(along), value(along.clamp(1, size - 2) + 1)
        curvature = before - 2 * here + after
        step = 0.5 * (before - after) / torch.where(curvature < 0, curvature, -torch.ones_like(curvature))
        return torch.where(inside & (curvature < 0), step.clamp(-0.5, 0.5), torch.zeros_like(step))

    flat = logs.flatten(2)
    dx = offset(cols, w, lambda c: flat.gather(-1, (rows * w + c)[..., None])[..., 0])
    dy = offset(rows, h, lambda r: flat.gather(-1, (r * w + cols)[..., None])[..., 0])
    x = (cols + dx) * stride + (stride - 1) / 2
    y = (rows + dy) * stride + (stride - 1) / 2
    return torch.stack([x, y], -1).to(heatmaps.dtype), peak.clamp(0, 1)


def gaussian_heatmaps(keypoints: torch.Tensor, weights: torch.Tensor, size: tuple[int, int], stride: float = 4.0,
                      sigma: float = 1.5) -> torch.Tensor:
    """Training targets: (B, J, 2) input pixels -> (B, J, h, w) Gaussians of ``sigma`` heatmap cells at the
    keypoints, zero where the weight is 0 (unlabelled)."""
    h, w = size
    ys = torch.arange(h, dtype=keypoints.dtype, device=keypoints.device) * stride + (stride - 1) / 2
    xs = torch.arange(w, dtype=keypoints.dtype, device=keypoints.device) * stride + (stride - 1) / 2
    dx = (xs.view(1, 1, 1, w) - keypoints[..., 0, None, None]) / stride
    dy = (ys.view(1, 1, h, 1) - keypoints[..., 1, None, None]) / stride
    return torch.exp(-(dx ** 2 + dy ** 2) / (2 * sigma ** 2)) * weights[..., None, None]


def part_targets(part_mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) labels (0 background, k + 1 part k) -> (B, h, w) at the heatmaps' resolution (nearest)."""
    return F.interpolate(part_mask[:, None].float(), size=size, mode="nearest")[:, 0].long()
