"""Ground truth for `benchmarks/search.py`: a true score for every checkpoint a replayed method could test,
and the regret of what each method would actually test.

Recording (`search.py --truth-seeds S --save R.json`): every grid point trains once per training seed
0 .. S-1 under Tune with `truth_trainable`, which is the baseline trainable's loop
(`scolio_core.training.loop.run_training`, the same call `scolio_sweep.trainables.baseline` makes) with one addition: at
each *decision point* a replayed method can end a trial at (every ASHA rung of the replayed variants, and the
full budget) it notes which evaluation is the best by val so far (the earliest on a tie, as selection takes
it) and keeps that model state. After training, those states are scored on the population.

The population is the same generator under another seed (`POPULATION_SEED`), never used for any choice:
`per_class` sequences of each class, so each class's confusion rates are measured with the same precision.
A true score *at a class mix* is the macro-F1 of the expected confusion matrix there,
counts[c] x rates[c, :]: prior-shift reweighting, valid because the generator draws a sequence's walk from
its class alone, whatever the side or the mix. The primary mix is the test split's (what the one test look
estimates); the val split's mix gives the truth beside a reported val number (the optimism).
"""

from __future__ import annotations

import json
import math
import statistics
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from scolio_core import CLASS_NAMES, names
from scolio_core.training.metrics import metrics_from_confusion

POPULATION_SEED = 1  # the benchmark's data set is seed 0
METRIC = names.DEFAULT_METRIC
WITHIN = 0.01  # the "within 0.01 of the best true macro-F1"


# ------------------------------------------------------------------------------------------------ population

def population(cache_dir: Path | None, per_class: int, frames: int) -> tuple[Path, list[str]]:
    """Synthesise (once, cached) a stand-in large enough to hold `per_class` ids of every class, and return its
    root and the first `per_class` ids of each class in id order."""
    from scolio_core.data.stand_in import SynthSettings, synthetic_root
    from scolio_core.data.synth import plan_counts

    size = 3 * per_class
    while min(sum(side[c] for side in plan_counts(size, (1, 1, 2)).values()) for c in CLASS_NAMES) < per_class:
        size += max(1, size // 20)
    root = synthetic_root(SynthSettings(num_sequences=size, frames=frames, train_ratio="1:1:2",
                                        seed=POPULATION_SEED), cache_dir)
    classes = {i: row["class"] for i, row in json.loads((root / "synth_meta.json").read_text())["sequences"].items()}
    ids = [i for c in CLASS_NAMES for i in sorted(k for k, v in classes.items() if v == c)[:per_class]]
    return root, ids


def true_score(confusion: Sequence[Sequence[float]], mix: Sequence[float]) -> float:
    """Macro-F1 at class counts `mix` (CLASS_NAMES order) of a model whose population confusion is `confusion`."""
    counts = np.asarray(confusion, dtype=np.float64)
    rates = counts / counts.sum(axis=1, keepdims=True)
    return metrics_from_confusion(np.asarray(mix, dtype=np.float64)[:, None] * rates)["macro_f1"]


# ------------------------------------------------------------------------------------------------ recording

def decision_points(evaluations: int, rungs: Sequence[int]) -> list[int]:
    """The prefix lengths (in evaluations) at which a replayed trial can end: each rung and the full budget."""
    return sorted({int(r) for r in rungs if 0 < r < evaluations} | {evaluations})


def truth_trainable(config: dict, split, population_root: str, population_ids: list[str],
                    decisions: list[int], searched: list[str], out_dir: str) -> None:
    """`scolio_sweep.trainables.baseline.train_baseline` without system metrics or resume, that also scores on the
    population the best-by-val model at each decision point; writes a JSON file into `out_dir` with the
    `searched` values of its config, its seed, the picks and the population confusion of each picked model."""
    import shutil

    from sklearn.metrics import confusion_matrix

    from scolio_core.config import ExperimentConfig
    from scolio_core.models import create_model
    from scolio_core.training.batches import load_sequence_set
    from scolio_core.training.checkpoint import read_checkpoint
    from scolio_core.training.inference import pick_device, predict_sequences
    from scolio_core.training.loop import run_training
    from scolio_sweep.trainables._tune_report import local_workdir, tune_reporter
    from scolio_sweep.trainables.baseline import trial_experiment_config
    from scolio_sweep.trainables.shared_data import trial_data

    experiment = trial_experiment_config(config)
    if experiment.model.needs_pav:  # its PAVs would need the checkpoint's normalisation: not needed by the grid
        raise ValueError("benchmarks/ground_truth.py scores ScoNet models only, not DRF (model.needs_pav)")
    data = trial_data(experiment, split, None)
    forward = tune_reporter()
    states: dict[int, dict] = {}  # evaluation -> model state, only for evaluations a decision point picks
    picks: dict[int, int] = {}  # decision point -> the evaluation selection would take there
    best, best_at, best_state, evaluations = -math.inf, 0, None, 0

    def report(metrics: dict, checkpoint_dir: Path | None) -> None:
        nonlocal best, best_at, best_state, evaluations
        if checkpoint_dir is not None:  # an evaluation (only the lead rank of a parallel run has them)
            evaluations += 1
            if metrics[METRIC] > best:  # strictly: the earliest evaluation wins a tie, as selection does
                best, best_at = metrics[METRIC], evaluations
                best_state = {k: v.clone() for k, v in read_checkpoint(checkpoint_dir).model_state.items()}
            if evaluations in decisions:
                picks[evaluations] = best_at
                states.setdefault(best_at, best_state)
        forward(metrics, None)  # Tune gets the metrics, not checkpoints: the states are scored here

    workdir = local_workdir()
    try:
        run_training(experiment, data, workdir, report, provenance={"trainable": "benchmarks.ground_truth"})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    scored = ExperimentConfig.from_dict({**experiment.to_flat(), "data.root": population_root})
    sequences, _ = load_sequence_set(scored, population_ids)
    device = pick_device(experiment.train.device)
    confusion: dict[int, list[list[int]]] = {}
    val_logits: dict[int, list[list[float]]] = {}  # per pick: what the answer stage's best set and an ensemble's val use
    full_pick = picks.get(max(decisions))
    population_logits = None  # the full-budget pick's, the model an ensemble of re-trainings averages
    for at, state in sorted(states.items()):
        model = create_model(experiment.model, experiment.input.in_channels)
        model.load_state_dict(state, strict=True)
        model = model.to(device)
        predictions = predict_sequences(model, sequences, scored, device, None)
        confusion[at] = confusion_matrix(predictions.labels, predictions.predicted, labels=list(range(3))).tolist()
        val_logits[at] = np.round(predict_sequences(model, data.val, experiment, device, None).logits, 5).tolist()
        if at == full_pick:
            population_logits = predictions.logits.astype(np.float32)
    seed = experiment.train.seed
    name = f"seed{seed}-{uuid.uuid4().hex}"
    if population_logits is not None:
        np.save(Path(out_dir, f"{name}.npy"), population_logits)
    Path(out_dir, f"{name}.json").write_text(json.dumps(
        {"config": {k: v for k, v in config.items() if k in searched}, "seed": seed, "picks": picks,
         "confusion": confusion, "val_ids": list(data.val.ids), "val_logits": val_logits,
         "population_logits": f"{name}.npy" if population_logits is not None else None}))


def collect(out_dir: Path, key_of: Callable[[dict], str]) -> dict[str, dict[str, dict]]:
    """{seed: {point: {"picks": {decision: evaluation}, "confusion": {evaluation: 3x3}}}} from the trials'
    files; `key_of` names a point from its searched values."""
    truth: dict[str, dict[str, dict]] = {}
    for path in sorted(out_dir.glob("*.json")):
        row = json.loads(path.read_text())
        kept = {k: row[k] for k in ("picks", "confusion", "val_logits", "population_logits") if k in row}
        truth.setdefault(str(row["seed"]), {})[key_of(row["config"])] = kept
    return truth


# ------------------------------------------------------------------------------------------------ scoring

@dataclass(frozen=True)
class Tested:
    """What one replayed search (and its confirmation, if any) would send to the test look."""

    key: str  # the grid point
    seed: int  # the training seed of the tested model
    evaluations: int  # the prefix of that training the model was selected from
    reported_val: float  # the val number selection stands on (search val, or the confirmed mean)
    reported_from: list[tuple[int, int]]  # (seed, evaluations) of the trainings behind reported_val
    spend: int  # optimiser steps: the search's trials plus the confirmation's


class Truth:
    """True scores from a record: per (seed, point, decision point) the macro-F1 of the model selection would
    take there, at the test split's class mix and at the val split's."""

    def __init__(self, record: dict, test_mix: Sequence[int], val_mix: Sequence[int]) -> None:
        self.truth = record["truth"]
        self.test_mix, self.val_mix = list(test_mix), list(val_mix)
        self.curves: dict[int, dict[str, list[float]]] = {}
        for seed, rows in record_grids(record).items():
            self.curves[seed] = {row["key"]: [r[2] for r in row["reports"]] for row in rows}

    @property
    def seeds(self) -> list[int]:
        return sorted(int(s) for s in self.truth)

    def confusion(self, seed: int, key: str, evaluations: int) -> list[list[int]]:
        row = self.truth[str(seed)][key]
        at = row["picks"].get(str(evaluations))
        if at is None:
            raise KeyError(f"the record has no decision point at evaluation {evaluations} for {key} seed {seed} "
                           f"(recorded: {sorted(int(p) for p in row['picks'])})")
        return row["confusion"][str(at)]

    def score(self, seed: int, key: str, evaluations: int, mix: Sequence[int] | None = None) -> float:
        return true_score(self.confusion(seed, key, evaluations), self.test_mix if mix is None else mix)

    def point_score(self, key: str) -> float:
        """A grid point's true score: the mean over training seeds of its full-budget selected model's."""
        full = len(self.curves[0][key])
        return statistics.mean(self.score(seed, key, full) for seed in self.seeds)

    def best_val(self, seed: int, key: str, evaluations: int | None = None) -> float:
        curve = self.curves[seed][key]
        return max(curve[: evaluations or len(curve)])


def record_grids(record: dict) -> dict[int, list[dict]]:
    """The record's grid per training seed (seed 0 is the replays' `grid`)."""
    return {0: record["grid"], **{int(s): rows for s, rows in record.get("grid_seeds", {}).items()}}


def rank(trials: Sequence[Any]) -> list[Any]:
    """Trials best first as `scolio_sweep.stages.finish.ranked_trials` orders them: best val over the reports, then the
    earlier best evaluation, then the configuration (never timing or trial ids)."""
    def key(trial):
        scores = [r[2] for r in trial.reports]
        best = max(scores)
        return (-best, scores.index(best), trial.key)
    return sorted((t for t in trials if t.reports), key=key)


def tested_by(trials: Sequence[Any], truth: Truth, confirm: tuple[int, int] | None, full_steps: int) -> Tested:
    """Replay the selection on a search's trials: the search winner, or (with `confirm` = (candidates, seeds))
    the confirmation's choice among the top distinct points re-trained with seeds 1..R (the record's other
    training seeds), by `scolio_sweep.stages.confirm.choose`; the tested model is then the chosen point's seed-1 training."""
    from scolio_sweep.stages.confirm import ConfirmedCandidate, choose

    ranked = rank(trials)
    spend = sum(t.iterations for t in trials)
    if confirm is None:
        top = ranked[0]
        return Tested(top.key, 0, top.evaluations, top.best, [(0, top.evaluations)], spend)
    candidates, seeds = confirm
    if seeds > len(truth.seeds) - 1:
        raise ValueError(f"a confirmation with {seeds} seeds needs {seeds + 1} recorded training seeds; the record "
                         f"has {truth.seeds}")
    keys: list[str] = []
    for trial in ranked:
        if trial.key not in keys:
            keys.append(trial.key)
    keys = keys[:candidates]
    confirmation_seeds = list(range(1, seeds + 1))
    confirmed = [ConfirmedCandidate(rank=i + 1, search_trial=key, label=key,
                                    search_val=next(t.best for t in ranked if t.key == key),
                                    seed_vals={s: truth.best_val(s, key) for s in confirmation_seeds},
                                    seed_trials={s: f"{key}-seed{s}" for s in confirmation_seeds})
                 for i, key in enumerate(keys)]
    chosen = confirmed[choose(confirmed, "max")]
    full = len(truth.curves[0][chosen.search_trial])
    return Tested(chosen.search_trial, confirmation_seeds[0], full, chosen.mean_ci[0],
                  [(s, full) for s in confirmation_seeds], spend + len(keys) * seeds * full_steps)


@dataclass(frozen=True)
class Outcome:
    regret: float  # the best point's true score - the tested model's (test mix): the regret
    config_regret: float  # the best point's true score - the tested point's (its mean over seeds): no seed luck
    true_score: float
    optimism: float  # reported val - the true score, at the val mix, of the same trainings
    compute: float  # spend / the grid's (every point once at the full budget)
    tested: Tested


def outcome(tested: Tested, truth: Truth, best_true: float, grid_steps: int) -> Outcome:
    score = truth.score(tested.seed, tested.key, tested.evaluations)
    behind = statistics.mean(truth.score(s, tested.key, e, truth.val_mix) for s, e in tested.reported_from)
    return Outcome(best_true - score, best_true - truth.point_score(tested.key), score,
                   tested.reported_val - behind, tested.spend / grid_steps, tested)


def summarise(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """Over a method's seeds: how many tested a model within WITHIN of the best point, regrets, compute and the
    median optimism."""
    return {"n": len(outcomes), "within": sum(o.regret <= WITHIN + 1e-12 for o in outcomes),
            "median_regret": statistics.median(o.regret for o in outcomes),
            "mean_regret": statistics.mean(o.regret for o in outcomes),
            "max_regret": max(o.regret for o in outcomes),
            "config_within": sum(o.config_regret <= WITHIN + 1e-12 for o in outcomes),
            "median_config_regret": statistics.median(o.config_regret for o in outcomes),
            "compute": statistics.mean(o.compute for o in outcomes),
            "optimism": statistics.median(o.optimism for o in outcomes)}
