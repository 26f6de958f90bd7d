"""previewSign on a ``latest`` key, through python-fido2's Ctap2 and Fido2Client: every
algorithm signs what a verifier checks with the published key, ARKG keys derived by the
relying party sign, the inner attestation object verifies, and each wrong input ends with
the exact CTAP status. Models other than ``latest`` do not offer it."""

from __future__ import annotations

import os

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.extensions import PreviewSignExtension
from fido2.ctap2.pin import ClientPin
from fido2.server import Fido2Server
from fido2.utils import sha256, websafe_decode, websafe_encode
from fido2.webauthn import AttestationObject

from hwtoken.emulator import VirtualKey, fido_device
from hwtoken.emulator.applets.fido.ctap2 import preview_sign

ERR = CtapError.ERR
RP = {"id": "example.com", "name": "Example"}
USER = {"id": b"user", "name": "alice"}
ES256_PARAMS = [{"type": "public-key", "alg": -7}]
CDH = sha256(b"{}")
PIN = "12345678"
ARKG = preview_sign.ESP256_SPLIT_ARKG


pytestmark = pytest.mark.hwtoken_profile("latest")  # (the plugin's virtual_key: `key`)


class Made:
    """A credential made with previewSign, and its signing key."""

    def __init__(self, response):
        self.response = response
        self.credential_id = response.auth_data.credential_data.credential_id
        out = response.auth_data.extensions["previewSign"]
        self.algorithm, self.flags = out[3], out[4]
        inner = cbor.decode(response.unsigned_extension_outputs["previewSign"][7])
        self.att_obj = AttestationObject.create(inner[1], inner[2], inner[3])
        self.key_handle = self.att_obj.auth_data.credential_data.credential_id
        self.public_key = self.att_obj.auth_data.credential_data.public_key


def make(ctap, algorithms, flags=0, *, pin_token=None, **kw):
    extensions = {"previewSign": {3: algorithms, 4: flags}, **kw.pop("extensions", {})}
    if pin_token is not None:
        protocol, token = pin_token
        kw.update(pin_uv_param=protocol.authenticate(token, CDH),
                  pin_uv_protocol=protocol.VERSION)
    return Made(ctap.make_credential(CDH, RP, USER, ES256_PARAMS, extensions=extensions, **kw))


def sign(ctap, made, tbs, args=None, *, up=False, key_handle=None, credential_id=None,
         pin_token=None):
    inputs = {2: key_handle or made.key_handle, 6: tbs}
    if args is not None:
        inputs[7] = cbor.encode(args)
    kw = {}
    if pin_token is not None:
        protocol, token = pin_token
        kw = {"pin_uv_param": protocol.authenticate(token, CDH),
              "pin_uv_protocol": protocol.VERSION}
    response = ctap.get_assertion(
        RP["id"], CDH, [{"type": "public-key", "id": credential_id or made.credential_id}],
        extensions={"previewSign": inputs}, options={"up": up}, **kw)
    return response, response.auth_data.extensions["previewSign"][6]


def status(call):
    with pytest.raises(CtapError) as info:
        call()
    return info.value.code


# -- the algorithms ------------------------------------------------------------------------
@pytest.mark.parametrize(("alg", "verify_alg"), [(-9, -9), (-7, -7)])
def test_esp256_and_es256_sign_the_data_itself(ctap, alg, verify_alg):
    made = make(ctap, [alg])
    assert made.algorithm == alg and made.public_key[3] == verify_alg
    tbs = os.urandom(100)
    _, signature = sign(ctap, made, tbs)
    made.public_key.verify(tbs, signature)


@pytest.mark.parametrize("alg", [-300, -70009])
def test_esp256_split_signs_a_digest(ctap, alg):
    made = make(ctap, [alg])
    assert made.algorithm == alg and made.public_key[3] == -9  # what a verifier uses
    message = os.urandom(1000)
    _, signature = sign(ctap, made, sha256(message))
    made.public_key.verify(message, signature)


def test_split_algorithms_refuse_a_tbs_that_is_no_digest(ctap):
    made = make(ctap, [-300])
    assert status(lambda: sign(ctap, made, os.urandom(31))) == ERR.INVALID_OPTION
    assert status(lambda: sign(ctap, made, os.urandom(33))) == ERR.INVALID_OPTION


def test_the_first_algorithm_the_key_has_is_chosen(ctap):
    assert make(ctap, [-18, -300, -9]).algorithm == -300
    assert make(ctap, [-9, -7]).algorithm == -9


def test_esp256_split_arkg_signs_with_keys_the_rp_derives(ctap):
    made = make(ctap, [ARKG])
    seed = made.public_key
    assert (seed[1], seed[3], seed[-3]) == (-65537, -65700, -9)
    assert (seed[-1][3], seed[-2][3]) == (-7, -25)
    for ctx in (b"", b"ctx-1", bytes(64)):
        public, args = seed.derive_public_key(os.urandom(32), ctx)
        message = os.urandom(64)
        _, signature = sign(ctap, made, sha256(message), args)
        public.verify(message, signature)
        other, _ = seed.derive_public_key(os.urandom(32), ctx)
        with pytest.raises(InvalidSignature):
            other.verify(message, signature)


def test_arkg_arguments_are_checked(ctap):
    made = make(ctap, [ARKG])
    _, args = made.public_key.derive_public_key(os.urandom(32), b"ctx")
    digest = os.urandom(32)
    assert status(lambda: sign(ctap, made, digest)) == ERR.MISSING_PARAMETER
    assert status(lambda: sign(ctap, made, digest, {**args, 3: -9})) == ERR.INVALID_CREDENTIAL
    no_alg = {k: v for k, v in args.items() if k != 3}
    assert status(lambda: sign(ctap, made, digest, no_alg)) == ERR.INVALID_CREDENTIAL
    assert status(lambda: sign(ctap, made, digest, {**args, -2: b"other ctx"})
                  ) == ERR.INVALID_CREDENTIAL
    kh = bytearray(args[-1])
    kh[0] ^= 1
    assert status(lambda: sign(ctap, made, digest, {**args, -1: bytes(kh)})
                  ) == ERR.INVALID_CREDENTIAL
    assert status(lambda: sign(ctap, made, digest, {3: ARKG, -2: b"ctx"})
                  ) == ERR.MISSING_PARAMETER
    assert status(lambda: sign(ctap, made, digest, {**args, -1: "text"})
                  ) == ERR.CBOR_UNEXPECTED_TYPE
    sign(ctap, made, digest, {**args, 42: 1337})  # unknown arguments are ignored


def test_arkg_arguments_that_are_not_cbor(ctap):
    made = make(ctap, [ARKG])
    inputs = {2: made.key_handle, 6: os.urandom(32), 7: b"\xff\x00"}
    code = status(lambda: ctap.get_assertion(
        RP["id"], CDH, [{"type": "public-key", "id": made.credential_id}],
        extensions={"previewSign": inputs}, options={"up": False}))
    assert code == ERR.INVALID_CBOR


# -- makeCredential ------------------------------------------------------------------------
def test_unsupported_algorithms(ctap):
    assert status(lambda: make(ctap, [-18])) == ERR.UNSUPPORTED_ALGORITHM
    assert status(lambda: make(ctap, [])) == ERR.UNSUPPORTED_ALGORITHM


@pytest.mark.parametrize("flags", [0b010, 0b011, 0b100, 0b110, 0b111, 0b1000, 0x80, 255])
def test_invalid_flags(ctap, flags):
    assert status(lambda: make(ctap, [-9], flags)) == ERR.INVALID_OPTION


def test_input_types(ctap):
    def mc(value):
        return ctap.make_credential(CDH, RP, USER, ES256_PARAMS,
                                    extensions={"previewSign": value})

    assert status(lambda: mc({4: 0})) == ERR.MISSING_PARAMETER
    assert status(lambda: mc({3: -9})) == ERR.CBOR_UNEXPECTED_TYPE
    assert status(lambda: mc({3: ["-9"]})) == ERR.CBOR_UNEXPECTED_TYPE
    assert status(lambda: mc({3: [-9], 4: True})) == ERR.CBOR_UNEXPECTED_TYPE
    assert status(lambda: mc([-9])) == ERR.CBOR_UNEXPECTED_TYPE
    assert make(ctap, [-9], 0).flags == 0  # (flags default to none required)
    response = mc({3: [-9]})
    assert response.auth_data.extensions["previewSign"] == {3: -9, 4: 0}


def test_inner_attestation_object_is_packed_and_verifies(ctap, key):
    made = make(ctap, [-9], 0b001)
    outer, inner = made.response, made.att_obj
    assert inner.fmt == "packed" and outer.fmt == "packed"
    auth = inner.auth_data
    assert auth.rp_id_hash == outer.auth_data.rp_id_hash
    assert auth.counter == 0
    assert auth.flags == outer.auth_data.flags
    assert auth.credential_data.aaguid == outer.auth_data.credential_data.aaguid
    assert auth.credential_data.credential_id != made.credential_id
    assert auth.extensions == {"previewSign": {3: -9, 4: 0b001}}
    cert = x509.load_der_x509_certificate(inner.att_stmt["x5c"][0])
    cert.public_key().verify(inner.att_stmt["sig"], bytes(auth) + CDH,
                             ec.ECDSA(hashes.SHA256()))


def test_inner_attestation_follows_a_none_request(ctap):
    raw = ctap.send_cbor(Ctap2.CMD.MAKE_CREDENTIAL, {
        1: CDH, 2: RP, 3: USER, 4: ES256_PARAMS, 6: {"previewSign": {3: [-7], 4: 0}},
        0x0B: ["none"]})  # attestationFormatsPreference
    assert raw[1] == "none"
    inner = cbor.decode(raw[6]["previewSign"][7])
    assert inner[1] == "none" and inner[3] == {}


def test_two_keys_are_distinct_and_bound_to_their_credential(ctap):
    first, second = make(ctap, [-9]), make(ctap, [-9])
    assert first.key_handle != second.key_handle
    assert first.public_key != second.public_key
    tbs = os.urandom(32)
    _, signature = sign(ctap, first, tbs)
    with pytest.raises(InvalidSignature):
        second.public_key.verify(tbs, signature)
    # a key handle only opens with the credential it was made with
    assert status(lambda: sign(ctap, first, tbs, key_handle=second.key_handle)
                  ) == ERR.INVALID_CREDENTIAL


@pytest.mark.parametrize("damage", [
    lambda kh: kh[:-1],
    lambda kh: kh + b"\0",
    lambda kh: bytes([kh[0] ^ 1]) + kh[1:],
    lambda kh: kh[:1] + bytes([kh[1] ^ 1]) + kh[2:],   # another algorithm
    lambda kh: kh[:2] + bytes([kh[2] ^ 1]) + kh[3:],   # other flags
    lambda kh: kh[:-1] + bytes([kh[-1] ^ 1]),
])
def test_a_damaged_key_handle(ctap, damage):
    made = make(ctap, [-9], 0b001)
    code = status(lambda: sign(ctap, made, b"x", up=True,
                               key_handle=damage(made.key_handle)))
    assert code == ERR.INVALID_CREDENTIAL


# -- getAssertion --------------------------------------------------------------------------
def test_signing_needs_an_allow_list_a_key_handle_and_tbs(ctap):
    made = make(ctap, [-9], options={"rk": True}, extensions={"credProtect": 1})

    def ga(inputs, allow=True):
        allow_list = [{"type": "public-key", "id": made.credential_id}] if allow else None
        return ctap.get_assertion(RP["id"], CDH, allow_list,
                                  extensions={"previewSign": inputs}, options={"up": False})

    assert status(lambda: ga({2: made.key_handle, 6: b"x"}, allow=False)) == ERR.INVALID_OPTION
    assert status(lambda: ga({6: b"x"})) == ERR.INVALID_OPTION
    assert status(lambda: ga({2: made.key_handle})) == ERR.INVALID_OPTION
    assert status(lambda: ga({2: "kh", 6: b"x"})) == ERR.CBOR_UNEXPECTED_TYPE
    assert status(lambda: ga({2: made.key_handle, 6: "x"})) == ERR.CBOR_UNEXPECTED_TYPE
    assert status(lambda: ga(b"not a map")) == ERR.CBOR_UNEXPECTED_TYPE
    # without the extension the discoverable credential is found without an allow list
    assert ctap.get_assertion(RP["id"], CDH, None, options={"up": False}).credential[
        "id"] == made.credential_id


def test_presence_and_verification_policy(ctap, key):
    up_key = make(ctap, [-9], 0b001)
    assert status(lambda: sign(ctap, up_key, b"x")) == ERR.UP_REQUIRED
    response, _ = sign(ctap, up_key, b"x", up=True)
    assert response.auth_data.flags & 0x01

    uv_key = make(ctap, [-9], 0b101)
    assert status(lambda: sign(ctap, uv_key, b"x", up=True)) == ERR.PUAT_REQUIRED
    assert status(lambda: sign(ctap, uv_key, b"x")) == ERR.UP_REQUIRED
    ClientPin(ctap).set_pin(PIN)
    cp = ClientPin(ctap)
    token = (cp.protocol, cp.get_pin_token(PIN, ClientPin.PERMISSION.GET_ASSERTION,
                                          RP["id"]))
    response, signature = sign(ctap, uv_key, b"data", up=True, pin_token=token)
    assert response.auth_data.flags & 0x05 == 0x05
    uv_key.public_key.verify(b"data", signature)


def test_a_refused_touch_signs_nothing(ctap, key):
    from hwtoken.emulator import DenyAlways

    made = make(ctap, [-9], 0b001)
    key.presence = DenyAlways()
    assert status(lambda: sign(ctap, made, b"x", up=True)) == ERR.OPERATION_DENIED


def test_made_with_a_pin_token(ctap):
    ClientPin(ctap).set_pin(PIN)
    cp = ClientPin(ctap)
    token = (cp.protocol, cp.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL,
                                          RP["id"]))
    made = make(ctap, [-9], 0b101, pin_token=token)
    assert made.response.auth_data.flags & 0x04
    assert made.att_obj.auth_data.flags == made.response.auth_data.flags


# -- through the WebAuthn client -----------------------------------------------------------
def test_through_fido2_client_with_arkg(key):
    server = Fido2Server(RP, attestation="none")
    client = Fido2Client(fido_device(key), DefaultClientDataCollector("https://example.com"),
                         extensions=[PreviewSignExtension()])
    options, state = server.register_begin(USER, user_verification="discouraged")
    result = client.make_credential({**options["publicKey"], "extensions": {
        "previewSign": {"generateKey": {"algorithms": [ARKG]}}}})
    credential = server.register_complete(state, result).credential_data
    generated = result.client_extension_results.previewSign.generated_key
    assert generated.algorithm == ARKG
    seed = CoseKey.parse(cbor.decode(websafe_decode(generated["publicKey"])))
    public, args = seed.derive_public_key(os.urandom(32), b"hwtoken")

    request, state = server.authenticate_begin([credential], user_verification="discouraged")
    message = b"a document to sign"
    result = client.get_assertion({**request["publicKey"], "extensions": {"previewSign": {
        "signByCredential": {websafe_encode(credential.credential_id): {
            "keyHandle": generated.key_handle, "tbs": sha256(message),
            "additionalArgs": cbor.encode(args)}}}}})
    response = result.get_response(0)
    server.authenticate_complete(state, [credential], response)
    signature = websafe_decode(response.client_extension_results["previewSign"]["signature"])
    public.verify(message, signature)


@pytest.mark.parametrize("profile", ["yubikey-5", "security-key"])
def test_only_latest_offers_it(tmp_path, profile):
    key = VirtualKey.create(tmp_path / "k.key", profile=profile)
    try:
        ctap = Ctap2(fido_device(key))
        assert "previewSign" not in ctap.get_info().extensions
        response = ctap.make_credential(CDH, RP, USER, ES256_PARAMS,
                                        extensions={"previewSign": {3: [-9], 4: 0}})
        assert not response.auth_data.extensions
        assert "previewSign" not in response.unsigned_extension_outputs
    finally:
        key.close()


def test_latest_lists_it(ctap):
    assert "previewSign" in ctap.get_info().extensions


# -- the key handle and the keys, in-process -----------------------------------------------
FIXED_CRED_SEED = bytes(range(32))


def test_key_handles_and_keys_are_stable():
    """Nothing is stored: key handles and signing keys of credentials made by an earlier
    version must keep working, so their derivation is pinned."""
    from hwtoken.emulator.applets.fido.credentials import CredentialKey

    cred = CredentialKey(FIXED_CRED_SEED)
    key = preview_sign.SigningKey(preview_sign.ALGORITHMS[-9], 0b001, bytes(16))
    assert key.key_handle(cred).hex() == (
        "01010100000000000000000000000000000000d9186051738fa3e4675b67bb6f4b700a")
    assert key.cose_public_key(cred) == {
        1: 2, 3: -9, -1: 1,
        -2: bytes.fromhex("85e7627ea6e630504e2c968733d8e5f3a8469ff61f76ee6e1f7245708c1cb50f"),
        -3: bytes.fromhex("efd217db47f2cbbe8eaf2d803e9f017980b09f9985a34d280ac449107563e76d")}
    seed = preview_sign.SigningKey(preview_sign.ALGORITHMS[ARKG], 0, bytes(16))
    public_seed = seed.cose_public_key(cred)
    pk_bl, pk_kem = public_seed[-1], public_seed[-2]
    assert (pk_bl[1], pk_bl[-1], pk_kem[1], pk_kem[-1]) == (2, 1, 2, 1)  # EC2, P-256
    assert sorted(pk_bl) == sorted(pk_kem) == [-3, -2, -1, 1, 3]
    assert pk_bl[-2].hex() == "48fc51af71511014d88458fd9f2bc5b43e93de55f7f8370e87c888abea35ff6a"
    assert pk_kem[-2].hex() == (
        "5962a5f10b226341c8016419ee64364cf726b5c05451b64005f710106db7701e")
    assert len(pk_bl[-3]) == len(pk_kem[-3]) == 32


def test_only_well_formed_key_handles_open():
    """A handle whose tag is right still needs version 1, a known algorithm code and the
    exact length."""
    import hashlib
    import hmac

    from hwtoken.emulator.applets.fido.credentials import CredentialKey

    cred = CredentialKey(FIXED_CRED_SEED)
    mac_key = preview_sign._kh_mac_key(cred)

    def forged(header):
        return header + hmac.new(mac_key, header, hashlib.sha256).digest()[:16]

    opened = preview_sign.SigningKey.open(cred, forged(bytes([1, 5, 1]) + bytes(16)))
    assert opened == preview_sign.SigningKey(preview_sign.ALGORITHMS[ARKG], 1, bytes(16))
    assert preview_sign.SigningKey.open(cred, forged(bytes([2, 1, 0]) + bytes(16))) is None
    assert preview_sign.SigningKey.open(cred, forged(bytes([1, 9, 0]) + bytes(16))) is None
    assert preview_sign.SigningKey.open(cred, forged(bytes([1, 1, 0]) + bytes(17))) is None
    assert preview_sign.SigningKey.open(cred, forged(bytes([1, 1, 0]) + bytes(15))) is None
