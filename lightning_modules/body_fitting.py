"""Fitting a body to an image's 2D evidence under a pose prior (Zanfir et al. 2020, eq. 5, 6, 11):
the test-time optimisation of the NF-prior methods, shared by the prior alone (Table 1's
experiment) and by the regressor (its predictions as the start).

Variables of each instance: ``pose`` (the flow's latent z (D,) in latent space, the rotations
theta (J, R) in ambient space), ``betas``, ``orient`` (angle-axis, camera frame) and ``transl``
(the pelvis, camera frame, metres). Terms, each (B,):

- ``keypoints``: L_KA, the confidence-weighted mean squared distance (px^2) between the body's
  projected COCO keypoints and the image's (``keypoints`` + ``keypoint_visible``);
- ``parts`` (``fit.part_alignment``): L_BA, both terms of eq. 7 between the projected vertices
  of each part and that part's mask pixels (``part_mask``: 0 background, k + 1 for part k), mean px;
- ``prior``: |z|^2 / 2 in latent space (the constant of -log N dropped), -log p(theta) in ambient;
- ``shape``: |beta|^2.

Scores: MPJPE and PA-MPJPE (root-relative), MPVPE (pelvis-relative, where the data carries the true
body), the 2D joint error, the 2D keypoint error (the labelled COCO keypoints the fit sees: what
can be scored without 3D truth), and the part IoU of the body's silhouettes with the part masks.

Per video (``adaptation.per=video``, the paper's eq. 12): the shape is one per window of frames
(``tied_variables``) and ``smoothness`` = sum_t |z_t - z_(t-1)|^2 over consecutive frames (the
rotations' numbers in ambient space); the paper weighs it 50x the prior.

The camera is the batch's pinhole ``camera`` (fx, fy, cx, cy); the first translation comes from a
weak-perspective fit of the starting body's keypoints to the 2D ones, as the paper estimates it.
Starts: the body upright and turned to ``fit.starts`` headings about the camera's vertical axis
(four: facing the camera, its right, away, its left), the per-instance best kept by the callback.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torchmetrics import MetricCollection

from framework.checks import OneOf, at_least, check
from framework.errors import UserError
from geometry.camera import fit_weak_perspective, perspective_project
from geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rotation_6d, rotation_x, rotation_y
from lightning_modules.capabilities import OutputOptimisation
from lightning_modules.nfprior_losses import keypoint_alignment, mask_pixels, part_alignment
from geometry.raster import face_labels, part_silhouettes
from metrics.people import JointError2D, PartIoU
from metrics.pose3d import MPJPE, PAMPJPE
from nets.pose_prior import NormalizingFlowPrior

SPACES = ("latent", "ambient")
MAX_DEPTH = 100.0  # metres: the farthest a fitted body is placed
KEYPOINT_WEIGHTS = ("visible", "all")


@dataclass
class FitConfig:
    space: str = "latent"  # latent | ambient (the flow priors; the GMM and no prior are ambient)
    starts: int = 4  # headings tried per instance, evenly spread over the full turn
    keypoints: str = "visible"  # visible: the keypoints the data says are seen; all: every one inside the image
    part_alignment: bool = False  # add the L_BA term against the part masks
    chunk: int = 4096  # mask pixels compared at once in L_BA (memory bound)
    part_stride: int = 1  # L_BA on every part_stride-th mask pixel in each direction (a mean: same scale, less work)


def validate_fit_config(c: FitConfig, key: str = "model.fit") -> None:
    check(c, key, space=OneOf(SPACES), starts=at_least(1), keypoints=OneOf(KEYPOINT_WEIGHTS), chunk=at_least(1),
          part_stride=at_least(1))


def to_representation(pose_aa: torch.Tensor, rep: int) -> torch.Tensor:
    """(..., J, 3) angle-axis -> the prior's representation (3: itself, 6: 6D)."""
    return pose_aa if rep == 3 else matrix_to_rotation_6d(axis_angle_to_matrix(pose_aa))


def upright_orientations(starts: int, dtype=torch.float32) -> torch.Tensor:
    """(starts, 3) angle-axis: the body's y-up, z-facing frame turned into the camera's (y down,
    z forward) facing the camera, then about the vertical by k * 360 / starts degrees."""
    facing = rotation_x(torch.tensor(math.pi, dtype=torch.float64))
    turns = torch.stack([rotation_y(torch.tensor(2 * math.pi * k / starts, dtype=torch.float64)) @ facing
                         for k in range(starts)])
    return matrix_to_axis_angle(turns).to(dtype)


def translation_for(points3d: torch.Tensor, points2d: torch.Tensor, weights: torch.Tensor,
                    camera: torch.Tensor) -> torch.Tensor:
    """The translation (B, 3) that puts (B, J, 3) body points (at the origin) over (B, J, 2) pixels
    under the pinhole ``camera`` (fx, fy, cx, cy): a weak-perspective fit x = s X + t, then depth
    f / s and the offset (t - c) depth / f, the paper's approximation for this one step."""
    scale_shift = fit_weak_perspective(points3d, points2d, weights)
    focal = camera[:, :2].mean(-1)
    depth = focal / torch.maximum(scale_shift[:, 0], focal / MAX_DEPTH)  # keypoints in a heap: far, not at infinity
    xy = (scale_shift[:, 1:] - camera[:, 2:]) * depth[:, None] / camera[:, :2]
    return torch.cat([xy, depth[:, None]], -1)


def check_mask_size(batch: dict) -> None:
    """Part masks are in the crop's pixels: one of another size would be compared at the wrong places."""
    if "part_mask" in batch and "image" in batch and batch["part_mask"].shape[-2:] != batch["image"].shape[-2:]:
        h, w = batch["part_mask"].shape[-2:]
        raise UserError(f"part_mask is {w} x {h} (W x H) but the image is {batch['image'].shape[-1]} x "
                        f"{batch['image'].shape[-2]}: part masks must be in the crop's pixels")


def fit_metric_collection(num_parts: int) -> MetricCollection:
    return MetricCollection({"mpjpe": MPJPE(), "pa_mpjpe": PAMPJPE(), "mpvpe": MPJPE(), "joints2d_error": JointError2D(),
                             "keypoints_error": JointError2D(), "part_iou": PartIoU(num_parts)}, compute_groups=False)


class BodyFitting(OutputOptimisation):
    """The fitting terms over ``self.body`` (a body model), ``self.prior`` (a pose prior) and
    ``self.fit_cfg``; ``self.prior_rep`` is 3 or 6."""

    body: torch.nn.Module
    prior: torch.nn.Module
    fit_cfg: FitConfig
    prior_rep: int
    tied_variables = ("betas",)

    # ---------------------------------------------------------------- variables
    def latent(self) -> bool:
        return self.fit_cfg.space == "latent" and isinstance(self.prior, NormalizingFlowPrior)

    def pose_of(self, variables: dict) -> torch.Tensor:
        """The body's rotations (B, J, R) the variables stand for."""
        return self.prior.inverse(variables["pose"]) if self.latent() else variables["pose"]

    def start_pose(self, rows: int, like: torch.Tensor) -> torch.Tensor:
        """Zero, in the space optimised: the latent code of the flow's mode region, or the rest pose."""
        joints = len(self.body.pose_joints)
        if self.latent():
            return like.new_zeros(rows, self.prior.dim)
        rest = like.new_zeros(rows, joints, 3)
        return to_representation(rest, self.prior_rep)

    def check_fit_batch(self, batch: dict) -> None:
        for key in ("keypoints", "camera"):
            if key not in batch:
                raise UserError(f"body fitting needs '{key}' in the batch (crops with 2D keypoints and a camera), "
                                f"found {', '.join(sorted(batch))}")
        if self.fit_cfg.part_alignment and "part_mask" not in batch:
            raise UserError("model.fit.part_alignment=true needs 'part_mask' in the batch; the data has no part masks")
        check_mask_size(batch)

    def placed(self, pose: torch.Tensor, betas: torch.Tensor, orient: torch.Tensor, batch: dict) -> torch.Tensor:
        """Translations (B, 3) putting the body's keypoints over the 2D ones (weak perspective)."""
        body = self.body(pose, betas, orient, torch.zeros_like(orient))
        return translation_for(body.keypoints.float(), batch["keypoints"].float(), self.keypoint_weights(batch),
                               batch["camera"].float())

    def initial_variables(self, batch: dict) -> list[dict[str, torch.Tensor]]:
        self.check_fit_batch(batch)
        rows, like = batch["keypoints"].shape[0], batch["keypoints"].float()
        pose = self.start_pose(rows, like)
        betas = like.new_zeros(rows, self.body.num_betas)
        starts = []
        with torch.no_grad():
            for orient in upright_orientations(self.fit_cfg.starts).to(like):
                orient = orient.expand(rows, 3).clone()
                transl = self.placed(self.pose_of({"pose": pose}), betas, orient, batch)
                starts.append({"pose": pose.clone(), "betas": betas.clone(), "orient": orient, "transl": transl})
        return starts

    # ---------------------------------------------------------------- terms
    def keypoint_weights(self, batch: dict) -> torch.Tensor:
        if self.fit_cfg.keypoints == "visible" and "keypoint_visible" in batch:
            return batch["keypoint_visible"].float()
        kp = batch["keypoints"]
        if "image" not in batch:  # no picture to be outside of
            return torch.ones_like(kp[..., 0])
        h, w = batch["image"].shape[-2:]
        inside = (kp[..., 0] >= 0) & (kp[..., 0] <= w - 1) & (kp[..., 1] >= 0) & (kp[..., 1] <= h - 1)
        return inside.float()

    def posed(self, variables: dict):
        return self.body(self.pose_of(variables), variables["betas"], variables["orient"], variables["transl"])

    @staticmethod
    def project(points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        camera = camera.to(points)
        return perspective_project(points, camera[:, :2], camera[:, 2:])

    def variable_losses(self, variables: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        body = self.posed(variables)
        camera = batch["camera"].float()
        terms = {"keypoints": keypoint_alignment(self.project(body.keypoints.float(), camera),
                                                 batch["keypoints"].float(), self.keypoint_weights(batch))}
        if self.fit_cfg.part_alignment:
            k = self.fit_cfg.part_stride
            # the mask's pixel (row i, column j) sits at (j, i); every k-th of them at (k j, k i)
            masks = batch["part_mask"][..., ::k, ::k] - 1
            terms["parts"] = part_alignment(self.project(body.vertices.float(), camera) / k, self.body.vertex_parts,
                                            masks, chunk=self.fit_cfg.chunk, num_parts=len(self.body.part_names),
                                            pixels=self.mask_pixels_of(batch["part_mask"], masks)) * k
        if self.latent():
            terms["prior"] = 0.5 * (variables["pose"] ** 2).sum(-1)
        else:
            terms["prior"] = self.prior.nll(variables["pose"])
        terms["shape"] = (variables["betas"] ** 2).sum(-1)
        return terms

    def video_losses(self, variables: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        pose = variables["pose"].flatten(1)
        return {"smoothness": ((pose[1:] - pose[:-1]) ** 2).sum()}

    def mask_pixels_of(self, part_mask: torch.Tensor, masks: torch.Tensor):
        """The pixels of the masks of ``part_mask``, kept while the same masks come back: a fit
        evaluates its terms hundreds of times on one batch."""
        cached = getattr(self, "_mask_pixels", None)
        if cached is None or cached[0] is not part_mask or cached[1] != self.fit_cfg.part_stride:
            cached = (part_mask, self.fit_cfg.part_stride, mask_pixels(masks, len(self.body.part_names)))
            self._mask_pixels = cached
        return cached[2]

    def variable_outputs(self, variables: dict[str, torch.Tensor], batch: dict) -> dict[str, torch.Tensor]:
        body = self.posed(variables)
        return {"joints3d": body.joints.float(), "vertices": body.vertices.float(),
                "joints2d": self.project(body.joints.float(), batch["camera"].float()),
                "keypoints2d": self.project(body.keypoints.float(), batch["camera"].float()),
                "pose": self.pose_of(variables).float(), "betas": variables["betas"].float(),
                "orient": variables["orient"].float(), "transl": variables["transl"].float()}

    def fitted_start(self, batch: dict) -> dict[str, torch.Tensor]:
        """The outputs of the first start, unoptimised: what fitting begins from."""
        return self.variable_outputs(self.initial_variables(batch)[0], batch)

    # ---------------------------------------------------------------- scores
    def true_vertices(self, batch: dict) -> Optional[torch.Tensor]:
        """The ground-truth surface where the data carries the body's parameters in this body's layout."""
        keys = ("pose", "betas", "global_orient", "transl")
        if not all(k in batch for k in keys) or batch["pose"].shape[-2] != len(self.body.pose_joints) \
                or batch["betas"].shape[-1] != self.body.num_betas:
            return None
        return self.body(*(batch[k].float() for k in keys)).vertices.float()

    def update_fit_metrics(self, metrics, outputs: dict, batch: dict) -> None:
        """Every score the batch has the truth for: 3D (``joints3d``; rows the data calls unreliable,
        ``pose_valid`` False, left out), 2D joints, vertices, part masks."""
        index = batch["index"]
        if "joints3d" in batch:
            rows = batch["pose_valid"].bool() if "pose_valid" in batch else torch.ones_like(index, dtype=torch.bool)
            mine, truth = outputs["joints3d"][rows], batch["joints3d"][rows].float()
            root, true_root = mine[:, :1], truth[:, :1]
            if rows.any():
                metrics["mpjpe"].update(mine - root, truth - true_root, index[rows])
                metrics["pa_mpjpe"].update(mine - root, truth - true_root, index[rows])
                metrics["joints2d_error"].update(outputs["joints2d"][rows], batch["joints2d"][rows].float(), index[rows])
            vertices = self.true_vertices(batch)
            if vertices is not None and rows.any():
                metrics["mpvpe"].update(outputs["vertices"][rows] - root, vertices[rows] - true_root, index[rows])
        if "keypoint_visible" in batch:
            metrics["keypoints_error"].update(outputs["keypoints2d"], batch["keypoints"].float(), index,
                                              batch["keypoint_visible"])
        if "part_mask" in batch:
            masks = batch["part_mask"]
            mine = part_silhouettes(outputs["vertices"], self.body.faces, face_labels(self.body.faces, self.body.vertex_parts),
                                    batch["camera"].float(), tuple(masks.shape[-2:]))
            metrics["part_iou"].update(mine, masks.long(), index)
