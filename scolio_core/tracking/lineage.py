"""Data lineage: which sequences a run saw, as MLflow dataset inputs (`mlflow.data`).

Trials log their train and val sets (context `training` / `validation`); only the parent run of a study's
look logs the test set (context `test`). A data set is its id list (a small DataFrame: MLflow keeps its schema
and row count, not the rows), named `<partition>/<part>`, with the fingerprint as digest and the data root as
source, so the UI's Datasets column shows which split a run used and two runs on the same split share one
MLflow dataset.

    client.log_inputs(run_id, datasets=[dataset_input("Scoliosis1K_118/train", "training", fp, root, ids)])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scolio_core.names import (
    DATASET_CONTEXT_TEST,
    DATASET_CONTEXT_TRAIN,
    DATASET_CONTEXT_VAL,
    INPUT_TAG_FINGERPRINT,
    INPUT_TAG_SEQUENCES,
    dataset_digest,
    dataset_name,
)


@dataclass(frozen=True)
class DataSetRef:
    """One set of sequences a run saw; plain data, so the driver's Tune callback can pickle it."""

    name: str  # names.dataset_name(partition, part)
    context: str  # names.DATASET_CONTEXT_*
    fingerprint: str  # the split's fingerprint (train/val) or the test-set key (test)
    source: str  # the data root (a local path: MLflow records it as a `local` source, nothing is copied)
    ids: tuple[str, ...]


def dataset_input(ref: DataSetRef):
    """`ref` as an `mlflow.entities.DatasetInput` for `MlflowClient.log_inputs` (logging it twice to a run
    is a no-op: MLflow deduplicates inputs by dataset name and digest)."""
    import pandas as pd
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    # `_to_mlflow_entity` is how mlflow.log_input itself turns a Dataset into the entity the client logs.
    frame = pd.DataFrame({"sequence_id": list(ref.ids)})
    dataset = from_pandas(frame, source=ref.source, name=ref.name, digest=dataset_digest(ref.fingerprint))
    tags = [InputTag(MLFLOW_DATASET_CONTEXT, ref.context), InputTag(INPUT_TAG_FINGERPRINT, ref.fingerprint),
            InputTag(INPUT_TAG_SEQUENCES, str(len(ref.ids)))]
    return DatasetInput(dataset=dataset._to_mlflow_entity(), tags=tags)


def split_refs(partition: str, fingerprint: str, source: str, train: Sequence[str], val: Sequence[str]
               ) -> tuple[DataSetRef, DataSetRef]:
    """The train and val sets of a train/val split (one fingerprint: the split's), as trials log them."""
    return (DataSetRef(dataset_name(partition, "train"), DATASET_CONTEXT_TRAIN, fingerprint, source, tuple(train)),
            DataSetRef(dataset_name(partition, "val"), DATASET_CONTEXT_VAL, fingerprint, source, tuple(val)))


def test_set_ref(partition: str, test_set_key: str, source: str, ids: Sequence[str]) -> DataSetRef:
    """The test set of a look (digest: the lockbox's test-set key), as the look's parent run logs it."""
    return DataSetRef(dataset_name(partition, "test"), DATASET_CONTEXT_TEST, test_set_key, source, tuple(ids))


test_set_ref.__test__ = False  # not a pytest test
