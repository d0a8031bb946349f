"""What a selection rule finally tests, and whether its answer survives another machine's floats: replayed on a
ground-truth record with two training-noise draws (`benchmarks/search.py --table R.json` for such a record).

The record (`search.py --truth-seeds 6 --truth-seed-from 3`, benchmarks/ground_truth.py): the 30-point grid
trained at training seeds 3..8, in two *draws* of three seeds (3-5 and 6-8). A draw's first seed is its search
seed (every decision point a replayed search can stop a trial at is kept), the other two are what a
confirmation or a repeat can re-train. Every kept model has its val logits (per val sequence) and its confusion
on a fresh population of 1,200 sequences; full-budget models also keep their population logits, so a seed
ensemble (mean logits) can be scored. A separate *truth draw* (seeds 0-2, the record of 2026-12-02, whose
curves no method replayed here sees) gives every point its true score: the mean over those seeds of its
full-budget model's population macro-F1 at the test split's class mix. Regrets are against the best point's
true score, so a method's own seed luck cannot make its answer look right.

A draw stands for what another machine does: the same recipe and seeds on another CPU's floats give other
curves, as other seeds do. Each method is replayed on each draw with 10 search seeds:

- `grid`: every point once at the draw's search seed; the best val is tested (one model). Compute 1.
- `random`: Optuna's RandomSampler, as many full trainings as ours spends; best val tested (one model).
- `repeater`: Ray Tune's `Repeater` around Optuna's TPE (each suggestion trained with the draw's 3 seeds, the
  mean reported to TPE), driven through Ray's Searcher interface one training at a time; the best mean is
  tested as the ensemble of its repeats. Same compute as ours.
- `smac`: SMAC3's own intensifier (benchmarks/peers.py, ask/tell): configurations race over seeds; its
  incumbent is tested as the ensemble of the trainings it ran. Same compute as ours.
- ours: the sweeps' search (late-rung batched ASHA + TPE, 8 samples, replayed under real Ray Tune) followed by
  a confirmation rule (`fixed` top k x r, or `racing`, scolio_sweep/search/racing.py), testing the chosen
  configuration's first re-training or its seed ensemble.

Per method: `within` (the tested artifact within 0.01 of the best point's artifact of the same size: one
model against the best point's expected single model, a k-seed ensemble against the best point's expected
k-seed ensemble, both over every k-subset of both draws' six seeds), `same seed` (within 0.01 of the best
point trained with the artifact's own seeds: the seeds' luck drops out), `vs single` (against
the best point's single-model true score from the truth draw: what any ensemble of a decent point reaches, so
it flatters ensembles), regret and config regret (the tested point's own true score from the truth draw: no
seed or ensemble luck) as mean +- SE, compute (optimiser steps /
the grid's), the optimism of the val number it reports, and a normalised score, (random's mean regret -
the method's) / (random's - grid's): random = 0, grid = 1. Stability: for each search seed, the run on draw 2
against the run on draw 1: is draw 2's selected configuration inside draw 1's best set (the model confidence
set the sweep reports, scolio_core/evaluation/answer.py, over the models that run trained), and are their
tested artifacts' true scores within 0.01?
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.ground_truth import WITHIN, rank, true_score
from scolio_sweep.search.racing import leader, race_round

SEARCH_SEEDS = 10


# ------------------------------------------------------------------------------------------------ the record

@dataclass
class Model:
    """One recorded training of one point."""

    curve: list[float]  # val macro-F1 per evaluation
    picks: dict[int, int]  # decision point (evaluations run) -> the evaluation selection takes there
    confusion: dict[int, list[list[int]]]  # evaluation -> population confusion
    val_logits: dict[int, np.ndarray]  # evaluation -> (T, 3)
    population_logits: np.ndarray | None  # (P, 3) of the full-budget pick


@dataclass
class Draw:
    """One training-noise draw: its seeds (the first is the search seed) and their models."""

    name: str
    seeds: list[int]
    models: dict[int, dict[str, Model]]
    reports: dict[int, dict[str, list]]  # seed -> point -> the grid's recorded reports (for replays)

    @property
    def search_seed(self) -> int:
        return self.seeds[0]

    def model(self, seed: int, key: str) -> Model:
        return self.models[seed][key]

    def full(self, key: str) -> int:
        return len(self.models[self.search_seed][key].curve)

    def best_val(self, seed: int, key: str, evaluations: int | None = None) -> float:
        curve = self.models[seed][key].curve
        return max(curve[: evaluations or len(curve)])

    def pick(self, seed: int, key: str, evaluations: int | None = None) -> int:
        model = self.models[seed][key]
        at = model.picks.get(evaluations or len(model.curve))
        if at is None:
            raise KeyError(f"{self.name}: no decision point at evaluation {evaluations} for {key} seed {seed}")
        return at

    def val_predicted(self, seed: int, key: str, evaluations: int | None = None) -> np.ndarray:
        return self.models[seed][key].val_logits[self.pick(seed, key, evaluations)].argmax(axis=1)


class Truth:
    """True scores: a point's from the truth draw (single models), a tested artifact's from its own models."""

    def __init__(self, truth_confusion: Mapping[int, Mapping[str, list[list[int]]]], population_labels: Sequence[int],
                 test_mix: Sequence[int], val_mix: Sequence[int]) -> None:
        self.labels = np.asarray(population_labels, dtype=np.int64)
        self.test_mix, self.val_mix = list(test_mix), list(val_mix)
        keys = set.intersection(*(set(rows) for rows in truth_confusion.values()))
        self.points = {k: statistics.mean(true_score(rows[k], self.test_mix) for rows in truth_confusion.values())
                       for k in sorted(keys)}
        self.truth_seeds = sorted(truth_confusion)
        self.best = max(self.points.values())
        self._kind_cache: dict[tuple[str, int], float] = {}

    def artifact(self, draw: Draw, artifact: Artifact, mix: Sequence[int] | None = None) -> float:
        """The true score of a tested artifact: one model's population confusion, or the ensemble's."""
        mix = self.test_mix if mix is None else mix
        if len(artifact.seeds) == 1:
            seed = artifact.seeds[0]
            return true_score(draw.model(seed, artifact.key).confusion[draw.pick(seed, artifact.key,
                                                                                  artifact.evaluations)], mix)
        logits = [draw.model(s, artifact.key).population_logits for s in artifact.seeds]
        if any(x is None for x in logits):
            raise KeyError(f"{draw.name}: no population logits for an ensemble of {artifact.key}")
        predicted = np.mean(logits, axis=0).argmax(axis=1)
        confusion = np.zeros((3, 3))
        np.add.at(confusion, (self.labels, predicted), 1)
        return true_score(confusion, mix)

    def best_with_seeds(self, draw: Draw, seeds: tuple[int, ...]) -> float:
        """The best point's true score when trained (full budget) with exactly `seeds` (an ensemble when several)."""
        key = (draw.name, tuple(seeds))
        if key not in self._kind_cache:
            self._kind_cache[key] = max(self.artifact(draw, Artifact(p, tuple(seeds))) for p in self.points)
        return self._kind_cache[key]

    def best_of_kind(self, draw: Draw, members: int) -> float:
        """The best point's expected true score for an artifact of `members` full-budget models, measured on
        `draw` (the draws pooled): per point the mean over every `members`-subset of the draw's seeds, then the
        best point. An ensemble is compared with the best ensemble of its size, not with the best single model
        (which any ensemble of a decent point beats). The tested artifact's own seeds are among the pooled ones:
        9 of the 15 pairs of 6 seeds share a seed with a tested pair; benchmarks/README.md says what that moves."""
        from itertools import combinations

        key = (draw.name, members)
        if key not in self._kind_cache:
            scores = {p: statistics.mean(self.artifact(draw, Artifact(p, subset))
                                         for subset in combinations(draw.seeds, members))
                      for p in self.points}
            self._kind_cache[key] = max(scores.values())
        return self._kind_cache[key]


# ------------------------------------------------------------------------------------------------ a method's run

@dataclass(frozen=True)
class Artifact:
    """What goes to the test look: one model (one seed) or the mean-logit ensemble of several, of one point."""

    key: str
    seeds: tuple[int, ...]
    evaluations: int | None = None  # a single search model's prefix (None: the full budget)


@dataclass
class Run:
    """One replayed method on one draw with one search seed."""

    method: str
    draw: str
    seed: int
    artifact: Artifact
    trainings: float  # full-training equivalents spent (search steps / a full training's + re-trainings)
    reported_val: float  # the val number the method reports for what it tests
    evidence: list[tuple[str, int, int | None]] = field(default_factory=list)  # (point, seed, evaluations) trained
    excluded: frozenset[str] = frozenset()  # points whose search model the best set leaves out (confirmed ones)


@dataclass(frozen=True)
class ConfirmRule:
    """A confirmation rule as the sweeps' profile states it (scolio_sweep/stages/confirm.py)."""

    candidates: int
    seeds: int
    rule: str = "fixed"  # fixed | racing
    alpha: float = 0.1
    tested: str = "ensemble"  # ensemble | first-seed

    @property
    def name(self) -> str:
        race = f" racing a{self.alpha:g}" if self.rule == "racing" else ""
        return f"confirm {self.candidates}x{self.seeds}{race} {self.tested}"


def sequence_losses(labels: np.ndarray, predicted: Sequence[np.ndarray]) -> np.ndarray:
    from scolio_core.evaluation.answer import sequence_loss

    return np.mean([sequence_loss(labels, p) for p in predicted], axis=0)


def confirm_replay(method: str, draw: Draw, seed: int, trials: Sequence[Any], rule: ConfirmRule,
                   val_labels: np.ndarray) -> Run:
    """The sweeps' confirmation on a replayed search's trials: candidates by search rank, re-trained with the
    draw's other seeds (one round per seed), racing between rounds when the rule says so; the chosen point's
    artifact is its seed ensemble or its first re-training."""
    full_steps = max(t.iterations for t in trials)
    ranked = rank(trials)
    keys: list[str] = []
    for trial in ranked:
        if trial.key not in keys:
            keys.append(trial.key)
    keys = keys[: rule.candidates]
    seeds = draw.seeds[1: 1 + rule.seeds]
    if len(seeds) < rule.seeds:
        raise ValueError(f"{draw.name}: {rule.name} needs {rule.seeds} re-training seeds, the draw has {seeds}")
    alive, vals, predicted, trained = list(keys), {k: [] for k in keys}, {k: [] for k in keys}, []
    for round_number, s in enumerate(seeds, start=1):
        for key in alive:
            vals[key].append(draw.best_val(s, key))
            predicted[key].append(draw.val_predicted(s, key))
            trained.append((key, s, None))
        if rule.rule == "racing" and round_number < len(seeds):
            alive = race_round(alive, vals, {k: sequence_losses(val_labels, predicted[k]) for k in alive},
                               alpha=rule.alpha, mode="max")
    chosen = leader(alive, vals, "max")
    tested = tuple(seeds) if rule.tested == "ensemble" else (seeds[0],)
    search_steps = sum(t.iterations for t in trials)
    evidence = [(t.key, draw.search_seed, t.evaluations) for t in trials] + trained
    return Run(method, draw.name, seed, Artifact(chosen, tested), search_steps / full_steps + len(trained),
               statistics.mean(vals[chosen]), evidence, frozenset(keys))


def grid_run(draw: Draw) -> Run:
    """Every point once at the draw's search seed; the best val (ground_truth.rank) is tested."""
    from benchmarks.search import TrialRecord

    trials = [TrialRecord(f"g{i}", key, {}, [tuple(r) for r in reports], "finished", i)
              for i, (key, reports) in enumerate(sorted(draw.reports[draw.search_seed].items()))]
    top = rank(trials)[0]
    return Run("grid", draw.name, 0, Artifact(top.key, (draw.search_seed,)), float(len(trials)), top.best,
               [(t.key, draw.search_seed, None) for t in trials])


def random_run(draw: Draw, seed: int, trainings: int, space: Callable, key_of: Callable[[dict], str]) -> Run:
    """Optuna's RandomSampler over the sweeps' conditional space (what the sweeps' searcher suggests from),
    `trainings` full trainings at the search seed; a point drawn twice is trained (and charged) twice."""
    import optuna

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=seed))
    drawn = []
    for _ in range(trainings):
        trial = study.ask()
        space(trial)  # define-by-run: samples into trial.params
        key = key_of(trial.params)
        study.tell(trial, draw.best_val(draw.search_seed, key))
        drawn.append(key)
    best = max(sorted(set(drawn)), key=lambda k: draw.best_val(draw.search_seed, k))
    return Run("random", draw.name, seed, Artifact(best, (draw.search_seed,)), float(trainings),
               draw.best_val(draw.search_seed, best), [(k, draw.search_seed, None) for k in dict.fromkeys(drawn)])


def repeater_run(draw: Draw, seed: int, trainings: int, searcher_for: Callable[[int], Any],
                 key_of: Callable[[dict], str], metric: str) -> Run:
    """Ray Tune's Repeater (repeat = the draw's seeds) around TPE, driven one training at a time through Ray's
    Searcher interface; the configuration with the best mean over its complete repeats is tested as the
    ensemble of its repeats."""
    from ray.tune.search import Repeater

    repeat = len(draw.seeds)
    searcher = Repeater(searcher_for(seed), repeat=repeat, set_index=True)
    groups: dict[str, list[int]] = {}
    spent = 0
    while spent < trainings:
        trial_id = f"r{spent}"
        config = searcher.suggest(trial_id)
        if config is None or config == Repeater.FINISHED:
            break
        key, index = key_of(config), int(config["__trial_index__"])
        train_seed = draw.seeds[index]
        searcher.on_trial_complete(trial_id, {metric: draw.best_val(train_seed, key)})
        groups.setdefault(key, []).append(train_seed)
        spent += 1
    complete = {k: s for k, s in groups.items() if len(s) == repeat} or groups
    best = max(sorted(complete), key=lambda k: statistics.mean(draw.best_val(s, k) for s in complete[k]))
    evidence = [(k, s, None) for k, seeds in groups.items() for s in seeds]
    return Run("repeater", draw.name, seed, Artifact(best, tuple(sorted(complete[best]))), float(spent),
               statistics.mean(draw.best_val(s, best) for s in complete[best]), evidence)


def smac_run(draw: Draw, seed: int, trainings: int, scratch: Path) -> Run:
    """SMAC3's intensifier over the draw's seeds (benchmarks/peers.py); its incumbent's trainings are tested as
    an ensemble."""
    from benchmarks.peers import smac_intensifier

    found = smac_intensifier(lambda key, k: draw.best_val(draw.seeds[k], key), max_seeds=len(draw.seeds),
                             n_trainings=trainings, seed=seed, output_dir=scratch)
    seeds = tuple(sorted(draw.seeds[k] for key, k in found.trainings if key == found.chosen))
    if not seeds:  # an incumbent SMAC never ran cannot be tested: its first seed is trained for it (charged)
        seeds = (draw.seeds[0],)
    return Run("smac", draw.name, seed, Artifact(found.chosen, seeds), float(len(found.trainings)),
               statistics.mean(draw.best_val(s, found.chosen) for s in seeds),
               [(key, draw.seeds[k], None) for key, k in found.trainings])


# ------------------------------------------------------------------------------------------------ scoring

def best_set(run: Run, draw: Draw, val_labels: np.ndarray, values_of: Callable[[str], dict]) -> list[str]:
    """The model confidence set the sweep would report for this run (scolio_core/evaluation/answer.py): every
    model it trained, grouped by point, a confirmed point's search model left out."""
    from scolio_core.evaluation.answer import SIZE, ModelEvidence, confidence_set_pvalues, group_models

    models = [ModelEvidence(f"{key}-{s}-{e}", key, values_of(key), draw.val_predicted(s, key, e), seed=s)
              for key, s, e in run.evidence if not (s == draw.search_seed and key in run.excluded)]
    configurations = group_models(val_labels, models)
    pvalues = confidence_set_pvalues(np.stack([c.loss for c in configurations], axis=1), SIZE, seed=0)
    return [c.label for c, p in zip(configurations, pvalues) if p > SIZE]


@dataclass(frozen=True)
class Scored:
    run: Run
    true: float
    regret: float  # against the best point's artifact of the same size, over every subset of the pooled seeds
    regret_single: float  # against the best point's single-model true score (the truth draw)
    config_regret: float
    optimism: float
    same_seed_regret: float = 0.0  # against the best point trained with the very seeds the artifact used


def score(run: Run, draw: Draw, truth: Truth, reference: Draw | None = None) -> Scored:
    """`reference`: the draw the same-size best is measured on (the draws pooled); without one, the truth
    draw's best single model. The same-seed regret compares with every point trained with the artifact's own
    seeds (full budget): what the method could have tested from those trainings' seeds, so the luck of which
    seeds a method happens to use (they differ by up to 0.05 in mean true score here) drops out."""
    true = truth.artifact(draw, run.artifact)
    at_val = truth.artifact(draw, run.artifact, truth.val_mix)
    best = truth.best_of_kind(reference, len(run.artifact.seeds)) if reference is not None else truth.best
    return Scored(run, true, best - true, truth.best - true, truth.best - truth.points[run.artifact.key],
                  run.reported_val - at_val, truth.best_with_seeds(draw, run.artifact.seeds) - true)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    values = list(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return statistics.mean(values), se


def summarise(scored: Sequence[Scored], grid_steps: float) -> dict[str, Any]:
    regrets = [s.regret for s in scored]
    return {"n": len(scored), "within": sum(r <= WITHIN + 1e-12 for r in regrets),
            "within_single": sum(s.regret_single <= WITHIN + 1e-12 for s in scored),
            "within_same_seed": sum(s.same_seed_regret <= WITHIN + 1e-12 for s in scored),
            "same_seed_regret": mean_se([s.same_seed_regret for s in scored]),
            "regret": mean_se(regrets), "config_regret": mean_se([s.config_regret for s in scored]),
            "config_within": sum(s.config_regret <= WITHIN + 1e-12 for s in scored),
            "compute": statistics.mean(s.run.trainings for s in scored) / grid_steps,
            "optimism": statistics.median(s.optimism for s in scored)}


def stability(runs_a: Mapping[int, Run], runs_b: Mapping[int, Run], sets_a: Mapping[int, list[str]],
              truth: Truth, draws: Mapping[str, Draw]) -> tuple[int, int, int]:
    """Over search seeds run on both draws: (second's selection in the first's best set, true scores within
    WITHIN, pairs)."""
    inside = close = 0
    common = sorted(set(runs_a) & set(runs_b))
    for seed in common:
        a, b = runs_a[seed], runs_b[seed]
        inside += b.artifact.key in sets_a[seed]
        close += abs(truth.artifact(draws[a.draw], a.artifact) - truth.artifact(draws[b.draw], b.artifact)) <= WITHIN
    return inside, close, len(common)


# ------------------------------------------------------------------------------------------------ the report

RULES = [ConfirmRule(2, 2, "fixed", tested="first-seed"),  # the pipeline as shipped before this benchmark
         ConfirmRule(2, 2, "fixed"), ConfirmRule(3, 2, "fixed"),
         ConfirmRule(3, 2, "racing", 0.1), ConfirmRule(4, 2, "racing", 0.1), ConfirmRule(4, 2, "racing", 0.2),
         ConfirmRule(5, 2, "racing", 0.2)]
MAX_COMPUTE = 0.5  # the compute target: at most half the grid's
# Our search (late-rung batched ASHA + TPE) at the demo's 8 samples and at 10: the 2026-12-02 record found
# 8 samples of 30 points rarely train the best ones (coverage, not selection, was what failed).
SEARCH_SAMPLES = (8, 10)


def load_draws(record: Mapping, logits: Mapping[str, np.ndarray]) -> list[Draw]:
    """The record's draws: its training seeds in order, `draw_size` at a time."""
    grids = {int(record.get("grid_seed", 0)): record["grid"],
             **{int(s): rows for s, rows in record.get("grid_seeds", {}).items()}}
    seeds = sorted(int(s) for s in record["truth"])
    size = int(record["draw_size"])
    draws = []
    for start in range(0, len(seeds) - size + 1, size):
        chunk = seeds[start: start + size]
        models: dict[int, dict[str, Model]] = {}
        for s in chunk:
            curves = {row["key"]: [r[2] for r in row["reports"]] for row in grids[s]}
            models[s] = {key: Model(curves[key], {int(d): int(e) for d, e in row["picks"].items()},
                                    {int(e): c for e, c in row["confusion"].items()},
                                    {int(e): np.asarray(v, dtype=np.float32) for e, v in row["val_logits"].items()},
                                    logits.get(row["population_logits"]) if row.get("population_logits") else None)
                         for key, row in record["truth"][str(s)].items()}
        draws.append(Draw(f"draw {len(draws) + 1} (seeds {chunk[0]}-{chunk[-1]})", chunk, models,
                          {s: {row["key"]: row["reports"] for row in grids[s]} for s in chunk}))
    return draws


def choose_rule(table: Mapping[str, dict]) -> str:
    """The confirmation rule the benchmark adopts: most seeds within 0.01, then the lower mean regret, among
    rules inside MAX_COMPUTE (all of them when none is)."""
    affordable = [n for n in table if table[n]["compute"] <= MAX_COMPUTE] or list(table)
    return min(affordable, key=lambda n: (-table[n]["within"], table[n]["regret"][0], table[n]["compute"]))


def report(record: Mapping, logits: Mapping[str, np.ndarray], truth_confusion: Mapping, *, val_labels: np.ndarray,
           test_mix: Sequence[int], val_mix: Sequence[int], replay_search: Callable[[Draw, int, int], list],
           tpe_searcher: Callable[[int], Any], space: Callable, key_of: Callable[[dict], str],
           values_of: Callable[[str], dict], metric: str, seeds: Sequence[int], scratch: Path) -> dict:
    """Replay every method on both draws, print the tables and the SUMMARY selection line; returns the numbers."""
    draws = load_draws(record, logits)
    truth = Truth(truth_confusion, record["population"]["labels"], test_mix, val_mix)
    by_name = {d.name: d for d in draws}

    # The same-size reference pools every draw's seeds: with 3 seeds a point's expected ensemble is too noisy
    # to compare with (one draw's best pairs scored 0.709, the other's 0.684: a draw effect, not the method's).
    pooled = Draw(f"pooled (seeds {', '.join(str(s) for d in draws for s in d.seeds)})",
                  [s for d in draws for s in d.seeds], {s: m for d in draws for s, m in d.models.items()},
                  {s: r for d in draws for s, r in d.reports.items()})

    def other(name: str) -> Draw | None:
        """The draw the same-size reference of a run on `name` is measured on: every draw pooled (one draw alone:
        the truth draw's single model, see `score`)."""
        return pooled if len(draws) > 1 else None

    grid_trainings = float(len(truth.points))
    ranked_points = sorted(truth.points, key=lambda k: -truth.points[k])
    print(f"\nselection benchmark: {len(draws)} draws ({', '.join(d.name for d in draws)}), {len(seeds)} search "
          f"seeds each; truth from seeds {truth.truth_seeds} (never replayed), {len(truth.labels)} population "
          f"sequences at the test mix {'/'.join(map(str, test_mix))}")
    print("  best points (truth draw): " + "; ".join(f"{k} {truth.points[k]:.4f}" for k in ranked_points[:4])
          + f"; {sum(truth.best - v <= WITHIN + 1e-12 for v in truth.points.values())} of {len(truth.points)} "
          f"within {WITHIN} of the best")
    runs: dict[str, list[Run]] = {}
    room = min(len(d.seeds) for d in draws) - 1
    for samples in SEARCH_SAMPLES:
        searches = {(d.name, s): replay_search(d, s, samples) for d in draws for s in seeds}
        for rule in RULES:
            if rule.seeds > room:
                print(f"  {rule.name}: not replayed (a draw holds {room} re-training seeds)")
                continue
            name = f"n{samples} {rule.name}"
            runs[name] = [confirm_replay(name, d, s, searches[(d.name, s)], rule, val_labels)
                          for d in draws for s in seeds]
    table = {n: summarise([score(r, by_name[r.draw], truth, other(r.draw)) for r in rs], grid_trainings)
             for n, rs in runs.items()}
    adopted = choose_rule(table)
    budget = round(statistics.mean(r.trainings for r in runs[adopted]))
    runs["grid"] = [grid_run(d) for d in draws]
    runs["random"] = [random_run(d, s, budget, space, key_of) for d in draws for s in seeds]
    runs["repeater"] = [repeater_run(d, s, budget, tpe_searcher, key_of, metric) for d in draws for s in seeds]
    runs["smac"] = [smac_run(d, s, budget, scratch) for d in draws for s in seeds]
    scored = {n: [score(r, by_name[r.draw], truth, other(r.draw)) for r in rs] for n, rs in runs.items()}
    table = {n: summarise(sc, grid_trainings) for n, sc in scored.items()}
    base, top = table["random"]["regret"][0], table["grid"]["regret"][0]
    if base <= top:
        print(f"  note: random search's mean regret ({base:.4f}) is not above the grid's ({top:.4f}): the normalised "
              "score (random 0, grid 1) has no meaningful scale on this record")
    for n, row in table.items():
        row["normalised"] = (base - row["regret"][0]) / (base - top) if abs(base - top) > 1e-12 else float("nan")
        row["per_draw"] = {d.name: sum(s.regret <= WITHIN + 1e-12 for s in scored[n] if s.run.draw == d.name)
                           for d in draws}
        row["per_draw_n"] = {d.name: sum(s.run.draw == d.name for s in scored[n]) for d in draws}
    first, second = draws[0], draws[1] if len(draws) > 1 else None
    for n, rs in runs.items():
        if second is None or n == "grid":
            table[n]["stable"] = None
            continue
        a = {r.seed: r for r in rs if r.draw == first.name}
        b = {r.seed: r for r in rs if r.draw == second.name}
        sets = {s: best_set(run, first, val_labels, values_of) for s, run in a.items()}
        table[n]["stable"] = stability(a, b, sets, truth, by_name)
        table[n]["set_size"] = statistics.mean(len(v) for v in sets.values())
        # the chance baseline of "inside the set": the set's share of the configurations that run trained
        trained = {s: len({key for key, _, _ in run.evidence}) for s, run in a.items()}
        table[n]["set_share"] = statistics.mean(len(sets[s]) / trained[s] for s in sets)
    print(f"\n{'method':38s} {'within':>7s} {'per draw':>8s} {'vs single':>9s} {'same seed':>9s} {'regret mean±SE':>15s} "
          f"{'config regret':>15s} {'compute':>7s} {'norm':>6s} {'optimism':>8s} {'stable':>7s} {'close':>6s} {'set':>4s}")
    for n, row in table.items():
        stable = row.get("stable")
        per = "+".join(str(row["per_draw"][d.name]) for d in draws)
        print(f"{n:38s} {row['within']:>3d}/{row['n']:<3d} {per:>8s} {row['within_single']:>5d}/{row['n']:<3d} "
              f"{row['within_same_seed']:>5d}/{row['n']:<3d} "
              f"{row['regret'][0]:7.4f}±{row['regret'][1]:.4f} "
              f"{row['config_regret'][0]:7.4f}±{row['config_regret'][1]:.4f} {row['compute']:7.2f} "
              f"{row['normalised']:6.2f} {row['optimism']:+8.4f} "
              + (f"{stable[0]:>3d}/{stable[2]:<3d} {stable[1]:>3d}/{stable[2]:<2d} {row['set_size']:4.1f} "
                 f"({row['set_share']:.0%})"
                 if stable else f"{'-':>7s} {'-':>6s} {'-':>4s}")
              + ("   <- adopted" if n == adopted else ""))
    print(f"within = tested artifact's true score within {WITHIN} of the best point's artifact of the same size "
          "(single model, or ensemble of k re-trainings), the mean over every k-subset of both draws' seeds; regret "
          "against it; vs single = "
          f"within {WITHIN} of the best point's single-model true score ({truth.best:.4f}, truth draw), which any "
          "ensemble of a decent point reaches; same seed = within 0.01 of the best point trained with the artifact's "
          "own seeds (the seeds' luck drops out); config regret "
          "= the same for the tested point's own true score; compute = trainings / the grid's 30; norm = (random's "
          "mean regret - the method's) / (random's - grid's); stable = draw 2's selection inside draw 1's best set "
          f"(same search seed); close = their tested artifacts' true scores within {WITHIN}; set = mean best-set size (its "
          "share of the configurations the run trained: the chance of 'stable' for a pick among them)")
    peers = [n for n in ("smac", "repeater", "random", "grid") if n in table]
    best_peer = min(peers, key=lambda n: (-table[n]["within"], table[n]["regret"][0]))

    grid_se = table["grid"]["regret"][1]
    unresolved = not (abs(base - top) > (grid_se if math.isfinite(grid_se) else 0.0))

    def numbers(n: str) -> str:
        row, stable = table[n], table[n].get("stable")
        per = ", ".join(f"{d.name.split(' (')[0]} {row['per_draw'][d.name]}/{row['per_draw_n'][d.name]}"
                        for d in draws)
        return (f"within {WITHIN} of the best true macro-F1 in {row['within']}/{row['n']} seeds ({per}), compute "
                f"{row['compute']:.2f} of grid, normalised score {row['normalised']:.2f}"
                + (" (unresolved: random - grid < the grid's SE)" if unresolved else "") + ", "
                + f"same-seed within {row['within_same_seed']}/{row['n']}, "
                + (f"stable in {stable[0]}/{stable[2]} pairs (true scores within {WITHIN} in {stable[1]}/{stable[2]})"
                   if stable else "stable n/a"))
    print(f"SUMMARY selection: ours ({adopted}): {numbers(adopted)}; best peer {best_peer}: {numbers(best_peer)}")
    return {"adopted": adopted, "table": table, "best_peer": best_peer}
