"""ykman's `otp` commands against the virtual key as a card in a real pcscd (vpcd)."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys
from pathlib import Path

import pytest

from hwtoken.emulator.pcscd import READER_0, shared_pcscd, wait_for_card
from hwtoken.emulator.transports.vpcd import VpcdLink

pytestmark = pytest.mark.system

YKMAN = str(Path(sys.executable).with_name("ykman"))


@pytest.fixture
def card(vkey):
    daemon = shared_pcscd()
    link = VpcdLink(vkey, port=daemon.port).start()
    assert link.wait_connected(10), daemon.log_tail()
    wait_for_card(READER_0, timeout=10)
    yield daemon
    link.stop()


def ykman(daemon, tmp_path, *args):
    env = daemon.client_env()
    env["HOME"] = str(tmp_path)
    env.pop("XDG_CONFIG_HOME", None)
    return subprocess.run([YKMAN, "--reader", READER_0, "otp", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_ykman_otp_chalresp_hotp_delete(card, vkey, tmp_path):
    secret = "3132333435363738393031323334353637383930"
    r = ykman(card, tmp_path, "chalresp", "--force", "2", secret)
    assert r.returncode == 0, r.stderr
    r = ykman(card, tmp_path, "calculate", "2", "6869")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == hmac.new(bytes.fromhex(secret), b"hi", hashlib.sha1).hexdigest()

    r = ykman(card, tmp_path, "hotp", "--force", "1", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ")
    assert r.returncode == 0, r.stderr
    assert vkey.otp.touch(1) == "755224\n"  # RFC 4226 test vector, counter 0

    r = ykman(card, tmp_path, "info")
    assert r.returncode == 0, r.stderr
    assert "Slot 1: programmed" in r.stdout and "Slot 2: programmed" in r.stdout

    r = ykman(card, tmp_path, "delete", "--force", "2")
    assert r.returncode == 0, r.stderr
    assert vkey.otp.slot_config(2) is None


def test_ykman_access_code(card, vkey, tmp_path):
    code = "010203040506"
    r = ykman(card, tmp_path, "chalresp", "--force", "--generate", "1")
    assert r.returncode == 0, r.stderr
    r = ykman(card, tmp_path, "settings", "--force", "--new-access-code", code, "1")
    assert r.returncode == 0, r.stderr
    r = ykman(card, tmp_path, "delete", "--force", "1")
    assert r.returncode != 0
    assert vkey.otp.slot_config(1) is not None
    r = ykman(card, tmp_path, "--access-code", code, "delete", "--force", "1")
    assert r.returncode == 0, r.stderr
    assert vkey.otp.slot_config(1) is None
