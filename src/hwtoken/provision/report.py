"""What the operator at a station sees while keys go through (``run`` and ``resume``).

* ``--json``: JSON Lines -- one object per record's outcome, then ``{"summary": ...}``
  (an error that ends the command adds its own one-line ``{"error", "code"}``);
* on a terminal: a line per record that stays on screen, above a bar (``3/5`` keys) or,
  for real keys without ``--count``, a running tally; a prompt (touch the key, overwrite?)
  first clears the bar's line (:meth:`StationReport.paused`), so it never lands on it;
* otherwise: a line per record on stdout, the station's hints on stderr.

:func:`ctrl_c_kept` makes sure the operator's Ctrl-C stops the station.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any, TextIO

BAR_WIDTH = 28
_CLEAR = "\r\033[K"


def describe(outcome: Any) -> str:
    """One human line for an outcome: ``12345678 slot 2 (chalresp) done``."""
    from hwtoken.provision.model import place_of

    what = (f" {place_of(outcome.application, outcome.target)} ({outcome.mode})"
            if outcome.application else "")
    # a key without a serial is named by where discovery found it (its device path)
    serial = outcome.serial if outcome.serial is not None else (
        outcome.device if outcome.device.startswith("/") else "(no serial)")
    line = f"{serial}{what} {outcome.result}" + (" (reprogrammed)" if outcome.reprogrammed
                                                 else "")
    return line + (f": {outcome.message}" if outcome.message else "")


def summary_line(summary: Any) -> str:
    """``5 done, 2 refused (occupied 2) in 3.1 s``; the keys when they are not the records."""
    counts = summary.counts()
    if not counts:
        return f"no keys in {summary.seconds:.1f} s"
    reasons = summary.refusals()
    parts = []
    for result, n in sorted(counts.items()):
        text = f"{n} {result}"
        if result == "refused" and any(reasons):
            text += " (" + ", ".join(f"{why or 'other'} {k}" for why, k in
                                     sorted(reasons.items())) + ")"
        parts.append(text)
    keys = summary.keys_seen
    per = f" ({keys} keys)" if keys != len(summary.outcomes) else ""
    return f"{', '.join(parts)} in {summary.seconds:.1f} s{per}"


class StationReport:
    """Progress for one ``run`` or ``resume`` (see the module docstring)."""

    def __init__(self, *, as_json: bool, total: int | None, label: str,
                 out: TextIO | None = None, err: TextIO | None = None,
                 tty: bool | None = None) -> None:
        self.as_json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        if tty is None:
            try:
                tty = self.out.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.live = bool(tty) and not as_json  # a bar or tally line at the bottom
        self.total = total
        self.label = label
        self.status = ""
        self._keys: set[object] = set()
        self._tally: Counter[str] = Counter()
        self._drawn = False

    def __enter__(self) -> StationReport:
        self._draw()
        return self

    def __exit__(self, *exc: object) -> None:
        self._clear()

    # -- the line at the bottom ------------------------------------------------------------
    def _bottom(self) -> str:
        done = len(self._keys)
        if self.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * done // self.total)
            line = f"{self.label} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {done}/{self.total}"
        else:
            tally = ", ".join(f"{n} {k}" for k, n in sorted(self._tally.items())) or "0 done"
            line = f"{self.label}: {done} key(s): {tally}"
        if self.status:
            line += f"  {self.status}"
        width = shutil.get_terminal_size((100, 24)).columns
        return line[:max(20, width - 1)]

    def _draw(self) -> None:
        if not self.live:
            return
        self.out.write(_CLEAR + self._bottom())
        self.out.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self.live and self._drawn:
            self.out.write(_CLEAR)
            self.out.flush()
            self._drawn = False

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Around a prompt: the bar's line is cleared first, and drawn again after."""
        self._clear()
        try:
            yield
        finally:
            self._draw()

    # -- events ----------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """A hint for the operator (insert the next key...): in the bottom line on a
        terminal, on stderr otherwise (not with --json)."""
        if self.as_json:
            return
        if self.live:
            self.status = text
            self._draw()
        else:
            self.err.write(text + "\n")
            self.err.flush()

    def outcome(self, o: Any) -> None:
        if self.as_json:
            self.out.write(json.dumps(o.to_json()) + "\n")
            self.out.flush()
            return
        self._keys.add(o.serial if o.serial is not None else id(o))
        self._tally[o.result] += 1
        self._clear()
        self.out.write(describe(o) + "\n")
        self.out.flush()
        self._draw()

    def summary(self, summary: Any, **extra: Any) -> None:
        self._clear()
        self.live = False
        if self.as_json:
            doc = summary.to_json()
            doc.pop("keys")  # each record had its own line
            doc.update(extra)
            self.out.write(json.dumps({"summary": doc}) + "\n")
        else:
            self.out.write(summary_line(summary) + "\n")
        self.out.flush()


@contextlib.contextmanager
def ctrl_c_kept() -> Iterator[Callable[[Callable[[Any], None]], Callable[[Any], None]]]:
    """Ctrl-C during a run is never lost: Python drops a KeyboardInterrupt raised inside a
    garbage collector's finalizer (a USB handle closed behind the scenes), so it is also
    remembered, and raised again at the next record's outcome or when the run ends."""
    pressed: list[bool] = []
    default = signal.getsignal(signal.SIGINT) is signal.default_int_handler

    def handler(signum: int, frame: Any) -> None:
        pressed.append(True)
        raise KeyboardInterrupt

    def told(on_outcome: Callable[[Any], None]) -> Callable[[Any], None]:
        def wrapped(outcome: Any) -> None:
            on_outcome(outcome)
            if pressed:
                raise KeyboardInterrupt
        return wrapped

    def unraisable(info: Any) -> None:  # no traceback for a Ctrl-C Python could not raise
        if isinstance(info.exc_value, KeyboardInterrupt):
            pressed.append(True)
        else:
            previous_hook(info)

    previous_hook = sys.unraisablehook
    if default:  # an ignored Ctrl-C (a background job) stays ignored
        signal.signal(signal.SIGINT, handler)
        sys.unraisablehook = unraisable
    try:
        yield told
        if pressed:
            raise KeyboardInterrupt
    finally:
        if default:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.unraisablehook = previous_hook
