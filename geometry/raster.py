"""Part-labelled silhouettes of a posed mesh, for scoring a fitted body against part masks (the
part-mask IoU the NF-prior paper monitors where there is no 3D truth).

Triangles are filled far to near (the painter's algorithm, OpenCV's fixed-point polygon filling
with pixel centres at integer coordinates, as the masks' pixels are): exact wherever no two
triangles overlap in depth along a line of sight, which on a body's surface leaves only the seams
where parts meet. OpenCV also fills the pixels its outline passes through, a half-pixel growth
all round that would swamp a thin limb in a small crop: each image is filled at ``SUPERSAMPLE``
times the resolution and read at the pixel centres, which cuts it to 1 / (2 x SUPERSAMPLE) px.
Metric only: nothing here is differentiable.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from framework.errors import UserError
from geometry.camera import perspective_project

NEAR = 1e-3  # metres: a triangle with a corner closer to the camera than this is not drawn
_SHIFT = 4  # fractional bits of OpenCV's fixed-point vertices
SUPERSAMPLE = 8


def face_labels(faces: torch.Tensor, vertex_parts: torch.Tensor) -> torch.Tensor:
    """(F,) the part of each triangle: the part most of its corners belong to (the lowest on a three-way tie)."""
    return torch.mode(vertex_parts[faces], dim=1).values


def part_silhouettes(vertices: torch.Tensor, faces: torch.Tensor, labels: torch.Tensor, camera: torch.Tensor,
                     size: tuple[int, int]) -> torch.Tensor:
    """(B, V, 3) camera-frame vertices, (F, 3) faces, (F,) part of each face, (B, 4) pinhole
    (fx, fy, cx, cy), (H, W) -> (B, H, W) int64: 0 where no triangle is seen, k + 1 where part k is."""
    if vertices.dim() != 3 or vertices.shape[-1] != 3 or camera.shape != (vertices.shape[0], 4):
        raise UserError(f"part silhouettes: vertices must be (B, V, 3) and camera (B, 4), got "
                        f"{tuple(vertices.shape)} and {tuple(camera.shape)}")
    h, w = size
    with torch.no_grad():
        pixels = perspective_project(vertices.double(), camera[:, :2].double(), camera[:, 2:].double())
    pixels, depth = pixels.cpu().numpy(), vertices[..., 2].detach().double().cpu().numpy()
    faces_np, labels_np = faces.cpu().numpy(), labels.cpu().numpy() + 1
    k = SUPERSAMPLE
    fine = np.zeros((k * (h - 1) + 1, k * (w - 1) + 1), np.int32)  # pixel (i, j) at (k i, k j)
    out = np.zeros((vertices.shape[0], h, w), np.int32)
    for b in range(vertices.shape[0]):
        corner_depth = depth[b][faces_np]  # (F, 3)
        shown = (corner_depth > NEAR).all(1)
        order = np.argsort(-corner_depth.mean(1)[shown], kind="stable")  # far first
        triangles = np.round(pixels[b][faces_np[shown][order]] * (k << _SHIFT))
        triangles = np.clip(triangles, -(1 << 24), 1 << 24).astype(np.int32)
        fine[:] = 0
        for tri, label in zip(triangles, labels_np[shown][order]):
            cv2.fillConvexPoly(fine, tri, int(label), lineType=cv2.LINE_8, shift=_SHIFT)
        out[b] = fine[::k, ::k]
    return torch.from_numpy(out).long().to(vertices.device)
