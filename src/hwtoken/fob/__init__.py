"""The DIY MicroPython TOTP key fob, from the host's side.

- :class:`Fob` (``hwtoken.fob.device``): deploy the firmware, add/list/remove/wipe accounts,
  sync the clock and read the status of a fob over USB serial (through mpremote).
- :func:`render` (``hwtoken.fob.simulate``): what the OLED shows, drawn by the firmware's
  own code, as a :class:`Screen` (PNG or terminal text).

The firmware itself is in the repository's ``firmware/`` directory.
"""

from __future__ import annotations

from hwtoken.fob.simulate import FobAccount, Screen, render

__all__ = ["Fob", "FobAccount", "Screen", "render"]


def __getattr__(name: str):  # Fob needs mpremote/pyserial: import it only when used
    if name == "Fob":
        from hwtoken.fob.device import Fob

        return Fob
    raise AttributeError(name)
