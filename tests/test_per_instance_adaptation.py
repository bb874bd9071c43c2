"""The per-instance adaptation callback: episodic, online, skip-k, frozen parts,
parallel == sequential, and a real Trainer.test under inference mode."""
import hashlib

import pytest
import pytorch_lightning as pl
import torch

from callbacks.per_instance import PerInstanceAdaptation, PerInstanceAdaptationConfig
from framework.errors import UserError
from lightning_modules.base import ADAPTED_OUTPUTS
from tests.tiny import batch_of, loader, tiny_iso

# a fixed view makes the self-supervised objective deterministic, so runs can be compared exactly
FIXED_VIEW = {"azimuth_deg": [40.0, 40.0], "elevation_deg": [10.0, 10.0]}


def trainer(**kw) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kw)


def adapt_batches(module, cfg, batches, tr=None):
    """Drive the callback like Trainer.test does (inference mode, eval model); return predictions."""
    tr = tr or trainer()
    cb = PerInstanceAdaptation(PerInstanceAdaptationConfig(**cfg))
    module.eval()
    cb.on_test_start(tr, module)
    preds = []
    for i, batch in enumerate(batches):
        batch = dict(batch)
        with torch.inference_mode():
            cb.on_test_batch_start(tr, module, batch, i)
        preds.append(batch[ADAPTED_OUTPUTS]["pose3d"])
    return cb, torch.cat(preds)


def params(module, prefix=""):
    return {n: p.detach().clone() for n, p in module.named_parameters() if n.startswith(prefix)}


def same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


BASE = dict(steps=3, copies=4, lr=1e-3)


def test_vanilla_restores_original_weights_after_every_instance():
    module = tiny_iso(**FIXED_VIEW)
    original = params(module)
    seen = []
    real_predict = module.predict

    def spy(batch):
        out = real_predict(batch)
        seen.append(params(module))  # weights used for this instance's prediction
        return out

    module.predict = spy
    cb, _ = adapt_batches(module, dict(BASE, mode="vanilla", parallel=False), [batch_of(3)])
    assert len(seen) == 3 and all(not same(s, original) for s in seen)  # adapted before predicting ...
    assert same(params(module), original)  # ... and reset afterwards
    assert cb.adapted_instances == 3


def test_vanilla_prediction_does_not_depend_on_other_instances():
    batch = batch_of(3)
    _, together = adapt_batches(tiny_iso(**FIXED_VIEW), dict(BASE, mode="vanilla", parallel=False), [batch])
    alone_batch = {k: v[2:3] for k, v in batch.items()}
    _, alone = adapt_batches(tiny_iso(**FIXED_VIEW), dict(BASE, mode="vanilla", parallel=False), [alone_batch])
    assert torch.allclose(together[2], alone[0], atol=1e-6)


def test_online_carries_weights_over():
    batch = batch_of(3)
    module = tiny_iso(**FIXED_VIEW)
    original = params(module)
    _, together = adapt_batches(module, dict(BASE, mode="online"), [batch])
    assert not same(params(module), original)
    alone_batch = {k: v[2:3] for k, v in batch.items()}
    _, alone = adapt_batches(tiny_iso(**FIXED_VIEW), dict(BASE, mode="online"), [alone_batch])
    assert not torch.allclose(together[2], alone[0], atol=1e-4)


def test_online_skip_adapts_exactly_every_k_instances_across_batches():
    module = tiny_iso(**FIXED_VIEW)
    calls = []
    real = module.adaptation_losses
    module.adaptation_losses = lambda b: calls.append(1) or real(b)
    batches = [batch_of(4, seed=s) for s in range(3)]
    batches[-1] = {k: v[:2] for k, v in batches[-1].items()}  # 10 instances in batches of 4, 4, 2
    cb, preds = adapt_batches(module, dict(BASE, mode="online", skip=3), batches)
    assert cb.adapted_instances == 4  # instances 0, 3, 6, 9
    assert len(calls) == 4 * BASE["steps"]
    assert preds.shape == (10, 17, 3)


def test_frozen_parts_do_not_move():
    module = tiny_iso(**FIXED_VIEW)
    fsl, buffers = params(module, "net.fsl_head."), {k: v.clone() for k, v in module.named_buffers()}
    adapt_batches(module, dict(BASE, mode="online"), [batch_of(4)])
    assert same(params(module, "net.fsl_head."), fsl)
    assert all(torch.equal(v, buffers[k]) for k, v in module.named_buffers())  # BatchNorm statistics frozen


@pytest.mark.parametrize("optimizer,lr,tol", [("sgd", 0.05, 1e-5), ("adam", 1e-3, 0.02)])
def test_parallel_vanilla_matches_sequential_vanilla(optimizer, lr, tol):
    batch = batch_of(5)
    cfg = dict(BASE, mode="vanilla", chunk=2, optimizer=optimizer, lr=lr)
    _, seq = adapt_batches(tiny_iso(**FIXED_VIEW), dict(cfg, parallel=False), [batch])
    _, par = adapt_batches(tiny_iso(**FIXED_VIEW), dict(cfg, parallel=True), [batch])
    unadapted = tiny_iso(**FIXED_VIEW).eval().predict(batch)["pose3d"].detach()
    change = (seq - unadapted).abs().max()
    assert change > 1e-3
    # Adam normalises near-zero gradients, so float noise moves them by up to lr: compare relative to the change
    assert (seq - par).abs().max() <= tol * change


def test_bad_settings_are_one_clear_error():
    with pytest.raises(UserError, match="adaptation.mode"):
        PerInstanceAdaptation(PerInstanceAdaptationConfig(mode="sometimes"))
    with pytest.raises(UserError, match="adaptation.skip"):
        PerInstanceAdaptation(PerInstanceAdaptationConfig(mode="vanilla", skip=10))
    with pytest.raises(UserError, match="adaptation.steps"):
        PerInstanceAdaptation(PerInstanceAdaptationConfig(steps=0))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_trainer_test_with_callback_changes_metrics_and_keeps_checkpoint(tmp_path, precision):
    module = tiny_iso()
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": module.state_dict()}, ckpt)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    before = trainer(precision=precision).test(module, loader(8, 4), verbose=False)[0]
    cb = PerInstanceAdaptation(PerInstanceAdaptationConfig(mode="online", steps=2, copies=4, lr=1e-3))
    state = {k: v.clone() for k, v in module.state_dict().items()}
    after = trainer(precision=precision, callbacks=[cb]).test(module, loader(8, 4), verbose=False)[0]
    assert cb.adapted_instances == 8
    assert all(torch.isfinite(torch.tensor(v)) for v in after.values())
    assert after["test/mpjpe"] != pytest.approx(before["test/mpjpe"], abs=1e-6)
    assert all(torch.equal(v, state[k]) for k, v in module.state_dict().items())  # restored after the run
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == digest


def test_nan_input_stops_adaptation_with_one_clear_error():
    batch = batch_of(3)
    batch["pose2d"][1, 4, 0] = float("inf")
    with pytest.raises(UserError, match=r"input 'pose2d' contains NaN or Inf \(samples \[1\]\)"):
        adapt_batches(tiny_iso(), dict(BASE, mode="online"), [batch])
    from torch.utils.data import DataLoader
    from tests.tiny import RandomPoses
    data = RandomPoses(3)
    data.pose2d[2, 0, 1] = float("nan")
    with pytest.raises(UserError, match=r"input 'pose2d' contains NaN or Inf \(samples \[2\]\)"):
        trainer().test(tiny_iso(), DataLoader(data, batch_size=3), verbose=False)
