"""What a provisioning record holds: the mode a key is programmed in and its state.

A key may carry several records, one per *place*: the application on the key (``otp``,
``oath``, ``piv``, ``fido``) and the target in it (an OTP slot ``"1"``/``"2"``, an OATH
credential name, a PIV slot ``"9a"``, the FIDO2 ``"pin"``). :class:`RecordKey` ``(serial,
application, target)`` names one.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Mode(enum.StrEnum):
    """How a key is programmed."""

    HOTP = "hotp"            # OTP slot, OATH-HOTP typed on touch (python-yubico)
    CHALRESP = "chalresp"    # OTP slot, HMAC-SHA1 challenge-response (python-yubico)
    YUBIOTP = "yubiotp"      # OTP slot, Yubico OTP (AES-128) typed on touch (python-yubico)
    OATH_TOTP = "oath-totp"  # OATH applet credential, TOTP (yubikit)
    OATH_HOTP = "oath-hotp"  # OATH applet credential, HOTP (yubikit)
    PIV = "piv"              # PIV slot: credentials, key pair, CA certificate (yubikit)
    FIDO = "fido"            # FIDO2 PIN the user must change (python-fido2)

    @property
    def application(self) -> str:
        """The application on the key that holds this mode's secret."""
        return APPLICATION[self]

    @property
    def uses_slot(self) -> bool:
        return self.application == "otp"

    @property
    def is_hotp(self) -> bool:
        return self in (Mode.HOTP, Mode.OATH_HOTP)

    @property
    def typed(self) -> bool:
        """The key proves it holds the secret by typing a code when touched."""
        return self in (Mode.HOTP, Mode.YUBIOTP)


#: mode -> the application on the key (a new mode adds its line here)
APPLICATION = {Mode.HOTP: "otp", Mode.CHALRESP: "otp", Mode.YUBIOTP: "otp",
               Mode.OATH_TOTP: "oath", Mode.OATH_HOTP: "oath", Mode.PIV: "piv",
               Mode.FIDO: "fido"}


class State(enum.StrEnum):
    """Where a record is in the four durable steps."""

    PENDING = "pending"  # recorded; the key may or may not be programmed yet
    DONE = "done"        # programmed and verified


SECRET_LENGTH = 20  # HMAC-SHA1 key size: what OTP slots hold and what OATH uses by default
OATH_PERIOD = 30
HOTP_IMF = 0  # the initial moving factor (counter) every HOTP slot is programmed with
HOTP_LOOK_AHEAD = 20  # how far a check searches the key's HOTP counter after a crash
ACCESS_CODE_SIZE = 6  # an OTP slot's access code
PUBLIC_IDS = ("serial", "random")  # how a Yubico OTP public ID is chosen
RANDOM = "random"  # --new-access-code random: a code of its own for each slot
#: PIV slots a key can be generated in: authentication, signature, key management, card
#: authentication and the 20 retired key-management slots
PIV_SLOTS = ("9a", "9c", "9d", "9e", *(f"{n:02x}" for n in range(0x82, 0x96)))
#: key types ``--algorithm`` takes for a PIV slot (keys that sign: a CSR needs it)
PIV_ALGORITHMS = ("ECCP256", "ECCP384", "ED25519", "RSA2048", "RSA3072", "RSA4096")
PIV_PIN_LENGTHS = (6, 8)  # a PIV PIN's digits: at least, at most
FIDO_PIN_LENGTHS = (4, 63)  # a FIDO2 PIN: CTAP's least and most
FIDO_TARGET = "pin"  # the one place of the fido mode: the FIDO2 PIN
#: the place a mode takes when the plan names none
DEFAULT_TARGET = {"piv": "9a", "fido": FIDO_TARGET}


class RecordKey(NamedTuple):
    """What names one record: the key's serial, the application, the target in it."""

    serial: int
    application: str
    target: str

    @property
    def label(self) -> str:
        """``12345678/otp:2``: for messages and JSON keys."""
        return f"{self.serial}/{self.application}:{self.target}"


def target_of(mode: Mode, slot: int, name: str) -> str:
    """The place in ``mode``'s application: the OTP slot number, or the name (an OATH
    credential's, a PIV slot's, the FIDO2 ``pin``)."""
    return str(slot) if mode.uses_slot else name


def place_of(application: str, target: str) -> str:
    """Where on the key a secret lives, in words: ``slot 2``, ``OATH credential 'x'``,
    ``PIV slot 9a``, ``FIDO2 PIN``."""
    if application == "otp":
        return f"slot {target}"
    if application == "oath":
        return f"OATH credential {target!r}"
    if application == "piv":
        return f"PIV slot {target}"
    if application == "fido":
        return "FIDO2 PIN"
    return f"{application} {target}"


@dataclass(frozen=True)
class Spec:
    """What to program: the mode and its parameters (the same for a whole batch)."""

    mode: Mode
    slot: int = 2
    digits: int = 6
    touch: bool = False
    name: str = "hwtoken"  # the OATH credential name; the PIV slot ("9a"); "pin" (FIDO)
    public_id: str = "serial"  # yubiotp: "serial" (ykman's --serial-public-id) or "random"
    pin_length: int = 8  # piv, fido: digits of the random PIN
    algorithm: str = "ECCP256"  # piv: the key pair generated in the slot
    subject: str = "CN={serial}"  # piv: the CSR's subject (RFC 4514; {serial}, {slot})
    protect: bool = False  # piv: the management key stored on the key, PIN-protected
    min_pin_length: int | None = None  # fido: the key's new minimum PIN length
    always_uv: bool = False  # fido: turn alwaysUv on

    def __post_init__(self) -> None:
        from hwtoken.errors import InvalidInput

        if self.slot not in (1, 2):
            raise InvalidInput("--slot must be 1 or 2")
        if self.digits not in (6, 7, 8) or (self.mode.uses_slot and self.digits == 7):
            raise InvalidInput("--digits must be 6 or 8 (7 also for OATH)")
        if self.public_id not in PUBLIC_IDS:
            raise InvalidInput(f"--public-id must be one of {', '.join(PUBLIC_IDS)}")
        if self.application == "oath":
            name = self.name
            if not name.strip() or ":" in name or len(name.encode("utf-8", "replace")) > 64 \
                    or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
                raise InvalidInput(f"--name {name!r} cannot name an OATH credential: give 1 to "
                                   "64 bytes of text without ':' or control characters")
        elif self.application == "piv":
            self._check_piv()
        elif self.application == "fido":
            self._check_fido()

    def _check_piv(self) -> None:
        from hwtoken.errors import InvalidInput

        if self.name not in PIV_SLOTS:
            raise InvalidInput(f"{self.name!r} is not a PIV slot a key can be generated in: "
                               f"use one of {', '.join(PIV_SLOTS[:4])} or 82..95")
        if self.algorithm not in PIV_ALGORITHMS:
            raise InvalidInput(f"--algorithm must be one of {', '.join(PIV_ALGORITHMS)}")
        low, high = PIV_PIN_LENGTHS
        if not low <= self.pin_length <= high:
            raise InvalidInput(f"--pin-length: a PIV PIN has {low} to {high} digits")

    def _check_fido(self) -> None:
        from hwtoken.errors import InvalidInput

        low, high = FIDO_PIN_LENGTHS
        if self.name != FIDO_TARGET:
            raise InvalidInput(f"the fido mode has one place, its PIN: -m fido (not "
                               f"{self.name!r})")
        if not low <= self.pin_length <= high:
            raise InvalidInput(f"--pin-length: a FIDO2 PIN has {low} to {high} digits")
        if self.min_pin_length is not None and not low <= self.min_pin_length <= high:
            raise InvalidInput(f"--min-pin-length must be {low} to {high}")

    @property
    def application(self) -> str:
        return self.mode.application

    @property
    def target(self) -> str:
        return target_of(self.mode, self.slot, self.name)

    def key(self, serial: int) -> RecordKey:
        return RecordKey(serial, self.application, self.target)

    @property
    def place(self) -> str:
        """Where on the key the secret lives: an OTP slot or a named OATH credential."""
        return place_of(self.application, self.target)


def check_plan(plan: list[Spec]) -> list[Spec]:
    """A run's specs, one per place on the key (two for one place: refused)."""
    from hwtoken.errors import InvalidInput

    if not plan:
        raise InvalidInput("give at least one mode to program")
    seen: dict[tuple[str, str], Spec] = {}
    for one in plan:
        place = (one.application, one.target)
        if place in seen:
            raise InvalidInput(f"two modes for {one.place} ({seen[place].mode.value} and "
                               f"{one.mode.value}): give each its own slot (-m MODE:SLOT) or "
                               "OATH credential name (-m MODE:NAME)")
        seen[place] = one
    return plan


@dataclass(frozen=True)
class Material:
    """What a key is programmed with: the secret (sealed in the inventory) and the mode's
    public parameters (a Yubico OTP public ID; stored in the clear, bound to the secret)."""

    secret: bytes
    params: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never show the secret
        return f"Material(<secret hidden>, params={self.params!r})"


@dataclass(frozen=True)
class Access:
    """Access codes of OTP slots for one write: the codes the slot may be protected by now
    (tried in turn; none means unprotected) and the code to leave on it (None: none)."""

    current: tuple[bytes, ...] = ()
    new: bytes | None = None

    def __repr__(self) -> str:
        return f"Access(<{len(self.current)} current code(s)>, new={'set' if self.new else None})"


@dataclass(frozen=True)
class Note:
    """One line of a record's journal (the inventory's ``artifacts``): what a programmer
    wrote down while it programmed the record's place (a PIV slot's CSR, the certificate a
    CA issued). ``current``: written for the record's current secret (its generation);
    older ones are the record's history. ``sealed`` notes hold a secret, sealed."""

    kind: str
    value: str
    at: float
    station: str
    generation: str
    current: bool
    sealed: bool = False

    def __repr__(self) -> str:
        shown = "<sealed>" if self.sealed else repr(self.value[:40])
        return f"Note({self.kind}, {shown}, current={self.current})"


def generation_of(sealed: str) -> str:
    """The generation a sealed secret starts: a record's journal lines are kept per
    generation, so a reprogrammed record (a new secret) starts afresh."""
    import hashlib

    return hashlib.sha256(sealed.encode()).hexdigest()[:16]


#: aad_version of records sealed before several records per key (their associated data
#: has no application or target); new records are sealed with version 2
LEGACY_AAD = 1
CURRENT_AAD = 2


@dataclass
class Record:
    """One place on one key in the inventory. ``sealed`` is the AES-GCM-sealed secret, never
    the secret; ``access_code`` the sealed access code left on the slot (or None)."""

    serial: int
    mode: Mode
    slot: int
    digits: int
    touch: bool
    name: str
    sealed: str
    state: State = State.PENDING
    counter: int = 0          # HOTP: the next counter value a validation server should expect
    device: str = ""          # how to reach the key again: "emu:NAME" or "usb:SERIAL"
    station: str = ""         # who programmed it (host:pid)
    attempts: int = 0
    last_error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    programmed_at: float | None = None
    exported_at: float | None = None
    access_code: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    aad_version: int = CURRENT_AAD

    @classmethod
    def new(cls, spec: Spec, serial: int, **fields: Any) -> Record:
        """A fresh record for ``spec`` on key ``serial``."""
        return cls(serial=serial, mode=spec.mode, slot=spec.slot, digits=spec.digits,
                   touch=spec.touch, name=spec.name, sealed="", **fields)

    @property
    def application(self) -> str:
        return self.mode.application

    @property
    def target(self) -> str:
        return target_of(self.mode, self.slot, self.name)

    @property
    def key(self) -> RecordKey:
        return RecordKey(self.serial, self.application, self.target)

    @property
    def place(self) -> str:
        return place_of(self.application, self.target)

    @property
    def spec(self) -> Spec:
        return Spec(self.mode, self.slot, self.digits, self.touch, self.name)

    def public(self) -> dict[str, object]:
        """The record without its sealed values (for status and JSON output)."""
        doc = dataclasses.asdict(self)
        doc.pop("sealed")
        doc.pop("aad_version")
        doc["access_code"] = self.access_code is not None  # whether one is set, never it
        doc["mode"] = self.mode.value
        doc["state"] = self.state.value
        doc["application"] = self.application
        doc["target"] = self.target
        return doc

    def aad(self) -> bytes:
        """Associated data binding a sealed secret to this record: its key, its mode and
        its public parameters (a sealed secret copied to another row does not open)."""
        if self.aad_version == LEGACY_AAD:
            return f"hwtoken-provision:{self.serial}:{self.mode.value}:{self.slot}".encode()
        params = json.dumps(self.params, sort_keys=True, separators=(",", ":"))
        return (f"hwtoken-provision:v2:{self.serial}:{self.application}:{self.target}:"
                f"{self.mode.value}:{params}").encode()

    def access_aad(self) -> bytes:
        """Associated data of the sealed access code (never opens as the secret)."""
        return self.aad() + b":access-code"
