"""A fake sysfs and /dev under one directory, in the layout umockdev's preload library reads.

With ``UMOCKDEV_DIR=ROOT``, umockdev's library redirects a program's ``/sys/...`` to
``ROOT/sys/...`` and ``/dev/X`` to ``ROOT/dev/X`` when that exists; ``stat()`` of such a
node reports a character device whose number is the symlink ``ROOT/dev/.node/X`` (``/``
turned into ``_``). libudev then enumerates what is written here exactly as it would a
kernel's sysfs: a device is a directory under ``sys/devices`` with a ``uevent`` file (its
properties), attribute files, a ``subsystem`` link to ``sys/bus/S`` or ``sys/class/S``,
and links back from there and from ``sys/dev/char/MAJ:MIN``. This module writes and
removes such devices (the equivalent of umockdev's ``Testbed.add_devicev`` and
``remove_device``); :mod:`.layout` decides what a YubiKey's tree contains.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

#: Subsystems that are buses (``sys/bus/S/devices``); the others are classes.
BUSES = frozenset({"usb", "hid", "pci", "platform", "serio", "i2c", "spi"})


@dataclass
class Device:
    """One sysfs device to write."""

    syspath: str  # "/sys/devices/..."
    subsystem: str
    properties: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, str | bytes] = field(default_factory=dict)
    driver: str | None = None
    devnode: str | None = None  # "hidraw0", "bus/usb/001/002"
    majmin: str | None = None  # "242:0"


class Sysfs:
    """Writes devices under ``root/sys`` and their nodes' numbers under ``root/dev``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sys = root / "sys"
        for d in ("sys/bus", "sys/class", "sys/devices", "sys/dev/char", "dev/.node"):
            (root / d).mkdir(parents=True, exist_ok=True)

    def path(self, syspath: str) -> Path:
        """Where ``/sys/...`` or ``/dev/...`` lives in the testbed."""
        return self.root / syspath.lstrip("/")

    def add(self, dev: Device) -> None:
        """Write ``dev`` (its parents must exist or be plain directories)."""
        d = self.path(dev.syspath)
        d.mkdir(parents=True, exist_ok=True)
        name = d.name
        if dev.subsystem in BUSES:
            where = self.sys / "bus" / dev.subsystem
            (where / "devices").mkdir(parents=True, exist_ok=True)
            (where / "drivers").mkdir(parents=True, exist_ok=True)
            _link(where / "devices" / name, d)
        else:
            where = self.sys / "class" / dev.subsystem
            where.mkdir(parents=True, exist_ok=True)
            _link(where / name, d)
        _link(d / "subsystem", where)
        if dev.driver:
            drv = self.sys / "bus" / dev.subsystem / "drivers" / dev.driver
            drv.mkdir(parents=True, exist_ok=True)
            _link(d / "driver", drv)
            _link(drv / name, d)
        props = dict(dev.properties)
        if dev.devnode:
            props.setdefault("DEVNAME", dev.devnode)
        if dev.majmin:
            major, minor = dev.majmin.split(":")
            props = {"MAJOR": major, "MINOR": minor, **props}
        if dev.driver:
            props.setdefault("DRIVER", dev.driver)
        (d / "uevent").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        for attr, value in dev.attributes.items():
            p = d / attr
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(value, bytes):
                p.write_bytes(value)
            else:
                p.write_text(value if value.endswith("\n") or not value else value + "\n")
        if dev.majmin:
            (d / "dev").write_text(dev.majmin + "\n")
            _link(self.sys / "dev" / "char" / dev.majmin, d)
            if dev.devnode:
                node_info = self.root / "dev" / ".node" / dev.devnode.replace("/", "_")
                with contextlib.suppress(FileNotFoundError):
                    node_info.unlink()
                os.symlink(dev.majmin, node_info)

    def set_driver(self, syspath: str, subsystem: str, driver: str | None) -> None:
        """Bind or unbind a device's driver: its ``driver`` link, the driver's link back,
        and ``DRIVER`` in its ``uevent``."""
        d = self.path(syspath)
        with contextlib.suppress(OSError):
            old = Path(os.path.normpath(d / os.readlink(d / "driver")))
            with contextlib.suppress(FileNotFoundError):
                (old / d.name).unlink()
            (d / "driver").unlink()
        if driver:
            drv = self.sys / "bus" / subsystem / "drivers" / driver
            drv.mkdir(parents=True, exist_ok=True)
            _link(d / "driver", drv)
            _link(drv / d.name, d)
        props = [line for line in (d / "uevent").read_text().splitlines()
                 if not line.startswith("DRIVER=")]
        if driver:
            props.append(f"DRIVER={driver}")
        (d / "uevent").write_text("".join(f"{line}\n" for line in props))

    def remove(self, syspath: str) -> None:
        """Remove the device at ``syspath``, its children, links and node numbers."""
        d = self.path(syspath)
        if not d.exists():
            return
        doomed = [p for p in [d, *d.rglob("*")] if p.is_dir() and not p.is_symlink()
                  and (p / "uevent").exists()]
        for p in doomed:
            self._unlink_device(p)
        shutil.rmtree(d, ignore_errors=True)

    def _unlink_device(self, d: Path) -> None:
        name = d.name
        try:
            props = dict(line.split("=", 1) for line in
                         (d / "uevent").read_text().splitlines() if "=" in line)
        except OSError:
            props = {}
        sub = d / "subsystem"
        with contextlib.suppress(OSError):
            where = Path(os.path.normpath(d / os.readlink(sub)))
            for link in (where / "devices" / name, where / name):
                with contextlib.suppress(FileNotFoundError):
                    if link.is_symlink():
                        link.unlink()
        drv = d / "driver"
        with contextlib.suppress(OSError):
            target = Path(os.path.normpath(d / os.readlink(drv)))
            with contextlib.suppress(FileNotFoundError):
                (target / name).unlink()
        if "MAJOR" in props and "MINOR" in props:
            with contextlib.suppress(FileNotFoundError):
                (self.sys / "dev" / "char" / f"{props['MAJOR']}:{props['MINOR']}").unlink()
        if "DEVNAME" in props:
            with contextlib.suppress(FileNotFoundError):
                (self.root / "dev" / ".node" / props["DEVNAME"].replace("/", "_")).unlink()


def _link(link: Path, target: Path) -> None:
    """A relative symlink ``link`` -> ``target`` (both inside the testbed), as in sysfs."""
    link.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if link.is_symlink() or link.exists():
            link.unlink()
    os.symlink(os.path.relpath(target, link.parent), link)
