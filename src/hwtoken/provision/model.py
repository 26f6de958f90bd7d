"""What a provisioning record holds: the mode a key is programmed in and its state."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass


class Mode(enum.StrEnum):
    """How a key is programmed."""

    HOTP = "hotp"            # OTP slot, OATH-HOTP typed on touch (python-yubico)
    CHALRESP = "chalresp"    # OTP slot, HMAC-SHA1 challenge-response (python-yubico)
    OATH_TOTP = "oath-totp"  # OATH applet credential, TOTP (yubikit)
    OATH_HOTP = "oath-hotp"  # OATH applet credential, HOTP (yubikit)

    @property
    def uses_slot(self) -> bool:
        return self in (Mode.HOTP, Mode.CHALRESP)

    @property
    def is_hotp(self) -> bool:
        return self in (Mode.HOTP, Mode.OATH_HOTP)


class State(enum.StrEnum):
    """Where a record is in the four durable steps."""

    PENDING = "pending"  # recorded; the key may or may not be programmed yet
    DONE = "done"        # programmed and verified


SECRET_LENGTH = 20  # HMAC-SHA1 key size: what OTP slots hold and what OATH uses by default
OATH_PERIOD = 30
HOTP_IMF = 0  # the initial moving factor (counter) every HOTP slot is programmed with
HOTP_LOOK_AHEAD = 20  # how far a check searches the key's HOTP counter after a crash


@dataclass(frozen=True)
class Spec:
    """What to program: the mode and its parameters (the same for a whole batch)."""

    mode: Mode
    slot: int = 2
    digits: int = 6
    touch: bool = False
    name: str = "hwtoken"  # OATH credential name on the key

    def __post_init__(self) -> None:
        from hwtoken.errors import InvalidInput

        if self.slot not in (1, 2):
            raise InvalidInput("--slot must be 1 or 2")
        if self.digits not in (6, 7, 8) or (self.mode.uses_slot and self.digits == 7):
            raise InvalidInput("--digits must be 6 or 8 (7 also for OATH)")
        if not self.mode.uses_slot:
            name = self.name
            if not name.strip() or ":" in name or len(name.encode("utf-8", "replace")) > 64 \
                    or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
                raise InvalidInput(f"--name {name!r} cannot name an OATH credential: give 1 to "
                                   "64 bytes of text without ':' or control characters")

    @property
    def place(self) -> str:
        """Where on the key the secret lives: an OTP slot or a named OATH credential."""
        return f"slot {self.slot}" if self.mode.uses_slot else f"OATH credential {self.name!r}"


@dataclass
class Record:
    """One key in the inventory. ``sealed`` is the AES-GCM-sealed secret, never the secret."""

    serial: int
    mode: Mode
    slot: int
    digits: int
    touch: bool
    name: str
    sealed: str
    state: State = State.PENDING
    counter: int = 0          # HOTP: the next counter value a validation server should expect
    device: str = ""          # how to reach the key again: "emu:NAME" or "usb"
    station: str = ""         # who programmed it (host:pid)
    attempts: int = 0
    last_error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    programmed_at: float | None = None
    exported_at: float | None = None

    @property
    def spec(self) -> Spec:
        return Spec(self.mode, self.slot, self.digits, self.touch, self.name)

    def public(self) -> dict[str, object]:
        """The record without its sealed secret (for status and JSON output)."""
        doc = dataclasses.asdict(self)
        doc.pop("sealed")
        doc["mode"] = self.mode.value
        doc["state"] = self.state.value
        return doc

    def aad(self) -> bytes:
        """Associated data binding a sealed secret to this key and mode."""
        return f"hwtoken-provision:{self.serial}:{self.mode.value}:{self.slot}".encode()
