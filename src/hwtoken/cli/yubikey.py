"""``hwtoken yubikey``: program and use a YubiKey's two OTP slots (and its OATH applet).

Every command takes ``--device``: a real key's serial number (or nothing: the one key
plugged in) or ``emu:NAME`` for a virtual key, reached the same way through python-yubico.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hwtoken.cli.common import (
    HwtokenCommand,
    HwtokenGroup,
    SecretText,
    allow_weak_option,
    confirm_or_force,
    device_group_option,
    device_option,
    emit_json,
    force_option,
    json_option,
    read_secret_input,
)
from hwtoken.errors import InvalidInput
from hwtoken.fileio import atomic_write

F = TypeVar("F", bound=Callable[..., Any])
SLOT = click.IntRange(1, 2)
SLOT_HELP = "Slot 1 (short touch) or 2 (long touch)."
# Access codes may come from the environment, keeping them out of argv (and `ps`).
ACCESS_CODE_ENV = "HWTOKEN_ACCESS_CODE"
NEW_ACCESS_CODE_ENV = "HWTOKEN_NEW_ACCESS_CODE"
SLOT_SECRET = SecretText()


class YubikeyGroup(HwtokenGroup):
    """The ``yubikey`` group: OTP-slot commands plus ``oath``, imported on first use."""

    LAZY = {"oath": ("hwtoken.cli.yubikey_oath", "oath",
                     "The OATH applet (TOTP/HOTP accounts on the key, over PC/SC).")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.LAZY))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY:
            module_name, attr, help_text = self.LAZY[cmd_name]
            try:
                return getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                return _unavailable(cmd_name, help_text, str(exc))
        return super().get_command(ctx, cmd_name)


def _unavailable(name: str, help_text: str, why: str) -> click.Command:
    @click.command(name, cls=HwtokenCommand, help=help_text,
                   context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args: tuple[str, ...]) -> None:
        raise InvalidInput(f"`hwtoken yubikey {name}` is not available here ({why})")

    return stub


def _secret_arg(value: str) -> str:
    """``-`` reads the secret from stdin, so it stays out of argv and shell history."""
    if value == "-":
        line = read_secret_input("-")
        if not line:
            raise InvalidInput("no secret on stdin")
        return line
    return value


def _confirm_overwrite(yk: Any, slot: int, force: bool, verb: str = "overwrite") -> None:
    """Programmed slot: go on with --force, or after a yes at an interactive prompt."""
    if force or not yk.is_programmed(slot):
        return
    confirm_or_force(f"Slot {slot} is programmed; {verb} it? Its secret is lost for good",
                     force, f"slot {slot} is already programmed; {verb} destroys its secret")


def _access_code_options(f: F) -> F:
    """``--access-code`` and ``--new-access-code`` of the commands that program a slot."""
    f = click.option("--new-access-code", metavar="HEX|-", envvar=NEW_ACCESS_CODE_ENV,
                     type=SecretText(NEW_ACCESS_CODE_ENV), show_envvar=True,
                     help="Protect the slot with this code instead (000000000000 removes "
                          "the protection); --access-code unlocks.")(f)
    return click.option("--access-code", metavar="HEX|-", envvar=ACCESS_CODE_ENV,
                        type=SecretText(ACCESS_CODE_ENV), show_envvar=True,
                        help="Protect the slot with this 6-byte code (12 hex digits); also "
                             "unlocks a slot already protected with it.")(f)


def _access_codes(access_code: str | None, new_access_code: str | None
                  ) -> tuple[bytes | None, bytes | None]:
    """(current, new) access codes: --access-code is both unless --new-access-code is given."""
    from hwtoken.yubikey.secrets import parse_access_code

    cur = parse_access_code(_secret_arg(access_code) if access_code else access_code)
    new = parse_access_code(_secret_arg(new_access_code)) if new_access_code is not None \
        else cur
    return cur, new


def _open(device: str | None) -> Any:
    from hwtoken.yubikey.device import open_key

    return open_key(device)


def _done(as_json: bool, doc: dict[str, Any], text: str) -> None:
    if as_json:
        emit_json(doc)
    else:
        click.echo(text)


@click.group(cls=YubikeyGroup)
@device_group_option
def yubikey() -> None:
    """YubiKey OTP slots: OATH-HOTP and HMAC-SHA1 challenge-response.

    A YubiKey has two OTP slots: slot 1 answers a short touch, slot 2 a long one. A slot
    in HOTP mode types a one-time code (and Enter) when touched; a slot in
    challenge-response mode answers HMAC-SHA1 challenges from software (KeePassXC, PAM,
    LUKS). An access code (6 bytes, 12 hex digits) protects a slot from being changed or
    deleted by anyone who does not know it; give it in $HWTOKEN_ACCESS_CODE
    ($HWTOKEN_NEW_ACCESS_CODE for --new-access-code) or as --access-code - on stdin, which
    keeps it out of argv (on the command line it is accepted with a warning).

    Use --device emu:NAME to work on a virtual key (`hwtoken emulate create NAME`).
    """


@yubikey.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List plugged-in YubiKeys and virtual keys."""
    from hwtoken.yubikey.device import list_keys

    problems: list[str] = []
    keys = list_keys(problems=problems)
    for problem in problems:
        click.echo(f"warning: real keys not searched: {problem}", err=True)
    if as_json:
        emit_json([k.to_dict() for k in keys])
        return
    if not keys:
        click.echo("no keys found (plug one in, or `hwtoken emulate create NAME`)")
    for k in keys:
        slots = ", ".join(f"slot {n}: {s.kind}" for n, s in k.slots.items())
        serial = k.serial if k.serial is not None else "?"
        click.echo(f"{k.device}\t{k.model} {k.firmware}\tserial {serial}\t{slots}")


@yubikey.command()
@json_option
@device_option
def info(as_json: bool, device: str | None) -> None:
    """Serial, firmware and which slots are programmed."""
    with _open(device) as yk:
        i = yk.info()
    if as_json:
        emit_json(i.to_dict())
        return
    click.echo(f"device:     {i.device}{' (virtual)' if i.virtual else ''}")
    click.echo(f"model:      {i.model}")
    click.echo(f"serial:     {i.serial if i.serial is not None else 'hidden'}")
    click.echo(f"firmware:   {i.firmware}")
    click.echo(f"prog. seq.: {i.pgm_seq}")
    click.echo(f"touch level: 0x{i.touch_level:02x}")
    for n, s in i.slots.items():
        click.echo(f"slot {n}:     {s.kind}")


# -- HOTP ------------------------------------------------------------------------------------
@yubikey.group(cls=HwtokenGroup)
@device_group_option
def hotp() -> None:
    """OATH-HOTP slots: the key types the next code when touched."""


@hotp.command("program")
@click.argument("slot", type=SLOT)
@click.option("--secret", required=True, metavar="B32|-", type=SLOT_SECRET,
              help="Base32 secret (as in an otpauth:// URI); '-' reads it from stdin.")
@click.option("--digits", type=click.Choice(["6", "8"]), default="6", show_default=True,
              help="Code length.")
@click.option("--counter", "imf", type=click.IntRange(0, 0xFFFF0), default=0,
              show_default=True, help="Initial counter (a multiple of 16).")
@_access_code_options
@force_option("Overwrite a programmed slot without asking.")
@allow_weak_option
@json_option
@device_option
def hotp_program(slot: int, secret: str, digits: str, imf: int, access_code: str | None,
                 new_access_code: str | None, force: bool, allow_weak: bool, as_json: bool,
                 device: str | None) -> None:
    """Program SLOT with OATH-HOTP: a touch types a code, then Enter."""
    from hwtoken.yubikey.secrets import parse_b32_secret

    key = parse_b32_secret(_secret_arg(secret), allow_weak=allow_weak)
    cur, new = _access_codes(access_code, new_access_code)
    with _open(device) as yk:
        _confirm_overwrite(yk, slot, force)
        yk.program_hotp(slot, key, digits=int(digits), imf=imf, access_code=new,
                        current_access_code=cur, force=True)
        dev = yk.device
    protected = new is not None and any(new)
    _done(as_json, {"device": dev, "slot": slot, "mode": "oath-hotp", "digits": int(digits),
                    "counter": imf, "access_code": protected},
          f"slot {slot} programmed: OATH-HOTP, {digits} digits, counter {imf}"
          + (", protected by an access code" if protected else ""))


@hotp.command("touch")
@click.argument("slot", type=SLOT)
@json_option
@device_option
def hotp_touch(slot: int, as_json: bool, device: str | None) -> None:
    """Virtual key only: touch the button and show what the key types.

    A key held by `hwtoken emulate run`/`serve --local` is touched there, so a program in
    that testbed (a station asking for a touch) receives the keystrokes on the key's
    keyboard interface; the text is also shown here.
    """
    from hwtoken.yubikey.device import touch_held_key

    typed = touch_held_key(device, slot)
    if typed is None:
        with _open(device) as yk:
            typed = yk.touch(slot)
    if as_json:
        emit_json({"slot": slot, "typed": typed})
    elif typed:
        click.echo(typed.rstrip("\n"))
    else:
        click.echo(f"slot {slot} types nothing (empty or challenge-response)", err=True)


# -- challenge-response ------------------------------------------------------------------------
@yubikey.group(cls=HwtokenGroup)
@device_group_option
def chalresp() -> None:
    """HMAC-SHA1 challenge-response slots (KeePassXC, PAM, LUKS)."""


@chalresp.command("program")
@click.argument("slot", type=SLOT)
@click.option("--secret", metavar="HEX|-", type=SLOT_SECRET, help="The HMAC key, up to 20 "
              "bytes in hex; '-' reads it from stdin.")
@click.option("--generate", is_flag=True, help="Make a random 20-byte key (shown once).")
@click.option("--secret-file", type=click.Path(dir_okay=False, path_type=Path),
              help="With --generate: write the key (hex) to this new file, mode 0600, "
                   "instead of printing it (an existing file is never overwritten).")
@click.option("--touch", is_flag=True, help="Require a touch for every response.")
@_access_code_options
@force_option("Overwrite a programmed slot without asking.")
@allow_weak_option
@json_option
@device_option
def chalresp_program(slot: int, secret: str | None, generate: bool, secret_file: Path | None,
                     touch: bool, access_code: str | None, new_access_code: str | None,
                     force: bool, allow_weak: bool, as_json: bool, device: str | None) -> None:
    """Program SLOT for HMAC-SHA1 challenge-response."""
    from hwtoken.yubikey.secrets import generate_secret, parse_hex_secret

    if (secret is None) == (not generate):
        raise InvalidInput("give exactly one of --secret HEX and --generate")
    if secret_file is not None and not generate:
        raise InvalidInput("--secret-file is for a key made with --generate")
    if secret_file is not None and (secret_file.exists() or secret_file.is_symlink()):
        raise InvalidInput(f"{secret_file} already exists (it may hold another slot's only "
                           "copy of its secret): choose a new file")
    key = generate_secret() if generate else parse_hex_secret(_secret_arg(secret or ""),
                                                              allow_weak=allow_weak)
    cur, new = _access_codes(access_code, new_access_code)
    acc = new is not None and any(new)
    with _open(device) as yk:
        _confirm_overwrite(yk, slot, force)
        if secret_file is not None:  # durable before the key holds it
            try:
                atomic_write(secret_file, key.hex() + "\n")
            except OSError as exc:
                raise InvalidInput(f"cannot write {secret_file}: {exc.strerror or exc}; "
                                   "the slot was not changed") from None
        yk.program_chalresp(slot, key, touch=touch, access_code=new,
                            current_access_code=cur, force=True)
        dev = yk.device
    doc: dict[str, Any] = {"device": dev, "slot": slot, "mode": "chalresp-hmac",
                           "require_touch": touch, "access_code": acc}
    show = generate and secret_file is None
    if show:
        doc["secret"] = key.hex()
    if secret_file is not None:
        doc["secret_file"] = str(secret_file)
    if as_json:
        emit_json(doc)
        return
    click.echo(f"slot {slot} programmed: HMAC-SHA1 challenge-response"
               + (", touch required" if touch else "")
               + (", protected by an access code" if acc else ""))
    if show:
        click.echo(f"secret (shown only now, store it safely): {key.hex()}")
    elif secret_file is not None:
        click.echo(f"secret written to {secret_file} (mode 0600)")


@chalresp.command("calc")
@click.argument("slot", type=SLOT)
@click.argument("challenge")
@json_option
@device_option
def chalresp_calc(slot: int, challenge: str, as_json: bool, device: str | None) -> None:
    """Send CHALLENGE (hex, 1 to 64 bytes) to SLOT and print the HMAC-SHA1 response."""
    try:
        chal = bytes.fromhex(challenge)
    except ValueError:
        raise InvalidInput("the challenge must be hex, e.g. 6869") from None
    if not chal:
        raise InvalidInput("the challenge is empty: give 1 to 64 bytes as hex, e.g. 6869")
    if len(chal) > 64:
        raise InvalidInput(f"the challenge is {len(chal)} bytes; at most 64")
    with _open(device) as yk:
        response = yk.calculate(slot, chal)
    _done(as_json, {"slot": slot, "challenge": chal.hex(), "response": response.hex()},
          response.hex())


# -- delete / swap --------------------------------------------------------------------------------
@yubikey.command()
@click.argument("slot", type=SLOT)
@click.option("--access-code", metavar="HEX", envvar=ACCESS_CODE_ENV,
              type=SecretText(ACCESS_CODE_ENV), show_envvar=True,
              help="The slot's access code, if it has one ('-': from stdin).")
@force_option("Delete without asking.")
@json_option
@device_option
def delete(slot: int, access_code: str | None, force: bool, as_json: bool,
           device: str | None) -> None:
    """Erase SLOT (its secret is gone for good): asks on a terminal, else needs --force."""
    from hwtoken.yubikey.secrets import parse_access_code

    acc = parse_access_code(_secret_arg(access_code) if access_code else access_code)
    with _open(device) as yk:
        if not yk.is_programmed(slot):
            raise InvalidInput(f"slot {slot} is already empty")
        _confirm_overwrite(yk, slot, force, verb="delete")
        yk.delete(slot, current_access_code=acc)
    _done(as_json, {"slot": slot, "deleted": True}, f"slot {slot} deleted")


@yubikey.command()
@click.option("--access-code", metavar="HEX", envvar=ACCESS_CODE_ENV,
              type=SecretText(ACCESS_CODE_ENV), show_envvar=True,
              help="The slots' access code, if they have one ('-': from stdin).")
@force_option("Swap without asking.")
@json_option
@device_option
def swap(access_code: str | None, force: bool, as_json: bool, device: str | None) -> None:
    """Exchange the configurations of slot 1 and slot 2.

    What a touch does changes for both slots, so it asks on a terminal and needs --force
    otherwise (unless both slots are empty).
    """
    from hwtoken.yubikey.secrets import parse_access_code

    acc = parse_access_code(_secret_arg(access_code) if access_code else access_code)
    with _open(device) as yk:
        programmed = [n for n, s in yk.info().slots.items() if s.programmed]
        if programmed:
            now = ", ".join(f"slot {n}: {s.kind}" for n, s in yk.info().slots.items())
            confirm_or_force(f"Swap the slots ({now})?", force,
                             f"swapping changes what both slots do ({now})")
        yk.swap(current_access_code=acc)
        slots = {str(n): s.kind for n, s in yk.info().slots.items()}
    _done(as_json, {"swapped": True, "slots": slots},
          "slots swapped: " + ", ".join(f"slot {n}: {k}" for n, k in slots.items()))
