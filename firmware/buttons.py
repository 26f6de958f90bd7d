# Buttons: debounced, with short and long presses, polled from the main loop.
#
# A button connects its pin to GND; the pin's internal pull-up keeps it high otherwise.
# poll() returns "short" when a press shorter than long_ms is released, and "long" as
# soon as the button has been held for long_ms (once per press).

import time

_diff = getattr(time, "ticks_diff", lambda a, b: a - b)  # CPython has no ticks_diff


class Button:
    def __init__(self, read, long_ms=700, debounce_ms=30, active_low=True):
        """``read`` returns the pin level (0 or 1), e.g. machine.Pin(14, Pin.IN, Pin.PULL_UP).value."""
        self.read = read
        self.long_ms = long_ms
        self.debounce_ms = debounce_ms
        self.active_low = active_low
        self._stable = False     # debounced state: pressed?
        self._raw = False
        self._raw_since = 0
        self._down_at = 0
        self._long_sent = False

    def poll(self, now_ms):
        """Call every few milliseconds with time.ticks_ms(); returns None, "short" or "long"."""
        raw = bool(self.read()) != self.active_low
        if raw != self._raw:
            self._raw = raw
            self._raw_since = now_ms
        event = None
        if raw != self._stable and _diff(now_ms, self._raw_since) >= self.debounce_ms:
            self._stable = raw
            if raw:
                self._down_at = now_ms
                self._long_sent = False
            elif not self._long_sent:
                event = "short"
        if self._stable and not self._long_sent and _diff(now_ms, self._down_at) >= self.long_ms:
            self._long_sent = True
            event = "long"
        return event

