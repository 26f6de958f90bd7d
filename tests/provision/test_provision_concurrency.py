"""Two stations, one PostgreSQL inventory, one pool of 50 virtual keys: 50 records, no
duplicates, every key programmed exactly once with the secret its record holds."""

from __future__ import annotations

import json
import os
import random
import subprocess

import pytest
from provision_helpers import HWTOKEN, chalresp_matches, opened

from hwtoken.provision.model import State
from hwtoken.provision.sources import pool_name, virtual_serial

KEYS = 50


@pytest.mark.slow
def test_two_stations_share_one_postgres_inventory(pg_server):
    url = pg_server.new_database()
    args = [HWTOKEN, "provision", "run", "--inventory", url, "--mode", "chalresp",
            "--virtual", str(KEYS), "--json"]
    stations = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=dict(os.environ), stdin=subprocess.DEVNULL)
                for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in stations]
    for p, (out, err) in zip(stations, outputs, strict=True):
        assert p.returncode == 0, err

    done: dict[int, int] = {}
    for out, _ in outputs:
        for line in out.splitlines():
            doc = json.loads(line)
            if doc.get("result") == "done":
                done[doc["serial"]] = done.get(doc["serial"], 0) + 1
            elif "result" in doc:
                assert doc["result"] in ("refused", "busy"), doc
    pool = {virtual_serial(pool_name(i)): f"emu:{pool_name(i)}" for i in range(1, KEYS + 1)}
    assert len(pool) == KEYS
    assert done == {s: 1 for s in pool}  # each key programmed by exactly one station
    both = [sum(1 for ln in out.splitlines() if '"result": "done"' in ln)
            for out, _ in outputs]
    assert all(n > 0 for n in both), both  # both stations really worked

    with opened(url) as inv:
        records = inv.records()
        assert len(records) == KEYS
        assert {r.serial for r in records} == set(pool)
        assert all(r.state is State.DONE for r in records)
        assert len({r.station for r in records}) == 2
        sample = random.sample(records, 8)
        for rec in sample:
            assert rec.device == pool[rec.serial]
            assert chalresp_matches(rec.device, rec.serial, inv.secret(rec))


def test_two_stations_share_one_sqlite_inventory(tmp_path):
    url = str(tmp_path / "shared.db")
    n = 12
    args = [HWTOKEN, "provision", "run", "--inventory", url, "--mode", "hotp", "--virtual",
            str(n), "--json"]
    stations = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=dict(os.environ), stdin=subprocess.DEVNULL)
                for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in stations]
    assert [p.returncode for p in stations] == [0, 0], outputs
    done = [json.loads(ln)["serial"] for out, _ in outputs for ln in out.splitlines()
            if '"result": "done"' in ln]
    assert len(done) == len(set(done)) == n
    with opened(url) as inv:
        assert sorted(r.serial for r in inv.records(states=[State.DONE])) == sorted(done)


@pytest.mark.slow
def test_two_stations_one_killed_mid_key_provision_a_piv_batch_on_postgres(pg_server,
                                                                           tmp_path):
    """The PIV batch: two stations share the inventory and the pool; one is SIGKILLed on
    its third key, after the CA issued the slot's certificate and before it went into the
    slot. The other goes on; resume finishes the killed one's key. Every key ends with one
    key pair and one certificate, the one in its slot."""
    from cryptography import x509
    from piv_helpers import make_ca, piv_session
    from yubikit.piv import SLOT

    from hwtoken.provision.model import RecordKey

    keys = 10
    url = pg_server.new_database()
    cert, key = make_ca(tmp_path)
    args = [HWTOKEN, "provision", "run", "--inventory", url, "-m", "piv", "--virtual",
            str(keys), "--ca-cert", str(cert), "--ca-key", str(key), "--json"]
    killed = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL,
                              env={**os.environ, "HWTOKEN_FAULT": "after:piv-signed@3"})
    other = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL, env=dict(os.environ))
    killed_out, _ = killed.communicate(timeout=300)
    other_out, other_err = other.communicate(timeout=300)
    assert killed.returncode == -9
    assert other.returncode == 0, other_err
    done_by_killed = [json.loads(ln)["serial"] for ln in killed_out.splitlines()
                      if '"result": "done"' in ln]
    assert len(done_by_killed) == 2  # its third key was the one in progress
    resumed = subprocess.run([HWTOKEN, "provision", "resume", "--inventory", url, "--ca-cert",
                              str(cert), "--ca-key", str(key), "--json"], capture_output=True,
                             text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert resumed.returncode == 0, resumed.stderr
    assert [json.loads(ln)["result"] for ln in resumed.stdout.splitlines()[:-1]] == ["done"]

    pool = {virtual_serial(pool_name(i)): f"emu:{pool_name(i)}" for i in range(1, keys + 1)}
    ca = x509.load_pem_x509_certificate(cert.read_bytes())
    with opened(url) as inv:
        records = inv.records()
        assert sorted(r.serial for r in records) == sorted(pool)
        assert {r.state for r in records} == {State.DONE}
        assert len({r.station for r in records}) == 3  # both stations, and the resume
        for serial, device in pool.items():
            kinds = [n.kind for n in inv.notes(RecordKey(serial, "piv", "9a"))]
            assert kinds.count("generating") == 1 and kinds.count("certificate") == 1, kinds
            (noted,) = [n.value for n in inv.notes(RecordKey(serial, "piv", "9a"))
                        if n.kind == "certificate"]
            with piv_session(device) as s:
                in_slot = s.get_certificate(SLOT.AUTHENTICATION)
            assert in_slot == x509.load_pem_x509_certificate(noted.encode())
            in_slot.verify_directly_issued_by(ca)
