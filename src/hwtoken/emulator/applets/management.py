"""The management applet: what ``ykman info`` and ``ManagementSession`` read and write.

Pure logic over the key's ``management`` store section. Device info is the TLV list of
yubikit's ``DeviceInfo.parse`` (serial, firmware version, form factor, supported and
enabled capabilities over USB and NFC, timeouts, flags, config lock). What it reports
follows the key's profile: a ``yubikey-5`` shows up as a "YubiKey 5 NFC" whose applets are
the ones it really has (OTP, FIDO U2F, FIDO2, PIV, OATH); a ``security-key`` as a Security
Key NFC with FIDO U2F and FIDO2 only (the Security Key form-factor flag, no serial).
"""

from __future__ import annotations

import hmac
import struct
from typing import TYPE_CHECKING, Any

from hwtoken.emulator.iso7816 import SW, Apdu, ApduError

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.context import KeyContext

AID_MANAGEMENT = bytes.fromhex("a000000527471117")

# Capability bits (yubikit.management.CAPABILITY)
CAP_OTP = 0x01
CAP_U2F = 0x02
CAP_OPENPGP = 0x08
CAP_PIV = 0x10
CAP_OATH = 0x20
CAP_HSMAUTH = 0x100
CAP_FIDO2 = 0x200
SUPPORTED = CAP_OTP | CAP_U2F | CAP_OPENPGP | CAP_PIV | CAP_OATH | CAP_HSMAUTH | CAP_FIDO2
#: What keys created before PIV existed supported (their state records no "supported").
SUPPORTED_BEFORE_PIV = CAP_OTP | CAP_U2F | CAP_OATH | CAP_FIDO2

FORM_FACTOR_USB_A_KEYCHAIN = 0x01
DEVICE_FLAG_EJECT = 0x80  # yubikit DEVICE_FLAG.EJECT: touch ejects the smart card

TAG_USB_SUPPORTED = 0x01
TAG_SERIAL = 0x02
TAG_USB_ENABLED = 0x03
TAG_FORM_FACTOR = 0x04
TAG_VERSION = 0x05
TAG_AUTO_EJECT_TIMEOUT = 0x06
TAG_CHALRESP_TIMEOUT = 0x07
TAG_DEVICE_FLAGS = 0x08
TAG_CONFIG_LOCK = 0x0A
TAG_UNLOCK = 0x0B
TAG_REBOOT = 0x0C
TAG_NFC_SUPPORTED = 0x0D
TAG_NFC_ENABLED = 0x0E

INS_ECHO = 0x01  # answers its data (Yubico's tests of secure messaging use it)
INS_SET_MODE = 0x16
INS_WRITE_CONFIG = 0x1C
INS_READ_CONFIG = 0x1D
INS_DEVICE_RESET = 0x1F

LOCK_CODE_LEN = 16
#: A challenge-response touch waits this long; a timeout of 0 written means this default
CHALRESP_TIMEOUT_DEFAULT = 15
_NO_LOCK = b"\0" * LOCK_CODE_LEN


def tlv(tag: int, value: bytes) -> bytes:
    """One BER-TLV with a one-byte tag (lengths up to 65535)."""
    n = len(value)
    if n < 0x80:
        head = bytes([n])
    elif n <= 0xFF:
        head = bytes([0x81, n])
    else:
        head = bytes([0x82]) + struct.pack(">H", n)
    return bytes([tag]) + head + value


def parse_tlvs(data: bytes, *, bare_tags: frozenset[int] = frozenset(),
               error: int = SW.INCORRECT_PARAMETERS) -> list[tuple[int, bytes]]:
    """Parse a flat list of one-byte-tag TLVs; malformed input raises ApduError(``error``).

    A tag in ``bare_tags`` is followed by its one value byte and no length (YKOATH's
    property tag, as yubikit sends it).
    """
    out: list[tuple[int, bytes]] = []
    i = 0
    n = len(data)
    while i < n:
        if i + 2 > n:
            raise ApduError(error)
        tag = data[i]
        if tag in bare_tags:
            out.append((tag, data[i + 1:i + 2]))
            i += 2
            continue
        ln = data[i + 1]
        i += 2
        if ln & 0x80:
            k = ln & 0x7F
            if k not in (1, 2) or i + k > n:
                raise ApduError(error)
            ln = int.from_bytes(data[i:i + k], "big")
            i += k
        if i + ln > n:
            raise ApduError(error)
        out.append((tag, data[i:i + ln]))
        i += ln
    return out


def _migrate(sec: dict[str, Any], supported: int, nfc: bool) -> None:
    """Enable, over USB and NFC, the applications the model gained since the state was
    written (PIV for a YubiKey 5 made before the PIV applet existed).

    A key whose enabled sets predate an application would otherwise show it as supported
    but disabled, as if the user had switched it off. Persisted with the next commit;
    applying it again changes nothing.
    """
    known = int(sec.get("supported", SUPPORTED_BEFORE_PIV & supported))
    gained = supported & ~known
    if gained:
        sec["usb_enabled"] = int(sec["usb_enabled"]) | gained
        if nfc:
            sec["nfc_enabled"] = int(sec.get("nfc_enabled", supported)) | gained
    sec["supported"] = supported


def device_info_tlvs(key: Any) -> bytes:
    """Device-info TLVs of ``key`` without the length byte (the OTP applet's
    YK4_CAPABILITIES answer uses them too)."""
    return ManagementApplet(key).device_info()[1:]


class ManagementApplet:
    """Management over CCID/NFC: SELECT answers the firmware version as text."""

    aid = AID_MANAGEMENT
    capability = 0  # always available

    def __init__(self, key: KeyContext) -> None:
        self.key = key

    @property
    def supported(self) -> int:
        """Capability bits of the key's model (:data:`SUPPORTED` without a profile)."""
        profile = getattr(self.key, "profile", None)
        return SUPPORTED if profile is None else int(profile.capabilities)

    @property
    def nfc(self) -> bool:
        profile = getattr(self.key, "profile", None)
        return True if profile is None else bool(profile.nfc)

    # -- state ------------------------------------------------------------------------------
    @property
    def state(self) -> dict[str, Any]:
        sec: dict[str, Any] = self.key.store.section("management")
        if "usb_enabled" in sec:
            _migrate(sec, self.supported, self.nfc)
        sec.setdefault("usb_enabled", self.supported)
        sec.setdefault("nfc_enabled", self.supported if self.nfc else 0)
        sec.setdefault("supported", self.supported)
        sec.setdefault("auto_eject_timeout", 0)
        sec.setdefault("chalresp_timeout", CHALRESP_TIMEOUT_DEFAULT)
        sec.setdefault("device_flags", 0)
        return sec

    def enabled(self, transport: str = "nfc") -> int:
        """Enabled capability bits over ``usb`` or ``nfc`` (only what the model supports)."""
        return int(self.state[f"{transport}_enabled"]) & self.supported

    @property
    def locked(self) -> bool:
        return bool(self.state.get("lock_code"))

    def device_info(self) -> bytes:
        """The READ CONFIG answer: a length byte followed by the device-info TLVs."""
        st = self.state
        major, minor, patch = self.key.version
        profile = getattr(self.key, "profile", None)
        form_factor = FORM_FACTOR_USB_A_KEYCHAIN if profile is None else profile.form_factor
        nfc = [tlv(TAG_NFC_SUPPORTED, struct.pack(">H", self.supported)),
               tlv(TAG_NFC_ENABLED, struct.pack(">H", self.enabled("nfc")))]
        serial_visible = True if profile is None else profile.serial_visible
        serial = [tlv(TAG_SERIAL, struct.pack(">I", self.key.serial))] if serial_visible else []
        body = b"".join([
            tlv(TAG_USB_SUPPORTED, struct.pack(">H", self.supported)),
            *serial,
            tlv(TAG_USB_ENABLED, struct.pack(">H", self.enabled("usb"))),
            tlv(TAG_FORM_FACTOR, bytes([form_factor])),
            tlv(TAG_VERSION, bytes([major, minor, patch])),
            tlv(TAG_AUTO_EJECT_TIMEOUT, struct.pack(">H", int(st["auto_eject_timeout"]))),
            tlv(TAG_CHALRESP_TIMEOUT, bytes([int(st["chalresp_timeout"])])),
            tlv(TAG_DEVICE_FLAGS, bytes([int(st["device_flags"])])),
            tlv(TAG_CONFIG_LOCK, b"\1" if self.locked else b"\0"),
            *(nfc if self.nfc else []),
        ])
        return bytes([len(body)]) + body

    def write_config(self, data: bytes) -> None:
        """Apply a WRITE CONFIG (``DeviceConfig.get_bytes``): enabled apps, timeouts, lock."""
        if not data or data[0] != len(data) - 1:
            raise ApduError(SW.WRONG_LENGTH)
        fields = dict(parse_tlvs(data[1:]))
        st = self.state
        current = bytes(st.get("lock_code") or b"")
        if current:
            given = fields.get(TAG_UNLOCK, b"")
            if len(given) != LOCK_CODE_LEN or not hmac.compare_digest(given, current):
                raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        changes: dict[str, Any] = {}
        for tag, name, size in ((TAG_USB_ENABLED, "usb_enabled", 2),
                                (TAG_NFC_ENABLED, "nfc_enabled", 2),
                                (TAG_AUTO_EJECT_TIMEOUT, "auto_eject_timeout", 2),
                                (TAG_CHALRESP_TIMEOUT, "chalresp_timeout", 1),
                                (TAG_DEVICE_FLAGS, "device_flags", 1)):
            if tag in fields:
                value = fields[tag]
                if len(value) not in range(1, size + 1):
                    raise ApduError(SW.INCORRECT_PARAMETERS)
                changes[name] = int.from_bytes(value, "big")
        if changes.get("chalresp_timeout") == 0:
            # `ykman config mode` (yubikit's set_mode) writes 0: a YubiKey takes it as the
            # default and reports that
            changes["chalresp_timeout"] = CHALRESP_TIMEOUT_DEFAULT
        for name in ("usb_enabled", "nfc_enabled"):
            if name in changes:
                changes[name] &= self.supported
                if name == "usb_enabled" and not changes[name]:
                    raise ApduError(SW.INCORRECT_PARAMETERS)  # a key must keep one app
        if TAG_CONFIG_LOCK in fields:
            new = fields[TAG_CONFIG_LOCK]
            if len(new) != LOCK_CODE_LEN:
                raise ApduError(SW.INCORRECT_PARAMETERS)
            changes["lock_code"] = b"" if new == _NO_LOCK else new
        st.update(changes)
        self.key.store.commit()
        if TAG_REBOOT in fields:
            self.key.request_reboot()  # after this answer: the USB interfaces follow

    # -- ISO 7816 ---------------------------------------------------------------------------
    def select(self, apdu: Apdu) -> bytes:
        major, minor, patch = self.key.version
        return f"{major}.{minor}.{patch}".encode()

    def process(self, apdu: Apdu) -> bytes:
        if apdu.ins == INS_READ_CONFIG:
            if apdu.p1 != 0:
                raise ApduError(SW.INCORRECT_PARAMETERS)
            return self.device_info()
        if apdu.ins == INS_WRITE_CONFIG:
            self.write_config(apdu.data)
            return b""
        if apdu.ins == INS_SET_MODE:
            return self.set_mode(apdu.data)
        if apdu.ins == INS_ECHO:
            return apdu.data
        raise ApduError(SW.INVALID_INSTRUCTION)

    def set_mode(self, data: bytes) -> bytes:
        """Legacy SET MODE (YubiKey 4; yubikit packs ``<BBH``): the mode code picks the USB
        interfaces (bit 7: the smart card ejects on touch), then the challenge-response
        timeout (0: the default) and the auto-eject timeout."""
        if len(data) < 1:
            raise ApduError(SW.WRONG_LENGTH)
        if self.locked:
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        ifaces = [0b001, 0b100, 0b101, 0b010, 0b011, 0b110, 0b111]  # OTP=1 FIDO=2 CCID=4
        code = data[0] & 0x07
        if code >= len(ifaces):
            raise ApduError(SW.INCORRECT_PARAMETERS)
        bits = ifaces[code]
        usb = 0
        if bits & 1:
            usb |= CAP_OTP
        if bits & 2:
            usb |= CAP_U2F | CAP_FIDO2
        if bits & 4:
            usb |= CAP_OATH | CAP_PIV | CAP_OPENPGP | CAP_HSMAUTH
        st = self.state
        st["usb_enabled"] = usb & self.supported
        if len(data) >= 2:
            st["chalresp_timeout"] = data[1] or CHALRESP_TIMEOUT_DEFAULT
        if len(data) >= 4:
            st["auto_eject_timeout"] = int.from_bytes(data[2:4], "little")
            flags = int(st["device_flags"]) & ~DEVICE_FLAG_EJECT
            st["device_flags"] = flags | (DEVICE_FLAG_EJECT if data[0] & 0x80 else 0)
        self.key.store.commit()
        return b""
