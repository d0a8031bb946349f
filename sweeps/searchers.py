"""Searchers that learn only from comparable observations.

Ray 2.60's `OptunaSearch.on_trial_complete` tells Optuna that a trial the scheduler stopped early is COMPLETE
with its last, low-budget value (PRUNED only when it reported nothing), so TPE ranks a configuration stopped
at evaluation 2 against ones that ran to the end. `BudgetAwareOptunaSearch` tells Optuna what the trial saw:
its intermediate values at each evaluation (Ray already reports those) and PRUNED when it stopped below the
budget, which is how Optuna's own pruners leave trials and what its TPE sampler expects.

Imported only by `sweeps.run.build_search`, after the data checks (it imports Ray).
"""

from __future__ import annotations

from typing import Any

from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch


class BudgetAwareOptunaSearch(OptunaSearch):
    """`OptunaSearch` that reports a trial stopped below `budget` evaluations to Optuna as PRUNED."""

    def __init__(self, *args: Any, budget: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = int(budget)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        reached = (result or {}).get(TRAINING_ITERATION)
        if error or reached is None or reached >= self.budget or trial_id in self._completed_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        import optuna

        # Stopped early by the scheduler: its intermediate values stay on the trial; Optuna keeps its last intermediate value, marked as pruned.
        self._ot_study.tell(self._ot_trials[trial_id], None, state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)
