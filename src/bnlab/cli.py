"""bnlab's command line: parses arguments and dispatches; all work lives in the library.

Every bad input (a `BnlabError`, or a usage error from typer/click) ends with a one-line `error: ...` on stderr
and exit code 2, with no traceback. Heavy modules are imported inside each command so `bnlab --help` is fast.
"""

from __future__ import annotations

import sys

import typer

try:  # typer >= 0.25 vendors click as typer._click; older typer uses click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions

from bnlab.errors import BnlabError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="bnlab: test, by experiment, why Batch Normalization helps deep networks train.",
)


@app.callback()
def _root() -> None:
    """bnlab: test, by experiment, why Batch Normalization helps deep networks train."""


def fail(message: str) -> None:
    """One-line error, exit 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


# Commands are added below by area: check, train, audit, report, landscape, hessian, sweep.


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the typer app with one-line errors and exit 2 for bad input."""
    try:
        app(args=argv, standalone_mode=False, prog_name="bnlab")
    except click_exceptions.NoArgsIsHelpError:
        return 0
    except click_exceptions.UsageError as exc:  # unknown command / option, bad option value
        typer.echo(f"error: {exc.format_message()}", err=True)
        return 2
    except click_exceptions.Abort:
        typer.echo("error: interrupted", err=True)
        return 130
    except click_exceptions.Exit as exc:
        return exc.exit_code
    except BnlabError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        typer.echo("error: interrupted; rerun the same command to resume", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
