"""``hwtoken emulate``: create, inspect, delete and serve virtual keys."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from hwtoken import devices, paths
from hwtoken.cli.common import (
    SECRET,
    HwtokenCommand,
    HwtokenGroup,
    StopSignals,
    confirm_or_force,
    emit_json,
    force_option,
    json_option,
    read_secret_input,
    state_dir_option,
)
from hwtoken.emulator.presence import (
    KEEPALIVE_INTERVAL,
    ApproveAlways,
    Decision,
    DenyAlways,
    Keepalive,
    UserPresence,
)
from hwtoken.emulator.profiles import DEFAULT_PROFILE, PROFILES
from hwtoken.errors import DeviceBusy, InvalidInput

DEFAULT_PCSC = "127.0.0.1:35963"
READS = ("auto", "emulated", "pty")


@click.group(cls=HwtokenGroup)
@state_dir_option
def emulate() -> None:
    """Virtual keys: software YubiKeys for tests and development.

    A virtual key is one state file (<state-dir>/keys/NAME.key, mode 0600) holding its
    model (profile), serial number, FIDO credentials, OTP slots and OATH accounts. Every
    command that takes --device accepts emu:NAME for it. `serve` makes it a USB device over
    USB/IP (and a smart card through pcscd with --pcsc) that real clients reach.
    `profiles` lists the models a key can be.
    """


def _version_str(version: Any) -> str:
    return ".".join(str(int(v)) for v in version)


def _summary(name: str) -> dict[str, Any]:
    """Non-secret facts about a key, read without locking it (works while it is served)."""
    from hwtoken.emulator.key import VirtualKey

    path = devices.key_path_for(name)
    store = VirtualKey.peek(path)
    ident = store.data.get("identity", {})
    fido = store.data.get("fido", {}) or {}
    oath = store.data.get("oath", {}) or {}
    aaguid = ident.get("aaguid")
    info: dict[str, Any] = {
        "name": name,
        "profile": ident.get("profile", DEFAULT_PROFILE),
        "serial": ident.get("serial"),
        "version": _version_str(ident.get("version", [0, 0, 0])),
        "aaguid": str(_uuid(aaguid)) if aaguid else None,
        "credentials": len(fido.get("resident") or []),
        "pin_set": isinstance(fido.get("pin"), dict),
        "oath_accounts": len(oath.get("credentials") or []),
        "slots": _slots(store),
        **_piv_summary(store),
        **_openpgp_summary(store),
        "path": str(path),
        "served": None,
    }
    doc = devices.running_serve(name)
    if doc is not None:
        info["served"] = {k: doc.get(k) for k in ("pid", "usbip", "pcsc", "local")}
    return info


def _piv_summary(store: Any) -> dict[str, Any]:
    """PIV key count (besides the attestation key) and the attestation root's SHA-256."""
    import hashlib

    piv = store.data.get("piv", {}) or {}
    root = piv.get("attestation_root")
    return {"piv_keys": len([s for s in (piv.get("keys") or {}) if s != "f9"]),
            "piv_attestation_root_sha256": hashlib.sha256(root).hexdigest() if root else None}


def _pem(der: Any) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_der_x509_certificate(bytes(der)).public_bytes(Encoding.PEM).decode()


def _openpgp_summary(store: Any) -> dict[str, Any]:
    """OpenPGP keys on the card (besides the attestation key) and the attestation root's
    SHA-256."""
    import hashlib

    pgp = store.data.get("openpgp", {}) or {}
    root = pgp.get("attestation_root")
    keys = pgp.get("keys") or {}
    return {"openpgp_keys": sorted(n for n, k in keys.items()
                                   if n != "att" and isinstance(k, dict) and k.get("status")),
            "openpgp_attestation_root_sha256":
                hashlib.sha256(root).hexdigest() if root else None}


#: what ``emulate show`` can print alone: the root's place in the state, its name, and when
#: the key makes it
_ROOTS = {
    "PIV": (("piv", "attestation_root"), "PIV attestation root",
            "PIV is first used (select the PIV applet once)"),
    "OpenPGP": (("openpgp", "attestation_root"), "OpenPGP attestation root",
                "OpenPGP is first used (select the OpenPGP applet once)"),
    "SCP": (("securitydomain", "authority", "root_cert"), "SCP CA",
            "the Security Domain is first used (ykman sd info)"),
}


def _attestation_root_pem(name: str, which: str) -> str:
    """The PEM of NAME's PIV or OpenPGP attestation root, or of the CA that certifies its
    Security Domain's SCP11 keys (``SCP``), read without locking the key."""
    from hwtoken.emulator.key import VirtualKey

    store = VirtualKey.peek(devices.key_path_for(name))
    path, what, when = _ROOTS[which]
    root: Any = store.data
    for part in path:
        root = (root or {}).get(part) if isinstance(root, dict) else None
    if not root:
        raise InvalidInput(f"virtual key {name!r} has no {what} yet: it is made when {when}")
    return _pem(root)


def _fido_root_pem(name: str) -> str:
    """The PEM of NAME's FIDO attestation root (read without locking the key)."""
    from hwtoken.emulator.applets.fido.attestation import FIELD, SECTION
    from hwtoken.emulator.key import VirtualKey

    store = VirtualKey.peek(devices.key_path_for(name))
    chain = ((store.data.get(SECTION, {}) or {}).get(FIELD) or {}).get("chain")
    if not chain:
        raise InvalidInput(f"virtual key {name!r} has no FIDO attestation certificates")
    return _pem(chain[-1])


def _uuid(raw: bytes) -> Any:
    import uuid

    return uuid.UUID(bytes=bytes(raw))


def _slots(store: Any) -> dict[str, Any]:
    """Slot summaries via the OTP applet's own describe() on an unlocked, read-only view."""
    from hwtoken.emulator.key import VirtualKey

    try:
        view = VirtualKey(store, None)
        return dict(view.otp.describe().get("slots", {}))
    except Exception:  # an older/foreign layout: report what we can
        raw = (store.data.get("otp", {}) or {}).get("slots", {}) or {}
        return {str(s): ({"mode": "configured"} if raw.get(str(s)) else None) for s in (1, 2)}


@emulate.command()
@click.argument("name")
@click.option("--serial", type=click.IntRange(1, 2**32 - 1), help="Serial number (default random).")
@click.option("--profile", type=click.Choice(list(PROFILES)), default=DEFAULT_PROFILE,
              show_default=True, help="The model it is (`hwtoken emulate profiles`).")
@click.option("--aaguid", metavar="UUID|random",
              help="The AAGUID (default: the one the model's vendor publishes; 'random' for "
                   "a random one).")
@click.option("--pin", type=SECRET, metavar="-",
              help="Give the key this FIDO2 PIN: - reads it from stdin (a PIN in argv is "
                   "visible to other users).")
@json_option
@state_dir_option
def create(name: str, serial: int | None, profile: str, aaguid: str | None, pin: str | None,
           as_json: bool) -> None:
    """Create virtual key NAME (a new state file; refuses to overwrite one).

    NAME: 1 to 64 ASCII letters, digits, - and _ (not starting with -).
    """
    from hwtoken.emulator import create_key

    path = paths.virtual_key_path(name)
    if path.exists():
        raise InvalidInput(f"virtual key {name!r} already exists ({path}); "
                           f"delete it first with `hwtoken emulate delete {name}`")
    with create_key(path, serial=serial, profile=profile, aaguid=aaguid,
                    pin=read_secret_input(pin) if pin is not None else None) as key:
        doc = {"name": name, "profile": key.profile.name, "serial": key.serial,
               "version": _version_str(key.version), "aaguid": str(_uuid(key.aaguid)),
               "pin_set": pin is not None, "path": str(path)}
    if as_json:
        emit_json(doc)
    else:
        click.echo(f"created virtual key {name}: {doc['profile']}, serial {doc['serial']}, "
                   f"firmware {doc['version']}, AAGUID {doc['aaguid']}"
                   f"{', PIN set' if pin is not None else ''}, state {path}")


@emulate.command("profiles")
@json_option
def profiles_(as_json: bool) -> None:
    """List the models a virtual key can be, with what each offers."""
    docs = [p.describe() for p in PROFILES.values()]
    if as_json:
        emit_json(docs)
        return
    for d in docs:
        default = " (default)" if d["name"] == DEFAULT_PROFILE else ""
        usb = d["usb"]
        click.echo(f"{d['name']}{default}: {d['model']}")
        click.echo(f"  {d['summary']}")
        click.echo(f"  firmware {d['firmware']}; USB {usb['vendor_id']}:{usb['product_id']} "
                   f"\"{usb['product']}\" ({', '.join(usb['interfaces'])}); "
                   f"{' + '.join(d['transports'])}; applets {', '.join(d['applets'])}")
        fido = d["fido"]
        if fido["versions"]:
            click.echo(f"  FIDO: {', '.join(fido['versions'])}")
        if fido["algorithms"]:
            click.echo(f"  algorithms: {', '.join(fido['algorithms'])}")
        if fido["extensions"]:
            click.echo(f"  extensions: {', '.join(fido['extensions'])}")


@emulate.command("list")
@json_option
@state_dir_option
def list_(as_json: bool) -> None:
    """List the virtual keys in the state directory."""
    rows = []
    for name in devices.virtual_key_names():
        try:
            rows.append(_summary(name))
        except (InvalidInput, OSError) as exc:  # one bad key file never hides the others
            rows.append({"name": name, "error": str(exc)})
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(f"no virtual keys in {paths.keys_dir()} "
                   "(create one: hwtoken emulate create NAME)")
        return
    for r in rows:
        if "error" in r:
            click.echo(f"{r['name']:<16} damaged: {r['error']}")
            continue
        served = ""
        if r["served"] and r["served"].get("usbip"):
            u = r["served"]["usbip"]
            served = f"  served on {_hostport(u['host'], u['port'])}"
        elif r["served"] and r["served"].get("local"):
            served = "  plugged in locally (umockdev)"
        elif r["served"]:
            served = "  served"
        click.echo(f"{r['name']:<16} {r['profile']:<13} serial {r['serial']:<10} "
                   f"firmware {r['version']}{served}")


@emulate.command()
@click.argument("name")
@click.option("--attestation-root", "fido_root", is_flag=True,
              help="Print only the PEM certificate that FIDO attestations chain up to (what "
                   "a relying party trusts for this key).")
@click.option("--piv-attestation-root", "piv_root", is_flag=True,
              help="Print only the PEM certificate that PIV attestations chain up to.")
@click.option("--openpgp-attestation-root", "openpgp_root", is_flag=True,
              help="Print only the PEM certificate that OpenPGP attestations chain up to.")
@click.option("--scp-ca", "scp_ca", is_flag=True,
              help="Print only the PEM CA certificate of the SCP11 keys (for ykman --scp-ca).")
@json_option
@state_dir_option
def show(name: str, fido_root: bool, piv_root: bool, openpgp_root: bool, scp_ca: bool,
         as_json: bool) -> None:
    """Show NAME: serial, firmware, AAGUID, credentials, OTP slots, PIN, state file."""
    chosen = [w for w, on in (("FIDO", fido_root), ("PIV", piv_root),
                              ("OpenPGP", openpgp_root), ("SCP", scp_ca)) if on]
    if len(chosen) > 1:
        raise InvalidInput("choose one of --attestation-root, --piv-attestation-root, "
                           "--openpgp-attestation-root and --scp-ca")
    if chosen:
        which = chosen[0]
        pem = _fido_root_pem(name) if which == "FIDO" else _attestation_root_pem(name, which)
        if as_json:
            field = {"FIDO": "attestation_root", "SCP": "scp_ca"}.get(
                which, f"{which.lower()}_attestation_root")
            emit_json({"name": name, field: pem})
        else:
            click.echo(pem, nl=False)
        return
    info = _summary(name)
    if as_json:
        emit_json(info)
        return
    slots = ", ".join(f"{s}: {d['mode'] if d else 'empty'}"
                      for s, d in sorted(info["slots"].items()))
    lines = [
        ("name", info["name"]),
        ("profile", info["profile"]),
        ("serial", info["serial"]),
        ("firmware", info["version"]),
        ("AAGUID", info["aaguid"]),
        ("FIDO PIN", "set" if info["pin_set"] else "not set"),
        ("resident credentials", info["credentials"]),
        ("OTP slots", slots or "-"),
        ("OATH accounts", info["oath_accounts"]),
        ("PIV keys", info["piv_keys"]),
        ("PIV attestation root", f"sha256 {info['piv_attestation_root_sha256']}"
         if info["piv_attestation_root_sha256"] else "not made yet"),
        ("OpenPGP keys", ", ".join(info["openpgp_keys"]) or "-"),
        ("OpenPGP attestation root", f"sha256 {info['openpgp_attestation_root_sha256']}"
         if info["openpgp_attestation_root_sha256"] else "not made yet"),
        ("state file", info["path"]),
    ]
    if info["served"]:
        s = info["served"]
        where = []
        if s.get("usbip"):
            where.append(f"USB/IP {_hostport(s['usbip']['host'], s['usbip']['port'])} "
                         f"busid {s['usbip']['busid']}")
        if s.get("pcsc"):
            where.append(f"vpcd {_hostport(s['pcsc']['host'], s['pcsc']['port'])}")
        if s.get("local"):
            where.append(f"local USB device {' '.join(s['local'].get('nodes', []))} "
                         "(umockdev)")
        lines.append(("served by", f"pid {s['pid']}: " + ", ".join(where)))
    for label, value in lines:
        click.echo(f"{label + ':':<26}{value}")


@emulate.command()
@click.argument("name")
@force_option("Do not ask for confirmation.")
@json_option
@state_dir_option
def delete(name: str, force: bool, as_json: bool) -> None:
    """Delete virtual key NAME and all its secrets (refused while it is in use).

    Asks on a terminal and needs --force otherwise.
    """
    from hwtoken.emulator.key import lock_path
    from hwtoken.emulator.serve import runtime_path
    from hwtoken.fileio import FileLock

    path = devices.key_path_for(name)
    try:
        lock = FileLock(lock_path(path), what=f"virtual key {name}")
    except DeviceBusy:
        raise DeviceBusy(f"virtual key {name!r} is in use (served or open in another "
                         "process); stop that first") from None
    except OSError as exc:
        raise InvalidInput(f"cannot delete virtual key {name!r}: {exc.strerror or exc}"
                           ) from None
    try:
        confirm_or_force(f"Delete virtual key {name} and all its credentials?", force,
                         f"deleting {name!r} destroys its credentials and secrets")
        for p in (path, runtime_path(path), lock_path(path)):
            p.unlink(missing_ok=True)
    finally:
        lock.release()
    if as_json:
        emit_json({"deleted": name, "path": str(path)})
    else:
        click.echo(f"deleted virtual key {name}")


class TerminalPresence(UserPresence):
    """``--touch prompt``: each touch request asks on stderr and reads the answer on stdin.

    One thread owns stdin. Lines typed while no request is waiting are thrown away, so a
    stray Enter never approves a later request; a request the host cancels or that times
    out stops waiting at once (the next one gets its own question); once stdin ends,
    every request is refused.
    """

    def __init__(self, stdin: TextIO | None = None, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._stdin = stdin if stdin is not None else sys.stdin
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._eof = False
        self._ask_lock = threading.Lock()
        # reading starts now, so whatever is typed before a question is already queued
        # (and thrown away) when the question comes
        self._reader = threading.Thread(target=self._read_stdin, daemon=True,
                                        name="hwtoken-touch-prompt")
        self._reader.start()

    def _read_stdin(self) -> None:
        try:
            for line in self._stdin:
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    def _typed_ahead(self) -> None:
        """Discard what was typed before this question; note the end of input."""
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return
            if line is None:
                self._eof = True

    def decide(self, reason: str, cancel: threading.Event,
               keepalive: Keepalive | None) -> bool | Decision:
        deadline = time.monotonic() + self.timeout

        def waiting() -> bool:
            if cancel.is_set() or time.monotonic() > deadline:
                return False
            if keepalive is not None:
                keepalive()
            return True

        while not self._ask_lock.acquire(timeout=KEEPALIVE_INTERVAL):  # one question at a time
            if not waiting():
                return False if cancel.is_set() else Decision.TIMEOUT
        try:
            self._typed_ahead()
            if self._eof:
                click.echo(f"touch requested ({reason}): refused, stdin is closed", err=True)
                return False
            click.echo(f"touch requested ({reason}); approve? [Y/n]: ", err=True, nl=False)
            while True:
                if not waiting():
                    why = "cancelled by the host" if cancel.is_set() else "no answer in time"
                    click.echo(f"\n{why}: touch refused", err=True)
                    return False if cancel.is_set() else Decision.TIMEOUT
                try:
                    line = self._lines.get(timeout=KEEPALIVE_INTERVAL)
                except queue.Empty:
                    continue
                if line is None:
                    self._eof = True
                    click.echo("\nstdin closed: touch refused", err=True)
                    return False
                answer = line.strip().lower()
                if answer in ("", "y", "yes"):
                    return True
                if answer in ("n", "no"):
                    return False
                click.echo("answer y or n: ", err=True, nl=False)
        finally:
            self._ask_lock.release()


def _presence(touch: str) -> UserPresence:
    if touch == "deny":
        return DenyAlways()
    if touch == "prompt":
        return TerminalPresence()
    return ApproveAlways()


@emulate.command()
@click.argument("name")
@click.option("--usbip", "usbip_spec", metavar="[HOST:]PORT", default="127.0.0.1:3240",
              show_default=True, help="USB/IP address to serve on (PORT 0 picks a free port).")
@click.option("--no-usbip", is_flag=True, help="Do not serve over USB/IP (e.g. PC/SC only).")
@click.option("--allow-user", "allow_users", multiple=True, metavar="UID|NAME",
              help="Also answer this local user over USB/IP (repeatable); by default only "
                   "you and root are answered.")
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback address and answer every peer: anyone who reaches "
                   "the port, every local user included, can use the key.")
@click.option("--idle-timeout", type=click.IntRange(0, 604800), default=600, show_default=True,
              metavar="SECONDS", help="Close a USB/IP session with nothing in flight for "
                                      "this long (0: never).")
@click.option("--touch", type=click.Choice(["auto", "deny", "prompt"]), default="auto",
              show_default=True, help="What a touch request does: approve, refuse, or ask "
                                      "here. auto approves every request: whoever may use the "
                                      "key gets user presence without a touch.")
@click.option("--pcsc", "pcsc", is_flag=True,
              help="Also connect to pcscd's vpcd driver as a smart card.")
@click.option("--pcsc-address", metavar="HOST:PORT",
              help=f"Where pcscd's vpcd driver listens (implies --pcsc; default {DEFAULT_PCSC}).")
@click.option("--local", is_flag=True,
              help="Also plug the key in as a local USB device (umockdev) and print the "
                   "environment that makes programs in other shells see it.")
@click.option("--reads", type=click.Choice(READS), default="auto", show_default=True,
              help="How reads of the local hidraw nodes are answered (see `emulate run`).")
@click.option("-v", "--verbose", is_flag=True, help="Log every client connection and error.")
@json_option
@state_dir_option
def serve(name: str, usbip_spec: str, no_usbip: bool, allow_users: tuple[str, ...],
          allow_remote: bool, idle_timeout: int, touch: str, pcsc: bool,
          pcsc_address: str | None, local: bool, reads: str, verbose: bool,
          as_json: bool) -> None:
    """Serve NAME as a USB device (USB/IP) until Ctrl-C (exit 130) or SIGTERM (exit 0).

    While it runs, the key is locked and other commands given --device emu:NAME talk to
    this process (over a Unix socket in a private runtime directory). List it with
    `usbip --tcp-port PORT list -r 127.0.0.1`; on Linux with the vhci-hcd module,
    `sudo usbip attach -r 127.0.0.1 -b 1-1` makes it a real USB device for browsers,
    ykman and libfido2. With --local the key is also plugged into a umockdev testbed (no
    root, no kernel module): export the printed UMOCKDEV_DIR and LD_PRELOAD in another
    shell and its programs find the key as /dev/hidrawN.

    The key answers you and root only, as a key on your desk would: another local user's
    connection is closed before anything is answered (--allow-user widens that). With
    --pcsc the card goes only to a pcscd whose socket belongs to root or to you.
    """
    from hwtoken.emulator.transports.access import resolve_user

    uids = tuple(resolve_user(u) for u in allow_users)
    pcsc_spec = pcsc_address if pcsc_address is not None else (DEFAULT_PCSC if pcsc else None)
    with _serve_logging(verbose):
        _serve(name, usbip_spec, no_usbip, allow_remote, touch, pcsc_spec, local, reads,
               as_json, allow_users=uids, idle_timeout=float(idle_timeout) or None)


def _load_for_serving(name: str) -> Any:
    """Open (and lock) virtual key NAME, or say who holds it."""
    from hwtoken.emulator.key import VirtualKey

    path = devices.key_path_for(name)
    try:
        return VirtualKey.load(path)
    except DeviceBusy:
        doc = devices.running_serve(name)
        if doc is not None:
            raise DeviceBusy(f"virtual key {name!r} is already served by pid {doc['pid']}"
                             ) from None
        raise DeviceBusy(f"virtual key {name!r} is in use by another process") from None


def _serve(name: str, usbip_spec: str, no_usbip: bool, allow_remote: bool, touch: str,
           pcsc_spec: str | None, local: bool, reads: str, as_json: bool, *,
           allow_users: tuple[int, ...] = (), idle_timeout: float | None = None) -> None:
    from hwtoken.emulator.serve import KeyService, parse_endpoint
    from hwtoken.emulator.transports.vpcd import DEFAULT_PORT as VPCD_PORT

    usbip = None if no_usbip else parse_endpoint(usbip_spec)
    pcsc = parse_endpoint(pcsc_spec, default_port=VPCD_PORT) if pcsc_spec else None
    if usbip is None and pcsc is None and not local:
        raise InvalidInput("nothing to serve: give --usbip, --pcsc or --local")
    if local:
        from hwtoken.emulator.transports.umockdev import find_preload

        find_preload()  # umockdev missing: say so before the key is touched
    key = _load_for_serving(name)
    key.presence = _presence(touch)  # (once the key is ours: a prompt starts reading stdin)
    with StopSignals() as signals, key, KeyService(
            key, usbip=usbip, pcsc=pcsc, allow_remote=allow_remote,
            allow_users=allow_users, local=local, reads=reads,
            idle_timeout=idle_timeout) as svc:
        doc = svc.describe()
        if as_json:
            emit_json({"name": name, **doc})
        else:
            _print_banner(name, key.serial, doc, Path(key.path))
        sys.stdout.flush()
        _watch(svc, signals.stop)
    if not as_json:
        click.echo(f"stopped serving {name}")
    signals.exit_if_interrupted()  # Ctrl-C: stopped cleanly, and says so like others


PCSC_WARN_AFTER = 3.0  # seconds without pcscd's vpcd driver before serve says so


def _watch(svc: Any, stop: threading.Event) -> None:
    """Wait for SIGINT/SIGTERM; say so (on stderr) while pcscd's vpcd driver is absent (a
    listener the card is withheld from says so itself, once, through the link's log)."""
    started = time.monotonic()
    warned = False
    while not stop.wait(0.1 if svc.vpcd is not None else 0.5):
        vpcd = svc.vpcd
        if vpcd is None:
            continue
        if vpcd.refused is not None:  # (the link said why, once: a listener not to trust)
            continue
        if not warned and not vpcd.connected and time.monotonic() - started > PCSC_WARN_AFTER:
            _warn_no_pcscd(vpcd.host, vpcd.port)
            warned = True
        elif warned and vpcd.connected:
            click.echo(f"pcscd's vpcd driver at {vpcd.host}:{vpcd.port} is up: the card is "
                       "inserted", err=True)
            warned = False


def _warn_no_pcscd(host: str, port: int) -> None:
    click.echo(f"warning: nothing answers at {host}:{port} (pcscd with the vpcd driver); "
               "start pcscd (Debian: apt install pcscd vsmartcard-vpcd) and the card goes in "
               "by itself; `hwtoken doctor` checks the setup", err=True)


@contextlib.contextmanager
def _serve_logging(verbose: bool) -> Iterator[None]:
    """Show hwtoken's warnings (with -v also connections) on stderr while serving.

    Only the "hwtoken" logger is touched, and only until the command ends: its level and
    handlers are restored afterwards, so a program that runs the CLI in-process (tests,
    CliRunner) keeps its own logging setup.
    """
    logger = logging.getLogger("hwtoken")
    saved_level = logger.level
    handler: logging.Handler | None = None
    if not logging.getLogger().handlers and not logger.handlers:  # outside hwtoken's CLI
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(saved_level)
        if handler is not None:
            logger.removeHandler(handler)


def _hostport(host: str, port: int) -> str:
    """HOST:PORT, with an IPv6 address in brackets ([::1]:3240)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _print_banner(name: str, serial: int, doc: dict[str, Any], path: Path) -> None:
    click.echo(f"serving virtual key {name} (serial {serial}, state {path})")
    if doc.get("usbip"):
        u = doc["usbip"]
        click.echo(f"  USB/IP  {_hostport(u['host'], u['port'])} busid {u['busid']}")
        click.echo(f"          list:   usbip --tcp-port {u['port']} list -r {u['host']}")
        click.echo(f"          attach: sudo modprobe vhci-hcd && sudo usbip --tcp-port "
                   f"{u['port']} attach -r {u['host']} -b {u['busid']}")
        click.echo(f"          answers: {_who(u.get('answers'))}")
    if doc.get("pcsc"):
        p = doc["pcsc"]
        click.echo(f"  PC/SC   vpcd {_hostport(p['host'], p['port'])} (reader "
                   f"{devices.pcsc_reader_for(p['port'])!r})")
    if doc.get("local"):
        loc = doc["local"]
        click.echo(f"  local   {', '.join(loc['nodes'])} (umockdev testbed {loc['dir']})")
        click.echo(f"          in another shell: export UMOCKDEV_DIR={loc['dir']} "
                   f"LD_PRELOAD={loc['preload']}")
    click.echo(f"  other commands: --device emu:{name}; stop with Ctrl-C")


def _who(answers: Any) -> str:
    """Who a serve answers, in words (``answers``: "anyone" or a list of uids)."""
    if answers == "anyone":
        return "anyone who reaches the port (--allow-remote), every local user included"
    me = os.geteuid()
    others = [str(uid) for uid in answers or () if uid not in (0, me)]
    return f"you (uid {me}) and root" + (f", and uid {', '.join(others)}" if others else
                                          " only")


class _RunCommand(HwtokenCommand):
    """Splits ``NAME... -- CMD ARGS...`` at the first ``--`` before click parses options."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta["hwtoken_cmd"] = args[i + 1:]
            args = args[:i]
        else:
            ctx.meta["hwtoken_cmd"] = None
        return super().parse_args(ctx, args)


def _plugged_doc(name: str, plugged: Any, key: Any) -> dict[str, Any]:
    if plugged is None:
        return {"name": name, "serial": key.serial, "plugged": False}
    return {"name": name, "serial": key.serial, "plugged": True,
            "fido_hidraw": plugged.fido_hidraw, "otp_hidraw": plugged.otp_hidraw,
            "hidraw": plugged.hidraw, "usbfs": plugged.usbfs}


def _touch_policy(spec: str) -> UserPresence:
    """--touch auto|deny|delay:S|prompt for `emulate run`."""
    import math

    from hwtoken.emulator.presence import ApproveAfterDelay

    if spec in ("auto", "deny"):
        return _presence(spec)
    if spec == "prompt":
        try:
            tty = open("/dev/tty")  # noqa: SIM115 (the prompt reads it until the run ends)
        except OSError:
            raise InvalidInput("--touch prompt needs a terminal (/dev/tty); use auto, deny "
                               "or delay:SECONDS") from None
        return TerminalPresence(stdin=tty)
    if spec.startswith("delay:"):
        try:
            seconds = float(spec[6:])
        except ValueError:
            seconds = math.nan
        if not math.isfinite(seconds) or not 0 <= seconds <= 60:
            raise InvalidInput(f"--touch {spec}: give delay:SECONDS with 0 to 60 seconds")
        return ApproveAfterDelay(seconds)
    raise InvalidInput(f"--touch {spec!r}: use auto, deny, delay:SECONDS or prompt")




@emulate.command("run", cls=_RunCommand, context_settings={"ignore_unknown_options": False})
@click.argument("names", nargs=-1, metavar="NAME [NAME...] -- CMD [ARGS...]")
@click.option("--touch", "touch", default="auto", show_default=True,
              metavar="auto|deny|delay:S|prompt",
              help="What a touch request does: approve, refuse, approve after S seconds, or "
                   "ask on the terminal.")
@click.option("--reads", type=click.Choice(READS), default="auto", show_default=True,
              help="How read() on the hidraw nodes is answered: auto works for poll-based, "
                   "blocking, non-blocking and multi-threaded programs; emulated and pty "
                   "force one path (for diagnosis).")
@click.option("-v", "--verbose", is_flag=True, help="Log what the testbed does on stderr.")
@click.option("--standby", "standby", multiple=True, metavar="NAME",
              help="Also hold virtual key NAME, unplugged at first: `hwtoken emulate plug "
                   "NAME` in another shell plugs it in (repeatable).")
@click.option("--pcscd", is_flag=True,
              help="Also run a pcscd in the testbed (Debian's CCID driver; needs root), so "
                   "CMD reaches the keys' smart-card applets (OATH, PIV) over PC/SC as on a "
                   "real key.")
@click.option("--json", "as_json", is_flag=True,
              help="Before CMD starts, print one JSON line: each key's nodes and the testbed.")
@state_dir_option
def run(names: tuple[str, ...], touch: str, reads: str, standby: tuple[str, ...],
        pcscd: bool, verbose: bool, as_json: bool) -> None:
    """Run CMD with virtual keys NAME... plugged in as local USB devices.

    CMD and its children find each key the way they find a real YubiKey: /dev/hidrawN
    nodes (FIDO and OTP interfaces) and /dev/bus/usb/001/NNN, with the sysfs tree udev
    and libusb read. Nothing needs root or a kernel module: umockdev's LD_PRELOAD library
    (Debian package umockdev) redirects CMD's /sys and /dev to a temporary tree served
    by this process. Exit status: CMD's (127 if it is not found); the tree is removed
    and the keys' state saved when CMD ends, on Ctrl-C and on SIGTERM.

    Examples: `hwtoken emulate run alice -- fido2-token -L`,
    `hwtoken emulate run alice -- ssh-keygen -t ed25519-sk`,
    `hwtoken emulate run --pcscd alice -- ykman oath accounts list`.

    \b
    Limits of LD_PRELOAD: setuid programs (sudo, su) drop it; static binaries and
    programs that make system calls directly (Go) do not see the keys. Chromium's HID
    service runs in its browser process, which works (with --no-sandbox as root).
    Other USB devices of the machine are hidden from CMD while it runs.
    """
    ctx = click.get_current_context()
    argv = ctx.meta.get("hwtoken_cmd")
    if argv is None:
        raise InvalidInput("give the command after --, e.g. "
                           f"hwtoken emulate run {' '.join(names)} -- fido2-token -L")
    if not argv:
        raise InvalidInput("no command after --")
    every = [*names, *standby]
    if not every:
        raise InvalidInput("name the virtual keys to plug in: "
                           "hwtoken emulate run NAME [NAME...] -- CMD")
    if len(set(every)) != len(every):
        raise InvalidInput("each key can be plugged in once: a NAME is repeated")
    from hwtoken.cli.contract import exit_with_status_of_child

    with _serve_logging(verbose):
        status = _run(list(names), list(standby), argv, touch, reads, as_json, pcscd)
    exit_with_status_of_child(status)


def _run(names: list[str], standby: list[str], argv: list[str], touch: str, reads: str,
         as_json: bool, pcscd: bool = False) -> int:
    from hwtoken.emulator.serve import remove_runtime
    from hwtoken.emulator.transports.umockdev import Testbed, find_preload, runner
    from hwtoken.emulator.transports.umockdev.control import ControlServer

    find_preload()  # umockdev missing: say so before any key is touched
    presence = _touch_policy(touch)
    keys: dict[str, Any] = {}
    control = None
    try:
        for name in [*names, *standby]:
            keys[name] = _load_for_serving(name)
            keys[name].presence = presence
        with Testbed(reads=reads) as tb:
            for name in names:
                tb.plug(keys[name])
            control = ControlServer(tb, keys, on_change=lambda name, plugged: _write_local(
                keys[name], tb, plugged, control_path=control.path if control else None))
            for name, key in keys.items():
                _write_local(key, tb, control.plugged(name), control_path=control.path)
            if as_json:
                click.echo(json.dumps({
                    "testbed": str(tb.root), "preload": str(tb.preload),
                    "control": str(control.path),
                    "keys": [_plugged_doc(n, control.plugged(n), keys[n]) for n in keys]}))
                sys.stdout.flush()
            with contextlib.ExitStack() as stack:
                env = tb.env()
                if pcscd:  # the testbed's own pcscd: CMD's PC/SC clients reach the keys
                    from hwtoken.emulator.pcscd import UsbPcscd

                    daemon = UsbPcscd(tb).start()
                    stack.callback(daemon.stop)
                    env = daemon.client_env(env)
                proc = runner.start(argv, env)
                try:
                    return runner.wait_forwarding_signals(proc)
                finally:
                    control.close()
    finally:
        for key in keys.values():
            remove_runtime(key.path)
            with contextlib.suppress(Exception):
                key.close()


def _write_local(key: Any, tb: Any, plugged: Any, *, control_path: Any,
                 by: str = "emulate run") -> None:
    """The runtime file of a key held by a testbed: where it is plugged (if it is), and the
    control socket `emulate plug/unplug` use."""
    from hwtoken.emulator.serve import write_runtime

    write_runtime(key.path, {
        "pid": os.getpid(), "serial": key.serial, "started": int(time.time()),
        "usbip": None, "pcsc": None, "by": by, "local": local_doc(tb, plugged, control_path)})


def local_doc(tb: Any, plugged: Any, control_path: Any) -> dict[str, Any]:
    """The ``local`` part of a runtime document."""
    return {"dir": str(tb.root), "preload": str(tb.preload),
            "control": str(control_path) if control_path else None,
            "plugged": plugged is not None,
            "nodes": [*plugged.hidraw, plugged.usbfs] if plugged is not None else [],
            "fido_hidraw": plugged.fido_hidraw if plugged is not None else None,
            "otp_hidraw": plugged.otp_hidraw if plugged is not None else None}


@emulate.command("plug")
@click.argument("name")
@json_option
@state_dir_option
def plug_cmd(name: str, as_json: bool) -> None:
    """Plug virtual key NAME back into the testbed of the `emulate run` (or `serve --local`)
    that holds it: its programs see the key arrive, as if it were inserted."""
    _control(name, "plug", as_json)


@emulate.command("unplug")
@click.argument("name")
@json_option
@state_dir_option
def unplug_cmd(name: str, as_json: bool) -> None:
    """Pull virtual key NAME out of the testbed of the `emulate run` (or `serve --local`)
    that holds it: programs using it get the errors a real unplug gives."""
    _control(name, "unplug", as_json)


def _control(name: str, verb: str, as_json: bool) -> None:
    from hwtoken.emulator.transports.umockdev.control import send

    devices.key_path_for(name)
    doc = devices.running_serve(name)
    local = (doc or {}).get("local") or {}
    if not local.get("control"):
        raise InvalidInput(f"virtual key {name!r} is not held by a testbed: start it with "
                           f"`hwtoken emulate run {name} -- CMD` (--standby {name} to start "
                           f"unplugged) or `hwtoken emulate serve {name} --local`")
    answer = send(local["control"], verb, name)
    if as_json:
        emit_json({"name": name, "local": (devices.running_serve(name) or {}).get("local")})
    else:
        click.echo(answer[len("ok "):] if answer.startswith("ok ") else answer)
