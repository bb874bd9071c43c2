"""Pairing the top-down and bottom-up poses of a frame: COCO-style similarity weighted by the
branches' confidences, one-to-one Hungarian matching, the unmatched passed through."""
from __future__ import annotations

import math

import pytest
import torch

from framework.errors import UserError
from lightning_modules.dual_integration import H36M17_KAPPA, match_branches, pose_similarity


def poses(centres, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = torch.randn(17, 2, generator=g) * 20
    return torch.stack([shape + torch.tensor(c, dtype=torch.float32) for c in centres])


def test_the_same_person_is_most_similar_and_unsure_joints_count_for_little():
    td = poses([(100, 100), (300, 100)])
    bu = poses([(302, 101), (100, 99), (600, 300)])  # another order, and a third person only BU saw
    ones = torch.ones(2, 17), torch.ones(3, 17)
    sim = pose_similarity(td, ones[0], bu, ones[1], torch.tensor([40.0, 40.0]))
    assert sim.shape == (2, 3) and sim[0, 1] > 10 and sim[1, 0] > 10 and sim[:, 2].max() < 1e-3  # of at most 17
    # exactly one joint, 4 px off: OKS = exp(-16 / (2 s^2 kappa^2)) weighted by the smaller confidence
    one = torch.zeros(1, 17)
    one[0, 11] = 0.8
    bu_one = td[:1].clone()
    bu_one[0, 11, 0] += 4
    value = pose_similarity(td[:1], one, bu_one, torch.ones(1, 17), torch.tensor([40.0]))
    assert float(value) == pytest.approx(0.8 * math.exp(-16 / (2 * 40.0 ** 2 * H36M17_KAPPA[11] ** 2)), rel=1e-5)


def test_matching_pairs_one_to_one_and_passes_the_rest_through():
    td = poses([(100, 100), (300, 100), (500, 100)])
    bu = poses([(302, 101), (100, 99)])
    sim = pose_similarity(td, torch.ones(3, 17), bu, torch.ones(2, 17), torch.full((3,), 40.0))
    paired = match_branches(sim, min_similarity=1.0)
    assert sorted(paired.pairs) == [(0, 1), (1, 0)] and paired.top_down_only == [2] and paired.bottom_up_only == []
    # a pair too dissimilar to be one person is two
    far = pose_similarity(td[:1], torch.ones(1, 17), poses([(400, 400)]), torch.ones(1, 17), torch.tensor([40.0]))
    apart = match_branches(far, min_similarity=1.0)
    assert apart.pairs == [] and apart.top_down_only == [0] and apart.bottom_up_only == [0]
    empty = match_branches(torch.zeros(0, 2))
    assert empty.pairs == [] and empty.bottom_up_only == [0, 1]


def test_camera_frame_poses_pair_as_the_paper_measures_them():
    g = torch.Generator().manual_seed(2)
    shape = torch.randn(17, 3, generator=g) * 0.3
    td = torch.stack([shape + torch.tensor([-1.0, 0.0, 5.0]), shape + torch.tensor([1.0, 0.0, 6.0])])
    bu = td.flip(0) + 0.02  # the same two people, 2 cm off, in the other order
    sim = pose_similarity(td, torch.ones(2, 17), bu, torch.ones(2, 17), scale=1.0, sigma=0.1)
    assert sorted(match_branches(sim, min_similarity=1.0).pairs) == [(0, 1), (1, 0)]
    assert float(sim[0, 1]) == pytest.approx(17 * math.exp(-3 * 0.02 ** 2 / (2 * 0.1 ** 2)), rel=1e-5)


def test_bad_shapes_are_one_error():
    with pytest.raises(UserError, match="pose similarity: top-down poses"):
        pose_similarity(poses([(0, 0)]), torch.ones(1, 16), poses([(0, 0)]), torch.ones(1, 17), torch.ones(1))
