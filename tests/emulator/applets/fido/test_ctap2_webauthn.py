"""End to end: fido2's Fido2Client + Fido2Server against the virtual key's CTAP2 authenticator."""

from __future__ import annotations

import os

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.extensions import HmacSecretExtension
from fido2.ctap2.pin import ClientPin
from fido2.server import Fido2Server
from fido2.webauthn import (
    AttestationConveyancePreference,
    PublicKeyCredentialRpEntity,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from hwtoken.emulator import VirtualKey, fido_device
from hwtoken.emulator.applets.fido import attestation
from hwtoken.emulator.presence import Decision, DenyAlways, UserPresence

RP = PublicKeyCredentialRpEntity(name="Example", id="example.com")
ORIGIN = "https://example.com"
PIN = "4711-secret"


class Interaction(UserInteraction):
    def __init__(self, pin: str | None = None) -> None:
        self.pin = pin
        self.asked = 0

    def request_pin(self, permissions, rp_id):
        self.asked += 1
        return self.pin


def client(device, pin=None, **kw):
    return Fido2Client(device, DefaultClientDataCollector(ORIGIN), Interaction(pin), **kw)


def user(name: str) -> PublicKeyCredentialUserEntity:
    return PublicKeyCredentialUserEntity(name=name, id=name.encode(), display_name=name.title())


def register(server, cl, name="alice", creds=(), **kw):
    # fido2 2.x refuses "preferred" UV on a key that supports a PIN but has none set
    kw.setdefault("user_verification", UserVerificationRequirement.DISCOURAGED)
    options, state = server.register_begin(user(name), list(creds), **kw)
    response = cl.make_credential(options.public_key)
    auth_data = server.register_complete(state, response)
    return auth_data, response


def authenticate(server, cl, creds, allow=True, index=0, **kw):
    kw.setdefault("user_verification", UserVerificationRequirement.DISCOURAGED)
    options, state = server.authenticate_begin(list(creds) if allow else None, **kw)
    selection = cl.get_assertion(options.public_key)
    response = selection.get_response(index)
    cred = server.authenticate_complete(state, list(creds), response)
    return cred, response, selection


def test_register_and_authenticate_without_pin(device, key):
    server = Fido2Server(RP, attestation=AttestationConveyancePreference.DIRECT)
    cl = client(device)
    auth_data, response = register(server, cl)
    cred = auth_data.credential_data
    assert auth_data.is_user_present() and not auth_data.is_user_verified()
    # packed attestation with an x5c chain that leads to the key's own CA
    att = response.response.attestation_object
    assert att.fmt == "packed"
    leaf = x509.load_der_x509_certificate(att.att_stmt["x5c"][0])
    root = x509.load_der_x509_certificate(attestation.attestation_root(key))
    root.public_key().verify(leaf.signature, leaf.tbs_certificate_bytes,
                             ec.ECDSA(hashes.SHA256()))
    ou = leaf.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATIONAL_UNIT_NAME)
    assert ou[0].value == "Authenticator Attestation"

    counters = [auth_data.counter]
    for _ in range(3):
        got, resp, _ = authenticate(server, cl, [cred])
        assert got.credential_id == cred.credential_id
        counters.append(resp.response.authenticator_data.counter)
    assert counters == sorted(set(counters)), "signature counter must strictly rise"


def test_eddsa_credential(device):
    server = Fido2Server(RP)
    server.allowed_algorithms = [p for p in server.allowed_algorithms if p.alg == -8]
    cl = client(device)
    auth_data, _ = register(server, cl)
    assert auth_data.credential_data.public_key[3] == -8
    authenticate(server, cl, [auth_data.credential_data])


def test_foreign_credential_is_rejected(device, tmp_path):
    server = Fido2Server(RP)
    other = VirtualKey.create(tmp_path / "other.key")
    try:
        auth_data, _ = register(server, client(fido_device(other)))
    finally:
        other.close()
    with pytest.raises(ClientError):
        authenticate(server, client(device), [auth_data.credential_data])


def test_exclude_list(device):
    server = Fido2Server(RP)
    cl = client(device)
    auth_data, _ = register(server, cl)
    with pytest.raises(ClientError) as e:
        register(server, cl, creds=[auth_data.credential_data])
    assert e.value.code == ClientError.ERR.DEVICE_INELIGIBLE


class _TouchTimesOut(UserPresence):
    """Nobody touches the key in time."""

    def decide(self, reason, cancel, keepalive):
        return Decision.TIMEOUT


@pytest.mark.parametrize(("policy", "without_exclusion"),
                         [(DenyAlways, CtapError.ERR.OPERATION_DENIED),
                          (_TouchTimesOut, CtapError.ERR.USER_ACTION_TIMEOUT)],
                         ids=["touch-refused", "touch-timed-out"])
def test_excluded_credential_is_excluded_whatever_the_touch(key, device, policy,
                                                            without_exclusion):
    # CTAP 2.1 makeCredential step 11: CREDENTIAL_EXCLUDED "regardless of whether user
    # presence is obtained"
    ctap = Ctap2(device)
    es256 = [{"type": "public-key", "alg": -7}]
    made = ctap.make_credential(os.urandom(32), {"id": RP["id"]}, {"id": b"u"}, es256)
    excluded = [{"type": "public-key",
                 "id": made.auth_data.credential_data.credential_id}]
    key.presence = policy()
    with pytest.raises(CtapError) as e:
        ctap.make_credential(os.urandom(32), {"id": RP["id"]}, {"id": b"u2"}, es256,
                             exclude_list=excluded)
    assert e.value.code == CtapError.ERR.CREDENTIAL_EXCLUDED
    with pytest.raises(CtapError) as e:  # the same touch without the exclusion
        ctap.make_credential(os.urandom(32), {"id": RP["id"]}, {"id": b"u2"}, es256)
    assert e.value.code == without_exclusion


def set_pin(device, pin=PIN, protocol=None):
    ClientPin(Ctap2(device), protocol).set_pin(pin)


def test_register_and_authenticate_with_pin(device):
    set_pin(device)
    server = Fido2Server(RP)
    interaction = Interaction(PIN)
    cl = Fido2Client(device, DefaultClientDataCollector(ORIGIN), interaction)
    auth_data, _ = register(server, cl, user_verification=UserVerificationRequirement.REQUIRED)
    assert auth_data.is_user_verified()
    _, resp, _ = authenticate(server, cl, [auth_data.credential_data],
                              user_verification=UserVerificationRequirement.REQUIRED)
    assert resp.response.authenticator_data.is_user_verified()
    assert interaction.asked >= 2

    wrong = client(device, pin="not-the-pin")
    with pytest.raises(ClientError) as e:
        authenticate(server, wrong, [auth_data.credential_data],
                     user_verification=UserVerificationRequirement.REQUIRED)
    assert e.value.code == ClientError.ERR.BAD_REQUEST
    assert ClientPin(Ctap2(device)).get_pin_retries()[0] == 7


def test_resident_credentials_found_without_allow_list(device):
    set_pin(device)
    server = Fido2Server(RP)
    cl = client(device, pin=PIN)
    creds = []
    for name in ("alice", "bob"):
        auth_data, _ = register(server, cl, name=name,
                                resident_key_requirement=ResidentKeyRequirement.REQUIRED)
        creds.append(auth_data.credential_data)
    _, _, selection = authenticate(server, cl, creds, allow=False,
                                   user_verification=UserVerificationRequirement.REQUIRED)
    responses = selection.get_assertions()
    assert len(responses) == 2
    handles = {r.user["id"] for r in responses}
    assert handles == {b"alice", b"bob"}
    names = {r.user.get("name") for r in responses}
    assert names == {"alice", "bob"}  # with UV the key returns the user's name
    for i in range(2):
        authenticate(server, cl, creds, allow=False, index=i,
                     user_verification=UserVerificationRequirement.REQUIRED)


def test_resident_credential_without_pin_needs_no_uv(device):
    server = Fido2Server(RP)
    cl = client(device)
    auth_data, _ = register(server, cl, resident_key_requirement=ResidentKeyRequirement.REQUIRED)
    cred, resp, _ = authenticate(server, cl, [auth_data.credential_data], allow=False)
    assert resp.response.user_handle == b"alice"


def prf_eval(server, cl, creds, salt, allow=True):
    _, resp, _ = authenticate(server, cl, creds, allow=allow,
                              extensions={"prf": {"eval": {"first": salt}}})
    return resp.client_extension_results["prf"]["results"]["first"]


def test_prf_hmac_secret_stable_per_salt_distinct_per_credential(device):
    server = Fido2Server(RP)
    cl = client(device)
    a, ra = register(server, cl, "alice", extensions={"prf": {}})
    b, _ = register(server, cl, "bob", extensions={"prf": {}})
    assert ra.client_extension_results["prf"]["enabled"] is True
    salt1, salt2 = os.urandom(32), os.urandom(32)
    out_a1 = prf_eval(server, cl, [a.credential_data], salt1)
    assert prf_eval(server, cl, [a.credential_data], salt1) == out_a1
    assert prf_eval(server, cl, [a.credential_data], salt2) != out_a1
    assert prf_eval(server, cl, [b.credential_data], salt1) != out_a1
    from fido2.utils import websafe_decode

    assert len(websafe_decode(out_a1)) == 32


@pytest.mark.parametrize("protocol", [1, 2])
def test_raw_hmac_secret_two_salts(device, protocol):
    from fido2.ctap2.pin import PinProtocolV1, PinProtocolV2

    ctap = Ctap2(device)
    proto = PinProtocolV1() if protocol == 1 else PinProtocolV2()
    rp_id, cdh = "example.com", os.urandom(32)
    att = ctap.make_credential(cdh, {"id": rp_id}, {"id": b"u"},
                               [{"type": "public-key", "alg": -7}],
                               extensions={"hmac-secret": True})
    assert att.auth_data.extensions == {"hmac-secret": True}
    cid = att.auth_data.credential_data.credential_id
    client_pin = ClientPin(ctap, proto)

    def outputs(salts: bytes) -> bytes:
        key_agreement, shared = client_pin._get_shared_secret()
        enc = proto.encrypt(shared, salts)
        resp = ctap.get_assertion(rp_id, cdh, [{"type": "public-key", "id": cid}], extensions={
            "hmac-secret": {1: key_agreement, 2: enc, 3: proto.authenticate(shared, enc),
                            4: protocol}})
        return proto.decrypt(shared, resp.auth_data.extensions["hmac-secret"])

    s1, s2 = os.urandom(32), os.urandom(32)
    both = outputs(s1 + s2)
    assert len(both) == 64
    assert outputs(s1) == both[:32]
    assert outputs(s2) == both[32:]

    from fido2.ctap import CtapError

    for bad in (os.urandom(16), os.urandom(48), os.urandom(96)):  # not 1 or 2 salts
        with pytest.raises(CtapError) as e:
            outputs(bad)
        assert e.value.code == CtapError.ERR.INVALID_PARAMETER  # CTAP 2.1 hmac-secret
    key_agreement, shared = client_pin._get_shared_secret()
    enc = proto.encrypt(shared, s1)
    with pytest.raises(CtapError) as e:  # saltAuth that does not match
        ctap.get_assertion(rp_id, cdh, [{"type": "public-key", "id": cid}], extensions={
            "hmac-secret": {1: key_agreement, 2: enc,
                            3: proto.authenticate(shared, enc + b"x"), 4: protocol}})
    assert e.value.code == CtapError.ERR.PIN_AUTH_INVALID
    assert outputs(s1) == both[:32]  # and the key is still fine


def test_cred_protect_levels_enforced(device):
    server = Fido2Server(RP)
    cl = client(device)
    optional_list, _ = register(server, cl, "alice", extensions={
        "credentialProtectionPolicy": "userVerificationOptionalWithCredentialIDList",
        "enforceCredentialProtectionPolicy": True},
        resident_key_requirement=ResidentKeyRequirement.REQUIRED)
    assert optional_list.extensions == {"credProtect": 2}
    required, _ = register(server, cl, "bob", extensions={
        "credentialProtectionPolicy": "userVerificationRequired",
        "enforceCredentialProtectionPolicy": True},
        resident_key_requirement=ResidentKeyRequirement.REQUIRED)
    assert required.extensions == {"credProtect": 3}
    # no PIN: no UV possible
    # level 2: usable with its credential ID, invisible without an allow list
    authenticate(server, cl, [optional_list.credential_data])
    ctap = Ctap2(device)
    from fido2.ctap import CtapError

    with pytest.raises(CtapError) as e:
        ctap.get_assertion("example.com", os.urandom(32))
    assert e.value.code == CtapError.ERR.NO_CREDENTIALS
    # level 3: not even with its credential ID
    with pytest.raises(CtapError) as e:
        ctap.get_assertion("example.com", os.urandom(32), [
            {"type": "public-key", "id": required.credential_data.credential_id}])
    assert e.value.code == CtapError.ERR.NO_CREDENTIALS
    # with a PIN (UV), both work, also without an allow list
    set_pin(device)
    uv_client = client(device, pin=PIN)
    _, _, selection = authenticate(server, uv_client,
                                   [optional_list.credential_data, required.credential_data],
                                   allow=False,
                                   user_verification=UserVerificationRequirement.REQUIRED)
    assert len(selection.get_assertions()) == 2


def test_cred_blob_and_large_blob_key(device):
    ctap = Ctap2(device)
    cdh = os.urandom(32)
    att = ctap.make_credential(cdh, {"id": "example.com"}, {"id": b"u"},
                               [{"type": "public-key", "alg": -7}], options={"rk": True},
                               extensions={"credBlob": b"blob!", "largeBlobKey": True})
    assert att.auth_data.extensions == {"credBlob": True}
    assert att.large_blob_key is not None and len(att.large_blob_key) == 32
    resp = ctap.get_assertion("example.com", cdh,
                              extensions={"credBlob": True, "largeBlobKey": True})
    assert resp.auth_data.extensions == {"credBlob": b"blob!"}
    assert resp.large_blob_key == att.large_blob_key


def test_none_attestation_when_preferred(device):
    ctap = Ctap2(device)
    resp = ctap.send_cbor(Ctap2.CMD.MAKE_CREDENTIAL, {
        1: os.urandom(32), 2: {"id": "example.com"}, 3: {"id": b"u"},
        4: [{"type": "public-key", "alg": -7}], 0x0B: ["none", "packed"]})
    assert resp[1] == "none" and resp[3] == {}


def test_hmac_get_secret_through_fido2_client(device):
    server = Fido2Server(RP)
    cl = client(device, extensions=[HmacSecretExtension(allow_hmac_secret=True)])
    reg, resp = register(server, cl, extensions={"hmacCreateSecret": True})
    assert resp.client_extension_results["hmacCreateSecret"] is True
    s1, s2 = os.urandom(32), os.urandom(32)

    def get(salts):
        _, r, _ = authenticate(server, cl, [reg.credential_data],
                               extensions={"hmacGetSecret": salts})
        return r.client_extension_results["hmacGetSecret"]

    first = get({"salt1": s1, "salt2": s2})
    again = get({"salt1": s1})
    assert first["output1"] == again["output1"]
    assert first["output2"] != first["output1"]


@pytest.mark.parametrize("protocol", [1, 2])
def test_prf_and_large_blob_with_pin(device, protocol, monkeypatch):
    from fido2.ctap2.pin import PinProtocolV1, PinProtocolV2
    from fido2.utils import websafe_decode, websafe_encode

    proto = PinProtocolV1 if protocol == 1 else PinProtocolV2
    monkeypatch.setattr(ClientPin, "PROTOCOLS", [proto])
    set_pin(device)
    server = Fido2Server(RP)
    cl = client(device, pin=PIN)
    req = UserVerificationRequirement.REQUIRED
    reg, resp = register(server, cl, user_verification=req,
                         resident_key_requirement=ResidentKeyRequirement.REQUIRED,
                         extensions={"prf": {}, "largeBlob": {"support": "required"},
                                     "credBlob": b"cb"})
    assert resp.client_extension_results["prf"]["enabled"] is True
    assert resp.client_extension_results["largeBlob"]["supported"] is True
    creds = [reg.credential_data]
    salt = websafe_encode(os.urandom(32))
    outs = []
    for _ in range(2):
        _, r, _ = authenticate(server, cl, creds, user_verification=req,
                               extensions={"prf": {"eval": {"first": salt}}})
        outs.append(r.client_extension_results["prf"]["results"]["first"])
    assert outs[0] == outs[1]
    _, r, _ = authenticate(server, cl, creds, user_verification=req,
                           extensions={"largeBlob": {"write": websafe_encode(b"hello")}})
    assert r.client_extension_results["largeBlob"]["written"] is True
    _, r, _ = authenticate(server, cl, creds, user_verification=req,
                           extensions={"largeBlob": {"read": True}, "getCredBlob": True})
    assert websafe_decode(r.client_extension_results["largeBlob"]["blob"]) == b"hello"
    assert r.response.authenticator_data.extensions["credBlob"] == b"cb"


def test_exclude_and_allow_lists_with_pin(device):
    from fido2.server import to_descriptor

    set_pin(device)
    server = Fido2Server(RP)
    cl = client(device, pin=PIN)
    req = UserVerificationRequirement.REQUIRED
    reg, _ = register(server, cl, user_verification=req)
    others = [{"id": os.urandom(32), "type": "public-key"} for _ in range(5)]
    register(server, cl, "bob", creds=others, user_verification=req)  # none of ours
    with pytest.raises(ClientError, match="CREDENTIAL_EXCLUDED"):
        register(server, cl, "carol", creds=others[:3] + [to_descriptor(reg.credential_data)],
                 user_verification=req)
    allow = others[:3] + [to_descriptor(reg.credential_data)] + others[3:]
    options, state = server.authenticate_begin(allow, user_verification=req)
    response = cl.get_assertion(options.public_key).get_response(0)
    server.authenticate_complete(state, [reg.credential_data], response)
    options, _ = server.authenticate_begin(others, user_verification=req)
    with pytest.raises(ClientError, match="DEVICE_INELIGIBLE"):
        cl.get_assertion(options.public_key)


@pytest.mark.hwtoken_profile("latest")  # hmac-secret-mc is CTAP 2.2
def test_prf_evaluated_at_registration(device):
    from fido2.utils import websafe_encode

    set_pin(device)
    server = Fido2Server(RP)
    cl = client(device, pin=PIN)
    req = UserVerificationRequirement.REQUIRED
    s1, s2 = websafe_encode(os.urandom(32)), websafe_encode(os.urandom(32))
    reg, resp = register(server, cl, user_verification=req,
                         extensions={"prf": {"eval": {"first": s1, "second": s2}}})
    at_registration = resp.client_extension_results["prf"]["results"]
    assert at_registration["first"] != at_registration["second"]
    _, r, _ = authenticate(server, cl, [reg.credential_data], user_verification=req,
                           extensions={"prf": {"eval": {"first": s1, "second": s2}}})
    assert r.client_extension_results["prf"]["results"] == at_registration
