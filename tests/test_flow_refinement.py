"""Pseudo-label refinement for RAFT: label filters, densify / re-balance, the per-video loop,
the self-supervised baselines and adapt.py end to end."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from callbacks.flow_pseudo_labels import FlowLabelConfig, densify, flow_pseudo_labels, rebalance_weights
from callbacks.flow_refinement import FlowLabels, FlowRefinement, FlowRefinementConfig, video_spans
from callbacks.weight_snapshot import WeightSnapshot
from datamodules.optical_flow import OpticalFlowDataModule
from framework.errors import UserError
from geometry.flow import forward_backward_consistency
from lightning_modules.raft import RAFTModule
from lightning_modules.raft_losses import photometric_loss, sequence_loss, smoothness_loss
from metrics.flow import unsupervised_flow_metric_collection
from tests.commands import RAFT_QUICK, RAFT_TINY, cli, report

SMALL_DOMAIN = {"height": 64, "width": 72, "frames": 3}


def textured(h: int = 64, w: int = 72, seed: int = 0) -> torch.Tensor:
    """(1, 3, H, W) smooth random texture in 0..255 (bilinear warps of it are well defined)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, h // 8, w // 8, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).clamp(0, 1) * 255


def constant_flow(u: float, v: float, h: int = 64, w: int = 72) -> torch.Tensor:
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0], flow[:, 1] = u, v
    return flow


# ------------------------------------------------------------------ filters
def test_euclidean_cycle_form_keeps_exactly_the_pixels_within_its_bound():
    fw = constant_flow(2.0, 0.0, 8, 12)
    bw = constant_flow(-2.0, 0.0, 8, 12)
    bw[:, 0, :, 5] = -2.3  # sampled by x = 3 (3 + 2 = 5): |fw + bw| = 0.3
    bw[:, 0, :, 7] = -2.05  # sampled by x = 5: |fw + bw| = 0.05
    mask = forward_backward_consistency(fw, bw, alpha1=0.002, alpha2=0.1, form="euclidean")
    # bound = 0.002 * (2 + |b|) + 0.1 ~ 0.108: x = 3 fails, x = 5 passes; x >= 10 leaves the frame
    expected = torch.ones(8, 12, dtype=torch.bool)
    expected[:, 3] = False
    expected[:, 10:] = False
    assert torch.equal(mask[0], expected)
    squared = forward_backward_consistency(fw, bw, alpha1=0.002, alpha2=0.1, form="squared")
    assert squared[0, 0, 3] and squared[0, 0, 5]  # 0.09 < 0.1 + 0.002 * 9.3: the squared form is looser here


def test_pseudo_labels_combine_the_selected_filters_exactly():
    image1 = textured()
    flow = constant_flow(3.0, 0.0)
    image2 = torch.roll(image1, shifts=3, dims=3)  # frame 2 = frame 1 moved 3 px right: flow +3
    bw = constant_flow(-3.0, 0.0)
    bw[:, 0, 10:20, 30:40] = 1.0  # a broken backward flow: these targets fail the cycle check
    image2[:, :, 40:50, 20:30] = 0.0  # a colour change: these targets fail the colour check
    cfg = FlowLabelConfig(densify_radius=0)
    mask, stats = flow_pseudo_labels(image1, image2, flow, bw, cfg)
    inside = torch.zeros(64, 72, dtype=torch.bool)
    inside[:, :69] = True
    cycle_bad = torch.zeros_like(inside)
    cycle_bad[10:20, 27:37] = True
    colour_bad = torch.zeros_like(inside)
    colour_bad[40:50, 17:27] = True
    assert torch.equal(mask[0], inside & ~cycle_bad & ~colour_bad)
    only_cycle, _ = flow_pseudo_labels(image1, image2, flow, bw, FlowLabelConfig(filters=["cycle"], densify_radius=0))
    assert torch.equal(only_cycle[0], inside & ~cycle_bad)
    none, _ = flow_pseudo_labels(image1, image2, flow, bw, FlowLabelConfig(filters=[], densify_radius=0))
    assert torch.equal(none[0], inside)
    assert stats["label_share"] == pytest.approx(mask.float().mean().item())
    assert stats["cycle_share"] > stats["label_share"]


def test_densify_fills_holes_in_smooth_verified_regions_only():
    flow = constant_flow(1.0, 0.5, 16, 16)
    flow[:, :, :, 12:] = 6.0  # a second motion on the right
    mask = torch.ones(1, 16, 16, dtype=torch.bool)
    mask[:, 4, 4] = False  # hole inside the smooth region: its neighbours agree -> filled
    mask[:, :, 11] = False  # column next to the motion boundary: its right neighbours disagree -> stays empty
    grown = densify(mask, flow, radius=1, support=0.5, tolerance=0.5)
    assert grown[0, 4, 4] and not grown[0, 5, 11]
    assert torch.equal(grown & mask, mask)  # never drops a label
    sparse = torch.zeros(1, 16, 16, dtype=torch.bool)
    sparse[:, 4, 4] = True  # one labelled neighbour is too little support
    assert torch.equal(densify(sparse, flow, radius=1, support=0.5, tolerance=0.5), sparse)
    assert torch.equal(densify(mask, flow, radius=0, support=0.5, tolerance=0.5), mask)


def test_rebalance_gives_every_magnitude_bin_the_same_weight():
    flows = torch.zeros(1, 2, 10, 10)
    flows[:, 0, :, 9] = 10.0  # 10 fast pixels (bin 8..16) against 90 static ones
    masks = torch.ones(1, 10, 10, dtype=torch.bool)
    masks[:, 0, 0] = False
    weights = rebalance_weights(flows, masks, [1.0, 2.0, 4.0, 8.0, 16.0], max_weight=10.0)
    assert weights[0, 0, 0] == 0
    fast, static = weights[0, :, 9].sum(), weights[0][masks[0]].sum() - weights[0, :, 9].sum()
    assert fast == pytest.approx(static.item(), rel=1e-5)
    assert weights[masks].mean() == pytest.approx(1.0, rel=1e-5)
    capped = rebalance_weights(flows, masks, [1.0, 2.0, 4.0, 8.0, 16.0], max_weight=2.0)
    assert capped.max() <= 2.0 + 1e-4 and capped[masks].mean() == pytest.approx(1.0, rel=1e-5)


# ------------------------------------------------------------------- losses
def test_weighted_sequence_loss_scales_with_the_weight():
    gt = torch.zeros(1, 2, 4, 4)
    pred = [torch.ones(1, 2, 4, 4)]
    weight = torch.zeros(1, 4, 4)
    weight[:, :2] = 2.0
    assert sequence_loss(pred, gt, weight=weight).item() == pytest.approx(1.0)  # 2 * half of the pixels
    with pytest.raises(UserError, match="weight"):
        sequence_loss(pred, gt, weight=torch.ones(1, 3, 3))


def test_photometric_and_smoothness_losses_vanish_for_the_true_constant_flow():
    image1 = textured()
    image2 = torch.roll(image1, shifts=(2, 3), dims=(2, 3))
    right = photometric_loss(image1, image2, constant_flow(3.0, 2.0))
    wrong = photometric_loss(image1, image2, constant_flow(0.0, 0.0))
    floor = (1e-3) ** 0.8  # the Charbonnier penalty of a zero difference
    assert right.item() == pytest.approx(floor, rel=1e-3) and wrong > 10 * floor
    assert smoothness_loss(constant_flow(3.0, 2.0)) < 1e-2 < smoothness_loss(torch.randn(1, 2, 16, 16) * 3)
    edges = torch.zeros(1, 3, 16, 16)
    edges[..., 8:] = 255.0
    step = constant_flow(0.0, 0.0, 16, 16)
    step[:, 0, :, 8:] = 5.0  # the flow jumps exactly where the image does
    assert smoothness_loss(step, edges, edge_weight=10.0) < 1.1 * floor and smoothness_loss(step) > 10 * floor


def test_label_free_metrics_on_an_exact_translation():
    image1 = textured()
    image2 = torch.roll(image1, shifts=3, dims=3)
    metrics = unsupervised_flow_metric_collection()
    metrics.update(image1, image2, constant_flow(3.0, 0.0), constant_flow(-3.0, 0.0), torch.tensor([0]))
    values = metrics.compute()
    assert values["fb_consistent"].item() == pytest.approx(100 * 69 / 72, rel=1e-4)  # the last 3 columns leave
    assert values["photometric"].item() < 1e-3
    assert values["flow_magnitude"].item() == pytest.approx(3.0)


def test_the_table_flags_a_label_free_gain_that_collapsed_the_flow():
    from adapt import label_free_warnings
    before = {"fb_consistent": 2.7, "photometric": 7.9, "flow_magnitude": 2.06}
    collapsed = {"fb_consistent": 76.7, "photometric": 9.1, "flow_magnitude": 0.22}  # the panned photograph
    notes = label_free_warnings(before, collapsed)
    assert len(notes) == 2 and "raised the photometric error (7.90 -> 9.10)" in notes[0]
    assert "shrank the mean flow magnitude by 89%" in notes[1]
    assert label_free_warnings(before, {"fb_consistent": 30.0, "photometric": 6.5, "flow_magnitude": 1.9}) == []
    assert label_free_warnings({"epe": 3.0}, {"epe": 2.0}) == []  # scored data: nothing to flag


# -------------------------------------------------------------- augmentation
def test_label_batches_flip_the_flow_with_the_images_and_fit_the_frame():
    rng = np.random.default_rng(0)
    img1 = rng.uniform(0, 255, (64, 72, 3)).astype(np.float32)
    flow = np.zeros((64, 72, 2), np.float32)
    flow[..., 0], flow[..., 1] = 2.0, -1.0
    weight = np.ones((64, 72), np.float32)
    cfg = FlowRefinement({"finetune": {"batch_size": 3},
                          "augment": {"h_flip_prob": 1.0, "v_flip_prob": 1.0, "colour_jitter": False}}).cfg
    data = FlowLabels([(img1, img1.copy(), flow, weight)], cfg, (0, 0), {}, torch.device("cpu"))
    batch = data.batch(0, 0)
    assert batch["image1"].shape == (3, 3, 64, 72)  # the 256x512 crop shrinks to the frame
    assert torch.equal(batch["image1"][0], torch.from_numpy(img1[::-1, ::-1].copy()).permute(2, 0, 1))
    assert torch.all(batch["flow"][:, 0] == -2.0) and torch.all(batch["flow"][:, 1] == 1.0)
    assert torch.equal(data.batch(5, 1)["image1"], data.batch(5, 1)["image1"])  # a function of (step, part)


# ---------------------------------------------------------------- the loop
def tiny_raft() -> RAFTModule:
    torch.manual_seed(0)
    return RAFTModule("raft", {"small": True, "iters": 2, "test_iters": 2})


def tiny_target(videos: int = 2, batch: int = 3) -> OpticalFlowDataModule:
    cfg = {"target": {"synthetic": SMALL_DOMAIN}, "test_videos": videos, "test_batch_size": batch}
    return OpticalFlowDataModule(cfg, test_domain="target")


class Recording(FlowRefinement):
    """Remembers the weights at the start and end of every video's fine-tuning."""

    def finetune(self, trainer, pl_module, data):
        self.starts.append({n: p.detach().clone() for n, p in pl_module.net.named_parameters()})
        losses = super().finetune(trainer, pl_module, data)
        self.ends.append({n: p.detach().clone() for n, p in pl_module.net.named_parameters()})
        return losses


def run_refinement(mode: str, precision: str = "32-true", objective: str = "pseudo_labels", **labels):
    module = tiny_raft()
    original = {n: p.detach().clone() for n, p in module.net.named_parameters()}
    # a random network's flows fail the checks everywhere: keep every teacher pixel as a label
    labels = {"filters": [], **labels}
    callback = Recording({"mode": mode, "objective": objective, "finetune": {"steps": 2, "batch_size": 2, "lr": 1e-3},
                          "labels": labels})
    callback.starts, callback.ends = [], []
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, callbacks=[callback], precision=precision)
    trainer.test(module, datamodule=tiny_target(), verbose=False)
    return module, original, callback


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_per_video_mode_resets_to_the_pretrained_weights_before_each_video():
    module, original, callback = run_refinement("per_video")
    assert callback.prepared_videos == 2  # 2 videos of 2 pairs in batches of 3: video 1 spans two batches
    assert same(callback.starts[0], original) and same(callback.starts[1], original)
    assert not same(callback.ends[0], original)
    assert same({n: p.detach() for n, p in module.net.named_parameters()}, original)  # restored at test end
    videos = callback.summary()["videos"]
    assert [v["video"] for v in videos] == [0, 1]
    assert all(0 <= v["label_share"] <= 1 and v["pairs"] == 1 for v in videos)  # stride 2 over 2 pairs
    # the synthetic target has ground truth: the report says how good the teacher and its labels were
    assert all(np.isfinite(v["teacher_epe"]) and np.isfinite(v["label_epe"]) for v in videos)


def test_online_mode_carries_the_weights_from_video_to_video():
    _, original, callback = run_refinement("online")
    assert same(callback.starts[1], callback.ends[0]) and not same(callback.starts[1], original)


def test_refinement_runs_under_bf16_mixed_precision():
    _, original, callback = run_refinement("per_video", precision="bf16-mixed")
    assert not same(callback.ends[0], original)
    assert all(np.isfinite(v["last_loss"]) for v in callback.summary()["videos"])


def test_a_video_without_pseudo_labels_is_left_as_it_is():
    _, original, callback = run_refinement("per_video", filters=["cycle", "colour"], colour_threshold=0.0)
    assert callback.starts == [] and all(v["steps"] == 0 and v["label_share"] == 0
                                         for v in callback.summary()["videos"])
    assert callback.notes() == ["2 of 2 videos not adapted: fewer than adaptation.labels.min_labels=1 pseudo-labels "
                                "passed the checks; loosen adaptation.labels.alpha1 / alpha2 / colour_threshold (or "
                                "its filters) or use a stronger model"]


def test_a_video_with_fewer_labels_than_the_minimum_is_left_as_it_is():
    _, _, every = run_refinement("per_video")  # no filter: every in-frame pixel of the 64x72 pairs is a label
    assert all(v["steps"] == 2 for v in every.summary()["videos"]) and every.notes() == []
    _, _, callback = run_refinement("per_video", min_labels=64 * 72 + 1)
    assert callback.starts == [] and all(v["steps"] == 0 for v in callback.summary()["videos"])
    assert callback.notes()[0].startswith("2 of 2 videos not adapted")


@pytest.mark.parametrize("objective", ["photometric", "photometric_smooth", "photometric_edge"])
def test_self_supervised_baselines_fine_tune(objective):
    _, original, callback = run_refinement("per_video", objective=objective)
    assert not same(callback.ends[0], original)
    assert all(np.isfinite(v["last_loss"]) for v in callback.summary()["videos"])


def test_teacher_is_the_pretrained_model_whatever_the_current_weights():
    module = tiny_raft()
    callback = FlowRefinement(FlowRefinementConfig())
    callback.snapshot = WeightSnapshot(module)
    batch = {"image1": textured(), "image2": torch.roll(textured(), 2, dims=3)}
    with torch.no_grad():
        before = module.flow(batch["image1"], batch["image2"])
        for p in module.parameters():
            p.add_(0.05)
        teacher = callback.teacher(module, batch)["flow"]
    assert torch.allclose(teacher, before, atol=1e-5)
    assert not torch.allclose(module.flow(batch["image1"], batch["image2"]), before, atol=1e-3)


@pytest.mark.parametrize("key, value, match", [
    ("objective", "census", "adaptation.objective"),
    ("labels.filters", ["cycle", "edges"], "adaptation.labels.filters"),
    ("mode", "episodic", "adaptation.mode"),
    ("augment.crop_size", [60, 64], "adaptation.augment.crop_size"),
    ("finetune.steps", 0, "adaptation.finetune.steps"),
    ("labels.rebalance_edges", [4.0, 2.0], "adaptation.labels.rebalance_edges"),
    ("labels.alpha", 0.1, "adaptation.labels: unknown key 'alpha'"),
])
def test_bad_refinement_settings_name_the_key(key, value, match):
    *sections, name = key.split(".")
    cfg = {name: value}
    for section in reversed(sections):
        cfg = {section: cfg}
    with pytest.raises(UserError, match=match):
        FlowRefinement(cfg)


# ----------------------------------------------------------------- commands
@pytest.fixture(scope="module")
def raft_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("raft_run")
    cli("train.py", out, config=RAFT_QUICK, tiny=RAFT_TINY)
    return out / "raft" / "quick" / "checkpoints" / "best.ckpt"


def test_adapt_py_refines_raft_end_to_end(tmp_path, raft_checkpoint):
    cli("adapt.py", tmp_path, f"ckpt={raft_checkpoint}", "data.test_videos=2", config=RAFT_QUICK, tiny=RAFT_TINY)
    run = tmp_path / "raft" / "quick_adapt"
    result = report(run)
    assert set(result) - {"notes"} == {"method", "run", "checkpoint", "before", "after", "seconds", "adaptation"}
    assert {"epe", "1px", "3px", "5px"} <= set(result["before"]) == set(result["after"])
    assert result["adaptation"]["objective"] == "pseudo_labels" and result["adaptation"]["finetune"]["steps"] == 2
    videos = result["adaptation"]["summary"]["videos"]
    assert [v["video"] for v in videos] == [0, 1] and all("label_share" in v for v in videos)
    pictures = list((run / "logs").rglob("*pseudo_labels*.png"))
    assert pictures, "the pseudo-label pictures were not logged"


def test_adapt_py_on_footage_writes_refined_flow(tmp_path, raft_checkpoint):
    import cv2
    frames = tmp_path / "clip"
    frames.mkdir()
    base = (textured(64, 80, seed=3)[0].permute(1, 2, 0).numpy()).astype(np.uint8)
    for t in range(4):
        cv2.imwrite(str(frames / f"frame_{t:03d}.png"), np.roll(base, 2 * t, axis=1)[..., ::-1])
    cli("adapt.py", tmp_path / "out", f"ckpt={raft_checkpoint}", "data.target.kind=footage",
        f"data.target.root={frames}", "adaptation.labels.stride=1", config=RAFT_QUICK, tiny=RAFT_TINY)
    run = tmp_path / "out" / "raft" / "quick_adapt"
    result = report(run)
    assert {"fb_consistent", "photometric", "flow_magnitude"} == set(result["before"]) == set(result["after"])
    written = sorted(p.name for p in (run / "flow").glob("*.flo"))
    assert written == ["000_00000.flo", "000_00001.flo", "000_00002.flo"]
    assert len(list((run / "flow").glob("*.png"))) == 3
    assert result["adaptation"]["summary"]["videos"][0]["pairs"] == 3


def test_adapt_py_names_a_bad_refinement_key(tmp_path, raft_checkpoint):
    proc = cli("adapt.py", tmp_path / "out", f"ckpt={raft_checkpoint}", "adaptation.objective=census",
               config=RAFT_QUICK, tiny=RAFT_TINY, check=False)
    assert proc.returncode == 2 and "adaptation.objective" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_refinement_refuses_test_data_without_videos():
    class Pairs:  # like FlyingChairs / KITTI: frame pairs that belong to no video
        def videos(self):
            return {}

    with pytest.raises(UserError, match="no videos"):
        video_spans(Pairs())


def test_adapt_py_starts_from_released_weights_without_a_run(tmp_path):
    from nets.raft import RAFT
    from nets.raft_checkpoints import to_authors_layout

    torch.manual_seed(1)
    weights = tmp_path / "raft-small.pth"
    torch.save(to_authors_layout(RAFT(small=True).state_dict()), weights)
    cli("adapt.py", tmp_path / "out", f"model.pretrained={weights}", config=RAFT_QUICK, tiny=RAFT_TINY)
    result = report(tmp_path / "out" / "raft" / "quick_adapt")
    assert result["checkpoint"] == str(weights) and result["before"]["epe"] >= 0
