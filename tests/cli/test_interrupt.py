"""Ctrl-C (SIGINT) ends every command that reads stdin or waits with exit 130 and
``interrupted``, never a traceback or click's "Aborted!".

The stdin readers are found in the click tree: every parameter that takes ``-`` for
stdin (secrets, URIs, access codes: :class:`hwtoken.cli.common.SecretText`) or a file
(``click.File``). Each runs as a real process; SIGINT is sent once the process is
blocked reading stdin (seen in /proc/PID/syscall) or has said it is waiting.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from test_cli_contract import COMMANDS

from hwtoken import paths
from hwtoken.cli.common import SecretText
from hwtoken.emulator import VirtualKey

HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))
READ_SYSCALL = {"x86_64": 0, "aarch64": 63}.get(platform.machine())


def _neutral(param: click.Parameter) -> str:
    t = param.type
    if isinstance(t, click.Choice):
        return str(t.choices[0])
    if isinstance(t, click.types._NumberRangeBase):
        return str(t.min)
    return "emu:k" if param.name == "device" else "x"


#: What a command needs, besides its required parameters, to get as far as reading an
#: access code from stdin (the slot's secret comes first).
BEFORE_STDIN = {("yubikey", "chalresp", "program"): ["--generate"],
                ("yubikey", "hotp", "program"): ["--secret", "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"],
                # a PIV slot too, so --ca-passphrase is read (the CA options are for -m piv)
                ("provision", "run"): ["-m", "piv", "--ca-command", "true"]}


def stdin_readers() -> list[tuple[str, list[str]]]:
    """(id, argv) for each parameter in the tree that reads stdin when given '-'."""
    out = []
    for path, cmd in COMMANDS.items():
        for target in cmd.params:
            if not isinstance(target.type, (SecretText, click.File)):
                continue
            args: list[str] = []
            if target.name != "secret":
                args += BEFORE_STDIN.get(path, [])
            for p in cmd.params:
                if p.name == "secret" and target.name != "secret" and args:
                    continue  # given above
                value = "-" if p is target else _neutral(p) if p.required else None
                if value is None and p.name == "device":
                    value = "emu:k"
                if value is None:
                    continue
                args += [p.opts[0], value] if isinstance(p, click.Option) else [value]
            out.append((f"{' '.join(path)} {target.opts[0]} -", [*path, *args]))
    return out


READERS = stdin_readers()


def test_the_tree_has_the_readers_we_know():
    ids = {i for i, _ in READERS}
    assert {"otp code secret_or_uri -", "otp verify secret_or_uri -", "otp uri uri -",
            "yubikey oath import file -", "yubikey hotp program --secret -",
            "yubikey chalresp program --secret -", "yubikey oath add --secret -",
            "fob add --secret -", "yubikey swap --access-code -",
            "provision run --ca-passphrase -", "provision resume --ca-passphrase -"} <= ids


def _blocked_reading_stdin(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
    except OSError:
        fields = []
    if READ_SYSCALL is not None and fields and fields[0] != "running":
        return fields[0] == str(READ_SYSCALL) and int(fields[1], 16) == 0
    try:  # no syscall file here: the kernel function it sleeps in
        return "pipe" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def interrupt(argv: list[str], *, ready=_blocked_reading_stdin, env: dict | None = None,
              ready_line: str | None = None) -> tuple[int, str]:
    """Start ``hwtoken argv``, wait until it waits, SIGINT it; (exit code, stderr)."""
    proc = subprocess.Popen([HWTOKEN, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent",
                                 **(env or {})})
    try:
        if ready_line is not None:
            assert proc.stderr is not None and proc.stdout is not None
            stream = proc.stderr if ready_line.startswith("stderr:") else proc.stdout
            want = ready_line.split(":", 1)[1]
            lines = [stream.readline()]
            while want not in lines[-1] and lines[-1] and len(lines) < 5:
                lines.append(stream.readline())  # what it says first ("new inventory: ...")
            assert want in lines[-1], (lines, proc.poll())
        else:
            deadline = time.monotonic() + 60
            while not ready(proc.pid):
                assert proc.poll() is None, ("it ended before waiting", proc.communicate())
                assert time.monotonic() < deadline, "it never blocked reading stdin"
                time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    return proc.returncode, err


def assert_interrupted(rc: int, err: str) -> None:
    assert rc == 130, (rc, err)
    assert "Traceback" not in err and "Aborted" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted"), err


@pytest.fixture
def key():
    VirtualKey.create(paths.virtual_key_path("k")).close()


@pytest.mark.parametrize("argv", [a for _, a in READERS], ids=[i for i, _ in READERS])
def test_ctrl_c_while_reading_stdin(key, argv):
    assert_interrupted(*interrupt(argv))


def test_ctrl_c_at_a_pin_prompt(key):
    assert_interrupted(*interrupt(["fido2", "-d", "emu:k", "pin", "set"]))


@pytest.mark.parametrize("group", [["paperkey"], ["otp", "paperkey"]])
def test_ctrl_c_while_paperkey_check_waits_for_the_key(group):
    from hwtoken import paperkey

    assert_interrupted(*interrupt([*group, "check", paperkey.new().hash]))


def test_ctrl_c_stops_serve_cleanly(key):
    rc, err = interrupt(["emulate", "serve", "k", "--usbip", "127.0.0.1:0"],
                        ready_line="stdout:serving virtual key k")
    assert_interrupted(rc, err)
    assert paths.virtual_key_path("k").exists()


def test_ctrl_c_while_provision_waits_for_a_key(tmp_path):
    rc, err = interrupt(["provision", "run", "-i", str(tmp_path / "inv.db"), "-m", "chalresp"],
                        env={"HWTOKEN_INVENTORY_PASSPHRASE": "a long passphrase"},
                        ready_line="stderr:insert the first key")
    assert_interrupted(rc, err)


def test_ctrl_c_while_fob_deploy_waits_for_the_board():
    """A board that connects but never answers its REPL: deploy waits, Ctrl-C ends it."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        conn, _ = server.accept()
        held.append(conn)  # keep it open, say nothing
        accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    try:
        port = server.getsockname()[1]
        rc, err = interrupt(["fob", "deploy", "--port", f"socket://127.0.0.1:{port}"],
                            ready=lambda pid: accepted.is_set())
    finally:
        for conn in held:
            conn.close()
        server.close()
    assert_interrupted(rc, err)
