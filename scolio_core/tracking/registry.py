"""A study's tested model in the MLflow Model Registry.

After a study's look at its test set completes, the checkpoint it tested is logged as an MLflow model on
the parent run whose model it is (models-from-code: tracking/pyfunc_model.py, the checkpoint directory as
its one artifact), registered as a new version of `schema.registered_model_name(experiment, study)`, and
the alias `champion` moves to it. The version's tags say what it is: test macro-F1 and accuracy, the audit
verdict (`scolio audit`), the split fingerprints, the test-set key, the checkpoint hash, sweep, study and
profile. The parent run gets `scolio.model_uri` = `models:/<name>@champion`.

Re-running a study whose look is recorded registers nothing new: the version of the same parent run and
checkpoint is found by its tags and the alias and run tag are only made sure of.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from scolio_core.errors import ScolioError
from scolio_core.tracking import schema

CODE_PATH = Path(__file__).with_name("pyfunc_model.py")  # the model's code, copied into every logged model


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    version: str
    uri: str  # models:/<name>@<alias>
    new: bool  # False: the version of this parent run and checkpoint already existed


def register_study_model(tracking_uri: str, *, parent_run_id: str, checkpoint_dir: str | Path, study: str,
                         experiment: str, test_metrics: Mapping[str, float], test_set_key: str, look: int,
                         reopened: bool, also_tag: tuple[str, ...] = ()) -> RegisteredModel:
    """Log, register and alias the model of the look `look` (see the module docstring); `also_tag` names other
    parent runs of the study that get `scolio.model_uri` too."""
    from mlflow.tracking import MlflowClient

    from scolio_core.tracking.report import audit_sweep
    from scolio_core.training.checkpoint import checkpoint_hash

    client = MlflowClient(tracking_uri)
    name = schema.registered_model_name(experiment, study)
    uri = schema.model_uri(name)
    digest = checkpoint_hash(checkpoint_dir)
    existing = _version_of(client, name, parent_run_id, digest)
    if existing is None:
        parent = client.get_run(parent_run_id)
        tags = parent.data.tags
        try:
            audit = audit_sweep(tracking_uri, tags.get(schema.TAG_SWEEP, study), experiment)
        except ScolioError as exc:  # the version still says what it is; `scolio audit` shows the same error
            audit = {"clean": False, "problems": [f"the audit could not run: {exc}"]}
        version_tags = {
            schema.TAG_STUDY: study, schema.TAG_SWEEP: tags.get(schema.TAG_SWEEP, ""),
            schema.TAG_PROFILE: tags.get(schema.TAG_PROFILE, ""), schema.TAG_SOURCE_PARENT_RUN: parent_run_id,
            schema.TAG_TEST_MACRO_F1: _number(test_metrics.get("test/macro_f1")),
            schema.TAG_TEST_ACCURACY: _number(test_metrics.get("test/accuracy")),
            schema.TAG_TEST_REOPENED: str(bool(reopened)).lower(),
            schema.TAG_AUDIT_CLEAN: str(bool(audit["clean"])).lower(), schema.TAG_AUDIT_VERDICT: verdict_line(audit),
            schema.TAG_SPLIT_FINGERPRINT: tags.get(schema.TAG_SPLIT_FINGERPRINT, ""),
            schema.TAG_TRAINVAL_FINGERPRINT: tags.get(schema.TAG_TRAINVAL_FINGERPRINT, ""),
            schema.TAG_PARTITION: tags.get(schema.TAG_PARTITION, ""), schema.TAG_TEST_SET: test_set_key,
            schema.TAG_LOOK: str(look), schema.TAG_CHECKPOINT_HASH: digest,
        }
        # MLflow resolves a `models:/<id>` source through the global tracking URI (not the client's), and
        # log_model logs only to the fluent active run: both happen with this store set globally.
        with _global_tracking_uri(tracking_uri):
            model_id = _log_model(tracking_uri, parent_run_id, Path(checkpoint_dir), version_tags)
            _ensure_registered_model(client, name, study, experiment)
            version = client.create_model_version(name, source=f"models:/{model_id}", run_id=parent_run_id,
                                                  tags=version_tags, model_id=model_id,
                                                  description=f"study {study}: the model its look {look} at the "
                                                              "test set evaluated (selected on val)")
        number, new = str(version.version), True
    else:
        number, new = str(existing.version), False
    client.set_registered_model_alias(name, schema.MODEL_ALIAS, number)
    for run_id in dict.fromkeys((parent_run_id, *also_tag)):
        client.set_tag(run_id, schema.TAG_MODEL_URI, uri)
    return RegisteredModel(name=name, version=number, uri=uri, new=new)


def verdict_line(audit: Mapping) -> str:
    """The audit's verdict in one tag-sized line."""
    if audit["clean"]:
        return "CLEAN: selected on val, the best trial by val, test looked at once with the data its contract names"
    text = f"{len(audit['problems'])} PROBLEM(S): " + "; ".join(audit["problems"])
    return text[:4000]


def _number(value: float | None) -> str:
    return "" if value is None else f"{float(value):.6f}"


def _version_of(client, name: str, parent_run_id: str, digest: str):
    """The version registered earlier for this parent run and checkpoint, or None."""
    found = client.search_model_versions(
        f"name = {schema.quote(name, 'model name')} and run_id = {schema.quote(parent_run_id, 'run id')}")
    matching = [v for v in found if v.tags.get(schema.TAG_CHECKPOINT_HASH) == digest]
    return max(matching, key=lambda v: int(v.version)) if matching else None


def _ensure_registered_model(client, name: str, study: str, experiment: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    try:
        client.create_registered_model(
            name, tags={schema.TAG_STUDY: study},
            description=f"Scoliosis screening models of study {study!r} (experiment {experiment!r}). Each version "
                        f"is a model the study tested once on its test set; @{schema.MODEL_ALIAS} is the latest.")
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise


def _log_model(tracking_uri: str, parent_run_id: str, checkpoint_dir: Path, tags: Mapping[str, str]) -> str:
    """Log the pyfunc on the parent run (MLflow 3 links it to the run's metrics); returns the model id."""
    import mlflow

    with _active_run(tracking_uri, parent_run_id):
        info = mlflow.pyfunc.log_model(
            name=schema.MODEL_ARTIFACT_NAME, python_model=str(CODE_PATH),
            artifacts={schema.MODEL_CHECKPOINT_ARTIFACT: str(checkpoint_dir)},
            # Stated, not inferred: inference would load the model in a subprocess just to list imports.
            pip_requirements=_requirements(), tags=dict(tags))
    return info.model_id


def _requirements() -> list[str]:
    """The versions this model was logged with; scoliotune's own dependencies bring the rest."""
    pins = []
    for package in ("scoliotune", "torch", "mlflow", "numpy", "pandas"):
        try:
            pins.append(f"{package}=={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pins.append(package)
    return pins


@contextlib.contextmanager
def _global_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to `tracking_uri`, and put back afterwards."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


@contextlib.contextmanager
def _active_run(tracking_uri: str, run_id: str) -> Iterator[None]:
    """`run_id` as MLflow's fluent active run; its status (FINISHED, KILLED) is put back afterwards."""
    import mlflow
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    status = client.get_run(run_id).info.status
    try:
        with mlflow.start_run(run_id=run_id):
            yield
    finally:
        if status != "RUNNING":
            client.set_terminated(run_id, status=status)
