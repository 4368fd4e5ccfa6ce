"""How every ``tuneforge`` command reports a user error: message and hint, exit status 2, no traceback.

A :class:`~tuneforge.errors.TuneforgeError` is the user's to fix (a recipe key, a data row, a path), so
it prints as ``error: ...`` and ``hint: ...`` on stderr; anything else is a bug in tuneforge and keeps
its traceback. The lines are soft-wrapped (never broken by rich at the terminal width) so a long
``file:line`` stays one line a user can copy and a test can match.

This lives apart from ``cli/main.py`` because the command-group modules (``cli/data.py``, ...) need it
and ``cli/main.py`` imports them: taking it from the main app would be an import cycle.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from tuneforge.errors import TuneforgeError

P = ParamSpec("P")
R = TypeVar("R")

err = Console(stderr=True)


def print_user_error(exc: TuneforgeError, console: Console = err) -> None:
    """Print ``error: MESSAGE`` and, when there is one, ``hint: HINT``, each soft-wrapped.

    The message and hint are escaped: they quote the user's input (a recipe key such as ``[/x]``),
    which rich would otherwise read as markup and either swallow or fail on with MarkupError.
    """
    console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
    if exc.hint:
        console.print(f"[bold]hint:[/] {escape(exc.hint)}", highlight=False, soft_wrap=True)


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn TuneforgeError into a clean message and exit status 2 (a command decorator)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except TuneforgeError as exc:
            print_user_error(exc)
            raise typer.Exit(2) from None

    return wrapper
