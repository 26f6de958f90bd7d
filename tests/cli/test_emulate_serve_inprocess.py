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
