"""Secrets appear in no argv, no output, no log and no exception message."""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import subprocess
import threading
from pathlib import Path

from provision_helpers import HWTOKEN, PASSPHRASE, hwtoken, opened

from hwtoken.provision.model import Material, Mode, Spec
from hwtoken.provision.programmers import programmer_for
from hwtoken.provision.runner import Provisioner
from hwtoken.provision.sources import VirtualPool


def _forms(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), base64.b32encode(secret).decode(),
            base64.b32encode(secret).decode().rstrip("="), base64.b64encode(secret).decode()]


def _all_cmdlines() -> list[str]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                out.append((p / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    "utf-8", "replace"))
    return out


def test_no_secret_in_argv_output_or_ps(tmp_path):
    url = str(tmp_path / "inv.db")
    seen: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            seen.extend(_all_cmdlines())
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True,
                                timeout=30)
            seen.append(ps.stdout)
            stop.wait(0.02)  # each hwtoken run lives for a second or more: no need to spin

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        run = hwtoken("provision", "run", "-i", url, "--mode", "hotp", "--virtual", "4")
        run_json = hwtoken("provision", "run", "-i", url, "--mode", "chalresp", "--virtual",
                           "6", "--reprogram", "--json")
        status = hwtoken("provision", "status", "-i", url, "--json")
    finally:
        stop.set()
        watcher.join(10)
    assert any(HWTOKEN in c for c in seen)  # the watcher did see our processes
    with opened(url) as inv:
        secrets = [inv.secret(r) for r in inv.records()]
    assert len(secrets) == 6
    haystacks = [*seen, run.stdout, run.stderr, run_json.stdout, run_json.stderr,
                 status.stdout, status.stderr]
    for text in haystacks:
        assert PASSPHRASE not in text
        for secret in secrets:
            for form in _forms(secret):
                assert form not in text


class _LyingConnection:
    """Programs a different secret than asked: a faulty key."""

    def __init__(self, inner):
        self.inner = inner

    def occupant(self, spec):
        return self.inner.occupant(spec)

    def program(self, spec, material, access):
        self.inner.program(spec, Material(bytes(b ^ 0xFF for b in material.secret)), access)

    def calculate(self, spec, challenge):
        return self.inner.calculate(spec, challenge)


class _LyingProgrammer:
    name = "lying"

    def __init__(self, real):
        self.real = real

    @contextlib.contextmanager
    def connect(self, device):
        with self.real.connect(device) as conn:
            yield _LyingConnection(conn)


def test_no_secret_in_logs_or_error_messages(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="hwtoken")  # a CLI test may have raised it
    url = str(tmp_path / "inv.db")
    with opened(url) as inv:
        good = Provisioner(inv, programmer_for).run(Spec(Mode.CHALRESP), VirtualPool(2))
        assert good.counts() == {"done": 2}
        bad = Provisioner(inv, lambda s, d: _LyingProgrammer(programmer_for(s, d))).run(
            Spec(Mode.HOTP, slot=2), VirtualPool(3), reprogram=True)
        assert bad.counts() == {"failed": 3} and bad.exit_code == 1
        secrets = [inv.secret(r) for r in inv.records()]
        last = inv.last_error()
        rows = [r.public() for r in inv.records()]
    assert "does not match" in last["message"]
    assert caplog.records  # the runner does log its steps
    texts = [caplog.text, repr(last), repr(rows), *(o.message for o in bad.outcomes)]
    for text in texts:
        for secret in secrets:
            for form in _forms(secret):
                assert form not in text


def test_wrong_passphrase_message_has_no_secret(tmp_path):
    url = str(tmp_path / "inv.db")
    hwtoken("provision", "run", "-i", url, "--mode", "chalresp", "--virtual", "1")
    proc = hwtoken("provision", "export", "-i", url, "--format", "csv", "-o", str(tmp_path / "x"),
                   env={"HWTOKEN_INVENTORY_PASSPHRASE": "guess-1234"}, check=2)
    assert proc.stderr.strip() == "error: wrong passphrase or key file for this inventory"
    assert "guess-1234" not in proc.stdout + proc.stderr
    assert not (tmp_path / "x").exists()
    env = {k: v for k, v in os.environ.items() if k != "HWTOKEN_INVENTORY_PASSPHRASE"}
    proc = subprocess.run([HWTOKEN, "provision", "resume", "-i", url], capture_output=True,
                          text=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: the inventory needs a "
                                                           "passphrase")
    assert "Traceback" not in proc.stderr


def test_no_piv_or_fido_credential_in_logs_output_or_the_journal(tmp_path, caplog):
    """The PINs, PUKs and management keys of -m piv and -m fido: in no log line (the
    client libraries' included), no outcome, no record shown, no journal line but the
    sealed copies, no command output."""
    from piv_helpers import CountingCa, provisioner

    from hwtoken.provision.piv import PivCredentials

    caplog.set_level(logging.DEBUG)
    url = str(tmp_path / "inv.db")
    plan = [Spec(Mode.PIV, name="9a", protect=True), Spec(Mode.FIDO, name="pin")]
    with opened(url) as inv:
        summary = provisioner(inv, CountingCa(tmp_path)).run(plan, VirtualPool(2))
        assert summary.counts() == {"done": 4}
        values: list[str] = []
        shown = [repr(summary.outcomes)]
        for rec in inv.records():
            secret = inv.secret(rec)
            if rec.application == "piv":
                creds = PivCredentials.unpack(secret)
                values += [creds.pin, creds.puk, *_forms(creds.management_key)]
            else:
                values.append(secret.decode())
            shown += [repr(rec.public()), repr(inv.notes(rec.key))]
            shown += [n.value for n in inv.notes(rec.key) if not n.sealed]
    cli = [hwtoken("provision", *args, "-i", url, "--json") for args in (["status"], ["list"])]
    texts = [caplog.text, *shown, *(p.stdout + p.stderr for p in cli)]
    assert caplog.records
    for text in texts:
        for value in values:
            assert value not in text
