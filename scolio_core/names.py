"""Every name scoliotune gives MLflow and Tune — tags, params, metrics — and the pure helpers that build them.

The one owner of these names (as `mlflow/utils/mlflow_tags.py` is for MLflow's own tags), at the bottom layer
so that every layer spells a name through it: the training loop's `val/*` metrics, the lockbox's `test/*`,
the tracking layer's tags, the sweep driver's parent-run records. The MLflow lookups built on these names
(filters, `find_parent_run`, ...) are in `scolio_core/tracking/lookups.py`.

    parent run: TAG_SWEEP=<sweep>, TAG_ROLE=ROLE_PARENT; selection, data, version and lockbox tags
    child run:  TAG_SWEEP=<sweep>, TAG_ROLE=ROLE_TRIAL, TAG_TRIAL_ID=<Ray trial id>, TAG_PARENT_RUN_ID=<parent>

Imports only the standard library and scolio_core's bottom (class names, errors).
"""

from __future__ import annotations

from scolio_core import CLASS_NAMES
from scolio_core.errors import ConfigError

DEFAULT_EXPERIMENT = "scoliotune"

# ----------------------------------------------------------------------------------------- run identity
TAG_PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own (mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID)
TAG_SWEEP = "scolio.sweep"
TAG_ROLE = "scolio.role"
ROLE_PARENT = "parent"
ROLE_TRIAL = "trial"
# A re-training of a top search configuration with another train.seed, before selection (confirmation stage);
# a child of the same parent, kept out of the search leaderboard.
ROLE_CONFIRMATION = "confirmation"
TAG_CONFIRM_CANDIDATE = "scolio.confirm.candidate"  # on a confirmation run: the search trial it re-trains
TAG_TRIAL_ID = "ray.trial_id"

# ---------------------------------------------------------------------------------- child (trial) tags
TAG_TRIAL_NAME = "scolio.trial_name"
TAG_TRIAL_DIR = "scolio.trial_dir"
TAG_STOPPED_BY = "scolio.stopped_by"
STOPPED_BY_SCHEDULER = "scheduler"  # ASHA stopped the trial below its budget
STOPPED_BY_STOPPER = "stopper"  # Tune's stopper criterion was met
STOPPED_BY_INTERRUPT = "interrupted"  # the sweep ended (crash, Ctrl-C) while the trial was not done
TAG_RESTARTS = "scolio.restarts"
TAG_FAILURES = "scolio.failures"
TAG_ERROR = "scolio.error"
TAG_CHECKPOINT = "scolio.best_checkpoint"
TAG_CHECKPOINT_SCORE = "scolio.best_checkpoint_score"
ARTIFACT_CHECKPOINT = "checkpoint"  # artifact folder of a child run's best checkpoint
TAG_RUN_NOTE = "mlflow.note.content"  # MLflow's own: the run's Description in the UI (why a trial was stopped)

# ------------------------------------------------------------------------------------ parent run tags
TAG_METRIC = "scolio.metric"
TAG_MODE = "scolio.mode"
TAG_NUM_SAMPLES = "scolio.num_samples"
TAG_PROFILE = "scolio.profile"
TAG_KIND = "scolio.kind"
TAG_SELECTION_SPLIT = "scolio.selection_split"
TAG_SPLIT_FINGERPRINT = "scolio.split_fingerprint"
TAG_TRAINVAL_FINGERPRINT = "scolio.trainval_fingerprint"
TAG_PARTITION = "scolio.partition"
TAG_PARTITION_FILE = "scolio.partition_file"
TAG_DATA_ROOT = "scolio.data_root"
TAG_ORACLE_MACRO_F1 = "scolio.oracle_macro_f1"  # synthetic data: the severity oracle on the split's test ids
TAG_ORACLE_VAL_MACRO_F1 = "scolio.oracle_val_macro_f1"  # ... and on its val ids (beside the val number)
TAG_GIT_COMMIT = "scolio.git_commit"
TAG_PYTHON = "scolio.python"
TAG_VERSION_PREFIX = "scolio.version."  # + distribution name: scolio.version.ray, scolio.version.torch, ...
# The winner, chosen on val by the sweep driver.
TAG_SELECTED_TRIAL = "scolio.selected_trial"
TAG_SELECTED_RUN_ID = "scolio.selected_run_id"
TAG_SELECTED_CHECKPOINT = "scolio.selected_checkpoint"
TAG_SELECTED_VAL_MACRO_F1 = "scolio.selected_val_macro_f1"
# Confirmation before selection, on the parent: every candidate's search val and confirmed vals (JSON), and
# the rule that fixed which checkpoint is tested before the look.
TAG_CONFIRMATION = "scolio.confirmation"
TAG_CONFIRM_RULE = "scolio.confirm.rule"
# The answer as a set with evidence (scolio_core/evaluation/answer.py), on the parent, before the test look:
# the configurations the val evidence cannot tell apart from the best, and each searched knob's effect.
TAG_ANSWER_BEST_SET = "scolio.answer.best_set"  # JSON list of the set's configuration labels
TAG_ANSWER_SELECTED_IN_SET = "scolio.answer.selected_in_set"  # "true" | "false"
TAG_ANSWER_CONFIGURATIONS = "scolio.answer.configurations"  # how many configurations the set was drawn from
ARTIFACT_ANSWER = "answer/answer.json"  # the whole answer: set, p-values, knob effects, per-sequence evidence
# A study: a representation sweep and the finetune stage run on its winner open the test set once together.
TAG_STUDY = "scolio.study"  # on every stage's parent run: the study (the representation sweep's name)
TAG_TEST_DEFERRED = "scolio.test_deferred"  # "true": this stage left the study's look to its last stage
TAG_STUDY_FINAL_PARENT = "scolio.study.final_parent"  # the parent run whose model the study tested
# A finetune sweep's baseline (a representation sweep's winner).
TAG_BASELINE_SWEEP_RUN = "scolio.baseline_sweep_run"
TAG_BASELINE_RUN = "scolio.baseline_run"
TAG_BASELINE_VAL_MACRO_F1 = "scolio.baseline_val_macro_f1"
# A partition table: one parent run per partition, all tagged with the table's name.
TAG_TABLE = "scolio.table"
TAG_TABLE_SEEDS = "scolio.table.seeds"  # the seeds whose models the partition's one look tested, JSON list
# The test lockbox's ledger (tracking/ledger.py MlflowLedger; the entry format is evaluation/lockbox.py's).
TAG_LOCKBOX_STATE = "scolio.lockbox.state"  # opened | completed
TAG_LOCKBOX_EVALUATIONS = "scolio.lockbox.evaluations"
TAG_LOCKBOX_ENTRY = "scolio.lockbox.entry."  # + "<attempt>.<state>"
TAG_TEST_REOPENED = "scolio.test.reopened"

# ----------------------------------------------------------------------------------------------- params
# Parent params, each a prefix + the profile key: search.input.sigma, budget.evaluations, ...
PARAM_SEARCH_PREFIX = "search."
PARAM_SPACE_PREFIX = "space."  # the same meaning as search.; some callers log their space under it
SEARCH_PARAM_PREFIXES = (PARAM_SEARCH_PREFIX, PARAM_SPACE_PREFIX)
PARAM_BUDGET_PREFIX = "budget."
PARAM_ASHA_PREFIX = "asha."
PARAM_RESOURCES_PREFIX = "resources."
PARAM_CONFIRM_PREFIX = "confirm."
# The profile's monitoring section as parent *tags* (not params: it changes no result, so a resumed sweep
# may switch it): scolio.monitoring.system_metrics, scolio.monitoring.sampling_interval_s.
TAG_MONITORING_PREFIX = "scolio.monitoring."
PARAM_SWEEP_KIND = "sweep.kind"

# ---------------------------------------------------------------------------------------------- metrics
# A metric is `<split>/<name>`: the loop reports train/* and val/*, the lockbox test/*. Nested parts join
# with "/" (training.metrics.flatten_metrics): val/sensitivity/positive, test/macro_f1/ci_low,
# test/confusion/negative_as_neutral.
SPLIT_TRAIN = "train"
SPLIT_VAL = "val"
SPLIT_TEST = "test"
TRAIN_METRIC_PREFIX = f"{SPLIT_TRAIN}/"
VAL_METRIC_PREFIX = f"{SPLIT_VAL}/"
TEST_METRIC_PREFIX = f"{SPLIT_TEST}/"
CI_LOW = "ci_low"  # a metric's 95 % interval: <metric>/ci_low, <metric>/ci_high
CI_HIGH = "ci_high"
CONFUSION = "confusion"  # confusion counts: <split>/confusion/<true>_as_<predicted>

METRIC_VAL_MACRO_F1 = f"{VAL_METRIC_PREFIX}macro_f1"
METRIC_VAL_ACCURACY = f"{VAL_METRIC_PREFIX}accuracy"
METRIC_TEST_MACRO_F1 = f"{TEST_METRIC_PREFIX}macro_f1"
METRIC_TEST_ACCURACY = f"{TEST_METRIC_PREFIX}accuracy"
METRIC_TEST_N = f"{TEST_METRIC_PREFIX}n"  # how many sequences the look evaluated
METRIC_TEST_REOPENED = f"{TEST_METRIC_PREFIX}reopened"  # 1.0 when the look was a reopened one
# The loop's bookkeeping beside the split metrics.
METRIC_ITERATION = "iteration"  # optimiser steps done at this report
METRIC_LR = "lr"
METRIC_TRAIN_LOSS = f"{TRAIN_METRIC_PREFIX}loss"
METRIC_TRAIN_STEP_SECONDS = f"{TRAIN_METRIC_PREFIX}step_seconds"
# A finetune trial's starting point: its baseline's weights on val before any finetune step.
WARMSTART_METRIC_PREFIX = "warmstart/"
METRIC_WARMSTART_VAL_MACRO_F1 = f"{WARMSTART_METRIC_PREFIX}val_macro_f1"
METRIC_WARMSTART_VAL_ACCURACY = f"{WARMSTART_METRIC_PREFIX}val_accuracy"
# A DRF grid's paired comparison (PGA on minus off, same seeds), on its parent run.
PAIRED_METRIC_PREFIX = "paired/"
METRIC_PAIRED_DIFF_MEAN = f"{PAIRED_METRIC_PREFIX}val_macro_f1_diff_mean"
METRIC_PAIRED_DIFF_CI_LOW = f"{PAIRED_METRIC_PREFIX}val_macro_f1_diff_ci_low"
METRIC_PAIRED_DIFF_CI_HIGH = f"{PAIRED_METRIC_PREFIX}val_macro_f1_diff_ci_high"
# System metrics of a trial keep MLflow's own names, prefix included, so the MLflow UI shows them in a run's
# "System metrics" tab: system/cpu_utilization_percentage, system/gpu_0_utilization_percentage, ...
SYSTEM_METRIC_PREFIX = "system/"
METRIC_SYSTEM_CPU = f"{SYSTEM_METRIC_PREFIX}cpu_utilization_percentage"
CONFIRM_METRIC_PREFIX = "confirm/"
DEFAULT_METRIC = METRIC_VAL_MACRO_F1  # what the loop and a sweep select on unless told otherwise
DEFAULT_MODE = "max"

# The val metrics a model may be selected on (a sweep profile's `metric`, the loop's best checkpoint): the
# scores the loop reports on every evaluation, each better when higher. Counts (val/n, val/confusion/*) are
# not scores. tests/test_names.py checks this list against what training.metrics reports.
SELECTABLE_METRICS: frozenset[str] = frozenset(
    [f"{VAL_METRIC_PREFIX}{name}" for name in ("accuracy", "macro_precision", "macro_recall", "macro_f1")]
    + [f"{VAL_METRIC_PREFIX}{kind}/{name}" for kind in ("sensitivity", "specificity") for name in CLASS_NAMES]
    + [f"{VAL_METRIC_PREFIX}refer/{name}" for name in ("sensitivity", "specificity", "precision", "f1")])
SELECTION_MODE = "max"  # every selectable metric is a score


def check_metric_name(name: str) -> str:
    """`name` when a model may be selected on it (SELECTABLE_METRICS, all maximised); else a ConfigError that
    lists them. Selecting on train or test metrics is refused: model selection uses validation metrics only."""
    if name not in SELECTABLE_METRICS:
        raise ConfigError(f"metric {name!r} cannot select a model; selectable (each maximised): "
                          f"{', '.join(sorted(SELECTABLE_METRICS))}")
    return name


def split_metric(split: str, name: str) -> str:
    """`<split>/<name>`: split_metric("test", "macro_f1") is test/macro_f1."""
    return f"{split}/{name}"


def ci_metrics(metric: str) -> tuple[str, str]:
    """The names of `metric`'s 95 % interval bounds: test/macro_f1 -> (test/macro_f1/ci_low, .../ci_high)."""
    return f"{metric}/{CI_LOW}", f"{metric}/{CI_HIGH}"


def confusion_metric(split: str, true: str, predicted: str) -> str:
    """One confusion count: confusion_metric("test", "negative", "neutral") is test/confusion/negative_as_neutral."""
    return f"{split}/{CONFUSION}/{true}_as_{predicted}"


def seed_test_metric(seed: int, name: str) -> str:
    """A table partition's test metric of one seed's model, on its parent run: test/seed1/macro_f1."""
    return f"{TEST_METRIC_PREFIX}seed{seed}/{name}"


def mean_test_metric(name: str) -> str:
    """A table partition's test metric averaged over its seeds' models: test/mean/macro_f1."""
    return f"{TEST_METRIC_PREFIX}mean/{name}"


def confirmed_metric(metric: str, part: str = "") -> str:
    """On a parent that confirmed its candidates: the chosen configuration's mean of the sweep metric over the
    confirmation seeds (`confirm/val/macro_f1`), or a part of its record: `ci_low`/`ci_high` (95 % t-interval)
    and `optimism` (the search winner's val minus its own confirmed mean)."""
    return f"{CONFIRM_METRIC_PREFIX}{metric}" + (f"/{part}" if part else "")


def version_tag(package: str) -> str:
    """The tag holding `package`'s installed version on a parent run (`scolio.version.ray`)."""
    return f"{TAG_VERSION_PREFIX}{package}"


def lockbox_entry_tag(attempt: int, state: str) -> str:
    """The tag holding one lockbox ledger entry (`scolio.lockbox.entry.1.opened`)."""
    return f"{TAG_LOCKBOX_ENTRY}{attempt}.{state}"


# ------------------------------------------------------------------------- the test-set ledger's looks
# The test-set ledger (tracking/ledger.py MlflowLedger): one experiment per look, numbered across the whole
# store, `<prefix>look-<n>` — creating a named experiment is atomic in every MLflow store, which is what makes a
# claim atomic. Its tags hold the look's records; they are set once and never changed. A look records the
# (sequence id, class) pairs it scored (TAG_LOOK_IDS chunks), so a study's audit finds every look that scored
# any of its test ids, under any test-set key, modality or checkpoint; and each look's hash (TAG_LOOK_HASH,
# over its opened record and pairs) includes the previous look's hash: a chain in which a deleted, purged,
# renamed or edited look shows. Looks recorded before this (`<prefix><test-set key>/look-<n>`, numbered per
# test set, without ids or hash) are still read.
LOCKBOX_EXPERIMENT_PREFIX = "scoliotune-lockbox/"
TAG_TEST_SET = "scolio.test_set"  # on look experiments and on a sweep's parent run: the test set's key
TAG_LOOK = "scolio.look"  # the look's number in the ledger
TAG_LOOK_OPENED = "scolio.look.opened"  # JSON: who looked, with what, when (written with the claim)
TAG_LOOK_COMPLETED = "scolio.look.completed"  # JSON: the metrics, when the look finished
TAG_LOOK_HASH = "scolio.look.hash"  # sha256 of the opened record (with the previous look's hash) and the pairs
TAG_LOOK_IDS = "scolio.look.ids."  # + 3-digit chunk number: the scored (id, class) pairs, zlib + base64
# On a study's parent run, one tag per look that scored any of the study's test ids (its own included), written
# when that look is claimed: + "<look number>" -> the look's hash. The study holds the chain's head as it saw it,
# so purging a look (even the newest) leaves a tag that names a look the ledger no longer has.
TAG_LOCKBOX_SEEN = "scolio.lockbox.seen."
LOOK_KIND_TEST = "test"  # a look scored a model on these ids (a test look)
LOOK_KIND_USE = "use"  # a study trained or validated on these ids, which were other studies' test ids
# A parent run's param: a re-run under the same sweep name must use the same split (resume identity).
PARAM_SPLIT_FINGERPRINT = "split.fingerprint"


def look_experiment_name(test_set_key: str, look: int) -> str:
    """The experiment of look `look` as recorded before looks were numbered across the store (read only)."""
    return f"{LOCKBOX_EXPERIMENT_PREFIX}{test_set_key}/look-{look:04d}"


def ledger_look_name(look: int) -> str:
    """The experiment that holds look `look` of the store's ledger: `scoliotune-lockbox/look-000007`."""
    return f"{LOCKBOX_EXPERIMENT_PREFIX}look-{look:06d}"


def lockbox_seen_tag(look: int) -> str:
    return f"{TAG_LOCKBOX_SEEN}{look}"


# ---------------------------------------------------------------------- data lineage (tracking/lineage.py)
# Runs list the data they saw as MLflow dataset inputs (`mlflow.data`): trials train and val, and only the
# parent run of the study's look the test set. The digest is the fingerprint, cut to MLflow's 36-character
# digest limit (MAX_DATASET_DIGEST_SIZE); the whole fingerprint is the input tag INPUT_TAG_FINGERPRINT.
DATASET_CONTEXT_TRAIN = "training"
DATASET_CONTEXT_VAL = "validation"
DATASET_CONTEXT_TEST = "test"
DATASET_DIGEST_LENGTH = 36
INPUT_TAG_FINGERPRINT = "scolio.fingerprint"
INPUT_TAG_SEQUENCES = "scolio.sequences"  # how many sequences the set holds


def dataset_name(partition: str, part: str) -> str:
    """The MLflow dataset name of one part (train, val, test) of a partition: `Scoliosis1K_118/train`."""
    return f"{partition or 'partition'}/{part}"


def dataset_digest(fingerprint: str) -> str:
    """A fingerprint as an MLflow dataset digest (MLflow stores at most 36 characters)."""
    return fingerprint[:DATASET_DIGEST_LENGTH]


# ------------------------------------------------------------------ registered model (tracking/registry.py)
# A study's tested model, logged from code (tracking/pyfunc_model.py) and registered as one version of
# `registered_model_name(experiment, study)`; MODEL_ALIAS moves to the version of the study's latest look.
MODEL_ALIAS = "champion"
MODEL_ARTIFACT_NAME = "model"  # the logged model's name
MODEL_CHECKPOINT_ARTIFACT = "checkpoint"  # the pyfunc's artifact key: the checkpoint directory
TAG_MODEL_URI = "scolio.model_uri"  # on the parent run(s) of the study's look: models:/<name>@<alias>
# Model version tags (besides TAG_STUDY, TAG_SWEEP, TAG_PROFILE, TAG_SPLIT_FINGERPRINT,
# TAG_TRAINVAL_FINGERPRINT, TAG_PARTITION, TAG_TEST_SET, TAG_LOOK, TAG_TEST_REOPENED from above).
TAG_TEST_MACRO_F1 = "scolio.test.macro_f1"
TAG_TEST_ACCURACY = "scolio.test.accuracy"
TAG_AUDIT_CLEAN = "scolio.audit.clean"  # "true" | "false"
TAG_AUDIT_VERDICT = "scolio.audit.verdict"  # one line: CLEAN, or the problems `scolio audit` found
TAG_CHECKPOINT_HASH = "scolio.checkpoint_hash"  # sha256 of the checkpoint's hashes.json (as the lockbox records)
TAG_SOURCE_PARENT_RUN = "scolio.parent_run_id"  # the parent run whose model this version is


def registered_model_name(experiment: str, study: str) -> str:
    """One registered model per study (`scoliotune-repr-sweep`): its versions are the study's looks, so the
    alias always names the model that study tested last. MLflow refuses '/' and ':' in model names."""
    return f"{experiment}-{study}".replace("/", "-").replace(":", "-")


def model_uri(name: str, alias: str = MODEL_ALIAS) -> str:
    return f"models:/{name}@{alias}"
