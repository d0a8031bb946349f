"""A study's tested model in the MLflow Model Registry.

After a study's look at its test set completes, the checkpoint it tested is logged as an MLflow model on
the parent run whose model it is (models-from-code: tracking/pyfunc_model.py, the checkpoint directory as
its one artifact), registered as a new version of `names.registered_model_name(experiment, study)`, and
the alias `champion` moves to it. The version's tags say what it is: test macro-F1 and accuracy, the audit
verdict (`scolio audit`), the split fingerprints, the test-set key, the checkpoint hash, sweep, study and
profile. The parent run gets `scolio.model_uri` = `models:/<name>@champion`. A seed ensemble directory
(scolio_core/training/ensemble.py) registers the same way: the directory is the artifact and its
`model_hash` (the manifest's sha256, which vouches for every member) is the checkpoint hash.

Re-running a study whose look is recorded registers nothing new: the version of the same parent run and
checkpoint is found by its tags and the alias and run tag are only made sure of.

Loading: `load_registered_model(uri)` is how scoliotune loads a registered model. The artifact store is
writable by more people than the registry's tags, and MLflow runs whatever a logged model's MLmodel names
(a cloudpickle, a code directory, an edited copy of pyfunc_model.py). So before MLflow runs anything it checks
the downloaded copy: one python_function flavour that loads from code, no pickle, no code path, the code file
byte-identical to the pyfunc_model.py this scoliotune ships; then the model loads with the version tag's
checkpoint hash as its model config, which pyfunc_model.py compares with the checkpoint it reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from scolio_core import names
from scolio_core.errors import ContractError, ScolioError
from scolio_core.safe_yaml import brief, load_yaml_file
from scolio_core.tracking.lookups import quote

CODE_PATH = Path(__file__).with_name("pyfunc_model.py")  # the model's code, copied into every logged model
# What a models-from-code pyfunc's MLmodel holds (MLflow 3.x). Anything else could make MLflow load something
# else: `python_model` (a cloudpickle), `code` (a folder put on sys.path), `data` (another MLmodel).
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"
PYFUNC_KEYS = frozenset({"artifacts", "cloudpickle_version", "code", "config", "env", "loader_module",
                         "model_code_path", "python_version", "streamable"})  # config: the logged model_config


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

    from scolio_core.tracking.audit import audit_sweep
    from scolio_core.training.ensemble import model_hash, read_model

    client = MlflowClient(tracking_uri)
    name = names.registered_model_name(experiment, study)
    uri = names.model_uri(name)
    read_model(checkpoint_dir)  # every check a load makes (an ensemble's same configuration too): never register
    digest = model_hash(checkpoint_dir)  # what could not be loaded
    existing = _version_of(client, name, parent_run_id, digest)
    if existing is None:
        parent = client.get_run(parent_run_id)
        tags = parent.data.tags
        try:
            audit = audit_sweep(tracking_uri, tags.get(names.TAG_SWEEP, study), experiment)
        except ScolioError as exc:  # the version still says what it is; `scolio audit` shows the same error
            audit = {"clean": False, "problems": [f"the audit could not run: {exc}"]}
        version_tags = {
            names.TAG_STUDY: study, names.TAG_SWEEP: tags.get(names.TAG_SWEEP, ""),
            names.TAG_PROFILE: tags.get(names.TAG_PROFILE, ""), names.TAG_SOURCE_PARENT_RUN: parent_run_id,
            names.TAG_TEST_MACRO_F1: _number(test_metrics.get(names.METRIC_TEST_MACRO_F1)),
            names.TAG_TEST_ACCURACY: _number(test_metrics.get(names.METRIC_TEST_ACCURACY)),
            names.TAG_TEST_REOPENED: str(bool(reopened)).lower(),
            names.TAG_AUDIT_CLEAN: str(bool(audit["clean"])).lower(), names.TAG_AUDIT_VERDICT: verdict_line(audit),
            names.TAG_SPLIT_FINGERPRINT: tags.get(names.TAG_SPLIT_FINGERPRINT, ""),
            names.TAG_TRAINVAL_FINGERPRINT: tags.get(names.TAG_TRAINVAL_FINGERPRINT, ""),
            names.TAG_PARTITION: tags.get(names.TAG_PARTITION, ""), names.TAG_TEST_SET: test_set_key,
            names.TAG_LOOK: str(look), names.TAG_CHECKPOINT_HASH: digest,
        }
        # MLflow resolves a `models:/<id>` source through the global tracking URI (not the client's), and
        # log_model logs only to the fluent active run: both happen with this store set globally.
        with _global_tracking_uri(tracking_uri):
            model_id = _log_model(tracking_uri, parent_run_id, Path(checkpoint_dir), version_tags, digest)
            _ensure_registered_model(client, name, study, experiment)
            version = client.create_model_version(name, source=f"models:/{model_id}", run_id=parent_run_id,
                                                  tags=version_tags, model_id=model_id,
                                                  description=f"study {study}: the model its look {look} at the "
                                                              "test set evaluated (selected on val)")
        number, new = str(version.version), True
    else:
        number, new = str(existing.version), False
    client.set_registered_model_alias(name, names.MODEL_ALIAS, number)
    for run_id in dict.fromkeys((parent_run_id, *also_tag)):
        client.set_tag(run_id, names.TAG_MODEL_URI, uri)
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
        f"name = {quote(name, 'model name')} and run_id = {quote(parent_run_id, 'run id')}")
    matching = [v for v in found if v.tags.get(names.TAG_CHECKPOINT_HASH) == digest]
    return max(matching, key=lambda v: int(v.version)) if matching else None


def _ensure_registered_model(client, name: str, study: str, experiment: str) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

    try:
        client.create_registered_model(
            name, tags={names.TAG_STUDY: study},
            description=f"Scoliosis screening models of study {study!r} (experiment {experiment!r}). Each version "
                        f"is a model the study tested once on its test set; @{names.MODEL_ALIAS} is the latest.")
    except MlflowException as exc:
        if exc.error_code != ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
            raise


def _log_model(tracking_uri: str, parent_run_id: str, checkpoint_dir: Path, tags: Mapping[str, str],
               digest: str) -> str:
    """Log the pyfunc on the parent run (MLflow 3 links it to the run's metrics); returns the model id."""
    import mlflow

    with _active_run(tracking_uri, parent_run_id):
        info = mlflow.pyfunc.log_model(
            name=names.MODEL_ARTIFACT_NAME, python_model=str(CODE_PATH),
            artifacts={names.MODEL_CHECKPOINT_ARTIFACT: str(checkpoint_dir)},
            # pyfunc_model.py refuses a checkpoint with another hash; load_registered_model passes the version
            # tag's value here at load time, so an edited MLmodel cannot vouch for swapped weights either.
            model_config={names.TAG_CHECKPOINT_HASH: digest},
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


# ------------------------------------------------------------------------------------------------ loading
def load_registered_model(model_uri: str, tracking_uri: str | None = None) -> Any:
    """`mlflow.pyfunc.load_model` for a scoliotune model, `models:/<name>@<alias>` or `models:/<name>/<version>`,
    after `check_model_files` on the downloaded copy (module docstring); a ContractError names what is wrong."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = tracking_uri or mlflow.get_tracking_uri()
    client = MlflowClient(uri)
    name, version = _model_version(client, model_uri)
    expected = version.tags.get(names.TAG_CHECKPOINT_HASH)
    if not expected:
        raise ContractError(f"{model_uri}: version {version.version} records no {names.TAG_CHECKPOINT_HASH}; "
                            "it was not registered by scoliotune")
    with _global_tracking_uri(uri), tempfile.TemporaryDirectory(prefix="scolio-model-") as tmp:
        # Checked and loaded from the same local copy, so nothing can change between the check and the load.
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}", dst_path=tmp))
        check_model_files(local)
        return mlflow.pyfunc.load_model(str(local), model_config={names.TAG_CHECKPOINT_HASH: expected})


def _model_version(client, model_uri: str):
    """(name, version entity) of `models:/<name>@<alias>` or `models:/<name>/<version>`."""
    from mlflow.exceptions import MlflowException

    path = model_uri[len("models:/"):] if model_uri.startswith("models:/") else ""
    name, alias = path.split("@", 1) if "@" in path else (path.rsplit("/", 1)[0], "")
    number = "" if alias else path.rsplit("/", 1)[-1]
    if not name or not (alias or number.isdigit()):
        raise ContractError(f"{brief(model_uri)}: give a registered model as models:/<name>@<alias> or "
                            "models:/<name>/<version>")
    try:
        version = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number)
    except MlflowException as exc:
        raise ContractError(f"{brief(model_uri)}: not found in the registry ({brief(str(exc), 120)})") from None
    return name, version


def check_model_files(model_dir: str | Path) -> None:
    """Refuse, without running anything, a logged model MLflow would load by other means than the code
    scoliotune ships: its MLmodel has one python_function flavour loading from code (no pickle, no code folder,
    no data path), one checkpoint artifact inside the model, and the code file is this pyfunc_model.py."""
    model_dir = Path(model_dir)
    where = f"{model_dir / 'MLmodel'}"
    mlmodel = load_yaml_file(model_dir / "MLmodel")  # bounded: the file is as untrusted as the rest
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, Mapping) else None
    if not isinstance(flavors, Mapping) or list(flavors) != ["python_function"]:
        raise ContractError(f"{where}: flavors {brief(list(flavors or ()))}, expected python_function only")
    pyfunc = flavors["python_function"]
    if not isinstance(pyfunc, Mapping):
        raise ContractError(f"{where}: python_function is not a mapping")
    unexpected = sorted(str(key) for key in pyfunc if key not in PYFUNC_KEYS)
    if unexpected:
        raise ContractError(f"{where}: python_function.{brief(unexpected[0], 40)} is not part of a scoliotune "
                            "model (a pickle, code or data path MLflow would load); refusing to load it")
    if pyfunc.get("loader_module") != CODE_LOADER or pyfunc.get("code") is not None:
        raise ContractError(f"{where}: python_function must load from code ({CODE_LOADER}, no code folder), "
                            f"got loader {brief(pyfunc.get('loader_module'))}, code {brief(pyfunc.get('code'))}")
    config = pyfunc.get("config")
    if not isinstance(config, Mapping) or list(config) != [names.TAG_CHECKPOINT_HASH]:
        raise ContractError(f"{where}: python_function.config must hold {names.TAG_CHECKPOINT_HASH} only, "
                            f"got {brief(config)}")
    if posixpath.basename(str(pyfunc.get("model_code_path"))) != CODE_PATH.name:
        raise ContractError(f"{where}: model_code_path {brief(pyfunc.get('model_code_path'))} is not "
                            f"{CODE_PATH.name}")
    _check_checkpoint_artifact(pyfunc.get("artifacts"), where)
    code = model_dir / CODE_PATH.name
    shipped = hashlib.sha256(CODE_PATH.read_bytes()).hexdigest()
    copied = hashlib.sha256(code.read_bytes()).hexdigest() if code.is_file() and not code.is_symlink() else "none"
    if copied != shipped:
        raise ContractError(f"{code}: sha256 {copied[:16]} is not that of the {CODE_PATH.name} this scoliotune "
                            f"ships ({shipped[:16]}): edited in the artifact store, or logged by another "
                            "scoliotune version; refusing to run it")


def _check_checkpoint_artifact(artifacts: Any, where: str) -> None:
    if not isinstance(artifacts, Mapping) or list(artifacts) != [names.MODEL_CHECKPOINT_ARTIFACT]:
        raise ContractError(f"{where}: artifacts {brief(artifacts)}, expected one {names.MODEL_CHECKPOINT_ARTIFACT!r}")
    entry = artifacts[names.MODEL_CHECKPOINT_ARTIFACT]
    path = entry.get("path") if isinstance(entry, Mapping) else None
    if (not isinstance(path, str) or posixpath.isabs(path) or posixpath.normpath(path) != path
            or not path.startswith("artifacts/") or ".." in path.split("/")):
        raise ContractError(f"{where}: the checkpoint artifact's path {brief(path)} is not inside the model")
