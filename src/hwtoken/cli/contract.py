"""The command-line contract, kept in one place for every command.

* exit 0 success, 1 a failed check, 2 bad usage or input, 130 on Ctrl-C;
* a failure prints exactly one ``error: ...`` line on stderr, never a traceback
  (``HWTOKEN_DEBUG=1`` adds the traceback, for bug reports);
* with ``--json`` the failure is also one JSON object on stdout, on one line (so it ends
  a command's JSON Lines too): ``{"error": "...", "code": N}`` (plus the error's
  ``details``).

:func:`run` applies it around any callable: the click root group (every command, also
those added later) and the click-free ``otp code`` fast path. This module imports neither
click nor anything heavy at load time, so the fast path stays fast.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

DEBUG_ENV = "HWTOKEN_DEBUG"
INTERRUPTED = 130

#: Printed when a secret is given on the command line instead of on stdin ("-").
ARGV_SECRET_WARNING = ("warning: a secret on the command line can be read by other users "
                       "(ps) and stays in your shell history; pass - and give it on stdin "
                       "instead{env}")


class _State:
    reported = False  # an error line was printed for this run


def wants_json(argv: Sequence[str]) -> bool:
    """True if ``--json`` is among the options (before a ``--``)."""
    for arg in argv:
        if arg == "--":
            return False
        if arg == "--json":
            return True
    return False


def one_line(message: str) -> str:
    """``message`` on one line: wrapped lines joined with a space (after punctuation) or
    '; ', surrounding space dropped."""
    out = ""
    for part in (p.strip() for p in str(message).splitlines()):
        if part:
            out += ("" if not out else " " if out[-1] in ".:;,!?" else "; ") + part
    return out or "failed"


def report(message: str, code: int, *, as_json: bool = False,
           details: dict[str, Any] | None = None) -> int:
    """Print the one ``error:`` line (and the JSON object with ``as_json``); return ``code``."""
    text = one_line(message)
    _State.reported = True
    if as_json:
        doc = {**(details or {}), "error": text, "code": code}
        _write(sys.stdout, json.dumps(doc, default=str) + "\n")
    _write(sys.stderr, f"error: {text}\n")
    return code


def _write(stream: Any, text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except UnicodeEncodeError:  # a stream that cannot take the message: escape it
        stream.write(text.encode("ascii", "backslashreplace").decode())
        stream.flush()


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out and len(out) < 10:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def interrupted(exc: BaseException) -> bool:
    """True if ``exc`` (click's Abort from a prompt, say) was caused by Ctrl-C."""
    return any(isinstance(e, KeyboardInterrupt) for e in _chain(exc))


def classify(exc: BaseException) -> tuple[str, int, dict[str, Any] | None]:
    """(message, exit code, JSON details) for an exception that ends a command.

    A group called without a command also gets its help shown (on stderr) here.
    """
    from hwtoken.errors import HwtokenError
    from hwtoken.extras import missing_dependency

    exc = missing_dependency(exc) or exc  # an optional package not installed: name the extra
    if isinstance(exc, HwtokenError):
        return str(exc) or type(exc).__name__, exc.exit_code, getattr(exc, "details", None)
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", INTERRUPTED, None
    click = sys.modules.get("click")
    if click is not None:
        if isinstance(exc, click.exceptions.Abort):  # a prompt or confirmation ended
            if interrupted(exc):
                return "interrupted", INTERRUPTED, None
            if any(isinstance(e, EOFError) for e in _chain(exc)):
                return ("no answer: the input ended before a question was answered (on a "
                        "terminal answer it; in scripts pass the option that answers it, "
                        "e.g. --force)"), 2, None
            return "aborted: nothing was changed", 1, None
        no_args = getattr(click.exceptions, "NoArgsIsHelpError", None)
        if no_args is not None and isinstance(exc, no_args) and exc.ctx is not None:
            _write(sys.stderr, exc.ctx.get_help() + "\n\n")  # what to choose from
            return (f"give a command (see '{exc.ctx.command_path} --help')"), 2, None
        if isinstance(exc, click.exceptions.UsageError):
            hint = ""
            if exc.ctx is not None:
                hint = f" (see '{exc.ctx.command_path} --help')"
            return exc.format_message().rstrip(".") + hint, 2, None
        if isinstance(exc, click.exceptions.ClickException):
            return exc.format_message(), exc.exit_code or 1, None
    if isinstance(exc, UnicodeDecodeError):
        return "the input is not valid UTF-8 text", 2, None
    if isinstance(exc, UnicodeEncodeError):
        return ("an argument or environment variable is not valid UTF-8 text (it holds "
                "undecodable bytes)"), 2, None
    if isinstance(exc, OSError):
        what = exc.strerror or str(exc) or type(exc).__name__
        if exc.filename is not None:
            return f"cannot use {os.fsdecode(exc.filename)!s}: {what}", 2, None
        return what, 2, None
    if isinstance(exc, EOFError):
        return "the input ended early", 2, None
    return (f"internal error: {type(exc).__name__}: {exc} (a bug in hwtoken: please report "
            f"it; {DEBUG_ENV}=1 shows the traceback)"), 1, None


def exit_with_status_of_child(code: int) -> NoReturn:
    """Exit with the status of a program hwtoken ran for the user (``emulate run``): that
    program has said what went wrong itself, so no ``error:`` line is added."""
    _State.reported = True
    sys.exit(code)


def run(fn: Callable[[], Any], argv: Sequence[str]) -> Any:
    """Call ``fn``; an exception becomes one error line (and JSON) and its exit code.

    Returns what ``fn`` returned, or the exit code after an error was reported.
    ``SystemExit`` passes through; a failing exit without any error line gets one.
    """
    as_json = wants_json(argv)
    try:
        return fn()
    except SystemExit as exc:
        code = exc.code
        if isinstance(code, str):
            return report(code, 1, as_json=as_json)
        if code not in (None, 0, INTERRUPTED) and not _State.reported:
            return report("the command failed", int(code), as_json=as_json)
        raise
    except BrokenPipeError:
        _quiet_broken_pipe()
    except OSError as exc:
        if exc.errno == errno.EPIPE:
            _quiet_broken_pipe()
        return _report_exception(exc, as_json)
    except BaseException as exc:  # noqa: BLE001 - the contract: never a traceback
        if isinstance(exc, (SystemExit, GeneratorExit)):  # pragma: no cover
            raise
        return _report_exception(exc, as_json)


def _report_exception(exc: BaseException, as_json: bool) -> int:
    message, code, details = classify(exc)
    if os.environ.get(DEBUG_ENV):
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    if code == INTERRUPTED:
        if as_json:
            _write(sys.stdout, json.dumps({"error": message, "code": code}) + "\n")
        _write(sys.stderr, "interrupted\n")
        return code
    return report(message, code, as_json=as_json, details=details)


def _quiet_broken_pipe() -> None:
    """The reader went away (``hwtoken ... | head``): stop quietly, as cat does."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    os._exit(0)
