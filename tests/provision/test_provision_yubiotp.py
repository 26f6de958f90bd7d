"""Yubico OTP as a validation server reads it (provision/yubiotp.py), against ykman's
modhex and serial public IDs and against the OTPs the virtual key types."""

from __future__ import annotations

import os

import pytest
from provision_helpers import AnswersInBytes
from yubikit.core.otp import CRC_OK_RESIDUAL, calculate_crc, modhex_decode, modhex_encode

from hwtoken.emulator import VirtualKey
from hwtoken.provision import modes, yubiotp
from hwtoken.provision.model import Access, Material, Mode, Spec
from hwtoken.provision.programmers import _AppletConnection


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xff\x00\x01\x02", os.urandom(16)],
                         ids=["empty", "zero", "four", "random16"])
def test_modhex_is_ykmans(data):
    assert yubiotp.modhex_encode(data) == modhex_encode(data)
    assert yubiotp.modhex_decode(modhex_encode(data)) == modhex_decode(modhex_encode(data))
    assert yubiotp.modhex_decode(modhex_encode(data).upper()) == data


@pytest.mark.parametrize("text", ["a", "abc", "cbx", "vv\u00e9c"])
def test_modhex_refuses_what_is_not(text):
    with pytest.raises(ValueError):
        yubiotp.modhex_decode(text)


@pytest.mark.parametrize("serial", [0, 1, 12345678, 2**32 - 1])
def test_a_serial_public_id_is_ykmans(serial):
    """ykman otp yubiotp --serial-public-id: b"\\xff\\x00" + the serial, big-endian."""
    assert yubiotp.serial_public_id(serial) == modhex_encode(b"\xff\x00"
                                                             + serial.to_bytes(4, "big"))
    with pytest.raises(ValueError):
        yubiotp.serial_public_id(2**32)


def test_random_public_ids_are_in_the_vv_range_and_differ():
    ids = {yubiotp.random_public_id() for _ in range(20)}
    assert len(ids) == 20 and all(i.startswith("vv") and len(i) == 12 for i in ids)


def test_crc_residue_of_a_ticket():
    ticket = os.urandom(14)
    crc = ~yubiotp.crc16(ticket) & 0xFFFF
    assert yubiotp.crc16(ticket + crc.to_bytes(2, "little")) == yubiotp.CRC_RESIDUE


@pytest.fixture
def programmed(tmp_path):
    """A virtual key with Yubico OTP in slot 2, written as the station writes it."""
    key = VirtualKey.create(tmp_path / "k.key")
    secret = os.urandom(yubiotp.SECRET_SIZE)
    public_id = yubiotp.serial_public_id(key.serial)
    spec = Spec(Mode.YUBIOTP, slot=2)
    _AppletConnection(key).program(spec, Material(secret, {"public_id": public_id}), Access())
    try:
        yield key, secret, public_id
    finally:
        key.close()


def test_the_otps_a_key_types_check_and_count(programmed):
    key, secret, public_id = programmed
    first, second = key.otp.touch(2).strip(), key.otp.touch(2).strip()
    assert first != second and first.startswith(public_id) and len(first) == 44
    assert yubiotp.matches(first, public_id, secret)
    a, b = yubiotp.decrypt(first, secret[6:]), yubiotp.decrypt(second, secret[6:])
    assert a.private_id == b.private_id == secret[:6]
    assert (b.use_counter, b.session_counter) == (a.use_counter, a.session_counter + 1)
    assert first.upper() != first and yubiotp.matches(first.upper(), public_id, secret)


def test_what_does_not_check(programmed):
    key, secret, public_id = programmed
    otp = key.otp.touch(2).strip()
    other = bytearray(secret)
    other[0] ^= 1  # another private ID
    assert not yubiotp.matches(otp, public_id, bytes(other))
    assert not yubiotp.matches(otp, public_id, secret[:6] + os.urandom(16))  # another AES key
    assert not yubiotp.matches(otp, "vvcccccccccc", secret)  # another public ID
    assert not yubiotp.matches(otp[:-1] + ("c" if otp[-1] != "c" else "b"), public_id, secret)
    assert not yubiotp.matches(otp, public_id, secret[:-1])  # not a Yubico OTP secret
    for garbage in ("", "123456", public_id + "x" * 32, otp[:31]):
        assert yubiotp.decrypt(garbage, secret[6:]) is None


def test_the_mode_check_takes_the_otp_the_key_types_as_text_or_bytes(programmed):
    key, secret, public_id = programmed
    spec, conn = Spec(Mode.YUBIOTP, slot=2), _AppletConnection(key)
    check = modes.driver_for(Mode.YUBIOTP).check
    material = Material(secret, {"public_id": public_id})
    assert check(conn, spec, material, 5) == 5  # the counter: unchanged
    assert check(AnswersInBytes(conn), spec, material, 5) == 5
    assert check(AnswersInBytes(conn, "\u00e9".encode()), spec, material, 5) is None
    assert check(conn, spec, Material(secret[:6] + os.urandom(16),
                                      {"public_id": public_id}), 5) is None
    assert check(conn, spec, Material(secret, {"public_id": "vvcccccccccc"}), 5) is None


def test_material_without_a_public_id_matches_a_slot_typing_none(tmp_path):
    """A public ID is optional in a Yubico OTP: without one the key types the ticket only."""
    key = VirtualKey.create(tmp_path / "k.key")
    try:
        secret = os.urandom(yubiotp.SECRET_SIZE)
        spec = Spec(Mode.YUBIOTP, slot=1)
        conn = _AppletConnection(key)
        conn.program(spec, Material(secret, {"public_id": ""}), Access())
        assert len(key.otp.touch(1).strip()) == 32
        assert modes.driver_for(Mode.YUBIOTP).check(conn, spec, Material(secret), 3) == 3
    finally:
        key.close()


@pytest.mark.parametrize(("public_id", "starts"), [("serial", "vvcc"), ("random", "vv")])
def test_the_mode_makes_a_private_id_an_aes_key_and_a_public_id(public_id, starts):
    spec = Spec(Mode.YUBIOTP, public_id=public_id)
    first, second = (modes.driver_for(Mode.YUBIOTP).material(spec, 0x01020304)
                     for _ in range(2))
    assert len(first.secret) == yubiotp.SECRET_SIZE and first.secret != second.secret
    assert first.params["public_id"].startswith(starts) and len(first.params["public_id"]) == 12
    if public_id == "serial":
        assert first.params == second.params == {"public_id": "vvcccbcdcecf"}
    else:
        assert first.params != second.params


def test_modhex_refusal_says_so():
    with pytest.raises(ValueError, match=r"^not modhex$"):
        yubiotp.modhex_decode("cbc")
    assert yubiotp.modhex_decode("") == b""
    assert yubiotp.modhex_decode("VVCB") == b"\xff\x01"


@pytest.mark.parametrize("serial", [-1, 2**32, 2**40])
def test_a_serial_public_id_needs_a_serial_of_4_bytes(serial):
    with pytest.raises(ValueError, match=r"^a serial public ID needs a serial of 4 bytes$"):
        yubiotp.serial_public_id(serial)


def test_crc16_is_yubikits():
    for data in (b"", b"123456789", os.urandom(14), os.urandom(16)):
        assert yubiotp.crc16(data) == calculate_crc(data)
    assert yubiotp.crc16(b"123456789") == 0x6F91
    assert yubiotp.CRC_RESIDUE == CRC_OK_RESIDUAL == 0xF0B8


def _otp(public_id: str, private_id: bytes, aes_key: bytes, use: int, timestamp: int,
         session: int) -> str:
    """A Yubico OTP as a key types it, made here from its fields."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    from cryptography.hazmat.primitives.ciphers import modes as cipher_modes

    ticket = (private_id + use.to_bytes(2, "little") + timestamp.to_bytes(3, "little")
              + bytes([session]) + os.urandom(2))
    ticket += (~calculate_crc(ticket) & 0xFFFF).to_bytes(2, "little")
    enc = Cipher(algorithms.AES(aes_key), cipher_modes.ECB()).encryptor()  # noqa: S305
    return public_id + modhex_encode(enc.update(ticket) + enc.finalize())


def test_a_ticket_is_read_field_by_field():
    private_id, aes_key = bytes.fromhex("0a0b0c0d0e0f"), os.urandom(16)
    otp = _otp("vvcccbcdcecf", private_id, aes_key, 0x0102, 0x030405, 0x06)
    assert yubiotp.decrypt(otp, aes_key) == yubiotp.Ticket(
        public_id="vvcccbcdcecf", private_id=private_id, use_counter=0x0102,
        session_counter=0x06, timestamp=0x030405)
    # as typed: upper case (caps lock), a newline after it
    assert yubiotp.decrypt(" " + otp.upper() + "\n", aes_key).public_id == "vvcccbcdcecf"
    # a ticket without a public ID: 32 characters
    assert yubiotp.decrypt(otp[-32:], aes_key).public_id == ""
    assert yubiotp.decrypt(otp[-31:], aes_key) is None
    # a public ID that is not modhex, or not whole bytes
    assert yubiotp.decrypt("vvcccbcdcexf" + otp[-32:], aes_key) is None
    assert yubiotp.decrypt("vvc" + otp[-32:], aes_key) is None
    assert yubiotp.decrypt(otp[:-32] + otp[-32:-1] + "x", aes_key) is None


def test_matches_takes_the_private_id_then_the_aes_key():
    private_id, aes_key = os.urandom(6), os.urandom(16)
    secret = private_id + aes_key
    assert yubiotp.SECRET_SIZE == 22
    otp = _otp("vvcccccccccb", private_id, aes_key, 1, 2, 3)
    assert yubiotp.matches(otp, "vvcccccccccb", secret)
    assert yubiotp.matches(otp.upper(), "VVCCCCCCCCCB", secret)  # the public ID as ykman shows it
    assert not yubiotp.matches(otp, "vvcccccccccc", secret)
    assert not yubiotp.matches(otp, "vvcccccccccb", aes_key + private_id)
    assert not yubiotp.matches(otp, "vvcccccccccb", secret + b"\x00")
    assert not yubiotp.matches(otp, "vvcccccccccb", secret[:-1])
    assert not yubiotp.matches("garbage", "vvcccccccccb", secret)
    other_id = bytes([private_id[0] ^ 0x80]) + private_id[1:]
    assert not yubiotp.matches(_otp("vvcccccccccb", other_id, aes_key, 1, 2, 3),
                               "vvcccccccccb", secret)
