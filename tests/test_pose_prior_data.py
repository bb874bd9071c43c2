"""The pose collections priors learn from (the people world's motions, AMASS-style fits) and the
crops bodies are fitted to."""
from __future__ import annotations

import numpy as np
import pytest

from datamodules.pose_priors import PosePriorDataModule
from datamodules.readers.amass import read_amass
from framework.errors import UserError

SMALL = {"source": {"sequences": 20, "frames": 3}, "val_every": 5}


def test_synthetic_collection_splits_by_sequence():
    dm = PosePriorDataModule(SMALL)
    train, val = dm.domain_dataset("source", "train"), dm.domain_dataset("source", "val")
    assert len(train) == 16 * 3 and len(val) == 4 * 3 and train.joints == 15
    assert sorted(set(val.sequence.tolist())) == [0, 5, 10, 15]
    assert not set(val.sequence.tolist()) & set(train.sequence.tolist())
    item = train[0]
    assert item["pose"].shape == (15, 3) and item["pose"].abs().sum() > 0
    again = PosePriorDataModule(SMALL).domain_dataset("source", "train")
    assert np.array_equal(again.pose.numpy(), train.pose.numpy())  # a pure function of the config


def test_amass_fits_are_read_body_joints_only(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "CMU" / "01").mkdir(parents=True)
    smplh = rng.normal(size=(6, 156)).astype(np.float32)
    np.savez(tmp_path / "CMU" / "01" / "01_01_poses.npz", poses=smplh, trans=np.zeros((6, 3)))
    np.savez(tmp_path / "CMU" / "01" / "01_02_poses.npz", poses=smplh[:4] + 1)
    np.savez(tmp_path / "CMU" / "shape.npz", betas=np.zeros(16))  # no poses: skipped
    data = read_amass(tmp_path, stride=2)
    assert data["pose"].shape == (3 + 2, 21, 3) and data["sequence"].tolist() == [0, 0, 0, 1, 1]
    assert np.allclose(data["pose"][1], smplh[2, 3:66].reshape(21, 3))
    np.savez(tmp_path / "CMU" / "02.npz", poses=rng.normal(size=(3, 72)))
    with pytest.raises(UserError, match="02.npz: 23 body joints a frame where earlier files have 21"):
        read_amass(tmp_path)
    np.savez(tmp_path / "CMU" / "02.npz", poses=rng.normal(size=(3, 70)))
    with pytest.raises(UserError, match=r"02.npz: poses must be .* got \(3, 70\)"):
        read_amass(tmp_path)
    np.savez(tmp_path / "CMU" / "02.npz", poses=np.full((3, 156), np.nan))
    with pytest.raises(UserError, match="02.npz: poses.*NaN"):
        read_amass(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .npz file with a 'poses' array"):
        read_amass(tmp_path / "empty")


def test_datamodule_reads_amass_from_its_root_and_names_bad_keys(tmp_path):
    np.savez(tmp_path / "a.npz", poses=np.zeros((10, 72)))
    np.savez(tmp_path / "b.npz", poses=np.ones((10, 72)))
    dm = PosePriorDataModule({"source": {"kind": "amass", "root": str(tmp_path)}, "val_every": 2})
    assert dm.domain_dataset("source", "train").joints == 23 and len(dm.domain_dataset("source", "val")) == 10
    with pytest.raises(UserError, match="data.source.root: must be set for kind=amass"):
        PosePriorDataModule({"source": {"kind": "amass"}})
    with pytest.raises(UserError, match="data.source.kind"):
        PosePriorDataModule({"source": {"kind": "cmu"}})
    with pytest.raises(UserError, match="data.val_every"):
        PosePriorDataModule({"val_every": 1})


def test_target_crops_are_for_fitting_only():
    dm = PosePriorDataModule({"target": {"videos": 1, "crops_per_video": 2, "size": 64,
                                         "people": {"preset": "street", "width": 96, "height": 96, "frames": 4}}},
                             test_domain="target")
    item = dm.domain_dataset("target", "test")[1]
    assert item["image"].shape == (3, 64, 64) and item["keypoints"].shape == (17, 2) and item["part_mask"].shape == (64, 64)
    with pytest.raises(UserError, match="data.target: the crops are fitted at test time"):
        dm.domain_dataset("target", "train")
