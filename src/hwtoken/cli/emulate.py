"""``hwtoken emulate``: create, inspect, delete and serve virtual keys."""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import click

from hwtoken import devices, paths
from hwtoken.cli.common import (
    HwtokenGroup,
    confirm_or_force,
    emit_json,
    force_option,
    json_option,
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
from hwtoken.errors import DeviceBusy, InvalidInput

DEFAULT_PCSC = "127.0.0.1:35963"
INTERRUPTED = 130


@click.group(cls=HwtokenGroup)
@state_dir_option
def emulate() -> None:
    """Virtual keys: software YubiKey 5s for tests and development.

    A virtual key is one state file (<state-dir>/keys/NAME.key, mode 0600) holding its
    serial number, FIDO credentials, OTP slots and OATH accounts. Every command that
    takes --device accepts emu:NAME for it. `serve` makes it a USB device over USB/IP
    (and a smart card through pcscd with --pcsc) that real clients reach.
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
        "serial": ident.get("serial"),
        "version": _version_str(ident.get("version", [0, 0, 0])),
        "aaguid": str(_uuid(aaguid)) if aaguid else None,
        "credentials": len(fido.get("resident") or []),
        "pin_set": isinstance(fido.get("pin"), dict),
        "oath_accounts": len(oath.get("credentials") or []),
        "slots": _slots(store),
        "path": str(path),
        "served": None,
    }
    doc = devices.running_serve(name)
    if doc is not None:
        info["served"] = {k: doc.get(k) for k in ("pid", "usbip", "pcsc")}
    return info


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
@json_option
@state_dir_option
def create(name: str, serial: int | None, as_json: bool) -> None:
    """Create virtual key NAME (a new state file; refuses to overwrite one).

    NAME: 1 to 64 ASCII letters, digits, - and _ (not starting with -).
    """
    from hwtoken.emulator.key import VirtualKey

    path = paths.virtual_key_path(name)
    if path.exists():
        raise InvalidInput(f"virtual key {name!r} already exists ({path}); "
                           f"delete it first with `hwtoken emulate delete {name}`")
    with VirtualKey.create(path, serial=serial) as key:
        doc = {"name": name, "serial": key.serial, "version": _version_str(key.version),
               "aaguid": str(_uuid(key.aaguid)), "path": str(path)}
    if as_json:
        emit_json(doc)
    else:
        click.echo(f"created virtual key {name}: serial {doc['serial']}, firmware "
                   f"{doc['version']}, state {path}")


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
        elif r["served"]:
            served = "  served"
        click.echo(f"{r['name']:<16} serial {r['serial']:<10} firmware {r['version']}{served}")


@emulate.command()
@click.argument("name")
@json_option
@state_dir_option
def show(name: str, as_json: bool) -> None:
    """Show NAME: serial, firmware, AAGUID, credentials, OTP slots, PIN, state file."""
    info = _summary(name)
    if as_json:
        emit_json(info)
        return
    slots = ", ".join(f"{s}: {d['mode'] if d else 'empty'}"
                      for s, d in sorted(info["slots"].items()))
    lines = [
        ("name", info["name"]),
        ("serial", info["serial"]),
        ("firmware", info["version"]),
        ("AAGUID", info["aaguid"]),
        ("FIDO PIN", "set" if info["pin_set"] else "not set"),
        ("resident credentials", info["credentials"]),
        ("OTP slots", slots or "-"),
        ("OATH accounts", info["oath_accounts"]),
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
        lines.append(("served by", f"pid {s['pid']}: " + ", ".join(where)))
    for label, value in lines:
        click.echo(f"{label + ':':<22}{value}")


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
@click.option("--allow-remote", is_flag=True,
              help="Allow a non-loopback address: anyone who reaches it can use the key.")
@click.option("--touch", type=click.Choice(["auto", "deny", "prompt"]), default="auto",
              show_default=True, help="What a touch request does: approve, refuse, or ask here.")
@click.option("--pcsc", "pcsc", is_flag=True,
              help="Also connect to pcscd's vpcd driver as a smart card.")
@click.option("--pcsc-address", metavar="HOST:PORT",
              help=f"Where pcscd's vpcd driver listens (implies --pcsc; default {DEFAULT_PCSC}).")
@click.option("-v", "--verbose", is_flag=True, help="Log every client connection and error.")
@json_option
@state_dir_option
def serve(name: str, usbip_spec: str, no_usbip: bool, allow_remote: bool, touch: str,
          pcsc: bool, pcsc_address: str | None, verbose: bool, as_json: bool) -> None:
    """Serve NAME as a USB device (USB/IP) until Ctrl-C (exit 130) or SIGTERM (exit 0).

    While it runs, the key is locked and other commands given --device emu:NAME talk to
    this process. List it with `usbip --tcp-port PORT list -r 127.0.0.1`; on Linux with
    the vhci-hcd module, `sudo usbip attach -r 127.0.0.1 -b 1-1` makes it a real USB
    device for browsers, ykman and libfido2.
    """
    pcsc_spec = pcsc_address if pcsc_address is not None else (DEFAULT_PCSC if pcsc else None)
    with _serve_logging(verbose):
        _serve(name, usbip_spec, no_usbip, allow_remote, touch, pcsc_spec, as_json)


def _serve(name: str, usbip_spec: str, no_usbip: bool, allow_remote: bool, touch: str,
           pcsc_spec: str | None, as_json: bool) -> None:
    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.serve import KeyService, parse_endpoint
    from hwtoken.emulator.transports.vpcd import DEFAULT_PORT as VPCD_PORT

    path = devices.key_path_for(name)
    usbip = None if no_usbip else parse_endpoint(usbip_spec)
    pcsc = parse_endpoint(pcsc_spec, default_port=VPCD_PORT) if pcsc_spec else None
    if usbip is None and pcsc is None:
        raise InvalidInput("nothing to serve: give --usbip or --pcsc")
    try:
        key = VirtualKey.load(path)
    except DeviceBusy:
        doc = devices.running_serve(name)
        if doc is not None:
            raise DeviceBusy(f"virtual key {name!r} is already served by pid {doc['pid']}"
                             ) from None
        raise DeviceBusy(f"virtual key {name!r} is in use by another process") from None
    key.presence = _presence(touch)  # (once the key is ours: a prompt starts reading stdin)
    stop = threading.Event()
    stopped_by: list[int] = []
    previous: dict[int, Any] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        stopped_by.append(signum)
        stop.set()

    try:
        if threading.current_thread() is threading.main_thread():
            # (signal handlers can only be set in the main thread; a caller that runs the
            # CLI in another thread stops it by other means)
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        with key, KeyService(key, usbip=usbip, pcsc=pcsc, allow_remote=allow_remote) as svc:
            doc = svc.describe()
            if as_json:
                emit_json({"name": name, **doc})
            else:
                _print_banner(name, key.serial, doc, Path(path))
            sys.stdout.flush()
            _watch(svc, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not as_json:
        click.echo(f"stopped serving {name}")
    if stopped_by[:1] == [signal.SIGINT]:  # Ctrl-C: stopped cleanly, and says so like others
        click.echo("interrupted", err=True)
        sys.exit(INTERRUPTED)


PCSC_WARN_AFTER = 3.0  # seconds without pcscd's vpcd driver before serve says so


def _watch(svc: Any, stop: threading.Event) -> None:
    """Wait for SIGINT/SIGTERM; say so (on stderr) while pcscd's vpcd driver is absent."""
    started = time.monotonic()
    warned = False
    while not stop.wait(0.1 if svc.vpcd is not None else 0.5):
        vpcd = svc.vpcd
        if vpcd is None:
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
    if doc.get("pcsc"):
        p = doc["pcsc"]
        click.echo(f"  PC/SC   vpcd {_hostport(p['host'], p['port'])} (reader "
                   f"{devices.pcsc_reader_for(p['port'])!r})")
    click.echo(f"  other commands: --device emu:{name}; stop with Ctrl-C")
