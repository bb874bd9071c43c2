import math

import pytest
import torch

from geometry.skeletons import H36M17
from lightning_modules.iso_losses import SSLConfig, fit_projection_scale, fsl_loss, ssl_losses
from tests.tiny import batch_of, tiny_iso


def test_fsl_loss_is_joint_mse_when_bones_agree():
    target = torch.randn(2, 17, 3)
    pred = target + 0.1  # a shift leaves every bone vector unchanged
    assert fsl_loss(pred, target, H36M17).item() == pytest.approx(0.01, rel=1e-5)


def test_fsl_loss_counts_bone_errors():
    target = torch.zeros(1, 17, 3)
    pred = target.clone()
    pred[0, 3, 0] = 1.0  # right ankle moved: one joint and one bone (ankle - knee) off by 1
    expected = 1.0 / (17 * 3) + 1.0 / (16 * 3)
    assert fsl_loss(pred, target, H36M17).item() == pytest.approx(expected, rel=1e-5)


def test_projection_scale_is_recovered():
    pose3d = torch.randn(3, 17, 3)
    scale = torch.tensor([0.5, 1.0, 2.0])
    assert torch.allclose(fit_projection_scale(pose3d[..., :2] * scale[:, None, None], pose3d), scale, atol=1e-5)


class Flat(torch.nn.Module):
    """A lifter with zero depth: consistent under the identity view, not under others."""

    def forward(self, x):
        return torch.cat([x, torch.zeros_like(x[..., :1])], dim=-1)


def test_cycle_terms_vanish_for_a_consistent_lifter_and_identity_view():
    torch.manual_seed(0)
    x = torch.randn(4, 17, 2) * 0.2
    x = x - x[:, :1]
    disc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(34, 1), torch.nn.Flatten(0))
    still = SSLConfig(kind="cycle", azimuth_deg=(0.0, 0.0), elevation_deg=(0.0, 0.0))
    adv = SSLConfig(kind="adversary", azimuth_deg=(0.0, 0.0), elevation_deg=(0.0, 0.0))
    cyc = ssl_losses(x, Flat(), disc, 0, still)["generator"]
    only_adv = ssl_losses(x, Flat(), disc, 0, adv)["generator"]
    assert cyc.item() == pytest.approx(only_adv.item(), abs=1e-6)
    turned = SSLConfig(kind="cycle", azimuth_deg=(90.0, 90.0), elevation_deg=(0.0, 0.0))
    assert ssl_losses(x, Flat(), disc, 0, turned)["generator"].item() > only_adv.item() + 1e-3


def test_adaptation_groups_leave_fsl_head_out():
    module = tiny_iso()
    groups = module.adaptation_groups()
    names = {n for g in groups.values() for n in g}
    assert all(not n.startswith("net.fsl_head.") for n in names)
    assert any(n.startswith("net.extractor.") for n in groups["generator"])
    assert any(n.startswith("net.ssl_head.") for n in groups["generator"])
    assert all(n.startswith("net.discriminator.") for n in groups["discriminator"])


def _one_training_step(module):
    import pytorch_lightning as pl
    from tests.tiny import loader
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer.fit(module, train_dataloaders=loader(8, 8))
    after = module.state_dict()
    return lambda prefix: any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix))


def test_joint_training_updates_heads_and_discriminator():
    changed = _one_training_step(tiny_iso())
    assert changed("net.fsl_head.") and changed("net.ssl_head.") and changed("net.discriminator.")


def test_fsl_only_baseline_leaves_ssl_parts_alone():
    changed = _one_training_step(tiny_iso(ssl="none"))
    assert changed("net.fsl_head.") and changed("net.extractor.")
    assert not changed("net.ssl_head.") and not changed("net.discriminator.")


def test_flip_test_prediction_is_mirror_symmetric():
    module = tiny_iso().eval()
    batch = batch_of(2)
    from geometry.skeletons import flip_horizontal
    mirrored = dict(batch, pose2d=flip_horizontal(batch["pose2d"], H36M17))
    with torch.no_grad():
        a = module.predict(batch)["pose3d"]
        b = module.predict(mirrored)["pose3d"]
    assert torch.allclose(flip_horizontal(b, H36M17), a, atol=1e-5)


def test_nan_input_is_rejected_in_training():
    module = tiny_iso()
    batch = batch_of(2)
    batch["pose2d"][0, 3, 1] = math.nan
    with pytest.raises(ValueError, match=r"input 'pose2d' contains NaN or Inf \(samples \[0\]\)"):
        module.check_batch(batch)
