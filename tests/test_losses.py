"""Triplet and CE losses against brute-force references; class weights."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from scolio_core.config import LossConfig
from scolio_core.errors import DataError
from scolio_core.models.losses import (
    ScoNetLoss,
    batch_all_triplet_loss,
    class_weights_for,
    part_cross_entropy,
)

torch.set_num_threads(1)


def brute_force_triplet(embeddings: torch.Tensor, ids: list[int], margin: float) -> tuple[float, float]:
    """Loop over parts and (a, p, n): mean of non-zero hinge losses per part, then mean over parts."""
    n, _, parts = embeddings.shape
    part_losses, active, total = [], 0, 0
    for k in range(parts):
        x = embeddings[:, :, k].double()
        losses = []
        for a, p, q in itertools.product(range(n), repeat=3):
            if a == p or ids[a] != ids[p] or ids[a] == ids[q]:
                continue
            value = max(0.0, float((x[a] - x[p]).norm() - (x[a] - x[q]).norm()) + margin)
            total += 1
            if value > 0:
                losses.append(value)
        active += len(losses)
        part_losses.append(sum(losses) / len(losses) if losses else 0.0)
    return sum(part_losses) / parts, active / total


def test_triplet_matches_brute_force() -> None:
    torch.manual_seed(0)
    ids = [0, 0, 1, 1, 1, 2, 2, 3]  # uneven K, as a tail of a sampler could give
    embeddings = torch.randn(len(ids), 5, 3) * 0.3
    loss, fraction = batch_all_triplet_loss(embeddings, torch.tensor(ids), margin=0.2)
    ref_loss, ref_fraction = brute_force_triplet(embeddings, ids, 0.2)
    assert math.isclose(float(loss), ref_loss, rel_tol=1e-5)
    assert math.isclose(float(fraction), ref_fraction, rel_tol=1e-6)
    assert 0 < ref_fraction < 1  # the case exercises both active and inactive triplets


def test_triplet_zero_when_separated_or_no_valid_triplet() -> None:
    ids = torch.tensor([0, 0, 1, 1])
    far = torch.zeros(4, 2, 2)
    far[2:] += 10.0
    loss, fraction = batch_all_triplet_loss(far.requires_grad_(), ids, margin=0.2)
    assert float(loss.detach()) == 0.0 and float(fraction) == 0.0
    loss.backward()  # zero loss keeps a graph and finite gradients
    single = torch.randn(3, 2, 2, requires_grad=True)
    loss, fraction = batch_all_triplet_loss(single, torch.tensor([0, 1, 2]), margin=0.2)
    assert float(loss.detach()) == 0.0 and float(fraction) == 0.0


def test_triplet_gradient_finite_with_identical_clips() -> None:
    embeddings = torch.ones(4, 3, 2, requires_grad=True)  # all distances 0: sqrt at 0 must not give NaN
    loss, _ = batch_all_triplet_loss(embeddings, torch.tensor([0, 0, 1, 1]), margin=0.2)
    loss.backward()
    assert math.isclose(float(loss.detach()), 0.2, rel_tol=1e-4)
    assert torch.isfinite(embeddings.grad).all()


def smoothed_ce_reference(logits: torch.Tensor, label: int, eps: float) -> float:
    logp = torch.log_softmax(logits.double(), dim=0)
    return float(-(1 - eps) * logp[label] - eps * logp.mean())


def test_part_ce_matches_label_smoothing_formula() -> None:
    torch.manual_seed(1)
    logits = torch.rand(5, 3, 4) * 2 - 1
    labels = torch.tensor([0, 1, 2, 2, 1])
    loss = part_cross_entropy(logits, labels, scale=16.0, label_smoothing=0.1)
    reference = np.mean([smoothed_ce_reference(16.0 * logits[i, :, k], int(labels[i]), 0.1)
                         for i in range(5) for k in range(4)])
    assert math.isclose(float(loss), reference, rel_tol=1e-5)


def test_weighted_part_ce_matches_per_part_cross_entropy() -> None:
    torch.manual_seed(2)
    logits = torch.rand(6, 3, 4) * 2 - 1
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    weight = torch.tensor([0.5, 2.0, 1.0])
    loss = part_cross_entropy(logits, labels, scale=16.0, label_smoothing=0.1, weight=weight)
    per_part = [F.cross_entropy(16.0 * logits[:, :, k], labels, weight=weight, label_smoothing=0.1)
                for k in range(4)]
    assert math.isclose(float(loss), float(torch.stack(per_part).mean()), rel_tol=1e-5)
    unweighted = part_cross_entropy(logits, labels, scale=16.0, label_smoothing=0.1)
    assert not math.isclose(float(loss), float(unweighted), rel_tol=1e-3)


def test_class_weights() -> None:
    labels = np.array([0] * 6 + [1] * 2 + [2] * 4)
    assert class_weights_for(LossConfig(), labels) is None
    weights = class_weights_for(LossConfig(class_weighting="weighted"), labels)
    inverse = np.array([1 / 6, 1 / 2, 1 / 4])
    np.testing.assert_allclose(weights.numpy(), inverse / inverse.mean(), rtol=1e-6)
    assert math.isclose(float(weights.mean()), 1.0, rel_tol=1e-6)
    given = class_weights_for(LossConfig(class_weighting="weighted", class_weights=(1.0, 3.0, 2.0)), labels)
    assert given.tolist() == [1.0, 3.0, 2.0]
    with pytest.raises(DataError, match="no neutral"):
        class_weights_for(LossConfig(class_weighting="weighted"), np.array([0, 2, 2]))


def test_sconet_loss_combines_weighted_terms() -> None:
    torch.manual_seed(3)
    outputs = {"embeddings": torch.randn(4, 6, 2, requires_grad=True),
               "logits": (torch.rand(4, 3, 2) * 2 - 1).requires_grad_()}
    labels, seq = torch.tensor([0, 0, 2, 2]), torch.tensor([0, 0, 1, 1])
    cfg = LossConfig(triplet_weight=0.5, ce_weight=2.0)
    total, parts = ScoNetLoss(cfg)(outputs, labels, seq)
    assert set(parts) == {"triplet", "ce", "triplet_nonzero"}
    assert math.isclose(float(total.detach()), 0.5 * parts["triplet"] + 2.0 * parts["ce"], rel_tol=1e-6)
    total.backward()
    assert outputs["embeddings"].grad.abs().sum() > 0 and outputs["logits"].grad.abs().sum() > 0
