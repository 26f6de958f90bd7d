"""The offload worker (emulator/offload.py): results and exceptions come back, a dead
worker is replaced, and the caller's own script is never run again in it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hwtoken.emulator import offload
from hwtoken.emulator.applets.piv.keys import rsa_private


def refuse(value: int) -> int:
    raise ValueError(f"no {value}")


def test_results_and_exceptions_come_back():
    assert offload.run(rsa_private, 5, 11, 13, 3, 5, 6) == 70  # CRT of 5^d mod 143
    with pytest.raises(ValueError, match="no 7"):
        offload.run(refuse, 7)


def test_a_dead_worker_is_replaced():
    assert offload.run(pow, 3, 4, 5) == 1
    worker = offload._worker
    assert worker is not None
    worker.kill()
    worker.wait()
    assert offload.run(pow, 3, 5, 7) == 5  # (computed here or in a new worker)
    assert offload.run(pow, 2, 10, 1000) == 24
    assert offload._worker is not None and offload._worker is not worker
    offload.shutdown()
    assert offload._worker is None


def test_the_callers_script_is_not_run_again_in_the_worker(tmp_path):
    script = tmp_path / "no_main_guard.py"
    script.write_text(
        "from hwtoken.emulator import offload\n"
        "print('script ran')\n"
        "print(offload.run(pow, 2, 8))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "script ran\n256\n" and out.stderr == ""
