"""Racing the confirmation's candidates: re-trainings go to the configurations that may still be the best.

A fixed confirmation (top k re-trained with r seeds each) spends k x r trainings whatever the evidence says.
A race (Maron & Moore's Hoeffding races, Birattari's F-race, SMAC's intensifier) trains the candidates one
seed at a time and drops, between rounds, those the evidence already shows to be worse than the leader, so the
same compute covers more candidates, or the same candidates for less.

The evidence is paired over val sequences, as Optuna's `WilcoxonPruner` pairs over problem instances: every
candidate predicts the same val sequences, so candidate c and the leader L give per-sequence losses (the
balanced 0/1 loss of scolio_core/evaluation/answer.py, whose mean is 1 - macro-recall), each averaged over
the seeds both have trained. c is dropped when a one-sided Wilcoxon signed-rank test (`scipy.stats.wilcoxon`,
the differences c - L, alternative "greater") gives p < alpha. Seeds are few (2-4): a test over seeds alone
has no power, one over sequences does, at the price of treating the seeds' shared sequences as the unit.

The leader is the candidate with the best mean val metric over its re-trainings (the confirmation's own
choice rule, `scolio_sweep.stages.confirm.choose`); it is never dropped. Everything here is a pure function of
the numbers it is given (no Ray, no files), so the benchmark replays exactly what a sweep does.

    alive = race_round(alive, vals, losses, alpha=0.1, mode="max")
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def leader(alive: Sequence[str], vals: Mapping[str, Sequence[float]], mode: str) -> str:
    """The alive candidate with the best mean val (`alive` is in search-rank order: a tie goes to the earlier)."""
    sign = 1.0 if mode == "max" else -1.0
    return min(alive, key=lambda c: (round(-sign * float(np.mean(vals[c])), 9), alive.index(c)))


def worse_p_value(candidate_loss: np.ndarray, leader_loss: np.ndarray) -> float:
    """One-sided p-value that `candidate_loss` is larger than `leader_loss`, paired per val sequence; 1.0 when
    they never differ (nothing to test)."""
    from scipy.stats import wilcoxon

    candidate_loss, leader_loss = (np.asarray(x, dtype=np.float64) for x in (candidate_loss, leader_loss))
    if candidate_loss.shape != leader_loss.shape or candidate_loss.ndim != 1:
        raise ValueError(f"paired losses need equal 1-d shapes, got {candidate_loss.shape} and {leader_loss.shape}")
    diff = candidate_loss - leader_loss
    if not np.any(np.abs(diff) > 1e-12):
        return 1.0
    # Sequences both get equally right or wrong carry no information about which is better: dropped
    # (Wilcoxon's own zero method): the test weighs the sequences on which the two disagree.
    p = float(wilcoxon(diff, zero_method="wilcox", alternative="greater").pvalue)
    return p if math.isfinite(p) else 1.0


def race_round(alive: Sequence[str], vals: Mapping[str, Sequence[float]], losses: Mapping[str, np.ndarray], *,
               alpha: float, mode: str) -> list[str]:
    """The candidates that go on after a round: the leader, and every other alive candidate whose paired test
    against it does not reject at `alpha`. `vals[c]`: c's val metric per re-training so far; `losses[c]`: c's
    per-sequence loss averaged over the same re-trainings."""
    alive = list(alive)
    if len(alive) <= 1:
        return alive
    best = leader(alive, vals, mode)
    return [c for c in alive if c == best or worse_p_value(losses[c], losses[best]) >= alpha]
