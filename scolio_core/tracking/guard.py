"""Before any compute: a run's split against the studies the store's test-set ledger knows.

    check_sweep_split(uri, "scoliotune", "repr-sweep", split, kind="representation")   # prepare_sweep
    check_training_split(args.tracking_uri, split)                                     # scolio train

Two questions (issue 26, docs/reliability.md "The test lockbox"):
- Is this a re-run of a study on another split? A sweep name is a study's resume identity, and it includes
  the split fingerprint (partition, val carve, data): a parent run of that name recorded on another split
  refuses the run, in one line, before Ray starts. Another split is another study: a new name.
- Would it train or validate on test ids? Ids a test look scored are that study's test ids
  (scolio_core.evaluation.lockbox.check_trainval_use): the study's own are refused; another study's are
  recorded as a `use` look of the new study (a sweep: the earlier study's audit lists it) or refused (`scolio
  train`, which has no study to record it under). The partitions of one table are one study.
"""

from __future__ import annotations

from scolio_core import names
from scolio_core.data.splits import Split
from scolio_core.errors import ConfigError, LockboxError
from scolio_core.tracking import lookups
from scolio_core.tracking.ledger import choose_ledger, existing_store, normalize_ledger

MLFLOW_PREFIX = "mlflow:"  # train.init_from of a finetune: mlflow:<run id of the baseline trial>


def table_family(name: str, kind: str) -> str | None:
    """The table a table partition's sweep belongs to (sweeps/table.py names them `<table>-p<token>`)."""
    from scolio_core.evaluation.looks import TABLE_FAMILY_PREFIX

    if kind != "table" or "-p" not in name:
        return None
    return TABLE_FAMILY_PREFIX + name.rsplit("-p", 1)[0]  # never equal to a sweep's study name


def study_of(client, experiment_id: str | None, name: str, kind: str, init_from: str = "") -> str:
    """The study a sweep belongs to: a finetune stage's is its baseline's (found from `train.init_from`, the
    baseline trial's run), every other sweep's is its own name (or what its parent run already records)."""
    if kind == "finetune" and init_from.startswith(MLFLOW_PREFIX):
        try:
            trial = client.get_run(init_from[len(MLFLOW_PREFIX):])
            parent = client.get_run(trial.data.tags[names.TAG_PARENT_RUN_ID])
        except Exception:  # noqa: BLE001 - an unknown run: the finetune stage itself reports it
            return name
        return parent.data.tags.get(names.TAG_STUDY) or parent.data.tags.get(names.TAG_SWEEP) or name
    if experiment_id is not None:
        parent = lookups.find_parent_run(client, experiment_id, name)
        if parent is not None:
            return parent.data.tags.get(names.TAG_STUDY) or name
    return name


def check_sweep_split(tracking_uri: str, experiment: str, name: str, split: Split, *, kind: str,
                      init_from: str = "", data_root: str | None = None) -> dict | None:
    """Refuse a re-run of sweep `name` on another split and a split that trains or validates on its study's
    test ids; record its use of other studies' test ids as a look (returned, with `touched`); None otherwise.
    Runs before Ray starts and before any trial (scolio_sweep.stages.prepare.prepare_sweep)."""
    from mlflow.tracking import MlflowClient

    from scolio_core.evaluation.lockbox import check_trainval_use
    from scolio_core.evaluation.looks import dataset_identity

    if not existing_store(tracking_uri):
        return None  # a new store: no study, no look
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    experiment_id = found.experiment_id if found is not None else None
    parent = lookups.find_parent_run(client, experiment_id, name) if experiment_id else None
    if parent is not None:
        recorded = parent.data.tags.get(names.TAG_SPLIT_FINGERPRINT)
        if recorded and recorded != split.fingerprint:
            raise ConfigError(
                f"sweep {name!r} (MLflow run {parent.info.run_id}) was run on split {recorded[:12]} "
                f"({parent.data.tags.get(names.TAG_PARTITION, '?')}), this run's split is {split.fingerprint[:12]} "
                f"({split.partition}): a re-run of a study must use its split (its look and its selection are tied "
                "to it); another partition, val carve or data set is another study: use a new --name")
    study = study_of(client, experiment_id, name, kind, init_from)
    family = table_family(name, kind) or study
    from scolio_core.tracking.ledger import MlflowLedger

    return check_trainval_use(MlflowLedger(tracking_uri), split.trainval(), study=study, family=family,
                              entry_point=f"sweeps/{kind}.py",
                              dataset=dataset_identity(data_root) if data_root else None)


def check_training_split(tracking_uri: str | None, split: Split, data_root: str | None = None) -> None:
    """`scolio train`: refuse (one line, naming the ledger and why it was chosen) a split whose train or val
    ids are test ids of a study in the ledger. A store that does not exist holds no study."""
    from scolio_core.evaluation.lockbox import check_trainval_use
    from scolio_core.evaluation.looks import dataset_identity

    choice = choose_ledger(tracking_uri=tracking_uri)
    if not existing_store(choice.location):
        return
    try:
        check_trainval_use(choice.ledger, split.trainval(), study=None, entry_point="scolio train",
                           dataset=dataset_identity(data_root) if data_root else None)
    except LockboxError as exc:
        raise LockboxError(f"{exc} [{choice.describe()}]") from None


__all__ = ["check_sweep_split", "check_training_split", "normalize_ledger", "study_of", "table_family"]
