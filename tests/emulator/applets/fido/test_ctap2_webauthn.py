"""The virtual key's CTAP2 authenticator: end to end with fido2's Fido2Client + Fido2Server,
and request by request (raw CBOR through python-fido2's Ctap2 or straight to
``Authenticator.process``) for the exact status codes and response fields."""

from __future__ import annotations

import hashlib
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


# -- the authenticator itself: what a touch is asked for, raw status codes, exact encoding ----
ES256 = [{"type": "public-key", "alg": -7}]


def test_each_touch_names_the_command_that_asks_for_it(key, device):
    """The reason a touch is asked for (what a prompt shows) names the command."""
    from hwtoken.emulator.presence import AskCallback

    asked: list[str] = []
    key.presence = AskCallback(lambda reason: asked.append(reason) or True)
    ctap = Ctap2(device)
    made = ctap.make_credential(os.urandom(32), {"id": RP.id}, {"id": b"u"}, ES256)
    cid = made.auth_data.credential_data.credential_id
    with pytest.raises(CtapError) as e:
        ctap.make_credential(os.urandom(32), {"id": RP.id}, {"id": b"v"}, ES256,
                             exclude_list=[{"type": "public-key", "id": cid}])
    assert e.value.code == CtapError.ERR.CREDENTIAL_EXCLUDED
    ctap.get_assertion(RP.id, os.urandom(32), [{"type": "public-key", "id": cid}])
    ctap.selection()
    key.power_cycle()  # (the reset window opens at power-up)
    ctap.reset()
    assert asked == ["makeCredential", "makeCredential (excluded)", "getAssertion",
                     "selection", "reset"]


@pytest.mark.parametrize("pin", [None, PIN], ids=["no-pin", "pin-set"])
def test_an_empty_pin_auth_asks_for_a_touch_then_says_whether_a_pin_is_set(key, device, pin):
    """CTAP 2.1 §6.1.2 step 1: a zero-length pinUvAuthParam is the platform's "touch me":
    after the touch, PIN_NOT_SET without a PIN and PIN_INVALID with one."""
    from hwtoken.emulator.presence import AskCallback

    if pin:
        set_pin(device)
    asked: list[str] = []
    key.presence = AskCallback(lambda reason: asked.append(reason) or True)
    ctap = Ctap2(device)
    expected = CtapError.ERR.PIN_INVALID if pin else CtapError.ERR.PIN_NOT_SET
    with pytest.raises(CtapError) as e:
        ctap.make_credential(os.urandom(32), {"id": RP.id}, {"id": b"u"}, ES256,
                             pin_uv_param=b"", pin_uv_protocol=2)
    assert e.value.code == expected
    with pytest.raises(CtapError) as e:
        ctap.get_assertion(RP.id, os.urandom(32), pin_uv_param=b"", pin_uv_protocol=2)
    assert e.value.code == expected
    assert asked == ["makeCredential", "getAssertion"]
    key.presence = DenyAlways()  # the touch comes first: refused, it is what is answered
    with pytest.raises(CtapError) as e:
        ctap.get_assertion(RP.id, os.urandom(32), pin_uv_param=b"", pin_uv_protocol=2)
    assert e.value.code == CtapError.ERR.OPERATION_DENIED


def test_raw_requests_get_the_status_codes_the_spec_assigns(key):
    """:meth:`Authenticator.process` directly (no transport in between)."""
    from fido2 import cbor

    auth = key.fido.authenticator
    assert auth.process(b"") == bytes([CtapError.ERR.INVALID_LENGTH])
    assert auth.process(b"\x99") == bytes([CtapError.ERR.INVALID_COMMAND])
    assert auth.process(b"\x02\xff") == bytes([CtapError.ERR.INVALID_CBOR])
    assert auth.process(b"\x0b") == b"\x00"  # selection: touched, nothing to answer

    def get_assertion_of_length(n: int) -> bytes:
        for length in range(n):
            request = b"\x02" + cbor.encode({1: "a" * length, 2: bytes(32)})
            if len(request) == n:
                return request
        raise AssertionError(n)

    largest = key.profile.max_msg_size  # a request of exactly maxMsgSize is processed
    assert auth.process(get_assertion_of_length(largest)) == bytes(
        [CtapError.ERR.NO_CREDENTIALS])
    assert auth.process(get_assertion_of_length(largest + 1)) == bytes(
        [CtapError.ERR.REQUEST_TOO_LARGE])


def test_a_bug_outside_strict_mode_is_answered_err_other(key, monkeypatch):
    from hwtoken.emulator.applets.fido.ctap2.authenticator import Authenticator

    def broken(self):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Authenticator, "internal_errors", None)
    monkeypatch.setattr(Authenticator, "get_info", broken)
    assert key.fido.authenticator.process(b"\x04") == bytes([CtapError.ERR.OTHER])


@pytest.mark.hwtoken_profile("latest")
@pytest.mark.parametrize("alg", [-7, -257, -48], ids=["ES256", "RS256", "ML-DSA-44"])
def test_an_assertion_is_canonical_cbor_whatever_its_lengths(key, alg):
    """getAssertion's own encoder (its fast path) writes what CTAP2's canonical CBOR is:
    a 256-byte RS256 signature and a 2420-byte ML-DSA-44 one have two-byte lengths."""
    from fido2 import cbor

    auth = key.fido.authenticator
    cdh = os.urandom(32)
    made = cbor.decode(auth.process(b"\x01" + cbor.encode({
        1: cdh, 2: {"id": RP.id}, 3: {"id": b"u"}, 4: [{"type": "public-key", "alg": alg}],
    }))[1:])
    cid = made[2][55:55 + int.from_bytes(made[2][53:55], "big")]
    raw = auth.process(b"\x02" + cbor.encode({1: RP.id, 2: cdh,
                                              3: [{"type": "public-key", "id": cid}]}))
    assert raw[0] == 0
    response = cbor.decode(raw[1:])
    assert raw[1:] == cbor.encode(response)
    assert sorted(response) == [1, 2, 3]
    assert response[1] == {"id": cid, "type": "public-key"}
    assert response[2][:32] == hashlib.sha256(RP.id.encode()).digest()
    assert len(response[3]) == {-7: len(response[3]), -257: 256, -48: 2420}[alg]


def _raw(key, cmd: int, request: dict | None = None, cancel=None):
    """``(status, decoded response)`` of one request straight to the authenticator."""
    from fido2 import cbor

    body = b"" if request is None else cbor.encode(request)
    raw = key.fido.authenticator.process(bytes([cmd]) + body, cancel=cancel)
    return raw[0], (cbor.decode(raw[1:]) if raw[1:] else None)


def _mc(fields: dict | None = None) -> dict:
    """A makeCredential request map: ES256 for example.com, ``fields`` on top."""
    return {1: os.urandom(32), 2: {"id": RP.id}, 3: {"id": b"u"}, 4: ES256, **(fields or {})}


def _cid(response: dict) -> bytes:
    auth_data = response[2]
    return auth_data[55:55 + int.from_bytes(auth_data[53:55], "big")]


@pytest.mark.parametrize(("fields", "status"), [
    ({2: {"id": RP.id, "name": 5}}, CtapError.ERR.CBOR_UNEXPECTED_TYPE),
    ({3: {"id": b"u", "name": 5}}, CtapError.ERR.CBOR_UNEXPECTED_TYPE),
    ({3: {"id": b"u", "displayName": 5}}, CtapError.ERR.CBOR_UNEXPECTED_TYPE),
    ({3: {"id": b"u", "icon": 5}}, CtapError.ERR.CBOR_UNEXPECTED_TYPE),
    ({3: {"id": bytes(65)}}, CtapError.ERR.INVALID_PARAMETER),  # user.id: at most 64
    ({0x0A: "1"}, CtapError.ERR.CBOR_UNEXPECTED_TYPE),  # enterpriseAttestation
    ({0x0B: "none"}, CtapError.ERR.CBOR_UNEXPECTED_TYPE),  # attestationFormatsPreference
    ({7: {"up": False}}, CtapError.ERR.INVALID_OPTION),
    ({2: {"id": RP.id, "name": "Example"}, 3: {"id": bytes(64), "name": "n",
                                               "displayName": "N", "icon": "i"}}, 0),
    ({7: {"up": True}}, 0),
], ids=["rp-name", "user-name", "user-display-name", "user-icon", "user-id-65",
        "enterprise", "formats", "up-false", "all-fields", "up-true"])
def test_make_credential_checks_each_parameter(key, fields, status):
    assert _raw(key, 0x01, _mc(fields))[0] == status


@pytest.mark.parametrize(("extensions", "options", "status"), [
    ({"credBlob": 5}, None, CtapError.ERR.CBOR_UNEXPECTED_TYPE),
    ({"largeBlobKey": 5}, None, CtapError.ERR.CBOR_UNEXPECTED_TYPE),
    ({"largeBlobKey": False}, None, CtapError.ERR.INVALID_OPTION),
    (None, {"rk": True}, CtapError.ERR.UNSUPPORTED_OPTION),
    (None, {"rk": False}, CtapError.ERR.UNSUPPORTED_OPTION),
    ({"credBlob": False, "largeBlobKey": True}, None, 0),
], ids=["credBlob-int", "largeBlobKey-int", "largeBlobKey-false", "rk", "rk-false", "ok"])
def test_get_assertion_checks_each_parameter(key, extensions, options, status):
    made = _raw(key, 0x01, _mc({6: {"credBlob": b"blob"}}))[1]
    request = {1: RP.id, 2: os.urandom(32), 3: [{"type": "public-key", "id": _cid(made)}]}
    if extensions is not None:
        request[4] = extensions
    if options is not None:
        request[5] = options
    got, response = _raw(key, 0x02, request)
    assert got == status
    if status == 0:  # credBlob false: not answered; largeBlobKey: only a resident's
        assert len(response[2]) == 37 and sorted(response) == [1, 2, 3]


@pytest.mark.hwtoken_profile("latest")
def test_get_assertion_checks_third_party_payment_is_a_bool(key):
    made = _raw(key, 0x01, _mc())[1]
    request = {1: RP.id, 2: os.urandom(32), 3: [{"type": "public-key", "id": _cid(made)}]}
    assert _raw(key, 0x02, {**request, 4: {"thirdPartyPayment": 1}})[0] == (
        CtapError.ERR.CBOR_UNEXPECTED_TYPE)
    status, response = _raw(key, 0x02, {**request, 4: {"thirdPartyPayment": True}})
    assert status == 0
    assert cbor_extensions(response[2]) == {"thirdPartyPayment": False}
    status, response = _raw(key, 0x02, {**request, 4: {"thirdPartyPayment": False}})
    assert status == 0 and len(response[2]) == 37  # not asked for: not answered


def cbor_extensions(auth_data: bytes) -> dict:
    """The extension outputs of an assertion's authenticator data (flag ED)."""
    from fido2 import cbor

    assert auth_data[32] & 0x80
    return cbor.decode(auth_data[37:])


def test_descriptors_of_another_type_are_skipped_not_the_end_of_the_list(key):
    made = _raw(key, 0x01, _mc())[1]
    cid = _cid(made)
    other = {"type": "not-public-key", "id": cid}
    ours = {"type": "public-key", "id": cid}
    assert _raw(key, 0x01, _mc({5: [other]}))[0] == 0  # only another type: nothing excluded
    assert _raw(key, 0x01, _mc({5: [other, ours]}))[0] == CtapError.ERR.CREDENTIAL_EXCLUDED
    request = {1: RP.id, 2: os.urandom(32)}
    assert _raw(key, 0x02, {**request, 3: [other]})[0] == CtapError.ERR.NO_CREDENTIALS
    status, response = _raw(key, 0x02, {**request, 3: [other, ours]})
    assert status == 0 and response[1] == {"id": cid, "type": "public-key"}


def test_a_cancelled_touch_is_keepalive_cancel_also_for_an_excluded_credential(key):
    import threading

    cancelled = threading.Event()
    cancelled.set()
    made = _raw(key, 0x01, _mc())[1]
    excluded = [{"type": "public-key", "id": _cid(made)}]
    assert _raw(key, 0x01, _mc({5: excluded}), cancel=cancelled)[0] == (
        CtapError.ERR.KEEPALIVE_CANCEL)
    assert _raw(key, 0x01, _mc(), cancel=cancelled)[0] == CtapError.ERR.KEEPALIVE_CANCEL
    assert _raw(key, 0x0B, cancel=cancelled)[0] == CtapError.ERR.KEEPALIVE_CANCEL
    assert _raw(key, 0x0B)[0] == 0


def test_ctap22_extensions_are_ignored_by_a_ctap21_model(key):
    """yubikey-5 offers neither hmac-secret-mc nor previewSign: a request for them (even a
    malformed one) is ignored, as any extension the key does not know."""
    status, made = _raw(key, 0x01, _mc({6: {"hmac-secret": True, "hmac-secret-mc": 5,
                                                 "previewSign": 5}}))
    assert status == 0
    assert cbor_extensions_mc(made[2]) == {"hmac-secret": True}


def cbor_extensions_mc(auth_data: bytes) -> dict:
    """The extension outputs of makeCredential's authenticator data (after the key)."""
    from fido2.webauthn import AuthenticatorData

    return dict(AuthenticatorData(auth_data).extensions)


def test_resident_credentials_come_newest_first_and_one_alone_is_not_counted(key):
    for user in (b"first", b"second", b"third"):
        assert _raw(key, 0x01, _mc({3: {"id": user, "name": user.decode()},
                                      7: {"rk": True}}))[0] == 0
    request = {1: RP.id, 2: os.urandom(32)}
    status, first = _raw(key, 0x02, request)
    assert status == 0
    assert (first[4], first[5]) == ({"id": b"third"}, 3)  # no UV: the user ID alone
    users = [_raw(key, 0x08)[1][4]["id"] for _ in range(2)]
    assert users == [b"second", b"first"]
    assert _raw(key, 0x08)[0] == CtapError.ERR.NOT_ALLOWED
    status, alone = _raw(key, 0x02, {1: "other.example", 2: os.urandom(32)})
    assert status == CtapError.ERR.NO_CREDENTIALS
    assert _raw(key, 0x01, {**_mc(), 2: {"id": "other.example"},
                            3: {"id": b"solo", "name": "solo"}, 7: {"rk": True}})[0] == 0
    status, alone = _raw(key, 0x02, {1: "other.example", 2: os.urandom(32)})
    assert status == 0 and sorted(alone) == [1, 2, 3, 4]  # no numberOfCredentials
    assert alone[4] == {"id": b"solo"}
    assert _raw(key, 0x08)[0] == CtapError.ERR.NOT_ALLOWED


class _Recorder(UserPresence):
    """Touches at once; records why and whether the request's own cancel event reached
    the wait, and sends one keepalive each time."""

    def __init__(self, cancel) -> None:
        self.cancel = cancel
        self.seen: list[tuple[str, bool]] = []

    def decide(self, reason, cancel, keepalive):
        self.seen.append((reason, cancel is self.cancel))
        if keepalive is not None:
            keepalive()
        return True


def _recorded(key, requests):
    """Run ``(cmd, request)`` pairs with one cancel event and a keepalive counter: the
    statuses, what the presence policy saw, and how many keepalives went out."""
    import threading

    from fido2 import cbor

    cancel = threading.Event()
    key.presence = recorder = _Recorder(cancel)
    keepalives: list[int] = []
    statuses = []
    for cmd, request in requests:
        body = b"" if request is None else cbor.encode(request)
        raw = key.fido.authenticator.process(bytes([cmd]) + body, cancel=cancel,
                                             keepalive=lambda: keepalives.append(1))
        statuses.append(raw[0])
    return statuses, list(recorder.seen), len(keepalives)


def test_every_touch_gets_the_requests_cancel_and_keepalive(key, device):
    ctap = Ctap2(device)
    made = ctap.make_credential(os.urandom(32), {"id": RP.id}, {"id": b"u"}, ES256)
    cid = made.auth_data.credential_data.credential_id
    allow = [{"type": "public-key", "id": cid}]
    key.power_cycle()
    statuses, seen, keepalives = _recorded(key, [
        (0x01, _mc()),
        (0x01, _mc({5: allow})),
        (0x02, {1: RP.id, 2: os.urandom(32), 3: allow}),
        (0x01, _mc({8: b"", 9: 1})),
        (0x02, {1: RP.id, 2: os.urandom(32), 6: b"", 7: 1}),
        (0x0B, None),
        (0x07, None),
    ])
    assert statuses == [0, CtapError.ERR.CREDENTIAL_EXCLUDED, 0, CtapError.ERR.PIN_NOT_SET,
                        CtapError.ERR.PIN_NOT_SET, 0, 0]
    assert seen == [("makeCredential", True), ("makeCredential (excluded)", True),
                    ("getAssertion", True), ("makeCredential", True),
                    ("getAssertion", True), ("selection", True), ("reset", True)]
    assert keepalives == 7


def test_reset_is_refused_after_the_window_and_forgets_everything_within_it(key, monkeypatch):
    from hwtoken.emulator.applets.fido.ctap2 import authenticator

    assert _raw(key, 0x01, _mc({7: {"rk": True}}))[0] == 0
    monkeypatch.setattr(key, "seconds_since_power_up", lambda: authenticator.RESET_WINDOW)
    assert _raw(key, 0x07)[0] == 0  # (exactly at the end of the window: still open)
    assert _raw(key, 0x02, {1: RP.id, 2: os.urandom(32)})[0] == CtapError.ERR.NO_CREDENTIALS
    monkeypatch.setattr(key, "seconds_since_power_up",
                        lambda: authenticator.RESET_WINDOW + 0.001)
    assert _raw(key, 0x07)[0] == CtapError.ERR.NOT_ALLOWED


# -- a key with a fingerprint sensor: built-in user verification ----------------------------
BIO_PIN = "12345678"


@pytest.fixture
def bio_key(tmp_path):
    from hwtoken.testing import enroll_finger

    with VirtualKey.create(tmp_path / "bio.key", profile="yubikey-bio") as key:
        enroll_finger(key, pin=BIO_PIN)
        yield key


def test_built_in_uv_verifies_with_the_finger_for_each_command(bio_key):
    made_request = _mc({7: {"uv": True, "rk": True}, 3: {"id": b"u", "name": "n"}})
    statuses, seen, keepalives = _recorded(bio_key, [(0x01, made_request)])
    assert statuses == [0]
    user = {"id": b"w", "name": "w", "displayName": "W", "icon": "https://example.com/w"}
    status, made = _raw(bio_key, 0x01, {**made_request, 3: user})
    assert status == 0 and made[2][32] == 0x45  # UP | UV | AT
    request = {1: RP.id, 2: os.urandom(32), 5: {"uv": True}}
    statuses, seen2, keepalives2 = _recorded(bio_key, [(0x02, request)])
    assert statuses == [0]
    assert seen + seen2 == [("makeCredential", True), ("getAssertion", True)]
    assert keepalives + keepalives2 == 2  # one touch each: the finger was the touch
    status, assertion = _raw(bio_key, 0x02, request)
    assert status == 0 and assertion[2][32] == 0x05  # UP | UV
    assert assertion[4] == user and assertion[5] == 2  # with UV, among several: all of it


def test_uv_needs_an_enrolled_finger_and_is_ignored_with_a_pin_auth(tmp_path, key):
    assert _raw(key, 0x01, _mc({7: {"uv": True}}))[0] == CtapError.ERR.INVALID_OPTION
    assert _raw(key, 0x02, {1: RP.id, 2: os.urandom(32), 5: {"uv": True}})[0] == (
        CtapError.ERR.INVALID_OPTION)
    with VirtualKey.create(tmp_path / "bio.key", profile="yubikey-bio") as bio:
        assert _raw(bio, 0x01, _mc({7: {"uv": True}}))[0] == CtapError.ERR.INVALID_OPTION
        assert _raw(bio, 0x01, _mc({7: {"uv": False}}))[0] == 0


def test_uv_with_a_pin_auth_is_the_pin_not_the_finger(bio_key):
    from fido2.ctap2.pin import ClientPin as FidoClientPin

    ctap = Ctap2(fido_device(bio_key))
    cp = FidoClientPin(ctap)
    token = cp.get_pin_token(BIO_PIN, FidoClientPin.PERMISSION.MAKE_CREDENTIAL, RP.id)
    request = _mc({7: {"uv": True}})
    request.update({8: cp.protocol.authenticate(token, request[1]), 9: cp.protocol.VERSION})
    statuses, seen, _ = _recorded(bio_key, [(0x01, request)])
    assert statuses == [0]
    assert seen == [("makeCredential", True)]  # a touch for presence; no finger matched
    assert bio_key.presence.seen == seen


def test_always_uv_verifies_with_the_finger_and_a_silent_assertion_needs_none(bio_key):
    from fido2.ctap2 import Config
    from fido2.ctap2.pin import ClientPin as FidoClientPin

    ctap = Ctap2(fido_device(bio_key))
    cp = FidoClientPin(ctap)
    Config(ctap, cp.protocol, cp.get_pin_token(
        BIO_PIN, FidoClientPin.PERMISSION.AUTHENTICATOR_CFG)).toggle_always_uv()
    status, made = _raw(bio_key, 0x01, _mc())
    assert status == 0 and made[2][32] == 0x45  # verified with the finger
    request = {1: RP.id, 2: os.urandom(32), 3: [{"type": "public-key", "id": _cid(made)}]}
    status, assertion = _raw(bio_key, 0x02, request)
    assert status == 0 and assertion[2][32] == 0x05
    statuses, seen, _ = _recorded(bio_key, [(0x02, {**request, 5: {"up": False}})])
    assert statuses == [0] and seen == []  # a silent pre-flight: no touch, no finger
    status, silent = _raw(bio_key, 0x02, {**request, 5: {"up": False}})
    assert status == 0 and silent[2][32] == 0x00


def test_bio_key_info_and_both_bio_enrollment_commands(bio_key):
    from fido2 import cbor
    from fido2.ctap2.pin import ClientPin as FidoClientPin

    ctap = Ctap2(fido_device(bio_key))
    info = ctap.send_cbor(Ctap2.CMD.GET_INFO)
    assert {k: info[4][k] for k in ("uv", "bioEnroll", "userVerificationMgmtPreview",
                                    "uvBioEnroll")} == dict.fromkeys(
        ("uv", "bioEnroll", "userVerificationMgmtPreview", "uvBioEnroll"), True)
    assert (info[0x11], info[0x12]) == (3, 2)
    for cmd in (0x09, 0x40):
        assert _raw(bio_key, cmd, {6: True}) == (0, {1: 1})
    cp = FidoClientPin(ctap)
    token = cp.get_pin_token(BIO_PIN, FidoClientPin.PERMISSION.MAKE_CREDENTIAL, RP.id)
    enumerate_ = {1: 1, 2: 4, 4: cp.protocol.VERSION,
                  5: cp.protocol.authenticate(token, bytes([1, 4]))}
    # the preview command predates permissions: any token enumerates; 0x09 needs "be"
    status, enrolled = _raw(bio_key, 0x40, enumerate_)
    assert status == 0 and len(enrolled[7]) == 1
    assert _raw(bio_key, 0x09, enumerate_)[0] == CtapError.ERR.PIN_AUTH_INVALID
    assert cbor.encode(enrolled)  # (decoded)


@pytest.mark.parametrize("cmd", [0x09, 0x40])
def test_enrolling_touches_get_the_requests_cancel_and_keepalive(bio_key, cmd):
    from fido2.ctap2.pin import ClientPin as FidoClientPin

    ctap = Ctap2(fido_device(bio_key))
    cp = FidoClientPin(ctap)
    token = cp.get_pin_token(BIO_PIN, FidoClientPin.PERMISSION.BIO_ENROLL)
    begin = {1: 1, 2: 1, 4: cp.protocol.VERSION,
             5: cp.protocol.authenticate(token, bytes([1, 1]))}
    statuses, seen, keepalives = _recorded(bio_key, [(cmd, begin)])
    assert statuses == [0]
    assert [ok for _, ok in seen] == [True] and keepalives == 1


def _three_residents(key) -> dict:
    for user in (b"first", b"second", b"third"):
        assert _raw(key, 0x01, _mc({3: {"id": user}, 7: {"rk": True}}))[0] == 0
    return {1: RP.id, 2: os.urandom(32)}


def test_get_next_assertion_continues_for_thirty_seconds_after_each_answer(key, monkeypatch):
    from hwtoken.emulator.applets.fido.ctap2 import authenticator

    now = [1000.0]
    monkeypatch.setattr(authenticator, "time", type("Clock", (), {
        "monotonic": staticmethod(lambda: now[0])}))
    request = _three_residents(key)
    assert _raw(key, 0x02, request)[0] == 0
    now[0] += authenticator.NEXT_ASSERTION_TIMEOUT  # exactly 30 s later: still on
    status, second = _raw(key, 0x08)
    assert status == 0 and second[4] == {"id": b"second"}
    now[0] += authenticator.NEXT_ASSERTION_TIMEOUT + 0.001  # counted from that answer
    assert _raw(key, 0x08)[0] == CtapError.ERR.NOT_ALLOWED
    now[0] += 0.001
    assert _raw(key, 0x08)[0] == CtapError.ERR.NOT_ALLOWED  # and the rest is dropped


def test_get_next_assertion_only_right_after_on_the_same_channel(key):
    from fido2 import cbor

    auth = key.fido.authenticator
    request = b"\x02" + cbor.encode(_three_residents(key))
    for between, channel in [(b"\x0b", "a"),  # any other command ends it
                             (b"\x02\xff", "a"),  # a failed one too
                             (None, "b")]:  # another channel may not continue it
        assert auth.process(request, channel="a")[0] == 0
        if between is not None:
            auth.process(between, channel="a")
        assert auth.process(b"\x08", channel=channel) == bytes([CtapError.ERR.NOT_ALLOWED])
        assert auth.process(b"\x08", channel="a") == bytes([CtapError.ERR.NOT_ALLOWED])
    assert auth.process(request, channel="a")[0] == 0
    assert auth.process(b"\x08", channel="a")[0] == 0


def test_always_uv_withdraws_u2f_from_the_versions(key, device):
    from fido2.ctap2 import Config

    ctap = Ctap2(device)
    assert ctap.get_info().versions == ["U2F_V2", "FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"]
    Config(ctap).toggle_always_uv()
    assert ctap.get_info().versions == ["FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"]
    assert key.fido.authenticator.u2f_enabled is False


@pytest.mark.parametrize(("formats", "fmt"), [
    (["none"], "none"), (["packed", "none"], "packed"), (["tpm", "none"], "none"),
    (["tpm"], "packed"), ([], "packed"), (["none", 5], "none"), (None, "packed"),
])
def test_the_first_attestation_format_the_key_knows_is_used(key, formats, fmt):
    request = _mc({} if formats is None else {0x0B: formats})
    status, made = _raw(key, 0x01, request)
    assert status == 0 and made[1] == fmt
    if fmt == "none":
        assert made[3] == {}
    else:
        assert sorted(made[3]) == ["alg", "sig", "x5c"] and made[3]["alg"] == -7
        _verify_packed(made, request[1])
    assert _raw(key, 0x01, _mc({0x0B: [5, "none"]}))[0] == CtapError.ERR.CBOR_UNEXPECTED_TYPE


def _verify_packed(made: dict, client_data_hash: bytes) -> None:
    """A packed attestation statement verifies: its signature over authData and the
    clientDataHash, by the key of its certificate, with the algorithm it names."""
    from fido2.attestation import PackedAttestation
    from fido2.webauthn import AuthenticatorData

    PackedAttestation().verify(made[3], AuthenticatorData(made[2]), client_data_hash)


@pytest.mark.hwtoken_profile("latest")
def test_enterprise_attestation_is_packed_whatever_the_formats(key, device):
    from fido2.ctap2 import Config

    Config(Ctap2(device)).enable_enterprise_attestation()
    request = _mc({0x0A: 2, 0x0B: ["none"]})
    status, made = _raw(key, 0x01, request)
    assert status == 0 and made[1] == "packed" and made[4] is True
    _verify_packed(made, request[1])  # signed by the key of the enterprise certificate
    status, made = _raw(key, 0x01, _mc({0x0B: ["none"]}))
    assert status == 0 and made[1] == "none" and 4 not in made


@pytest.mark.hwtoken_profile("latest")
def test_preview_sign_key_made_with_the_credential_signs_with_its_policy(key):
    from fido2 import cbor
    from fido2.webauthn import AttestationObject, AuthenticatorData

    status, made = _raw(key, 0x01, _mc({6: {"previewSign": {3: [-7], 4: 0b001}}}))
    assert status == 0
    auth_data = AuthenticatorData(made[2])
    assert auth_data.flags == 0xC1  # UP | AT | ED
    assert auth_data.extensions == {"previewSign": {3: -7, 4: 0b001}}
    inner = cbor.decode(made[6]["previewSign"][7])
    att = AttestationObject.create(inner[1], inner[2], inner[3])
    assert att.fmt == "packed"
    assert att.auth_data.rp_id_hash == auth_data.rp_id_hash
    assert att.auth_data.flags == 0xC1
    handle = att.auth_data.credential_data.credential_id
    public_key = att.auth_data.credential_data.public_key
    request = {1: RP.id, 2: os.urandom(32),
               3: [{"type": "public-key", "id": _cid(made)}]}
    tbs = os.urandom(64)
    signing = {"previewSign": {2: handle, 6: tbs}}
    assert _raw(key, 0x02, {**request, 4: signing, 5: {"up": False}})[0] == (
        CtapError.ERR.UP_REQUIRED)  # the key's policy: a touch for each signature
    status, assertion = _raw(key, 0x02, {**request, 4: signing})
    assert status == 0
    outputs = AuthenticatorData(assertion[2]).extensions
    assert sorted(outputs) == ["previewSign"] and sorted(outputs["previewSign"]) == [6]
    public_key.verify(tbs, outputs["previewSign"][6])
    del request[3]  # signing needs the credential named
    assert _raw(key, 0x02, {**request, 4: signing})[0] == CtapError.ERR.INVALID_OPTION


@pytest.mark.hwtoken_profile("latest")
def test_preview_sign_key_that_needs_uv_signs_only_with_a_pin_token(key, device):
    from fido2 import cbor
    from fido2.ctap2.pin import ClientPin as FidoClientPin
    from fido2.webauthn import AttestationObject, AuthenticatorData

    set_pin(device)
    cp = FidoClientPin(Ctap2(device))
    P = FidoClientPin.PERMISSION
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, RP.id)
    status, made = _raw(key, 0x01, _authenticated(
        _mc({6: {"previewSign": {3: [-7], 4: 0b101}}}), cp, token, 8))
    assert status == 0
    inner = cbor.decode(made[6]["previewSign"][7])
    signing_key = AttestationObject.create(inner[1], inner[2], inner[3]).auth_data
    tbs = os.urandom(32)
    request = {1: RP.id, 2: os.urandom(32), 3: [{"type": "public-key", "id": _cid(made)}],
               4: {"previewSign": {2: signing_key.credential_data.credential_id, 6: tbs}}}
    assert _raw(key, 0x02, request)[0] == CtapError.ERR.PUAT_REQUIRED  # a touch: not enough
    token = cp.get_pin_token(PIN, P.GET_ASSERTION, RP.id)
    status, assertion = _raw(key, 0x02, _authenticated(request, cp, token, 6))
    assert status == 0
    signature = AuthenticatorData(assertion[2]).extensions["previewSign"][6]
    signing_key.credential_data.public_key.verify(tbs, signature)


def test_a_response_of_exactly_the_largest_size_goes_one_byte_more_does_not(key, monkeypatch):
    from hwtoken.emulator.applets.fido.ctap2 import authenticator

    auth = key.fido.authenticator
    info = auth.process(b"\x04")[1:]
    monkeypatch.setattr(authenticator, "MAX_RESPONSE", len(info))
    assert auth.process(b"\x04") == b"\x00" + info
    monkeypatch.setattr(authenticator, "MAX_RESPONSE", len(info) - 1)
    assert auth.process(b"\x04") == bytes([CtapError.ERR.REQUEST_TOO_LARGE])

    # makeCredential ("none": a response of a fixed size) stores nothing it cannot answer
    monkeypatch.undo()
    request = _mc({3: {"id": b"sized"}, 7: {"rk": True}, 0x0B: ["none"]})
    size = len(auth.process(b"\x01" + cbor_encode(request))) - 1
    for user, largest, expected in ((b"small", size - 1, CtapError.ERR.REQUEST_TOO_LARGE),
                                    (b"exact", size, 0)):
        monkeypatch.setattr(authenticator, "MAX_RESPONSE", largest)
        assert _raw(key, 0x01, {**request, 3: {"id": user}})[0] == expected
    monkeypatch.undo()
    status, found = _raw(key, 0x02, {1: RP.id, 2: os.urandom(32)})
    assert status == 0 and found[5] == 2  # "sized" and "exact"; "small" was not stored
    assert {found[4]["id"], _raw(key, 0x08)[1][4]["id"]} == {b"sized", b"exact"}


def cbor_encode(value) -> bytes:
    from fido2 import cbor

    return cbor.encode(value)


def test_a_resident_credential_keeps_the_entities_and_its_large_blob_key_on_request(key, device):
    from fido2.ctap2 import CredentialManagement
    from fido2.ctap2.pin import ClientPin as FidoClientPin

    user = {"id": b"u", "name": "n", "displayName": "N", "icon": "https://example.com/i"}
    status, made = _raw(key, 0x01, _mc({2: {"id": RP.id, "name": "Example"}, 3: user,
                                        6: {"largeBlobKey": True}, 7: {"rk": True}}))
    assert status == 0 and len(made[5]) == 32
    request = {1: RP.id, 2: os.urandom(32)}
    status, plain = _raw(key, 0x02, request)
    assert status == 0 and sorted(plain) == [1, 2, 3, 4]  # no key unless asked for
    assert plain[1] == {"id": _cid(made), "type": "public-key"}
    status, asked = _raw(key, 0x02, {**request, 4: {"largeBlobKey": True}})
    assert status == 0 and asked[7] == made[5]
    set_pin(device)
    cp = FidoClientPin(Ctap2(device))
    cm = CredentialManagement(Ctap2(device), cp.protocol,
                              cp.get_pin_token(PIN, FidoClientPin.PERMISSION.CREDENTIAL_MGMT))
    [rp] = cm.enumerate_rps()
    assert rp[3] == {"id": RP.id, "name": "Example"}
    [cred] = cm.enumerate_creds(rp[4])
    assert cred[6] == user


def test_cred_protect_three_excludes_only_with_uv(key, device):
    from fido2.ctap2.pin import ClientPin as FidoClientPin

    status, made = _raw(key, 0x01, _mc({6: {"credProtect": 3}}))
    assert status == 0
    excluded = [{"type": "public-key", "id": _cid(made)}]
    assert _raw(key, 0x01, _mc({5: excluded}))[0] == 0  # without UV it is not "there"
    set_pin(device)
    cp = FidoClientPin(Ctap2(device))
    token = cp.get_pin_token(PIN, FidoClientPin.PERMISSION.MAKE_CREDENTIAL, RP.id)
    request = _mc({5: excluded})
    request.update({8: cp.protocol.authenticate(token, request[1]), 9: cp.protocol.VERSION})
    assert _raw(key, 0x01, request)[0] == CtapError.ERR.CREDENTIAL_EXCLUDED


@pytest.mark.parametrize(("params", "expected"), [
    ([{"type": "public-key", "alg": -8}, {"type": "public-key", "alg": -7}], -8),
    ([{"type": "public-key", "alg": -999}, {"type": "public-key", "alg": -7}], -7),
    ([{"type": "other", "alg": -8}, {"type": "public-key", "alg": -7}], -7),
    ([{"type": "public-key", "alg": -999}], CtapError.ERR.UNSUPPORTED_ALGORITHM),
    ([{"type": "other", "alg": -7}], CtapError.ERR.UNSUPPORTED_ALGORITHM),
    ([{"type": "public-key", "alg": -7}, {"type": "public-key", "alg": "x"}],
     CtapError.ERR.CBOR_UNEXPECTED_TYPE),
    ([{"type": "public-key", "alg": -7}, {"type": 1, "alg": -7}],
     CtapError.ERR.CBOR_UNEXPECTED_TYPE),
    ([{"type": "public-key"}], CtapError.ERR.MISSING_PARAMETER),
], ids=["first-offered", "unknown-skipped", "other-type-skipped", "none-offered",
        "other-type-only", "alg-not-int", "type-not-str", "alg-missing"])
def test_the_platforms_first_offered_algorithm_is_chosen(key, params, expected):
    from fido2.webauthn import AuthenticatorData

    status, made = _raw(key, 0x01, _mc({4: params}))
    if expected < 0:
        assert status == 0
        assert AuthenticatorData(made[2]).credential_data.public_key[3] == expected
    else:
        assert status == expected


def _authenticated(request: dict, cp, token, auth_key: int) -> dict:
    """``request`` with a pinUvAuthParam over its clientDataHash (makeCredential's key 1,
    getAssertion's key 2) at ``auth_key`` and the protocol after it."""
    cdh = request[1] if auth_key == 8 else request[2]
    return {**request, auth_key: cp.protocol.authenticate(token, cdh),
            auth_key + 1: cp.protocol.VERSION}


def test_a_pin_token_needs_a_touch_and_a_touch_spends_it(key, device):
    from fido2.ctap2.pin import ClientPin as FidoClientPin

    status, made = _raw(key, 0x01, _mc())
    set_pin(device)
    cp = FidoClientPin(Ctap2(device))
    P = FidoClientPin.PERMISSION
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL | P.GET_ASSERTION, RP.id)
    request = {1: RP.id, 2: os.urandom(32), 3: [{"type": "public-key", "id": _cid(made)}]}
    silent = _authenticated({**request, 5: {"up": False}}, cp, token, 6)
    statuses, seen, _ = _recorded(key, [(0x02, silent), (0x02, silent)])
    assert statuses == [0, 0] and seen == []  # silent: no touch, and the token stays
    touched = _authenticated(request, cp, token, 6)
    statuses, seen, _ = _recorded(key, [(0x02, touched)])
    assert statuses == [0] and [r for r, _ in seen] == ["getAssertion"]  # a PIN: no touch
    for cmd, again in ((0x02, _authenticated(request, cp, token, 6)),
                       (0x01, _authenticated(_mc(), cp, token, 8))):
        assert _raw(key, cmd, again)[0] == CtapError.ERR.PIN_AUTH_INVALID  # used up
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL | P.GET_ASSERTION, RP.id)
    assert _raw(key, 0x01, _mc())[0] == 0  # one without the token leaves the token alone
    assert _raw(key, 0x01, _authenticated(_mc(), cp, token, 8))[0] == 0
    for cmd, again in ((0x02, _authenticated(request, cp, token, 6)),
                       (0x01, _authenticated(_mc(), cp, token, 8))):
        assert _raw(key, cmd, again)[0] == CtapError.ERR.PIN_AUTH_INVALID  # used up


def test_a_built_in_uv_token_carries_the_touch_once(bio_key):
    from fido2.ctap2.pin import ClientPin as FidoClientPin

    ctap = Ctap2(fido_device(bio_key))
    cp = FidoClientPin(ctap)
    P = FidoClientPin.PERMISSION
    status, made = _raw(bio_key, 0x01, _mc())
    assert status == 0
    token = cp.get_uv_token(P.MAKE_CREDENTIAL, RP.id)
    statuses, seen, _ = _recorded(bio_key, [(0x01, _authenticated(_mc(), cp, token, 8))])
    assert statuses == [0] and seen == []  # the finger on the sensor was the touch
    token = cp.get_uv_token(P.GET_ASSERTION, RP.id)
    request = {1: RP.id, 2: os.urandom(32), 3: [{"type": "public-key", "id": _cid(made)}]}
    statuses, seen, _ = _recorded(bio_key, [(0x02, _authenticated(request, cp, token, 6))])
    assert statuses == [0] and seen == []


def test_without_uv_asked_a_bio_key_only_asks_for_a_touch(bio_key):
    status, made = _raw(bio_key, 0x01, _mc())
    assert status == 0 and made[2][32] == 0x41  # UP | AT: no UV unless asked for
    request = {1: RP.id, 2: os.urandom(32), 3: [{"type": "public-key", "id": _cid(made)}]}
    status, assertion = _raw(bio_key, 0x02, request)
    assert status == 0 and assertion[2][32] == 0x01


def test_a_power_cycle_ends_a_get_assertion_in_progress(key):
    request = _three_residents(key)
    assert _raw(key, 0x02, request)[0] == 0
    key.power_cycle()
    assert _raw(key, 0x08)[0] == CtapError.ERR.NOT_ALLOWED


def test_the_signature_counter_is_an_unsigned_32_bit_field(tmp_path):
    from fido2.webauthn import AuthenticatorData

    from hwtoken.emulator.applets.fido.credentials import COUNTER_FIELD

    path = tmp_path / "k.key"
    VirtualKey.create(path).close()
    with VirtualKey.load(path) as key:
        key.store.section("fido")[COUNTER_FIELD] = 2**31 - 1  # a key that signed a lot
        status, made = _raw(key, 0x01, _mc())
        assert status == 0 and AuthenticatorData(made[2]).counter == 2**31
        request = {1: RP.id, 2: os.urandom(32), 3: [{"type": "public-key", "id": _cid(made)}]}
        status, assertion = _raw(key, 0x02, request)
        assert status == 0 and AuthenticatorData(assertion[2]).counter == 2**31 + 1
        status, silent = _raw(key, 0x02, {**request, 5: {"up": False}})
        assert status == 0 and silent[2][32] == 0x00  # neither UP nor UV


# -- raw CTAP2: what getInfo lists, whom a token is for, who a response names ---------------
def _resident(c: Ctap2, cp: ClientPin, name: str) -> bytes:
    """A discoverable credential for ``name`` at example.com, made with a PIN token."""
    cdh = os.urandom(32)
    token = cp.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL, RP.id)
    made = c.make_credential(cdh, {"id": RP.id, "name": RP.name},
                             {"id": name.encode(), "name": name, "displayName": name.title()},
                             [{"type": "public-key", "alg": -7}], options={"rk": True},
                             pin_uv_param=cp.protocol.authenticate(token, cdh),
                             pin_uv_protocol=cp.protocol.VERSION)
    return made.auth_data.credential_data.credential_id


def _assert_with_pin(c: Ctap2, cp: ClientPin, **kw):  # noqa: ANN003, ANN202
    cdh = os.urandom(32)
    token = cp.get_pin_token(PIN, ClientPin.PERMISSION.GET_ASSERTION, RP.id)
    return c.get_assertion(RP.id, cdh, pin_uv_param=cp.protocol.authenticate(token, cdh),
                           pin_uv_protocol=cp.protocol.VERSION, **kw)


def test_get_info_lists_every_algorithm_as_a_public_key_type(device):
    algorithms = Ctap2(device).info.algorithms
    assert [a["alg"] for a in algorithms] == [-7, -8, -35]
    assert all(a == {"alg": a["alg"], "type": "public-key"} for a in algorithms)


def test_a_get_assertion_token_is_for_its_rp_only(device):
    """CTAP 2.1 §6.2.2: a pinUvAuthToken bound to one RP ID gives no assertion at another."""
    c = Ctap2(device)
    set_pin(device)
    cp = ClientPin(c)
    cdh = os.urandom(32)
    token = cp.get_pin_token(PIN, ClientPin.PERMISSION.GET_ASSERTION, RP.id)
    with pytest.raises(CtapError) as refused:
        c.get_assertion("other.example", cdh, pin_uv_param=cp.protocol.authenticate(token, cdh),
                        pin_uv_protocol=cp.protocol.VERSION)
    assert refused.value.code == CtapError.ERR.PIN_AUTH_INVALID


def test_user_names_are_given_only_to_choose_among_several_accounts(device):
    """Names and display names come with a PIN-verified assertion found without an
    allowList when there is more than one account to choose from; never otherwise."""
    c = Ctap2(device)
    set_pin(device)
    cp = ClientPin(c)
    alice = _resident(c, cp, "alice")
    one = _assert_with_pin(c, cp)
    assert one.user == {"id": b"alice"} and one.number_of_credentials is None
    _resident(c, cp, "bob")
    first = _assert_with_pin(c, cp)
    assert first.number_of_credentials == 2
    assert first.user == {"id": b"bob", "name": "bob", "displayName": "Bob"}
    picked = _assert_with_pin(c, cp, allow_list=[{"type": "public-key", "id": alice}])
    assert picked.user == {"id": b"alice"} and picked.number_of_credentials is None


def test_enumerated_rps_carry_their_id_and_name(device):
    from fido2.ctap2 import CredentialManagement

    c = Ctap2(device)
    set_pin(device)
    cp = ClientPin(c)
    _resident(c, cp, "alice")
    token = cp.get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT)
    (rp,) = CredentialManagement(c, cp.protocol, token).enumerate_rps()
    assert rp[CredentialManagement.RESULT.RP] == {"id": RP.id, "name": RP.name}


def test_get_next_assertion_as_a_fresh_keys_first_command_is_not_allowed(device):
    from fido2.hid import CTAPHID

    assert device.call(CTAPHID.CBOR, b"\x08") == bytes([CtapError.ERR.NOT_ALLOWED])


def test_a_registration_extension_the_profile_lacks_is_ignored(device):
    """thirdPartyPayment is a CTAP 2.2 extension the default (YubiKey 5) profile does not
    list: asked for, it is neither honoured nor answered."""
    c = Ctap2(device)
    assert "thirdPartyPayment" not in c.info.extensions
    made = c.make_credential(os.urandom(32), {"id": RP.id, "name": RP.name},
                             {"id": b"alice", "name": "alice"},
                             [{"type": "public-key", "alg": -7}],
                             extensions={"thirdPartyPayment": True, "credProtect": 2})
    assert made.auth_data.extensions == {"credProtect": 2}
    cid = made.auth_data.credential_data.credential_id
    got = c.get_assertion(RP.id, os.urandom(32), [{"type": "public-key", "id": cid}],
                          extensions={"thirdPartyPayment": True})
    assert not got.auth_data.extensions
