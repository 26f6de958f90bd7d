"""Uevents for programs in the testbed: what a kernel and udevd announce at plug and unplug.

Under umockdev, a program's udev monitor (a ``NETLINK_KOBJECT_UEVENT`` socket: libudev's
``udev_monitor``, used by libusb's hot-plug thread, Chromium, Firefox, systemd tools) is
turned into a Unix datagram socket bound at ``$UMOCKDEV_DIR/event<fd>``. Sending a
libudev-format message to every such socket is how umockdev's ``Testbed.uevent`` tells
them a device came or went (``src/uevent_sender.c``); :func:`send` does the same: the
``udev_monitor_netlink_header`` (``"libudev"``, magic 0xfeedcafe, MurmurHash2 of the
subsystem and devtype for the monitors' socket filters) and the NUL-separated properties.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import socket
import struct
from pathlib import Path

log = logging.getLogger(__name__)

UDEV_MONITOR_MAGIC = 0xFEEDCAFE
_HEADER = struct.Struct("=8sIIIIIIII")
_seqnum = itertools.count(1)


def murmur_hash2(text: str) -> int:
    """systemd's ``string_hash32`` (MurmurHash2, seed = length), as libudev filters use."""
    data = text.encode()
    m, r = 0x5BD1E995, 24
    h = len(data) & 0xFFFFFFFF
    n = len(data) // 4 * 4
    for i in range(0, n, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = data[n:]
    if len(rest) >= 3:
        h ^= rest[2] << 16
    if len(rest) >= 2:
        h ^= rest[1] << 8
    if rest:
        h ^= rest[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def message(action: str, devpath: str, subsystem: str, properties: dict[str, str]) -> bytes:
    """One uevent as libudev's monitor expects it (``devpath`` without ``/sys``)."""
    props = [f"ACTION={action}", f"DEVPATH={devpath}", f"SUBSYSTEM={subsystem}",
             f"SEQNUM={next(_seqnum)}"]
    props += [f"{k}={v}" for k, v in properties.items()
              if k not in ("ACTION", "DEVPATH", "SUBSYSTEM", "SEQNUM")]
    body = b"".join(p.encode() + b"\0" for p in props)
    devtype = properties.get("DEVTYPE")
    header = _HEADER.pack(
        b"libudev\0", socket.htonl(UDEV_MONITOR_MAGIC), _HEADER.size, _HEADER.size,
        len(body), socket.htonl(murmur_hash2(subsystem)),
        socket.htonl(murmur_hash2(devtype)) if devtype else 0, 0, 0)
    return header + body


def read_uevent_file(path: Path) -> dict[str, str]:
    """A sysfs ``uevent`` file as properties."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    return dict(line.split("=", 1) for line in lines if "=" in line)


def send(root: Path, action: str, syspath: str, subsystem: str,
         properties: dict[str, str]) -> int:
    """Announce ``action`` for the device at ``syspath`` to every monitor in the testbed
    at ``root``; how many monitors got it."""
    devpath = syspath[len("/sys"):] if syspath.startswith("/sys/") else syspath
    data = message(action, devpath, subsystem, properties)
    sent = 0
    for path in sorted(root.glob("event[0-9]*")):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            try:
                s.sendto(data, str(path))
                sent += 1
            except OSError as exc:
                if exc.errno in (errno.ECONNREFUSED, errno.ENOENT):
                    with contextlib.suppress(OSError):  # the monitor was closed
                        os.unlink(path)
                elif exc.errno != errno.EAGAIN:  # a full queue: that monitor misses it
                    log.debug("uevent to %s failed: %s", path, exc)
    return sent
