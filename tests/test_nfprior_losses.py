"""The weak-supervision losses of Zanfir et al. 2020: keypoint alignment and the body-part
alignment of eq. (7), checked against hand computations and a brute-force distance matrix."""
import pytest
import torch

from framework.errors import UserError
from lightning_modules.nfprior_losses import keypoint_alignment, mask_pixels, part_alignment, part_masks_from_labels


def reference_part_alignment(verts, vertex_parts, masks, reduction="mean"):
    """Eq. (7) the slow way: the full pixel x vertex distance matrix of every (image, part)."""
    fwd, bwd = [], []
    for b in range(verts.shape[0]):
        f = b_ = verts.new_zeros(())
        nf = nb = 0
        for k in range(masks.shape[1]):
            pix = masks[b, k].nonzero()[:, [1, 0]].to(verts.dtype)  # (row, col) -> (x, y)
            vk = verts[b, vertex_parts == k]
            if len(pix) == 0 or len(vk) == 0:
                continue
            d = (pix[:, None] - vk[None]).norm(dim=-1)
            f = f + d.min(dim=1).values.sum()
            b_ = b_ + d.min(dim=0).values.sum()
            nf, nb = nf + len(pix), nb + len(vk)
        if reduction == "mean":
            f, b_ = f / max(nf, 1), b_ / max(nb, 1)
        fwd.append(f)
        bwd.append(b_)
    return torch.stack(fwd), torch.stack(bwd)


def random_case(seed=0):
    """B=2 images of 12x12, 3 parts, 30 vertices; image 1 has no pixel of part 2."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(-1, 3, (2, 12, 12), generator=g)
    labels[1][labels[1] == 2] = -1
    verts = torch.rand(2, 30, 2, generator=g, dtype=torch.float64) * 13 - 0.5
    vertex_parts = torch.arange(30) % 3
    return verts, vertex_parts, labels


# --- keypoint alignment -------------------------------------------------------------------------

def test_keypoint_alignment_weights_joints_by_confidence():
    target = torch.zeros(2, 3, 2)
    projected = torch.tensor([[[1.0, 2.0], [3.0, 0.0], [10.0, 0.0]]] * 2)  # squared errors 5, 9, 100
    confidence = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    got = keypoint_alignment(projected, target, confidence)
    assert got[0].item() == pytest.approx((5 * 1.0 + 9 * 0.5) / 1.5)  # the zero-weight joint is ignored
    assert got[1].item() == 0.0  # no confident joint: nothing to align, not NaN
    assert keypoint_alignment(projected, target).tolist() == pytest.approx([38.0, 38.0])


def test_keypoint_alignment_refuses_nan_and_mismatched_shapes():
    projected, target = torch.zeros(2, 3, 2), torch.zeros(2, 3, 2)
    with pytest.raises(UserError, match=r"target.*\(2, 4, 2\)"):
        keypoint_alignment(projected, torch.zeros(2, 4, 2))
    with pytest.raises(UserError, match="target holds NaN"):
        keypoint_alignment(projected, torch.full_like(target, float("nan")))
    with pytest.raises(UserError, match="confidence holds NaN"):
        keypoint_alignment(projected, target, torch.tensor([[1.0, float("nan"), 1.0]] * 2))
    with pytest.raises(UserError, match=r"confidence must have shape \(2, 3\)"):
        keypoint_alignment(projected, target, torch.ones(2, 3, 1))


# --- part alignment -----------------------------------------------------------------------------

def test_part_alignment_is_zero_when_pixels_and_vertices_coincide():
    # (x, y) pixel centres; asymmetric so that swapping x and y would not give zero.
    part0 = [(1, 0), (2, 0), (3, 1)]
    part1 = [(6, 2), (6, 3)]
    labels = torch.full((1, 5, 8), -1)
    for k, points in enumerate((part0, part1)):
        for x, y in points:
            labels[0, y, x] = k
    verts = torch.tensor([part0 + part1 + [(3, 1)]], dtype=torch.float32, requires_grad=True)
    vertex_parts = torch.tensor([0, 0, 0, 1, 1, 0])  # a duplicate vertex is fine
    for masks in (labels, part_masks_from_labels(labels, 2)):
        for reduction in ("mean", "sum"):
            terms = part_alignment(verts, vertex_parts, masks, chunk=2, reduction=reduction, return_terms=True)
            assert terms.forward.item() == 0.0 and terms.backward.item() == 0.0 and terms.total.item() == 0.0
    (grad,) = torch.autograd.grad(part_alignment(verts, vertex_parts, labels).sum(), verts)
    assert torch.equal(grad, torch.zeros_like(grad))  # a subgradient at zero distance, not NaN
    # One pixel to the right of where the convention puts it: no longer zero.
    shifted = verts.detach() + torch.tensor([1.0, 0.0])
    assert part_alignment(shifted, vertex_parts, labels).item() > 0.5


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("fmt", ["labels", "masks"])
def test_part_alignment_matches_brute_force(fmt, reduction):
    verts, vertex_parts, labels = random_case()
    if fmt == "labels":
        masks, ref_masks = labels, part_masks_from_labels(labels, 3)
    else:  # independent, overlapping masks: a format a label map cannot express
        masks = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(1)) < 0.3
        masks[1, 2] = False
        ref_masks = masks
    assert ref_masks[0].sum() > 7  # the chunk below is smaller than the pixels of a part
    terms = part_alignment(verts, vertex_parts, masks, chunk=7, reduction=reduction, return_terms=True)
    fwd, bwd = reference_part_alignment(verts, vertex_parts, ref_masks, reduction)
    assert terms.forward.shape == (2,)
    assert torch.allclose(terms.forward, fwd, atol=1e-5, rtol=0)
    assert torch.allclose(terms.backward, bwd, atol=1e-5, rtol=0)
    assert torch.allclose(terms.total, fwd + bwd, atol=1e-5, rtol=0)
    assert (fwd > 0).all() and (bwd > 0).all()


def test_pixels_made_once_give_the_same_loss_and_gradient():
    verts, vertex_parts, labels = random_case(seed=4)
    verts.requires_grad_(True)
    plain = part_alignment(verts, vertex_parts, labels, chunk=5)
    reused = part_alignment(verts, vertex_parts, labels, chunk=5, pixels=mask_pixels(labels, 3, verts.dtype))
    assert torch.equal(plain, reused)
    assert torch.equal(*(torch.autograd.grad(x.sum(), verts)[0] for x in (plain, reused)))
    with pytest.raises(UserError, match="pixels were made for 2 parts, the masks have 3"):
        part_alignment(verts, vertex_parts, labels, pixels=mask_pixels(labels, 2))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_part_alignment_gradient_matches_brute_force(reduction):
    verts, vertex_parts, labels = random_case(seed=3)
    verts.requires_grad_(True)
    weights = torch.tensor([1.0, 2.0], dtype=torch.float64)  # distinct per image: catches batch mix-ups
    terms = part_alignment(verts, vertex_parts, labels, chunk=5, reduction=reduction, return_terms=True)
    fwd, bwd = reference_part_alignment(verts, vertex_parts, part_masks_from_labels(labels, 3), reduction)
    for ours, ref in ((terms.forward, fwd), (terms.backward, bwd)):
        (g_ours,) = torch.autograd.grad((ours * weights).sum(), verts, retain_graph=True)
        (g_ref,) = torch.autograd.grad((ref * weights).sum(), verts, retain_graph=True)
        assert g_ref.abs().sum() > 0
        assert torch.allclose(g_ours, g_ref, atol=1e-6, rtol=0)


def test_gradient_descent_pulls_a_displaced_part_onto_its_mask():
    labels = torch.full((1, 32, 32), -1)
    labels[0, 4:10, 4:10] = 0
    labels[0, 18:24, 16:22] = 1  # rows (y) 18..23, columns (x) 16..21
    ys, xs = torch.meshgrid(torch.arange(6.0), torch.arange(6.0), indexing="ij")
    square = torch.stack([xs.flatten(), ys.flatten()], dim=-1)
    part0 = square + torch.tensor([4.0, 4.0])
    part1 = square + torch.tensor([16.0 + 5.0, 18.0])  # 5 px to the right of its mask
    verts = torch.cat([part0, part1])[None].clone().requires_grad_(True)
    vertex_parts = torch.tensor([0] * 36 + [1] * 36)
    centroid = torch.tensor([18.5, 20.5])
    start_loss = part_alignment(verts, vertex_parts, labels, chunk=16).item()
    start_offset = (verts[0, 36:].mean(0) - centroid).norm().item()
    for _ in range(30):
        loss = part_alignment(verts, vertex_parts, labels, chunk=16).sum()
        (grad,) = torch.autograd.grad(loss, verts)
        with torch.no_grad():
            verts -= 20.0 * grad
    end_loss = part_alignment(verts, vertex_parts, labels).item()
    end_offset = (verts[0, 36:].mean(0) - centroid).norm().item()
    assert start_offset == pytest.approx(5.0)
    assert end_loss < 0.5 * start_loss
    assert end_offset < 0.5 * start_offset
    assert torch.allclose(verts[0, :36], part0)  # the aligned part did not move


def test_a_part_absent_from_the_mask_contributes_nothing():
    verts, vertex_parts, labels = random_case(seed=5)
    verts.requires_grad_(True)
    labels[0][labels[0] == 1] = -1  # image 0: no pixel of part 1 (image 1 already lacks part 2)
    terms = part_alignment(verts, vertex_parts, labels, chunk=4, reduction="sum", return_terms=True)
    assert torch.isfinite(terms.total).all()
    keep = vertex_parts != 1
    without = part_alignment(verts[:, keep], vertex_parts[keep], labels, reduction="sum", return_terms=True)
    assert terms.backward[0].item() == pytest.approx(without.backward[0].item())
    (grad,) = torch.autograd.grad(terms.total.sum(), verts)
    assert torch.equal(grad[0, vertex_parts == 1], torch.zeros(10, 2, dtype=grad.dtype))
    assert torch.isfinite(grad).all()
    empty = part_alignment(verts, vertex_parts, torch.full_like(labels, -1), return_terms=True)
    assert empty.total.tolist() == [0.0, 0.0]


def test_part_alignment_refuses_bad_inputs():
    verts, vertex_parts, labels = random_case()
    with pytest.raises(UserError, match=r"part_masks \(3, 12, 12\).*projected_vertices \(2, 30, 2\)"):
        part_alignment(verts, vertex_parts, torch.cat([labels, labels[:1]]))
    with pytest.raises(UserError, match=r"part_masks must be .*got \(12, 12\)"):
        part_alignment(verts, vertex_parts, labels[0])
    nan = verts.clone()
    nan[1, 4, 0] = float("nan")
    with pytest.raises(UserError, match=r"projected_vertices holds NaN.*\(2, 30, 2\)"):
        part_alignment(nan, vertex_parts, labels)
    with pytest.raises(UserError, match=r"vertex_parts must have shape \(V,\) = \(30,\).*got \(29,\)"):
        part_alignment(verts, vertex_parts[:29], labels)
    with pytest.raises(UserError, match=r"vertex_parts must lie in \[0, 3\)"):
        part_alignment(verts, vertex_parts + 1, part_masks_from_labels(labels, 3))
    with pytest.raises(UserError, match="part_masks labels"):
        part_alignment(verts, vertex_parts, labels, num_parts=2)
    with pytest.raises(UserError, match="must be bool"):
        part_alignment(verts, vertex_parts, part_masks_from_labels(labels, 3).float())
