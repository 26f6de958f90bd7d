"""The virtual fob (``hwtoken fob emulate``): the fob firmware on MicroPython's WebAssembly
port under Node.js, with a simulated SSD1306 OLED, buttons, chip RTC and optional DS3231.

It serves the same raw REPL a board does, on 127.0.0.1 or a pseudo-terminal, so ``hwtoken
fob --port ...`` and ``mpremote`` work on it unchanged; its screen can be read and its
buttons pressed from the host (:class:`FobEmulator`, and from another process through
:mod:`hwtoken.fob.emulator.control`).
"""

from __future__ import annotations

from hwtoken.fob.emulator.process import FobEmulator, Frame

__all__ = ["FobEmulator", "Frame"]
