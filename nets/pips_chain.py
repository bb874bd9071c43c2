"""Tracking through videos longer than one PIPs window, by chaining windows as the authors'
chain_demo.py / test_on_badja.py do.

Each point starts at its query frame. A window of S frames runs from the point's current anchor
frame; the point is then re-anchored at the latest frame of that window whose visibility
(sigmoid) exceeds 0.9, the threshold dropping by 0.02 until some frame passes, and the next window
starts there from the position predicted for that frame. Re-anchoring on a confidently visible
frame keeps an occluder from being carried into the next window. The template feature of the
point's first window is handed to every later one, so the appearance being followed does not
drift. Frames past the end of the video are the last frame repeated.

Candidate frames: the authors' loop resets the threshold as soon as its index reaches 1, before
testing it, so in effect it picks among frames 2..S-1; ``earliest=2`` reproduces that and
``earliest=1`` gives the intended 1..S-1. Where windows overlap, the later window's output wins.
Points may have different query frames (TAP-Vid 'strided'): points sharing an anchor frame share
a window. Before its query frame a point reports its query position and visibility 0.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch

from framework.errors import UserError

WindowFn = Callable[[torch.Tensor, torch.Tensor, Optional[torch.Tensor]],
                    Tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]]


def next_anchor_step(vis: torch.Tensor, threshold: float = 0.9, step: float = 0.02, earliest: int = 2) -> torch.Tensor:
    """vis (M, S) probabilities -> (M,) window index in earliest..S-1 to re-anchor at: the latest
    frame above the threshold, lowering the threshold by ``step`` until one passes."""
    m, s = vis.shape
    if not 1 <= earliest <= s - 1:
        raise UserError(f"earliest re-anchor frame must be in 1..{s - 1}, got {earliest}")
    cand = torch.nan_to_num(vis[:, earliest:].float(), nan=0.0).clamp_min(0.0)
    chosen = torch.full((m,), -1, dtype=torch.long, device=vis.device)
    thr = threshold
    while bool((chosen < 0).any()):
        passes = cand > thr
        latest = cand.shape[1] - 1 - torch.argmax(passes.flip(1).to(torch.uint8), dim=1)
        newly = passes.any(dim=1) & (chosen < 0)
        chosen = torch.where(newly, latest + earliest, chosen)
        thr -= step  # repeated subtraction, as the authors' loop, so ties break identically
    return chosen


def _check_inputs(rgbs: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    if rgbs.dim() != 5 or rgbs.shape[2] != 3:
        raise UserError(f"track_long: rgbs must be (B, T, 3, H, W), got {tuple(rgbs.shape)}")
    b, t = rgbs.shape[:2]
    if queries.dim() != 3 or queries.shape[0] != b or queries.shape[2] != 3:
        raise UserError(f"track_long: queries must be (B={b}, N, 3) as (t, x, y), got {tuple(queries.shape)}")
    qt = queries[..., 0]
    frames = qt.round().long()
    if not torch.equal(frames.to(qt.dtype), qt) or (frames < 0).any() or (frames >= t).any():
        raise UserError(f"track_long: query frames must be whole numbers in 0..{t - 1}, got "
                        f"{qt.min().item()}..{qt.max().item()}")
    return frames


def track_long(window_fn: WindowFn, rgbs: torch.Tensor, queries: torch.Tensor, S: int = 8,
               threshold: float = 0.9, threshold_step: float = 0.02, earliest: int = 2
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Chain ``window_fn`` over ``rgbs`` (B, T, 3, H, W) for ``queries`` (B, N, 3) = (t, x, y).

    ``window_fn(rgbs_window (1, S, 3, H, W), xys (1, M, 2), feat_init (1, M, C) or None)`` returns
    (trajectory (1, S, M, 2), visibility logits (1, S, M), feat_init or None). Returns trajectories
    (B, T, N, 2) and visibility probabilities (B, T, N).
    """
    q_frames = _check_inputs(rgbs, queries)
    b_count, t_count = rgbs.shape[:2]
    n = queries.shape[1]
    device = rgbs.device
    q_xy = queries[..., 1:].float().to(device)
    trajs = q_xy[:, None].repeat(1, t_count, 1, 1)
    vis = torch.zeros(b_count, t_count, n, device=device)

    for b in range(b_count):
        anchor = q_frames[b].to(device).clone()
        pos = q_xy[b].clone()
        active = torch.ones(n, dtype=torch.bool, device=device)
        has_feat = torch.zeros(n, dtype=torch.bool, device=device)
        feats: Optional[torch.Tensor] = None
        while bool(active.any()):
            t0 = int(anchor[active].min())
            here = active & (anchor == t0)
            groups = [here & ~has_feat, here & has_feat]  # a window gets a feature for all or none
            frames = torch.arange(t0, t0 + S, device=device).clamp(max=t_count - 1)
            window = rgbs[b:b + 1, frames]
            real = min(S, t_count - t0)
            for group, carried in zip(groups, (False, True)):
                idx = group.nonzero().squeeze(1)
                m = idx.numel()
                if m == 0:
                    continue
                feat_in = feats[idx][None] if carried else None
                traj, logits, feat_out = window_fn(window, pos[idx][None], feat_in)
                if tuple(traj.shape) != (1, S, m, 2) or tuple(logits.shape) != (1, S, m):
                    raise UserError(f"track_long: window_fn returned trajectory {tuple(traj.shape)} and "
                                    f"visibility {tuple(logits.shape)}, expected {(1, S, m, 2)} and {(1, S, m)}")
                prob = torch.sigmoid(logits[0].float())
                trajs[b, t0:t0 + real, idx] = traj[0, :real].float()
                vis[b, t0:t0 + real, idx] = prob[:real]
                if not carried and feat_out is not None:
                    if feats is None:
                        feats = feat_out.new_zeros(n, feat_out.shape[-1])
                    feats[idx] = feat_out[0]
                    has_feat[idx] = True
                step = next_anchor_step(prob.T, threshold, threshold_step, earliest)
                pos[idx] = traj[0, step, torch.arange(m, device=device)].float()
                anchor[idx] = t0 + step
                active[idx] = anchor[idx] < t_count
    return trajs, vis


def pips_window_fn(net: torch.nn.Module, iters: int = 6, stride: Optional[int] = None) -> WindowFn:
    """Adapt a nets.pips.PIPs to ``track_long``: final-iteration coordinates, visibility logits and
    the template feature, without gradients, at ``stride`` (None: the net's own). Put the net in
    eval mode first (frame 0 is locked to the query only there)."""
    def run(rgbs: torch.Tensor, xys: torch.Tensor, feat_init: Optional[torch.Tensor]):
        with torch.no_grad():
            out = net(xys, rgbs, iters=iters, feat_init=feat_init, return_feat=True, return_scores=False,
                      stride=stride)
        return out.coords[-1], out.vis, out.feat_init
    return run
