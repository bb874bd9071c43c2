"""Multi-person scores against hand-computed matches: MuPoTS' matching and misses, PCK / PCK_abs,
RootNet's AP_root and JTA's joint F1."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.multi_person import MultiPersonScores, average_precision, match_people, pooled_scores

J = 17


def person(root=(0.0, 0.0, 4.0), seed=0) -> np.ndarray:
    """(J, 3) camera-frame joints: a random pose 30 cm around ``root`` (joint 0 is the root)."""
    joints = np.random.default_rng(seed).normal(0, 0.3, (J, 3))
    joints[0] = 0
    return joints + np.asarray(root)


def project(joints: np.ndarray) -> np.ndarray:
    return joints[..., :2] / joints[..., 2:] * 500 + 250


def frame(people: list[np.ndarray], confidence=None) -> dict:
    joints = np.stack(people) if people else np.zeros((0, J, 3))
    n = len(people)
    return {"joints3d": joints, "joints2d": project(joints), "valid": np.ones(n, bool),
            "confidence": np.asarray(confidence if confidence is not None else np.ones(n), float)}


def truth(people: list[np.ndarray]) -> dict:
    f = frame(people)
    return {"joints3d": f["joints3d"], "joints2d": f["joints2d"], "joint_valid": np.ones((len(people), J), bool),
            "person_valid": np.ones(len(people), bool)}


def test_matching_pairs_people_by_their_image_distance_one_to_one():
    a, b, c = person((-1, 0, 4), 1), person((0, 0, 4), 2), person((1, 0, 4), 3)
    t = truth([a, b, c])
    p = frame([c + 0.01, a - 0.01])  # two predictions for three people, in another order
    assert sorted(match_people(p["joints2d"], p["valid"], t["joints2d"], t["person_valid"], t["joint_valid"])) == \
        [(0, 2), (1, 0)]
    far = frame([a + np.array([2.0, 0, 0])])
    assert match_people(far["joints2d"], far["valid"], t["joints2d"], t["person_valid"], t["joint_valid"],
                        max_distance=50.0) == []


def test_a_missed_person_counts_as_wrong_joints_and_adds_no_error():
    a, b = person((-0.6, 0, 4), 1), person((0.6, 0, 5), 2)
    scores = pooled_scores([(frame([a]), truth([a, b]))])
    assert scores["pck"] == pytest.approx(50.0) and scores["pck_abs"] == pytest.approx(50.0)
    assert scores["auc"] == pytest.approx(50.0 * 30 / 31)  # the 0 mm threshold counts nothing
    assert scores["mpjpe"] == pytest.approx(0.0, abs=1e-9)


def test_pck_abs_sees_the_root_that_pck_aligns_away():
    a = person(seed=4)
    scores = pooled_scores([(frame([a + np.array([0.0, 0.0, 0.3])]), truth([a]))])
    assert scores["pck"] == pytest.approx(100.0) and scores["pck_abs"] == 0.0
    assert scores["f1@0.4"] == pytest.approx(100.0)


def test_ap_root_ranks_by_confidence_and_claims_each_root_once():
    roots = [(-1, 0, 4), (0, 0, 5), (1, 0, 6)]
    people = [person(r, k) for k, r in enumerate(roots)]
    # confidences 0.9 (on person 0), 0.8 (a second one on person 0: a duplicate), 0.7 (on person 1);
    # person 2 is missed: precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3
    preds = frame([people[0] + 0.05, people[0] + 0.1, people[1]], confidence=[0.9, 0.8, 0.7])
    scores = pooled_scores([(preds, truth(people))])
    assert scores["ap_root"] == pytest.approx(100 * (1 / 3 * 1 + 1 / 3 * 2 / 3))
    assert average_precision(np.array([0.5]), np.array([0.0]), 1) == 0.0


def test_joint_f1_counts_matches_within_each_distance():
    a, b = person((-1, 0, 4), 1), person((1, 0, 4), 2)
    shifted = frame([a + np.array([0.5, 0, 0]), b + np.array([0.5, 0, 0])])
    scores = pooled_scores([(shifted, truth([a, b]))])
    assert scores["f1@0.4"] == 0.0 and scores["f1@0.8"] == pytest.approx(100.0)
    extra = frame([a, b, person((0, 3, 9), 5)])  # one false person: 17 false positives, no miss
    assert pooled_scores([(extra, truth([a, b]))])["f1@0.4"] == pytest.approx(100 * 2 * 34 / (2 * 34 + 17))


def batch(frames: list[tuple[dict, dict]]):
    people = max(len(p["valid"]) for p, _ in frames)
    trues = max(len(t["person_valid"]) for _, t in frames)

    def pad(a, n):
        out = np.zeros((n, *a.shape[1:]), a.dtype)
        out[:len(a)] = a
        return out

    pred = {k: torch.from_numpy(np.stack([pad(p[k], people) for p, _ in frames])) for k in frames[0][0]}
    true = {k: torch.from_numpy(np.stack([pad(t[k], trues) for _, t in frames])) for k in frames[0][1]}
    return pred, true


def test_scores_are_per_sequence_means_and_count_a_repeated_frame_once():
    a, b = person((-0.6, 0, 4), 1), person((0.6, 0, 5), 2)
    frames = [(frame([a, b]), truth([a, b])), (frame([a]), truth([a, b])), (frame([a]), truth([a, b]))]
    pred, true = batch(frames)
    metric = MultiPersonScores()
    metric.update(pred, true, torch.tensor([0, 1, 1]), torch.tensor([0, 1, 1]))  # frame 1 twice (DDP padding)
    per = metric.per_sequence()
    assert per[0]["pck_abs"] == pytest.approx(100.0) and per[1]["pck_abs"] == pytest.approx(50.0)
    assert per[1]["ap_root"] == pytest.approx(50.0)  # one of two roots found, nothing false
    assert float(metric.compute()["pck_abs"]) == pytest.approx(75.0)
