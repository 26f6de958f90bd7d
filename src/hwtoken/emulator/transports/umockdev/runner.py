"""Run one program with virtual keys plugged in, and tear everything down after it.

What ``hwtoken emulate run NAME -- CMD`` does, usable from Python: :func:`run_plugged`
starts ``CMD`` under a :class:`~.testbed.Testbed`'s environment, passes on SIGTERM and
SIGHUP (a terminal's Ctrl-C reaches ``CMD`` by itself; a SIGINT sent to this process
alone is passed on if ``CMD`` is still running a moment later), waits, removes the
testbed, and returns ``CMD``'s exit status the way a shell reports it (128+N when a
signal ended it). A testbed left behind by a process that was killed with SIGKILL is
removed the next time one is made (:func:`remove_stale_testbeds`).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from hwtoken.errors import InvalidInput
from hwtoken.fileio import remove_dead_dirs

log = logging.getLogger(__name__)

FORWARD_SIGINT_AFTER = 2.0  # seconds CMD has to react to a terminal's Ctrl-C by itself
WAIT_TICK = 0.1  # seconds between looks at CMD while signals may arrive
EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


class CommandNotRunnable(InvalidInput):
    """CMD could not be started (missing, not executable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def exit_status(returncode: int) -> int:
    """A ``Popen.returncode`` as a shell's ``$?``: -N (killed by signal N) becomes 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def remove_stale_testbeds(tmpdir: str | None = None) -> int:
    """Remove testbed directories whose owning process is gone; how many were removed."""
    return remove_dead_dirs(tmpdir or tempfile.gettempdir(), "hwtoken-umockdev.*")


def start(argv: Sequence[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[Any]:
    """Start ``argv`` like a shell would, turning "not found" into exit 127 and "not
    executable" into 126 (:class:`CommandNotRunnable`)."""
    if not argv:
        raise InvalidInput("no command to run: give it after --, e.g. "
                           "hwtoken emulate run NAME -- fido2-token -L")
    cmd = argv[0]
    try:
        return subprocess.Popen(list(argv), env=env, **kwargs)
    except FileNotFoundError:
        raise CommandNotRunnable(f"command not found: {cmd}", EXIT_NOT_FOUND) from None
    except PermissionError:
        raise CommandNotRunnable(f"permission denied: {cmd}", EXIT_NOT_EXECUTABLE) from None
    except OSError as exc:
        if exc.errno == errno.ENOEXEC:
            raise CommandNotRunnable(f"cannot execute {cmd}: {exc.strerror}",
                                     EXIT_NOT_EXECUTABLE) from None
        raise


def wait_forwarding_signals(proc: subprocess.Popen[Any],
                            on_signal: Callable[[int], None] | None = None) -> int:
    """Wait for ``proc``, passing SIGTERM/SIGHUP on (and SIGINT if it lingers); its status.

    Signal handlers can only be set in the main thread; elsewhere this just waits.
    """
    if threading.current_thread() is not threading.main_thread():
        return exit_status(proc.wait())
    got: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        got.append(signum)
        if on_signal is not None:
            on_signal(signum)
        if signum != signal.SIGINT:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signum)

    previous = {s: signal.signal(s, handler)
                for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    sigint_at: float | None = None
    try:
        while True:
            try:
                return exit_status(proc.wait(timeout=WAIT_TICK))
            except subprocess.TimeoutExpired:
                pass
            if signal.SIGINT in got:
                got.remove(signal.SIGINT)
                sigint_at = time.monotonic()
            if sigint_at is not None and time.monotonic() - sigint_at > FORWARD_SIGINT_AFTER:
                # a SIGINT that reached only us, not the terminal's whole process group
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
                sigint_at = None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
