"""A umockdev testbed in which virtual keys are plugged in as local USB devices.

:class:`Testbed` makes a temporary directory with a fake sysfs and /dev (:mod:`.sysfs`,
:mod:`.layout`), plugs keys into it (:meth:`Testbed.plug`: their USB device model is
enumerated like a kernel does and each hidraw node is served by :mod:`.hidraw`), and
hands out the environment (:meth:`Testbed.env`) under which a program — through umockdev's
``LD_PRELOAD`` library, with no root and no kernel module — sees the keys as
``/dev/hidrawN`` and ``/dev/bus/usb/001/NNN`` with the sysfs tree of a real YubiKey.

Everything is torn down by :meth:`Testbed.close`: the nodes' sockets, the ptys, the
directory; the keys' state is committed and their USB sessions closed. Keys are opened
(and locked) by the caller; the testbed never closes them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwtoken.emulator.transports.umockdev import enumeration, layout
from hwtoken.emulator.transports.umockdev.hidraw import READ_MODES, HidDevice, HidrawNode
from hwtoken.emulator.transports.umockdev.preload import (
    Connection,
    NodeListener,
    OpenFile,
)
from hwtoken.emulator.transports.umockdev.ptyqueue import PtyPool, Watcher
from hwtoken.emulator.transports.umockdev.sysfs import Sysfs
from hwtoken.errors import DeviceError, InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.usb import YubiKeyUsb

log = logging.getLogger(__name__)

PRELOAD_NAME = "libumockdev-preload.so.0"
PRELOAD_ENV = "HWTOKEN_UMOCKDEV_PRELOAD"  # where the library is, if not in a standard place
DEBIAN_PACKAGES = "umockdev"  # the package with libumockdev-preload.so.0 (and umockdev-run)
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
             "/usr/lib/arm-linux-gnueabihf", "/usr/lib/i386-linux-gnu", "/usr/lib64",
             "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu", "/lib64")
MAX_ROOT_LEN = 60  # leave room in a Unix socket path (108 bytes) below the root


class UmockdevUnavailable(DeviceError):
    """umockdev's preload library is not installed."""


def find_preload() -> Path:
    """The path of umockdev's preload library; :class:`UmockdevUnavailable` if missing."""
    override = os.environ.get(PRELOAD_ENV)
    candidates = [Path(override)] if override else [Path(d) / PRELOAD_NAME for d in _LIB_DIRS]
    for path in candidates:
        if path.is_file():
            return path
    where = override or ", ".join(_LIB_DIRS)
    raise UmockdevUnavailable(
        f"umockdev's {PRELOAD_NAME} was not found ({where}): install the Debian package "
        f"{DEBIAN_PACKAGES!r} (apt install {DEBIAN_PACKAGES}) or set ${PRELOAD_ENV}")


class _DefaultFile(OpenFile):
    """Any other node of the testbed (a root hub's usbfs node): no ioctls."""


@dataclass
class PluggedKey:
    """One key plugged into a testbed: where it is and what serves it."""

    key: Any
    usb: Any
    port: int
    devnum: int
    tree: layout.UsbTree
    description: enumeration.UsbDescription
    nodes: dict[str, HidrawNode] = field(default_factory=dict)
    listeners: list[NodeListener] = field(default_factory=list)
    pools: list[PtyPool] = field(default_factory=list)
    own_usb: bool = True  # the testbed made the USB model (and stops it at unplug)

    @property
    def hidraw(self) -> list[str]:
        """The key's hidraw device paths, e.g. ``["/dev/hidraw0", "/dev/hidraw1"]``."""
        return [f"/dev/{n}" for n in self.nodes]

    @property
    def usbfs(self) -> str:
        return f"/dev/{self.tree.usbfs}"

    def node_for_usage_page(self, page: int) -> str | None:
        """The hidraw path of the interface whose report descriptor starts with ``page``
        (0xF1D0: FIDO; 0x01: the OTP keyboard)."""
        for name, node in self.nodes.items():
            if enumeration.usage_page(node.hid.report_descriptor) == page:
                return f"/dev/{name}"
        return None

    @property
    def fido_hidraw(self) -> str | None:
        return self.node_for_usage_page(0xF1D0)

    @property
    def otp_hidraw(self) -> str | None:
        return self.node_for_usage_page(0x01)


class Testbed:
    """A temporary device tree with virtual keys plugged in; see the module docstring.

    ``reads`` chooses how ``read()`` on a hidraw node is answered: ``auto`` (default; see
    :mod:`.ptyqueue`), ``emulated`` (always inside umockdev's call) or ``pty`` (always by
    the program from its pty).
    """

    def __init__(self, *, reads: str = "auto", tmpdir: str | os.PathLike[str] | None = None
                 ) -> None:
        if reads not in READ_MODES:
            raise InvalidInput(f"--reads must be one of {', '.join(READ_MODES)}")
        from hwtoken.emulator.transports.umockdev.runner import remove_stale_testbeds

        self.preload = find_preload()
        self.reads = reads
        base = _short_tmp(tmpdir)
        remove_stale_testbeds(base)
        self.root = Path(tempfile.mkdtemp(prefix="hwtoken-umockdev.", dir=base))
        (self.root / "owner.pid").write_text(f"{os.getpid()}\n")
        self._lock = threading.RLock()
        self._closed = False
        self._plugged: dict[int, PluggedKey] = {}  # port -> key
        self._next_devnum = 2  # 1 is the root hub
        self._hid_seq = 1
        try:
            self.sysfs = Sysfs(self.root)
            (self.root / "dev").mkdir(exist_ok=True)
            self.watcher = Watcher()
            self._default = NodeListener(self.root / "ioctl" / "_default",
                                         lambda conn: _DefaultFile(conn), "default")
            for dev in layout.root_hub():
                self.sysfs.add(dev)
            self._touch_node(layout.usbfs_node(layout.BUS, 1))
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise

    # -- environment -------------------------------------------------------------------------
    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with the testbed switched on."""
        env = dict(os.environ if base is None else base)
        preload = str(self.preload)
        existing = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p]
        env["LD_PRELOAD"] = ":".join([preload, *[p for p in existing if p != preload]])
        env["UMOCKDEV_DIR"] = str(self.root)
        return env

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` with the keys plugged in (``subprocess.run`` arguments apply)."""
        kwargs["env"] = self.env(kwargs.get("env"))
        return subprocess.run(list(argv), **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` with the keys plugged in (``subprocess.Popen`` arguments apply)."""
        kwargs["env"] = self.env(kwargs.get("env"))
        return subprocess.Popen(list(argv), **kwargs)

    # -- plugging ----------------------------------------------------------------------------
    @property
    def plugged(self) -> list[PluggedKey]:
        with self._lock:
            return [self._plugged[p] for p in sorted(self._plugged)]

    def plug(self, key: VirtualKey, *, usb: YubiKeyUsb | None = None) -> PluggedKey:
        """Plug ``key`` in on the next free port; its nodes appear in the tree.

        The key is power-cycled as when a real key is inserted (volatile state dropped,
        the FIDO reset window opens).
        """
        from hwtoken.emulator.usb import YubiKeyUsb

        with self._lock:
            if self._closed:
                raise DeviceError("the testbed is closed")
            if any(p.key is key for p in self._plugged.values()):
                raise InvalidInput(f"virtual key {key.serial} is already plugged in")
            port = next(p for p in range(1, 128) if p not in self._plugged)
            devnum = self._next_devnum
            self._next_devnum = 2 + (self._next_devnum - 1) % 126
            with key.lock:
                key.power_cycle()
            model = usb if usb is not None else YubiKeyUsb(key)
            model.start()
            try:
                desc = enumeration.describe(model.device)
                tree = layout.usb_device_tree(desc, port=port, devnum=devnum,
                                              hid_seq=self._hid_seq,
                                              hidraw_minor=self._free_hidraw_minor())
                self._hid_seq += len(tree.hidraw)
                plugged = PluggedKey(key, model, port, devnum, tree, desc,
                                     own_usb=usb is None)
                for dev in tree.devices:
                    self.sysfs.add(dev)
                self._touch_node(tree.usbfs)
                for hn in tree.hidraw:
                    self._serve_hidraw(plugged, hn)
            except BaseException:
                if usb is None:
                    model.stop()
                raise
            self._plugged[port] = plugged
            log.info("plugged virtual key %s into port %s (%s)", key.serial, port,
                     ", ".join(plugged.hidraw))
            return plugged

    def _serve_hidraw(self, plugged: PluggedKey, hn: layout.HidNode) -> None:
        iface = next(i for i in plugged.description.interfaces
                     if i.number == hn.interface and not i.alternate)
        hid = HidDevice(iface, plugged.description, hn.name, hn.phys, hn.uniq)
        node_path = self.root / "dev" / hn.hidraw
        in_size = max(1, hid.sizes["input"] + hid.sizes["report_ids"])
        pool = PtyPool(node_path, vmin=in_size)
        plugged.pools.append(pool)
        node = HidrawNode(hid, plugged.usb, pool, self.watcher, reads=self.reads)
        plugged.nodes[hn.hidraw] = node
        plugged.listeners.append(
            NodeListener(self.root / "ioctl" / "dev" / hn.hidraw, node.open, hn.hidraw))

    def _free_hidraw_minor(self) -> int:
        used = {int(n[6:]) for p in self._plugged.values() for n in p.nodes}
        return next(m for m in range(1024) if m not in used)

    def _touch_node(self, devnode: str) -> None:
        """A plain-file node (umockdev makes usbfs nodes regular files)."""
        path = self.root / "dev" / devnode
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def unplug(self, key: VirtualKey | PluggedKey) -> None:
        """Pull the key out: its nodes and sysfs entries go, open files get ENODEV."""
        with self._lock:
            plugged = key if isinstance(key, PluggedKey) else next(
                (p for p in self._plugged.values() if p.key is key), None)
            if plugged is None or self._plugged.get(plugged.port) is not plugged:
                raise InvalidInput("that key is not plugged in")
            del self._plugged[plugged.port]
        for node in plugged.nodes.values():
            node.unplug()
        for listener in plugged.listeners:
            listener.close()
        self.sysfs.remove(plugged.tree.syspath)
        with contextlib.suppress(FileNotFoundError):
            (self.root / "dev" / plugged.tree.usbfs).unlink()
        for pool in plugged.pools:
            pool.close()
        if plugged.own_usb:
            plugged.usb.stop()
        with contextlib.suppress(Exception), plugged.key.lock:
            plugged.key.store.commit()
        log.info("unplugged virtual key %s from port %s", plugged.key.serial, plugged.port)

    # -- lifecycle ---------------------------------------------------------------------------
    def close(self) -> None:
        """Unplug every key and remove the tree (idempotent).

        Call it once the programs that use the keys have ended: an open file of a program
        still running gets ENODEV, and its next call after the sockets are gone makes
        umockdev's library abort that program.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            plugged = list(self._plugged.values())
        for p in plugged:
            with contextlib.suppress(Exception):
                self.unplug(p)
        for p in plugged:
            for listener in p.listeners:
                listener.disconnect_all()
        self._default.close()
        self._default.disconnect_all()
        self.watcher.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _short_tmp(tmpdir: str | os.PathLike[str] | None) -> str:
    """A temporary directory whose path leaves room for Unix socket names under it."""
    base = str(tmpdir) if tmpdir is not None else tempfile.gettempdir()
    return base if len(base) <= MAX_ROOT_LEN else "/tmp"  # noqa: S108 (mkdtemp below: 0700, unique)


@contextlib.contextmanager
def plugged_in(*keys: VirtualKey, reads: str = "auto") -> Iterator[Testbed]:
    """A testbed with ``keys`` plugged in, closed on exit."""
    tb = Testbed(reads=reads)
    try:
        for key in keys:
            tb.plug(key)
        yield tb
    finally:
        tb.close()


__all__ = ["Testbed", "PluggedKey", "UmockdevUnavailable", "find_preload", "plugged_in",
           "Connection"]
