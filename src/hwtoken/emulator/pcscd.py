"""Run a private pcscd: with the vpcd reader driver (for tests, the demo and ``emu:``
keys), or inside a umockdev testbed with Debian's CCID driver (:class:`UsbPcscd`).

pcscd 1.9 always puts its socket at ``/run/pcscd/pcscd.comm``; to run one next to a
system pcscd without touching it, ours runs in a private mount namespace
(``unshare --mount``) where a temporary directory is bind-mounted over ``/run/pcscd``.
Clients reach it through ``PCSCLITE_CSOCK_NAME=<tmp>/pcscd.comm`` (honoured by
libpcsclite, hence pyscard, ykman and fido2). Its vpcd readers "Virtual PCD 00 00" and
"Virtual PCD 00 01" listen on ``port`` and ``port + 1`` (a free pair by default). Its USB
driver directory is replaced in the namespace too: empty for :class:`Pcscd` (it never
grabs a real reader the system pcscd serves), libccid alone for :class:`UsbPcscd`.

Needs root (for the namespace and the bind mount), as ``make test`` runs. Note: libpcsclite
reads ``PCSCLITE_CSOCK_NAME`` once per process, so in-process pyscard users should set it
(:meth:`Pcscd.export_env`) before their first PC/SC call and keep one pcscd per process
(:func:`shared_pcscd`).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from hwtoken.errors import DeviceError

VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
USB_DRIVERS = "/usr/lib/pcsc/drivers"  # pcscd's hot-plug driver bundles (PCSCLITE_HP_DROPDIR)
CCID_BUNDLE = f"{USB_DRIVERS}/ifd-ccid.bundle"  # Debian's libccid
YUBIKEY_5_READER = "Yubico YubiKey OTP+FIDO+CCID"  # libccid's name of 1050:0407
FRIENDLY_NAME = "Virtual PCD"
READER_0 = "Virtual PCD 00 00"
READER_1 = "Virtual PCD 00 01"
SYSTEM_SOCKET = "/run/pcscd/pcscd.comm"


def _free_port_pair() -> int:
    """A port p such that p and p+1 are both free on this host (best effort)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s2:
            try:
                s2.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise DeviceError("no free TCP port pair for pcscd's vpcd readers")


def port_listening(port: int) -> bool:
    """True if some socket listens on TCP ``port`` (reads /proc/net/tcp, no connect)."""
    want = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[1].endswith(want) and parts[3] == "0A":
                return True
    return False


class Pcscd:
    """A private ``pcscd -f`` with only the vpcd driver; ``start()`` / ``stop()``.

    ``friendly_name`` names the readers (``"<name> 00 00"`` and ``"<name> 00 01"``): some
    clients only look at readers named like a YubiKey's (ykcs11 wants "Yubico...").
    """

    vpcd = True  #: this pcscd has the vpcd reader driver

    def __init__(self, port: int | None = None, workdir: str | os.PathLike[str] | None = None,
                 debug: bool = False, friendly_name: str = FRIENDLY_NAME) -> None:
        if not friendly_name or any(c in friendly_name for c in '"\n'):
            raise ValueError(f"unusable reader name {friendly_name!r}")
        self.port = port or (_free_port_pair() if self.vpcd else 0)
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="hwtoken-pcscd-"))
        self.debug = debug
        self.friendly_name = friendly_name
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.workdir / "run" / "pcscd.comm"

    @property
    def log_path(self) -> Path:
        return self.workdir / "pcscd.log"

    @property
    def env(self) -> dict[str, str]:
        """Environment for clients (subprocesses) of this pcscd."""
        return {"PCSCLITE_CSOCK_NAME": str(self.socket_path)}

    def client_env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default os.environ) plus :attr:`env`."""
        env = dict(os.environ if base is None else base)
        env.update(self.env)
        return env

    def export_env(self) -> None:
        """Point this process's libpcsclite at us (before its first PC/SC call)."""
        os.environ.update(self.env)

    @property
    def reader(self) -> str:
        """The reader the card served on :attr:`port` appears in."""
        return f"{self.friendly_name} 00 00"

    def start(self, timeout: float = 15.0) -> Pcscd:
        """Start pcscd and wait until it answers (its socket is there, and its vpcd port
        listens when it has the vpcd driver)."""
        if os.geteuid() != 0:
            raise DeviceError("a private pcscd needs root (mount namespace); run as root "
                              "or start the system pcscd with the vpcd driver")
        for tool in ("pcscd", "unshare"):
            if shutil.which(tool) is None:
                raise DeviceError(f"{tool} is not installed (apt-get install pcscd "
                                  "vsmartcard-vpcd util-linux)")
        if self.vpcd and not Path(VPCD_DRIVER).exists():
            raise DeviceError("the vpcd driver is missing: apt-get install vsmartcard-vpcd")
        run = self.workdir / "run"
        conf = self.workdir / "reader.conf.d"
        run.mkdir(parents=True, exist_ok=True)
        conf.mkdir(exist_ok=True)
        if self.vpcd:
            driver = self.workdir / "libifdvpcd.so"
            shutil.copyfile(VPCD_DRIVER, driver)
            (conf / "vpcd").write_text(
                f'FRIENDLYNAME "{self.friendly_name}"\n'
                f"DEVICENAME   /dev/null:0x{self.port:04X}\n"
                f"LIBPATH      {driver}\n"
                f"CHANNELID    0x{self.port:04X}\n")
        # The USB driver directory pcscd reads is replaced, inside the namespace, by one of
        # ours (:meth:`_usb_drivers`): empty here, so this pcscd never grabs a real USB
        # reader (or YubiKey) that the system pcscd serves.
        drivers = self._usb_drivers()
        flags = " ".join(self._flags())
        usb_drivers = Path(USB_DRIVERS)
        script = (f"mkdir -p /run/pcscd && mount --bind '{run}' /run/pcscd && "
                  f"{{ [ ! -d '{usb_drivers}' ] || mount --bind '{drivers}' '{usb_drivers}'; }}"
                  f" && exec pcscd {flags} -c '{conf}'")
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._daemon_env())
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DeviceError(f"pcscd exited at start: {self.log_tail()}")
            if self.socket_path.exists() and (not self.vpcd or port_listening(self.port)):
                return self
            time.sleep(0.05)
        self.stop()
        raise DeviceError(f"pcscd did not come up within {timeout:.0f} s: {self.log_tail()}")

    def _flags(self) -> list[str]:
        """pcscd's command-line options."""
        return ["-f", "-d"] if self.debug else ["-f"]

    def _usb_drivers(self) -> Path:
        """The directory bind-mounted over pcscd's USB driver directory (empty here)."""
        drivers = self.workdir / "drivers"
        drivers.mkdir(exist_ok=True)
        return drivers

    def _daemon_env(self) -> dict[str, str] | None:
        """pcscd's environment (None: this process's)."""
        return None

    def log_tail(self, n: int = 600) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:].strip()
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate pcscd (SIGTERM, then SIGKILL) and remove its files."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self, timeout: float = 15.0) -> None:
        """Stop and start again on the same port and socket (cards must reconnect)."""
        own, self._own_dir = self._own_dir, False
        self.stop()
        self._own_dir = own
        self.start(timeout)

    def __enter__(self) -> Pcscd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class UsbPcscd(Pcscd):
    """A private pcscd inside a umockdev testbed, with Debian's CCID driver (libccid).

    pcscd runs with the testbed's environment (:meth:`Testbed.env
    <hwtoken.emulator.transports.umockdev.Testbed.env>`), so its libudev hot plug and
    libccid's libusb see the keys plugged into ``testbed`` -- and only those -- as local USB
    devices, and reach each key's CCID interface through usbfs exactly as they reach a real
    YubiKey: the reader is ``"Yubico YubiKey OTP+FIDO+CCID 00 00"``. Keys plugged in or
    unplugged while it runs come and go as readers (pcscd hears the testbed's uevents).
    ``vpcd=True`` adds the vpcd driver's two readers as :class:`Pcscd` has them.

    A real YubiKey keeps its serial number out of its USB descriptors unless
    serial-usb-visible is set, so its reader name has none; the virtual key's descriptors
    carry it, so pcscd is told to leave it out of reader names (``reader_serial=True``
    keeps it: ``"Yubico YubiKey OTP+FIDO+CCID (12345678) 00 00"``).

    Stop it (:meth:`stop`) before the testbed is closed. Needs root, as :class:`Pcscd`.
    """

    def __init__(self, testbed: Any, *, vpcd: bool = False, reader_serial: bool = False,
                 port: int | None = None, workdir: str | os.PathLike[str] | None = None,
                 debug: bool = False, friendly_name: str = FRIENDLY_NAME) -> None:
        self.vpcd = vpcd
        super().__init__(port=port, workdir=workdir, debug=debug, friendly_name=friendly_name)
        self.testbed = testbed
        self.reader_serial = reader_serial

    @property
    def reader(self) -> str:
        """The reader of the first key plugged in (of the vpcd card with ``vpcd=True``)."""
        return super().reader if self.vpcd else f"{YUBIKEY_5_READER} 00 00"

    def _flags(self) -> list[str]:
        flags = super()._flags()
        if not self.reader_serial:
            flags.append("--reader-name-no-serial")
        return flags

    def _usb_drivers(self) -> Path:
        """A driver directory holding a copy of libccid's bundle only (no other USB
        reader driver of this machine), bind-mounted over pcscd's."""
        drivers = super()._usb_drivers()
        if not Path(CCID_BUNDLE, "Contents", "Info.plist").is_file():
            raise DeviceError(f"the CCID driver is missing ({CCID_BUNDLE}): "
                              "apt-get install libccid")
        bundle = drivers / Path(CCID_BUNDLE).name
        if not bundle.exists():
            shutil.copytree(CCID_BUNDLE, bundle, symlinks=True)
        return drivers

    def _daemon_env(self) -> dict[str, str]:
        return dict(self.testbed.env())

    def readers(self, timeout: float = 10.0) -> list[str]:
        """The readers this pcscd has now (asked with ``pcsc_scan -r`` in a child process,
        so this process's own PC/SC client is not tied to this pcscd)."""
        try:
            proc = subprocess.run(["pcsc_scan", "-r"], env=self.client_env(),
                                  capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise DeviceError("pcsc_scan is not installed (apt-get install pcsc-tools)"
                              ) from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"pcsc_scan -r did not answer within {timeout:.0f} s") from None
        names = []
        for line in proc.stdout.splitlines():
            head, sep, name = line.partition(": ")
            if sep and head.strip().isdigit():
                names.append(name.strip())
        return names

    def wait_for_readers(self, want: Any, timeout: float = 20.0) -> list[str]:
        """Wait until ``want(readers)`` is true; return the readers then (or fail with
        pcscd's log, which says why a reader did not come)."""
        deadline = time.monotonic() + timeout
        names: list[str] = []
        while True:
            if not self.running:
                raise DeviceError(f"pcscd exited: {self.log_tail()}")
            names = self.readers()
            if want(names):
                return names
            if time.monotonic() >= deadline:
                raise DeviceError(f"pcscd's readers after {timeout:.0f} s: {names} "
                                  f"({self.log_tail()})")
            time.sleep(0.2)


_shared: Pcscd | None = None
_shared_lock = threading.Lock()


def shared_pcscd() -> Pcscd:
    """This process's private pcscd (started on first use, stopped at exit); its socket
    is exported to ``os.environ`` so pyscard in this process uses it."""
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.running:
            if _shared is not None:
                _shared.restart()
            else:
                _shared = Pcscd().start()
                atexit.register(_shared.stop)
            _shared.export_env()
        return _shared


def stop_shared_pcscd() -> None:
    """Stop this process's private pcscd now, if it runs (a test harness ending a session;
    it also stops at exit). The next :func:`shared_pcscd` starts it again on the same
    socket and port: libpcsclite in this process read the socket's name once and keeps
    using it (a new pcscd elsewhere would be "Service not available" to it)."""
    with _shared_lock:
        shared = _shared
        if shared is None or not shared.running:
            return
        own, shared._own_dir = shared._own_dir, False  # keep its directory (the socket's)
        try:
            shared.stop()
        finally:
            shared._own_dir = own


def wait_for_card(reader: str = READER_0, timeout: float = 10.0) -> None:
    """Wait until a card answers in ``reader`` (pcscd notices insertions by polling).

    Uses pyscard in this process, so ``PCSCLITE_CSOCK_NAME`` must already be right.
    """
    from smartcard.System import readers

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            for r in readers():
                if r.name == reader:
                    conn = r.createConnection()
                    try:
                        conn.connect()
                        with contextlib.suppress(Exception):
                            conn.disconnect()
                        return
                    finally:
                        release = getattr(conn, "release", None)
                        if release is not None:
                            with contextlib.suppress(Exception):
                                release()
        except Exception as exc:  # noqa: BLE001 - no card yet, or pcscd still starting: retry
            last = exc
        time.sleep(0.1)
    raise DeviceError(f"no card in PC/SC reader {reader!r} after {timeout:.0f} s ({last})")


def wait_for_removal(reader: str = READER_0, timeout: float = 10.0) -> None:
    """Wait until pcscd reports ``reader`` empty (after its card went away).

    A card that reconnects before pcscd's presence poll saw the reader empty finds pcscd
    still answering for the old card (``VpcdLink`` repairs that, after a while); waiting
    for the removal first avoids it. Reads pcscd's reader state (SCardGetStatusChange)
    through pyscard in this process, like :func:`wait_for_card`; it never connects.
    """
    from smartcard import scard

    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return  # no pcscd: nothing holds a card
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hresult, states = scard.SCardGetStatusChange(
                ctx, 0, [(reader, scard.SCARD_STATE_UNAWARE)])
            if hresult not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_TIMEOUT):
                return  # no such reader (any more)
            if states and states[0][1] & (scard.SCARD_STATE_EMPTY | scard.SCARD_STATE_UNKNOWN):
                return
            time.sleep(0.05)
    finally:
        scard.SCardReleaseContext(ctx)
    raise DeviceError(f"PC/SC reader {reader!r} still holds a card after {timeout:.0f} s")
