"""Exact rendering of a people scene: ray-cast ellipsoid body parts and a textured room.

Each pixel's ray is intersected analytically with every body part (an ellipsoid: a surface point
is c + A u with |u| = 1) and with the room's planes, nearest hit first (a z-buffer across parts
and people). What the pixel shows is then known exactly: the person, the part and the point u in
the part's own frame, or the plane and the world point. That makes the ground truth exact too:
- colour is a function of u (a solid texture with light fixed to the part), so a surface point
  keeps its colour as the body moves, and the room's texture is fixed on its planes;
- the forward flow moves the pixel's point with its part to the next frame (u fixed, the next
  frame's c and A) or keeps it in place (the room), and projects it with the next camera;
  the flow is marked occluded where that point is hidden in the next frame (behind the next
  frame's depth, or outside it);
- a joint is visible when it is in the frame and the pixel under it shows one of its own parts
  of the same person (``ProceduralBody.joint_parts``): not another person, not another part.
Motion blur and sensor noise (target domains) change only the image, never the ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from datamodules.synthetic.people_scenes import TEXEL, TEXTURE_SIZE, PeopleScene
from nets.body_model import NUM_PARTS, PART_NAMES

NEAR = 0.05  # metres: nothing closer to the camera is drawn
_LIGHT = np.array([0.3, 0.8, 0.52]) / np.linalg.norm([0.3, 0.8, 0.52])  # fixed in each part's frame
_HEAD = PART_NAMES.index("head")
_FACE = (0, 1, 2, 3, 4)  # COCO-17 nose, eyes, ears
_COCO_BODY_FROM_H36M = (11, 14, 12, 15, 13, 16, 4, 1, 5, 2, 6, 3)  # COCO 5..16 as H36M joints


@dataclass
class Geometry:
    """What each pixel of one frame shows. ``person``/``part``: -1 on the room; ``plane``: -1 on a body."""

    depth: np.ndarray  # (H, W) camera z, metres
    person: np.ndarray  # (H, W) int
    part: np.ndarray  # (H, W) int
    plane: np.ndarray  # (H, W) int
    local: np.ndarray  # (H, W, 3): unit-sphere point u on a body part
    world: np.ndarray  # (H, W, 3): world point (room pixels; body pixels too)


class PeopleRenderer:
    """Renders frames of one scene. What it made for the latest two frames is kept: the flow of
    frame f needs frame f + 1's depth, and a loader walking a video asks for f + 1 next."""

    def __init__(self, scene: PeopleScene, joint_parts: tuple[tuple[int, ...], ...],
                 intrinsics: np.ndarray | None = None, size: tuple[int, int] | None = None) -> None:
        """``intrinsics`` (fx, fy, cx, cy) and ``size`` (H, W) film the scene through another camera
        at the same place (a crop of the frame, with every label exact in it)."""
        self.scene = scene
        d = scene.domain
        self.height, self.width = (d.height, d.width) if size is None else size
        self.intrinsics = scene.camera.intrinsics if intrinsics is None else np.asarray(intrinsics, dtype=np.float64)
        fx, fy, cx, cy = self.intrinsics
        ys, xs = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        self.pixels = np.stack([xs, ys], -1)
        self.rays = np.stack([(xs - cx) / fx, (ys - cy) / fy, np.ones_like(xs)], -1)  # camera frame, z = 1
        self.joint_parts = joint_parts
        self._cache: dict[tuple[str, int], object] = {}
        cam_z = scene.camera.centres[:, 2]
        # floor, back wall, left wall, right wall, front wall: (normal, offset, in-plane axes)
        self.planes = [((0, 1, 0), 0.0, (0, 2)), ((0, 0, 1), 5.0, (0, 1)), ((1, 0, 0), 7.0, (2, 1)),
                       ((-1, 0, 0), 7.0, (2, 1)), ((0, 0, -1), -(float(cam_z.min()) - 4.0), (0, 1))]

    def _memo(self, kind: str, frame: int, make):
        """``make(frame)`` once per (kind, frame); frames more than one behind are forgotten."""
        key = (kind, frame)
        if key not in self._cache:
            self._cache = {k: v for k, v in self._cache.items() if k[1] >= frame - 1}
            self._cache[key] = make(frame)
        return self._cache[key]

    # ---------------------------------------------------------------- casting
    def geometry(self, frame: int) -> Geometry:
        return self._memo("geometry", frame, self._cast)

    def _cast(self, frame: int) -> Geometry:
        s = self.scene
        h, w = self.height, self.width
        depth = np.full((h, w), np.inf)
        person = np.full((h, w), -1, np.int64)
        part = np.full((h, w), -1, np.int64)
        plane = np.full((h, w), -1, np.int64)
        local = np.zeros((h, w, 3))
        rot, centre = s.camera.rotations[frame], s.camera.centres[frame]
        world_rays = self.rays @ rot  # R^T d per pixel
        for k, (normal, offset, _) in enumerate(self.planes):
            n = np.asarray(normal, dtype=np.float64)
            along = world_rays @ n
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (offset - centre @ n) / along
            hit = (along != 0) & (t > NEAR) & (t < depth)
            depth[hit], plane[hit] = t[hit], k
        states = s.states
        fx, fy, cx, cy = self.intrinsics
        for p in range(len(s.people)):
            c_cam = (states.part_centres[p, frame] - centre) @ rot.T  # (K, 3)
            a_cam = rot @ states.part_axes[p, frame]  # (K, 3, 3)
            inverse = np.linalg.inv(a_cam)
            reach = np.linalg.norm(a_cam, axis=-2).max(-1)  # bounding-sphere radius per part
            for k in range(NUM_PARTS):
                box = _bounds(c_cam[k], reach[k], fx, fy, cx, cy, w, h)
                if box is None:
                    continue
                x0, x1, y0, y1 = box
                rays = self.rays[y0:y1, x0:x1]
                dv = rays @ inverse[k].T  # A^-1 d
                e = inverse[k] @ c_cam[k]  # A^-1 c
                qa = (dv * dv).sum(-1)
                qb = -2.0 * (dv @ e)
                qc = e @ e - 1.0
                disc = qb * qb - 4 * qa * qc
                hit = disc >= 0
                if not hit.any():
                    continue
                z = np.where(hit, (-qb - np.sqrt(np.maximum(disc, 0))) / (2 * qa), np.inf)
                window = depth[y0:y1, x0:x1]
                closer = hit & (z > NEAR) & (z < window)
                window[closer] = z[closer]
                person[y0:y1, x0:x1][closer] = p
                part[y0:y1, x0:x1][closer] = k
                plane[y0:y1, x0:x1][closer] = -1
                local[y0:y1, x0:x1][closer] = z[closer, None] * dv[closer] - e
        world = centre + depth[..., None] * world_rays
        return Geometry(depth, person, part, plane, local, world)

    # ----------------------------------------------------------------- colour
    def image(self, frame: int) -> np.ndarray:
        """(H, W, 3) float32 RGB 0..255, sharp and noise-free."""
        return self._memo("image", frame, self._shade)

    def _shade(self, frame: int) -> np.ndarray:
        g = self.geometry(frame)
        s = self.scene
        out = np.zeros((self.height, self.width, 3), np.float32)
        for k, (_, _, axes) in enumerate(self.planes):
            sel = g.plane == k
            if not sel.any():
                continue
            out[sel] = _sample_tiled(s.texture(k), g.world[sel][:, list(axes)] / TEXEL)
        body = g.person >= 0
        if body.any():
            who, which, u = g.person[body], g.part[body], g.local[body]
            radii = np.stack([np.linalg.norm(s.states.part_axes[p, frame], axis=-2) for p in range(len(s.people))])
            q = u * radii[who, which]  # metres in the part's aligned frame
            colour = np.empty((len(who), 3))
            for p, person in enumerate(s.people):
                mine = who == p
                gm = person.garments
                kk = which[mine]
                waves = np.sin(np.einsum("nmi,ni->nm", gm.wavevectors[kk], q[mine]) + gm.phases[kk]).mean(-1)
                colour[mine] = gm.colour[kk] * (1 + gm.contrast[kk] * waves)[:, None]
            shade = 0.7 + 0.3 * np.clip(u @ _LIGHT, -1, 1)
            out[body] = np.clip(colour * shade[:, None], 0, 255).astype(np.float32)
        return out

    # ------------------------------------------------------------------- flow
    def flow(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        """Forward flow (H, W, 2) from ``frame`` to ``frame + 1`` and its occlusion mask (H, W)."""
        return self._memo("flow", frame, self._flow)

    def _flow(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        s = self.scene
        g, nxt = self.geometry(frame), self.geometry(frame + 1)
        moved = g.world.copy()
        body = g.person >= 0
        if body.any():
            who, which = g.person[body], g.part[body]
            c = s.states.part_centres[who, frame + 1, which]
            a = s.states.part_axes[who, frame + 1, which]
            moved[body] = c + np.einsum("nij,nj->ni", a, g.local[body])
        cam = (moved - s.camera.centres[frame + 1]) @ s.camera.rotations[frame + 1].T
        fx, fy, cx, cy = self.intrinsics
        z = np.maximum(cam[..., 2], NEAR)
        target = np.stack([fx * cam[..., 0] / z + cx, fy * cam[..., 1] / z + cy], -1)
        flow = target - self.pixels
        xi, yi = np.rint(target[..., 0]).astype(np.int64), np.rint(target[..., 1]).astype(np.int64)
        inside = (cam[..., 2] > NEAR) & (xi >= 0) & (xi < self.width) & (yi >= 0) & (yi < self.height)
        seen = nxt.depth[np.clip(yi, 0, self.height - 1), np.clip(xi, 0, self.width - 1)]
        hidden = cam[..., 2] > seen * 1.01 + 0.03  # behind what the next frame shows there
        return flow.astype(np.float32), ~inside | hidden

    # ----------------------------------------------------------------- people
    def people(self, frame: int) -> dict[str, np.ndarray]:
        """Per person: joints (P, 17, 2) px and (P, 17, 3) camera metres, visibility, COCO-17
        keypoints and theirs, amodal boxes (x0, y0, x1, y1) of the projected surface."""
        return self._memo("people", frame, self._people)

    def _people(self, frame: int) -> dict[str, np.ndarray]:
        s, g = self.scene, self.geometry(frame)
        st = s.states
        to_cam = lambda x: s.camera.to_camera(x, frame)  # noqa: E731
        joints3d, keypoints3d = to_cam(st.joints[:, frame]), to_cam(st.keypoints[:, frame])
        joints2d, keypoints2d = self._project(joints3d), self._project(keypoints3d)
        visible = np.zeros(joints2d.shape[:2], bool)
        key_visible = np.zeros(keypoints2d.shape[:2], bool)
        for p in range(len(s.people)):
            inside, (who, part), _ = self._under(g, joints2d[p], joints3d[p])
            own = np.array([part[j] in self.joint_parts[j] for j in range(len(part))])
            visible[p] = inside & (who == p) & own
            inside, (who, part), depth = self._under(g, keypoints2d[p], keypoints3d[p])
            face = inside & (who == p) & (part == _HEAD) & (depth >= keypoints3d[p, :, 2] - 0.03)
            key_visible[p, list(_FACE)] = face[list(_FACE)]
            key_visible[p, 5:] = visible[p, list(_COCO_BODY_FROM_H36M)]
        boxes = []
        for p in range(len(s.people)):
            centres = to_cam(st.part_centres[p, frame])
            axes = s.camera.rotations[frame] @ st.part_axes[p, frame]
            boxes.append(_surface_box(centres, axes, self.intrinsics))
        return {"joints2d": joints2d, "joints3d": joints3d, "joint_visible": visible, "keypoints2d": keypoints2d,
                "keypoint_visible": key_visible, "boxes": np.stack(boxes)}

    def _project(self, cam: np.ndarray) -> np.ndarray:
        fx, fy, cx, cy = self.intrinsics
        z = np.maximum(cam[..., 2], NEAR)
        return np.stack([fx * cam[..., 0] / z + cx, fy * cam[..., 1] / z + cy], -1)

    def _under(self, g: Geometry, xy: np.ndarray, cam: np.ndarray):
        """Whether each point is in the frame, (person, part) shown at its pixel, and that depth."""
        xi, yi = np.rint(xy[:, 0]).astype(np.int64), np.rint(xy[:, 1]).astype(np.int64)
        inside = (cam[:, 2] > NEAR) & (xi >= 0) & (xi < self.width) & (yi >= 0) & (yi < self.height)
        xi, yi = np.clip(xi, 0, self.width - 1), np.clip(yi, 0, self.height - 1)
        return inside, (g.person[yi, xi], g.part[yi, xi]), g.depth[yi, xi]


def _sample_tiled(texture: np.ndarray, coords: np.ndarray, columns: int = 1024) -> np.ndarray:
    """Bilinear samples (N, 3) of a texture tiled over the plane at texel coordinates (N, 2): only
    the pixels that show the plane, laid out as rows of ``columns`` (OpenCV's maps are < 32767 a side)."""
    n = len(coords)
    rows = -(-n // columns)
    padded = np.zeros((rows * columns, 2), np.float32)
    padded[:n] = np.mod(coords, TEXTURE_SIZE)
    grid = padded.reshape(rows, columns, 2)
    sampled = cv2.remap(texture, grid[..., 0], grid[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    return sampled.reshape(-1, 3)[:n]


def _bounds(c: np.ndarray, r: float, fx, fy, cx, cy, width: int, height: int):
    """Pixel box (x0, x1, y0, y1) surely holding the projection of a sphere; None when out of view."""
    if c[2] + r <= NEAR:
        return None
    if c[2] - r <= NEAR:
        return 0, width, 0, height
    near, far = c[2] - r, c[2] + r
    xs = [(c[0] - r) / near, (c[0] - r) / far, (c[0] + r) / near, (c[0] + r) / far]
    ys = [(c[1] - r) / near, (c[1] - r) / far, (c[1] + r) / near, (c[1] + r) / far]
    x0, x1 = int(np.floor(fx * min(xs) + cx)), int(np.ceil(fx * max(xs) + cx)) + 1
    y0, y1 = int(np.floor(fy * min(ys) + cy)), int(np.ceil(fy * max(ys) + cy)) + 1
    x0, x1, y0, y1 = max(x0, 0), min(x1, width), max(y0, 0), min(y1, height)
    return None if x0 >= x1 or y0 >= y1 else (x0, x1, y0, y1)


def _surface_box(centres: np.ndarray, axes: np.ndarray, intrinsics: np.ndarray, samples: int = 24) -> np.ndarray:
    """(x0, y0, x1, y1) of the projected body: the extremes over points spread on every part."""
    phi = np.linspace(0, np.pi, samples // 2)
    theta = np.linspace(0, 2 * np.pi, samples, endpoint=False)
    u = np.stack([np.outer(np.sin(phi), np.cos(theta)), np.outer(np.cos(phi), np.ones_like(theta)),
                  np.outer(np.sin(phi), np.sin(theta))], -1).reshape(-1, 3)
    points = centres[:, None, :] + np.einsum("kij,nj->kni", axes, u)
    points = points[points[..., 2] > NEAR]
    if not len(points):
        return np.zeros(4)
    fx, fy, cx, cy = intrinsics
    x, y = fx * points[:, 0] / points[:, 2] + cx, fy * points[:, 1] / points[:, 2] + cy
    return np.array([x.min(), y.min(), x.max(), y.max()])
