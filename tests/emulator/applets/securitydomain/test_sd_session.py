"""The Security Domain through yubikit's ``SecurityDomainSession`` in process: its factory
state, SCP03 and SCP11a/b/c sessions, key management and who may do it, certificates,
allowlists, failed attempts, blocking and reset, and persistence."""

from __future__ import annotations

import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sd_support import _cert, connect, make_oce
from yubikit.core import Tlv
from yubikit.core.smartcard import ApduError
from yubikit.core.smartcard.scp import (
    KeyRef,
    Scp03KeyParams,
    Scp11KeyParams,
    ScpKid,
    StaticKeys,
)
from yubikit.securitydomain import SecurityDomainSession

from hwtoken.emulator.applets.securitydomain.records import BLOCK_AFTER, MAX_EC_KEYS
from hwtoken.emulator.key import VirtualKey

DEFAULT_SCP03 = KeyRef(0x01, 0xFF)
SCP11B = KeyRef(0x13, 0x01)


@pytest.fixture
def key(tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", serial=5550123)
    yield k
    k.close()


def sd(key) -> SecurityDomainSession:
    return SecurityDomainSession(connect(key))


def scp11b_params(session: SecurityDomainSession, ref=SCP11B) -> Scp11KeyParams:
    return Scp11KeyParams(ref, session.get_certificate_bundle(ref)[-1].public_key())


def test_factory_state_keys_recognition_and_certificates(key):
    s = sd(key)
    info = s.get_key_information()
    assert list(info) == [KeyRef(1, 0xFF), KeyRef(2, 0xFF), KeyRef(3, 0xFF), SCP11B]
    assert info[DEFAULT_SCP03] == {0x88: 16}
    tags = [t.tag for t in Tlv.parse_list(s.get_card_recognition_data())]
    assert tags == [0x06, 0x60, 0x63, 0x64, 0x64]
    chain = s.get_certificate_bundle(SCP11B)
    assert len(chain) == 2 and chain[-1].extensions.get_extension_for_class(
        x509.KeyUsage).value.key_agreement
    chain[-1].verify_directly_issued_by(chain[0])
    root = x509.load_der_x509_certificate(
        bytes(key.store.section("securitydomain")["authority"]["root_cert"]))
    chain[0].verify_directly_issued_by(root)
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    assert s.get_supported_ca_identifiers(klcc=True) == {SCP11B: ski}
    assert s.get_supported_ca_identifiers(kloc=True) == {}  # 6A88, taken as none
    assert s.get_certificate_bundle(KeyRef(0x13, 0x02)) == []


def common_name(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value


def test_card_certificates_name_the_key_and_the_serial(key):
    s = admin(key)
    assert common_name(s.get_certificate_bundle(SCP11B)[-1]) == \
        "hwtoken Virtual SCP11 Key 1301 5550123"
    root = x509.load_der_x509_certificate(
        bytes(key.store.section("securitydomain")["authority"]["root_cert"]))
    assert common_name(root) == "hwtoken Virtual SCP Root CA 5550123"
    s.generate_ec_key(KeyRef(0x11, 0x05))
    assert common_name(s.get_certificate_bundle(KeyRef(0x11, 0x05))[-1]) == \
        "hwtoken Virtual SCP11 Key 1105 5550123"


def test_ykman_finds_the_scp11b_key_by_the_card_ca(key):
    from cryptography.hazmat.primitives.serialization import Encoding
    from ykman._cli.util import find_scp11_params

    sd(key)  # made on first use
    root = bytes(key.store.section("securitydomain")["authority"]["root_cert"])
    pem = x509.load_der_x509_certificate(root).public_bytes(Encoding.PEM)
    params = find_scp11_params(connect(key), ScpKid.SCP11b, 0, pem)
    assert params.ref == SCP11B


def _verify_auth(session) -> None:
    ref = KeyRef(0x13, 0x7F)
    session.generate_ec_key(ref)
    session.delete_key(ref.kid, ref.kvn)


def test_scp03_default_keys_manage_and_wrong_keys_do_not(key):
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    _verify_auth(s)
    s = sd(key)
    with pytest.raises(ValueError):  # the card cryptogram tells yubikit the keys are wrong
        s.authenticate(Scp03KeyParams(keys=StaticKeys(*((b"\1" * 16,) * 3))))
    with pytest.raises(ApduError) as e:
        _verify_auth(s)
    assert e.value.sw == 0x6982


def test_scp11b_reaches_the_card_but_may_not_manage_it(key):
    s = sd(key)
    s.authenticate(scp11b_params(s))
    assert DEFAULT_SCP03 in s.get_key_information()  # GET DATA through the session
    with pytest.raises(ApduError) as e:
        _verify_auth(s)
    assert e.value.sw == 0x6982
    from cryptography.exceptions import InvalidSignature

    chain = sd(key).get_certificate_bundle(SCP11B)
    with pytest.raises(InvalidSignature):  # the receipt proves the card's key
        sd(key).authenticate(Scp11KeyParams(SCP11B, chain[0].public_key()))


def test_new_scp03_key_set_replaces_the_default_and_allows_three(key):
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    sets = [StaticKeys(os.urandom(16), os.urandom(16), os.urandom(16)) for _ in range(4)]
    s.put_key(KeyRef(1, 2), sets[0])  # yubikit checks the check values the card answers
    s = sd(key)
    s.authenticate(Scp03KeyParams(KeyRef(1, 2), sets[0]))
    assert DEFAULT_SCP03 not in s.get_key_information()
    s.put_key(KeyRef(1, 3), sets[1])
    s.put_key(KeyRef(1, 4), sets[2])
    with pytest.raises(ApduError) as e:
        s.put_key(KeyRef(1, 5), sets[3])
    assert e.value.sw == 0x6A84
    with pytest.raises(ApduError) as e:
        s.put_key(KeyRef(1, 3), sets[3])  # a KVN in use, not replacing it
    assert e.value.sw == 0x6A80
    s.put_key(KeyRef(1, 6), sets[3], replace_kvn=3)
    assert [r.kvn for r in s.get_key_information() if r.kid == 1] == [2, 4, 6]
    s = sd(key)
    with pytest.raises(ValueError):
        s.authenticate(Scp03KeyParams())
    s = sd(key)
    s.authenticate(Scp03KeyParams(KeyRef(1, 6), sets[3]))
    _verify_auth(s)


def load_scp11(session, kid: int, kvn: int, oce, *, with_ca_id: bool = True):
    """Generate the card's SCP11a/c key and trust the OCE's CA (as Yubico's tests do)."""
    sd_ref, oce_ref = KeyRef(kid, kvn), KeyRef(0x10, kvn)
    public = session.generate_ec_key(sd_ref)
    session.put_key(oce_ref, oce.ca.public_key())
    if with_ca_id:
        session.store_ca_issuer(oce_ref, oce.ski)
    return Scp11KeyParams(sd_ref, public, oce_ref, oce.sk, oce.chain)


def test_scp11a_authenticates_the_oce_and_may_manage(key):
    oce = make_oce()
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    params = load_scp11(s, ScpKid.SCP11a, 3, oce)
    assert s.get_supported_ca_identifiers(kloc=True) == {KeyRef(0x10, 3): oce.ski}
    assert len(s.get_certificate_bundle(KeyRef(0x11, 3))) == 2  # certified by the card
    s = sd(key)
    s.authenticate(params)
    _verify_auth(s)
    s.delete_key(kvn=3)
    assert [r for r in s.get_key_information() if r.kvn == 3] == []


def test_scp11c_authenticates_but_may_not_manage(key):
    oce = make_oce()
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    params = load_scp11(s, ScpKid.SCP11c, 3, oce)
    s = sd(key)
    s.authenticate(params)
    with pytest.raises(ApduError) as e:
        s.delete_key(kvn=3)
    assert e.value.sw == 0x6982


def test_oce_chains_that_do_not_verify_are_refused(key):
    from dataclasses import replace

    from cryptography.exceptions import InvalidSignature

    oce, stranger = make_oce(), make_oce(5000)
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    params = load_scp11(s, ScpKid.SCP11a, 3, oce)
    for chain in (stranger.chain,  # another CA's chain
                  [oce.ka, stranger.leaf],  # a leaf the intermediate did not sign
                  [oce.leaf]):  # the intermediate left out
        with pytest.raises(ApduError) as e:
            sd(key).authenticate(replace(params, certificates=chain))
        assert e.value.sw == 0x6A80
    with pytest.raises(InvalidSignature):  # the receipt: not the key the chain certifies
        sd(key).authenticate(replace(params, sk_oce_ecka=stranger.sk))
    sd(key).authenticate(params)  # and the right one still works


def test_allowlist_admits_only_listed_certificates(key):
    oce = make_oce()
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    params = load_scp11(s, ScpKid.SCP11a, 3, oce)
    s.store_allowlist(params.oce_ref, [c.serial_number for c in oce.chain])
    sd(key).authenticate(params)
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    s.store_allowlist(params.oce_ref, [1, 2, 3])
    with pytest.raises(ApduError) as e:
        sd(key).authenticate(params)
    assert e.value.sw == 0x6982
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    s.store_allowlist(params.oce_ref, [])
    sd(key).authenticate(params)


def test_imported_scp11b_key_and_stored_bundle(key):
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    private = ec.generate_private_key(ec.SECP256R1())
    s.put_key(KeyRef(0x13, 0x02), private)
    assert s.get_certificate_bundle(KeyRef(0x13, 0x02)) == []
    oce = make_oce()
    s.store_certificate_bundle(KeyRef(0x13, 0x02), oce.chain)
    assert s.get_certificate_bundle(KeyRef(0x13, 0x02)) == oce.chain
    sd(key).authenticate(Scp11KeyParams(KeyRef(0x13, 0x02), private.public_key()))
    with pytest.raises(ApduError) as e:  # a P-384 key: the card has only P-256
        s.put_key(KeyRef(0x13, 0x03), ec.generate_private_key(ec.SECP384R1()))
    assert e.value.sw == 0x6A80


def test_delete_refuses_the_last_key_unless_asked(key):
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    s.delete_key(kid=ScpKid.SCP11b)
    with pytest.raises(ApduError) as e:
        s.delete_key(kvn=0xFF)  # the default SCP03 set, now the last key
    assert e.value.sw == 0x6985
    with pytest.raises(ApduError) as e:
        s.delete_key(kvn=0x42)
    assert e.value.sw == 0x6A88
    old = sd(key).get_certificate_bundle(SCP11B)  # gone
    assert old == []
    authority = dict(key.store.section("securitydomain")["authority"])
    s.delete_key(kvn=0xFF, delete_last=True)  # nothing left: the factory state again
    info = sd(key).get_key_information()
    assert DEFAULT_SCP03 in info and SCP11B in info
    assert key.store.section("securitydomain")["authority"] == authority
    assert common_name(sd(key).get_certificate_bundle(SCP11B)[-1]) == \
        "hwtoken Virtual SCP11 Key 1301 5550123"


def test_yubikit_reset_blocks_every_key_and_restores_the_factory_state(key):
    oce = make_oce()
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    keys = StaticKeys(os.urandom(16), os.urandom(16), os.urandom(16))
    s.put_key(KeyRef(1, 2), keys)
    s = sd(key)
    s.authenticate(Scp03KeyParams(KeyRef(1, 2), keys))
    load_scp11(s, ScpKid.SCP11a, 3, oce)
    old_scp11b = s.get_certificate_bundle(SCP11B)[-1].public_key()
    authority = key.store.section("securitydomain")["authority"]["root_cert"]
    s = sd(key)
    s.reset()
    info = s.get_key_information()
    assert list(info) == [KeyRef(1, 0xFF), KeyRef(2, 0xFF), KeyRef(3, 0xFF), SCP11B]
    new_scp11b = s.get_certificate_bundle(SCP11B)[-1].public_key()
    assert common_name(s.get_certificate_bundle(SCP11B)[-1]) == \
        "hwtoken Virtual SCP11 Key 1301 5550123"
    assert new_scp11b.public_numbers() != old_scp11b.public_numbers()
    assert key.store.section("securitydomain")["authority"]["root_cert"] == authority
    s.authenticate(Scp03KeyParams())


def test_failed_attempts_count_block_and_persist(tmp_path):
    path = tmp_path / "k.key"
    key = VirtualKey.create(path)
    proto = sd(key).protocol
    for _ in range(BLOCK_AFTER - 2):  # unfinished INITIALIZE UPDATEs count
        proto.send_apdu(0x80, 0x50, 0xFF, 0, bytes(8))
    key.close()
    key = VirtualKey.load(path)
    try:
        s = sd(key)
        proto = s.protocol
        proto.send_apdu(0x80, 0x50, 0xFF, 0, bytes(8))  # the last one allowed
        with pytest.raises(ApduError) as e:
            proto.send_apdu(0x80, 0x50, 0xFF, 0, bytes(8))
        assert e.value.sw == 0x6983
        with pytest.raises(ApduError) as e:
            sd(key).authenticate(Scp03KeyParams())
        assert e.value.sw == 0x6983
        s = sd(key)
        s.authenticate(scp11b_params(s))  # the other key still works, and resets its count
        with pytest.raises(ApduError) as e:  # a malformed SCP11b attempt counts
            sd(key).protocol.send_apdu(0x80, 0x88, 0x01, 0x13, bytes(8))
        assert e.value.sw == 0x6A80
        assert key.store.section("securitydomain")["ec_keys"][0]["failures"] == 1
    finally:
        key.close()


def test_success_clears_the_count(key):
    proto = sd(key).protocol
    for _ in range(10):
        proto.send_apdu(0x80, 0x50, 0, 0, bytes(8))
    sd(key).authenticate(Scp03KeyParams())
    assert key.store.section("securitydomain")["scp03"][0]["failures"] == 0


def test_state_is_made_on_first_use_and_survives_a_reload(tmp_path):
    path = tmp_path / "k.key"
    key = VirtualKey.create(path)
    assert "securitydomain" not in key.store.data
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    s.generate_ec_key(KeyRef(0x11, 0x05))
    key.close()
    with VirtualKey.load(path) as again:
        info = sd(again).get_key_information()
        assert KeyRef(0x11, 0x05) in info and SCP11B in info


# -- status words of each refusal, and what a command changes -------------------------------------
def sw_of(call, *args, **kwargs) -> int:
    with pytest.raises(ApduError) as e:
        call(*args, **kwargs)
    return e.value.sw


def admin(key) -> SecurityDomainSession:
    s = sd(key)
    s.authenticate(Scp03KeyParams())
    return s


def failures(key) -> dict:
    section = key.store.section("securitydomain")
    return {**{(1, s["kvn"]): s["failures"] for s in section["scp03"]},
            **{(k["kid"], k["kvn"]): k["failures"] for k in section["ec_keys"]}}


def test_select_answers_the_fci_and_makes_the_state(key):
    assert "securitydomain" not in key.store.data
    conn = connect(key)
    assert conn.send_and_receive(bytes.fromhex("00a4040008a000000151000000")) == (
        bytes.fromhex("6f10" "8408a000000151000000" "a504" "9f6501ff"), 0x9000)
    assert list(failures(key)) == [(1, 0xFF), (0x13, 1)]


def test_commands_outside_a_managing_session(key):
    proto = sd(key).protocol
    assert sw_of(proto.send_apdu, 0x80, 0xCB, 0, 0) == 0x6D00  # not a command of the SD
    assert sw_of(proto.send_apdu, 0x80, 0xCA, 0x12, 0x34) == 0x6A88  # no such object
    for ins in (0xD8, 0xF1, 0xE4, 0xE2):
        assert sw_of(proto.send_apdu, 0x80, ins, 0, 0x13, b"\x01") == 0x6982
    # EXTERNAL AUTHENTICATE (SCP03) without INITIALIZE UPDATE
    assert sw_of(proto.send_apdu, 0x84, 0x82, 0x33, 0x00, bytes(16)) == 0x6985
    proto.send_apdu(0x80, 0x50, 0, 0, bytes(8))  # another handshake command ends it
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0, 0, bytes(8)) == 0x6A88  # no KLOC key
    assert sw_of(proto.send_apdu, 0x84, 0x82, 0x33, 0x00, bytes(16)) == 0x6985
    proto.send_apdu(0x80, 0x50, 0, 0, bytes(8))  # and so does SELECT
    proto.select(bytes.fromhex("a000000151000000"))
    assert sw_of(proto.send_apdu, 0x84, 0x82, 0x33, 0x00, bytes(16)) == 0x6985
    proto.send_apdu(0x80, 0x50, 0, 0, bytes(8))  # a failed attempt uses it up
    assert sw_of(proto.send_apdu, 0x84, 0x82, 0x33, 0x00, bytes(16)) == 0x6300
    assert sw_of(proto.send_apdu, 0x84, 0x82, 0x33, 0x00, bytes(16)) == 0x6985


def test_handshake_commands_are_proprietary_class_only(key):
    conn = connect(key)
    assert conn.send_and_receive(bytes.fromhex("00a4040006d27600012401"))[1] == 0x9000
    # OpenPGP's own PSO and INTERNAL AUTHENTICATE (class 00): not the Security Domain's
    assert conn.send_and_receive(bytes.fromhex("002a9e9a0401020304")) == (b"", 0x6982)
    assert conn.send_and_receive(bytes.fromhex("00880000020102")) == (b"", 0x6982)
    assert conn.send_and_receive(bytes.fromhex("0050000008" + "00" * 8)) == (b"", 0x6D00)
    answer, sw = conn.send_and_receive(bytes.fromhex("8050000008" + "00" * 8))
    assert sw == 0x9000 and len(answer) == 29  # whichever applet is selected


def test_a_new_handshake_ends_the_session_even_when_it_fails(key):
    conn = connect(key)
    s = SecurityDomainSession(conn)
    s.authenticate(Scp03KeyParams())
    _verify_auth(s)
    assert conn.send_and_receive(bytes.fromhex("8050000007" + "00" * 7)) == (b"", 0x6A80)
    answer, sw = conn.send_and_receive(bytes.fromhex("80ca006600"))  # in the clear again
    assert sw == 0x9000 and answer == Tlv(0x73, sd(key).get_card_recognition_data())


def test_initialize_update_answer_and_key_choice(key):
    from yubikit.core.smartcard.scp import _derive

    proto = sd(key).protocol
    host = bytes(range(8))
    for p1 in (0, 0xFF):
        answer = proto.send_apdu(0x80, 0x50, p1, 0, host)
        assert len(answer) == 29
        assert answer[:13] == bytes(6) + (5550123).to_bytes(4, "big") + b"\xff\x03\x60"
        context = host + answer[13:21]
        s_mac = StaticKeys.default().derive(context).key_smac
        assert answer[21:] == _derive(s_mac, 0x00, context, 0x40)
    assert failures(key)[(1, 0xFF)] == 2  # until EXTERNAL AUTHENTICATE succeeds
    assert sw_of(proto.send_apdu, 0x80, 0x50, 0x05, 0, host) == 0x6A88
    assert sw_of(proto.send_apdu, 0x80, 0x50, 0, 0, bytes(7)) == 0x6A80
    s = admin(key)
    assert failures(key)[(1, 0xFF)] == 0
    s.delete_key(kvn=0xFF)  # the SCP11b key is left
    assert sw_of(sd(key).protocol.send_apdu, 0x80, 0x50, 0, 0, host) == 0x6A88


def test_blocked_scp03_keys_answer_6983_and_the_other_key_still_works(key):
    proto = sd(key).protocol
    for _ in range(BLOCK_AFTER - 1):
        proto.send_apdu(0x80, 0x50, 0, 0, bytes(8))
    assert sw_of(proto.send_apdu, 0x80, 0x50, 0, 0, bytes(8)) == 0x6983  # this one blocked
    assert sw_of(proto.send_apdu, 0x80, 0x50, 0, 0, bytes(8)) == 0x6983  # none is left
    assert sw_of(proto.send_apdu, 0x80, 0x50, 0xFF, 0, bytes(8)) == 0x6983
    assert failures(key) == {(1, 0xFF): BLOCK_AFTER, (0x13, 1): 0}
    s = sd(key)
    s.authenticate(scp11b_params(s))


def test_scp11_key_choice_and_wrong_commands_count(key):
    s = sd(key)
    pk = s.get_certificate_bundle(SCP11B)[-1].public_key()
    sd(key).authenticate(Scp11KeyParams(KeyRef(0x13, 0), pk))  # KVN 0: any
    proto = sd(key).protocol
    assert sw_of(proto.send_apdu, 0x80, 0x88, 0x05, 0x13, bytes(8)) == 0x6A88
    assert sw_of(proto.send_apdu, 0x80, 0x88, 0x01, 0x11, bytes(8)) == 0x6A88
    assert failures(key)[(0x13, 1)] == 0
    assert sw_of(proto.send_apdu, 0x80, 0x82, 0x01, 0x13, bytes(8)) == 0x6A80  # not EXT AUTH
    assert failures(key)[(0x13, 1)] == 1
    sd(key).authenticate(Scp11KeyParams(SCP11B, pk))
    assert failures(key)[(0x13, 1)] == 0
    a = admin(key)
    oce = make_oce()
    params = load_scp11(a, ScpKid.SCP11a, 3, oce)
    a.put_key(KeyRef(0x13, 0x02), ec.generate_private_key(ec.SECP256R1()))
    proto = sd(key).protocol
    # the KLOC key is not an SCP11 key; SCP11a without the OCE's certificates
    assert sw_of(proto.send_apdu, 0x80, 0x82, 0x03, 0x10, bytes(8)) == 0x6A88
    data = _scp11a_data(params)
    assert sw_of(proto.send_apdu, 0x80, 0x82, 0x03, 0x11, data) == 0x6985
    assert failures(key)[(0x11, 3)] == 1
    # a chain with more to come is not complete
    proto.send_apdu(0x80, 0x2A, 0x03, 0x10 | 0x80, oce.ka.public_bytes(Encoding.DER))
    assert sw_of(proto.send_apdu, 0x80, 0x82, 0x03, 0x11, data) == 0x6985
    assert failures(key)[(0x11, 3)] == 2
    sd(key).authenticate(params)
    assert failures(key)[(0x11, 3)] == 0


def _scp11a_data(params) -> bytes:
    """The key agreement data of an SCP11a EXTERNAL AUTHENTICATE, as yubikit builds it."""
    epk = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)
    return (Tlv(0xA6, Tlv(0x90, b"\x11\x01") + Tlv(0x95, b"\x3c") + Tlv(0x80, b"\x88")
                + Tlv(0x81, b"\x10")) + Tlv(0x5F49, epk))


def test_blocked_scp11b_key(key):
    s = sd(key)
    params = scp11b_params(s)
    proto = s.protocol
    for _ in range(BLOCK_AFTER - 1):
        assert sw_of(proto.send_apdu, 0x80, 0x88, 0x01, 0x13, bytes(8)) == 0x6A80
    assert sw_of(proto.send_apdu, 0x80, 0x88, 0x01, 0x13, bytes(8)) == 0x6983
    assert sw_of(proto.send_apdu, 0x80, 0x88, 0x01, 0x13, bytes(8)) == 0x6983
    assert failures(key) == {(1, 0xFF): 0, (0x13, 1): BLOCK_AFTER}
    with pytest.raises(ApduError) as e:
        sd(key).authenticate(params)
    assert e.value.sw == 0x6983
    admin(key)  # the SCP03 keys are not blocked: no reset
    assert failures(key)[(0x13, 1)] == BLOCK_AFTER


def test_perform_security_operation_checks(key):
    oce = make_oce()
    a = admin(key)
    params = load_scp11(a, ScpKid.SCP11a, 3, oce)
    proto = sd(key).protocol
    ka, leaf = (c.public_bytes(Encoding.DER) for c in oce.chain)
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x04, 0x10, ka) == 0x6A88  # no such KVN
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x03, 0x20, ka) == 0x6A88  # no such KID
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x03, 0x10, b"junk") == 0x6A80
    assert failures(key)[(0x10, 3)] == 1
    proto.send_apdu(0x80, 0x2A, 0x00, 0x80, ka)  # KID and KVN 0: any CA
    assert failures(key)[(0x10, 3)] == 1  # not before the chain is complete
    proto.send_apdu(0x80, 0x2A, 0x00, 0x00, leaf)
    assert failures(key)[(0x10, 3)] == 0  # a whole chain clears the count
    proto.send_apdu(0x80, 0x2A, 0x03, 0x90, ka)
    assert failures(key)[(0x10, 3)] == 0
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x03, 0x10, ka) == 0x6A80  # KA did not sign KA
    assert failures(key)[(0x10, 3)] == 1
    # a P-384 key at the end of the chain: not one the card can agree with
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    ka_key = ec.generate_private_key(ec.SECP256R1())
    ka2 = _cert("KA", ka_key.public_key(), "CA-KLOC", oce.ca_key, ca=True, serial=7)
    bad = _cert("OCE", p384, "KA", ka_key, ca=False, serial=8)
    proto.send_apdu(0x80, 0x2A, 0x03, 0x90, ka2.public_bytes(Encoding.DER))
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x03, 0x10, bad.public_bytes(Encoding.DER)) == 0x6A80
    assert failures(key)[(0x10, 3)] == 2
    for _ in range(BLOCK_AFTER - 3):
        assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x03, 0x10, b"junk") == 0x6A80
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x03, 0x10, b"junk") == 0x6983
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x03, 0x10, ka) == 0x6983
    with pytest.raises(ApduError) as e:
        sd(key).authenticate(params)
    assert e.value.sw == 0x6983


def test_key_placement_refusals(key):
    s = admin(key)
    private = ec.generate_private_key(ec.SECP256R1())
    assert sw_of(s.generate_ec_key, KeyRef(0x13, 0)) == 0x6A80  # KVN 0
    assert sw_of(s.put_key, KeyRef(1, 0xFF), StaticKeys.default()) == 0x6A80  # the default
    assert sw_of(s.put_key, KeyRef(0x13, 3), private, replace_kvn=9) == 0x6A88
    assert sw_of(s.put_key, KeyRef(1, 3), StaticKeys.default(), replace_kvn=9) == 0x6A88
    assert sw_of(s.generate_ec_key, KeyRef(0x13, 1)) == 0x6A80  # in use
    assert sw_of(s.generate_ec_key, KeyRef(0x10, 3)) == 0x6A80  # not an SCP11 key
    for kvn in range(2, MAX_EC_KEYS + 1):  # the factory SCP11b key and 15 more
        s.generate_ec_key(KeyRef(0x11, kvn))
    assert sw_of(s.generate_ec_key, KeyRef(0x11, 0x40)) == 0x6A84
    assert sw_of(s.put_key, KeyRef(0x13, 0x40), private) == 0x6A84
    public = s.generate_ec_key(KeyRef(0x11, 0x40), replace_kvn=2)  # replacing makes room
    leaf = s.get_certificate_bundle(KeyRef(0x11, 0x40))[-1]
    assert leaf.public_key().public_numbers() == public.public_numbers()
    info = s.get_key_information()
    assert KeyRef(0x11, 2) not in info and KeyRef(0x11, 0x40) in info
    assert len([r for r in info if r.kid not in (1, 2, 3)]) == MAX_EC_KEYS


def test_replacing_a_key_forgets_its_certificates_allowlist_and_ca(key):
    oce = make_oce()
    s = admin(key)
    s.generate_ec_key(KeyRef(0x11, 3))
    s.put_key(KeyRef(0x10, 3), oce.ca.public_key())
    s.store_ca_issuer(KeyRef(0x10, 3), oce.ski)
    s.store_allowlist(KeyRef(0x10, 3), [5])
    s.generate_ec_key(KeyRef(0x11, 4), replace_kvn=3)
    assert s.get_certificate_bundle(KeyRef(0x11, 3)) == []
    s.put_key(KeyRef(0x10, 4), oce.ca.public_key(), replace_kvn=3)
    assert s.get_supported_ca_identifiers(kloc=True) == {}
    state = key.store.section("securitydomain")
    assert state["allowlists"] == {} and "1004" not in state["ca_identifiers"]
    assert [(k["kid"], k["kvn"]) for k in state["ec_keys"]] == [(0x13, 1), (0x11, 4),
                                                               (0x10, 4)]
    assert state["ec_keys"][2]["public"] == oce.ca.public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)


def test_put_key_answers_the_kvn_and_check_values(key):
    s = admin(key)
    keys = StaticKeys(b"\x11" * 16, b"\x22" * 16, b"\x33" * 16)
    s.put_key(KeyRef(1, 2), keys)  # yubikit compares the answer with the check values
    scp03 = key.store.section("securitydomain")["scp03"]
    assert [(k["kvn"], k["enc"], k["mac"], k["dek"]) for k in scp03] == [
        (2, b"\x11" * 16, b"\x22" * 16, b"\x33" * 16)]
    s = sd(key)
    s.authenticate(Scp03KeyParams(KeyRef(1, 2), keys))
    data = bytes([0x05]) + Tlv(0xB0, bytes(ec.generate_private_key(ec.SECP256R1())
                                          .public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint))) \
        + Tlv(0xF0, b"\0") + b"\0"
    assert s.protocol.send_apdu(0x80, 0xD8, 0, 0x10, data) == b"\x05"


def test_delete_key_parameters_and_matching(key):
    s = admin(key)
    s.generate_ec_key(KeyRef(0x11, 3))
    proto = s.protocol
    assert sw_of(proto.send_apdu, 0x80, 0xE4, 1, 0, Tlv(0xD2, b"\x03")) == 0x6B00
    assert sw_of(proto.send_apdu, 0x80, 0xE4, 0, 2, Tlv(0xD2, b"\x03")) == 0x6B00
    assert sw_of(proto.send_apdu, 0x80, 0xE4, 0, 0, Tlv(0xD0, b"\x04")) == 0x6A88
    assert sw_of(proto.send_apdu, 0x80, 0xE4, 0, 0, Tlv(0xD0, b"\x11")
                 + Tlv(0xD2, b"\x04")) == 0x6A88
    proto.send_apdu(0x80, 0xE4, 0, 0, Tlv(0xD0, b"\x03") + Tlv(0xD2, b"\xff"))  # SCP03 by KID 3
    assert list(s.get_key_information()) == [SCP11B, KeyRef(0x11, 3)]
    proto.send_apdu(0x80, 0xE4, 0, 0, Tlv(0xD0, b"\x13"))
    assert list(s.get_key_information()) == [KeyRef(0x11, 3)]
    # the last SCP11 key is not deleted without P2 = 1, even with other keys left
    s.put_key(KeyRef(0x10, 3), make_oce().ca.public_key())
    assert sw_of(proto.send_apdu, 0x80, 0xE4, 0, 0, Tlv(0xD0, b"\x11")) == 0x6985
    proto.send_apdu(0x80, 0xE4, 0, 1, Tlv(0xD0, b"\x11"))
    assert list(s.get_key_information()) == [KeyRef(0x10, 3)]
    info = sd(key).get_key_information()  # only a KLOC key: not the factory state yet
    assert list(info) == [KeyRef(0x10, 3)]


def test_store_data_targets_and_removes(key):
    oce = make_oce()
    s = admin(key)
    assert sw_of(s.store_ca_issuer, KeyRef(0x10, 9), oce.ski) == 0x6A88
    s.store_ca_issuer(SCP11B, b"\x42" * 20)  # KLCC
    assert s.get_supported_ca_identifiers(klcc=True) == {SCP11B: b"\x42" * 20}
    assert s.get_supported_ca_identifiers(kloc=True) == {}
    s.put_key(KeyRef(0x10, 3), oce.ca.public_key())
    s.store_ca_issuer(KeyRef(0x10, 3), oce.ski)  # KLOC
    assert s.get_supported_ca_identifiers(kloc=True) == {KeyRef(0x10, 3): oce.ski}
    s.store_certificate_bundle(SCP11B, oce.chain)
    s.store_allowlist(KeyRef(0x10, 3), [7, 0x1234])
    state = key.store.section("securitydomain")
    assert state["allowlists"] == {"1003": ["7", "1234"]}
    s.store_certificate_bundle(SCP11B, [])  # empty: removed
    assert s.get_certificate_bundle(SCP11B) == []
    s.store_allowlist(KeyRef(0x10, 3), [])
    assert key.store.section("securitydomain")["allowlists"] == {}
    assert s.get_supported_ca_identifiers(kloc=True) == {KeyRef(0x10, 3): oce.ski}


# -- the handshake's cryptography, called directly, against yubikit's host side -------------------
def _scp03_pending():
    from hwtoken.emulator.applets.securitydomain import handshake
    from hwtoken.emulator.applets.securitydomain.records import DEFAULT_KEY, Scp03KeySet

    host_challenge = bytes(range(8))
    answer, pending = handshake.initialize_update(
        Scp03KeySet(0xFF, DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY), host_challenge,
        b"\xaa" * 10)
    return host_challenge + answer[13:21], answer, pending


def _external_authenticate(pending, context, *, cla=0x84, p1=0x33, p2=0, host=None,
                           extra=b""):
    from yubikit.core.smartcard.scp import ScpState, _derive

    from hwtoken.emulator.iso7816 import Apdu

    keys = StaticKeys.default().derive(context)
    if host is None:
        host = _derive(keys.key_smac, 0x01, context, 0x40)
    state = ScpState(keys, bytes(16))
    head = bytes([cla, 0x82, p1, p2, len(host) + len(extra) + 8])
    mac = state.mac(head + host + extra)
    return Apdu.parse(head + host + extra + mac), state


def test_scp03_handshake_against_yubikit():
    from yubikit.core.smartcard.scp import _derive

    from hwtoken.emulator.applets.securitydomain import handshake
    from hwtoken.emulator.applets.securitydomain.records import DEFAULT_KEY

    context, answer, pending = _scp03_pending()
    keys = StaticKeys.default().derive(context)
    assert answer[:13] == b"\xaa" * 10 + b"\xff\x03\x60" and len(answer) == 29
    assert answer[21:] == _derive(keys.key_smac, 0x00, context, 0x40)
    assert (pending.kvn, pending.context) == (0xFF, context)
    assert (pending.keys.enc, pending.keys.mac, pending.keys.rmac, pending.keys.dek) == (
        keys.key_senc, keys.key_smac, keys.key_srmac, DEFAULT_KEY)
    for level in (0x00, 0x01, 0x03, 0x11, 0x13, 0x33):
        apdu, host = _external_authenticate(pending, context, p1=level)
        channel = handshake.external_authenticate(pending, apdu)
        assert (channel.protocol, channel.level, channel.oce_authenticated) == (
            "scp03", level, True)
        assert channel.mac_chain == host._mac_chain and channel.keys is pending.keys


@pytest.mark.parametrize(("change", "sw"), [
    ({"p1": 0x02}, 0x6B00), ({"p1": 0x31}, 0x6B00), ({"p2": 0x01}, 0x6B00),
    ({"cla": 0x80}, 0x6982), ({"cla": 0x81}, 0x6982),  # no C-MAC
    ({"extra": b"\0"}, 0x6982),  # longer than cryptogram and MAC
    ({"host": bytes(8)}, 0x6300),  # a wrong host cryptogram, MACed right
])
def test_scp03_external_authenticate_refusals(change, sw):
    from hwtoken.emulator.applets.securitydomain import handshake
    from hwtoken.emulator.iso7816 import ApduError as CardError

    context, _, pending = _scp03_pending()
    apdu, _ = _external_authenticate(pending, context, **change)
    with pytest.raises(CardError) as e:
        handshake.external_authenticate(pending, apdu)
    assert e.value.sw == sw


def test_scp03_external_authenticate_checks_the_mac_and_its_length():
    from dataclasses import replace

    from hwtoken.emulator.applets.securitydomain import handshake
    from hwtoken.emulator.iso7816 import ApduError as CardError

    context, _, pending = _scp03_pending()
    apdu, _ = _external_authenticate(pending, context)
    for data in (apdu.data[:-1] + bytes([apdu.data[-1] ^ 1]), apdu.data[:-1]):
        with pytest.raises(CardError) as e:
            handshake.external_authenticate(pending, replace(apdu, data=data))
        assert e.value.sw == (0x6300 if len(data) == 16 else 0x6982)
    from hwtoken.emulator.applets.securitydomain.records import DEFAULT_KEY, Scp03KeySet

    keys = Scp03KeySet(0xFF, DEFAULT_KEY, DEFAULT_KEY, DEFAULT_KEY)
    for challenge in (bytes(7), bytes(9)):
        with pytest.raises(CardError) as e:
            handshake.initialize_update(keys, challenge, bytes(10))
        assert e.value.sw == 0x6A80


def _scp11_data(variant=0x00, usage=b"\x3c", key_type=b"\x88", length=b"\x10", epk=None,
                extra=b"") -> tuple[bytes, ec.EllipticCurvePrivateKey]:
    esk = ec.generate_private_key(ec.SECP256R1())
    epk = epk if epk is not None else esk.public_key().public_bytes(
        Encoding.X962, PublicFormat.UncompressedPoint)
    control = Tlv(0x90, bytes([0x11, variant]))
    if usage is not None:
        control += Tlv(0x95, usage)
    if key_type is not None:
        control += Tlv(0x80, key_type)
    control += Tlv(0x81, length)
    return Tlv(0xA6, control) + Tlv(0x5F49, epk) + extra, esk


def test_parse_scp11_reads_yubikit_requests():
    from hwtoken.emulator.applets.securitydomain import handshake

    for kid, variant in ((0x11, 0x01), (0x13, 0x00), (0x15, 0x03)):
        for usage, level in ((0x3C, 0x33), (0x34, 0x11)):
            data, esk = _scp11_data(variant, bytes([usage]))
            request = handshake.parse_scp11(data, kid)
            assert request.level == level
            assert request.shared_info == bytes([usage, 0x88, 0x10])
            assert request.epk_oce.public_numbers() == esk.public_key().public_numbers()


@pytest.mark.parametrize("change", [
    {"variant": 0x01}, {"usage": b"\x3c\x3c"}, {"usage": b"\x35"}, {"usage": b""},
    {"usage": None},
    {"key_type": b"\x89"}, {"key_type": None}, {"length": b"\x20"}, {"epk": b"\x04" + bytes(64)},
    {"extra": Tlv(0x86, b"\0")},
])
def test_parse_scp11_refuses_what_it_does_not_support(change):
    from hwtoken.emulator.applets.securitydomain import handshake
    from hwtoken.emulator.iso7816 import ApduError as CardError

    data, _ = _scp11_data(**change)
    with pytest.raises(CardError) as e:
        handshake.parse_scp11(data, 0x13)
    assert e.value.sw == 0x6A80
    with pytest.raises(CardError) as e:
        handshake.parse_scp11(Tlv(0x5F49, b"\x04" + bytes(64)), 0x13)
    assert e.value.sw == 0x6A80


@pytest.mark.parametrize(("kid", "name"), [(0x11, "scp11a"), (0x13, "scp11b"),
                                           (0x15, "scp11c")])
def test_agree_derives_the_keys_the_host_derives(kid, name):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

    from hwtoken.emulator.applets.securitydomain import handshake
    from hwtoken.emulator.scp import aes_cmac

    sd_key = ec.generate_private_key(ec.SECP256R1())
    oce_key = ec.generate_private_key(ec.SECP256R1())
    data, esk = _scp11_data({0x11: 1, 0x13: 0, 0x15: 3}[kid], b"\x34")
    request = handshake.parse_scp11(data, kid)
    scalar = sd_key.private_numbers().private_value.to_bytes(32, "big")
    pk_oce = oce_key.public_key() if kid != 0x13 else None
    answer, channel = handshake.agree(kid, scalar, request, data, pk_oce)
    fields = Tlv.parse_dict(answer)
    assert list(fields) == [0x5F49, 0x86]
    epk_sd = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), fields[0x5F49])
    static = oce_key if kid != 0x13 else esk
    secret = esk.exchange(ec.ECDH(), epk_sd) + static.exchange(ec.ECDH(), sd_key.public_key())
    keys = X963KDF(hashes.SHA256(), 80, b"\x34\x88\x10").derive(secret)
    receipt = aes_cmac(keys[:16], data, Tlv(0x5F49, fields[0x5F49]))
    assert fields[0x86] == receipt == channel.mac_chain
    assert (channel.keys.enc, channel.keys.mac, channel.keys.rmac, channel.keys.dek) == (
        keys[16:32], keys[32:48], keys[48:64], keys[64:80])
    assert (channel.protocol, channel.level, channel.oce_authenticated) == (
        name, 0x11, kid == 0x11)


def test_certificates_from_the_host():
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from hwtoken.emulator.applets.securitydomain import handshake
    from hwtoken.emulator.iso7816 import ApduError as CardError

    oce = make_oce()
    assert handshake.verify_certificate(oce.ka, oce.ca.public_key()) is True
    assert handshake.verify_certificate(oce.leaf, oce.ca.public_key()) is False
    ed = ed25519.Ed25519PrivateKey.generate()
    signed_by_ed = (x509.CertificateBuilder().subject_name(oce.ka.subject)
                    .issuer_name(oce.ka.subject).public_key(ed.public_key())
                    .serial_number(1).not_valid_before(oce.ka.not_valid_before_utc)
                    .not_valid_after(oce.ka.not_valid_after_utc).sign(ed, None))
    assert handshake.verify_certificate(signed_by_ed, oce.ca.public_key()) is False
    der = oce.leaf.public_bytes(Encoding.DER)
    assert handshake.load_certificate(der) == oce.leaf
    for junk in (b"", der[:-1], b"\x30\x03\x02\x01\x01"):
        with pytest.raises(CardError) as e:
            handshake.load_certificate(junk)
        assert e.value.sw == 0x6A80
    with pytest.raises(CardError) as e:
        handshake.load_point(b"\x04" + bytes(64))
    assert e.value.sw == 0x6A80


# -- the key management parsers, called directly -----------------------------------------------
def _card_error(call, *args) -> int:
    from hwtoken.emulator.iso7816 import ApduError as CardError

    with pytest.raises(CardError) as e:
        call(*args)
    return e.value.sw


def _encrypt(dek: bytes, plain: bytes) -> bytes:
    from hwtoken.emulator.scp import cbc

    return cbc(dek, plain, decrypt=False)


def test_split_keys():
    from hwtoken.emulator.applets.securitydomain import keyload

    data = (Tlv(0x88, b"a" * 16) + b"\x03abc" + Tlv(0xB0, b"p") + Tlv(0xF0, b"\0") + b"\0")
    assert keyload.split_keys(data) == [([(0x88, b"a" * 16)], b"abc"),
                                        ([(0xB0, b"p"), (0xF0, b"\0")], b"")]
    assert keyload.split_keys(Tlv(0x80, b"x") + b"\0") == [([(0x80, b"x")], b"")]
    for bad in (b"", b"\0", Tlv(0x88, b"a"), Tlv(0x88, b"a") + b"\x03ab",
                Tlv(0x88, b"a") + b"\0" + Tlv(0x88, b"b"), b"\x03abc"):
        assert _card_error(keyload.split_keys, bad) == 0x6A80


def test_parse_put_key_scp03():
    from hwtoken.emulator.applets.securitydomain import keyload
    from hwtoken.emulator.scp import kcv

    dek = os.urandom(16)
    keys = [os.urandom(16) for _ in range(3)]

    def data(check=lambda k: kcv(k), kvn=7, n=3, size=16, tag=0x88):
        out = bytes([kvn])
        for k in keys[:n]:
            c = check(k)
            out += Tlv(tag, _encrypt(dek, (k * 2)[:size])) + bytes([len(c)]) + c
        return out

    new = keyload.parse_put_key(1, data(), dek)
    assert new == keyload.PutKey(7, scp03=tuple(keys),
                                 check_values=b"".join(kcv(k) for k in keys))
    assert len(new.check_values) == 9
    assert keyload.parse_put_key(1, data(lambda k: b""), dek).scp03 == tuple(keys)
    assert keyload.parse_put_key(1, data(lambda k: kcv(k)[:2]), dek).scp03 == tuple(keys)
    assert _card_error(keyload.parse_put_key, 1, data(lambda k: b"\0\0\0"), dek) == 0x9485
    assert _card_error(keyload.parse_put_key, 1, data(lambda k: kcv(k)[:1] + b"\0"),
                       dek) == 0x9485
    assert _card_error(keyload.parse_put_key, 1, b"", dek) == 0x6A80
    assert _card_error(keyload.parse_put_key, 1, data(), None) == 0x6A80
    assert _card_error(keyload.parse_put_key, 1, data(n=2), dek) == 0x6A80
    assert _card_error(keyload.parse_put_key, 1, data(size=32), dek) == 0x6A80
    assert _card_error(keyload.parse_put_key, 1, data(tag=0x89), dek) == 0x6A80
    two = bytes([7]) + b"".join(Tlv(0x88, _encrypt(dek, k)) + Tlv(0x88, _encrypt(dek, k))
                                + b"\0" for k in keys)
    assert _card_error(keyload.parse_put_key, 1, two, dek) == 0x6A80


def test_parse_put_key_ec():
    from hwtoken.emulator.applets.securitydomain import keyload

    dek = os.urandom(16)
    private = ec.generate_private_key(ec.SECP256R1())
    scalar = private.private_numbers().private_value.to_bytes(32, "big")
    point = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    secret = Tlv(0xB1, _encrypt(dek, scalar)) + Tlv(0xF0, b"\0") + b"\0"
    public = Tlv(0xB0, point) + Tlv(0xF0, b"\0") + b"\0"
    for kid in (0x11, 0x13, 0x15):
        assert keyload.parse_put_key(kid, b"\x05" + secret, dek) == keyload.PutKey(
            5, private=scalar)
    for kid in (0x10, 0x20, 0x2F):
        assert keyload.parse_put_key(kid, b"\x05" + public, None) == keyload.PutKey(
            5, public=point)
    refused = [
        (0x13, b"\x05" + secret, None),  # no DEK
        (0x13, b"\x05" + public, dek),  # a public key for a card key
        (0x10, b"\x05" + secret, dek),  # a private key for a CA
        (0x42, b"\x05" + public, dek),  # no such KID
        (0x13, b"\x05" + secret + secret, dek),  # two keys
        (0x13, b"\x05" + Tlv(0xB1, _encrypt(dek, scalar)) + Tlv(0xF0, b"\1") + b"\0", dek),
        (0x13, b"\x05" + Tlv(0xB1, _encrypt(dek, scalar)) + b"\0", dek),
        (0x13, b"\x05" + Tlv(0xB1, _encrypt(dek, scalar)) + Tlv(0xB0, point)
         + Tlv(0xF0, b"\0") + b"\0", dek),  # a third component
        (0x13, b"\x05" + Tlv(0xB1, _encrypt(dek, scalar + bytes(16))) + Tlv(0xF0, b"\0")
         + b"\0", dek),
        (0x13, b"\x05" + Tlv(0xB1, _encrypt(dek, bytes(32))) + Tlv(0xF0, b"\0") + b"\0",
         dek),  # 0 is no P-256 scalar
        (0x10, b"\x05" + Tlv(0xB0, b"\x04" + bytes(64)) + Tlv(0xF0, b"\0") + b"\0", dek),
    ]
    for kid, data, key in refused:
        assert _card_error(keyload.parse_put_key, kid, data, key) == 0x6A80


def test_parse_generate_and_delete():
    from hwtoken.emulator.applets.securitydomain import keyload

    assert keyload.parse_generate(b"\x07" + Tlv(0xF0, b"\0")) == 7
    for bad in (b"", b"\x07", b"\x07" + Tlv(0xF0, b"\1"), b"\x07" + Tlv(0xF1, b"\0"),
                b"\x07" + Tlv(0xF0, b"\0") + Tlv(0x80, b"\0")):
        assert _card_error(keyload.parse_generate, bad) == 0x6A80
    assert keyload.parse_delete(Tlv(0xD0, b"\x11")) == (0x11, 0)
    assert keyload.parse_delete(Tlv(0xD2, b"\x03")) == (0, 3)
    assert keyload.parse_delete(Tlv(0xD0, b"\x11") + Tlv(0xD2, b"\x03")) == (0x11, 3)
    for bad in (b"", Tlv(0xD0, b"\0"), Tlv(0xD0, b"\0") + Tlv(0xD2, b"\0"),
                Tlv(0xD0, b"\x11\x01"), Tlv(0xD2, b""), Tlv(0xD0, b"\x11") + Tlv(0xD1, b"\1")):
        assert _card_error(keyload.parse_delete, bad) == 0x6A80


def test_parse_store_data():
    from hwtoken.emulator.applets.securitydomain import keyload

    oce = make_oce()
    ders = [c.public_bytes(Encoding.DER) for c in oce.chain]
    ref = Tlv(0x83, b"\x10\x03")
    parse = keyload.parse_store_data
    assert parse(Tlv(0xA6, Tlv(0x80, b"\1") + Tlv(0x42, b"ski") + ref)) == \
        keyload.StoreData((0x10, 3), (True, b"ski"))
    assert parse(Tlv(0xA6, Tlv(0x80, b"\0") + Tlv(0x42, b"ski") + ref)).ca_identifier == \
        (False, b"ski")
    assert parse(Tlv(0xA6, Tlv(0x42, b"ski") + ref)).ca_identifier == (False, b"ski")
    assert parse(Tlv(0xA6, ref) + Tlv(0xBF21, b"".join(ders))) == \
        keyload.StoreData((0x10, 3), certificates=ders)
    assert parse(Tlv(0xA6, ref) + Tlv(0xBF21, b"")).certificates == []
    assert parse(Tlv(0xA6, ref) + Tlv(0x70, Tlv(0x93, b"\x01\x02") + Tlv(0x93, b"\x07"))) \
        == keyload.StoreData((0x10, 3), allowlist=[0x0102, 7])
    assert parse(Tlv(0xA6, ref) + Tlv(0x70, b"")).allowlist == []
    assert parse(Tlv(0xA6, Tlv(0x42, b"s") + ref) + Tlv(0x70, b"")) == \
        keyload.StoreData((0x10, 3), (False, b"s"), None, [])
    for bad in (b"", Tlv(0x70, b"") + Tlv(0xA6, ref), Tlv(0xA6, ref),
                Tlv(0xA6, Tlv(0x83, b"\x10")) + Tlv(0x70, b""),
                Tlv(0xA6, Tlv(0x42, b"s")) + Tlv(0x70, b""),  # no key reference
                Tlv(0xA6, Tlv(0x80, b"\1") + ref),  # a KLCC flag without an SKI
                Tlv(0xA6, ref) + Tlv(0x70, b"") + Tlv(0x70, b""),
                Tlv(0xA6, ref) + Tlv(0xBF21, b"") + Tlv(0xBF21, b""),
                Tlv(0xA6, ref) + Tlv(0x71, b""),
                Tlv(0xA6, ref) + Tlv(0x70, Tlv(0x94, b"\1")),
                Tlv(0xA6, ref) + Tlv(0x70, Tlv(0x93, b"")),
                Tlv(0xA6, ref) + Tlv(0xBF21, Tlv(0x30, b"\x02\x01\x01"))):
        assert _card_error(parse, bad) == 0x6A80


def test_with_two_oce_cas_a_blocked_one_leaves_the_other(key):
    first, second = make_oce(), make_oce(2000)
    s = admin(key)
    s.put_key(KeyRef(0x10, 3), first.ca.public_key())
    s.put_key(KeyRef(0x20, 3), second.ca.public_key())
    proto = sd(key).protocol
    for _ in range(BLOCK_AFTER - 1):
        assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x03, 0x10, b"junk") == 0x6A80
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x03, 0x10, b"junk") == 0x6983
    assert failures(key) == {(1, 0xFF): 0, (0x13, 1): 0, (0x10, 3): BLOCK_AFTER,
                             (0x20, 3): 0}
    ka, leaf = (c.public_bytes(Encoding.DER) for c in second.chain)
    proto.send_apdu(0x80, 0x2A, 0x00, 0x80, ka)  # any CA: the one not blocked signed it
    proto.send_apdu(0x80, 0x2A, 0x00, 0x00, leaf)
    # junk against both: counted against both, and one of them is blocked
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x00, 0x00, b"junk") == 0x6983
    assert failures(key)[(0x20, 3)] == 1
    assert sw_of(proto.send_apdu, 0x80, 0x2A, 0x03, 0x10,
                 first.ka.public_bytes(Encoding.DER)) == 0x6983


def test_scp03_key_sets_are_deleted_by_any_of_their_kids(key):
    s = admin(key)
    sets = [StaticKeys(os.urandom(16), os.urandom(16), os.urandom(16)) for _ in range(3)]
    s.put_key(KeyRef(1, 2), sets[0])
    s = sd(key)
    s.authenticate(Scp03KeyParams(KeyRef(1, 2), sets[0]))
    s.put_key(KeyRef(1, 3), sets[1])
    s.put_key(KeyRef(1, 4), sets[2])
    proto = s.protocol
    for kid, kvn in ((1, 3), (2, 4)):
        assert proto.send_apdu(0x80, 0xE4, 0, 0, Tlv(0xD0, bytes([kid]))
                               + Tlv(0xD2, bytes([kvn]))) == b""
    assert [r.kvn for r in s.get_key_information() if r.kid == 1] == [2]
    proto.send_apdu(0x80, 0xE4, 0, 0, Tlv(0xD0, b"\x01"))  # KID alone: every SCP03 set
    assert list(s.get_key_information()) == [SCP11B]


def test_key_management_answers_no_data(key):
    oce = make_oce()
    s = admin(key)
    proto = s.protocol
    s.put_key(KeyRef(0x10, 3), oce.ca.public_key())
    ref = Tlv(0xA6, Tlv(0x83, b"\x10\x03"))
    assert proto.send_apdu(0x80, 0xE2, 0x90, 0, ref + Tlv(0x70, b"")) == b""  # none stored
    assert proto.send_apdu(0x80, 0xE2, 0x90, 0, ref + Tlv(0xBF21, b"")) == b""
    assert proto.send_apdu(0x80, 0xE2, 0x90, 0, Tlv(0xA6, Tlv(0x42, oce.ski)
                                                    + Tlv(0x83, b"\x10\x03"))) == b""
    ka, leaf = (c.public_bytes(Encoding.DER) for c in oce.chain)
    proto = sd(key).protocol
    assert proto.send_apdu(0x80, 0x2A, 0x03, 0x90, ka) == b""
    assert proto.send_apdu(0x80, 0x2A, 0x03, 0x10, leaf) == b""
    assert admin(key).protocol.send_apdu(0x80, 0xE4, 0, 0, Tlv(0xD0, b"\x10")) == b""


def test_handshake_commands_before_any_select(key):
    assert connect(key).send_and_receive(
        bytes.fromhex("8482330010" + "00" * 16)) == (b"", 0x6985)
    assert connect(key).send_and_receive(bytes.fromhex("802a000008" + "00" * 8)) == (
        b"", 0x6A88)
