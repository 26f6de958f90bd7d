"""The virtual key as a python-fido2 HID device, in process.

* :func:`hid_descriptor` / :func:`open_hid_connection` / :func:`fido_device` give a
  ``fido2.hid.base.HidDescriptor``, a ``CtapHidConnection`` and a ``CtapHidDevice`` whose
  64-byte reports go straight into the key's
  :class:`~hwtoken.emulator.applets.fido.ctaphid.CtapHidEngine`.
* :func:`register_with_fido2_hid` makes a key discoverable through fido2's own public
  functions — ``fido2.hid.list_descriptors()``, ``open_connection(descriptor)``,
  ``open_device(path)``, ``CtapHidDevice.list_devices()`` — next to any real keys, so test
  suites written for hardware keys run against it unchanged. Nothing on disk is modified:
  the hook wraps fido2's platform backend in memory, once, and only answers for paths of
  registered keys (``emu:<serial>``); everything else goes to the real backend.
* A key registered with ``replug_when_awaited`` also plays the person at the keyboard when a
  hardware-key suite says "disconnect the authenticator": such a suite then polls
  ``list_descriptors()`` until the key is gone and comes back. After
  :data:`AWAITED_POLLS` discovery polls in a row that list the key while nobody talks to
  it over :data:`AWAITED_SECONDS`, the key is unplugged, power-cycled and plugged in
  again (:func:`simulate_replug`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from fido2.hid import CtapHidDevice
from fido2.hid.base import CtapHidConnection, HidDescriptor

from hwtoken.emulator.applets.fido.ctaphid import REPORT_SIZE, CtapHidEngine

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.key import VirtualKey

PATH_PREFIX = "emu:"
DEFAULT_READ_TIMEOUT = 60.0
# "the suite waits for a replug": this many discovery polls listing the key, spread over
# at least this many seconds, with no report exchanged with the key in between (a suite that
# merely lists devices a few times in a row does not unplug its key)
AWAITED_POLLS = 3
AWAITED_SECONDS = 1.0
AWAITED_GAP = 5.0  # polls further apart than this are not one wait


def hid_path(key: VirtualKey) -> str:
    """The descriptor path of ``key``: ``emu:<serial>``."""
    return f"{PATH_PREFIX}{key.serial}"


def hid_descriptor(key: VirtualKey) -> HidDescriptor:
    """A ``HidDescriptor`` for ``key``'s FIDO interface: the VID, PID and product of its USB
    model (:func:`hwtoken.emulator.usb.key_usb_model`), 64-byte reports."""
    from hwtoken.emulator.usb import key_usb_model

    model = key_usb_model(key)
    return HidDescriptor(
        path=hid_path(key), vid=model.vendor_id, pid=model.product_id,
        report_size_in=REPORT_SIZE, report_size_out=REPORT_SIZE,
        product_name=model.product, serial_number=str(key.serial),
    )


class VirtualHidConnection(CtapHidConnection):
    """A ``CtapHidConnection`` whose reports go to a :class:`CtapHidEngine` in process.

    Each connection is its own engine (its own channels), like an open hidraw node; all
    connections of one key share its applet. ``read_packet`` raises ``OSError`` if the key
    sends nothing for ``read_timeout`` seconds (a waiting key sends keepalives meanwhile).
    """

    def __init__(self, key: VirtualKey, descriptor: HidDescriptor | None = None, *,
                 read_timeout: float = DEFAULT_READ_TIMEOUT) -> None:
        self.key = key
        self.descriptor = descriptor or hid_descriptor(key)
        self.read_timeout = read_timeout
        self.engine = CtapHidEngine(key)
        self.closed = False

    def write_packet(self, data: bytes) -> None:
        if self.closed:
            raise OSError("connection to the virtual key is closed")
        _activity[self.descriptor.path] = _activity.get(self.descriptor.path, 0) + 1
        self.engine.write(data)

    def read_packet(self) -> bytes:
        if self.closed:
            raise OSError("connection to the virtual key is closed")
        report = self.engine.read(self.read_timeout)
        if report is None:
            raise OSError(f"virtual key sent nothing for {self.read_timeout:g} s")
        # a host reading keepalives while the key waits for a touch is using it too
        _activity[self.descriptor.path] = _activity.get(self.descriptor.path, 0) + 1
        return report

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.engine.close()


def open_hid_connection(key: VirtualKey, *,
                        read_timeout: float = DEFAULT_READ_TIMEOUT) -> VirtualHidConnection:
    """A ``fido2.hid.base.CtapHidConnection`` carrying raw 64-byte reports into ``key``."""
    return VirtualHidConnection(key, read_timeout=read_timeout)


def fido_device(key: VirtualKey, *, read_timeout: float = DEFAULT_READ_TIMEOUT) -> CtapHidDevice:
    """A ``fido2.hid.CtapHidDevice`` for ``key`` (INIT is done; ready for Ctap2/Fido2Client)."""
    conn = VirtualHidConnection(key, read_timeout=read_timeout)
    try:
        return CtapHidDevice(conn.descriptor, conn)
    except BaseException:
        conn.close()
        raise


# -- discovery through fido2.hid ---------------------------------------------------------
_registry: dict[str, VirtualKey] = {}
_registry_lock = threading.Lock()
_installed = False
_activity: dict[str, int] = {}  # path -> reports exchanged with the key (any connection)
_auto_replug: dict[str, float] = {}  # path -> seconds away, for replug_when_awaited keys
# path -> (activity seen, idle polls in a row, time of the first, time of the last)
_idle_polls: dict[str, tuple[int, int, float, float]] = {}
_replugging: dict[str, int] = {}  # path -> generation of the pending plug-in
_generation = 0


def register_with_fido2_hid(key: VirtualKey, *,
                            replug_when_awaited: float | None = None) -> HidDescriptor:
    """Make ``key`` appear in ``fido2.hid.list_descriptors()`` and open through fido2.

    After this, ``fido2.hid.open_connection(desc)`` for its descriptor, ``open_device(path)``
    with its path and ``CtapHidDevice.list_devices()`` reach the key, including from code
    that imported those names earlier. Returns the key's descriptor. Undo with
    :func:`unregister_from_fido2_hid` (or use :func:`registered_with_fido2_hid`).

    ``replug_when_awaited=SECONDS``: when discovery is polled :data:`AWAITED_POLLS` times
    over :data:`AWAITED_SECONDS` with the key listed and idle (a suite waiting for the
    user to unplug it), the key unplugs itself, power-cycles and comes back SECONDS later,
    as a person would. The setting lasts until :func:`unregister_from_fido2_hid`.
    """
    _install()
    path = hid_path(key)
    with _registry_lock:
        _registry[path] = key
        _idle_polls.pop(path, None)
        if replug_when_awaited is not None:
            _auto_replug[path] = max(0.0, float(replug_when_awaited))
    return hid_descriptor(key)


def unregister_from_fido2_hid(key: VirtualKey) -> None:
    """Hide ``key`` from ``fido2.hid`` discovery again (open connections keep working).

    Also cancels a pending plug-in of :func:`simulate_replug` and ``replug_when_awaited``.
    """
    path = hid_path(key)
    with _registry_lock:
        _registry.pop(path, None)
        _auto_replug.pop(path, None)
        _idle_polls.pop(path, None)
        _replugging.pop(path, None)


@contextmanager
def registered_with_fido2_hid(key: VirtualKey, *,
                              replug_when_awaited: float | None = None,
                              ) -> Iterator[HidDescriptor]:
    """``with registered_with_fido2_hid(key) as desc:`` — registered for the block."""
    desc = register_with_fido2_hid(key, replug_when_awaited=replug_when_awaited)
    try:
        yield desc
    finally:
        unregister_from_fido2_hid(key)


def simulate_replug(key: VirtualKey, away: float = 1.0) -> threading.Thread:
    """Unplug ``key`` from ``fido2.hid`` discovery, and plug it in again ``away`` s later.

    What a person does when a test suite for hardware keys says "disconnect the
    authenticator" (e.g. before a factory reset, which only works right after power-up):
    the key disappears from ``list_descriptors()``, is power-cycled, and reappears with
    the same path (and its ``replug_when_awaited`` setting). Returns the (daemon) thread
    doing it; ``join()`` it to wait. :func:`unregister_from_fido2_hid` meanwhile cancels
    the plug-in.
    """
    global _generation
    path = hid_path(key)
    with _registry_lock:
        _registry.pop(path, None)
        _idle_polls.pop(path, None)
        auto = _auto_replug.get(path)
        _generation += 1
        generation = _replugging[path] = _generation

    def plug_in() -> None:
        time.sleep(away)
        with _registry_lock:
            if _replugging.get(path) != generation:
                return  # unregistered (or replugged again) meanwhile
            del _replugging[path]
        key.power_cycle()
        register_with_fido2_hid(key, replug_when_awaited=auto)

    thread = threading.Thread(target=plug_in, daemon=True, name="hwtoken-replug")
    thread.start()
    return thread


def _lookup(path: Any) -> VirtualKey | None:
    if isinstance(path, bytes):
        try:
            path = path.decode()
        except UnicodeDecodeError:
            return None
    if not isinstance(path, str) or not path.startswith(PATH_PREFIX):
        return None
    with _registry_lock:
        return _registry.get(path)


def _virtual_descriptors() -> list[HidDescriptor]:
    """Registered keys, for one discovery poll (which may unplug an awaited key)."""
    listed: list[HidDescriptor] = []
    awaited: list[tuple[VirtualKey, float]] = []
    now = time.monotonic()
    with _registry_lock:
        for path, key in _registry.items():
            away = _auto_replug.get(path)
            if away is not None:
                seen = _activity.get(path, 0)
                last, polls, first, prev = _idle_polls.get(path, (seen, 0, now, now))
                if last != seen or now - prev > AWAITED_GAP:
                    polls, first = 0, now
                polls += 1
                _idle_polls[path] = (seen, polls, first, now)
                if polls >= AWAITED_POLLS and now - first >= AWAITED_SECONDS:
                    awaited.append((key, away))
                    continue
            listed.append(hid_descriptor(key))
    for key, away in awaited:
        simulate_replug(key, away)
    return listed


def _install() -> None:
    """Hook fido2's HID backend once (idempotent)."""
    global _installed
    with _registry_lock:
        if _installed:
            return
        _installed = True
    import fido2.hid as fhid

    if sys.platform == "linux" and _install_linux(fhid):
        return
    _install_generic(fhid)


def _install_linux(fhid: Any) -> bool:
    """Wrap what ``fido2.hid.linux``'s functions look up at call time.

    ``list_descriptors`` globs ``/dev/hidraw*`` and calls ``get_descriptor`` for each path;
    ``open_connection`` builds a ``LinuxCtapHidConnection``. Wrapping those module globals
    makes even references taken before registration (``from fido2.hid import
    list_descriptors``) see virtual keys. Returns False if this fido2 is laid out otherwise.
    """
    backend = getattr(fhid, "backend", None)
    if backend is None or backend.__name__ != "fido2.hid.linux":
        return False
    real_glob = getattr(backend, "glob", None)
    real_get = getattr(backend, "get_descriptor", None)
    real_conn = getattr(backend, "LinuxCtapHidConnection", None)
    if real_glob is None or real_get is None or not isinstance(real_conn, type):
        return False

    class _GlobShim:
        """``glob`` as the backend sees it: real hidraw nodes plus registered keys."""

        def __getattr__(self, name: str) -> Any:
            return getattr(real_glob, name)

        @staticmethod
        def glob(pattern: str, *args: Any, **kwargs: Any) -> list[str]:
            found = list(real_glob.glob(pattern, *args, **kwargs))
            if pattern == "/dev/hidraw*":
                found += [d.path for d in _virtual_descriptors()]
            return found

    def get_descriptor(path: Any) -> HidDescriptor:
        key = _lookup(path)
        return hid_descriptor(key) if key is not None else real_get(path)

    class _Connection(real_conn):  # type: ignore[misc, valid-type]
        """Opens registered virtual keys in process, real hidraw nodes as before."""

        def __new__(cls, descriptor: HidDescriptor, *args: Any, **kwargs: Any) -> Any:
            key = _lookup(getattr(descriptor, "path", None))
            if key is not None:
                return VirtualHidConnection(key, descriptor)
            return super().__new__(cls)

    backend.glob = _GlobShim()
    backend.get_descriptor = get_descriptor
    backend.LinuxCtapHidConnection = _Connection
    fhid.get_descriptor = get_descriptor  # used by fido2.hid.open_device
    return True


def _install_generic(fhid: Any) -> None:
    """Other platforms: wrap ``fido2.hid``'s public discovery functions themselves."""
    real_list, real_get, real_open = (fhid.list_descriptors, fhid.get_descriptor,
                                      fhid.open_connection)

    def list_descriptors() -> list[HidDescriptor]:
        return list(real_list()) + _virtual_descriptors()

    def get_descriptor(path: Any) -> HidDescriptor:
        key = _lookup(path)
        return hid_descriptor(key) if key is not None else real_get(path)

    def open_connection(descriptor: HidDescriptor) -> CtapHidConnection:
        key = _lookup(getattr(descriptor, "path", None))
        if key is not None:
            return VirtualHidConnection(key, descriptor)
        return real_open(descriptor)

    fhid.list_descriptors = list_descriptors
    fhid.get_descriptor = get_descriptor
    fhid.open_connection = open_connection
