"""Helpers shared by the CLI modules: options, output, and error handling."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from hwtoken import paths
from hwtoken.errors import HwtokenError

F = TypeVar("F", bound=Callable[..., Any])


def _set_state_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        paths.set_state_dir(value)


def state_dir_option(f: F) -> F:
    """``--state-dir DIR``: accepted globally and by every command that keeps state."""
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False),
        expose_value=False,
        is_eager=True,
        callback=_set_state_dir,
        help="Directory for hwtoken's files (default $HWTOKEN_STATE_DIR or the XDG data dir).",
    )(f)


def json_option(f: F) -> F:
    """``--json``: one JSON document on stdout instead of human output."""
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")(f)


def device_option(f: F) -> F:
    """``--device``: a real key (serial or path) or a virtual one (``emu:NAME``)."""
    return click.option(
        "--device", "-d", metavar="SPEC", envvar="HWTOKEN_DEVICE",
        help="Key to use: a serial number or device path, or emu:NAME for a virtual key.",
    )(state_dir_option(f))


def emit_json(doc: Any) -> None:
    """Print ``doc`` as one JSON document."""
    click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))


def _print_error(message: str, code: int) -> int:
    click.echo(f"error: {message}", err=True)
    return code


def read_secret_input(value: str) -> str:
    """``-`` means: read one line from stdin (so secrets stay out of argv)."""
    if value == "-":
        data = sys.stdin.readline()
        return data.strip()
    return value


def run_main(cli: click.Group, argv: list[str] | None = None) -> None:
    """Run ``cli`` turning library errors into one-line messages and exit codes."""
    try:
        rv = cli.main(args=argv, prog_name="hwtoken", standalone_mode=False)
    except HwtokenError as exc:
        sys.exit(_print_error(str(exc), exc.exit_code))
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        os._exit(0)
    sys.exit(rv if isinstance(rv, int) else 0)


class HwtokenGroup(click.Group):
    """A group whose commands turn :class:`HwtokenError` into click-friendly exits.

    With click's test runner (``standalone_mode=True``) library errors would otherwise
    surface as tracebacks; here they become ``error: ...`` on stderr and the right code.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HwtokenError as exc:
            raise click.exceptions.Exit(_print_error(str(exc), exc.exit_code)) from None
