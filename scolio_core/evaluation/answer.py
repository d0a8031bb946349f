"""The answer of a sweep as a set with evidence: the configurations that the val evidence cannot tell apart from
the best, and the effect of each searched knob with an interval. No Ray, no MLflow: numbers in, numbers out.

    models = [ModelEvidence(trial, label, values, predicted, seed=..., role="search"), ...]   # one per trained model
    answer = answer_from_evidence(labels, models, searched, selected=selected_values, seed=0)
    print("\\n".join(answer.summary_lines()))      # the same lines come back from answer_lines(answer.to_dict())

Why a set. On a small val set (the demo's 72 sequences: 36/18/18) configurations are often indistinguishable,
and the single winner then flips with float noise, a seed or the machine. A set with a stated error rate is
the answer the data supports; the winner stays what the protocol selected and tested.

Design decisions:

- Evidence: per-sequence val predictions of every model's selected checkpoint (its best val evaluation, the
  one a trial would be tested with), for search trials and confirmation re-trainings. The sweep driver
  re-predicts val from those checkpoints (scolio_sweep/stages/answer.py); val is small, so this costs one
  val evaluation per model and leaves the training loop, its checkpoints and the trainables untouched.
- Loss: macro-recall (balanced accuracy) is the class-balanced score that is additive over sequences. With
  K classes present and n_k sequences of class k, a sequence i weighs w_i = 1 / (K n_{y_i}) and
  macro-recall = sum_i w_i [correct_i]. The per-sequence loss is T w_i [wrong_i], so its mean over the
  T sequences is exactly 1 - macro-recall (over the classes present: all three in every split here). Macro-F1,
  what sweeps select on, is not additive: a class's precision depends on every sequence predicted into it, so
  no per-sequence loss averages to it. The two weigh classes alike and move together; they differ where errors
  pile into one class (F1 also charges the receiving class's precision). Knob effects are shown in both.
- Configurations: models are grouped by their searched values (train.seed is a replicate, never a knob). A
  configuration's loss on a sequence is the mean over its models (seeds). A confirmed candidate's search run is
  left out of its group (as the confirmation's own mean leaves it out): it is in the candidates because it
  scored high on these very sequences, and would carry that luck into the set. Early-stopped trials enter with
  their best checkpoint before the stop: a configuration the search stopped may be excluded for its shorter
  training, so the set is "among what was trained to the budget the search gave it".
- The set: the model confidence set of Hansen, Lunde & Nason (2011; `arch.bootstrap.MCS`) over the
  configurations' T x M loss matrix at size 0.10: the configurations not rejected as worse than the best, at
  90 % confidence. Its T_max statistic (each configuration against the set's average), not the pairwise T_R:
  0/1 losses on a few dozen sequences give exactly tied statistics, and arch 8.0's T_R elimination step breaks
  on a tie (it indexes with a row of the tie), while T_max eliminates tied configurations together. The bootstrap resamples sequences i.i.d. (a circular block bootstrap with block
  size 1: val sequences are exchangeable, there is no time order), with a fixed seed, so the same predictions
  give the same set on every machine. Configurations with identical loss columns (the same predictions) are
  one column for the test and share its p-value (the MCS statistic divides by their zero variance otherwise);
  one distinct column is the whole set with p = 1; two are one bootstrap test of their difference.
- Seed counts may differ (confirmed candidates have several, other configurations one). The bootstrap resamples
  sequences only: the set is conditional on the models trained, a configuration with more seeds has less
  seed noise in its column, and a one-seed configuration is judged by that one model.
- Knob effects: for each searched knob, configurations are grouped by its value (a configuration without the
  knob, e.g. sigma for silhouettes, is left out). Categorical knobs: the selected configuration's level against
  each other level; numeric knobs: the configurations above the median value against those below it (the median
  itself is left out), which needs no scale (lr is log-uniform) and no model. The effect is the difference of
  the groups' mean scores (each configuration weighs one, whatever its seed count), with a 95 % percentile
  interval from a paired bootstrap over val sequences (the same resample for every model; numpy, fixed seed).
  It is marginal over the other knobs, whose values the search paired freely with each level: not a controlled
  contrast, and the interval holds sequence noise only (not seeds, not the choice of which pairs to compare).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scolio_core import CLASS_NAMES

SIZE = 0.10  # the MCS's size: the set holds the best configuration with probability >= 0.90
MCS_REPS = 1000
RESAMPLES = 2000  # bootstrap resamples for the knob-effect intervals
CONFIDENCE = 0.95
SCORES = ("macro_recall", "macro_f1")  # the effects' scores; the first is the set's (additive) one
K = len(CLASS_NAMES)


@dataclass(frozen=True)
class ModelEvidence:
    """One trained model's evidence: its predicted class for every val sequence (in the labels' order)."""

    trial: str
    label: str  # its configuration, as runs are named
    values: Mapping[str, Any]  # its searched values (train.seed excluded)
    predicted: np.ndarray  # (T,) class indices
    seed: int | None = None
    role: str = "search"  # search | confirmation


@dataclass(frozen=True)
class Configuration:
    label: str
    values: dict[str, Any]
    models: tuple[ModelEvidence, ...]
    loss: np.ndarray  # (T,) per-sequence loss, mean over the models
    scores: dict[str, float]  # macro_recall, macro_f1: mean over the models
    p_value: float = 1.0
    in_set: bool = True


@dataclass(frozen=True)
class Answer:
    n_sequences: int
    class_counts: dict[str, int]
    configurations: list[Configuration]  # the set first (by p-value, then loss), then the rest
    effects: list[dict]
    selected: str | None  # the selected configuration's label
    size: float = SIZE
    seed: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def best_set(self) -> list[str]:
        return [c.label for c in self.configurations if c.in_set]

    @property
    def selected_in_set(self) -> bool | None:
        return None if self.selected is None else self.selected in self.best_set

    def to_dict(self, labels: Sequence[int] = (), ids: Sequence[str] = ()) -> dict:
        """The answer as JSON data; with `labels`/`ids`, the evidence too (every model's predictions)."""
        rows = [{"label": c.label, "values": c.values, "in_set": c.in_set, "p_value": c.p_value,
                 "mean_loss": float(c.loss.mean()), **c.scores,
                 "models": [{"trial": m.trial, "seed": m.seed, "role": m.role} for m in c.models]}
                for c in self.configurations]
        data = {"basis": "val", "set_score": SCORES[0], "size": self.size, "mcs_reps": MCS_REPS,
                "bootstrap": "iid over val sequences (circular block bootstrap, block size 1)", "seed": self.seed,
                "resamples": RESAMPLES, "confidence": CONFIDENCE, "n_sequences": self.n_sequences,
                "class_counts": self.class_counts, "selected": self.selected, "selected_in_set": self.selected_in_set,
                "best_set": self.best_set, "configurations": rows, "effects": self.effects, "notes": self.notes}
        if len(labels):
            data["evidence"] = {"ids": list(ids), "labels": [int(v) for v in labels],
                                "models": [{"trial": m.trial, "label": m.label, "seed": m.seed, "role": m.role,
                                            "predicted": [int(v) for v in m.predicted]}
                                           for c in self.configurations for m in c.models]}
        return json.loads(json.dumps(data, default=_plain))

    def summary_lines(self) -> list[str]:
        return answer_lines(self.to_dict())


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


# ------------------------------------------------------------------------------------------ the loss
def sequence_weights(labels: np.ndarray) -> np.ndarray:
    """w_i = 1 / (K n_{y_i}) over the K classes present: macro-recall = sum_i w_i [correct_i]."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=K)
    return 1.0 / ((counts > 0).sum() * counts[labels])


def sequence_loss(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """T w_i [wrong_i]: its mean over the T sequences is 1 - macro-recall."""
    labels = np.asarray(labels, dtype=np.int64)
    return labels.size * sequence_weights(labels) * (np.asarray(predicted) != labels)


def resampled_scores(labels: np.ndarray, predicted: np.ndarray, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Macro-recall (over the classes present) and macro-F1 (over all K, zero_division 0, as scikit-learn with
    labels=CLASS_NAMES) of one model on each resample: `rows` is (B, T) sequence indices; returns (B,) arrays."""
    b = rows.shape[0]
    codes = (np.arange(b)[:, None] * K * K + labels[rows] * K + predicted[rows]).ravel()
    cm = np.bincount(codes, minlength=b * K * K).reshape(b, K, K).astype(np.float64)
    tp, actual, guessed = np.diagonal(cm, axis1=1, axis2=2), cm.sum(2), cm.sum(1)
    present = actual > 0
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=present)
    f1 = np.divide(2 * tp, actual + guessed, out=np.zeros_like(tp), where=(actual + guessed) > 0)
    return {"macro_recall": recall.sum(1) / np.maximum(present.sum(1), 1), "macro_f1": f1.mean(1)}


# ------------------------------------------------------------------------------------------- the set
def confidence_set_pvalues(losses: np.ndarray, size: float = SIZE, reps: int = MCS_REPS, seed: int = 0) -> np.ndarray:
    """MCS p-values of the columns of the (T, M) loss matrix; a column is in the set when its p-value > size."""
    losses = np.asarray(losses, dtype=np.float64)
    unique, inverse = np.unique(losses, axis=1, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    if unique.shape[1] == 1:
        return np.ones(losses.shape[1])
    from arch.bootstrap import MCS  # imported here: arch costs seconds to import

    mcs = MCS(unique, size=size, reps=reps, block_size=1, method="max", bootstrap="circular", seed=seed)
    mcs.compute()
    pvalues = mcs.pvalues["Pvalue"]
    return np.array([float(pvalues.loc[j]) for j in range(unique.shape[1])])[inverse]


def group_models(labels: np.ndarray, models: Sequence[ModelEvidence]) -> list[Configuration]:
    """One Configuration per distinct searched values, in first-seen order."""
    groups: dict[str, list[ModelEvidence]] = {}
    for model in models:
        groups.setdefault(json.dumps(dict(model.values), sort_keys=True, default=str), []).append(model)
    everything = np.arange(len(labels))[None]
    # Labels round (sigma 2.61 and 2.64 both read σ2.6): a repeated one names its first trial too.
    repeated = {label for label in (g[0].label for g in groups.values())
                if sum(g[0].label == label for g in groups.values()) > 1}
    configurations = []
    for members in groups.values():
        loss = np.mean([sequence_loss(labels, m.predicted) for m in members], axis=0)
        scores = [resampled_scores(labels, np.asarray(m.predicted, dtype=np.int64), everything) for m in members]
        label = f"{members[0].label} [{members[0].trial}]" if members[0].label in repeated else members[0].label
        configurations.append(Configuration(label, dict(members[0].values), tuple(members), loss,
                                            {s: float(np.mean([x[s][0] for x in scores])) for s in SCORES}))
    return configurations


# ------------------------------------------------------------------------------------------ the knobs
def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _groups(knob: str, configurations: list[Configuration], reference: Any) -> list[tuple[str, str, str, list, list]]:
    """(kind, first, second, first's configurations, second's configurations) for each comparison of `knob`:
    kind "levels" (the reference level against another) or "halves" (above against below the median)."""
    having = [c for c in configurations if c.values.get(knob) is not None]
    values = [c.values[knob] for c in having]
    if len({json.dumps(v, default=str) for v in values}) < 2:
        return []
    if _numeric(values):
        middle = float(np.median(values))
        high = [c for c in having if c.values[knob] > middle]
        low = [c for c in having if c.values[knob] < middle]
        if not high or not low:
            return []
        def span(group: list[Configuration]) -> str:
            return f"{min(c.values[knob] for c in group):.3g} to {max(c.values[knob] for c in group):.3g}"

        return [("halves", f"high ({span(high)})", f"low ({span(low)})", high, low)]
    levels = sorted({str(v) for v in values})
    base = str(reference) if reference is not None and str(reference) in levels else \
        str(min(having, key=lambda c: c.loss.mean()).values[knob])
    members = {level: [c for c in having if str(c.values[knob]) == level] for level in levels}
    return [("levels", base, level, members[base], members[level]) for level in levels if level != base]


def knob_effects(labels: np.ndarray, configurations: list[Configuration], searched: Sequence[str],
                 selected: Mapping[str, Any] | None = None, resamples: int = RESAMPLES, seed: int = 0,
                 confidence: float = CONFIDENCE) -> list[dict]:
    """Each searched knob's effect: the first group's mean score minus the second's, with a paired bootstrap
    percentile interval over val sequences. `selected`: the selected configuration's values (the reference
    level of a categorical knob; the best configuration's level when it lacks the knob)."""
    rows = np.random.default_rng(seed).integers(0, len(labels), size=(resamples, len(labels)))
    everything = np.arange(len(labels))[None]
    boot: dict[str, dict[str, np.ndarray]] = {}
    point: dict[str, dict[str, float]] = {}
    for c in configurations:
        per_model = [resampled_scores(labels, np.asarray(m.predicted, dtype=np.int64), rows) for m in c.models]
        boot[c.label] = {s: np.mean([x[s] for x in per_model], axis=0) for s in SCORES}
        full = [resampled_scores(labels, np.asarray(m.predicted, dtype=np.int64), everything) for m in c.models]
        point[c.label] = {s: float(np.mean([x[s][0] for x in full])) for s in SCORES}
    alpha = (1.0 - confidence) / 2.0
    effects = []
    for knob in searched:
        for kind, first, second, a, b in _groups(knob, configurations, (selected or {}).get(knob)):
            row: dict[str, Any] = {"knob": knob, "kind": kind, "first": first, "second": second,
                                   "n_first": len(a), "n_second": len(b)}
            for s in SCORES:
                diff = (np.mean([boot[c.label][s] for c in a], axis=0) - np.mean([boot[c.label][s] for c in b], axis=0))
                row[s] = {"effect": float(np.mean([point[c.label][s] for c in a]) -
                                          np.mean([point[c.label][s] for c in b])),
                          "low": float(np.quantile(diff, alpha)), "high": float(np.quantile(diff, 1 - alpha))}
            main = row[SCORES[0]]
            better = (("higher" if main["effect"] > 0 else "lower") + f" {knob} better" if kind == "halves"
                      else f"{first if main['effect'] > 0 else second} better")
            row["verdict"] = ("indistinguishable at this val size" if main["low"] <= 0 <= main["high"] else better)
            effects.append(row)
    return effects


# ---------------------------------------------------------------------------------------- the answer
def answer_from_evidence(labels: Sequence[int], models: Sequence[ModelEvidence], searched: Sequence[str], *,
                         selected: Mapping[str, Any] | None = None, size: float = SIZE, seed: int = 0,
                         notes: Sequence[str] = ()) -> Answer | None:
    """The best set and the knob effects from every model's val predictions; None without models."""
    labels = np.asarray(labels, dtype=np.int64)
    if not models or not labels.size:
        return None
    for m in models:
        if np.shape(m.predicted) != labels.shape:
            raise ValueError(f"model {m.trial}: {np.size(m.predicted)} predictions for {labels.size} val sequences")
    configurations = group_models(labels, models)
    pvalues = confidence_set_pvalues(np.stack([c.loss for c in configurations], axis=1), size, seed=seed)
    configurations = [Configuration(c.label, c.values, c.models, c.loss, c.scores, float(p), bool(p > size))
                      for c, p in zip(configurations, pvalues)]
    configurations.sort(key=lambda c: (not c.in_set, -c.p_value, c.loss.mean(), c.label))
    key = json.dumps(dict(selected), sort_keys=True, default=str) if selected is not None else None
    chosen = next((c.label for c in configurations if json.dumps(c.values, sort_keys=True, default=str) == key), None)
    counts = np.bincount(labels, minlength=K)
    return Answer(n_sequences=int(labels.size), class_counts={n: int(counts[i]) for i, n in enumerate(CLASS_NAMES)},
                  configurations=configurations, selected=chosen, size=size, seed=seed, notes=list(notes),
                  effects=knob_effects(labels, configurations, [k for k in searched if k != "train.seed"],
                                       selected, seed=seed))


# ------------------------------------------------------------------------------------- how it reads
def _score_name(score: str) -> str:
    return {"macro_recall": "macro-recall", "macro_f1": "macro-F1"}[score]


def effect_line(effect: dict) -> str:
    """`input.representation body-only vs full-body: +0.03 [-0.05, 0.11] val macro-recall (macro-F1 ...); ...`"""
    main, other = (effect[s] for s in SCORES)
    return (f"{effect['knob']} {effect['first']} vs {effect['second']}: {main['effect']:+.2f} "
            f"[{main['low']:+.2f}, {main['high']:+.2f}] val {_score_name(SCORES[0])} "
            f"(val {_score_name(SCORES[1])} {other['effect']:+.2f} [{other['low']:+.2f}, {other['high']:+.2f}]); "
            f"{effect['verdict']}")


def _seeds(row: dict) -> str:
    n = len(row["models"])
    return f"{n} model{'s' if n != 1 else ''}"


def answer_lines(data: dict) -> list[str]:
    """The answer as the sweep prints it, from `Answer.to_dict()` (or the recorded answer/answer.json)."""
    counts = " / ".join(f"{n} {c}" for c, n in data["class_counts"].items())
    rows = data["configurations"]
    inside = [r for r in rows if r["in_set"]]
    confidence = round(100 * (1 - data["size"]))
    lines = [f"  the answer on val ({data['n_sequences']} sequences: {counts}; "
             f"{sum(len(r['models']) for r in rows)} models of {len(rows)} configurations):",
             f"    best set: {len(inside)} of {len(rows)} configurations that the val evidence cannot tell apart from "
             f"the best ({confidence} % model confidence set on per-sequence {_score_name(SCORES[0])} loss)"]
    for r in inside:
        mark = "   <- selected" if r["label"] == data["selected"] else ""
        lines.append(f"      {r['label'] or '(no searched values)'}: val {_score_name(SCORES[0])} "
                     f"{r[SCORES[0]]:.4f}, macro-F1 {r['macro_f1']:.4f} ({_seeds(r)}); MCS p {r['p_value']:.2f}{mark}")
    if data["selected"] is not None and not data["selected_in_set"]:
        lines.append(f"      (the selected configuration {data['selected']} is NOT in the set)")
    if len(inside) < len(rows):
        lines.append(f"    outside the set (p <= {data['size']:.2f}): "
                     + "; ".join(f"{r['label']} {r[SCORES[0]]:.2f}" for r in rows if not r["in_set"]))
    if data["effects"]:
        lines.append(f"    knob effects ({round(100 * data['confidence'])} % paired bootstrap over val sequences; "
                     "marginal over the other knobs):")
        lines.extend(f"      {effect_line(e)}" for e in data["effects"])
    lines.extend(f"    note: {n}" for n in data.get("notes", []))
    return lines


def answer_markdown(data: dict) -> list[str]:
    """The answer as a summary.md section, from the recorded answer/answer.json."""
    confidence = round(100 * (1 - data["size"]))
    lines = ["", "## The answer: the best set and each knob's effect", "",
             f"On {data['n_sequences']} val sequences ("
             + ", ".join(f"{n} {c}" for c, n in data["class_counts"].items()) + "). The best set is the "
             f"{confidence} % model confidence set (Hansen, Lunde & Nason 2011) on the per-sequence "
             f"{_score_name(SCORES[0])} loss of each configuration's models (mean over its seeds), bootstrap "
             f"{data['bootstrap']}, {data['mcs_reps']} reps, seed {data['seed']}: the configurations the val "
             "evidence cannot tell apart from the best.", "",
             "| in set | configuration | MCS p | val macro-recall | val macro-F1 | models |", "|---|---|---|---|---|---|"]
    for r in data["configurations"]:
        chosen = " **selected**" if r["label"] == data["selected"] else ""
        lines.append(f"| {'yes' if r['in_set'] else 'no'}{chosen} | {r['label']} | {r['p_value']:.3f} | "
                     f"{r['macro_recall']:.4f} | {r['macro_f1']:.4f} | "
                     + ", ".join(f"{m['trial']}" + (f" (seed {m['seed']})" if m["seed"] is not None else "")
                                 for m in r["models"]) + " |")
    if data["effects"]:
        lines += ["", f"Knob effects: the first group's mean val score minus the second's, "
                      f"{round(100 * data['confidence'])} % paired bootstrap interval over val sequences "
                      f"({data['resamples']} resamples); marginal over the other knobs (not a controlled contrast).", ""]
        lines.extend(f"- {effect_line(e)}" for e in data["effects"])
    lines.extend(f"- note: {n}" for n in data.get("notes", []))
    return lines
