"""Hand the secrets to a validation server: PSKC (RFC 6030), privacyIDEA CSV, Yubico CSV.

Only records in state ``done`` are exported (a pending key is not verified yet). By
default an export takes the records no earlier export took (``exported_at`` is NULL) and
marks them afterwards; ``include_exported=True`` takes every done record again. The file
is written 0600 and atomically *before* records are marked, so a crash in between means
the next export repeats some keys -- never that a key is skipped.

Formats
-------
``pskc``
    RFC 6030 through python-pskc. One KeyPackage per key: device serial = the key's
    serial, manufacturer Yubico, key id ``SERIAL:SLOT`` (OTP slots) or ``SERIAL:NAME``
    (OATH). Algorithms: ``...:pskc:hotp`` (with Counter), ``...:pskc:totp`` (TimeInterval
    30), and for challenge-response ``urn:hwtoken:params:xml:ns:keyprov:pskc:hmac-sha1``.
    Optionally encrypted (AES-CBC + HMAC-SHA1 MAC) under a pre-shared key (AES-128/192/256
    after its length) or a key derived from a password with PBKDF2 (AES-128).
``csv`` (privacyIDEA "import tokens", OATH CSV)
    ``serial, key, type, otplen, counter|timestep`` -- key in hex; HOTP rows carry the
    counter the key is at, TOTP rows the 30 s time step. Token serials follow
    privacyIDEA's names for YubiKeys: ``UBOM<serial>_<slot>`` for an OATH-HOTP slot,
    ``UBOA<serial>`` for a credential on the OATH applet. privacyIDEA's CSV has no
    challenge-response type, so chalresp records are left out (use pskc for them).
``yubico-csv`` (the YubiKey Personalization Tool's "Yubico format" log line)
    ``serial,publicId,movingFactorSeed|0,secretKey(hex),accessCode,timestamp,`` -- OTP
    slots only, exactly as the tool writes them: an OATH-HOTP row carries the *initial*
    moving factor the slot was programmed with (always 0 here), a challenge-response row
    ``,0,``. (privacyIDEA's "Yubikey CSV" import takes a row whose third field is ``0``
    as OATH-HOTP and any other number as Yubico OTP, so the current counter must not go
    there; a validation server finds the key's next code within its look-ahead window.)
    OATH-applet records are left out.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from hwtoken.errors import InvalidInput
from hwtoken.fileio import atomic_write
from hwtoken.provision.inventory import Inventory
from hwtoken.provision.model import HOTP_IMF, OATH_PERIOD, Mode, Record, State

FORMATS = ("pskc", "csv", "yubico-csv")
PSKC_HOTP = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
PSKC_TOTP = "urn:ietf:params:xml:ns:keyprov:pskc:totp"
PSKC_CHALRESP = "urn:hwtoken:params:xml:ns:keyprov:pskc:hmac-sha1"

SecretOf = Callable[[Record], bytes]


@dataclass
class ExportResult:
    """What an export wrote and what it left out (and why)."""

    path: str
    format: str
    exported: list[int] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    encrypted: bool = False

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "format": self.format, "count": len(self.exported),
                "serials": self.exported, "encrypted": self.encrypted,
                "skipped": {str(k): v for k, v in self.skipped.items()}}


def privacyidea_serial(rec: Record) -> str:
    """The token serial a validation server sees for this record."""
    if rec.mode.uses_slot:
        prefix = "UBOM" if rec.mode is Mode.HOTP else "UBCR"
        return f"{prefix}{rec.serial}_{rec.slot}"
    return f"UBOA{rec.serial}"


def render_pskc(records: list[Record], secret_of: SecretOf, *, password: str | None = None,
                preshared_key: bytes | None = None) -> bytes:
    """A PSKC document for ``records`` (encrypted if a password or pre-shared key is given)."""
    import pskc

    doc = pskc.PSKC()
    for rec in records:
        kw: dict[str, object] = {
            "serial": str(rec.serial), "manufacturer": "Yubico",
            "id": f"{rec.serial}:{rec.slot if rec.mode.uses_slot else rec.name}",
            "secret": secret_of(rec), "response_length": rec.digits,
            "response_encoding": "DECIMAL", "friendly_name": privacyidea_serial(rec),
        }
        if rec.mode.is_hotp:
            kw.update(algorithm=PSKC_HOTP, counter=rec.counter)
        elif rec.mode is Mode.OATH_TOTP:
            kw.update(algorithm=PSKC_TOTP, time_interval=OATH_PERIOD, time_offset=0)
        else:
            kw.update(algorithm=PSKC_CHALRESP, response_length=20,
                      response_encoding="HEXADECIMAL", challenge_encoding="HEXADECIMAL",
                      challenge_min_length=1, challenge_max_length=64)
        doc.add_key(**kw)  # type: ignore[arg-type]
    if password is not None and preshared_key is not None:
        raise InvalidInput("encrypt the PSKC file with a password or a pre-shared key, not both")
    if password is not None:
        if not password:
            raise InvalidInput("the PSKC password must not be empty")
        doc.encryption.setup_pbkdf2(password, iterations=100_000)
    elif preshared_key is not None:
        if len(preshared_key) not in (16, 24, 32):
            raise InvalidInput("the PSKC pre-shared key must be 16, 24 or 32 bytes")
        # python-pskc defaults to AES-128-CBC: name the AES variant that fits the key
        algorithm = f"aes{len(preshared_key) * 8}-cbc"
        doc.encryption.setup_preshared_key(key=preshared_key, key_name="hwtoken-psk",
                                           algorithm=algorithm)
    out = io.BytesIO()
    doc.write(out)
    return out.getvalue()


def render_privacyidea_csv(records: list[Record], secret_of: SecretOf,
                           skipped: dict[int, str]) -> tuple[str, list[int]]:
    lines, taken = [], []
    for rec in records:
        if rec.mode is Mode.CHALRESP:
            skipped[rec.serial] = "privacyIDEA's CSV has no challenge-response type (use pskc)"
            continue
        key = secret_of(rec).hex()
        if rec.mode.is_hotp:
            lines.append(f"{privacyidea_serial(rec)}, {key}, hotp, {rec.digits}, {rec.counter}")
        else:
            lines.append(f"{privacyidea_serial(rec)}, {key}, totp, {rec.digits}, {OATH_PERIOD}")
        taken.append(rec.serial)
    return "".join(line + "\n" for line in lines), taken


def render_yubico_csv(records: list[Record], secret_of: SecretOf,
                      skipped: dict[int, str]) -> tuple[str, list[int]]:
    lines, taken = [], []
    for rec in records:
        if not rec.mode.uses_slot:
            skipped[rec.serial] = "the Yubico format covers OTP slots only (use pskc or csv)"
            continue
        stamp = datetime.fromtimestamp(rec.programmed_at or rec.updated_at or time.time())
        # the tool logs the moving factor *seed* (the slot's initial counter), not the
        # counter now; the programmers always program HOTP_IMF
        factor = HOTP_IMF if rec.mode is Mode.HOTP else 0
        lines.append(f"{rec.serial},,{factor},{secret_of(rec).hex()},,"
                     f"{stamp.strftime('%Y-%m-%dT%H:%M:%S')},")
        taken.append(rec.serial)
    return "".join(line + "\n" for line in lines), taken


def export(inventory: Inventory, fmt: str, out: str, *, include_exported: bool = False,
           password: str | None = None, preshared_key: bytes | None = None,
           force: bool = False) -> ExportResult:
    """Write the done records to ``out`` in ``fmt`` (0600, atomic) and mark them exported."""
    from pathlib import Path

    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    if fmt != "pskc" and (password is not None or preshared_key is not None):
        raise InvalidInput("only the pskc format can be encrypted")
    path = Path(out)
    if path.exists() and not force:
        raise InvalidInput(f"{path} exists; choose another file or pass --force")
    records = inventory.records(states=[State.DONE], unexported=not include_exported)
    result = ExportResult(str(path), fmt, encrypted=password is not None
                          or preshared_key is not None)
    if fmt == "pskc":
        data: bytes | str = render_pskc(records, inventory.secret, password=password,
                                        preshared_key=preshared_key)
        result.exported = [r.serial for r in records]
    elif fmt == "csv":
        data, result.exported = render_privacyidea_csv(records, inventory.secret, result.skipped)
    else:
        data, result.exported = render_yubico_csv(records, inventory.secret, result.skipped)
    try:
        atomic_write(path, data)
    except OSError as exc:  # no such directory, read-only, not allowed: nothing is marked
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None
    # only the secrets that went into the file: a key reprogrammed meanwhile (by another
    # station) keeps its new secret for the next export
    inventory.mark_exported(result.exported, sealed={r.serial: r.sealed for r in records})
    return result
