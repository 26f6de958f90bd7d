"""Every COSE algorithm the ``latest`` profile offers, registered and asserted through
python-fido2's Fido2Client and verified by its Fido2Server, over the full CTAPHID path
(ML-DSA-87's 4.6 KB signatures and 2.6 KB public keys included)."""

from __future__ import annotations

import hashlib
import os
import secrets

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fido2 import cbor
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.server import Fido2Server

from hwtoken.emulator import VirtualKey, fido_device
from hwtoken.emulator.applets.fido import algorithms, credentials
from hwtoken.emulator.applets.fido.ctap2 import authenticator
from hwtoken.emulator.profiles import LATEST

RP = {"id": "example.com", "name": "Example"}
NAMES = {a.cose: a.name for a in algorithms.ALGORITHMS.values()}


@pytest.fixture(scope="module")
def latest_key(tmp_path_factory):
    key = VirtualKey.create(tmp_path_factory.mktemp("alg") / "k.key", profile="latest")
    yield key
    key.close()


@pytest.fixture(scope="module")
def client(latest_key):
    device = fido_device(latest_key)
    yield Fido2Client(device, DefaultClientDataCollector("https://example.com"))
    device.close()


def test_latest_offers_every_algorithm_python_fido2_verifies(latest_key):
    info = Ctap2(fido_device(latest_key)).get_info()
    offered = [a["alg"] for a in info.algorithms]
    assert offered == list(LATEST.algorithms)
    assert set(offered) == set(CoseKey.supported_algorithms())


@pytest.mark.parametrize("alg", list(LATEST.algorithms), ids=lambda a: NAMES[a])
@pytest.mark.parametrize("resident", [False, True], ids=["server-side", "discoverable"])
def test_register_and_assert(client, alg, resident):
    server = Fido2Server(RP)
    options, state = server.register_begin(
        {"id": os.urandom(8), "name": "u"}, user_verification="discouraged",
        resident_key_requirement="required" if resident else "discouraged")
    result = client.make_credential({**options["publicKey"],
                                     "pubKeyCredParams": [{"type": "public-key", "alg": alg}]})
    cred = server.register_complete(state, result).credential_data
    assert cred.public_key[3] == alg
    if alg in (algorithms.MLDSA44, algorithms.MLDSA65, algorithms.MLDSA87):
        assert cred.public_key[1] == 7  # COSE key type AKP, as python-fido2 encodes it
    for _ in range(2):
        options, state = server.authenticate_begin(None if resident else [cred],
                                                   user_verification="discouraged")
        selection = client.get_assertion(options["publicKey"])
        responses = [selection.get_response(i)
                     for i in range(len(selection.get_assertions()))]
        response = next(r for r in responses if r.raw_id == cred.credential_id)
        assert server.authenticate_complete(state, [cred], response) == cred


def test_the_platforms_order_is_honoured(latest_key):
    ctap = Ctap2(fido_device(latest_key))
    for order in ([-50, -7], [-257, -8, -7], [-999, -47, -7], [-8, -48]):
        params = [{"type": "public-key", "alg": a} for a in order]
        att = ctap.make_credential(os.urandom(32), RP, {"id": b"u"}, params)
        expected = next(a for a in order if a in LATEST.algorithms)
        assert att.auth_data.credential_data.public_key[3] == expected
    with pytest.raises(CtapError) as e:
        ctap.make_credential(os.urandom(32), RP, {"id": b"u"},
                             [{"type": "public-key", "alg": -999}])
    assert e.value.code == CtapError.ERR.UNSUPPORTED_ALGORITHM


def test_yubikey5_offers_only_its_own(virtual_key):
    ctap = Ctap2(fido_device(virtual_key))
    assert [a["alg"] for a in ctap.get_info().algorithms] == [-7, -8, -35]
    with pytest.raises(CtapError) as e:
        ctap.make_credential(os.urandom(32), RP, {"id": b"u"},
                             [{"type": "public-key", "alg": algorithms.MLDSA44}])
    assert e.value.code == CtapError.ERR.UNSUPPORTED_ALGORITHM


def test_derived_scalars_stay_in_their_groups():
    """The group orders used to reduce derived scalars are right: n-1 is a key, n is not."""
    curves = {"secp256r1": ec.SECP256R1(), "secp384r1": ec.SECP384R1(),
              "secp521r1": ec.SECP521R1(), "secp256k1": ec.SECP256K1()}
    for name, order in algorithms._ORDERS.items():
        ec.derive_private_key(order - 1, curves[name])
        with pytest.raises(ValueError):
            ec.derive_private_key(order, curves[name])


def test_keys_are_derived_from_the_credential_id():
    """The same credential ID gives the same key after a restart (nothing else stored);
    RSA carries its primes inside the sealed ID."""
    for alg in LATEST.algorithms:
        cred = credentials.CredentialKey.generate(alg)
        again = credentials.CredentialKey.from_payload(cred.payload())
        assert again == cred
        assert again.cose_public_key() == cred.cose_public_key()
        sig = cred.sign(b"data")
        CoseKey.parse(cred.cose_public_key()).verify(b"data", sig)


def test_version_1_credential_ids_still_open():
    """IDs made before v2 (hmac-secret not recorded) keep working; a CTAP2 one keeps
    answering hmac-secret (nobody can tell), a U2F key handle never does."""
    master, rp_hash = secrets.token_bytes(32), hashlib.sha256(b"example.com").digest()
    seed = secrets.token_bytes(32)
    for flags, hmac_secret in ((0x00, True), (0x08, False)):
        nonce = secrets.token_bytes(12)
        aead = AESGCM(algorithms.derive(master, b"credential-wrap-v1"))
        cid = b"\x01" + nonce + aead.encrypt(nonce, bytes([flags, 1]) + seed,
                                             b"\x01" + rp_hash)
        cred = credentials.unwrap(master, rp_hash, cid)
        assert cred is not None and cred.seed == seed and cred.alg == -7
        assert cred.hmac_secret is hmac_secret


def test_a_response_that_cannot_be_carried_is_an_error_and_stores_nothing(
        tmp_path, monkeypatch):
    with VirtualKey.create(tmp_path / "k.key", profile="latest") as key:
        ctap = Ctap2(fido_device(key))
        params = [{"type": "public-key", "alg": algorithms.MLDSA87}]
        # an ML-DSA-87 attestation (~3.5 KB) where only 3000 bytes could be carried
        monkeypatch.setattr(authenticator, "MAX_RESPONSE", 3000)
        with pytest.raises(CtapError) as e:
            ctap.make_credential(os.urandom(32), RP, {"id": b"u"}, params,
                                 options={"rk": True})
        assert e.value.code == CtapError.ERR.REQUEST_TOO_LARGE
        assert ctap.get_info().remaining_disc_creds == LATEST.max_resident
        monkeypatch.undo()
        att = ctap.make_credential(os.urandom(32), RP, {"id": b"u"}, params,
                                   options={"rk": True})
        assert len(cbor.encode(dict(att))) > 3000
        cdh = os.urandom(32)
        resp = ctap.get_assertion("example.com", cdh)
        resp.verify(cdh, att.auth_data.credential_data.public_key)
        assert len(resp.signature) == 4627


def test_ctaphid_never_truncates_a_message_too_long_to_frame(virtual_key):
    from hwtoken.emulator.applets.fido.ctaphid import MAX_MESSAGE, Cmd, CtapHidEngine

    engine = CtapHidEngine(virtual_key)
    engine._send(1, Cmd.CBOR, bytes(MAX_MESSAGE + 1))
    reports = [engine.read(0) for _ in range(engine.pending())]
    assert len(reports) == 1 and reports[0][4] == 0x80 | Cmd.ERROR
    engine._send(1, Cmd.CBOR, bytes(MAX_MESSAGE))  # the largest one fits in 129 reports
    assert engine.pending() == 129
