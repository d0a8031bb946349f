"""Error types. Every message names the offending file, field or value and says what to do."""


class ScolioError(Exception):
    """Base class: the CLI prints these as one line (traceback only with --debug)."""


class DataError(ScolioError):
    """A data file or data root is malformed; the message names the file."""


class UnsafePickleError(DataError):
    """A pickle tried to import something outside the allow-list; its payload never ran."""


class ConfigError(ScolioError, ValueError):
    """A configuration value or key is invalid; the message names the field."""


class ContractError(ScolioError):
    """A checkpoint's data contract does not match the data or config it is used with."""


class LockboxError(ScolioError):
    """The one-shot test lockbox refused an evaluation."""
