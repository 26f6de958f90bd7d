"""Numbers of the YubiKey configuration protocol (``ykdef.h``), as a YubiKey 5 uses them."""

from __future__ import annotations

from enum import IntEnum, IntFlag


class Cmd(IntEnum):
    """Slot commands: the ``slot`` byte of a frame (or P1 of the PC/SC INS 0x01 APDU)."""

    CONFIG_1 = 0x01
    CONFIG_2 = 0x03
    UPDATE_1 = 0x04
    UPDATE_2 = 0x05
    SWAP = 0x06
    NDEF_1 = 0x08
    NDEF_2 = 0x09
    DEVICE_SERIAL = 0x10
    DEVICE_CONFIG = 0x11
    SCAN_MAP = 0x12
    YK4_CAPABILITIES = 0x13
    YK4_SET_DEVICE_INFO = 0x15
    CHAL_OTP_1 = 0x20
    CHAL_OTP_2 = 0x28
    CHAL_HMAC_1 = 0x30
    CHAL_HMAC_2 = 0x38


#: Commands that change the configuration: they answer with the status, never with data.
WRITE_COMMANDS = frozenset({
    Cmd.CONFIG_1, Cmd.CONFIG_2, Cmd.UPDATE_1, Cmd.UPDATE_2, Cmd.SWAP,
    Cmd.NDEF_1, Cmd.NDEF_2, Cmd.DEVICE_CONFIG, Cmd.SCAN_MAP, Cmd.YK4_SET_DEVICE_INFO,
})


class Tkt(IntFlag):
    """Ticket flags (``tktFlags``)."""

    TAB_FIRST = 0x01
    APPEND_TAB1 = 0x02
    APPEND_TAB2 = 0x04
    APPEND_DELAY1 = 0x08
    APPEND_DELAY2 = 0x10
    APPEND_CR = 0x20
    OATH_HOTP = 0x40  # also CHAL_RESP
    PROTECT_CFG2 = 0x80


class Cfg(IntFlag):
    """Configuration flags (``cfgFlags``); several bits mean different things per mode."""

    SEND_REF = 0x01
    SHORT_TICKET = 0x02  # also OATH_HOTP8
    HMAC_LT64 = 0x04  # also PACING_10MS outside challenge-response
    CHAL_BTN_TRIG = 0x08  # also PACING_20MS
    STRONG_PW1 = 0x10  # also OATH_FIXED_MODHEX1
    STATIC_TICKET = 0x20  # also CHAL_YUBICO
    STRONG_PW2 = 0x40  # also OATH_FIXED_MODHEX2
    MAN_UPDATE = 0x80


CFG_OATH_HOTP8 = 0x02
CFG_OATH_FIXED_MODHEX1 = 0x10
CFG_OATH_FIXED_MODHEX2 = 0x40
CFG_CHAL_YUBICO = 0x20
CFG_CHAL_HMAC = 0x22
CFG_CHAL_MASK = 0x22


class Ext(IntFlag):
    """Extended flags (``extFlags``)."""

    SERIAL_BTN_VISIBLE = 0x01
    SERIAL_USB_VISIBLE = 0x02
    SERIAL_API_VISIBLE = 0x04
    USE_NUMERIC_KEYPAD = 0x08
    FAST_TRIG = 0x10
    ALLOW_UPDATE = 0x20
    DORMANT = 0x40
    LED_INV = 0x80


#: Flags an UPDATE command may change; everything else of the slot is kept.
TKT_UPDATE_MASK = 0x3F
CFG_UPDATE_MASK = 0x0C
EXT_UPDATE_MASK = 0xFF


class CfgState(IntFlag):
    """Bits of the status report's ``touchLevel`` field."""

    SLOT1_VALID = 0x01
    SLOT2_VALID = 0x02
    SLOT1_TOUCH = 0x04
    SLOT2_TOUCH = 0x08
    LED_INV = 0x10


# Feature-report flags (byte 7).
SLOT_WRITE_FLAG = 0x80
RESP_PENDING_FLAG = 0x40
RESP_TIMEOUT_WAIT_FLAG = 0x20
SEQUENCE_MASK = 0x1F

FEATURE_RPT_SIZE = 8
FEATURE_RPT_DATA_SIZE = 7
SLOT_DATA_SIZE = 64
FRAME_SIZE = 70
FRAME_REPORTS = 10  # 70 bytes / 7 per report

# Sizes inside a configuration.
FIXED_SIZE = 16
UID_SIZE = 6
KEY_SIZE = 16
ACC_CODE_SIZE = 6
CONFIG_SIZE = 52
NDEF_DATA_SIZE = 54
HMAC_CHALLENGE_SIZE = 64
HMAC_RESPONSE_SIZE = 20
OTP_RESPONSE_SIZE = 16

CRC_OK_RESIDUAL = 0xF0B8
