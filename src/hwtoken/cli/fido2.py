"""``hwtoken fido2``: register, authenticate, PIN, credentials and reset on FIDO2 keys."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from fido2.utils import websafe_encode

from hwtoken.cli.common import (
    HwtokenGroup,
    confirm_or_force,
    device_group_option,
    device_option,
    emit_json,
    force_option,
    json_option,
    state_dir_option,
)
from hwtoken.cli.contract import interrupted
from hwtoken.errors import InvalidInput
from hwtoken.fido import credfile, creds, info, pin, webauthn
from hwtoken.fido import device as keys
from hwtoken.fido.reset import reset as reset_key
from hwtoken.fido.session import PinSource

PIN_ENV = "HWTOKEN_PIN"
NEW_PIN_ENV = "HWTOKEN_NEW_PIN"


# -- helpers --------------------------------------------------------------------------------
def _env_pin(name: str) -> str | None:
    """A PIN from the environment variable ``name`` (InvalidInput if it is not UTF-8)."""
    value = os.environ.get(name)
    if value:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"${name} is not valid UTF-8 text") from None
    return value


def _pin_source(prompt: str = "PIN") -> PinSource:
    """The PIN from $HWTOKEN_PIN, else a hidden prompt; asked at most once, only if needed."""
    cache: list[str] = []

    def get() -> str | None:
        if not cache:
            value = _env_pin(PIN_ENV)
            if not value:
                try:
                    with warnings.catch_warnings():  # getpass on a pipe: reads a line
                        warnings.simplefilter("ignore")
                        value = click.prompt(f"{prompt} for the key", hide_input=True,
                                             err=True)
                except click.Abort as exc:
                    if interrupted(exc):
                        raise
                    raise InvalidInput(f"a PIN is needed: set {PIN_ENV} or enter it at the "
                                       "prompt") from None
            cache.append(value)
        return cache[0]

    return get


def _new_pin(allow_pin_env: bool = False) -> str:
    value = _env_pin(NEW_PIN_ENV) or (_env_pin(PIN_ENV) if allow_pin_env else None)
    if value:
        return value
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return click.prompt("New PIN", hide_input=True, confirmation_prompt=True,
                                err=True)
    except click.Abort as exc:
        if interrupted(exc):
            raise
        raise InvalidInput(f"a new PIN is needed: set {NEW_PIN_ENV} or enter it at the "
                           "prompt") from None


def _touch(key: keys.FidoKey) -> Callable[[], None]:
    def say() -> None:
        click.echo(f"Touch the key ({key.entry.spec})...", err=True)

    return say


@contextmanager
def _open(spec: str | None) -> Iterator[keys.FidoKey]:
    """The key ``--device`` names (resolved by the shared option: after the subcommand
    wins, then before it, then $HWTOKEN_DEVICE), else the one key present."""
    with keys.open_key(spec) as key:
        yield key


def _b64(data: bytes) -> str:
    return websafe_encode(data)


def _flag(v: bool | None) -> str:
    return "yes" if v else "no"


# -- the group ------------------------------------------------------------------------------
@click.group(cls=HwtokenGroup)
@device_group_option
def fido2() -> None:
    """FIDO2 keys: register and check WebAuthn credentials, PIN, credentials, reset.

    Works on USB security keys (found by python-fido2's HID discovery) and on virtual
    keys (--device emu:NAME, see `hwtoken emulate`). Without --device the one key
    present is used: a USB key, or a virtual key `hwtoken emulate serve` serves (a
    virtual key that is only a file counts when named). With several, pick one with
    --device or $HWTOKEN_DEVICE. The PIN is read from $HWTOKEN_PIN or asked for, never
    taken from the command line.
    """


@fido2.command("list")
@state_dir_option
@json_option
def list_cmd(as_json: bool) -> None:
    """List FIDO keys: USB keys and virtual keys, with the --device value for each."""
    entries = keys.list_keys()
    if as_json:
        emit_json({"keys": [e.to_dict() for e in entries]})
        return
    if not entries:
        click.echo("no FIDO keys found (create a virtual one: hwtoken emulate create NAME)")
        return
    for e in entries:
        click.echo(f"{e.spec:<28} {e.describe()}")


@fido2.command("info")
@device_option
@json_option
def info_cmd(device: str | None, as_json: bool) -> None:
    """Show versions, AAGUID, options, extensions, PIN state and free credential slots."""
    with _open(device) as key:
        ki = info.key_info(key.device)
    if as_json:
        emit_json({"device": key.entry.spec, **ki.to_dict()})
        return
    rows = [
        ("Device", f"{key.entry.spec} ({key.entry.describe()})"),
        ("Versions", ", ".join(ki.versions)),
        ("AAGUID", ki.aaguid or "-"),
        ("Algorithms", ", ".join(ki.algorithms) or "-"),
        ("Extensions", ", ".join(ki.extensions) or "-"),
        ("Options", ", ".join(f"{k}={'on' if v else 'off'}" for k, v in ki.options.items())
         or "-"),
        ("PIN", (f"set, {ki.pin_retries} retries left" if ki.pin_set else "not set")
         if ki.ctap2 else "n/a (U2F only)"),
        ("Min PIN length", str(ki.min_pin_length)),
        ("Resident slots left", "unknown" if ki.remaining_resident is None
         else str(ki.remaining_resident)),
    ]
    for label, value in rows:
        click.echo(f"{label + ':':<21}{value}")


@fido2.command("register")
@device_option
@click.option("--rp", "rp_id", required=True, metavar="RP_ID",
              help="Relying party ID (a domain, e.g. example.com); origin is https://RP_ID.")
@click.option("--user", "user_name", required=True, metavar="NAME", help="User name.")
@click.option("--resident", is_flag=True,
              help="Make a discoverable (resident) credential stored on the key.")
@click.option("--uv", type=click.Choice(webauthn.UV_CHOICES), default="preferred",
              show_default=True, help="User verification (PIN) requirement.")
@click.option("--algorithm", type=click.Choice(sorted(webauthn.ALGORITHMS)), default="es256",
              show_default=True, help="Signature algorithm.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Credential file to write; must not exist yet (default: a new file "
                   "under the state dir).")
@force_option("Overwrite an existing --out file (its credential's public key is lost).")
@json_option
def register_cmd(device: str | None, rp_id: str, user_name: str, resident: bool, uv: str,
                 algorithm: str, out: Path | None, force: bool, as_json: bool) -> None:
    """Register a WebAuthn credential and save it (ID, public key, RP, user, AAGUID,
    counter) to a new 0600 file; the attestation is verified with fido2's Fido2Server."""
    if out is not None:  # a bad --out is refused before the key holds a new credential
        credfile.check_writable(out, new=not force)
    with _open(device) as key:
        reg = webauthn.register(key.device, rp_id, user_name, resident=resident, uv=uv,
                                algorithm=algorithm, pin=_pin_source(), on_touch=_touch(key))
    path = credfile.save(reg.credential, out or credfile.default_path(reg.credential),
                         make_parents=out is None)
    if as_json:
        emit_json({**reg.to_dict(), "file": str(path)})
        return
    c = reg.credential
    click.echo(f"Registered {c.user_name} at {c.rp_id} "
               f"({'discoverable' if c.resident else 'non-resident'} {c.algorithm} credential)")
    click.echo(f"  credential ID: {_b64(c.credential_id)}")
    click.echo(f"  AAGUID:        {c.aaguid}")
    click.echo(f"  attestation:   {reg.attestation_format} ({reg.attestation_type}), verified")
    click.echo(f"  user verified: {_flag(reg.user_verified)}   hmac-secret: "
               f"{_flag(c.hmac_secret)}   sign counter: {c.sign_count}")
    click.echo(f"  saved to:      {path}")


def _authenticate(key: keys.FidoKey, rp_id: str, cred_path: Path | None,
                  user_name: str | None, uv: str,
                  salt: bytes | None = None) -> tuple[webauthn.Assertion, Path]:
    found: dict[str, Path] = {}
    credential = credfile.load(cred_path) if cred_path is not None else None
    if cred_path is not None:  # the new counter goes back into it: fail before the key
        credfile.check_writable(cred_path, new=False)

    def lookup(rp: str, cred_id: bytes) -> credfile.SavedCredential | None:
        hit = credfile.find_saved(rp, cred_id)
        if hit is None:
            return None
        found["path"] = hit[0]
        return hit[1]

    result = webauthn.authenticate(key.device, rp_id, credential, uv=uv, pin=_pin_source(),
                                   on_touch=_touch(key), user_name=user_name,
                                   hmac_salt=salt, lookup=lookup)
    path = cred_path if cred_path is not None else found["path"]
    credfile.save(result.credential, path)
    return result, path


@fido2.command("authenticate")
@device_option
@click.option("--rp", "rp_id", required=True, metavar="RP_ID", help="Relying party ID.")
@click.option("--cred", "cred_path",
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Credential file from `register`; without it a discoverable credential "
                   "answers (its public key is looked up among the saved files).")
@click.option("--user", "user_name", metavar="NAME",
              help="With discoverable credentials: the account to use.")
@click.option("--uv", type=click.Choice(webauthn.UV_CHOICES), default="preferred",
              show_default=True, help="User verification (PIN) requirement.")
@json_option
def authenticate_cmd(device: str | None, rp_id: str, cred_path: Path | None,
                     user_name: str | None, uv: str, as_json: bool) -> None:
    """Get an assertion and verify it against the saved public key (Fido2Server).

    The sign counter must rise; the file is updated with the new value. Exit 1 if the
    key has no such credential, the signature does not verify or the RP differs.
    """
    if cred_path is not None:
        credfile.load(cred_path)  # a missing or malformed file is bad input: fail early
    with _open(device) as key:
        result, path = _authenticate(key, rp_id, cred_path, user_name, uv)
    if as_json:
        emit_json({**result.to_dict(), "file": str(path)})
        return
    c = result.credential
    click.echo(f"Authenticated {c.user_name} at {c.rp_id}: signature valid, sign counter "
               f"{result.previous_count} -> {c.sign_count}, user verified: "
               f"{_flag(result.user_verified)}")
    click.echo(f"  updated: {path}")


@fido2.command("secret")
@device_option
@click.option("--cred", "cred_path", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Credential file from `register` (made with hmac-secret).")
@click.option("--salt", required=True, metavar="HEX", help="32-byte salt as 64 hex digits.")
@json_option
def secret_cmd(device: str | None, cred_path: Path, salt: str, as_json: bool) -> None:
    """Print the hmac-secret output of a credential for SALT (same salt, same secret).

    The output is a secret (for example a disk-encryption key); it is printed because
    you asked for it.
    """
    try:
        salt_bytes = bytes.fromhex(salt)
    except ValueError:
        raise InvalidInput("--salt must be hex (64 hex digits for 32 bytes)") from None
    if len(salt_bytes) != webauthn.SALT_LEN:
        raise InvalidInput(f"--salt must be {webauthn.SALT_LEN} bytes (64 hex digits), "
                           f"got {len(salt_bytes)}")
    credential = credfile.load(cred_path)
    with _open(device) as key:
        result, _ = _authenticate(key, credential.rp_id, cred_path, None, "discouraged",
                                  salt_bytes)
    assert result.hmac_output is not None
    if as_json:
        emit_json({"rp_id": credential.rp_id, "secret": result.hmac_output.hex(),
                   "sign_count": result.credential.sign_count})
    else:
        click.echo(result.hmac_output.hex())


# -- pin ------------------------------------------------------------------------------------
@fido2.group("pin", cls=HwtokenGroup)
@device_group_option
def pin_group() -> None:
    """Set, change or verify the PIN, or show the retries left.

    The current PIN comes from $HWTOKEN_PIN or a hidden prompt; a new one from
    $HWTOKEN_NEW_PIN or a hidden prompt with confirmation. Never on the command line.
    """


@pin_group.command("set")
@device_option
@json_option
def pin_set(device: str | None, as_json: bool) -> None:
    """Set the first PIN ($HWTOKEN_NEW_PIN, else $HWTOKEN_PIN, else a prompt)."""
    with _open(device) as key:
        if pin.status(key.device).pin_set:
            raise InvalidInput("the key already has a PIN: use `hwtoken fido2 pin change`")
        pin.set_pin(key.device, _new_pin(allow_pin_env=True))
        status = pin.status(key.device)
    _pin_report("PIN set", status, as_json)


@pin_group.command("change")
@device_option
@json_option
def pin_change(device: str | None, as_json: bool) -> None:
    """Change the PIN (current from $HWTOKEN_PIN, new from $HWTOKEN_NEW_PIN or prompts)."""
    with _open(device) as key:
        if not pin.status(key.device).pin_set:
            raise InvalidInput("the key has no PIN yet: use `hwtoken fido2 pin set`")
        old = _pin_source("Current PIN")()
        assert old is not None
        pin.change_pin(key.device, old, _new_pin())
        status = pin.status(key.device)
    _pin_report("PIN changed", status, as_json)


@pin_group.command("retries")
@device_option
@json_option
def pin_retries(device: str | None, as_json: bool) -> None:
    """Show whether a PIN is set and how many tries are left."""
    with _open(device) as key:
        status = pin.status(key.device)
    _pin_report("PIN set" if status.pin_set else "PIN not set", status, as_json)


@pin_group.command("verify")
@device_option
@json_option
def pin_verify(device: str | None, as_json: bool) -> None:
    """Check the PIN; exit 1 (and show the tries left) if it is wrong."""
    with _open(device) as key:
        if not pin.status(key.device).pin_set:
            raise InvalidInput("the key has no PIN: set one first with `hwtoken fido2 pin set`")
        status = pin.verify_pin(key.device, _pin_source()() or "")
    _pin_report("PIN correct", status, as_json)


def _pin_report(headline: str, status: pin.PinStatus, as_json: bool) -> None:
    if as_json:
        emit_json(status.to_dict())
        return
    extra = " (unplug and re-insert the key before the next try)" \
        if status.power_cycle_required else ""
    if status.retries is None:
        click.echo(headline)
    else:
        click.echo(f"{headline}; {status.retries} retries left{extra}")


# -- creds ----------------------------------------------------------------------------------
@fido2.group("creds", cls=HwtokenGroup)
@device_group_option
def creds_group() -> None:
    """Discoverable credentials stored on the key (needs the PIN)."""


@creds_group.command("list")
@device_option
@json_option
def creds_list(device: str | None, as_json: bool) -> None:
    """List discoverable credentials by RP, and the free slots."""
    with _open(device) as key:
        listing = creds.list_credentials(key.device, _pin_source())
    if as_json:
        emit_json(listing.to_dict())
        return
    click.echo(f"{listing.existing} discoverable credential(s), room for "
               f"{listing.remaining} more")
    for c in listing.credentials:
        who = c.user_name or c.display_name or _b64(c.user_id)
        click.echo(f"  {c.rp_id:<24} {who:<20} {_b64(c.credential_id)}")


@creds_group.command("delete")
@device_option
@click.argument("credential_id")
@force_option("Do not ask for confirmation.")
@json_option
def creds_delete(device: str | None, credential_id: str, force: bool, as_json: bool) -> None:
    """Delete the discoverable credential CREDENTIAL_ID (base64url as listed, or hex).

    Asks on a terminal and needs --force otherwise.
    """
    cred_id = creds.parse_credential_id(credential_id)
    confirm_or_force(f"Delete credential {credential_id} from the key? It cannot be undone",
                     force, f"deleting credential {credential_id} cannot be undone")
    with _open(device) as key:
        deleted = creds.delete_credential(key.device, cred_id, _pin_source())
    if as_json:
        emit_json({"deleted": deleted.to_dict()})
    else:
        click.echo(f"Deleted {deleted.user_name or '?'} at {deleted.rp_id}")


def _replug_hint(key: keys.FidoKey) -> str:
    if key.entry.kind == "usb":
        return "you will be asked to remove and re-insert it, then to touch it."
    return "this virtual key is power-cycled for you (re-imported, if served over USB/IP)."


# -- reset ----------------------------------------------------------------------------------
@fido2.command("reset")
@device_option
@force_option("Do not ask for confirmation.")
@json_option
def reset_cmd(device: str | None, force: bool, as_json: bool) -> None:
    """Erase every FIDO credential and the PIN on the key.

    Keys allow a reset only within about 10 seconds of being plugged in, and want a
    touch: you will be asked to remove and re-insert the key (a virtual key loaded here
    is power-cycled instead), then to touch it.
    """
    with _open(device) as key:
        if not force:
            click.echo(f"Reset erases EVERY FIDO credential and the PIN on {key.entry.spec} "
                       f"({key.entry.describe()}). Sign-ins that use this key will stop "
                       "working.", err=True)
            click.echo(f"A key accepts a reset only within 10 seconds of being plugged in, "
                       f"and with a touch: {_replug_hint(key)}", err=True)
        confirm_or_force("Reset the key?", force,
                         f"a reset erases every FIDO credential and the PIN on "
                         f"{key.entry.spec}")
        reset_key(key, say=lambda m: click.echo(m, err=True))
    if as_json:
        emit_json({"reset": True, "device": key.entry.spec})
    else:
        click.echo(f"{key.entry.spec}: FIDO applet reset (credentials and PIN erased)")
