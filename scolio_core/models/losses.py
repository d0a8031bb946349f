"""Training losses of ScoNet-MT / DRF: batch-all triplet on part embeddings + label-smoothed part CE.

The triplet loss groups by *sequence* (a P x K batch holds K clips of each of P sequences), the CE by
class. Both are computed in float32 whatever autocast produced.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from scolio_core import CLASS_NAMES
from scolio_core.config import LossConfig
from scolio_core.errors import DataError


def pairwise_distances(embeddings: Tensor) -> Tensor:
    """Per-part Euclidean distances: (n, c, p) -> (p, n, n).

    The squared distance is clamped away from 0 before the square root so that the (unused) diagonal
    never sends an infinite gradient.
    """
    x = embeddings.float().permute(2, 0, 1)  # (p, n, c)
    sq = x.pow(2).sum(-1)  # (p, n)
    d2 = sq.unsqueeze(2) + sq.unsqueeze(1) - 2.0 * x.matmul(x.transpose(1, 2))
    return d2.clamp_min(1e-12).sqrt()


def batch_all_triplet_loss(embeddings: Tensor, seq_index: Tensor, margin: float) -> tuple[Tensor, Tensor]:
    """Batch-all triplet loss over every valid (anchor, positive, negative) and every part.

    Valid: positive has the anchor's sequence id and is not the anchor itself; negative has another id.
    Per part, the hinge losses are averaged over the triplets with non-zero loss (0 when there are none),
    then averaged over parts.

    Returns (loss, fraction of valid triplets with non-zero loss).
    """
    dist = pairwise_distances(embeddings)  # (p, n, n)
    n = dist.shape[1]
    same = seq_index.view(-1, 1) == seq_index.view(1, -1)  # (n, n)
    positive = same & ~torch.eye(n, dtype=torch.bool, device=dist.device)
    valid = positive.unsqueeze(2) & ~same.unsqueeze(1)  # (a, pos, neg)
    hinge = F.relu(dist.unsqueeze(3) - dist.unsqueeze(2) + margin) * valid  # (p, a, pos, neg)
    hinge = hinge.flatten(1)
    nonzero = (hinge > 0).sum(dim=1).float()  # (p,)
    per_part = hinge.sum(dim=1) / nonzero.clamp_min(1.0)  # 0 where no triplet is active
    total_valid = valid.sum().float() * dist.shape[0]
    fraction = nonzero.sum() / total_valid if total_valid > 0 else nonzero.sum() * 0.0
    return per_part.mean(), fraction.detach()


def part_cross_entropy(logits: Tensor, labels: Tensor, scale: float, label_smoothing: float,
                       weight: Tensor | None = None) -> Tensor:
    """CE of every part's scaled cosine logits against the sequence label: logits (n, classes, p)."""
    n, _, p = logits.shape
    targets = labels.view(n, 1).expand(n, p)
    return F.cross_entropy(scale * logits.float(), targets, weight=weight, label_smoothing=label_smoothing)


def class_weights_for(cfg: LossConfig, train_labels: np.ndarray | Tensor | list[int]) -> Tensor | None:
    """CE class weights: None for `plain`; for `weighted`, `cfg.class_weights` as given, otherwise the
    inverse class frequency of the training labels normalised to mean 1."""
    if cfg.class_weighting == "plain":
        return None
    if cfg.class_weights is not None:
        return torch.tensor(cfg.class_weights, dtype=torch.float32)
    labels = np.asarray(train_labels, dtype=np.int64).ravel()
    counts = np.bincount(labels, minlength=len(CLASS_NAMES))[:len(CLASS_NAMES)]
    missing = [CLASS_NAMES[i] for i, c in enumerate(counts) if c == 0]
    if missing:
        raise DataError(f"loss.class_weighting 'weighted' needs every class in the training labels; "
                        f"no {', '.join(missing)} among {len(labels)} training sequences "
                        "(set loss.class_weights explicitly)")
    inverse = 1.0 / counts.astype(np.float64)
    return torch.tensor(inverse / inverse.mean(), dtype=torch.float32)


class ScoNetLoss:
    """`(outputs, labels, seq_index) -> (total, {"triplet", "ce", "triplet_nonzero"})`.

    total = triplet_weight * triplet + ce_weight * CE; the dict holds detached floats for logging.
    """

    def __init__(self, cfg: LossConfig, class_weights: Tensor | None = None):
        self.cfg = cfg
        self.class_weights = None if class_weights is None else class_weights.float()

    def __call__(self, outputs: dict[str, Tensor], labels: Tensor,
                 seq_index: Tensor) -> tuple[Tensor, dict[str, float]]:
        cfg = self.cfg
        triplet, nonzero = batch_all_triplet_loss(outputs["embeddings"], seq_index, cfg.margin)
        weight = self.class_weights
        if weight is not None and weight.device != labels.device:
            weight = weight.to(labels.device)
        ce = part_cross_entropy(outputs["logits"], labels, cfg.scale, cfg.label_smoothing, weight)
        total = cfg.triplet_weight * triplet + cfg.ce_weight * ce
        return total, {"triplet": float(triplet.detach()), "ce": float(ce.detach()),
                       "triplet_nonzero": float(nonzero)}
