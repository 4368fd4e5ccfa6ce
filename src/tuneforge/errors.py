"""User-facing errors.

Every error a user can cause by their input (a recipe key, a data row, a model path) is raised as a
:class:`TuneforgeError`. The CLI prints its message and hint without a traceback and exits with
status 2; anything else is a bug in tuneforge and keeps its traceback.
"""

from __future__ import annotations


class TuneforgeError(Exception):
    """An error in the user's input, with a message that says where and a hint that says what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class ConfigError(TuneforgeError):
    """A recipe or override that does not validate."""


class DataError(TuneforgeError):
    """Data that cannot be read or contains bad rows."""


class ModelLoadError(TuneforgeError):
    """A model or tokenizer that cannot be found, fetched or loaded."""
