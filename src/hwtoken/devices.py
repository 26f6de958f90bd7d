"""Device specs: which key a command talks to (DESIGN.md rule 5).

``--device`` takes ``emu:NAME`` for a virtual key (state file
``<state-dir>/keys/NAME.key``) or anything else for a real key: a serial number
(digits) or a device path (for PC/SC commands, a reader name). No ``--device`` means
"the one key plugged in": the real keys found, plus the virtual keys that
``hwtoken emulate serve`` serves right now (:func:`pick_one`). A virtual key that is
only a file in the state directory counts only when named with ``emu:``.

For a virtual key, commands do not care whether ``hwtoken emulate serve NAME`` is
running in another process (it holds the key's lock and writes ``NAME.serve.json``):

* :func:`open_virtual` yields a :class:`VirtualHandle`: either the loaded key
  (``handle.key``, no serve running) or the running serve's endpoints
  (``handle.usbip`` / ``handle.pcsc``, ``handle.key is None``).
* :func:`usbip_endpoint_for` yields ``(host, port, busid)`` of a USB/IP server for the
  key: the running serve's (its private Unix socket: ``host`` is then the socket's path
  and ``port`` 0), or a temporary one on a free loopback port.
* :func:`fido_device_for` yields a fido2 ``CtapDevice`` (in-process, or over USB/IP
  when a serve runs, or through pcscd when the serve has PC/SC only).
* :func:`pyusb_backend_for` yields a pyusb backend for the key and makes it pyusb's
  default, so python-yubico's ``find_yubikey()`` finds it unmodified.

Example::

    spec = parse_spec(device)
    if spec.is_virtual:
        with usbip_endpoint_for(spec.name) as (host, port, busid): ...
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwtoken import paths
from hwtoken.errors import DeviceBusy, InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from fido2.ctap import CtapDevice

    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.presence import UserPresence

VIRTUAL_PREFIX = "emu:"


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed ``--device`` value."""

    raw: str | None
    name: str | None = None  # virtual key name (emu:NAME)
    serial: int | None = None  # real key by serial number
    path: str | None = None  # real key by device path

    @property
    def is_virtual(self) -> bool:
        return self.name is not None

    @property
    def key_path(self) -> Path:
        """State file of the virtual key (only for ``emu:NAME``)."""
        if self.name is None:
            raise InvalidInput(f"{self.raw!r} is not a virtual key (emu:NAME)")
        return paths.virtual_key_path(self.name)


def parse_spec(spec: str | None) -> DeviceSpec:
    """Parse ``emu:NAME``, a serial number, a device path, or None (the one key present).

    :class:`InvalidInput` for an ``emu:`` name that cannot be a virtual key, or text that
    is not valid UTF-8.
    """
    if spec is None or spec.strip() == "":
        return DeviceSpec(raw=None)
    spec = spec.strip()
    try:
        spec.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("--device is not valid UTF-8 text") from None
    if spec.startswith(VIRTUAL_PREFIX):
        name = spec[len(VIRTUAL_PREFIX):]
        paths.virtual_key_path(name)  # validates the name
        return DeviceSpec(raw=spec, name=name)
    if spec.isdigit():
        return DeviceSpec(raw=spec, serial=int(spec))
    return DeviceSpec(raw=spec, path=spec)


def virtual_key_names() -> list[str]:
    """Names of the virtual keys in the state directory, sorted."""
    d = paths.private_dir(paths.keys_dir(), create=False)
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("*.key") if not p.name.startswith("."))


def served_virtual_names(*, transport: str | None = None) -> list[str]:
    """Virtual keys a live ``hwtoken emulate serve`` serves now (with ``transport``
    "usbip" or "pcsc": only those served over it), sorted."""
    out = []
    for name in virtual_key_names():
        try:
            doc = running_serve(name)
        except (InvalidInput, OSError, ValueError):
            continue
        if doc is None:
            continue
        reachable = doc.get(transport) if transport else (doc.get("usbip") or doc.get("pcsc"))
        if reachable:  # (a key a testbed holds is found there as the USB device it is)
            out.append(name)
    return out


def local_plug(runtime: dict[str, Any] | None) -> dict[str, Any] | None:
    """Where a key held by a testbed (``emulate run``, ``serve --local``) is plugged in, if
    this process runs inside that testbed; None otherwise."""
    local = (runtime or {}).get("local")
    if isinstance(local, dict) and local.get("plugged") and \
            os.environ.get("UMOCKDEV_DIR") == local.get("dir"):
        return local
    return None


def unreachable_local(name: str, runtime: dict[str, Any]) -> str:
    """Why a key that only a testbed holds cannot be used from here, and what to do."""
    local = runtime.get("local") or {}
    if local and not local.get("plugged"):
        return (f"virtual key {name!r} is unplugged in the testbed of pid {runtime.get('pid')}; "
                f"plug it in with `hwtoken emulate plug {name}`")
    return (f"virtual key {name!r} is plugged in locally by pid {runtime.get('pid')} (a "
            "umockdev testbed): run this command inside it (`hwtoken emulate run ... -- CMD`), "
            f"or export UMOCKDEV_DIR={local.get('dir')} LD_PRELOAD={local.get('preload')}")


def pick_one(real: list[str], *, what: str, transport: str | None = None) -> str:
    """The ``--device`` value of the one key present when none was given.

    ``real`` are the specs of the real keys found; served virtual keys count too
    (:func:`served_virtual_names`). :class:`DeviceError` if there is none,
    :class:`InvalidInput` naming the candidates if there are several.
    """
    from hwtoken.errors import DeviceError

    candidates = list(real) + [VIRTUAL_PREFIX + n
                               for n in served_virtual_names(transport=transport)]
    if not candidates:
        raise DeviceError(f"no {what} found: plug one in, or pick a virtual key with "
                          "--device emu:NAME (see `hwtoken emulate list`)")
    if len(candidates) > 1:
        raise InvalidInput(f"{len(candidates)} {what}s found; choose one with --device (or "
                           f"$HWTOKEN_DEVICE): {', '.join(candidates)}")
    return candidates[0]


def key_path_for(name: str, *, must_exist: bool = True) -> Path:
    """State file of virtual key ``name``; InvalidInput if it must exist and does not."""
    path = paths.virtual_key_path(name)
    paths.private_dir(path.parent, create=False)
    if must_exist and not path.exists():
        raise InvalidInput(f"no virtual key named {name!r} in {path.parent}; create it with "
                           f"`hwtoken emulate create {name}`")
    return path


def check_virtual(name: str) -> Path:
    """The state file of virtual key ``name`` once it is known to be usable.

    :class:`InvalidInput` if there is no such key, or its state file cannot be read or is
    damaged. Takes no lock: works while the key is served or open elsewhere.
    """
    from hwtoken.emulator.store import KeyStore

    path = key_path_for(name)
    KeyStore.read(path)
    return path


def running_serve(name: str) -> dict[str, Any] | None:
    """The runtime document of a live ``hwtoken emulate serve NAME``, or None.

    Keys: ``pid``, ``serial``, ``usbip`` ({host, port, busid} or None), ``pcsc``
    ({host, port} or None).
    """
    from hwtoken.emulator.serve import read_runtime

    return read_runtime(paths.virtual_key_path(name))


@dataclass
class VirtualHandle:
    """What :func:`open_virtual` yields: the loaded key or the running serve's endpoints."""

    name: str
    path: Path
    key: VirtualKey | None = None  # loaded in this process (no serve running)
    usbip: tuple[str, int, str] | None = None  # (host or socket path, port, busid) of a serve
    pcsc: tuple[str, int] | None = None  # vpcd endpoint of a running serve
    runtime: dict[str, Any] = field(default_factory=dict)

    @property
    def served(self) -> bool:
        """True if another process serves the key (talk to it through its endpoints)."""
        return self.key is None


@contextlib.contextmanager
def open_virtual(name: str, *, presence: UserPresence | None = None
                 ) -> Iterator[VirtualHandle]:
    """Open virtual key ``name`` for one command.

    If ``hwtoken emulate serve NAME`` runs, yields its endpoints (``key`` is None);
    otherwise loads the key in this process (locked until the block ends, state
    committed on exit). :class:`~hwtoken.errors.DeviceBusy` if another process holds
    the key without serving it.
    """
    path = key_path_for(name)
    doc = running_serve(name)
    if doc is not None:
        yield _handle_from_runtime(name, path, doc)
        return
    from hwtoken.emulator.key import VirtualKey

    try:
        key = VirtualKey.load(path, presence=presence)
    except DeviceBusy:
        doc = running_serve(name)  # a serve may have started just now
        if doc is None:
            raise
        yield _handle_from_runtime(name, path, doc)
        return
    try:
        yield VirtualHandle(name=name, path=path, key=key)
    finally:
        key.close()


def _handle_from_runtime(name: str, path: Path, doc: dict[str, Any]) -> VirtualHandle:
    usbip = doc.get("usbip") or None
    pcsc = doc.get("pcsc") or None
    endpoint = None
    if usbip:
        sock = usbip.get("socket")
        if isinstance(sock, str) and os.path.exists(sock):  # the serve's private socket
            endpoint = (sock, 0, usbip["busid"])
        else:
            endpoint = (usbip["host"], int(usbip["port"]), usbip["busid"])
    return VirtualHandle(
        name=name, path=path, runtime=doc, usbip=endpoint,
        pcsc=(pcsc["host"], int(pcsc["port"])) if pcsc else None,
    )


@contextlib.contextmanager
def usbip_endpoint_for(name: str, *, presence: UserPresence | None = None
                       ) -> Iterator[tuple[str, int, str]]:
    """``(host, port, busid)`` of a USB/IP server exporting virtual key ``name``.

    Uses the running serve when there is one; otherwise loads the key and serves it on
    a free loopback port for the duration of the block.
    """
    with open_virtual(name, presence=presence) as handle:
        if handle.key is None:
            if handle.usbip is None:
                raise InvalidInput(f"virtual key {name!r} is served without USB/IP; restart "
                                   f"`hwtoken emulate serve {name}` with --usbip")
            yield handle.usbip
            return
        with served_key(handle.key) as address:
            yield address


@contextlib.contextmanager
def served_key(key: VirtualKey) -> Iterator[tuple[str, int, str]]:
    """Serve an already-open key on a free loopback port: yields (host, port, busid)."""
    from hwtoken.emulator.serve import served

    with served(key) as srv:
        yield srv.address


def pcsc_reader_for(port: int) -> str:
    """The PC/SC reader name pcscd's vpcd driver gives the card served on ``port``.

    ``$HWTOKEN_PCSC_READER`` overrides it (a pcscd configured with other ports).
    """
    import os

    from hwtoken.emulator.pcscd import READER_0, READER_1
    from hwtoken.emulator.transports.vpcd import DEFAULT_PORT

    override = os.environ.get("HWTOKEN_PCSC_READER")
    if override:
        return override
    return READER_1 if port == DEFAULT_PORT + 1 else READER_0


def pcsc_fido_device(name: str, port: int) -> CtapDevice:
    """fido2's ``CtapPcscDevice`` for a key a serve inserted into pcscd (vpcd)."""
    from fido2.pcsc import CtapPcscDevice

    from hwtoken.emulator.pcscd import wait_for_card
    from hwtoken.errors import DeviceError

    reader = pcsc_reader_for(port)
    try:
        wait_for_card(reader, timeout=10)
    except DeviceError as exc:
        raise DeviceError(f"virtual key {name!r} is served over PC/SC only and {exc}; is "
                          "pcscd with the vpcd driver running?") from None
    from smartcard.System import readers

    for r in readers():
        if r.name == reader:
            try:
                return CtapPcscDevice(r.createConnection(), r.name)
            except Exception as exc:  # noqa: BLE001 - pyscard and fido2 raise many kinds
                raise DeviceError(f"virtual key {name!r}: the card in PC/SC reader {reader!r} "
                                  f"does not answer as a FIDO key ({exc})") from None
    raise DeviceError(f"virtual key {name!r}: no PC/SC reader named {reader!r}")


@contextlib.contextmanager
def fido_device_for(name: str, *, presence: UserPresence | None = None
                    ) -> Iterator[CtapDevice]:
    """A fido2 ``CtapDevice`` for virtual key ``name``.

    In-process (no network) when no serve runs; otherwise through the running serve:
    over USB/IP (a ``CtapHidDevice``), or, for a serve with PC/SC only, through pcscd
    (fido2's ``CtapPcscDevice``, the NFC path).
    """
    with open_virtual(name, presence=presence) as handle:
        dev: CtapDevice
        if handle.key is not None:
            from hwtoken.emulator import fido_device

            dev = fido_device(handle.key)
        elif handle.usbip is not None:
            from hwtoken.emulator.transports.usbip_fido import open_usbip_fido

            dev = open_usbip_fido(*handle.usbip)
        elif handle.pcsc is not None:
            dev = pcsc_fido_device(name, handle.pcsc[1])
        else:
            raise InvalidInput(f"virtual key {name!r} is served without USB/IP or PC/SC")
        try:
            yield dev
        finally:
            with contextlib.suppress(Exception):
                dev.close()


@contextlib.contextmanager
def pyusb_backend_for(name: str, *, presence: UserPresence | None = None,
                      make_default: bool = True) -> Iterator[Any]:
    """A pyusb backend reaching virtual key ``name`` over USB/IP.

    With ``make_default`` (the default) pyusb's own discovery uses it inside the block,
    so ``yubico.find_yubikey()`` (which calls ``usb.core.find`` with no backend) finds
    the virtual key. Uses the running serve or a temporary one.
    """
    from hwtoken.emulator.transports.pyusb_backend import UsbipBackend, use_backend

    with usbip_endpoint_for(name, presence=presence) as (host, port, busid):
        backend = UsbipBackend(host, port, busid=busid)
        try:
            if make_default:
                with use_backend(backend):
                    yield backend
            else:
                yield backend
        finally:
            backend.close()
