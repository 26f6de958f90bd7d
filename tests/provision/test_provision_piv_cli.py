"""``hwtoken provision run -m piv -m fido`` as real processes on virtual keys: the CA as
``openssl ca`` (its own database counts what it issued) or ``openssl x509 -req``, SIGKILL
inside the PIV steps, the PIN mailer and the certificates exports checked with openssl."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess

import pytest
from piv_helpers import SUBJECT, make_ca, piv_session
from provision_helpers import HWTOKEN, hwtoken, opened

from hwtoken.provision.model import RecordKey, State
from hwtoken.provision.piv import PivCredentials
from hwtoken.provision.sources import pool_name, virtual_serial


def _openssl_ca(tmp_path, cert, key) -> str:
    """``openssl ca`` with its own database (index.txt lists every certificate it
    issued), reading the CSR from stdin and writing the certificate to stdout."""
    d = tmp_path / "openssl-ca"
    (d / "certs").mkdir(parents=True)
    (d / "index.txt").write_text("")
    (d / "serial").write_text("1000\n")
    conf = d / "ca.cnf"
    conf.write_text(f"""[ ca ]
default_ca = piv
[ piv ]
dir = {d}
database = $dir/index.txt
new_certs_dir = $dir/certs
serial = $dir/serial
certificate = {cert}
private_key = {key}
default_md = sha256
default_days = 30
policy = anything
unique_subject = no
copy_extensions = none
x509_extensions = piv_user
[ anything ]
commonName = supplied
organizationName = optional
[ piv_user ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth, 1.3.6.1.4.1.311.20.2.2
""")
    return (f"openssl ca -batch -config {conf} -notext -in /dev/stdin -out /dev/stdout "
            "-preserveDN")


def _issued_by_openssl_ca(tmp_path) -> list[str]:
    return (tmp_path / "openssl-ca" / "index.txt").read_text().splitlines()


@pytest.fixture
def ca(tmp_path):
    return make_ca(tmp_path)


def _lines(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.parametrize("fault", ["after:piv-csr", "after:piv-signed", "after:piv-imported"])
def test_a_station_killed_inside_the_piv_steps_resumes_without_a_second_certificate(
        tmp_path, ca, fault):
    cert, key = ca
    url = str(tmp_path / "inv.db")
    signer = _openssl_ca(tmp_path, cert, key)
    hwtoken("provision", "run", "-i", url, "-m", "piv", "--virtual", "2", "--subject", SUBJECT,
            "--ca-command", signer, "--json", env={"HWTOKEN_FAULT": f"{fault}@2"}, check=-9)
    with opened(url) as inv:
        states = [r.state for r in inv.records()]
    assert states == [State.DONE, State.PENDING]
    resumed = hwtoken("provision", "resume", "-i", url, "--ca-command", signer, "--json")
    assert [d["result"] for d in _lines(resumed)[:-1]] == ["done"]
    issued = _issued_by_openssl_ca(tmp_path)
    assert len(issued) == 2, issued  # one certificate per key, whatever the kill
    out = tmp_path / "certs.pem"
    hwtoken("provision", "export", "-i", url, "--format", "certificates", "-o", str(out))
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(cert), str(out)],
                              capture_output=True, text=True, check=False)
    assert verified.returncode == 0 and verified.stdout.strip() == f"{out}: OK", verified


def test_a_batch_with_both_modes_and_its_exports(tmp_path, ca):
    cert, key = ca
    url = str(tmp_path / "inv.db")
    signer = f"openssl x509 -req -CA {cert} -CAkey {key} -days 30"
    run = hwtoken("provision", "run", "-i", url, "-m", "piv", "-m", "fido", "--virtual", "2",
                  "--subject", SUBJECT, "--ca-command", signer, "--pin-length", "6",
                  "--min-pin-length", "6", "--json")
    docs = _lines(run)
    assert [(d["application"], d["result"]) for d in docs[:-1]] == [
        ("piv", "done"), ("fido", "done")] * 2
    serials = [virtual_serial(pool_name(i)) for i in (1, 2)]

    mailer = tmp_path / "mailer.csv"
    hwtoken("provision", "export", "-i", url, "--format", "pin-mailer", "-o", str(mailer))
    rows = list(csv.reader(mailer.read_text().splitlines()[1:]))
    with opened(url) as inv:
        want = []
        for serial in serials:
            creds = PivCredentials.unpack(inv.secret(inv.get(RecordKey(serial, "piv", "9a"))))
            pin = inv.secret(inv.get(RecordKey(serial, "fido", "pin"))).decode()
            want += [[str(serial), "piv", "9a", creds.pin, creds.puk],
                     [str(serial), "fido", "pin", pin, ""]]
    assert rows == want and all(len(r[3]) == 6 for r in rows)
    assert stat.S_IMODE(mailer.stat().st_mode) == 0o600
    again = hwtoken("provision", "export", "-i", url, "--format", "pin-mailer", "-o",
                    str(mailer), "--all", check=2)
    assert again.stderr == f"error: {mailer} exists; choose another file or pass --force\n"
    as_json = tmp_path / "mailer.json"
    hwtoken("provision", "export", "-i", url, "--format", "pin-mailer", "-o", str(as_json),
            "--all")
    assert [[str(d["serial"]), d["application"], d["place"], d["pin"], d["puk"]]
            for d in json.loads(as_json.read_text())] == want

    pem = tmp_path / "certs.pem"
    exported = hwtoken("provision", "export", "-i", url, "--format", "certificates", "-o",
                       str(pem), "--json", check=1)  # written, and the FIDO records left out
    assert json.loads(exported.stdout)["error"].startswith("2 record(s) left out")
    assert exported.stderr.startswith("left out 2 record(s) (")
    done = hwtoken("provision", "export", "-i", url, "--format", "certificates", "-o",
                   str(pem), "--force", "--all", "--skip-unsupported", "--json")
    assert json.loads(done.stdout)["files"] == [str(pem), str(tmp_path / "certs.csv")]
    for path in (pem, tmp_path / "certs.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    table = list(csv.reader((tmp_path / "certs.csv").read_text().splitlines()[1:]))
    assert [r[:3] for r in table] == [[str(s), "9a", f"CN={s},O=ACME"] for s in serials]
    for row, device in zip(table, (f"emu:{pool_name(i)}" for i in (1, 2)), strict=True):
        with piv_session(device) as s:
            from cryptography.hazmat.primitives import hashes
            from yubikit.piv import SLOT

            on_key = s.get_certificate(SLOT.AUTHENTICATION)
        assert row[3] == f"{on_key.serial_number:x}"
        assert row[4] == on_key.fingerprint(hashes.SHA256()).hex()
    split = subprocess.run(["openssl", "storeutl", "-noout", "-certs", str(pem)],
                           capture_output=True, text=True, check=True)
    assert "Total found: 2" in split.stdout
    # a CSV where the bundle should be is refused; a server never gets PINs
    refused = hwtoken("provision", "export", "-i", url, "--format", "certificates", "-o",
                      str(tmp_path / "x.csv"), check=2)
    assert refused.stderr.startswith("error: --out names the PEM bundle of --format "
                                     "certificates; its CSV goes next to it")
    server = hwtoken("provision", "export", "-i", url, "--for", "privacyidea", "--format",
                     "pin-mailer", "-o", str(tmp_path / "p.csv"), check=2)
    assert server.stderr == ("error: --format pin-mailer is for the admin, never for a "
                             "validation server: export it with --for generic --format "
                             "pin-mailer\n")
    listed = json.loads(hwtoken("provision", "list", "-i", url, "--json").stdout)["records"]
    piv = [r for r in listed if r["application"] == "piv"]
    assert [len(r["issued"]) for r in piv] == [1, 1] and all(r["issued"][0]["current"]
                                                             for r in piv)


def test_the_ca_key_passphrase_comes_from_stdin_or_the_environment(tmp_path):
    cert, key = make_ca(tmp_path, passphrase=b"ca secret phrase")
    url = str(tmp_path / "inv.db")
    args = ["provision", "run", "-i", url, "-m", "piv", "--virtual", "1", "--ca-cert",
            str(cert), "--ca-key", str(key)]
    missing = hwtoken(*args, check=2)
    assert missing.stderr.splitlines()[-1] == (
        f"error: the CA key {key} is encrypted: give its passphrase on stdin "
        "(--ca-passphrase -) or in $HWTOKEN_CA_PASSPHRASE")
    wrong = hwtoken(*args, env={"HWTOKEN_CA_PASSPHRASE": "not it"}, check=2)
    assert wrong.stderr.splitlines()[-1] == (
        f"error: cannot read the CA key {key}: not a PEM private key, or a wrong passphrase")
    assert not os.path.exists(url)  # refused before the inventory was made
    proc = subprocess.run([HWTOKEN, *args, "--ca-passphrase", "-",
                           "--json"], input="ca secret phrase\n", capture_output=True,
                          text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.splitlines()[0])["result"] == "done"
    assert "ca secret phrase" not in proc.stdout + proc.stderr
    hwtoken(*[a if a != "1" else "2" for a in args],
            env={"HWTOKEN_CA_PASSPHRASE": "ca secret phrase"})


def test_a_failing_ca_command_leaves_the_record_pending_with_its_message(tmp_path):
    url = str(tmp_path / "inv.db")
    failing = tmp_path / "signer"
    failing.write_text("#!/bin/sh\ncat >/dev/null\necho 'policy: CN not allowed' >&2\nexit 3\n")
    failing.chmod(0o755)
    run = hwtoken("provision", "run", "-i", url, "-m", "piv", "--virtual", "1",
                  "--ca-command", str(failing), "--json", check=1)
    (doc,) = _lines(run)[:1]
    assert (doc["result"], doc["message"]) == (
        "failed", f"the CA command {failing} exited 3: policy: CN not allowed")
    status = json.loads(hwtoken("provision", "status", "-i", url, "--json").stdout)
    assert status["pending"][0]["last_error"] == doc["message"]
    missing = hwtoken("provision", "resume", "-i", url, "--ca-command", "no-such-signer",
                      check=2)
    assert missing.stderr == ("error: --ca-command: no program 'no-such-signer' (or it "
                              "cannot be run)\n")
    nothing = hwtoken("provision", "resume", "-i", url, "--json", check=1)
    assert _lines(nothing)[0]["message"] == ("PIV slot 9a needs its certificate from a CA: "
                                             "pass --ca-cert and --ca-key, or --ca-command")
    cert, key = make_ca(tmp_path)
    hwtoken("provision", "resume", "-i", url, "--ca-cert", str(cert), "--ca-key", str(key))
    listed = json.loads(hwtoken("provision", "list", "-i", url, "--json").stdout)["records"]
    assert listed[0]["state"] == "done"
