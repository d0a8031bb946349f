"""benchmarks/selection.py on small draws with known answers: the confirmation replay (fixed and racing), the
ensemble's true score, regret, and the stability count."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/ is a folder of scripts, not installed
selection = pytest.importorskip("benchmarks.selection")
search = pytest.importorskip("benchmarks.search")

T = 12  # val sequences: 4 per class
LABELS = np.repeat(np.arange(3), 4)
POPULATION = np.repeat(np.arange(3), 10)  # 10 per class


def logits_for(labels: np.ndarray, wrong: int, seed: int) -> np.ndarray:
    """Logits that classify `labels` right except the first `wrong` sequences (predicted one class up)."""
    out = np.random.default_rng(seed).normal(0, 0.01, (len(labels), 3)).astype(np.float32)
    predicted = labels.copy()
    predicted[:wrong] = (predicted[:wrong] + 1) % 3
    out[np.arange(len(labels)), predicted] += 1.0
    return out


def model(val_wrong: int, population_wrong: int, seed: int) -> selection.Model:
    val = logits_for(LABELS, val_wrong, seed)
    population = logits_for(POPULATION, population_wrong, seed)
    confusion = np.zeros((3, 3), dtype=int)
    np.add.at(confusion, (POPULATION, population.argmax(axis=1)), 1)
    score = 1 - val_wrong / T
    return selection.Model([score * 0.5, score], {1: 1, 2: 2}, {2: confusion.tolist()}, {1: val, 2: val}, population)


def draw(errors: dict[str, list[tuple[int, int]]]) -> selection.Draw:
    """A draw of 3 seeds; errors[point][k] = (val errors, population errors) of seed k."""
    seeds = [0, 1, 2]
    models = {s: {key: model(*errors[key][k], seed=s) for key, _ in errors.items()} for k, s in enumerate(seeds)}
    reports = {s: {key: [[e + 1, 10 * (e + 1), v, 1.0] for e, v in enumerate(models[s][key].curve)]
                   for key in errors} for s in seeds}
    return selection.Draw("d", seeds, models, reports)


def trials(d: selection.Draw, keys: list[str]) -> list:
    return [search.TrialRecord(k, k, {}, [tuple(r) for r in d.reports[d.search_seed][k]], "finished") for k in keys]


def test_racing_drops_a_clearly_worse_candidate_and_the_ensemble_is_what_is_tested():
    # a is best on the search seed but bad on new seeds; b is good everywhere; c is clearly worse everywhere
    d = draw({"a": [(0, 0), (9, 9), (9, 9)], "b": [(1, 1), (1, 2), (1, 0)], "c": [(2, 9), (8, 9), (8, 9)]})
    found = trials(d, ["a", "b", "c"])
    fixed = selection.confirm_replay("f", d, 0, found, selection.ConfirmRule(3, 2, "fixed"), LABELS)
    raced = selection.confirm_replay("r", d, 0, found, selection.ConfirmRule(3, 2, "racing", alpha=0.5), LABELS)
    assert fixed.artifact == raced.artifact == selection.Artifact("b", (1, 2))
    assert fixed.trainings == pytest.approx(3 + 6) and raced.trainings < fixed.trainings  # a and c left after round 1
    assert ("a", 2, None) not in raced.evidence and ("b", 2, None) in raced.evidence
    single = selection.confirm_replay("s", d, 0, found, selection.ConfirmRule(3, 2, "fixed", tested="first-seed"),
                                      LABELS)
    assert single.artifact == selection.Artifact("b", (1,))


def test_the_ensemble_is_scored_from_its_mean_logits_and_regret_is_against_the_truth_draw():
    d = draw({"a": [(0, 0), (0, 6), (0, 0)], "b": [(3, 3), (3, 3), (3, 3)]})
    perfect = [[10, 0, 0], [0, 10, 0], [0, 0, 10]]
    truth = selection.Truth({7: {"a": perfect, "b": perfect}}, POPULATION, [10, 10, 10], [4, 4, 4])
    assert truth.best == pytest.approx(1.0)
    from sklearn.metrics import f1_score

    mean = np.mean([d.model(s, "a").population_logits for s in (1, 2)], axis=0)
    # at the population's own mix (10/10/10) the reweighted score is plain macro-F1 of the mean logits' argmax
    expected = f1_score(POPULATION, mean.argmax(axis=1), average="macro")
    ensemble = truth.artifact(d, selection.Artifact("a", (1, 2)))
    assert ensemble == pytest.approx(expected)
    single = truth.artifact(d, selection.Artifact("a", (1,)))
    assert single == pytest.approx(f1_score(POPULATION, d.model(1, "a").population_logits.argmax(axis=1),
                                            average="macro"))
    assert single < ensemble  # seed 1 alone gets 6 wrong; seed 2's right answers win some of them back
    # the same-size reference: the best point's mean over every pair of the (other) draw's seeds
    pairs = {p: np.mean([truth.artifact(d, selection.Artifact(p, pair)) for pair in ((0, 1), (0, 2), (1, 2))])
             for p in ("a", "b")}
    assert truth.best_of_kind(d, 2) == pytest.approx(max(pairs.values()))
    assert truth.best_of_kind(d, 1) == pytest.approx(max(
        np.mean([truth.artifact(d, selection.Artifact(p, (k,))) for k in (0, 1, 2)]) for p in ("a", "b")))
    run = selection.Run("m", "d", 0, selection.Artifact("a", (1,)), 3.0, 1.0)
    scored = selection.score(run, d, truth)
    assert scored.regret == pytest.approx(1.0 - scored.true) and scored.config_regret == pytest.approx(0.0)


def test_stability_counts_the_second_selection_inside_the_first_best_set():
    d = draw({"a": [(0, 0)] * 3, "b": [(0, 0)] * 3})
    truth = selection.Truth({7: {"a": [[10, 0, 0], [0, 10, 0], [0, 0, 10]]} | {"b": [[10, 0, 0]] * 3}},
                            POPULATION, [10, 10, 10], [4, 4, 4])
    runs_a = {0: selection.Run("m", "d", 0, selection.Artifact("a", (1, 2)), 3, 1.0),
              1: selection.Run("m", "d", 1, selection.Artifact("a", (1, 2)), 3, 1.0)}
    runs_b = {0: selection.Run("m", "d", 0, selection.Artifact("a", (1, 2)), 3, 1.0),
              1: selection.Run("m", "d", 1, selection.Artifact("b", (1, 2)), 3, 1.0)}
    inside, close, pairs = selection.stability(runs_a, runs_b, {0: ["a"], 1: ["a"]}, truth, {"d": d})
    assert (inside, close, pairs) == (1, 2, 2)  # seed 1's second run chose b, outside {a}; both score alike
