"""The tests that press Ctrl-C on a real `hwtoken` process need that process to take it,
however the suite was started (tests/conftest.py restores SIGINT if it was ignored)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path


def _ignored_in_child() -> bool:
    """Does a process started now ignore SIGINT? (its SigIgn mask in /proc)"""
    status = subprocess.run(["cat", "/proc/self/status"], capture_output=True, text=True,
                            check=True, timeout=30).stdout
    (mask,) = [line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")]
    return bool(int(mask, 16) >> (signal.SIGINT - 1) & 1)


def test_a_child_process_takes_ctrl_c():
    assert not _ignored_in_child()


def test_also_when_the_suite_was_started_with_ctrl_c_ignored():
    """As a background job of a script starts it (and so every child it starts)."""
    def ignore_ctrl_c() -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    here = Path(__file__)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{here}::test_a_child_process_takes_ctrl_c"],
        cwd=here.parent.parent, preexec_fn=ignore_ctrl_c, capture_output=True, text=True,
        timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "1 passed" in run.stdout
