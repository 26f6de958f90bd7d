"""The provisioning run and its recovery, in four durable steps per record.

1. **record** -- the record (serial, place, mode, *sealed* secret, state ``pending``) is
   committed to the inventory before the key is touched;
2. **program** -- the secret is written to the key (``programmed_at`` is recorded);
3. **verify** -- the key itself computes a response/code that must equal the value
   computed from the secret;
4. **done** -- the record is marked ``done`` (with the HOTP counter the server should use).

A crash between any two steps leaves a ``pending`` record holding the secret; ``resume``
checks such a key and completes the record, or reprograms the key with the recorded secret.
So a key is never programmed with a secret the inventory does not hold.

Before the first write to a key, the runner reads what the places it is about to write
hold (:meth:`~hwtoken.provision.protocol.KeyConnection.occupant`). A place that is
programmed, and that is not one of this inventory's own records, is never overwritten
unless the run was told to (``overwrite``); the key is refused, whole. (The key is opened
and read before step 1 -- that writes nothing -- so an unreachable or refused key leaves
no record.)

A run may program several places on each key (a *plan* of :class:`Spec`, one per place):
slot 1 challenge-response, slot 2 HOTP and an OATH credential are three records of one
key. The runner knows no mode: the mode's driver (:mod:`hwtoken.provision.modes`) makes
the secret material and checks the key's answer, a programmer reaches the application.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwtoken.errors import DeviceBusy, HwtokenError, SetupError
from hwtoken.provision.faults import FaultInjector, Hook
from hwtoken.provision.inventory import Inventory, InventoryUnavailable, RecordBusy, station_id
from hwtoken.provision.model import (
    ACCESS_CODE_SIZE,
    RANDOM,
    Access,
    Material,
    Record,
    Spec,
    State,
    check_plan,
)
from hwtoken.provision.modes import check, driver_for
from hwtoken.provision.protocol import (
    AccessDenied,
    CannotCheck,
    Device,
    DeviceSource,
    KeyConnection,
    Programmer,
    TypedCode,
    Unsuitable,
)
from hwtoken.provision.sealing import WrongKey

logger = logging.getLogger(__name__)


class _OpenFailed(Exception):
    """The key could not be opened or read (its message is safe to show and record)."""


def _describe(exc: BaseException) -> str:
    """A one-line, secret-free description of a per-key failure (no exception class
    names: they mean nothing to an operator)."""
    if isinstance(exc, HwtokenError):
        return str(exc) or "the key failed without saying why"
    return "the key's client library failed unexpectedly"


BUSY_RETRY_SECONDS = 30.0  # how long a run keeps retrying keys another station holds
BUSY_RETRY_PAUSE = 0.2

ProgrammerFor = Callable[[Spec, Device], Programmer]
#: asked once a key holds places this inventory did not write: may they be overwritten?
OverwritePolicy = bool | Callable[[Device, list[str]], bool]


@dataclass
class Outcome:
    """What happened to one record (one place on one key), or to a key that could not be
    taken at all (then ``application`` is empty).

    ``reason`` says why a record was refused, for scripts: ``recorded`` (this inventory
    has it), ``occupied`` (the key holds something there this inventory did not write),
    ``access-code`` (protected by a code that was not given), ``unsuitable`` (the key has
    no such application), ``no-serial``, ``claimed`` (another station took it).
    """

    serial: int | None
    device: str
    result: str  # done | refused | busy | failed | missing | unchecked
    message: str = ""
    reprogrammed: bool = False
    application: str = field(default="", compare=False)
    target: str = field(default="", compare=False)
    mode: str = field(default="", compare=False)
    reason: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"serial": self.serial, "device": self.device, "application": self.application,
                "target": self.target, "mode": self.mode, "result": self.result,
                "reason": self.reason or None, "message": self.message,
                "reprogrammed": self.reprogrammed}


@dataclass
class Summary:
    """All outcomes of a run or resume (one per record)."""

    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        return dict(Counter(o.result for o in self.outcomes))

    def refusals(self) -> dict[str, int]:
        """Refused records by reason."""
        return dict(Counter(o.reason for o in self.outcomes if o.result == "refused"))

    @property
    def keys_seen(self) -> int:
        """How many keys the outcomes are about."""
        return len({o.serial if o.serial is not None else id(o) for o in self.outcomes})

    @property
    def exit_code(self) -> int:
        """1 if a record failed its check or could not be settled, or if keys came but none
        ended done (every one refused or busy); else 0 (also when no key came at all)."""
        if any(o.result in ("failed", "missing", "unchecked") for o in self.outcomes):
            return 1
        return 1 if self.outcomes and not any(o.result == "done" for o in self.outcomes) else 0

    def to_json(self) -> dict[str, Any]:
        return {"counts": self.counts(), "refused": self.refusals(), "keys_seen": self.keys_seen,
                "seconds": round(self.seconds, 3),
                "keys": [o.to_json() for o in self.outcomes]}


def _plan(spec: Spec | Sequence[Spec]) -> list[Spec]:
    """One spec or several, each for another place on the key."""
    return check_plan([spec] if isinstance(spec, Spec) else list(spec))


def _access_code(value: bytes | str | None) -> bytes | None:
    """``new_access_code`` for one record: the code given, a random one, or None."""
    if value == RANDOM:
        return secrets.token_bytes(ACCESS_CODE_SIZE)
    assert value is None or isinstance(value, bytes)
    return value


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

    def _record_error(self, rec: Record, msg: str) -> None:
        """Keep why a record failed on it (for ``status``) and in the event log."""
        self.inventory.update(rec.key, last_error=msg)
        self.inventory.log_event("error", msg, rec.serial, rec.place)

    def _emit(self, summary: Summary, outcome: Outcome) -> None:
        logger.info("key %s: %s %s", outcome.serial, outcome.result, outcome.message)
        summary.outcomes.append(outcome)
        if self._on_outcome is not None:
            self._on_outcome(outcome)

    @staticmethod
    def _outcome(device: Device | Record, spec: Spec | Record | None, result: str,
                 message: str = "", reprogrammed: bool = False, reason: str = "") -> Outcome:
        where = device.spec if isinstance(device, Device) else device.device
        return Outcome(device.serial, where, result, message, reprogrammed,
                       application=spec.application if spec is not None else "",
                       target=spec.target if spec is not None else "",
                       mode=spec.mode.value if spec is not None else "", reason=reason)

    # -- run ------------------------------------------------------------------------------
    def run(self, spec: Spec | Sequence[Spec], source: DeviceSource, *,
            count: int | None = None, reprogram: bool = False,
            overwrite: OverwritePolicy = False, access_code: bytes | None = None,
            new_access_code: bytes | str | None = None) -> Summary:
        """Provision keys from ``source`` until it is exhausted or ``count`` keys are done.

        ``spec`` is one mode, or a plan of several (each for its own place on the key).
        ``reprogram``: program places this inventory has recorded again (new secret).
        ``overwrite``: places the key holds that this inventory did not write may be
        overwritten (or a callable asked with the key and what it holds).
        ``access_code``: the code the keys' OTP slots are protected by now;
        ``new_access_code``: the code to leave on them (bytes, :data:`RANDOM`, or None to
        keep ``access_code``).

        A key that is busy (another station holds it, or another process has the virtual
        key open) is retried after the others for up to ``BUSY_RETRY_SECONDS``: it ends up
        done here, refused (the other station recorded it), or reported busy.
        """
        plan = _plan(spec)
        opts = _RunOptions(reprogram, overwrite, access_code, new_access_code)
        summary = Summary()
        started = time.monotonic()
        done = 0
        deferred: list[Device] = []  # busy now (another station or process has it): retry
        for device in source.arrivals():
            outcomes = self._provision(plan, device, opts, summary)
            if outcomes is None:
                deferred.append(device)
                continue
            done += _key_done(outcomes)
            if count is not None and done >= count:
                break
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        while deferred and (count is None or done < count):
            time.sleep(BUSY_RETRY_PAUSE)
            retry, deferred = deferred, []
            for device in retry:
                if count is not None and done >= count:
                    break  # enough keys done: another would exceed --count
                last_try = time.monotonic() >= deadline
                outcomes = self._provision(plan, device, opts, summary, last_try=last_try)
                if outcomes is None:
                    deferred.append(device)
                    continue
                done += _key_done(outcomes)
        summary.seconds = time.monotonic() - started
        return summary

    def provision(self, spec: Spec | Sequence[Spec], device: Device, *,
                  reprogram: bool = False, overwrite: OverwritePolicy = False,
                  access_code: bytes | None = None,
                  new_access_code: bytes | str | None = None) -> Outcome:
        """The four steps for one key and one mode (see :meth:`run`); the first outcome
        when ``spec`` is a plan of several."""
        outcomes = self._provision(_plan(spec), device, _RunOptions(
            reprogram, overwrite, access_code, new_access_code), Summary(), last_try=True)
        assert outcomes
        return outcomes[0]

    def _provision(self, plan: list[Spec], device: Device, opts: _RunOptions,
                   summary: Summary, *, last_try: bool = False) -> list[Outcome] | None:
        """Every place of ``plan`` on one key, each outcome emitted as it comes: an outcome
        per place (one for a key that cannot be taken at all). None if the key is busy
        and nothing happened (retry it later) -- unless ``last_try``: then it is reported
        busy."""
        outcomes: list[Outcome] = []

        def add(outcome: Outcome) -> Outcome:
            outcomes.append(outcome)
            if outcome.result != "busy":  # a busy key may be retried: told at the end
                self._emit(summary, outcome)
            return outcome

        self._key_places(plan, device, opts, add)
        if all(o.result == "busy" for o in outcomes) and not last_try:
            return None
        for outcome in outcomes:
            if outcome.result == "busy":
                self._emit(summary, outcome)
        return outcomes

    def _key_places(self, plan: list[Spec], device: Device, opts: _RunOptions,
                    add: Callable[[Outcome], Outcome]) -> None:
        """Hold the key, refuse the places this inventory has already (unless reprogram),
        then read and write the others (:meth:`_write_key`); each outcome to ``add``."""
        if device.serial is None:
            self._refuse_without_serial(plan, device, add)
            return
        serial = device.serial
        inv = self.inventory
        settled: set[tuple[str, str]] = set()

        def settle(outcome: Outcome) -> Outcome:
            settled.add((outcome.application, outcome.target))
            return add(outcome)

        try:
            with inv.hold(serial):
                recorded = {rec.key: rec for rec in inv.records(serial=serial)}
                todo: list[tuple[Spec, Record | None]] = []
                for spec in plan:
                    existing = recorded.get(spec.key(serial))
                    if existing is not None and not opts.reprogram:
                        hint = ("pending from an earlier run: `hwtoken provision resume` "
                                "settles it" if existing.state is State.PENDING
                                else "use --reprogram to program it again")
                        settle(self._outcome(
                            device, spec, "refused", f"{spec.place} is already in the "
                            f"inventory ({existing.state.value}); {hint}", reason="recorded"))
                    else:
                        todo.append((spec, existing))
                if todo:
                    self._write_key(device, todo, opts, settle)
        except (RecordBusy, DeviceBusy) as exc:
            for spec in plan:
                if (spec.application, spec.target) not in settled:
                    add(self._outcome(device, spec, "busy", str(exc)))
        except _OpenFailed as exc:  # no record yet: the event log keeps why (for `status`)
            inv.log_event("error", str(exc), serial)
            add(self._outcome(device, None, "failed", str(exc)))
        except Unsuitable as exc:
            add(self._outcome(device, None, "refused", str(exc), reason="unsuitable"))

    def _refuse_without_serial(self, plan: list[Spec], device: Device,
                               add: Callable[[Outcome], Outcome]) -> None:
        """A key that shows no serial cannot be recorded; one that cannot take the plan's
        applications at all (a FIDO-only key at an OTP station) is refused as that
        first, which says more to the operator."""
        try:
            for spec in plan:
                self.programmer_for(spec, device).check_suitable(device)
        except Unsuitable as exc:
            add(self._outcome(device, None, "refused", str(exc), reason="unsuitable"))
            return
        model = device.model or "a key"
        add(self._outcome(device, None, "refused", f"{model} shows no serial number, so "
                          "its records could not be told apart: take it out",
                          reason="no-serial"))

    def _groups(self, device: Device,
                todo: list[tuple[Spec, Record | None]]) -> list[list[tuple[Spec, Record | None]]]:
        """The places to write, grouped by the programmer that reaches them (one
        connection per group)."""
        groups: dict[str, list[tuple[Spec, Record | None]]] = {}
        for spec, existing in todo:
            try:
                name = self.programmer_for(spec, device).name
            except (SetupError, InventoryUnavailable):
                raise
            except HwtokenError as exc:
                raise _OpenFailed(_describe(exc)) from None
            groups.setdefault(name, []).append((spec, existing))
        return list(groups.values())

    def _write_key(self, device: Device, todo: list[tuple[Spec, Record | None]],
                   opts: _RunOptions, add: Callable[[Outcome], Outcome]) -> None:
        """Read what the key holds where ``todo`` writes; refuse it whole if a place holds
        something this inventory did not write (unless told to overwrite); else the four
        steps for each place."""
        groups = self._groups(device, todo)
        occupied: list[str] = []
        kept: contextlib.ExitStack | None = None
        kept_conn: KeyConnection | None = None
        try:
            # read every group's places (the first group last: its connection stays open
            # for the first write), then write in the order of the plan
            for group in reversed(groups):
                stack = contextlib.ExitStack()
                with stack:
                    conn = stack.enter_context(self._connect(group[0][0], device))
                    for spec, existing in group:
                        if existing is None:  # this inventory's own records are not foreign
                            found = self._read(conn, spec)
                            if found:
                                occupied.append(found)
                    if group is groups[0]:
                        kept, kept_conn = stack.pop_all(), conn
            if occupied and not opts.may_overwrite(device, occupied):
                what = "; ".join(reversed(occupied))
                for spec, _ in todo:
                    add(self._outcome(device, spec, "refused", f"{what}, which this "
                                      "inventory did not write: pass --overwrite to replace "
                                      "it", reason="occupied"))
                return
            for group in groups:
                if kept is not None and kept_conn is not None:
                    stack, conn, kept = kept, kept_conn, None
                else:
                    stack = contextlib.ExitStack()
                    conn = stack.enter_context(self._connect(group[0][0], device))
                with stack:
                    for spec, existing in group:
                        add(self._program_new(conn, device, spec, existing, opts))
        finally:
            if kept is not None:
                kept.close()

    def _read(self, conn: KeyConnection, spec: Spec) -> str | None:
        """What ``spec``'s place holds; reading failures are like failing to open the key."""
        try:
            return conn.occupant(spec)
        except (DeviceBusy, InventoryUnavailable, SetupError, Unsuitable):
            raise
        except Exception as exc:  # noqa: BLE001 - reported per key, the station goes on
            logger.debug("reading key failed", exc_info=not isinstance(exc, HwtokenError))
            raise _OpenFailed(_describe(exc)) from None

    def _program_new(self, conn: KeyConnection, device: Device, spec: Spec,
                     existing: Record | None, opts: _RunOptions) -> Outcome:
        """Steps 1-4 for one place, with fresh material."""
        inv = self.inventory
        assert device.serial is not None
        material = driver_for(spec.mode).material(spec, device.serial)
        old_code = inv.access_code(existing) if existing is not None else None
        leave = _access_code(opts.new_access_code) or opts.access_code or old_code
        if not spec.mode.uses_slot:
            leave = None  # access codes are an OTP slot's
        rec = Record.new(spec, device.serial, device=device.spec, station=self.station,
                         params=dict(material.params))
        inv.seal(rec, material.secret, leave)
        if not inv.claim(rec, reprogram=existing is not None):
            return self._outcome(device, spec, "refused", "claimed by another station",
                                 reason="claimed")
        self._step("record", rec)
        current = tuple(c for c in (old_code, opts.access_code) if c is not None)
        return self._settle(conn, device, rec, material, Access(current, leave), program=True)

    @contextlib.contextmanager
    def _connect(self, spec: Spec | Record, device: Device) -> Iterator[KeyConnection]:
        """Open ``device``; failures other than busy, a broken setup or a key that cannot
        take the mode become :class:`_OpenFailed`."""
        spec = spec.spec if isinstance(spec, Record) else spec
        try:
            cm = self.programmer_for(spec, device).connect(device)
            conn = cm.__enter__()
        except (DeviceBusy, InventoryUnavailable, Unsuitable, AccessDenied):
            raise
        except SetupError as exc:  # every key would fail the same way: stop the run
            self.inventory.log_event("error", f"{_describe(exc)} (run stopped)", device.serial)
            raise
        except Exception as exc:  # noqa: BLE001 - reported per key, the station goes on
            logger.debug("opening key failed", exc_info=not isinstance(exc, HwtokenError))
            raise _OpenFailed(_describe(exc)) from None
        try:
            yield conn
        except BaseException:
            if not cm.__exit__(*sys.exc_info()):
                raise
        else:
            cm.__exit__(None, None, None)

    def _settle(self, conn: KeyConnection, device: Device, rec: Record, material: Material,
                access: Access, *, program: bool) -> Outcome:
        """Program (if asked) and verify the key on ``conn``, then mark the record done."""
        inv = self.inventory
        spec = rec.spec
        reprogrammed = False
        try:
            if not program:
                nxt = check(conn, spec, material, rec.counter)
                if nxt is None:
                    program = reprogrammed = True
            if program:
                before = inv.access_code(rec)
                self._keep_access_code(rec, access.new)
                try:
                    conn.program(spec, material, access)
                except AccessDenied as exc:  # nothing written: an attempt all the same
                    self._keep_access_code(rec, before)
                    rec.attempts += 1
                    inv.update(rec.key, attempts=rec.attempts)
                    self._record_error(rec, str(exc))
                    return self._outcome(device, rec, "refused", str(exc), reprogrammed,
                                         reason="access-code")
                rec.attempts += 1
                inv.update(rec.key, programmed_at=time.time(), attempts=rec.attempts,
                           station=self.station)
                self._step("program", rec)
                nxt = check(conn, spec, material, rec.counter)
            if nxt is None:
                msg = "the key's response does not match the recorded secret"
                self._record_error(rec, msg)
                return self._outcome(device, rec, "failed", msg, reprogrammed)
            self._step("verify", rec)
            inv.update(rec.key, state=State.DONE, counter=nxt, last_error=None)
            rec.state, rec.counter = State.DONE, nxt
            self._step("done", rec)
        except (DeviceBusy, InventoryUnavailable):
            raise
        except CannotCheck as exc:  # the key may hold it: a person must check it
            self._record_error(rec, str(exc))
            return self._outcome(device, rec, "unchecked", str(exc), reprogrammed)
        except Exception as exc:  # one bad key must not stop the station; resume retries it
            if exc is self._hook_error:
                raise
            msg = _describe(exc)
            logger.debug("key %s failed", rec.serial, exc_info=not isinstance(exc, HwtokenError))
            self._record_error(rec, msg)
            return self._outcome(device, rec, "failed", msg, reprogrammed)
        return self._outcome(device, rec, "done", "", reprogrammed)

    def _keep_access_code(self, rec: Record, code: bytes | None) -> None:
        """Before a write: the record holds the access code the write leaves on the slot
        (resume keeps a code it was given for a record that had none, as a run does)."""
        inv = self.inventory
        if not rec.mode.uses_slot or inv.access_code(rec) == code:
            return
        inv.seal_access_code(rec, code)
        inv.update(rec.key, access_code=rec.access_code)

    # -- resume ---------------------------------------------------------------------------
    def resume(self, source: DeviceSource, *, access_code: bytes | None = None,
               codes: Mapping[int, Sequence[str]] | None = None) -> Summary:
        """Settle every pending record: complete it if the key holds the recorded secret,
        else reprogram the key with it; report keys that are not present.

        ``access_code``: a code the slot may be protected by (besides the one recorded).
        ``codes``: serial -> codes a person typed with that key elsewhere (an HOTP or Yubico
        OTP slot of a station that ran without a terminal): such a record is settled by
        the code alone, and the key is not touched.

        A record another station holds right now (or a just-killed station's session has
        not let go of yet) is retried for up to ``BUSY_RETRY_SECONDS``, like in :meth:`run`.
        """
        summary = Summary()
        started = time.monotonic()
        typed = {serial: list(values) for serial, values in (codes or {}).items()}
        deferred: list[Record] = []
        for pending in self.inventory.records(states=[State.PENDING]):
            outcome = self._resume_one(pending, source, access_code, typed)
            if outcome is not None and outcome.result == "busy":
                deferred.append(pending)
            elif outcome is not None:
                self._emit(summary, outcome)
        deadline = time.monotonic() + BUSY_RETRY_SECONDS
        while deferred:
            time.sleep(BUSY_RETRY_PAUSE)
            retry, deferred = deferred, []
            for pending in retry:
                outcome = self._resume_one(pending, source, access_code, typed)
                if outcome is None:
                    continue
                if outcome.result == "busy" and time.monotonic() < deadline:
                    deferred.append(pending)
                    continue
                self._emit(summary, outcome)
        summary.seconds = time.monotonic() - started
        return summary

    def _resume_one(self, pending: Record, source: DeviceSource, access_code: bytes | None,
                    typed: dict[int, list[str]]) -> Outcome | None:
        """Settle one pending record (None if it is no longer pending)."""
        inv = self.inventory
        try:
            with inv.hold(pending.serial):
                rec = inv.get(pending.key)
                if rec is None or rec.state is not State.PENDING:
                    return None
                try:
                    material = Material(inv.secret(rec), dict(rec.params))
                    recorded_code = inv.access_code(rec)
                except WrongKey as exc:  # this record is damaged: settle the others
                    self._record_error(rec, str(exc))
                    return self._outcome(rec, rec, "failed", str(exc))
                if rec.mode.typed and typed.get(rec.serial):
                    return self._settle_typed(rec, material, typed[rec.serial])
                device = source.present(rec)
                if device is None:
                    msg = "key not present: plug it in and resume"
                    self._record_error(rec, msg)  # so `status` shows why
                    return self._outcome(rec, rec, "missing", msg)
                current = tuple(c for c in (recorded_code, access_code) if c is not None)
                with self._connect(rec, device) as conn:
                    leave = recorded_code or access_code  # a code given is kept, as by run
                    return self._settle(conn, device, rec, material, Access(current, leave),
                                        program=False)
        except (RecordBusy, DeviceBusy) as exc:
            return self._outcome(pending, pending, "busy", str(exc))
        except _OpenFailed as exc:
            msg = str(exc)
            self._record_error(pending, msg)
            return self._outcome(pending, pending, "failed", msg)
        except (Unsuitable, AccessDenied) as exc:
            self._record_error(pending, str(exc))
            reason = "unsuitable" if isinstance(exc, Unsuitable) else "access-code"
            return self._outcome(pending, pending, "refused", str(exc), reason=reason)

    def _settle_typed(self, rec: Record, material: Material, codes: list[str]) -> Outcome:
        """Settle ``rec`` with a code a person typed with its key (never reprograms)."""
        for code in codes:
            nxt = check(TypedCode(code), rec.spec, material, rec.counter)
            if nxt is not None:
                codes.remove(code)
                self.inventory.update(rec.key, state=State.DONE, counter=nxt, last_error=None)
                rec.state, rec.counter = State.DONE, nxt
                self.inventory.log_event("checked", "checked by a code typed by hand",
                                         rec.serial, rec.place)
                return self._outcome(rec, rec, "done", "checked by the code typed by hand")
        msg = (f"the code typed for {rec.place} does not match its recorded secret (the "
               "record stays pending)")
        self._record_error(rec, msg)
        return self._outcome(rec, rec, "failed", msg)


def _key_done(outcomes: list[Outcome]) -> bool:
    """A key counts towards --count when a record of it is done and none failed."""
    results = {o.result for o in outcomes}
    return "done" in results and not results & {"failed", "unchecked", "busy"}


@dataclass(frozen=True)
class _RunOptions:
    """What run() was told, for each key."""

    reprogram: bool
    overwrite: OverwritePolicy
    access_code: bytes | None
    new_access_code: bytes | str | None

    def may_overwrite(self, device: Device, occupied: list[str]) -> bool:
        if callable(self.overwrite):
            return bool(self.overwrite(device, occupied))
        return bool(self.overwrite)
