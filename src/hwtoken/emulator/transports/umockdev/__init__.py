"""Virtual keys as local USB devices for unmodified programs, through umockdev.

``Testbed`` lays out the sysfs tree and device nodes a plugged YubiKey has and serves them
to programs started with its environment (umockdev's ``LD_PRELOAD`` library): no root and
no kernel module. See docs/umockdev.md.
"""

from hwtoken.emulator.transports.umockdev.testbed import (
    PluggedKey,
    Testbed,
    UmockdevUnavailable,
    find_preload,
    plugged_in,
)

__all__ = ["Testbed", "PluggedKey", "UmockdevUnavailable", "find_preload", "plugged_in"]
