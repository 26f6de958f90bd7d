"""Helpers for the tests that run programs against keys plugged in through umockdev.

Every test here starts real, unmodified programs (libfido2's tools, OpenSSH, pam_u2f,
ykman, python-fido2, udevadm) with the testbed's environment, the way a user's own test
suite would with the ``plugged_key`` fixture.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hwtoken.emulator.transports.umockdev import preload

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


MSG = struct.Struct("@LLL")
MASK = (1 << (8 * MSG.size // 3)) - 1


class FakeClient:
    """What libumockdev-preload does in the program: one socket per open file."""

    def __init__(self, sock_path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(sock_path)
        self.memory: dict[int, bytes] = {}
        self.reads: list[tuple[int, int]] = []  # the server's READ_MEMs: (address, length)
        self.run_answer = (-1, 11)  # what the program's own call gives on RUN: -1, EAGAIN
        self.on_run: Any = None  # called when the server says RUN, before the answer

    def _recv(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            assert chunk, "the server closed the file: umockdev would abort the program"
            buf += chunk
        return buf

    def call(self, cmd: int, a1: int, a2: int, mem: bytes = b"") -> tuple[int, int]:
        self.sock.sendall(MSG.pack(cmd, a1 & MASK, a2 & MASK))
        while True:
            op, x, y = MSG.unpack(self._recv(MSG.size))
            if op == preload.RES_DONE:
                res = x - (1 << (8 * MSG.size // 3)) if x >> 63 else x
                return res, y
            if op == preload.RES_READ_MEM:
                assert y <= preload.MAX_TRANSFER
                self.reads.append((x, y))
                self.sock.sendall((mem * (y // max(1, len(mem)) + 1))[:y] if mem else bytes(y))
            elif op == preload.RES_WRITE_MEM:
                self.memory[x] = self._recv(y)
            elif op == preload.RES_RUN:
                if self.on_run is not None:
                    self.on_run()
                res, err = self.run_answer
                self.sock.sendall(MSG.pack(preload.REQ_RES, res & MASK, err))
            else:
                raise AssertionError(f"server sent {op} (ABORT kills the program)")

    def close(self) -> None:
        self.sock.close()
