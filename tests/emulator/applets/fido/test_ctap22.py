"""CTAP 2.2 on a ``latest`` key, through python-fido2's classes: the persistent PIN/UV auth
token (pcmr), enterprise attestation and thirdPartyPayment, and that a CTAP 2.1 model
refuses them."""

from __future__ import annotations

import os

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from fido2.attestation import PackedAttestation
from fido2.ctap import CtapError
from fido2.ctap2 import Config, CredentialManagement, Ctap2
from fido2.ctap2.pin import ClientPin

from hwtoken.emulator import VirtualKey, fido_device

ERR = CtapError.ERR
P = ClientPin.PERMISSION
PIN = "12345678"
RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]


@pytest.fixture
def latest(tmp_path):
    key = VirtualKey.create(tmp_path / "k.key", profile="latest")
    yield key
    if key._lock is not None and key._lock.held:
        key.close()


def pin_ctap(key):
    ctap = Ctap2(fido_device(key))
    if not ctap.get_info().options.get("clientPin"):
        ClientPin(ctap).set_pin(PIN)
    return ctap


def make_rk(ctap, user=b"u", rp_id="example.com", **kw):
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, rp_id)
    cdh = os.urandom(32)
    return ctap.make_credential(cdh, {"id": rp_id}, {"id": user, "name": "n"}, ES256,
                                options={"rk": True},
                                pin_uv_param=cp.protocol.authenticate(token, cdh),
                                pin_uv_protocol=cp.protocol.VERSION, **kw)


def persistent(ctap):
    cp = ClientPin(ctap)
    return cp.protocol, cp.get_pin_token(PIN, P.PERSISTENT_CREDENTIAL_MGMT)


# -- the persistent PIN/UV auth token -------------------------------------------------------
def test_persistent_token_survives_restarts_and_reads_only(latest, tmp_path):
    ctap = pin_ctap(latest)
    make_rk(ctap)
    proto, token = persistent(ctap)
    assert persistent(ctap)[1] == token  # the same token for every platform that asks
    ident = ctap.get_info().get_identifier(token)
    state = ctap.get_info().get_cred_store_state(token)
    assert len(ident) == len(state) == 16
    assert ctap.get_info().enc_identifier != ctap.get_info().enc_identifier  # fresh IVs
    path = latest.path
    latest.close()
    with VirtualKey.load(path) as key:
        ctap = Ctap2(fido_device(key))
        cm = CredentialManagement(ctap, proto, token)
        assert cm.get_metadata()[1] == 1
        [rp] = cm.enumerate_rps()
        [cred] = cm.enumerate_creds(rp[4])
        for change in (lambda: cm.delete_cred(cred[7]),
                       lambda: cm.update_user_info(cred[7], {"id": b"u", "name": "x"})):
            with pytest.raises(CtapError) as e:
                change()
            assert e.value.code == ERR.PIN_AUTH_INVALID
        assert ctap.get_info().get_identifier(token) == ident
        assert ctap.get_info().get_cred_store_state(token) == state
        make_rk(ctap, b"other")
        assert ctap.get_info().get_cred_store_state(token) != state


def test_persistent_token_is_pcmr_alone_and_voided_by_a_new_pin_or_reset(latest):
    ctap = pin_ctap(latest)
    cp = ClientPin(ctap)
    with pytest.raises(CtapError) as e:
        cp.get_pin_token(PIN, P.PERSISTENT_CREDENTIAL_MGMT | P.CREDENTIAL_MGMT)
    assert e.value.code == ERR.UNAUTHORIZED_PERMISSION
    proto, token = persistent(ctap)
    cp.get_pin_token(PIN, P.CREDENTIAL_MGMT)  # ordinary tokens leave it alone
    CredentialManagement(ctap, proto, token).get_metadata()
    cp.change_pin(PIN, "87654321")
    with pytest.raises(CtapError) as e:
        CredentialManagement(ctap, proto, token).get_metadata()
    assert e.value.code == ERR.PIN_AUTH_INVALID
    assert ctap.get_info().enc_identifier is None  # no persistent token: nothing to read
    cp.change_pin("87654321", PIN)
    proto, token = persistent(ctap)
    ident = ctap.get_info().get_identifier(token)
    latest.power_cycle()
    ctap.reset()
    ClientPin(ctap).set_pin(PIN)
    with pytest.raises(CtapError) as e:
        CredentialManagement(ctap, proto, token).get_metadata()
    assert e.value.code == ERR.PIN_AUTH_INVALID
    assert ctap.get_info().get_identifier(persistent(ctap)[1]) != ident  # a new key now


def test_ctap21_model_has_no_pcmr(virtual_key):
    ctap = pin_ctap(virtual_key)
    assert "perCredMgmtRO" not in ctap.get_info().options
    with pytest.raises(CtapError) as e:
        persistent(ctap)
    assert e.value.code == ERR.UNAUTHORIZED_PERMISSION


# -- enterprise attestation -----------------------------------------------------------------
def _attest(ctap, rp_id, ep):
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, rp_id)
    cdh = os.urandom(32)
    att = ctap.make_credential(cdh, {"id": rp_id}, {"id": b"u"}, ES256,
                               pin_uv_param=cp.protocol.authenticate(token, cdh),
                               pin_uv_protocol=cp.protocol.VERSION,
                               enterprise_attestation=ep)
    PackedAttestation().verify(att.att_stmt, att.auth_data, cdh)  # signed by that cert
    return att


def _subject(att):
    return x509.load_der_x509_certificate(att.att_stmt["x5c"][0]).subject


def test_enterprise_attestation(latest):
    ctap = pin_ctap(latest)
    assert ctap.get_info().options["ep"] is False
    with pytest.raises(CtapError) as e:  # not enabled yet
        _attest(ctap, "enterprise.example.com", 1)
    assert e.value.code == ERR.INVALID_PARAMETER
    cp = ClientPin(ctap)
    Config(ctap, cp.protocol, cp.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
           ).enable_enterprise_attestation()
    assert ctap.get_info().options["ep"] is True
    batch = _attest(ctap, "example.com", None)
    assert batch.ep_att is None
    assert not _subject(batch).get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    vendor = _attest(ctap, "enterprise.example.com", 1)  # a listed RP ID
    unlisted = _attest(ctap, "example.com", 1)
    platform = _attest(ctap, "example.com", 2)
    assert vendor.ep_att is True and platform.ep_att is True and not unlisted.ep_att
    serial = str(latest.serial)
    for att in (vendor, platform):
        assert _subject(att).get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == serial
    assert _subject(unlisted) == _subject(batch)
    with pytest.raises(CtapError) as e:
        _attest(ctap, "example.com", 3)
    assert e.value.code == ERR.INVALID_OPTION
    latest.power_cycle()
    ctap.reset()
    assert ctap.get_info().options["ep"] is False


def test_ctap21_model_has_no_enterprise_attestation(virtual_key):
    ctap = pin_ctap(virtual_key)
    assert "ep" not in ctap.get_info().options
    cp = ClientPin(ctap)
    with pytest.raises(CtapError) as e:
        Config(ctap, cp.protocol, cp.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
               ).enable_enterprise_attestation()
    assert e.value.code == ERR.INVALID_SUBCOMMAND


# -- thirdPartyPayment --------------------------------------------------------------------------
@pytest.mark.parametrize(("profile", "answered"), [("latest", True), ("yubikey-5", False)])
def test_third_party_payment(tmp_path, profile, answered):
    with VirtualKey.create(tmp_path / "k.key", profile=profile) as key:
        ctap = pin_ctap(key)
        pay = make_rk(ctap, b"payer", extensions={"thirdPartyPayment": True})
        make_rk(ctap, b"plain")
        cp = ClientPin(ctap)
        cm = CredentialManagement(ctap, cp.protocol, cp.get_pin_token(PIN, P.CREDENTIAL_MGMT))
        [rp] = cm.enumerate_rps()
        flags = {c[6]["id"]: c.get(0x0C) for c in cm.enumerate_creds(rp[4])}
        assert flags == ({b"payer": True, b"plain": False} if answered
                         else {b"payer": None, b"plain": None})
        cdh = os.urandom(32)
        cred = pay.auth_data.credential_data
        resp = ctap.get_assertion("example.com", cdh,
                                  [{"type": "public-key", "id": cred.credential_id}],
                                  extensions={"thirdPartyPayment": True})
        resp.verify(cdh, cred.public_key)
        outputs = resp.auth_data.extensions or {}
        assert outputs.get("thirdPartyPayment") is (True if answered else None)
