"""What every sweep script shares: data preparation and validation before compute, Ray/MLflow set-up,
the Tune run (fresh or restored), selection of the winner on val, the one-shot test and results/.

Order matters and is the point: everything that can be checked (data files, partition, search space,
tracking URI, storage) is checked before the first trial starts; the test set is touched only after the
search, through the lockbox, once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from scolio_core.config import ExperimentConfig, parse_assignments
from scolio_core.data.splits import Split, TrainValSplit
from scolio_core.errors import ConfigError, LockboxError
from sweeps.profiles import SweepProfile, define_search_space

DEFAULT_EXPERIMENT = "scoliotune"


def default_cache_dir() -> Path:
    return Path(os.environ.get("SCOLIO_CACHE", Path.home() / ".cache" / "scoliotune"))


def synthetic_root(profile: SweepProfile, cache_dir: Path | None) -> Path:
    """Synthesise the profile's stand-in data set once into the cache (atomic rename) and return it."""
    from scolio_core.data.synth import parse_ratio, synthesize

    params = {"num_sequences": 240, "frames": 40, "train_ratio": "1:1:8", "seed": 0, **profile.synth}
    ratio = params["train_ratio"]
    key = f"synth-n{params['num_sequences']}-t{params['frames']}-r{ratio.replace(':', '')}-s{params['seed']}"
    root = (cache_dir or default_cache_dir()) / key
    if (root / "synth_meta.json").exists():
        return root
    tmp = root.with_name(f".{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"synthesising the stand-in data set into {root} (once; cached for later runs)", flush=True)
    synthesize(tmp, num_sequences=int(params["num_sequences"]), frames=int(params["frames"]),
               train_ratio=parse_ratio(ratio), seed=int(params["seed"]), progress=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, root)
    except OSError:  # another driver finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def short_trial_name(trial) -> str:
    """Trial names/dirs like `train_baseline_1a2b3c4d` (Tune's default embeds the whole config)."""
    return f"{trial.trainable_name}_{trial.trial_id}"


def check_tracking_uri(tracking_uri: str) -> None:
    """Fail before compute when MLflow cannot be reached."""
    from mlflow.tracking import MlflowClient

    if tracking_uri.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=10).read()
        except (urllib.error.URLError, OSError) as exc:
            raise ConfigError(f"MLflow tracking URI {tracking_uri} cannot be reached ({exc}); start the server "
                              "(mlflow server ...) or pass another --tracking-uri") from None
    try:
        MlflowClient(tracking_uri).search_experiments(max_results=1)
    except Exception as exc:  # MLflow raises many types for a bad store; all mean "unusable"
        raise ConfigError(f"MLflow tracking URI {tracking_uri} is not usable: {exc}") from None


def representations_of(profile: SweepProfile) -> list[str]:
    spec = profile.search.get("input.representation")
    return list(spec["choice"]) if spec else [profile.base_config().input.representation]


@dataclass
class SweepContext:
    name: str
    profile: SweepProfile
    base_config: ExperimentConfig
    split: Split
    tracking_uri: str
    experiment: str
    storage_path: str
    results_dir: Path
    work_dir: Path
    oracle_macro_f1: float | None
    callback: Any = None
    shared_data: bool = True  # load train/val once into Ray's object store (not a config field: no effect on results)

    @property
    def trainval(self) -> TrainValSplit:
        return self.split.trainval()

    @property
    def parent_run_id(self) -> str:
        if self.callback is not None and getattr(self.callback, "parent_run_id", None):
            return self.callback.parent_run_id
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(self.experiment)
        runs = client.search_runs([experiment.experiment_id], filter_string=(
            f"tags.`scolio.sweep` = '{self.name}' and tags.`scolio.role` = 'parent'"))
        if not runs:
            raise LockboxError(f"no MLflow parent run for sweep {self.name!r} in {self.tracking_uri}")
        return runs[0].info.run_id

    def param_space(self) -> dict[str, Any]:
        # Trials never see the partition (it lists test ids); their split arrives via with_parameters.
        flat = self.base_config.for_trial().to_flat()
        return {k: v for k, v in flat.items() if k not in self.profile.search}

    @property
    def workers_per_trial(self) -> int:
        return int(self.profile.resources.get("workers_per_trial", 1))

    def resources(self):
        """Tune's request per trial: a resource dict, or for data-parallel trials (workers_per_trial > 1)
        the driver's bundle only — Ray Train reserves the workers' bundles itself (trainables/distributed.py)."""
        res = self.profile.resources
        if self.workers_per_trial > 1:
            from trainables.distributed import driver_resources

            return driver_resources()
        return {"cpu": float(res.get("cpus_per_trial", 1)), "gpu": float(res.get("gpus_per_trial", 0))}

    def data_parallel(self, trainable: Callable) -> Callable:
        """`trainable`, or its data-parallel form when the profile asks for more than one worker per trial."""
        if self.workers_per_trial <= 1:
            return trainable
        from trainables.baseline import train_baseline
        from trainables.distributed import data_parallel_trainable

        if trainable is not train_baseline:
            raise ConfigError(f"resources.workers_per_trial={self.workers_per_trial} is supported for the "
                              f"baseline trainable only, not {getattr(trainable, '__name__', trainable)!r}")
        res = self.profile.resources
        return data_parallel_trainable(self.workers_per_trial, cpus_per_worker=float(res.get("cpus_per_trial", 1)),
                                       gpus_per_worker=float(res.get("gpus_per_trial", 0)))

    def share_data(self):
        """Load train+val once per loading key the search can produce and put it into Ray's object store."""
        from trainables.shared_data import loading_configs, share_trainval

        base = self.base_config.for_trial()  # what a trial's config holds
        return share_trainval(loading_configs(base, self.profile.search), self.trainval)

    def fit(self, trainable: Callable, *, search_alg=None, scheduler=None, param_space: dict | None = None,
            num_samples: int | None = None):
        from ray import tune

        from sweeps.engine import run_or_restore

        if search_alg is not None:
            from ray.tune.search import ConcurrencyLimiter

            search_alg = ConcurrencyLimiter(search_alg, max_concurrent=self.profile.max_concurrent_trials)
        tune_config = tune.TuneConfig(
            metric=self.profile.metric, mode=self.profile.mode, search_alg=search_alg, scheduler=scheduler,
            num_samples=num_samples or self.profile.num_samples,
            max_concurrent_trials=None if search_alg is not None else self.profile.max_concurrent_trials,
            trial_name_creator=short_trial_name, trial_dirname_creator=short_trial_name)
        run_config_kwargs = {"checkpoint_config": tune.CheckpointConfig(
            num_to_keep=2, checkpoint_score_attribute=self.profile.metric,
            checkpoint_score_order=self.profile.mode), "verbose": 1}
        trainable = self.data_parallel(trainable)
        # Built on every call, so a restored sweep (a new driver: the old refs are gone) re-puts its data and
        # hands this fresh with_parameters trainable to Tuner.restore.
        parameters: dict[str, Any] = {"split": self.trainval}
        if self.shared_data:
            parameters["shared"] = self.share_data()
        return run_or_restore(tune.with_parameters(trainable, **parameters), name=self.name,
                              storage_path=self.storage_path, param_space=param_space or self.param_space(),
                              tune_config=tune_config, run_config_kwargs=run_config_kwargs,
                              callbacks=[self.callback], resources=self.resources())


def prepare_sweep(profile: SweepProfile, args: argparse.Namespace, kind: str) -> SweepContext:
    """Resolve and check everything before compute; start/attach Ray; set up the MLflow callback."""
    from scolio_core.data.resolve import resolve_split, validate_trainval
    from scolio_core.evaluation.lockbox import validate_test_files

    name = args.name or profile.name
    fixed = {**profile.fixed, **parse_assignments(getattr(args, "set", []) or [])}
    oracle = None
    if args.data_root:
        root = Path(args.data_root).expanduser().resolve()
    else:
        root = synthetic_root(profile, Path(args.cache_dir) if args.cache_dir else None)
        oracle = json.loads((root / "synth_meta.json").read_text()).get("oracle_macro_f1")
    fixed["data.root"] = str(root)
    if args.partition:
        fixed["data.partition"] = str(Path(args.partition).expanduser().resolve()) \
            if Path(args.partition).expanduser().exists() else args.partition
    base = ExperimentConfig.from_dict(fixed)
    profile = SweepProfile(**{**profile.__dict__, "fixed": fixed})

    # Every modality the search can pick is checked now: all files listed, before any trial starts.
    split = None
    modalities = sorted({base.replace(**{"input.representation": r}).input.modality
                         for r in representations_of(profile)})
    for modality in modalities:
        config = base.replace(**{"input.representation": "silhouette" if modality == "silhouette" else "body-only"})
        this = resolve_split(config)
        if split is not None and this.fingerprint != split.fingerprint:
            raise ConfigError(f"pose and silhouette roots under {root} give different splits "
                              f"({split.fingerprint[:12]} vs {this.fingerprint[:12]}): ids or classes differ")
        split = this
        validate_trainval(config, split)
        validate_test_files(config, split)

    # Ray and MLflow are imported only now: refusing bad data or config should not wait for them.
    from sweeps.engine import connect_ray
    from sweeps.storage import check_storage_path, count_alive_nodes
    from sweeps.tracking import MLflowLifecycle

    tracking_uri = args.tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    check_tracking_uri(tracking_uri)
    os.environ["MLFLOW_TRACKING_URI"] = tracking_uri  # trials (finetune warm starts) read it
    # Local Ray workers inherit the driver's environment: make this checkout importable for them even when
    # it is not pip-installed (a `ray job submit --working-dir` job gets it on the path from Ray).
    repo = str(Path(__file__).resolve().parents[1])
    if repo not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    connect_ray()
    storage_path = check_storage_path(args.storage_path or str(Path.cwd() / "ray_results"), count_alive_nodes())

    import mlflow
    import optuna
    import ray
    import torch

    from scolio_core import __version__
    from scolio_core.training.checkpoint import git_commit

    params = {f"search.{k}": json.dumps(v) for k, v in profile.search.items()}
    params.update({f"budget.{k}": v for k, v in profile.budget.items()})
    params.update({f"asha.{k}": v for k, v in profile.asha.items()})
    params.update({f"resources.{k}": v for k, v in profile.resources.items()})
    params["sweep.kind"] = kind
    tags = {"scolio.profile": profile.name, "scolio.metric": profile.metric, "scolio.mode": profile.mode,
            "scolio.selection_split": "val", "scolio.split_fingerprint": split.fingerprint,
            "scolio.trainval_fingerprint": split.trainval().fingerprint, "scolio.partition": split.partition,
            "scolio.partition_file": str(base.data.partition_path().resolve()),
            "scolio.data_root": str(root), "scolio.git_commit": git_commit(), "scolio.kind": kind,
            # tags, not params: a sweep resumed after a package upgrade records the new versions
            "versions.ray": ray.__version__, "versions.torch": torch.__version__,
            "versions.mlflow": mlflow.__version__, "versions.optuna": optuna.__version__,
            "versions.scoliotune": __version__}
    if oracle is not None:
        tags["scolio.oracle_macro_f1"] = f"{oracle:.4f}"
    callback = MLflowLifecycle(tracking_uri, getattr(args, "experiment", None) or DEFAULT_EXPERIMENT, name,
                               metric=profile.metric, mode=profile.mode, params=params, tags=tags,
                               budget=profile.evaluations_per_trial)
    results_dir = Path(args.results_dir) / name
    work_dir = Path(storage_path) / name if "://" not in storage_path else Path.cwd() / ".scolio_work" / name
    return SweepContext(name=name, profile=profile, base_config=base, split=split, tracking_uri=tracking_uri,
                        experiment=getattr(args, "experiment", None) or DEFAULT_EXPERIMENT,
                        storage_path=storage_path, results_dir=results_dir, work_dir=work_dir,
                        oracle_macro_f1=oracle, callback=callback,
                        shared_data=not getattr(args, "no_shared_data", False))


def build_search(profile: SweepProfile):
    """Seeded TPE over the conditional space (published defaults first) and ASHA on the sweep metric."""
    import optuna
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    searcher = OptunaSearch(space=define_search_space(profile), metric=profile.metric, mode=profile.mode,
                            points_to_evaluate=list(profile.points_to_evaluate) or None,
                            sampler=optuna.samplers.TPESampler(seed=profile.seed, n_startup_trials=
                                                               max(2, min(10, profile.num_samples // 3))))
    scheduler = ASHAScheduler(time_attr="training_iteration", max_t=profile.evaluations_per_trial,
                              grace_period=int(profile.asha.get("grace_period", 1)),
                              reduction_factor=float(profile.asha.get("reduction_factor", 2)))
    return searcher, scheduler


def select_winner(context: SweepContext, results) -> tuple[Any, Any, dict]:
    """Best trial and its best checkpoint, by the sweep's *validation* metric over all reports."""
    metric, mode = context.profile.metric, context.profile.mode
    best = results.get_best_result(metric=metric, mode=mode, scope="all", filter_nan_and_inf=True)
    checkpoint = best.get_best_checkpoint(metric=metric, mode=mode)
    if checkpoint is None:
        raise LockboxError(f"sweep {context.name}: the best trial has no checkpoint to test")
    history = best.metrics_dataframe
    row = history.loc[history[metric].idxmax() if mode == "max" else history[metric].idxmin()]
    val = {k: float(row[k]) for k in history.columns if k.startswith("val/") and isinstance(row[k], (int, float))}
    return best, checkpoint, val


def recorded_test(entries: list[dict]) -> dict | None:
    """The ledger entry a re-run may reuse instead of looking at test again, or None.

    Only the latest attempt counts, and only when it completed: a later look that never completed may have
    been seen, so it must be reopened explicitly; an earlier completed look is superseded by any later one.
    """
    if not entries:
        return None
    latest = max(entry["attempt"] for entry in entries)
    done = [e for e in entries if e["attempt"] == latest and e["state"] == "completed"]
    return done[-1] if done else None


def finish_sweep(context: SweepContext, results, reopen_test: bool = False) -> dict:
    """Select on val, test once through the lockbox (or reuse the recorded test), write results/."""
    from mlflow.tracking import MlflowClient

    from scolio_core.evaluation.lockbox import evaluate_test_once
    from scolio_core.tracking.ledger import MlflowLedger
    from scolio_core.tracking.report import build_report
    from scolio_core.training.checkpoint import read_checkpoint

    errors = [r for r in results if r.error is not None]
    if errors:
        print(f"{len(errors)} trial(s) failed; selecting among the others", file=sys.stderr)
    best, checkpoint, val = select_winner(context, results)
    trial_id = best.metrics.get("trial_id") or Path(best.path).name
    local = context.work_dir / "winner_checkpoint"
    shutil.rmtree(local, ignore_errors=True)
    checkpoint.to_directory(str(local))
    winner = read_checkpoint(local)

    parent = context.parent_run_id
    client = MlflowClient(context.tracking_uri)
    child = client.search_runs([client.get_run(parent).info.experiment_id], filter_string=(
        f"tags.`mlflow.parentRunId` = '{parent}' and tags.`ray.trial_id` = '{trial_id}'"))
    for key, value in {"scolio.selected_trial": trial_id, "scolio.selected_checkpoint": checkpoint.path,
                       "scolio.selected_run_id": child[0].info.run_id if child else "",
                       "scolio.selected_val_macro_f1": f"{val.get(context.profile.metric, float('nan')):.6f}"}.items():
        client.set_tag(parent, key, value)

    ledger = MlflowLedger(context.tracking_uri, parent)
    last = recorded_test(ledger.entries())
    if last is not None and not reopen_test:
        test, reopened = last["metrics"], last["reopened"]
        print(f"one-shot test already recorded for sweep {context.name} (attempt {last['attempt']}); not re-evaluated")
    else:
        config = winner.config.replace(**{"data.root": context.base_config.data.root,
                                          "data.partition": context.base_config.data.partition,
                                          "data.pose_dir": context.base_config.data.pose_dir,
                                          "data.silhouette_dir": context.base_config.data.silhouette_dir})
        result = evaluate_test_once(winner, config, context.split, ledger, reopen=reopen_test,
                                    reopen_flag="--reopen-test")
        test, reopened = result.metrics, result.reopened
    build_report(context.tracking_uri, context.name, context.results_dir, experiment=context.experiment)
    client.log_artifacts(parent, str(context.results_dir), artifact_path="results")
    return {"trial_id": trial_id, "val": val, "test": test, "reopened": reopened, "checkpoint": str(local)}


def print_summary(context: SweepContext, outcome: dict) -> None:
    metric = context.profile.metric
    label = "REOPENED test (not a clean one-shot estimate)" if outcome["reopened"] else "one-shot test"
    board_path = context.results_dir / "leaderboard.csv"
    if board_path.exists():
        import pandas as pd

        board = pd.read_csv(board_path)
        searched = [c for c in board.columns if c in context.profile.search]
        columns = [c for c in ["rank", "trial_id", "split", "status", *searched, "macro_f1", "accuracy", "iterations"]
                   if c in board.columns]
        print()
        print(board[columns].to_string(index=False, na_rep="", float_format=lambda v: f"{v:.4g}"))
    print()
    print(f"sweep {context.name}: winner {outcome['trial_id']} selected on val")
    print(f"  val  {metric}: {outcome['val'].get(metric, float('nan')):.4f}   "
          f"val accuracy: {outcome['val'].get('val/accuracy', float('nan')):.4f}")
    print(f"  {label}: macro-F1 {outcome['test'].get('test/macro_f1', float('nan')):.4f}  "
          f"accuracy {outcome['test'].get('test/accuracy', float('nan')):.4f}")
    if context.oracle_macro_f1 is not None:
        print(f"  synthetic data oracle ceiling (macro-F1 from the latent severity): {context.oracle_macro_f1:.4f}")
    print(f"  results: {context.results_dir}/   MLflow: {context.tracking_uri} (parent run {context.parent_run_id})")


def add_sweep_arguments(parser: argparse.ArgumentParser, default_profile: str) -> None:
    parser.add_argument("--profile", default=default_profile, help="smoke | demo | paper | path/to/profile.yaml")
    parser.add_argument("--name", help="sweep name (default: the profile name); re-using a name resumes it")
    parser.add_argument("--data-root", help="Scoliosis1K root holding the pose/silhouette roots "
                                            "(default: synthesise the stand-in into a cache)")
    parser.add_argument("--partition", help="partition JSON (absolute, or relative to the data root)")
    parser.add_argument("--num-samples", type=int, help="number of trials")
    parser.add_argument("--max-concurrent-trials", type=int)
    parser.add_argument("--gpus-per-trial", type=float)
    parser.add_argument("--cpus-per-trial", type=float)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db here)")
    parser.add_argument("--experiment", default="scoliotune", help="MLflow experiment name")
    parser.add_argument("--storage-path", help="Tune storage for trial results and checkpoints "
                                               "(default: ./ray_results; shared storage on multi-node clusters)")
    parser.add_argument("--results-dir", default="results", help="where results/<name>/ is written")
    parser.add_argument("--cache-dir", help="where the synthetic data set is cached")
    parser.add_argument("--reopen-test", action="store_true",
                        help="evaluate test again although this sweep's lockbox was opened (labelled REOPENED)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a fixed config field of the profile, e.g. --set train.iterations=40")
    parser.add_argument("--no-shared-data", action="store_true",
                        help="every trial loads train/val itself instead of mapping the copy the driver put "
                             "into Ray's object store once per node (results are identical either way)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run_sweep_cli(run: Callable[[argparse.Namespace], Any], args: argparse.Namespace, label: str) -> int:
    """Run a sweep; user errors are one line (exit 2), tracebacks only with --debug."""
    from scolio_core.errors import ScolioError

    try:
        run(args)
    except ScolioError as exc:
        if args.debug:
            raise
        print(f"{label}: error: {exc}", file=sys.stderr)
        return 2
    return 0
