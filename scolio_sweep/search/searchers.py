"""Searchers that learn only from comparable observations, and early stopping that does not depend on timing.

Ray 2.60's `OptunaSearch.on_trial_complete` tells Optuna that a trial the scheduler stopped early is COMPLETE
with its last, low-budget value (PRUNED only when it reported nothing), so TPE ranks a configuration stopped
at evaluation 2 against ones that ran to the end. `BudgetAwareOptunaSearch` tells Optuna what the trial saw:
its intermediate values at each evaluation (Ray already reports those) and PRUNED when it stopped below the
budget, which is how Optuna's own pruners leave trials and what its TPE sampler expects.

`BatchedSuccessiveHalving` is ASHA's rule (only the top 1/reduction_factor of the trials that reached a rung go
on) without ASHA's race. Ray's ASHA compares a trial at a rung with whichever trials happened to reach that
rung first, so at two concurrent trials the stop decisions, and through them what TPE learns, change with
the machine's timing (the search benchmark's seed-0 replay cost 912, 912 and 960 trial-iterations in three
repeats). Here trials run in batches of `max_concurrent_trials` (Tune's `ConcurrencyLimiter(batch=True)`
suggests the next batch only when the whole batch has finished, so TPE sees the same history every time),
and a trial at a rung is compared only with trials of *earlier* batches: the same profile, seed and data
give the same suggestions and the same stop decisions on any machine. The first batch always runs to the
end. The cost: a slot freed by a stopped trial idles until its batch finishes.

A trial is compared by its best val score so far, the number selection uses: on the recorded grid
(benchmarks/search_record_2026-11-22.json) its rank agreement with the final best is higher than the
current score's at every evaluation after the first LR decay and much higher just before it (evaluation 6:
Spearman 0.43 vs -0.02).

`FixedConfigurations` suggests a given list of configurations once each: how the confirmation run
(scolio_sweep/stages/confirm.py) re-trains the top candidates with new seeds.

Imported only after the data checks (it imports Ray): by `scolio_sweep.stages.run.build_search` and `scolio_sweep.stages.confirm`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune.result import TRAINING_ITERATION
from ray.tune.search import Searcher
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

        # Stopped early by the scheduler: its intermediate values stay on the trial; Optuna keeps its last
        # intermediate value, marked as pruned.
        self._ot_study.tell(self._ot_trials[trial_id], None, state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)


class FixedConfigurations(Searcher):
    """Suggests exactly the given configurations, in order, then FINISHED: the confirmation run's trials.

    A Searcher (not a param_space grid) because each suggestion is merged into the sweep's fixed param space
    the way the search's own suggestions were, so a re-training gets exactly its search trial's config with
    only `train.seed` changed; a conditional key the search left out stays out. Its state is plain JSON data,
    saved with the experiment so a restored run suggests no configuration twice.
    """

    def __init__(self, configurations: list[dict[str, Any]], *, metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.configurations = [dict(c) for c in configurations]
        self.suggested: dict[str, int] = {}  # trial id -> index into configurations

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # metric and mode are the profile's, given at construction

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if trial_id in self.suggested:
            return dict(self.configurations[self.suggested[trial_id]])
        if len(self.suggested) >= len(self.configurations):
            return Searcher.FINISHED
        index = self.suggested[trial_id] = len(self.suggested)
        return dict(self.configurations[index])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass  # nothing to learn: the configurations are fixed

    def get_state(self) -> dict[str, Any]:
        return {"configurations": self.configurations, "suggested": self.suggested}

    def set_state(self, state: dict[str, Any]) -> None:
        self.configurations, self.suggested = state["configurations"], dict(state["suggested"])

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        self.set_state(json.loads(Path(checkpoint_path).read_text()))
