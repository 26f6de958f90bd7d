"""Virtual keys as local USB devices for unmodified programs, through umockdev.

``Testbed`` lays out the sysfs tree and device nodes a plugged YubiKey has and serves them
to programs started with its environment (umockdev's ``LD_PRELOAD`` library): no root and
no kernel module. See docs/umockdev.md.

The names below are imported on first use: :mod:`.library` (is umockdev installed?) needs
nothing beyond hwtoken's core, :mod:`.testbed` needs the ``fido`` extra (``usbip``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.transports.umockdev.library import UmockdevUnavailable, find_preload
    from hwtoken.emulator.transports.umockdev.testbed import PluggedKey, Testbed, plugged_in

__all__ = ["Testbed", "PluggedKey", "UmockdevUnavailable", "find_preload", "plugged_in"]

_FROM_LIBRARY = ("UmockdevUnavailable", "find_preload")


def __getattr__(name: str) -> Any:
    if name in _FROM_LIBRARY:
        from hwtoken.emulator.transports.umockdev import library

        return getattr(library, name)
    if name in __all__:
        from hwtoken.emulator.transports.umockdev import testbed

        return getattr(testbed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
