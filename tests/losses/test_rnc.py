"""losses/rnc.py: RnC values and gradients against the official loss (float64 and float32), against a loop over
its definition (ties included), at extreme scales, with duplicate embeddings, and its one-line errors."""
import json

import pytest
import torch

from conftest import FIXTURES
from losses import RnCLoss

FIXTURE = FIXTURES / "rnc_loss_ref.json"
CASES = json.loads(FIXTURE.read_text())["cases"]


def loop_rnc_loss(features, labels, temperature):
    """Written directly from the definition, one (anchor, positive) pair at a time."""
    z = torch.cat([features[:, 0], features[:, 1]], dim=0)
    y = labels.reshape(labels.shape[0], -1).repeat(2, 1)
    n = z.shape[0]
    total = 0.0
    for i in range(n):
        sim = [-(z[i] - z[k]).norm() / temperature for k in range(n)]
        label_dist = [(y[i] - y[k]).abs().sum() for k in range(n)]
        for j in range(n):
            if j == i:
                continue
            negatives = [sim[k] for k in range(n) if k != i and label_dist[k] >= label_dist[j]]
            total = total - (sim[j] - torch.logsumexp(torch.stack(negatives), dim=0))
    return total / (n * (n - 1))


def loss_and_grad(loss_fn, features, labels):
    features = features.clone().requires_grad_(True)
    loss = loss_fn(features, labels)
    (grad,) = torch.autograd.grad(loss, features)
    return loss.detach(), grad


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c['seed']}_bs{c['bs']}")
def test_matches_official_reference_float64(case):
    features = torch.tensor(case["features"], dtype=torch.float64)
    labels = torch.tensor(case["labels"], dtype=torch.float64)
    loss, grad = loss_and_grad(RnCLoss(temperature=case["temperature"]), features, labels)
    expected_grad = torch.tensor(case["grad_features"], dtype=torch.float64)
    assert loss.dtype == torch.float64 and loss.dim() == 0
    assert abs(loss.item() - case["loss"]) <= case["atol_suggested"]["loss"]
    assert (grad - expected_grad).abs().max().item() <= case["atol_suggested"]["grad_features"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c['seed']}_bs{c['bs']}")
def test_matches_official_reference_float32(case):
    features = torch.tensor(case["features"], dtype=torch.float64).float()
    labels = torch.tensor(case["labels"], dtype=torch.float64).float()
    loss, grad = loss_and_grad(RnCLoss(temperature=case["temperature"]), features, labels)
    expected_grad = torch.tensor(case["grad_features"], dtype=torch.float64)
    assert loss.dtype == torch.float32
    assert abs(loss.item() - case["loss"]) <= case["atol_suggested_float32"]["loss"]
    assert (grad.double() - expected_grad).abs().max().item() <= case["atol_suggested_float32"]["grad_features"]


@pytest.mark.parametrize(
    "bs, dim, label_dim, temperature, seed",
    [(1, 4, 1, 2.0, 0), (3, 5, 1, 0.5, 1), (6, 8, 2, 2.0, 2), (10, 3, 3, 1.0, 3), (7, 6, 1, 2.0, 4)],
)
def test_matches_loop_definition_with_ties(bs, dim, label_dim, temperature, seed):
    gen = torch.Generator().manual_seed(seed)
    features = torch.randn(bs, 2, dim, generator=gen, dtype=torch.float64)
    # Few distinct label values -> many equal labels and equal label distances.
    labels = torch.randint(0, 4, (bs, label_dim), generator=gen).double()
    loss, grad = loss_and_grad(RnCLoss(temperature=temperature), features, labels)
    ref_loss, ref_grad = loss_and_grad(lambda f, y: loop_rnc_loss(f, y, temperature), features, labels)
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-12)


def test_batch_of_one_is_defined():
    # n = 2: each anchor has one positive, which is also its only negative -> loss 0.
    features = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    loss = RnCLoss()(features, torch.tensor([[30.0]], dtype=torch.float64))
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-15)
    assert torch.isfinite(features.grad).all()


def test_ties_change_the_result():
    # With all labels equal every other sample is a negative of every positive; with distinct
    # labels the negative sets shrink, so the loss must differ.
    features = torch.randn(5, 2, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    equal = RnCLoss()(features, torch.full((5, 1), 40.0, dtype=torch.float64))
    distinct = RnCLoss()(features, torch.arange(5, dtype=torch.float64)[:, None])
    torch.testing.assert_close(equal, loop_rnc_loss(features, torch.full((5, 1), 40.0), 2.0))
    assert abs(equal.item() - distinct.item()) > 1e-3


def test_one_dim_labels_equal_column_labels():
    features = torch.randn(4, 2, 3, dtype=torch.float64)
    labels = torch.tensor([1.0, 5.0, 5.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(RnCLoss()(features, labels), RnCLoss()(features, labels[:, None]))


@pytest.mark.parametrize("dtype, scale", [(torch.float32, 1e4), (torch.float32, 1e-4), (torch.float64, 1e6)])
def test_stable_at_extreme_feature_scales(dtype, scale):
    gen = torch.Generator().manual_seed(7)
    base = torch.randn(6, 2, 5, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, 3, (6, 1), generator=gen).double()
    features = (base * scale).to(dtype)
    loss, grad = loss_and_grad(RnCLoss(), features, labels.to(dtype))
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    # Same inputs in float64 through the loop definition (logsumexp is stable there too).
    ref = loop_rnc_loss(features.double(), labels, 2.0)
    assert abs(loss.item() - ref.item()) <= 1e-4 * max(1.0, abs(ref.item()))


@pytest.mark.parametrize("offset, spread", [(1e3, 1.0), (1e2, 1e-3), (0.0, 1e-4)])
def test_float32_accurate_for_close_points_far_from_origin(offset, spread):
    # Distances from |a|^2 + |b|^2 - 2ab in plain float32 would be off by ~1 here.
    gen = torch.Generator().manual_seed(11)
    base = torch.randn(8, 2, 64, generator=gen, dtype=torch.float64) * spread
    features = (base + offset * torch.randn(1, 1, 64, generator=gen, dtype=torch.float64)).float()
    labels = torch.randint(0, 3, (8, 1), generator=gen).double()
    loss, grad = loss_and_grad(RnCLoss(), features, labels.float())
    ref_loss, ref_grad = loss_and_grad(lambda f, y: loop_rnc_loss(f, y, 2.0), features.double(), labels)
    assert abs(loss.item() - ref_loss.item()) <= 1e-5
    assert (grad.double() - ref_grad).abs().max().item() <= 1e-7


def test_gradient_finite_with_duplicate_embeddings():
    # Two identical embeddings -> a zero off-diagonal distance; the gradient must stay finite.
    features = torch.randn(3, 2, 4, dtype=torch.float64)
    features[1, 0] = features[0, 0]
    features.requires_grad_(True)
    RnCLoss()(features, torch.tensor([[1.0], [2.0], [3.0]], dtype=torch.float64)).backward()
    assert torch.isfinite(features.grad).all()


def test_rejects_unknown_options_and_bad_shapes():
    with pytest.raises(ValueError, match="label_diff.*'l2'"):
        RnCLoss(label_diff="l2")
    with pytest.raises(ValueError, match="feature_sim.*'cos'"):
        RnCLoss(feature_sim="cos")
    with pytest.raises(ValueError, match="temperature"):
        RnCLoss(temperature=0)
    with pytest.raises(ValueError, match=r"features must be \[bs, 2, d\]"):
        RnCLoss()(torch.randn(4, 3, 8), torch.randn(4, 1))
    with pytest.raises(ValueError, match=r"labels must be \[bs, k\]"):
        RnCLoss()(torch.randn(4, 2, 8), torch.randn(5, 1))
    with pytest.raises(ValueError, match="labels contain NaN"):
        RnCLoss()(torch.randn(2, 2, 8), torch.tensor([[1.0], [float("nan")]]))
