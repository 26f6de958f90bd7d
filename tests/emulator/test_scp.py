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


# -- exact values of the building blocks, against yubikit's host side and the AES primitive --------
def test_derive_defaults_to_128_bits_and_matches_a_fixed_vector():
    k, ctx = bytes(range(16)), bytes(range(16, 32))
    assert scp.derive(k, scp.DERIVE_S_ENC, ctx) == _derive(k, 0x04, ctx)
    assert scp.derive(k, scp.DERIVE_S_MAC, ctx) == _derive(k, 0x06, ctx)
    assert scp.derive(k, scp.DERIVE_CARD_CRYPTOGRAM, ctx, 64) == _derive(k, 0x00, ctx, 0x40)
    assert len(scp.derive(k, 0x04, ctx)) == 16 and len(scp.derive(k, 0x00, ctx, 64)) == 8
    for constant in (0x7F, 0x80, 0xFF):  # the constant is an unsigned byte
        assert scp.derive(k, constant, ctx) == _derive(k, constant, ctx)


def _aes_block(key: bytes, block: bytes) -> bytes:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 - one block
    return enc.update(block) + enc.finalize()


def test_kcv_is_three_bytes_of_aes_over_ones():
    k = bytes.fromhex("404142434445464748494a4b4c4d4e4f")
    assert scp.kcv(k) == _aes_block(k, b"\x01" * 16)[:3]
    assert len(scp.kcv(k)) == 3


def test_cbc_has_a_zero_iv_by_default_and_decrypts_what_it_encrypts():
    k, block = os.urandom(16), os.urandom(32)
    out = scp.cbc(k, block, decrypt=False)
    assert out[:16] == _aes_block(k, block[:16])
    assert out[16:] == _aes_block(k, bytes(a ^ b for a, b in zip(out[:16], block[16:],
                                                                strict=True)))
    assert scp.cbc(k, out, decrypt=True) == block
    iv = os.urandom(16)
    assert scp.cbc(k, scp.cbc(k, block, decrypt=False, iv=iv), decrypt=True, iv=iv) == block


def test_padding_method_2_exactly():
    assert scp.pad(b"") == b"\x80" + bytes(15)
    assert scp.pad(b"a" * 15) == b"a" * 15 + b"\x80"
    assert scp.pad(b"a" * 16) == b"a" * 16 + b"\x80" + bytes(15)
    assert scp.pad(b"abc") == b"abc\x80" + bytes(12)
    for n in (0, 1, 15, 16, 17, 31, 32):
        data = bytes([0x80]) * n  # 80s and zeros inside the data stay
        assert scp.unpad(scp.pad(data)) == data
        assert scp.unpad(scp.pad(bytes(n))) == bytes(n)
    assert scp.unpad(b"\x80") == b""
    assert scp.unpad(b"ab\x80\0") == b"ab"
    assert scp.unpad(bytes(16)) is None  # no 80 at all
    assert scp.unpad(b"ab" + bytes(14)) is None
    assert scp.unpad(b"ab\x81" + bytes(13)) is None
    assert scp.unpad(b"a\x80X" + bytes(13)) is None  # only zeros follow the 80
    assert scp.unpad(b"a" * 15 + b"\x80" + bytes(16)) is None  # a whole block of zeros
    assert scp.unpad(b"a" * 16 + b"\x80" + bytes(15)) == b"a" * 16


def test_protected_status_words():
    for sw in (0x9000, 0x6200, 0x6283, 0x6300, 0x63C2, 0x63FF):
        assert scp.is_protected_status(sw) is True
    for sw in (0x9001, 0x6100, 0x6400, 0x6A82, 0x6982, 0x6700, 0x0062, 0x0063, 0x6162):
        assert scp.is_protected_status(sw) is False


@pytest.mark.parametrize(("cla", "length", "extended", "expected"), [
    (0x80, 0x10, False, "84d8010210"),
    (0x90, 0x10, False, "84d8010210"),  # the chaining bit is never MACed
    (0x00, 0x10, False, "04d8010210"),
    (0x01, 0x10, False, "05d8010210"),  # the channel bits stay
    (0x11, 0x10, False, "05d8010210"),
    (0x84, 0x08, False, "84d8010208"),
    (0x80, 255, False, "84d80102ff"),
    (0x80, 256, False, "84d8010200" "0100"),  # too long for a short Lc
    (0x80, 0x10, True, "84d8010200" "0010"),  # extended as the command came
    (0x80, 0xFFFF, True, "84d8010200" "ffff"),  # the longest: unsigned
])
def test_mac_header(cla, length, extended, expected):
    apdu = Apdu(cla, 0xD8, 0x01, 0x02, b"x", 0, extended)
    assert scp.mac_header(apdu, length) == bytes.fromhex(expected)


def _card_mac(host: ScpState, head: bytes, body: bytes) -> bytes:
    """A C-MAC'd command from the host state (the header's Lc covers the MAC)."""
    return head + body + host.mac(head + body)


def test_unwrap_keeps_the_header_and_answers_6982_for_each_failed_check():
    host, card = _pair(0x33)
    body = host.encrypt(b"payload")
    raw = bytes([0x84, 0x01, 0x12, 0x34, 0, 0, len(body) + 8]) + body
    raw += host.mac(raw) + b"\x01\x00"  # extended, Le 256
    inner = card.unwrap(Apdu.parse(raw))
    assert inner == Apdu(0x80, 0x01, 0x12, 0x34, b"payload", 256, True)
    assert (card.counter, card._response_counter) == (2, 1)
    for level, raw in ((0x33, b"\x84\x01\x00\x00\x07" + bytes(7)),  # shorter than a MAC
                       (0x33, b"\x80\x01\x00\x00\x08" + bytes(8)),  # not marked as wrapped
                       (0x01, b"\x84\x01\x00\x00\x08" + bytes(8)),  # a wrong MAC
                       (0x00, b"\x84\x01\x00\x00\x08" + bytes(8)),  # wrapped, no session MAC
                       (0x00, b"\x88\x01\x00\x00\x08" + bytes(8))):
        _, card = _pair(level)
        with pytest.raises(CardError) as e:
            card.unwrap(Apdu.parse(raw))
        assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
        assert card.counter == 1
    host, card = _pair(0x01)  # a right MAC, but the class byte does not say so
    raw = bytearray(_card_mac(host, bytes([0x84, 0x01, 0, 0, 5 + 8]), b"plain"))
    raw[0] = 0x80
    with pytest.raises(CardError) as e:
        card.unwrap(Apdu.parse(bytes(raw)))
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    _, none = _pair(0x00)
    plain = Apdu.parse(b"\x00\x01\x00\x00\x01x")
    assert none.unwrap(plain) is plain


def test_decryption_checks_whole_blocks_and_padding():
    for body in (bytes(5), bytes(17)):  # not whole blocks
        host, card = _pair(0x33)
        with pytest.raises(CardError) as e:
            card.unwrap(Apdu.parse(_card_mac(host, bytes([0x84, 1, 0, 0, len(body) + 8]),
                                             body)))
        assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED
    host, card = _pair(0x33)
    bad = scp.cbc(card.keys.enc, b"no padding here!", decrypt=False,
                  iv=scp.cbc(card.keys.enc, bytes(15) + b"\x01", decrypt=False))
    with pytest.raises(CardError) as e:
        card.unwrap(Apdu.parse(_card_mac(host, bytes([0x84, 1, 0, 0, 24]), bad)))
    assert e.value.sw == SW.SECURITY_CONDITION_NOT_SATISFIED


def test_a_command_without_data_is_only_maced_and_counts():
    host, card = _pair(0x33)
    inner = card.unwrap(Apdu.parse(_card_mac(host, bytes([0x84, 1, 0, 0, 8]), b"")))
    assert inner.data == b"" and inner.cla == 0x80
    assert card.counter == 2
    out = card.wrap(b"", SW.OK)
    assert len(out) == 8 and host.unmac(out, SW.OK) == b""  # no data: nothing to encrypt
    host.encrypt(b"")  # yubikit counts every command, as the card does
    inner = card.unwrap(Apdu.parse(_host_wrap(host, b"next", False)))
    assert inner.data == b"next" and card.counter == 3


def test_wrap_by_level_and_status():
    host, card = _pair(0x13)  # C-MAC, C-DEC, R-MAC: answers in the clear with a MAC
    card.unwrap(Apdu.parse(_host_wrap(host, b"q", False)))
    out = card.wrap(b"answer", SW.OK)
    assert out[:-8] == b"answer" and host.unmac(out, SW.OK) == b"answer"
    host, card = _pair(0x33)
    card.unwrap(Apdu.parse(_host_wrap(host, b"q", False)))
    out = card.wrap(b"warn", 0x6283)  # a warning: encrypted and MACed with its status
    assert len(out) == 24
    assert host.decrypt(host.unmac(out, 0x6283)) == b"warn"
    assert card.wrap(b"data", 0x6A82) == b""
    host, card = _pair(0x11)
    card.unwrap(Apdu.parse(_card_mac(host, bytes([0x84, 1, 0, 0, 9]), b"q")))
    assert host.unmac(card.wrap(b"plain", 0x63C1), 0x63C1) == b"plain"
