"""Secure messaging at the card-OS level: every applet reached through SCP03 and SCP11b
sessions by yubikit's own sessions (short and extended APDUs, command and response
chaining), sessions ending on SELECT and on a failed check, and hypothesis on the
unwrapping of untrusted bytes against yubikit's host side of the protocol."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yubikit.core import TRANSPORT
from yubikit.core.smartcard import AID, ApduError, SmartCardProtocol
from yubikit.core.smartcard.scp import (
    KeyRef,
    Scp03KeyParams,
    Scp11KeyParams,
    ScpState,
    SessionKeys,
    _derive,
)
from yubikit.oath import HASH_ALGORITHM, OATH_TYPE, CredentialData, OathSession
from yubikit.piv import KEY_TYPE, SLOT, PivSession
from yubikit.securitydomain import SecurityDomainSession

from hwtoken.emulator import scp
from hwtoken.emulator.iso7816 import SW, Apdu, CardOS
from hwtoken.emulator.iso7816 import ApduError as CardError
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports.card_direct import DirectCardConnection

FAST = settings(max_examples=150,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key")
    yield k
    k.close()


def connect(key, transport="usb") -> DirectCardConnection:
    return DirectCardConnection(CardOS(key, strict=True, transport=transport),
                                TRANSPORT.USB if transport == "usb" else TRANSPORT.NFC)


def scp11b(conn) -> Scp11KeyParams:
    chain = SecurityDomainSession(conn).get_certificate_bundle(KeyRef(0x13, 1))
    return Scp11KeyParams(KeyRef(0x13, 1), chain[-1].public_key())


def test_derive_is_the_scp03_kdf_yubikit_uses():
    k, ctx = os.urandom(16), os.urandom(16)
    for constant, bits in ((0x04, 0x80), (0x06, 0x80), (0x00, 0x40), (0x01, 0x40)):
        assert scp.derive(k, constant, ctx, bits) == _derive(k, constant, ctx, bits)


@pytest.mark.parametrize("transport", ["usb", "nfc"])
@pytest.mark.parametrize("params", ["scp03", "scp11b"])
def test_oath_and_piv_through_a_session(key, transport, params):
    conn = connect(key, transport)
    p = Scp03KeyParams() if params == "scp03" else scp11b(conn)
    oath = OathSession(conn, p)
    cred = oath.put_credential(CredentialData("acme:alice", OATH_TYPE.TOTP,
                                              HASH_ALGORITHM.SHA1, b"1234567890" * 2))
    assert [c.id for c in oath.list_credentials()] == [cred.id]
    assert len(oath.calculate_code(cred).value) == 6
    piv = PivSession(conn, p)
    piv.authenticate(bytes.fromhex("010203040506070801020304050607080102030405060708"))
    public = piv.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.RSA2048)  # a long answer
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    signer = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scp")])
    names = x509.SubjectAlternativeName([x509.DNSName(f"host{i}.example.com")
                                         for i in range(40)])  # a command of > 1 kB
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(public).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).add_extension(names, False)
            .sign(signer, hashes.SHA256()))
    piv.put_certificate(SLOT.AUTHENTICATION, cert)
    assert piv.get_certificate(SLOT.AUTHENTICATION) == cert


@pytest.mark.parametrize("force_short", [False, True])
@pytest.mark.parametrize("size", [0, 10, 247, 248, 255, 256, 1000, 2048])
def test_echo_through_scp11b_in_short_and_extended_apdus(key, force_short, size):
    conn = connect(key)
    params = scp11b(conn)
    proto = SmartCardProtocol(conn)
    from yubikit.core import Version

    proto.configure(Version(5, 7, 4), force_short)
    proto.select(AID.MANAGEMENT)
    proto.init_scp(params)
    payload = os.urandom(size)
    assert proto.send_apdu(0, 1, 0, 0, payload) == payload


def _session(key, conn=None):
    conn = conn or connect(key)
    proto = SmartCardProtocol(conn)
    proto.select(AID.MANAGEMENT)
    proto.init_scp(Scp03KeyParams())
    return conn, proto


def test_a_tampered_mac_ends_the_session(key):
    conn, proto = _session(key)
    state = proto._processor.state
    data = state.encrypt(b"hello")
    apdu = bytes([0x04, 0x01, 0, 0, len(data) + 8]) + data + bytes(8)
    assert conn.send_and_receive(apdu)[1] == SW.SECURITY_CONDITION_NOT_SATISFIED
    with pytest.raises(ApduError) as e:  # no session any more: wrapped commands are refused
        proto.send_apdu(0, 1, 0, 0, b"again")
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED


def test_a_plain_command_in_a_session_is_refused_and_ends_it(key):
    conn, proto = _session(key)
    assert conn.send_and_receive(bytes.fromhex("0001000003616263")) == (
        b"", SW.SECURITY_CONDITION_NOT_SATISFIED)
    assert conn.send_and_receive(bytes.fromhex("0001000003616263")) == (b"abc", SW.OK)


def test_select_ends_the_session(key):
    conn, proto = _session(key)
    assert proto.send_apdu(0, 1, 0, 0, b"in session") == b"in session"
    proto.select(AID.MANAGEMENT)  # yubikit forgets its session on SELECT, as the card does
    assert proto.send_apdu(0, 1, 0, 0, b"plain") == b"plain"


def test_errors_travel_bare_and_warnings_with_a_mac(key):
    conn = connect(key)
    from yubikit.hsmauth import DEFAULT_MANAGEMENT_KEY, HsmAuthSession, InvalidPinError

    s = HsmAuthSession(conn, Scp03KeyParams())
    with pytest.raises(InvalidPinError) as e:  # 63C7: MACed, and yubikit checks it
        s.put_credential_derived(bytes(15) + b"\1", "c", "pwd", "pw")
    assert e.value.attempts_remaining == 7
    with pytest.raises(ApduError) as e2:  # 6A82: bare
        s.delete_credential(DEFAULT_MANAGEMENT_KEY, "none")
    assert e2.value.sw == 0x6A82 and e2.value.data == b""
    assert s.list_credentials() == []  # the session goes on


# -- the card's secure channel against yubikit's host side ---------------------------------------
def _pair(level: int):
    keys = SessionKeys(os.urandom(16), os.urandom(16), os.urandom(16))
    chain = os.urandom(16)
    host = ScpState(keys, chain)
    card = scp.SecureChannel("test", scp.SessionKeys(keys.key_senc, keys.key_smac,
                                                     keys.key_srmac), level, chain,
                             oce_authenticated=False)
    return host, card


def _host_wrap(host: ScpState, payload: bytes, extended: bool) -> bytes:
    """A command as yubikit's ScpProcessor builds it (class 84, INS 01)."""
    data = host.encrypt(payload)
    if extended or len(data) + 8 > 255:
        head = bytes([0x84, 0x01, 0, 0, 0]) + (len(data) + 8).to_bytes(2, "big")
    else:
        head = bytes([0x84, 0x01, 0, 0, len(data) + 8])
    mac = host.mac(head + data)
    return head + data + mac


@given(payload=st.binary(max_size=600), answer=st.binary(max_size=600),
       extended=st.booleans())
@FAST
def test_round_trip_against_yubikit(payload, answer, extended):
    host, card = _pair(0x33)
    for _ in range(2):  # the chaining value and counter move on alike
        inner = card.unwrap(Apdu.parse(_host_wrap(host, payload, extended)))
        assert inner.data == payload and inner.cla == 0x80
        wrapped = card.wrap(answer, SW.OK)
        plain = host.unmac(wrapped, SW.OK)
        assert (host.decrypt(plain) if plain else b"") == answer


@given(raw=st.binary(min_size=4, max_size=300))
@FAST
def test_untrusted_bytes_never_unwrap(raw):
    _, card = _pair(0x33)
    try:
        apdu = Apdu.parse(raw)
    except CardError:
        return
    with pytest.raises(CardError) as e:
        card.unwrap(apdu)
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED


@given(body=st.binary(max_size=64), flip=st.integers(0, 63))
@FAST
def test_any_changed_byte_is_caught(body, flip):
    host, card = _pair(0x33)
    raw = bytearray(_host_wrap(host, body, False))
    raw[4 + 1 + flip % (len(raw) - 5)] ^= 0x01  # a data byte or the MAC
    with pytest.raises(CardError):
        card.unwrap(Apdu.parse(bytes(raw)))


@given(raw=st.lists(st.binary(min_size=4, max_size=80), max_size=6))
@settings(max_examples=40,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_card_os_answers_junk_in_a_session_with_a_status_word(raw, tmp_path_factory):
    key = VirtualKey.create(tmp_path_factory.mktemp("k") / "k.key")
    try:
        conn, _ = _session(key)
        for cmd in raw:
            resp = conn.card.transmit(cmd)  # strict: an applet bug would raise here
            assert len(resp) >= 2
    finally:
        key.close()


def test_levels_without_mac_or_encryption():
    host, card = _pair(0x01)  # C-MAC only
    keys = card.keys
    head = bytes([0x84, 0x01, 0, 0, 5 + 8])
    mac = host.mac(head + b"plain")
    assert card.unwrap(Apdu.parse(head + b"plain" + mac)).data == b"plain"
    assert card.wrap(b"answer", SW.OK) == b"answer"  # no R-MAC at this level
    assert keys.enc
    none = scp.SecureChannel("t", keys, 0x00, bytes(16), oce_authenticated=False)
    assert none.unwrap(Apdu.parse(b"\x00\x01\x00\x00\x01x")).data == b"x"
    with pytest.raises(CardError):
        none.unwrap(Apdu.parse(head + b"plain" + mac))
    assert card.wrap(b"", 0x6A82) == b""
