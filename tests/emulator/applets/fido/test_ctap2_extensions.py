"""The extension parsers on their own, value by value: makeCredential's inputs (what each
one stores and outputs, what is ignored, what is refused by its CTAP code) and
hmac-secret's getAssertion input built by python-fido2's own PIN/UV protocols."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
from fido2.cose import CoseKey
from fido2.ctap import CtapError
from fido2.ctap2.pin import PinProtocolV1 as ClientV1
from fido2.ctap2.pin import PinProtocolV2 as ClientV2

from hwtoken.emulator.applets.fido.credentials import MAX_CRED_BLOB
from hwtoken.emulator.applets.fido.ctap2.errors import Ctap2Error
from hwtoken.emulator.applets.fido.ctap2.extensions import (
    SUPPORTED,
    hmac_secret_request,
    registration,
)
from hwtoken.emulator.applets.fido.ctap2.pin_protocols import PinProtocolV1, PinProtocolV2

ERR = CtapError.ERR


def reg(ext, *, rk=True, rp_id="example.com", min_len=6, rp_ids=("example.com",), **kw):
    return registration(ext, rk, rp_id, min_len, list(rp_ids), **kw)


def refused(call) -> int:
    with pytest.raises(Ctap2Error) as e:
        call()
    return e.value.code


def test_nothing_asked_nothing_given():
    out = reg({})
    assert (out.cred_protect, out.cred_blob, out.large_blob_key, out.hmac_secret,
            out.third_party_payment, out.outputs) == (0, b"", False, False, False, {})


def test_every_supported_extension_at_once():
    out = reg({"credProtect": 2, "hmac-secret": True, "credBlob": b"blob",
               "largeBlobKey": True, "minPinLength": True, "thirdPartyPayment": True,
               "unknown": 1})
    assert (out.cred_protect, out.cred_blob, out.large_blob_key, out.hmac_secret,
            out.third_party_payment) == (2, b"blob", True, True, True)
    assert out.outputs == {"credProtect": 2, "hmac-secret": True, "credBlob": True,
                           "minPinLength": 6}
    assert SUPPORTED == ["credBlob", "credProtect", "hmac-secret", "hmac-secret-mc",
                         "largeBlobKey", "minPinLength", "thirdPartyPayment"]


def test_a_profile_without_an_extension_ignores_it():
    ext = {"credProtect": 3, "hmac-secret": True, "credBlob": b"b", "largeBlobKey": False,
           "minPinLength": True, "thirdPartyPayment": True}
    out = reg(ext, supported=("credProtect",))
    assert (out.cred_protect, out.outputs) == (3, {"credProtect": 3})
    assert (out.hmac_secret, out.cred_blob, out.large_blob_key, out.third_party_payment) == (
        False, b"", False, False)  # largeBlobKey False would be refused, were it supported


@pytest.mark.parametrize("level", [1, 2, 3])
def test_cred_protect_levels(level):
    out = reg({"credProtect": level})
    assert (out.cred_protect, out.outputs) == (level, {"credProtect": level})


@pytest.mark.parametrize("level", [0, 4, -1])
def test_an_unknown_cred_protect_level_is_ignored(level):
    out = reg({"credProtect": level})
    assert (out.cred_protect, out.outputs) == (0, {})


@pytest.mark.parametrize("ext", [{"credProtect": True}, {"credProtect": "1"},
                                 {"hmac-secret": 1}, {"credBlob": "text"},
                                 {"largeBlobKey": 1}, {"minPinLength": 1},
                                 {"thirdPartyPayment": "yes"}])
def test_a_wrongly_typed_input_is_cbor_unexpected_type(ext):
    assert refused(lambda: reg(ext)) == ERR.CBOR_UNEXPECTED_TYPE


def test_false_asks_for_nothing():
    out = reg({"hmac-secret": False, "minPinLength": False, "thirdPartyPayment": False})
    assert (out.hmac_secret, out.third_party_payment, out.outputs) == (False, False, {})


def test_cred_blob_up_to_its_maximum_is_stored():
    assert MAX_CRED_BLOB == 32
    out = reg({"credBlob": bytes(range(32))})
    assert (out.cred_blob, out.outputs) == (bytes(range(32)), {"credBlob": True})
    out = reg({"credBlob": b""})
    assert (out.cred_blob, out.outputs) == (b"", {"credBlob": True})
    out = reg({"credBlob": bytes(33)})  # too long: not stored, and the output says so
    assert (out.cred_blob, out.outputs) == (b"", {"credBlob": False})


def test_large_blob_key_only_true_and_only_for_a_resident_credential():
    assert reg({"largeBlobKey": True}).large_blob_key is True
    assert reg({"largeBlobKey": True}).outputs == {}  # the key comes in the response
    assert refused(lambda: reg({"largeBlobKey": False})) == ERR.INVALID_OPTION
    assert refused(lambda: reg({"largeBlobKey": True}, rk=False)) == ERR.INVALID_OPTION


def test_min_pin_length_only_for_the_listed_rp_ids():
    assert reg({"minPinLength": True}, min_len=8).outputs == {"minPinLength": 8}
    assert reg({"minPinLength": True}, rp_id="other.com").outputs == {}
    assert reg({"minPinLength": True}, rp_ids=()).outputs == {}


# -- hmac-secret (getAssertion) -----------------------------------------------------------
PROTOCOLS = {1: (PinProtocolV1, ClientV1), 2: (PinProtocolV2, ClientV2)}


class Cred:
    """A credential's two CredRandoms (CTAP 2.1: one with UV, one without)."""

    def cred_random(self, uv: bool) -> bytes:
        return (b"with uv " if uv else b"no uv   ") * 4


def salt_input(version, salts: bytes, *, send_version=True, auth_len=None):
    """An authenticator with both protocols, and python-fido2's hmac-secret input."""
    ours = {1: PinProtocolV1(), 2: PinProtocolV2()}
    client = PROTOCOLS[version][1]()
    key_agreement, shared = client.encapsulate(CoseKey.parse(ours[version].key_agreement()))
    salt_enc = client.encrypt(shared, salts)
    salt_auth = client.authenticate(shared, salt_enc)[:auth_len]
    value = {1: key_agreement, 2: salt_enc, 3: salt_auth}
    if send_version:
        value[4] = version
    return value, ours, client, shared


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("count", [1, 2])
@pytest.mark.parametrize("uv", [False, True])
def test_hmac_secret_outputs_hmacs_of_each_salt(version, count, uv):
    salts = os.urandom(32 * count)
    value, ours, client, shared = salt_input(version, salts)
    req = hmac_secret_request(value, ours)
    assert req.protocol is ours[version] and req.shared == shared
    assert req.salts == [salts[:32], salts[32:]][:count]
    out = client.decrypt(shared, req.output(Cred(), uv))
    key = Cred().cred_random(uv)
    assert out == b"".join(hmac.new(key, s, hashlib.sha256).digest() for s in req.salts)


def test_without_a_protocol_number_it_is_protocol_1():
    salts = os.urandom(32)
    value, ours, _, _ = salt_input(1, salts, send_version=False)
    assert hmac_secret_request(value, ours).salts == [salts]
    value, ours, _, _ = salt_input(2, salts, send_version=False)  # so a v2 input fails
    assert refused(lambda: hmac_secret_request(value, ours)) == ERR.PIN_AUTH_INVALID


def test_an_unknown_protocol_is_invalid_parameter():
    value, ours, _, _ = salt_input(2, os.urandom(32))
    value[4] = 3
    assert refused(lambda: hmac_secret_request(value, ours)) == ERR.INVALID_PARAMETER
    del ours[2]
    value[4] = 2
    assert refused(lambda: hmac_secret_request(value, ours)) == ERR.INVALID_PARAMETER


@pytest.mark.parametrize("version", [1, 2])
def test_a_wrong_salt_auth_is_pin_auth_invalid(version):
    value, ours, _, _ = salt_input(version, os.urandom(32))
    value[3] = bytes(len(value[3]))
    assert refused(lambda: hmac_secret_request(value, ours)) == ERR.PIN_AUTH_INVALID
    value, ours, _, _ = salt_input(version, os.urandom(32), auth_len=15)
    assert refused(lambda: hmac_secret_request(value, ours)) == ERR.PIN_AUTH_INVALID


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("size", [16, 48, 96])
def test_salts_other_than_32_or_64_bytes_are_invalid_parameter(version, size):
    value, ours, _, _ = salt_input(version, os.urandom(size))
    assert refused(lambda: hmac_secret_request(value, ours)) == ERR.INVALID_PARAMETER


@pytest.mark.parametrize("missing", [1, 2, 3])
def test_each_member_is_required(missing):
    value, ours, _, _ = salt_input(1, os.urandom(32))
    del value[missing]
    assert refused(lambda: hmac_secret_request(value, ours)) == ERR.MISSING_PARAMETER


def test_a_mistyped_member_is_cbor_unexpected_type():
    value, ours, _, _ = salt_input(1, os.urandom(32))
    for member, wrong in ((1, b"x"), (2, "x"), (3, 1), (4, "1")):
        bad = {**value, member: wrong}
        assert refused(lambda b=bad: hmac_secret_request(b, ours)) == ERR.CBOR_UNEXPECTED_TYPE
