"""hwtoken.fido against a virtual key through fido2's real client and server (in process)."""

from __future__ import annotations

import contextlib
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.cose import ES256
from fido2.ctap2 import Ctap2
from fido2.utils import websafe_encode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwtoken import fido, paths
from hwtoken.emulator import VirtualKey
from hwtoken.errors import CheckFailed, DeviceError, HwtokenError, InvalidInput
from hwtoken.fido import credfile, creds, device, pin, webauthn

PIN = "4711-pin"


def new_cose_key() -> ES256:
    return ES256.from_cryptography_key(ec.generate_private_key(ec.SECP256R1()).public_key())


def make_key(name: str = "t") -> str:
    VirtualKey.create(paths.virtual_key_path(name)).close()
    return f"emu:{name}"


@pytest.fixture
def spec() -> str:
    return make_key()


def pins(value: str = PIN):
    return lambda: value


def test_register_then_authenticate_counter_rises(spec, tmp_path):
    with fido.open_key(spec) as key:
        reg = fido.register(key.device, "example.com", "alice")
        path = fido.save_credential(reg.credential, tmp_path / "alice.json")
        assert reg.attestation_format == "packed"
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        cred = fido.load_credential(path)
        assert cred == reg.credential
        assert cred.rp_id == "example.com" and cred.user_name == "alice"
        assert cred.aaguid == str(Ctap2(key.device).info.aaguid)
        first = fido.authenticate(key.device, "example.com", cred)
        second = fido.authenticate(key.device, "example.com", first.credential)
    assert first.credential.sign_count > cred.sign_count
    assert second.credential.sign_count > first.credential.sign_count
    assert second.previous_count == first.credential.sign_count


def test_state_survives_reopening_the_key(spec, tmp_path):
    with fido.open_key(spec) as key:
        reg = fido.register(key.device, "example.com", "alice", algorithm="eddsa")
    assert webauthn.cose_algorithm_name(reg.credential.public_key) == "eddsa"
    with fido.open_key(spec) as key:
        res = fido.authenticate(key.device, "example.com", reg.credential)
    assert res.credential.sign_count > reg.credential.sign_count


def test_replayed_counter_is_refused(spec):
    with fido.open_key(spec) as key:
        reg = fido.register(key.device, "example.com", "alice")
        ahead = reg.credential.with_count(reg.credential.sign_count + 1000)
        with pytest.raises(CheckFailed, match="counter"):
            fido.authenticate(key.device, "example.com", ahead)


def test_tampered_public_key_is_refused(spec):
    with fido.open_key(spec) as key:
        reg = fido.register(key.device, "example.com", "alice")
        other = new_cose_key()
        forged = credfile.SavedCredential(**{**reg.credential.__dict__,
                                             "public_key": cbor.encode(dict(other))})
        with pytest.raises(CheckFailed, match="tampered|signature"):
            fido.authenticate(key.device, "example.com", forged)


def test_tampered_credential_id_and_wrong_rp_are_refused(spec):
    with fido.open_key(spec) as key:
        reg = fido.register(key.device, "example.com", "alice")
        cid = bytearray(reg.credential.credential_id)
        cid[len(cid) // 2] ^= 0x01
        forged = credfile.SavedCredential(**{**reg.credential.__dict__,
                                             "credential_id": bytes(cid)})
        with pytest.raises(CheckFailed, match="does not hold"):
            fido.authenticate(key.device, "example.com", forged)
        with pytest.raises(CheckFailed, match="example.com"):
            fido.authenticate(key.device, "evil.example", reg.credential)
        # The genuine credential still works afterwards.
        fido.authenticate(key.device, "example.com", reg.credential)


def test_pin_set_verify_change_and_retries(spec):
    with fido.open_key(spec) as key:
        assert pin.status(key.device).pin_set is False
        with pytest.raises(InvalidInput, match="too short"):
            pin.set_pin(key.device, "12")
        pin.set_pin(key.device, PIN)
        st0 = pin.status(key.device)
        assert st0.pin_set and st0.retries == 8
        with pytest.raises(InvalidInput, match="already has a PIN"):
            pin.set_pin(key.device, "another")
        with pytest.raises(CheckFailed, match="wrong PIN.*7 tries left"):
            pin.verify_pin(key.device, "not-the-pin")
        assert pin.verify_pin(key.device, PIN).retries == 8  # a good PIN resets the count
        with pytest.raises(CheckFailed, match="wrong PIN"):
            pin.change_pin(key.device, "not-the-pin", "new-pin-1")
        pin.change_pin(key.device, PIN, "new-pin-1")
        pin.verify_pin(key.device, "new-pin-1")


def test_register_and_authenticate_with_pin(spec):
    with fido.open_key(spec) as key:
        pin.set_pin(key.device, PIN)
        with pytest.raises(InvalidInput, match="PIN"):
            fido.register(key.device, "example.com", "alice", pin=lambda: None)
        with pytest.raises(CheckFailed, match="wrong PIN .7 tries left"):
            fido.register(key.device, "example.com", "alice", pin=pins("bad-pin-0"))
        reg = fido.register(key.device, "example.com", "alice", uv="required", pin=pins())
        assert reg.user_verified
        res = fido.authenticate(key.device, "example.com", reg.credential, uv="required",
                                pin=pins())
        assert res.user_verified
        # discouraged: no PIN asked, signature still good, UV flag off
        asked = []
        res2 = fido.authenticate(key.device, "example.com", res.credential, uv="discouraged",
                                 pin=lambda: asked.append(1) or PIN)
        assert not res2.user_verified and not asked


def test_uv_required_without_pin_is_bad_input(spec):
    with fido.open_key(spec) as key, pytest.raises(InvalidInput, match="set a PIN"):
        fido.register(key.device, "example.com", "alice", uv="required")


def test_resident_credentials_listed_used_and_deleted(spec):
    with fido.open_key(spec) as key:
        pin.set_pin(key.device, PIN)
        saved = {}
        for user in ("alice", "bob"):
            reg = fido.register(key.device, "example.com", user, resident=True, pin=pins())
            saved[reg.credential.credential_id] = reg.credential
        other = fido.register(key.device, "other.org", "carol", resident=True, pin=pins())
        listing = creds.list_credentials(key.device, pins())
        assert listing.existing == 3
        got = {(c.rp_id, c.user_name) for c in listing.credentials}
        assert got == {("example.com", "alice"), ("example.com", "bob"), ("other.org", "carol")}

        def lookup(rp, cid):
            return saved.get(cid) if rp == "example.com" else None

        res = fido.authenticate(key.device, "example.com", None, pin=pins(), user_name="bob",
                                lookup=lookup)
        assert res.credential.user_name == "bob"
        with pytest.raises(CheckFailed, match="never saved"):
            fido.authenticate(key.device, "other.org", None, pin=pins(), lookup=lookup)

        deleted = creds.delete_credential(key.device, other.credential.credential_id, pins())
        assert deleted.user_name == "carol"
        after = creds.list_credentials(key.device, pins())
        assert after.existing == 2 and after.remaining == listing.remaining + 1
        with pytest.raises(CheckFailed):
            creds.delete_credential(key.device, other.credential.credential_id, pins())
        with pytest.raises(CheckFailed):
            fido.authenticate(key.device, "other.org", other.credential, pin=pins())


def test_creds_need_a_pin(spec):
    with fido.open_key(spec) as key:
        with pytest.raises(InvalidInput, match="no PIN"):
            creds.list_credentials(key.device, pins())
        pin.set_pin(key.device, PIN)
        with pytest.raises(CheckFailed, match="wrong PIN"):
            creds.list_credentials(key.device, pins("wrong-pin"))


def test_hmac_secret_stable_per_salt_and_per_credential(spec):
    salt1, salt2 = os.urandom(32), os.urandom(32)
    with fido.open_key(spec) as key:
        a = fido.register(key.device, "example.com", "alice").credential
        b = fido.register(key.device, "example.com", "bob").credential
        assert a.hmac_secret and b.hmac_secret
        r1 = fido.hmac_secret(key.device, a, salt1)
        r2 = fido.hmac_secret(key.device, r1.credential, salt1)
        r3 = fido.hmac_secret(key.device, r2.credential, salt2)
        rb = fido.hmac_secret(key.device, b, salt1)
        with pytest.raises(InvalidInput, match="32 bytes"):
            fido.hmac_secret(key.device, a, b"short")
    assert r1.hmac_output == r2.hmac_output and len(r1.hmac_output) == 32
    assert r3.hmac_output != r1.hmac_output
    assert rb.hmac_output != r1.hmac_output
    assert r2.credential.sign_count > r1.credential.sign_count


def test_reset_erases_credentials_and_pin(spec):
    with fido.open_key(spec) as key:
        pin.set_pin(key.device, PIN)
        reg = fido.register(key.device, "example.com", "alice", resident=True, pin=pins())
        fido.reset(key)
        assert pin.status(key.device).pin_set is False
        with pytest.raises(CheckFailed):
            fido.authenticate(key.device, "example.com", reg.credential)


def test_info_reports_versions_and_pin(spec):
    with fido.open_key(spec) as key:
        info = fido.key_info(key.device)
        assert {"FIDO_2_0", "FIDO_2_1", "U2F_V2"} <= set(info.versions)
        assert "hmac-secret" in info.extensions
        assert info.pin_set is False and info.pin_retries is None
        pin.set_pin(key.device, PIN)
        assert fido.key_info(key.device).pin_set is True
    assert json.dumps(info.to_dict())


def test_device_selection(tmp_path):
    with pytest.raises(DeviceError, match="no FIDO key"), fido.open_key(None):
        pass
    make_key("one")
    # a virtual key that is only a file is not "plugged in": it counts when named ...
    with pytest.raises(DeviceError, match="no FIDO key"), fido.open_key(None):
        pass
    with fido.open_key("emu:one") as key:
        assert key.entry.spec == "emu:one"
    # ... or when a serve serves it (a runtime file of this live process stands for one)
    from hwtoken import paths
    from hwtoken.emulator.serve import write_runtime

    serve_doc = {"pid": os.getpid(), "pcsc": None,  # a serve reachable over USB/IP
                 "usbip": {"host": "127.0.0.1", "port": 3240, "busid": "1-1"}}
    write_runtime(paths.virtual_key_path("one"), serve_doc)
    make_key("two")
    write_runtime(paths.virtual_key_path("two"), serve_doc)
    with pytest.raises(InvalidInput) as exc, fido.open_key(None):
        pass
    assert str(exc.value) == ("2 FIDO keys found; choose one with --device (or "
                              "$HWTOKEN_DEVICE): emu:one, emu:two")
    with pytest.raises(HwtokenError, match="no virtual key named"), fido.open_key("emu:three"):
        pass
    with pytest.raises(DeviceError, match="no FIDO key matches"), \
            fido.open_key("/dev/hidraw-none"):
        pass
    specs = {e.spec: e for e in device.list_keys()}
    assert specs["emu:one"].status == "free" and specs["emu:one"].serial


def test_credential_file_errors(tmp_path):
    with pytest.raises(InvalidInput, match="does not exist"):
        credfile.load(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InvalidInput, match="not JSON"):
        credfile.load(bad)
    bad.write_text(json.dumps({"format": credfile.FORMAT, "rp": {"id": "x"}}))
    with pytest.raises(InvalidInput, match="malformed"):
        credfile.load(bad)


def _valid_doc() -> dict:
    key = new_cose_key()
    cred = credfile.SavedCredential(
        rp_id="example.com", user_name="alice", user_id=b"\x01" * 16,
        credential_id=b"\x02" * 64, public_key=cbor.encode(dict(key)),
        aaguid="00000000-0000-0000-0000-000000000000", sign_count=3)
    return cred.to_dict()


VALID = _valid_doc()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(VALID)), value=json_values,
       sub=st.sampled_from(["id", "name", "display_name"]))
def test_fuzzed_credential_documents_fail_cleanly(field, value, sub):
    doc = json.loads(json.dumps(VALID))
    if isinstance(doc[field], dict) and sub in doc[field]:
        doc[field][sub] = value
    else:
        doc[field] = value
    try:
        cred = credfile.SavedCredential.from_dict(doc)
    except InvalidInput:
        return
    assert cred.credential_id  # whatever parsed is usable


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_fuzzed_public_key_bytes_fail_cleanly(raw):
    doc = dict(VALID, public_key=websafe_encode(raw))
    with contextlib.suppress(InvalidInput):
        credfile.SavedCredential.from_dict(doc)


def test_parse_credential_id():
    assert creds.parse_credential_id("0a0b") == b"\x0a\x0b"
    assert creds.parse_credential_id(websafe_encode(b"\xff" * 20)) == b"\xff" * 20
    with pytest.raises(InvalidInput):
        creds.parse_credential_id("!!")
