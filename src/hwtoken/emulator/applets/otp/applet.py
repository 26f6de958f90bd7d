"""``OtpApplet``: the two OTP slots of the virtual key and the slot commands.

The same entry point serves both transports:

- over USB HID, :class:`hwtoken.emulator.applets.otp.hid.OtpHidEngine` reassembles a 70-byte frame
  from feature reports, checks its CRC and calls :meth:`OtpApplet.command`;
- over PC/SC, the OTP smart-card applet passes ``INS 0x01, P1=command, data`` straight to
  :meth:`OtpApplet.command` (``INS 0x03`` is :meth:`OtpApplet.status`).

Contract of :meth:`OtpApplet.command` (kept stable for the transports):

- write commands (:data:`~hwtoken.emulator.applets.otp.constants.WRITE_COMMANDS`) always return the
  6-byte status; the programming sequence moves on success and stays put when the key
  refuses (bad config CRC, wrong access code, update not allowed...), exactly what
  python-yubico and yubikit check;
- data commands return the bare response (no CRC; the HID engine adds it) or raise
  :class:`CommandRejected` (empty slot, wrong mode, touch denied, unknown command).

State lives in ``key.store.section("otp")`` and is committed after every change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import struct
import threading
import time
from typing import TYPE_CHECKING, Any

from hwtoken.emulator.applets.otp import keyboard, ticket
from hwtoken.emulator.applets.otp.config import (
    Mode,
    SlotConfig,
    current_access_code,
    is_zero_config,
)
from hwtoken.emulator.applets.otp.constants import (
    ACC_CODE_SIZE,
    CFG_UPDATE_MASK,
    EXT_UPDATE_MASK,
    HMAC_CHALLENGE_SIZE,
    NDEF_DATA_SIZE,
    TKT_UPDATE_MASK,
    WRITE_COMMANDS,
    CfgState,
    Cmd,
    Ext,
    Tkt,
)
from hwtoken.emulator.applets.otp.frames import FrameError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from hwtoken.emulator.applets.management import ManagementApplet
    from hwtoken.emulator.context import KeyContext

SLOTS = (1, 2)
NDEF_CONFIG_SIZE = 2 + NDEF_DATA_SIZE  # length, type, data
NDEF_TYPE_URI = ord("U")
#: What a YubiKey's tag serves until ``ykman otp ndef`` programs it: slot 1 after
#: Yubico's URI (URI identifier code 4 = "https://")
DEFAULT_NDEF = (NDEF_TYPE_URI, b"\x04my.yubico.com/yk/#")
#: Ticket flags that only decorate typed text (tabs, Enter): an NDEF payload has none
_TYPING_DECORATIONS = Tkt.TAB_FIRST | Tkt.APPEND_TAB1 | Tkt.APPEND_TAB2 | Tkt.APPEND_CR
_CHALLENGE_SLOT: dict[int, int] = {Cmd.CHAL_HMAC_1: 1, Cmd.CHAL_HMAC_2: 2,
                                   Cmd.CHAL_OTP_1: 1, Cmd.CHAL_OTP_2: 2}


class CommandRejected(Exception):
    """The key gives no response to this command (the host sees a refusal)."""


class OtpApplet:
    """YubiKey OTP application logic over ``key.store.section("otp")``."""

    def __init__(self, key: KeyContext) -> None:
        self.key = key
        self._lock = threading.RLock()
        self._session: dict[int, int] = {}  # slot -> session counter (volatile)
        self._tstp_base = secrets.randbelow(1 << 24)
        self._powered = time.monotonic()

    # -- state -----------------------------------------------------------------------------
    @property
    def state(self) -> dict[str, Any]:
        sec = self.key.store.section("otp")
        sec.setdefault("pgm_seq", 0)
        sec.setdefault("slots", {})
        return sec

    def initialise(self) -> None:
        """Fresh key: both slots empty, programming sequence 0."""
        sec = self.key.store.section("otp")
        sec.clear()
        sec.update({"pgm_seq": 0, "slots": {}})

    def _commit(self) -> None:
        self.key.store.commit()

    def slot_config(self, slot: int) -> SlotConfig | None:
        """The configuration of ``slot`` (1 or 2), or None if it is empty."""
        d = self.state["slots"].get(str(slot))
        return SlotConfig.from_dict(d) if d else None

    def _slot_state(self, slot: int) -> dict[str, Any]:
        return self.state["slots"][str(slot)]

    def power_cycle(self) -> None:
        """Unplug/replug: Yubico OTP session counters start again."""
        with self._lock:
            self._session.clear()
            self._tstp_base = secrets.randbelow(1 << 24)
            self._powered = time.monotonic()

    # -- status ---------------------------------------------------------------------------
    def touch_level(self) -> int:
        """The status ``touchLevel`` bits: which slots are valid / touch-triggered."""
        level = 0
        for slot, valid, touch in ((1, CfgState.SLOT1_VALID, CfgState.SLOT1_TOUCH),
                                   (2, CfgState.SLOT2_VALID, CfgState.SLOT2_TOUCH)):
            cfg = self.slot_config(slot)
            if cfg is not None:
                level |= valid
                if not cfg.is_chalresp:
                    level |= touch
                if cfg.ext & Ext.LED_INV:
                    level |= CfgState.LED_INV
        return level

    def status(self) -> bytes:
        """6 bytes: firmware major, minor, build, programming sequence, touchLevel (LE)."""
        major, minor, build = self.key.version
        return bytes([major, minor, build, self.state["pgm_seq"] & 0xFF]) + struct.pack(
            "<H", self.touch_level())

    def describe(self) -> dict[str, Any]:
        """Non-secret summary of both slots (for `hwtoken emulate show` and tests)."""
        return {
            "pgm_seq": self.state["pgm_seq"],
            "slots": {str(s): (c.describe() if (c := self.slot_config(s)) else None)
                      for s in SLOTS},
        }

    # -- commands -------------------------------------------------------------------------
    @staticmethod
    def is_write(command: int) -> bool:
        """True for commands answered with the status (configuration writes)."""
        return command in WRITE_COMMANDS

    def needs_touch(self, command: int) -> bool:
        """True if ``command`` will wait for the user (challenge-response with the button)."""
        slot = _CHALLENGE_SLOT.get(command)
        if slot is None:
            return False
        cfg = self.slot_config(slot)
        return cfg is not None and cfg.requires_touch

    def command(self, command: int, payload: bytes,
                cancel: threading.Event | None = None) -> bytes:
        """Run one slot command; see the module docstring for what comes back."""
        payload = bytes(payload).ljust(HMAC_CHALLENGE_SIZE, b"\0")
        with self._lock:
            if command in WRITE_COMMANDS:
                if self._write(command, payload):
                    self._bump_sequence(always=command == Cmd.YK4_SET_DEVICE_INFO)
                    self._commit()
                return self.status()
        if command == Cmd.DEVICE_SERIAL:
            return struct.pack(">I", self.key.serial)
        if command == Cmd.YK4_CAPABILITIES:
            info = self._device_info()
            return bytes([len(info)]) + info
        if command in (Cmd.CHAL_HMAC_1, Cmd.CHAL_HMAC_2):
            return self._chal_hmac(1 if command == Cmd.CHAL_HMAC_1 else 2, payload, cancel)
        if command in (Cmd.CHAL_OTP_1, Cmd.CHAL_OTP_2):
            return self._chal_otp(1 if command == Cmd.CHAL_OTP_1 else 2, payload, cancel)
        raise CommandRejected(f"unknown command 0x{command:02x}")

    def _bump_sequence(self, *, always: bool = False) -> None:
        """Move the programming sequence after an accepted write. With both slots empty
        it restarts at 0, except after SET DEVICE INFO: yubikit takes only a sequence one
        higher as its success."""
        sec = self.state
        if not sec["slots"] and not always:
            sec["pgm_seq"] = 0  # both slots empty: the sequence restarts
        else:
            sec["pgm_seq"] = sec["pgm_seq"] % 255 + 1

    # writes return True when the key accepted them
    def _write(self, command: int, payload: bytes) -> bool:
        if command in (Cmd.CONFIG_1, Cmd.CONFIG_2):
            return self._configure(1 if command == Cmd.CONFIG_1 else 2, payload)
        if command in (Cmd.UPDATE_1, Cmd.UPDATE_2):
            return self._update(1 if command == Cmd.UPDATE_1 else 2, payload)
        if command == Cmd.SWAP:
            return self._swap(payload)
        if command in (Cmd.NDEF_1, Cmd.NDEF_2):
            return self._ndef(1 if command == Cmd.NDEF_1 else 2, payload)
        if command == Cmd.DEVICE_CONFIG:
            return self._management(lambda mgmt: mgmt.set_mode(payload[:4]))
        if command == Cmd.YK4_SET_DEVICE_INFO:
            # a DeviceConfig as over CCID: its length byte, then the TLVs (and padding)
            return self._management(lambda mgmt: mgmt.write_config(payload[:payload[0] + 1]))
        if command == Cmd.SCAN_MAP:
            self.state["scan_map"] = payload[:45]
            return True
        return False  # pragma: no cover - WRITE_COMMANDS is exhaustive

    def _management(self, change: Callable[[ManagementApplet], object]) -> bool:
        """Apply a device configuration write of the management applet (what the OTP
        interface carries for ``ykman config`` on a host without a smart-card stack);
        False when management refuses it (a wrong lock code, a bad TLV)."""
        from hwtoken.emulator.applets.management import ManagementApplet
        from hwtoken.emulator.iso7816 import ApduError

        try:
            change(ManagementApplet(self.key))
        except ApduError:
            return False
        return True

    def _ndef(self, slot: int, payload: bytes) -> bool:
        """NDEF data (length, type, 54 bytes) then the slot's current access code, which
        a key checks like for any other write to a protected slot (yubikit appends it)."""
        presented = payload[NDEF_CONFIG_SIZE:NDEF_CONFIG_SIZE + ACC_CODE_SIZE]
        if not self._access_ok(slot, presented.ljust(ACC_CODE_SIZE, b"\0")):
            return False
        self.state.setdefault("ndef", {})[str(slot)] = payload[:NDEF_CONFIG_SIZE]
        self.state["ndef_slot"] = slot  # the tag now serves this slot
        return True

    def _access_ok(self, slot: int, presented: bytes) -> bool:
        cfg = self.slot_config(slot)
        if cfg is None or not cfg.protected:
            return True
        return hmac.compare_digest(cfg.acc_code, presented)

    def _slot2_locked(self, slot: int) -> bool:
        """PROTECT_CFG2: slot 1 forbids changing slot 2 unless slot 2 opted in too."""
        if slot != 2:
            return False
        one, two = self.slot_config(1), self.slot_config(2)
        return (one is not None and bool(one.tkt & Tkt.PROTECT_CFG2)
                and not (two is not None and two.tkt & Tkt.PROTECT_CFG2))

    def _configure(self, slot: int, payload: bytes) -> bool:
        if not self._access_ok(slot, current_access_code(payload)) or self._slot2_locked(slot):
            return False
        slots = self.state["slots"]
        if is_zero_config(payload):
            slots.pop(str(slot), None)
            self._session.pop(slot, None)
            return True
        try:
            cfg = SlotConfig.parse(payload)
        except FrameError:
            return False
        entry = cfg.to_dict()
        if cfg.mode is Mode.HOTP:
            entry["counter"] = cfg.hotp_imf
        elif cfg.mode in (Mode.YUBICO_OTP, Mode.CHAL_YUBICO):
            entry["use_ctr"] = 0
        slots[str(slot)] = entry
        self._session.pop(slot, None)
        return True

    def _update(self, slot: int, payload: bytes) -> bool:
        cfg = self.slot_config(slot)
        if cfg is None or not cfg.ext & Ext.ALLOW_UPDATE or self._slot2_locked(slot):
            return False
        if not self._access_ok(slot, current_access_code(payload)):
            return False
        try:
            new = SlotConfig.parse(payload)
        except FrameError:
            return False
        entry = self._slot_state(slot)
        entry["tkt"] = (cfg.tkt & ~TKT_UPDATE_MASK) | (new.tkt & TKT_UPDATE_MASK)
        entry["cfg"] = (cfg.cfg & ~CFG_UPDATE_MASK) | (new.cfg & CFG_UPDATE_MASK)
        entry["ext"] = (cfg.ext & ~EXT_UPDATE_MASK) | (new.ext & EXT_UPDATE_MASK)
        entry["acc_code"] = new.acc_code
        return True

    def _swap(self, payload: bytes) -> bool:
        presented = current_access_code(payload)
        if not all(self._access_ok(s, presented) for s in SLOTS) or self._slot2_locked(2):
            return False
        slots = self.state["slots"]
        one, two = slots.pop("1", None), slots.pop("2", None)
        if two is not None:
            slots["1"] = two
        if one is not None:
            slots["2"] = one
        self._session.clear()
        return True

    # -- challenge-response --------------------------------------------------------------------
    def _presence(self, slot: int, cancel: threading.Event | None) -> None:
        if not self.key.presence.wait(f"OTP slot {slot} challenge-response", cancel):
            raise CommandRejected("touch not given")

    def _chal_hmac(self, slot: int, payload: bytes, cancel: threading.Event | None) -> bytes:
        cfg = self.slot_config(slot)
        if cfg is None or cfg.mode is not Mode.CHAL_HMAC:
            raise CommandRejected(f"slot {slot} is not programmed for HMAC-SHA1")
        challenge = payload[:HMAC_CHALLENGE_SIZE]
        if cfg.hmac_lt64:
            # variable length: the host padded with a byte differing from the last one
            challenge = challenge.rstrip(challenge[-1:])
        if cfg.requires_touch:
            self._presence(slot, cancel)
        return hmac.new(cfg.hmac_key, challenge, hashlib.sha1).digest()

    def _chal_otp(self, slot: int, payload: bytes, cancel: threading.Event | None) -> bytes:
        cfg = self.slot_config(slot)
        if cfg is None or cfg.mode is not Mode.CHAL_YUBICO:
            raise CommandRejected(f"slot {slot} is not programmed for Yubico OTP challenges")
        if cfg.requires_touch:
            self._presence(slot, cancel)
        with self._lock:
            use_ctr, session = self._next_counters(slot)
            return ticket.yubico_otp_response(cfg, payload[:6], use_ctr, self._tstp(),
                                              session, secrets.randbelow(1 << 16))

    # -- touching the button ------------------------------------------------------------------
    def _tstp(self) -> int:
        return (self._tstp_base + int((time.monotonic() - self._powered) * 8)) & 0xFFFFFF

    def _next_counters(self, slot: int) -> tuple[int, int]:
        """Yubico OTP counters: the use counter moves at the first use after power-up."""
        entry = self._slot_state(slot)
        session = self._session.get(slot)
        if session is None or session >= 0xFF:
            entry["use_ctr"] = min(int(entry.get("use_ctr", 0)) + 1, 0x7FFF)
            session = 0
        else:
            session += 1
        self._session[slot] = session
        self._commit()
        return int(entry["use_ctr"]), session

    def touch(self, slot: int) -> str:
        """Touch the button for ``slot`` (1 short, 2 long): the text the key types.

        An empty or challenge-response slot types nothing. OATH-HOTP advances and persists
        its counter; Yubico OTP its use/session counters.
        """
        return keyboard.decode(self.touch_keys(slot))

    def touch_keys(self, slot: int) -> list[bytes]:
        """Like :meth:`touch` but as boot-keyboard reports (press/release pairs)."""
        if slot not in SLOTS:
            raise ValueError("slot must be 1 or 2")
        with self._lock:
            cfg = self.slot_config(slot)
            if cfg is None or cfg.is_chalresp:
                return []
            return self._emit(slot, cfg)

    def ndef(self) -> tuple[int, bytes]:
        """The record the NFC tag serves on a read: ``(type, payload)``, the NDEF data
        programmed for the tag's slot (the one ``ykman otp ndef`` named last; slot 1
        with Yubico's URI until then) followed by that slot's OTP, which the read uses
        up as a touch does (HOTP counter, Yubico OTP counters). An empty or
        challenge-response slot adds nothing."""
        with self._lock:
            slot = int(self.state.get("ndef_slot", 1))
            raw = self.state.get("ndef", {}).get(str(slot))
            kind, data = DEFAULT_NDEF if raw is None else (raw[1], bytes(raw[2:2 + raw[0]]))
            cfg = self.slot_config(slot)
            if cfg is None or cfg.is_chalresp:
                return kind, data
            plain = dataclasses.replace(cfg, tkt=cfg.tkt & ~_TYPING_DECORATIONS)
            return kind, data + keyboard.decode(self._emit(slot, plain)).encode()

    def _emit(self, slot: int, cfg: SlotConfig) -> list[bytes]:
        """What a touch of ``slot`` (programmed with ``cfg``) types; moves its counters.
        Call with the lock held."""
        numeric = bool(cfg.ext & Ext.USE_NUMERIC_KEYPAD)
        mode = cfg.mode
        if mode is Mode.HOTP:
            entry = self._slot_state(slot)
            counter = int(entry.get("counter", 0))
            text = ticket.hotp_text(cfg, counter)
            entry["counter"] = counter + 1
            self._commit()
        elif mode is Mode.YUBICO_OTP:
            use_ctr, session = self._next_counters(slot)
            tkt = ticket.yubico_ticket(cfg.uid, use_ctr, self._tstp(), session,
                                       secrets.randbelow(1 << 16))
            text = ticket.yubico_otp_text(cfg, tkt)
        elif mode is Mode.STATIC_TICKET:
            text = ticket.static_ticket_text(cfg)
        else:
            reports = keyboard.encode_scancodes(ticket.static_password_scancodes(cfg))
            if cfg.tkt & Tkt.APPEND_CR:
                reports += keyboard.encode("\n")
            return reports
        return keyboard.encode(text, numeric_keypad=numeric)

    # -- device information (YK4_CAPABILITIES) ---------------------------------------------------
    def _device_info(self) -> bytes:
        """Management device-info TLVs, as the management applet answers them."""
        from hwtoken.emulator.applets.management import device_info_tlvs

        return device_info_tlvs(self.key)


__all__ = ["OtpApplet", "CommandRejected", "SLOTS"]
