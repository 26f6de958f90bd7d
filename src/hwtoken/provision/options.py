"""What a station is told on its command line, checked before any key is touched: the
plan of modes, access codes, codes typed by hand, the passphrase of a new inventory.

Each function raises :class:`~hwtoken.errors.InvalidInput` (exit 2) with what to do.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence

from hwtoken.errors import InvalidInput
from hwtoken.provision.model import ACCESS_CODE_SIZE, Mode, Spec, check_plan

MIN_PASSPHRASE = 12  # characters, for a new inventory (unless --allow-weak)
MAX_SERIAL = 2**63 - 1  # what both inventories store (a YubiKey's serial has 32 bits)


def parse_mode(value: str) -> tuple[Mode, str | None]:
    """``MODE`` or ``MODE:PLACE`` (``chalresp:1``, ``oath-totp:mail``)."""
    name, sep, place = value.partition(":")
    try:
        mode = Mode(name)
    except ValueError:
        raise InvalidInput(f"--mode {name!r}: use one of "
                           f"{', '.join(m.value for m in Mode)}") from None
    if sep and not place:
        raise InvalidInput(f"--mode {value!r}: give the slot or name after ':'")
    if sep and mode.uses_slot and place not in ("1", "2"):
        raise InvalidInput(f"--mode {value!r}: an OTP slot is 1 or 2")
    return mode, place if sep else None


def build_plan(modes: Sequence[str], *, slot: int, digits: int, touch: bool, name: str,
               public_id: str = "serial") -> list[Spec]:
    """The specs of a run: each ``-m MODE[:PLACE]`` with the shared options; a place in
    the mode wins over ``--slot`` / ``--name``."""
    if not modes:
        raise InvalidInput("give at least one --mode")
    plan = []
    for value in modes:
        mode, place = parse_mode(value)
        plan.append(Spec(mode, slot=int(place) if place and mode.uses_slot else slot,
                         digits=digits, touch=touch,
                         name=place if place and not mode.uses_slot else name,
                         public_id=public_id))
    return check_plan(plan)


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
