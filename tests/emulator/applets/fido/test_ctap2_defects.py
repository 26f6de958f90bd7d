"""Defects a CTAP 2.1 review of the authenticator found, each driven through python-fido2:
the signature counter and failed writes, hmac-secret on credentials made without it,
credential enumeration leaking across channels, uv with a pinUvAuthParam, empty user
fields, getInfo's versions and credentialMgmtPreview, and the counter after a clean close."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from pathlib import Path

import pytest
from fido2 import cbor
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap1 import Ctap1
from fido2.ctap2 import Config, CredentialManagement, Ctap2, LargeBlobs
from fido2.ctap2.extensions import HmacSecretExtension
from fido2.ctap2.pin import ClientPin
from fido2.server import Fido2Server
from fido2.webauthn import AttestedCredentialData

from hwtoken.emulator import VirtualKey, fido_device, store
from hwtoken.emulator.applets.fido.credentials import COUNTER_RESERVE
from hwtoken.emulator.applets.fido.ctap2 import credential_management

ERR = CtapError.ERR
PIN = "12345678"
P = ClientPin.PERMISSION
RP = {"id": "example.com", "name": "Example"}
DOCS = Path(__file__).resolve().parents[4] / "docs" / "ctap2.md"


def make_cred(ctap, user_id=b"u", rp_id="example.com", **kw):
    return ctap.make_credential(os.urandom(32), {"id": rp_id}, {"id": user_id, "name": "n"},
                                [{"type": "public-key", "alg": -7}], **kw)


def assertion_counter(ctap, cred) -> int:
    cdh = os.urandom(32)
    resp = ctap.get_assertion("example.com", cdh,
                              [{"type": "public-key", "id": cred.credential_id}])
    resp.verify(cdh, cred.public_key)
    return resp.auth_data.counter


class FailingDisk:
    """Make every state-file write fail with ENOSPC while ``on`` (the store's own
    atomic_write is replaced; the file on disk is never touched meanwhile)."""

    def __init__(self, monkeypatch):
        self.on = False
        real = store.atomic_write

        def write(*args, **kwargs):
            if self.on:
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        monkeypatch.setattr(store, "atomic_write", write)


@pytest.fixture
def disk(monkeypatch):
    return FailingDisk(monkeypatch)


def on_disk(key) -> str:
    return Path(key.path).read_text()


def in_memory(key) -> str:
    return json.dumps(store._encode(key.store.data), separators=(",", ":"))


def crash(key) -> None:
    """Drop the key without a clean close (what kill -9 leaves behind)."""
    key._lock.release()


# -- 1: the signature counter and failed writes ------------------------------------------
def test_counter_issues_nothing_it_could_not_save(tmp_path, disk):
    path = tmp_path / "k.key"
    key = VirtualKey.create(path)
    ctap = Ctap2(fido_device(key))
    cred = make_cred(ctap).auth_data.credential_data
    issued = [assertion_counter(ctap, cred) for _ in range(COUNTER_RESERVE - 1)]
    assert issued[-1] == COUNTER_RESERVE  # the next one needs a new reservation
    disk.on = True
    for _ in range(3):  # every assertion fails while the reservation cannot be saved
        with pytest.raises(CtapError) as e:
            assertion_counter(ctap, cred)
        assert e.value.code == ERR.OTHER
    disk.on = False
    issued += [assertion_counter(ctap, cred) for _ in range(3)]
    assert issued == sorted(set(issued))
    crash(key)
    with VirtualKey.load(path) as key:  # after a crash: above everything issued
        assert assertion_counter(Ctap2(fido_device(key)), cred) > max(issued)


def test_clean_close_resumes_at_the_exact_counter(tmp_path):
    path = tmp_path / "k.key"
    with VirtualKey.create(path) as key:
        ctap = Ctap2(fido_device(key))
        cred = make_cred(ctap).auth_data.credential_data  # counter 1
        assert [assertion_counter(ctap, cred) for _ in range(2)] == [2, 3]
    for expected in (4, 5):
        with VirtualKey.load(path) as key:
            assert assertion_counter(Ctap2(fido_device(key)), cred) == expected


def _pin_ctap(key):
    ctap = Ctap2(fido_device(key))
    ClientPin(ctap).set_pin(PIN)
    return ctap


def _rk(ctap, user=b"alice"):
    return _prepare_rk(ctap, user)()


def _prepare_rk(ctap, user=b"bob"):
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
    cdh = os.urandom(32)
    return lambda: ctap.make_credential(
        cdh, RP, {"id": user, "name": user.decode()}, [{"type": "public-key", "alg": -7}],
        options={"rk": True}, pin_uv_param=cp.protocol.authenticate(token, cdh),
        pin_uv_protocol=cp.protocol.VERSION)


def _credman(ctap):
    cp = ClientPin(ctap)
    return CredentialManagement(ctap, cp.protocol, cp.get_pin_token(PIN, P.CREDENTIAL_MGMT))


def _prepare_large_blob(ctap):
    cp = ClientPin(ctap)
    blobs = LargeBlobs(ctap, cp.protocol, cp.get_pin_token(PIN, P.LARGE_BLOB_WRITE))
    return lambda: blobs.write_blob_array([{1: b"x" * 40, 2: b"n" * 12, 3: 40}])


def _prepare_toggle_always_uv(ctap):
    cp = ClientPin(ctap)
    return Config(ctap, cp.protocol, cp.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
                  ).toggle_always_uv


def _prepare_delete(ctap):
    cm = _credman(ctap)
    [rp] = cm.enumerate_rps()
    [cred] = cm.enumerate_creds(rp[4])
    return lambda: cm.delete_cred(cred[7])


def _prepare_update(ctap):
    cm = _credman(ctap)
    [rp] = cm.enumerate_rps()
    [cred] = cm.enumerate_creds(rp[4])
    return lambda: cm.update_user_info(cred[7], {"id": b"alice", "name": "renamed"})


#: each prepares its tokens first (taking a token writes the PIN retry counter), then
#: returns the state-changing command to run while the disk fails
COMMANDS = {"makeCredential rk": _prepare_rk, "largeBlobs write": _prepare_large_blob,
            "toggleAlwaysUv": _prepare_toggle_always_uv, "credMgmt delete": _prepare_delete,
            "credMgmt update": _prepare_update}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_command_whose_write_fails_leaves_state_as_it_was(tmp_path, disk, command):
    path = tmp_path / "k.key"
    key = VirtualKey.create(path)
    ctap = _pin_ctap(key)
    _rk(ctap)
    run = COMMANDS[command](ctap)
    before = on_disk(key)
    info = ctap.get_info()
    disk.on = True
    with pytest.raises(CtapError) as e:
        run()
    assert e.value.code == ERR.OTHER
    disk.on = False
    assert in_memory(key) == on_disk(key) == before  # nothing left to be saved later
    assert ctap.get_info() == info
    cm = _credman(ctap)
    [rp] = cm.enumerate_rps()
    [cred] = cm.enumerate_creds(rp[4])
    assert cred[6] == {"id": b"alice", "name": "alice"}
    crash(key)
    with VirtualKey.load(path) as key:
        assert json.loads(before) == json.loads(in_memory(key))


def test_change_pin_whose_final_write_fails_keeps_the_old_pin(tmp_path, monkeypatch):
    path = tmp_path / "k.key"
    key = VirtualKey.create(path)
    ctap = _pin_ctap(key)
    real = store.atomic_write
    writes = []

    def second_write_fails(*args, **kwargs):
        # changePIN first saves the decremented retry counter (CTAP: before comparing),
        # then the new PIN: the second write is the one that fails
        writes.append(1)
        if len(writes) == 2:
            raise OSError(errno.EIO, "I/O error")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "atomic_write", second_write_fails)
    with pytest.raises(CtapError) as e:
        ClientPin(ctap).change_pin(PIN, "87654321")
    assert e.value.code == ERR.OTHER and len(writes) == 2
    monkeypatch.setattr(store, "atomic_write", real)
    assert in_memory(key) == on_disk(key)
    ClientPin(ctap).get_pin_token(PIN)
    with pytest.raises(CtapError) as e:
        ClientPin(ctap).get_pin_token("87654321")
    assert e.value.code == ERR.PIN_INVALID


# -- 2: hmac-secret only for credentials made with it --------------------------------------
class _Pin(UserInteraction):
    def request_pin(self, permissions, rp_id):
        return PIN


def _hmac_client(device):
    return Fido2Client(device, DefaultClientDataCollector("https://example.com"),
                       extensions=[HmacSecretExtension(allow_hmac_secret=True)])


def _hmac_get(server, client, credential):
    options, state = server.authenticate_begin([credential], user_verification="discouraged")
    result = client.get_assertion({**options["publicKey"],
                                   "extensions": {"hmacGetSecret": {"salt1": os.urandom(32)}}})
    response = result.get_response(0)
    server.authenticate_complete(state, [credential], response)
    return response.client_extension_results.get("hmacGetSecret")


def test_hmac_secret_only_for_credentials_made_with_it(fido_device):
    server = Fido2Server(RP)
    client = _hmac_client(fido_device)
    made = {}
    for with_secret in (False, True):
        options, state = server.register_begin({"id": b"u", "name": "u"},
                                               user_verification="discouraged")
        extensions = {"hmacCreateSecret": True} if with_secret else {}
        result = client.make_credential({**options["publicKey"], "extensions": extensions})
        made[with_secret] = server.register_complete(state, result).credential_data
    assert _hmac_get(server, client, made[False]) is None
    assert _hmac_get(server, client, made[True])["output1"]


def test_hmac_secret_not_for_u2f_key_handles(fido_device):
    app = hashlib.sha256(b"example.com").digest()
    reg = Ctap1(fido_device).register(os.urandom(32), app)
    credential = AttestedCredentialData.from_ctap1(reg.key_handle, reg.public_key)
    server = Fido2Server(RP)
    assert _hmac_get(server, _hmac_client(fido_device), credential) is None


# -- 3: credential enumeration belongs to one channel, one command sequence -------------
@pytest.fixture
def two_rps(virtual_key):
    ctap = _pin_ctap(virtual_key)
    cp = ClientPin(ctap)
    for rp_id in ("a.example", "b.example", "c.example"):
        token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL, rp_id)
        cdh = os.urandom(32)
        ctap.make_credential(cdh, {"id": rp_id}, {"id": b"u", "name": "u"},
                             [{"type": "public-key", "alg": -7}], options={"rk": True},
                             pin_uv_param=cp.protocol.authenticate(token, cdh),
                             pin_uv_protocol=cp.protocol.VERSION)
    return ctap


def _next_rp(ctap):
    return ctap.credential_mgmt(CredentialManagement.CMD.ENUMERATE_RPS_NEXT)


def test_enumeration_does_not_continue_on_another_connection(virtual_key, two_rps):
    first = _credman(two_rps).enumerate_rps_begin()
    assert first[5] == 3
    intruder = Ctap2(fido_device(virtual_key))  # another process, no PIN
    with pytest.raises(CtapError) as e:
        _next_rp(intruder)
    assert e.value.code == ERR.NOT_ALLOWED


def test_enumeration_is_dropped_by_another_command(two_rps):
    _credman(two_rps).enumerate_rps_begin()
    assert _next_rp(two_rps)[3]["id"]  # it continues on its own channel...
    two_rps.get_info()
    with pytest.raises(CtapError) as e:  # ...until another command comes in between
        _next_rp(two_rps)
    assert e.value.code == ERR.NOT_ALLOWED


def test_enumeration_times_out(two_rps, monkeypatch):
    _credman(two_rps).enumerate_rps_begin()
    monkeypatch.setattr(credential_management, "ENUMERATION_TIMEOUT", -1.0)
    with pytest.raises(CtapError) as e:
        _next_rp(two_rps)
    assert e.value.code == ERR.NOT_ALLOWED


# -- 5: uv with a pinUvAuthParam is treated as false -----------------------------------------
def test_uv_option_with_pin_uv_auth_param_is_accepted(virtual_key):
    ctap = _pin_ctap(virtual_key)
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.MAKE_CREDENTIAL | P.GET_ASSERTION, "example.com")
    cdh = os.urandom(32)
    auth = {"pin_uv_param": cp.protocol.authenticate(token, cdh),
            "pin_uv_protocol": cp.protocol.VERSION}
    att = ctap.make_credential(cdh, RP, {"id": b"u", "name": "u"},
                               [{"type": "public-key", "alg": -7}], options={"uv": True},
                               **auth)
    assert att.auth_data.is_user_verified()
    cred = att.auth_data.credential_data
    token = cp.get_pin_token(PIN, P.GET_ASSERTION, "example.com")
    auth["pin_uv_param"] = cp.protocol.authenticate(token, cdh)
    resp = ctap.get_assertion("example.com", cdh, [{"type": "public-key",
                                                     "id": cred.credential_id}],
                              options={"uv": True}, **auth)
    resp.verify(cdh, cred.public_key)
    assert resp.auth_data.is_user_verified()
    with pytest.raises(CtapError) as e:  # without a pinUvAuthParam: no built-in UV here
        ctap.get_assertion("example.com", cdh, options={"uv": True})
    assert e.value.code == ERR.INVALID_OPTION


# -- 6: updateUserInformation removes empty fields --------------------------------------------
def test_update_user_information_removes_empty_fields(virtual_key):
    ctap = _pin_ctap(virtual_key)
    _rk(ctap)
    cm = _credman(ctap)
    [cred] = cm.enumerate_creds(hashlib.sha256(b"example.com").digest())
    params = {2: cred[7], 3: {"id": b"alice", "name": "", "displayName": "Alice"}}
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, P.CREDENTIAL_MGMT)
    sub = CredentialManagement.CMD.UPDATE_USER_INFO
    ctap.credential_mgmt(sub, params, cp.protocol.VERSION,
                         cp.protocol.authenticate(token, bytes([sub]) + cbor.encode(params)))
    [cred] = _credman(ctap).enumerate_creds(hashlib.sha256(b"example.com").digest())
    assert cred[6] == {"id": b"alice", "displayName": "Alice"}


# -- 8: getInfo versions, credentialMgmtPreview, the documented reservation -----------------
def test_yubikey5_info_lists_only_what_it_speaks(virtual_key):
    info = Ctap2(fido_device(virtual_key)).get_info()
    assert info.versions == ["U2F_V2", "FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"]
    assert "hmac-secret-mc" not in info.extensions  # a CTAP 2.2 extension
    assert info.options["credentialMgmtPreview"] is True


def test_credential_management_preview_command(virtual_key):
    ctap = _pin_ctap(virtual_key)
    _rk(ctap)
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN)  # the legacy getPinToken, as pre-2.1 platforms use

    def preview(sub, params=None):
        msg = bytes([sub]) + (cbor.encode(params) if params is not None else b"")
        args = {1: sub, 2: params, 3: cp.protocol.VERSION,
                4: cp.protocol.authenticate(token, msg)}
        return ctap.send_cbor(Ctap2.CMD.CREDENTIAL_MGMT_PRE,
                              {k: v for k, v in args.items() if v is not None})

    assert preview(CredentialManagement.CMD.GET_CREDS_METADATA) == {1: 1, 2: 99}
    assert preview(CredentialManagement.CMD.ENUMERATE_RPS_BEGIN)[3]["id"] == "example.com"
    creds = preview(CredentialManagement.CMD.ENUMERATE_CREDS_BEGIN,
                    {1: hashlib.sha256(b"example.com").digest()})
    assert creds[6]["id"] == b"alice"
    with pytest.raises(CtapError) as e:  # not part of the preview command
        preview(CredentialManagement.CMD.UPDATE_USER_INFO, {2: creds[7], 3: {"id": b"alice"}})
    assert e.value.code == ERR.INVALID_SUBCOMMAND
    preview(CredentialManagement.CMD.DELETE_CREDENTIAL, {2: creds[7]})
    assert preview(CredentialManagement.CMD.GET_CREDS_METADATA)[1] == 0


def test_docs_state_the_reservation_the_code_makes():
    text = DOCS.read_text()
    assert re.findall(r"reservation (\d+) ahead", text) == [str(COUNTER_RESERVE)]
