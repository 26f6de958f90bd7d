"""The ``yubikey-bio`` profile: bio enrollment and built-in user verification, through
python-fido2's own classes (FPBioEnrollment, ClientPin, Fido2Client) over CTAPHID, with the
test choosing which finger touches the sensor (Finger, FingerCallback)."""

from __future__ import annotations

import os
import threading

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.bio import CaptureError, FPBioEnrollment
from fido2.ctap2.pin import ClientPin, PinProtocolV1
from fido2.server import Fido2Server

from hwtoken.emulator import (
    ApproveAlways,
    DenyAlways,
    Finger,
    FingerCallback,
    VirtualKey,
    fido_device,
)
from hwtoken.emulator.presence import DEFAULT_FINGER, NO_MATCH
from hwtoken.testing import enroll_finger

ERR = CtapError.ERR
P = ClientPin.PERMISSION
FB = FPBioEnrollment.FEEDBACK
PIN = "12345678"
RP = {"id": "example.com", "name": "Example"}
ES256 = [{"type": "public-key", "alg": -7}]
AAGUID = "d8522d9f-575b-4866-88a9-ba99fa02f35b"


class Counting(ApproveAlways):
    """Touches with ``finger`` and counts the touches the key asked for."""

    def __init__(self, finger: str = DEFAULT_FINGER) -> None:
        self.finger = finger
        self.touches = 0

    def decide(self, reason, cancel, keepalive):
        self.touches += 1
        return True


pytestmark = pytest.mark.hwtoken_profile("yubikey-bio")


@pytest.fixture
def bio(virtual_key):
    return virtual_key


@pytest.fixture
def ctap(bio):
    """Ctap2 on the bio key, whose PIN is set (enrolling a finger needs one)."""
    ctap = Ctap2(fido_device(bio))
    ClientPin(ctap).set_pin(PIN)
    return ctap


def enroller(ctap, permissions=P.BIO_ENROLL, protocol=None):
    cp = ClientPin(ctap, protocol)
    return FPBioEnrollment(ctap, cp.protocol, cp.get_pin_token(PIN, permissions))


def raw_bio(ctap, sub, params=None, token=None, protocol=None):
    """One authenticatorBioEnrollment call (authenticated with ``token`` if given)."""
    from fido2 import cbor

    kw = {}
    if token is not None:
        message = bytes([1, sub]) + (cbor.encode(params) if params is not None else b"")
        kw = {"pin_uv_protocol": protocol.VERSION,
              "pin_uv_param": protocol.authenticate(token, message)}
    return ctap.bio_enrollment(modality=1, sub_cmd=sub, sub_cmd_params=params, **kw)


def status(call):
    with pytest.raises(CtapError) as info:
        call()
    return info.value.code


def uv_token(ctap, permissions=P.MAKE_CREDENTIAL, rp_id="example.com"):
    cp = ClientPin(ctap)
    return cp.protocol, cp.get_uv_token(permissions, rp_id)


def retries(ctap):
    return ClientPin(ctap).get_uv_retries()


# -- the model ----------------------------------------------------------------------------
def test_get_info_is_a_yubikey_bio(bio):
    info = Ctap2(fido_device(bio)).get_info()
    assert str(info.aaguid) == AAGUID
    assert info.firmware_version == 0x050506
    assert info.versions == ["U2F_V2", "FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"]
    assert info.transports == ["usb"]
    assert [a["alg"] for a in info.algorithms] == [-7, -8]
    assert info.preferred_platform_uv_attempts == 3
    assert info.uv_modality == 0x02  # FINGERPRINT_INTERNAL
    assert info.remaining_disc_creds == 25
    assert info.max_msg_size == 1200 and info.max_large_blob == 1024
    # a sensor without a finger: uv supported but not configured
    assert info.options["uv"] is False and info.options["bioEnroll"] is False
    assert info.options["userVerificationMgmtPreview"] is False
    assert info.options["uvBioEnroll"] is True
    assert info.options["clientPin"] is False


def test_options_turn_true_once_a_finger_is_enrolled(bio, ctap):
    enroll_finger(bio, pin=PIN)
    options = ctap.get_info().options
    assert options["uv"] and options["bioEnroll"] and options["userVerificationMgmtPreview"]


def test_other_models_have_no_sensor(tmp_path):
    with VirtualKey.create(tmp_path / "k.key", profile="latest") as key:
        ctap = Ctap2(fido_device(key))
        assert "uv" not in ctap.info.options and "bioEnroll" not in ctap.info.options
        assert status(lambda: ctap.send_cbor(0x09, {6: True})) == ERR.INVALID_COMMAND
        assert status(lambda: ctap.send_cbor(0x40, {6: True})) == ERR.INVALID_COMMAND
        assert status(lambda: ClientPin(ctap).get_uv_retries()) == ERR.INVALID_SUBCOMMAND
        assert status(lambda: ctap.make_credential(
            os.urandom(32), RP, {"id": b"u", "name": "u"}, ES256, options={"uv": True})
        ) == ERR.INVALID_OPTION
        ClientPin(ctap).set_pin(PIN)  # and no token carries the be permission
        assert status(lambda: ClientPin(ctap).get_pin_token(PIN, P.BIO_ENROLL)
                      ) == ERR.UNAUTHORIZED_PERMISSION


@pytest.mark.parametrize("profile", ["latest", "yubikey-bio", "yubikey-5"])
def test_undefined_permission_bits_are_unauthorized(tmp_path, profile):
    with VirtualKey.create(tmp_path / "k.key", profile=profile) as key:
        ctap = Ctap2(fido_device(key))
        ClientPin(ctap).set_pin(PIN)
        for bits in (0x80, 0x100, 0x81):
            assert status(lambda b=bits: ClientPin(ctap).get_pin_token(PIN, b)
                          ) == ERR.UNAUTHORIZED_PERMISSION


def test_sensor_info_and_modality_need_no_token(bio):
    ctap = Ctap2(fido_device(bio))
    assert ctap.bio_enrollment(get_modality=True) == {1: 1}
    assert raw_bio(ctap, 7) == {1: 1, 2: 1, 3: 5, 8: 15}


# -- enrollment ---------------------------------------------------------------------------
def test_enroll_counts_samples_down_then_enumerate_rename_remove(bio, ctap):
    bio.presence = Finger("left-thumb")
    enrollment = enroller(ctap)
    assert enrollment.enumerate_enrollments() == {}  # (INVALID_OPTION, as fido2 expects)
    context = enrollment.enroll()
    remaining, template_id = [], None
    while template_id is None:
        template_id = context.capture()
        remaining.append(context.remaining)
    assert remaining == [4, 3, 2, 1, 0]
    assert enrollment.enumerate_enrollments() == {template_id: ""}
    enrollment.set_name(template_id, "Thumb")
    assert enrollment.enumerate_enrollments() == {template_id: "Thumb"}
    enrollment.set_name(template_id, "x" * 15)  # maxTemplateFriendlyName bytes
    assert status(lambda: enrollment.set_name(template_id, "x" * 16)) == ERR.INVALID_PARAMETER
    assert status(lambda: enrollment.set_name(template_id, "ö" * 8)) == ERR.INVALID_PARAMETER
    assert status(lambda: enrollment.set_name(b"\0\0\0", "x")) == ERR.INVALID_OPTION
    second = enroll_finger(bio, "right-index", pin=PIN, name="Index")
    enrollment = enroller(ctap)  # (enroll_finger's token voided the one before)
    assert enrollment.enumerate_enrollments() == {template_id: "x" * 15, second: "Index"}
    assert status(lambda: enrollment.remove_enrollment(b"\0\0\0")) == ERR.INVALID_OPTION
    enrollment.remove_enrollment(template_id)
    assert enrollment.enumerate_enrollments() == {second: "Index"}
    enrollment.remove_enrollment(second)
    proto = ClientPin(ctap).protocol
    token = ClientPin(ctap).get_pin_token(PIN, P.BIO_ENROLL)
    assert status(lambda: raw_bio(ctap, 4, token=token, protocol=proto)) == ERR.INVALID_OPTION
    assert ctap.get_info().options["uv"] is False


def test_samples_that_do_not_count(bio, ctap):
    enroll_finger(bio, "right-index", pin=PIN)
    readings = iter([NO_MATCH, "right-index", "left-index", "right-middle", b"\1\2",
                     "left-index", "left-index", "left-index", "left-index"])
    bio.presence = FingerCallback(lambda reason: next(readings))
    context = enroller(ctap).enroll()
    seen = []
    for _ in range(9):
        try:
            done = context.capture()
            seen.append((FB.FP_GOOD, context.remaining))
        except CaptureError as e:
            seen.append((e.code, context.remaining))
    assert seen == [(FB.NO_USER_ACTIVITY, 5), (FB.FP_EXISTS, 5), (FB.FP_GOOD, 4),
                    (FB.FP_MERGE_FAILURE, 4), (FB.NO_USER_ACTIVITY, 4), (FB.FP_GOOD, 3),
                    (FB.FP_GOOD, 2), (FB.FP_GOOD, 1), (FB.FP_GOOD, 0)]
    assert done == context.template_id


def test_the_database_holds_five_fingers(bio, ctap):
    for finger in ("a", "b", "c", "d", "e"):
        enroll_finger(bio, finger, pin=PIN)
    assert status(lambda: enroll_finger(bio, "f", pin=PIN)) == ERR.FP_DATABASE_FULL


def test_capture_next_needs_the_enrollment_in_progress(bio, ctap):
    enrollment = enroller(ctap)
    template_id, _, remaining = enrollment.enroll_begin()
    assert remaining == 4
    assert status(lambda: enrollment.enroll_capture_next(b"\xff" + template_id)
                  ) == ERR.INVALID_PARAMETER
    assert enrollment.enroll_capture_next(template_id) == (FB.FP_GOOD, 3)
    enrollment.enroll_cancel()
    assert status(lambda: enrollment.enroll_capture_next(template_id)
                  ) == ERR.INVALID_PARAMETER
    assert enrollment.enumerate_enrollments() == {}


def test_a_refused_capture_ends_the_enrollment(bio, ctap):
    enrollment = enroller(ctap)
    template_id, _, _ = enrollment.enroll_begin()
    bio.presence = DenyAlways()
    assert status(lambda: enrollment.enroll_capture_next(template_id)) == ERR.OPERATION_DENIED
    bio.presence = ApproveAlways()
    assert status(lambda: enrollment.enroll_capture_next(template_id)
                  ) == ERR.INVALID_PARAMETER


def test_enrollment_needs_a_token_with_the_be_permission(bio, ctap):
    proto = ClientPin(ctap).protocol
    assert status(lambda: raw_bio(ctap, 1)) == ERR.PUAT_REQUIRED
    assert status(lambda: raw_bio(ctap, 4)) == ERR.PUAT_REQUIRED
    mc_token = ClientPin(ctap).get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")
    assert status(lambda: raw_bio(ctap, 1, token=mc_token, protocol=proto)
                  ) == ERR.PIN_AUTH_INVALID
    token = ClientPin(ctap).get_pin_token(PIN, P.BIO_ENROLL)
    other = ClientPin(ctap).protocol  # (a new token voids the old one)
    assert status(lambda: raw_bio(ctap, 4, token=mc_token, protocol=other)
                  ) == ERR.PIN_AUTH_INVALID
    assert status(lambda: ctap.bio_enrollment(modality=1, sub_cmd=4, pin_uv_param=b"x" * 16)
                  ) == ERR.MISSING_PARAMETER
    assert status(lambda: ctap.send_cbor(0x09, {1: 2, 2: 7})) == ERR.INVALID_PARAMETER
    assert status(lambda: ctap.send_cbor(0x09, {1: 1, 2: 9})) == ERR.INVALID_SUBCOMMAND
    assert status(lambda: ctap.send_cbor(0x09, {2: 7})) == ERR.MISSING_PARAMETER
    assert status(lambda: ctap.send_cbor(0x09, {1: 1, 2: "7"})) == ERR.CBOR_UNEXPECTED_TYPE
    assert raw_bio(ctap, 1, token=token, protocol=proto)[6] == 4


def test_the_preview_command_takes_a_legacy_token(bio, ctap):
    """0x40 (userVerificationMgmtPreview) predates permissions: a getPinToken token."""
    protocol = PinProtocolV1()
    token = ClientPin(ctap, protocol).get_pin_token(PIN)  # legacy, no permissions
    from fido2 import cbor

    message = bytes([1, 1])
    response = ctap.send_cbor(0x40, {1: 1, 2: 1, 4: 1,
                                     5: protocol.authenticate(token, message)})
    assert response[5] == 0 and response[6] == 4
    params = {1: response[4]}
    message = bytes([1, 2]) + cbor.encode(params)
    again = ctap.send_cbor(0x40, {1: 1, 2: 2, 3: params, 4: 1,
                                  5: protocol.authenticate(token, message)})
    assert again == {5: 0, 6: 3}


# -- built-in user verification -----------------------------------------------------------
def test_uv_token_for_the_enrolled_finger_carries_uv_and_presence(bio, ctap):
    enroll_finger(bio, "right-index", pin=PIN)
    counting = Counting("right-index")
    bio.presence = counting
    protocol, token = uv_token(ctap)
    assert counting.touches == 1
    cdh = os.urandom(32)
    made = ctap.make_credential(cdh, RP, {"id": b"u", "name": "u"}, ES256,
                                options={"rk": True},
                                pin_uv_param=protocol.authenticate(token, cdh),
                                pin_uv_protocol=protocol.VERSION)
    assert made.auth_data.flags & 0x05 == 0x05  # UP and UV
    assert counting.touches == 1  # the finger on the sensor was the touch


def test_a_finger_not_enrolled_spends_the_uv_retries_then_the_pin_restores_them(bio, ctap):
    enroll_finger(bio, "right-index", pin=PIN)
    counting = Counting("left-index")
    bio.presence = counting
    assert retries(ctap) == 3
    assert status(lambda: uv_token(ctap)) == ERR.UV_INVALID
    assert retries(ctap) == 2
    assert status(lambda: uv_token(ctap)) == ERR.UV_INVALID
    assert status(lambda: uv_token(ctap)) == ERR.UV_BLOCKED
    assert retries(ctap) == 0 and counting.touches == 3
    # blocked: no touch is asked for any more, neither for a token nor an inline uv
    bio.presence = Counting("right-index")
    assert status(lambda: uv_token(ctap)) == ERR.UV_BLOCKED
    assert status(lambda: ctap.make_credential(
        os.urandom(32), RP, {"id": b"u", "name": "u"}, ES256, options={"uv": True})
    ) == ERR.UV_BLOCKED
    assert bio.presence.touches == 0
    ClientPin(ctap).get_pin_token(PIN, P.MAKE_CREDENTIAL, "example.com")  # the fallback
    assert retries(ctap) == 3
    uv_token(ctap)
    assert retries(ctap) == 3


def test_a_match_restores_the_retries(bio, ctap):
    enroll_finger(bio, "right-index", pin=PIN)
    bio.presence = Finger("left-index")
    assert status(lambda: uv_token(ctap)) == ERR.UV_INVALID
    bio.presence = Finger("right-index")
    uv_token(ctap)
    assert retries(ctap) == 3


def test_a_callback_answers_with_a_template_id(bio, ctap):
    template_id = enroll_finger(bio, "right-index", pin=PIN)
    bio.presence = FingerCallback(lambda reason: template_id)
    uv_token(ctap)
    bio.presence = FingerCallback(lambda reason: b"\x00" + template_id)
    assert status(lambda: uv_token(ctap)) == ERR.UV_INVALID
    bio.presence = FingerCallback(lambda reason: NO_MATCH)
    assert status(lambda: uv_token(ctap)) == ERR.UV_INVALID
    asked = []
    bio.presence = FingerCallback(lambda reason: asked.append(reason) or "right-index")
    uv_token(ctap)
    assert asked == ["getPinUvAuthTokenUsingUv"]


def test_uv_token_rules(bio, ctap):
    def call(permissions, rp_id=None):
        cp = ClientPin(ctap)
        key_agreement, _ = cp._get_shared_secret()
        params = {1: cp.protocol.VERSION, 2: 6, 3: key_agreement, 9: permissions}
        if rp_id is not None:
            params[0x0A] = rp_id
        return ctap.send_cbor(0x06, params)

    assert status(lambda: call(P.MAKE_CREDENTIAL, "example.com")) == ERR.NOT_ALLOWED
    enroll_finger(bio, pin=PIN)
    assert status(lambda: call(0)) == ERR.INVALID_PARAMETER
    assert status(lambda: call(P.AUTHENTICATOR_CFG)) == ERR.UNAUTHORIZED_PERMISSION
    assert status(lambda: call(0x80)) == ERR.UNAUTHORIZED_PERMISSION
    assert status(lambda: call(P.MAKE_CREDENTIAL)) == ERR.MISSING_PARAMETER
    assert status(lambda: call(P.GET_ASSERTION)) == ERR.MISSING_PARAMETER
    assert 2 in call(P.CREDENTIAL_MGMT | P.LARGE_BLOB_WRITE)
    # uvBioEnroll: a finger may enroll the next one
    cp = ClientPin(ctap)
    token = cp.get_uv_token(P.BIO_ENROLL)
    enrollment = FPBioEnrollment(ctap, cp.protocol, token)
    assert len(enrollment.enumerate_enrollments()) == 1


def test_builtin_uv_inline_for_make_credential_and_get_assertion(bio, ctap):
    def mc(**options):
        return ctap.make_credential(os.urandom(32), RP, {"id": b"u", "name": "una"}, ES256,
                                    options=options)

    assert status(lambda: mc(uv=True)) == ERR.INVALID_OPTION  # no finger yet
    enroll_finger(bio, "right-index", pin=PIN)
    counting = Counting("right-index")
    bio.presence = counting
    made = mc(uv=True, rk=True)
    assert made.auth_data.flags & 0x05 == 0x05 and counting.touches == 1
    got = ctap.get_assertion("example.com", os.urandom(32), options={"uv": True})
    assert got.auth_data.flags & 0x05 == 0x05 and counting.touches == 2
    assert got.user == {"id": b"u"}  # one account: its id only (CTAP 2.1 §6.2.2)
    ctap.make_credential(os.urandom(32), RP, {"id": b"v", "name": "vera"}, ES256,
                         options={"uv": True, "rk": True})
    two = ctap.get_assertion("example.com", os.urandom(32), options={"uv": True})
    assert two.number_of_credentials == 2 and two.user == {"id": b"v", "name": "vera"}
    assert ctap.get_next_assertion().user == {"id": b"u", "name": "una"}  # after UV: who
    bio.presence = Finger("left-thumb")
    assert status(lambda: mc(uv=True)) == ERR.UV_INVALID
    assert status(lambda: ctap.get_assertion("example.com", os.urandom(32),
                                             options={"uv": True})) == ERR.UV_INVALID
    bio.presence = DenyAlways()
    assert status(lambda: mc(uv=True)) == ERR.OPERATION_DENIED
    assert retries(ctap) == 1  # two misses; a refused touch costs nothing


def test_rk_without_uv_needs_a_token_and_always_uv_uses_the_sensor(bio, ctap):
    from fido2.ctap2 import Config

    enroll_finger(bio, pin=PIN)
    user = {"id": b"u", "name": "u"}
    assert status(lambda: ctap.make_credential(os.urandom(32), RP, user, ES256,
                                               options={"rk": True})) == ERR.PUAT_REQUIRED
    cp = ClientPin(ctap)
    Config(ctap, cp.protocol, cp.get_pin_token(PIN, P.AUTHENTICATOR_CFG)).toggle_always_uv()
    assert ctap.get_info().options["alwaysUv"] is True
    made = ctap.make_credential(os.urandom(32), RP, user, ES256)  # the sensor verifies
    assert made.auth_data.flags & 0x05 == 0x05
    bio.presence = Finger("left-thumb")
    assert status(lambda: ctap.make_credential(os.urandom(32), RP, user, ES256)
                  ) == ERR.UV_INVALID


def test_reset_forgets_the_fingers(bio, ctap):
    enroll_finger(bio, pin=PIN)
    bio.presence = Finger("nobody")
    assert status(lambda: uv_token(ctap)) == ERR.UV_INVALID
    ctap.reset()
    info = ctap.get_info()
    assert info.options["uv"] is False and info.options["clientPin"] is False
    assert ClientPin(ctap).get_uv_retries() == 3


def test_fingers_and_retries_survive_a_restart(tmp_path):
    path = tmp_path / "bio.key"
    with VirtualKey.create(path, profile="yubikey-bio") as key:
        template_id = enroll_finger(key, "left-thumb", pin=PIN, name="Thumb")
        key.presence = Finger("right-index")
        assert status(lambda: uv_token(Ctap2(fido_device(key)))) == ERR.UV_INVALID
    with VirtualKey.load(path, presence=Finger("left-thumb")) as key:
        ctap = Ctap2(fido_device(key))
        assert retries(ctap) == 2
        uv_token(ctap)
        assert enroller(ctap).enumerate_enrollments() == {template_id: "Thumb"}


def test_a_cancelled_uv_wait(bio, ctap):
    from presence_support import UntilCancelled

    enroll_finger(bio, pin=PIN)
    waiting = UntilCancelled()
    bio.presence = waiting
    cancel = threading.Event()
    threading.Thread(target=lambda: waiting.asked.wait(10) and cancel.set(),
                     daemon=True).start()
    cp = ClientPin(ctap)
    with pytest.raises(CtapError) as info:
        cp.get_uv_token(P.MAKE_CREDENTIAL, "example.com", event=cancel)
    assert info.value.code == ERR.KEEPALIVE_CANCEL
    assert waiting.cancelled.is_set() and retries(ctap) == 3


# -- through the WebAuthn client ------------------------------------------------------------
class Pin(UserInteraction):
    def __init__(self):
        self.asked = []

    def request_pin(self, permissions, rp_id):
        self.asked.append("pin")
        return PIN

    def request_uv(self, permissions, rp_id):
        self.asked.append("uv")
        return True


def test_fido2_client_verifies_with_the_finger_and_falls_back_to_the_pin(bio, ctap):
    enroll_finger(bio, "right-index", pin=PIN)
    server = Fido2Server(RP)
    interaction = Pin()
    client = Fido2Client(fido_device(bio), DefaultClientDataCollector("https://example.com"),
                         user_interaction=interaction)
    options, state = server.register_begin({"id": b"u", "name": "u"},
                                           resident_key_requirement="required",
                                           user_verification="required")
    result = client.make_credential(options.public_key)
    assert server.register_complete(state, result).is_user_verified()
    assert interaction.asked == ["uv"]

    # a finger that is not enrolled: UV is blocked after the retries, then the PIN
    bio.presence = Finger("left-thumb")
    for _ in range(2):
        request, state = server.authenticate_begin(user_verification="required")
        with pytest.raises(Exception):  # noqa: B017 (ClientError wrapping UV_INVALID)
            client.get_assertion(request.public_key)
    interaction.asked.clear()
    request, state = server.authenticate_begin(user_verification="required")
    response = client.get_assertion(request.public_key).get_response(0)
    assert interaction.asked == ["uv", "pin"]
    assert server.authenticate_complete(state, [result.response.attestation_object
                                                .auth_data.credential_data], response)
    assert retries(ctap) == 3  # the PIN restored them


# -- details of the sensor's waits and the enrollment state ------------------------------
class Recording(ApproveAlways):
    """Touches with ``finger`` and records each wait's reason and whether it could send
    keepalives."""

    def __init__(self, finger: str = DEFAULT_FINGER) -> None:
        self.finger = finger
        self.waits = []
        self.samples = []

    def decide(self, reason, cancel, keepalive):
        self.waits.append((reason, keepalive is not None))
        return True

    def sample(self, reason):
        self.samples.append(reason)
        return self.finger


def test_the_sensor_waits_say_why_and_can_send_keepalives(bio, ctap):
    recording = Recording("right-index")
    bio.presence = recording
    enrollment = enroller(ctap)
    template_id, _, _ = enrollment.enroll_begin()
    enrollment.enroll_capture_next(template_id)
    assert recording.waits == [("bioEnroll", True), ("bioEnroll", True)]
    assert recording.samples == ["bioEnroll", "bioEnroll"]
    enrollment.enroll_cancel()
    enroll_finger(bio, "right-index", pin=PIN)
    bio.presence = recording
    recording.waits.clear()
    uv_token(ctap)
    assert recording.waits == [("getPinUvAuthTokenUsingUv", True)]


def test_template_ids_are_two_bytes_and_never_reused(bio, ctap, monkeypatch):
    import types

    from hwtoken.emulator.applets.fido.ctap2 import bio_enrollment

    ids = iter([b"\0\1", b"\0\1", b"\0\1", b"\0\2"])
    monkeypatch.setattr(bio_enrollment, "secrets", types.SimpleNamespace(
        token_bytes=lambda n: next(ids) if n == 2 else pytest.fail(f"{n}-byte ID")))
    first = enroll_finger(bio, "left-thumb", pin=PIN)
    second = enroll_finger(bio, "right-index", pin=PIN)
    assert (first, second) == (b"\0\1", b"\0\2")
    assert enroller(ctap).enumerate_enrollments() == {b"\0\1": "", b"\0\2": ""}


def test_the_timeout_parameter_must_be_an_integer(bio, ctap):
    proto = ClientPin(ctap).protocol
    token = ClientPin(ctap).get_pin_token(PIN, P.BIO_ENROLL)
    assert status(lambda: raw_bio(ctap, 1, {3: "soon"}, token=token, protocol=proto)
                  ) == ERR.CBOR_UNEXPECTED_TYPE
    begun = raw_bio(ctap, 1, {3: 1000, 4: "ignored"}, token=token, protocol=proto)
    assert begun[6] == 4
    assert status(lambda: raw_bio(ctap, 2, {1: begun[4], 3: "soon"}, token=token,
                                  protocol=proto)) == ERR.CBOR_UNEXPECTED_TYPE
    assert raw_bio(ctap, 2, {1: begun[4], 3: 1000, 4: "ignored"}, token=token,
                   protocol=proto) == {5: 0, 6: 3}


def test_a_complete_enrollment_takes_no_more_samples(bio, ctap):
    enrollment = enroller(ctap)
    template_id, _, remaining = enrollment.enroll_begin()
    while remaining:
        _, remaining = enrollment.enroll_capture_next(template_id)
    assert status(lambda: enrollment.enroll_capture_next(template_id)
                  ) == ERR.INVALID_PARAMETER
    assert list(enrollment.enumerate_enrollments()) == [template_id]


def test_a_power_cycle_ends_the_enrollment(bio, ctap):
    enrollment = enroller(ctap)
    template_id, _, _ = enrollment.enroll_begin()
    bio.power_cycle()
    enrollment = enroller(ctap)
    assert status(lambda: enrollment.enroll_capture_next(template_id)
                  ) == ERR.INVALID_PARAMETER


def test_the_store_finds_templates_by_id(bio, ctap):
    template_id = enroll_finger(bio, "left-thumb", pin=PIN, name="Thumb")
    store = bio.fido.authenticator.uv.store
    found = store.find(template_id)
    assert (found.template_id, found.name, found.finger) == (template_id, "Thumb", "left-thumb")
    assert store.find(b"\xff" + template_id) is None


def test_a_stored_template_without_a_name_reads_as_unnamed(bio):
    from hwtoken.emulator.applets.fido.ctap2.bio_enrollment import Template

    store = bio.fido.authenticator.uv.store
    store.state.section["bio"] = {"templates": [{"id": b"\0\1", "finger": "left-thumb"}]}
    assert store.templates == [Template(b"\0\1", "", "left-thumb")]


def test_capture_next_before_any_enrollment(bio, ctap):
    assert status(lambda: enroller(ctap).enroll_capture_next(b"\0\1")
                  ) == ERR.INVALID_PARAMETER
