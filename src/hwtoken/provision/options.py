"""What a station is told on its command line, checked before any key is touched: the
plan of modes, access codes, codes typed by hand, the passphrase of a new inventory.

Each function raises :class:`~hwtoken.errors.InvalidInput` (exit 2) with what to do.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence

from hwtoken.errors import InvalidInput
from hwtoken.provision.model import (
    ACCESS_CODE_SIZE,
    DEFAULT_TARGET,
    FIDO_TARGET,
    PIV_SLOTS,
    Mode,
    Spec,
    check_plan,
)

MIN_PASSPHRASE = 12  # characters, for a new inventory (unless --allow-weak)
MAX_SERIAL = 2**63 - 1  # what both inventories store (a YubiKey's serial has 32 bits)


def parse_mode(value: str) -> tuple[Mode, str | None]:
    """``MODE`` or ``MODE:PLACE`` (``chalresp:1``, ``oath-totp:mail``, ``piv:9c``)."""
    name, sep, place = value.partition(":")
    try:
        mode = Mode(name)
    except ValueError:
        raise InvalidInput(f"--mode {name!r}: use one of "
                           f"{', '.join(m.value for m in Mode)}") from None
    if sep and not place:
        raise InvalidInput(f"--mode {value!r}: give the slot or name after ':'")
    if not sep:
        return mode, None
    if mode.uses_slot and place not in ("1", "2"):
        raise InvalidInput(f"--mode {value!r}: an OTP slot is 1 or 2")
    if mode is Mode.PIV:
        place = place.lower()
        if place not in PIV_SLOTS:
            raise InvalidInput(f"--mode {value!r}: a PIV slot is 9a, 9c, 9d, 9e or 82..95")
    if mode is Mode.FIDO and place != FIDO_TARGET:
        raise InvalidInput(f"--mode {value!r}: the fido mode has one place, its PIN "
                           f"(-m fido or -m fido:{FIDO_TARGET})")
    return mode, place


def _slot_for(mode: Mode, slot: str | int | None) -> str | None:
    """``--slot`` for a mode given without a place: an OTP slot (1 or 2) or a PIV slot;
    None if ``--slot`` was not given or the mode has no slots."""
    if slot is None or mode.application not in ("otp", "piv"):
        return None
    value = str(slot).strip().lower()
    if mode.uses_slot and value not in ("1", "2"):
        raise InvalidInput(f"--slot {slot}: an OTP slot is 1 or 2 (give each mode its own "
                           f"place: -m {mode.value}:2)")
    if mode is Mode.PIV and value not in PIV_SLOTS:
        raise InvalidInput(f"--slot {slot}: a PIV slot is 9a, 9c, 9d, 9e or 82..95 (give "
                           "each mode its own place: -m piv:9a)")
    return value


def build_plan(modes: Sequence[str], *, slot: str | int | None = None, digits: int = 6,
               touch: bool = False, name: str = "hwtoken", public_id: str = "serial",
               **options: object) -> list[Spec]:
    """The specs of a run: each ``-m MODE[:PLACE]`` with the shared options; a place in
    the mode wins over ``--slot`` / ``--name``. ``options``: the PIV and FIDO fields of
    :class:`Spec` (``pin_length``, ``algorithm``, ``subject``, ``protect``,
    ``min_pin_length``, ``always_uv``); a PIV subject template is checked here."""
    if not modes:
        raise InvalidInput("give at least one --mode")
    plan = []
    for value in modes:
        mode, place = parse_mode(value)
        place = place or _slot_for(mode, slot)
        if mode.uses_slot:
            fields: dict[str, object] = {"slot": int(place or 2), "name": name}
        elif mode.application == "oath":
            fields = {"name": place or name}
        else:
            fields = {"name": place or DEFAULT_TARGET[mode.application], **options}
        plan.append(Spec(mode, digits=digits, touch=touch, public_id=public_id,
                         **fields))  # type: ignore[arg-type]
    for spec in plan:
        if spec.mode is Mode.PIV:
            from hwtoken.provision.piv import check_subject

            check_subject(spec.subject)
    return check_plan(plan)


#: options that only some modes read -> those modes (an option given for a plan without
#: them is refused: it says the plan is not what the admin meant)
MODE_OPTIONS = {
    "pin_length": ("piv", "fido"), "algorithm": ("piv",), "subject": ("piv",),
    "protect": ("piv",), "ca_cert": ("piv",), "ca_key": ("piv",), "ca_command": ("piv",),
    "ca_passphrase": ("piv",), "days": ("piv",), "attestation_roots": ("piv",),
    "min_pin_length": ("fido",), "always_uv": ("fido",),
}


def check_mode_options(plan: Sequence[Spec], given: Iterable[str]) -> None:
    """Refuse an option no mode of ``plan`` reads (``given``: the parameter names given
    on the command line), and a ``piv`` plan without a CA."""
    applications = {spec.application for spec in plan}
    given = set(given)
    for name in sorted(given):
        modes = MODE_OPTIONS.get(name)
        if modes is not None and not applications & set(modes):
            option = "--" + name.replace("_", "-")
            raise InvalidInput(f"{option} is for -m {' and -m '.join(modes)}, which this "
                               "run does not program")
    if "piv" in applications and not given & {"ca_cert", "ca_command"}:
        raise InvalidInput("-m piv needs the CA that signs each slot's certificate: "
                           "--ca-cert with --ca-key, or --ca-command")


def parse_access_code(value: str, option: str = "--access-code") -> bytes:
    """An OTP slot's access code: 12 hex digits (6 bytes), not all zero."""
    text = value.strip().replace(" ", "")
    if len(text) != 2 * ACCESS_CODE_SIZE or any(c not in string.hexdigits for c in text):
        raise InvalidInput(f"{option} must be {2 * ACCESS_CODE_SIZE} hex digits "
                           f"({ACCESS_CODE_SIZE} bytes)")
    code = bytes.fromhex(text)
    if not any(code):
        raise InvalidInput(f"{option}: an all-zero access code means no code at all")
    return code


def parse_typed_codes(values: Iterable[str]) -> dict[int, list[str]]:
    """``--code SERIAL=CODE`` (repeatable) -> serial -> the codes typed with that key."""
    out: dict[int, list[str]] = {}
    for value in values:
        serial, sep, code = value.partition("=")
        code = code.strip()
        if not sep or not serial.strip().isdigit() or not code \
                or int(serial) > MAX_SERIAL:
            raise InvalidInput(f"--code {value!r}: give SERIAL=CODE, the code the key typed "
                               "when touched")
        if not code.isascii() or not code.isalnum():
            raise InvalidInput(f"--code {value!r}: a typed code is digits (HOTP) or modhex "
                               "letters (Yubico OTP)")
        out.setdefault(int(serial), []).append(code)
    return out


def check_new_passphrase(passphrase: str, *, allow_weak: bool) -> None:
    """A new inventory's passphrase has at least :data:`MIN_PASSPHRASE` characters."""
    if len(passphrase) < MIN_PASSPHRASE and not allow_weak:
        raise InvalidInput(f"the passphrase of a new inventory needs at least {MIN_PASSPHRASE} "
                           f"characters (this one has {len(passphrase)}): choose a longer "
                           "one, use --key-file, or pass --allow-weak")
