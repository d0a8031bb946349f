"""The MLflow record's names, and the lookups built on them: the one owner of every tag, param and metric
name scoliotune writes or reads (as `mlflow/utils/mlflow_tags.py` is for MLflow's own tags).

    parent run: TAG_SWEEP=<sweep>, TAG_ROLE=ROLE_PARENT; selection, data, version and lockbox tags
    child run:  TAG_SWEEP=<sweep>, TAG_ROLE=ROLE_TRIAL, TAG_TRIAL_ID=<Ray trial id>, TAG_PARENT_RUN_ID=<parent>

    parent = find_parent_run(client, experiment_id, "repr-sweep")   # the oldest parent, or None
    child = find_trial_run(client, experiment_id, parent.info.run_id, trial_id)

Writers (sweeps/tracking.py, sweeps/common.py, tracking/ledger.py) and readers (tracking/report.py,
sweeps/finetune.py, scripts/check_mlflow_ui.py) import from here, so a rename is one edit and every reader
resolves a sweep to the same parent run. The bottom of the tracking layer: it imports only
scolio_core.errors (and mlflow's types, for annotations only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scolio_core.errors import ConfigError

if TYPE_CHECKING:  # the lookups only call the client they are given: importing mlflow here would slow --help
    from mlflow.entities import Run
    from mlflow.tracking import MlflowClient

DEFAULT_EXPERIMENT = "scoliotune"

# ----------------------------------------------------------------------------------------- run identity
TAG_PARENT_RUN_ID = "mlflow.parentRunId"  # MLflow's own (mlflow.utils.mlflow_tags.MLFLOW_PARENT_RUN_ID)
TAG_SWEEP = "scolio.sweep"
TAG_ROLE = "scolio.role"
ROLE_PARENT = "parent"
ROLE_TRIAL = "trial"
# A re-training of a top search configuration with another train.seed, before selection (sweeps/confirm.py);
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
# Confirmation before selection (sweeps/confirm.py), on the parent: every candidate's search val and confirmed
# vals (JSON), and the rule that fixed which checkpoint is tested before the look.
TAG_CONFIRMATION = "scolio.confirmation"
TAG_CONFIRM_RULE = "scolio.confirm.rule"
# A study: a representation sweep and the finetune stage run on its winner open the test set once together.
TAG_STUDY = "scolio.study"  # on every stage's parent run: the study (the representation sweep's name)
TAG_TEST_DEFERRED = "scolio.test_deferred"  # "true": this stage left the study's look to its last stage
TAG_STUDY_FINAL_PARENT = "scolio.study.final_parent"  # the parent run whose model the study tested
# A finetune sweep's baseline (a representation sweep's winner).
TAG_BASELINE_SWEEP_RUN = "scolio.baseline_sweep_run"
TAG_BASELINE_RUN = "scolio.baseline_run"
TAG_BASELINE_VAL_MACRO_F1 = "scolio.baseline_val_macro_f1"
# A partition table (sweeps/table.py): one parent run per partition, all tagged with the table's name.
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
# System metrics of a trial (trainables/system_metrics.py) keep MLflow's own names, prefix included, so the MLflow
# UI shows them in a run's "System metrics" tab: system/cpu_utilization_percentage, system/gpu_0_utilization_...
SYSTEM_METRIC_PREFIX = "system/"
METRIC_SYSTEM_CPU = f"{SYSTEM_METRIC_PREFIX}cpu_utilization_percentage"

# Written by the training loop (scolio_core.training.loop.SELECTION_METRIC) and the lockbox; named here for
# the readers, which cannot import those layers' internals just for a string.
METRIC_VAL_MACRO_F1 = "val/macro_f1"
METRIC_VAL_ACCURACY = "val/accuracy"
METRIC_ITERATION = "iteration"
TEST_METRIC_PREFIX = "test/"
METRIC_TEST_REOPENED = "test/reopened"
CONFIRM_METRIC_PREFIX = "confirm/"
DEFAULT_METRIC = METRIC_VAL_MACRO_F1  # a parent without TAG_METRIC was selected on this
DEFAULT_MODE = "max"

OLDEST_FIRST = "attributes.start_time ASC"
_PAGE = 1000


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


# ---------------------------------------------------------------------------------------------- filters
def quote(value: str, what: str) -> str:
    """`value` as an MLflow filter string literal; `what` names it in the error."""
    # MLflow's filter grammar has no escape for a quote inside a string literal.
    if "'" in value:
        raise ConfigError(f"{what} {value!r} must not contain a single quote (it is used in MLflow filters)")
    return f"'{value}'"


def sweep_filter(sweep_name: str) -> str:
    """Every run of a sweep, its parent and its trials."""
    return f"tags.`{TAG_SWEEP}` = {quote(sweep_name, 'sweep name')}"


def parents_filter(sweep_name: str | None = None) -> str:
    """The parent runs of `sweep_name`, or of every sweep when None."""
    role = f"tags.`{TAG_ROLE}` = '{ROLE_PARENT}'"
    return role if sweep_name is None else f"{sweep_filter(sweep_name)} and {role}"


def trials_filter(sweep_name: str) -> str:
    """The trial (child) runs of `sweep_name`, whichever parent they hang under."""
    return f"{sweep_filter(sweep_name)} and tags.`{TAG_ROLE}` = '{ROLE_TRIAL}'"


def children_filter(parent_run_id: str, *, trial_id: str | None = None, status: str | None = None) -> str:
    """The child runs of one parent; narrowed to one Ray trial and/or one run status when given."""
    text = f"tags.`{TAG_PARENT_RUN_ID}` = {quote(parent_run_id, 'run id')}"
    if trial_id is not None:
        text += f" and tags.`{TAG_TRIAL_ID}` = {quote(trial_id, 'trial id')}"
    if status is not None:
        text += f" and attributes.status = {quote(status, 'run status')}"
    return text


# ---------------------------------------------------------------------------------------------- lookups
def search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    """Every run matching `filter_string`, oldest first (all pages)."""
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=filter_string, max_results=_PAGE,
                                  order_by=[OLDEST_FIRST], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_parent_runs(client: MlflowClient, experiment_id: str, sweep_name: str) -> list[Run]:
    """Every parent run tagged with `sweep_name`, oldest first (normally exactly one)."""
    return search_all(client, experiment_id, parents_filter(sweep_name))


def find_parent_run(client: MlflowClient, experiment_id: str, sweep_name: str) -> Run | None:
    """The sweep's parent run: the oldest when there are several (the one a resumed sweep reuses, so it
    holds the trials, the selection and the lockbox ledger); None when the sweep has none."""
    runs = client.search_runs([experiment_id], filter_string=parents_filter(sweep_name), max_results=1,
                              order_by=[OLDEST_FIRST])
    return runs[0] if runs else None


def sweep_names(client: MlflowClient, experiment_id: str) -> list[str]:
    """The names of the sweeps that have a parent run in the experiment, sorted."""
    return sorted({r.data.tags.get(TAG_SWEEP, "?") for r in search_all(client, experiment_id, parents_filter())})


def find_child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str, *,
                    status: str | None = None) -> list[Run]:
    """The child runs of a parent (optionally only those with run `status`), oldest first."""
    return search_all(client, experiment_id, children_filter(parent_run_id, status=status))


def find_trial_run(client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str) -> Run | None:
    """The child run of Ray trial `trial_id` under the parent: the oldest if duplicated (the one the
    lifecycle callback logs to); None when the trial has no run."""
    runs = client.search_runs([experiment_id], filter_string=children_filter(parent_run_id, trial_id=trial_id),
                              max_results=1, order_by=[OLDEST_FIRST])
    return runs[0] if runs else None

# The test-set ledger (tracking/ledger.py MlflowLedger): one experiment per look, named
# `<prefix><test-set key>/look-<n>` — creating a named experiment is atomic in every MLflow store, which is
# what makes a claim atomic. Its tags hold the look's records; they are set once and never changed.
LOCKBOX_EXPERIMENT_PREFIX = "scoliotune-lockbox/"
TAG_TEST_SET = "scolio.test_set"  # on look experiments and on a sweep's parent run: the test set's key
TAG_LOOK = "scolio.look"  # the look's number in its test set's ledger
TAG_LOOK_OPENED = "scolio.look.opened"  # JSON: who looked, with what, when (written with the claim)
TAG_LOOK_COMPLETED = "scolio.look.completed"  # JSON: the metrics, when the look finished


def look_experiment_name(test_set_key: str, look: int) -> str:
    return f"{LOCKBOX_EXPERIMENT_PREFIX}{test_set_key}/look-{look:04d}"


def test_set_filter(test_set_key: str) -> str:
    """The look experiments of one test set (for `search_experiments`)."""
    return f"tags.`{TAG_TEST_SET}` = {quote(test_set_key, 'test set key')}"


test_set_filter.__test__ = False  # not a pytest test

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
