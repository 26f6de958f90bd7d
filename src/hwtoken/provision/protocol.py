"""The small interfaces the runner programs keys through.

* a :class:`DeviceSource` yields keys as they arrive (real keys plugged in one after
  another, or a pool of virtual keys) and finds a recorded key again for ``resume``;
* a :class:`Programmer` opens a :class:`KeyConnection` to one key; the connection says what
  a place on the key holds already (``occupant``), writes the secret (``program``) and
  asks the key itself for a response (``calculate``), which the mode's check
  (:mod:`hwtoken.provision.modes`) compares with the value computed from the secret.

The runner knows none of the modes: a new mode (PIV, FIDO) brings its
:class:`~hwtoken.provision.modes.ModeDriver` (what to generate, how to check) and a
programmer whose connection implements these three methods for its application.

Implementations: :mod:`hwtoken.provision.programmers` (python-yubico for the OTP slots,
yubikit for OATH, and the interim pure-applet path for virtual keys),
:mod:`hwtoken.provision.piv` (yubikit's PivSession) and :mod:`hwtoken.provision.fido`
(python-fido2's ClientPin and Config).

An application guarded by credentials (PIV, FIDO2) is asked with :class:`Presented` (a
nonce and the material whose credentials it must accept) and answers with
:class:`Evidence`. A programmer that programs a place in several steps (a PIV slot: key
pair, CSR, certificate) writes each down in the record's :class:`Journal` before the step
it makes possible; what else it needs from the station comes in a :class:`Station`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from hwtoken.errors import CheckFailed
from hwtoken.provision.model import Access, Material, Note, Record, RecordKey, Spec


@dataclass(frozen=True)
class Device:
    """A key that is present: its serial and how to reach it (``emu:NAME`` or ``usb:SERIAL``;
    for a key without a serial, the path discovery found it at, which names it in messages).

    Discovery may also say what the key is (``model``) and which USB interfaces it has
    (``interfaces``: of ``otp``, ``fido``, ``ccid``; None if unknown), so a key that cannot
    take a mode is refused as such. ``serial`` is None for a key that shows no serial
    number (it cannot be recorded).
    """

    serial: int | None
    spec: str
    model: str = ""
    interfaces: frozenset[str] | None = None

    @property
    def virtual(self) -> bool:
        return self.spec.startswith("emu:")


class NotProgrammed(CheckFailed):
    """The key gives no response for this slot/credential (empty, or another mode)."""


class CannotCheck(CheckFailed):
    """The key may well hold the secret, but cannot be asked now (a real key's HOTP slot
    with nobody to touch it): the record stays pending with this reason, and the key is
    not reprogrammed."""


class AccessDenied(CheckFailed):
    """The key refused the write: the place is protected by an access code (or password)
    that was not given. Nothing was written; the record stays pending."""


class Unsuitable(CheckFailed):
    """The key cannot take this mode at all (a FIDO-only key at an OTP station, a key
    without the OATH applet): it is refused, and no record is written."""


@dataclass(frozen=True)
class Presented:
    """The challenge for a place guarded by credentials: the key must accept those of
    ``material`` and sign ``nonce`` (PIV) -- a check, never a write."""

    nonce: bytes
    material: Material

    def __repr__(self) -> str:
        return f"Presented(nonce={self.nonce.hex()[:8]}..., material=<hidden>)"


@dataclass(frozen=True)
class Evidence:
    """What a place guarded by credentials showed: which credentials it accepted
    (``pin``, ``puk``, ``management-key``), the certificate in it and a signature over the
    nonce (PIV, DER), and what else its check looks at (``state``: text values)."""

    accepted: frozenset[str]
    certificate: bytes = b""
    signature: bytes = b""
    state: dict[str, str] = field(default_factory=dict)


class Journal(Protocol):
    """A record's journal (the inventory implements it): notes written down durably for
    the record's current generation, read back after a crash."""

    def note(self, key: RecordKey, kind: str, value: str) -> None: ...

    def note_secret(self, key: RecordKey, kind: str, secret: bytes) -> None: ...

    def notes(self, key: RecordKey) -> list[Note]: ...

    def open_note(self, key: RecordKey, note: Note) -> bytes: ...


@dataclass
class Station:
    """What programmers need besides the key: the record's ``journal`` (the inventory),
    the PIV attestation ``trust`` (:class:`hwtoken.provision.attestation.Trust`; None:
    Yubico's roots) and the admin's CA (``signer``, :class:`hwtoken.provision.ca.Signer`),
    ``say`` to tell the operator something (re-plug the key), and ``hook(step, key)``
    called after each step a programmer takes inside ``program`` (in-process crash tests;
    ``HWTOKEN_FAULT=after:STEP`` does the same with SIGKILL)."""

    journal: Journal | None = None
    trust: Any = None
    signer: Any = None
    say: Callable[[str], None] | None = None
    hook: Callable[[str, RecordKey], None] | None = None


class KeyConnection(Protocol):
    """An open connection to one key, for the application of one or more modes."""

    def occupant(self, spec: Spec) -> str | None:
        """What the place ``spec`` names holds now, in words (``"slot 2 is programmed
        (challenge-response)"``), or None if it is empty. Reads only."""

    def program(self, spec: Spec, material: Material, access: Access) -> None:
        """Write ``material`` into the place ``spec`` names (overwriting it), presenting
        the codes in ``access.current`` and leaving ``access.new``; raises
        :class:`AccessDenied` if the key refuses every code."""

    def calculate(self, spec: Spec,
                  challenge: bytes | int | Presented | None) -> bytes | str | Evidence:
        """The key's own answer: chalresp -> HMAC response bytes for ``challenge``;
        oath-totp -> the code at unix time ``challenge``; hotp/oath-hotp/yubiotp -> the
        text the key types (the next code, or an OTP); piv/fido -> the :class:`Evidence`
        for a :class:`Presented` challenge.
        Raises :class:`NotProgrammed` if the key has nothing there, :class:`CannotCheck`
        if it cannot be asked now."""


class Programmer(Protocol):
    """Opens connections to keys for the modes it supports."""

    name: str

    def check_suitable(self, device: Device) -> None:
        """Raise :class:`Unsuitable` if what discovery says of ``device`` (its USB
        interfaces) rules this application out. Reads nothing from the key: the runner
        asks it also of a key it cannot record (one without a serial), so such a key is
        refused as what it is."""

    def connect(self, device: Device) -> contextlib.AbstractContextManager[KeyConnection]:
        """Open ``device`` (raises :class:`hwtoken.errors.DeviceError` if it is gone,
        :class:`Unsuitable` if it has no such application)."""


class DeviceSource(Protocol):
    """Where keys come from."""

    def arrivals(self) -> Iterator[Device]:
        """Keys as they become available, each once; ends when the source is exhausted."""

    def present(self, record: Record) -> Device | None:
        """The recorded key, if it is present now."""


class TypedCode:
    """A :class:`KeyConnection` standing in for a key whose code a person typed by hand
    (``provision resume --code SERIAL=CODE``): it answers with that code and writes
    nothing."""

    def __init__(self, code: str) -> None:
        self.code = code

    def occupant(self, spec: Spec) -> str | None:
        return None

    def program(self, spec: Spec, material: Material, access: Access) -> None:
        raise CannotCheck("a code typed by hand cannot program a key")

    def calculate(self, spec: Spec,
                  challenge: bytes | int | Presented | None) -> bytes | str | Evidence:
        if not spec.mode.typed:
            raise CannotCheck(f"a {spec.mode.value} key is not checked by a code it types")
        return self.code
