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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwtoken.emulator.transports.umockdev import enumeration, layout, uevent
from hwtoken.emulator.transports.umockdev.hidraw import READ_MODES, HidDevice, HidrawNode
from hwtoken.emulator.transports.umockdev.library import (  # noqa: F401 - re-exported
    DEBIAN_PACKAGES,
    PRELOAD_ENV,
    PRELOAD_NAME,
    UmockdevUnavailable,
    find_preload,
)
from hwtoken.emulator.transports.umockdev.preload import NodeListener, OpenFile
from hwtoken.emulator.transports.umockdev.ptyqueue import PtyPool, Watcher
from hwtoken.emulator.transports.umockdev.sysfs import Device, Sysfs
from hwtoken.emulator.transports.umockdev.usbfs import Drivers, UsbfsNode
from hwtoken.errors import DeviceError, HwtokenError, InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.usb import YubiKeyUsb

log = logging.getLogger(__name__)

SUN_PATH_MAX = 107  # a Unix socket path's bytes (sockaddr_un.sun_path: 108 with its NUL)
# umockdev's preload looks for a node's socket at "%s/ioctl/%s" % ($UMOCKDEV_DIR, node
# path): the slash doubles; a longer path is cut short, misses the socket and the open
# falls back to ioctl/_default (libccid's claim of the CCID interface then fails)
DEEPEST_SOCKET = len("/ioctl/") + len("/dev/bus/usb/001/002")
ROOT_PREFIX = "hwtoken-umockdev."  # a testbed's directory: mkdtemp(prefix=ROOT_PREFIX)
ROOT_NAME = len("/" + ROOT_PREFIX) + 8  # and mkdtemp's random part
MAX_ROOT_LEN = SUN_PATH_MAX - DEEPEST_SOCKET - ROOT_NAME  # a base directory longer: /tmp


class _DefaultFile(OpenFile):
    """Any other node of the testbed (a root hub's usbfs node): no ioctls."""


@dataclass
class HidBinding:
    """What usbhid made for one HID interface of a plugged key: its hidraw node."""

    layout: layout.HidNode
    devices: list[Device]
    node: HidrawNode
    listener: NodeListener
    pool: PtyPool


@dataclass
class PluggedKey:
    """One key plugged into a testbed: where it is and what serves it."""

    key: Any
    usb: Any
    port: int
    devnum: int
    tree: layout.UsbTree
    description: enumeration.UsbDescription
    own_usb: bool = True  # the testbed made the USB model (and stops it at unplug)
    hid: dict[int, HidBinding] = field(default_factory=dict)  # interface -> binding
    drivers: Drivers | None = None
    usbfs_node: UsbfsNode | None = None
    usbfs_listener: NodeListener | None = None
    usbfs_pool: PtyPool | None = None
    stop_listening: Callable[[], None] | None = None  # to the key's reboots

    def unreaped(self) -> bool:
        """A program has not yet reaped an answer from the key's usbfs node."""
        return self.usbfs_node is not None and self.usbfs_node.unreaped()

    @property
    def nodes(self) -> dict[str, HidrawNode]:
        """The hidraw nodes there are now, by name ("hidraw1")."""
        return {b.layout.hidraw: b.node for _, b in sorted(self.hid.items())}

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

    @property
    def open_files(self) -> int:
        """Files of the key's nodes that programs hold open now."""
        n = sum(b.listener.open_count for b in self.hid.values())
        return n + (self.usbfs_listener.open_count if self.usbfs_listener else 0)


class Testbed:
    """A temporary device tree with virtual keys plugged in; see the module docstring.

    ``reads`` chooses how ``read()`` on a hidraw node is answered: ``auto`` (default; see
    :mod:`.ptyqueue`), ``emulated`` (always inside umockdev's call) or ``pty`` (always by
    the program from its pty). Keys may be plugged and unplugged while programs run; their
    udev monitors (libudev, libusb's hot-plug thread, browsers) get the uevents.
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
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=base))
        (self.root / "owner.pid").write_text(f"{os.getpid()}\n")
        self._lock = threading.RLock()
        self._closed = False
        self._plugged: dict[int, PluggedKey] = {}  # port -> key
        self._leaving: set[int] = set()  # ports of keys being pulled out right now
        self._retiring: list[NodeListener] = []  # removed nodes' listeners, still answering
        self._next_devnum = 2  # 1 is the root hub
        self._hid_seq = 1
        #: ``callback(key, plugged)`` after a key rebooted into another USB device
        self.on_replug: list[Callable[[Any, PluggedKey], None]] = []
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
        """Plug ``key`` in on the next free port; its nodes appear and monitors hear of it.

        The key is power-cycled as when a real key is inserted (volatile state dropped,
        the FIDO reset window opens).
        """
        from hwtoken.emulator.usb import YubiKeyUsb

        with self._lock:
            if self._closed:
                raise DeviceError("the testbed is closed")
            if any(p.key is key for p in self._plugged.values()):
                raise InvalidInput(f"virtual key {key.serial} is already plugged in")
            port = next(p for p in range(1, 128)
                        if p not in self._plugged and p not in self._leaving)
            devnum = self._next_devnum
            self._next_devnum = 2 + (self._next_devnum - 1) % 126
            with key.lock:
                key.power_cycle()
            model = usb if usb is not None else YubiKeyUsb(key)
            if usb is not None:
                usb.reconfigure()  # powered up: the interfaces its applications make now
            model.start()
            try:
                desc = enumeration.describe(model.device)
                tree = layout.usb_device_tree(desc, port=port, devnum=devnum)
                plugged = PluggedKey(key, model, port, devnum, tree, desc, own_usb=usb is None)
                for dev in tree.devices:
                    self.sysfs.add(dev)
                self._serve_usbfs(plugged)
                hid_ifaces = [i.number for i in desc.interfaces if i.is_hid and not i.alternate]
                for ifnum in hid_ifaces:
                    self._make_hidraw(plugged, ifnum)
            except BaseException:
                if usb is None:
                    model.stop()
                raise
            self._plugged[port] = plugged
            plugged.stop_listening = key.on_reboot(lambda: self._reboot_soon(plugged))
        for dev in tree.devices:  # announced once it is all there, in the kernel's order
            self._announce("add", dev.syspath, dev.subsystem)
        for binding in plugged.hid.values():
            for dev in binding.devices:
                self._announce("add", dev.syspath, dev.subsystem)
        log.info("plugged virtual key %s into port %s (%s)", key.serial, port,
                 ", ".join([*plugged.hidraw, plugged.usbfs]))
        return plugged

    def _serve_usbfs(self, plugged: PluggedKey) -> None:
        bound = {i.number: ("usbhid" if i.is_hid else None)
                 for i in plugged.description.interfaces if not i.alternate}
        plugged.drivers = Drivers(bound, bind=lambda n: self._bind_hid(plugged, n),
                                  unbind=lambda n: self._unbind_hid(plugged, n))
        pool = PtyPool(self.root / "dev" / plugged.tree.usbfs, vmin=1)
        node = UsbfsNode(plugged.usb, plugged.description, plugged.drivers, plugged.devnum,
                         layout.BUS, pool)
        plugged.usbfs_pool, plugged.usbfs_node = pool, node
        plugged.usbfs_listener = NodeListener(
            self.root / "ioctl" / "dev" / plugged.tree.usbfs, node.open, "usbfs")

    def _make_hidraw(self, plugged: PluggedKey, ifnum: int) -> HidBinding:
        """What binding usbhid to interface ``ifnum`` makes: a hid device and hidraw node."""
        iface = next(i for i in plugged.description.interfaces
                     if i.number == ifnum and not i.alternate)
        devices, hn = layout.hid_tree(plugged.description, iface, plugged.tree.interfaces[ifnum],
                                      port=plugged.port, seq=self._hid_seq,
                                      minor=self._free_hidraw_minor(plugged))
        self._hid_seq += 1
        for dev in devices:
            self.sysfs.add(dev)
        hid = HidDevice(iface, plugged.description, hn.name, hn.phys, hn.uniq)
        in_size = max(1, hid.sizes["input"] + hid.sizes["report_ids"])
        pool = PtyPool(self.root / "dev" / hn.hidraw, vmin=in_size)
        node = HidrawNode(hid, plugged.usb, pool, self.watcher, reads=self.reads)
        listener = NodeListener(self.root / "ioctl" / "dev" / hn.hidraw, node.open, hn.hidraw)
        binding = HidBinding(hn, devices, node, listener, pool)
        plugged.hid[ifnum] = binding
        return binding

    def _bind_hid(self, plugged: PluggedKey, ifnum: int) -> None:
        """usbhid (re)binds to interface ``ifnum``: its hidraw node comes back -- unless
        the key was pulled out meanwhile (its sysfs entries would be made again)."""
        with self._lock:
            if self._plugged.get(plugged.port) is not plugged:
                return
            self.sysfs.set_driver(plugged.tree.interfaces[ifnum], "usb", "usbhid")
            binding = self._make_hidraw(plugged, ifnum)
        self._announce("bind", plugged.tree.interfaces[ifnum], "usb")
        for dev in binding.devices:
            self._announce("add", dev.syspath, dev.subsystem)

    def _unbind_hid(self, plugged: PluggedKey, ifnum: int) -> None:
        """usbhid lets go of interface ``ifnum`` (a program detached it): its hidraw node
        goes; programs that hold it open get ENODEV."""
        with self._lock:
            binding = plugged.hid.pop(ifnum, None)
        if binding is None:
            return
        self._drop_hidraw(binding)
        self.sysfs.set_driver(plugged.tree.interfaces[ifnum], "usb", None)
        self._announce("unbind", plugged.tree.interfaces[ifnum], "usb")

    def _drop_hidraw(self, binding: HidBinding) -> None:
        binding.node.unplug()
        for dev in reversed(binding.devices):
            self._announce("remove", dev.syspath, dev.subsystem)
        binding.pool.close()  # the node goes first: no open of it can begin after this
        self._retire(binding.listener)
        self.sysfs.remove(binding.devices[0].syspath)

    def _retire(self, listener: NodeListener) -> None:
        with self._lock:
            self._retiring.append(listener)
        listener.retire(on_closed=self._retired)

    def _retired(self, listener: NodeListener) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._retiring.remove(listener)

    def _announce(self, action: str, syspath: str, subsystem: str) -> None:
        props = uevent.read_uevent_file(self.sysfs.path(syspath) / "uevent")
        uevent.send(self.root, action, syspath, subsystem, props)

    def _free_hidraw_minor(self, plugging: PluggedKey) -> int:
        """The lowest free hidraw minor, as the kernel's idr gives it."""
        keys = {id(p): p for p in [*self._plugged.values(), plugging]}.values()
        used = {int(b.layout.hidraw[6:]) for p in keys for b in p.hid.values()}
        return next(m for m in range(1024) if m not in used)

    def _touch_node(self, devnode: str) -> None:
        """A plain-file node (umockdev makes usbfs nodes regular files)."""
        path = self.root / "dev" / devnode
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()

    def unplug(self, key: VirtualKey | PluggedKey) -> None:
        """Pull the key out: open files get ENODEV (a poll() sees POLLERR|POLLHUP), the
        nodes and sysfs entries go, and monitors hear "remove"."""
        with self._lock:
            plugged = key if isinstance(key, PluggedKey) else next(
                (p for p in self._plugged.values() if p.key is key), None)
            if plugged is None or self._plugged.get(plugged.port) is not plugged:
                raise InvalidInput("that key is not plugged in")
            del self._plugged[plugged.port]
            if plugged.drivers is not None:
                plugged.drivers.unplug()
            self._leaving.add(plugged.port)  # not reused until its sysfs entries are gone
            bindings = [plugged.hid.pop(n) for n in sorted(plugged.hid)]
            if plugged.stop_listening is not None:
                plugged.stop_listening()
        if plugged.usbfs_node is not None:
            plugged.usbfs_node.unplug()
        for binding in bindings:
            self._drop_hidraw(binding)
        for dev in reversed(plugged.tree.devices):
            self._announce("remove", dev.syspath, dev.subsystem)
        if plugged.usbfs_pool is not None:
            plugged.usbfs_pool.close()  # the node goes first: no open of it begins after
        if plugged.usbfs_listener is not None:
            self._retire(plugged.usbfs_listener)
        self.sysfs.remove(plugged.tree.syspath)
        with self._lock:
            self._leaving.discard(plugged.port)
        if plugged.own_usb:
            plugged.usb.stop()
        with contextlib.suppress(Exception), plugged.key.lock:
            plugged.key.store.commit()
        log.info("unplugged virtual key %s from port %s", plugged.key.serial, plugged.port)

    # -- reboots ----------------------------------------------------------------------------
    def _reboot_soon(self, plugged: PluggedKey) -> None:
        """The key asked to reboot while answering a request: re-enumerate it after."""
        threading.Thread(target=self._reboot, args=(plugged,), daemon=True,
                         name="hwtoken-umockdev-reboot").start()

    def _reboot(self, plugged: PluggedKey) -> None:
        """Once the request is answered and its host has the answer, pull the key out and
        plug it in again: it enumerates with the interfaces (and product ID) its
        USB-enabled applications make now, and programs see it leave and come back."""
        key = plugged.key
        plugged.usb.wait_answered(also=plugged.unreaped)
        with self._lock:
            if self._closed or self._plugged.get(plugged.port) is not plugged:
                return  # pulled out meanwhile
            shared = None if plugged.own_usb else plugged.usb
            try:
                self.unplug(plugged)
                again = self.plug(key, usb=shared)
            except HwtokenError as exc:
                log.warning("virtual key %s did not come back after its reboot: %s",
                            key.serial, exc)
                return
        log.info("virtual key %s rebooted as %04x (%s)", key.serial,
                 again.usb.model.product_id, ", ".join(again.usb.model.interfaces))
        for callback in list(self.on_replug):
            callback(key, again)

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
        listeners: list[NodeListener] = []
        for p in plugged:
            listeners += [b.listener for b in p.hid.values()]
            if p.usbfs_listener is not None:
                listeners.append(p.usbfs_listener)
            with contextlib.suppress(Exception):
                self.unplug(p)
        with self._lock:
            listeners += self._retiring
            self._retiring = []
        for listener in listeners:
            listener.close()
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


__all__ = ["Testbed", "PluggedKey", "UmockdevUnavailable", "find_preload", "plugged_in"]
