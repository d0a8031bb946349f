"""Kept only for MLflow models logged before the names moved to `scolio_core/names.py`.

A logged model carries a copy of tracking/pyfunc_model.py, and copies made before that move import
MODEL_CHECKPOINT_ARTIFACT from here when the model is loaded. New code imports names from scolio_core.names
and lookups from scolio_core.tracking.lookups; nothing in this repository imports this module.
"""

from scolio_core.names import MODEL_CHECKPOINT_ARTIFACT

__all__ = ["MODEL_CHECKPOINT_ARTIFACT"]
