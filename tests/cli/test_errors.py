"""cli/errors.py: a user error is a message, a hint and exit status 2; a bug keeps its traceback."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from tuneforge.cli.errors import user_errors
from tuneforge.cli.main import app as main_app
from tuneforge.errors import DataError

runner = CliRunner()
LONG = "/a/very/long/path/" + "x" * 200 + ".jsonl:7"


def _app(exc: Exception) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @user_errors
    def fail(name: str = "n") -> None:
        """A command that raises ``exc``."""
        raise exc

    return app


def test_user_error_prints_message_and_hint_unwrapped_and_exits_2():
    res = runner.invoke(_app(DataError(f"{LONG}: bad row", hint="fix it")), [])
    assert res.exit_code == 2 and res.exception is not None and isinstance(res.exception, SystemExit)
    assert res.output == f"error: {LONG}: bad row\nhint: fix it\n"


def test_no_hint_line_without_a_hint():
    res = runner.invoke(_app(DataError("broken")), [])
    assert res.exit_code == 2 and res.output == "error: broken\n"


def test_any_other_exception_is_a_bug_and_propagates():
    res = runner.invoke(_app(KeyError("oops")), [])
    assert res.exit_code == 1 and isinstance(res.exception, KeyError)


def test_the_wrapper_keeps_the_signature_typer_reads():
    res = runner.invoke(_app(DataError("x")), ["--help"])
    assert res.exit_code == 0 and "--name" in res.output


@pytest.mark.parametrize(
    "args",
    [
        ["adapters", "show", "/nonexistent-bundle"],
        ["score", "/nonexistent-run", "--data", "/nonexistent.jsonl"],
        ["advise", "--model", "smollm2-135m-instruct"],
    ],
)
def test_command_groups_report_user_errors_cleanly(args):
    res = runner.invoke(main_app, args)
    assert res.exit_code == 2 and res.output.startswith("error: ") and "Traceback" not in res.output
