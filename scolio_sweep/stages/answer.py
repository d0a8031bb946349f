"""After search and confirmation, before the test look: the sweep's answer as a set with evidence.

    confirmed = confirm(context, train_baseline, results)
    answer = answer_sweep(context, results, confirmed)            # val only; never a test id
    outcome = finish_sweep(context, results, confirmed=confirmed, answer=answer)

Every search trial's and confirmation re-training's selected checkpoint (its best val evaluation,
`finish.best_checkpoint`) predicts the val sequences again, through the one load-and-predict path
(`scolio_core.evaluation.predict.predict_loaded`), with val loaded once per loading key. That costs one val
evaluation per model and needs nothing from the trainables or the loop. The statistics are
scolio_core/evaluation/answer.py (its docstring holds the design); this module collects the evidence and records
the result on the parent run: tags `scolio.answer.best_set` (JSON list of configuration labels),
`scolio.answer.selected_in_set`, `scolio.answer.configurations`, and the artifact `answer/answer.json` (the set,
p-values, knob effects and every model's val predictions). `scolio report` and `scolio audit` read them back.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np

from scolio_core import names
from scolio_core.evaluation.answer import Answer, ModelEvidence, answer_from_evidence
from scolio_sweep.stages.prepare import SweepContext

SEED_KEY = "train.seed"  # a replicate, never a knob
MAX_TAG_CHARS = 6000  # MLflow keeps tag values up to 8000 characters; the artifact holds the whole list


def _searched(context: SweepContext) -> list[str]:
    return [k for k in context.profile.search if k != SEED_KEY]


def _values(context: SweepContext, config: dict) -> dict:
    return {k: config[k] for k in _searched(context) if k in (config or {})}


def _key(values: dict) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def trained_models(context: SweepContext, results, confirmed=None) -> tuple[list[tuple], list[str]]:
    """(trial id, searched values, seed, role, Tune checkpoint, recorded val) of every model the answer weighs, and
    notes. A confirmed candidate's search run is left out (module docstring of scolio_core/evaluation/answer.py)."""
    from scolio_sweep.stages.finish import best_checkpoint, ranked_trials, trial_id_of

    metric, mode = context.profile.metric, context.profile.mode
    base_seed = context.base_config.train.seed
    notes: list[str] = []
    confirmation = getattr(confirmed, "results", None)
    candidates: list[str] = []
    if confirmed is not None and confirmation is None:
        notes.append("the confirmation's re-trainings were not at hand: search runs only")
    if confirmation is not None:
        search = {trial_id_of(r): r for r in results}
        candidates = [_key(_values(context, search[c.search_trial].config)) for c in confirmed.record.candidates
                      if c.search_trial in search]
    models = []
    for result in ranked_trials(context, results):
        values = _values(context, result.config)
        if _key(values) in candidates:
            continue
        checkpoint, val = best_checkpoint(result, metric, mode)
        if checkpoint is not None:
            models.append((trial_id_of(result), values, int(result.config.get(SEED_KEY, base_seed)), "search",
                           checkpoint, val))
    retrained = []
    for result in confirmation or []:
        values = _values(context, result.config or {})
        if _key(values) not in candidates or result.metrics_dataframe is None:
            continue
        checkpoint, val = best_checkpoint(result, metric, mode)
        if checkpoint is not None:
            retrained.append(((candidates.index(_key(values)), int(result.config[SEED_KEY])),
                              (trial_id_of(result), values, int(result.config[SEED_KEY]), "confirmation",
                               checkpoint, val)))
    models += [model for _, model in sorted(retrained, key=lambda item: item[0])]
    return models, notes


def predict_val(context: SweepContext, models: list[tuple]) -> tuple[np.ndarray, list[np.ndarray], list[str]]:
    """The val labels and each model's val predictions from its checkpoint; notes on what was skipped."""
    from scolio_core.evaluation.contract import contract_violations
    from scolio_core.evaluation.predict import predict_loaded
    from scolio_core.training.batches import load_sequence_set
    from scolio_core.training.checkpoint import read_checkpoint
    from scolio_core.training.metrics import flatten_metrics
    from scolio_sweep.stages.finish import test_config
    from scolio_sweep.trainables.shared_data import loading_key

    trainval = context.trainval
    val_ids = list(trainval.val)
    loaded: dict[str, tuple] = {}
    labels, predicted, notes, differ = None, [], [], []
    for trial, _, _, _, checkpoint, val in models:
        with checkpoint.as_directory() as directory:
            model = read_checkpoint(directory)
        config = test_config(context, model)
        problems = contract_violations(model, config, val_ids, "val", trainval=trainval)
        if problems:
            notes.append(f"trial {trial} left out: its checkpoint does not fit the sweep's val ({problems[0]})")
            predicted.append(None)
            continue
        key = loading_key(config, trainval)
        if key not in loaded:
            loaded[key] = load_sequence_set(config, val_ids)
        predictions = predict_loaded(model, config, *loaded[key])
        labels = predictions.labels if labels is None else labels
        predicted.append(np.asarray(predictions.predicted, dtype=np.int64))
        recorded = val.get(context.profile.metric, math.nan)
        again = flatten_metrics(predictions.metrics(), names.SPLIT_VAL).get(context.profile.metric, math.nan)
        if not abs(again - recorded) <= 1e-6:
            differ.append(f"{trial} {recorded:.4f} -> {again:.4f}")
    if differ:  # a non-deterministic kernel (GPU) can flip a borderline sequence: said, never hidden
        notes.append(f"re-predicted val differs from the recorded best val for {len(differ)} model(s): "
                     + "; ".join(differ))
    return labels, predicted, notes


def answer_sweep(context: SweepContext, results, confirmed=None) -> Answer | None:
    """The best set and the knob effects on val, recorded on the parent run; None when no model scored."""
    from scolio_sweep.engine.callbacks import trial_label

    start = time.perf_counter()
    models, notes = trained_models(context, results, confirmed)
    if not models:
        return None
    labels, predicted, more = predict_val(context, models)
    searched = _searched(context)
    evidence = [ModelEvidence(trial, trial_label(values, tuple(searched)), values, p, seed=seed, role=role)
                for (trial, values, seed, role, _, _), p in zip(models, predicted) if p is not None]
    if confirmed is not None:
        selected = _values(context, confirmed.tested_result.config)
    else:
        from scolio_sweep.stages.finish import ranked_trials

        ranked = ranked_trials(context, results)
        selected = _values(context, ranked[0].config) if ranked else None
    answer = answer_from_evidence(labels if labels is not None else [], evidence, searched, selected=selected,
                                  seed=context.profile.seed, notes=notes + more)
    if answer is None:
        return None
    record_answer(context, answer, labels, list(context.trainval.val))
    print(f"answer: {len(evidence)} models' val predictions, {len(answer.configurations)} configurations, best set "
          f"of {len(answer.best_set)} ({time.perf_counter() - start:.1f} s)", flush=True)
    return answer


def record_answer(context: SweepContext, answer: Answer, labels: np.ndarray, ids: list[str]) -> None:
    """Tags and the answer/answer.json artifact on the parent; a re-run writes the same values."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(context.tracking_uri)
    parent = context.parent_run_id
    best = list(answer.best_set)
    while len(json.dumps(best, ensure_ascii=False)) > MAX_TAG_CHARS and len(best) > 1:
        best = best[:-1]
    if len(best) < len(answer.best_set):
        best.append(f"... {len(answer.best_set) - len(best)} more in {names.ARTIFACT_ANSWER}")
    client.set_tag(parent, names.TAG_ANSWER_BEST_SET, json.dumps(best, ensure_ascii=False))
    client.set_tag(parent, names.TAG_ANSWER_CONFIGURATIONS, str(len(answer.configurations)))
    if answer.selected_in_set is not None:
        client.set_tag(parent, names.TAG_ANSWER_SELECTED_IN_SET, str(answer.selected_in_set).lower())
    client.log_text(parent, json.dumps(answer.to_dict(labels, ids), indent=1, ensure_ascii=False), names.ARTIFACT_ANSWER)
