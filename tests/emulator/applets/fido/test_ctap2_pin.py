"""clientPIN through fido2's real ClientPin (protocols 1 and 2): retries, blocking, tokens."""

from __future__ import annotations

import hashlib
import os

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Config, Ctap2
from fido2.ctap2.pin import ClientPin, PinProtocolV1, PinProtocolV2

from hwtoken.emulator import ApproveAlways, DenyAlways, VirtualKey, fido_device

PIN = "12345678"
ERR = CtapError.ERR


@pytest.fixture(params=[1, 2], ids=["protocol1", "protocol2"])
def pin(request, ctap):
    proto = PinProtocolV1() if request.param == 1 else PinProtocolV2()
    return ClientPin(ctap, proto)


def code(excinfo) -> int:
    return excinfo.value.code


def make_cred(ctap, pin, token, user_id=b"u", rp_id="example.com", **kw):
    """makeCredential (ES256) authorised by ``token`` over a fresh clientDataHash."""
    cdh = os.urandom(32)
    return ctap.make_credential(cdh, {"id": rp_id}, {"id": user_id},
                                [{"type": "public-key", "alg": -7}],
                                pin_uv_param=pin.protocol.authenticate(token, cdh),
                                pin_uv_protocol=pin.protocol.VERSION, **kw)


def test_set_pin_updates_info_and_retries(ctap, pin):
    assert ctap.get_info().options["clientPin"] is False
    with pytest.raises(CtapError) as e:
        pin.get_pin_token(PIN)
    assert code(e) == ERR.PIN_NOT_SET
    pin.set_pin(PIN)
    assert ctap.get_info().options["clientPin"] is True
    assert pin.get_pin_retries() == (8, False)
    with pytest.raises(CtapError) as e:
        pin.set_pin("another")
    assert code(e) == ERR.NOT_ALLOWED


def test_pin_too_long(pin):
    with pytest.raises(CtapError) as e:
        pin.set_pin("9" * 64)  # at most 63 bytes
    assert code(e) == ERR.PIN_POLICY_VIOLATION


def test_short_pin_rejected_by_key(ctap):
    # craft a 3-character PIN by hand: fido2's ClientPin refuses to send it
    proto = PinProtocolV2()
    client = ClientPin(ctap, proto)
    key_agreement, shared = client._get_shared_secret()
    enc = proto.encrypt(shared, b"123".ljust(64, b"\0"))
    with pytest.raises(CtapError) as e:
        ctap.client_pin(2, ClientPin.CMD.SET_PIN, key_agreement=key_agreement,
                        new_pin_enc=enc, pin_uv_param=proto.authenticate(shared, enc))
    assert code(e) == ERR.PIN_POLICY_VIOLATION


def test_token_signs_make_credential(ctap, pin):
    pin.set_pin(PIN)
    token = pin.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL, "example.com")
    att = make_cred(ctap, pin, token, options={"rk": True})
    assert att.auth_data.is_user_verified()
    # the touch used up the token's mc permission
    with pytest.raises(CtapError) as e:
        make_cred(ctap, pin, token, user_id=b"v")
    assert code(e) == ERR.PIN_AUTH_INVALID


def test_resident_key_needs_pin_once_set(ctap, pin):
    pin.set_pin(PIN)
    with pytest.raises(CtapError) as e:
        ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"},
                             [{"type": "public-key", "alg": -7}], options={"rk": True})
    assert code(e) == ERR.PUAT_REQUIRED
    # non-resident still works without (makeCredUvNotRqd)
    att = ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"},
                               [{"type": "public-key", "alg": -7}])
    assert not att.auth_data.is_user_verified()


def test_token_bound_to_rp_and_permissions(ctap, pin):
    pin.set_pin(PIN)
    token = pin.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL, "example.com")
    cdh = os.urandom(32)
    with pytest.raises(CtapError) as e:  # other RP
        make_cred(ctap, pin, token, rp_id="evil.example")
    assert code(e) == ERR.PIN_AUTH_INVALID
    with pytest.raises(CtapError) as e:  # ga not granted
        ctap.get_assertion("example.com", cdh, pin_uv_param=pin.protocol.authenticate(
            token, cdh), pin_uv_protocol=pin.protocol.VERSION)
    assert code(e) == ERR.PIN_AUTH_INVALID
    with pytest.raises(CtapError) as e:  # mc/ga need an RP ID
        pin.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL)
    assert code(e) == ERR.MISSING_PARAMETER
    with pytest.raises(CtapError) as e:
        pin.get_pin_token(PIN, ClientPin.PERMISSION.BIO_ENROLL)
    assert code(e) == ERR.UNAUTHORIZED_PERMISSION


def test_change_pin(ctap, pin):
    pin.set_pin(PIN)
    pin.change_pin(PIN, "87654321")
    with pytest.raises(CtapError) as e:
        pin.get_pin_token(PIN)
    assert code(e) == ERR.PIN_INVALID
    assert pin.get_pin_token("87654321")
    with pytest.raises(CtapError) as e:
        pin.change_pin("wrong-pin", "11112222")
    assert code(e) == ERR.PIN_INVALID


def test_three_wrong_need_power_cycle_and_eight_block(key, ctap, pin):
    pin.set_pin(PIN)
    expected = 8
    for attempt in range(8):
        if attempt and attempt % 3 == 0:
            with pytest.raises(CtapError) as e:  # still blocked until power cycle
                pin.get_pin_token("wrong-pin")
            assert code(e) == ERR.PIN_AUTH_BLOCKED
            assert pin.get_pin_retries() == (expected, True)
            key.power_cycle()
            assert pin.get_pin_retries() == (expected, False)
        with pytest.raises(CtapError) as e:
            pin.get_pin_token("wrong-pin")
        expected -= 1
        if expected == 0:
            assert code(e) == ERR.PIN_BLOCKED
        elif attempt % 3 == 2:
            assert code(e) == ERR.PIN_AUTH_BLOCKED
        else:
            assert code(e) == ERR.PIN_INVALID
        assert pin.get_pin_retries()[0] == expected
    key.power_cycle()
    with pytest.raises(CtapError) as e:
        pin.get_pin_token(PIN)  # even the right PIN: blocked for good
    assert code(e) == ERR.PIN_BLOCKED


def test_right_pin_resets_retries(ctap, pin):
    pin.set_pin(PIN)
    for _ in range(2):
        with pytest.raises(CtapError) as e:
            pin.get_pin_token("wrong-pin")
        assert code(e) == ERR.PIN_INVALID
    assert pin.get_pin_retries()[0] == 6
    pin.get_pin_token(PIN)
    assert pin.get_pin_retries()[0] == 8


def test_power_cycle_drops_tokens(key, ctap, pin):
    pin.set_pin(PIN)
    token = pin.get_pin_token(PIN)
    key.power_cycle()
    with pytest.raises(CtapError) as e:
        make_cred(ctap, pin, token)
    assert code(e) == ERR.PIN_AUTH_INVALID


def test_retries_persist_across_load(tmp_path):
    path = tmp_path / "p.key"
    with VirtualKey.create(path) as key:
        pin = ClientPin(Ctap2(fido_device(key)))
        pin.set_pin(PIN)
        with pytest.raises(CtapError) as e:
            pin.get_pin_token("wrong-pin")
        assert code(e) == ERR.PIN_INVALID
    with VirtualKey.load(path) as key:
        pin = ClientPin(Ctap2(fido_device(key)))
        assert pin.get_pin_retries() == (7, False)
        assert pin.get_pin_token(PIN)
    assert PIN.encode() not in path.read_bytes()


def test_empty_pin_auth_probe(key, ctap, pin):
    # a platform asks "touch to select; is a PIN set?" with a zero-length pinUvAuthParam
    args = (os.urandom(32), {"id": "example.com"}, {"id": b"u"},
            [{"type": "public-key", "alg": -7}])
    with pytest.raises(CtapError) as e:
        ctap.make_credential(*args, pin_uv_param=b"", pin_uv_protocol=pin.protocol.VERSION)
    assert code(e) == ERR.PIN_NOT_SET
    pin.set_pin(PIN)
    with pytest.raises(CtapError) as e:
        ctap.make_credential(*args, pin_uv_param=b"", pin_uv_protocol=pin.protocol.VERSION)
    assert code(e) == ERR.PIN_INVALID
    key.presence = DenyAlways()
    with pytest.raises(CtapError) as e:
        ctap.make_credential(*args, pin_uv_param=b"", pin_uv_protocol=pin.protocol.VERSION)
    assert code(e) == ERR.OPERATION_DENIED


def test_unsupported_protocol_and_subcommand(ctap):
    with pytest.raises(CtapError) as e:
        ctap.client_pin(3, ClientPin.CMD.GET_KEY_AGREEMENT)
    assert code(e) == ERR.INVALID_PARAMETER
    with pytest.raises(CtapError) as e:
        ctap.client_pin(2, ClientPin.CMD.GET_TOKEN_USING_UV)
    assert code(e) == ERR.INVALID_SUBCOMMAND


def test_soft_lock_does_not_count_or_unlock(key, ctap, pin):
    pin.set_pin(PIN)
    for expected in (ERR.PIN_INVALID, ERR.PIN_INVALID, ERR.PIN_AUTH_BLOCKED):
        with pytest.raises(CtapError) as e:
            pin.get_pin_token("wrong-pin")
        assert code(e) == expected
    for attempt in (PIN, "wrong-pin"):
        with pytest.raises(CtapError) as e:
            pin.get_pin_token(attempt)
        assert code(e) == ERR.PIN_AUTH_BLOCKED
    assert pin.get_pin_retries()[0] == 5
    key.power_cycle()
    assert pin.get_pin_token(PIN)
    assert pin.get_pin_retries()[0] == 8


def test_retries_need_a_pin(ctap, pin):
    with pytest.raises(CtapError) as e:
        pin.get_pin_retries()
    assert code(e) == ERR.PIN_NOT_SET


@pytest.mark.parametrize("x, y", [(bytes(32), bytes(32)), (b"\x01" * 32, b"\x02" * 32),
                                  (b"\xff" * 32, b"\xff" * 32)])
def test_invalid_platform_key_costs_no_retry(ctap, pin, x, y):
    pin.set_pin(PIN)
    bad = {1: 2, 3: -25, -1: 1, -2: x, -3: y}
    with pytest.raises(CtapError) as e:
        ctap.client_pin(pin.protocol.VERSION, ClientPin.CMD.GET_TOKEN_USING_PIN,
                        key_agreement=bad, pin_hash_enc=bytes(16 * pin.protocol.VERSION),
                        permissions=ClientPin.PERMISSION.CREDENTIAL_MGMT)
    assert code(e) == ERR.INVALID_PARAMETER
    assert pin.get_pin_retries()[0] == 8


# -- what the key refuses, each with the code CTAP 2.1 §6.5 names -----------------------------
def agree(ctap, proto):
    """(keyAgreement, shared secret) from a fresh getKeyAgreement, as a platform does it."""
    pk = ctap.client_pin(proto.VERSION, ClientPin.CMD.GET_KEY_AGREEMENT)[
        ClientPin.RESULT.KEY_AGREEMENT]
    return proto.encapsulate(pk)


def set_pin_raw(ctap, proto, padded: bytes, *, auth: bytes | None = None):
    """setPIN with ``padded`` (the plaintext newPinEnc carries) encrypted by the platform."""
    key_agreement, shared = agree(ctap, proto)
    enc = proto.encrypt(shared, padded)
    return ctap.client_pin(proto.VERSION, ClientPin.CMD.SET_PIN, key_agreement=key_agreement,
                           new_pin_enc=enc,
                           pin_uv_param=auth if auth is not None else proto.authenticate(
                               shared, enc))


def test_a_63_byte_pin_is_kept_whole(ctap, pin):
    long_pin = "a" * 62 + "X"  # the longest PIN CTAP allows, ending in a letter
    pin.set_pin(long_pin)
    with pytest.raises(CtapError) as e:
        pin.get_pin_token(long_pin[:-1])
    assert code(e) == ERR.PIN_INVALID
    assert pin.get_pin_token(long_pin)


@pytest.mark.parametrize("padded, expected", [
    (b"12\x0034".ljust(64, b"\0"), ERR.PIN_POLICY_VIOLATION),  # a NUL inside the PIN
    (b"\xff\xfe\xfd\xfc".ljust(64, b"\0"), ERR.PIN_POLICY_VIOLATION),  # not UTF-8
    (b"1234".ljust(80, b"\0"), ERR.INVALID_PARAMETER),  # newPinEnc of the wrong length
], ids=["nul", "not-utf8", "length"])
def test_malformed_new_pin_is_refused(ctap, pin, padded, expected):
    with pytest.raises(CtapError) as e:
        set_pin_raw(ctap, pin.protocol, padded)
    assert code(e) == expected
    assert ctap.get_info().options["clientPin"] is False


def test_set_pin_with_a_wrong_auth_param_is_refused(ctap, pin):
    with pytest.raises(CtapError) as e:
        set_pin_raw(ctap, pin.protocol, PIN.encode().ljust(64, b"\0"),
                    auth=bytes(16 * pin.protocol.VERSION))
    assert code(e) == ERR.PIN_AUTH_INVALID
    assert ctap.get_info().options["clientPin"] is False


def test_change_pin_with_a_wrong_auth_param_costs_no_retry(ctap, pin):
    pin.set_pin(PIN)
    proto = pin.protocol
    key_agreement, shared = agree(ctap, proto)
    pin_hash_enc = proto.encrypt(shared, hashlib.sha256(PIN.encode()).digest()[:16])
    new_pin_enc = proto.encrypt(shared, b"87654321".ljust(64, b"\0"))
    with pytest.raises(CtapError) as e:
        ctap.client_pin(proto.VERSION, ClientPin.CMD.CHANGE_PIN, key_agreement=key_agreement,
                        pin_hash_enc=pin_hash_enc, new_pin_enc=new_pin_enc,
                        pin_uv_param=proto.authenticate(shared, new_pin_enc))  # not + hash
    assert code(e) == ERR.PIN_AUTH_INVALID
    assert pin.get_pin_retries() == (8, False)
    assert pin.get_pin_token(PIN)


def test_pin_hash_of_the_wrong_length_costs_no_retry(ctap, pin):
    pin.set_pin(PIN)
    key_agreement, _ = agree(ctap, pin.protocol)
    with pytest.raises(CtapError) as e:
        ctap.client_pin(pin.protocol.VERSION, ClientPin.CMD.GET_TOKEN_USING_PIN_LEGACY,
                        key_agreement=key_agreement, pin_hash_enc=bytes(8))
    assert code(e) == ERR.INVALID_PARAMETER
    assert pin.get_pin_retries() == (8, False)


def test_legacy_pin_token_takes_no_permissions_or_rp_id(ctap, pin):
    pin.set_pin(PIN)
    for extra in ({"permissions": ClientPin.PERMISSION.MAKE_CREDENTIAL},
                  {"permissions_rpid": "example.com"}):
        key_agreement, shared = agree(ctap, pin.protocol)
        with pytest.raises(CtapError) as e:
            ctap.client_pin(pin.protocol.VERSION, ClientPin.CMD.GET_TOKEN_USING_PIN_LEGACY,
                            key_agreement=key_agreement, pin_hash_enc=pin.protocol.encrypt(
                                shared, hashlib.sha256(PIN.encode()).digest()[:16]), **extra)
        assert code(e) == ERR.INVALID_PARAMETER
    assert pin.get_pin_retries() == (8, False)


def test_legacy_pin_token_makes_and_gets_assertions_for_any_rp(ctap, pin):
    # getPinToken (0x05), what CTAP 2.0 platforms use: mc and ga, no RP ID given
    pin.set_pin(PIN)
    att = make_cred(ctap, pin, pin.get_pin_token(PIN), rp_id="a.example")
    assert att.auth_data.is_user_verified()
    token = pin.get_pin_token(PIN)
    cdh = os.urandom(32)
    allow = [{"type": "public-key", "id": att.auth_data.credential_data.credential_id}]
    assertion = ctap.get_assertion("a.example", cdh, allow, pin_uv_param=pin.protocol.authenticate(
        token, cdh), pin_uv_protocol=pin.protocol.VERSION)
    assert assertion.auth_data.is_user_verified()


def test_a_token_without_rp_id_is_bound_to_the_first_rp_it_is_used_for(key, ctap, pin):
    # CTAP 2.1 §6.1.2 step 11: the first use associates the request's rpId with the token;
    # a use the user then declines leaves the token unspent, but bound
    pin.set_pin(PIN)
    token = pin.get_pin_token(PIN)
    key.presence = DenyAlways()
    with pytest.raises(CtapError) as e:
        make_cred(ctap, pin, token, rp_id="a.example")
    assert code(e) == ERR.OPERATION_DENIED
    key.presence = ApproveAlways()
    with pytest.raises(CtapError) as e:
        make_cred(ctap, pin, token, rp_id="b.example")
    assert code(e) == ERR.PIN_AUTH_INVALID
    assert make_cred(ctap, pin, token, rp_id="a.example").auth_data.is_user_verified()


def test_a_correct_pin_starts_the_count_to_the_soft_lock_again(ctap, pin):
    pin.set_pin(PIN)
    for _ in range(2):
        with pytest.raises(CtapError) as e:
            pin.get_pin_token("wrong-pin")
        assert code(e) == ERR.PIN_INVALID
    pin.get_pin_token(PIN)
    for _ in range(2):  # two more wrong ones: still not the third in a row
        with pytest.raises(CtapError) as e:
            pin.get_pin_token("wrong-pin")
        assert code(e) == ERR.PIN_INVALID
    with pytest.raises(CtapError) as e:
        pin.get_pin_token("wrong-pin")
    assert code(e) == ERR.PIN_AUTH_BLOCKED


def test_forced_change_refuses_the_same_pin_and_records_the_new_length(ctap, pin):
    pin.set_pin(PIN)
    cfg = Config(ctap, pin.protocol,
                 pin.get_pin_token(PIN, ClientPin.PERMISSION.AUTHENTICATOR_CFG))
    cfg.set_min_pin_length(force_change_pin=True)
    with pytest.raises(CtapError) as e:
        pin.change_pin(PIN, PIN)
    assert code(e) == ERR.PIN_POLICY_VIOLATION
    pin.change_pin(PIN, "123456789")  # nine characters
    assert ctap.get_info().force_pin_change is False
    cfg = Config(ctap, pin.protocol,
                 pin.get_pin_token("123456789", ClientPin.PERMISSION.AUTHENTICATOR_CFG))
    cfg.set_min_pin_length(9)  # the PIN is long enough: no change forced
    assert ctap.get_info().force_pin_change is False
    cfg.set_min_pin_length(10)
    assert ctap.get_info().force_pin_change is True


def test_client_pin_parameters_checked_as_ctap_says(ctap):
    ClientPin(ctap).set_pin(PIN)
    # pinUvAuthProtocol is optional for getPINRetries and getUVRetries only
    assert ctap.client_pin(None, ClientPin.CMD.GET_PIN_RETRIES)[
        ClientPin.RESULT.PIN_RETRIES] == 8
    with pytest.raises(CtapError) as e:
        ctap.client_pin(None, ClientPin.CMD.GET_KEY_AGREEMENT)
    assert code(e) == ERR.MISSING_PARAMETER
    with pytest.raises(CtapError) as e:  # this key has no built-in user verification
        ctap.client_pin(None, ClientPin.CMD.GET_UV_RETRIES)
    assert code(e) == ERR.INVALID_SUBCOMMAND
    with pytest.raises(CtapError) as e:
        ctap.client_pin("2", ClientPin.CMD.GET_KEY_AGREEMENT)
    assert code(e) == ERR.CBOR_UNEXPECTED_TYPE
    with pytest.raises(CtapError) as e:  # a pinUvAuthParam needs its protocol
        ctap.make_credential(os.urandom(32), {"id": "example.com"}, {"id": b"u"},
                             [{"type": "public-key", "alg": -7}], pin_uv_param=bytes(16))
    assert code(e) == ERR.MISSING_PARAMETER


def test_a_token_works_only_with_the_protocol_it_was_issued_under(ctap):
    ClientPin(ctap).set_pin(PIN)
    v1, v2 = ClientPin(ctap, PinProtocolV1()), ClientPin(ctap, PinProtocolV2())
    token = v1.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL, "example.com")
    # the platform knows the token and could authenticate with protocol 2's HMAC as well
    with pytest.raises(CtapError) as e:
        make_cred(ctap, v2, token)
    assert code(e) == ERR.PIN_AUTH_INVALID
    # refusing it there does not take it away from protocol 1
    assert make_cred(ctap, v1, token).auth_data.is_user_verified()
