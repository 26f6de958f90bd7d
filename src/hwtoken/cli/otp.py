"""``hwtoken otp``: secrets, codes, verification, otpauth:// URIs, paper keys."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from hwtoken import otp as otplib
from hwtoken.cli.common import (
    SECRET,
    UNIX_TIME,
    HwtokenGroup,
    allow_weak_option,
    emit_json,
    json_option,
    read_secret_input,
)
from hwtoken.errors import CheckFailed, InvalidInput

ALGO_CHOICE = click.Choice(["SHA1", "SHA256", "SHA512"], case_sensitive=False)
COUNTER = click.IntRange(0, otplib.MAX_COUNTER)
PERIOD = click.IntRange(1, otplib.MAX_PERIOD)


@click.group(cls=HwtokenGroup)
def otp() -> None:
    """TOTP/HOTP secrets, codes, verification and otpauth:// URIs.

    SECRET_OR_URI is - to read a base32 secret (any case, spaces and padding allowed) or an
    otpauth:// URI from stdin, which keeps it out of `ps` and your shell history; given on
    the command line it is accepted with a warning. Secrets under 80 bits are refused
    unless --allow-weak.
    """


def _params(value: str, **kw: object) -> otplib.OtpParams:
    return otplib.parse_secret_or_uri(read_secret_input(value), **kw)  # type: ignore[arg-type]


@otp.command("new")
@click.option("--issuer", default="hwtoken", show_default=True, help="Service name shown in apps.")
@click.option("--account", default="user@example.com", show_default=True,
              help="Account name shown in apps.")
@click.option("--algorithm", type=ALGO_CHOICE, default="SHA1", show_default=True)
@click.option("--digits", type=click.IntRange(6, 8), default=6, show_default=True)
@click.option("--period", type=PERIOD, default=30, show_default=True,
              help="TOTP time step in seconds.")
@click.option("--hotp", is_flag=True, help="Counter-based (HOTP) instead of time-based.")
@click.option("--bits", type=click.IntRange(80, 512), default=160, show_default=True,
              help="Secret length in bits (multiple of 8).")
@click.option("--qr", "qr_file", type=click.Path(dir_okay=False),
              help="Also write the QR code to FILE.png or FILE.svg.")
@json_option
def new_cmd(issuer: str, account: str, algorithm: str, digits: int, period: int, hotp: bool,
            bits: int, qr_file: str | None, as_json: bool) -> None:
    """Make a fresh random secret, its otpauth:// URI and a QR code to scan.

    The QR code is drawn in the terminal unless --json. The secret is shown on purpose:
    this is the moment to enrol it in an authenticator app.
    """
    if bits % 8:
        raise InvalidInput("--bits must be a multiple of 8")
    otplib.check_label(issuer, account)
    params = otplib.OtpParams("hotp" if hotp else "totp", otplib.new_secret(bits // 8),
                              issuer, account, algorithm.upper(), digits, period, 0)
    uri = params.to_uri()
    if qr_file:
        _write_qr(uri, qr_file)
    if as_json:
        doc = params.describe(show_secret=True)
        doc["uri"] = uri
        if qr_file:
            doc["qr_file"] = qr_file
        emit_json(doc)
        return
    click.echo(f"secret:  {params.secret_b32}")
    click.echo(f"uri:     {uri}")
    if qr_file:
        click.echo(f"qr:      written to {qr_file}")
    import segno

    segno.make(uri, error="m").terminal(compact=True)


def _write_qr(uri: str, filename: str) -> None:
    import segno

    suffix = Path(filename).suffix.lower()
    if suffix not in (".png", ".svg"):
        raise InvalidInput("--qr file must end in .png or .svg")
    import io

    from hwtoken.fileio import atomic_write

    buf = io.BytesIO()
    segno.make(uri, error="m").save(buf, kind=suffix[1:], scale=8)
    atomic_write(filename, buf.getvalue())  # 0600: the QR code holds the secret


@otp.command("code")
@click.argument("secret_or_uri", type=SECRET)
@click.option("--at", "at", type=UNIX_TIME, help="Unix time for TOTP (default: now).")
@click.option("--counter", type=COUNTER, help="HOTP counter (makes it HOTP).")
@click.option("--digits", type=click.IntRange(6, 8), help="Override the digits.")
@click.option("--algorithm", type=ALGO_CHOICE, help="Override the algorithm.")
@click.option("--period", type=PERIOD, help="Override the TOTP period.")
@click.option("--hotp", is_flag=True, help="Treat a bare secret as HOTP (counter 0 unless given).")
@allow_weak_option
@json_option
def code_cmd(secret_or_uri: str, at: float | None, counter: int | None, digits: int | None,
             algorithm: str | None, period: int | None, hotp: bool, allow_weak: bool,
             as_json: bool) -> None:
    """Print the current TOTP code, or the HOTP code for --counter."""
    params = _params(secret_or_uri, hotp=hotp, digits=digits, algorithm=algorithm,
                     period=period, counter=counter, allow_weak=allow_weak)
    doc = otplib.code_report(params, at)
    if as_json:
        emit_json(doc)
    else:
        click.echo(doc["code"])


@otp.command("verify")
@click.argument("secret_or_uri", type=SECRET)
@click.argument("code")
@click.option("--window", type=click.IntRange(0, 1000),
              help="TOTP: steps accepted either side (default 1). HOTP: look-ahead (default 10).")
@click.option("--at", "at", type=UNIX_TIME, help="Unix time to verify at (default: now).")
@click.option("--counter", type=COUNTER, help="HOTP: expected counter.")
@click.option("--digits", type=click.IntRange(6, 8))
@click.option("--algorithm", type=ALGO_CHOICE)
@click.option("--period", type=PERIOD)
@click.option("--hotp", is_flag=True, help="Treat a bare secret as HOTP.")
@click.option("--state", "state_file", type=click.Path(dir_okay=False),
              help="Replay store: a code (or an earlier one) is accepted only once.")
@allow_weak_option
@json_option
def verify_cmd(secret_or_uri: str, code: str, window: int | None, at: float | None,
               counter: int | None, digits: int | None, algorithm: str | None,
               period: int | None, hotp: bool, state_file: str | None, allow_weak: bool,
               as_json: bool) -> None:
    """Check CODE. Exit 0 if valid, 1 if not (wrong, expired or replayed)."""
    params = _params(secret_or_uri, hotp=hotp, digits=digits, algorithm=algorithm,
                     period=period, counter=counter, allow_weak=allow_weak)
    store = otplib.ReplayStore(state_file) if state_file else None
    if store is not None:
        store.check()  # unreadable or not a replay store: exit 2 whatever the code
    verifier = otplib.Verifier(params, window=window, store=store)
    if params.type == "hotp":
        matched = verifier.verify_hotp(code)
        ok = matched is not None
        doc: dict[str, object] = {"valid": ok, "type": "hotp", "counter": matched,
                                  "next_counter": verifier.counter if ok else None}
    else:
        t = time.time() if at is None else at
        step = verifier.verify_totp(code, t)
        ok = step is not None
        doc = {"valid": ok, "type": "totp", "step": step}
    if not ok:
        replay = " or already used" if store else ""
        raise CheckFailed(f"code is not valid (wrong, outside the window{replay})",
                          details=doc)
    if as_json:
        emit_json(doc)
        return
    click.echo("valid")


@otp.command("uri")
@click.argument("uri", type=SECRET)
@click.option("--show-secret", is_flag=True, help="Include the secret in the output.")
@allow_weak_option
@json_option
def uri_cmd(uri: str, show_secret: bool, allow_weak: bool, as_json: bool) -> None:
    """Parse and validate an otpauth:// URI ('-': from stdin) and print its fields.

    Strict: a repeated parameter, a malformed %-escape, a control character, an issuer
    that differs between label and parameter, an empty account or a secret under 80 bits
    (unless --allow-weak) is an error (exit 2) naming the problem.
    """
    params = otplib.parse_uri(read_secret_input(uri), allow_weak=allow_weak)
    doc = params.describe(show_secret=show_secret)
    if as_json:
        emit_json(doc)
        return
    for k, v in doc.items():
        click.echo(f"{k + ':':<12} {v}")


# -- paper keys ------------------------------------------------------------------------------
@click.group(cls=HwtokenGroup)
def paperkey() -> None:
    """One-time recovery keys: shown once, stored only as a salted scrypt hash."""


@paperkey.command("new")
@json_option
def paperkey_new(as_json: bool) -> None:
    """Make a recovery key: print it ONCE (write it on paper) and the hash to store."""
    from hwtoken import paperkey as pk

    key = pk.new()
    if as_json:
        emit_json({"key": key.key, "grouped": key.grouped, "hash": key.hash})
        return
    click.echo("Recovery key (shown once; write it down, it is not stored anywhere):\n")
    words = key.grouped.split("-")
    for i in range(0, len(words), 4):
        click.echo("    " + "  ".join(words[i:i + 4]))
    click.echo("\nHash to store (verifies the key, cannot recreate it):")
    click.echo(key.hash)


@paperkey.command("check")
@click.argument("hash_value", metavar="HASH")
@json_option
def paperkey_check(hash_value: str, as_json: bool) -> None:
    """Read a recovery key from stdin and check it against HASH (exit 0 match, 1 not)."""
    from hwtoken import paperkey as pk

    pk.parse_hash(hash_value)  # malformed hash: exit 2 before asking for the key
    if sys.stdin.isatty():
        entered = click.prompt("Recovery key", hide_input=True, err=True)
    else:
        entered = sys.stdin.read()
    if not pk.check(entered, hash_value):
        raise CheckFailed("recovery key does not match", details={"match": False})
    if as_json:
        emit_json({"match": True})
    else:
        click.echo("match")


otp.add_command(paperkey)
