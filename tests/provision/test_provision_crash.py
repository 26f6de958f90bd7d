"""Crash tests: SIGKILL right after each durable step, on both inventories, then resume.

Nothing may be lost: every key that got programmed has its secret in the inventory and
in the export, and the key's own responses match the exported secret.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import signal

import pytest
from provision_helpers import chalresp_matches, hwtoken, key_calculate, only, opened, read_pskc

from hwtoken.otp import hotp_code
from hwtoken.provision.faults import RUN_STEPS
from hwtoken.provision.model import State
from hwtoken.provision.sources import pool_name, virtual_serial


def _run(url: str, *extra: str, fault: str | None = None, check: int | None = 0):
    env = {"HWTOKEN_FAULT": fault} if fault else {}
    return hwtoken("provision", "run", "--inventory", url, "--json", *extra, env=env,
                   check=check)


@pytest.mark.parametrize("step", RUN_STEPS)
def test_crash_after_each_step_then_resume(step, inventory_url, tmp_path):
    # two keys: on a loaded machine the inventory may answer "busy" for a moment, and a
    # busy key is retried after the others, so a third key could come before the crash
    proc = _run(inventory_url, "--mode", "chalresp", "--virtual", "2",
                fault=f"after:{step}@2", check=-signal.SIGKILL)
    assert proc.stdout.count('"result": "done"') == 1  # key 1 finished before the crash

    key2 = f"emu:{pool_name(2)}"
    serial2 = virtual_serial(pool_name(2))
    with opened(inventory_url) as inv:
        records = {r.serial: r for r in inv.records()}
        assert len(records) == 2
        rec2 = records[serial2]
        assert rec2.state is (State.DONE if step == "done" else State.PENDING)
        secret2 = inv.secret(rec2)
    # the crash left the key programmed exactly when the step says so, and never with a
    # secret the inventory lacks
    assert chalresp_matches(key2, serial2, secret2) == (step != "record")

    resumed = hwtoken("provision", "resume", "--inventory", inventory_url, "--json")
    lines = [ln for ln in resumed.stdout.splitlines() if ln.startswith('{"serial"')]
    assert len(lines) == (0 if step == "done" else 1)
    if step == "record":
        assert '"reprogrammed": true' in lines[0]

    status = hwtoken("provision", "status", "--inventory", inventory_url, "--json")
    assert '"pending": 0' in status.stdout and '"done": 2' in status.stdout

    out = tmp_path / "keys.pskc"
    hwtoken("provision", "export", "--inventory", inventory_url, "--format", "pskc",
            "--out", str(out))
    exported = read_pskc(out)
    assert set(exported) == set(records)
    for serial, rec in records.items():
        assert chalresp_matches(rec.device, serial, exported[serial].secret)
    # key 3 was never reached: the pool creates keys as they "arrive"
    assert virtual_serial(pool_name(3)) is None


@pytest.mark.parametrize("step", ["program", "verify"])
def test_hotp_crash_keeps_the_counter_in_step(step, tmp_path):
    """HOTP: after a crash and resume, the exported counter is the key's next code."""
    url = f"sqlite:///{tmp_path / 'inv.db'}"
    _run(url, "--mode", "hotp", "--digits", "8", "--slot", "1", "--virtual", "2",
         fault=f"after:{step}@1", check=-signal.SIGKILL)
    hwtoken("provision", "resume", "--inventory", url)
    _run(url, "--mode", "hotp", "--digits", "8", "--slot", "1", "--virtual", "2")
    out = tmp_path / "k.csv"
    hwtoken("provision", "export", "--inventory", url, "--format", "csv", "--out", str(out))
    rows = [ln.split(", ") for ln in out.read_text().splitlines()]
    assert len(rows) == 2
    for token, key_hex, typ, digits, counter in rows:
        serial = int(token[4:].split("_")[0])
        name = next(pool_name(i) for i in (1, 2) if virtual_serial(pool_name(i)) == serial)
        code = key_calculate(f"emu:{name}", serial, "hotp", slot=1, digits=8)
        assert typ == "hotp" and digits == "8"
        assert code == hotp_code(bytes.fromhex(key_hex), int(counter), 8)
    # the Yubico format carries the slot's initial moving factor: the key's next code is
    # within a validation server's usual look-ahead window (10) from it
    yk = tmp_path / "k.yk.csv"
    hwtoken("provision", "export", "--inventory", url, "--format", "yubico-csv", "--all",
            "--out", str(yk))
    for serial_s, _, factor, key_hex, *_ in (ln.split(",") for ln in
                                            yk.read_text().splitlines()):
        serial = int(serial_s)
        name = next(pool_name(i) for i in (1, 2) if virtual_serial(pool_name(i)) == serial)
        code = key_calculate(f"emu:{name}", serial, "hotp", slot=1, digits=8)
        window = range(int(factor), int(factor) + 10)
        assert factor == "0" and code in {hotp_code(bytes.fromhex(key_hex), c, 8)
                                          for c in window}


def test_in_process_hook_sees_the_four_steps_in_order(tmp_path):
    from hwtoken.provision.inventory import open_inventory
    from hwtoken.provision.model import Mode, Spec
    from hwtoken.provision.programmers import programmer_for
    from hwtoken.provision.runner import Provisioner
    from hwtoken.provision.sealing import Unlocker
    from hwtoken.provision.sources import VirtualPool

    seen = []

    class Crash(Exception):
        pass

    def hook(step, rec):
        seen.append((rec.serial, step))
        if len(seen) == 6:
            raise Crash

    with open_inventory(str(tmp_path / "i.db")) as inv:
        inv.unlock(Unlocker())
        with pytest.raises(Crash):
            Provisioner(inv, programmer_for, hook=hook).run(Spec(Mode.CHALRESP),
                                                            VirtualPool(2))
        assert [s for _, s in seen] == [*RUN_STEPS, "record", "program"]
        summary = Provisioner(inv, programmer_for).resume(VirtualPool(2))
        assert summary.counts() == {"done": 1}
        rec = only(inv, seen[-1][0])
        secret = inv.secret(rec)
        challenge = os.urandom(16)
        assert key_calculate(rec.device, rec.serial, "chalresp", challenge) == hmac.new(
            secret, challenge, hashlib.sha1).digest()
