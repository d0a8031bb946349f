"""The profile schema and the run settings: everything a sweep is told, typed and checked before Ray starts."""
