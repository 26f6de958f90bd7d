"""Credential management, authenticatorConfig and large blobs through fido2's real classes."""

from __future__ import annotations

import hashlib
import os

import pytest
from fido2 import cbor
from fido2.ctap import CtapError
from fido2.ctap2 import Config, CredentialManagement, Ctap2, LargeBlobs
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2

PIN = "12345678"
ERR = CtapError.ERR
P = ClientPin.PERMISSION


@pytest.fixture(params=[1, 2], ids=["protocol1", "protocol2"])
def client_pin(request, ctap):
    cp = ClientPin(ctap, PinProtocolV1() if request.param == 1 else PinProtocolV2())
    cp.set_pin(PIN)
    return cp


def make_rk(ctap, client_pin, rp_id, user_id, name=None, **kw):
    token = client_pin.get_pin_token(PIN, P.MAKE_CREDENTIAL, rp_id)
    cdh = os.urandom(32)
    user = {"id": user_id, "name": name or user_id.decode(), "displayName": "D"}
    return ctap.make_credential(cdh, {"id": rp_id, "name": rp_id.upper()}, user,
                                [{"type": "public-key", "alg": -7}], options={"rk": True},
                                pin_uv_param=client_pin.protocol.authenticate(token, cdh),
                                pin_uv_protocol=client_pin.protocol.VERSION, **kw)


def credman(ctap, client_pin, rp_id=None):
    token = client_pin.get_pin_token(PIN, P.CREDENTIAL_MGMT, rp_id)
    return CredentialManagement(ctap, client_pin.protocol, token)


def test_metadata_enumerate_update_delete(ctap, client_pin):
    cm = credman(ctap, client_pin)
    assert cm.get_metadata() == {1: 0, 2: 100}
    assert cm.enumerate_rps() == []
    a = make_rk(ctap, client_pin, "a.example", b"alice")
    make_rk(ctap, client_pin, "a.example", b"bob")
    make_rk(ctap, client_pin, "b.example", b"carol")
    cm = credman(ctap, client_pin)
    assert cm.get_metadata() == {1: 3, 2: 97}
    rps = cm.enumerate_rps()
    assert sorted(r[3]["id"] for r in rps) == ["a.example", "b.example"]
    assert {r[4] for r in rps} == {hashlib.sha256(b"a.example").digest(),
                                   hashlib.sha256(b"b.example").digest()}
    creds = cm.enumerate_creds(hashlib.sha256(b"a.example").digest())
    assert sorted(c[6]["id"] for c in creds) == [b"alice", b"bob"]
    alice = next(c for c in creds if c[6]["id"] == b"alice")
    assert alice[7]["id"] == a.auth_data.credential_data.credential_id
    assert alice[8] == a.auth_data.credential_data.public_key
    assert alice[10] == 1

    cm.update_user_info(alice[7], {"id": b"alice", "name": "Alice Liddell"})
    creds = cm.enumerate_creds(hashlib.sha256(b"a.example").digest())
    assert {c[6].get("name") for c in creds} == {"Alice Liddell", "bob"}
    with pytest.raises(CtapError) as e:  # the user ID cannot change
        cm.update_user_info(alice[7], {"id": b"mallory", "name": "x"})
    assert e.value.code == ERR.INVALID_PARAMETER

    cm.delete_cred(alice[7])
    assert cm.get_metadata()[1] == 2
    with pytest.raises(CtapError) as e:
        cm.delete_cred(alice[7])
    assert e.value.code == ERR.NO_CREDENTIALS
    # a deleted resident credential no longer signs, even with its ID in an allow list
    with pytest.raises(CtapError) as e:
        ctap.get_assertion("a.example", os.urandom(32), [alice[7]])
    assert e.value.code == ERR.NO_CREDENTIALS


def test_credman_needs_token_with_cm_permission(ctap, client_pin):
    token = client_pin.get_pin_token(PIN, P.GET_ASSERTION, "a.example")
    cm = CredentialManagement(ctap, client_pin.protocol, token)
    with pytest.raises(CtapError) as e:
        cm.get_metadata()
    assert e.value.code == ERR.PIN_AUTH_INVALID
    with pytest.raises(CtapError) as e:
        ctap.credential_mgmt(CredentialManagement.CMD.GET_CREDS_METADATA)
    assert e.value.code == ERR.PUAT_REQUIRED


def test_rp_bound_credman_token(ctap, client_pin):
    make_rk(ctap, client_pin, "a.example", b"alice")
    b = make_rk(ctap, client_pin, "b.example", b"bob")
    cm = credman(ctap, client_pin, "a.example")
    with pytest.raises(CtapError) as e:  # enumerating every RP needs an unbound token
        cm.enumerate_rps()
    assert e.value.code == ERR.PIN_AUTH_INVALID
    assert len(cm.enumerate_creds(hashlib.sha256(b"a.example").digest())) == 1
    with pytest.raises(CtapError) as e:
        cm.delete_cred({"id": b.auth_data.credential_data.credential_id,
                        "type": "public-key"})
    assert e.value.code == ERR.PIN_AUTH_INVALID


def rp_hash(rp_id: str) -> bytes:
    return hashlib.sha256(rp_id.encode()).digest()


def refused(call) -> int:
    with pytest.raises(CtapError) as e:
        call()
    return e.value.code


def test_rp_entries_carry_the_rp_name_and_id_hash(ctap, client_pin):
    make_rk(ctap, client_pin, "a.example", b"alice")
    [rp] = credman(ctap, client_pin).enumerate_rps()
    assert (rp[3], rp[4]) == ({"id": "a.example", "name": "A.EXAMPLE"}, rp_hash("a.example"))


def test_enumeration_walks_every_rp_and_credential_then_stops(ctap, client_pin):
    for rp_id in ("a.example", "b.example", "c.example"):
        make_rk(ctap, client_pin, rp_id, b"alice")
    for user in (b"bob", b"carol"):
        make_rk(ctap, client_pin, "a.example", user)
    cm = credman(ctap, client_pin)
    first = cm.enumerate_rps_begin()
    assert first[5] == 3
    rest = [cm.enumerate_rps_next() for _ in range(2)]
    assert sorted(r[3]["id"] for r in [first, *rest]) == ["a.example", "b.example",
                                                           "c.example"]
    assert refused(cm.enumerate_rps_next) == ERR.NOT_ALLOWED  # all were given
    first = cm.enumerate_creds_begin(rp_hash("a.example"))
    assert first[9] == 3
    rest = [cm.enumerate_creds_next() for _ in range(2)]
    assert sorted(c[6]["id"] for c in [first, *rest]) == [b"alice", b"bob", b"carol"]
    assert refused(cm.enumerate_creds_next) == ERR.NOT_ALLOWED
    assert refused(cm.enumerate_rps_next) == ERR.NOT_ALLOWED  # a creds enumeration is no RPs'


def test_enumerating_an_rp_without_credentials_is_no_credentials(ctap, client_pin):
    make_rk(ctap, client_pin, "a.example", b"alice")
    cm = credman(ctap, client_pin)
    assert refused(lambda: cm.enumerate_creds_begin(rp_hash("b.example"))) \
        == ERR.NO_CREDENTIALS


def test_next_without_a_begin_is_not_allowed_in_process(virtual_key):
    """A request from within the process (no channel) on a new key: nothing to go on with."""
    for sub in (0x03, 0x05):
        assert virtual_key.fido.ctap2(b"\x0a" + cbor.encode({1: sub})) == b"\x30"  # NOT_ALLOWED


def test_a_credential_entry_carries_its_large_blob_key(ctap, client_pin):
    alice = make_rk(ctap, client_pin, "a.example", b"alice", extensions={"largeBlobKey": True})
    make_rk(ctap, client_pin, "a.example", b"bob")
    creds = {c[6]["id"]: c for c in credman(ctap, client_pin).enumerate_creds(
        rp_hash("a.example"))}
    assert creds[b"alice"][0x0B] == alice.large_blob_key and len(alice.large_blob_key) == 32
    assert 0x0B not in creds[b"bob"]


def test_an_rp_bound_token_manages_the_credentials_of_its_rp(ctap, client_pin):
    alice = make_rk(ctap, client_pin, "a.example", b"alice")
    make_rk(ctap, client_pin, "b.example", b"bob")
    cm = credman(ctap, client_pin, "a.example")
    cid = {"id": alice.auth_data.credential_data.credential_id, "type": "public-key"}
    cm.update_user_info(cid, {"id": b"alice", "name": "Alice"})
    [entry] = cm.enumerate_creds(rp_hash("a.example"))
    assert entry[6] == {"id": b"alice", "name": "Alice"}
    cm.delete_cred(cid)
    assert credman(ctap, client_pin).get_metadata()[1] == 1


@pytest.mark.parametrize("member", ["name", "displayName", "icon"])
def test_update_user_information_checks_each_member_type(ctap, client_pin, member):
    """Sent raw: python-fido2's update_user_info would drop a mistyped member itself."""
    alice = make_rk(ctap, client_pin, "a.example", b"alice", name="alice")
    cid = {"id": alice.auth_data.credential_data.credential_id, "type": "public-key"}
    params = {2: cid, 3: {"id": b"alice", member: 7}}
    token = client_pin.get_pin_token(PIN, P.CREDENTIAL_MGMT)
    sub = CredentialManagement.CMD.UPDATE_USER_INFO
    mac = client_pin.protocol.authenticate(token, bytes([sub]) + cbor.encode(params))
    assert refused(lambda: ctap.credential_mgmt(sub, params, client_pin.protocol.VERSION,
                                                mac)) == ERR.CBOR_UNEXPECTED_TYPE
    [entry] = CredentialManagement(ctap, client_pin.protocol, token).enumerate_creds(
        rp_hash("a.example"))
    assert entry[6] == {"id": b"alice", "name": "alice", "displayName": "D"}


def test_metadata_of_a_full_key(tmp_path, monkeypatch):
    from dataclasses import replace

    from hwtoken.emulator import VirtualKey, fido_device, profiles

    monkeypatch.setitem(profiles.PROFILES, "yubikey-5",
                        replace(profiles.YUBIKEY_5, max_resident=2))
    with VirtualKey.create(tmp_path / "small.key") as key:
        ctap = Ctap2(fido_device(key))
        cp = ClientPin(ctap)
        cp.set_pin(PIN)
        make_rk(ctap, cp, "a.example", b"alice")
        assert credman(ctap, cp).get_metadata() == {1: 1, 2: 1}
        make_rk(ctap, cp, "a.example", b"bob")
        assert credman(ctap, cp).get_metadata() == {1: 2, 2: 0}


def test_canonical_cbor_of_what_the_platform_maced():
    from hwtoken.emulator.applets.fido.ctap2.credential_management import canonical
    from hwtoken.emulator.applets.fido.ctap2.errors import Ctap2Error

    # keys in canonical order, whatever order the map came in
    assert canonical({2: b"x", 1: [True, "s"]}) == bytes.fromhex("a20182f56173024178")
    for value in (1.5, {1: {2}}, object()):
        with pytest.raises(Ctap2Error) as e:
            canonical(value)
        assert e.value.code == ERR.PIN_AUTH_INVALID


def test_same_user_replaces_resident_credential(ctap, client_pin):
    make_rk(ctap, client_pin, "a.example", b"alice")
    make_rk(ctap, client_pin, "a.example", b"alice", name="alice2")
    cm = credman(ctap, client_pin)
    creds = cm.enumerate_creds(hashlib.sha256(b"a.example").digest())
    assert [c[6]["name"] for c in creds] == ["alice2"]


def test_config_toggle_always_uv(ctap, client_pin):
    token = client_pin.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
    Config(ctap, client_pin.protocol, token).toggle_always_uv()
    info = ctap.get_info()
    assert info.options["alwaysUv"] is True
    assert info.options["makeCredUvNotRqd"] is False
    with pytest.raises(CtapError) as e:
        ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"},
                             [{"type": "public-key", "alg": -7}])
    assert e.value.code == ERR.PUAT_REQUIRED
    with pytest.raises(CtapError) as e:  # config without a token once a PIN is set
        Config(ctap).toggle_always_uv()
    assert e.value.code == ERR.PUAT_REQUIRED
    Config(ctap, client_pin.protocol, token).toggle_always_uv()
    assert ctap.get_info().options["alwaysUv"] is False


def test_config_without_pin_is_open(ctap):
    Config(ctap).toggle_always_uv()
    assert ctap.get_info().options["alwaysUv"] is True


def test_always_uv_without_a_pin_asks_for_a_token_not_a_pin(ctap):
    # CTAP 2.1 makeCredential step 6 / getAssertion step 6: alwaysUv and no
    # pinUvAuthParam is PUAT_REQUIRED whether a PIN is set or not (not PIN_NOT_SET)
    Config(ctap).toggle_always_uv()
    assert ctap.get_info().options["clientPin"] is False
    with pytest.raises(CtapError) as e:
        ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"},
                             [{"type": "public-key", "alg": -7}])
    assert e.value.code == ERR.PUAT_REQUIRED
    with pytest.raises(CtapError) as e:
        ctap.get_assertion("example.com", os.urandom(32))
    assert e.value.code == ERR.PUAT_REQUIRED


def test_always_uv_alone_guards_config(ctap):
    """CTAP 2.1 6.11 step 4: alwaysUv on guards authenticatorConfig even without a PIN."""
    Config(ctap).toggle_always_uv()
    for call in (Config(ctap).toggle_always_uv, lambda: Config(ctap).set_min_pin_length(6)):
        with pytest.raises(CtapError) as e:
            call()
        assert e.value.code == ERR.PUAT_REQUIRED
    info = ctap.get_info()
    assert (info.options["alwaysUv"], info.min_pin_length) == (True, 4)


def test_a_pin_alone_guards_config(ctap, client_pin):
    """A PIN set and alwaysUv off: still no config without pinUvAuthParam."""
    assert ctap.get_info().options["alwaysUv"] is False
    for call in (Config(ctap).toggle_always_uv, lambda: Config(ctap).set_min_pin_length(6)):
        with pytest.raises(CtapError) as e:
            call()
        assert e.value.code == ERR.PUAT_REQUIRED
    info = ctap.get_info()
    assert (info.options["alwaysUv"], info.min_pin_length) == (False, 4)


def test_min_pin_length_rp_ids_up_to_the_advertised_maximum(ctap, client_pin):
    """More RP IDs than getInfo's maxRPIDsForSetMinPINLength is INVALID_PARAMETER."""
    most = ctap.info.max_rpids_for_min_pin
    assert most >= 1
    token = client_pin.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
    cfg = Config(ctap, client_pin.protocol, token)
    with pytest.raises(CtapError) as e:
        cfg.set_min_pin_length(6, rp_ids=[f"rp{i}.example" for i in range(most + 1)])
    assert e.value.code == ERR.INVALID_PARAMETER
    assert ctap.get_info().min_pin_length == 4  # nothing of it applied
    cfg.set_min_pin_length(6, rp_ids=[f"rp{i}.example" for i in range(most)])
    assert ctap.get_info().min_pin_length == 6


def test_force_pin_change_without_a_pin_is_pin_not_set(ctap):
    with pytest.raises(CtapError) as e:
        Config(ctap).set_min_pin_length(6, force_change_pin=True)
    assert e.value.code == ERR.PIN_NOT_SET
    info = ctap.get_info()
    assert (info.min_pin_length, info.force_pin_change) == (4, False)
    Config(ctap).set_min_pin_length(6)  # without forceChangePin it applies
    assert ctap.get_info().min_pin_length == 6


def test_set_min_pin_length_and_force_change(ctap, client_pin):
    token = client_pin.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
    cfg = Config(ctap, client_pin.protocol, token)
    cfg.set_min_pin_length(6, rp_ids=["example.com"])
    info = ctap.get_info()
    assert info.min_pin_length == 6 and info.force_pin_change is False
    with pytest.raises(CtapError) as e:
        cfg.set_min_pin_length(5)  # never decreases
    assert e.value.code == ERR.PIN_POLICY_VIOLATION
    # minPinLength extension: reported to the listed RP only
    for rp_id, expected in (("example.com", {"minPinLength": 6}), ("other.com", None)):
        token2 = client_pin.get_pin_token(PIN, P.MAKE_CREDENTIAL, rp_id)
        cdh = os.urandom(32)
        att = ctap.make_credential(cdh, {"id": rp_id}, {"id": b"u"},
                                   [{"type": "public-key", "alg": -7}],
                                   extensions={"minPinLength": True},
                                   pin_uv_param=client_pin.protocol.authenticate(token2, cdh),
                                   pin_uv_protocol=client_pin.protocol.VERSION)
        assert att.auth_data.extensions == expected
    # a longer minimum than the current PIN forces a change
    cfg = Config(ctap, client_pin.protocol, client_pin.get_pin_token(PIN, P.AUTHENTICATOR_CFG))
    cfg.set_min_pin_length(10)
    assert ctap.get_info().force_pin_change is True
    with pytest.raises(CtapError) as e:
        client_pin.get_pin_token(PIN)
    assert e.value.code == ERR.PIN_INVALID
    with pytest.raises(CtapError) as e:
        client_pin.change_pin(PIN, "123456789")  # 9 < 10
    assert e.value.code == ERR.PIN_POLICY_VIOLATION
    client_pin.change_pin(PIN, "1234567890")
    assert ctap.get_info().force_pin_change is False
    assert client_pin.get_pin_token("1234567890")


def test_large_blobs_round_trip(ctap, client_pin):
    att = make_rk(ctap, client_pin, "example.com", b"alice",
                  extensions={"largeBlobKey": True})
    lbk = att.large_blob_key
    assert lbk
    token = client_pin.get_pin_token(PIN, P.LARGE_BLOB_WRITE)
    blobs = LargeBlobs(ctap, client_pin.protocol, token)
    assert blobs.read_blob_array() == []
    data = os.urandom(3000)  # incompressible: several fragments
    blobs.put_blob(lbk, data)
    assert LargeBlobs(ctap).get_blob(lbk) == data
    assert LargeBlobs(ctap).get_blob(os.urandom(32)) is None
    with pytest.raises(CtapError) as e:  # writes need the lbw token once a PIN is set
        LargeBlobs(ctap).put_blob(lbk, b"x")
    assert e.value.code == ERR.PUAT_REQUIRED


def test_large_blob_integrity_and_sequence(ctap):
    body = b"\x81\xa0"  # [{}] -- not a valid entry but a well-formed array
    with pytest.raises(CtapError) as e:
        ctap.large_blobs(0, set=body + bytes(16), length=len(body) + 16)
    assert e.value.code == ERR.INTEGRITY_FAILURE
    assert LargeBlobs(ctap).read_blob_array() == []
    blob = body + hashlib.sha256(body).digest()[:16]
    ctap.large_blobs(0, set=blob[:5], length=len(blob))
    with pytest.raises(CtapError) as e:
        ctap.large_blobs(7, set=blob[7:])
    assert e.value.code == ERR.INVALID_SEQ
    ctap.large_blobs(5, set=blob[5:])
    assert LargeBlobs(ctap).read_blob_array() == [{}]


def checked(body: bytes) -> bytes:
    """A serialized large-blob array: its CBOR and the first 16 bytes of its SHA-256."""
    return body + hashlib.sha256(body).digest()[:16]


def large_blobs_error(ctap, offset, **kw) -> int:
    with pytest.raises(CtapError) as e:
        ctap.large_blobs(offset, **kw)
    return e.value.code


def test_large_blob_reads_by_offset_and_size(ctap):
    """CTAP 2.1 6.10.2 get: a slice of the stored array, at most maxFragmentLength."""
    stored = checked(b"\x80")  # a new key's: the empty array
    fragment = ctap.info.max_msg_size - 64  # maxFragmentLength
    assert ctap.large_blobs(0, get=fragment)[1] == stored
    assert ctap.large_blobs(3, get=4)[1] == stored[3:7]
    assert ctap.large_blobs(0, get=0)[1] == b""
    assert ctap.large_blobs(len(stored), get=5)[1] == b""  # at the end: nothing left
    assert large_blobs_error(ctap, len(stored) + 1, get=1) == ERR.INVALID_PARAMETER
    assert large_blobs_error(ctap, 0, get=fragment + 1) == ERR.INVALID_LENGTH
    assert large_blobs_error(ctap, 0, get=-1) == ERR.INVALID_PARAMETER
    assert large_blobs_error(ctap, -1, get=1) == ERR.INVALID_PARAMETER
    assert large_blobs_error(ctap, 0, get=1, length=17) == ERR.INVALID_PARAMETER


def test_large_blob_write_refusals(ctap):
    """CTAP 2.1 6.10.2 set: each malformed fragment by its code, and nothing stored."""
    blob = checked(b"\x81\xa0")  # [{}]
    fragment = ctap.info.max_msg_size - 64
    assert large_blobs_error(ctap, 0, set=blob) == ERR.INVALID_PARAMETER  # no length
    assert large_blobs_error(ctap, 0, set=blob[:16], length=16) == ERR.INVALID_PARAMETER
    assert large_blobs_error(ctap, 0, set=bytes(fragment + 1),
                             length=fragment + 1) == ERR.INVALID_LENGTH
    # more data than the announced length
    assert large_blobs_error(ctap, 0, set=blob + b"zz", length=len(blob)) \
        == ERR.INVALID_PARAMETER
    assert LargeBlobs(ctap).read_blob_array() == []
    ctap.large_blobs(0, set=blob[:1], length=len(blob))
    # only the first fragment carries the length
    assert large_blobs_error(ctap, 1, set=blob[1:], length=len(blob)) == ERR.INVALID_PARAMETER
    ctap.large_blobs(1, set=blob[1:])
    assert LargeBlobs(ctap).read_blob_array() == [{}]
    # a finished write takes no more fragments: the next one starts at 0 again
    assert large_blobs_error(ctap, 1, set=b"x") == ERR.INVALID_SEQ
    assert LargeBlobs(ctap).read_blob_array() == [{}]


def test_a_fragment_of_max_fragment_length_is_taken(ctap):
    fragment = ctap.info.max_msg_size - 64
    array = [{1: bytes(fragment)}]
    blob = checked(cbor.encode(array))
    assert len(blob) > fragment
    ctap.large_blobs(0, set=blob[:fragment], length=len(blob))
    ctap.large_blobs(fragment, set=blob[fragment:])
    assert LargeBlobs(ctap).read_blob_array() == array


def test_a_new_key_takes_a_write_only_from_offset_zero(ctap):
    assert large_blobs_error(ctap, 1, set=b"x") == ERR.INVALID_SEQ


def test_a_power_cycle_drops_a_partial_large_blob_write(key, ctap):
    blob = checked(b"\x81\xa0")
    ctap.large_blobs(0, set=blob[:1], length=len(blob))
    key.power_cycle()
    assert large_blobs_error(ctap, 1, set=blob[1:]) == ERR.INVALID_SEQ
    assert LargeBlobs(ctap).read_blob_array() == []


def test_odd_entity_members_are_not_stored(ctap, client_pin):
    token = client_pin.get_pin_token(PIN, P.MAKE_CREDENTIAL, "odd.example")
    cdh = os.urandom(32)
    ctap.send_cbor(Ctap2.CMD.MAKE_CREDENTIAL, {
        1: cdh, 2: {"id": "odd.example", "extra": [1, {2: b"x"}]},
        3: {"id": b"u", "name": "n", "junk": {"a": True}},
        4: [{"type": "public-key", "alg": -8}], 7: {"rk": True},
        8: client_pin.protocol.authenticate(token, cdh), 9: client_pin.protocol.VERSION})
    cm = credman(ctap, client_pin)
    assert [r[3] for r in cm.enumerate_rps()] == [{"id": "odd.example"}]
    creds = cm.enumerate_creds(hashlib.sha256(b"odd.example").digest())
    assert creds[0][6] == {"id": b"u", "name": "n"}
    assert creds[0][8][3] == -8


def test_large_blob_size_bounds_and_permissions(ctap, client_pin):
    token = client_pin.get_pin_token(PIN, P.LARGE_BLOB_WRITE)
    blobs = LargeBlobs(ctap, client_pin.protocol, token)
    max_size = ctap.info.max_large_blob - 16
    array = [{1: os.urandom(max_size - 8)}]
    array.extend([0] * (max_size - len(cbor.encode(array))))
    blobs.write_blob_array(array)  # exactly full
    assert len(LargeBlobs(ctap).read_blob_array()) == len(array)
    array.append(1)
    with pytest.raises(CtapError) as e:
        blobs.write_blob_array(array)
    assert e.value.code == ERR.LARGE_BLOB_STORAGE_FULL
    blobs.write_blob_array([])
    assert LargeBlobs(ctap).read_blob_array() == []
    wrong = LargeBlobs(ctap, client_pin.protocol,
                       client_pin.get_pin_token(PIN, P.CREDENTIAL_MGMT))
    with pytest.raises(CtapError) as e:
        wrong.put_blob(os.urandom(32), b"data")
    assert e.value.code == ERR.PIN_AUTH_INVALID


def test_token_without_permissions_is_refused(ctap, client_pin):
    with pytest.raises(CtapError) as e:  # CTAP 2.1: permissions 0 is INVALID_PARAMETER
        client_pin.get_pin_token(PIN, ClientPin.PERMISSION(0))
    assert e.value.code == ERR.INVALID_PARAMETER
    assert client_pin.get_pin_retries()[0] == 8  # refused before the PIN was checked
    token = client_pin.get_pin_token(PIN, P.LARGE_BLOB_WRITE)
    with pytest.raises(CtapError) as e:  # a token without the needed permission
        CredentialManagement(ctap, client_pin.protocol, token).get_metadata()
    assert e.value.code == ERR.PIN_AUTH_INVALID


def test_min_pin_length_up_to_the_maximum(ctap, client_pin):
    cfg = Config(ctap, client_pin.protocol, client_pin.get_pin_token(PIN, P.AUTHENTICATOR_CFG))
    cfg.set_min_pin_length(min_pin_length=ctap.info.max_pin_length)
    info = ctap.get_info()
    assert info.min_pin_length == info.max_pin_length == 63
    assert info.force_pin_change is True
    with pytest.raises(CtapError) as e:  # no token until the PIN is changed
        client_pin.get_pin_token(PIN, P.AUTHENTICATOR_CFG)
    assert e.value.code == ERR.PIN_INVALID
    with pytest.raises(CtapError) as e:  # a stale token does not help either
        Config(ctap, client_pin.protocol, b"\0" * 32).set_min_pin_length(min_pin_length=63)
    assert e.value.code == ERR.PIN_AUTH_INVALID


@pytest.mark.parametrize("with_blob_permission", [False, True])
def test_a_spent_token_keeps_only_the_large_blob_permission_it_had(ctap, client_pin,
                                                                   with_blob_permission):
    """After makeCredential a token keeps largeBlobWrite if it had it, and gains nothing."""
    perms = P.MAKE_CREDENTIAL | (P.LARGE_BLOB_WRITE if with_blob_permission else 0)
    token = client_pin.get_pin_token(PIN, perms, "example.com")
    cdh = os.urandom(32)
    ctap.make_credential(cdh, {"id": "example.com", "name": "E"}, {"id": b"u", "name": "u"},
                         [{"type": "public-key", "alg": -7}],
                         pin_uv_param=client_pin.protocol.authenticate(token, cdh),
                         pin_uv_protocol=client_pin.protocol.VERSION)
    blobs = LargeBlobs(ctap, client_pin.protocol, token)
    if with_blob_permission:
        blobs.write_blob_array([{1: b"x"}])
        assert LargeBlobs(ctap).read_blob_array() == [{1: b"x"}]
    else:
        with pytest.raises(CtapError) as e:
            blobs.write_blob_array([{1: b"x"}])
        assert e.value.code == ERR.PIN_AUTH_INVALID
    cdh = os.urandom(32)  # and makeCredential is spent either way
    with pytest.raises(CtapError) as e:
        ctap.make_credential(cdh, {"id": "example.com", "name": "E"}, {"id": b"v", "name": "v"},
                             [{"type": "public-key", "alg": -7}],
                             pin_uv_param=client_pin.protocol.authenticate(token, cdh),
                             pin_uv_protocol=client_pin.protocol.VERSION)
    assert e.value.code == ERR.PIN_AUTH_INVALID
