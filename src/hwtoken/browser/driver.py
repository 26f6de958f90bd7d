"""What the browser helpers share: finding a browser, the process group, the driver API.

:class:`Browser` is the small driver API a test uses whatever the browser (open a page,
click, type, run script, wait for something); each browser module implements it on its
own automation protocol (:mod:`.chromium`: Selenium and chromedriver; :mod:`.firefox`:
Marionette). The browser runs in a process group of its own, which :meth:`Browser.close`
ends, so nothing it started outlives the test, whatever happened in it.
"""

from __future__ import annotations

import abc
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwtoken.errors import DeviceError

POLL_INTERVAL = 0.05  # seconds between two checks of a wait_for condition
QUIT_TIMEOUT = 10.0  # seconds a browser's quit command may take before it is killed
QUIT_GRACE = 2.0  # seconds its other processes get to follow before the group is ended
LOG_TAIL = 40  # lines of the browser's log quoted in a timeout error


class BrowserUnavailable(DeviceError):
    """The browser (or its driver) is not installed."""


class BrowserError(DeviceError):
    """The browser did not start, or did not do what a test waited for in time."""


def _proc_file(pid: int, name: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes().decode(errors="replace")
    except OSError:  # gone meanwhile, or not ours to read
        return None


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ... (empty if gone)."""
    stat = _proc_file(pid, "stat") or ""
    return stat[stat.rfind(")") + 2:].split() if ")" in stat else []


def describe_process(pid: int) -> str:
    """``pid state wchan command`` of a live process, from /proc (``?`` for what is gone)."""
    state = (_stat_fields(pid) or ["?"])[0]
    wchan = _proc_file(pid, "wchan")
    command = (_proc_file(pid, "cmdline") or "?").replace("\0", " ").strip()
    return f"{pid} {state} {'?' if wchan is None else wchan or '-'} {command[:160]}"


@dataclass(frozen=True)
class Installed:
    """Where a browser's programs are: ``binary`` and, for Chromium, ``driver``."""

    name: str
    binary: str
    driver: str | None = None


def find_program(env_var: str, candidates: Sequence[str]) -> str | None:
    """``$env_var`` if set (it must exist), else the first candidate on PATH or by path."""
    override = os.environ.get(env_var)
    if override:
        return override if os.access(override, os.X_OK) else None
    for candidate in candidates:
        path = candidate if os.path.isabs(candidate) else shutil.which(candidate)
        if path and os.access(path, os.X_OK):
            return path
    return None


def given_program(path: str | os.PathLike[str], what: str) -> str:
    """An explicitly chosen program (another version than the one on PATH):
    :class:`BrowserUnavailable` unless it is an executable file."""
    text = os.fspath(path)
    if not (os.path.isfile(text) and os.access(text, os.X_OK)):
        raise BrowserUnavailable(f"{what} {text} is not an executable file")
    return text


class ProcessGroup:
    """A started program that leads a process group of its own (``start_new_session``)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def alive(self) -> bool:
        """Whether a process of the group still runs (zombies waiting for whoever reaps
        orphans, which in a container may take a while, do not count)."""
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        members = self.running_members()
        return members is None or bool(members)

    def running_members(self) -> list[int] | None:
        """The group's processes that are not zombies (None where /proc cannot say)."""
        try:
            entries = os.listdir("/proc")
        except OSError:
            return None
        running = []
        for entry in entries:
            fields = _stat_fields(int(entry)) if entry.isdigit() else []
            if len(fields) > 2 and fields[2] == str(self.pid) and fields[0] != "Z":
                running.append(int(entry))
        return running

    def end(self, timeout: float = QUIT_TIMEOUT) -> None:
        """SIGTERM the group, then SIGKILL what is left after ``timeout`` seconds."""
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                self._reap()
                if not self.alive():
                    return
                time.sleep(POLL_INTERVAL)

    def _reap(self) -> None:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, os.WNOHANG)

    def wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._reap()
            if not self.alive():
                return True
            time.sleep(POLL_INTERVAL)
        return False


class Browser(abc.ABC):
    """A running headless browser with a fresh profile, driven by its automation protocol.

    Scripts are function bodies, as in WebDriver: ``execute("return document.title")``;
    arguments are in ``arguments``. Selectors are CSS selectors. A click is a WebDriver
    click: a trusted event, so the page has the user activation WebAuthn may ask for.
    """

    name: str = ""

    def __init__(self, workdir: Path, *, own_workdir: bool) -> None:
        self.workdir = workdir
        self._own_workdir = own_workdir
        self.profile = workdir / f"{self.name}-profile"
        self.log_path = workdir / f"{self.name}.log"
        self.version = ""
        self._group: ProcessGroup | None = None
        self._closed = False

    # -- what each browser implements ----------------------------------------------------------
    @abc.abstractmethod
    def get(self, url: str) -> None:
        """Load ``url`` and wait for it to load."""

    @abc.abstractmethod
    def execute(self, script: str, *args: Any) -> Any:
        """Run ``script`` in the page and return its value."""

    @abc.abstractmethod
    def click(self, selector: str) -> None:
        """Click the element ``selector`` finds (scrolled into view, as a user would)."""

    @abc.abstractmethod
    def fill(self, selector: str, text: str) -> None:
        """Clear the input ``selector`` finds and type ``text`` into it."""

    @abc.abstractmethod
    def text(self, selector: str) -> str:
        """The rendered text of the element ``selector`` finds."""

    @abc.abstractmethod
    def _quit(self) -> bool:
        """Ask the browser to quit through its protocol; False if it could not be asked
        (it is gone, or never started)."""

    # -- shared --------------------------------------------------------------------------------
    def wait_for(self, condition: str, *args: Any, timeout: float = 30.0,
                 what: str | None = None) -> Any:
        """Poll ``condition`` (a script, like :meth:`execute`) until it returns a truthy
        value, and return that; :class:`BrowserError` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.execute(condition, *args)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(self.timed_out(
                    f"{self.name}: timed out after {timeout:g} s waiting for "
                    f"{what or condition}"))
            time.sleep(POLL_INTERVAL)

    def timed_out(self, what: str) -> str:
        """The message of a timeout: ``what``, the last lines of the browser's log, and each
        of its processes with its state and where in the kernel it waits (a process stuck
        between fork and exec still shows its parent's command line)."""
        return (f"{what}\n--- last lines of {self.log_path} ---\n{self.log_tail()}\n"
                f"--- processes (pid, state, kernel wait, command) ---\n"
                + "\n".join(describe_process(pid) for pid in self.processes()))

    def wait_for_text(self, selector: str, text: str, *, timeout: float = 30.0) -> str:
        """Wait until the element ``selector`` finds contains ``text``; its whole text."""
        return str(self.wait_for(
            "const e = document.querySelector(arguments[0]);"
            "return e && e.textContent.includes(arguments[1]) ? e.textContent : null;",
            selector, text, timeout=timeout, what=f"{text!r} in {selector}"))

    @property
    def pid(self) -> int | None:
        """The process that leads the browser's process group (chromedriver for Chromium,
        Firefox itself), or None before it started."""
        return self._group.pid if self._group is not None else None

    def processes(self) -> list[int]:
        """The browser's processes still running (none once :meth:`close` returned)."""
        if self._group is None:
            return []
        members = self._group.running_members()
        if members is None:
            return [self._group.pid] if self._group.alive() else []
        return members

    def log(self) -> str:
        """What the browser (and its driver) wrote to stderr so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def close(self) -> None:
        """Quit the browser, end its whole process group and remove its profile
        (idempotent; safe after a failed start or a crash)."""
        if self._closed:
            return
        self._closed = True
        asked = False
        try:
            with contextlib.suppress(Exception):
                asked = self._quit()
        finally:
            group = self._group
            if group is not None and not (asked and group.wait_gone(QUIT_GRACE)):
                group.end()
            shutil.rmtree(self.profile, ignore_errors=True)
            if self._own_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.version or '?'} profile={self.profile}>"


def make_workdir(workdir: str | os.PathLike[str] | None, name: str) -> tuple[Path, bool]:
    """``workdir`` (created if needed) or a fresh temporary directory; whether it is ours."""
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    return Path(tempfile.mkdtemp(prefix=f"hwtoken-{name}-")), True


def start_process(argv: Sequence[str], env: Mapping[str, str], log_path: Path
                  ) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session (its own process group), output to ``log_path``."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(argv), env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


__all__ = ["Browser", "BrowserError", "BrowserUnavailable", "Installed", "ProcessGroup",
           "find_program", "make_workdir", "start_process"]
