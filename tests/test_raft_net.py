"""RAFT network, padding, correlation variants and the strict checkpoint loaders."""
import pytest
import torch

from framework.errors import UserError
from nets.padding import Padder
from nets.raft import RAFT
from nets.raft_checkpoints import load_raft_state_dict, to_authors_layout, to_torchvision_layout


def _randomised(small: bool, seed: int = 0, **kwargs) -> RAFT:
    """A model whose every tensor (BatchNorm statistics included) is random, in eval mode."""
    torch.manual_seed(seed)
    model = RAFT(small=small, **kwargs)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith("running_var") else torch.randn_like(t) * 0.05)
    return model.eval()


def _images(seed: int = 1, size=(64, 64)):
    g = torch.Generator().manual_seed(seed)
    img1 = torch.rand(2, 3, *size, generator=g) * 255
    return img1, torch.roll(img1, shifts=(2, 3), dims=(2, 3))


def _flow(model, iters=3, **kwargs):
    img1, img2 = _images()
    with torch.no_grad():
        return model(img1, img2, iters=iters, test_mode=True, **kwargs)[1]


@pytest.mark.parametrize("small,count", [(False, 5_257_536), (True, 990_162)])
def test_parameter_counts_match_the_released_models(small, count):
    assert sum(p.numel() for p in RAFT(small=small).parameters()) == count


@pytest.mark.parametrize("small", [False, True])
def test_output_shapes_training_and_test_mode(small):
    model = _randomised(small)
    img1, img2 = _images()
    preds = model.train()(img1, img2, iters=3)
    assert len(preds) == 3 and all(p.shape == (2, 2, 64, 64) for p in preds)
    low, up = model.eval()(img1, img2, iters=2, test_mode=True)
    assert low.shape == (2, 2, 8, 8) and up.shape == (2, 2, 64, 64)
    assert torch.isfinite(up).all()


def test_non_multiple_of_8_input_is_a_user_error():
    img = torch.zeros(1, 3, 60, 64)
    with pytest.raises(UserError, match="multiple of 8"):
        RAFT(small=True)(img, img, iters=1)


@pytest.mark.parametrize("mode,pads", [("sintel", [2, 3, 1, 2]), ("kitti", [2, 3, 0, 3])])
def test_input_padder_round_trip(mode, pads):
    x = torch.randn(2, 3, 37, 59)
    padder = Padder(x.shape, mode=mode)
    (padded,) = padder.pad(x)
    assert padded.shape[-2:] == (40, 64) and padder.pads == pads
    assert torch.equal(padder.unpad(padded), x)
    # replicate padding: the first padded column equals the image's first column
    assert torch.equal(padded[..., pads[2]:pads[2] + 37, 0], x[..., 0])


def test_input_padder_no_padding_needed():
    x = torch.randn(1, 3, 16, 24)
    padder = Padder(x.shape)
    assert torch.equal(padder.unpad(padder.pad(x)[0]), x)


@pytest.mark.parametrize("small", [False, True])
@pytest.mark.parametrize("layout", ["authors", "torchvision"])
def test_converter_round_trip_gives_identical_outputs(small, layout):
    src = _randomised(small, seed=3)
    converted = (to_authors_layout if layout == "authors" else to_torchvision_layout)(src.state_dict())
    dst = RAFT(small=small).eval()
    load_raft_state_dict(dst, converted, source="auto")
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value), key
    assert torch.equal(_flow(src), _flow(dst))


def test_authors_layout_has_prefix_and_duplicated_skip_batchnorm():
    sd = to_authors_layout(RAFT(small=False).state_dict())
    assert all(k.startswith("module.") for k in sd)
    for layer in (2, 3):
        for stat in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            assert f"module.cnet.layer{layer}.0.norm3.{stat}" in sd
            assert f"module.cnet.layer{layer}.0.downsample.1.{stat}" in sd
    assert not any("norm3" in k for k in to_authors_layout(RAFT(small=True).state_dict()))
    assert len(sd) == len(RAFT(small=False).state_dict()) + 10


def test_torchvision_layout_key_names():
    large = to_torchvision_layout(RAFT(small=False).state_dict())
    for key in ["feature_encoder.convnormrelu.0.weight", "context_encoder.convnormrelu.1.running_var",
                "context_encoder.layer2.0.downsample.1.weight", "feature_encoder.layer1.1.convnormrelu2.0.bias",
                "feature_encoder.conv.weight", "update_block.motion_encoder.convcorr2.0.weight",
                "update_block.motion_encoder.conv.0.weight", "update_block.recurrent_block.convgru2.convq.weight",
                "update_block.flow_head.conv2.bias", "mask_predictor.convrelu.0.weight", "mask_predictor.conv.bias"]:
        assert key in large, key
    small = to_torchvision_layout(RAFT(small=True).state_dict())
    assert "update_block.recurrent_block.convgru1.convz.weight" in small
    assert "feature_encoder.layer2.0.convnormrelu3.0.weight" in small
    assert not any(k.startswith(("mask_predictor", "update_block.recurrent_block.convgru2")) for k in small)


def test_loading_from_a_file(tmp_path):
    src = _randomised(True, seed=5)
    path = tmp_path / "raft-small.pth"
    torch.save(to_authors_layout(src.state_dict()), path)
    dst = RAFT(small=True).eval()
    load_raft_state_dict(dst, path)
    assert torch.equal(_flow(src), _flow(dst))


def test_strict_missing_key():
    sd = to_authors_layout(RAFT(small=False).state_dict())
    del sd["module.update_block.flow_head.conv1.weight"]
    with pytest.raises(UserError, match="missing key 'module.update_block.flow_head.conv1.weight'"):
        load_raft_state_dict(RAFT(small=False), sd)
    tv = to_torchvision_layout(RAFT(small=False).state_dict())
    del tv["mask_predictor.conv.weight"]
    with pytest.raises(UserError, match="missing key 'mask_predictor.conv.weight'"):
        load_raft_state_dict(RAFT(small=False), tv)


def test_strict_missing_authors_duplicate_norm():
    sd = to_authors_layout(RAFT(small=False).state_dict())
    del sd["module.cnet.layer3.0.norm3.running_mean"]
    with pytest.raises(UserError, match="cnet.layer3.0.norm3.running_mean"):
        load_raft_state_dict(RAFT(small=False), sd)


def test_strict_unexpected_key():
    sd = to_authors_layout(RAFT(small=True).state_dict())
    sd["module.update_block.extra.weight"] = torch.zeros(1)
    with pytest.raises(UserError, match="unexpected key 'update_block.extra.weight'"):
        load_raft_state_dict(RAFT(small=True), sd)
    tv = to_torchvision_layout(RAFT(small=True).state_dict())
    tv["corr_block.something"] = torch.zeros(1)
    with pytest.raises(UserError, match="corr_block.something"):
        load_raft_state_dict(RAFT(small=True), tv)


def test_strict_shape_mismatch():
    sd = to_authors_layout(RAFT(small=False).state_dict())
    sd["module.update_block.flow_head.conv2.bias"] = torch.zeros(3)
    with pytest.raises(UserError, match="update_block.flow_head.conv2.bias"):
        load_raft_state_dict(RAFT(small=False), sd)


@pytest.mark.parametrize("layout", [to_authors_layout, to_torchvision_layout])
def test_small_checkpoint_into_large_model(layout):
    sd = layout(RAFT(small=True).state_dict())
    with pytest.raises(UserError, match="RAFT-small.*RAFT-large"):
        load_raft_state_dict(RAFT(small=False), sd)
    with pytest.raises(UserError, match="RAFT-large.*RAFT-small"):
        load_raft_state_dict(RAFT(small=True), layout(RAFT(small=False).state_dict()))


def test_unknown_layout_and_source():
    with pytest.raises(UserError, match="neither"):
        load_raft_state_dict(RAFT(small=True), {"foo.weight": torch.zeros(1)})
    with pytest.raises(UserError, match="source"):
        load_raft_state_dict(RAFT(small=True), RAFT(small=True).state_dict(), source="caffe")


@pytest.mark.parametrize("small", [False, True])
def test_on_the_fly_correlation_matches_all_pairs(small):
    dense = _randomised(small, seed=7)
    light = RAFT(small=small, corr_mode="on_the_fly", corr_chunk=13).eval()
    light.load_state_dict(dense.state_dict())
    a, b = _flow(dense, iters=3), _flow(light, iters=3)
    assert a.abs().max() > 0.1  # the flow is not trivially zero
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


def test_unknown_corr_mode():
    with pytest.raises(UserError, match="corr_mode"):
        RAFT(corr_mode="sparse")


@pytest.mark.parametrize("mode", ["all_pairs", "on_the_fly"])
def test_correlation_is_fp32_under_bf16_autocast(mode, monkeypatch):
    import nets.raft_corr as corr_mod
    seen = []
    original = corr_mod.sample_pixels

    def spy(img, xy):
        seen.append((img.dtype, xy.dtype))
        return original(img, xy)

    monkeypatch.setattr(corr_mod, "sample_pixels", spy)
    model = _randomised(True, corr_mode=mode)
    img1, img2 = _images()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        preds = model(img1, img2, iters=2)
    assert seen and all(d == (torch.float32, torch.float32) for d in seen)
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in preds)


def test_warm_start_changes_the_result():
    model = _randomised(False, seed=9)
    img1, img2 = _images()
    with torch.no_grad():
        cold = model(img1, img2, iters=2, test_mode=True)[1]
        warm = model(img1, img2, iters=2, test_mode=True, flow_init=torch.full((2, 2, 8, 8), 1.5))[1]
    assert (cold - warm).abs().max() > 1e-3
    with pytest.raises(UserError, match="flow_init"):
        model(img1, img2, iters=1, flow_init=torch.zeros(2, 2, 4, 4))


def test_coords_are_detached_every_iteration():
    """No gradient flows back through the coordinates: not to the warm start, and each prediction's
    gradient reaches the weights only through that iteration's update."""
    model = _randomised(True, seed=11).train()
    img1, img2 = _images()
    flow_init = torch.zeros(2, 2, 8, 8, requires_grad=True)
    preds = model(img1, img2, iters=2, flow_init=flow_init)
    (grad,) = torch.autograd.grad(preds[-1].sum(), flow_init, allow_unused=True)
    assert grad is None
    preds[-1].abs().mean().backward()
    assert model.update_block.flow_head.conv2.weight.grad.abs().sum() > 0


def test_sampler_on_a_one_pixel_level_is_zero_outside():
    from nets.raft_corr import sample_pixels
    img = torch.full((1, 1, 1, 1), 4.0)
    xy = torch.tensor([[[[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [0.0, -0.25]]]])
    out = sample_pixels(img, xy).flatten()
    torch.testing.assert_close(out, torch.tensor([4.0, 2.0, 0.0, 3.0]))
