"""Errors that the CLI turns into one-line messages and exit code 2.

Anything a user can cause (bad file, bad field, missing model, unknown name)
raises a subclass of :class:`FrugalignError`; anything else is a bug and keeps
its traceback.
"""


class FrugalignError(Exception):
    """A user-facing error: its message is printed as one line."""


class DataError(FrugalignError, ValueError):
    """Malformed or inconsistent input data (names file, row and field)."""


class ModelLoadError(FrugalignError, OSError):
    """A model or tokenizer could not be found or loaded."""


class ConfigError(FrugalignError, ValueError):
    """An unknown setting, a bad value, or an unusable combination of settings."""


class ContextOverflowError(FrugalignError, ValueError):
    """A prompt plus response does not fit in the model's context window."""


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none):
    long library tracebacks become one-line errors."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__
