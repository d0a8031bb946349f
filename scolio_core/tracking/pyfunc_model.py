"""A study's final model as an MLflow pyfunc, logged with MLflow's models-from-code.

MLflow copies this file into the logged model and runs it on `mlflow.pyfunc.load_model`; the last line
hands MLflow the model object. Nothing is unpickled: the checkpoint or seed ensemble (the model's one
artifact) is read by `read_model` (weights with `torch.load(weights_only=True)`, every file checked against
its sha256), and only when its `model_hash` is the one recorded when the model was registered (the model
config's `scolio.checkpoint_hash`): a rewritten hashes.json or ensemble manifest cannot vouch for swapped
weights.

Whoever can write the artifact store can still edit this very file in the logged copy, and MLflow runs it:
`scolio_core.tracking.registry.load_registered_model` checks the copy against the code scoliotune ships
before MLflow runs anything (docs/cluster.md, "Trust boundary").

    model = load_registered_model("models:/scoliotune-repr-sweep@champion")   # or mlflow.pyfunc.load_model
    model.predict([poses_a, poses_b])   # (T, 17, 3) float arrays, or (T, 64, 64) uint8 for a silhouette model
    #            class  negative  neutral  positive
    #   0     positive     0.021    0.102     0.877

Input: a list of arrays (one per sequence), one array, or a dict {id: array} (ids become the index). The
preprocessing is `scolio predict`'s (scolio_core.evaluation.predict): kNN imputation of missing joints,
PAVs for DRF normalised with the checkpoint's own statistics (an ensemble: each member's own, logits
averaged over members). Output: one row per sequence, the class name
and the probability of each class. A wrong shape, dtype or modality is a one-line DataError naming the
sequence. Registration: scolio_core/tracking/registry.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlflow
import numpy as np

CLASS_COLUMN = "class"  # the other columns are the class names, in CLASS_NAMES order
_FRAME_SHAPES = {"skeleton": ((17, 3), "pose arrays (T, 17, 3): x, y, confidence per COCO-17 joint"),
                 "silhouette": ((64, 64), "silhouette arrays (T, 64, 64) uint8")}


class ScolioModel(mlflow.pyfunc.PythonModel):
    """A scoliotune checkpoint or seed ensemble behind MLflow's pyfunc interface (predict without type hints on purpose:
    MLflow cannot describe a list of ragged arrays, so it passes the input through untouched)."""

    # MLflow (3.x, pyfunc/model.py __init_subclass__) would wrap predict for type-hint validation and warn at
    # every load that there are no hints; the input is checked below instead. Without the flag: only the warning.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        from scolio_core.errors import ContractError
        from scolio_core.names import MODEL_CHECKPOINT_ARTIFACT, TAG_CHECKPOINT_HASH
        from scolio_core.training.ensemble import model_hash, read_model

        directory = context.artifacts[MODEL_CHECKPOINT_ARTIFACT]
        # hashes.json vouches for the weights (an ensemble's manifest for its members' hashes.json); the hash
        # recorded at registration vouches for those.
        expected = (context.model_config or {}).get(TAG_CHECKPOINT_HASH)
        actual = model_hash(directory)
        if not isinstance(expected, str) or actual != expected:
            raise ContractError(f"{directory}: model hash {actual[:16]} is not the {str(expected)[:16]} recorded "
                                "when this model was registered (weights, hashes.json or ensemble.json changed in "
                                "the artifact store); refusing to load it")
        self.checkpoint = read_model(directory)  # a Checkpoint or an Ensemble: predict_loaded takes either
        # The device is the loading machine's: CUDA when present, as `scolio predict` does by default.
        self.config = self.checkpoint.config.replace(**{"train.device": "auto"})

    def predict(self, context, model_input, params=None):
        import pandas as pd

        from scolio_core import CLASS_NAMES
        from scolio_core.evaluation.predict import class_probabilities, predict_loaded, sequences_from_arrays

        ids, arrays = _sequences(model_input)
        arrays = [_checked(self.config.input.modality, seq_id, array) for seq_id, array in zip(ids, arrays)]
        predictions = predict_loaded(self.checkpoint, self.config, *sequences_from_arrays(self.config, arrays, ids))
        frame = pd.DataFrame(class_probabilities(predictions, self.config), columns=list(CLASS_NAMES),
                             index=ids if isinstance(model_input, Mapping) else None)
        frame.insert(0, CLASS_COLUMN, [CLASS_NAMES[int(k)] for k in predictions.predicted])
        return frame


def _sequences(model_input: Any) -> tuple[list, list]:
    from scolio_core.errors import DataError

    if isinstance(model_input, Mapping):
        return [str(k) for k in model_input], list(model_input.values())
    if isinstance(model_input, np.ndarray):
        # one sequence, or an object array of sequences
        model_input = list(model_input) if model_input.dtype == object else [model_input]
    if not isinstance(model_input, (list, tuple)) or not model_input:
        raise DataError(f"model input must be a non-empty list of arrays (one per sequence), one array or a dict "
                        f"{{id: array}}; got {type(model_input).__name__}")
    return [str(i) for i in range(len(model_input))], list(model_input)


def _checked(modality: str, seq_id: str, array: Any) -> np.ndarray:
    """One sequence as the loaders return it from a file (scolio_core.data.release), or a one-line error."""
    from scolio_core.errors import DataError

    frame_shape, takes = _FRAME_SHAPES[modality]
    where = f"sequence {seq_id}"
    if not isinstance(array, np.ndarray):
        raise DataError(f"{where}: expected a numpy array, got {type(array).__name__}; this {modality} model "
                        f"takes {takes}")
    if array.ndim != 1 + len(frame_shape) or array.shape[1:] != frame_shape:
        other = next((m for m, (shape, _) in _FRAME_SHAPES.items() if m != modality and array.shape[1:] == shape), None)
        hint = f" (that is {other} input)" if other else ""
        raise DataError(f"{where}: shape {array.shape}{hint}, but this model's contract says {modality}: it takes "
                        f"{takes}")
    if array.shape[0] == 0:
        raise DataError(f"{where}: empty sequence (0 frames)")
    if modality == "skeleton":
        if not np.issubdtype(array.dtype, np.floating):
            raise DataError(f"{where}: poses must be a float array, got dtype {array.dtype}")
        if not np.isfinite(array).all():
            raise DataError(f"{where}: poses contain NaN or inf; missing joints must be 0")
        return array.astype(np.float32, copy=False)
    if array.dtype != np.uint8:
        raise DataError(f"{where}: silhouettes must be uint8, got dtype {array.dtype}")
    return array


mlflow.models.set_model(ScolioModel())
