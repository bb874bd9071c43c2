"""Part silhouettes of a posed mesh and their IoU with part masks: the score of a fitted body
where there is no 3D truth."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import default_collate

from datamodules.synthetic.people_datasets import PeopleCrops
from framework.errors import UserError
from geometry.raster import face_labels, part_silhouettes
from metrics.people import PartIoU, part_iou
from nets.body_model import NUM_PARTS, ProceduralBody


def test_part_iou_on_masks_made_by_hand():
    truth = torch.zeros(3, 4, 4, dtype=torch.long)
    truth[:, :2, :2] = 1  # part 0: four pixels
    truth[:, 2:, 2:] = 2  # part 1: four pixels
    mine = truth.clone()
    mine[1, :2, :2] = 0
    mine[1, :2, :1] = 1  # part 0 on two of its four pixels: IoU 1/2, part 1 exact
    mine[2] = 0
    mine[2, 0, 3] = 3  # part 2 where the truth has none; parts 0 and 1 missed
    values = part_iou(mine, truth, num_parts=3)
    assert values.tolist() == pytest.approx([1.0, 0.75, 0.0])
    assert math.isnan(float(part_iou(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), 3)[0]))
    metric = PartIoU(3)
    metric.update(mine, truth, torch.arange(3))
    metric.update(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4), torch.tensor([3]))  # nothing shown: not counted
    assert float(metric.compute()) == pytest.approx(100 * 1.75 / 3)
    with pytest.raises(UserError, match=r"part IoU: .* \(2, 4, 4\) and \(3, 4, 4\)"):
        metric.update(mine[:2], truth, torch.arange(2))


def test_the_true_body_covers_the_rendered_part_masks():
    """The mesh of the body that made a crop, drawn with the crop's camera, lies on the ray-cast
    part masks; half a pixel off already costs, two pixels cost most of the score."""
    data = PeopleCrops({"preset": "street", "width": 128, "height": 128, "frames": 4}, 3, 0, 96, 2)
    batch = default_collate([data[i] for i in range(len(data))])
    body = ProceduralBody()
    with torch.no_grad():
        vertices = body(batch["pose"], batch["betas"], batch["global_orient"], batch["transl"]).vertices.float()
    labels = face_labels(body.faces, body.vertex_parts)

    def score(dx: float) -> torch.Tensor:
        shifted = batch["camera"] + torch.tensor([0.0, 0.0, dx, 0.0])
        return part_iou(part_silhouettes(vertices, body.faces, labels, shifted, (96, 96)), batch["part_mask"], NUM_PARTS)

    exact, half, two = score(0.0), score(0.5), score(2.0)
    assert exact.min() > 0.9
    assert torch.all(half < exact - 0.03) and torch.all(two < 0.6)


def test_faces_take_the_part_of_most_of_their_corners():
    parts = torch.tensor([4, 4, 7, 1, 2, 3])
    faces = torch.tensor([[0, 1, 2], [2, 0, 1], [3, 4, 5]])
    assert face_labels(faces, parts).tolist() == [4, 4, 1]


def test_triangles_behind_the_camera_are_not_drawn():
    vertices = torch.tensor([[[-1.0, -1.0, 2.0], [1.0, -1.0, 2.0], [0.0, 1.0, 2.0]]])
    faces, labels = torch.tensor([[0, 1, 2]]), torch.tensor([5])
    camera = torch.tensor([[10.0, 10.0, 8.0, 8.0]])
    seen = part_silhouettes(vertices, faces, labels, camera, (16, 16))
    assert set(seen.unique().tolist()) == {0, 6} and seen[0, 8, 8] == 6
    behind = part_silhouettes(vertices * torch.tensor([1.0, 1.0, -1.0]), faces, labels, camera, (16, 16))
    assert behind.sum() == 0
