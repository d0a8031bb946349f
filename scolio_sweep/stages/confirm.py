"""Confirmation before selection (the profile's `confirm` section): the search's top candidates re-trained
with new seeds, so the configuration that is tested is chosen on numbers that are not selection-biased.

The search's best val is a maximum over trials and over each trial's evaluations on one small val set: it is
biased upwards, and among close configurations which one tops it is largely chance (Cawley & Talbot, JMLR
2010). So, before the test opens:

1. the top `confirm.candidates` search trials by val (the order `finish.ranked_trials` gives) are the
   candidates;
2. each is trained again from scratch with up to `confirm.seeds` new training seeds (train.seed = the search's
   seed + 1, + 2, ...): the same train and val ids, the full budget, no early stopping. They are child runs of
   the sweep's parent tagged `scolio.role=confirmation` and `scolio.confirm.candidate=<search trial>`, and like
   every trial they receive train/val ids only. `confirm.rule: fixed` trains every candidate with every seed
   in one Tune run; `racing` trains one seed per round (a Tune run each, `confirm`, `confirm-2`, ...) and
   drops between rounds the candidates a paired test over the val sequences shows worse than the leader
   (scolio_sweep/search/racing.py), so re-trainings go where they can still change the answer;
3. the surviving candidate with the best mean val over its confirmation seeds is selected (a tie goes to the
   better search rank). The search's own run is left out of that mean: it is there because it scored high;
4. what is tested is fixed before the look by the profile (`finish.tested_rule`): the selected configuration's seed
   ensemble (one model whose logits are the mean of its re-trainings', scolio_core/training/ensemble.py), or
   its first re-training; nothing is chosen by test.

The parent run records every candidate's search val, its confirmation vals, mean and 95 % t-interval
(`scolio.confirmation`), the chosen configuration's mean (`confirm/<metric>` with `ci_low`/`ci_high`) and the
search-time optimism: the search winner's val minus its own confirmed mean (`confirm/<metric>/optimism`).

    confirmed = confirm(context, train_baseline, results)      # None when the profile's confirm is off
    outcome = finish_sweep(context, results, confirmed=confirmed)
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scolio_core import names
from scolio_core.errors import LockboxError
from scolio_core.tracking import lookups
from scolio_core.training.metrics import mean_ci
from scolio_sweep.stages.prepare import SweepContext


@dataclass(frozen=True)
class ConfirmedCandidate:
    """One search configuration and its re-trainings."""

    rank: int  # its rank in the search by val (1 = the search's winner)
    search_trial: str
    label: str  # the searched values, as its runs are named
    search_val: float  # its best val in the search
    seed_vals: dict[int, float]  # train.seed -> best val of that re-training
    seed_trials: dict[int, str]  # train.seed -> the confirmation trial id
    dropped_after: int | None = None  # racing: the round after which a paired test dropped it

    @property
    def mean_ci(self) -> tuple[float, float, float]:
        return mean_ci([self.seed_vals[s] for s in sorted(self.seed_vals)])

    @property
    def optimism(self) -> float:
        """How much the search's number overstated what new seeds give: search val - confirmed mean."""
        return self.search_val - self.mean_ci[0]


@dataclass(frozen=True)
class ConfirmationRecord:
    """What the confirmation found: every candidate, which one was chosen, and which trial is tested."""

    metric: str
    mode: str
    seeds: list[int]
    candidates: list[ConfirmedCandidate]
    chosen: int  # index into candidates
    tested_trial: str
    rule: str = "fixed"
    alpha: float = 0.1
    tested: str = "first-seed"

    @property
    def selected(self) -> ConfirmedCandidate:
        return self.candidates[self.chosen]

    @property
    def search_winner(self) -> ConfirmedCandidate:
        return self.candidates[0]

    def summary_lines(self) -> list[str]:
        """The confirmation as the sweep prints it: each candidate's search val beside its confirmed mean."""
        how = (f"raced over seeds {self.seeds} (a paired Wilcoxon test over val sequences drops a candidate at "
               f"p < {self.alpha:g})" if self.rule == "racing" else f"re-trained with seeds {self.seeds}")
        lines = [f"  confirmation: the top {len(self.candidates)} by search val, {how} (same val ids, full budget):"]
        for i, c in enumerate(self.candidates):
            mean, low, high = c.mean_ci
            interval = f" [95 % CI {low:.2f}, {high:.2f}]" if math.isfinite(low) else ""
            seeds = " / ".join(f"{c.seed_vals[s]:.4f}" for s in sorted(c.seed_vals))
            mark = "   <- selected" if i == self.chosen else ""
            dropped = f"; dropped after round {c.dropped_after}" if c.dropped_after is not None else ""
            lines.append(f"    #{c.rank} {c.label}: search {self.metric} {c.search_val:.4f} -> confirmed mean "
                         f"{mean:.4f}{interval} (seeds {seeds}); optimism {c.optimism:+.4f}{dropped}{mark}")
        from scolio_sweep.stages.finish import tested_rule

        lines.append(f"  tested: {tested_rule(self.tested, sorted(self.selected.seed_vals))}")
        return lines

    def to_json(self) -> str:
        rows = []
        for c in self.candidates:
            mean, low, high = c.mean_ci
            rows.append({"rank": c.rank, "search_trial": c.search_trial, "label": c.label,
                         "search_val": c.search_val, "seed_vals": {str(s): v for s, v in c.seed_vals.items()},
                         "seed_trials": {str(s): t for s, t in c.seed_trials.items()}, "mean": mean,
                         "ci_low": _finite_or_none(low), "ci_high": _finite_or_none(high),
                         "optimism": c.optimism, "dropped_after": c.dropped_after})
        return json.dumps({"metric": self.metric, "mode": self.mode, "seeds": self.seeds, "rule": self.rule,
                           "alpha": self.alpha, "tested": self.tested,
                           "chosen": self.candidates[self.chosen].search_trial, "tested_trial": self.tested_trial,
                           "candidates": rows})


@dataclass(frozen=True)
class Confirmed:
    """The confirmation's choice as `finish.select` takes it: the tested trial's result, checkpoint and val."""

    record: ConfirmationRecord
    tested_result: Any  # ray.tune.Result of the tested confirmation trial
    tested_checkpoint: Any  # its best checkpoint by val (ray.tune.Checkpoint)
    tested_val: dict[str, float]
    results: Any = None  # every re-training's Tune result, all rounds (scolio_sweep/stages/answer.py)
    ensemble: tuple = ()  # (seed, Tune checkpoint) of each re-training of the selected configuration


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def confirmation_seeds(context: SweepContext) -> list[int]:
    """New training seeds: the search's own train.seed + 1 .. + confirm.seeds."""
    base = context.base_config.train.seed
    return [base + k for k in range(1, context.profile.confirm.seeds + 1)]


def searched_values(context: SweepContext, config: dict[str, Any]) -> dict[str, Any]:
    """The searched keys a trial's config holds (a conditional key the search left out stays out)."""
    return {k: config[k] for k in context.profile.search if k in config}


def choose(candidates: list[ConfirmedCandidate], mode: str) -> int:
    """Index of the surviving candidate with the best confirmed mean; a tie goes to the better search rank."""
    sign = 1.0 if mode == "max" else -1.0
    alive = [i for i, c in enumerate(candidates) if c.dropped_after is None] or list(range(len(candidates)))
    # rounded: means that differ only by float summation order are a tie, not a win
    return min(alive, key=lambda i: (round(-sign * candidates[i].mean_ci[0], 9), candidates[i].rank))


def confirm(context: SweepContext, trainable: Callable, results) -> Confirmed | None:
    """Re-train the top candidates with new seeds (a Tune run of its own, resumable like the search) and
    choose among them by mean val; None when the profile's confirmation is off."""
    from scolio_sweep.engine.callbacks import trial_label
    from scolio_sweep.engine.tuner import experiment_path
    from scolio_sweep.search.searchers import FixedConfigurations
    from scolio_sweep.stages.finish import best_checkpoint, ranked_trials, trial_id_of
    from scolio_sweep.stages.run import run_trials

    settings = context.profile.confirm
    if not settings.enabled:
        return None
    metric, mode = context.profile.metric, context.profile.mode
    candidates, keys = [], []  # the top distinct configurations (a searcher may suggest one twice)
    for result in ranked_trials(context, results):
        values = searched_values(context, result.config)
        key = json.dumps(values, sort_keys=True)
        if key not in keys and len(candidates) < settings.candidates:
            keys.append(key)
            search_val = best_checkpoint(result, metric, mode)[1].get(metric, math.nan)
            candidates.append((trial_id_of(result), values, search_val))
    if not candidates:
        raise LockboxError(f"sweep {context.name}: no trial reported a finite {metric}; nothing to confirm")
    seeds = confirmation_seeds(context)
    racing = settings.rule == "racing" and len(seeds) > 1 and len(candidates) > 1
    rounds = [[s] for s in seeds] if racing else [seeds]
    print(f"confirming the top {len(candidates)} configuration(s) by val with seeds {seeds} "
          + (f"(racing: one seed per round, paired test at alpha {settings.alpha:g}) " if racing else
             f"({len(candidates) * len(seeds)} trainings) ") + "before selection", flush=True)
    # A Tune run per round inside the search's folder: restored on a re-run like the search, its trials are
    # children of the same MLflow parent with their own role, named by the searched values and the seed.
    lifecycle = context.lifecycle.for_role(names.ROLE_CONFIRMATION, (*context.profile.search, "train.seed"))
    alive = list(range(len(candidates)))
    dropped: dict[int, int] = {}
    found: dict[tuple[int, int], tuple[Any, Any, dict]] = {}  # (candidate, seed) -> result, checkpoint, val
    every: list = []
    for number, round_seeds in enumerate(rounds, start=1):
        configurations = [{**candidates[i][1], "train.seed": seed} for i in alive for seed in round_seeds]
        stage = dataclasses.replace(context, name="confirm" if number == 1 else f"confirm-{number}",
                                    lifecycle=lifecycle, storage_path=experiment_path(context.storage_path, context.name))
        grid = run_trials(stage, trainable, search_alg=FixedConfigurations(configurations, metric=metric, mode=mode),
                          num_samples=len(configurations), batched=False)
        every.extend(grid)
        for result in grid:
            config = result.config or {}
            key = json.dumps(searched_values(context, config), sort_keys=True)
            if key not in keys or "train.seed" not in config:
                continue
            checkpoint, val = best_checkpoint(result, metric, mode) if result.metrics_dataframe is not None \
                else (None, {})
            if checkpoint is None or not math.isfinite(val.get(metric, math.nan)):
                raise LockboxError(f"sweep {context.name}: confirmation trial {Path(result.path).name} kept no "
                                   f"checkpoint with a finite {metric} ({result.error or 'no evaluation'}); re-run "
                                   "the same --name to resume it")
            found[(keys.index(key), int(config["train.seed"]))] = (result, checkpoint, val)
        missing = [(candidates[i][0], s) for i in alive for s in round_seeds if (i, s) not in found]
        if missing:
            raise LockboxError(f"sweep {context.name}: no confirmation result for (trial, seed) {missing}; re-run "
                               "the same --name to resume")
        if racing and number < len(rounds) and len(alive) > 1:
            survivors = _race(context, candidates, alive, found, seeds[:number])
            for i in alive:
                if i not in survivors:
                    dropped[i] = number
                    print(f"  racing: {candidates[i][0]} dropped after round {number} (worse than the leader "
                          f"on the val sequences at alpha {settings.alpha:g})", flush=True)
            alive = survivors
    confirmed = [ConfirmedCandidate(
        rank=i + 1, search_trial=trial_id, label=trial_label(values, tuple(context.profile.search)),
        search_val=float(search_val), seed_vals={s: float(found[(i, s)][2][metric]) for s in seeds if (i, s) in found},
        seed_trials={s: trial_id_of(found[(i, s)][0]) for s in seeds if (i, s) in found},
        dropped_after=dropped.get(i))
        for i, (trial_id, values, search_val) in enumerate(candidates)]
    chosen = choose(confirmed, mode)
    tested_result, tested_checkpoint, tested_val = found[(chosen, seeds[0])]
    record = ConfirmationRecord(metric=metric, mode=mode, seeds=seeds, candidates=confirmed, chosen=chosen,
                                tested_trial=trial_id_of(tested_result), rule=settings.rule if racing else "fixed",
                                alpha=settings.alpha, tested=settings.tested)
    ensemble = tuple((s, found[(chosen, s)][1]) for s in seeds) if settings.tested == "ensemble" else ()
    record_confirmation(context, record)
    return Confirmed(record, tested_result, tested_checkpoint, tested_val, results=every, ensemble=ensemble)


def _race(context: SweepContext, candidates: list, alive: list[int], found: dict, seeds: list[int]) -> list[int]:
    """One racing decision: each alive candidate's re-trainings so far predict val again (the answer stage's
    path), and `racing.race_round` keeps the leader and those not shown worse than it."""
    from scolio_core.evaluation.answer import sequence_loss
    from scolio_sweep.search.racing import race_round
    from scolio_sweep.stages.answer import predict_val
    from scolio_sweep.stages.finish import trial_id_of

    metric = context.profile.metric
    pairs = [(i, s) for i in alive for s in seeds]
    models = [(trial_id_of(found[pair][0]), candidates[pair[0]][1], pair[1], "confirmation", found[pair][1],
               found[pair][2]) for pair in pairs]
    labels, predicted, notes = predict_val(context, models)
    for note in notes:
        print(f"  racing: {note}", flush=True)
    by_candidate: dict[int, list] = {i: [] for i in alive}
    for (i, _), p in zip(pairs, predicted):
        if p is not None:
            by_candidate[i].append(p)
    if labels is None or any(not v for v in by_candidate.values()):
        return alive  # nothing to compare on: no candidate is dropped
    vals = {str(i): [found[(i, s)][2][metric] for s in seeds] for i in alive}
    losses = {str(i): np.mean([sequence_loss(labels, p) for p in by_candidate[i]], axis=0) for i in alive}
    kept = race_round([str(i) for i in alive], vals, losses, alpha=context.profile.confirm.alpha,
                      mode=context.profile.mode)
    return [int(i) for i in kept]



def record_confirmation(context: SweepContext, record: ConfirmationRecord) -> None:
    """The confirmation on the parent run (tags and metrics) and each confirmation run's candidate tag;
    a re-run writes the same values."""
    import time

    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(context.tracking_uri)
    parent = context.parent_run_id
    experiment_id = client.get_run(parent).info.experiment_id
    for candidate in record.candidates:
        for trial_id in candidate.seed_trials.values():
            run = lookups.find_trial_run(client, experiment_id, parent, trial_id)
            if run is not None:
                client.set_tag(run.info.run_id, names.TAG_CONFIRM_CANDIDATE, candidate.search_trial)
    mean, low, high = record.selected.mean_ci
    values = {names.confirmed_metric(record.metric): mean, names.confirmed_metric(record.metric, "ci_low"): low,
              names.confirmed_metric(record.metric, "ci_high"): high,
              names.confirmed_metric(record.metric, "optimism"): record.search_winner.optimism}
    now = int(time.time() * 1000)
    client.log_batch(parent, metrics=[Metric(k, float(v), now, 0) for k, v in values.items() if math.isfinite(v)],
                     tags=[], synchronous=True)
    client.set_tag(parent, names.TAG_CONFIRMATION, record.to_json())
    from scolio_sweep.stages.finish import tested_rule

    client.set_tag(parent, names.TAG_CONFIRM_RULE, tested_rule(record.tested, sorted(record.selected.seed_vals)))
