"""``hwtoken yubikey oath``: TOTP/HOTP accounts in a YubiKey's OATH applet (over PC/SC).

Works on a real YubiKey (``--device SERIAL`` or a PC/SC reader name; none = the one key
plugged in) and on a virtual key (``--device emu:NAME``). Passwords come from a prompt or
``$HWTOKEN_OATH_PASSWORD`` (new ones: ``$HWTOKEN_OATH_NEW_PASSWORD``), never from argv.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from hwtoken.cli.common import (
    SECRET,
    HwtokenGroup,
    allow_weak_option,
    confirm_or_force,
    device_group_option,
    device_option,
    emit_json,
    force_option,
    json_option,
)
from hwtoken.cli.yubikey import _done
from hwtoken.errors import InvalidInput

F = TypeVar("F", bound=Callable[..., Any])
NEW_PASSWORD_ENV = "HWTOKEN_OATH_NEW_PASSWORD"


def _common(f: F) -> F:
    return device_option(json_option(f))


def _password_prompt() -> str | None:
    """The password from a terminal prompt (None without a terminal)."""
    if not sys.stdin or not sys.stdin.isatty():
        return None
    return str(click.prompt("OATH password", hide_input=True, err=True))


@contextlib.contextmanager
def _client(device: str | None) -> Iterator[Any]:
    """An unlocked client: the password from $HWTOKEN_OATH_PASSWORD, else a prompt."""
    from hwtoken.yubikey.oath import PASSWORD_ENV, OathClient, open_connection

    with open_connection(device) as conn:
        password = os.environ.get(PASSWORD_ENV)
        try:
            client = OathClient(conn, password=password)
        except InvalidInput:  # locked and no password given
            password = _password_prompt()
            if password is None:
                raise
            client = OathClient(conn, password=password)
        yield client


@click.group(cls=HwtokenGroup)
@device_group_option
def oath() -> None:
    """TOTP/HOTP accounts stored in the key's OATH applet (like `ykman oath`).

    NAME is an account's exact name (Issuer:name as listed); a part of one is accepted
    only after you confirm the account it matches (or with --force).

    \b
    Examples:
      hwtoken yubikey oath add Example:alice --secret - < secret.b32
      hwtoken yubikey oath code
      hwtoken yubikey oath list --device emu:demo --json
    """


def _confirm_match(client: Any, query: str, verb: str, force: bool) -> str:
    """The id of the account ``query`` names; a part of a name is confirmed (or --force)."""
    acct, exact = client.account(query)
    if not exact:
        confirm_or_force(f"{query!r} matches the account {acct.display!r}; {verb} it?", force,
                         f"{query!r} is only part of the account name {acct.display!r}; "
                         f"give the exact name to {verb} it")
    return str(acct.id)


@oath.command("list")
@_common
def list_cmd(device: str | None, as_json: bool) -> None:
    """List the accounts (names only, never secrets)."""
    with _client(device) as client:
        accounts = client.list()
    if as_json:
        emit_json({"accounts": [a.as_dict() for a in accounts]})
        return
    for a in accounts:
        extra = " (HOTP)" if a.type == "hotp" else ""
        click.echo(f"{a.display}{extra}")


@oath.command()
@click.argument("name")
@click.option("--secret", "secret", metavar="B32|-", type=SECRET,
              help="Base32 secret ('-' reads it from stdin, keeping it out of argv).")
@click.option("--uri", metavar="otpauth://...|-", type=SECRET,
              help="An otpauth:// URI ('-': stdin).")
@click.option("--issuer", help="Issuer (or write NAME as Issuer:name).")
@click.option("--hotp", is_flag=True, help="Counter-based HOTP instead of TOTP.")
@click.option("--digits", type=click.IntRange(6, 8), default=6, show_default=True)
@click.option("--algorithm", type=click.Choice(["SHA1", "SHA256", "SHA512"],
              case_sensitive=False), default="SHA1", show_default=True)
@click.option("--period", type=click.IntRange(1, 3600), default=30, show_default=True,
              help="TOTP time step in seconds.")
@click.option("--counter", type=click.IntRange(0, 2**32 - 1), default=0,
              help="HOTP initial counter.")
@click.option("--touch", is_flag=True, help="Require a touch for each code.")
@force_option("Overwrite an account with the same name.")
@allow_weak_option
@_common
def add(name: str, secret: str | None, uri: str | None, issuer: str | None, hotp: bool,
        digits: int, algorithm: str, period: int, counter: int, touch: bool, force: bool,
        allow_weak: bool, device: str | None, as_json: bool) -> None:
    """Add account NAME from --secret or --uri."""
    from hwtoken.cli.common import read_secret_input
    from hwtoken.yubikey.oath import decode_secret, parse_uri, split_name

    if (secret is None) == (uri is None):
        raise InvalidInput("give exactly one of --secret or --uri")
    if uri is not None:
        data = parse_uri(read_secret_input(uri), allow_weak=allow_weak)
        new_issuer, data.name = split_name(name, issuer)
        if new_issuer is not None:
            data.issuer = new_issuer
        with _client(device) as client:
            acct = client.put(data, touch=touch, overwrite=force)
    else:
        raw = decode_secret(read_secret_input(secret or ""), allow_weak=allow_weak)
        with _client(device) as client:
            acct = client.add(name, raw, issuer=issuer, hotp=hotp, digits=digits,
                              algorithm=algorithm, period=period, counter=counter,
                              touch=touch, overwrite=force)
    _done(as_json, {"added": acct.as_dict()}, f"added {acct.display}")


@oath.command()
@click.argument("name", required=False)
@force_option("Use the one account NAME is part of without asking.")
@_common
def code(name: str | None, force: bool, device: str | None, as_json: bool) -> None:
    """Show codes: all TOTP accounts, or account NAME's (HOTP and touch accounts too)."""
    with _client(device) as client:
        if name is not None:
            name = _confirm_match(client, name, "calculate a code for", force)
        results = client.codes(name)
    if as_json:
        emit_json({"codes": [r.as_dict() for r in results]})
        return
    if name is not None:
        click.echo(results[0].code)
        return
    width = max((len(r.account.display) for r in results), default=0)
    for r in results:
        shown = r.code if r.code is not None else (
            "[touch]" if r.account.touch else "[HOTP]")
        click.echo(f"{r.account.display:<{width}}  {shown}")


@oath.command()
@click.argument("name")
@force_option("Delete without asking.")
@_common
def delete(name: str, force: bool, device: str | None, as_json: bool) -> None:
    """Delete account NAME (its secret is gone for good).

    Asks on a terminal and needs --force otherwise, like `ykman oath accounts delete`.
    """
    with _client(device) as client:
        acct, exact = client.account(name)
        hint = "" if exact else f" ({name!r} is only part of that name)"
        confirm_or_force(f"Delete the account {acct.display!r}? Its secret is gone for good",
                         force, f"deleting {acct.display!r} destroys its secret{hint}")
        acct = client.delete(acct.id, exact=True)
    _done(as_json, {"deleted": acct.as_dict()}, f"deleted {acct.display}")


@oath.command()
@click.argument("old")
@click.argument("new")
@force_option("Rename the one account OLD is part of without asking.")
@_common
def rename(old: str, new: str, force: bool, device: str | None, as_json: bool) -> None:
    """Rename account OLD to NEW (NEW may be Issuer:name)."""
    with _client(device) as client:
        acct = client.rename(_confirm_match(client, old, f"rename to {new!r}", force), new)
    _done(as_json, {"renamed": acct.as_dict()}, f"renamed to {acct.display}")


@oath.group(cls=HwtokenGroup)
@device_group_option
def password() -> None:
    """Set or clear the OATH access password."""


def _new_password() -> str:
    value = os.environ.get(NEW_PASSWORD_ENV)
    if value is not None:
        return value
    if not sys.stdin or not sys.stdin.isatty():
        raise InvalidInput(f"no terminal to ask for the new password: set ${NEW_PASSWORD_ENV}")
    return str(click.prompt("New OATH password", hide_input=True,
                            confirmation_prompt=True, err=True))


@password.command("set")
@_common
def password_set(device: str | None, as_json: bool) -> None:
    """Set (or change) the password: from a prompt or $HWTOKEN_OATH_NEW_PASSWORD."""
    new = _new_password()
    with _client(device) as client:
        client.set_password(new)
    _done(as_json, {"password": "set"}, "password set")


@password.command("clear")
@_common
def password_clear(device: str | None, as_json: bool) -> None:
    """Remove the password (needs the current one)."""
    with _client(device) as client:
        client.clear_password()
    _done(as_json, {"password": "cleared"}, "password cleared")


@oath.command()
@force_option("Do not ask for confirmation.")
@_common
def reset(force: bool, device: str | None, as_json: bool) -> None:
    """Delete every account and the password from the OATH applet."""
    from hwtoken.yubikey.oath import OathClient, open_connection

    confirm_or_force("Delete ALL OATH accounts and the password on this key?", force,
                     "a reset deletes every OATH account and the password")
    with open_connection(device) as conn:
        OathClient(conn, require_unlock=False).reset()  # reset needs no password
    _done(as_json, {"reset": True}, "OATH applet reset: all accounts deleted")


@oath.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--touch", is_flag=True, help="Require a touch for each imported account.")
@force_option("Overwrite accounts with the same name.")
@allow_weak_option
@_common
def import_cmd(file: Any, touch: bool, force: bool, allow_weak: bool, device: str | None,
               as_json: bool) -> None:
    """Import otpauth:// URIs from FILE ('-' = stdin), one per line.

    Every line is checked before anything is written: one bad line imports nothing.
    """
    from hwtoken.yubikey.oath import read_uri_file

    try:
        text = file.read().decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{file.name} is not UTF-8 text") from None
    items = read_uri_file(text, allow_weak=allow_weak)
    if not items:
        raise InvalidInput("no otpauth:// URIs in the file")
    with _client(device) as client:
        if not force:
            existing = {a.id for a in client.list()}
            clash = [d.get_id().decode() for d in items if d.get_id().decode() in existing]
            if clash:
                raise InvalidInput(f"already on the key: {', '.join(clash)} (use --force)")
        added = [client.put(d, touch=touch, overwrite=True) for d in items]
    _done(as_json, {"imported": [a.as_dict() for a in added]},
         f"imported {len(added)} account(s): " + ", ".join(a.display for a in added))
