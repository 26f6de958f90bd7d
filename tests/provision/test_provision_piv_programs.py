"""Proof with the real programs: a station on the real-key path (ykman's discovery, yubikit
and python-fido2 over the keys' own USB interfaces) provisions ``-m piv -m fido`` on keys
plugged in one after another through a umockdev testbed, with pcscd and Debian's CCID
driver reaching each key's smart-card interface (the private pcscd). Then, for each key
plugged in again:

* ``ykman piv certificates export 9a``, verified by ``openssl verify -CAfile ca.pem``;
* ``pkcs11-tool --login --pin <the mailer's PIN> --sign`` through OpenSC, the signature
  verified by ``openssl`` with the certificate's key;
* ``ssh -I opensc-pkcs11.so`` logs in to a private sshd on 127.0.0.1;
* ``ykman piv info`` and ``ykman piv access``: the default PIN and management key no longer
  work, and the management key is stored on the key, PIN-protected (``--protect``);
* ``fido2-token -I`` shows a PIN set and the forced change; ``fido2-token -C`` with the
  mailer's PIN changes it.

The virtual keys' attestation roots are what ``hwtoken emulate show NAME
--piv-attestation-root`` exports, handed to the station as ``--attestation-roots``.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from piv_helpers import SUBJECT, make_ca
from provision_helpers import PASSPHRASE

from hwtoken import paths
from hwtoken.emulator import VirtualKey
from hwtoken.emulator.pcscd import YUBIKEY_5_READER, UsbPcscd
from hwtoken.emulator.transports import umockdev

sys.path.insert(0, str(Path(__file__).parents[1] / "emulator" / "applets"))
from sshd_support import private_sshd  # noqa: E402

pytestmark = pytest.mark.system

HWTOKEN = [sys.executable, "-m", "hwtoken"]
VENV_BIN = Path(sys.executable).parent
READER = f"{YUBIKEY_5_READER} 00 00"
DEFAULT_MGMT = "010203040506070801020304050607080102030405060708"


def _module(name: str) -> str:
    found = sorted(Path("/usr/lib").glob(f"*/{name}")) or [Path("/usr/lib") / name]
    return str(found[0])


OPENSC = _module("opensc-pkcs11.so")


class Bench:
    """One testbed, the pcscd inside it, and the station's environment."""

    def __init__(self, tb: umockdev.Testbed, pcscd: UsbPcscd, home: Path) -> None:
        self.tb, self.pcscd = tb, pcscd
        base = {**os.environ, "HOME": str(home), "HWTOKEN_INVENTORY_PASSPHRASE": PASSPHRASE}
        # PC/SC clients need only pcscd's socket; the station and libfido2's tools also
        # find the keys on USB (the testbed's environment)
        self.env = pcscd.client_env(base)
        self.usb_env = pcscd.client_env(tb.env(base))

    def run(self, *argv: str, input: str = "", check: int | None = 0,
            env: dict[str, str] | None = None, timeout: float = 40) -> subprocess.CompletedProcess:
        program = argv[0]
        venv = VENV_BIN / program
        cmd = [str(venv) if venv.exists() else program, *argv[1:]]
        try:
            proc = subprocess.run(cmd, env={**self.env, **(env or {})}, input=input,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{argv} hung: {exc.stderr!r}\npcscd: "
                                 f"{self.pcscd.log_tail()}") from None
        if check is not None and proc.returncode != check:
            raise AssertionError(f"{argv} exited {proc.returncode}\nstdout: {proc.stdout}\n"
                                 f"stderr: {proc.stderr}\npcscd: {self.pcscd.log_tail()}")
        return proc

    def plug(self, key: VirtualKey):  # noqa: ANN201
        plugged = self.tb.plug(key)
        self.pcscd.wait_for_readers(lambda names: names == [READER])
        return plugged

    def unplug(self, plugged) -> None:  # noqa: ANN001
        self.tb.unplug(plugged)
        self.pcscd.wait_for_readers(lambda names: names == [])


def _station_lines(proc: subprocess.Popen, want: int, timeout: float = 120) -> list[dict]:
    """Read the station's JSON lines until ``want`` outcomes came."""
    assert proc.stdout is not None
    docs: list[dict] = []
    deadline = time.monotonic() + timeout
    while sum("result" in d for d in docs) < want:
        assert time.monotonic() < deadline, docs
        line = proc.stdout.readline()
        assert line, (docs, proc.poll())
        docs.append(json.loads(line))
    return docs


@pytest.fixture
def bench(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with umockdev.Testbed() as tb:
        pcscd = UsbPcscd(tb).start()
        try:
            yield Bench(tb, pcscd, home)
        finally:
            pcscd.stop()


def test_piv_and_fido_keys_plugged_one_after_another_work_with_the_real_programs(
        bench, tmp_path):
    names = ["desk-1", "desk-2"]
    keys = [VirtualKey.create(paths.virtual_key_path(n)) for n in names]
    try:
        _provision_and_prove(bench, tmp_path, names, keys)
    finally:
        for key in keys:
            key.close()


def _provision_and_prove(bench: Bench, tmp_path: Path, names: list[str],
                         keys: list[VirtualKey]) -> None:
    cert, ca_key = make_ca(tmp_path)
    roots = tmp_path / "roots.pem"
    for name, key in zip(names, keys, strict=True):
        key.piv.initialise()  # its attestation PKI, as at the factory
        shown = subprocess.run([*HWTOKEN, "emulate", "show", name, "--piv-attestation-root"],
                               capture_output=True, text=True, check=True, timeout=60)
        roots.write_text(roots.read_text() + shown.stdout if roots.exists() else shown.stdout)
    url = str(tmp_path / "inv.db")
    station = subprocess.Popen(
        [*HWTOKEN, "provision", "run", "-i", url, "-m", "piv", "-m", "fido", "--subject",
         SUBJECT, "--ca-cert", str(cert), "--ca-key", str(ca_key), "--attestation-roots",
         str(roots), "--protect", "--min-pin-length", "6", "--idle-timeout", "3", "--json"],
        env=bench.usb_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    try:
        for key in keys:  # the admin plugs the keys in one after another
            plugged = bench.plug(key)
            docs = _station_lines(station, 2)
            mine = [d for d in docs if d.get("serial") == key.serial]
            assert [(d["application"], d["result"]) for d in mine] == [
                ("piv", "done"), ("fido", "done")], (docs, station.stderr)
            bench.unplug(plugged)
        assert station.wait(timeout=60) == 0, station.stderr.read() if station.stderr else ""
    finally:
        if station.poll() is None:
            station.kill()
            station.wait(10)
    mailer = tmp_path / "mailer.csv"
    bench.run(*HWTOKEN, "provision", "export", "-i", url, "--format", "pin-mailer", "-o",
              str(mailer))
    pins = {(int(r[0]), r[1]): (r[3], r[4])
            for r in csv.reader(mailer.read_text().splitlines()[1:])}
    for key in keys:
        plugged = bench.plug(key)
        try:
            piv_pin, piv_puk = pins[(key.serial, "piv")]
            _prove_piv(bench, tmp_path, key, cert, piv_pin, piv_puk)
            _prove_fido(bench, plugged, pins[(key.serial, "fido")][0])
        finally:
            bench.unplug(plugged)


def _prove_piv(bench: Bench, tmp_path: Path, key: VirtualKey, ca: Path, pin: str,
               puk: str) -> None:
    d = tmp_path / str(key.serial)
    d.mkdir()
    exported = d / "9a.pem"
    bench.run("ykman", "--reader", READER, "piv", "certificates", "export", "9a", str(exported))
    verified = bench.run("openssl", "verify", "-CAfile", str(ca), str(exported))
    assert verified.stdout.strip() == f"{exported}: OK"
    subject = bench.run("openssl", "x509", "-in", str(exported), "-noout", "-subject",
                        "-nameopt", "RFC2253").stdout.strip()
    assert subject == f"subject=CN={key.serial},O=ACME"

    # OpenSC's PKCS#11 module signs with the slot's key, logged in with the mailer's PIN
    data = d / "data"
    data.write_bytes(os.urandom(100))
    signature = d / "sig"
    bench.run("pkcs11-tool", "--module", OPENSC, "--login", "--pin", pin, "--sign",
              "--id", "01", "--mechanism", "ECDSA-SHA256", "--signature-format", "openssl",
              "-i", str(data), "-o", str(signature))
    public = d / "pub.pem"
    bench.run("openssl", "x509", "-in", str(exported), "-noout", "-pubkey", "-out", str(public))
    checked = bench.run("openssl", "dgst", "-sha256", "-verify", str(public), "-signature",
                        str(signature), str(data))
    assert checked.stdout.strip() == "Verified OK"
    wrong = bench.run("pkcs11-tool", "--module", OPENSC, "--login", "--pin", "123456",
                      "--sign", "--id", "01", "--mechanism", "ECDSA-SHA256", "-i", str(data),
                      "-o", str(d / "no"), check=None)
    assert wrong.returncode != 0 and "CKR_PIN_INCORRECT" in wrong.stdout + wrong.stderr

    # ssh logs in with the card's key
    exported_keys = bench.run("ssh-keygen", "-D", OPENSC).stdout
    auth = [line for line in exported_keys.splitlines() if "PIV AUTH" in line]
    assert len(auth) == 1
    authorized = d / "authorized_keys"
    authorized.write_text(auth[0] + "\n")
    askpass = d / "askpass"
    askpass.write_text(f"#!/bin/sh\necho {pin}\n")
    askpass.chmod(0o700)
    sshd_dir = d / "sshd"
    sshd_dir.mkdir()
    with private_sshd(sshd_dir, authorized) as port:
        login = bench.run(
            "ssh", "-F", "/dev/null", "-p", str(port), "-I", OPENSC, "-o", "IdentityAgent=none",
            "-o", "PasswordAuthentication=no", "-o", "StrictHostKeyChecking=no",
            "-o", f"UserKnownHostsFile={d / 'kh'}", "-o", "ConnectTimeout=10",
            "root@127.0.0.1", "echo", f"logged-in-{key.serial}", input="",
            env={"SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"}, check=None)
    assert login.returncode == 0, login.stderr + (sshd_dir / "sshd.log").read_text()
    assert login.stdout.strip() == f"logged-in-{key.serial}"

    # the factory defaults no longer open it; the recorded ones do
    info = bench.run("ykman", "--reader", READER, "piv", "info").stdout
    assert re.search(r"Management key algorithm: +AES192", info), info
    assert "default" not in info.lower(), info
    default_pin = bench.run("ykman", "--reader", READER, "piv", "access", "change-pin",
                            "-P", "123456", "-n", "65432100", check=None)
    assert default_pin.returncode != 0 and "PIN" in default_pin.stderr
    default_key = bench.run("ykman", "--reader", READER, "piv", "certificates", "delete",
                            "9a", "-m", DEFAULT_MGMT, check=None, input="")
    assert default_key.returncode != 0 and "management key" in default_key.stderr.lower()
    bench.run("ykman", "--reader", READER, "piv", "access", "change-puk", "-p", puk,
              "-n", puk)  # the mailer's PUK is the key's
    after = bench.run("ykman", "--reader", READER, "piv", "info").stdout
    assert re.search(r"PIN tries remaining: +2/3", after), after  # the wrong default PIN
    assert "Management key is stored on the YubiKey, protected by PIN." in after  # --protect


def _prove_fido(bench: Bench, plugged, pin: str) -> None:  # noqa: ANN001
    hidraw = plugged.fido_hidraw
    info = bench.tb.run(["fido2-token", "-I", hidraw], capture_output=True, text=True,
                        timeout=60, env=bench.usb_env)
    assert info.returncode == 0, info.stderr
    assert "clientPin" in info.stdout and "noclientPin" not in info.stdout
    assert "pin change required: true" in info.stdout, info.stdout
    assert "minpinlen: 6" in info.stdout
    changed = bench.tb.run(["fido2-token", "-C", hidraw], input=f"{pin}\n24681357\n24681357\n",
                           capture_output=True, text=True, timeout=60, env=bench.usb_env)
    assert changed.returncode == 0, changed.stderr
    after = bench.tb.run(["fido2-token", "-I", hidraw], capture_output=True, text=True,
                         timeout=60, env=bench.usb_env).stdout
    assert "pin change required: false" in after, after
