"""Each permission-guarded CTAP 2.1 command refuses a token that lacks its permission, with
CTAP2_ERR_PIN_AUTH_INVALID and nothing changed, whatever other permissions the token has
(CTAP 2.1 §6.5.5.7); largeBlobKey is only for discoverable credentials (§12.3:
CTAP2_ERR_INVALID_OPTION otherwise). The tokens are otherwise valid: the same token with
the permission does the command."""

from __future__ import annotations

import os

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Config, CredentialManagement, LargeBlobs
from fido2.ctap2.pin import ClientPin

ERR = CtapError.ERR
P = ClientPin.PERMISSION
PIN = "12345678"
RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]
#: permissions a token may be asked for on a yubikey-5 (be is not supported)
OTHERS = {"mc": P.MAKE_CREDENTIAL, "ga": P.GET_ASSERTION, "cm": P.CREDENTIAL_MGMT,
          "lbw": P.LARGE_BLOB_WRITE, "acfg": P.AUTHENTICATOR_CFG}


@pytest.fixture
def cp(ctap):
    pin = ClientPin(ctap)
    pin.set_pin(PIN)
    return pin


def token(cp, permission):
    rp = "example.com" if permission & (P.MAKE_CREDENTIAL | P.GET_ASSERTION) else None
    return cp.get_pin_token(PIN, permission, rp)


def without(needed: str) -> list[str]:
    return [name for name in OTHERS if name != needed]


def refused(call) -> int:
    with pytest.raises(CtapError) as exc:
        call()
    return exc.value.code


# -- authenticatorConfig: acfg -------------------------------------------------------------
@pytest.mark.parametrize("other", [*without("acfg"), "all but acfg"])
def test_config_needs_the_acfg_permission(ctap, cp, other):
    permission = (sum(OTHERS.values()) & ~P.AUTHENTICATOR_CFG if other == "all but acfg"
                  else OTHERS[other])
    cfg = Config(ctap, cp.protocol, token(cp, permission))
    before = ctap.get_info()
    assert refused(cfg.toggle_always_uv) == ERR.PIN_AUTH_INVALID
    assert refused(lambda: cfg.set_min_pin_length(8)) == ERR.PIN_AUTH_INVALID
    after = ctap.get_info()
    assert (after.options["alwaysUv"], after.min_pin_length) == (False, 4)
    assert after == before


def test_the_same_config_works_with_acfg(ctap, cp):
    cfg = Config(ctap, cp.protocol, token(cp, P.AUTHENTICATOR_CFG))
    cfg.toggle_always_uv()
    cfg.set_min_pin_length(8)
    info = ctap.get_info()
    assert (info.options["alwaysUv"], info.min_pin_length) == (True, 8)


@pytest.mark.hwtoken_profile("latest")
def test_enable_enterprise_attestation_needs_acfg(ctap, cp):
    cfg = Config(ctap, cp.protocol, token(cp, P.GET_ASSERTION))
    assert refused(cfg.enable_enterprise_attestation) == ERR.PIN_AUTH_INVALID
    assert ctap.get_info().options["ep"] is False
    Config(ctap, cp.protocol, token(cp, P.AUTHENTICATOR_CFG)).enable_enterprise_attestation()
    assert ctap.get_info().options["ep"] is True


# -- credential management: cm; large blobs: lbw -------------------------------------------
@pytest.mark.parametrize("other", without("cm"))
def test_credential_management_needs_cm(ctap, cp, other):
    cm = CredentialManagement(ctap, cp.protocol, token(cp, OTHERS[other]))
    assert refused(cm.get_metadata) == ERR.PIN_AUTH_INVALID
    assert refused(cm.enumerate_rps) == ERR.PIN_AUTH_INVALID


@pytest.mark.parametrize("other", without("lbw"))
def test_large_blob_write_needs_lbw(ctap, cp, other):
    blobs = LargeBlobs(ctap, cp.protocol, token(cp, OTHERS[other]))
    assert refused(lambda: blobs.write_blob_array([{1: b"x" * 40, 2: b"n" * 12, 3: 40}])) \
        == ERR.PIN_AUTH_INVALID
    assert LargeBlobs(ctap).read_blob_array() == []


# -- largeBlobKey only for discoverable credentials ----------------------------------------
def _make(ctap, cp, *, rk: bool):
    tok = token(cp, P.MAKE_CREDENTIAL)
    cdh = os.urandom(32)
    return ctap.make_credential(cdh, RP, {"id": b"alice", "name": "alice"}, ES256,
                                extensions={"largeBlobKey": True}, options={"rk": rk},
                                pin_uv_param=cp.protocol.authenticate(tok, cdh),
                                pin_uv_protocol=cp.protocol.VERSION)


def test_large_blob_key_is_refused_for_a_non_resident_credential(ctap, cp):
    assert refused(lambda: _make(ctap, cp, rk=False)) == ERR.INVALID_OPTION
    cm = CredentialManagement(ctap, cp.protocol, token(cp, P.CREDENTIAL_MGMT))
    assert cm.get_metadata()[1] == 0  # nothing stored


def test_large_blob_key_without_a_pin_too(ctap):
    """(the check does not hang on user verification)"""
    with pytest.raises(CtapError) as exc:
        ctap.make_credential(os.urandom(32), RP, {"id": b"bob", "name": "bob"}, ES256,
                             extensions={"largeBlobKey": True})
    assert exc.value.code == ERR.INVALID_OPTION


def test_large_blob_key_of_a_resident_credential(ctap, cp):
    made = _make(ctap, cp, rk=True)
    assert len(made.large_blob_key) == 32
