"""The directed graph convolutions that complete a 2D pose: what each joint hears, and that a
trained network fills in an occluded joint better than leaving it where it was."""
from __future__ import annotations

import pytest
import torch

from framework.errors import UserError
from geometry.skeletons import H36M17
from nets.pose_graph import DirectedGraphConv, PoseCompletion


def test_a_layer_mixes_a_joint_with_its_parent_and_children_only():
    torch.manual_seed(0)
    layer = DirectedGraphConv(H36M17, 4, 4)
    h = torch.randn(1, 17, 4)
    base = layer(h)
    moved = h.clone()
    moved[0, 12] += 1.0  # the left elbow: parent shoulder 11, child wrist 13
    changed = ((layer(moved) - base).abs().amax(-1)[0] > 1e-6).nonzero().flatten().tolist()
    assert changed == [11, 12, 13]


def arm_poses(n: int, g: torch.Generator) -> torch.Tensor:
    """H36M-17 poses in a box frame: a base pose moved about, each wrist a fixed step from its elbow."""
    base = torch.randn(17, 2, generator=torch.Generator().manual_seed(5)) * 0.2
    poses = base + 0.1 * torch.randn(n, 17, 2, generator=g)
    for elbow, wrist in ((12, 13), (15, 16)):
        poses[:, wrist] = poses[:, elbow] + torch.tensor([0.15, 0.05])
    return poses


def test_training_fills_in_an_occluded_wrist():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    net = PoseCompletion(H36M17, width=32, layers=3)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)

    def occluded(n):
        truth = arm_poses(n, g)
        seen = truth.clone()
        seen[:, 13] = 0.0  # the left wrist is missed: where the detector put nothing
        confidence = torch.ones(n, 17)
        confidence[:, 13] = 0.0
        return truth, seen, confidence

    for _ in range(500):
        truth, seen, confidence = occluded(64)
        optimiser.zero_grad()
        ((net(seen, confidence) - truth) ** 2).sum(-1).mean().backward()
        optimiser.step()
    net.eval()
    truth, seen, confidence = occluded(256)
    with torch.no_grad():
        completed = net(seen, confidence)
    error = (completed[:, 13] - truth[:, 13]).norm(dim=-1).mean()
    average = (truth[:, 13].mean(0) - truth[:, 13]).norm(dim=-1).mean()  # the best guess that ignores the elbow
    assert error < 0.3 * average
    with pytest.raises(UserError, match=r"joints \(B, 17, 2\) and confidence \(B, 17\)"):
        net(seen, confidence[:, :16])
