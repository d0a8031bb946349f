"""Pure helpers of benchmarks/search.py: the grid, point names, cost accounting and the grid's expected cost."""

from __future__ import annotations

import importlib.util
import itertools
import statistics
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_search", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class body runs
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def test_grid_skips_sigma_for_silhouettes(bench):
    points = bench.grid_points(bench.SPACE)
    # (2 skeleton representations x 2 sigmas + silhouette) x 2 weightings x 3 learning rates
    assert len(points) == 30
    assert len({bench.point_key(p) for p in points}) == 30
    assert all("input.sigma" not in p for p in points if p["input.representation"] == "silhouette")
    assert all("input.sigma" in p for p in points if p["input.representation"] != "silhouette")
    assert len(bench.grid_points(bench.QUICK_SPACE)) == 6


def test_point_key_ignores_fixed_keys_and_silhouette_sigma(bench):
    trial_config = {"input.representation": "silhouette", "input.sigma": 8.0, "loss.class_weighting": "plain",
                    "train.lr": 0.1, "model.width": 8}
    assert bench.point_key(trial_config) == "silhouette plain lr 0.1"
    skeleton = {**trial_config, "input.representation": "body-only", "input.sigma": 2}
    assert bench.point_key(skeleton) == "body-only sigma 2 plain lr 0.1"
    assert bench.point_key(skeleton) != bench.point_key({**skeleton, "input.sigma": 4.0})


def test_cost_to_target_counts_completion_order_until_the_target(bench):
    trials = [(24, 0.40), (240, 0.55), (48, 0.61), (240, 0.70)]
    assert bench.cost_to_target(trials, 0.61) == (312, 552, 0.70)
    assert bench.cost_to_target(trials, 0.40) == (24, 552, 0.70)
    reached, total, best = bench.cost_to_target(trials, 0.80)
    assert reached is None and total == 552 and best == 0.70
    assert bench.charged(reached, total) == 552
    assert bench.charged(312, 552) == 312


def test_grid_expected_trials_matches_enumeration(bench):
    # Brute force over every order of N points with k tied winners: mean position of the first winner.
    for n, k in [(5, 1), (5, 2), (6, 3)]:
        marks = [1] * k + [0] * (n - k)
        positions = [order.index(1) + 1 for order in set(itertools.permutations(marks))]
        assert bench.grid_expected_trials(n, k) == pytest.approx(statistics.mean(positions))
    with pytest.raises(ValueError):
        bench.grid_expected_trials(3, 0)


def test_rungs_are_the_sweeps_own(bench):
    assert bench.rung_milestones(10, 2, 3) == [2, 6]
    assert bench.rung_milestones(10, 1, 3) == [1, 3, 9]
    assert bench.rung_milestones(4, 1, 2) == [1, 2]


def test_budget_agreement_ranks_points_and_prices_the_bracket(bench):
    def records(bests: dict[str, float], steps: int):
        return [bench.TrialRecord(k, k, {}, [(1, steps, v, 1.0)], "finished") for k, v in bests.items()]

    full = records({"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5, "f": 0.4}, 240)
    same_order = bench.budget_agreement(records({"a": 0.5, "b": 0.45, "c": 0.4, "d": 0.3, "e": 0.2, "f": 0.1}, 80), full)
    assert same_order["spearman"] == pytest.approx(1.0) and same_order["best_kept"] == 1.0
    assert same_order["top3_kept"] == pytest.approx(2 / 3)  # top third of 6 = 2 points: a and b, not c
    assert same_order["bracket_cost"] == pytest.approx((6 * 80 + 2 * 240) / (6 * 240))
    reversed_order = bench.budget_agreement(records({"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": 0.5, "f": 0.6}, 80),
                                            full)
    assert reversed_order["spearman"] == pytest.approx(-1.0) and reversed_order["best_kept"] == 0.0
    with pytest.raises(ValueError, match="share 0 points"):
        bench.budget_agreement(records({"x": 0.1}, 80), full)


# ------------------------------------------------------------------ ground truth (benchmarks/ground_truth.py)

@pytest.fixture(scope="module")
def truth_module(bench):
    import benchmarks.ground_truth as module  # the bench fixture put the repository root on sys.path

    return module


def test_true_score_reweights_the_population_to_a_class_mix(truth_module):
    from sklearn.metrics import f1_score

    # 4 sequences per class; negatives 3/4 right, neutrals 2/4, positives 4/4
    y_true = [0] * 4 + [1] * 4 + [2] * 4
    y_pred = [0, 0, 0, 1] + [1, 1, 0, 2] + [2, 2, 2, 2]
    confusion = [[3, 1, 0], [1, 2, 1], [0, 0, 4]]
    same_mix = truth_module.true_score(confusion, [4, 4, 4])
    assert same_mix == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    # three times the negatives: the same as a test set holding every negative sequence three times
    tripled = truth_module.true_score(confusion, [12, 4, 4])
    assert tripled == pytest.approx(f1_score(y_true[:4] * 3 + y_true[4:], y_pred[:4] * 3 + y_pred[4:],
                                             average="macro"))
    assert abs(tripled - same_mix) > 0.01  # the mix matters: why the truth is scored at the test split's


def test_decision_points_are_the_rungs_and_the_full_budget(truth_module):
    assert truth_module.decision_points(10, [2, 6, 9, 2, 12, 0]) == [2, 6, 9, 10]
    assert truth_module.decision_points(4, []) == [4]


def _record(bench, curves: dict[int, dict[str, list[float]]], picks: dict[int, dict[str, dict]],
            confusion: dict[int, dict[str, dict]]) -> dict:
    grids = {seed: [asdict_row(bench, key, curve) for key, curve in rows.items()] for seed, rows in curves.items()}
    return {"grid": grids[0], "grid_seeds": {str(s): rows for s, rows in grids.items() if s},
            "truth": {str(s): {k: {"picks": {str(d): e for d, e in picks[s][k].items()},
                                   "confusion": {str(e): cm for e, cm in confusion[s][k].items()}}
                               for k in curves[s]} for s in curves}}


def asdict_row(bench, key: str, curve: list[float]) -> dict:
    from dataclasses import asdict

    return asdict(bench.TrialRecord(key, key, {}, [(i + 1, 10 * (i + 1), v, 1.0) for i, v in enumerate(curve)],
                                    "finished"))


GOOD = [[9, 1, 0], [1, 8, 1], [0, 1, 9]]  # true score 0.867 at a balanced mix
POOR = [[6, 4, 0], [3, 4, 3], [0, 4, 6]]


def test_selection_replay_takes_the_winner_at_its_stopping_point(bench, truth_module):
    curves = {0: {"a": [0.5, 0.7, 0.6, 0.6], "b": [0.4, 0.5, 0.7, 0.65]}}
    # "a" stopped after 2 evaluations ties "b"'s best: the earlier evaluation wins (a at its 2nd, b at its 3rd)
    picks = {0: {"a": {2: 2, 4: 2}, "b": {2: 2, 4: 3}}}
    confusion = {0: {"a": {2: GOOD}, "b": {2: POOR, 3: GOOD}}}
    truth = truth_module.Truth(_record(bench, curves, picks, confusion), [10, 10, 10], [10, 10, 10])
    search = [bench.TrialRecord("t1", "a", {}, [(1, 10, 0.5, 1.0), (2, 20, 0.7, 1.0)], "stopped"),
              bench.TrialRecord("t2", "b", {}, [(i + 1, 10 * (i + 1), v, 1.0) for i, v in enumerate(curves[0]["b"])],
                                "finished")]
    tested = truth_module.tested_by(search, truth, None, full_steps=40)
    assert (tested.key, tested.seed, tested.evaluations, tested.reported_val) == ("a", 0, 2, 0.7)
    assert tested.spend == 20 + 40
    result = truth_module.outcome(tested, truth, best_true=truth_module.true_score(GOOD, [10, 10, 10]), grid_steps=80)
    assert result.regret == pytest.approx(0.0) and result.compute == pytest.approx(60 / 80)
    assert result.optimism == pytest.approx(0.7 - truth_module.true_score(GOOD, [10, 10, 10]))
    with pytest.raises(KeyError, match="no decision point at evaluation 3"):
        truth.confusion(0, "a", 3)


def test_confirmation_replay_chooses_by_the_new_seeds_mean(bench, truth_module):
    full = {2: 2}
    curves = {0: {"a": [0.5, 0.8], "b": [0.5, 0.7], "c": [0.5, 0.6]},
              1: {"a": [0.5, 0.6], "b": [0.5, 0.7], "c": [0.9, 0.9]},
              2: {"a": [0.5, 0.62], "b": [0.5, 0.68], "c": [0.9, 0.9]}}
    picks = {s: {k: full for k in curves[s]} for s in curves}
    confusion = {s: {k: {2: GOOD if k == "b" else POOR} for k in curves[s]} for s in curves}
    truth = truth_module.Truth(_record(bench, curves, picks, confusion), [10, 10, 10], [10, 10, 10])
    search = [bench.TrialRecord(k, k, {}, [(1, 10, v[0], 1.0), (2, 20, v[1], 1.0)], "finished")
              for k, v in curves[0].items()]
    tested = truth_module.tested_by(search, truth, (2, 2), full_steps=20)
    # the top 2 by search val are a and b; c (best on the new seeds) was never a candidate
    assert (tested.key, tested.seed, tested.evaluations) == ("b", 1, 2)
    assert tested.reported_val == pytest.approx(0.69) and tested.reported_from == [(1, 2), (2, 2)]
    assert tested.spend == 3 * 20 + 2 * 2 * 20
    assert truth.point_score("b") == pytest.approx(truth_module.true_score(GOOD, [10, 10, 10]))
    with pytest.raises(ValueError, match="needs 4 recorded training seeds"):
        truth_module.tested_by(search, truth, (2, 3), full_steps=20)


def test_same_decisions_tells_start_order_from_what_was_decided(bench):
    def trial(key: str, evaluations: int, order: int):
        return bench.TrialRecord(key, key, {}, [(e, 24 * e, 0.5, 1.0) for e in range(1, evaluations + 1)],
                                 "finished", order)

    first = [trial("a", 9, 1), trial("b", 10, 2), trial("c", 10, 3)]
    swapped = [trial("b", 10, 1), trial("a", 9, 2), trial("c", 10, 3)]  # one batch's trials started the other way
    assert bench.decisions_match(first, swapped) == (False, True)
    assert bench.decisions_match(first, first) == (True, True)
    stopped_elsewhere = [trial("a", 10, 1), trial("b", 9, 2), trial("c", 10, 3)]
    assert bench.decisions_match(first, stopped_elsewhere) == (False, False)


def test_the_report_and_the_truth_table_run_on_a_small_record(bench, capsys):
    # The printing paths run only at the end of a long benchmark: a tiny record exercises them here.
    import argparse

    curves = {0: {"a": [0.5, 0.8], "b": [0.6, 0.7], "c": [0.4, 0.6]},
              1: {"a": [0.5, 0.6], "b": [0.5, 0.75], "c": [0.5, 0.5]},
              2: {"a": [0.5, 0.62], "b": [0.5, 0.7], "c": [0.5, 0.5]}}
    picks = {0: {k: {2: 2, 9: 2} for k in curves[0]}, **{s: {k: {2: 2} for k in curves[s]} for s in (1, 2)}}
    confusion = {s: {k: {2: GOOD if k == "b" else POOR} for k in curves[s]} for s in curves}
    record = {**_record(bench, curves, picks, confusion), "population": {"root": "synth-test", "sequences": 30}}
    grid = bench.load_trials(record["grid"])
    search = [bench.TrialRecord(t.trial_id, t.key, {}, t.reports, "finished", i + 1) for i, t in enumerate(grid)]
    replays = {"pipeline": [(0, search, 1.0)], "batched+tpe": [(0, search, 1.0)]}
    bench.report(record, grid, replays, None, {"batched+tpe": [list(reversed(search))]}, argparse.Namespace(), 9)
    bench.truth_report(record, grid, replays, [10, 2, 8], [4, 2, 2])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("timing sensitivity (batched+tpe") and "1 made the first replay's" in line
               for line in lines)
    summary = [line for line in lines if line.startswith("SUMMARY selection:")]
    # the search's winner is "a" by val; the confirmation on seeds 1 and 2 moves the choice to "b", the best point
    assert summary and "within 0.01 of the best true macro-F1 in 1/1 seeds, median regret 0.0000" in summary[0]
