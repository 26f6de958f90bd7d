"""The non-interactive tour that ``make demo`` runs.

Part 1 is the 2FA enrolment story (secret -> URI and QR -> code -> verified -> replay
refused -> paper key). Later parts come from :mod:`hwtoken.demos`: each module there has
``run(echo, workdir)`` and shows one more piece (the virtual key over USB/IP, an OTP slot,
the OATH applet through pcscd, the fob's screen).
"""

from __future__ import annotations

import importlib
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import click

from hwtoken.cli.common import HwtokenCommand, emit_json, json_option
from hwtoken.errors import CheckFailed

#: Later parts of the tour, in order: (module under hwtoken.demos, title).
PARTS: list[tuple[str, str]] = [
    ("usbip", "A virtual YubiKey over USB/IP: WebAuthn registration and sign-in"),
    ("local_usb", "The virtual key as a local USB device: fido2-token and OpenSSH use it"),
    ("otp_slots", "An OTP slot: HMAC-SHA1 challenge-response through python-yubico"),
    ("pcsc", "The OATH applet through pcscd, listed by ykman"),
    ("provision", "Batch provisioning: a crash, resume, and a PSKC export"),
    ("fob", "The DIY fob: the OLED screen, simulated by the firmware's own code"),
]


def _heading(echo: Callable[[str], None], n: int, title: str) -> None:
    echo("")
    echo(click.style(f"== {n}. {title}", bold=True))


def enrolment(echo: Callable[[str], None], workdir: Path) -> None:
    """New secret -> otpauth:// URI and QR -> current code -> verified -> replay refused."""
    import segno

    from hwtoken import otp, paperkey

    params = otp.OtpParams("totp", otp.new_secret(), "hwtoken demo", "alice@example.com")
    uri = params.to_uri()
    echo(f"new secret (160 bits): {params.secret_b32}")
    echo(f"otpauth URI:           {uri}")
    echo("scan this with an authenticator app:")
    qr = segno.make(uri, error="m")
    import io

    buf = io.StringIO()
    qr.terminal(out=buf, compact=True)
    for line in buf.getvalue().splitlines():
        echo(line)
    gen = params.generator()
    now = time.time()
    code = gen.at(now)
    echo(f"current code:          {code}  ({gen.remaining(now):.0f} s left in this step)")
    store = otp.ReplayStore(workdir / "replay.json")
    verifier = otp.Verifier(params, window=1, store=store)
    first = verifier.verify(code, now)
    echo(f"server verifies it:    {'accepted' if first else 'REFUSED'}")
    again = otp.Verifier(params, window=1, store=otp.ReplayStore(workdir / "replay.json"))
    replay = again.verify(code, now)
    echo(f"same code replayed:    {'ACCEPTED (bug!)' if replay else 'refused (already used)'}")
    if not first or replay:
        raise RuntimeError("the enrolment story did not behave as expected")

    key = paperkey.new()
    echo("paper recovery key (shown once, never stored):")
    words = key.grouped.split("-")
    for i in range(0, len(words), 8):
        echo("    " + " ".join(words[i:i + 8]))
    echo(f"stored hash:           {key.hash}")
    typed = key.grouped.lower().replace("-", " ")
    typed_ok = paperkey.check(typed, key.hash)
    echo(f"typed back (lower case, spaces): {'matches' if typed_ok else 'NO'}")
    wrong = ("A" if key.key[0] != "A" else "B") + key.key[1:]
    wrong_ok = paperkey.check(wrong, key.hash)
    echo(f"one symbol wrong:      {'matches (bug!)' if wrong_ok else 'refused'}")
    if not typed_ok or wrong_ok:
        raise RuntimeError("the paper key did not behave as expected")


def run(echo: Callable[[str], None] = click.echo, parts: list[str] | None = None,
        results: dict[str, bool] | None = None) -> int:
    """Run the tour; returns the number of parts that failed (``results``: part -> ok)."""
    failures = 0
    with tempfile.TemporaryDirectory(prefix="hwtoken-demo-") as tmp:
        workdir = Path(tmp)
        _heading(echo, 1, "2FA enrolment: secret, QR code, code, verification, paper key")
        enrolment(echo, workdir)
        for n, (name, title) in enumerate(PARTS, start=2):
            if parts is not None and name not in parts:
                continue
            try:
                module = importlib.import_module(f"hwtoken.demos.{name}")
            except ModuleNotFoundError as exc:
                if exc.name == f"hwtoken.demos.{name}":
                    continue  # that part of the tour is not built yet
                raise
            _heading(echo, n, title)
            part_dir = workdir / name
            part_dir.mkdir()
            started = time.monotonic()
            ok = True
            try:
                module.run(echo, part_dir)
            except Exception as exc:  # show the failure, go on with the tour
                failures += 1
                ok = False
                echo(click.style(f"   part failed: {type(exc).__name__}: {exc}", fg="red"))
                echo(traceback.format_exc(limit=3))
            if results is not None:
                results[name] = ok
            echo(click.style(f"   ({time.monotonic() - started:.1f} s)", dim=True))
    return failures


@click.command("demo", cls=HwtokenCommand)
@click.option("--part", "parts", multiple=True,
              type=click.Choice(["enrolment", *(n for n, _ in PARTS)]),
              help="Run only these parts (by name); part 1, enrolment, always runs.")
@json_option
def demo_command(parts: tuple[str, ...], as_json: bool) -> None:
    """Run the non-interactive tour of hwtoken (what `make demo` runs).

    With --json the tour is shown on stderr and stdout gets one document: the parts run
    and whether each behaved as expected.
    """
    results: dict[str, bool] = {}
    echo = (lambda text: click.echo(text, err=True)) if as_json else click.echo
    failures = run(echo, list(parts) or None, results)
    echo("")
    if failures:
        failed = ", ".join(n for n, ok in results.items() if not ok)
        raise CheckFailed(f"demo finished with {failures} failed part(s): {failed}",
                          details={"parts": results})
    if as_json:
        emit_json({"parts": results, "failures": 0})
        return
    click.echo("demo finished: every part behaved as expected")
