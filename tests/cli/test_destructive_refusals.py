"""Every destructive command, run as a real ``hwtoken`` process with stdin not a terminal
and without ``--force``, refuses: exit 2, one ``error:`` line that says to pass --force (or
choose another file), and nothing erased -- the key's state file and the files the command
would overwrite are byte for byte what they were.

stdin is a pipe holding "y": an answer a script did not mean to give must not count as a
person's yes (with /dev/null too, a few cases). The commands' happy paths, with --force or
at a terminal, are tested with their areas; here only the refusal is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwtoken import paths
from hwtoken.cli import cli
from hwtoken.emulator.key import VirtualKey

HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))
PIN = "pin-4d5e6f"
B32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NAME = "victim"
DEV = f"emu:{NAME}"


def setup_cli(*args: str, input: str | None = None) -> None:
    """Arrange state through the CLI in process (fast; not what is tested)."""
    r = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    assert r.exit_code == 0, r.output


def with_fido_credential(key: VirtualKey) -> None:
    from hwtoken.emulator import fido_device
    from hwtoken.testing import WebAuthnHelper

    device = fido_device(key)
    try:
        from fido2.ctap2 import Ctap2
        from fido2.ctap2.pin import ClientPin

        ClientPin(Ctap2(device)).set_pin(PIN)
        WebAuthnHelper(device, pin=PIN).register("alice", resident_key=True)
    finally:
        device.close()


def credential_id(key: VirtualKey) -> str:
    from fido2.utils import websafe_encode

    [cred_id] = _resident_ids(key)
    return websafe_encode(cred_id)


def _resident_ids(key: VirtualKey) -> list[bytes]:
    from fido2.ctap2 import CredentialManagement, Ctap2
    from fido2.ctap2.pin import ClientPin

    from hwtoken.emulator import fido_device

    device = fido_device(key)
    try:
        ctap = Ctap2(device)
        cp = ClientPin(ctap)
        cm = CredentialManagement(ctap, cp.protocol,
                                  cp.get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT))
        [rp] = cm.enumerate_rps()
        return [bytes(c[7]["id"]) for c in cm.enumerate_creds(rp[4])]
    finally:
        device.close()


@dataclass
class Case:
    argv: list[str]
    arrange: Callable[[VirtualKey, Path], list[str] | None] | None = None
    message: str = "pass --force"


def _program_slot_1(key: VirtualKey, tmp: Path) -> None:
    key.close()
    setup_cli("yubikey", "hotp", "program", "1", "--secret", B32, "-d", DEV)


def _program_both(key: VirtualKey, tmp: Path) -> None:
    _program_slot_1(key, tmp)
    setup_cli("yubikey", "chalresp", "program", "2", "--secret", "ab" * 20, "-d", DEV)


def _oath_account(key: VirtualKey, tmp: Path) -> None:
    key.close()
    setup_cli("yubikey", "oath", "add", "Acme:alice", "--secret", B32, "-d", DEV)


def _fido(key: VirtualKey, tmp: Path) -> None:
    with_fido_credential(key)


def _existing_out(key: VirtualKey, tmp: Path) -> None:
    (tmp / "cred.json").write_text("the only copy of a credential's public key\n")
    with_fido_credential(key)


def _import_file(key: VirtualKey, tmp: Path) -> None:
    _oath_account(key, tmp)
    (tmp / "uris.txt").write_text(f"otpauth://totp/Acme:alice?secret={B32}&issuer=Acme\n")


#: id -> what to run against the key (CRED: its one resident credential's id)
CASES = {
    "emulate delete": Case(["emulate", "delete", NAME]),
    "fido2 reset": Case(["fido2", "reset", "-d", DEV], _fido),
    "fido2 creds delete": Case(["fido2", "creds", "delete", "CRED", "-d", DEV], _fido),
    "fido2 register over --out": Case(
        ["fido2", "register", "-d", DEV, "--rp", "example.com", "--user", "bob",
         "--out", "{tmp}/cred.json"], _existing_out, "exists"),
    "yubikey hotp program over a slot": Case(
        ["yubikey", "hotp", "program", "1", "--secret", B32, "-d", DEV], _program_slot_1),
    "yubikey chalresp program over a slot": Case(
        ["yubikey", "chalresp", "program", "1", "--generate", "-d", DEV], _program_slot_1),
    "yubikey delete": Case(["yubikey", "delete", "1", "-d", DEV], _program_slot_1),
    "yubikey swap": Case(["yubikey", "swap", "-d", DEV], _program_both),
    "oath add over an account": Case(
        ["yubikey", "oath", "add", "Acme:alice", "--secret", B32, "-d", DEV], _oath_account,
        "use --force"),
    "oath delete": Case(["yubikey", "oath", "delete", "Acme:alice", "-d", DEV],
                        _oath_account),
    "oath rename by a part of the name": Case(
        ["yubikey", "oath", "rename", "alice", "Other:bob", "-d", DEV], _oath_account),
    "oath reset": Case(["yubikey", "oath", "reset", "-d", DEV], _oath_account),
    "oath import over an account": Case(
        ["yubikey", "oath", "import", "{tmp}/uris.txt", "-d", DEV], _import_file,
        "use --force"),
}


def state(tmp: Path) -> dict[str, bytes]:
    """Every file of the state directory and the test's directory, by path."""
    out = {}
    for root in (paths.state_dir(), tmp):
        for p in sorted(Path(root).rglob("*")):
            if p.is_file() and not p.name.endswith(".lock"):
                out[str(p)] = p.read_bytes()
    return out


def run(argv: list[str], stdin: str | None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("HWTOKEN_PIN", "HWTOKEN_DEVICE", "HWTOKEN_OATH_PASSWORD")}
    env["HWTOKEN_PIN"] = PIN  # a PIN would not stand in for the confirmation either
    return subprocess.run([HWTOKEN, *argv], capture_output=True, timeout=60, env=env,
                          input=None if stdin is None else stdin.encode(),
                          stdin=subprocess.DEVNULL if stdin is None else None)


def assert_refused(r: subprocess.CompletedProcess[bytes], message: str) -> None:
    err = r.stderr.decode()
    assert r.returncode == 2, (r.stdout, err)
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors == err.strip().splitlines()[-1:], err
    assert message in errors[0], err
    assert r.stdout == b""


def arranged(case: Case, tmp: Path) -> list[str]:
    """A key NAME in the state the case needs; the argv to run against it."""
    key = VirtualKey.create(paths.virtual_key_path(NAME))
    try:
        if case.arrange is not None:
            case.arrange(key, tmp)
        argv = [a.replace("{tmp}", str(tmp)) for a in case.argv]
        if "CRED" in argv:
            argv[argv.index("CRED")] = credential_id(key)
    finally:
        key.close()
    return argv


@pytest.mark.parametrize("case", list(CASES))
def test_refused_without_a_terminal_and_force(case, tmp_path):
    argv = arranged(CASES[case], tmp_path)
    before = state(tmp_path)
    assert_refused(run(argv, "y\n"), CASES[case].message)
    assert state(tmp_path) == before


@pytest.mark.parametrize("case", ["emulate delete", "fido2 reset", "oath reset"])
def test_refused_with_stdin_at_its_end(case, tmp_path):
    argv = arranged(CASES[case], tmp_path)
    before = state(tmp_path)
    assert_refused(run(argv, None), CASES[case].message)
    assert state(tmp_path) == before
