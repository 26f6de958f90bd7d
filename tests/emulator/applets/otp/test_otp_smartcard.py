"""The same OTP applet over the smart-card path: yubikit's YubiOtpSession via APDUs."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from yubikit.core import TRANSPORT
from yubikit.core.otp import CommandRejectedError
from yubikit.yubiotp import HmacSha1SlotConfiguration, YubiOtpSession

from hwtoken.emulator.transports.card_direct import DirectCardConnection


@pytest.mark.parametrize("transport", [TRANSPORT.USB, TRANSPORT.NFC])
def test_yubiotp_over_apdus(vkey, transport):
    s = YubiOtpSession(DirectCardConnection(vkey, transport))
    assert s.get_serial() == 12345678
    key = os.urandom(20)
    s.put_configuration(2, HmacSha1SlotConfiguration(key), acc_code=b"\1" * 6)
    assert s.get_config_state().is_configured(2)
    for n in (0, 5, 63):
        chal = os.urandom(n)
        assert s.calculate_hmac_sha1(2, chal) == hmac.new(key, chal, hashlib.sha1).digest()
    with pytest.raises(CommandRejectedError):
        s.delete_slot(2)
    s.delete_slot(2, cur_acc_code=b"\1" * 6)
    assert not s.get_config_state().is_configured(2)


def test_ndef_write_needs_the_slots_access_code(vkey):
    """yubikit appends the current access code to an NDEF write; a protected slot's NDEF
    configuration changes only when it is the right one (as on a real key)."""
    s = YubiOtpSession(DirectCardConnection(vkey, TRANSPORT.NFC))
    s.put_configuration(1, HmacSha1SlotConfiguration(os.urandom(20)), acc_code=b"\2" * 6)
    for wrong in (None, b"\3" * 6):
        with pytest.raises(CommandRejectedError):
            s.set_ndef_configuration(1, "https://example.com/a", cur_acc_code=wrong)
    assert "1" not in vkey.store.section("otp").get("ndef", {})
    s.set_ndef_configuration(1, "https://example.com/a", cur_acc_code=b"\2" * 6)
    assert b"example.com/a" in vkey.store.section("otp")["ndef"]["1"]
    s.set_ndef_configuration(2, "https://example.com/b")  # slot 2 has no access code
