"""One-time passwords: HOTP (RFC 4226), TOTP (RFC 6238), otpauth:// URIs and verification.

The code generators agree with pyotp and oathtool; :class:`Verifier` adds what a validation
server needs: a window, constant-time comparison and replay protection through a
:class:`ReplayStore` that survives a restart.

Only the standard library is imported here, so ``hwtoken otp code`` starts fast.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import re
import secrets
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Self
from urllib.parse import quote, unquote, urlsplit

from hwtoken.errors import InvalidInput

__all__ = [
    "ALGORITHMS",
    "HOTP",
    "TOTP",
    "OtpParams",
    "ReplayStore",
    "Verifier",
    "decode_secret",
    "encode_secret",
    "new_secret",
    "parse_uri",
    "parse_secret_or_uri",
    "check_strength",
]

#: Algorithm names as they appear in otpauth:// URIs -> hashlib names.
ALGORITHMS: dict[str, str] = {"SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}
DIGITS = (6, 7, 8)
DEFAULT_SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation
MIN_SECRET_BITS = 80  # shorter secrets are refused unless allow_weak (RFC 4226 asks for 128)
MAX_PERIOD = 86400  # a TOTP step of one day at most
MAX_COUNTER = 2**64 - 1  # HOTP counters are 8 bytes
MAX_TIME = 2**63 - 1  # the latest unix time a code is computed for (the fob's limit too)

_pack_counter = struct.Struct(">Q").pack
_digest = hmac.digest
_B32_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


# -- secrets ---------------------------------------------------------------------------------
def decode_secret(text: str) -> bytes:
    """Decode a base32 secret: any case, with or without ``=`` padding, spaces and dashes.

    Raises :class:`InvalidInput` naming the problem (never echoing the secret).
    """
    if not isinstance(text, str):
        raise InvalidInput("secret must be a base32 string")
    cleaned = "".join(text.split()).replace("-", "").rstrip("=")
    if not cleaned:
        raise InvalidInput("secret is empty: give a base32 secret such as JBSWY3DPEHPK3PXP")
    # checked before upper-casing: str.upper() turns some non-ASCII letters into ASCII ones
    # ("ı" into "I", "ß" into "SS"), which would decode a secret nobody wrote
    bad = {c for c in cleaned if not c.isascii() or c.upper() not in _B32_CHARS}
    cleaned = cleaned.upper()
    if bad:
        raise InvalidInput(
            f"secret is not valid base32: it contains {len(bad)} character(s) outside A-Z and 2-7"
        )
    if len(cleaned) % 8 in (1, 3, 6):
        raise InvalidInput(f"secret is not valid base32: a length of {len(cleaned)} characters "
                           "cannot be decoded (it may be truncated)")
    try:
        key = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        raise InvalidInput("secret is not valid base32") from None
    if not key:
        raise InvalidInput("secret is empty after decoding")
    return key


def encode_secret(key: bytes) -> str:
    """Base32 without padding, as authenticator apps expect."""
    return base64.b32encode(key).decode().rstrip("=")


def check_strength(key: bytes, *, allow_weak: bool = False) -> bytes:
    """``key`` unless it is shorter than 80 bits and ``allow_weak`` is false.

    RFC 4226 asks for 128 bits and recommends 160; a short secret can be guessed offline
    from a few codes.
    """
    if len(key) * 8 < MIN_SECRET_BITS and not allow_weak:
        raise InvalidInput(f"the secret has only {len(key) * 8} bits; at least "
                           f"{MIN_SECRET_BITS} are needed (RFC 4226 asks for 128, recommends "
                           "160): use a longer one, or accept it with --allow-weak "
                           "(allow_weak=True)")
    return key


def check_time(at: float) -> float:
    """A unix time from 0 to 2^63-1 (NaN, infinities and negative times refused)."""
    if not isinstance(at, (int, float)) or isinstance(at, bool) or not math.isfinite(at) \
            or not 0 <= at <= MAX_TIME:
        raise InvalidInput(f"the time must be a unix time from 0 to {MAX_TIME} (seconds since "
                           "1970-01-01 UTC)")
    return at


def new_secret(nbytes: int = DEFAULT_SECRET_BYTES) -> bytes:
    """A fresh random secret from :mod:`secrets` (160 bits by default)."""
    if nbytes < 10:
        raise InvalidInput("secrets shorter than 80 bits are not allowed (RFC 4226)")
    return secrets.token_bytes(nbytes)


def _check_algorithm(algorithm: str, what: str = "unknown algorithm") -> str:
    name = algorithm.upper().replace("-", "")
    if name not in ALGORITHMS:  # (the value is not repeated: a garbled URI may put a secret here)
        raise InvalidInput(f"{what}: use SHA1, SHA256 or SHA512")
    return name


def _check_digits(digits: int) -> int:
    if digits not in DIGITS:
        raise InvalidInput(f"digits must be 6, 7 or 8, not {digits}")
    return digits


# -- generators ----------------------------------------------------------------------------
def hotp_code(key: bytes, counter: int, digits: int = 6, algorithm: str = "SHA1") -> str:
    """The RFC 4226 code for ``counter`` (dynamic truncation, zero-padded)."""
    d = _digest(key, _pack_counter(counter), ALGORITHMS[algorithm])
    o = d[-1] & 0x0F
    value = (int.from_bytes(d[o:o + 4], "big") & 0x7FFFFFFF) % 10**digits
    return str(value).zfill(digits)


@dataclass(frozen=True)
class _Generator:
    """What HOTP and TOTP share: a key, the digits and the algorithm, validated."""

    key: bytes = field(repr=False)  # never in a repr, a log line or a traceback
    digits: int = 6
    algorithm: str = "SHA1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithm", _check_algorithm(self.algorithm))
        _check_digits(self.digits)
        if not self.key:
            raise InvalidInput("secret is empty")

    @classmethod
    def from_secret(cls, secret: str, **kw: int | str) -> Self:
        return cls(decode_secret(secret), **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class HOTP(_Generator):
    """An RFC 4226 generator over ``key``."""

    counter: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.counter < 0:
            raise InvalidInput("counter must not be negative")

    def at(self, counter: int) -> str:
        """The code for ``counter``."""
        if counter < 0 or counter >= 2**64:
            raise InvalidInput("counter must be between 0 and 2^64-1")
        return hotp_code(self.key, counter, self.digits, self.algorithm)

    def params(self, issuer: str = "", account: str = "") -> OtpParams:
        return OtpParams("hotp", self.key, issuer, account, self.algorithm, self.digits,
                         counter=self.counter)


@dataclass(frozen=True)
class TOTP(_Generator):
    """An RFC 6238 generator over ``key`` with time steps of ``period`` seconds from ``t0``."""

    period: int = 30
    t0: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.period <= MAX_PERIOD:
            raise InvalidInput(f"period must be from 1 to {MAX_PERIOD} seconds")

    def timecode(self, at: float) -> int:
        """The time step containing unix time ``at`` (InvalidInput for NaN, inf, < 0...)."""
        return int((int(check_time(at)) - self.t0) // self.period)

    def at(self, at: float | None = None) -> str:
        """The code valid at unix time ``at`` (now by default)."""
        t = time.time() if at is None else at
        step = self.timecode(t)
        if step < 0:
            raise InvalidInput("time is before the TOTP epoch")
        return hotp_code(self.key, step, self.digits, self.algorithm)

    def now(self) -> str:
        return self.at(None)

    def remaining(self, at: float | None = None) -> float:
        """Seconds left in the current step."""
        t = time.time() if at is None else at
        return self.period - ((t - self.t0) % self.period)

    def params(self, issuer: str = "", account: str = "") -> OtpParams:
        return OtpParams("totp", self.key, issuer, account, self.algorithm, self.digits,
                         period=self.period)


# -- otpauth:// URIs -----------------------------------------------------------------------
@dataclass(frozen=True)
class OtpParams:
    """Everything an otpauth:// URI says about one account."""

    type: Literal["totp", "hotp"]
    secret: bytes = field(repr=False)
    issuer: str = ""
    account: str = ""
    algorithm: str = "SHA1"
    digits: int = 6
    period: int = 30
    counter: int = 0

    def generator(self) -> TOTP | HOTP:
        """A :class:`TOTP` or :class:`HOTP` for these parameters."""
        if self.type == "hotp":
            return HOTP(self.secret, self.digits, self.algorithm, self.counter)
        return TOTP(self.secret, self.digits, self.algorithm, self.period)

    @property
    def secret_b32(self) -> str:
        return encode_secret(self.secret)

    @property
    def label(self) -> str:
        return f"{self.issuer}:{self.account}" if self.issuer else self.account

    def to_uri(self) -> str:
        """The otpauth:// URI (Key Uri Format, as Google Authenticator and others read it).

        :class:`InvalidInput` if the issuer or account cannot be written unambiguously.
        """
        check_label(self.issuer, self.account)
        label = quote(self.label, safe="@:")
        q = [f"secret={self.secret_b32}"]
        if self.issuer:
            q.append(f"issuer={quote(self.issuer, safe='')}")
        q.append(f"algorithm={self.algorithm}")
        q.append(f"digits={self.digits}")
        if self.type == "totp":
            q.append(f"period={self.period}")
        else:
            q.append(f"counter={self.counter}")
        return f"otpauth://{self.type}/{label}?{'&'.join(q)}"

    def describe(self, *, show_secret: bool = False) -> dict[str, object]:
        """The fields as a dict (the secret only when asked)."""
        doc: dict[str, object] = {
            "type": self.type,
            "issuer": self.issuer,
            "account": self.account,
            "algorithm": self.algorithm,
            "digits": self.digits,
        }
        if self.type == "totp":
            doc["period"] = self.period
        else:
            doc["counter"] = self.counter
        doc["secret_bits"] = len(self.secret) * 8
        if show_secret:
            doc["secret"] = self.secret_b32
        return doc


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_KNOWN_PARAMS = ("secret", "issuer", "algorithm", "digits", "period", "counter")


def check_label(issuer: str, account: str) -> None:
    """:class:`InvalidInput` unless ``issuer:account`` reads back as the same two parts.

    The Key Uri Format splits the label at its colon, so neither part may hold one; the
    account must not be empty; control characters (a newline...) and lone surrogates (text
    decoded from bytes that are not UTF-8), which no URI can hold, are refused in both.
    Messages name the part, never its text (a garbled URI can put a secret there).
    """
    for what, text in (("issuer", issuer), ("account", account)):
        try:
            text.encode()
        except UnicodeEncodeError:
            raise InvalidInput(f"the {what} is not valid UTF-8 text") from None
        if _CONTROL.search(text):
            raise InvalidInput(f"the {what} contains a control character (a newline?)")
        if ":" in text:
            raise InvalidInput(f"the {what} contains ':', which separates issuer and "
                               "account in an otpauth:// label")
        if text != text.strip():
            raise InvalidInput(f"the {what} starts or ends with a space")
    if not account:
        raise InvalidInput("the account name is empty")


def _unquote_strict(text: str, what: str) -> str:
    if _BAD_ESCAPE.search(text):
        raise InvalidInput(f"otpauth URI: the {what} has a malformed %-escape")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise InvalidInput(f"otpauth URI: the {what} is not valid UTF-8 once %-decoded"
                           ) from None


def _unnamed(index: int, text: str) -> str:
    """How an error names the query field ``text`` that has no '=': by the parameter it
    starts with, else by its position; never by its text, which may hold the secret."""
    lower = text.lower()
    known = next((k for k in _KNOWN_PARAMS if lower.startswith(k)), None)
    where = f"the {known} parameter" if known else f"query parameter {index}"
    if "=" in text:  # an '=' written as %3D
        return f"otpauth URI: {where} has its '=' %-encoded (%3D); write it as '='"
    return f"otpauth URI: {where} has no '=' and so no value"


def _query(text: str) -> dict[str, str]:
    """The query's parameters, each at most once, strictly %-decoded."""
    out: dict[str, str] = {}
    for index, field_ in enumerate(text.split("&") if text else [], 1):
        if not field_:
            continue
        name, sep, value = field_.partition("=")
        name = _unquote_strict(name.replace("+", " "), "query")
        if not sep:
            raise InvalidInput(_unnamed(index, name))
        key = name.lower()
        if key in out:
            raise InvalidInput(f"otpauth URI: the {key} parameter appears more than once")
        value = _unquote_strict(value.replace("+", " "), f"{key} parameter")
        if _CONTROL.search(value):
            raise InvalidInput(f"otpauth URI: the {key} parameter contains a control "
                               "character")
        out[key] = value
    return out


def _int_param(query: dict[str, str], name: str, default: int | None, low: int,
               high: int) -> int | None:
    value = query.get(name)
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,25}", value):
        raise InvalidInput(f"otpauth URI: {name} must be a whole number")
    number = int(value)
    if not low <= number <= high:
        raise InvalidInput(f"otpauth URI: {name} must be from {low} to {high}")
    return number


def parse_uri(uri: str, *, allow_weak: bool = False) -> OtpParams:
    """Parse and validate an otpauth:// URI strictly; :class:`InvalidInput` names any problem.

    Refused: a parameter given twice, a malformed or non-UTF-8 %-escape, a control
    character, a label issuer that differs from the ``issuer`` parameter, an empty account,
    numbers out of range, and (unless ``allow_weak``) a secret under 80 bits. Messages name
    the parameter or part, never its value: a garbled URI can put the secret anywhere.
    """
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidInput("otpauth URI is empty")
    uri = uri.strip()
    if _CONTROL.search(uri):
        raise InvalidInput("otpauth URI contains a control character (a newline?)")
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise InvalidInput("not a valid URI") from None
    if parts.scheme.lower() != "otpauth":
        raise InvalidInput("scheme must be otpauth://" + (
            ", not another one" if parts.scheme else " (the text has none)"))
    kind = parts.netloc.lower()
    if kind not in ("totp", "hotp"):
        raise InvalidInput("otpauth URI type (after otpauth://) must be totp or hotp")
    if parts.fragment:
        raise InvalidInput("otpauth URI has a #fragment")
    query = _query(parts.query)
    if not query.get("secret"):
        raise InvalidInput("otpauth URI has no secret parameter")
    key = check_strength(decode_secret(query["secret"]), allow_weak=allow_weak)
    label = _unquote_strict(parts.path[1:] if parts.path.startswith("/") else parts.path,
                            "label")
    if _CONTROL.search(label):
        raise InvalidInput("otpauth URI: the label contains a control character (a newline?)")
    if ":" in label:
        label_issuer, account = label.split(":", 1)
        label_issuer = label_issuer.strip()
        account = account.lstrip()  # "Issuer: account" is allowed by the format
        if not label_issuer:
            raise InvalidInput("otpauth URI: the label's issuer (before ':') is empty")
    else:
        label_issuer, account = "", label
    if "issuer" in query:
        issuer = query["issuer"]
        if not issuer:
            raise InvalidInput("otpauth URI: the issuer parameter is empty (leave it out)")
        if label_issuer and label_issuer != issuer:
            raise InvalidInput("otpauth URI: the label's issuer (before ':') differs from "
                               "the issuer parameter")
    else:
        issuer = label_issuer
    check_label(issuer, account)
    algorithm = _check_algorithm(query.get("algorithm", "SHA1"),
                                 "otpauth URI: the algorithm parameter is not one hwtoken knows")
    digits = _int_param(query, "digits", 6, 6, 8)
    period = _int_param(query, "period", 30, 1, MAX_PERIOD)
    counter = _int_param(query, "counter", None, 0, MAX_COUNTER)
    if kind == "hotp" and counter is None:
        raise InvalidInput("otpauth URI: hotp needs a counter parameter")
    assert digits is not None and period is not None
    return OtpParams(kind, key, issuer, account, algorithm, digits, period,  # type: ignore[arg-type]
                     counter or 0)


def parse_secret_or_uri(value: str, *, hotp: bool = False, digits: int | None = None,
                        algorithm: str | None = None, period: int | None = None,
                        counter: int | None = None, allow_weak: bool = False) -> OtpParams:
    """A base32 secret or an otpauth:// URI, with explicit options overriding the URI's.

    A secret under 80 bits is refused unless ``allow_weak``.
    """
    if value.strip().lower().startswith("otpauth:"):
        params = parse_uri(value, allow_weak=allow_weak)
    else:
        params = OtpParams("hotp" if hotp or counter is not None else "totp",
                           check_strength(decode_secret(value), allow_weak=allow_weak))
    changes: dict[str, object] = {}
    if digits is not None:
        changes["digits"] = _check_digits(digits)
    if algorithm is not None:
        changes["algorithm"] = _check_algorithm(algorithm)
    if period is not None:
        if not 0 < period <= MAX_PERIOD:
            raise InvalidInput(f"period must be from 1 to {MAX_PERIOD} seconds")
        changes["period"] = period
    if counter is not None:
        if not 0 <= counter <= MAX_COUNTER:
            raise InvalidInput("counter must be from 0 to 2^64-1")
        changes["type"] = "hotp"
        changes["counter"] = counter
    return replace(params, **changes) if changes else params  # type: ignore[arg-type]


def code_report(params: OtpParams, at: float | None = None) -> dict[str, object]:
    """The code for ``params`` now (or at ``at``; HOTP: at its counter), with its context.

    What ``hwtoken otp code --json`` prints.
    """
    gen = params.generator()
    if isinstance(gen, HOTP):
        return {"type": "hotp", "code": gen.at(params.counter), "counter": params.counter}
    t = time.time() if at is None else check_time(at)
    return {"type": "totp", "code": gen.at(t), "time": t, "step": gen.timecode(t),
            "remaining": round(gen.remaining(t), 3)}


# -- replay store ----------------------------------------------------------------------------
class ReplayStore:
    """The last accepted TOTP step (or next HOTP counter) per secret, kept in a JSON file.

    Entries are keyed by a hash of the secret and its parameters, never the secret itself.
    The file is 0600 and rewritten atomically; a lock file next to it (``PATH.lock``,
    never followed if it is a symbolic link, and only used if it is the user's own)
    serialises concurrent verifiers, each waiting at most ``lock_timeout`` seconds.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 lock_timeout: float | None = None) -> None:
        self.path = Path(path)
        self.lock_timeout = lock_timeout

    @staticmethod
    def key_id(params: OtpParams) -> str:
        h = hashlib.sha256(b"hwtoken-replay-v1\0" + params.type.encode() + b"\0"
                           + params.algorithm.encode() + b"\0" + params.secret)
        return h.hexdigest()[:32]

    def _read(self) -> dict[str, int]:
        """The entries; :class:`InvalidInput` for a file that is not a replay store.

        Only a missing file is an empty store. An empty file, or JSON without the format
        and entries this class writes (``{"format": 1}``, ``{}``), fails closed: taking it
        for an empty store would accept every code used before, and overwrite the file.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise InvalidInput(f"cannot read replay state file {self.path}: "
                               f"{exc.strerror or exc}") from None
        if not raw.strip():
            raise InvalidInput(f"replay state file {self.path} is empty (a new store is a "
                               "file that does not exist yet; a truncated one must be "
                               "restored, or codes used before would be accepted again)")
        try:
            doc = json.loads(raw)
        except ValueError:  # also bytes that are not UTF-8
            raise InvalidInput(f"replay state file {self.path} is damaged (not JSON)") from None
        entries = doc.get("entries") if isinstance(doc, dict) and doc.get("format") == 1 \
            and not isinstance(doc.get("format"), bool) else None
        if not isinstance(entries, dict) or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_COUNTER + 1
                for v in entries.values()):
            raise InvalidInput(f"replay state file {self.path} is not a hwtoken replay state "
                               "file (expected {\"format\": 1, \"entries\": {id: step}})")
        return {str(k): int(v) for k, v in entries.items()}

    def check(self) -> None:
        """:class:`InvalidInput` now if the file cannot be read or is not a replay store."""
        self._read()

    def get(self, key_id: str) -> int | None:
        return self._read().get(key_id)

    def update(self, key_id: str, check: Callable[[int | None], int | None]) -> int | None:
        """Under the lock: ``check(previous) -> new value or None``; store a non-None result."""
        from hwtoken.fileio import FileLock, atomic_write

        try:
            with FileLock(self.path.with_name(self.path.name + ".lock"),
                          what=f"replay state file {self.path}", blocking=True,
                          timeout=self.lock_timeout):
                entries = self._read()
                new = check(entries.get(key_id))
                if new is not None:
                    entries[key_id] = int(new)
                    atomic_write(self.path, json.dumps({"format": 1, "entries": entries}))
                return new
        except OSError as exc:
            raise InvalidInput(f"cannot update replay state file {self.path}: "
                               f"{exc.strerror or exc}") from None


# -- verification ----------------------------------------------------------------------------
def _hmac_pads(key: bytes, algorithm: str) -> tuple[object, object]:
    """HMAC's keyed inner and outer hash states (RFC 2104), computed once per secret.

    Copying a precomputed state costs far less than ``hmac.digest`` re-deriving the pads
    on every call, which is what makes a ±1 window cheaper than three plain HMACs.
    """
    name = ALGORITHMS[algorithm]
    block = hashlib.new(name).block_size
    if len(key) > block:
        key = hashlib.new(name, key).digest()
    key = key.ljust(block, b"\0")
    inner = hashlib.new(name, bytes(b ^ 0x36 for b in key))
    outer = hashlib.new(name, bytes(b ^ 0x5C for b in key))
    return inner, outer


class Verifier:
    """Checks codes for one secret: a window, constant-time comparison, replay refusal.

    TOTP: codes from ``window`` steps before and after the current one are accepted.
    HOTP: codes for counters ``counter .. counter + window`` (look-ahead) are accepted and the
    counter resynchronises past the one that matched.

    A code (or an earlier step/counter) is accepted only once. Without a ``store`` that
    memory is this object's alone: a new Verifier, another process or a restart accepts
    the code again, so a validation server passes a :class:`ReplayStore`, which
    remembers across processes and restarts.
    """

    __slots__ = ("params", "window", "store", "_mod", "_digits", "_period", "_offsets",
                 "counter", "last_step", "_key_id", "_inner", "_outer")

    def __init__(self, params: OtpParams | TOTP | HOTP, *, window: int | None = None,
                 store: ReplayStore | None = None) -> None:
        if isinstance(params, (TOTP, HOTP)):
            params = params.params()
        self.params = params
        if window is None:
            window = 1 if params.type == "totp" else 10
        if window < 0 or window > 1000:
            raise InvalidInput("window must be between 0 and 1000")
        self.window = window
        self.store = store
        self._digits = params.digits
        self._mod = 10**params.digits
        self._period = params.period
        self._offsets = tuple(range(-window, window + 1))
        self.counter = params.counter
        #: the last TOTP step this object accepted (its own replay memory without a store)
        self.last_step: int | None = None
        self._key_id = ReplayStore.key_id(params) if store is not None else ""
        self._inner, self._outer = _hmac_pads(params.secret, params.algorithm)

    def _value(self, step: int) -> int:
        inner = self._inner.copy()  # type: ignore[attr-defined]
        inner.update(_pack_counter(step))
        outer = self._outer.copy()  # type: ignore[attr-defined]
        outer.update(inner.digest())
        d = outer.digest()
        o = d[-1] & 0x0F
        return (int.from_bytes(d[o:o + 4], "big") & 0x7FFFFFFF) % self._mod

    def _target(self, code: str | int) -> int:
        if isinstance(code, int):
            return code if 0 <= code < self._mod else -1
        code = code.strip().replace(" ", "")
        if len(code) != self._digits or not code.isdigit() or not code.isascii():
            return -1
        return int(code)

    def match_totp(self, code: str | int, at: float | None = None) -> int | None:
        """The time step ``code`` belongs to within the window, or None (no replay check)."""
        target = self._target(code).to_bytes(4, "big", signed=True)
        step = int((time.time() if at is None else check_time(at)) // self._period)
        found = None
        value = self._value
        equal = hmac.compare_digest
        for off in self._offsets:  # every step is computed: no early exit leaks which one
            s = step + off
            if s >= 0 and equal(value(s).to_bytes(4, "big"), target):
                found = s
        return found

    def verify(self, code: str | int, at: float | None = None) -> bool:
        """True if ``code`` is valid now (or at ``at``) and was not accepted before (by the
        store, or without one by this object)."""
        if self.params.type == "hotp":
            return self.verify_hotp(code) is not None
        return self.verify_totp(code, at) is not None

    def verify_totp(self, code: str | int, at: float | None = None) -> int | None:
        """Accept a TOTP code within the window; returns its time step, or None.

        The step is recorded and only a later step is accepted afterwards: in the store, or
        without one in this object (:attr:`last_step`).
        """
        step = self.match_totp(code, at)
        if step is None:
            return None
        if self.store is None:
            if self.last_step is not None and step <= self.last_step:
                return None
            self.last_step = step
            return step
        return self.store.update(self._key_id,
                                 lambda last: step if last is None or step > last else None)

    def verify_hotp(self, code: str | int) -> int | None:
        """Accept an HOTP code within the look-ahead window; returns the matched counter.

        The counter (and the store's, when there is one) moves past the matched value, so
        the same code is refused the second time.
        """
        target = self._target(code).to_bytes(4, "big", signed=True)

        def check(stored: int | None) -> int | None:
            start = self.counter if stored is None else max(stored, self.counter)
            found = None
            for c in range(start, min(start + self.window, MAX_COUNTER) + 1):
                if hmac.compare_digest(self._value(c).to_bytes(4, "big"), target) and found is None:
                    found = c
            return None if found is None else found + 1

        nxt = self.store.update(self._key_id, check) if self.store is not None else check(None)
        if nxt is None:
            return None
        self.counter = nxt
        return nxt - 1
