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


class WorkdirError(ScolioError):
    """A work directory holds files scoliotune did not write; nothing in it was changed."""


def one_line(text: str) -> str:
    """`text` with every non-printable character escaped (`\\x0a`, `\\x1b`, `\\u2028`).

    Messages quote file names and values from outside; a newline there would forge a second error line and an
    ESC would drive the terminal. Escaping (rather than dropping) keeps the real name recognisable.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")
                   for c in text)
