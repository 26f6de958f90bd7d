"""``hwtoken provision``: program keys by the hundred, hand the secrets to a validation server."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any

import click

from hwtoken.cli.common import (
    FiniteFloat,
    HwtokenGroup,
    SecretText,
    confirm_or_force,
    emit_json,
    force_option,
    is_interactive,
    json_option,
    read_secret_input,
    state_dir_option,
)
from hwtoken.errors import CheckFailed, InvalidInput

PSKC_PASSWORD_ENV = "HWTOKEN_PSKC_PASSWORD"
ACCESS_CODE_ENV = "HWTOKEN_ACCESS_CODE"
CA_PASSPHRASE_ENV = "HWTOKEN_CA_PASSPHRASE"
MODES = ("hotp", "chalresp", "yubiotp", "oath-totp", "oath-hotp", "piv", "fido")
PIV_ALGORITHMS = ("ECCP256", "ECCP384", "ED25519", "RSA2048", "RSA3072", "RSA4096")


class ModeOption(click.Choice):
    """``MODE`` or ``MODE:PLACE``: the mode one of :data:`MODES`, the place checked with
    the plan (:func:`hwtoken.provision.options.parse_mode`)."""

    name = "mode"

    def __init__(self) -> None:
        super().__init__(MODES)

    def get_metavar(self, param: click.Parameter, *args: Any, **kwargs: Any) -> str:
        return "[" + "|".join(MODES) + "][:PLACE]"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        mode, sep, place = str(value).partition(":")
        return str(super().convert(mode, param, ctx)) + sep + place


def inventory_options(f: Any) -> Any:
    f = click.option("--key-file", type=click.Path(dir_okay=False, exists=True),
                     envvar="HWTOKEN_INVENTORY_KEY_FILE",
                     help="Seal secrets with the 32-byte key in this file instead of a "
                          "passphrase (env HWTOKEN_INVENTORY_KEY_FILE).")(f)
    f = click.option("--inventory", "-i", "url", metavar="URL", envvar="HWTOKEN_INVENTORY",
                     required=True,
                     help="sqlite:///path/inv.db, a plain file path (its directory must "
                          "exist), or postgresql://... (env HWTOKEN_INVENTORY).")(f)
    return state_dir_option(f)


def access_code_option(f: Any) -> Any:
    return click.option(
        "--access-code", type=SecretText(env=ACCESS_CODE_ENV), envvar=ACCESS_CODE_ENV,
        metavar="-|HEX",
        help=f"The access code the keys' OTP slots are protected by now: 12 hex digits, - to "
             f"read them from stdin (or ${ACCESS_CODE_ENV}).")(f)


def station_options(f: Any) -> Any:
    """What a run or resume needs for PIV slots: the CA that signs their certificates and
    the roots their attestation is checked against."""
    f = click.option("--attestation-roots", type=click.Path(dir_okay=False, exists=True),
                     metavar="FILE",
                     help="piv: trust the PIV attestation roots in this PEM file instead of "
                          "Yubico's (shipped with hwtoken); a virtual key's own root is "
                          "always trusted for that key.")(f)
    f = click.option("--days", type=click.IntRange(1, 36500), default=365, show_default=True,
                     help="piv: how long a certificate --ca-key issues is valid.")(f)
    f = click.option("--ca-command", metavar="CMD",
                     help="piv: a program that reads a CSR (PEM) on stdin and writes the "
                          "certificate on stdout: openssl x509 -req ..., openssl ca ..., "
                          "step ca sign, your own signer (split like a shell does, run "
                          "without one).")(f)
    f = click.option("--ca-passphrase", type=SecretText(env=CA_PASSPHRASE_ENV),
                     envvar=CA_PASSPHRASE_ENV, metavar="-",
                     help=f"piv: the passphrase of --ca-key: - reads it from stdin (or "
                          f"${CA_PASSPHRASE_ENV}).")(f)
    f = click.option("--ca-key", type=click.Path(dir_okay=False, exists=True),
                     help="piv: the CA's private key (PEM).")(f)
    f = click.option("--ca-cert", type=click.Path(dir_okay=False, exists=True),
                     help="piv: the CA's certificate (PEM) that issues the slots' "
                          "certificates.")(f)
    return f


def _station(report: Any, *, ca_cert: str | None, ca_key: str | None,
             ca_passphrase: str | None, ca_command: str | None, days: int,
             attestation_roots: str | None) -> Any:
    """The run's Station: the CA and the roots, checked before the inventory is opened
    (which becomes the records' journal: the caller sets it)."""
    from hwtoken.provision import attestation
    from hwtoken.provision.ca import signer_from
    from hwtoken.provision.protocol import Station

    if ca_passphrase is not None and not ca_key and not _given("ca_passphrase"):
        ca_passphrase = None  # $HWTOKEN_CA_PASSPHRASE set for another run: not for this one
    passphrase = read_secret_input(ca_passphrase) if ca_passphrase is not None else None
    signer = signer_from(ca_cert=ca_cert, ca_key=ca_key, passphrase=passphrase,
                         ca_command=ca_command, days=days)
    trust = attestation.load(attestation_roots) if attestation_roots else None
    return Station(trust=trust, signer=signer, say=report.say)


def _given(*names: str) -> list[str]:
    """Which of these parameters the command line (not the environment) gave."""
    ctx = click.get_current_context()
    return [n for n in names
            if ctx.get_parameter_source(n) is click.core.ParameterSource.COMMANDLINE]


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


def _open(url: str, key_file: str | None, *, unlock: bool = True, create: bool = True,
          allow_weak: bool = False) -> Any:
    from hwtoken.provision.inventory import open_inventory
    from hwtoken.provision.options import check_new_passphrase
    from hwtoken.provision.sealing import Unlocker

    _warn_password_in_argv(url)
    inv = open_inventory(url, create=create)
    if inv.created:  # a typo in the path shows itself here
        click.echo(f"new inventory: {getattr(inv, 'path', inv.url)}", err=True)
    if unlock:
        try:
            inv.unlock(Unlocker(key_file=key_file, prompt=_prompt_passphrase,
                                new_policy=lambda p: check_new_passphrase(
                                    p, allow_weak=allow_weak)))
        except BaseException:
            inv.close()
            _discard_new(inv)
            raise
    return inv


def _discard_new(inv: Any) -> None:
    """A new SQLite inventory that could not be set up leaves no file behind."""
    path = getattr(inv, "path", None)
    if inv.created and path is not None:
        for suffix in ("", "-wal", "-shm", ".holds"):
            with contextlib.suppress(OSError):
                os.unlink(f"{path}{suffix}")


def _access_code(value: str | None, option: str = "--access-code") -> bytes | None:
    from hwtoken.provision.options import parse_access_code

    if value is None:
        return None
    return parse_access_code(read_secret_input(value), option)


@click.group(cls=HwtokenGroup)
def provision() -> None:
    """Batch-program keys and hand their secrets to a validation server.

    Each place on a key (an OTP slot, an OATH credential) goes through four durable steps:
    its record (serial, place, mode and the secret sealed with AES-GCM) is written to the
    inventory as `pending`, the key is programmed, the key itself computes a response that
    must match, and the record is marked `done`. A place the key holds already that this
    inventory did not write is never overwritten without --overwrite. After a crash,
    `resume` settles every pending record; `list` and `forget` manage them. The inventory
    passphrase comes from HWTOKEN_INVENTORY_PASSPHRASE or a prompt (or use --key-file);
    secrets never appear in output, logs or the command line.
    """


@provision.command()
@inventory_options
@click.option("--mode", "-m", "modes", type=ModeOption(), multiple=True, required=True,
              help="hotp/chalresp/yubiotp: an OTP slot (python-yubico); oath-totp/oath-hotp: "
                   "a credential on the OATH applet (yubikit); piv: a PIV slot's PIN, PUK, "
                   "management key, key pair and CA certificate (yubikit); fido: a FIDO2 "
                   "PIN the user must change (python-fido2). Repeat for several places on "
                   "each key, each with its slot or name: -m chalresp:1 -m hotp:2 "
                   "-m oath-totp:mail -m piv:9a -m fido.")
@click.option("--slot", metavar="1|2|9a|9c|...",
              help="The slot for a mode without :SLOT: an OTP slot (default 2) or a PIV "
                   "slot (default 9a).")
@click.option("--digits", type=click.Choice(["6", "7", "8"]), default="6", show_default=True,
              help="Code length (hotp, oath-*).")
@click.option("--touch", is_flag=True, help="Require a touch (chalresp, oath-*).")
@click.option("--name", default="hwtoken", show_default=True,
              help="OATH credential name for a mode without :NAME.")
@click.option("--public-id", type=click.Choice(["serial", "random"]), default="serial",
              show_default=True,
              help="yubiotp: the public ID from the key's serial (as ykman's "
                   "--serial-public-id) or random (vv...).")
@click.option("--pin-length", type=click.IntRange(4, 63), default=8, show_default=True,
              help="piv (6-8), fido (4-63): digits of each key's random PIN.")
@click.option("--algorithm", type=click.Choice(PIV_ALGORITHMS, case_sensitive=False),
              default="ECCP256", show_default=True,
              help="piv: the key pair generated in the slot.")
@click.option("--subject", default="CN={serial}", show_default=True,
              help="piv: the CSR's subject, RFC 4514 with {serial} and {slot}: "
                   "\"CN={serial},O=ACME\".")
@click.option("--protect", is_flag=True,
              help="piv: store the management key on the key, PIN-protected (as ykman piv "
                   "access change-management-key --protect).")
@station_options
@click.option("--min-pin-length", type=click.IntRange(4, 63),
              help="fido: the key's new minimum PIN length.")
@click.option("--always-uv", is_flag=True,
              help="fido: turn alwaysUv on (every use asks for the PIN).")
@click.option("--count", "-n", type=click.IntRange(1, 1_000_000),
              help="Stop after this many keys are done.")
@click.option("--virtual", type=click.IntRange(1, 9999), metavar="N",
              help="Use the N virtual keys prov-0001..N in the state dir (created when "
                   "missing) instead of real keys: rehearsal and tests.")
@click.option("--reprogram", is_flag=True,
              help="Program places this inventory already has again (new secret).")
@click.option("--overwrite", is_flag=True,
              help="Also write places a key holds that this inventory did not write (asks "
                   "once per run on a terminal; needs --force otherwise).")
@force_option("With --overwrite: do not ask.")
@access_code_option
@click.option("--new-access-code", metavar="random|-|HEX",
              help="Protect each OTP slot with an access code: random (one per slot) or the "
                   "same 12 hex digits for all (- reads them from stdin); sealed in the "
                   "inventory like the secrets.")
@click.option("--idle-timeout", type=FiniteFloat(0, 86400), metavar="SECONDS",
              help="Real keys: stop when no new key arrived for this long.")
@click.option("--allow-weak", is_flag=True,
              help="Accept a passphrase under 12 characters for a new inventory.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON Lines: one object per record, then a summary.")
def run(url: str, key_file: str | None, modes: tuple[str, ...], slot: str | None,
        digits: str, touch: bool, name: str, public_id: str, pin_length: int,
        algorithm: str, subject: str, protect: bool, ca_cert: str | None,
        ca_key: str | None, ca_passphrase: str | None, ca_command: str | None, days: int,
        attestation_roots: str | None, min_pin_length: int | None, always_uv: bool,
        count: int | None, virtual: int | None, reprogram: bool, overwrite: bool,
        force: bool, access_code: str | None, new_access_code: str | None,
        idle_timeout: float | None, allow_weak: bool, as_json: bool) -> None:
    """Program keys as they arrive, recording each secret before the key is written.

    Real keys are taken by serial as they are plugged in (remove one, insert the next).
    A place the inventory has already is refused unless --reprogram; a place that holds
    something this inventory did not write is refused unless --overwrite. Exit 1 if a key
    failed its check, or if keys came and none was programmed (all refused or busy).
    """
    import functools

    from hwtoken.provision.options import build_plan, check_mode_options
    from hwtoken.provision.programmers import programmer_for
    from hwtoken.provision.report import StationReport, ctrl_c_kept
    from hwtoken.provision.runner import Provisioner
    from hwtoken.provision.sources import UsbKeys, VirtualPool

    plan = build_plan(modes, slot=slot, digits=int(digits), touch=touch, name=name,
                      public_id=public_id, pin_length=pin_length,
                      algorithm=algorithm.upper(), subject=subject, protect=protect,
                      min_pin_length=min_pin_length, always_uv=always_uv)
    check_mode_options(plan, _given(
        "pin_length", "algorithm", "subject", "protect", "ca_cert", "ca_key",
        "ca_passphrase", "ca_command", "days", "attestation_roots", "min_pin_length",
        "always_uv"))
    if ca_passphrase == "-" and "-" in (access_code, new_access_code):
        raise InvalidInput("only one secret can come from stdin: give the CA passphrase in "
                           f"${CA_PASSPHRASE_ENV}")
    if force and not overwrite:
        raise InvalidInput("--force only confirms --overwrite: give both, or neither")
    if overwrite and not force and not is_interactive():
        raise InvalidInput("--overwrite replaces what keys hold: without a terminal to ask "
                           "on, pass --force as well")
    codes = _run_codes(plan, access_code, new_access_code)
    total = count if virtual is None else min(virtual, count or virtual)
    report = StationReport(as_json=as_json, total=total, label="provisioning")
    _install_touch_reader(report)
    station = _station(report, ca_cert=ca_cert, ca_key=ca_key,
                       ca_passphrase=ca_passphrase, ca_command=ca_command, days=days,
                       attestation_roots=attestation_roots)
    inv = _open(url, key_file, allow_weak=allow_weak)
    station.journal = inv
    try:
        source = (VirtualPool(virtual) if virtual is not None
                  else UsbKeys(count, idle_timeout=idle_timeout, announce=report.say))
        programmers = functools.partial(programmer_for, station=station)
        try:
            with report, ctrl_c_kept() as told:
                summary = Provisioner(inv, programmers, on_outcome=told(report.outcome)).run(
                    plan, source, count=count, reprogram=reprogram,
                    overwrite=True if force else (_ask_once(report) if overwrite else False),
                    **codes)
        except KeyboardInterrupt:
            click.echo(f"interrupted: `hwtoken provision resume --inventory {inv.url}` "
                       "settles the key that was in progress", err=True)
            sys.exit(130)
        report.summary(summary)
    finally:
        inv.close()
    _exit_for(summary)


def _run_codes(plan: list[Any], access_code: str | None,
               new_access_code: str | None) -> dict[str, Any]:
    """--access-code and --new-access-code, checked (and read from stdin) before any key."""
    from hwtoken.provision.model import RANDOM

    if (access_code or new_access_code) and not any(s.mode.uses_slot for s in plan):
        raise InvalidInput("access codes protect OTP slots (hotp, chalresp, yubiotp); the "
                           "OATH applet has a password instead ($HWTOKEN_OATH_PASSWORD)")
    if access_code == "-" and new_access_code == "-":
        raise InvalidInput("only one of --access-code and --new-access-code can come from "
                           "stdin")
    new: bytes | str | None = new_access_code
    if new_access_code not in (None, RANDOM):
        ctx = click.get_current_context()
        if new_access_code != "-" and ctx.get_parameter_source(
                "new_access_code") is click.core.ParameterSource.COMMANDLINE:
            from hwtoken.cli.contract import ARGV_SECRET_WARNING

            click.echo(ARGV_SECRET_WARNING.format(env=""), err=True)
        new = _access_code(new_access_code, "--new-access-code")
    return {"access_code": _access_code(access_code), "new_access_code": new}


def _ask_once(report: Any) -> Any:
    """--overwrite on a terminal: ask at the first key that holds something, once."""
    answer: list[bool] = []

    def may_overwrite(device: Any, occupied: list[str]) -> bool:
        if not answer:
            with report.paused():
                answer.append(click.confirm(
                    f"key {device.serial}: {'; '.join(occupied)}. Overwrite what the keys "
                    "of this run hold?", default=False, err=True))
        return answer[0]

    return may_overwrite


def _exit_for(summary: Any) -> None:
    """Exit 1 with one error line when a key failed its check or could not be settled."""
    if summary.exit_code:
        bad = {k: v for k, v in summary.counts().items() if k != "done"}
        what = ", ".join(f"{v} record(s) {k}" for k, v in sorted(bad.items())) or "nothing done"
        raise CheckFailed(f"{what}: see the lines above, or `hwtoken provision status`")


@provision.command()
@inventory_options
@access_code_option
@click.option("--code", "codes", multiple=True, metavar="SERIAL=CODE",
              help="A code the key SERIAL typed when touched elsewhere: settles its pending "
                   "HOTP or Yubico OTP slot without the key (repeatable).")
@station_options
@click.option("--json", "as_json", is_flag=True,
              help="JSON Lines: one object per record, then a summary.")
def resume(url: str, key_file: str | None, access_code: str | None, codes: tuple[str, ...],
           ca_cert: str | None, ca_key: str | None, ca_passphrase: str | None,
           ca_command: str | None, days: int, attestation_roots: str | None,
           as_json: bool) -> None:
    """Settle every pending record after a crash.

    A present key is checked: if it holds the recorded secret the record is completed,
    otherwise the key is programmed again with the recorded secret. Keys that are not
    present are reported (exit 1); plug them in and resume again. --code records the hand
    check of an HOTP or Yubico OTP slot that a station without a terminal left pending.
    """
    import functools

    from hwtoken.provision.model import State
    from hwtoken.provision.options import parse_typed_codes
    from hwtoken.provision.programmers import programmer_for
    from hwtoken.provision.records import check_typed
    from hwtoken.provision.report import StationReport, ctrl_c_kept
    from hwtoken.provision.runner import Provisioner
    from hwtoken.provision.sources import RecordedKeys

    typed = parse_typed_codes(codes)
    if ca_passphrase == "-" and access_code == "-":
        raise InvalidInput("only one secret can come from stdin: give the CA passphrase in "
                           f"${CA_PASSPHRASE_ENV}")
    current = _access_code(access_code)
    report = StationReport(as_json=as_json, total=None, label="resuming")
    station = _station(report, ca_cert=ca_cert, ca_key=ca_key,
                       ca_passphrase=ca_passphrase, ca_command=ca_command, days=days,
                       attestation_roots=attestation_roots)
    inv = _open(url, key_file, create=False)
    station.journal = inv
    try:
        check_typed(inv, list(typed))
        pending = inv.records(states=[State.PENDING])
        report.total = len({r.serial for r in pending})
        _install_touch_reader(report)
        programmers = functools.partial(programmer_for, station=station)
        with report, ctrl_c_kept() as told:
            summary = Provisioner(inv, programmers, on_outcome=told(report.outcome)).resume(
                RecordedKeys(), access_code=current, codes=typed)
        if not pending:
            report.summary(summary, nothing_pending=True)
            if not as_json:
                click.echo(f"nothing pending in {inv.url}", err=True)
        else:
            report.summary(summary)
    finally:
        inv.close()
    _exit_for(summary)


@provision.command()
@inventory_options
@json_option
def status(url: str, key_file: str | None, as_json: bool) -> None:
    """Counts by state, the records still pending, and the last error. Needs no passphrase."""
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
    from hwtoken.provision.model import place_of

    click.echo(f"inventory {inv.url}")
    click.echo("  " + _counts_line(counts))
    for p in pending:
        err = f"  ({p['last_error']})" if p["last_error"] else ""
        click.echo(f"  pending {p['serial']} {place_of(p['application'], p['target'])} "
                   f"{p['mode']} {p['device']}{err}")
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last["at"]))
        where = f" {last['place']}" if last.get("place") else ""
        click.echo(f"  last error {when} key {last['serial']}{where}: {last['message']}")


def _counts_line(counts: dict[str, int]) -> str:
    """``pending: 0  done: 5 (exported: 5)``: exported records are a part of the done ones."""
    parts = []
    for state, n in counts.items():
        if state == "exported":
            continue
        text = f"{state}: {n}"
        if state == "done" and "exported" in counts:
            text += f" (exported: {counts['exported']})"
        parts.append(text)
    return "  ".join(parts)


@provision.command("list")
@inventory_options
@click.option("--state", "states", type=click.Choice(["pending", "done"]), multiple=True,
              help="Only records in this state (repeatable).")
@json_option
def list_cmd(url: str, key_file: str | None, states: tuple[str, ...], as_json: bool) -> None:
    """Every record: key, place, mode, state, attempts, export, last error. Needs no
    passphrase."""
    from hwtoken.provision.model import State
    from hwtoken.provision.records import issued

    inv = _open(url, key_file, unlock=False, create=False)
    try:
        records = inv.records(states=[State(s) for s in states] if states else None)
        certs = {r.key: issued(inv, r) for r in records if r.application == "piv"}
    finally:
        inv.close()
    if as_json:
        emit_json({"inventory": inv.url, "records": [
            {**r.public(), **({"issued": certs[r.key]} if r.key in certs else {})}
            for r in records]})
        return
    if not records:
        click.echo(f"no records{' ' + '/'.join(states) if states else ''} in {inv.url}")
        return
    click.echo(f"{'SERIAL':>10}  {'PLACE':<24} {'MODE':<10} {'STATE':<8} {'TRIES':>5}  "
               "EXPORTED  LAST ERROR")
    for r in records:
        exported = time.strftime("%Y-%m-%d", time.localtime(r.exported_at)) \
            if r.exported_at else "-"
        click.echo(f"{r.serial:>10}  {r.place:<24} {r.mode.value:<10} {r.state.value:<8} "
                   f"{r.attempts:>5}  {exported:<9} {r.last_error or ''}".rstrip())
        for cert in certs.get(r.key, []):
            click.echo(f"{'':>12}{_issued_line(cert)}")


def _issued_line(cert: dict[str, Any]) -> str:
    """One certificate (or unanswered CA request) of a PIV record, in words."""
    if "unanswered_request" in cert:
        return (f"the CA was asked ({cert['unanswered_request']}) and its answer was not "
                "recorded: check the CA's log for a certificate to revoke")
    state = "in the slot" if cert["current"] else "superseded: revoke it"
    return (f"certificate {cert['certificate_serial']} ({cert['subject']}, sha256 "
            f"{str(cert['sha256'])[:16]}...) {state}")


@provision.command()
@inventory_options
@click.argument("serial", type=click.IntRange(0, 2**63 - 1))
@click.option("--app", metavar="APP[:PLACE]",
              help="Only the records of this application (otp, oath, piv, fido), or of one "
                   "place in it (otp:2, oath:NAME, piv:9a).")
@force_option("Do not ask.")
@json_option
def forget(url: str, key_file: str | None, serial: int, app: str | None, force: bool,
           as_json: bool) -> None:
    """Drop the records of key SERIAL from the inventory (their secrets are lost; the key
    keeps what it holds). Asks on a terminal; needs --force otherwise."""
    from hwtoken.provision import records

    application, target = records.parse_app(app)
    inv = _open(url, key_file, create=False)
    try:
        chosen = records.select(inv, serial, application, target)
        if not chosen:
            raise InvalidInput(f"the inventory has no record of key {serial}"
                               + (f" in {app}" if app else ""))
        places = ", ".join(f"{r.place} ({r.mode.value}, {r.state.value})" for r in chosen)
        confirm_or_force(f"Forget {places} of key {serial}? Their secrets are lost for good",
                         force, f"forgetting records loses their secrets ({places})")
        gone = records.forget(inv, serial, application, target)
    finally:
        inv.close()
    if as_json:
        emit_json({"serial": serial, "forgotten": [r.public() for r in gone]})
    else:
        click.echo(f"forgot {len(gone)} record(s) of key {serial}: "
                   + ", ".join(f"{r.place} ({r.mode.value})" for r in gone))


@provision.command("export")
@inventory_options
@click.option("--for", "target", type=click.Choice(["generic", "privacyidea", "linotp"]),
              default="generic", show_default=True,
              help="The consumer: privacyidea/linotp write only what that server imports "
                   "(AES-128 PSKC, its token serials, no challenge-response keys); generic "
                   "is RFC 6030 and the CSV layouts for any consumer.")
@click.option("--format", "fmt", type=click.Choice(["pskc", "csv", "yubico-csv", "chalresp-csv",
                                                   "access-codes", "pin-mailer",
                                                   "certificates"]),
              required=True, help="pskc (RFC 6030), csv (the OATH CSV privacyIDEA and LinOTP "
                                  "import), yubico-csv (the Personalization Tool's Yubico "
                                  "format), chalresp-csv (challenge-response secrets only), "
                                  "access-codes (the slots' access codes, for the admin), "
                                  "pin-mailer (PIV and FIDO2 PINs and PUKs for the users: "
                                  "CSV, or JSON for an --out ending in .json), certificates "
                                  "(the PIV slots' certificates: a PEM bundle, and a CSV "
                                  "next to it).")
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
    if fmt == "pskc" and not result.encrypted:
        click.echo(f"warning: {result.path} holds the secrets unencrypted: keep it like the "
                   "inventory passphrase, or encrypt it (--pskc-password or --pskc-key-file)",
                   err=True)
    if as_json and not left_out:
        emit_json(result.to_json())
    elif not as_json:
        enc = " (encrypted)" if result.encrypted else ""
        also = "".join(f" and {p}" for p in result.also)
        click.echo(f"wrote {len(result.exported)} record(s) to {result.path}{also}{enc}")
    by_reason: dict[str, list[str]] = {}
    for key, reason in result.skipped.items():
        by_reason.setdefault(reason, []).append(f"{key.serial} {_place(key)}")
    for reason, which in by_reason.items():
        shown = ", ".join(which[:5]) + (", ..." if len(which) > 5 else "")
        click.echo(f"left out {len(which)} record(s) ({shown}): {reason}", err=True)
    if left_out:  # exit 1: one error line, and with --json one object with the result in it
        raise CheckFailed(f"{len(result.skipped)} record(s) left out of {result.path}; pass "
                          "--skip-unsupported if that is intended",
                          details=result.to_json() if as_json else None)


def _place(key: Any) -> str:
    from hwtoken.provision.model import place_of

    return place_of(key.application, key.target)


def _install_touch_reader(report: Any) -> None:
    """Real typing slots: on a terminal, the operator touches the key and it types its
    code (the prompt clears the progress bar's line first)."""
    if not sys.stdin.isatty():
        return
    from hwtoken.provision import programmers

    def read(slot: int) -> str:
        with report.paused():
            return str(click.prompt(f"touch the key (slot {slot}); it types its code here",
                                    err=True, default="", show_default=False))

    programmers.touch_reader = read
