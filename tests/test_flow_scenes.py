"""The embedded synthetic flow videos: deterministic, exact flow and occlusion, a real domain gap."""
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datamodules.synthetic.flow_scenes import (
    SyntheticFlowDomain, SyntheticFlowPairs, SyntheticFlowVideos, as_domain, flow_source_domain,
    flow_target_domain, validate_domain,
)
from framework.errors import UserError
from geometry.flow import backward_warp


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_items_are_a_pure_function_of_seed_and_index():
    first = SyntheticFlowPairs(flow_target_domain(), num_videos=3, seed=5)
    second = SyntheticFlowPairs(flow_target_domain(), num_videos=3, seed=5)
    late = first[7]
    _same(first[2], second[2])
    _same(late, second[7])  # order of access does not matter
    other = SyntheticFlowPairs(flow_target_domain(), num_videos=3, seed=6)[2]
    assert not torch.equal(other["image1"], second[2]["image1"])
    assert not torch.equal(other["flow"], second[2]["flow"])


def test_pair_shapes_dtypes_and_bookkeeping():
    d = flow_source_domain()
    pairs = SyntheticFlowPairs(d, num_videos=2, seed=0)
    assert len(pairs) == 2 * (d.frames - 1)
    item = pairs[d.frames]  # video 1, pair 1
    h, w = d.height, d.width
    assert item["image1"].shape == item["image2"].shape == (3, h, w)
    assert item["image1"].dtype == item["image2"].dtype == torch.float32
    assert item["flow"].shape == (2, h, w) and item["flow"].dtype == torch.float32
    assert item["valid"].shape == (h, w) and item["valid"].dtype == torch.float32 and bool((item["valid"] == 1).all())
    assert item["occlusion"].shape == (h, w) and item["occlusion"].dtype == torch.bool
    assert 0 <= float(item["image1"].min()) and float(item["image1"].max()) <= 255
    assert (int(item["index"]), int(item["video"]), int(item["frame"])) == (d.frames, 1, 1)
    assert all(item[k].dtype == torch.int64 for k in ("index", "video", "frame"))
    assert pairs.pairs_of(1) == list(range(d.frames - 1, 2 * (d.frames - 1)))
    with pytest.raises(IndexError):
        pairs[len(pairs)]
    batch = torch.utils.data.default_collate([pairs[0], pairs[1]])
    assert batch["image1"].shape == (2, 3, h, w)


def test_consecutive_pairs_share_frames_and_match_the_video_view():
    d = replace(flow_target_domain(), frames=4)
    pairs = SyntheticFlowPairs(d, num_videos=2, seed=1)
    for t in range(2):
        index = 3 + t  # video 1
        assert torch.equal(pairs[index]["image2"], pairs[index + 1]["image1"])
    video = SyntheticFlowVideos(d, num_videos=2, seed=1)[1]
    assert video["frames"].shape == (4, 3, d.height, d.width) and video["flow"].shape == (3, 2, d.height, d.width)
    assert torch.equal(video["frames"][2], pairs[5]["image1"])
    assert torch.equal(video["flow"][2], pairs[5]["flow"])
    assert torch.equal(video["occlusion"][0], pairs[3]["occlusion"])


def test_backward_warp_by_the_true_flow_reproduces_frame_one_on_a_clean_domain():
    clean = flow_source_domain()
    assert clean.motion_blur == 0 and clean.noise_sigma == 0 and clean.fog == [0.0, 0.0]
    pairs = SyntheticFlowPairs(clean, num_videos=3, seed=2)
    errors, moving = [], 0.0
    for index in range(0, len(pairs), 2):
        item = pairs[index]
        warped, inside = backward_warp(item["image2"][None], item["flow"][None])
        keep = inside[0] & ~item["occlusion"]
        errors.append((warped[0] - item["image1"]).abs().mean(0)[keep])
        moving += float(item["flow"].norm(dim=0).mean())
    errors = torch.cat(errors)
    assert moving > 0.5 * len(range(0, len(pairs), 2))  # the check is not trivial: things move
    assert float(errors.mean()) < 2.5, float(errors.mean())
    assert float(errors.quantile(0.9)) < 5.0, float(errors.quantile(0.9))
    # a wrong flow (off by a pixel) is clearly worse
    item = pairs[0]
    shifted, inside = backward_warp(item["image2"][None], item["flow"][None] + 1.0)
    keep = inside[0] & ~item["occlusion"]
    assert float((shifted[0] - item["image1"]).abs().mean(0)[keep].mean()) > 2 * float(errors.mean())


def test_occlusion_marks_a_layer_sliding_over_another():
    d = replace(flow_source_domain(), num_layers=[2, 2], shape_kinds=["rectangle"])
    videos = SyntheticFlowVideos(d, num_videos=1, seed=0)
    scene = videos.scene(0)
    background, below, above = scene.layers
    for layer in scene.layers:
        layer.omega, layer.log_rate, layer.angle0 = 0.0, 0.0, 0.0
        layer.velocity = np.zeros(2)
    for layer, centre, half in ((below, (40.0, 48.0), (20.0, 20.0)), (above, (70.0, 48.0), (10.0, 10.0))):
        layer.kind, layer.centre0, layer.half = "rectangle", np.array(centre), np.array(half)
    background.centre0 = np.array([10.0, 10.0])
    above.velocity = np.array([-5.0, 0.0])  # slides left over the static square below it
    flow, occluded = videos.flow(0, 0)
    # the strip of the lower square just left of the upper one gets covered
    assert occluded[42:55, 56:60].all()
    assert not occluded[35:60, 25:50].any()  # the rest of the lower square stays visible
    assert not occluded[42:55, 62:78].any()  # the moving square itself is on top
    assert np.allclose(flow[:, 42:55, 62:78], np.array([-5.0, 0.0])[:, None, None])
    assert np.allclose(flow[:, 35:60, 25:50], 0.0)
    # pixels carried out of the frame are occluded too
    above.velocity = np.array([0.0, 0.0])
    background.velocity = np.array([3.0, 0.0])
    _, occluded = videos.flow(0, 0)
    assert occluded[:5, -3:].all() and not occluded[:5, :-3].any()


def _gradient_energy(image: torch.Tensor) -> float:
    return float((image[:, :, 1:] - image[:, :, :-1]).square().mean() + (image[:, 1:] - image[:, :-1]).square().mean())


def test_target_domain_differs_measurably_from_the_source():
    source, target = flow_source_domain(), flow_target_domain()
    src = SyntheticFlowPairs(source, num_videos=3, seed=3)
    tgt = SyntheticFlowPairs(target, num_videos=3, seed=3)
    indices = range(0, len(src), 3)
    speed_src = np.mean([float(src[i]["flow"].norm(dim=0).mean()) for i in indices])
    speed_tgt = np.mean([float(tgt[i]["flow"].norm(dim=0).mean()) for i in indices])
    assert speed_tgt > 2 * speed_src, (speed_src, speed_tgt)
    # blur alone (same scenes, same seed) lowers the image gradient energy
    sharp_domain = replace(target, motion_blur=0.0, noise_sigma=0.0, fog=[0.0, 0.0], lighting_change=[0.0, 0.0])
    blurred_domain = replace(sharp_domain, motion_blur=1.0)
    sharp = SyntheticFlowPairs(sharp_domain, num_videos=2, seed=3)
    blurred = SyntheticFlowPairs(blurred_domain, num_videos=2, seed=3)
    for i in (0, 6):
        assert _gradient_energy(blurred[i]["image1"]) < 0.8 * _gradient_energy(sharp[i]["image1"])
        assert torch.equal(blurred[i]["flow"], sharp[i]["flow"])  # flow stays exact
    # noise alone adds about noise_sigma of per-pixel deviation
    noisy = SyntheticFlowPairs(replace(sharp_domain, noise_sigma=6.0), num_videos=2, seed=3)
    residual = noisy[1]["image1"] - sharp[1]["image1"]
    inner = (sharp[1]["image1"] > 20) & (sharp[1]["image1"] < 235)  # away from clipping
    assert 5.0 < float(residual[inner].std()) < 7.0
    # fog lowers contrast
    foggy = SyntheticFlowPairs(replace(sharp_domain, fog=[0.5, 0.5]), num_videos=2, seed=3)
    assert float(foggy[1]["image1"].std()) < 0.7 * float(sharp[1]["image1"].std())


def test_validation_names_the_bad_field_and_configs_round_trip():
    validate_domain(flow_source_domain())
    validate_domain(flow_target_domain())
    cases = {"fog": {"fog": [0.6, 0.2]}, "shape_kinds": {"shape_kinds": ["hexagon"]}, "frames": {"frames": 1},
             "speed": {"speed": 0.0}, "noise_sigma": {"noise_sigma": -1.0}, "texture_value": {"texture_value": [0.2, 1.5]},
             "num_layers": {"num_layers": [3]}}
    for name, change in cases.items():
        with pytest.raises(UserError, match=rf"data\.target\.{name}\b"):
            validate_domain(replace(flow_source_domain(), **change), key="data.target")
    with pytest.raises(UserError, match="motion_blur"):
        SyntheticFlowPairs({"motion_blur": -0.5}, num_videos=1, seed=0, key="data.source")
    with pytest.raises(UserError, match="unknown key 'blurr'"):
        as_domain({"blurr": 1.0})
    node = OmegaConf.merge(OmegaConf.structured(SyntheticFlowDomain), {"speed": 3.0, "fog": [0.1, 0.2]})
    domain = as_domain(node)
    assert domain.speed == 3.0 and domain.fog == [0.1, 0.2] and domain.height == 96


def test_a_fixed_estimator_is_clearly_worse_on_the_target():
    """Proxy for the source-trained model's gap: OpenCV's DIS flow, same settings on both domains."""
    cv2.setNumThreads(1)
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def epe(domain) -> float:
        pairs = SyntheticFlowPairs(domain, num_videos=2, seed=4)
        errors = []
        for i in range(len(pairs)):
            item = pairs[i]
            grey = [cv2.cvtColor(item[k].permute(1, 2, 0).numpy().astype(np.uint8), cv2.COLOR_RGB2GRAY)
                    for k in ("image1", "image2")]
            estimate = dis.calc(grey[0], grey[1], None).transpose(2, 0, 1)
            errors.append(np.linalg.norm(estimate - item["flow"].numpy(), axis=0).mean())
        return float(np.mean(errors))

    source, target = epe(flow_source_domain()), epe(flow_target_domain())
    assert target > 2 * source, (source, target)
