"""The searcher tells Optuna the budget each trial saw: a trial stopped below its budget is PRUNED with its
intermediate values, a trial that ran to its end is COMPLETE (inspected on the real Optuna study)."""

from __future__ import annotations

import optuna
import pytest

from sweeps.profiles import load_profile
from sweeps.run import build_search


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
