"""Weak-supervision losses of Zanfir et al. 2020 ("Weakly Supervised 3D Human Pose and Shape
Reconstruction with Normalizing Flows"): keypoint alignment L_KA and the semantic body-part
alignment L_BA of eq. (7), the two image terms of the weakly supervised objective (11).

Image conventions (those of ``geometry/camera.py``): pixel coordinates with x to the right and
y down, and the centre of the pixel in row ``i``, column ``j`` at (x, y) = (j, i), i.e. pixel
centres at integer coordinates. Feed ``part_alignment`` vertices projected in those units
(``perspective_project`` with a focal length and principal point in pixels).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import torch

from framework.errors import UserError

# Mask label maps use this value for pixels that show no body part.
BACKGROUND = -1
# Default number of mask pixels per image compared with all the vertices of a part at once.
DEFAULT_CHUNK = 4096


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _check_finite(t: torch.Tensor, name: str, fn: str) -> None:
    if not torch.isfinite(t).all():
        raise UserError(f"{fn}: {name} holds NaN or inf values (shape {_shape(t)})")


def keypoint_alignment(projected: torch.Tensor, target: torch.Tensor,
                       confidence: Optional[torch.Tensor] = None, eps: float = 1e-8) -> torch.Tensor:
    """L_KA: the mean over joints of the squared 2D error ||J_i - Ĵ_i||², one value per instance.

    ``projected`` and ``target`` are (..., J, 2); ``confidence`` (..., J) holds weights in [0, 1]
    and the mean becomes sum_i w_i e_i / sum_i w_i, so a joint of weight 0 is ignored. Mark a
    missing joint with weight 0, not with NaN: NaN would poison the whole batch, so it is refused.
    An instance whose weights are all 0 gets 0 (the denominator is clamped to ``eps``).
    Returns (...,).
    """
    fn = "keypoint_alignment"
    if projected.dim() < 2 or projected.shape[-1] != 2:
        raise UserError(f"{fn}: projected must have shape (..., J, 2), got {_shape(projected)}")
    if target.shape != projected.shape:
        raise UserError(f"{fn}: target must have the shape of projected {_shape(projected)}, got {_shape(target)}")
    _check_finite(projected, "projected", fn)
    _check_finite(target, "target", fn)
    err = (projected - target).square().sum(dim=-1)
    if confidence is None:
        return err.mean(dim=-1)
    if confidence.shape != projected.shape[:-1]:
        raise UserError(f"{fn}: confidence must have shape {_shape(projected)[:-1]} (projected without its last "
                        f"dimension), got {_shape(confidence)}")
    _check_finite(confidence, "confidence", fn)
    if ((confidence < 0) | (confidence > 1)).any():
        raise UserError(f"{fn}: confidence must lie in [0, 1], got values in "
                        f"[{confidence.min().item():g}, {confidence.max().item():g}]")
    w = confidence.to(err.dtype)
    return (w * err).sum(dim=-1) / w.sum(dim=-1).clamp_min(eps)


class PartAlignmentTerms(NamedTuple):
    """The per-instance (B,) L_BA and its two terms of eq. (7); ``total = forward + backward``."""

    total: torch.Tensor
    forward: torch.Tensor  # mask pixels -> nearest projected vertex of their part
    backward: torch.Tensor  # projected vertices -> nearest mask pixel of their part


def _check_part_inputs(vertices: torch.Tensor, vertex_parts: torch.Tensor, part_masks: torch.Tensor,
                       num_parts: Optional[int], background: int, chunk: int, reduction: str) -> int:
    """Validate the inputs of ``part_alignment``; return the number of parts K."""
    fn = "part_alignment"
    if vertices.dim() != 3 or vertices.shape[-1] != 2:
        raise UserError(f"{fn}: projected_vertices must have shape (B, V, 2), got {_shape(vertices)}")
    if not vertices.is_floating_point():
        raise UserError(f"{fn}: projected_vertices must be floating point, got {vertices.dtype}")
    _check_finite(vertices, "projected_vertices", fn)
    b, v = vertices.shape[:2]
    if vertex_parts.dim() != 1 or vertex_parts.shape[0] != v:
        raise UserError(f"{fn}: vertex_parts must have shape (V,) = ({v},) to match projected_vertices "
                        f"{_shape(vertices)}, got {_shape(vertex_parts)}")
    if vertex_parts.is_floating_point() or vertex_parts.dtype == torch.bool:
        raise UserError(f"{fn}: vertex_parts must hold integer part indices, got {vertex_parts.dtype}")
    if part_masks.dim() == 4:
        if part_masks.dtype != torch.bool:
            raise UserError(f"{fn}: part_masks of shape (B, K, H, W) must be bool, got {part_masks.dtype} "
                            f"(threshold soft masks before calling)")
        k = part_masks.shape[1]
        if num_parts is not None and num_parts != k:
            raise UserError(f"{fn}: num_parts={num_parts} but part_masks {_shape(part_masks)} has K={k} parts")
    elif part_masks.dim() == 3:
        if part_masks.is_floating_point() or part_masks.dtype == torch.bool:
            raise UserError(f"{fn}: a part_masks label map (B, H, W) must hold integer labels, got {part_masks.dtype}")
        labels = part_masks[part_masks != background]
        k = num_parts if num_parts is not None else int(max(
            vertex_parts.max().item() + 1 if v else 0, labels.max().item() + 1 if labels.numel() else 0))
        if 0 <= background < k:
            raise UserError(f"{fn}: background={background} is a part index in [0, {k}); use a value outside it")
        if labels.numel() and (labels.min() < 0 or labels.max() >= k):
            raise UserError(f"{fn}: part_masks labels must be {background} (background) or in [0, {k}), got "
                            f"values in [{labels.min().item()}, {labels.max().item()}]")
    else:
        raise UserError(f"{fn}: part_masks must be (B, K, H, W) bool masks or a (B, H, W) label map, "
                        f"got {_shape(part_masks)}")
    if part_masks.shape[0] != b:
        raise UserError(f"{fn}: part_masks {_shape(part_masks)} holds {part_masks.shape[0]} images but "
                        f"projected_vertices {_shape(vertices)} holds {b} instances")
    if v and (vertex_parts.min() < 0 or vertex_parts.max() >= k):
        raise UserError(f"{fn}: vertex_parts must lie in [0, {k}) (K parts of part_masks {_shape(part_masks)}), "
                        f"got values in [{vertex_parts.min().item()}, {vertex_parts.max().item()}]")
    if not isinstance(chunk, int) or chunk < 1:
        raise UserError(f"{fn}: chunk must be a positive int (pixels per image per step), got {chunk!r}")
    if reduction not in ("mean", "sum"):
        raise UserError(f"{fn}: reduction must be 'mean' or 'sum', got {reduction!r}")
    return k


def part_masks_from_labels(labels: torch.Tensor, num_parts: int, background: int = BACKGROUND) -> torch.Tensor:
    """A (B, H, W) label map -> (B, K, H, W) bool masks; ``background`` (outside [0, K)) is in no mask.

    ``part_alignment`` never builds this (it takes one part's mask at a time); it is here for
    callers that want the other format, e.g. to merge label maps with overlapping masks.
    """
    if 0 <= background < num_parts:
        raise UserError(f"part_masks_from_labels: background={background} is a part index in [0, {num_parts})")
    parts = torch.arange(num_parts, device=labels.device).view(1, -1, 1, 1)
    return labels.unsqueeze(1) == parts


def _padded_pixels(mask: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pixels of a (B, H, W) bool mask as (B, N, 2) (x, y) centres padded to the largest count N,
    with a (B, N) validity mask and the (B,) counts. Built with one nonzero, no loop over pixels."""
    b = mask.shape[0]
    counts = mask.flatten(1).sum(dim=1)
    n = int(counts.max().item()) if b else 0
    where = mask.nonzero()  # (P, 3) rows sorted by image, then y, then x
    starts = counts.cumsum(0) - counts
    slot = torch.arange(where.shape[0], device=mask.device) - starts[where[:, 0]]
    pixels = torch.zeros(b, n, 2, dtype=dtype, device=mask.device)
    pixels[where[:, 0], slot] = where[:, [2, 1]].to(dtype)
    valid = torch.zeros(b, n, dtype=torch.bool, device=mask.device)
    valid[where[:, 0], slot] = True
    return pixels, valid, counts


PartPixels = list  # per part: ``_padded_pixels`` of its mask


def mask_pixels(part_masks: torch.Tensor, num_parts: int, dtype: torch.dtype = torch.float32) -> PartPixels:
    """Each part's mask pixels as ``part_alignment`` reads them, made once for masks that stay the
    same over many evaluations (the steps of a test-time fit)."""
    return [_padded_pixels(part_masks[:, k] if part_masks.dim() == 4 else part_masks == k, dtype)
            for k in range(num_parts)]


def _nearest(pixels: torch.Tensor, valid: torch.Tensor, verts: torch.Tensor,
             chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Without gradient: for each pixel the index of its nearest vertex (B, N), and for each vertex
    the index of its nearest valid pixel (B, Vk). Holds at most a (B, chunk, Vk) distance block."""
    b, n = valid.shape
    to_vertex = torch.zeros(b, n, dtype=torch.long, device=pixels.device)
    best = torch.full(verts.shape[:2], float("inf"), dtype=verts.dtype, device=verts.device)
    to_pixel = torch.zeros(verts.shape[:2], dtype=torch.long, device=verts.device)
    with torch.no_grad():
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            d = torch.cdist(pixels[:, start:stop], verts, compute_mode="donot_use_mm_for_euclid_dist")
            to_vertex[:, start:stop] = d.argmin(dim=2)
            d = d.masked_fill(~valid[:, start:stop, None], float("inf"))
            m, i = d.min(dim=1)
            better = m < best
            best = torch.where(better, m, best)
            to_pixel = torch.where(better, i + start, to_pixel)
    return to_vertex, to_pixel


def part_alignment(projected_vertices: torch.Tensor, vertex_parts: torch.Tensor, part_masks: torch.Tensor,
                   chunk: int = DEFAULT_CHUNK, reduction: str = "mean", return_terms: bool = False,
                   num_parts: Optional[int] = None,
                   background: int = BACKGROUND, pixels: Optional[PartPixels] = None
                   ) -> Union[torch.Tensor, PartAlignmentTerms]:
    """L_BA of eq. (7): an ICP-style distance between part masks and the vertices of the same part.

    forward:  each mask pixel p of part k -> its nearest projected vertex of part k, ||p - Π(v)||;
    backward: each projected vertex of part k -> its nearest mask pixel of part k.
    The forward term alone is minimised by vertices spread over the mask, not necessarily inside
    it; the backward term pulls every vertex into its part's region. Distances are Euclidean, not
    squared, as in the paper: squaring would let far outliers dominate.

    Args:
        projected_vertices: (B, V, 2) pixel coordinates, x right, y down, pixel centres at
            integer coordinates (the pixel in row i, column j is the point (j, i)).
        vertex_parts: (V,) integer part index of each vertex, in [0, K).
        part_masks: (B, K, H, W) bool masks (parts may overlap), or a (B, H, W) integer label map
            whose pixels hold a part index or ``background`` (default -1) for no part.
        chunk: mask pixels per image compared with a part's vertices at once; the largest
            intermediate is a (B, chunk, V_k) distance block, whatever the mask size.
        reduction: "mean" (default) divides each term by the number of pixels / vertices that
            contribute to it in that image; "sum" is the paper's plain sum. Summing makes the
            weight of L_BA grow with image resolution and mesh density, so the mean is the default.
        return_terms: also return the two terms.
        num_parts: K for a label map (default: the largest part index in the labels or
            vertex_parts, plus one); checked against K for bool masks.
        background: the no-part value of a label map; any value outside [0, K).
        pixels: ``mask_pixels(part_masks, K)``, made once where the masks serve many calls.

    A part with no mask pixels in an image contributes nothing to either term for that image (its
    vertices have no pixel to reach); a part with no vertices contributes nothing either.

    Gradients are exact: the nearest pairs are found without gradient, chunk by chunk, and the
    distances recomputed with gradient for those pairs only, so the forward term's gradient reaches
    the argmin vertex and the backward term's the vertex itself, and none flows through the mask.

    Returns:
        (B,) total, or ``PartAlignmentTerms(total, forward, backward)`` with ``return_terms=True``.
    """
    k_parts = _check_part_inputs(projected_vertices, vertex_parts, part_masks, num_parts, background,
                                 chunk, reduction)
    vertices = projected_vertices
    b, dtype, device = vertices.shape[0], vertices.dtype, vertices.device
    vertex_parts = vertex_parts.to(device)
    part_masks = part_masks.to(device)
    fwd_sum = vertices.new_zeros(b)
    bwd_sum = vertices.new_zeros(b)
    fwd_count = torch.zeros(b, dtype=torch.long, device=device)
    bwd_count = torch.zeros(b, dtype=torch.long, device=device)
    if pixels is None:
        pixels = mask_pixels(part_masks, k_parts, dtype)
    elif len(pixels) != k_parts:
        raise UserError(f"part_alignment: pixels were made for {len(pixels)} parts, the masks have {k_parts}")
    part_pixels = pixels
    for k in range(k_parts):
        members = (vertex_parts == k).nonzero().squeeze(1)
        if members.numel() == 0:
            continue
        pixels, valid, counts = part_pixels[k]
        pixels = pixels.to(dtype)
        if pixels.shape[1] == 0:
            continue
        verts = vertices[:, members]  # (B, Vk, 2)
        to_vertex, to_pixel = _nearest(pixels, valid, verts, chunk)
        nearest_vertex = verts.gather(1, to_vertex.unsqueeze(-1).expand(-1, -1, 2))
        d_fwd = torch.linalg.vector_norm(pixels - nearest_vertex, dim=-1)
        fwd_sum = fwd_sum + torch.where(valid, d_fwd, torch.zeros_like(d_fwd)).sum(dim=1)
        fwd_count = fwd_count + counts
        nearest_pixel = pixels.gather(1, to_pixel.unsqueeze(-1).expand(-1, -1, 2))
        d_bwd = torch.linalg.vector_norm(verts - nearest_pixel, dim=-1)
        present = counts > 0
        bwd_sum = bwd_sum + torch.where(present[:, None], d_bwd, torch.zeros_like(d_bwd)).sum(dim=1)
        bwd_count = bwd_count + present.long() * members.numel()
    if reduction == "mean":
        fwd_sum = fwd_sum / fwd_count.clamp_min(1).to(dtype)
        bwd_sum = bwd_sum / bwd_count.clamp_min(1).to(dtype)
    total = fwd_sum + bwd_sum
    return PartAlignmentTerms(total, fwd_sum, bwd_sum) if return_terms else total
