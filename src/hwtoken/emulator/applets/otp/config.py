"""The 52-byte slot configuration (``config_st`` in ``ykdef.h``) and what its flags mean.

Layout: ``fixed[16] uid[6] key[16] accCode[6] fixedSize extFlags tktFlags cfgFlags rfu[2]
crc[2]``; the CRC makes the whole 52 bytes pass the residual check.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hwtoken.emulator.applets.otp.constants import (
    ACC_CODE_SIZE,
    CFG_CHAL_HMAC,
    CFG_CHAL_MASK,
    CFG_CHAL_YUBICO,
    CFG_OATH_HOTP8,
    CONFIG_SIZE,
    FIXED_SIZE,
    Cfg,
    Tkt,
)
from hwtoken.emulator.applets.otp.frames import FrameError, check_crc

_LAYOUT = struct.Struct("<16s6s16s6sBBBB2sH")


class Mode(StrEnum):
    """What a programmed slot does."""

    YUBICO_OTP = "yubico-otp"
    STATIC_TICKET = "static-ticket"
    STATIC_PASSWORD = "static-password"
    HOTP = "oath-hotp"
    CHAL_HMAC = "chalresp-hmac"
    CHAL_YUBICO = "chalresp-yubico"


@dataclass
class SlotConfig:
    """One slot's configuration as the key stores it."""

    fixed: bytes
    uid: bytes
    key: bytes
    acc_code: bytes
    ext: int
    tkt: int
    cfg: int

    @classmethod
    def parse(cls, data: bytes) -> SlotConfig:
        """Decode a 52-byte configuration; :class:`FrameError` if its CRC or size is wrong."""
        if len(data) < CONFIG_SIZE:
            raise FrameError(f"configuration must be {CONFIG_SIZE} bytes")
        data = bytes(data[:CONFIG_SIZE])
        if not check_crc(data):
            raise FrameError("configuration CRC mismatch")
        fixed, uid, key, acc, fixed_size, ext, tkt, cfg, _rfu, _crc = _LAYOUT.unpack(data)
        if fixed_size > FIXED_SIZE:
            raise FrameError("fixed size out of range")
        return cls(fixed[:fixed_size], uid, key, acc, ext, tkt, cfg)

    # -- persistence -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"fixed": self.fixed, "uid": self.uid, "key": self.key,
                "acc_code": self.acc_code, "ext": self.ext, "tkt": self.tkt, "cfg": self.cfg}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SlotConfig:
        return cls(bytes(d["fixed"]), bytes(d["uid"]), bytes(d["key"]),
                   bytes(d["acc_code"]), int(d["ext"]), int(d["tkt"]), int(d["cfg"]))

    # -- meaning -------------------------------------------------------------------------
    @property
    def mode(self) -> Mode:
        """The slot's mode, decided by the ticket and config flag combination."""
        if self.tkt & Tkt.OATH_HOTP:
            chal = self.cfg & CFG_CHAL_MASK
            if chal == CFG_CHAL_HMAC:
                return Mode.CHAL_HMAC
            if chal == CFG_CHAL_YUBICO:
                return Mode.CHAL_YUBICO
            return Mode.HOTP
        if self.cfg & Cfg.STATIC_TICKET:
            return Mode.STATIC_TICKET
        if self.cfg & Cfg.SHORT_TICKET:
            return Mode.STATIC_PASSWORD
        return Mode.YUBICO_OTP

    @property
    def is_chalresp(self) -> bool:
        return self.mode in (Mode.CHAL_HMAC, Mode.CHAL_YUBICO)

    @property
    def hmac_key(self) -> bytes:
        """The 20-byte HMAC key (HOTP and HMAC challenge-response): key + first 4 of uid."""
        return self.key + self.uid[:4]

    @property
    def hotp_digits(self) -> int:
        return 8 if self.cfg & CFG_OATH_HOTP8 else 6

    @property
    def hotp_imf(self) -> int:
        """Initial moving factor: uid[4:6] big-endian, in units of 16 (as ykpers/yubikit)."""
        return int.from_bytes(self.uid[4:6], "big") * 16

    @property
    def requires_touch(self) -> bool:
        """Challenge-response that needs the button (``CHAL_BTN_TRIG``)."""
        return self.is_chalresp and bool(self.cfg & Cfg.CHAL_BTN_TRIG)

    @property
    def hmac_lt64(self) -> bool:
        return bool(self.cfg & Cfg.HMAC_LT64)

    @property
    def protected(self) -> bool:
        """True if an access code guards this slot."""
        return any(self.acc_code)

    def describe(self) -> dict[str, Any]:
        """Non-secret facts about the slot (for inspection; never the key)."""
        info: dict[str, Any] = {"mode": self.mode.value, "access_code": self.protected}
        if self.mode is Mode.HOTP:
            info["digits"] = self.hotp_digits
        if self.is_chalresp:
            info["require_touch"] = self.requires_touch
        return info


def is_zero_config(data: bytes) -> bool:
    """A configuration of all zeros (before the access code) deletes the slot."""
    return not any(data[:CONFIG_SIZE])


def current_access_code(payload: bytes) -> bytes:
    """The access code the host presents: the 6 bytes after the configuration."""
    return bytes(payload[CONFIG_SIZE:CONFIG_SIZE + ACC_CODE_SIZE]).ljust(ACC_CODE_SIZE, b"\0")
