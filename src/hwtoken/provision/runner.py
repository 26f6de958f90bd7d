"""The provisioning run and its recovery, in four durable steps per key.

1. **record** -- the record (serial, mode, slot, *sealed* secret, state ``pending``) is
   committed to the inventory before the key is touched;
2. **program** -- the secret is written to the key (``programmed_at`` is recorded);
3. **verify** -- the key itself computes a response/code that must equal the value
   computed from the secret;
4. **done** -- the record is marked ``done`` (with the HOTP counter the server should use).

A crash between any two steps leaves a ``pending`` record holding the secret; ``resume``
checks such a key and completes the record, or reprograms the key with the recorded secret.
So a key is never programmed with a secret the inventory does not hold. (The key is
opened before step 1 -- opening writes nothing -- so an unreachable key leaves no record.)
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hwtoken.errors import DeviceBusy, HwtokenError, SetupError
from hwtoken.provision.faults import FaultInjector, Hook
from hwtoken.provision.inventory import Inventory, InventoryUnavailable, RecordBusy, station_id
from hwtoken.provision.model import SECRET_LENGTH, Record, Spec, State
from hwtoken.provision.protocol import Device, DeviceSource, KeyConnection, Programmer
from hwtoken.provision.sealing import WrongKey
from hwtoken.provision.verify import check

logger = logging.getLogger(__name__)


class _OpenFailed(Exception):
    """The key could not be opened (its message is safe to show and record)."""


def _describe(exc: BaseException) -> str:
    """A one-line, secret-free description of a per-key failure."""
    if isinstance(exc, HwtokenError):
        return f"{type(exc).__name__}: {exc}"
    return f"unexpected {type(exc).__name__} from the key's client library"

BUSY_RETRY_SECONDS = 30.0  # how long a run keeps retrying keys another station holds
BUSY_RETRY_PAUSE = 0.2

ProgrammerFor = Callable[[Spec, Device], Programmer]


@dataclass
class Outcome:
    """What happened to one key."""

    serial: int
    device: str
    result: str  # done | refused | busy | failed | missing
    message: str = ""
    reprogrammed: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"serial": self.serial, "device": self.device, "result": self.result,
                "message": self.message, "reprogrammed": self.reprogrammed}


@dataclass
class Summary:
    """All outcomes of a run or resume."""

    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return dict(Counter(o.result for o in self.outcomes))

    @property
    def exit_code(self) -> int:
        """1 if a key failed its check or could not be settled, or if keys came but none
        ended done (every one refused or busy); else 0 (also when no key came at all)."""
        if any(o.result in ("failed", "missing") for o in self.outcomes):
            return 1
        return 1 if self.outcomes and not any(o.result == "done" for o in self.outcomes) else 0

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts(), "seconds": round(self.seconds, 3),
                "keys": [o.to_json() for o in self.outcomes]}


class Provisioner:
    """Runs the four steps against an inventory with the given programmers."""

    def __init__(self, inventory: Inventory, programmer_for: ProgrammerFor, *,
                 hook: Hook | None = None,
                 on_outcome: Callable[[Outcome], None] | None = None) -> None:
        self.inventory = inventory
        self.programmer_for = programmer_for
        self._fault = FaultInjector.from_env()
        self._hook = hook
        self._hook_error: BaseException | None = None
        self._on_outcome = on_outcome
        self.station = station_id()

    def _step(self, step: str, rec: Record) -> None:
        logger.info("key %s (%s): step %s complete", rec.serial, rec.device, step)
        if self._hook is not None:
            try:
                self._hook(step, rec)
            except BaseException as exc:
                self._hook_error = exc  # a simulated crash: let it through, untouched
                raise
        self._fault(step, rec)

    def _record_error(self, serial: int, msg: str) -> None:
        """Keep why a key failed on its record (for ``status``) and in the event log."""
        self.inventory.update(serial, last_error=msg)
        self.inventory.log_event("error", msg, serial)

    def _emit(self, summary: Summary, outcome: Outcome) -> None:
        logger.info("key %s: %s %s", outcome.serial, outcome.result, outcome.message)
        summary.outcomes.append(outcome)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    # -- run ------------------------------------------------------------------------------
    def run(self, spec: Spec, source: DeviceSource, *, count: int | None = None,
            reprogram: bool = False) -> Summary:
        """Provision keys from ``source`` until it is exhausted or ``count`` keys are done.

        A key that is busy (another station holds its record, or another process has the
        virtual key open) is retried after the others for up to ``BUSY_RETRY_SECONDS``:
        it ends up done here, refused (the other station recorded it), or reported busy.
        """
        summary = Summary()
        started = time.monotonic()
        done = 0
        deferred: list[Device] = []  # busy now (another station or process has it): retry
        for device in source.arrivals():
            outcome = self.provision(spec, device, reprogram=reprogram)
            if outcome.result == "busy":
                deferred.append(device)
                continue
            self._emit(summary, outcome)
            done += outcome.result == "done"
            if count is not None and done >= count:
                break
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        while deferred and (count is None or done < count):
            time.sleep(BUSY_RETRY_PAUSE)
            retry, deferred = deferred, []
            for device in retry:
                if count is not None and done >= count:
                    break  # enough keys done: another would exceed --count
                outcome = self.provision(spec, device, reprogram=reprogram)
                if outcome.result == "busy" and time.monotonic() < deadline:
                    deferred.append(device)
                    continue
                self._emit(summary, outcome)
                done += outcome.result == "done"
        summary.seconds = time.monotonic() - started
        return summary

    def provision(self, spec: Spec, device: Device, *, reprogram: bool = False) -> Outcome:
        """The four steps for one key.

        The key is opened before its record is written (opening programs nothing), so a
        key that cannot be reached right now leaves no pending record behind.
        """
        inv = self.inventory
        try:
            with inv.hold(device.serial):
                existing = inv.get(device.serial)
                if existing is not None and not reprogram:
                    hint = ("pending from an earlier run: `hwtoken provision resume` "
                            "settles it" if existing.state is State.PENDING
                            else "use --reprogram to program it again")
                    return Outcome(device.serial, device.spec, "refused",
                                   f"already in the inventory ({existing.state.value}); {hint}")
                if existing is not None and existing.spec.place != spec.place:
                    # one record per key: replacing it would forget a secret that stays
                    # on the key (in the other slot or credential)
                    return Outcome(device.serial, device.spec, "refused",
                                   f"its record is for {existing.spec.place}, which would "
                                   f"keep a secret the inventory forgets; reprogram "
                                   f"{existing.spec.place} or leave this key out")
                with self._connect(spec, device) as conn:
                    secret = secrets.token_bytes(SECRET_LENGTH)
                    rec = Record(serial=device.serial, mode=spec.mode, slot=spec.slot,
                                 digits=spec.digits, touch=spec.touch, name=spec.name,
                                 sealed="", device=device.spec, station=self.station)
                    inv.seal(rec, secret)
                    if not inv.claim(rec, reprogram=reprogram):
                        return Outcome(device.serial, device.spec, "refused",
                                       "claimed by another station")
                    self._step("record", rec)
                    return self._settle(conn, device, rec, secret, program=True)
        except (RecordBusy, DeviceBusy) as exc:
            return Outcome(device.serial, device.spec, "busy", str(exc))
        except _OpenFailed as exc:  # no record yet: the event log keeps why (for `status`)
            inv.log_event("error", str(exc), device.serial)
            return Outcome(device.serial, device.spec, "failed", str(exc))

    @contextlib.contextmanager
    def _connect(self, spec: Spec, device: Device) -> Iterator[KeyConnection]:
        """Open ``device``; failures other than busy become :class:`_OpenFailed`."""
        try:
            cm = self.programmer_for(spec, device).connect(device)
            conn = cm.__enter__()
        except (DeviceBusy, InventoryUnavailable):
            raise
        except SetupError as exc:  # every key would fail the same way: stop the run
            self.inventory.log_event("error", f"{_describe(exc)} (run stopped)", device.serial)
            raise
        except Exception as exc:  # noqa: BLE001 - reported per key, the station goes on
            raise _OpenFailed(_describe(exc)) from None
        try:
            yield conn
        except BaseException:
            if not cm.__exit__(*sys.exc_info()):
                raise
        else:
            cm.__exit__(None, None, None)

    def _settle(self, conn: KeyConnection, device: Device, rec: Record, secret: bytes, *,
                program: bool) -> Outcome:
        """Program (if asked) and verify the key on ``conn``, then mark the record done."""
        inv = self.inventory
        spec = rec.spec
        reprogrammed = False
        try:
            if not program:
                nxt = check(conn, spec, secret, rec.counter)
                if nxt is None:
                    program = reprogrammed = True
            if program:
                conn.program(spec, secret)
                rec.attempts += 1
                inv.update(rec.serial, programmed_at=time.time(), attempts=rec.attempts,
                           station=self.station)
                self._step("program", rec)
                nxt = check(conn, spec, secret, rec.counter)
            if nxt is None:
                msg = "the key's response does not match the recorded secret"
                self._record_error(rec.serial, msg)
                return Outcome(rec.serial, device.spec, "failed", msg, reprogrammed)
            self._step("verify", rec)
            inv.update(rec.serial, state=State.DONE, counter=nxt, last_error=None)
            rec.state, rec.counter = State.DONE, nxt
            self._step("done", rec)
        except (DeviceBusy, InventoryUnavailable):
            raise
        except Exception as exc:  # one bad key must not stop the station; resume retries it
            if exc is self._hook_error:
                raise
            msg = _describe(exc)
            logger.debug("key %s failed", rec.serial, exc_info=not isinstance(exc, HwtokenError))
            self._record_error(rec.serial, msg)
            return Outcome(rec.serial, device.spec, "failed", msg, reprogrammed)
        return Outcome(rec.serial, device.spec, "done", "", reprogrammed)

    # -- resume ---------------------------------------------------------------------------
    def resume(self, source: DeviceSource) -> Summary:
        """Settle every pending record: complete it if the key holds the recorded secret,
        else reprogram the key with it; report keys that are not present.

        A record another station holds right now (or a just-killed station's session has
        not let go of yet) is retried for up to ``BUSY_RETRY_SECONDS``, like in :meth:`run`.
        """
        summary = Summary()
        started = time.monotonic()
        deferred: list[Record] = []
        for pending in self.inventory.records(states=[State.PENDING]):
            outcome = self._resume_one(pending, source)
            if outcome is not None and outcome.result == "busy":
                deferred.append(pending)
            elif outcome is not None:
                self._emit(summary, outcome)
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        while deferred:
            time.sleep(BUSY_RETRY_PAUSE)
            retry, deferred = deferred, []
            for pending in retry:
                outcome = self._resume_one(pending, source)
                if outcome is None:
                    continue
                if outcome.result == "busy" and time.monotonic() < deadline:
                    deferred.append(pending)
                    continue
                self._emit(summary, outcome)
        summary.seconds = time.monotonic() - started
        return summary

    def _resume_one(self, pending: Record, source: DeviceSource) -> Outcome | None:
        """Settle one pending record (None if it is no longer pending)."""
        inv = self.inventory
        try:
            with inv.hold(pending.serial):
                rec = inv.get(pending.serial)
                if rec is None or rec.state is not State.PENDING:
                    return None
                device = source.present(rec)
                if device is None:
                    msg = "key not present: plug it in and resume"
                    self._record_error(rec.serial, msg)  # so `status` shows why
                    return Outcome(rec.serial, rec.device, "missing", msg)
                try:
                    secret = inv.secret(rec)
                except WrongKey as exc:  # this record is damaged: settle the others
                    self._record_error(rec.serial, str(exc))
                    return Outcome(rec.serial, rec.device, "failed", str(exc))
                with self._connect(rec.spec, device) as conn:
                    return self._settle(conn, device, rec, secret, program=False)
        except (RecordBusy, DeviceBusy) as exc:
            return Outcome(pending.serial, pending.device, "busy", str(exc))
        except _OpenFailed as exc:
            msg = str(exc)
            self._record_error(pending.serial, msg)
            return Outcome(pending.serial, pending.device, "failed", msg)
