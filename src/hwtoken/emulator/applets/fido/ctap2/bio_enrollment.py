"""A fingerprint sensor: authenticatorBioEnrollment (0x09; 0x40 for FIDO_2_1_PRE platforms,
userVerificationMgmtPreview) and the built-in user verification it gives (CTAP 2.1 §6.7).

Only profiles with a :class:`~hwtoken.emulator.profiles.BioSensor` have it
(``yubikey-bio``). Which finger touches the sensor is the key's presence policy's to say
(:meth:`hwtoken.emulator.presence.UserPresence.sample`): a finger's name, an enrolled
template ID or NO_MATCH.

* **Enrollment**: enrollBegin then enrollCaptureNextSample until ``remainingSamples`` is
  0; each capture waits for a touch and reads the sensor. A good sample counts down; a
  reading of NO_MATCH is NO_USER_ACTIVITY, a finger already enrolled FP_EXISTS, another
  finger than the one this enrollment began with FP_MERGE_FAILURE (none of them count).
  The template is stored once complete; cancelCurrentEnrollment drops it.
* **Management**: enumerateEnrollments (INVALID_OPTION when there are none),
  setFriendlyName (at most ``max_name`` bytes, else INVALID_PARAMETER), removeEnrollment
  (an unknown template ID: INVALID_OPTION), getFingerprintSensorInfo (needs no token).
  Everything else needs a pinUvAuthToken with the ``be`` permission (PUAT_REQUIRED
  without one) over ``modality || subCommand || subCommandParams``.
* **User verification** (:class:`BuiltInUv`): a touch whose reading matches an enrolled
  template. A miss costs one of ``max_uv_retries`` (UV_INVALID, then UV_BLOCKED at 0);
  a match, or the right PIN, restores them. While UV is blocked the platform falls back
  to the PIN.

State, in the key's ``fido`` section: ``bio = {"templates": [Template.to_store(), ...],
"uv_retries": n}``; an authenticatorReset forgets it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from hwtoken.emulator.applets.fido.ctap2.client_pin import Permission
from hwtoken.emulator.applets.fido.ctap2.credential_management import canonical
from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error
from hwtoken.emulator.applets.fido.ctap2.params import Params

if TYPE_CHECKING:  # pragma: no cover
    import threading

    from hwtoken.emulator.applets.fido.ctap2.client_pin import ClientPin
    from hwtoken.emulator.applets.fido.ctap2.state import FidoState
    from hwtoken.emulator.presence import Sample, UserPresence
    from hwtoken.emulator.profiles import BioSensor

FIELD = "bio"
MODALITY_FINGERPRINT = 0x01
FINGERPRINT_KIND_TOUCH = 0x01
UV_MODALITY_FINGERPRINT = 0x02  #: getInfo uvModality: FINGERPRINT_INTERNAL
TEMPLATE_ID_LEN = 2

Keepalive = Callable[[], None]
#: waits for a touch, raising the CTAP error a refusal, timeout or cancel ends with
Touch = Callable[[str, "threading.Event", Keepalive | None], None]


class Sub(IntEnum):
    ENROLL_BEGIN = 0x01
    ENROLL_CAPTURE_NEXT = 0x02
    ENROLL_CANCEL = 0x03
    ENUMERATE = 0x04
    SET_NAME = 0x05
    REMOVE = 0x06
    SENSOR_INFO = 0x07


class Feedback(IntEnum):
    """lastEnrollSampleStatus values (the ones this sensor gives)."""

    FP_GOOD = 0x00
    FP_MERGE_FAILURE = 0x0A
    FP_EXISTS = 0x0B
    NO_USER_ACTIVITY = 0x0D


NEEDS_TOKEN = (Sub.ENROLL_BEGIN, Sub.ENROLL_CAPTURE_NEXT, Sub.ENUMERATE, Sub.SET_NAME,
               Sub.REMOVE)


@dataclass(frozen=True)
class Template:
    """One enrolled fingerprint."""

    template_id: bytes
    name: str
    finger: str  #: the finger it was enrolled from (what a presence policy names)

    def to_store(self) -> dict[str, Any]:
        return {"id": self.template_id, "name": self.name, "finger": self.finger}

    @classmethod
    def from_store(cls, d: dict[str, Any]) -> Template:
        return cls(bytes(d["id"]), str(d.get("name", "")), str(d["finger"]))


class BioStore:
    """The fingerprint templates and UV retries in the key's ``fido`` store section."""

    def __init__(self, state: FidoState, sensor: BioSensor) -> None:
        self.state = state
        self.sensor = sensor

    @property
    def _section(self) -> dict[str, Any]:
        bio = self.state.section.get(FIELD)
        return bio if isinstance(bio, dict) else {}

    def _writable(self) -> dict[str, Any]:
        bio = self.state.section.get(FIELD)
        if not isinstance(bio, dict):
            bio = self.state.section[FIELD] = {}
        return bio

    @property
    def templates(self) -> list[Template]:
        return [Template.from_store(t) for t in self._section.get("templates", [])]

    def save_templates(self, templates: list[Template]) -> None:
        self._writable()["templates"] = [t.to_store() for t in templates]

    def find(self, template_id: bytes) -> Template | None:
        return next((t for t in self.templates if t.template_id == template_id), None)

    @property
    def uv_retries(self) -> int:
        return int(self._section.get("uv_retries", self.sensor.max_uv_retries))

    @uv_retries.setter
    def uv_retries(self, value: int) -> None:
        self._writable()["uv_retries"] = value


def match(templates: list[Template], reading: Sample) -> Template | None:
    """The enrolled template a sensor reading matches, if any."""
    if isinstance(reading, str):
        return next((t for t in templates if t.finger == reading), None)
    if isinstance(reading, bytes):
        return next((t for t in templates if t.template_id == reading), None)
    return None


class BuiltInUv:
    """performBuiltInUv: a touch, then the sensor's reading against the enrolled fingers."""

    def __init__(self, store: BioStore, presence: Callable[[], UserPresence],
                 touch: Touch) -> None:
        self.store = store
        self._presence = presence
        self._touch = touch

    @property
    def configured(self) -> bool:
        """True once a finger is enrolled (getInfo ``uv``)."""
        return bool(self.store.templates)

    @property
    def retries(self) -> int:
        return self.store.uv_retries

    def reset_retries(self) -> None:
        """After a matching finger or the right PIN: all retries again (committed)."""
        if self.store.uv_retries != self.store.sensor.max_uv_retries:
            self.store.uv_retries = self.store.sensor.max_uv_retries
            self.store.state.commit()

    def verify(self, reason: str, cancel: threading.Event, keepalive: Keepalive | None,
               ) -> None:
        """Wait for a finger and match it: UV_BLOCKED with no retries left, UV_INVALID
        (or UV_BLOCKED when that was the last retry) for a finger that is not enrolled."""
        if self.store.uv_retries <= 0:
            raise Ctap2Error(ERR.UV_BLOCKED)
        self._touch(reason, cancel, keepalive)
        if match(self.store.templates, self._presence().sample(reason)) is not None:
            self.reset_retries()
            return
        self.store.uv_retries = self.store.uv_retries - 1
        self.store.state.commit()
        raise Ctap2Error(ERR.UV_BLOCKED if self.store.uv_retries <= 0 else ERR.UV_INVALID)


@dataclass
class _Enrolling:
    template_id: bytes
    remaining: int
    finger: str | None = None


class BioEnrollment:
    """The authenticatorBioEnrollment command of one key."""

    def __init__(self, store: BioStore, pin: ClientPin, uv: BuiltInUv,
                 presence: Callable[[], UserPresence], touch: Touch) -> None:
        self.store = store
        self.sensor = store.sensor
        self.pin = pin
        self.uv = uv
        self._presence = presence
        self._touch = touch
        self._enrolling: _Enrolling | None = None

    def power_cycle(self) -> None:
        self._enrolling = None

    def sensor_info(self) -> dict[int, Any]:
        return {0x01: MODALITY_FINGERPRINT, 0x02: FINGERPRINT_KIND_TOUCH,
                0x03: self.sensor.samples, 0x08: self.sensor.max_name}

    def process(self, p: Params, cancel: threading.Event, keepalive: Keepalive | None,
                preview: bool = False) -> dict[int, Any] | None:
        if p.opt(0x06, bool):  # getModality
            return {0x01: MODALITY_FINGERPRINT}
        modality = p.req(0x01, int)
        if modality != MODALITY_FINGERPRINT:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        sub = p.req(0x02, int)
        if sub not in {s.value for s in Sub}:
            raise Ctap2Error(ERR.INVALID_SUBCOMMAND)
        params_raw = p.raw(0x03)
        params = Params(params_raw)
        if sub == Sub.SENSOR_INFO:
            return self.sensor_info()
        if sub == Sub.ENROLL_CANCEL:
            self._enrolling = None
            return None
        self._authorise(p, modality, sub, params_raw, preview)
        if sub == Sub.ENROLL_BEGIN:
            return self._begin(params, cancel, keepalive)
        if sub == Sub.ENROLL_CAPTURE_NEXT:
            return self._capture_next(params, cancel, keepalive)
        if sub == Sub.ENUMERATE:
            return self._enumerate()
        if sub == Sub.SET_NAME:
            return self._set_name(params)
        return self._remove(params)

    def _authorise(self, p: Params, modality: int, sub: int, params_raw: Any,
                   preview: bool) -> None:
        pin_auth = p.opt(0x05, bytes)
        if pin_auth is None:
            raise Ctap2Error(ERR.PUAT_REQUIRED)
        proto = self.pin.protocol_param(p, 0x04)
        message = bytes([modality, sub]) + (canonical(params_raw) if params_raw is not None
                                            else b"")
        self.pin.verify(proto, message, pin_auth)
        if not preview:  # userVerificationMgmtPreview predates token permissions
            self.pin.require(Permission.BIO_ENROLL)

    # -- enrollment ------------------------------------------------------------------------
    def _begin(self, params: Params, cancel: threading.Event,
               keepalive: Keepalive | None) -> dict[int, Any]:
        params.opt(0x03, int)  # timeoutMilliseconds: this sensor's wait is the policy's
        templates = self.store.templates
        if len(templates) >= self.sensor.max_templates:
            raise Ctap2Error(ERR.FP_DATABASE_FULL)
        taken = {t.template_id for t in templates}
        template_id = secrets.token_bytes(TEMPLATE_ID_LEN)
        while template_id in taken:
            template_id = secrets.token_bytes(TEMPLATE_ID_LEN)
        self._enrolling = _Enrolling(template_id, self.sensor.samples)
        status, remaining = self._capture(cancel, keepalive)
        return {0x04: template_id, 0x05: status, 0x06: remaining}

    def _capture_next(self, params: Params, cancel: threading.Event,
                      keepalive: Keepalive | None) -> dict[int, Any]:
        template_id = params.req(0x01, bytes)
        params.opt(0x03, int)
        if self._enrolling is None or self._enrolling.template_id != template_id:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        status, remaining = self._capture(cancel, keepalive)
        return {0x05: status, 0x06: remaining}

    def _capture(self, cancel: threading.Event,
                 keepalive: Keepalive | None) -> tuple[int, int]:
        """One sample of the enrollment in progress -> (lastEnrollSampleStatus, remaining)."""
        enrolling = self._enrolling
        assert enrolling is not None
        try:
            self._touch("bioEnroll", cancel, keepalive)
        except Ctap2Error:
            self._enrolling = None  # a refused, timed-out or cancelled capture ends it
            raise
        reading = self._presence().sample("bioEnroll")
        templates = self.store.templates
        if not isinstance(reading, str):
            status = Feedback.NO_USER_ACTIVITY
        elif match(templates, reading) is not None:
            status = Feedback.FP_EXISTS
        elif enrolling.finger not in (None, reading):
            status = Feedback.FP_MERGE_FAILURE
        else:
            status = Feedback.FP_GOOD
            enrolling.finger = reading
            enrolling.remaining -= 1
        if enrolling.remaining == 0:
            assert enrolling.finger is not None
            self.store.save_templates(
                templates + [Template(enrolling.template_id, "", enrolling.finger)])
            self.store.state.commit()
            self._enrolling = None
        return int(status), enrolling.remaining

    # -- management ----------------------------------------------------------------------
    def _enumerate(self) -> dict[int, Any]:
        templates = self.store.templates
        if not templates:
            raise Ctap2Error(ERR.INVALID_OPTION)
        return {0x07: [{0x01: t.template_id, 0x02: t.name} for t in templates]}

    def _set_name(self, params: Params) -> None:
        template_id = params.req(0x01, bytes)
        name = params.req(0x02, str)
        if len(name.encode()) > self.sensor.max_name:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        templates = self.store.templates
        for i, t in enumerate(templates):
            if t.template_id == template_id:
                templates[i] = Template(t.template_id, name, t.finger)
                self.store.save_templates(templates)
                self.store.state.commit()
                return None
        raise Ctap2Error(ERR.INVALID_OPTION)

    def _remove(self, params: Params) -> None:
        template_id = params.req(0x01, bytes)
        templates = self.store.templates
        kept = [t for t in templates if t.template_id != template_id]
        if len(kept) == len(templates):
            raise Ctap2Error(ERR.INVALID_OPTION)
        self.store.save_templates(kept)
        self.store.state.commit()
        return None
