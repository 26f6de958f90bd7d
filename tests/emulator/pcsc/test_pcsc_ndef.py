"""The NFC tag of a YubiKey 5 NFC: the URI (or text) programmed with `ykman otp ndef`
followed by a fresh OTP of that slot, read through the NFC card face the way a phone or
yubikit reads a Type 4 tag (SELECT the NDEF application, SELECT FILE E104, READ BINARY),
over a real pcscd; ykman programs the key as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyotp
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from ykman.pcsc import list_devices
from yubikit.core import ApplicationNotAvailableError
from yubikit.core.otp import modhex_decode
from yubikit.core.smartcard import SmartCardConnection, SmartCardProtocol

from hwtoken.emulator.applets.otp.frames import check_crc
from hwtoken.emulator.pcscd import READER_0

pytestmark = pytest.mark.system

YKMAN = str(Path(sys.executable).with_name("ykman"))
AID_NDEF = bytes.fromhex("d2760000850101")
HOTP_SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"  # RFC 4226's key
PUBLIC_ID, PRIVATE_ID = "vvccccfiluij", "267e0a88949b"
AES_KEY = "b8d0a9c3f2e1d4c5b6a7980112233445"


def ykman(pcscd, tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    env = pcscd.client_env()
    env["HOME"] = str(tmp_path)
    env.pop("XDG_CONFIG_HOME", None)
    proc = subprocess.run([YKMAN, "--reader", READER_0, *args], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"ykman {args}: {proc.stderr}"
    return proc


def read_tag() -> tuple[int, bytes]:
    """One read of the tag: the record type and payload of its one NDEF record."""
    (dev,) = list_devices(READER_0)
    with dev.open_connection(SmartCardConnection) as conn:
        protocol = SmartCardProtocol(conn)
        protocol.select(AID_NDEF)
        protocol.send_apdu(0x00, 0xA4, 0x00, 0x0C, b"\xe1\x04")
        data = protocol.send_apdu(0x00, 0xB0, 0x00, 0x00)
    nlen = int.from_bytes(data[:2], "big")
    record = data[2:2 + nlen]
    assert len(record) == nlen
    header, type_len, payload_len = record[:3]
    assert (header, type_len) == (0xD1, 1)  # one short well-known record
    assert len(record) == 4 + payload_len
    return record[3], record[4:]


def decrypt(otp: str) -> bytes:
    dec = Cipher(algorithms.AES(bytes.fromhex(AES_KEY)), modes.ECB()).decryptor()
    plain = dec.update(modhex_decode(otp)) + dec.finalize()
    assert check_crc(plain)
    return plain


def test_the_tag_serves_the_uri_and_an_hotp_code_of_slot_1(linked, pcscd, tmp_path):
    ykman(pcscd, tmp_path, "otp", "hotp", "--force", "1", HOTP_SECRET)
    ykman(pcscd, tmp_path, "otp", "ndef", "1", "--prefix", "https://example.com/otp/")
    hotp = pyotp.HOTP(HOTP_SECRET)
    for counter in (0, 1):  # each read is a new code, as each tap of a phone is
        kind, payload = read_tag()
        assert kind == ord("U") and payload[0] == 0x04  # URI identifier code: https://
        assert payload[1:] == b"example.com/otp/" + hotp.at(counter).encode()


def test_the_tag_follows_the_slot_ykman_otp_ndef_chose(linked, pcscd, tmp_path):
    ykman(pcscd, tmp_path, "otp", "hotp", "--force", "1", HOTP_SECRET)
    ykman(pcscd, tmp_path, "otp", "yubiotp", "--force", "2", "--public-id", PUBLIC_ID,
          "--private-id", PRIVATE_ID, "--key", AES_KEY)
    ykman(pcscd, tmp_path, "otp", "ndef", "2")  # Yubico's default URI
    kind, payload = read_tag()
    assert kind == ord("U") and payload[0] == 0x04
    uri = payload[1:].decode()
    assert uri.startswith("my.yubico.com/yk/#" + PUBLIC_ID)
    first = decrypt(uri[len("my.yubico.com/yk/#") + 12:])
    assert first[:6] == bytes.fromhex(PRIVATE_ID)
    second = decrypt(read_tag()[1][1 + len("my.yubico.com/yk/#") + 12:].decode())
    assert second[11] == first[11] + 1  # the session counter moved: a fresh OTP
    ykman(pcscd, tmp_path, "otp", "ndef", "1", "--ndef-type", "TEXT", "--prefix", "code ")
    kind, payload = read_tag()
    assert kind == ord("T")
    assert payload == b"\x02en" + b"code " + pyotp.HOTP(HOTP_SECRET).at(0).encode()


def test_no_tag_while_otp_is_disabled_over_nfc(linked, pcscd, tmp_path):
    ykman(pcscd, tmp_path, "otp", "hotp", "--force", "1", HOTP_SECRET)
    ykman(pcscd, tmp_path, "config", "nfc", "--disable", "OTP", "--force")
    with pytest.raises(ApplicationNotAvailableError):
        read_tag()
    ykman(pcscd, tmp_path, "config", "nfc", "--enable", "OTP", "--force")
    assert read_tag()[1].endswith(pyotp.HOTP(HOTP_SECRET).at(0).encode())
