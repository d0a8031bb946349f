"""The test lockbox's ledger kept as tags on a sweep's MLflow parent run (scope = the sweep)."""

from __future__ import annotations

import datetime as _dt
import json

from scolio_core.tracking.schema import (
    TAG_LOCKBOX_ENTRY,
    TAG_LOCKBOX_EVALUATIONS,
    TAG_LOCKBOX_STATE,
    TAG_TEST_REOPENED,
    lockbox_entry_tag,
)


class MlflowLedger:
    """Ledger entries as tags on one MLflow run (a sweep's parent run)."""

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
        tags = {lockbox_entry_tag(entry["attempt"], entry["state"]): json.dumps(entry, sort_keys=True),
                TAG_LOCKBOX_STATE: entry["state"], TAG_LOCKBOX_EVALUATIONS: str(entry["attempt"])}
        metrics = []
        if entry["state"] == "completed":
            tags[TAG_TEST_REOPENED] = str(entry["reopened"]).lower()
            now = int(_dt.datetime.now().timestamp() * 1000)
            metrics = [Metric(k, float(v), now, 0) for k, v in entry["metrics"].items() if isinstance(v, (int, float))]
        self.client.log_batch(self.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()],
                              synchronous=True)
