"""Helpers for the tests that run programs against keys plugged in through umockdev.

Every test here starts real, unmodified programs (libfido2's tools, OpenSSH, pam_u2f,
ykman, python-fido2, udevadm) with the testbed's environment, the way a user's own test
suite would with the ``plugged_key`` fixture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

VENV_BIN = str(Path(sys.executable).parent)


def tool(name: str) -> str:
    """The path of a program the tests run (the venv's first: ykman, hwtoken)."""
    path = shutil.which(name, path=VENV_BIN + os.pathsep + os.environ.get("PATH", ""))
    if path is None:
        pytest.fail(f"{name} is not installed (make test installs it)")
    return path


def run(plugged, argv, *, input=None, timeout=60, env=None, check=True, **kwargs):
    """Run ``argv`` with the key plugged in (tools that ask for a PIN read it from stdin
    when there is no terminal, as under CI)."""
    cmd = [tool(argv[0]), *argv[1:]]
    proc = plugged.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                       env=env, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                             f"stderr: {proc.stderr}")
    return proc


def pump(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    return out, err
