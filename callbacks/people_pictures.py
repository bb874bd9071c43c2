"""Pictures of people: each person's skeleton in its own colour over the frame, the body-part image
and the flow colour map side by side; predicted skeletons, where a step gives them, drawn thin in
white over the true ones. Works on the batches of every people dataset (one or several people,
frame pairs, crops).

    python -m callbacks.people_pictures docs/synthetic_people.png   # a studio and a street frame
"""
from __future__ import annotations

import sys
from typing import Any, Optional

import cv2
import numpy as np
import pytorch_lightning as pl
import torch

from callbacks.flow_pictures import fit_height, put_label
from callbacks.sample_pictures import SamplePictures, to_numpy
from callbacks.skeleton_pictures import draw_skeleton_2d
from framework.errors import UserError
from geometry.flow import flow_to_color
from geometry.skeletons import H36M17

# Identity colours (RGB), distinct and readable over photographs; person i takes i mod len.
IDENTITY_COLOURS = ((230, 60, 50), (40, 120, 230), (60, 180, 75), (245, 160, 30), (150, 70, 200),
                    (0, 190, 190), (240, 80, 170), (160, 160, 40))
PREDICTION_COLOUR = (255, 255, 255)


def part_colours(count: int) -> np.ndarray:
    """(count + 1, 3) uint8: black for background (label 0), then evenly spaced hues."""
    hues = np.linspace(0, 179, count, endpoint=False).astype(np.uint8)
    hsv = np.stack([hues, np.full(count, 200, np.uint8), np.full(count, 230, np.uint8)], -1)[None]
    return np.concatenate([np.zeros((1, 3), np.uint8), cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0]])


def draw_people(frame: np.ndarray, joints2d: np.ndarray, visible: Optional[np.ndarray] = None,
                boxes: Optional[np.ndarray] = None, colour_of: Optional[list[tuple[int, int, int]]] = None,
                thickness: int = 2) -> np.ndarray:
    """Skeletons of (P, 17, 2) pixel joints on an RGB uint8 frame, in place; hidden joints
    (``visible`` False) as hollow circles; boxes (P, 4) as x0, y0, x1, y1."""
    joints2d = np.asarray(joints2d, dtype=np.float64)
    if joints2d.ndim != 3 or joints2d.shape[1:] != (H36M17.num_joints, 2):
        raise UserError(f"draw_people: joints2d must be (P, {H36M17.num_joints}, 2), got {joints2d.shape}")
    for p, pose in enumerate(joints2d):
        colour = (colour_of or IDENTITY_COLOURS)[p % len(colour_of or IDENTITY_COLOURS)]
        draw_skeleton_2d(frame, pose, H36M17, colour, thickness)
        if visible is not None:
            for j in np.flatnonzero(~np.asarray(visible[p], bool)):
                if np.isfinite(pose[j]).all():
                    centre = tuple(int(round(c)) for c in pose[j])
                    cv2.circle(frame, centre, thickness + 3, (0, 0, 0), 2, cv2.LINE_AA)
                    cv2.circle(frame, centre, thickness + 2, (255, 255, 255), -1, cv2.LINE_AA)
        if boxes is not None and np.isfinite(boxes[p]).all():
            x0, y0, x1, y1 = (int(round(v)) for v in boxes[p])
            cv2.rectangle(frame, (x0, y0), (x1, y1), colour, 1, cv2.LINE_AA)
    return frame


def render_people_panel(image: np.ndarray, joints2d: np.ndarray, visible: Optional[np.ndarray] = None,
                        boxes: Optional[np.ndarray] = None, part_mask: Optional[np.ndarray] = None,
                        flow: Optional[np.ndarray] = None, predicted: Optional[np.ndarray] = None,
                        size: int = 256) -> np.ndarray:
    """(3, H, W) 0..255 frame with (P, 17, 2) true joints -> RGB uint8 panels ``size`` pixels high:
    the frame with skeletons, then the part image and the flow colour map where given."""
    frame = np.ascontiguousarray(np.clip(image.transpose(1, 2, 0), 0, 255).astype(np.uint8))
    scale = size / frame.shape[0]
    frame = cv2.resize(frame, (max(1, round(frame.shape[1] * scale)), size), interpolation=cv2.INTER_LINEAR)
    draw_people(frame, joints2d * scale, visible, None if boxes is None else boxes * scale)
    if predicted is not None:
        draw_people(frame, predicted * scale, colour_of=[PREDICTION_COLOUR], thickness=1)
    panels = [put_label(frame, "frame")]
    if part_mask is not None:
        labels = np.asarray(part_mask, dtype=np.int64)
        colours = part_colours(max(int(labels.max()), 1))
        panels.append(put_label(fit_height(colours[np.clip(labels, 0, None)], size), "parts"))
    if flow is not None:
        panels.append(put_label(fit_height(flow_to_color(flow), size), "flow"))
    return np.ascontiguousarray(np.concatenate(panels, axis=1))


def people_sample(batch: dict, i: int, outputs: Any = None) -> dict[str, Optional[np.ndarray]]:
    """Row ``i`` of a people batch as the arrays :func:`render_people_panel` draws (numpy)."""
    image = batch["image"] if "image" in batch else batch["image1"]
    joints = to_numpy(batch["joints2d"][i])
    visible = batch.get("joint_visible")
    visible = None if visible is None else to_numpy(visible[i]) > 0.5
    if "image1" in batch and joints.ndim == 3 and "person_valid" not in batch:  # a frame pair: draw frame t
        joints, visible = joints[:1], None if visible is None else visible[:1]
    if joints.ndim == 2:  # one person (crops)
        joints, visible = joints[None], None if visible is None else visible[None]
    keep = to_numpy(batch["person_valid"][i]) > 0.5 if "person_valid" in batch else np.ones(len(joints), bool)
    pick = lambda key: to_numpy(batch[key][i]) if torch.is_tensor(batch.get(key)) else None  # noqa: E731
    boxes = pick("boxes")
    predicted = outputs.get("joints2d") if isinstance(outputs, dict) else None
    predicted = None if not torch.is_tensor(predicted) else to_numpy(predicted[i]).reshape(-1, H36M17.num_joints, 2)
    return {"image": to_numpy(image[i]), "joints2d": joints[keep], "visible": None if visible is None else visible[keep],
            "boxes": None if boxes is None else boxes[keep], "part_mask": pick("part_mask"), "flow": pick("flow"),
            "predicted": predicted}


class PeoplePictures(SamplePictures):
    """The first samples of validation and test, drawn by :func:`render_people_panel`."""

    def extract(self, outputs: Any, batch: Any, take: int) -> Optional[list[Any]]:
        if not isinstance(batch, dict) or "joints2d" not in batch or not ({"image", "image1"} & set(batch)):
            return None
        take = min(take, batch["joints2d"].shape[0])
        return [people_sample(batch, i, outputs) for i in range(take)]

    def render(self, pl_module: pl.LightningModule, sample: Any) -> np.ndarray:
        return render_people_panel(sample["image"], sample["joints2d"], sample["visible"], sample["boxes"],
                                   sample["part_mask"], sample["flow"], sample["predicted"], size=self.size)


def preview(path: str, seed: int = 0) -> None:
    """A studio (source) frame pair and a street (target) frame, with their ground truth, to ``path``."""
    from datamodules.synthetic.people_datasets import PeopleFlowPairs, PeopleFrames
    from framework.images import png_bytes, side_by_side
    from framework.io import atomic_write

    studio = PeopleFlowPairs("studio", num_videos=1, seed=seed).__getitem__(4)
    crowd = PeopleFrames("street", num_videos=8, seed=seed)
    video = next((v for v in range(8) if len(crowd.videos_.renderer(v).scene.people) >= 3), 0)  # a crowd
    street = crowd[video * crowd.domain.frames + 8]
    batch = lambda item: {k: v[None] for k, v in item.items()}  # noqa: E731
    panels = [render_people_panel(**people_sample(batch(item), 0)) for item in (studio, street)]
    picture = side_by_side(panels, ["source: studio (frame, exact flow)", "target: street (frame, body parts)"])
    atomic_write(path, lambda f: f.write(png_bytes(picture)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m callbacks.people_pictures <picture.png>")
    preview(sys.argv[1])
    print(f"wrote {sys.argv[1]}")
