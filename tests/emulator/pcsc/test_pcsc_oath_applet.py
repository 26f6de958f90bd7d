"""The YKOATH applet, driven in-process by yubikit's own OathSession (no pcscd)."""

from __future__ import annotations

import base64
import struct
import subprocess

import pyotp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from yubikit.core.smartcard import ApduError
from yubikit.oath import HASH_ALGORITHM, OATH_TYPE, CredentialData, OathSession

from hwtoken.emulator.iso7816 import SW, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.presence import DenyAlways
from hwtoken.emulator.transports.card_direct import DirectCardConnection

RFC_SECRET = b"12345678901234567890"
RFC4226 = ["755224", "287082", "359152", "969429", "338314",
           "254676", "287922", "162583", "399871", "520489"]
# RFC 6238 appendix B, 8 digits: (time, sha1, sha256, sha512)
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
]
RFC6238_SECRETS = {
    HASH_ALGORITHM.SHA1: b"12345678901234567890",
    HASH_ALGORITHM.SHA256: b"12345678901234567890123456789012",
    HASH_ALGORITHM.SHA512: b"1234567890123456789012345678901234567890123456789012345678901234",
}


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=1234567)
    yield k
    k.close()


def session(key) -> OathSession:
    return OathSession(DirectCardConnection(CardOS(key)))


def test_select_reports_version_and_stable_device_id(key):
    s = session(key)
    assert tuple(s.version) == key.version
    assert not s.locked
    assert session(key).device_id == s.device_id


def test_hotp_rfc4226_and_counter_persists(key, tmp_path):
    s = session(key)
    cred = s.put_credential(CredentialData("rfc", OATH_TYPE.HOTP, HASH_ALGORITHM.SHA1,
                                           RFC_SECRET))
    assert [s.calculate_code(cred).value for _ in range(5)] == RFC4226[:5]
    path = key.path
    key.close()
    again = VirtualKey.load(path)
    try:
        s2 = session(again)
        cred2 = next(c for c in s2.list_credentials() if c.name == "rfc")
        assert [s2.calculate_code(cred2).value for _ in range(5)] == RFC4226[5:]
    finally:
        again.close()


def test_hotp_initial_moving_factor(key):
    s = session(key)
    cred = s.put_credential(CredentialData("imf", OATH_TYPE.HOTP, HASH_ALGORITHM.SHA1,
                                           RFC_SECRET, counter=7))
    assert s.calculate_code(cred).value == RFC4226[7]


@pytest.mark.parametrize("algo", list(HASH_ALGORITHM))
def test_totp_rfc6238(key, algo):
    s = session(key)
    cred = s.put_credential(CredentialData(f"t-{algo.name}", OATH_TYPE.TOTP, algo,
                                           RFC6238_SECRETS[algo], digits=8))
    col = {HASH_ALGORITHM.SHA1: 1, HASH_ALGORITHM.SHA256: 2, HASH_ALGORITHM.SHA512: 3}[algo]
    for row in RFC6238:
        assert s.calculate_code(cred, row[0]).value == row[col]


def test_totp_matches_oathtool_and_pyotp(key):
    secret_b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    s = session(key)
    s.put_credential(CredentialData.parse_uri(
        f"otpauth://totp/Example:alice?secret={secret_b32}&issuer=Example&digits=7"))
    t = 1_700_000_000
    codes = s.calculate_all(t)
    (cred, code), = codes.items()
    assert (cred.issuer, cred.name) == ("Example", "alice")
    out = subprocess.run(["oathtool", "--totp", "-b", "-d", "7", "-N", f"@{t}", secret_b32],
                         capture_output=True, text=True, check=True).stdout.strip()
    assert code.value == out == pyotp.TOTP(secret_b32, digits=7).at(t)


def test_calculate_all_marks_hotp_touch_and_non_default_period(key):
    s = session(key)
    s.put_credential(CredentialData("h", OATH_TYPE.HOTP, HASH_ALGORITHM.SHA1, RFC_SECRET))
    s.put_credential(CredentialData("t", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, RFC_SECRET),
                     touch_required=True)
    s.put_credential(CredentialData("p60", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, RFC_SECRET,
                                    period=60))
    entries = {c.name: (c, v) for c, v in s.calculate_all(1111111109).items()}
    assert entries["h"][1] is None and entries["h"][0].oath_type == OATH_TYPE.HOTP
    assert entries["t"][1] is None and entries["t"][0].touch_required
    b32 = base64.b32encode(RFC_SECRET).decode()
    assert entries["p60"][1].value == pyotp.TOTP(b32, interval=60).at(1111111109)
    # calculate_all never advanced the HOTP counter
    assert s.calculate_code(entries["h"][0]).value == RFC4226[0]


def test_touch_credential_needs_presence(tmp_path):
    k = VirtualKey.create(tmp_path / "deny.key", presence=DenyAlways())
    try:
        s = session(k)
        cred = s.put_credential(CredentialData("t", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1,
                                               RFC_SECRET), touch_required=True)
        with pytest.raises(ApduError) as exc:
            s.calculate_code(cred)
        assert exc.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    finally:
        k.close()


def test_password_locks_until_validated(key):
    s = session(key)
    s.put_credential(CredentialData("a", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, RFC_SECRET))
    s.set_key(s.derive_key("hunter22"))
    s2 = session(key)
    assert s2.locked
    with pytest.raises(ApduError) as exc:
        s2.list_credentials()
    assert exc.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    with pytest.raises(ApduError) as exc:
        s2.validate(s2.derive_key("wrong"))
    assert exc.value.sw == SW.INCORRECT_PARAMETERS
    s2.validate(s2.derive_key("hunter22"))
    assert [c.name for c in s2.list_credentials()] == ["a"]
    s2.unset_key()
    assert not session(key).locked


def test_rename_delete_reset(key):
    s = session(key)
    cred = s.put_credential(CredentialData("old", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1,
                                           RFC_SECRET))
    new_id = s.rename_credential(cred.id, "new", "Iss")
    assert new_id == b"Iss:new"
    assert [(c.issuer, c.name) for c in s.list_credentials()] == [("Iss", "new")]
    with pytest.raises(ApduError):
        s.delete_credential(b"old")
    s.delete_credential(new_id)
    assert s.list_credentials() == []
    s.put_credential(CredentialData("x", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, RFC_SECRET))
    s.set_key(s.derive_key("pw"))
    old_id = s.device_id
    s.reset()
    s3 = session(key)
    assert not s3.locked and s3.list_credentials() == [] and s3.device_id != old_id


@pytest.mark.parametrize(("version", "capacity"), [((5, 7, 1), 64), ((5, 4, 3), 32)],
                         ids=["5.7-holds-64", "5.4-holds-32"])
def test_put_overwrites_and_enforces_capacity(tmp_path, version, capacity):
    with VirtualKey.create(tmp_path / "k.key", serial=1234567, version=version) as key:
        s = session(key)
        for i in range(capacity):
            s.put_credential(CredentialData(f"c{i}", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1,
                                            RFC_SECRET))
        s.put_credential(CredentialData("c0", OATH_TYPE.HOTP, HASH_ALGORITHM.SHA1,
                                        RFC_SECRET))
        with pytest.raises(ApduError) as exc:
            s.put_credential(CredentialData("one-more", OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1,
                                            RFC_SECRET))
        assert exc.value.sw == SW.NO_SPACE
        creds = s.list_credentials()
        assert len(creds) == capacity
        assert next(c for c in creds if c.name == "c0").oath_type == OATH_TYPE.HOTP


def test_long_list_uses_send_remaining(key):
    s = session(key)
    for i in range(20):
        s.put_credential(CredentialData(f"account-with-a-long-name-{i:02d}", OATH_TYPE.TOTP,
                                        HASH_ALGORITHM.SHA1, RFC_SECRET))
    assert len(s.list_credentials()) == 20  # > 256 bytes: 61XX + INS A5
    assert len(s.calculate_all(59)) == 20


def test_state_file_never_holds_the_password(key):
    s = session(key)
    s.set_key(s.derive_key("correct horse"))
    assert b"correct horse" not in key.path.read_bytes()


@given(st.lists(st.tuples(st.sampled_from([0x01, 0x02, 0x03, 0x04, 0x05, 0xA1, 0xA2, 0xA3,
                                           0xA4, 0xA5, 0x00, 0xFF]),
                          st.integers(0, 255), st.integers(0, 255), st.binary(max_size=80)),
                max_size=8))
@settings(max_examples=150)
def test_oath_applet_fuzz(tmp_path_factory, cmds):
    k = VirtualKey.create(tmp_path_factory.mktemp("fz") / "f.key")
    try:
        card = CardOS(k, strict=True)
        card.transmit(bytes.fromhex("00a4040007a0000005272101"))
        for ins, p1, p2, data in cmds:
            body = bytes([len(data)]) + data if data else b""
            raw = struct.pack(">BBBB", 0, ins, p1, p2) + body
            resp = card.transmit(raw)
            assert len(resp) >= 2
    finally:
        k.close()


def test_usb_transport_uses_extended_apdus(key):
    """Over USB yubikit switches to extended APDUs after SELECT; the card follows."""
    from yubikit.core import TRANSPORT

    conn = DirectCardConnection(CardOS(key), transport=TRANSPORT.USB)
    sent = []
    inner = conn.send_and_receive

    def spy(apdu):
        sent.append(apdu)
        return inner(apdu)

    conn.send_and_receive = spy
    s = OathSession(conn)
    long_secret = bytes(range(60))  # > 255-byte commands are not needed: check encoding
    for i in range(12):
        s.put_credential(CredentialData(f"a-rather-long-account-name-{i:02d}", OATH_TYPE.TOTP,
                                        HASH_ALGORITHM.SHA256, long_secret))
    assert len(s.list_credentials()) == 12
    assert any(len(a) > 7 and a[4] == 0 for a in sent[1:])  # extended Lc seen


def test_validate_refuses_a_short_host_challenge(key):
    """Yubico's applet answers 6A80 to VALIDATE with a host challenge under 8 bytes
    (yubikit always sends 8): the key would otherwise prove itself over almost nothing."""
    import hashlib
    import hmac

    from yubikit.core import Tlv

    s = session(key)
    access = s.derive_key("hunter22")
    s.set_key(access)
    s2 = session(key)
    response = hmac.new(access, s2._challenge, hashlib.sha1).digest()
    for short in (b"", b"\1" * 4, b"\1" * 7):
        with pytest.raises(ApduError) as exc:
            s2.protocol.send_apdu(0, 0xA3, 0, 0, Tlv(0x75, response) + Tlv(0x74, short))
        assert exc.value.sw == SW.INCORRECT_PARAMETERS
    s2.validate(access)  # eight bytes, as yubikit sends: unlocked
    assert not s2.locked or s2.list_credentials() == []
