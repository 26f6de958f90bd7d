"""The virtual key's FIDO credentials (hwtoken.emulator.applets.fido.credentials).

What clients and relying parties see of them goes through python-fido2 over the in-process
transport: credential IDs that open only on the key and reset generation that made them,
tampered ones refused as a YubiKey refuses them, resident records given back whole after the
key is loaded again, hmac-secret and largeBlobKey values that stay the same across reloads
(and across hwtoken versions: they encrypt users' data), the one signature counter of CTAP2
and U2F. The credential ID payload and the stored record formats, which no client can reach
with anything the key did not make itself, are checked by calling the module.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap1 import ApduError, Ctap1
from fido2.ctap2 import CredentialManagement, Ctap2
from fido2.ctap2.extensions import HmacSecretExtension
from fido2.ctap2.pin import ClientPin
from fido2.server import Fido2Server
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import AttestedCredentialData

from hwtoken.emulator import VirtualKey, fido_device
from hwtoken.emulator.applets.fido import algorithms, credentials
from hwtoken.emulator.applets.fido.credentials import CredentialKey, ResidentRecord

RP_ID = "example.com"
RP_HASH = hashlib.sha256(RP_ID.encode()).digest()
ORIGIN = "https://example.com"
PIN = "12345678"
ERR = CtapError.ERR
P = ClientPin.PERMISSION
SW_WRONG_DATA = 0x6A80  # what a YubiKey answers U2F AUTHENTICATE for a handle not its own


def derive(secret: bytes, label: bytes) -> bytes:
    """The key's derivation, written out: HMAC-SHA-512(secret, "hwtoken-fido\\0" + label)."""
    return hmac.new(secret, b"hwtoken-fido\x00" + label, hashlib.sha512).digest()[:32]


def make(ctap, user_id=b"u", alg=-7, rk=False, **kw):
    return ctap.make_credential(os.urandom(32), {"id": RP_ID, "name": "Example"},
                                {"id": user_id}, [{"type": "public-key", "alg": alg}],
                                options={"rk": True} if rk else None, **kw)


def assert_with(ctap, cid, **kw):
    return ctap.get_assertion(RP_ID, os.urandom(32), [{"type": "public-key", "id": cid}], **kw)


def refused_over_ctap2(ctap, cid) -> None:
    with pytest.raises(CtapError) as e:
        assert_with(ctap, cid)
    assert e.value.code == ERR.NO_CREDENTIALS


def refused_over_u2f(device, cid) -> None:
    with pytest.raises(ApduError) as e:
        Ctap1(device).authenticate(os.urandom(32), RP_HASH, cid, check_only=True)
    assert e.value.code == SW_WRONG_DATA


@pytest.fixture
def key_path(tmp_path):
    return tmp_path / "k.key"


# -- credential IDs: which key, which reset generation, which bytes ------------------------
def test_ids_open_only_in_the_reset_generation_that_made_them(key_path):
    """Until the first reset the wrapping secret is the master secret itself (IDs made before
    resets existed keep opening); each reset derives a new one from the generation number,
    so IDs made in one generation are refused, over CTAP2 and U2F, in every later one. The
    derivation is written out: IDs handed out after a reset must still open after an
    upgrade of hwtoken."""
    with VirtualKey.create(key_path) as key:
        device = fido_device(key)
        ctap = Ctap2(device)
        master = key.master_secret
        made = []
        for generation in range(3):
            if generation:
                key.power_cycle()  # authenticatorReset only within 10 s of plugging in
                ctap.reset()
            cid = make(ctap).auth_data.credential_data.credential_id
            handle = Ctap1(device).register(os.urandom(32), RP_HASH).key_handle
            secret = master if generation == 0 else derive(
                master, b"wrap-generation-" + str(generation).encode())
            assert credentials.unwrap(secret, RP_HASH, cid) is not None
            assert_with(ctap, cid)
            Ctap1(device).authenticate(os.urandom(32), RP_HASH, handle)
            for old_cid, old_handle in made:
                refused_over_ctap2(ctap, old_cid)
                refused_over_u2f(device, old_cid)
                refused_over_u2f(device, old_handle)
            made.append((cid, handle))


def test_tampered_truncated_and_foreign_ids_are_refused(key_path, tmp_path):
    """CTAP2 answers CTAP2_ERR_NO_CREDENTIALS and U2F 6A80, as a YubiKey does."""
    with VirtualKey.create(tmp_path / "other.key") as other:
        foreign = make(Ctap2(fido_device(other))).auth_data.credential_data.credential_id
    with VirtualKey.create(key_path) as key:
        device = fido_device(key)
        ctap = Ctap2(device)
        cid = make(ctap).auth_data.credential_data.credential_id
        assert len(cid) == credentials.ID_LEN
        Ctap1(device).authenticate(os.urandom(32), RP_HASH, cid)  # the ID itself is fine

        def flip(i: int) -> bytes:
            return cid[:i] + bytes([cid[i] ^ 0x01]) + cid[i + 1:]

        bad = [cid[:-1], cid[:16], cid + b"\x00",
               b"\x01" + cid[1:], b"\x03" + cid[1:],  # another version byte
               flip(1), flip(20), flip(len(cid) - 1),  # nonce, payload, tag
               foreign]
        for b in bad:
            refused_over_ctap2(ctap, b)
            refused_over_u2f(device, b)
        with pytest.raises(ApduError) as e:  # and for another application
            Ctap1(device).authenticate(os.urandom(32), hashlib.sha256(b"x").digest(), cid)
        assert e.value.code == SW_WRONG_DATA


@pytest.mark.hwtoken_profile("latest")
def test_the_longest_credential_id_opens(ctap):
    """An RSA credential (its primes sealed in) with a 32-byte credBlob, the most a credBlob
    may hold, makes the longest ID there is; it must open like any other."""
    blob = os.urandom(credentials.MAX_CRED_BLOB)
    att = make(ctap, alg=algorithms.RS256, extensions={"credBlob": blob})
    assert att.auth_data.extensions == {"credBlob": True}
    cred = att.auth_data.credential_data
    assert len(cred.credential_id) == credentials.MAX_ID_LEN
    cdh = os.urandom(32)
    resp = ctap.get_assertion(RP_ID, cdh, [{"type": "public-key", "id": cred.credential_id}],
                              extensions={"credBlob": True})
    resp.verify(cdh, cred.public_key)
    assert resp.auth_data.extensions == {"credBlob": blob}
    too_long = make(ctap, extensions={"credBlob": blob + b"!"})
    assert too_long.auth_data.extensions == {"credBlob": False}  # refused, not cut


def _v1_id(master: bytes, flags: int, code: int, seed: bytes) -> bytes:
    """A version 1 credential ID as hwtoken made them before it recorded hmac-secret."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = b"\x00" + os.urandom(11)
    aead = AESGCM(derive(master, b"credential-wrap-v1"))
    return b"\x01" + nonce + aead.encrypt(nonce, bytes([flags, code]) + seed,
                                          b"\x01" + RP_HASH)


def test_version_1_ids_still_open_and_keep_their_hmac_secret(key_path):
    """A v1 CTAP2 credential (ES256 or EdDSA, the only algorithms then) keeps answering
    hmac-secret since nobody can tell whether it was made with it; a v1 U2F key handle
    never does, and still signs over U2F. Nothing else was ever a v1 ID."""
    with VirtualKey.create(key_path) as key:
        device = fido_device(key)
        cl = Fido2Client(device, DefaultClientDataCollector(ORIGIN),
                         extensions=[HmacSecretExtension(allow_hmac_secret=True)])
        server = Fido2Server({"id": RP_ID, "name": "Example"})
        for flags, alg, code, answers in ((0x00, -7, 1, True), (0x00, -8, 2, True),
                                          (0x08, -7, 1, False)):
            seed = os.urandom(32)
            cid = _v1_id(key.master_secret, flags, code, seed)
            public = CredentialKey(seed, alg).cose_public_key()
            cred = AttestedCredentialData.create(key.aaguid, cid, public)
            options, state = server.authenticate_begin([cred], user_verification="discouraged")
            salt = os.urandom(32)
            opts = dict(options.public_key, extensions={"hmacGetSecret": {"salt1": salt}})
            response = cl.get_assertion(opts).get_response(0)
            assert server.authenticate_complete(state, [cred], response) == cred
            results = response.client_extension_results
            if answers:
                out = websafe_decode(results["hmacGetSecret"]["output1"])
                expected = hmac.new(derive(seed, b"hmac-secret"), salt, hashlib.sha256)
                assert out == expected.digest()
            else:
                assert "hmacGetSecret" not in results
                challenge = os.urandom(32)
                sig = Ctap1(device).authenticate(challenge, RP_HASH, cid)
                point = b"\x04" + public[-2] + public[-3]
                sig.verify(RP_HASH, challenge, point)
        ctap = Ctap2(device)
        for flags, code in ((0x00, 3), (0x10, 1), (0x40, 1)):  # ES384, v2-only flags
            refused_over_ctap2(ctap, _v1_id(key.master_secret, flags, code, os.urandom(32)))


def test_cred_protect_of_non_resident_credentials(ctap, device):
    """Level 2 (userVerificationOptionalWithCredentialIDList) lets an allow list assert
    without UV, over CTAP2 and U2F; level 3 needs UV, so U2F refuses it."""
    optional = make(ctap, extensions={"credProtect": 2}).auth_data.credential_data
    assert_with(ctap, optional.credential_id)  # no UV needed
    Ctap1(device).authenticate(os.urandom(32), RP_HASH, optional.credential_id)
    required = make(ctap, extensions={"credProtect": 3}).auth_data.credential_data
    refused_over_ctap2(ctap, required.credential_id)
    refused_over_u2f(device, required.credential_id)


# -- resident records, read back after the key is loaded again ----------------------------
def _token(ctap, permission, rp_id=RP_ID):
    cp = ClientPin(ctap)
    return cp, cp.get_pin_token(PIN, permission, rp_id)


def test_resident_records_come_back_whole_after_a_reload(key_path):
    with VirtualKey.create(key_path) as key:
        ctap = Ctap2(fido_device(key))
        ClientPin(ctap).set_pin(PIN)
        cp, token = _token(ctap, P.MAKE_CREDENTIAL)
        cdh = os.urandom(32)
        user = {"id": b"alice", "name": "alice@example.com", "displayName": "Alice"}
        blob = os.urandom(32)
        alice = ctap.make_credential(
            cdh, {"id": RP_ID, "name": "Example Inc."}, user,
            [{"type": "public-key", "alg": -8}], options={"rk": True},
            extensions={"credProtect": 2, "largeBlobKey": True, "credBlob": blob},
            pin_uv_param=cp.protocol.authenticate(token, cdh),
            pin_uv_protocol=cp.protocol.VERSION)
        cp, token = _token(ctap, P.MAKE_CREDENTIAL)
        cdh = os.urandom(32)
        bob = ctap.make_credential(  # made later: discovered first
            cdh, {"id": RP_ID}, {"id": b"bob"}, [{"type": "public-key", "alg": -7}],
            options={"rk": True}, pin_uv_param=cp.protocol.authenticate(token, cdh),
            pin_uv_protocol=cp.protocol.VERSION)
        seed = credentials.unwrap(key.master_secret, RP_HASH,
                                  alice.auth_data.credential_data.credential_id).seed
    # the largeBlobKey encrypts the RP's large blob: it must never change
    assert alice.large_blob_key == derive(seed, b"large-blob-key")
    cred_a, cred_b = alice.auth_data.credential_data, bob.auth_data.credential_data

    with VirtualKey.load(key_path) as key:
        ctap = Ctap2(fido_device(key))
        cp, token = _token(ctap, P.GET_ASSERTION)
        cdh = os.urandom(32)
        first = ctap.get_assertion(RP_ID, cdh, pin_uv_param=cp.protocol.authenticate(token, cdh),
                                   pin_uv_protocol=cp.protocol.VERSION,
                                   extensions={"largeBlobKey": True, "credBlob": True})
        assert first.number_of_credentials == 2
        assert first.user == {"id": b"bob"} and first.large_blob_key is None
        first.verify(cdh, cred_b.public_key)
        second = ctap.get_next_assertion()
        assert second.user == user
        assert second.credential["id"] == cred_a.credential_id
        assert second.large_blob_key == alice.large_blob_key
        assert second.auth_data.extensions == {"credBlob": blob}
        second.verify(cdh, cred_a.public_key)
        assert cred_a.public_key[3] == -8

        # credProtect 2: not discoverable without UV, still usable from an allow list
        only = ctap.get_assertion(RP_ID, os.urandom(32))
        assert only.user == {"id": b"bob"} and only.number_of_credentials is None
        assert_with(ctap, cred_a.credential_id)

        cp, token = _token(ctap, P.CREDENTIAL_MGMT, None)
        cm = CredentialManagement(ctap, cp.protocol, token)
        rps = cm.enumerate_rps()
        assert [r[3] for r in rps] == [{"id": RP_ID, "name": "Example Inc."}]
        creds = {c[6]["id"]: c for c in cm.enumerate_creds(RP_HASH)}
        assert creds[b"alice"][6] == user
        assert creds[b"alice"][10] == 2  # credProtect
        assert creds[b"alice"][11] == alice.large_blob_key
        assert creds[b"bob"][10] == 1 and 11 not in creds[b"bob"]


class _Pin(UserInteraction):
    def request_pin(self, permissions, rp_id):
        return PIN


def test_hmac_secret_with_and_without_uv_survives_a_reload(key_path):
    """CTAP 2.1: a credential has one CredRandom for assertions with UV and another without;
    both stay the same after a reload, and they are derived as they always were, since
    their outputs are disk and vault keys."""
    salt = os.urandom(32)
    prf = {"prf": {"eval": {"first": websafe_encode(salt)}}}
    server = Fido2Server({"id": RP_ID, "name": "Example"})

    def outputs(key, cred):
        device = fido_device(key)
        out = {}
        for uv, interaction in ((True, _Pin()), (False, None)):
            cl = Fido2Client(device, DefaultClientDataCollector(ORIGIN), interaction)
            options, state = server.authenticate_begin(
                [cred], user_verification="required" if uv else "discouraged")
            response = cl.get_assertion(dict(options.public_key, extensions=prf)
                                        ).get_response(0)
            server.authenticate_complete(state, [cred], response)
            assert response.response.authenticator_data.is_user_verified() is uv
            out[uv] = websafe_decode(response.client_extension_results["prf"]["results"]["first"])
        return out

    with VirtualKey.create(key_path) as key:
        device = fido_device(key)
        ClientPin(Ctap2(device)).set_pin(PIN)
        cl = Fido2Client(device, DefaultClientDataCollector(ORIGIN), _Pin())
        options, state = server.register_begin({"id": b"alice", "name": "alice"},
                                               resident_key_requirement="required",
                                               user_verification="required")
        reg = cl.make_credential(dict(options.public_key, extensions={"prf": {}}))
        cred = server.register_complete(state, reg).credential_data
        before = outputs(key, cred)
        seed = credentials.unwrap(key.master_secret, RP_HASH, cred.credential_id).seed
    with VirtualKey.load(key_path) as key:
        assert outputs(key, cred) == before
    assert before[True] != before[False]
    prf_salt = hashlib.sha256(b"WebAuthn PRF\x00" + salt).digest()
    for uv, label in ((True, b"hmac-secret-uv"), (False, b"hmac-secret")):
        assert before[uv] == hmac.new(derive(seed, label), prf_salt, hashlib.sha256).digest()


# -- the signature counter ------------------------------------------------------------------
def test_one_signature_counter_for_ctap2_and_u2f_rising_by_one(key_path):
    with VirtualKey.create(key_path) as key:
        device = fido_device(key)
        ctap = Ctap2(device)
        att = make(ctap)
        cid = att.auth_data.credential_data.credential_id
        counters = [att.auth_data.counter]
        for _ in range(2):
            counters.append(assert_with(ctap, cid).auth_data.counter)
            counters.append(Ctap1(device).authenticate(os.urandom(32), RP_HASH, cid).counter)
        assert counters == list(range(counters[0], counters[0] + 5))
    with VirtualKey.load(key_path) as key:  # a clean close keeps the exact value
        device = fido_device(key)
        assert Ctap1(device).authenticate(os.urandom(32), RP_HASH, cid).counter \
            == counters[-1] + 1
        assert assert_with(Ctap2(device), cid).auth_data.counter == counters[-1] + 2


# -- the formats, where only the module itself can reach ----------------------------------
def test_the_credential_id_carries_every_field():
    for alg in credentials.SUPPORTED_ALGORITHMS:
        base = CredentialKey.generate(alg)
        assert len(base.material) == base.algorithm.material_len
        public = base.cose_public_key()  # private_key() is the other half of it
        assert type(public).from_cryptography_key(base.private_key().public_key()) == public
        for resident, u2f, hmac_secret, tpp, level in itertools.product(
                (False, True), (False, True), (False, True), (False, True), range(4)):
            cred = CredentialKey(base.seed, alg, level, resident, u2f, b"b" * level,
                                 hmac_secret, tpp, base.material)
            assert CredentialKey.from_payload(cred.payload()) == cred
        cid = credentials.wrap(b"m" * 32, RP_HASH, base)
        assert credentials.unwrap(b"m" * 32, RP_HASH, cid) == base
        assert credentials.unwrap(b"n" * 32, RP_HASH, cid) is None


def test_payloads_the_format_does_not_allow_are_refused():
    seed = os.urandom(32)
    rsa = CredentialKey.generate(algorithms.RS256)
    ok = bytes([0x00, 1]) + seed
    assert CredentialKey.from_payload(ok) == CredentialKey(seed)
    assert CredentialKey.from_payload(ok + b"x" * 32).cred_blob == b"x" * 32
    assert CredentialKey.from_payload(ok, credentials.LEGACY_VERSION).hmac_secret is True
    assert CredentialKey.from_payload(bytes([0x03, 2]) + seed, 1).alg == -8  # v1 EdDSA
    bad = [
        (b"", 2), (b"\x00", 2), (ok[:-1], 2),  # too short
        (bytes([0x00, 0]) + seed, 2), (bytes([0x00, 99]) + seed, 2),  # no such algorithm
        (bytes([0x40, 1]) + seed, 2), (bytes([0x80, 1]) + seed, 2),  # unknown flags
        (bytes([0x10, 1]) + seed, 1), (bytes([0x20, 1]) + seed, 1),  # v2-only flags in v1
        (bytes([0x00, 3]) + seed, 1), (bytes([0x00, 6]) + seed, 1),  # v1 had ES256/EdDSA
        (ok + b"x" * 33, 2),  # a credBlob longer than 32 bytes
        (rsa.payload()[:100], 2), (rsa.payload()[:2 + 32 + 255], 2),  # RSA without primes
    ]
    for payload, version in bad:
        assert CredentialKey.from_payload(payload, version) is None, (payload[:2], version)


def test_wrap_refuses_a_credential_it_could_not_open_again():
    seed = os.urandom(32)
    message = r"^bad credential seed, material or credBlob$"
    for cred in (CredentialKey(seed[:31]), CredentialKey(seed + b"!"),
                 CredentialKey(seed, cred_blob=b"x" * 33),
                 CredentialKey(seed, material=b"p" * 256),  # ES256 has no primes
                 CredentialKey(seed, algorithms.PS256)):  # PS256 needs them
        with pytest.raises(ValueError, match=message):
            credentials.wrap(b"m" * 32, RP_HASH, cred)
    cid = credentials.wrap(b"m" * 32, RP_HASH, CredentialKey(seed, cred_blob=b"x" * 32))
    assert credentials.unwrap(b"m" * 32, RP_HASH, cid).cred_blob == b"x" * 32


def test_misuse_errors():
    with pytest.raises(ValueError, match=r"^unsupported algorithm -999$"):
        CredentialKey.generate(-999)
    assert len(CredentialKey.generate().public_point()) == 65
    for alg in (algorithms.ES384, algorithms.EDDSA):  # U2F has only P-256 points
        with pytest.raises(ValueError, match=r"^only ES256 credentials have a P-256 point$"):
            CredentialKey.generate(alg).public_point()


def test_resident_record_store_format():
    rec = ResidentRecord(b"id", RP_ID, {"id": RP_ID, "name": "E"},
                         {"id": b"u", "name": "n", "displayName": "N"}, created=7,
                         large_blob_key=True, extra={"future": [1, b"2"]})
    stored = rec.to_store()
    assert stored == {"id": b"id", "rp_id": RP_ID, "rp": rec.rp, "user": rec.user,
                      "created": 7, "large_blob_key": True, "extra": {"future": [1, b"2"]}}
    assert ResidentRecord.from_store(stored) == rec
    # a record without the optional fields (an older or hand-edited store) gets defaults
    minimal = {"id": b"id", "rp_id": RP_ID, "rp": {"id": RP_ID}, "user": {"id": b"u"}}
    assert ResidentRecord.from_store(minimal) == ResidentRecord(
        b"id", RP_ID, {"id": RP_ID}, {"id": b"u"}, created=0, large_blob_key=False, extra={})
