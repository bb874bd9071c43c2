"""The test-time optimisation terms of the dual multi-person network (Cheng, Wang, Tan): each
person's camera-frame 3D pose sequence (T, J, 3) is optimised with the network's weights left alone.

- ``trajectory``: each frame against what a polynomial fitted by least squares to the frames
  before it predicts. For equally spaced frames that prediction is a fixed linear combination of
  the window's frames (``extrapolation_weights``), so the term is exact, differentiable and cheap:
  sum_t |X_t - sum_k a_k X_(t-k)|^2 over the frames with a full window behind them. A sequence
  that is a polynomial of at most the fitted order has zero trajectory loss.
- ``reprojection``: the confidence-weighted squared image distance between the projected joints
  and the 2D estimates, sum over frames and joints of c |Pi(X) - x|^2.
- ``bone``: every bone's length against one latent length per person and bone, shared by all the
  person's frames, sum over frames and bones of (|X_i - X_parent| - L)^2.

The paper's schedule weighs the three per stage (c_rep 0.1 and c_bone 1 for 3000 iterations, then
c_rep 100 for 3000 more); the weights belong to the optimisation stages, not to these functions.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import torch

from framework.errors import UserError
from geometry.bones import bone_lengths
from geometry.camera import perspective_project
from geometry.skeletons import Skeleton


@lru_cache(maxsize=None)
def _weights(window: int, order: int) -> tuple[float, ...]:
    if not 1 <= window or not 0 <= order < window:
        raise UserError(f"trajectory: a polynomial of order {order} needs a window of more than {order} frames, "
                        f"got {window}")
    t = torch.arange(-window, 0, dtype=torch.float64)  # the past frames, the predicted one at 0
    vandermonde = torch.stack([t ** k for k in range(order + 1)], -1)  # (window, order + 1)
    # the fitted polynomial's value at 0 is its constant coefficient: row 0 of the pseudo-inverse
    return tuple(torch.linalg.pinv(vandermonde)[0].tolist())


def extrapolation_weights(window: int, order: int) -> torch.Tensor:
    """(window,) a_k with sum_k a_k x_(t - window + k) the least-squares polynomial's value at t."""
    return torch.tensor(_weights(int(window), int(order)), dtype=torch.float64)


def trajectory(poses: torch.Tensor, window: int, order: int, valid: torch.Tensor | None = None) -> torch.Tensor:
    """(T, ...) sequence -> scalar: the squared distance of each frame from its extrapolation, summed
    over frames with ``window`` frames before them (all of them ``valid``, (T,) bool, when given)."""
    if poses.shape[0] <= window:
        return poses.new_zeros(())
    a = extrapolation_weights(window, order).to(poses)
    windows = poses.unfold(0, window, 1)[:-1]  # (T - window, ..., window): frames t - window .. t - 1
    predicted = (windows * a).sum(-1)
    error = ((poses[window:] - predicted) ** 2).flatten(1).sum(-1)  # (T - window,)
    if valid is not None:
        full = valid.float().unfold(0, window + 1, 1).prod(-1).bool()  # the window and the frame itself
        error = error * full
    return error.sum()


def trajectories(poses: torch.Tensor, windows_orders: Sequence[tuple[int, int]],
                 valid: torch.Tensor | None = None) -> torch.Tensor:
    """The trajectory terms of several (window, order) fits summed (the paper fits orders 1 to 3)."""
    return sum((trajectory(poses, w, o, valid) for w, o in windows_orders), poses.new_zeros(()))


def reprojection(joints3d: torch.Tensor, joints2d: torch.Tensor, confidence: torch.Tensor,
                 camera: torch.Tensor) -> torch.Tensor:
    """(T, J, 3) camera frame, (T, J, 2) px, (T, J), (4,) or (T, 4) pinhole -> scalar."""
    if joints3d.shape[:-1] != joints2d.shape[:-1] or confidence.shape != joints3d.shape[:-1]:
        raise UserError(f"reprojection: joints3d {tuple(joints3d.shape)}, joints2d {tuple(joints2d.shape)} and "
                        f"confidence {tuple(confidence.shape)} must share (frames, joints)")
    camera = camera.to(joints3d).expand(joints3d.shape[0], 4)
    projected = perspective_project(joints3d, camera[:, :2], camera[:, 2:])
    return (confidence * ((projected - joints2d) ** 2).sum(-1)).sum()


def bone(joints3d: torch.Tensor, lengths: torch.Tensor, skeleton: Skeleton,
         valid: torch.Tensor | None = None) -> torch.Tensor:
    """(T, J, 3) one person's sequence, (J - 1,) latent bone lengths -> scalar."""
    current = bone_lengths(joints3d, skeleton)  # (T, J - 1)
    if lengths.shape != current.shape[-1:]:
        raise UserError(f"bone: {skeleton.name} has {current.shape[-1]} bones, got lengths {tuple(lengths.shape)}")
    error = ((current - lengths) ** 2).sum(-1)
    return (error * valid.float()).sum() if valid is not None else error.sum()
