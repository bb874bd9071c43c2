"""Pictures of a few lifted poses, so a run's quality can be judged by eye.

Each picture has square panels: the 2D input, then the 3D prediction
against the ground truth seen from the front (x-y) and from the side (z-y).
Poses are auto-scaled and centred; both 3D views share one scale so bone
lengths compare between them. Left limbs are drawn lighter, right limbs darker.
With ground truth a fourth panel draws each joint's error |prediction - truth|
as a bar, on the scale of the first test pass and with that pass's errors
marked, so the small change of an adaptation shows (the poses barely move).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional, Sequence

import cv2
import numpy as np
import pytorch_lightning as pl
import torch

from framework.errors import UserError
from framework.images import text_lines
from callbacks.sample_pictures import SamplePictures, to_numpy
from geometry.skeletons import H36M17, Skeleton

BACKGROUND = (255, 255, 255)
BORDER = (200, 200, 200)
TEXT = (30, 30, 30)


@dataclass(frozen=True)
class LimbColors:
    """RGB colours of one pose: left limbs lighter, right limbs darker, the trunk in between."""
    left: tuple[int, int, int]
    right: tuple[int, int, int]
    centre: tuple[int, int, int]


PRED_COLORS = LimbColors(left=(255, 150, 90), right=(180, 40, 0), centre=(235, 95, 30))  # orange-red
GT_COLORS = LimbColors(left=(110, 170, 255), right=(10, 50, 170), centre=(40, 105, 225))  # blue
INPUT_COLORS = LimbColors(left=(110, 205, 110), right=(15, 115, 35), centre=(55, 160, 65))  # green


def joint_color(skeleton: Skeleton, joint: int, colors: LimbColors) -> tuple[int, int, int]:
    if joint in skeleton.left:
        return colors.left
    if joint in skeleton.right:
        return colors.right
    return colors.centre


def draw_skeleton_2d(canvas: np.ndarray, pose2d: np.ndarray, skeleton: Skeleton,
                     color: LimbColors | Sequence[int], thickness: int = 2) -> np.ndarray:
    """Draw bones and joints of a (J, 2) pixel-coordinate pose onto ``canvas`` in place.

    ``color`` is one RGB triple or a :class:`LimbColors`; joints with a non-finite
    coordinate (and their bones) are left out.
    """
    pose2d = np.asarray(pose2d, dtype=np.float64)
    if pose2d.shape != (skeleton.num_joints, 2):
        raise UserError(f"draw_skeleton_2d: pose2d has shape {pose2d.shape}, expected ({skeleton.num_joints}, 2) "
                        f"for skeleton {skeleton.name}")
    colors = color if isinstance(color, LimbColors) else LimbColors(*(tuple(int(c) for c in color),) * 3)
    finite = np.isfinite(pose2d).all(axis=1)
    points = [tuple(int(round(c)) for c in p) if ok else None for p, ok in zip(pose2d, finite)]
    for child, parent in skeleton.bones:
        if points[child] is not None and points[parent] is not None:
            cv2.line(canvas, points[parent], points[child], joint_color(skeleton, child, colors),
                     thickness, cv2.LINE_AA)
    for j, p in enumerate(points):
        if p is not None:
            cv2.circle(canvas, p, thickness + 1, joint_color(skeleton, j, colors), -1, cv2.LINE_AA)
    return canvas


def fit_view(views: list[np.ndarray], size: int, margin: float, extent: Optional[float] = None):
    """Centre and scale mapping the finite points of ``views`` (each (J, 2)) into a size x size panel."""
    points = np.concatenate([v[np.isfinite(v).all(axis=1)] for v in views], axis=0)
    if len(points) == 0:
        return np.zeros(2), 1.0
    lo, hi = points.min(axis=0), points.max(axis=0)
    if extent is None:
        extent = float((hi - lo).max())
    scale = (size - 2 * margin) / max(extent, 1e-6)
    return (lo + hi) / 2, scale


def view_extent(views: list[np.ndarray]) -> float:
    points = np.concatenate([v[np.isfinite(v).all(axis=1)] for v in views], axis=0)
    return float((points.max(axis=0) - points.min(axis=0)).max()) if len(points) else 1.0


def to_pixels(view: np.ndarray, centre: np.ndarray, scale: float, size: int) -> np.ndarray:
    return (view - centre) * scale + size / 2


def mpjpe_mm(pred3d: np.ndarray, gt3d: np.ndarray) -> float:
    err = np.linalg.norm(pred3d - gt3d, axis=-1)
    err = err[np.isfinite(err)]
    return float(err.mean() * 1000) if len(err) else float("nan")


def put_text(img: np.ndarray, text: str, org: tuple[int, int], scale: float, color=TEXT) -> None:
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def joint_errors_mm(pred3d: np.ndarray, gt3d: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.asarray(pred3d, np.float64) - np.asarray(gt3d, np.float64), axis=-1) * 1000


def round_up(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value``: a scale that reads at a glance."""
    if not value > 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value * (1 - 1e-9))


class ErrorReference(NamedTuple):
    """The first test pass's joint errors and the bar scale they set, kept for the later passes."""
    scale_mm: float
    errors_mm: np.ndarray


def error_reference(errors_mm: np.ndarray) -> ErrorReference:
    return ErrorReference(round_up(float(np.nanmax(errors_mm, initial=0.0))), errors_mm)


def render_joint_errors(errors_mm: np.ndarray, skeleton: Skeleton, size: int,
                        reference: Optional[ErrorReference] = None) -> np.ndarray:
    """(size, size) panel: one bar per joint, |prediction - truth| in mm, full width at the reference's scale (or
    this sample's own), the reference's errors marked by a black tick; a bar past full width ends in a black cap."""
    panel = np.full((size, size, 3), BACKGROUND, dtype=np.uint8)
    font = max(0.3, 0.4 * size / 256)
    (_, text_h), _ = cv2.getTextSize("Mg", cv2.FONT_HERSHEY_SIMPLEX, font, 1)
    line_h = text_h + 6
    scale = (reference or error_reference(errors_mm)).scale_mm
    put_text(panel, "joint error (mm)", (6, line_h), font)
    legend = f"full bar {scale:g} mm" + (", | first pass" if reference is not None else "")
    legend, legend_font = text_lines(legend, size - 12, font)
    for i, line in enumerate(legend):
        put_text(panel, line, (6, size - 8 - (len(legend) - 1 - i) * line_h), legend_font)
    top, bottom = line_h + 6, size - len(legend) * line_h - 4
    row = (bottom - top) / skeleton.num_joints
    name_font = max(0.3, font * 0.8)
    names = row >= cv2.getTextSize("Mg", cv2.FONT_HERSHEY_SIMPLEX, name_font, 1)[0][1] + 2  # only where legible
    x0 = 6 + (max(cv2.getTextSize(n[:10], cv2.FONT_HERSHEY_SIMPLEX, name_font, 1)[0][0]
                  for n in skeleton.joint_names) + 4 if names else 0)
    x1 = size - 8
    for j, error in enumerate(errors_mm):
        y0, y1 = int(top + j * row + 1), max(int(top + (j + 1) * row - 1), int(top + j * row + 1) + 1)
        if names:
            put_text(panel, skeleton.joint_names[j][:10], (6, y1), name_font)
        if np.isfinite(error):
            length = min(error / scale, 1.0) * (x1 - x0)
            cv2.rectangle(panel, (x0, y0), (x0 + int(round(length)), y1), joint_color(skeleton, j, PRED_COLORS), -1)
            if error > scale:
                cv2.rectangle(panel, (x1 - 2, y0), (x1 + 2, y1), TEXT, -1)
        if reference is not None and j < len(reference.errors_mm) and np.isfinite(reference.errors_mm[j]):
            x = x0 + int(round(min(reference.errors_mm[j] / scale, 1.0) * (x1 - x0)))
            cv2.line(panel, (x, y0 - 1), (x, y1 + 1), TEXT, 1)
    cv2.rectangle(panel, (0, 0), (size - 1, size - 1), BORDER, 1)
    return panel


def render_pose_panel(pose2d: np.ndarray, pred3d: np.ndarray, gt3d: Optional[np.ndarray] = None,
                      skeleton: Skeleton = H36M17, size: int = 256,
                      reference: Optional[ErrorReference] = None) -> np.ndarray:
    """RGB uint8 picture (size, 3*size, 3): 2D input | front view x-y | side view z-y; with ``gt3d`` (size, 4*size, 3),
    the fourth panel of joint errors (:func:`render_joint_errors`, on ``reference``'s scale when given).

    ``pose2d`` is in normalised screen coordinates, ``pred3d``/``gt3d`` in metres
    (camera frame, y down, so the person stands upright in both 3D views).
    """
    if size < 64:
        raise UserError(f"render_pose_panel: size must be at least 64 pixels, got {size}")
    J = skeleton.num_joints
    pose2d, pred3d = np.asarray(pose2d, dtype=np.float64), np.asarray(pred3d, dtype=np.float64)
    gt3d = None if gt3d is None else np.asarray(gt3d, dtype=np.float64)
    for name, arr, dim in (("pose2d", pose2d, 2), ("pred3d", pred3d, 3), ("gt3d", gt3d, 3)):
        if arr is not None and arr.shape != (J, dim):
            raise UserError(f"render_pose_panel: {name} has shape {tuple(arr.shape)}, expected ({J}, {dim}) "
                            f"for skeleton {skeleton.name}")
    thickness = max(1, round(size / 128))
    font = max(0.3, 0.4 * size / 256)
    (_, text_h), _ = cv2.getTextSize("Mg", cv2.FONT_HERSHEY_SIMPLEX, font, 1)
    line_h = text_h + 6
    margin = 0.13 * size

    panels = [np.full((size, size, 3), BACKGROUND, dtype=np.uint8) for _ in range(3)]

    # 2D input (y already points down in screen coordinates)
    centre, scale = fit_view([pose2d], size, margin)
    draw_skeleton_2d(panels[0], to_pixels(pose2d, centre, scale, size), skeleton, INPUT_COLORS, thickness)

    # 3D views, one scale for both so lengths compare
    poses = [pred3d] + ([gt3d] if gt3d is not None else [])
    front = [p[:, [0, 1]] for p in poses]
    side = [p[:, [2, 1]] for p in poses]
    extent = max(view_extent(front), view_extent(side))
    for panel, views in ((panels[1], front), (panels[2], side)):
        centre, scale = fit_view(views, size, margin, extent)
        if gt3d is not None:
            draw_skeleton_2d(panel, to_pixels(views[1], centre, scale, size), skeleton, GT_COLORS, thickness)
        draw_skeleton_2d(panel, to_pixels(views[0], centre, scale, size), skeleton, PRED_COLORS, thickness)

    for panel, title in zip(panels, ("2D input", "front (x-y)", "side (z-y)")):
        put_text(panel, title, (6, line_h), font)
        cv2.rectangle(panel, (0, 0), (size - 1, size - 1), BORDER, 1)

    # legend (top right of the side view) and the sample's error (bottom of the front view)
    entries = [("pred", PRED_COLORS)] + ([("GT", GT_COLORS)] if gt3d is not None else [])
    swatch = line_h
    text_w = max(cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, font, 1)[0][0] for name, _ in entries)
    x0 = size - 6 - text_w - 4 - swatch
    for row, (name, colors) in enumerate(entries):
        y = line_h * (row + 1)
        cv2.line(panels[2], (x0, y - text_h // 2), (x0 + swatch, y - text_h // 2), colors.centre, thickness + 1)
        put_text(panels[2], name, (x0 + swatch + 4, y), font)
    if gt3d is not None:
        put_text(panels[1], f"MPJPE {mpjpe_mm(pred3d, gt3d):.1f} mm", (6, size - 8), font)
        panels.append(render_joint_errors(joint_errors_mm(pred3d, gt3d), skeleton, size, reference))
    return np.ascontiguousarray(np.concatenate(panels, axis=1))


def predicted_poses(outputs: Any) -> Optional[torch.Tensor]:
    """(B, J, 3) predictions from what a validation/test step returned, or None."""
    if isinstance(outputs, dict):
        outputs = outputs.get("pose3d")
    if torch.is_tensor(outputs) and outputs.dim() == 3 and outputs.shape[-1] == 3:
        return outputs
    return None


class SkeletonPictures(SamplePictures):
    """2D input and 3D prediction vs ground truth (front and side views) of the first samples."""

    def extract(self, outputs: Any, batch: Any, take: int) -> Optional[list[Any]]:
        pred = predicted_poses(outputs)
        if pred is None or not isinstance(batch, dict) or "pose2d" not in batch:
            return None
        take = min(take, pred.shape[0])
        pose2d = to_numpy(batch["pose2d"][:take])
        pred3d = to_numpy(pred[:take])
        gt3d = to_numpy(batch["pose3d"][:take]) if torch.is_tensor(batch.get("pose3d")) else [None] * take
        return list(zip(pose2d, pred3d, gt3d))

    def reference(self, sample: Any) -> Optional[ErrorReference]:
        """The first test pass's joint errors: later passes draw their bars on its scale, its errors marked."""
        _, pred3d, gt3d = sample
        if gt3d is None:
            return None
        return error_reference(joint_errors_mm(pred3d, gt3d))

    def render(self, pl_module: pl.LightningModule, sample: Any,
               reference: Optional[ErrorReference] = None) -> np.ndarray:
        skeleton = getattr(pl_module, "skeleton", None)
        if not isinstance(skeleton, Skeleton):
            skeleton = H36M17
        return render_pose_panel(*sample, skeleton, self.size, reference)

    def caption(self, i: int, sample: Any) -> str:
        _, pred3d, gt3d = sample
        return f"sample {i}" + (f", MPJPE {mpjpe_mm(pred3d, gt3d):.1f} mm" if gt3d is not None else "")
