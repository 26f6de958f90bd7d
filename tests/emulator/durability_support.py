"""Run a virtual key in another process and SIGKILL it, for the durability (kill) tests.

Two ways to hold the key in a process of its own:

- :class:`ServedKey`: the real ``hwtoken emulate serve NAME --usbip 127.0.0.1:0``; the test
  reaches it with python-fido2 over USB/IP, as any client would;
- :class:`DrivenKey`: ``key_driver.py`` (a few lines over the key's card OS and OTP HID
  engine); yubikit's OATH, PIV, OpenPGP and OTP sessions reach it through
  :class:`PipeCardConnection` and :class:`PipeOtpConnection`.

Either is killed with SIGKILL right after the answer to the operation under test has reached
the client: nothing the key did not make durable before answering survives. Both run the
same ``hwtoken`` package this test process imported (``PYTHONPATH``), so a change to the code
under test (a bug, or a mutant) runs in the key's process too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from yubikit.core import TRANSPORT
from yubikit.core.otp import OtpConnection
from yubikit.core.smartcard import SmartCardConnection

import hwtoken

HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))
DRIVER = Path(__file__).with_name("key_driver.py")


def same_code_env(**extra: str) -> dict[str, str]:
    """This environment, with the directory of the imported ``hwtoken`` first on the path."""
    package_root = str(Path(hwtoken.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=package_root + (os.pathsep + path if path else ""),
               PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class _KeyProcess:
    """A child process holding the key; :meth:`kill` ends it the hard way."""

    proc: subprocess.Popen[str]

    def kill(self) -> None:
        """SIGKILL, then reap: the key's lock is free again and its file is what it is."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL, self.proc.returncode
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()


class ServedKey(_KeyProcess):
    """``hwtoken emulate serve`` of the key at ``state_dir/keys/NAME.json`` on a free port."""

    def __init__(self, state_dir: Path, name: str) -> None:
        self.proc = subprocess.Popen(
            [HWTOKEN, "emulate", "serve", name, "--usbip", "127.0.0.1:0", "--json"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=same_code_env(HWTOKEN_STATE_DIR=str(state_dir)))
        doc = self._runtime_document()
        usbip = doc["usbip"]
        self.address = (usbip["host"], int(usbip["port"]), usbip["busid"])
        self.pid = int(doc["pid"])

    def _runtime_document(self) -> dict[str, Any]:
        """The JSON document serve prints once its port is bound (read line by line)."""
        text = ""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"serve ended: {self.proc.stderr.read()}")
            text += line
            try:
                doc: dict[str, Any] = json.loads(text)
            except ValueError:
                continue
            return doc

    def fido(self):
        """A python-fido2 ``CtapHidDevice`` over USB/IP (each one is a fresh plug-in)."""
        from hwtoken.emulator.transports.usbip_fido import open_usbip_fido

        return open_usbip_fido(*self.address)


class DrivenKey(_KeyProcess):
    """The key at ``path`` held by ``key_driver.py``."""

    def __init__(self, path: Path) -> None:
        self.proc = subprocess.Popen([sys.executable, str(DRIVER), str(path)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=same_code_env())
        first = self.proc.stdout.readline()
        if not first:
            raise AssertionError(f"driver ended: {self.proc.stderr.read()}")
        self.pid = int(json.loads(first)["ready"])

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"driver ended: {self.proc.stderr.read()}")
        answer: dict[str, Any] = json.loads(line)
        assert "error" not in answer, answer
        return answer

    def touch(self, slot: int) -> str:
        """Touch the button for ``slot``; returns what the key typed."""
        return str(self.call("touch", slot=slot)["text"])

    def card(self) -> PipeCardConnection:
        return PipeCardConnection(self)

    def otp(self) -> PipeOtpConnection:
        return PipeOtpConnection(self)


class PipeCardConnection(SmartCardConnection):
    """yubikit's smart-card connection, carried to the driver's card OS."""

    def __init__(self, driver: DrivenKey) -> None:
        self.driver = driver

    @property
    def transport(self) -> TRANSPORT:
        return TRANSPORT.USB

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        resp = bytes.fromhex(self.driver.call("apdu", data=apdu.hex())["data"])
        return resp[:-2], (resp[-2] << 8) | resp[-1]

    def close(self) -> None:
        pass


class PipeOtpConnection(OtpConnection):
    """yubikit's OTP (HID feature report) connection, carried to the driver's OTP engine."""

    def __init__(self, driver: DrivenKey) -> None:
        self.driver = driver

    def receive(self) -> bytes:
        return bytes.fromhex(self.driver.call("otp_get")["data"])

    def send(self, data: bytes) -> None:
        self.driver.call("otp_set", data=bytes(data).hex())

    def close(self) -> None:
        pass


class EngineOtpConnection(OtpConnection):
    """yubikit's OTP connection straight into an OTP HID engine of a key in this process."""

    def __init__(self, key: Any) -> None:
        from hwtoken.emulator.applets.otp.hid import OtpHidEngine

        self.engine = OtpHidEngine(key)

    def receive(self) -> bytes:
        return self.engine.get_feature()

    def send(self, data: bytes) -> None:
        self.engine.set_feature(data)

    def close(self) -> None:
        self.engine.close()
