"""`BatchedSuccessiveHalving`: ASHA's rule without ASHA's race (the rationale is in `searchers.py`'s docstring,
beside the searcher it keeps reproducible). Imports Ray: only after the data checks."""

from __future__ import annotations

import math
from typing import Any

from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from scolio_sweep.search.rungs import rung_milestones


class BatchedSuccessiveHalving(FIFOScheduler):
    """ASHA's top-1/rf rule, comparing a trial at a rung only with trials of earlier batches (module docstring).

    Batches are numbered by the order trials are added (the searcher's suggestion order): trial i belongs to
    batch i // batch_size, which is how `ConcurrencyLimiter(batch=True)` hands them out.
    """

    def __init__(self, *, metric: str, mode: str, max_t: int, grace_period: int, reduction_factor: float,
                 batch_size: int, time_attr: str = TRAINING_ITERATION) -> None:
        super().__init__()
        self._metric, self._mode, self._time_attr = metric, mode, time_attr
        self._max_t, self._rf, self.batch_size = int(max_t), float(reduction_factor), int(batch_size)
        self.rungs = rung_milestones(self._max_t, int(grace_period), self._rf)
        self._batch_of: dict[str, int] = {}
        self._best: dict[str, float] = {}  # best score so far per trial, signed so that higher is better
        self._recorded: dict[int, dict[str, tuple[int, float]]] = {rung: {} for rung in self.rungs}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # metric and mode are the profile's, given at construction

    def on_trial_add(self, tune_controller, trial) -> None:
        self._batch_of.setdefault(trial.trial_id, len(self._batch_of) // self.batch_size)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        return self.decide(trial.trial_id, result)

    def decide(self, trial_id: str, result: dict) -> str:
        """CONTINUE or STOP for `trial_id` after `result` (recorded at each rung the trial reaches once)."""
        value, reached = result.get(self._metric), result.get(self._time_attr)
        if not isinstance(value, (int, float)) or not math.isfinite(value) or reached is None:
            return TrialScheduler.CONTINUE
        signed = float(value) if self._mode == "max" else -float(value)
        best = self._best[trial_id] = max(self._best.get(trial_id, -math.inf), signed)
        batch = self._batch_of.setdefault(trial_id, len(self._batch_of) // self.batch_size)
        decision = TrialScheduler.CONTINUE
        for rung in self.rungs:
            recorded = self._recorded[rung]
            if reached < rung or trial_id in recorded:
                continue  # not there yet, or a replay after a restore: each rung decides once
            earlier = [score for other_batch, score in recorded.values() if other_batch < batch]
            recorded[trial_id] = (batch, best)
            # Top ceil(n / rf) of the n compared go on; a tie goes to the earlier trial (at the floor a small
            # model's val macro-F1 ties often: a constant predictor scores the same in every trial).
            ahead = sum(score >= best for score in earlier)
            if earlier and ahead >= math.ceil((len(earlier) + 1) / self._rf):
                decision = TrialScheduler.STOP
        return decision

    def debug_string(self) -> str:
        return f"BatchedSuccessiveHalving: rungs {self.rungs}, batches of {self.batch_size}"


