"""Flow-pose bootstrapping: the sketch, the pose terms, flow agreement on a toy video, the rounds,
the 2D-only space and the pose-estimate files."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from callbacks.output_optimisation import OptimiseConfig, StageConfig, run_stages, video_terms
from datamodules.pose_sources import WithPoseEstimates, write_pose_estimates
from datamodules.synthetic.people_datasets import PeopleFlowPairs
from framework.config import load_config
from framework.errors import UserError
from framework.methods import build_module, get_method, schema_for
from geometry.sketch_flow import bone_points, paint_cross, scaled_radius, target_flow
from lightning_modules.bootstrap import BootstrapModule
from tests.commands import BOOTSTRAP_QUICK, BOOTSTRAP_TINY

ZERO_WEIGHTS = {"flow": 0.0, "init": 0.0, "detections": 0.0, "position": 0.0, "camera": 0.0, "bone": 0.0}


def module() -> BootstrapModule:
    return BootstrapModule("bootstrap", {"small": True, "iters": 2, "test_iters": 2})


def test_sketch_paints_a_cross_around_each_bone_point():
    joints = torch.tensor([[2.0, 2.0], [6.0, 2.0]])
    points, shifts = bone_points(joints, joints + torch.tensor([[1.0, 0.0], [1.0, 0.0]]), bones=[(1, 0)],
                                 points_per_bone=5, spacing=1.0)
    assert points.tolist() == [[2, 2], [3, 2], [4, 2], [5, 2], [6, 2]]
    image, mask = paint_cross(points, shifts, 5, 9, radius=1)
    expected = np.zeros((5, 9), bool)
    expected[2, 1:8] = True  # the line and the horizontal arms at its ends
    expected[1, 2:7] = expected[3, 2:7] = True  # the vertical arms of every point
    assert np.array_equal(mask.numpy(), expected)
    assert torch.equal(image[:, mask], torch.tensor([[1.0], [0.0]]).expand(2, int(mask.sum())))
    # a displacement that grows along the bone: each pixel takes its nearest point's
    points, shifts = bone_points(joints, joints + torch.tensor([[0.0, 0.0], [4.0, 0.0]]), bones=[(1, 0)],
                                 points_per_bone=5, spacing=1.0)
    image, mask = paint_cross(points, shifts, 5, 9, radius=1)
    assert image[:, 2, 4].tolist() == [2.0, 0.0] and image[:, 1, 4].tolist() == [2.0, 0.0]
    assert image[:, 2, 7].tolist() == [4.0, 0.0] and image[:, 2, 1].tolist() == [0.0, 0.0]
    flow = torch.full((2, 5, 9), 9.0)
    target = target_flow(flow, image, mask)
    assert torch.equal(target[:, ~mask], flow[:, ~mask]) and torch.equal(target[:, mask], image[:, mask])
    assert scaled_radius(15, 256, 1000) == 4 and scaled_radius(15, 1000, 1000) == 15


def frames_with(flow: torch.Tensor, detections: torch.Tensor, confidence: torch.Tensor, init: torch.Tensor,
                space: str = "3d") -> dict:
    return {"flow_estimate": flow, "detections2d": detections, "detection_confidence": confidence,
            "init_joints3d": init, "space": space}


def test_pose_terms_against_hand_computation():
    m = module()
    init = torch.zeros(2, 17, 3)
    joints = init.clone()
    joints[1, 3, 0] = 2.0  # one coordinate of one joint 2 m off in frame 1
    camera = torch.tensor([[10.0, 5.0, 5.0], [10.0, 5.0, 5.0]])
    frames = frames_with(torch.zeros(1, 2, 32, 32), torch.full((2, 17, 2), 5.0), torch.ones(2, 17), init)
    variables = {"joints3d": joints, "camera": camera}
    per_frame = m.variable_losses(variables, frames)
    video = m.video_losses(variables, frames)
    # SmoothL1 of 2 is 1.5, of 20 px (the projection moved by s * 2) is 19.5; means over 17 joints
    assert per_frame["init"].tolist() == pytest.approx([0.0, 1.5 / 17])
    assert per_frame["detections"].tolist() == pytest.approx([0.0, 19.5 / 17])
    assert float(video["position"]) == pytest.approx(1.5 / 17)
    assert float(video["camera"]) == 0.0
    assert float(video["bone"]) == pytest.approx(1.5 / 16)  # only the ankle's bone changed length, by 2
    assert float(video["flow"]) == pytest.approx(19.5 / 17)  # zero flow, the joint moved 20 px
    # the flow term reads the flow at the frame-t joints (all at pixel (5, 5) here): a flow of the
    # ankle's motion there frees the ankle and charges the 16 joints that stood still
    flow = torch.zeros(1, 2, 32, 32)
    flow[0, 0, 5, 5] = 20.0
    frames["flow_estimate"] = flow
    assert float(m.video_losses(variables, frames)["flow"]) == pytest.approx(16 * 19.5 / 17)


def test_flow_agreement_pulls_a_misplaced_joint_to_where_the_flow_says():
    m = module()
    truth0 = torch.rand(17, 2, generator=torch.Generator().manual_seed(0)) * 40 + 10
    truth1 = truth0 + torch.tensor([3.0, 1.0])
    detections = torch.stack([truth0, truth1])
    detections[1, 5] += torch.tensor([8.0, 0.0])  # a wrong detection ...
    confidence = torch.ones(2, 17)
    confidence[1, 5] = 0.1  # ... with a low confidence
    flow = torch.zeros(1, 2, 64, 64)
    flow[0, 0], flow[0, 1] = 3.0, 1.0  # the true motion everywhere
    frames = frames_with(flow, detections, confidence, torch.zeros(2, 17, 3), space="2d")
    start = m.initial_variables(frames)[0]

    def solve(weights):
        cfg = OptimiseConfig(optimizer="adam", lr=0.2, stages=[StageConfig(iterations=300, weights=weights)])
        return run_stages(video_terms(m, frames, "mean"), start, cfg, pl.Trainer(logger=False))[0]["joints2d"]

    error = lambda x: float((x[1, 5] - truth1[5]).norm())  # noqa: E731
    agreed = solve({**ZERO_WEIGHTS, "flow": 1.0, "detections": 1.0})
    alone = solve({**ZERO_WEIGHTS, "detections": 1.0})
    assert error(start["joints2d"]) == pytest.approx(8.0)
    assert error(alone) > 7.0 and error(agreed) < 1.0


def tiny_setup(tmp_path, *overrides):
    cfg = load_config([BOOTSTRAP_QUICK], [o for o in BOOTSTRAP_TINY if not o.startswith(("trainer.", "logger."))]
                      + [f"output_dir={tmp_path}", "pictures.enabled=false", "data.test_videos=2", *overrides],
                      schema_for)
    spec = get_method("bootstrap")
    return cfg, spec, build_module(spec, cfg)


def test_rounds_run_in_order_and_every_video_starts_from_the_pretrained_weights(tmp_path):
    torch.manual_seed(0)
    cfg, spec, m = tiny_setup(tmp_path, "adaptation.rounds=[pose,flow,pose]", "adaptation.flow.epochs=2")
    original = {k: v.clone() for k, v in m.state_dict().items()}
    callback = spec.adaptation(cfg)
    seen = []
    tune = callback.tune_flow

    def spy(trainer, pl_module, pairs, targets):
        seen.append(all(torch.equal(v, original[k]) for k, v in pl_module.state_dict().items()))
        losses = tune(trainer, pl_module, pairs, targets)
        seen.append(all(torch.equal(v, original[k]) for k, v in pl_module.state_dict().items()))
        return losses

    callback.tune_flow = spy
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[callback])
    out = trainer.test(m, datamodule=spec.datamodule(cfg, "target"), verbose=False)[0]
    assert [[r["round"] for r in v["rounds"]] for v in callback.reports] == [["pose", "flow", "pose"]] * 2
    assert seen == [True, False, True, False]  # reset before each video's fine-tuning, which changes weights
    assert all(torch.equal(v, original[k]) for k, v in m.state_dict().items())  # and left as loaded
    assert np.isfinite(out["test/mpjpe"]) and all(v["pose_moved_px"] > 0 for v in callback.reports)
    # one picture (adaptation.pictures=1): the frame with both skeletons, the sketch target, flow before and after
    assert len(callback.pictures) == 1 and callback.pictures[0].shape == (64, 4 * 64, 3)


def test_2d_only_space_moves_the_2d_joints_and_leaves_the_3d_estimate(tmp_path):
    cfg, spec, m = tiny_setup(tmp_path, "adaptation.space=2d", "adaptation.rounds=[pose]")
    callback = spec.adaptation(cfg)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[callback])
    data = spec.datamodule(cfg, "target")
    trainer.test(m, datamodule=data, verbose=False)
    index = min(callback.cache)  # the last video's first pair
    pair = data.domain_dataset("target", "test")[index]
    cached = callback.cache[index]
    assert torch.allclose(cached["joints3d"], pair["init_joints3d"][0] - pair["init_joints3d"][0, :1])
    assert not torch.allclose(cached["joints2d"], pair["detections2d"][0])


def test_pose_estimate_files_and_their_errors(tmp_path):
    pairs = PeopleFlowPairs({"preset": "studio", "width": 64, "height": 64, "frames": 3}, num_videos=1)
    name = pairs.videos()[0].name
    rng = np.random.default_rng(0)
    joints2d, confidence, joints3d = rng.random((3, 17, 2)) * 60, rng.random((3, 17)), rng.random((3, 17, 3))
    write_pose_estimates(tmp_path / f"{name}.npz", joints2d, confidence, joints3d)
    item = WithPoseEstimates(pairs, {"kind": "file", "root": str(tmp_path)})[1]
    assert np.allclose(item["detections2d"].numpy(), joints2d[1:3], atol=1e-5)
    assert np.allclose(item["init_joints3d"].numpy(), (joints3d - joints3d[:, :1])[1:3], atol=1e-5)
    with pytest.raises(UserError, match="data.poses.root"):
        WithPoseEstimates(pairs, {"kind": "file"})
    for bad, message in ((dict(joints2d=joints2d[:, :16]), r"joints2d: expected shape \(N, 17, 2\)"),
                         (dict(joints2d=np.full_like(joints2d, np.nan)), "NaN"),
                         (dict(joints2d=joints2d[:2], confidence=confidence[:2]), "has 2 frames, the video has 3")):
        folder = tmp_path / message[:4].strip("\\(")
        folder.mkdir()
        arrays = {"joints2d": joints2d, "confidence": confidence, **bad}
        write_pose_estimates(folder / f"{name}.npz", arrays["joints2d"], arrays["confidence"])
        with pytest.raises(UserError, match=message):
            WithPoseEstimates(pairs, {"kind": "file", "root": str(folder)})[0]
    empty = tmp_path / "none"
    empty.mkdir()
    with pytest.raises(UserError, match=f"{name}.npz"):
        WithPoseEstimates(pairs, {"kind": "file", "root": str(empty)})[0]


def test_simulated_estimates_are_deterministic_and_wrong_as_configured():
    pairs = PeopleFlowPairs({"preset": "studio", "width": 64, "height": 64, "frames": 4}, num_videos=2)
    a = WithPoseEstimates(pairs, {"kind": "simulated", "seed": 3})
    b = WithPoseEstimates(pairs, {"kind": "simulated", "seed": 3})
    assert torch.equal(a[1]["init_joints3d"], b[1]["init_joints3d"])
    # frame t + 1 of one pair is frame t of the next: the same estimate
    assert torch.equal(a[0]["init_joints3d"][1], a[1]["init_joints3d"][0])
    truth = a[1]["joints3d"] - a[1]["joints3d"][:, :1]
    error3d = float((a[1]["init_joints3d"] - truth).norm(dim=-1).mean())
    error2d = float((a[1]["detections2d"] - a[1]["joints2d"]).norm(dim=-1).median())
    assert 0.02 < error3d < 0.2 and error2d < 3.0
    exact = WithPoseEstimates(pairs, {"kind": "simulated", "bias_3d": 0, "jitter_3d": 0, "swap_3d": 0, "bias_2d": 0,
                                      "jitter_2d": 0, "lost_2d": 0})[1]
    assert torch.allclose(exact["init_joints3d"], truth, atol=1e-6)
    assert torch.allclose(exact["detections2d"], exact["joints2d"], atol=1e-4)


def test_own_video_with_an_estimates_file_writes_flows_poses_and_a_skeleton_video(tmp_path):
    from tests.commands import cli, report
    from tests.test_footage import write_folder
    write_folder(tmp_path / "clip", count=4, height=64, width=64)
    rng = np.random.default_rng(1)
    write_pose_estimates(tmp_path / "estimates" / "clip.npz", rng.random((4, 17, 2)) * 40 + 10, np.ones((4, 17)))
    cli("train.py", tmp_path, config=BOOTSTRAP_QUICK, tiny=BOOTSTRAP_TINY)
    ckpt = tmp_path / "bootstrap" / "quick" / "checkpoints" / "best.ckpt"
    cli("adapt.py", tmp_path, f"ckpt={ckpt}", "data.target.kind=footage", f"data.target.root={tmp_path / 'clip'}",
        "data.poses.kind=file", f"data.poses.root={tmp_path / 'estimates'}", "adaptation.space=2d",
        config=BOOTSTRAP_QUICK, tiny=BOOTSTRAP_TINY)
    run = tmp_path / "bootstrap" / "quick_adapt"
    out = run / "outputs"
    assert len(list(out.glob("*.flo"))) == 3 and len(list(out.glob("*.png"))) == 3
    poses = np.load(out / "poses_000.npz")
    assert poses["joints2d"].shape == (3, 17, 2) and poses["frame"].tolist() == [0, 1, 2]
    assert (out / "skeleton_000.mp4").stat().st_size > 0
    assert "fb_consistent" in report(run)["after"]
    # 3D optimisation needs 3D estimates: one clear error
    from callbacks.bootstrap_refinement import check_space
    with pytest.raises(UserError, match="set adaptation.space=2d"):
        check_space("3d", {"has_joints3d_estimate": torch.tensor([False, False])}, 0)
    check_space("2d", {"has_joints3d_estimate": torch.tensor([False])}, 0)


def test_sintel_human_scenes_with_2d_estimates_make_bootstrap_test_data(tmp_path):
    from datamodules.people_flow import PeopleFlowDataModule
    from tests.test_flow_datasets import sintel_tree
    root = sintel_tree(tmp_path / "sintel", scenes={"alley_1": 3, "mountain_1": 3, "bamboo_2": 4})
    for scene, frames in (("alley_1", 3), ("bamboo_2", 4)):
        write_pose_estimates(tmp_path / "poses" / f"{scene}.npz", np.zeros((frames, 17, 2)), np.ones((frames, 17)))
    dm = PeopleFlowDataModule({"target": {"kind": "sintel", "root": str(root), "scenes": ["humans"]},
                               "poses": {"kind": "file", "root": str(tmp_path / "poses")}}, test_domain="target")
    data = dm.domain_dataset("target", "test")
    assert [s.name for s in data.videos().values()] == ["alley_1", "bamboo_2"]  # mountain_1 has nobody in it
    item = data[len(data) - 1]
    assert item["detections2d"].shape == (2, 17, 2) and not bool(item["has_joints3d_estimate"])


def test_wrong_pose_control_takes_another_videos_person():
    pairs = PeopleFlowPairs({"preset": "studio", "width": 64, "height": 64, "frames": 3}, num_videos=2)
    exact = {"bias_3d": 0, "jitter_3d": 0, "swap_3d": 0, "bias_2d": 0, "jitter_2d": 0, "lost_2d": 0}
    wrong = WithPoseEstimates(pairs, {"kind": "simulated", "control": "other_video", **exact})
    assert torch.allclose(wrong[0]["detections2d"], pairs[2]["joints2d"], atol=1e-4)  # video 1's first pair
    assert torch.allclose(wrong[3]["detections2d"], pairs[1]["joints2d"], atol=1e-4)  # and back to video 0


def test_lifter_source_lifts_simulated_detections_with_an_iso_checkpoint(tmp_path):
    from tests.tiny import tiny_iso
    lifter = tiny_iso()
    path = tmp_path / "iso.ckpt"
    torch.save({"method": "iso", "hyper_parameters": dict(lifter.hparams), "state_dict": lifter.state_dict()}, path)
    pairs = PeopleFlowPairs({"preset": "studio", "width": 64, "height": 64, "frames": 3}, num_videos=1)
    lifted = WithPoseEstimates(pairs, {"kind": "lifter", "checkpoint": str(path)})[1]
    simulated = WithPoseEstimates(pairs, {"kind": "simulated"})[1]
    assert torch.equal(lifted["detections2d"], simulated["detections2d"])  # the same simulated detector
    assert torch.allclose(lifted["init_joints3d"][:, 0], torch.zeros(2, 3))  # root-relative
    assert not torch.allclose(lifted["init_joints3d"], simulated["init_joints3d"])  # the lifter's own 3D
    from datamodules.pose_sources import LiftedEstimates, PoseSourceConfig
    screen = torch.from_numpy(((simulated["detections2d"][0].double().numpy() / 64) * 2 - 1)).float()[None]
    with torch.no_grad():
        expected = lifter.eval().predict({"pose2d": screen})["pose3d"][0]
    assert torch.allclose(lifted["init_joints3d"][0], expected - expected[:1], atol=1e-5)
    raft = tmp_path / "raft.ckpt"
    torch.save({"method": "raft", "hyper_parameters": {"method": "raft", "model": {}}, "state_dict": {}}, raft)
    with pytest.raises(UserError, match="not an ISO checkpoint"):
        LiftedEstimates(PoseSourceConfig(kind="lifter", checkpoint=str(raft)))
    with pytest.raises(UserError, match="data.poses.checkpoint: must be set"):
        WithPoseEstimates(pairs, {"kind": "lifter"})
