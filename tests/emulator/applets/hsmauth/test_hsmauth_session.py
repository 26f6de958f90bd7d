"""YubiHSM Auth through yubikit's ``HsmAuthSession``, in process: credentials, the
management key and its tries, credential passwords, session keys checked against a
YubiHSM 2's side of the handshake computed here from the protocol, and firmware gating."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from yubikit.core import TRANSPORT, ApplicationNotAvailableError, NotSupportedError
from yubikit.core.smartcard import ApduError
from yubikit.core.smartcard.scp import StaticKeys
from yubikit.hsmauth import (
    ALGORITHM,
    DEFAULT_MANAGEMENT_KEY,
    HsmAuthSession,
    InvalidPinError,
    _password_to_key,
)
from yubikit.management import CAPABILITY, DeviceConfig, ManagementSession

from hwtoken.emulator.iso7816 import CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.presence import DenyAlways
from hwtoken.emulator.scp import aes_cmac
from hwtoken.emulator.transports.card_direct import DirectCardConnection

OTHER_KEY = bytes.fromhex("11111111111111111111111111111112")
PASSWORD = "12345679"
# Yubico's own vector (yubikey-manager tests/device/test_hsmauth.py)
CONTEXT = b"g\xfc\xf1\xfe\xb5\xf1\xd8\x83\xedv=\xbfI0\x90\xbb"
VECTOR = (b"\xb0o\x1a\xc9\x87\x91.\xbe\xdc\x1b\xf0\xe0*k]\x85",
          b"\xea\xd6\xc3\xa5\x96\xea\x86u\xbf1\xd3I\xab\xb5,t",
          b"\xc2\xc6\x1e\x96\xab,X\xe9\x83z\xd0\xe7\xd0n\xe9\x0c")


def make_key(tmp_path, version=(5, 7, 4), **kw) -> VirtualKey:
    return VirtualKey.create(tmp_path / f"k{os.urandom(4).hex()}.key", version=version, **kw)


@pytest.fixture
def key(tmp_path):
    k = make_key(tmp_path)
    yield k
    k.close()


def session(key) -> HsmAuthSession:
    card = CardOS(key, strict=True, transport="usb")
    return HsmAuthSession(DirectCardConnection(card, TRANSPORT.USB))


def put_derived(s: HsmAuthSession, label="cred", derivation="pwd", touch=False):
    return s.put_credential_derived(DEFAULT_MANAGEMENT_KEY, label, derivation, PASSWORD,
                                    touch)


def point(key) -> bytes:
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def test_select_version_and_the_yubico_session_key_vector(key):
    s = session(key)
    assert tuple(s.version) == (5, 7, 4) and s.get_management_key_retries() == 8
    put_derived(s, derivation="pwd")
    keys = s.calculate_session_keys_symmetric("cred", CONTEXT, PASSWORD)
    assert (keys.key_senc, keys.key_smac, keys.key_srmac) == VECTOR


def test_symmetric_keys_are_the_scp03_derivation_and_the_card_cryptogram_is_checked(key):
    s = session(key)
    enc, mac = os.urandom(16), os.urandom(16)
    s.put_credential_symmetric(DEFAULT_MANAGEMENT_KEY, "explicit", enc, mac, PASSWORD)
    context = os.urandom(16)
    expected = StaticKeys(enc, mac).derive(context)  # yubikit's own SCP03 KDF
    keys = s.calculate_session_keys_symmetric("explicit", context, PASSWORD)
    assert keys == expected[:3]
    from yubikit.core.smartcard.scp import _derive

    cryptogram = _derive(expected.key_smac, 0x00, context, 0x40)  # what the HSM sends
    assert s.calculate_session_keys_symmetric("explicit", context, PASSWORD,
                                              cryptogram) == expected[:3]
    with pytest.raises(ApduError) as e:
        s.calculate_session_keys_symmetric("explicit", context, PASSWORD, bytes(8))
    assert e.value.sw == 0x6984
    with pytest.raises(ApduError) as e:  # a context that is not 8 + 8 bytes
        s.calculate_session_keys_symmetric("explicit", context[:15], PASSWORD)
    assert e.value.sw == 0x6A80


def test_list_shows_algorithm_touch_and_tries(key):
    s = session(key)
    put_derived(s, "a")
    put_derived(s, "touchy", touch=True)
    creds = {c.label: c for c in s.list_credentials()}
    assert creds["a"].algorithm == ALGORITHM.AES128_YUBICO_AUTHENTICATION
    assert not creds["a"].touch_required and creds["touchy"].touch_required
    with pytest.raises(InvalidPinError) as e:
        s.calculate_session_keys_symmetric("a", CONTEXT, "wrong")
    assert e.value.attempts_remaining == 7
    assert {c.label: c.counter for c in s.list_credentials()} == {"a": 7, "touchy": 8}
    s.calculate_session_keys_symmetric("a", CONTEXT, PASSWORD)  # the right one restores
    assert {c.label: c.counter for c in s.list_credentials()}["a"] == 8


def test_eight_wrong_passwords_delete_the_credential(key):
    s = session(key)
    put_derived(s)
    for left in range(7, -1, -1):
        with pytest.raises(InvalidPinError) as e:
            s.calculate_session_keys_symmetric("cred", CONTEXT, "wrong")
        assert e.value.attempts_remaining == left
    assert s.list_credentials() == []
    with pytest.raises(ApduError) as e:
        s.calculate_session_keys_symmetric("cred", CONTEXT, PASSWORD)
    assert e.value.sw == 0x6A82


def test_management_key_tries_block_until_reset(key):
    s = session(key)
    for left in range(7, -1, -1):
        with pytest.raises(InvalidPinError) as e:
            put_derived_with(s, OTHER_KEY)
        assert e.value.attempts_remaining == left
    assert s.get_management_key_retries() == 0
    with pytest.raises(InvalidPinError) as e:  # blocked: even the right key fails
        put_derived(s)
    assert e.value.attempts_remaining == 0
    s.reset()
    assert s.get_management_key_retries() == 8
    put_derived(s)
    assert [c.label for c in s.list_credentials()] == ["cred"]


def put_derived_with(s, management_key):
    return s.put_credential_derived(management_key, "cred", "pwd", PASSWORD)


def test_right_management_key_restores_tries_and_change_management_key(key):
    s = session(key)
    with pytest.raises(InvalidPinError):
        put_derived_with(s, OTHER_KEY)
    assert s.get_management_key_retries() == 7
    s.put_management_key(DEFAULT_MANAGEMENT_KEY, OTHER_KEY)
    assert s.get_management_key_retries() == 8
    with pytest.raises(InvalidPinError):
        put_derived(s)
    put_derived_with(s, OTHER_KEY)
    s.delete_credential(OTHER_KEY, "cred")
    assert s.list_credentials() == []


def test_label_conflict_space_and_missing_credentials(key):
    s = session(key)
    put_derived(s)
    with pytest.raises(ApduError) as e:
        put_derived(s)
    assert e.value.sw == 0x6983  # the YubiKey's "label exists"
    for i in range(31):
        s.put_credential_symmetric(DEFAULT_MANAGEMENT_KEY, f"c{i}", bytes(16), bytes(16),
                                   PASSWORD)
    with pytest.raises(ApduError) as e:
        put_derived(s, "one too many")
    assert e.value.sw == 0x6A84
    with pytest.raises(ApduError) as e:
        s.delete_credential(DEFAULT_MANAGEMENT_KEY, "nope")
    assert e.value.sw == 0x6A82
    label = "x" * 64  # the longest label
    s.delete_credential(DEFAULT_MANAGEMENT_KEY, "c0")
    put_derived(s, label)
    assert label in [c.label for c in s.list_credentials()]


def test_touch_is_asked_and_a_refusal_keeps_the_tries(tmp_path):
    k = make_key(tmp_path, presence=DenyAlways())
    try:
        s = session(k)
        put_derived(s, touch=True)
        with pytest.raises(ApduError) as e:
            s.calculate_session_keys_symmetric("cred", CONTEXT, PASSWORD)
        assert e.value.sw == 0x6982
        assert s.list_credentials()[0].counter == 8
    finally:
        k.close()


def hsm_side(pk_oce: ec.EllipticCurvePublicKey, epk_oce: bytes):
    """A YubiHSM 2 answering CREATE SESSION for an asymmetric authentication key ``pk_oce``:
    its device key, its ephemeral key, the receipt and the session keys it derives."""
    sk_hsm = ec.generate_private_key(ec.SECP256R1())
    esk_hsm = ec.generate_private_key(ec.SECP256R1())
    epk = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), epk_oce)
    shsee = esk_hsm.exchange(ec.ECDH(), epk)
    shsss = sk_hsm.exchange(ec.ECDH(), pk_oce)
    keys = X963KDF(hashes.SHA256(), 64, b"\x3c\x88\x10").derive(shsee + shsss)
    receipt = aes_cmac(keys[:16], point(esk_hsm), epk_oce)
    return sk_hsm.public_key(), point(esk_hsm), receipt, keys[16:]


def test_asymmetric_credential_authenticates_to_a_yubihsm(key):
    s = session(key)
    private = ec.generate_private_key(ec.SECP256R1())
    cred = s.put_credential_asymmetric(DEFAULT_MANAGEMENT_KEY, "asym", private, PASSWORD)
    assert cred.algorithm == ALGORITHM.EC_P256_YUBICO_AUTHENTICATION
    assert point(s.get_public_key("asym")) == point(private)
    epk_oce = s.get_challenge("asym", PASSWORD)
    assert len(epk_oce) == 65 and epk_oce != s.get_challenge("asym", PASSWORD)
    epk_oce = s.get_challenge("asym", PASSWORD)  # the last challenge counts
    pk_hsm, epk_hsm, receipt, hsm_keys = hsm_side(private.public_key(), epk_oce)
    keys = s.calculate_session_keys_asymmetric("asym", epk_oce + epk_hsm, pk_hsm, PASSWORD,
                                               receipt)
    assert b"".join(keys) == hsm_keys
    with pytest.raises(ApduError) as e:  # the ephemeral key was used up
        s.calculate_session_keys_asymmetric("asym", epk_oce + epk_hsm, pk_hsm, PASSWORD,
                                            receipt)
    assert e.value.sw == 0x6985


def test_asymmetric_receipt_context_and_challenge_password_are_checked(key):
    s = session(key)
    s.generate_credential_asymmetric(DEFAULT_MANAGEMENT_KEY, "gen", PASSWORD)
    public = s.get_public_key("gen")
    epk_oce = s.get_challenge("gen", PASSWORD)
    pk_hsm, epk_hsm, receipt, _ = hsm_side(public, epk_oce)
    with pytest.raises(ApduError) as e:
        s.calculate_session_keys_asymmetric("gen", epk_oce + epk_hsm, pk_hsm, PASSWORD,
                                            bytes(16))
    assert e.value.sw == 0x6984
    epk_oce = s.get_challenge("gen", PASSWORD)
    other = point(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ApduError) as e:  # a context that is not this challenge
        s.calculate_session_keys_asymmetric("gen", other + epk_hsm, pk_hsm, PASSWORD, receipt)
    assert e.value.sw == 0x6985
    with pytest.raises(ApduError) as e:
        s.get_challenge("gen")  # 5.7.1+: the password first
    assert e.value.sw == 0x6A80
    with pytest.raises(ApduError) as e:
        s.get_challenge("gen", "wrong")
    assert e.value.sw == 0x63C7
    with pytest.raises(ApduError) as e:  # a symmetric credential has no public key
        put_derived(s)
        s.get_public_key("cred")
    assert e.value.sw == 0x6A80
    assert len(s.get_challenge("cred")) == 8


def test_invalid_private_keys_and_reset_p1p2(key):
    s = session(key)
    from yubikit.core.smartcard import SmartCardProtocol

    from hwtoken.emulator.applets.management import tlv

    proto: SmartCardProtocol = s.protocol
    data = (tlv(0x7B, DEFAULT_MANAGEMENT_KEY) + tlv(0x71, b"bad") + tlv(0x74, b"\x27")
            + tlv(0x7D, b"\xff" * 32) + tlv(0x73, bytes(16)) + tlv(0x7A, b"\0"))
    with pytest.raises(ApduError) as e:  # a scalar beyond the curve order
        proto.send_apdu(0, 0x01, 0, 0, data)
    assert e.value.sw == 0x6A80
    with pytest.raises(ApduError) as e:
        proto.send_apdu(0, 0x06, 0xDE, 0xAE)
    assert e.value.sw == 0x6B00
    assert s.get_management_key_retries() == 8  # malformed data costs no try


def test_firmware_gates_asymmetric_challenge_and_password_change(tmp_path):
    old = make_key(tmp_path, version=(5, 4, 3))
    try:
        s = session(old)
        with pytest.raises(NotSupportedError):  # yubikit itself knows 5.6 is needed
            s.generate_credential_asymmetric(DEFAULT_MANAGEMENT_KEY, "g", PASSWORD)
        with pytest.raises(ApduError) as e:  # and the card refuses it too
            s.protocol.send_apdu(0, 0x04, 0, 0, b"\x71\x01a")
        assert e.value.sw == 0x6D00
    finally:
        old.close()
    with pytest.raises(ApplicationNotAvailableError):  # before 5.4.3 there is none
        k = make_key(tmp_path, version=(5, 4, 2))
        try:
            session(k)
        finally:
            k.close()
    new = make_key(tmp_path, version=(5, 8, 0))
    try:
        s = session(new)
        put_derived(s)
        with pytest.raises(InvalidPinError):
            s.change_credential_password("cred", "wrong", "new-password")
        s.change_credential_password("cred", PASSWORD, "new-password")
        s.calculate_session_keys_symmetric("cred", CONTEXT, "new-password")
        with pytest.raises(InvalidPinError):
            s.change_credential_password_admin("cred", OTHER_KEY, PASSWORD)
        s.change_credential_password_admin("cred", DEFAULT_MANAGEMENT_KEY, PASSWORD)
        s.calculate_session_keys_symmetric("cred", CONTEXT, PASSWORD)
    finally:
        new.close()
    s = session(make_key(tmp_path))  # 5.7.4: no such instruction yet
    with pytest.raises(ApduError) as e:
        s.protocol.send_apdu(0, 0x0B, 0, 0, b"")
    assert e.value.sw == 0x6D00


def test_disabled_hsmauth_is_not_selectable(key):
    conn = DirectCardConnection(CardOS(key, transport="usb"), TRANSPORT.USB)
    ManagementSession(conn).write_device_config(DeviceConfig(
        {TRANSPORT.USB: CAPABILITY.OATH | CAPABILITY.FIDO2}))
    with pytest.raises(ApplicationNotAvailableError):
        session(key)


def test_state_survives_a_reload(tmp_path):
    k = make_key(tmp_path)
    path = k.path
    s = session(k)
    put_derived(s)
    s.put_management_key(DEFAULT_MANAGEMENT_KEY, OTHER_KEY)
    with pytest.raises(InvalidPinError):
        s.calculate_session_keys_symmetric("cred", CONTEXT, "wrong")
    k.close()
    with VirtualKey.load(path) as again:
        s = session(again)
        assert [(c.label, c.counter) for c in s.list_credentials()] == [("cred", 7)]
        with pytest.raises(InvalidPinError):
            put_derived(s, "x")  # the old default management key no longer works
        assert s.calculate_session_keys_symmetric("cred", CONTEXT, PASSWORD) == \
            StaticKeys(*_password_to_key("pwd")).derive(CONTEXT)[:3]


# -- the session key functions, called directly: Yubico's vector and each refusal -------------
def _sw(call, *args) -> int:
    from hwtoken.emulator.iso7816 import ApduError as CardError

    with pytest.raises(CardError) as e:
        call(*args)
    return e.value.sw


def test_symmetric_session_keys_directly():
    from yubikit.core.smartcard.scp import _derive

    from hwtoken.emulator.applets.hsmauth import session_keys

    enc, mac = _password_to_key("pwd")  # the vector's credential
    assert session_keys.symmetric(enc, mac, CONTEXT, None) == b"".join(VECTOR)
    cryptogram = _derive(VECTOR[1], 0x00, CONTEXT, 0x40)
    assert session_keys.symmetric(enc, mac, CONTEXT, cryptogram) == b"".join(VECTOR)
    assert _sw(session_keys.symmetric, enc, mac, CONTEXT, cryptogram[:7]) == 0x6A80
    assert _sw(session_keys.symmetric, enc, mac, CONTEXT, cryptogram + b"\0") == 0x6A80
    assert _sw(session_keys.symmetric, enc, mac, CONTEXT,
               cryptogram[:7] + bytes([cryptogram[7] ^ 1])) == 0x6984
    for context in (CONTEXT[:15], CONTEXT + b"\0"):
        assert _sw(session_keys.symmetric, enc, mac, context, None) == 0x6A80


def test_asymmetric_session_keys_directly():
    from hwtoken.emulator.applets.hsmauth import session_keys

    sk_oce = ec.generate_private_key(ec.SECP256R1())
    scalar = sk_oce.private_numbers().private_value.to_bytes(32, "big")
    esk_oce = ec.generate_private_key(ec.SECP256R1())
    epk_oce = session_keys.public_point(esk_oce)
    assert epk_oce == point(esk_oce) and len(epk_oce) == 65
    pk_hsm, epk_hsm, receipt, hsm_keys = hsm_side(sk_oce.public_key(), epk_oce)
    context, pk = epk_oce + epk_hsm, point(pk_hsm)
    assert session_keys.asymmetric(scalar, esk_oce, context, pk, receipt) == hsm_keys
    assert len(hsm_keys) == 48
    asym = session_keys.asymmetric
    assert _sw(asym, scalar, esk_oce, context[:-1], pk, receipt) == 0x6A80
    assert _sw(asym, scalar, esk_oce, context + b"\0", pk, receipt) == 0x6A80
    assert _sw(asym, scalar, esk_oce, context, pk, receipt[:15]) == 0x6A80
    assert _sw(asym, scalar, esk_oce, context, pk[:64], receipt) == 0x6A80
    assert _sw(asym, scalar, esk_oce, context, b"\x04" + bytes(64), receipt) == 0x6A80
    assert _sw(asym, scalar, esk_oce, epk_oce + b"\x04" + bytes(64), pk, receipt) == 0x6A80
    assert _sw(asym, scalar, esk_oce, context, pk, bytes(16)) == 0x6984
    other = point(ec.generate_private_key(ec.SECP256R1()))
    assert _sw(asym, scalar, esk_oce, other + epk_hsm, pk, receipt) == 0x6985
    assert _sw(asym, b"\xff" * 32, esk_oce, context, pk, receipt) == 0x6A80
    assert session_keys.private_key(scalar).private_numbers() == sk_oce.private_numbers()
    assert _sw(session_keys.private_key, bytes(32)) == 0x6A80
    assert session_keys.load_point(pk).public_numbers() == pk_hsm.public_numbers()
    assert _sw(session_keys.load_point, pk + b"\0") == 0x6A80
