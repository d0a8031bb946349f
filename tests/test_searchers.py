"""The searcher tells Optuna the budget each trial saw: a trial stopped below its budget is PRUNED with its
intermediate values, a trial that ran to its end is COMPLETE (inspected on the real Optuna study)."""

from __future__ import annotations

import optuna
import pytest

from scolio_sweep.settings.profile import load_profile
from scolio_sweep.stages.run import build_search


def test_early_stopped_trials_reach_optuna_as_pruned_with_their_intermediate_values():
    profile = load_profile("smoke")
    searcher, scheduler = build_search(profile)
    budget = profile.evaluations_per_trial
    assert searcher.budget == budget == scheduler._max_t  # noqa: SLF001 - the scheduler's own budget
    searcher.set_search_properties(profile.metric, profile.mode, config={})
    scores = {"full": [0.2, 0.3, 0.4, 0.5], "stopped": [0.1]}
    for trial_id, values in scores.items():
        assert searcher.suggest(trial_id) is not None
        for step, value in enumerate(values, start=1):
            searcher.on_trial_result(trial_id, {profile.metric: value, "training_iteration": step})
        searcher.on_trial_complete(trial_id, {profile.metric: values[-1], "training_iteration": len(values)})
    trials = searcher._ot_study.get_trials(deepcopy=False)  # noqa: SLF001 - the study Optuna's TPE learns from
    full, stopped = trials
    assert full.state == optuna.trial.TrialState.COMPLETE and full.value == pytest.approx(0.5)
    assert full.intermediate_values == {1: 0.2, 2: 0.3, 3: 0.4, 4: 0.5}
    # PRUNED, with Optuna's convention for pruned trials: the last intermediate value stands as its value
    assert stopped.state == optuna.trial.TrialState.PRUNED and stopped.value == pytest.approx(0.1)
    assert stopped.intermediate_values == {1: pytest.approx(0.1)}
    # A crashed trial is still FAIL, as before.
    searcher.suggest("crashed")
    searcher.on_trial_complete("crashed", None, error=True)
    assert searcher._ot_study.get_trials(deepcopy=False)[-1].state == optuna.trial.TrialState.FAIL  # noqa: SLF001


def test_batched_halving_compares_only_with_earlier_batches_so_arrival_order_cannot_matter():
    from ray.tune.schedulers import TrialScheduler

    from scolio_sweep.search.schedulers import BatchedSuccessiveHalving

    def run(order: list[tuple[str, int, float]]) -> dict[str, str]:
        scheduler = BatchedSuccessiveHalving(metric="val/macro_f1", mode="max", max_t=6, grace_period=2,
                                             reduction_factor=2, batch_size=2)
        assert scheduler.rungs == [2, 4]
        for trial_id in ("a", "b", "c", "d"):  # suggestion order: batches {a, b} and {c, d}
            scheduler.on_trial_add(None, type("T", (), {"trial_id": trial_id})())
        stops = {}
        for trial_id, step, value in order:
            if trial_id in stops:
                continue
            if scheduler.decide(trial_id, {"val/macro_f1": value, "training_iteration": step}) == TrialScheduler.STOP:
                stops[trial_id] = step
        return stops

    reports = {"a": [0.2, 0.5, 0.6, 0.6], "b": [0.4, 0.4, 0.45, 0.5], "c": [0.3, 0.45, 0.7, 0.7],
               "d": [0.1, 0.3, 0.3, 0.35]}

    def interleave(first: str, second: str) -> list[tuple[str, int, float]]:
        rows = []
        for step in range(4):
            rows += [(t, step + 1, reports[t][step]) for t in (first, second)]
        return rows

    # The first batch is never stopped; c and d are compared with a and b at each rung by their best so far,
    # and the top ceil(3 / 2) = 2 of the three go on: at rung 2, c's 0.45 is second (a 0.5, b 0.4), d's 0.3 third.
    expected = {"d": 2}
    assert run(interleave("a", "b") + interleave("c", "d")) == expected
    assert run(interleave("b", "a") + interleave("d", "c")) == expected  # another arrival order, same stops
    # A replayed result after a restore does not decide again.
    assert run(interleave("a", "b") + interleave("c", "d") + [("c", 2, 0.0)]) == expected
    # A tie goes to the earlier trial: d tying b's 0.4 at rung 2 is third of three, so it stops.
    reports["d"] = [0.4, 0.4, 0.9, 0.9]
    assert run(interleave("a", "b") + interleave("c", "d")) == {"d": 2}
    reports["b"] = [0.3, 0.39, 0.4, 0.4]  # b just below d at rung 2: now d is second of three and goes on
    assert run(interleave("a", "b") + interleave("c", "d")) == {}


def test_a_profile_can_opt_out_of_reproducible_scheduling_for_rays_asha():
    from ray.tune.schedulers import ASHAScheduler

    from scolio_sweep.search.schedulers import BatchedSuccessiveHalving
    from scolio_sweep.settings.profile import apply_overrides

    profile = load_profile("smoke")
    assert profile.budget.reproducible and isinstance(build_search(profile)[1], BatchedSuccessiveHalving)
    fast = profile.replace(budget=type(profile.budget)(num_samples=5, max_concurrent_trials=2, reproducible=False))
    assert isinstance(build_search(apply_overrides(fast))[1], ASHAScheduler)
