"""Boxes for the top-down branch: true boxes made wrong as a detector would, and a user's box file."""
from __future__ import annotations

import numpy as np
import pytest

from datamodules.detections import DetectionNoise, noisy_boxes, read_box_file, validate_detection_noise
from framework.errors import UserError

BOXES = np.array([[10, 10, 50, 110], [40, 20, 80, 120], [200, 10, 240, 110]], np.float32)  # 0 and 1 overlap


def test_no_noise_gives_the_true_boxes():
    boxes, owner = noisy_boxes(BOXES, np.array([True, True, False]), DetectionNoise(), (240, 320),
                               np.random.default_rng(0))
    assert np.array_equal(boxes, BOXES[:2]) and owner.tolist() == [0, 1]


def test_misses_false_positives_and_merges_happen_at_their_rates():
    rng = np.random.default_rng(1)
    valid = np.ones(3, bool)
    counts = {"boxes": 0, "false": 0, "merged": 0}
    for _ in range(2000):
        boxes, owner = noisy_boxes(BOXES, valid, DetectionNoise(miss=0.2, false_positives=0.5), (240, 320), rng)
        counts["boxes"] += int((owner >= 0).sum())
        counts["false"] += int((owner < 0).sum())
    assert counts["boxes"] / 6000 == pytest.approx(0.8, abs=0.02)
    assert counts["false"] / 2000 == pytest.approx(0.5, abs=0.05)
    merged = [noisy_boxes(BOXES, valid, DetectionNoise(merge=1.0), (240, 320), rng) for _ in range(5)]
    for boxes, owner in merged:  # the two overlapping people always share one box around both
        assert owner.tolist() == [-1, 2] and boxes[0].tolist() == [10, 10, 80, 120]


def test_jitter_moves_boxes_by_their_size():
    rng = np.random.default_rng(2)
    shifts = np.stack([noisy_boxes(BOXES[:1], np.ones(1, bool), DetectionNoise(jitter=0.1), (240, 320), rng)[0][0]
                       for _ in range(2000)])
    centre_x = (shifts[:, 0] + shifts[:, 2]) / 2
    assert centre_x.std() == pytest.approx(0.1 * 40, rel=0.1) and centre_x.mean() == pytest.approx(30, abs=0.5)
    with pytest.raises(UserError, match="data.detections.miss"):
        validate_detection_noise(DetectionNoise(miss=1.5))


def test_a_box_file_is_read_per_frame_and_bad_lines_are_named(tmp_path):
    path = tmp_path / "boxes.txt"
    path.write_text("# frame x0 y0 x1 y1 score\n0, 10, 10, 50, 110, 0.9\n0 40 20 80 120\n\n3,1,2,3,4\n")
    frames = read_box_file(path)
    assert sorted(frames) == [0, 3] and frames[0].shape == (2, 5) and frames[0][1, 4] == 1.0
    for line, message in (("0, 10, 10, 50", "boxes.txt:2: a detection is 'frame, x0, y0, x1, y1\\[, score\\]', got 4"),
                          ("0, 10, ten, 50, 110", "boxes.txt:2: not numbers"),
                          ("1.5, 10, 10, 50, 110", "boxes.txt:2: the frame must be a whole number"),
                          ("0, 50, 10, 10, 110", "boxes.txt:2: x1 and y1 must be beyond x0 and y0")):
        path.write_text(f"# header\n{line}\n")
        with pytest.raises(UserError, match=message):
            read_box_file(path)
    with pytest.raises(UserError, match="does not exist"):
        read_box_file(tmp_path / "none.txt")
