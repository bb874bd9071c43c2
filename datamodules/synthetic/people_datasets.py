"""Datasets over the synthetic people world, one per kind of method that uses it.

Every item is a pure function of (domain, seed, index); rendering is cached per video, so a
loader walking a video in order renders each frame once. The batch keys, in one place:

``PeopleFlowPairs`` (single-person videos: flow-pose bootstrapping), index = video * (T - 1) + t:
    image1, image2      float32 (3, H, W)  RGB 0..255, frames t and t + 1
    flow                float32 (2, H, W)  exact forward flow t -> t + 1, pixels
    valid               float32 (H, W)     1 where the flow's point is seen in frame t + 1
    occlusion           bool (H, W)        the complement of ``valid``
    person_mask         bool (H, W)        the person's pixels in frame t
    joints2d            float32 (2, 17, 2) H36M-17 pixels in frames t and t + 1
    joints3d            float32 (2, 17, 3) camera-frame metres, frames t and t + 1
    joint_visible       bool (2, 17)       in the frame and not hidden (by the body itself or others)
    camera              float32 (4,)       fx, fy, cx, cy in pixels
    index, video, frame int64

``PeopleCrops`` (single-person crops: the regressor with a body prior), ``crops_per_video`` each:
    image               float32 (3, S, S)  a square crop around the person (a virtual pinhole
                                           camera, so every label below is exact in the crop)
    keypoints           float32 (17, 2)    COCO-17 pixels in the crop; keypoint_visible bool (17,)
    joints2d, joints3d  float32 (17, 2), (17, 3) H36M-17; joint_visible bool (17,)
    part_mask           int64 (S, S)       0 background, k + 1 for body part k (``PART_NAMES``)
    pose                float32 (15, 3)    angle-axis per ``POSE_JOINTS``
    global_orient       float32 (3,)       angle-axis, camera frame
    transl              float32 (3,)       pelvis, camera frame, metres
    betas               float32 (8,)       shape factors (``nets/body_model.py``)
    camera, index, video, frame

``PeopleFrames`` (multi-person videos: the dual network), one item per frame, people padded to
``max_people`` (the domain's largest crowd) so default collation works:
    image               float32 (3, H, W)
    joints2d            float32 (P, 17, 2); joints3d float32 (P, 17, 3) camera-frame metres
    joint_visible       bool (P, 17); joint_valid bool (P, 17) (every joint of a real person)
    boxes               float32 (P, 4)     x0, y0, x1, y1 of the projected body (amodal), pixels
    person_id           int64 (P,)         identity within the video, the same in every frame
    person_valid        bool (P,)          False for padding
    person_mask         int64 (H, W)       0 background, i + 1 for person i
    part_mask           int64 (H, W)       0 background, k + 1 for body part k
    camera, index, video, frame

All three list their videos (``videos()``), so the per-video callbacks and the DDP video sampler
work on them unchanged.
"""
from __future__ import annotations

from typing import Any, Optional

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.synthetic.people_render import PeopleRenderer
from datamodules.synthetic.people_scenes import (PeopleDomain, PeopleScene, as_people_domain, street_domain,
                                                 studio_domain, validate_people_domain)
from datamodules.videos import VideoSpan
from framework.checks import at_least, check
from geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from nets.body_model import ProceduralBody


def _image(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))


class PeopleVideos:
    """The videos of one domain: scene and renderer of video v, cached (the latest one)."""

    def __init__(self, domain: Any, num_videos: int, seed: int, key: str) -> None:
        self.domain: PeopleDomain = as_people_domain(domain, key)
        validate_people_domain(self.domain, key)
        check({"num_videos": num_videos, "seed": seed}, key, num_videos=at_least(0), seed=at_least(0))
        self.num_videos, self.seed = int(num_videos), int(seed)
        self.body = ProceduralBody()
        self.joint_parts = self.body.joint_parts()
        self._cache: Optional[tuple[int, PeopleRenderer]] = None

    def renderer(self, video: int) -> PeopleRenderer:
        if not 0 <= video < self.num_videos:
            raise IndexError(f"video {video} out of range for {self.num_videos} videos")
        if self._cache is None or self._cache[0] != video:
            self._cache = (video, PeopleRenderer(PeopleScene(self.domain, self.seed, video, self.body), self.joint_parts))
        return self._cache[1]

    def image(self, renderer: PeopleRenderer, frame: int) -> np.ndarray:
        """The frame as the domain's sensor records it: motion blur along the flow, then noise."""
        image = renderer.image(frame)
        d = self.domain
        if d.motion_blur > 0:
            image = motion_blur(image, renderer.flow(frame)[0], d.motion_blur)
        if d.noise > 0:
            rng = np.random.default_rng([self.seed, renderer.scene.video, frame, 0x5E])
            image = np.clip(image + rng.normal(scale=d.noise, size=image.shape), 0, 255).astype(np.float32)
        return image

    def spans(self, per_video: int, name: str) -> dict[int, VideoSpan]:
        return {v: VideoSpan(f"{name}_{v:04d}", list(range(v * per_video, (v + 1) * per_video)))
                for v in range(self.num_videos)}


def motion_blur(image: np.ndarray, flow: np.ndarray, exposure: float, samples: int = 5) -> np.ndarray:
    """Average of the image sampled along each pixel's motion over ``exposure`` of a frame interval."""
    h, w = image.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros_like(image)
    for s in np.linspace(-exposure / 2, exposure / 2, samples):
        out += cv2.remap(image, (xs - s * flow[..., 0]).astype(np.float32), (ys - s * flow[..., 1]).astype(np.float32),
                         cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return out / samples


def _single_person(domain: Any, key: str) -> PeopleDomain:
    d = as_people_domain(domain if domain is not None else studio_domain(), key)
    d.people = [1, 1]
    return d


class PeopleFlowPairs(Dataset):
    """Frame pairs of single-person videos (module doc); a multi-person domain is filmed one person at a time."""

    def __init__(self, domain: Any = None, num_videos: int = 8, seed: int = 0, key: str = "synthetic") -> None:
        self.videos_ = PeopleVideos(_single_person(domain, key), num_videos, seed, key)
        self.domain = self.videos_.domain
        self.pairs_per_video = self.domain.frames - 1
        check({"frames": self.domain.frames}, key, frames=at_least(2))

    def __len__(self) -> int:
        return self.videos_.num_videos * self.pairs_per_video

    def videos(self) -> dict[int, VideoSpan]:
        return self.videos_.spans(self.pairs_per_video, self.domain.name)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = _checked(index, len(self))
        video, t = divmod(index, self.pairs_per_video)
        r = self.videos_.renderer(video)
        flow, occluded = r.flow(t)
        now, nxt = r.people(t), r.people(t + 1)
        stack = lambda key, dtype=torch.float32: torch.from_numpy(np.stack([now[key][0], nxt[key][0]])).to(dtype)  # noqa: E731
        return {"image1": _image(self.videos_.image(r, t)), "image2": _image(self.videos_.image(r, t + 1)),
                "flow": torch.from_numpy(flow.transpose(2, 0, 1).copy()),
                "valid": torch.from_numpy((~occluded).astype(np.float32)), "occlusion": torch.from_numpy(occluded),
                "person_mask": torch.from_numpy(r.geometry(t).person == 0),
                "joints2d": stack("joints2d"), "joints3d": stack("joints3d"),
                "joint_visible": stack("joint_visible", torch.bool),
                "camera": torch.from_numpy(r.intrinsics.astype(np.float32)),
                **_ids(index, video, t)}


class PeopleFrames(Dataset):
    """Frames of multi-person videos (module doc)."""

    def __init__(self, domain: Any = None, num_videos: int = 8, seed: int = 0, key: str = "synthetic") -> None:
        self.videos_ = PeopleVideos(domain if domain is not None else street_domain(), num_videos, seed, key)
        self.domain = self.videos_.domain
        self.max_people = int(self.domain.people[1])

    def __len__(self) -> int:
        return self.videos_.num_videos * self.domain.frames

    def videos(self) -> dict[int, VideoSpan]:
        return self.videos_.spans(self.domain.frames, self.domain.name)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = _checked(index, len(self))
        video, t = divmod(index, self.domain.frames)
        r = self.videos_.renderer(video)
        people, g = r.people(t), r.geometry(t)
        n, m = len(r.scene.people), self.max_people
        pad = lambda a, fill=0: np.concatenate([a, np.full((m - n, *a.shape[1:]), fill, a.dtype)])  # noqa: E731
        return {"image": _image(self.videos_.image(r, t)),
                "joints2d": torch.from_numpy(pad(people["joints2d"]).astype(np.float32)),
                "joints3d": torch.from_numpy(pad(people["joints3d"]).astype(np.float32)),
                "joint_visible": torch.from_numpy(pad(people["joint_visible"], False)),
                "joint_valid": torch.from_numpy(pad(np.ones_like(people["joint_visible"]), False)),
                "boxes": torch.from_numpy(pad(people["boxes"]).astype(np.float32)),
                "person_id": torch.from_numpy(pad(np.arange(n, dtype=np.int64), -1)),
                "person_valid": torch.from_numpy(pad(np.ones(n, bool), False)),
                "person_mask": torch.from_numpy(g.person + 1), "part_mask": torch.from_numpy(g.part + 1),
                "camera": torch.from_numpy(r.intrinsics.astype(np.float32)),
                **_ids(index, video, t)}


class PeopleCrops(Dataset):
    """Square crops of one person (module doc): ``crops_per_video`` frames spread over each video,
    each filmed by a virtual camera whose image is the crop (same centre and rotation, focal length
    and principal point moved so the person's box, enlarged by ``margin``, fills ``size`` pixels)."""

    def __init__(self, domain: Any = None, num_videos: int = 64, seed: int = 0, size: int = 128,
                 crops_per_video: int = 4, margin: float = 1.2, key: str = "synthetic") -> None:
        check({"size": size, "crops_per_video": crops_per_video, "margin": margin}, key, size=at_least(16),
              crops_per_video=at_least(1), margin=at_least(1.0))
        self.videos_ = PeopleVideos(_single_person(domain, key), num_videos, seed, key)
        self.domain = self.videos_.domain
        self.size, self.per_video, self.margin = int(size), int(crops_per_video), float(margin)

    def __len__(self) -> int:
        return self.videos_.num_videos * self.per_video

    def videos(self) -> dict[int, VideoSpan]:
        return self.videos_.spans(self.per_video, self.domain.name)

    def frame_of(self, k: int) -> int:
        return int(round(k * (self.domain.frames - 1) / max(self.per_video - 1, 1)))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        index = _checked(index, len(self))
        video, k = divmod(index, self.per_video)
        full = self.videos_.renderer(video)
        t = self.frame_of(k)
        x0, y0, x1, y1 = full.people(t)["boxes"][0]
        side = max(x1 - x0, y1 - y0, 8.0) * self.margin
        scale = self.size / side
        fx, fy, cx, cy = full.scene.camera.intrinsics
        left, top = (x0 + x1) / 2 - side / 2, (y0 + y1) / 2 - side / 2
        intrinsics = np.array([fx * scale, fy * scale, (cx - left) * scale, (cy - top) * scale])
        r = PeopleRenderer(full.scene, full.joint_parts, intrinsics, (self.size, self.size))
        people, g = r.people(t), r.geometry(t)
        st, cam = full.scene.states, full.scene.camera
        rot = torch.from_numpy(cam.rotations[t]) @ axis_angle_to_matrix(torch.from_numpy(st.global_orient[0, t]))
        return {"image": _image(self.videos_.image(r, t)),
                "keypoints": torch.from_numpy(people["keypoints2d"][0].astype(np.float32)),
                "keypoint_visible": torch.from_numpy(people["keypoint_visible"][0]),
                "joints2d": torch.from_numpy(people["joints2d"][0].astype(np.float32)),
                "joints3d": torch.from_numpy(people["joints3d"][0].astype(np.float32)),
                "joint_visible": torch.from_numpy(people["joint_visible"][0]),
                "part_mask": torch.from_numpy(g.part + 1),
                "pose": torch.from_numpy(st.pose[0, t].astype(np.float32)),
                "global_orient": matrix_to_axis_angle(rot).float(),
                "transl": torch.from_numpy(cam.to_camera(st.transl[0, t], t).astype(np.float32)),
                "betas": torch.from_numpy(st.betas[0].astype(np.float32)),
                "camera": torch.from_numpy(intrinsics.astype(np.float32)),
                **_ids(index, video, t)}


def _checked(index: int, length: int) -> int:
    index = int(index)
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} items")
    return index


def _ids(index: int, video: int, frame: int) -> dict[str, torch.Tensor]:
    return {"index": torch.tensor(index, dtype=torch.int64), "video": torch.tensor(video, dtype=torch.int64),
            "frame": torch.tensor(frame, dtype=torch.int64)}
