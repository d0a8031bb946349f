"""The Tune glue: Ray connection and restore, the MLflow lifecycle callback, storage checks, private Ray APIs."""
