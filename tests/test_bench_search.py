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
