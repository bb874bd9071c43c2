"""PIPs v1 network, its strict checkpoint loader, long-video chaining and the training losses."""
import math

import pytest
import torch

from framework.errors import UserError
from lightning_modules.pips_losses import (pips_total_loss, score_map_loss, sequence_loss,
                                           visibility_loss)
from nets.pips import PIPs, PipsOutput
from nets.pips_chain import next_anchor_step, pips_window_fn, track_long
from nets.pips_checkpoints import load_pips_state_dict, save_authors_checkpoint

TINY = dict(S=8, stride=4, latent_dim=32, mixer_dim=64, mixer_depth=2)


def _tiny(seed: int = 0) -> PIPs:
    torch.manual_seed(seed)
    net = PIPs(**TINY)
    with torch.no_grad():  # random biases and norms too, so a dropped tensor would show
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net.eval()


def _inputs(b=1, n=6, size=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    rgbs = torch.rand(b, 8, 3, size, size, generator=g) * 255
    xys = torch.rand(b, n, 2, generator=g) * (size - 8) + 4
    return xys, rgbs


def test_parameter_count_and_authors_key_names():
    net = PIPs()
    assert sum(p.numel() for p in net.parameters()) == 28_677_713
    sd = net.state_dict()
    assert len(sd) == 200
    for key, shape in [("delta_block.to_delta.0.weight", (512, 519)),
                       ("delta_block.to_delta.1.0.fn.0.weight", (32, 8, 1)),
                       ("delta_block.to_delta.12.1.fn.3.bias", (512,)),
                       ("delta_block.to_delta.13.weight", (512,)),
                       ("delta_block.to_delta.15.weight", (1040, 512)),
                       ("fnet.layer4.0.downsample.0.weight", (128, 128, 1, 1)),
                       ("fnet.conv2.weight", (256, 416, 3, 3)),
                       ("norm.weight", (128,)), ("ffeat_updater.0.weight", (128, 128)),
                       ("vis_predictor.0.weight", (1, 128))]:
        assert tuple(sd[key].shape) == shape, key


def test_output_shapes_scores_and_feature():
    net = _tiny()
    xys, rgbs = _inputs(b=2, n=5)
    with torch.no_grad():
        out = net(xys, rgbs, iters=3, return_feat=True)
        train_out = net.train()(xys, rgbs, iters=2)
    assert isinstance(out, PipsOutput) and out.stride == 4
    assert len(out.coords) == 3 and all(c.shape == (2, 8, 5, 2) for c in out.coords)
    assert out.vis.shape == (2, 8, 5) and out.feat_init.shape == (2, 5, 32)
    assert out.scores is None  # eval mode: no score maps unless asked
    assert train_out.feat_init is None
    assert len(train_out.scores) == 2 and train_out.scores[0].shape == (2, 8, 5, 16, 16)
    assert all(torch.isfinite(c).all() for c in out.coords + train_out.coords)


def test_stride_changes_feature_resolution_not_weights():
    net = _tiny()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    xys, rgbs = _inputs()
    with torch.no_grad():
        assert net.encode(rgbs).shape == (1, 8, 32, 16, 16)
        out4 = net(xys, rgbs, iters=2, return_scores=True)
        net.stride = 8
        assert net.encode(rgbs).shape == (1, 8, 32, 8, 8)
        out8 = net(xys, rgbs, iters=2, return_scores=True)  # 1-pixel top pyramid level: still finite
    assert out8.stride == 8 and out8.scores[0].shape[-2:] == (8, 8) and out4.scores[0].shape[-2:] == (16, 16)
    assert torch.isfinite(out8.coords[-1]).all()
    assert not torch.allclose(out4.coords[-1], out8.coords[-1])
    after = net.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(UserError, match="60x64 is not a multiple of the stride 8"):
        net(xys, torch.zeros(1, 8, 3, 60, 64))
    with pytest.raises(UserError, match=r"rgbs must be \(B, 8, 3, H, W\)"):
        net(xys, rgbs[:, :7])


def test_frame0_is_locked_to_the_query_in_eval_only():
    net = _tiny()
    xys, rgbs = _inputs()
    with torch.no_grad():
        out = net(xys, rgbs, iters=3)
        assert all(torch.equal(c[:, 0], xys) for c in out.coords)
        assert (out.coords[-1][:, 1:] - xys[:, None]).abs().max() > 1e-3  # the other frames move
        init = xys[:, None].repeat(1, 8, 1, 1) + torch.linspace(0, 3, 8)[None, :, None, None]
        init[:, 0] += 0.5
        warm = net(xys, rgbs, iters=2, coords_init=init)
        assert all(torch.equal(c[:, 0], init[:, 0]) for c in warm.coords)
        free = net.train()(xys, rgbs, iters=3)
    assert (free.coords[-1][:, 0] - xys).abs().max() > 1e-4


def test_feat_init_is_used_and_returned():
    net = _tiny()
    xys, rgbs = _inputs()
    with torch.no_grad():
        own = net(xys, rgbs, iters=2, return_feat=True)
        again = net(xys, rgbs, iters=2, feat_init=own.feat_init, return_feat=True)
        other = net(xys, rgbs, iters=2, feat_init=own.feat_init.flip(1), return_feat=True)
    assert torch.equal(again.feat_init, own.feat_init)
    torch.testing.assert_close(again.coords[-1], own.coords[-1])
    assert not torch.allclose(other.coords[-1], own.coords[-1])


def test_checkpoint_round_trip_in_the_authors_layout(tmp_path):
    src = _tiny(seed=3)
    path = tmp_path / "model-000000007.pth"
    save_authors_checkpoint(src, path, optimizer=torch.optim.AdamW(src.parameters(), lr=1e-4))
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"model_state_dict", "optimizer_state_dict"}
    assert not any(k.startswith("module.") for k in raw["model_state_dict"])
    dst = PIPs(**TINY).eval()
    load_pips_state_dict(dst, path)
    xys, rgbs = _inputs()
    with torch.no_grad():
        a, b = src(xys, rgbs, iters=2), dst(xys, rgbs, iters=2)
    assert all(torch.equal(x, y) for x, y in zip(a.coords, b.coords)) and torch.equal(a.vis, b.vis)
    # a plain state dict and a DataParallel-prefixed one load too
    fresh = PIPs(**TINY)
    load_pips_state_dict(fresh, {"module." + k: v for k, v in src.state_dict().items()})
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in src.state_dict().items())
    torch.save(src.state_dict(), tmp_path / "plain.pth")
    load_pips_state_dict(PIPs(**TINY), tmp_path / "plain.pth")


def _saved(tmp_path, edit):
    sd = PIPs(**TINY).state_dict()
    edit(sd)
    path = tmp_path / "model-000200000.pth"
    torch.save({"model_state_dict": sd}, path)
    return path


def test_strict_load_errors_name_the_file_and_keys(tmp_path):
    net = PIPs(**TINY)
    path = _saved(tmp_path, lambda sd: sd.pop("vis_predictor.0.bias"))
    with pytest.raises(UserError, match=r"model-000200000\.pth is missing key\(s\) 'vis_predictor.0.bias'"):
        load_pips_state_dict(net, path)
    path = _saved(tmp_path, lambda sd: sd.update({"delta_block.extra.weight": torch.zeros(2)}))
    with pytest.raises(UserError, match=r"model-000200000\.pth has unexpected key\(s\) 'delta_block.extra.weight'"):
        load_pips_state_dict(net, path)
    path = _saved(tmp_path, lambda sd: sd.update({"norm.weight": torch.zeros(33)}))
    with pytest.raises(UserError, match=r"model-000200000\.pth: key 'norm.weight' has shape \(33,\), "
                                        r"the model expects \(32,\)"):
        load_pips_state_dict(net, path)
    # the default-size checkpoint into a tiny net is an error, not a silent partial load
    torch.save({"model_state_dict": PIPs().state_dict()}, tmp_path / "big.pth")
    with pytest.raises(UserError, match=r"big.pth is missing key\(s\) 'delta_block.to_delta.3.weight'"):
        load_pips_state_dict(net, tmp_path / "big.pth")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    with pytest.raises(UserError, match="notes.pth"):
        load_pips_state_dict(net, tmp_path / "notes.pth")
    torch.save({"epoch": 3, "state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="other.pth is not a PIPs checkpoint.*'epoch'"):
        load_pips_state_dict(net, tmp_path / "other.pth")
    with pytest.raises(UserError, match="checkpoint not found"):
        load_pips_state_dict(net, tmp_path / "absent.pth")
    mixed = {("module." + k if i == 0 else k): v for i, (k, v) in enumerate(net.state_dict().items())}
    with pytest.raises(UserError, match="mixes 'module.'"):
        load_pips_state_dict(net, mixed)
    assert torch.equal(net.state_dict()["norm.weight"], PIPs(**TINY).state_dict()["norm.weight"])


# ---------------------------------------------------------------- chaining with an oracle window

T_LEN, S = 21, 8
DROP_FRAMES = (3, 9, 15)  # the only frames where the "fading" point reaches 0.85


class Oracle:
    """Knows every track of a constant-velocity video whose frame t has value t in channel 0 and the
    batch index in channel 1; identifies each query by its position at the window's first frame."""

    def __init__(self, q, start, vel, prob):
        self.q, self.start, self.vel, self.prob = q, start, vel, prob  # (B,N), (B,N,2), (B,N,2), (B,T,N)
        self.calls = []

    def position(self, b, t, n):
        return self.start[b, n] + self.vel[b, n] * float(t - self.q[b, n])

    def __call__(self, window, xys, feat):
        frames = window[0, :, 0, 0, 0].round().long().tolist()
        b = int(window[0, 0, 1, 0, 0])
        ids = []
        for xy in xys[0]:
            dist = [float((self.position(b, frames[0], n) - xy).norm()) for n in range(self.q.shape[1])]
            ids.append(min(range(len(dist)), key=dist.__getitem__))
            assert dist[ids[-1]] < 1e-4
        traj = torch.stack([torch.stack([self.position(b, t, n) for n in ids]) for t in frames])[None]
        p = torch.stack([self.prob[b, t, ids] for t in frames])[None]
        self.calls.append(dict(b=b, frames=frames, ids=ids, feat=None if feat is None else feat.clone()))
        out_feat = feat if feat is not None else torch.tensor([[frames[0], b, n] for n in ids], dtype=torch.float32)[None]
        return traj, torch.log(p / (1 - p)), out_feat


def _oracle_video():
    q = torch.tensor([[0, 5, 0], [0, 7, 0]])
    start = torch.tensor([[[10.0, 10.0], [40.0, 12.0], [20.0, 50.0]],
                          [[12.0, 44.0], [50.0, 50.0], [30.0, 20.0]]])
    vel = torch.tensor([[[1.5, 0.5], [-1.0, 1.25], [0.75, -1.0]],
                        [[1.0, -0.5], [-0.5, -1.5], [1.25, 1.0]]])
    prob = torch.full((2, T_LEN, 3), 0.95)
    prob[:, :, 2] = 0.3
    prob[:, list(DROP_FRAMES), 2] = 0.85
    rgbs = torch.zeros(2, T_LEN, 3, 4, 4)
    rgbs[:, :, 0] = torch.arange(T_LEN, dtype=torch.float32)[None, :, None, None]
    rgbs[1, :, 1] = 1.0
    queries = torch.cat([q[..., None].float(), start], dim=-1)
    return rgbs, queries, Oracle(q, start, vel, prob)


def test_chaining_recovers_the_oracle_tracks_exactly():
    rgbs, queries, oracle = _oracle_video()
    trajs, vis = track_long(oracle, rgbs, queries, S=S)
    assert trajs.shape == (2, T_LEN, 3, 2) and vis.shape == (2, T_LEN, 3)
    for b in range(2):
        for n in range(3):
            q = int(oracle.q[b, n])
            want = torch.stack([oracle.position(b, t, n) for t in range(q, T_LEN)])
            assert torch.equal(trajs[b, q:, n], want), (b, n)
            torch.testing.assert_close(vis[b, q:, n], oracle.prob[b, q:, n])
            assert torch.equal(trajs[b, :q, n], queries[b, n, 1:].expand(q, 2))  # before the query
            assert torch.equal(vis[b, :q, n], torch.zeros(q))
    # window starts per point: visible points jump 7 frames; the fading point never passes 0.9 and
    # is re-anchored at its 0.85 frames once the threshold has dropped to 0.84
    starts = {(c["b"], n): [] for c in oracle.calls for n in c["ids"]}
    for c in oracle.calls:
        for n in c["ids"]:
            starts[(c["b"], n)].append(c["frames"][0])
    assert starts[(0, 0)] == [0, 7, 14] and starts[(0, 1)] == [5, 12, 19] and starts[(0, 2)] == [0, 3, 9, 15]
    assert starts[(1, 1)] == [7, 14] and starts[(1, 2)] == [0, 3, 9, 15]
    # batch 0: points sharing an anchor share a window, in anchor order
    assert [(c["frames"][0], c["ids"]) for c in oracle.calls if c["b"] == 0] == [
        (0, [0, 2]), (3, [2]), (5, [1]), (7, [0]), (9, [2]), (12, [1]), (14, [0]), (15, [2]), (19, [1])]
    # batch 1, frame 7: a new point and a re-anchored one run separately (only one has a template)
    at7 = [c for c in oracle.calls if c["b"] == 1 and c["frames"][0] == 7]
    assert [(c["ids"], c["feat"] is None) for c in at7] == [([1], True), ([0], False)]
    # the template of each point's first window is carried to all its later windows
    for c in oracle.calls:
        if c["feat"] is not None:
            for m, n in enumerate(c["ids"]):
                assert c["feat"][0, m].tolist() == [float(oracle.q[c["b"], n]), float(c["b"]), float(n)]
        else:
            assert all(c["frames"][0] == int(oracle.q[c["b"], n]) for n in c["ids"])


def test_chaining_pads_past_the_end_with_the_last_frame():
    rgbs, queries, oracle = _oracle_video()
    track_long(oracle, rgbs, queries, S=S)
    last = [c["frames"] for c in oracle.calls if c["b"] == 0 and c["frames"][0] == 19]
    assert last == [[19, 20, 20, 20, 20, 20, 20, 20]]
    short = rgbs[:, :5]  # a video shorter than one window
    q = queries.clone()
    q[..., 0] = torch.tensor([[0.0, 4.0, 2.0], [1.0, 0.0, 3.0]])
    oracle.q = q[..., 0].long()
    oracle.calls.clear()
    trajs, vis = track_long(oracle, short, q, S=S)
    assert trajs.shape == (2, 5, 3, 2)
    assert oracle.calls[0]["frames"] == [0, 1, 2, 3, 4, 4, 4, 4]
    assert all(c["frames"][-1] == 4 for c in oracle.calls)
    assert torch.equal(trajs[0, 4, 1], q[0, 1, 1:]) and vis[0, :4, 1].eq(0).all()


def test_reanchor_rule_and_threshold_lowering():
    vis = torch.tensor([[0.1, 0.95, 0.95, 0.3, 0.2, 0.1, 0.1, 0.1],    # latest passing frame is 2
                        [0.5, 0.3, 0.3, 0.3, 0.85, 0.3, 0.84, 0.3],    # none > 0.9: lowered to 0.84
                        [0.5, 0.99, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],     # frame 1 only counts with earliest=1
                        [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])     # lowered below 0: the last frame
    assert next_anchor_step(vis).tolist() == [2, 4, 7, 7]
    assert next_anchor_step(vis, earliest=1).tolist() == [2, 4, 1, 7]


def test_chaining_a_real_net_matches_its_single_window():
    net = _tiny()
    _, rgbs = _inputs(size=32, n=3)
    queries = torch.tensor([[[0.0, 10.0, 12.0], [0.0, 20.0, 8.0], [3.0, 15.0, 15.0]]])
    trajs, vis = track_long(pips_window_fn(net, iters=2), rgbs, queries, S=8)
    with torch.no_grad():
        one = net(queries[:, :2, 1:], rgbs, iters=2)
    steps = next_anchor_step(torch.sigmoid(one.vis[0]).T)
    for n in range(2):  # frames up to the re-anchor frame come from the first window only
        k = int(steps[n]) + 1
        assert torch.equal(trajs[0, :k, n], one.coords[-1][0, :k, n])
    assert torch.equal(trajs[0, 3, 2], queries[0, 2, 1:]) and vis[0, :3, 2].eq(0).all()


def test_chaining_rejects_bad_queries():
    rgbs = torch.zeros(1, 10, 3, 8, 8)
    with pytest.raises(UserError, match="query frames must be whole numbers in 0..9"):
        track_long(lambda *a: None, rgbs, torch.tensor([[[10.0, 1.0, 1.0]]]))
    with pytest.raises(UserError, match=r"queries must be \(B=1, N, 3\)"):
        track_long(lambda *a: None, rgbs, torch.zeros(1, 2, 2))


# ---------------------------------------------------------------- losses by hand


def _out(coords, vis=None, scores=None, stride=1):
    b, s, n = coords[0].shape[:3]
    return PipsOutput(coords=coords, vis=torch.zeros(b, s, n) if vis is None else vis, stride=stride, scores=scores)


def test_sequence_loss_by_hand():
    gt = torch.zeros(1, 2, 2, 2)
    pred0 = torch.tensor([[[[1.0, 3.0], [2.0, 0.0]], [[4.0, -4.0], [10.0, 10.0]]]])
    pred1 = torch.tensor([[[[0.0, 1.0], [1.0, -1.0]], [[2.0, 0.0], [6.0, 6.0]]]])
    valids = torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])
    out = _out([pred0, pred1])
    # iteration errors (mean over x, y) on valid entries: it0 (2 + 1 + 4)/3, it1 (0.5 + 1 + 1)/3
    want = (0.8 * 7 / 3 + 2.5 / 3) / 2
    assert sequence_loss(out, gt, valids).item() == pytest.approx(want, rel=1e-5)
    # track 1 weighted out: it0 (2 + 4)/2, it1 (0.5 + 1)/2
    weight = torch.tensor([[1.0, 0.0]])
    assert sequence_loss(out, gt, valids, weight=weight).item() == pytest.approx((0.8 * 3 + 0.75) / 2, rel=1e-5)
    with pytest.raises(UserError, match=r"trajs_g must be \(1, 2, 2, 2\)"):
        sequence_loss(out, torch.zeros(1, 2, 3, 2), valids)


def test_visibility_loss_by_hand():
    logits = torch.tensor([[[2.0, -1.0], [0.5, 3.0]]])
    vis_g = torch.tensor([[[1.0, 0.0], [1.0, 0.5]]])  # the 0.5 label is neither class
    out = _out([torch.zeros(1, 2, 2, 2)], vis=logits)
    sp = lambda x: math.log1p(math.exp(x))  # softplus
    want = (sp(-2.0) + sp(-0.5)) / 2 + sp(-1.0)
    assert visibility_loss(out, vis_g, torch.ones(1, 2, 2)).item() == pytest.approx(want, rel=1e-5)
    # with only track 1 counted there are no positives left: that half is 0
    got = visibility_loss(out, vis_g, torch.ones(1, 2, 2), weight=torch.tensor([[0.0, 1.0]]))
    assert got.item() == pytest.approx(sp(-1.0), rel=1e-5)


def test_score_map_loss_by_hand():
    # stride 2, 2x2 maps, two iterations, two tracks; track 1's label is off the map so it is ignored
    it0 = torch.tensor([[[1.0, -1.0], [0.0, 2.0]], [[5.0, 5.0], [5.0, 5.0]]]).reshape(1, 1, 2, 2, 2)
    it1 = torch.zeros(1, 1, 2, 2, 2)
    trajs = torch.tensor([[[[2.4, 0.8], [11.0, 0.0]]]])  # /2 -> (1.2, 0.4) -> cell x=1, y=0
    out = _out([trajs, trajs], scores=[it0, it1], stride=2)
    ones = torch.ones(1, 1, 2)
    sp = lambda x: math.log1p(math.exp(x))
    pos = (sp(1.0) + sp(0.0)) / 2                                   # the -1 cell, then a 0 cell
    neg = (sp(1.0) + sp(0.0) + sp(2.0) + 3 * sp(0.0)) / 6
    assert score_map_loss(out, trajs, ones, ones).item() == pytest.approx(pos + neg, rel=1e-5)
    # an occluded or invalid label is ignored the same way as an off-map one
    assert score_map_loss(out, trajs, torch.tensor([[[1.0, 0.0]]]), ones).item() == pytest.approx(pos + neg, rel=1e-5)
    # weighting track 0 out leaves nothing: 0, not NaN
    assert score_map_loss(out, trajs, ones, ones, weight=torch.tensor([[0.0, 1.0]])).item() == 0.0


def test_total_loss_weights_and_missing_scores():
    g = torch.Generator().manual_seed(0)
    coords = [torch.randn(1, 2, 3, 2, generator=g) for _ in range(2)]
    scores = [torch.randn(1, 2, 3, 4, 4, generator=g) for _ in range(2)]
    out = PipsOutput(coords=coords, vis=torch.randn(1, 2, 3, generator=g), stride=1, scores=scores)
    trajs = torch.rand(1, 2, 3, 2, generator=g) * 3
    vis_g, valids = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]]), torch.ones(1, 2, 3)
    total, parts = pips_total_loss(out, trajs, vis_g, valids)
    assert set(parts) == {"seq", "vis", "score"}
    assert total.item() == pytest.approx((parts["seq"] + 10 * parts["vis"] + parts["score"]).item(), rel=1e-6)
    no_vis = PipsOutput(coords=coords, vis=out.vis, stride=1, scores=None)
    total, parts = pips_total_loss(no_vis, trajs, vis_g, valids, vis_weight=0.0, score_weight=0.0)
    assert set(parts) == {"seq"} and total.item() == pytest.approx(parts["seq"].item())
    with pytest.raises(UserError, match="return_scores=True"):
        pips_total_loss(no_vis, trajs, vis_g, valids)
