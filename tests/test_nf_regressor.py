"""The NF-prior paper's multistage regressor: its stages and sizes, and the keypoint helpers."""
from __future__ import annotations

import pytest
import torch

from framework.errors import UserError
from nets.nf_regressor import MultistageRegressor, RegressorSize, gaussian_heatmaps, part_targets, heatmap_keypoints

SMALL = RegressorSize(width=16, kernel=3, convs=2, stages=3, backbone=16)


def test_stages_give_heatmaps_parts_and_a_pose_per_stage():
    torch.manual_seed(0)
    net = MultistageRegressor(keypoints=17, parts=16, pose_dim=45, shape_dim=8, size=SMALL)
    out = net(torch.rand(2, 3, 64, 48) * 255)
    assert out["heatmaps"].shape == (2, 17, 16, 12) and out["part_logits"].shape == (2, 17, 16, 12)
    assert len(out["poses"]) == 3 and out["poses"][-1].shape == (2, 45) and out["shapes"][-1].shape == (2, 8)
    assert all(torch.equal(p, torch.zeros_like(p)) for p in out["poses"])  # the heads start at the zero pose
    loss = sum(p.sum() for p in out["poses"]) + out["heatmaps"].sum() + out["part_logits"].sum()
    loss.backward()
    assert net.stages[-1].pose.weight.grad.abs().sum() > 0 and net.backbone.net[0].weight.grad.abs().sum() > 0


def test_the_papers_size_has_its_parameter_count():
    net = MultistageRegressor(keypoints=17, parts=16, pose_dim=69, shape_dim=10)
    stages = sum(p.numel() for p in net.stages.parameters())
    assert 24e6 < stages < 28e6  # six stages of five 7x7x128x128 convolutions, "about 24M"


def test_heatmap_keypoints_finds_a_sharp_peak_and_gaussian_targets_sit_on_the_keypoints():
    keypoints = torch.tensor([[[9.5, 21.5], [30.0, 5.0]]])  # the first at the centre of heatmap cell (5, 2)
    targets = gaussian_heatmaps(keypoints, torch.tensor([[1.0, 0.0]]), (16, 12), sigma=1.0)
    assert targets[0, 1].abs().sum() == 0  # an unlabelled keypoint has no target
    peak = targets[0, 0].flatten().argmax()
    assert (int(peak // 12), int(peak % 12)) == (5, 2)  # cell centres at 4 i + 1.5
    found, confidence = heatmap_keypoints(targets[:, :1])  # the training targets' own scale: peaks of 1
    assert torch.allclose(found[0, 0], keypoints[0, 0], atol=1e-3) and confidence[0, 0] > 0.99
    off_grid = torch.tensor([[[17.3, 30.9], [0.4, 62.0]]])  # between cell centres; at the edge
    found, confidence = heatmap_keypoints(gaussian_heatmaps(off_grid, torch.ones(1, 2), (16, 12)))
    assert torch.allclose(found[0, 0], off_grid[0, 0], atol=1e-3)
    assert (found[0, 1] - off_grid[0, 1]).abs().max() < 2.0  # the edge cell: no refinement outwards
    assert confidence.min() > 0.8
    labels = torch.zeros(1, 64, 48, dtype=torch.long)
    labels[0, 20:40, 8:16] = 3
    small = part_targets(labels, (16, 12))
    assert small.shape == (1, 16, 12) and set(small.unique().tolist()) == {0, 3}


def test_bad_images_are_one_error():
    net = MultistageRegressor(keypoints=17, parts=16, pose_dim=45, shape_dim=8, size=SMALL)
    with pytest.raises(UserError, match=r"multiples of 4, got \(1, 3, 30, 32\)"):
        net(torch.zeros(1, 3, 30, 32))
    with pytest.raises(UserError, match="stages, convs and width"):
        MultistageRegressor(17, 16, 45, 8, RegressorSize(stages=0))
