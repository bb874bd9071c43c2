"""The PIPs method end to end: the module's training and tracking, the refinement loop (per-video
reset, online carry-over, the baselines), footage as an unlabelled target, train.py and adapt.py."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from callbacks.track_refinement import TrackRefinement, track_errors
from datamodules.point_tracking import PointTrackingDataModule
from datamodules.synthetic.track_scenes import SyntheticTrackVideos
from framework.errors import UserError
from lightning_modules.pips import PIPsModule, constancy_loss
from nets.padding import Padder
from tests.commands import PIPS_QUICK, PIPS_SMALL_DOMAIN as SMALL_DOMAIN, PIPS_TINY, cli, report

TINY_MODEL = {"mixer_dim": 32, "mixer_depth": 2, "iters": 2, "test_iters": 2}


def tiny_pips(**extra) -> PIPsModule:
    torch.manual_seed(0)
    return PIPsModule("pips", {**TINY_MODEL, **extra})


def tiny_target(videos: int = 2) -> PointTrackingDataModule:
    return PointTrackingDataModule({"target": {"synthetic": SMALL_DOMAIN}, "test_videos": videos},
                                   test_domain="target")


def test_padding_keeps_pixel_coordinates():
    frames = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(1, 2, 3, 5, 6)
    (padded,) = Padder(frames.shape, mode="corner", multiple=4).pad(frames)
    assert padded.shape == (1, 2, 3, 8, 8)
    assert torch.equal(padded[..., :5, :6], frames) and torch.equal(padded[..., 7, 7], frames[..., 4, 5])


def test_tracking_a_video_locks_each_point_at_its_query():
    module = tiny_pips().eval()
    item = tiny_target().domain_dataset("target", "test")[0]
    queries = item["queries"].clone()[None]
    queries[0, 1, 0] = 3.0  # a later query frame: the point sits at its query there, unseen before it
    with torch.no_grad():
        out = module.predict({"frames": item["frames"][None], "queries": queries})
    t, n = item["frames"].shape[0], queries.shape[1]
    assert out["trajs"].shape == (1, t, n, 2) and out["vis"].shape == (1, t, n)
    assert torch.allclose(out["trajs"][0, 0, 0], queries[0, 0, 1:])
    assert torch.allclose(out["trajs"][0, 3, 1], queries[0, 1, 1:])
    assert (out["vis"][0, :3, 1] == 0).all()


def test_training_steps_lower_the_loss_on_one_clip():
    module = tiny_pips()
    datamodule = PointTrackingDataModule({"source": {"synthetic": SMALL_DOMAIN}, "train_videos": 1,
                                          "train_points": 6, "crop_size": [64, 64], "augment": False})
    batch = {k: v[None] for k, v in datamodule.domain_dataset("source", "train")[0].items()}
    optimizer = torch.optim.AdamW(module.parameters(), lr=5e-4)
    losses = []
    module.train()
    for _ in range(8):
        optimizer.zero_grad()
        loss, parts = module.clip_loss(batch, 2, 10.0, module.cfg.stride)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all() and losses[-1] < 0.8 * losses[0]
    assert set(parts) == {"seq", "vis", "score"}


def test_constancy_loss_is_zero_exactly_on_the_true_tracks():
    g = torch.Generator().manual_seed(0)
    texture = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=g), size=(32, 32), mode="bicubic",
                                              align_corners=True)
    frames = torch.stack([torch.roll(texture, shifts=t, dims=3) for t in range(4)], 1)  # moves 1 px/frame right
    start = torch.tensor([[[8.0, 10.0], [12.0, 20.0]]])
    true = start[:, None] + torch.arange(4.0).view(1, 4, 1, 1) * torch.tensor([1.0, 0.0])
    assert constancy_loss([true], frames, 1, 0.8).item() < 1e-6
    drifted = true.clone()
    drifted[:, 1:] += torch.tensor([1.5, 0.0])  # frame 0 stays at the query, as PIPs locks it
    assert constancy_loss([drifted], frames, 1, 0.8).item() > 1e-3


class Recording(TrackRefinement):
    """Remembers the weights at the start and end of every video's fine-tuning."""

    def finetune(self, trainer, pl_module, data):
        self.starts.append({n: p.detach().clone() for n, p in pl_module.net.named_parameters()})
        losses = super().finetune(trainer, pl_module, data)
        self.ends.append({n: p.detach().clone() for n, p in pl_module.net.named_parameters()})
        return losses


def run_refinement(mode: str, objective: str = "pseudo_labels", **labels):
    module = tiny_pips()
    original = {n: p.detach().clone() for n, p in module.net.named_parameters()}
    # a random network fails the cycle check: a huge tau keeps every teacher track as a label
    labels = {"group_size": 4, "grid_spacing": 16, "dense_window": 8, "dense_spacing": 8, "dense_seeds": 1,
              "tau": 1000.0, "clip_stride": 2, **labels}
    callback = Recording({"mode": mode, "objective": objective, "finetune": {"steps": 2, "accumulate": 2, "batch_size": 1, "lr": 1e-3},
                          "labels": labels})
    callback.starts, callback.ends = [], []
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, callbacks=[callback])
    trainer.test(module, datamodule=tiny_target(), verbose=False)
    return module, original, callback


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_per_video_refinement_resets_and_restores_the_weights():
    module, original, callback = run_refinement("per_video")
    assert callback.prepared_videos == 2
    assert same(callback.starts[0], original) and same(callback.starts[1], original)
    assert not same(callback.ends[0], original)
    assert same({n: p.detach() for n, p in module.net.named_parameters()}, original)
    videos = callback.summary()["videos"]
    assert [v["video"] for v in videos] == [0, 1] and all(v["steps"] == 2 for v in videos)
    # 2 clips of a 4x4 grid each, plus a window around one kept seed per clip; tracks leaving the frame drop out
    assert all(v["clips"] == 2 and v["queried"] > 32 and 0 < v["label_tracks"] <= v["queried"] for v in videos)
    # the synthetic target knows every point's true track: the report says how wrong the labels are
    assert all(0 < v["label_ate"] < 64 and 0 < v["teacher_ate"] < 64 for v in videos)


def test_label_errors_measure_tracks_against_the_exact_ones():
    data = SyntheticTrackVideos(SMALL_DOMAIN, num_videos=1, seed=3)
    queries = np.array([[2.0, 20.0, 30.0], [2.0, 40.0, 12.5], [2.0, 62.0, 5.0]])
    exact, _, valid = data.track(0, queries, range(2, 10))
    tracks = torch.from_numpy(exact).float()
    errors = track_errors(data.track, 0, 2, tracks)
    assert errors.shape == (7, 3) and np.allclose(errors[valid[1:]], 0, atol=1e-4)
    assert np.isnan(errors[~valid[1:]]).all()
    shifted = tracks + torch.tensor([3.0, 4.0])
    shifted[0] = tracks[0]  # the query frame holds the query itself and is not scored
    assert np.allclose(track_errors(data.track, 0, 2, shifted)[valid[1:]], 5.0, atol=1e-4)
    assert track_errors(data.track, 0, 2, tracks[:, :0]).shape == (7, 0)


def test_online_refinement_carries_the_weights_on():
    _, original, callback = run_refinement("online")
    assert same(callback.starts[1], callback.ends[0]) and not same(callback.starts[1], original)


@pytest.mark.parametrize("objective", ["photometric", "feature"])
def test_self_supervised_baselines_change_the_weights(objective):
    _, original, callback = run_refinement("per_video", objective=objective)
    assert not same(callback.ends[0], original)
    assert all(np.isfinite(v["last_loss"]) for v in callback.summary()["videos"])


def test_refinement_without_labels_leaves_the_video_alone():
    _, original, callback = run_refinement("per_video", tau=0.0)
    assert callback.starts == [] and all(v["steps"] == 0 for v in callback.summary()["videos"])
    videos = len(callback.summary()["videos"])
    assert callback.notes() == [f"{videos} of {videos} videos not adapted: fewer than adaptation.labels.min_labels=1 "
                                f"pseudo-labels passed the checks; raise adaptation.labels.tau or use a stronger model"]


def test_refinement_config_errors_name_the_key():
    with pytest.raises(UserError, match="adaptation.objective"):
        TrackRefinement({"objective": "census"})
    with pytest.raises(UserError, match="adaptation.labels.fast_share"):
        TrackRefinement({"labels": {"fast_share": 1.5}})
    with pytest.raises(UserError, match="adaptation.labels.clip_stride"):
        TrackRefinement({"labels": {"clip_stride": 0}})


def test_datamodule_errors_name_the_key(tmp_path):
    with pytest.raises(UserError, match="data.target.kind"):
        PointTrackingDataModule({"target": {"kind": "davis"}}, test_domain="target")
    with pytest.raises(UserError, match="data.test_batch_size"):
        PointTrackingDataModule({"target": {"kind": "crohd", "root": str(tmp_path)}, "test_batch_size": 2},
                                test_domain="target")
    with pytest.raises(UserError, match="data.crop_size"):
        PointTrackingDataModule({"crop_size": [60, 64]})
    with pytest.raises(UserError, match="data.source.kind: training clips"):
        PointTrackingDataModule({"source": {"kind": "crohd", "root": str(tmp_path)}}).domain_dataset("source", "train")


def test_frames_too_small_for_the_pyramid_are_one_error():
    module = tiny_pips()
    with pytest.raises(UserError, match="too small"):
        module.clip_loss({"frames": torch.zeros(1, 8, 3, 32, 32), "trajs": torch.zeros(1, 8, 2, 2),
                          "visible": torch.ones(1, 8, 2), "valid": torch.ones(1, 8, 2)}, 1, 10.0, 8)


def test_train_and_adapt_end_to_end(tmp_path):
    cli("train.py", tmp_path, config=PIPS_QUICK, tiny=PIPS_TINY)
    run = tmp_path / "pips" / "quick"
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "metrics.json").is_file()
    proc = cli("adapt.py", tmp_path, config=PIPS_QUICK, tiny=PIPS_TINY)
    rep = report(tmp_path / "pips" / "quick_adapt")
    assert {"ate_vis", "ate_occ", "mte", "delta_avg", "survival", "avg_jaccard"} <= set(rep["before"])
    assert rep["adaptation"]["summary"]["videos"][0]["steps"] == 2
    assert "ate_vis" in proc.stdout
    pictures = list((tmp_path / "pips" / "quick_adapt").rglob("*.png"))
    assert any("pseudo_labels" in str(p) for p in pictures) and any("before_after" in str(p) for p in pictures)
    # the user's own footage: refined tracks written as npz and an overlay video, the cycle share reported
    frames = write_frames(tmp_path / "clip", 9)
    proc = cli("adapt.py", tmp_path, "data.target.kind=footage", f"data.target.root={frames}",
               "adaptation.labels.clip_stride=1", config=PIPS_QUICK, tiny=PIPS_TINY)
    rep = report(tmp_path / "pips" / "quick_adapt_v1")
    assert set(rep["before"]) == {"cycle_consistent_pct"} and 0 <= rep["after"]["cycle_consistent_pct"] <= 100
    tracks = np.load(tmp_path / "pips" / "quick_adapt_v1" / "tracks" / "0000.npz")
    assert tracks["tracks"].shape == (9, 16, 2) and tracks["visibility"].shape == (9, 16)
    assert (tmp_path / "pips" / "quick_adapt_v1" / "tracks" / "0000.mp4").stat().st_size > 0
    assert "cycle_consistent_pct" in proc.stdout


def write_frames(folder, count: int, size: int = 64):
    """A textured square drifting right over a still background, as PNG frames."""
    import cv2
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    background = cv2.resize(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8), (size, size))
    patch = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
    for t in range(count):
        frame = background.copy()
        frame[20:36, 10 + 2 * t:26 + 2 * t] = patch
        cv2.imwrite(str(folder / f"{t:03d}.png"), frame)
    return folder


def test_footage_queries_from_a_grid_or_a_points_file(tmp_path):
    from datamodules.readers.footage_tracks import FootageTracks
    folder = write_frames(tmp_path / "clip", 4)
    item = FootageTracks(folder, grid_spacing=16)[0]
    assert item["frames"].shape == (4, 3, 64, 64) and item["queries"].shape == (16, 3)
    assert (item["queries"][:, 0] == 0).all()
    points = tmp_path / "points.txt"
    points.write_text("# t x y\n0 10 20\n2, 30.5, 40\n")
    queries = FootageTracks(folder, queries=str(points))[0]["queries"]
    assert queries.tolist() == [[0.0, 10.0, 20.0], [2.0, 30.5, 40.0]]
    np.save(tmp_path / "points.npy", np.array([[5.0, 6.0]]))
    assert FootageTracks(folder, queries=str(tmp_path / "points.npy"))[0]["queries"].tolist() == [[0.0, 5.0, 6.0]]
    # bad rows are named by the line an editor shows, comments and blank lines counted
    for text, message in (("# t x y\n\n0 10 200\n", "line 3 .* outside the video"),
                          ("1.5 10 20\n", "line 1 .* outside the video"),
                          ("0 1 2\n1 2 3 4\n", "line 2 has 4 numbers"), ("0 1 2\n3 4\n", "line 2 has 2 numbers"),
                          ("# header\na b\n", "line 2 \\('a b'\\) is not numbers"), ("# only a comment\n", "no points"),
                          ("0 nan 3\n", "line 1 holds NaN")):
        points.write_text(text)
        with pytest.raises(UserError, match=message):
            FootageTracks(folder, queries=str(points))
    with pytest.raises(UserError, match="does not exist"):
        FootageTracks(folder, queries=str(tmp_path / "missing.txt"))


@pytest.mark.parametrize("overlay", ["crohd", "tapvid_davis", "footage"])
def test_overlays_load_over_the_default_config(overlay):
    from framework.config import load_config
    from framework.methods import schema_for
    cfg = load_config(["configs/pips/default.yaml", f"configs/pips/{overlay}.yaml"], ["data.target.root=/data"],
                      schema_for)
    assert cfg.method == "pips" and cfg.data.test_batch_size == 1 and cfg.model.test_stride == 4
    assert cfg.data.target.kind == overlay


def test_frames_of_any_size_are_padded_for_the_network():
    module = tiny_pips().eval()
    frames = torch.rand(1, 9, 3, 66, 70) * 255  # not a multiple of the stride
    queries = torch.tensor([[[0.0, 10.0, 20.0], [4.0, 65.0, 60.0]]])
    with torch.no_grad():
        out = module.predict({"frames": frames, "queries": queries})
    assert out["trajs"].shape == (1, 9, 2, 2) and torch.isfinite(out["trajs"]).all()
    clip = {"frames": frames[:, :8], "trajs": queries[:, None, :, 1:].expand(1, 8, 2, 2).clone(),
            "visible": torch.ones(1, 8, 2), "valid": torch.ones(1, 8, 2)}
    assert torch.isfinite(module.refinement_loss(clip, "pseudo_labels")) and torch.isfinite(
        module.refinement_loss(clip, "photometric"))
