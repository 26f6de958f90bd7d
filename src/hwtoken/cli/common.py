"""What every CLI module shares: the command classes that keep the contract, option
types, the standard options and output helpers.

Every command is a :class:`HwtokenCommand` (every group a :class:`HwtokenGroup`): text
arguments must be valid UTF-8 and the root's ``main`` runs the whole command under
:func:`hwtoken.cli.contract.run`, so commands added later keep the contract unchanged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from hwtoken import paths
from hwtoken.cli import contract
from hwtoken.errors import InvalidInput

F = TypeVar("F", bound=Callable[..., Any])

DEVICE_ENV = "HWTOKEN_DEVICE"
_DEVICE_META = "hwtoken.device"


# -- command classes ------------------------------------------------------------------------
def _undecodable(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, (tuple, list)):
        return any(_undecodable(v) for v in value)
    return False


class _ContractMixin:
    """Refuses text parameters that are not valid UTF-8 (file paths may be any bytes)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        rest = super().parse_args(ctx, args)  # type: ignore[misc]
        for param in self.params:  # type: ignore[attr-defined]
            if isinstance(param.type, (click.Path, click.File)) or param.name not in ctx.params:
                continue
            if _undecodable(ctx.params[param.name]):
                raise click.BadParameter("is not valid UTF-8 text", ctx=ctx, param=param)
        return rest


class HwtokenCommand(_ContractMixin, click.Command):
    """A command that keeps the CLI contract (see the module docstring)."""


class HwtokenGroup(_ContractMixin, click.Group):
    """A group whose commands (and subgroups) keep the CLI contract.

    ``main`` (the entry point of the root group, and of any group click's test runner
    calls) runs the command under :func:`hwtoken.cli.contract.run`: a library error, a
    usage error, an unexpected exception or Ctrl-C each end as one ``error:`` line (and a
    JSON object with ``--json``) with exit 1, 2 or 130.
    """

    command_class = HwtokenCommand
    group_class = type  # subgroups are HwtokenGroups too

    def main(self, args: Any = None, prog_name: str | None = None,  # type: ignore[override]
             complete_var: str | None = None, standalone_mode: bool = True,
             windows_expand_args: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        contract._State.reported = False

        def call() -> Any:
            return super(HwtokenGroup, self).main(
                argv, prog_name, complete_var, standalone_mode=False,
                windows_expand_args=windows_expand_args, **extra)

        with _cli_logging():
            rv = contract.run(call, argv)
        if not standalone_mode:
            return rv
        sys.exit(rv if isinstance(rv, int) else 0)


class _OneLineFormatter(logging.Formatter):
    """``warning: message``: a library's log record never shows a traceback here (unless
    $HWTOKEN_DEBUG), so the CLI keeps its no-traceback promise. Records of level ERROR
    are warnings too: the one ``error:`` line is the command's outcome."""

    def format(self, record: logging.LogRecord) -> str:
        level = "warning" if record.levelno >= logging.WARNING else record.levelname.lower()
        text = f"{level}: {contract.one_line(record.getMessage())}"
        if record.exc_info and os.environ.get(contract.DEBUG_ENV):
            text += "\n" + self.formatException(record.exc_info)
        elif record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text += f" ({type(exc).__name__}: {contract.one_line(str(exc))})"
        return text


@contextlib.contextmanager
def _cli_logging() -> Iterator[None]:
    """While a command runs: hwtoken's warnings on stderr, one line each."""
    logger = logging.getLogger("hwtoken")
    if logging.getLogger().handlers or logger.handlers:  # the program configured logging
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


# -- option types ---------------------------------------------------------------------------
#: The latest unix time accepted anywhere (9999-12-31 23:59:59 UTC).
MAX_UNIX_TIME = 253402300799


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class FiniteFloat(click.ParamType):
    """A float within [min, max]; NaN and infinities are refused (click's FloatRange lets
    NaN through, since every comparison with NaN is false)."""

    name = "float"

    def __init__(self, min: float, max: float) -> None:
        self.min, self.max = min, max

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.min <= number <= self.max:
            self.fail(f"{value!r} is not a number from {_num(self.min)} to {_num(self.max)}",
                      param, ctx)
        return number


class UnixTime(FiniteFloat):
    """Seconds since 1970-01-01 UTC, from 0 to :data:`MAX_UNIX_TIME`."""

    name = "unix_time"

    def __init__(self) -> None:
        super().__init__(0, MAX_UNIX_TIME)


UNIX_TIME = UnixTime()

class SecretText(click.ParamType):
    """A secret, or ``-`` to read it from stdin (see :func:`read_secret_input`).

    Given on the command line (not ``-``, not from an environment variable) it is still
    accepted, with a warning saying why stdin is better.
    """

    name = "secret"

    def __init__(self, env: str | None = None) -> None:
        self.env = env

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        if not isinstance(value, str):
            self.fail("must be text", param, ctx)
        if _undecodable(value):
            self.fail("is not valid UTF-8 text", param, ctx)
        if value != "-" and ctx is not None and param is not None and param.name and \
                ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
            env = f" (or set ${self.env})" if self.env else ""
            click.echo(contract.ARGV_SECRET_WARNING.format(env=env), err=True)
        return value


SECRET = SecretText()


def read_secret_input(value: str) -> str:
    """``-`` means: read one line from stdin (so secrets stay out of argv)."""
    if value == "-":
        value = sys.stdin.readline().strip()
        if _undecodable(value):  # a locale that decodes stdin with surrogateescape
            raise InvalidInput("stdin is not valid UTF-8 text")
    return value


# -- standard options -----------------------------------------------------------------------
def _set_state_dir(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        from pathlib import Path

        target = Path(value).expanduser()
        if not target.is_dir() and not target.parent.is_dir():  # a typo, not a new directory
            raise click.BadParameter(f"neither {value!r} nor its parent directory exists",
                                     ctx=ctx, param=param)
        paths.set_state_dir(value)


def state_dir_option(f: F) -> F:
    """``--state-dir DIR``: accepted globally and by every command that keeps state.

    DIR is created when missing, but only its last part: a missing parent is a typo.
    """
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False),
        expose_value=False,
        is_eager=True,
        callback=_set_state_dir,
        help="Directory for hwtoken's files (default $HWTOKEN_STATE_DIR or the XDG data dir).",
    )(f)


def json_option(f: F) -> F:
    """``--json``: one JSON document on stdout instead of human output (errors too)."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document (an error: {\"error\", \"code\"}).")(f)


def force_option(help: str) -> Callable[[F], F]:  # noqa: A002 - click's own name
    """``-f/--force``: the same short option for force in every command."""
    return click.option("--force", "-f", is_flag=True, help=help)


def allow_weak_option(f: F) -> F:
    """``--allow-weak``: accept a secret shorter than 80 bits."""
    return click.option("--allow-weak", is_flag=True,
                        help="Accept a secret shorter than 80 bits (RFC 4226 asks for 128).")(f)


def _device_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--device`` given after a subcommand wins, then the nearest one before it, then
    $HWTOKEN_DEVICE. Every level validates the spec the same way."""
    if value is not None and param.name is not None and \
            ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
        _check_device(value)
        ctx.meta[_DEVICE_META] = value
        return value
    if _DEVICE_META in ctx.meta:
        return str(ctx.meta[_DEVICE_META])
    if value is not None:
        _check_device(value)
    return value


def _check_device(value: str) -> None:
    """The same errors for a bad spec at every level: a malformed one, or a virtual key
    that does not exist or cannot be read."""
    from hwtoken.devices import check_virtual, parse_spec

    spec = parse_spec(value)
    if spec.name is not None:
        check_virtual(spec.name)


DEVICE_HELP = ("Key to use: a serial number, a device path or PC/SC reader name, or emu:NAME "
               "for a virtual key (default $HWTOKEN_DEVICE, else the one key plugged in or "
               "served).")


def device_option(f: F) -> F:
    """``--device/-d SPEC`` on a command that talks to a key (the value is ``device``)."""
    return click.option("--device", "-d", metavar="SPEC", envvar=DEVICE_ENV,
                        callback=_device_value, help=DEVICE_HELP)(state_dir_option(f))


def device_group_option(f: F) -> F:
    """``--device/-d SPEC`` on a group: the default for every command below it."""
    return click.option("--device", "-d", metavar="SPEC", expose_value=False,
                        callback=_device_value, help=DEVICE_HELP)(f)


# -- output ---------------------------------------------------------------------------------
def emit_json(doc: Any) -> None:
    """Print ``doc`` as one JSON document."""
    click.echo(json.dumps(doc, indent=2, sort_keys=False, default=str))


def is_interactive() -> bool:
    """True when a person can answer a question (stdin is a terminal)."""
    try:
        return bool(sys.stdin) and sys.stdin.isatty()
    except (ValueError, OSError):
        return False


class StopSignals:
    """For a command that serves until stopped: inside ``with StopSignals() as signals``,
    SIGINT and SIGTERM set ``signals.stop`` instead of ending the process, so it can shut
    down cleanly; then :meth:`exit_if_interrupted` ends a Ctrl-C with exit 130 and
    "interrupted", as every interrupted command does (SIGTERM: exit 0).

    Handlers can only be set in the main thread: a caller that runs the CLI in another
    thread stops it by other means.
    """

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: list[int] = []
        self._previous: dict[int, Any] = {}

    def _on_signal(self, signum: int, _frame: Any) -> None:
        self.received.append(signum)
        self.stop.set()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def exit_if_interrupted(self) -> None:
        if self.received[:1] == [signal.SIGINT]:
            click.echo("interrupted", err=True)
            sys.exit(contract.INTERRUPTED)


def confirm_or_force(question: str, force: bool, refusal: str) -> None:
    """Go on with ``--force``; else ask on a terminal; else refuse (exit 2) with ``refusal``.

    Declining at the prompt ends the command with "aborted" (exit 1), nothing changed.
    """
    if force:
        return
    if not is_interactive():
        raise InvalidInput(f"{refusal}; pass --force to confirm")
    click.confirm(question, abort=True, err=True)
