"""Credentials cross the CTAP1/CTAP2 boundary as on a real key (one credential format)."""

from __future__ import annotations

import hashlib
import os

import pytest
from fido2.cose import ES256
from fido2.ctap import CtapError
from fido2.ctap1 import Ctap1
from fido2.ctap2 import Ctap2


def test_u2f_registration_signs_over_ctap2_and_shares_the_counter(device):
    app = hashlib.sha256(b"example.com").digest()
    reg = Ctap1(device).register(os.urandom(32), app)
    ctap2 = Ctap2(device)
    cdh = os.urandom(32)
    resp = ctap2.get_assertion("example.com", cdh,
                               [{"type": "public-key", "id": reg.key_handle}])
    resp.verify(cdh, ES256.from_ctap1(reg.public_key))
    u2f = Ctap1(device).authenticate(os.urandom(32), app, reg.key_handle)
    assert u2f.counter > resp.auth_data.counter  # one global counter


def test_ctap2_credential_authenticates_over_u2f(device):
    ctap2 = Ctap2(device)
    att = ctap2.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"},
                                [{"type": "public-key", "alg": -7}])
    cred = att.auth_data.credential_data
    app = hashlib.sha256(b"example.com").digest()
    challenge = os.urandom(32)
    sig = Ctap1(device).authenticate(challenge, app, cred.credential_id)
    point = b"\x04" + cred.public_key[-2] + cred.public_key[-3]
    sig.verify(app, challenge, point)
    assert sig.counter > att.auth_data.counter


def test_reset_voids_ctap2_credentials(device):
    ctap2 = Ctap2(device)
    att = ctap2.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"},
                                [{"type": "public-key", "alg": -7}])
    ctap2.reset()
    with pytest.raises(CtapError) as e:
        ctap2.get_assertion("example.com", os.urandom(32), [
            {"type": "public-key", "id": att.auth_data.credential_data.credential_id}])
    assert e.value.code == CtapError.ERR.NO_CREDENTIALS


def test_reset_voids_u2f_key_handles(device):
    from fido2.ctap1 import ApduError

    app = hashlib.sha256(b"example.com").digest()
    reg = Ctap1(device).register(os.urandom(32), app)
    Ctap2(device).reset()
    with pytest.raises(ApduError):
        Ctap1(device).authenticate(os.urandom(32), app, reg.key_handle)
