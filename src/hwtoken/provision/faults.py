"""Fault injection for crash tests: stop the process dead right after a durable step.

``HWTOKEN_FAULT=after:STEP`` (STEP one of ``record``, ``program``, ``verify``, ``done``)
makes the runner SIGKILL its own process once that step has completed for a key -- no
``finally`` blocks, no flush, exactly like a power cut for the software. Add ``@N`` to
fire on the N-th key (1-based; default the first): ``HWTOKEN_FAULT=after:program@3``.
The steps a programmer takes inside ``program`` are STEPs too (:data:`PROGRAM_STEPS`:
``piv-credentials``, ``piv-generate``, ``piv-csr``, ``piv-signed``, ``piv-imported``,
``fido-pin``, ``fido-reset``, ``fido-always-uv``, ``fido-config``); a programmer reports
them with :func:`program_step`.
``after:upgrade@N`` kills the process after the N-th statement of an inventory's schema
upgrade, before it commits (:mod:`hwtoken.provision.schema`).

In-process tests pass ``hooks`` to the runner instead: a callable ``hook(step, record)``
called after each step; raise from it to simulate a crash of that run.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from hwtoken.errors import InvalidInput

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.provision.model import Record

FAULT_ENV = "HWTOKEN_FAULT"
RUN_STEPS = ("record", "program", "verify", "done")  # a key's four durable steps
#: the steps inside ``program`` of the modes that program a place in several
PROGRAM_STEPS = ("piv-credentials", "piv-generate", "piv-csr", "piv-signed", "piv-imported",
                 "fido-pin", "fido-reset", "fido-always-uv", "fido-config")
STEPS = (*RUN_STEPS, *PROGRAM_STEPS, "upgrade")

Hook = Callable[[str, "Record"], None]


class FaultInjector:
    """Counts steps and kills the process at the configured one."""

    def __init__(self, spec: str | None) -> None:
        self.step: str | None = None
        self.nth = 1
        self._seen = 0
        if not spec:
            return
        what, _, rest = spec.partition(":")
        step, _, nth = rest.partition("@")
        if what != "after" or step not in STEPS:
            raise InvalidInput(f"{FAULT_ENV} must be after:STEP[@N] with STEP one of "
                               f"{', '.join(STEPS)}")
        self.step = step
        if nth:
            if not nth.isdigit() or int(nth) < 1:
                raise InvalidInput(f"{FAULT_ENV}: @N must be a positive number")
            self.nth = int(nth)

    @classmethod
    def from_env(cls) -> FaultInjector:
        return cls(os.environ.get(FAULT_ENV))

    def __call__(self, step: str, record: Record | None) -> None:
        if self.step is None or step != self.step:  # unset: never fires, whatever it is told
            return
        self._seen += 1
        if self._seen == self.nth:
            os.kill(os.getpid(), signal.SIGKILL)


_PROCESS: FaultInjector | None = None


def program_step(step: str, hook: Callable[[str, object], None] | None = None,
                 key: object = None) -> None:
    """A programmer finished ``step`` (one of :data:`PROGRAM_STEPS`) for record ``key``:
    the station's in-process ``hook`` hears it, then the process's injector (counting
    across every key of the process, like the runner's)."""
    global _PROCESS
    assert step in PROGRAM_STEPS, step
    if hook is not None:
        hook(step, key)
    if _PROCESS is None:
        _PROCESS = FaultInjector.from_env()
    _PROCESS(step, None)
