"""Hand the secrets to a validation server: PSKC (RFC 6030), OATH CSV, Yubico CSV, and the
challenge-response secrets apart.

Targets
-------
An export is written *for* a consumer (``target``):

``generic``
    RFC 6030 and the CSV layouts as any consumer reads them. Every format, any AES key size
    for a PSKC pre-shared key, challenge-response keys in PSKC under hwtoken's algorithm URI.
``privacyidea`` / ``linotp``
    Only what that server imports: ``pskc`` (AES-128-CBC only; a PSKC DeviceInfo SerialNo is
    the token serial, which is where both servers take it from) and ``csv``. Keys the server
    has no token type for (challenge-response) are left out with the reason.

Token serials (:func:`token_serial`) are the same in every format and target:
``UBOM<serial>_<slot>`` for an OATH-HOTP slot and ``UBAM<serial>_<slot>`` for a Yubico OTP
slot (privacyIDEA's own names for them), ``UBOA<serial>_<name>`` for a credential on the
OATH applet, ``UBCR<serial>_<slot>`` for a challenge-response slot (files that are not for
a server only).

Formats
-------
``pskc``
    RFC 6030 through python-pskc, one KeyPackage per key: DeviceInfo Manufacturer Yubico
    and SerialNo (the key's serial for ``generic``, the token serial for a server); Key Id
    ``SERIAL:SLOT`` (OTP slots; privacyIDEA turns it into ``UBOM<serial>_<slot>``, or
    ``UBAM...`` for Yubico OTP) or ``SERIAL:oath:NAME`` (OATH applet); FriendlyName the
    token serial; Suite ``SHA1``; HOTP Counter (the next one), TOTP TimeInterval 30.
    Challenge-response (``generic`` only):
    ``urn:hwtoken:params:xml:ns:keyprov:pskc:hmac-sha1``. Yubico OTP as Yubico writes it:
    ``http://www.yubico.com/#yubikey-aes``, the AES key as the secret, ResponseFormat
    ALPHANUMERIC of the OTP's length, UserId ``CN=<public ID>, UID=<private ID>``.
    Optionally encrypted (AES-CBC + HMAC-SHA1 MAC) under a pre-shared key or a PBKDF2
    password key (AES-128).
``csv`` (the OATH CSV that privacyIDEA and LinOTP import)
    ``serial, key, type, otplen, counter|timestep`` -- key in hex; a ``hotp`` row carries
    the counter the key is at (LinOTP ignores it and searches its window), a ``totp`` row
    the 30 s time step; a Yubico OTP slot is a ``yubikey`` row with the AES key and the
    OTP length (privacyIDEA's yubikey token). No challenge-response type.
``yubico-csv`` (``generic`` only: the YubiKey Personalization Tool's "Yubico format")
    ``serial,publicId,privateId|movingFactorSeed|0,secretKey(hex),accessCode,timestamp,``
    -- OTP slots only, exactly as the tool (and ``ykman otp yubiotp --config-output``)
    writes them (a challenge-response row ``,0,``; the access code the slot was left
    with). A server's "Yubikey CSV" import reads every ``,0,`` row as a 6-digit HOTP token
    named ``UBOM<serial>_X`` (no slot, no code length), so it is refused for a server
    target.
``access-codes`` (``generic`` only: for the admin, never a server)
    a ``#`` header line, then ``serial,slot,accessCode(hex),state`` for every record that
    left an access code on its slot (pending ones too: the key may carry it already).
    It records no export state.
``chalresp-csv`` (``generic`` only: challenge-response slots and nothing else)
    a ``#`` header line, then ``serial,slot,key(hex),touch`` -- what it takes to program a
    spare key with the same secret or to compute a response without the key (KeePassXC,
    pam_yubico's challenge files, LUKS).
``pin-mailer`` (``generic`` only: PIV and FIDO2 records, for a print-and-seal mailer)
    per record the PIN the user gets and, for PIV, the PUK: CSV
    (``serial,application,place,pin,puk`` after a header line) or, for an ``--out``
    ending in ``.json``, a JSON list of objects with those keys. The management key stays
    in the inventory.
``certificates`` (``generic`` only: PIV records)
    the certificate each slot holds, as a PEM bundle at ``--out``, and next to it (the
    same name ending in ``.csv``) ``serial,slot,subject,certificate serial(hex),sha256``
    after a header line.

Export state
------------
Only records in state ``done`` are exported. An export takes the keys whose *current*
secret no earlier export of the same target and format wrote (the inventory keeps that
per ``TARGET:FORMAT``), and records them afterwards; ``include_exported=True`` takes
every done key again. The file is written 0600 and atomically *before* the keys are
recorded, so a crash in between means the next export repeats some keys -- never that a
key is skipped. An export that would write no key writes no file
(:class:`NothingToExport`, exit 1).
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from hwtoken.errors import CheckFailed, InvalidInput
from hwtoken.fileio import atomic_write
from hwtoken.provision import yubiotp
from hwtoken.provision.inventory import Inventory
from hwtoken.provision.model import HOTP_IMF, OATH_PERIOD, Mode, Record, RecordKey, State

TARGETS = ("generic", "privacyidea", "linotp")
FORMATS = ("pskc", "csv", "yubico-csv", "chalresp-csv", "access-codes", "pin-mailer",
           "certificates")
#: formats for the admin (never a server), of the PIV and FIDO2 records
ADMIN_FORMATS = {"pin-mailer": ("piv", "fido"), "certificates": ("piv",)}
#: the formats each target takes (a server's: what it imports whole)
TARGET_FORMATS = {"generic": FORMATS, "privacyidea": ("pskc", "csv"), "linotp": ("pskc", "csv")}
SERVER_NAMES = {"privacyidea": "privacyIDEA", "linotp": "LinOTP"}

PSKC_HOTP = "urn:ietf:params:xml:ns:keyprov:pskc:hotp"
PSKC_TOTP = "urn:ietf:params:xml:ns:keyprov:pskc:totp"
PSKC_CHALRESP = "urn:hwtoken:params:xml:ns:keyprov:pskc:hmac-sha1"
PSKC_YUBIKEY_AES = "http://www.yubico.com/#yubikey-aes"  # Yubico's own, which privacyIDEA reads
PSKC_SUITE = "SHA1"  # RFC 6030's example for an HMAC-based algorithm; both servers read it
SERVER_PSK_LENGTH = 16  # privacyIDEA and LinOTP decrypt AES-128-CBC only

#: privacyIDEA's token serials: these characters (its ALLOWED_SERIAL), at most 40 of them
SERIAL_NAME = re.compile(r"[0-9A-Za-z_-]+")
SERIAL_MAX = 40

CHALRESP_CSV_HEADER = "# hwtoken challenge-response keys: serial,slot,key(hex),touch"
ACCESS_CODES_HEADER = "# hwtoken access codes: serial,slot,access code(hex),state"
PIN_MAILER_HEADER = "# hwtoken PIN mailer: serial,application,place,pin,puk"
CERTIFICATES_HEADER = "# hwtoken certificates: serial,slot,subject,certificate serial,sha256"

SecretOf = Callable[[Record], bytes]
CodeOf = Callable[[Record], "bytes | None"]


class NothingToExport(CheckFailed):
    """The export would write no key: no file is written (exit 1)."""


@dataclass
class ExportResult:
    """What an export wrote and what it left out (and why), per record."""

    path: str
    format: str
    target: str = "generic"
    exported: list[RecordKey] = field(default_factory=list)
    skipped: dict[RecordKey, str] = field(default_factory=dict)
    encrypted: bool = False
    also: list[str] = field(default_factory=list)  # files written next to ``path``

    @property
    def serials(self) -> list[int]:
        """The keys written, in order (a key with several records once)."""
        return list(dict.fromkeys(k.serial for k in self.exported))

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "format": self.format, "target": self.target,
                "count": len(self.exported),
                "serials": self.serials,
                "records": [k.label for k in self.exported],
                "encrypted": self.encrypted, "files": [self.path, *self.also],
                "skipped": {k.label: v for k, v in self.skipped.items()}}


def export_kind(target: str, fmt: str) -> str:
    """What "already exported" is kept per: ``TARGET:FORMAT``."""
    return f"{target}:{fmt}"


def token_serial(rec: Record) -> str:
    """The token serial a validation server gets for this key, the same in every format.

    An OATH credential name that privacyIDEA's serials cannot hold verbatim (characters
    other than letters, digits, ``-`` and ``_``, or too long) is replaced by ``h`` and
    12 hex digits of its SHA-256: still one serial per credential, in every format.
    """
    if rec.mode is Mode.HOTP:
        return f"UBOM{rec.serial}_{rec.slot}"
    if rec.mode is Mode.YUBIOTP:
        return f"UBAM{rec.serial}_{rec.slot}"
    if rec.mode is Mode.CHALRESP:
        return f"UBCR{rec.serial}_{rec.slot}"
    base = f"UBOA{rec.serial}_"
    if SERIAL_NAME.fullmatch(rec.name) and len(base) + len(rec.name) <= SERIAL_MAX:
        return base + rec.name
    return base + "h" + hashlib.sha256(rec.name.encode()).hexdigest()[:12]


def pskc_key_id(rec: Record) -> str:
    """``SERIAL:SLOT`` for an OTP slot; ``SERIAL:oath:NAME`` for an OATH credential (a
    numeric name must not read as a slot: privacyIDEA names any HOTP key whose Id starts
    with ``digits:digits`` ``UBOM<serial>_<slot>``)."""
    if rec.mode.uses_slot:
        return f"{rec.serial}:{rec.slot}"
    return f"{rec.serial}:oath:{rec.name}"


def otp_length(rec: Record) -> int:
    """What a key types: the code's digits, or a Yubico OTP's public ID and 32 characters."""
    if rec.mode is Mode.YUBIOTP:
        return len(rec.params.get("public_id", "")) + 32
    return rec.digits


def unsupported(rec: Record, target: str, fmt: str, *, encrypted: bool = False) -> str | None:
    """Why ``rec`` cannot go into this export, or None if it can."""
    if fmt in ADMIN_FORMATS:
        takes = ADMIN_FORMATS[fmt]
        return None if rec.application in takes else (
            f"{fmt} holds {' and '.join(a.upper() for a in takes)} records only")
    if rec.application in ("piv", "fido"):
        return (f"a {rec.mode.value} record holds a PIN for the user, not a secret for a "
                "validation server: export it with --format pin-mailer"
                + (" (and its certificate with --format certificates)"
                   if rec.application == "piv" else ""))
    if fmt == "chalresp-csv":
        return None if rec.mode is Mode.CHALRESP else (
            "chalresp-csv holds challenge-response slots only (use pskc or csv)")
    if rec.mode is Mode.CHALRESP and target in SERVER_NAMES:
        return (f"{SERVER_NAMES[target]} has no token type that checks HMAC-SHA1 "
                "challenge-response: export these keys with --for generic --format chalresp-csv")
    if rec.mode is Mode.CHALRESP and fmt == "csv":
        return ("the OATH CSV has no challenge-response type: export these keys with "
                "--format chalresp-csv")
    if rec.mode is Mode.YUBIOTP and target == "linotp":
        return ("hwtoken writes no Yubico OTP file for LinOTP: export these keys with "
                "--for generic --format yubico-csv")
    if rec.mode is Mode.YUBIOTP and target == "privacyidea" and fmt == "pskc" and encrypted:
        return ("privacyIDEA reads an encrypted Yubico OTP key from PSKC as text, which breaks "
                "it: export these keys unencrypted (--format csv, or pskc without encryption)")
    if fmt == "yubico-csv" and not rec.mode.uses_slot:
        return "the Yubico format covers OTP slots only (use pskc or csv)"
    return None


def render_pskc(records: list[Record], secret_of: SecretOf, *, target: str = "generic",
                password: str | None = None, preshared_key: bytes | None = None) -> bytes:
    """A PSKC document for ``records`` (encrypted if a password or pre-shared key is given)."""
    import pskc

    doc = pskc.PSKC()
    for rec in records:
        secret = secret_of(rec)
        kw: dict[str, object] = {
            "serial": token_serial(rec) if target in SERVER_NAMES else str(rec.serial),
            "manufacturer": "Yubico", "id": pskc_key_id(rec), "secret": secret,
            "response_length": rec.digits, "response_encoding": "DECIMAL",
            "friendly_name": token_serial(rec), "algorithm_suite": PSKC_SUITE,
        }
        if rec.mode.is_hotp:
            kw.update(algorithm=PSKC_HOTP, counter=rec.counter)
        elif rec.mode is Mode.OATH_TOTP:
            kw.update(algorithm=PSKC_TOTP, time_interval=OATH_PERIOD, time_offset=0)
        elif rec.mode is Mode.YUBIOTP:
            del kw["algorithm_suite"]
            kw.update(algorithm=PSKC_YUBIKEY_AES, secret=secret[yubiotp.PRIVATE_ID_SIZE:],
                      response_length=otp_length(rec), response_encoding="ALPHANUMERIC",
                      key_userid=f"CN={rec.params['public_id']}, "
                                 f"UID={secret[:yubiotp.PRIVATE_ID_SIZE].hex()}")
        else:
            kw.update(algorithm=PSKC_CHALRESP, response_length=20,
                      response_encoding="HEXADECIMAL", challenge_encoding="HEXADECIMAL",
                      challenge_min_length=1, challenge_max_length=64)
        doc.add_key(**kw)  # type: ignore[arg-type]
    if password is not None:
        doc.encryption.setup_pbkdf2(password, iterations=100_000, algorithm="aes128-cbc")
    elif preshared_key is not None:
        # python-pskc defaults to AES-128-CBC: name the AES variant that fits the key
        doc.encryption.setup_preshared_key(key=preshared_key, key_name="hwtoken-psk",
                                           algorithm=f"aes{len(preshared_key) * 8}-cbc")
    out = io.BytesIO()
    doc.write(out)
    return out.getvalue()


def render_oath_csv(records: list[Record], secret_of: SecretOf) -> str:
    """The OATH CSV: ``serial, key, type, otplen, counter|timestep`` per key (a Yubico
    OTP slot: ``serial, AES key, yubikey, otplen``)."""
    lines = []
    for rec in records:
        if rec.mode is Mode.YUBIOTP:
            key = secret_of(rec)[yubiotp.PRIVATE_ID_SIZE:]
            lines.append(f"{token_serial(rec)}, {key.hex()}, yubikey, {otp_length(rec)}")
            continue
        kind, last = ("hotp", rec.counter) if rec.mode.is_hotp else ("totp", OATH_PERIOD)
        lines.append(f"{token_serial(rec)}, {secret_of(rec).hex()}, {kind}, {rec.digits}, {last}")
    return "".join(line + "\n" for line in lines)


def render_yubico_csv(records: list[Record], secret_of: SecretOf,
                      code_of: CodeOf = lambda rec: None) -> str:
    """The Personalization Tool's Yubico-format log line per OTP slot."""
    lines = []
    for rec in records:
        stamp = datetime.fromtimestamp(rec.programmed_at or rec.updated_at or time.time())
        secret = secret_of(rec)
        code = code_of(rec)
        access = code.hex() if code and any(code) else ""
        if rec.mode is Mode.YUBIOTP:
            public, private = rec.params["public_id"], secret[:yubiotp.PRIVATE_ID_SIZE].hex()
            secret = secret[yubiotp.PRIVATE_ID_SIZE:]
        else:
            # the tool logs the moving factor *seed* (the slot's initial counter), not the
            # counter now; the programmers always program HOTP_IMF
            public, private = "", str(HOTP_IMF if rec.mode is Mode.HOTP else 0)
        lines.append(f"{rec.serial},{public},{private},{secret.hex()},{access},"
                     f"{stamp.isoformat(timespec='seconds')},")
    return "".join(line + "\n" for line in lines)


def render_chalresp_csv(records: list[Record], secret_of: SecretOf) -> str:
    """Challenge-response slots: ``serial,slot,key(hex),touch`` after a header line."""
    lines = [CHALRESP_CSV_HEADER]
    lines += [f"{rec.serial},{rec.slot},{secret_of(rec).hex()},{int(rec.touch)}"
              for rec in records]
    return "".join(line + "\n" for line in lines)


def render_access_codes(records: list[Record], code_of: CodeOf) -> str:
    """``serial,slot,access code(hex),state`` after a header line, per record with a code."""
    lines = [ACCESS_CODES_HEADER]
    for rec in records:
        code = code_of(rec)
        if code is not None:
            lines.append(f"{rec.serial},{rec.slot},{code.hex()},{rec.state.value}")
    return "".join(line + "\n" for line in lines)


def render_pin_mailer(records: list[Record], secret_of: SecretOf, *, as_json: bool) -> str:
    """What each user gets: the PIN (and, for PIV, the PUK) of each record."""
    import csv
    import json

    from hwtoken.provision.piv import PivCredentials

    rows = []
    for rec in records:
        secret = secret_of(rec)
        if rec.application == "piv":
            creds = PivCredentials.unpack(secret)
            pin, puk = creds.pin, creds.puk
        else:
            pin, puk = secret.decode("ascii"), ""
        rows.append({"serial": rec.serial, "application": rec.application,
                     "place": rec.target, "pin": pin, "puk": puk})
    if as_json:
        return json.dumps(rows, indent=2) + "\n"
    out = io.StringIO()
    out.write(PIN_MAILER_HEADER + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow(row.values())
    return out.getvalue()


def render_certificates(records: list[Record], certificate_of: Callable[[Record], str]
                        ) -> tuple[str, str]:
    """The PEM bundle and the CSV of the certificates ``records``' slots hold."""
    import csv

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    pems, out = [], io.StringIO()
    out.write(CERTIFICATES_HEADER + "\n")
    writer = csv.writer(out, lineterminator="\n")
    for rec in records:
        pem = certificate_of(rec)
        cert = x509.load_pem_x509_certificate(pem.encode())
        pems.append(pem if pem.endswith("\n") else pem + "\n")
        writer.writerow([rec.serial, rec.target, cert.subject.rfc4514_string(),
                         f"{cert.serial_number:x}", cert.fingerprint(hashes.SHA256()).hex()])
    return "".join(pems), out.getvalue()


def certificates_csv_path(path: Path) -> Path:
    """Where ``--format certificates`` puts its CSV: ``--out`` ending in ``.csv``."""
    return path.with_suffix(".csv")


def check_options(target: str, fmt: str, *, password: str | None = None,
                  preshared_key: bytes | None = None) -> None:
    """Refuse a combination the target cannot import (before anything is read or written)."""
    if target not in TARGETS:
        raise InvalidInput(f"unknown export target {target!r}: use one of {', '.join(TARGETS)}")
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
    server = SERVER_NAMES.get(target)
    if server and fmt == "yubico-csv":
        raise InvalidInput(f"{server}'s Yubikey CSV import names every key UBOM<serial>_X "
                           "(no slot) and reads it as a 6-digit HOTP token (an 8-digit or "
                           f"challenge-response slot never validates): for {server} export "
                           "--format csv or --format pskc")
    if server and fmt == "access-codes":
        raise InvalidInput("access codes are for the admin, never for a validation server: "
                           "export them with --for generic --format access-codes")
    if server and fmt in ADMIN_FORMATS:
        raise InvalidInput(f"--format {fmt} is for the admin, never for a validation "
                           f"server: export it with --for generic --format {fmt}")
    if server and fmt not in TARGET_FORMATS[target]:
        raise InvalidInput(f"{fmt} is not a format {server} imports; it is for the programs "
                           "that use challenge-response keys: export it with --for generic")
    if fmt != "pskc" and (password is not None or preshared_key is not None):
        raise InvalidInput("only the pskc format can be encrypted")
    if password is not None and preshared_key is not None:
        raise InvalidInput("encrypt the PSKC file with a password or a pre-shared key, not both")
    if password is not None:
        if not password:
            raise InvalidInput("the PSKC password must not be empty")
        if target == "linotp" and not (6 <= len(password) <= 64 and password.isascii()):
            raise InvalidInput("LinOTP takes a PSKC password of 6 to 64 ASCII characters")
    if preshared_key is not None:
        if len(preshared_key) not in (16, 24, 32):
            raise InvalidInput("the PSKC pre-shared key must be 16, 24 or 32 bytes")
        if server and len(preshared_key) != SERVER_PSK_LENGTH:
            raise InvalidInput(
                f"{server} imports PSKC files encrypted with AES-128 only, so the pre-shared "
                f"key must be 16 bytes (32 hex digits), not {len(preshared_key)}: make one "
                "with `(umask 077; openssl rand -hex 16 > psk.hex)`")


def export(inventory: Inventory, fmt: str, out: str, *, target: str = "generic",
           include_exported: bool = False, password: str | None = None,
           preshared_key: bytes | None = None, force: bool = False) -> ExportResult:
    """Write the done records that this export takes to ``out`` (0600, atomic), then record
    them as exported for ``TARGET:FORMAT``.

    Records the format or target cannot carry are left out and listed in ``skipped`` with
    the reason. Raises :class:`NothingToExport` (and writes nothing) if none is left.
    ``access-codes`` writes the access codes of every record that has one and records
    nothing.
    """
    check_options(target, fmt, password=password, preshared_key=preshared_key)
    path = Path(out)
    also = [certificates_csv_path(path)] if fmt == "certificates" else []
    if also and also[0] == path:
        raise InvalidInput(f"--out names the PEM bundle of --format certificates; its CSV "
                           f"goes next to it ({path.stem}.csv): give --out {path.stem}.pem")
    for each in (path, *also):
        if each.exists() and not force:
            raise InvalidInput(f"{each} exists; choose another file or pass --force")
    result = ExportResult(str(path), fmt, target,
                          encrypted=password is not None or preshared_key is not None)
    if fmt == "access-codes":
        coded = [r for r in inventory.records() if r.access_code is not None]
        if not coded:
            raise NothingToExport("no record in the inventory left an access code on its "
                                  "slot (`run --new-access-code`); no file written")
        _write(path, render_access_codes(coded, inventory.access_code))
        result.exported = [r.key for r in coded]
        return result
    kind = export_kind(target, fmt)
    selected = inventory.records(states=[State.DONE],
                                 not_exported_as=None if include_exported else kind)
    taken = []
    for rec in selected:
        reason = unsupported(rec, target, fmt, encrypted=result.encrypted)
        if reason is None:
            taken.append(rec)
        else:
            result.skipped[rec.key] = reason
    if not taken:
        raise NothingToExport(_nothing_message(selected, result, target, fmt, include_exported))
    if fmt == "pskc":
        data: bytes | str = render_pskc(taken, inventory.secret, target=target,
                                        password=password, preshared_key=preshared_key)
    elif fmt == "csv":
        data = render_oath_csv(taken, inventory.secret)
    elif fmt == "yubico-csv":
        data = render_yubico_csv(taken, inventory.secret, inventory.access_code)
    elif fmt == "pin-mailer":
        data = render_pin_mailer(taken, inventory.secret, as_json=path.suffix == ".json")
    elif fmt == "certificates":
        data, table = render_certificates(taken, lambda rec: _certificate(inventory, rec))
        _write(also[0], table)
        result.also = [str(also[0])]
    else:
        data = render_chalresp_csv(taken, inventory.secret)
    _write(path, data)
    result.exported = [r.key for r in taken]
    # the secrets that went into the file: a key reprogrammed meanwhile (by another
    # station) keeps its new secret due for the next export
    inventory.mark_exported({r.key: r.sealed for r in taken}, kind)
    return result


def _certificate(inventory: Inventory, rec: Record) -> str:
    """The certificate (PEM) a done PIV record's slot holds: the last one its journal
    recorded for the record's current secret."""
    notes = [n for n in inventory.notes(rec.key) if n.current and n.kind == "certificate"]
    if not notes:
        raise CheckFailed(f"{rec.key.label} is done but its journal holds no certificate")
    return notes[-1].value


def _write(path: Path, data: bytes | str) -> None:
    try:
        atomic_write(path, data)
    except OSError as exc:  # no such directory, read-only, not allowed: nothing is recorded
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from None


def _nothing_message(selected: list[Record], result: ExportResult, target: str, fmt: str,
                     include_exported: bool) -> str:
    if selected:
        reasons = "; ".join(sorted(set(result.skipped.values())))
        return (f"none of the {len(selected)} done record(s) can go into this export "
                f"({reasons}); no file written")
    if include_exported:
        return "the inventory has no done key; no file written"
    return (f"no done key that an earlier --for {target} --format {fmt} export has not "
            "written already; no file written (--all writes them again)")
