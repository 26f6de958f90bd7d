"""OATH modes through yubikit over a real pcscd (vpcd driver), with crashes and resume."""

from __future__ import annotations

import base64
import signal
import subprocess
import time

import pyotp
import pytest
from provision_helpers import hwtoken, key_calculate, opened, read_pskc

from hwtoken.otp import hotp_code
from hwtoken.provision.model import State
from hwtoken.provision.sources import pool_name, virtual_serial


@pytest.fixture(scope="module")
def pcscd():
    from hwtoken.emulator.pcscd import Pcscd

    with Pcscd() as daemon:
        yield daemon


@pytest.fixture
def pcscd_env(pcscd):
    env = dict(pcscd.env)
    env["HWTOKEN_VPCD"] = f"127.0.0.1:{pcscd.port}"
    return env


def _after_kill(pcscd) -> None:
    # A card process SIGKILLed while inserted can leave pcscd's vpcd reader without a
    # card for the next link (seen intermittently); a station reboot restarts pcscd too.
    pcscd.restart()


def _oath(url, mode, env, *extra, fault=None, check=0):
    e = dict(env)
    if fault:
        e["HWTOKEN_FAULT"] = fault
    return hwtoken("provision", "run", "--inventory", url, "--mode", mode, *extra,
                   env=e, check=check, timeout=180)


def _serials(n):
    return {virtual_serial(pool_name(i)): f"emu:{pool_name(i)}" for i in range(1, n + 1)}


def test_oath_totp_crash_after_program_then_resume(inventory_url, pcscd, pcscd_env,
                                                   tmp_path):
    _oath(inventory_url, "oath-totp", pcscd_env, "--virtual", "2", "--digits", "8",
          fault="after:program@2", check=-signal.SIGKILL)
    _after_kill(pcscd)
    with opened(inventory_url) as inv:
        assert [r.state for r in inv.records()] == [State.DONE, State.PENDING]
    hwtoken("provision", "resume", "--inventory", inventory_url, env=pcscd_env, timeout=180)
    out = tmp_path / "totp.pskc"
    hwtoken("provision", "export", "--inventory", inventory_url, "--format", "pskc",
            "--out", str(out), "--pskc-password", env={"HWTOKEN_PSKC_PASSWORD": "pskc-pw"})
    keys = read_pskc(out, password="pskc-pw")
    devices = _serials(2)
    assert set(keys) == set(devices)
    now = int(time.time())
    for serial, key in keys.items():
        assert key.algorithm.endswith(":totp") and key.time_interval == 30
        on_key = key_calculate(devices[serial], serial, "oath-totp", now, digits=8)
        want = pyotp.TOTP(base64.b32encode(key.secret).decode(), digits=8).at(now)
        assert on_key == want == hotp_code(key.secret, now // 30, 8)


def test_oath_hotp_crash_after_verify_exports_the_next_counter(pcscd, pcscd_env, tmp_path):
    url = str(tmp_path / "inv.db")
    _oath(url, "oath-hotp", pcscd_env, "--virtual", "1", fault="after:verify@1",
          check=-signal.SIGKILL)
    _after_kill(pcscd)
    hwtoken("provision", "resume", "--inventory", url, env=pcscd_env, timeout=180)
    out = tmp_path / "hotp.csv"
    hwtoken("provision", "export", "--inventory", url, "--format", "csv", "--out", str(out))
    (token, key_hex, typ, digits, counter), = [ln.split(", ") for ln in
                                              out.read_text().splitlines()]
    assert typ == "hotp" and digits == "6" and int(counter) >= 2  # two checks used codes
    serial = int(token[4:].split("_")[0])  # UBOA<serial>_<name>
    device = _serials(1)[serial]
    on_key = key_calculate(device, serial, "oath-hotp")
    reference = subprocess.run(["oathtool", "--hotp", "-c", counter, key_hex],
                               capture_output=True, text=True, check=True).stdout.strip()
    assert on_key == reference == hotp_code(bytes.fromhex(key_hex), int(counter), 6)
