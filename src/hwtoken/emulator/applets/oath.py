"""The YKOATH applet (TOTP/HOTP credentials behind an optional access password).

Pure logic over the key's ``oath`` store section, committed after every change, so HOTP
counters survive restarts. Follows Yubico's YKOATH protocol as yubikit's ``OathSession``
and ``ykman oath`` speak it:

* SELECT answers the version (``79``), the salt that names the device (``71``) and, when
  a password is set, a fresh challenge (``74``) and the access key's algorithm (``7B``).
* PUT, DELETE, RENAME, LIST, CALCULATE (full ``75`` or truncated ``76``), CALCULATE ALL
  (``77`` marks HOTP and ``7C`` touch entries, which are calculated one by one), SET CODE,
  VALIDATE (mutual HMAC challenge-response), RESET (``P1P2 = DEAD``).
* With a password set, everything except VALIDATE and RESET answers ``6982`` until the
  host proves it knows the key. Selecting the applet again, or a power cycle, locks it.
"""

from __future__ import annotations

import hmac
import os
import struct
from typing import TYPE_CHECKING, Any

from hwtoken.emulator.applets.management import parse_tlvs
from hwtoken.emulator.applets.management import tlv as _tlv
from hwtoken.emulator.iso7816 import SW, Apdu, ApduError

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.context import KeyContext

AID_OATH = bytes.fromhex("a0000005272101")

TAG_NAME = 0x71
TAG_NAME_LIST = 0x72
TAG_KEY = 0x73
TAG_CHALLENGE = 0x74
TAG_RESPONSE = 0x75
TAG_TRUNCATED = 0x76
TAG_HOTP = 0x77
TAG_PROPERTY = 0x78
TAG_VERSION = 0x79
TAG_IMF = 0x7A
TAG_ALGORITHM = 0x7B
TAG_TOUCH = 0x7C
_BARE_TAGS = frozenset({TAG_PROPERTY})

INS_PUT = 0x01
INS_DELETE = 0x02
INS_SET_CODE = 0x03
INS_RESET = 0x04
INS_RENAME = 0x05
INS_LIST = 0xA1
INS_CALCULATE = 0xA2
INS_VALIDATE = 0xA3
INS_CALCULATE_ALL = 0xA4
INS_SEND_REMAINING = 0xA5

TYPE_HOTP = 0x10
TYPE_TOTP = 0x20
ALGORITHMS = {0x01: "sha1", 0x02: "sha256", 0x03: "sha512"}
PROP_REQUIRE_TOUCH = 0x02

#: How many credentials a YubiKey holds: 64 from firmware 5.7, 32 before (ykman's own
#: device tests expect exactly that many).
MAX_CREDENTIALS = 64
MAX_CREDENTIALS_BEFORE_5_7 = 32
MAX_NAME = 64
MAX_SECRET = 128  # yubikit shortens longer keys to the hash's digest first
SALT_LEN = 8
CHALLENGE_LEN = 8


def parse_oath_tlvs(data: bytes) -> list[tuple[int, bytes]]:
    """Parse YKOATH command data: BER-TLVs, except the property tag ``78`` which is
    followed by its one value byte and no length (as yubikit sends it)."""
    return parse_tlvs(data, bare_tags=_BARE_TAGS, error=SW.WRONG_LENGTH)


def _hmac(algo: str, key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, algo).digest()


def _truncate(digest: bytes) -> bytes:
    """RFC 4226 dynamic truncation: the 4 bytes at offset ``digest[-1] & 0xF``."""
    offset = digest[-1] & 0x0F
    return bytes([digest[offset] & 0x7F]) + digest[offset + 1:offset + 4]


class OathApplet:
    """YKOATH on a :class:`~hwtoken.emulator.context.KeyContext` (``key.oath`` of a VirtualKey)."""

    aid = AID_OATH
    capability = 0x20
    send_remaining_ins = (INS_SEND_REMAINING,)

    def __init__(self, key: KeyContext) -> None:
        self.key = key
        self._validated = False
        self._challenge: bytes | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def state(self) -> dict[str, Any]:
        sec: dict[str, Any] = self.key.store.section("oath")
        if "salt" not in sec:
            sec.update({"salt": os.urandom(SALT_LEN), "access_key": None,
                        "credentials": []})
        return sec

    def initialise(self) -> None:
        """Give a new key its salt (its OATH device id) and an empty credential list."""
        self.state  # noqa: B018 - creates the section

    def power_cycle(self) -> None:
        """Power loss: a password-protected applet is locked again."""
        self._validated = False
        self._challenge = None

    card_reset = power_cycle

    def deselect(self) -> None:
        self._validated = False
        self._challenge = None

    def _commit(self) -> None:
        self.key.store.commit()

    @property
    def has_password(self) -> bool:
        return bool(self.state.get("access_key"))

    @property
    def credentials(self) -> list[dict[str, Any]]:
        creds: list[dict[str, Any]] = self.state["credentials"]
        return creds

    @property
    def capacity(self) -> int:
        """How many credentials the key's firmware holds."""
        if tuple(self.key.version) >= (5, 7, 0):
            return MAX_CREDENTIALS
        return MAX_CREDENTIALS_BEFORE_5_7

    def _find(self, name: bytes) -> dict[str, Any] | None:
        for cred in self.credentials:
            if hmac.compare_digest(bytes(cred["name"]), name):
                return cred
        return None

    # -- ISO 7816 --------------------------------------------------------------------------
    def select(self, apdu: Apdu) -> bytes:
        """Answer version, salt and (if a password is set) a new challenge; locks."""
        st = self.state
        self._validated = False
        out = _tlv(TAG_VERSION, bytes(self.key.version)) + _tlv(TAG_NAME, bytes(st["salt"]))
        access = st.get("access_key")
        if access:
            # the algorithm the host must answer the challenge with: the access key's own
            self._challenge = os.urandom(CHALLENGE_LEN)
            out += _tlv(TAG_CHALLENGE, self._challenge) + _tlv(
                TAG_ALGORITHM, bytes([access["algorithm"]]))
        else:
            self._challenge = None
        return out

    def process(self, apdu: Apdu) -> bytes:
        if apdu.cla & 0x80:
            raise ApduError(SW.CLASS_NOT_SUPPORTED)
        handler = self._HANDLERS.get(apdu.ins)
        if handler is None:
            raise ApduError(SW.INVALID_INSTRUCTION)
        if apdu.ins not in (INS_VALIDATE, INS_RESET) and self.has_password \
                and not self._validated:
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
        result: bytes = handler(self, apdu)
        return result

    def _fields(self, apdu: Apdu) -> dict[int, bytes]:
        return dict(parse_oath_tlvs(apdu.data))

    # -- credentials -----------------------------------------------------------------------
    def _put(self, apdu: Apdu) -> bytes:
        fields = parse_oath_tlvs(apdu.data)
        tags = dict(fields)
        name = tags.get(TAG_NAME)
        keyval = tags.get(TAG_KEY)
        if name is None or keyval is None:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if not 0 < len(name) <= MAX_NAME:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if len(keyval) < 2:
            raise ApduError(SW.WRONG_LENGTH)
        kind, algo = keyval[0] & 0xF0, keyval[0] & 0x0F
        digits, secret = keyval[1], keyval[2:]
        if kind not in (TYPE_HOTP, TYPE_TOTP) or algo not in ALGORITHMS:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if not 6 <= digits <= 8 or len(secret) > MAX_SECRET:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        prop = tags.get(TAG_PROPERTY, b"\0")
        imf = tags.get(TAG_IMF, b"\0\0\0\0")
        if len(imf) != 4:
            raise ApduError(SW.WRONG_LENGTH)
        record = {
            "name": bytes(name),
            "type": kind,
            "algorithm": algo,
            "digits": digits,
            "secret": bytes(secret),
            "touch": bool(prop[0] & PROP_REQUIRE_TOUCH),
            "counter": struct.unpack(">I", imf)[0],
        }
        existing = self._find(name)
        if existing is not None:
            existing.clear()
            existing.update(record)
        else:
            if len(self.credentials) >= self.capacity:
                raise ApduError(SW.NO_SPACE)
            self.credentials.append(record)
        self._commit()
        return b""

    def _delete(self, apdu: Apdu) -> bytes:
        name = self._fields(apdu).get(TAG_NAME)
        cred = self._find(name) if name else None
        if cred is None:
            raise ApduError(SW.DATA_INVALID)
        self.credentials.remove(cred)
        self._commit()
        return b""

    def _rename(self, apdu: Apdu) -> bytes:
        names = [v for t, v in parse_oath_tlvs(apdu.data) if t == TAG_NAME]
        if len(names) != 2:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        old, new = names
        cred = self._find(old)
        if cred is None:
            raise ApduError(SW.DATA_INVALID)
        if not 0 < len(new) <= MAX_NAME:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if self._find(new) is not None:  # another's name, or its own: a key refuses both
            raise ApduError(SW.INCORRECT_PARAMETERS)
        cred["name"] = bytes(new)
        self._commit()
        return b""

    def _list(self, apdu: Apdu) -> bytes:
        return b"".join(
            _tlv(TAG_NAME_LIST, bytes([c["type"] | c["algorithm"]]) + bytes(c["name"]))
            for c in self.credentials)

    def _code(self, cred: dict[str, Any], challenge: bytes, truncate: bool) -> bytes:
        """HMAC of the challenge (TOTP) or of the next counter (HOTP, then advanced)."""
        if cred["type"] == TYPE_HOTP:
            counter = int(cred["counter"])
            message = struct.pack(">Q", counter)
            cred["counter"] = counter + 1
            self._commit()
        else:
            message = challenge
        digest = _hmac(ALGORITHMS[cred["algorithm"]], bytes(cred["secret"]), message)
        digits = bytes([cred["digits"]])
        if truncate:
            return _tlv(TAG_TRUNCATED, digits + _truncate(digest))
        return _tlv(TAG_RESPONSE, digits + digest)

    def _touch(self, cred: dict[str, Any]) -> None:
        if cred.get("touch") and not self.key.presence.wait("oath"):
            raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)

    def _calculate(self, apdu: Apdu) -> bytes:
        fields = self._fields(apdu)
        name = fields.get(TAG_NAME)
        challenge = fields.get(TAG_CHALLENGE)
        if name is None or challenge is None:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        cred = self._find(name)
        if cred is None:
            raise ApduError(SW.DATA_INVALID)
        if cred["type"] == TYPE_TOTP and not challenge:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        self._touch(cred)
        return self._code(cred, challenge, truncate=apdu.p2 == 0x01)

    def _calculate_all(self, apdu: Apdu) -> bytes:
        challenge = self._fields(apdu).get(TAG_CHALLENGE)
        if challenge is None:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        truncate = apdu.p2 == 0x01
        out = bytearray()
        for cred in self.credentials:
            out += _tlv(TAG_NAME, bytes(cred["name"]))
            digits = bytes([cred["digits"]])
            if cred["type"] == TYPE_HOTP:
                out += _tlv(TAG_HOTP, digits)
            elif cred.get("touch"):
                out += _tlv(TAG_TOUCH, digits)
            else:
                out += self._code(cred, challenge, truncate)
        return bytes(out)

    # -- access password -------------------------------------------------------------------
    def _set_code(self, apdu: Apdu) -> bytes:
        fields = self._fields(apdu)
        keyval = fields.get(TAG_KEY)
        if keyval is None:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        if not keyval:  # remove the password
            self.state["access_key"] = None
            self._commit()
            return b""
        algo = keyval[0] & 0x0F
        access_key = keyval[1:]
        challenge = fields.get(TAG_CHALLENGE)
        response = fields.get(TAG_RESPONSE)
        if algo not in ALGORITHMS or not access_key or not challenge or response is None:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        expected = _hmac(ALGORITHMS[algo], access_key, challenge)
        if not hmac.compare_digest(expected, response):
            raise ApduError(SW.DATA_INVALID)
        self.state["access_key"] = {"algorithm": algo, "key": bytes(access_key)}
        self._validated = True  # the host just proved it knows the new key
        self._commit()
        return b""

    def _validate(self, apdu: Apdu) -> bytes:
        fields = self._fields(apdu)
        response = fields.get(TAG_RESPONSE)
        host_challenge = fields.get(TAG_CHALLENGE)
        access = self.state.get("access_key")
        if not access or self._challenge is None:
            raise ApduError(SW.CONDITIONS_NOT_SATISFIED)
        # Yubico's applet refuses a host challenge shorter than 8 bytes (6A80)
        if response is None or host_challenge is None or len(host_challenge) < 8:
            raise ApduError(SW.INCORRECT_PARAMETERS)
        algo = ALGORITHMS[access["algorithm"]]
        key = bytes(access["key"])
        if not hmac.compare_digest(_hmac(algo, key, self._challenge), response):
            self._validated = False
            raise ApduError(SW.INCORRECT_PARAMETERS)
        self._validated = True
        self._challenge = None
        return _tlv(TAG_RESPONSE, _hmac(algo, key, host_challenge))

    def _reset(self, apdu: Apdu) -> bytes:
        if (apdu.p1, apdu.p2) != (0xDE, 0xAD):
            raise ApduError(SW.WRONG_PARAMETERS_P1P2)
        self.state.update({"salt": os.urandom(SALT_LEN), "access_key": None,
                           "credentials": []})
        self._validated = False
        self._challenge = None
        self._commit()
        return b""

    def _send_remaining(self, apdu: Apdu) -> bytes:
        raise ApduError(SW.CONDITIONS_NOT_SATISFIED)

    _HANDLERS = {
        INS_PUT: _put,
        INS_DELETE: _delete,
        INS_SET_CODE: _set_code,
        INS_RESET: _reset,
        INS_RENAME: _rename,
        INS_LIST: _list,
        INS_CALCULATE: _calculate,
        INS_VALIDATE: _validate,
        INS_CALCULATE_ALL: _calculate_all,
        INS_SEND_REMAINING: _send_remaining,
    }

    # -- convenience for Python callers ----------------------------------------------------
    def account_names(self) -> list[str]:
        """Names of the stored credentials (secrets are never exposed)."""
        return [bytes(c["name"]).decode(errors="replace") for c in self.credentials]
