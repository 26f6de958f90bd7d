"""The Security Domain through yubikit's ``SecurityDomainSession`` in process: its factory
state, SCP03 and SCP11a/b/c sessions, key management and who may do it, certificates,
allowlists, failed attempts, blocking and reset, and persistence."""

from __future__ import annotations

import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sd_support import connect, make_oce
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

from hwtoken.emulator.applets.securitydomain.records import BLOCK_AFTER
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
    s.delete_key(kvn=0xFF, delete_last=True)  # nothing left: the factory state again
    info = sd(key).get_key_information()
    assert DEFAULT_SCP03 in info and SCP11B in info


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
