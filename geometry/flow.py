"""Dense optical-flow geometry: pixel grids, back-warping, consistency checks, colour maps.

Conventions: flows are (B, 2, H, W) tensors in pixels, channel 0 = u (x, right), channel
1 = v (y, down); ``flow[:, :, y, x]`` moves pixel (x, y) of frame 1 to (x + u, y + v) in
frame 2. Images are (B, C, H, W). Sampling is bilinear with pixel centres at integer
coordinates (``align_corners=True``), so an integer flow samples pixels exactly.
The pseudo-label filters of "Refining Pre-Trained Motion Models" are the forward-backward
(UnFlow) check and the colour-constancy check; both count a pixel whose target lands
outside frame 2 as inconsistent, since nothing there can confirm it.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from framework.errors import UserError


def _check_flow(flow: torch.Tensor, what: str) -> None:
    if not isinstance(flow, torch.Tensor) or flow.dim() != 4 or flow.shape[1] != 2:
        shape = tuple(flow.shape) if isinstance(flow, torch.Tensor) else type(flow).__name__
        raise UserError(f"{what}: expected a flow of shape (B, 2, H, W), got {shape}")


def _check_image(image: torch.Tensor, flow: torch.Tensor, what: str) -> None:
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise UserError(f"{what}: expected an image of shape (B, C, H, W), got {shape}")
    if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
        raise UserError(f"{what}: image {tuple(image.shape)} and flow {tuple(flow.shape)} differ in batch or size")


def coords_grid(batch: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(B, 2, H, W) pixel coordinates: channel 0 = x, channel 1 = y."""
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                            torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack((xs, ys)).unsqueeze(0).expand(batch, 2, height, width).contiguous()


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``image`` (an image or a flow of frame 2) at x + flow(x) for every pixel x of frame 1.

    Returns ``(warped, in_bounds)``: warped (B, C, H, W), bilinear with zeros outside the frame
    (integer images come back as floats of the flow's dtype), and a bool (B, H, W) mask of
    pixels whose sample point lies inside frame 2.
    """
    _check_flow(flow, "backward_warp")
    _check_image(image, flow, "backward_warp")
    b, _, h, w = flow.shape
    target = coords_grid(b, h, w, device=flow.device, dtype=flow.dtype) + flow
    x, y = target[:, 0], target[:, 1]
    in_bounds = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    grid = torch.stack((2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1), dim=-1)
    warped = F.grid_sample(image.to(flow.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return warped.to(image.dtype) if image.is_floating_point() else warped, in_bounds


def sample_points(image: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``image`` (B, C, H, W) at pixel points ``xy`` (B, N, 2) -> (B, N, C);
    pixel centres sit at integer coordinates, points outside take the nearest border value."""
    if image.dim() != 4 or xy.dim() != 3 or xy.shape[-1] != 2 or xy.shape[0] != image.shape[0]:
        raise UserError(f"sample_points: expected image (B, C, H, W) and points (B, N, 2), got "
                        f"{tuple(image.shape)} and {tuple(xy.shape)}")
    h, w = image.shape[-2:]
    grid = torch.stack((2 * xy[..., 0] / max(w - 1, 1) - 1, 2 * xy[..., 1] / max(h - 1, 1) - 1), dim=-1)
    values = F.grid_sample(image.to(xy.dtype), grid[:, :, None], mode="bilinear", padding_mode="border",
                           align_corners=True)
    return values[..., 0].transpose(1, 2)


def forward_backward_consistency(flow_fw: torch.Tensor, flow_bw: torch.Tensor,
                                 alpha1: float = 0.01, alpha2: float = 0.5, form: str = "squared") -> torch.Tensor:
    """Bool (B, H, W) mask of cycle-consistent pixels.

    With b(x) = flow_bw sampled at x + flow_fw(x), a pixel is consistent when its target is in
    frame 2 and, in the UnFlow ``form="squared"``,
    |f_fw(x) + b(x)|^2 < alpha1 (|f_fw(x)|^2 + |b(x)|^2) + alpha2, or, in the ``"euclidean"`` form
    of the refinement authors' released label code, |f_fw(x) + b(x)| < alpha1 (|f_fw(x)| + |b(x)|) + alpha2.
    """
    if form not in ("squared", "euclidean"):
        raise UserError(f"forward_backward_consistency: form must be squared or euclidean, got {form!r}")
    _check_flow(flow_fw, "forward_backward_consistency: flow_fw")
    _check_flow(flow_bw, "forward_backward_consistency: flow_bw")
    if flow_fw.shape != flow_bw.shape:
        raise UserError(f"forward_backward_consistency: flow_fw {tuple(flow_fw.shape)} and flow_bw "
                        f"{tuple(flow_bw.shape)} differ in shape")
    bw, in_bounds = backward_warp(flow_bw, flow_fw)
    if form == "squared":
        cycle = (flow_fw + bw).square().sum(1)
        bound = alpha1 * (flow_fw.square().sum(1) + bw.square().sum(1)) + alpha2
    else:
        cycle = torch.linalg.vector_norm(flow_fw + bw, dim=1)
        bound = alpha1 * (torch.linalg.vector_norm(flow_fw, dim=1) + torch.linalg.vector_norm(bw, dim=1)) + alpha2
    return (cycle < bound) & in_bounds


def colour_consistency(image1: torch.Tensor, image2: torch.Tensor, flow: torch.Tensor,
                       threshold: float = 0.005) -> torch.Tensor:
    """Bool (B, H, W) mask of pixels whose colour survives the forward flow.

    Images hold 0..255 values and are compared as x/255 - 0.5: frame 2 is back-warped with
    the forward flow and a pixel is kept when the mean absolute difference over the colour
    channels is below ``threshold`` and its target is in frame 2.
    """
    _check_flow(flow, "colour_consistency")
    _check_image(image1, flow, "colour_consistency: image1")
    _check_image(image2, flow, "colour_consistency: image2")
    if image1.shape != image2.shape:
        raise UserError(f"colour_consistency: image1 {tuple(image1.shape)} and image2 {tuple(image2.shape)} differ")
    work = flow.dtype if flow.is_floating_point() else torch.float32
    warped, in_bounds = backward_warp(image2.to(work), flow.to(work))
    diff = ((image1.to(work) / 255 - 0.5) - (warped / 255 - 0.5)).abs().mean(1)
    return (diff < threshold) & in_bounds


def _colour_wheel() -> np.ndarray:
    """(55, 3) float RGB in 0..1: hue segments red-yellow-green-cyan-blue-magenta-red.

    Segment lengths 15, 6, 4, 11, 13, 6 follow the Middlebury flow pictures, which give
    more wheel entries to the hues the eye separates well.
    """
    segments = [((1, 0, 0), (1, 1, 0), 15), ((1, 1, 0), (0, 1, 0), 6), ((0, 1, 0), (0, 1, 1), 4),
                ((0, 1, 1), (0, 0, 1), 11), ((0, 0, 1), (1, 0, 1), 13), ((1, 0, 1), (1, 0, 0), 6)]
    rows = []
    for start, end, n in segments:
        t = np.arange(n, dtype=np.float64)[:, None] / n
        rows.append(np.asarray(start, dtype=np.float64) * (1 - t) + np.asarray(end, dtype=np.float64) * t)
    return np.concatenate(rows)


def flow_to_color(flow, max_norm: Optional[float] = None) -> np.ndarray:
    """Middlebury-style colour picture of a flow: hue = direction, saturation = speed.

    ``flow``: torch or numpy, (2, H, W) or (B, 2, H, W). Speeds are divided by ``max_norm``
    (default: the largest speed in each picture), so the fastest pixel is fully saturated;
    zero flow is white; speeds above ``max_norm`` are drawn darker. Returns RGB uint8
    (H, W, 3) or (B, H, W, 3), the framework's picture format.
    """
    arr = flow.detach().cpu().numpy() if isinstance(flow, torch.Tensor) else np.asarray(flow)
    single = arr.ndim == 3
    if single:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[1] != 2:
        raise UserError(f"flow_to_color: expected a flow of shape (2, H, W) or (B, 2, H, W), got {tuple(arr.shape)}")
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    u, v = arr[:, 0], arr[:, 1]
    speed = np.hypot(u, v)
    if max_norm is None:
        scale = speed.reshape(len(arr), -1).max(1)[:, None, None]
    else:
        if not max_norm > 0:
            raise UserError(f"flow_to_color: max_norm must be positive, got {max_norm}")
        scale = np.full((len(arr), 1, 1), float(max_norm))
    scale = np.where(scale > 0, scale, 1.0)
    rad = speed / scale
    wheel = _colour_wheel()
    n = len(wheel)
    angle = np.arctan2(-v, -u) / math.pi  # -1..1
    pos = (angle + 1) / 2 * (n - 1)
    k0 = np.floor(pos).astype(np.int64) % n
    k1 = (k0 + 1) % n
    frac = (pos - np.floor(pos))[..., None]
    colour = (1 - frac) * wheel[k0] + frac * wheel[k1]
    inside = (rad <= 1)[..., None]
    colour = np.where(inside, 1 - rad[..., None] * (1 - colour), colour * 0.75)
    out = np.clip(np.round(colour * 255), 0, 255).astype(np.uint8)
    return out[0] if single else out
