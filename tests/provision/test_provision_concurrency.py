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
