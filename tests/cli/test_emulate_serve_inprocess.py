"""`hwtoken emulate serve` run in this process (CliRunner): logging, --allow-remote, stop."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

from click.testing import CliRunner

from hwtoken import devices
from hwtoken.cli import cli


def _sigterm_once_served(name: str, timeout: float = 20.0) -> threading.Thread:
    """SIGTERM this process as soon as the serve is up (its handler is installed by then)."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if devices.running_serve(name) is not None:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.02)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_serve_in_process_restores_logging_and_signals():
    runner = CliRunner()
    assert runner.invoke(cli, ["emulate", "create", "inproc"]).exit_code == 0
    logger = logging.getLogger("hwtoken")
    logger.setLevel(logging.DEBUG)  # what an embedding program chose
    handlers = list(logger.handlers)
    root_handlers = list(logging.getLogger().handlers)
    term = signal.getsignal(signal.SIGTERM)
    try:
        t = _sigterm_once_served("inproc")
        r = runner.invoke(cli, ["emulate", "serve", "inproc", "--usbip", "0", "--json"])
        t.join(timeout=25)
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)
        assert doc["name"] == "inproc" and doc["usbip"]["port"] > 0
        assert devices.running_serve("inproc") is None  # stopped, runtime file removed
        # the command left the process's logging and signal handling as it found them
        assert logger.level == logging.DEBUG
        assert logger.handlers == handlers
        assert logging.getLogger().handlers == root_handlers
        assert signal.getsignal(signal.SIGTERM) is term
    finally:
        logger.setLevel(logging.NOTSET)


def test_failed_serve_restores_the_log_level():
    runner = CliRunner()
    runner.invoke(cli, ["emulate", "create", "fail"])
    logger = logging.getLogger("hwtoken")
    before = logger.level
    r = runner.invoke(cli, ["emulate", "serve", "fail", "--usbip", "0.0.0.0:0", "-v"])
    assert r.exit_code == 2 and "--allow-remote" in r.output
    assert logger.level == before


def test_allow_remote_prints_a_warning(monkeypatch):
    """The warning a user sees on stderr (exercised on loopback: tests bind nothing else)."""
    from hwtoken.emulator import serve

    runner = CliRunner()
    runner.invoke(cli, ["emulate", "create", "remote"])
    monkeypatch.setattr(serve, "is_loopback", lambda host: False)
    # as in a fresh `hwtoken` process: no logging configured (pytest's capture removed)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    r = runner.invoke(cli, ["emulate", "serve", "remote", "--usbip", "127.0.0.1:0"])
    assert r.exit_code == 2 and "--allow-remote" in r.stderr  # refused without the flag
    t = _sigterm_once_served("remote")
    r = runner.invoke(cli, ["emulate", "serve", "remote", "--usbip", "127.0.0.1:0",
                            "--allow-remote"])
    t.join(timeout=25)
    assert r.exit_code == 0, r.output
    assert "anyone who can reach this address can use the key" in r.stderr
    assert not logging.getLogger("hwtoken").handlers  # its stderr handler went away


class _Pipe:
    """A real OS pipe as the prompt's stdin: write answers, close for end of input."""

    def __init__(self) -> None:
        r, w = os.pipe()
        self.reader = os.fdopen(r, "r")
        self.writer = os.fdopen(w, "w")

    def type(self, text: str) -> None:
        self.writer.write(text)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def _decide_in_thread(presence, cancel: threading.Event):
    result: list[bool] = []
    keepalives: list[float] = []
    t = threading.Thread(target=lambda: result.append(
        presence.wait("test", cancel, lambda: keepalives.append(time.monotonic()))))
    t.start()
    return t, result, keepalives


def test_terminal_prompt_cancel_timeout_and_end_of_input(capsys):
    from hwtoken.cli.emulate import TerminalPresence
    from hwtoken.emulator.presence import Decision

    pipe = _Pipe()
    presence = TerminalPresence(stdin=pipe.reader, timeout=30)
    # the host cancels: the question stops waiting, and does not eat the next answer
    cancel = threading.Event()
    t, result, keepalives = _decide_in_thread(presence, cancel)
    deadline = time.monotonic() + 10
    while not keepalives and time.monotonic() < deadline:
        time.sleep(0.01)
    assert keepalives  # keepalives flow while the user is asked
    cancel.set()
    t.join(10)
    assert result == [Decision.CANCELLED]
    assert "cancelled by the host" in capsys.readouterr().err
    t, result, _ = _decide_in_thread(presence, threading.Event())
    deadline = time.monotonic() + 10
    while "approve?" not in capsys.readouterr().err:
        assert time.monotonic() < deadline, "the question was never asked"
        time.sleep(0.01)
    pipe.type("y\n")
    t.join(10)
    assert result == [Decision.APPROVED]
    # nobody answers: refused when the presence timeout passes
    presence.timeout = 0.2
    assert presence.wait("test") is Decision.TIMEOUT
    assert "no answer in time" in capsys.readouterr().err
    # stdin ends: this and every later request is refused at once
    presence.timeout = 30
    pipe.close()
    t, result, _ = _decide_in_thread(presence, threading.Event())
    t.join(10)
    assert result == [Decision.DENIED]
    assert presence.wait("again") is Decision.DENIED
    assert "stdin" in capsys.readouterr().err


def test_serve_says_when_pcscd_is_absent(monkeypatch):
    """--pcsc with nothing listening: serve keeps running and tells the user on stderr."""
    import socket

    from hwtoken.cli import emulate

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    warned = threading.Event()
    real_warn = emulate._warn_no_pcscd

    def warn(host: str, p: int) -> None:
        real_warn(host, p)
        warned.set()

    monkeypatch.setattr(emulate, "_warn_no_pcscd", warn)
    monkeypatch.setattr(emulate, "PCSC_WARN_AFTER", 0.2)
    runner = CliRunner()
    runner.invoke(cli, ["emulate", "create", "nopcscd"])

    def stop_after_warning() -> None:
        warned.wait(20)
        os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=stop_after_warning, daemon=True)
    t.start()
    # --pcsc is a flag: the name after it is the key's, not the option's value
    r = runner.invoke(cli, ["emulate", "serve", "--pcsc", "nopcscd", "--no-usbip",
                            "--pcsc-address", f"127.0.0.1:{port}"])
    t.join(25)
    assert r.exit_code == 0, r.output
    assert f"nothing answers at 127.0.0.1:{port}" in r.stderr
    assert "stopped serving nopcscd" in r.stdout


def test_banner_brackets_ipv6_and_names_the_reader_of_the_port(capsys):
    from pathlib import Path

    from hwtoken.cli.emulate import _print_banner

    _print_banner("k", 1234, {"usbip": {"host": "::1", "port": 3240, "busid": "1-1"},
                              "pcsc": {"host": "127.0.0.1", "port": 35964}}, Path("k.key"))
    out = capsys.readouterr().out
    assert "USB/IP  [::1]:3240 busid 1-1" in out
    assert "vpcd 127.0.0.1:35964 (reader 'Virtual PCD 00 01')" in out
