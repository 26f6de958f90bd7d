"""The YubiKey OTP application of the virtual key: two configurable slots.

Pure protocol logic, split by concern:

- :mod:`.constants` - command codes, flag bits and sizes of the YubiKey configuration protocol;
- :mod:`.frames` - CRC-16, the 70-byte frame and the 8-byte feature-report framing;
- :mod:`.config` - the 52-byte slot configuration (``config_st``);
- :mod:`.ticket` - what a touched slot types (HOTP, Yubico OTP, static password);
- :mod:`.keyboard` - text to/from boot-keyboard reports (HID usage codes);
- :mod:`.applet` - :class:`OtpApplet`, the slot commands (used over HID and PC/SC);
- :mod:`.hid` - :class:`OtpHidEngine`, the OTP HID interface (feature + keyboard reports).
"""

from __future__ import annotations

from hwtoken.emulator.applets.otp.applet import CommandRejected, OtpApplet

__all__ = ["OtpApplet", "CommandRejected"]
