"""Track geometry and the pseudo-label machinery of PIPs refinement: the cycle filter keeps exactly
the planted consistent tracks, densifying adds windows around kept seeds, groups re-balance."""
import numpy as np
import pytest
import torch

from callbacks.track_pseudo_labels import TrackLabelConfig, clip_labels, draw_group
from geometry.tracks import consistent_tracks
from framework.errors import UserError
from geometry.tracks import cycle_errors, grid_points, inside_frame, mean_speed, window_points

S, H, W = 8, 64, 96
VELOCITY = torch.tensor([1.5, -0.5])


def time_coded_clip() -> torch.Tensor:
    """(1, S, 3, H, W) whose frame t is filled with the value t, so a tracker can tell whether it
    was handed the clip forwards or reversed."""
    return torch.arange(S, dtype=torch.float32).view(1, S, 1, 1, 1).expand(1, S, 3, H, W).clone()


class PlantedTracker:
    """Moves every point at VELOCITY; on the reversed clip, points whose x starts beyond
    ``drift_from_x`` at frame 0 come back ``drift`` px off at frame ``drift_frame`` (of forward time)."""

    def __init__(self, drift_from_x: float, drift: float = 3.0, drift_frame: int = 3):
        self.drift_from_x, self.drift, self.drift_frame = drift_from_x, drift, drift_frame
        self.calls = 0

    def __call__(self, clip: torch.Tensor, xys: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        t = torch.arange(S, dtype=torch.float32).view(1, S, 1, 1)
        reversed_clip = bool(clip[0, 0, 0, 0, 0] > clip[0, -1, 0, 0, 0])
        step = -VELOCITY if reversed_clip else VELOCITY
        tracks = xys[:, None] + t * step
        if reversed_clip:  # tracks[:, s] is forward frame S-1-s; the start x is the query's minus the motion
            start_x = xys[..., 0] - (S - 1) * VELOCITY[0]
            bad = start_x > self.drift_from_x
            tracks[:, S - 1 - self.drift_frame, :, 1] += self.drift * bad
        return tracks


def test_cycle_errors_take_the_worst_frame():
    forward = torch.zeros(1, 4, 2, 2)
    backward = forward.clone()
    backward[0, 2, 1] = torch.tensor([3.0, 4.0])
    assert cycle_errors(forward, backward).tolist() == [[0.0, 5.0]]
    with pytest.raises(UserError, match="cycle_errors"):
        cycle_errors(forward, backward[:, :3])


def test_inside_frame_and_speed():
    tracks = torch.tensor([[[[1.0, 1.0], [0.0, 5.0]]], [[[4.0, 5.0], [W - 0.5, 5.0]]]]).transpose(0, 1)  # (1,2,2,2)
    assert inside_frame(tracks, H, W).tolist() == [[True, False]]
    assert inside_frame(tracks, H, W, margin=1.0).tolist() == [[True, False]]
    assert torch.allclose(mean_speed(tracks), torch.tensor([[5.0, W - 0.5]]))


def test_grid_and_windows_stay_inside_the_margin():
    grid = grid_points(H, W, 16, margin=2)
    assert grid[:, 0].min() >= 2 and grid[:, 0].max() <= W - 3 and grid[:, 1].min() >= 2 and grid[:, 1].max() <= H - 3
    assert len(grid) == 4 * 6
    win = window_points(torch.tensor([[10.0, 10.0], [W - 3.0, H - 3.0]]), window=8, spacing=4, height=H, width=W,
                        margin=2)
    assert len(win) == 8 + 3  # a 3x3 window minus its centre; by the corner only 2x2 of it is inside, minus the centre
    assert not ((win == torch.tensor([10.0, 10.0])).all(-1)).any()
    with pytest.raises(UserError, match="no room"):
        grid_points(3, 3, 1, margin=2)


def test_cycle_filter_keeps_exactly_the_planted_consistent_tracks():
    tracker = PlantedTracker(drift_from_x=50.0)
    queries = torch.tensor([[10.0, 30.0], [40.0, 30.0], [60.0, 30.0], [80.0, 30.0]])
    tracks, keep = consistent_tracks(tracker, time_coded_clip(), queries, tau=1.5, margin=0.0)
    assert keep.tolist() == [True, True, False, False]
    expected = queries[None] + torch.arange(S, dtype=torch.float32).view(S, 1, 1) * VELOCITY
    assert torch.allclose(tracks, expected)
    # a drift below tau passes
    _, keep = consistent_tracks(PlantedTracker(50.0, drift=1.0), time_coded_clip(), queries, tau=1.5, margin=0.0)
    assert keep.all()
    # a track that leaves the frame is dropped even when consistent
    _, keep = consistent_tracks(tracker, time_coded_clip(), torch.tensor([[W - 2.0, 30.0]]), tau=1.5, margin=0.0)
    assert keep.tolist() == [False]


def test_clip_labels_densify_around_kept_seeds_only():
    cfg = TrackLabelConfig(tau=1.5, grid_spacing=16, dense_window=8, dense_spacing=4, dense_seeds=2, margin=2)
    tracker = PlantedTracker(drift_from_x=48.0)
    kept, rejected, queried = clip_labels(tracker, time_coded_clip(), cfg)
    grid = grid_points(H, W, 16, 2)
    assert queried > len(grid) and tracker.calls == 4  # forward + backward for the grid and for the windows
    starts = kept[0]
    assert (starts[:, 0] - (S - 1) * VELOCITY[0] <= 48.0 + 1e-4).all()  # everything kept is consistent
    assert kept.shape[1] + rejected.shape[1] == queried
    assert kept.shape[1] > (grid[:, 0] - (S - 1) * VELOCITY[0] <= 48.0).sum()  # windows added labels


def test_groups_rebalance_towards_fast_tracks():
    rng = np.random.default_rng(0)
    t = torch.arange(S, dtype=torch.float32).view(S, 1, 1)
    slow = torch.zeros(1, 90, 2) + t * torch.tensor([0.1, 0.0])
    fast = torch.zeros(1, 10, 2) + t * torch.tensor([8.0, 0.0])
    tracks = torch.cat([slow, fast], 1)
    cfg = TrackLabelConfig(group_size=16, min_speed=5.0, fast_share=0.5)
    group = draw_group(tracks, cfg, rng)
    assert len(group) == 16 and len(set(group.tolist())) == 16
    assert (group >= 90).sum() == 8  # half of the group from the 10 fast tracks, not 10% of it
    small = draw_group(tracks[:, :5], TrackLabelConfig(group_size=16, fast_share=0.0), rng)
    assert len(small) == 16 and set(small.tolist()) == set(range(5))  # too few: all of them, then repeats
    with pytest.raises(UserError, match="without labels"):
        draw_group(tracks[:, :0], cfg, rng)


def test_random_selection_keeps_as_many_tracks_as_the_check_but_others():
    # a grid of seeds, windows around the kept ones: the control keeps as many tracks in all, from all
    cfg = TrackLabelConfig(tau=1.5, grid_spacing=16, dense_window=16, dense_spacing=4, dense_seeds=2, margin=0)
    checked, rejected, queried = clip_labels(PlantedTracker(50.0), time_coded_clip(), cfg)
    made = {tuple(p) for p in torch.cat([checked, rejected], 1)[0].tolist()}
    assert 0 < checked.shape[1] < queried
    random = TrackLabelConfig(**{**vars(cfg), "selection": "random"})
    picks = [clip_labels(PlantedTracker(50.0), time_coded_clip(), random, np.random.default_rng(seed))
             for seed in range(4)]
    for kept, others, count in picks:
        assert count == queried and kept.shape[1] == checked.shape[1]
        assert kept.shape[1] + others.shape[1] == checked.shape[1] + rejected.shape[1]
        assert {tuple(p) for p in kept[0].tolist()} <= made
        assert inside_frame(kept[None], H, W, 0.0).all()
    assert any(not torch.equal(kept, checked) for kept, _, _ in picks)
    with pytest.raises(UserError, match="random generator"):
        clip_labels(PlantedTracker(50.0), time_coded_clip(), random)
