"""Pose-lifting data: synthetic generator, real-format readers, sampler, datamodule."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.spatial.transform import Rotation

from datamodules.pose_lifting import PoseDataConfig, PoseDomainConfig, PoseLiftingDataModule
from datamodules.readers.h36m import CAMERA_IDS, EXTRINSICS, INTRINSICS, H36M32_TO_17, H36MDataset
from datamodules.readers.mpi_inf_3dhp import MPIInf3DHPDataset
from datamodules.readers.pw3d import PW3D_EVAL_JOINTS, PW3DDataset
from datamodules.sampling import EpochSeededSampler
from datamodules.synthetic.skeleton_poses import (BASE_BONE_LENGTHS, LAB, WILD, SyntheticPoseDataset,
                                                  SyntheticPoseDomain, bone_lengths, effective_angle_ranges,
                                                  standing_height)
from framework.errors import UserError
from geometry.camera import denormalize_screen, perspective_project
from geometry.skeletons import MPI_INF_3DHP_TO_H36M, SMPL24_TO_H36M17, H36M17


def _stack(ds, n):
    items = [ds[i] for i in range(n)]
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def _bone_lengths(pose3d: torch.Tensor) -> torch.Tensor:
    child, parent = zip(*H36M17.bones)
    return (pose3d[..., list(child), :] - pose3d[..., list(parent), :]).norm(dim=-1)


def _angle(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))
    return torch.rad2deg(torch.acos(cos.clamp(-1, 1)))


# ---------------------------------------------------------------- synthetic generator
def test_synthetic_samples_are_deterministic_per_seed_and_index():
    a, b = SyntheticPoseDataset(LAB, 10, seed=3), SyntheticPoseDataset(LAB, 10, seed=3)
    for key in ("pose2d", "pose3d", "camera", "root_position"):
        assert torch.equal(a[5][key], b[5][key])
    # order of access does not matter
    _ = b[7]
    assert torch.equal(a[5]["pose3d"], b[5]["pose3d"])
    assert not torch.allclose(a[5]["pose3d"], SyntheticPoseDataset(LAB, 10, seed=4)[5]["pose3d"])
    assert not torch.allclose(a[5]["pose3d"], a[6]["pose3d"])


def test_recordings_share_person_and_camera_but_not_pose():
    domain = dataclasses.replace(WILD, sequence_length=4)
    ds = SyntheticPoseDataset(domain, 12, seed=1)
    params = [ds.generate(i)["params"] for i in range(12)]
    for key in ("camera_distance", "camera_height", "focal_length", "height"):
        assert len({round(p[key], 9) for p in params[:4]}) == 1  # one recording
        assert len({round(p[key], 9) for p in params[::4]}) == 3  # three recordings
    assert np.allclose(params[0]["bone_lengths"], params[3]["bone_lengths"])
    assert not torch.allclose(ds[0]["pose3d"], ds[1]["pose3d"])
    independent = SyntheticPoseDataset(WILD, 12, seed=1)
    assert independent.generate(0)["params"]["camera_height"] != independent.generate(1)["params"]["camera_height"]


def test_synthetic_shapes_dtypes_and_root_relative():
    item = SyntheticPoseDataset(WILD, 4, seed=0)[2]
    assert item["pose2d"].shape == (17, 2) and item["pose2d"].dtype == torch.float32
    assert item["pose3d"].shape == (17, 3) and item["pose3d"].dtype == torch.float32
    assert item["index"].dtype == torch.int64 and item["index"].item() == 2
    assert item["camera"].shape == (4,) and item["root_position"].shape == (3,) and item["root_depth"].shape == ()
    assert torch.equal(item["pose3d"][0], torch.zeros(3))
    assert item["root_depth"] == item["root_position"][2] > 1.0
    with pytest.raises(IndexError):
        SyntheticPoseDataset(WILD, 4, seed=0)[4]


@pytest.mark.parametrize("domain", [LAB, WILD], ids=["lab", "wild"])
def test_synthetic_2d_is_projection_of_camera_frame_3d(domain):
    ds = SyntheticPoseDataset(domain, 50, seed=1)
    b = _stack(ds, 50)
    cam3d = b["pose3d"].double() + b["root_position"].double()[:, None]
    cam = b["camera"].double()
    expected = perspective_project(cam3d, cam[:, :2], cam[:, 2:])
    assert torch.allclose(b["pose2d"].double(), expected, atol=1e-5)
    # and in pixels: f_px * X / Z + image centre
    px = denormalize_screen(b["pose2d"].double(), domain.image_width, domain.image_height)
    f_px = cam[:, :1] * domain.image_width / 2
    centre = torch.tensor([domain.image_width / 2, domain.image_height / 2], dtype=torch.float64)
    assert torch.allclose(px, f_px[:, None] * cam3d[..., :2] / cam3d[..., 2:] + centre, atol=1e-2)
    assert (cam3d[..., 2] > 1.0).all()  # whole body well in front of the camera


def test_synthetic_2d_noise_has_requested_sigma():
    noisy = dataclasses.replace(LAB, noise_2d=5.0)
    a, b = _stack(SyntheticPoseDataset(LAB, 200, 0), 200), _stack(SyntheticPoseDataset(noisy, 200, 0), 200)
    assert torch.equal(a["pose3d"], b["pose3d"])
    sigma_px = ((b["pose2d"] - a["pose2d"]) * LAB.image_width / 2).std().item()
    assert 4.5 < sigma_px < 5.5


def test_bone_lengths_follow_height_and_proportions():
    domain = dataclasses.replace(LAB, leg_scale=1.2, torso_scale=0.8, arm_scale=1.1, bone_jitter=0.0)
    lengths, foot = bone_lengths(domain, 1.8, np.zeros(10))
    assert standing_height(lengths, foot) == pytest.approx(1.8)
    ratio = lambda l: (l[2] + l[3]) / (l[7] + l[8])  # legs over torso
    base = ratio(BASE_BONE_LENGTHS)
    assert ratio(lengths) == pytest.approx(base * 1.2 / 0.8)
    assert lengths[12] / lengths[9] == pytest.approx(1.1 * BASE_BONE_LENGTHS[12] / BASE_BONE_LENGTHS[9])
    # samples: measured bones equal the sampled lengths, left = right, height inside the range
    ds = SyntheticPoseDataset(WILD, 20, seed=2)
    for i in range(20):
        s = ds.generate(i)
        measured = _bone_lengths(torch.from_numpy(s["pose3d"]))
        child = [c for c, _ in H36M17.bones]
        assert torch.allclose(measured, torch.from_numpy(s["params"]["bone_lengths"][child]), atol=1e-9)
        assert measured[child.index(2)] == pytest.approx(measured[child.index(5)].item())  # thighs
        assert measured[child.index(12)] == pytest.approx(measured[child.index(15)].item())  # upper arms
        assert WILD.height[0] <= s["params"]["height"] <= WILD.height[1]
        assert standing_height(s["params"]["bone_lengths"], s["params"]["foot_height"]) == pytest.approx(s["params"]["height"])


def test_synthetic_limbs_stay_within_angle_limits():
    ranges = effective_angle_ranges(WILD)
    b = _stack(SyntheticPoseDataset(WILD, 300, seed=5), 300)
    p = b["pose3d"].double()
    knee_max = max(ranges["knee_flexion"][1], ranges["crouch_knee_flexion"][1])
    for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
        assert (_angle(p[:, knee] - p[:, hip], p[:, ankle] - p[:, knee]) <= knee_max + 0.01).all()
    for sh, el, wr in ((11, 12, 13), (14, 15, 16)):
        assert (_angle(p[:, el] - p[:, sh], p[:, wr] - p[:, el]) <= ranges["elbow_flexion"][1] + 0.01).all()
    # upper arms never swing into the chest: they point away from the body's midline
    across = p[:, 11] - p[:, 14]  # right -> left shoulder
    assert ((p[:, 12] - p[:, 11]) * across).sum(-1).min() >= -1e-9
    assert ((p[:, 15] - p[:, 14]) * -across).sum(-1).min() >= -1e-9
    # at zero abduction range the arms hang exactly in the shoulder-to-shoulder vertical plane
    flat = dataclasses.replace(LAB, shoulder_abduction=[0.0, 0.0], shoulder_flexion=[0.0, 0.0], bone_jitter=0.0)
    q = SyntheticPoseDataset(flat, 1, seed=0)[0]["pose3d"].double()
    across = q[11] - q[14]
    assert torch.dot(q[12] - q[11], across).abs() < 1e-6


def test_lab_and_wild_differ_in_viewpoint_pose_and_proportions():
    n = 300
    stats = {}
    for name, domain in (("lab", LAB), ("wild", WILD)):
        ds = SyntheticPoseDataset(domain, n, seed=0)
        samples = [ds.generate(i) for i in range(n)]
        p = torch.from_numpy(np.stack([s["pose3d"] for s in samples]))
        spine = p[:, 8] - p[:, 0]
        lengths = _bone_lengths(p)
        child = [c for c, _ in H36M17.bones]
        leg = lengths[:, child.index(2)] + lengths[:, child.index(3)]
        torso = lengths[:, child.index(7)] + lengths[:, child.index(8)]
        stats[name] = {
            "elevation_std": np.degrees(np.std([s["params"]["elevation"] for s in samples])),
            # tilt of the torso towards / away from the camera, visible in the camera-frame pose
            "spine_depth_std": (spine[:, 2] / spine.norm(dim=-1)).std().item(),
            "wrist_above_thorax": (p[:, [13, 16], 1] < p[:, [8], 1]).float().mean().item(),  # y points down
            "leg_torso": (leg / torso).mean().item(),
        }
    lab, wild = stats["lab"], stats["wild"]
    assert wild["elevation_std"] > 2.5 * lab["elevation_std"]
    assert wild["spine_depth_std"] > 2 * lab["spine_depth_std"]
    assert wild["wrist_above_thorax"] > lab["wrist_above_thorax"] + 0.05
    expected = (WILD.leg_scale / WILD.torso_scale) / (LAB.leg_scale / LAB.torso_scale)
    assert wild["leg_torso"] / lab["leg_torso"] == pytest.approx(expected, rel=0.03)


def test_synthetic_domain_is_a_structured_config_and_bad_fields_are_named():
    cfg = OmegaConf.structured(SyntheticPoseDomain)
    cfg.camera_height = [2.0, 2.5]
    item = SyntheticPoseDataset(cfg, 2, seed=0)[0]  # a DictConfig is accepted
    assert item["pose3d"].shape == (17, 3)
    with pytest.raises(UserError, match="camera_distance"):
        SyntheticPoseDataset(dataclasses.replace(LAB, camera_distance=[0.5, 2.0]), 2)
    with pytest.raises(UserError, match="knee_flexion"):
        SyntheticPoseDataset(dataclasses.replace(LAB, knee_flexion=[40.0, 10.0]), 2)
    with pytest.raises(UserError, match="crouch_probability"):
        SyntheticPoseDataset(dataclasses.replace(LAB, crouch_probability=1.5), 2)


# ---------------------------------------------------------------- Human3.6M (VideoPose3D)
def _world_point(subject: str, camera: int, point_cam: np.ndarray) -> np.ndarray:
    """A camera-frame point (m) in H36M world coordinates, via scipy (independent of the reader)."""
    (w, x, y, z), t = EXTRINSICS[subject][camera]
    return Rotation.from_quat([x, y, z, w]).apply(point_cam) + np.asarray(t) / 1000.0


def _write_h36m(root, frames=6, extra_2d=2, subjects=("S9", "S11"), positions=None, positions_2d=None,
                metadata=None):
    rng = np.random.default_rng(0)
    if positions is None:
        positions = {}
        for s in subjects:
            base = _world_point(s, 0, np.array([0.0, 0.0, 4.0]))
            pose = base + rng.normal(0, 0.3, size=(frames, 32, 3))
            positions[s] = {"Walking 1": pose, "Eating": pose + 0.01}
    if positions_2d is None:
        positions_2d = {s: {a: [rng.uniform(0, 1000, size=(frames + extra_2d, 17, 2)) for _ in range(4)]
                            for a in acts} for s, acts in positions.items()}
    np.savez(root / "data_3d_h36m.npz", positions_3d=positions)
    meta = metadata or {"layout_name": "h36m", "num_joints": 17,
                        "keypoints_symmetry": [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]}
    np.savez(root / "data_2d_h36m_gt.npz", positions_2d=positions_2d, metadata=meta)
    return positions, positions_2d


def test_h36m_camera_table_is_consistent():
    for subject, cams in EXTRINSICS.items():
        assert len(cams) == 4
        for c, (q, t) in enumerate(cams):
            assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-6), (subject, c)
            # every camera sees the middle of the capture area, about 1 m above the floor, inside its image
            fx, fy, cx, cy, w, h = INTRINSICS[CAMERA_IDS[c]]
            (qw, qx, qy, qz) = q
            p = Rotation.from_quat([qx, qy, qz, qw]).inv().apply(np.array([0.0, 0.0, 1.0]) - np.asarray(t) / 1000)
            assert 3.0 < p[2] < 8.0, (subject, c)
            u, v = fx * p[0] / p[2] + cx, fy * p[1] / p[2] + cy
            assert 0 < u < w and 0 < v < h, (subject, c, u, v)


def test_h36m_reader_moves_joints_into_each_camera(tmp_path):
    positions, positions_2d = _write_h36m(tmp_path)
    # put the pelvis of one frame 4 m in front of camera 2 and the right hip 0.1 m to its right
    pose = positions["S9"]["Walking 1"]
    pose[3, 0] = _world_point("S9", 2, np.array([0.0, 0.0, 4.0]))
    pose[3, 1] = _world_point("S9", 2, np.array([0.1, 0.0, 4.0]))
    positions_2d["S9"]["Walking 1"][2][3, 0] = [INTRINSICS[CAMERA_IDS[2]][2], 500.0]
    _write_h36m(tmp_path, positions=positions, positions_2d=positions_2d)
    ds = H36MDataset.from_root(tmp_path, subjects=["S9", "S11"])
    assert len(ds) == 2 * 2 * 4 * 6  # subjects x actions x cameras x frames (extra 2D frames cut off)
    i = next(k for k in range(len(ds)) if ds.sample_info(k) == ("S9", "Walking 1", 2, 3))
    item = ds[i]
    assert item["index"].item() == i
    assert torch.allclose(item["root_position"], torch.tensor([0.0, 0.0, 4.0]), atol=1e-5)
    assert torch.allclose(item["pose3d"][1], torch.tensor([0.1, 0.0, 0.0]), atol=1e-5)
    assert torch.equal(item["pose3d"][0], torch.zeros(3))
    fx, fy, cx, cy, w, h = INTRINSICS[CAMERA_IDS[2]]
    assert item["pose2d"][0].tolist() == pytest.approx([cx / w * 2 - 1, 500.0 / w * 2 - h / w], abs=1e-6)
    # the other joints: 32 -> 17 selection, same rigid transform
    (qw, qx, qy, qz), t = EXTRINSICS["S9"][2]
    cam = Rotation.from_quat([qx, qy, qz, qw]).inv().apply(pose[3][list(H36M32_TO_17)] - np.asarray(t) / 1000)
    assert np.allclose(item["pose3d"].numpy(), cam - cam[0], atol=1e-5)


def test_h36m_reader_filters_strides_and_projects(tmp_path):
    _write_h36m(tmp_path, frames=6)
    assert len(H36MDataset.from_root(tmp_path, subjects=["S9"], actions=["Walking"])) == 4 * 6
    assert len(H36MDataset.from_root(tmp_path, subjects=["S9"], stride=2)) == 2 * 4 * 3
    ds = H36MDataset.from_root(tmp_path, subjects=["S11"], keypoints="projected")
    b = _stack(ds, len(ds))
    cam3d = b["pose3d"].double() + b["root_position"].double()[:, None]
    cam = b["camera"].double()
    assert torch.allclose(b["pose2d"].double(), perspective_project(cam3d, cam[:, :2], cam[:, 2:]), atol=1e-5)


def _err(fn, *needles):
    with pytest.raises(UserError) as info:
        fn()
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_h36m_reader_bad_inputs_name_the_file(tmp_path):
    _err(lambda: H36MDataset.from_root(tmp_path / "nope"), "nope", "does not exist")
    positions, positions_2d = _write_h36m(tmp_path)
    (tmp_path / "data_2d_h36m_gt.npz").unlink()
    _err(lambda: H36MDataset.from_root(tmp_path, subjects=["S9"]), "data_2d_h36m_gt.npz", "does not exist")
    _write_h36m(tmp_path)
    np.savez(tmp_path / "data_3d_h36m.npz", poses=np.zeros(3))
    _err(lambda: H36MDataset.from_root(tmp_path, subjects=["S9"]), "data_3d_h36m.npz", "positions_3d")
    bad = {s: {a: v[:, :31] for a, v in acts.items()} for s, acts in positions.items()}
    _write_h36m(tmp_path, positions=bad, positions_2d=positions_2d)
    _err(lambda: H36MDataset.from_root(tmp_path, subjects=["S9"]), "data_3d_h36m.npz", "(6, 31, 3)")
    nan = {s: {a: v.copy() for a, v in acts.items()} for s, acts in positions.items()}
    nan["S9"]["Eating"][2, 6, 1] = np.nan  # joint 6 is one of the 17 used
    _write_h36m(tmp_path, positions=nan, positions_2d=positions_2d)
    _err(lambda: H36MDataset.from_root(tmp_path, subjects=["S9"]), "data_3d_h36m.npz", "NaN")
    short = {s: {a: [kp[:3] for kp in cams] for a, cams in acts.items()} for s, acts in positions_2d.items()}
    _write_h36m(tmp_path, positions=positions, positions_2d=short)
    _err(lambda: H36MDataset.from_root(tmp_path, subjects=["S9"]), "data_2d_h36m_gt.npz", "frames")
    inf2d = {s: {a: [kp.copy() for kp in cams] for a, cams in acts.items()} for s, acts in positions_2d.items()}
    inf2d["S9"]["Eating"][1][0, 0, 0] = np.inf
    _write_h36m(tmp_path, positions=positions, positions_2d=inf2d)
    _err(lambda: H36MDataset.from_root(tmp_path, subjects=["S9"]), "data_2d_h36m_gt.npz", "NaN/Inf")
    _write_h36m(tmp_path, positions=positions, positions_2d=positions_2d, metadata={"layout_name": "coco", "num_joints": 17})
    _err(lambda: H36MDataset.from_root(tmp_path, subjects=["S9"]), "data_2d_h36m_gt.npz", "coco")
    _write_h36m(tmp_path)
    _err(lambda: H36MDataset.from_root(tmp_path, subjects=["S1"]), "data_3d_h36m.npz", "S1")


# ---------------------------------------------------------------- MPI-INF-3DHP
def _write_3dhp(path, n=5, **override):
    rng = np.random.default_rng(1)
    arrays = {
        "pose2d": rng.uniform(0, 2048, size=(n, 17, 2)),
        "pose3d": rng.normal(0, 400, size=(n, 17, 3)) + [0, 0, 4000],
        "image_size": np.array([[2048, 2048]] * (n - 2) + [[1920, 1080]] * 2),
        "valid": np.array([1] * (n - 1) + [0]),
    }
    arrays.update(override)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return arrays


def test_3dhp_reader_converts_order_units_and_screen(tmp_path):
    path = tmp_path / "mpi_inf_3dhp_test.npz"
    a = _write_3dhp(path)
    ds = MPIInf3DHPDataset.from_root(tmp_path)
    assert len(ds) == 4  # last frame invalid
    item = ds[3]  # a 1920 x 1080 frame
    order = list(MPI_INF_3DHP_TO_H36M)
    cam = a["pose3d"][3][order] / 1000
    assert np.allclose(item["pose3d"].numpy(), cam - cam[0], atol=1e-6)
    assert np.allclose(item["root_position"].numpy(), a["pose3d"][3][14] / 1000, atol=1e-6)
    px = a["pose2d"][3][order]
    assert np.allclose(item["pose2d"].numpy(), px / 1920 * 2 - [1, 1080 / 1920], atol=1e-6)
    assert len(MPIInf3DHPDataset(path, valid_only=False)) == 5
    # width/height as separate arrays give the same result
    _write_3dhp(path, image_size=None, image_width=np.array([2048.0] * 3 + [1920.0] * 2),
                image_height=np.array([2048.0] * 3 + [1080.0] * 2))
    assert torch.equal(MPIInf3DHPDataset(path)[3]["pose2d"], item["pose2d"])


def test_3dhp_reader_bad_inputs_name_the_file(tmp_path):
    path = tmp_path / "test.npz"
    _err(lambda: MPIInf3DHPDataset(path), "test.npz", "does not exist")
    _write_3dhp(path, pose3d=None)
    _err(lambda: MPIInf3DHPDataset(path), "test.npz", "'pose3d'")
    _write_3dhp(path, pose3d=np.zeros((5, 16, 3)))
    _err(lambda: MPIInf3DHPDataset(path), "test.npz", "pose3d", "(5, 16, 3)")
    _write_3dhp(path, pose2d=np.full((5, 17, 2), np.nan))
    _err(lambda: MPIInf3DHPDataset(path), "test.npz", "pose2d", "NaN")
    _write_3dhp(path, image_size=None)
    _err(lambda: MPIInf3DHPDataset(path), "test.npz", "image_size")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    _err(lambda: MPIInf3DHPDataset(tmp_path / "junk.npz"), "junk.npz")


# ---------------------------------------------------------------- 3DPW
def _write_3dpw(root, split="test", frames=4, **override):
    rng = np.random.default_rng(2)
    folder = root / "sequenceFiles" / split
    folder.mkdir(parents=True, exist_ok=True)
    rot = Rotation.from_euler("y", 30, degrees=True).as_matrix()
    cam_poses = np.tile(np.eye(4), (frames, 1, 1))
    cam_poses[:, :3, :3] = rot
    cam_poses[:, :3, 3] = [0.2, -0.1, 5.0]
    data = {
        "sequence": "downtown_test_00",
        "jointPositions": [rng.normal(0, 0.3, size=(frames, 72)) for _ in range(2)],
        "cam_poses": cam_poses,
        "cam_intrinsics": np.array([[1960.0, 0, 540.0], [0, 1960.0, 960.0], [0, 0, 1]]),
        "campose_valid": [np.ones(frames), np.array([1, 0] * (frames // 2))],
    }
    data.update(override)
    data = {k: v for k, v in data.items() if v is not None}
    with open(folder / "downtown_test_00.pkl", "wb") as f:
        pickle.dump(data, f, protocol=2)
    return data


def test_3dpw_reader_transforms_maps_and_projects(tmp_path):
    data = _write_3dpw(tmp_path)
    ds = PW3DDataset.from_root(tmp_path, "test")
    assert len(ds) == 4 + 2  # person 1 has two valid frames
    i = next(k for k in range(len(ds)) if ds.sample_info(k) == ("downtown_test_00", 1, 2))
    item = ds[i]
    world = data["jointPositions"][1][2].reshape(24, 3)
    R, t = data["cam_poses"][2, :3, :3], data["cam_poses"][2, :3, 3]
    cam = world @ R.T + t
    mapped = np.array([cam[j] for j in SMPL24_TO_H36M17 if j >= 0])
    kept = [h for h, j in enumerate(SMPL24_TO_H36M17) if j >= 0]
    assert np.allclose(item["pose3d"].numpy()[kept], mapped - cam[0], atol=1e-5)
    assert np.allclose(item["pose3d"].numpy()[10], 2 * cam[15] - cam[12] - cam[0], atol=1e-5)  # head top
    K = data["cam_intrinsics"]
    px = cam[:, :2] / cam[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    # portrait default: 1080 wide, 1920 high
    expected = px[15] / 1080 * 2 - [1, 1920 / 1080]
    assert np.allclose(item["pose2d"][9].numpy(), expected, atol=1e-5)
    assert len(PW3D_EVAL_JOINTS) == 14 and 10 not in PW3D_EVAL_JOINTS and 0 not in PW3D_EVAL_JOINTS


def test_3dpw_reader_bad_inputs_name_the_file(tmp_path):
    _err(lambda: PW3DDataset.from_root(tmp_path / "missing"), "missing", "does not exist")
    (tmp_path / "sequenceFiles" / "test").mkdir(parents=True)
    _err(lambda: PW3DDataset.from_root(tmp_path), "no .pkl")
    _write_3dpw(tmp_path, cam_poses=None)
    _err(lambda: PW3DDataset.from_root(tmp_path), "downtown_test_00.pkl", "cam_poses")
    _write_3dpw(tmp_path, jointPositions=[np.zeros((4, 69))] * 2)
    _err(lambda: PW3DDataset.from_root(tmp_path), "downtown_test_00.pkl", "(4, 72)")
    _write_3dpw(tmp_path, cam_intrinsics=np.full((3, 3), np.nan))
    _err(lambda: PW3DDataset.from_root(tmp_path), "downtown_test_00.pkl", "NaN")
    _err(lambda: PW3DDataset.from_root(tmp_path, "val"), "unknown split")


# ---------------------------------------------------------------- sampler
def test_epoch_seeded_sampler_orders():
    s = EpochSeededSampler(50, seed=7)
    first = list(s)
    torch.manual_seed(123)
    np.random.seed(123)
    assert list(s) == first  # global RNGs play no part
    assert sorted(first) == list(range(50)) and len(s) == 50
    s.set_epoch(1)
    second = list(s)
    assert sorted(second) == list(range(50)) and second != first
    resumed = EpochSeededSampler(50, seed=7)
    resumed.set_epoch(1)
    assert list(resumed) == second
    assert list(EpochSeededSampler(50, seed=8)) != first


# ---------------------------------------------------------------- datamodule
def _small_cfg(**kw) -> PoseDataConfig:
    return PoseDataConfig(train_length=20, val_length=6, test_length=10, batch_size=8, test_batch_size=4, **kw)


def test_datamodule_builds_source_and_target_loaders():
    dm = PoseLiftingDataModule(_small_cfg(), test_domain="source")
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochSeededSampler)
    state = torch.get_rng_state()
    batch = next(iter(loader))
    assert torch.equal(torch.get_rng_state(), state)  # loading never draws from the global RNG
    assert batch["pose2d"].shape == (8, 17, 2) and batch["pose3d"].shape == (8, 17, 3)
    assert batch["index"].dtype == torch.int64
    assert sum(len(b["index"]) for b in dm.val_dataloader()) == 6
    dm.setup("test")
    assert [b["index"].tolist() for b in dm.test_dataloader()][0] == [0, 1, 2, 3]  # not shuffled
    target = PoseLiftingDataModule(_small_cfg(), test_domain="target")
    target.setup("test")
    assert target.domain_dataset("target").domain.name == "wild"
    tb = next(iter(target.test_dataloader()))
    assert tb["pose2d"].shape == (4, 17, 2)
    # parts draw different poses
    assert not torch.allclose(dm.domain_dataset("source", "train")[0]["pose3d"], dm.domain_dataset("source", "test")[0]["pose3d"])


def test_datamodule_accepts_omegaconf_and_reads_real_sources(tmp_path):
    _write_h36m(tmp_path, subjects=("S1", "S9", "S11"))
    cfg = OmegaConf.structured(PoseDataConfig)
    cfg.source.kind = "h36m"
    cfg.source.root = str(tmp_path)
    cfg.source.train_subjects = ["S1"]
    cfg.batch_size = 5
    dm = PoseLiftingDataModule(cfg)
    dm.setup("fit")
    assert len(dm.domain_dataset("source", "train")) == 2 * 4 * 6
    assert next(iter(dm.train_dataloader()))["pose3d"].shape == (5, 17, 3)
    assert len(dm.domain_dataset("source", "val")) == round(0.1 * 2 * 2 * 4 * 6)


def test_datamodule_config_errors_name_the_key(tmp_path):
    _err(lambda: PoseLiftingDataModule(_small_cfg(target=PoseDomainConfig(kind="kitti")), "target"),
         "data.target.kind", "kitti")
    _err(lambda: PoseLiftingDataModule(_small_cfg(target=PoseDomainConfig(kind="3dpw", root="/x/y")), "target"),
         "data.target.root: /x/y does not exist")
    _err(lambda: PoseLiftingDataModule(_small_cfg(source=PoseDomainConfig(kind="h36m"))), "data.source.root")
    bad = PoseDomainConfig(synthetic=dataclasses.replace(LAB, focal_length=[-1.0, 2.0]))
    _err(lambda: PoseLiftingDataModule(_small_cfg(source=bad)), "data.source.synthetic.focal_length")
    _err(lambda: PoseLiftingDataModule(_small_cfg(), test_domain="middle"), "test_domain")
