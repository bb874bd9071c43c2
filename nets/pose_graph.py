"""The dual network's directed graph convolutions over the skeleton (Cheng et al.): completing a
top-down 2D pose whose occluded or missed joints have low confidence, from the joints around them.

Each layer mixes a joint's features with its parent's and its children's through separate weights
(a directed graph: what flows down the kinematic tree differs from what flows up):
h'_j = W_self h_j + W_down h_parent(j) + W_up mean_(c child of j) h_c, then batch norm and ReLU,
with a residual connection between layers. The input per joint is (x, y, confidence) normalised by
the person's box; the output is the completed (x, y) in the same frame. After L layers a joint has
seen the joints within L bones of it.
"""
from __future__ import annotations

import torch
from torch import nn

from framework.errors import UserError
from geometry.skeletons import Skeleton


class DirectedGraphConv(nn.Module):
    def __init__(self, skeleton: Skeleton, inputs: int, outputs: int) -> None:
        super().__init__()
        j = skeleton.num_joints
        down, up = torch.zeros(j, j), torch.zeros(j, j)
        for child, parent in skeleton.bones:
            down[child, parent] = 1.0  # a child hears its parent
            up[parent, child] = 1.0  # a parent hears its children, averaged
        up = up / up.sum(1, keepdim=True).clamp_min(1)
        self.register_buffer("down", down, persistent=False)
        self.register_buffer("up", up, persistent=False)
        self.self_weight = nn.Linear(inputs, outputs)
        self.down_weight = nn.Linear(inputs, outputs, bias=False)
        self.up_weight = nn.Linear(inputs, outputs, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, J, inputs) -> (B, J, outputs)."""
        return self.self_weight(h) + self.down_weight(self.down @ h) + self.up_weight(self.up @ h)


class PoseCompletion(nn.Module):
    def __init__(self, skeleton: Skeleton, width: int = 128, layers: int = 4) -> None:
        super().__init__()
        self.skeleton = skeleton
        self.first = DirectedGraphConv(skeleton, 3, width)
        self.hidden = nn.ModuleList(DirectedGraphConv(skeleton, width, width) for _ in range(layers - 2))
        self.norms = nn.ModuleList(nn.BatchNorm1d(width) for _ in range(layers - 1))
        self.last = DirectedGraphConv(skeleton, width, 2)

    def _act(self, k: int, h: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norms[k](h.transpose(1, 2)).transpose(1, 2))

    def forward(self, joints: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        """(B, J, 2) box-normalised joints and (B, J) confidences -> (B, J, 2) completed joints."""
        j = self.skeleton.num_joints
        if joints.dim() != 3 or joints.shape[1:] != (j, 2) or confidence.shape != joints.shape[:2]:
            raise UserError(f"pose completion: joints (B, {j}, 2) and confidence (B, {j}), got "
                            f"{tuple(joints.shape)} and {tuple(confidence.shape)}")
        h = self._act(0, self.first(torch.cat([joints * confidence[..., None], confidence[..., None]], -1)))
        for k, layer in enumerate(self.hidden, 1):
            h = h + self._act(k, layer(h))
        return joints + self.last(h)
