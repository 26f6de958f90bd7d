"""``hwtoken provision``: program keys by the hundred, hand the secrets to a validation server."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import click

from hwtoken.cli.common import (
    FiniteFloat,
    HwtokenGroup,
    emit_json,
    force_option,
    json_option,
    state_dir_option,
)
from hwtoken.errors import CheckFailed, InvalidInput

PSKC_PASSWORD_ENV = "HWTOKEN_PSKC_PASSWORD"
MODES = ("hotp", "chalresp", "oath-totp", "oath-hotp")


def inventory_options(f: Any) -> Any:
    f = click.option("--key-file", type=click.Path(dir_okay=False, exists=True),
                     envvar="HWTOKEN_INVENTORY_KEY_FILE",
                     help="Seal secrets with the 32-byte key in this file instead of a "
                          "passphrase (env HWTOKEN_INVENTORY_KEY_FILE).")(f)
    f = click.option("--inventory", "-i", "url", metavar="URL", envvar="HWTOKEN_INVENTORY",
                     required=True,
                     help="sqlite:///path/inv.db, a plain file path, or postgresql://... "
                          "(env HWTOKEN_INVENTORY).")(f)
    return state_dir_option(f)


def _prompt_passphrase(new: bool) -> str:
    if not sys.stdin.isatty():
        return ""
    return str(click.prompt("Inventory passphrase", hide_input=True,
                            confirmation_prompt=new, err=True))


def _warn_password_in_argv(url: str) -> None:
    """A database password in --inventory is visible to every user (ps): say so."""
    import re

    ctx = click.get_current_context(silent=True)
    from_argv = (ctx is None or ctx.get_parameter_source("url")
                 is click.core.ParameterSource.COMMANDLINE)
    if from_argv and re.match(r"^postgres(ql)?://[^/@:]*:[^@/]+@", url):
        click.echo("warning: the inventory URL on the command line holds a password that "
                   "other users can see (ps): use ~/.pgpass, PGPASSWORD or "
                   "HWTOKEN_INVENTORY instead", err=True)


def _open(url: str, key_file: str | None, *, unlock: bool = True, create: bool = True) -> Any:
    from hwtoken.provision.inventory import open_inventory
    from hwtoken.provision.sealing import Unlocker

    _warn_password_in_argv(url)
    inv = open_inventory(url, create=create)
    if unlock:
        try:
            inv.unlock(Unlocker(key_file=key_file, prompt=_prompt_passphrase))
        except BaseException:
            inv.close()
            raise
    return inv


@click.group(cls=HwtokenGroup)
def provision() -> None:
    """Batch-program keys and hand their secrets to a validation server.

    Each key goes through four durable steps: its record (serial, mode, slot and the
    secret sealed with AES-GCM) is written to the inventory as `pending`, the key is
    programmed, the key itself computes a response that must match, and the record is
    marked `done`. After a crash, `resume` settles every pending record. The inventory
    passphrase comes from HWTOKEN_INVENTORY_PASSPHRASE or a prompt (or use --key-file);
    secrets never appear in output, logs or the command line.
    """


@provision.command()
@inventory_options
@click.option("--mode", "-m", type=click.Choice(MODES), required=True,
              help="hotp/chalresp: an OTP slot (python-yubico); oath-totp/oath-hotp: a "
                   "credential on the OATH applet (yubikit).")
@click.option("--slot", type=click.IntRange(1, 2), default=2, show_default=True,
              help="OTP slot for hotp/chalresp.")
@click.option("--digits", type=click.Choice(["6", "7", "8"]), default="6", show_default=True,
              help="Code length (hotp, oath-*).")
@click.option("--touch", is_flag=True, help="Require a touch (chalresp, oath-*).")
@click.option("--name", default="hwtoken", show_default=True,
              help="OATH credential name on the key.")
@click.option("--count", "-n", type=click.IntRange(1, 1_000_000),
              help="Stop after this many keys are done.")
@click.option("--virtual", type=click.IntRange(1, 9999), metavar="N",
              help="Use the N virtual keys prov-0001..N in the state dir (created when "
                   "missing) instead of real keys: rehearsal and tests.")
@click.option("--reprogram", is_flag=True,
              help="Program keys already in the inventory again (new secret).")
@click.option("--idle-timeout", type=FiniteFloat(0, 86400), metavar="SECONDS",
              help="Real keys: stop when no new key arrived for this long.")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per key, then a summary.")
def run(url: str, key_file: str | None, mode: str, slot: int, digits: str, touch: bool,
        name: str, count: int | None, virtual: int | None, reprogram: bool,
        idle_timeout: float | None, as_json: bool) -> None:
    """Program keys as they arrive, recording each secret before the key is written.

    Real keys are taken by serial as they are plugged in (remove one, insert the next);
    a key already in the inventory is refused unless --reprogram. Exit 1 if a key failed
    its check, or if keys came and none was programmed (all refused or busy).
    """
    from hwtoken.provision.model import Mode, Spec
    from hwtoken.provision.programmers import programmer_for
    from hwtoken.provision.runner import Provisioner
    from hwtoken.provision.sources import UsbKeys, VirtualPool

    spec = Spec(Mode(mode), slot, int(digits), touch, name)
    _install_touch_reader()
    inv = _open(url, key_file)
    try:
        total = count if virtual is None else min(virtual, count or virtual)
        report = _Reporter(as_json, total, "provisioning")
        source = (VirtualPool(virtual) if virtual is not None
                  else UsbKeys(count, idle_timeout=idle_timeout,
                               announce=None if as_json else report.say))
        try:
            with report:
                summary = Provisioner(inv, programmer_for, on_outcome=report.outcome).run(
                    spec, source, count=count, reprogram=reprogram)
        except KeyboardInterrupt:
            click.echo(f"interrupted: `hwtoken provision resume --inventory {inv.url}` "
                       "settles the key that was in progress", err=True)
            sys.exit(130)
        report.summary(summary)
    finally:
        inv.close()
    _exit_for(summary)


def _exit_for(summary: Any) -> None:
    """Exit 1 with one error line when a key failed its check or could not be settled."""
    if summary.exit_code:
        bad = {k: v for k, v in summary.counts().items() if k != "done"}
        what = ", ".join(f"{v} key(s) {k}" for k, v in sorted(bad.items())) or "no key done"
        raise CheckFailed(f"{what}: see the lines above, or `hwtoken provision status`",
                          details={"summary": summary.counts()})


@provision.command()
@inventory_options
@click.option("--json", "as_json", is_flag=True, help="One JSON line per key, then a summary.")
def resume(url: str, key_file: str | None, as_json: bool) -> None:
    """Settle every pending record after a crash.

    A present key is checked: if it holds the recorded secret the record is completed,
    otherwise the key is programmed again with the recorded secret. Keys that are not
    present are reported (exit 1); plug them in and resume again.
    """
    from hwtoken.provision.programmers import programmer_for
    from hwtoken.provision.runner import Provisioner
    from hwtoken.provision.sources import RecordedKeys

    _install_touch_reader()
    inv = _open(url, key_file, create=False)
    try:
        from hwtoken.provision.model import State

        report = _Reporter(as_json, len(inv.records(states=[State.PENDING])), "resuming")
        with report:
            summary = Provisioner(inv, programmer_for, on_outcome=report.outcome).resume(
                RecordedKeys())
        report.summary(summary)
    finally:
        inv.close()
    _exit_for(summary)


@provision.command()
@inventory_options
@json_option
def status(url: str, key_file: str | None, as_json: bool) -> None:
    """Counts by state, the keys still pending, and the last error. Needs no passphrase."""
    from hwtoken.provision.model import State

    inv = _open(url, key_file, unlock=False, create=False)
    try:
        counts = inv.counts()
        pending = [r.public() for r in inv.records(states=[State.PENDING])]
        last = inv.last_error()
    finally:
        inv.close()
    if as_json:
        emit_json({"inventory": inv.url, "counts": counts, "pending": pending,
                   "last_error": last})
        return
    click.echo(f"inventory {inv.url}")
    click.echo("  " + _counts_line(counts))
    for p in pending:
        err = f"  ({p['last_error']})" if p["last_error"] else ""
        click.echo(f"  pending {p['serial']} {p['mode']} {p['device']}{err}")
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["at"]))
        click.echo(f"  last error {when} key {last['serial']}: {last['message']}")


def _counts_line(counts: dict[str, int]) -> str:
    """``pending: 0  done: 5 (exported: 5)``: exported keys are a part of the done ones."""
    parts = []
    for state, n in counts.items():
        if state == "exported":
            continue
        text = f"{state}: {n}"
        if state == "done" and "exported" in counts:
            text += f" (exported: {counts['exported']})"
        parts.append(text)
    return "  ".join(parts)


@provision.command("export")
@inventory_options
@click.option("--for", "target", type=click.Choice(["generic", "privacyidea", "linotp"]),
              default="generic", show_default=True,
              help="The consumer: privacyidea/linotp write only what that server imports "
                   "(AES-128 PSKC, its token serials, no challenge-response keys); generic "
                   "is RFC 6030 and the CSV layouts for any consumer.")
@click.option("--format", "fmt", type=click.Choice(["pskc", "csv", "yubico-csv", "chalresp-csv"]),
              required=True, help="pskc (RFC 6030), csv (the OATH CSV privacyIDEA and LinOTP "
                                  "import), yubico-csv (the Personalization Tool's Yubico "
                                  "format), chalresp-csv (challenge-response secrets only).")
@click.option("--out", "-o", type=click.Path(dir_okay=False), required=True,
              help="File to write (0600, atomically).")
@click.option("--pskc-password", is_flag=True,
              help=f"Encrypt the PSKC file with a password (PBKDF2): from {PSKC_PASSWORD_ENV} "
                   "or a prompt, never the command line.")
@click.option("--pskc-key-file", type=click.Path(dir_okay=False, exists=True),
              help="Encrypt the PSKC file with the pre-shared AES key in this file (hex; "
                   "16 bytes for privacyidea/linotp).")
@click.option("--all", "include_exported", is_flag=True,
              help="Also the keys an earlier export for the same --for and --format wrote "
                   "(default: only those it did not).")
@click.option("--skip-unsupported", is_flag=True,
              help="Exit 0 even if some keys were left out because this target or format "
                   "cannot carry them (they are still listed).")
@force_option("Overwrite --out if it exists.")
@json_option
def export_cmd(url: str, key_file: str | None, target: str, fmt: str, out: str,
               pskc_password: bool, pskc_key_file: str | None, include_exported: bool,
               skip_unsupported: bool, force: bool, as_json: bool) -> None:
    """Write the secrets of done keys for a validation server and record them as exported.

    A key counts as exported for one --for/--format pair once such an export wrote its
    current secret: a PSKC export does not hide it from a CSV export, and a reprogrammed
    key is due again everywhere. --all writes every done key. Exit 1 if no key was written
    (then no file is), or if keys were left out (unless --skip-unsupported).
    """
    from hwtoken.provision.export import check_options, export

    psk = None
    if pskc_key_file:
        from pathlib import Path

        try:
            psk = bytes.fromhex(Path(pskc_key_file).read_text().strip())
        except ValueError:
            raise InvalidInput("--pskc-key-file must hold the AES key as hex") from None
    check_options(target, fmt, preshared_key=psk)  # a wrong combination: before any prompt
    password = None
    if pskc_password:
        if fmt != "pskc":
            raise InvalidInput("only the pskc format can be encrypted")
        password = os.environ.get(PSKC_PASSWORD_ENV)
        if not password:
            if not sys.stdin.isatty():
                raise InvalidInput(f"--pskc-password: set {PSKC_PASSWORD_ENV} or run on a "
                                   "terminal to be asked")
            password = click.prompt("PSKC password", hide_input=True, confirmation_prompt=True,
                                    err=True)
    check_options(target, fmt, password=password, preshared_key=psk)
    inv = _open(url, key_file, create=False)
    try:
        result = export(inv, fmt, out, target=target, include_exported=include_exported,
                        password=password, preshared_key=psk, force=force)
    finally:
        inv.close()
    left_out = result.skipped and not skip_unsupported
    if as_json and not left_out:
        emit_json(result.to_json())
    elif not as_json:
        enc = " (encrypted)" if result.encrypted else ""
        click.echo(f"wrote {len(result.exported)} key(s) to {result.path}{enc}")
    by_reason: dict[str, list[int]] = {}
    for serial, reason in result.skipped.items():
        by_reason.setdefault(reason, []).append(serial)
    for reason, serials in by_reason.items():
        shown = ", ".join(map(str, serials[:5])) + (", ..." if len(serials) > 5 else "")
        click.echo(f"left out {len(serials)} key(s) ({shown}): {reason}", err=True)
    if left_out:  # exit 1: one error line, and with --json one object with the result in it
        raise CheckFailed(f"{len(result.skipped)} key(s) left out of {result.path}; pass "
                          "--skip-unsupported if that is intended",
                          details=result.to_json() if as_json else None)


def _install_touch_reader() -> None:
    """Real HOTP slots: on a terminal, the operator touches the key and it types its code."""
    if not sys.stdin.isatty():
        return
    from hwtoken.provision import programmers

    def read(slot: int) -> str:
        return str(click.prompt(f"touch the key (slot {slot}); it types its code here",
                                err=True, default="", show_default=False))

    programmers.touch_reader = read


class _Reporter:
    """Progress: a bar on a terminal, a line per key otherwise, JSON lines with --json."""

    def __init__(self, as_json: bool, total: int | None, label: str) -> None:
        self.as_json = as_json
        self.tty = sys.stdout.isatty() and not as_json
        self.total = total
        self.label = label
        self._bar: Any = None

    def __enter__(self) -> _Reporter:
        if self.tty and self.total:
            self._bar = click.progressbar(length=self.total, label=self.label,
                                          show_pos=True, item_show_func=lambda s: s)
            self._bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

    def say(self, text: str) -> None:
        click.echo(text, err=True)

    def outcome(self, o: Any) -> None:
        if self.as_json:
            click.echo(json.dumps(o.to_json()))
            return
        line = f"{o.serial} {o.result}" + (" (reprogrammed)" if o.reprogrammed else "")
        if o.message:
            line += f": {o.message}"
        if self._bar is not None:
            self._bar.update(1, f"{o.serial} {o.result}")
            if o.result not in ("done",):
                click.echo(f"\n{line}", err=True)
        else:
            click.echo(line)

    def summary(self, summary: Any) -> None:
        if self.as_json:
            doc = summary.to_json()
            doc.pop("keys")  # each key had its own line
            click.echo(json.dumps({"summary": doc}))
            return
        counts = ", ".join(f"{v} {k}" for k, v in sorted(summary.counts().items())) or "no keys"
        click.echo(f"{counts} in {summary.seconds:.1f} s")
