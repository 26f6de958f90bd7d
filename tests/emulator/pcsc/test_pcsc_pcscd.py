"""The virtual key as a smart card in a real pcscd: ykman, yubikit and fido2 reach it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyotp
import pytest
from ykman.pcsc import list_devices
from yubikit.core.smartcard import SmartCardConnection
from yubikit.management import CAPABILITY, ManagementSession
from yubikit.support import read_info
from yubikit.yubiotp import SLOT, HmacSha1SlotConfiguration, YubiOtpSession

from hwtoken.emulator.pcscd import READER_0, wait_for_card
from hwtoken.emulator.transports.vpcd import VpcdLink

pytestmark = pytest.mark.system

YKMAN = str(Path(sys.executable).with_name("ykman"))
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def ykman(pcscd, tmp_path, *args, input=None):
    env = pcscd.client_env()
    env["HOME"] = str(tmp_path)  # ykman's own settings stay in the test dir
    env.pop("XDG_CONFIG_HOME", None)
    return subprocess.run([YKMAN, "--reader", READER_0, *args], env=env, input=input,
                          capture_output=True, text=True, timeout=60)


def connect():
    (dev,) = list_devices(READER_0)
    return dev.open_connection(SmartCardConnection)


def test_ykman_info_shows_serial_and_firmware(pcscd, linked, vkey, tmp_path):
    r = ykman(pcscd, tmp_path, "info")
    assert r.returncode == 0, r.stderr
    assert "Serial number: 7654321" in r.stdout
    assert "Firmware version: 5.7.4" in r.stdout
    assert "YubiKey 5 NFC" in r.stdout


def test_ykman_oath_codes_equal_pyotp_and_hotp_advances(pcscd, linked, tmp_path):
    assert ykman(pcscd, tmp_path, "oath", "accounts", "add", "-i", "Acme", "alice",
                 SECRET).returncode == 0
    assert ykman(pcscd, tmp_path, "oath", "accounts", "add", "-o", "HOTP", "counter",
                 SECRET).returncode == 0
    listed = ykman(pcscd, tmp_path, "oath", "accounts", "list").stdout.split()
    assert listed == ["Acme:alice", "counter"]
    for _ in range(3):  # a 30 s window may turn between the two reads: retry then
        before = pyotp.TOTP(SECRET).now()
        out = ykman(pcscd, tmp_path, "oath", "accounts", "code", "-s", "alice").stdout.strip()
        if before == pyotp.TOTP(SECRET).now():
            break
    assert out == before
    hotp = pyotp.HOTP(SECRET)
    codes = [ykman(pcscd, tmp_path, "oath", "accounts", "code", "-s", "counter").stdout.strip()
             for _ in range(3)]
    assert codes == [hotp.at(0), hotp.at(1), hotp.at(2)]


def test_ykman_password_refuses_until_validated(pcscd, linked, tmp_path):
    assert ykman(pcscd, tmp_path, "oath", "accounts", "add", "bob", SECRET).returncode == 0
    r = ykman(pcscd, tmp_path, "oath", "access", "change", "-n", "s3cret-pw")
    assert r.returncode == 0, r.stderr
    locked = ykman(pcscd, tmp_path, "oath", "accounts", "list", input="\n")
    assert locked.returncode != 0 and "bob" not in locked.stdout
    wrong = ykman(pcscd, tmp_path, "oath", "accounts", "list", "-p", "nope")
    assert wrong.returncode != 0 and "Wrong password" in wrong.stderr
    ok = ykman(pcscd, tmp_path, "oath", "accounts", "list", "-p", "s3cret-pw")
    assert ok.returncode == 0 and ok.stdout.split() == ["bob"]


def test_yubikit_management_and_otp_sessions(pcscd, linked, vkey):
    with connect() as conn:
        info = read_info(conn)
        assert info.serial == 7654321 and tuple(info.version) == (5, 7, 4)
        mgmt = ManagementSession(conn)
        assert mgmt.read_device_info().serial == 7654321
        assert CAPABILITY.OATH in info.supported_capabilities[list(
            info.supported_capabilities)[0]]
    with connect() as conn:
        otp = YubiOtpSession(conn)
        assert otp.get_serial() == 7654321
        secret = bytes(range(20))
        otp.put_configuration(SLOT.TWO, HmacSha1SlotConfiguration(secret))
        assert otp.get_config_state().is_configured(SLOT.TWO)
        import hashlib
        import hmac
        challenge = b"hwtoken-challenge"
        assert otp.calculate_hmac_sha1(SLOT.TWO, challenge) == \
            hmac.new(secret, challenge, hashlib.sha1).digest()


def test_fido2_pcsc_registers_and_authenticates(pcscd, linked):
    from fido2.client import DefaultClientDataCollector, Fido2Client
    from fido2.pcsc import CtapPcscDevice
    from fido2.server import Fido2Server

    (dev,) = [d for d in CtapPcscDevice.list_devices(READER_0)]
    try:
        server = Fido2Server({"id": "example.com", "name": "Example"})
        client = Fido2Client(dev, DefaultClientDataCollector("https://example.com"))
        user = {"id": b"user-1", "name": "alice"}
        opts, state = server.register_begin(user, user_verification="discouraged")
        reg = client.make_credential(opts.public_key)
        auth_data = server.register_complete(state, reg)
        opts, state = server.authenticate_begin([auth_data.credential_data],
                                                user_verification="discouraged")
        sel = client.get_assertion(opts.public_key)
        server.authenticate_complete(state, [auth_data.credential_data],
                                     sel.get_response(0))
    finally:
        dev.close()


def test_link_reconnects_after_pcscd_restart(pcscd, vkey, tmp_path):
    link = VpcdLink(vkey, port=pcscd.port, max_backoff=0.3).start()
    try:
        assert link.wait_connected(10)
        pcscd.restart()
        assert link.wait_connected(15), pcscd.log_tail()
        assert link.connections >= 2
        wait_for_card(READER_0, timeout=10)
        r = ykman(pcscd, tmp_path, "info")
        assert "Serial number: 7654321" in r.stdout, r.stderr
    finally:
        link.stop()




def test_fido2_touch_wait_reports_upneeded_through_getresponse(pcscd, tmp_path):
    """A request waiting for a touch answers 9100 (UPNEEDED) while fido2 polls."""
    from fido2.ctap import STATUS
    from fido2.ctap2 import Ctap2
    from fido2.pcsc import CtapPcscDevice

    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.presence import ApproveAfterDelay

    key = VirtualKey.create(tmp_path / "slow.key", presence=ApproveAfterDelay(0.6))
    link = VpcdLink(key, port=pcscd.port).start()
    try:
        assert link.wait_connected(10)
        wait_for_card(READER_0, timeout=10)
        (dev,) = list(CtapPcscDevice.list_devices(READER_0))
        try:
            seen = []
            resp = Ctap2(dev).make_credential(
                b"\x01" * 32, {"id": "example.com", "name": "Example"},
                {"id": b"u", "name": "u"}, [{"type": "public-key", "alg": -7}],
                on_keepalive=seen.append)
            assert resp.auth_data.is_user_present()
            assert STATUS.UPNEEDED in seen
        finally:
            dev.close()
    finally:
        link.stop()
        key.close()
