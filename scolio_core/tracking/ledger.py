"""The test lockbox's records in MLflow.

`MlflowLedger` is the test-set ledger every entry point shares (see scolio_core.evaluation.lockbox): each
look is its own experiment, `scoliotune-lockbox/<test-set key>/look-<n>`. MLflow refuses to create a second
experiment with a name that exists (deleted ones included), in a sqlite store and behind a tracking server
alike, so creating that experiment is the atomic claim of look n. Its tags, written with the claim and once
at completion, hold the look's records; nothing is overwritten.

`ParentRunLog` mirrors a sweep's own looks as tags and metrics on its parent run, which is what
`scolio report` and the leaderboard read.
"""

from __future__ import annotations

import datetime as _dt
import json

from scolio_core.tracking.schema import (
    LOCKBOX_EXPERIMENT_PREFIX,
    TAG_LOCKBOX_ENTRY,
    TAG_LOCKBOX_EVALUATIONS,
    TAG_LOCKBOX_STATE,
    TAG_LOOK,
    TAG_LOOK_COMPLETED,
    TAG_LOOK_OPENED,
    TAG_TEST_REOPENED,
    TAG_TEST_SET,
    lockbox_entry_tag,
    look_experiment_name,
    test_set_filter,
)


class MlflowLedger:
    """Looks at test sets, kept in the tracking store at `tracking_uri`."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)

    def looks(self, key: str) -> list[dict]:
        from mlflow.entities import ViewType

        found, token = [], None
        while True:  # deleted look experiments still count: a look cannot be undone
            page = self.client.search_experiments(view_type=ViewType.ALL, filter_string=test_set_filter(key),
                                                  max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        looks = []
        for experiment in found:
            if not experiment.name.startswith(LOCKBOX_EXPERIMENT_PREFIX):
                continue
            tags = experiment.tags
            look = {"look": int(tags.get(TAG_LOOK, 0)), "state": "opened",
                    **json.loads(tags.get(TAG_LOOK_OPENED, "{}"))}
            if TAG_LOOK_COMPLETED in tags:
                look.update(json.loads(tags[TAG_LOOK_COMPLETED]))
                look["state"] = "completed"
            look["ledger_experiment_id"] = experiment.experiment_id
            looks.append(look)
        return sorted(looks, key=lambda look: look["look"])

    def claim(self, key: str, look: int, record: dict) -> bool:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS, ErrorCode

        tags = {TAG_TEST_SET: key, TAG_LOOK: str(look), TAG_LOOK_OPENED: json.dumps(record, sort_keys=True)}
        try:
            self.client.create_experiment(look_experiment_name(key, look), tags=tags)
        except MlflowException as exc:
            if exc.error_code == ErrorCode.Name(RESOURCE_ALREADY_EXISTS):
                return False  # another process claimed look n first
            raise
        return True

    def complete(self, key: str, look: int, record: dict) -> None:
        experiment = self.client.get_experiment_by_name(look_experiment_name(key, look))
        self.client.set_experiment_tag(experiment.experiment_id, TAG_LOOK_COMPLETED,
                                       json.dumps(record, sort_keys=True))


class ParentRunLog:
    """A sweep's own looks as tags on its MLflow parent run (scope = the sweep), with the test metrics."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id

    def entries(self) -> list[dict]:
        tags = self.client.get_run(self.run_id).data.tags
        rows = [json.loads(v) for k, v in tags.items() if k.startswith(TAG_LOCKBOX_ENTRY)]
        return sorted(rows, key=lambda row: (row["attempt"], row["state"] == "completed"))

    def append(self, entry: dict) -> None:
        from mlflow.entities import Metric, RunTag

        # One log_batch: MLflow writes its metrics first and then all its tags in one transaction, so a crash
        # mid-append never leaves a "completed" entry without its test metrics or the summary tags.
        slim = {k: v for k, v in entry.items() if k not in ("input", "model")}  # tags are capped at 8000 chars
        tags = {lockbox_entry_tag(entry["attempt"], entry["state"]): json.dumps(slim, sort_keys=True),
                TAG_LOCKBOX_STATE: entry["state"], TAG_LOCKBOX_EVALUATIONS: str(entry["attempt"])}
        if entry.get("test_set"):
            tags[TAG_TEST_SET] = entry["test_set"]
        metrics = []
        if entry["state"] == "completed":
            tags[TAG_TEST_REOPENED] = str(entry["reopened"]).lower()
            now = int(_dt.datetime.now().timestamp() * 1000)
            metrics = [Metric(k, float(v), now, 0) for k, v in entry["metrics"].items() if isinstance(v, (int, float))]
        self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()],
                              synchronous=True)
