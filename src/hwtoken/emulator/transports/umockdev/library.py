"""Where umockdev's ``LD_PRELOAD`` library is (Debian ``umockdev``).

Kept apart from :mod:`.testbed` (which needs the ``usbip`` package for the USB device
model) so that ``hwtoken doctor`` and the CLI can say whether umockdev is installed on a
bare install of hwtoken.
"""

from __future__ import annotations

import os
from pathlib import Path

from hwtoken.errors import DeviceError

PRELOAD_NAME = "libumockdev-preload.so.0"
PRELOAD_ENV = "HWTOKEN_UMOCKDEV_PRELOAD"  # where the library is, if not in a standard place
DEBIAN_PACKAGES = "umockdev"  # the package with libumockdev-preload.so.0 (and umockdev-run)
LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu",
            "/usr/lib/arm-linux-gnueabihf", "/usr/lib/i386-linux-gnu", "/usr/lib64",
            "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu", "/lib64")


class UmockdevUnavailable(DeviceError):
    """umockdev's preload library is not installed."""


def find_preload() -> Path:
    """The path of umockdev's preload library; :class:`UmockdevUnavailable` if missing."""
    override = os.environ.get(PRELOAD_ENV)
    candidates = [Path(override)] if override else [Path(d) / PRELOAD_NAME for d in LIB_DIRS]
    for path in candidates:
        if path.is_file():
            return path
    where = override or ", ".join(LIB_DIRS)
    raise UmockdevUnavailable(
        f"umockdev's {PRELOAD_NAME} was not found ({where}): install the Debian package "
        f"{DEBIAN_PACKAGES!r} (apt install {DEBIAN_PACKAGES}) or set ${PRELOAD_ENV}")
