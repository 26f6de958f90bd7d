"""The Provisioner itself, in process and fast: what resuming does for each state a crash
can leave, what goes into the inventory (record, event log) and in what order, and the
outcome an operator sees for every kind of key.

Keys are virtual keys written through the emulator's applet path (no transport, no pcscd),
so these tests run in a fraction of a second each; the crash tests with real clients and
SIGKILL are in test_provision_crash.py. Failures a virtual key cannot produce on demand
(a pulled cable, a library error) come from small programmers standing in for the key.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from types import SimpleNamespace

import pytest
from provision_helpers import (
    PASSPHRASE,
    AnswersInBytes,
    held_by_another_station,
    only,
    opened,
)

from hwtoken import paths
from hwtoken.emulator.key import VirtualKey
from hwtoken.errors import DeviceBusy, DeviceError, SetupError
from hwtoken.otp import hotp_code
from hwtoken.provision import modes, runner
from hwtoken.provision.inventory import InventoryUnavailable, open_inventory
from hwtoken.provision.model import SECRET_LENGTH, Access, Material, Mode, Record, Spec, State
from hwtoken.provision.programmers import AppletProgrammer, _AppletConnection, _OathConnection
from hwtoken.provision.protocol import (
    AccessDenied,
    CannotCheck,
    Device,
    NotProgrammed,
    Unsuitable,
)
from hwtoken.provision.runner import Outcome, Provisioner, Summary
from hwtoken.provision.sealing import Unlocker
from hwtoken.provision.sources import RecordedKeys, VirtualPool, pool_name, virtual_serial
from hwtoken.provision.verify import check

MISSING = "key not present: plug it in and resume"
MISMATCH = "the key's response does not match the recorded secret"
CHALRESP = Spec(Mode.CHALRESP)

# each test takes well under a second: one that hangs (a retry loop that never ends) fails
# in 30 s instead of the suite-wide 300
pytestmark = [pytest.mark.usefixtures("cheap_kdf"), pytest.mark.timeout(30)]


def applet(spec: Spec, device: Device) -> AppletProgrammer:
    return AppletProgrammer()


@pytest.fixture
def inv(tmp_path):
    with opened(str(tmp_path / "inv.db")) as inventory:
        yield inventory


@pytest.fixture
def no_busy_wait(monkeypatch):
    """A busy key is reported at once instead of being retried for 30 seconds."""
    monkeypatch.setattr(runner, "BUSY_RETRY_SECONDS", 0.0)
    monkeypatch.setattr(runner, "BUSY_RETRY_PAUSE", 0.0)


class _Clock:
    """The runner's ``time`` module on a clock only the test moves: each ``sleep`` (the
    pause between busy retries) advances it by the pause, counts, then does what the test
    asked for that pause (:meth:`at`)."""

    def __init__(self, start: float = 1000.0) -> None:
        import time

        self.time = time.time  # programmed_at: a real date
        self.now, self.sleeps = start, 0
        self._at: dict[int, list] = {}

    def at(self, pause: int, do) -> None:
        """Call ``do`` during the ``pause``-th pause (1-based)."""
        self._at.setdefault(pause, []).append(do)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        for do in self._at.pop(self.sleeps, []):
            do()


@pytest.fixture
def clock(monkeypatch) -> _Clock:
    """Busy keys are retried every second for two seconds of the test's clock."""
    fake = _Clock()
    monkeypatch.setattr(runner, "time", fake)
    monkeypatch.setattr(runner, "BUSY_RETRY_SECONDS", 2.0)
    monkeypatch.setattr(runner, "BUSY_RETRY_PAUSE", 1.0)
    return fake


class _Crash(Exception):
    pass


def _crash_after(step: str):
    def hook(seen: str, rec: Record) -> None:
        if seen == step:
            raise _Crash

    return hook


def _pending(inv, name: str, step: str, spec: Spec = CHALRESP) -> Record:
    """Key ``name`` left pending by a run that crashed right after ``step``."""
    with pytest.raises(_Crash):  # the crash passes through the runner untouched
        Provisioner(inv, applet, hook=_crash_after(step)).run(spec, VirtualPool(1, prefix=name))
    rec = only(inv, virtual_serial(pool_name(1, name)))
    assert rec is not None and rec.state is State.PENDING
    assert rec.last_error is None  # a crash is not a key failure
    return rec


@contextlib.contextmanager
def _held(rec: Record):
    """The virtual key of ``rec`` held open, as another program would; yields the message
    such a key gives to whoever else opens it."""
    path = paths.virtual_key_path(rec.device[len("emu:"):])
    key = VirtualKey.load(path)
    try:
        with pytest.raises(DeviceBusy) as busy:
            VirtualKey.load(path)
        yield str(busy.value)
    finally:
        key.close()


def _record_of(device: Device) -> Record:
    """A record naming ``device`` (for holding a key that has no record yet)."""
    return Record(serial=device.serial, mode=Mode.CHALRESP, slot=2, digits=6, touch=False,
                  name="", sealed="", device=device.spec)


@contextlib.contextmanager
def _busy(clock: _Clock, recs: list[Record], *, until: int | None = None):
    """The keys of ``recs`` held open by another program, let go of during the clock's
    ``until``-th pause (or at the end); yields their busy messages."""
    holders = [_held(rec) for rec in recs]
    messages = [holder.__enter__() for holder in holders]

    def let_go() -> None:
        while holders:
            holders.pop().__exit__(None, None, None)

    if until is not None:
        clock.at(until, let_go)
    try:
        yield messages
    finally:
        let_go()


def _slot_access_code(rec: Record) -> bytes:
    """The access code the key of ``rec`` has on the record's slot (read from the key)."""
    key = VirtualKey.load(paths.virtual_key_path(rec.device[len("emu:"):]))
    try:
        return key.otp.slot_config(rec.slot).acc_code
    finally:
        key.close()


def _typed_then_taken_away(rec: Record) -> str:
    """The person touches the key of ``rec`` (its slot 1 types counter 0's code), then
    takes it away from the station; the code typed."""
    key_file = paths.virtual_key_path(rec.device[len("emu:"):])
    key = VirtualKey.load(key_file)
    try:
        code = key.otp.touch(1).strip()
    finally:
        key.close()
    key_file.rename(key_file.with_name("elsewhere"))  # the key is not at the station
    return code


def _holds(rec: Record, secret: bytes) -> bool:
    """Does the key of ``rec`` answer with ``secret``? (asked through the applet path)"""
    device = Device(rec.serial, rec.device)
    with AppletProgrammer().connect(device) as conn:
        return check(conn, rec.spec, secret, rec.counter) is not None


class _Failing:
    """A key whose connection (``on="connect"``) or programming (``on="program"``) raises
    ``exc``; otherwise the virtual key through the applet path."""

    name = "failing"

    def __init__(self, exc: BaseException, on: str = "program") -> None:
        self.exc, self.on = exc, on

    @contextlib.contextmanager
    def connect(self, device: Device):
        if self.on == "connect":
            raise self.exc
        with AppletProgrammer().connect(device) as conn:
            exc = self.exc

            class Conn:
                def program(self, spec, material, access):
                    raise exc

                occupant = staticmethod(conn.occupant)
                calculate = staticmethod(conn.calculate)

            yield Conn()


class _WritesAnotherSecret:
    """A faulty key (or library) that stores something else than what it was given."""

    name = "wrong"

    @contextlib.contextmanager
    def connect(self, device: Device):
        with AppletProgrammer().connect(device) as conn:
            class Conn:
                def program(self, spec, material, access):
                    conn.program(spec, Material(bytes(b ^ 1 for b in material.secret)),
                                 access)

                occupant = staticmethod(conn.occupant)
                calculate = staticmethod(conn.calculate)

            yield Conn()


# -- resume, per recorded state ------------------------------------------------------------
def test_resume_completes_a_key_that_holds_its_recorded_secret_without_reprogramming(inv):
    rec = _pending(inv, "prog", "program")
    assert rec.attempts == 1 and rec.programmed_at is not None
    summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "done", "", False)]
    after = only(inv, rec.key)
    assert after.state is State.DONE and after.last_error is None
    assert (after.attempts, after.programmed_at) == (1, rec.programmed_at)  # not written again
    assert _holds(after, inv.secret(after))


def test_resume_programs_a_key_recorded_but_never_programmed_with_the_recorded_secret(inv):
    rec = _pending(inv, "rec", "record")
    secret = inv.secret(rec)
    assert rec.attempts == 0 and rec.programmed_at is None
    assert not _holds(rec, secret)  # recorded first: the crash left the key untouched
    summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "done", "", True)]
    after = only(inv, rec.key)
    assert after.state is State.DONE and after.attempts == 1 and after.programmed_at
    assert after.sealed == rec.sealed and _holds(after, secret)  # the same secret


def test_resume_reports_a_missing_key_on_its_record_and_in_the_event_log(inv):
    rec = _pending(inv, "gone", "program")
    key_file = paths.virtual_key_path(rec.device[len("emu:"):])
    key_file.rename(key_file.with_name("unplugged"))
    summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "missing", MISSING)]
    assert summary.exit_code == 1
    after = only(inv, rec.key)
    assert after.state is State.PENDING and after.last_error == MISSING
    last = inv.last_error()
    assert (last["serial"], last["message"]) == (rec.serial, MISSING)


def test_resume_reports_a_damaged_record_and_leaves_its_key_alone(inv):
    first = _pending(inv, "dmg", "program")
    second = _pending(inv, "ok", "program")
    secret = inv.secret(first)
    inv.update(first.key, sealed=second.sealed)  # sealed for another key: cannot open
    summary = Provisioner(inv, applet).resume(RecordedKeys())
    msg = only(inv, first.key).last_error
    assert msg.startswith("cannot open a sealed secret")
    assert summary.outcomes == [Outcome(first.serial, first.device, "failed", msg),
                                Outcome(second.serial, second.device, "done", "", False)]
    assert (summary.outcomes[0].application, summary.outcomes[0].target) == ("otp", "2")
    assert (inv.last_error()["serial"], inv.last_error()["message"]) == (first.serial, msg)
    assert only(inv, first.key).state is State.PENDING
    assert _holds(first, secret)  # not overwritten with anything


def test_resume_reports_a_key_another_program_keeps_open_as_busy(inv, no_busy_wait):
    rec = _pending(inv, "held", "program")
    with _held(rec) as busy_msg:
        summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "busy", busy_msg)]
    assert summary.exit_code == 1
    after = only(inv, rec.key)  # busy is not the key's fault: nothing recorded against it
    assert after.state is State.PENDING and after.last_error is None and after.attempts == 1
    assert inv.last_error() is None
    assert Provisioner(inv, applet).resume(RecordedKeys()).counts() == {"done": 1}


def test_resume_retries_a_busy_key_until_it_is_free(inv, clock):
    rec = _pending(inv, "wait", "program")
    with _busy(clock, [rec], until=1):
        summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "done", "", False)]

def test_resume_reports_a_key_still_busy_at_the_deadline_after_retrying_it(inv, clock):
    rec = _pending(inv, "stuck", "program")
    with _busy(clock, [rec]) as (busy_msg,):
        summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "busy", busy_msg)]
    assert clock.sleeps == 2  # retried after 1 s and at the deadline (2 s), then reported
    assert summary.seconds == 2.0


def test_resume_retries_every_busy_key_while_one_stays_busy(inv, clock):
    first, second = _pending(inv, "b1", "program"), _pending(inv, "b2", "program")
    with _busy(clock, [first]) as (busy_msg,), _busy(clock, [second], until=1):
        summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(second.serial, second.device, "done", "", False),
                                Outcome(first.serial, first.device, "busy", busy_msg)]


def test_resume_goes_on_retrying_after_a_record_another_station_settled(inv, tmp_path, clock):
    first, second = _pending(inv, "s1", "program"), _pending(inv, "s2", "program")

    def settled_elsewhere() -> None:  # another station finished the first key meanwhile
        with contextlib.closing(_other_station(tmp_path)) as other:
            other.update(first.key, state=State.DONE)

    clock.at(1, settled_elsewhere)
    with _busy(clock, [first, second], until=1):
        summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(second.serial, second.device, "done", "", False)]


def test_resume_does_not_wait_for_a_done_record_another_station_holds(inv, tmp_path, clock):
    """Only pending records are resumed: a done key another station is reprogramming right
    now is none of resume's business (it would wait out the busy deadline for it)."""
    Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="other"))
    (rec,) = inv.records()
    with held_by_another_station(str(tmp_path / "inv.db"), rec.serial):
        summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [] and clock.sleeps == 0


def test_resume_reports_a_key_failing_while_being_reprogrammed_as_reprogrammed(inv):
    rec = _pending(inv, "cut", "record")  # never programmed: resume must program it
    failing = _Failing(DeviceError("cable pulled"))
    summary = Provisioner(inv, lambda s, d: failing).resume(RecordedKeys())
    assert summary.outcomes == [
        Outcome(rec.serial, rec.device, "failed", "cable pulled", True)]
    assert _place(summary.outcomes[0]) == ("otp", "2", "chalresp", "")


def _place(outcome: Outcome) -> tuple[str, str, str, str]:
    """What an outcome says beyond its equality: the place, its mode, why it was refused."""
    return outcome.application, outcome.target, outcome.mode, outcome.reason


def _other_station(tmp_path):
    other = open_inventory(str(tmp_path / "inv.db"))
    other.unlock(Unlocker(passphrase=PASSPHRASE))
    return other


def test_resume_leaves_alone_a_record_another_station_settled_meanwhile(inv, tmp_path):
    first = _pending(inv, "one", "program")
    second = _pending(inv, "two", "record")
    theirs: list[Summary] = []

    def other_station_resumes(outcome: Outcome) -> None:
        if not theirs:  # while this station reports the first key, another settles the rest
            with contextlib.closing(_other_station(tmp_path)) as other:
                theirs.append(Provisioner(other, applet).resume(RecordedKeys()))

    ours = Provisioner(inv, applet, on_outcome=other_station_resumes).resume(RecordedKeys())
    assert ours.outcomes == [Outcome(first.serial, first.device, "done", "", False)]
    assert theirs[0].outcomes == [Outcome(second.serial, second.device, "done", "", True)]
    assert only(inv, second.key).attempts == 1  # programmed once, by the other station


def test_resume_skips_a_busy_record_another_station_settled_while_it_waited(inv, tmp_path,
                                                                            clock):
    rec = _pending(inv, "race", "program")

    def other_station_finishes() -> None:
        with contextlib.closing(_other_station(tmp_path)) as other:
            assert Provisioner(other, applet).resume(RecordedKeys()).counts() == {"done": 1}

    with _busy(clock, [rec], until=1):  # let go of first, then the other station settles it
        clock.at(1, other_station_finishes)
        summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == []  # settled elsewhere: nothing to report here
    assert only(inv, rec.key).state is State.DONE


def test_resume_reports_a_key_that_cannot_be_opened_without_the_library_message(inv):
    rec = _pending(inv, "lib", "program")
    broken = _Failing(RuntimeError("libusb said secret=abc"), on="connect")
    summary = Provisioner(inv, lambda s, d: broken).resume(RecordedKeys())
    msg = "the key's client library failed unexpectedly"
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "failed", msg)]
    assert only(inv, rec.key).last_error == msg
    assert (inv.last_error()["serial"], inv.last_error()["message"]) == (rec.serial, msg)


def test_resume_reprograms_a_key_that_answers_wrong_and_reports_it_if_it_still_does(inv):
    rec = _pending(inv, "bad", "record")
    summary = Provisioner(inv, lambda s, d: _WritesAnotherSecret()).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "failed", MISMATCH, True)]
    assert _place(summary.outcomes[0]) == ("otp", "2", "chalresp", "")
    after = only(inv, rec.key)
    assert after.state is State.PENDING and after.last_error == MISMATCH
    assert after.attempts == 1
    assert inv.last_error()["serial"] == rec.serial


# -- run -------------------------------------------------------------------------------------
def test_each_step_is_durable_before_the_next_one_starts(inv):
    """record -> program -> verify -> done, each committed before the runner moves on, so
    a crash after any step leaves everything the next step needs."""
    seen = []

    def hook(step: str, rec: Record) -> None:
        stored = only(inv, rec.key)
        assert stored is not None, f"nothing recorded at {step}"
        assert inv.secret(stored)  # the secret is in the inventory from the first step on
        assert stored.station == runner.station_id()  # who is programming it, from the start
        assert (rec.state, rec.counter) == (stored.state, stored.counter)  # what hooks are told
        seen.append((step, stored.state, stored.attempts, stored.programmed_at is not None))

    summary = Provisioner(inv, applet, hook=hook).run(CHALRESP, VirtualPool(1, prefix="seq"))
    assert summary.counts() == {"done": 1}
    assert seen == [("record", State.PENDING, 0, False), ("program", State.PENDING, 1, True),
                    ("verify", State.PENDING, 1, True), ("done", State.DONE, 1, True)]
    (rec,) = inv.records()
    assert rec.station == runner.station_id() and rec.device == f"emu:{pool_name(1, 'seq')}"
    assert _holds(rec, inv.secret(rec))


def test_the_record_holds_the_spec_the_key_was_programmed_with(inv):
    spec = Spec(Mode.HOTP, slot=1, digits=8)
    assert Provisioner(inv, applet).run(spec, VirtualPool(1, prefix="spec")).counts() == {
        "done": 1}
    (rec,) = inv.records()
    assert rec.spec == spec
    with AppletProgrammer().connect(Device(rec.serial, rec.device)) as conn:
        assert conn.calculate(spec, None) == hotp_code(inv.secret(rec), rec.counter, 8)


def test_the_record_names_the_station_that_last_programmed_the_key(inv):
    programmed = _pending(inv, "st1", "program")
    recorded = _pending(inv, "st2", "record")
    other = Provisioner(inv, applet)
    other.station = "bench-2:4242"
    assert other.resume(RecordedKeys()).counts() == {"done": 2}
    assert only(inv, programmed.key).station == programmed.station  # only checked here
    assert only(inv, recorded.key).station == "bench-2:4242"  # programmed here


def test_a_key_another_station_claimed_while_it_was_being_opened_is_refused(inv, tmp_path):
    """Stations hold a serial before claiming it; should two still race, the claim
    decides, and the loser writes nothing to the key."""
    theirs: list[Record] = []

    class ClaimedMeanwhile:
        name = "race"

        @contextlib.contextmanager
        def connect(self, device):
            with contextlib.closing(_other_station(tmp_path)) as other:
                rec = Record(serial=device.serial, mode=Mode.CHALRESP, slot=2, digits=6,
                             touch=False, name="hwtoken", sealed="", device=device.spec,
                             station="bench-2:4242")
                other.seal(rec, bytes(20))
                assert other.claim(rec)
                theirs.append(rec)
            with AppletProgrammer().connect(device) as conn:
                yield conn

    summary = Provisioner(inv, lambda s, d: ClaimedMeanwhile()).run(
        CHALRESP, VirtualPool(1, prefix="claim"))
    (rec,) = theirs
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "refused",
                                        "claimed by another station")]
    assert _place(summary.outcomes[0]) == ("otp", "2", "chalresp", "claimed")
    stored = only(inv, rec.key)
    assert (stored.sealed, stored.station) == (rec.sealed, "bench-2:4242")
    with AppletProgrammer().connect(Device(rec.serial, rec.device)) as conn, \
            pytest.raises(NotProgrammed):  # this station wrote nothing to the key
        conn.calculate(CHALRESP, bytes(32))


def test_hotp_records_the_counter_after_the_codes_its_checks_used(inv):
    spec = Spec(Mode.HOTP, slot=1)
    Provisioner(inv, applet).run(spec, VirtualPool(1, prefix="hotp"))
    (done,) = inv.records()
    assert done.counter == 1  # the check used code 0
    # crash after verify: the key is at 1 but the record still says 0; resume looks ahead
    rec = _pending(inv, "hotp2", "verify", spec)
    assert rec.counter == 0
    Provisioner(inv, applet).resume(RecordedKeys())
    after = only(inv, rec.key)
    assert after.state is State.DONE and after.counter == 2
    with AppletProgrammer().connect(Device(rec.serial, rec.device)) as conn:
        assert conn.calculate(spec, None) == hotp_code(inv.secret(after), 2, 6)


# -- each mode's check (provision/modes.py), on a virtual key programmed in process ----------
@pytest.fixture
def bare_key(tmp_path):
    key = VirtualKey.create(tmp_path / "modes.key")
    try:
        yield key
    finally:
        key.close()


@pytest.mark.parametrize("mode", [Mode.CHALRESP, Mode.HOTP, Mode.OATH_HOTP, Mode.OATH_TOTP])
def test_each_hmac_mode_makes_a_fresh_secret_of_20_bytes(mode):
    driver = modes.driver_for(mode)
    first, second = (driver.material(Spec(mode), 12345678) for _ in range(2))
    assert len(first.secret) == len(second.secret) == SECRET_LENGTH
    assert first.secret != second.secret and first.params == second.params == {}


def test_a_hotp_check_looks_20_codes_ahead_of_the_recorded_counter_and_never_back(bare_key):
    spec = Spec(Mode.HOTP, slot=1, digits=8)
    material = modes.driver_for(Mode.HOTP).material(spec, bare_key.serial)
    conn = _AppletConnection(bare_key)
    conn.program(spec, material, Access())
    hotp = modes.driver_for(Mode.HOTP)
    assert hotp.check(conn, spec, material, 1) is None  # the key typed code 0: behind
    for _ in range(19):  # codes 1..19 typed elsewhere
        bare_key.otp.touch(1)
    assert hotp.check(conn, spec, material, 0) == 21  # code 20: the last one looked at
    assert hotp.check(conn, spec, material, 0) is None  # code 21: too far ahead
    assert hotp.check(AnswersInBytes(conn), spec, material, 22) == 23
    assert hotp.check(AnswersInBytes(conn, "\u00e9".encode()), spec, material, 23) is None
    assert hotp.check(conn, spec, Material(os.urandom(SECRET_LENGTH)), 23) is None


def test_a_totp_check_asks_the_key_for_the_code_at_the_stations_time(bare_key, monkeypatch):
    """The key computes the code for the time the station gives it (yubikit's OathSession
    in process), with the spec's digits."""
    from hwtoken.emulator.transports.card_direct import DirectCardConnection
    from hwtoken.yubikey.oath import OathClient

    spec = Spec(Mode.OATH_TOTP, digits=8, name="mail")
    totp = modes.driver_for(Mode.OATH_TOTP)
    material = totp.material(spec, bare_key.serial)
    card = DirectCardConnection(bare_key)
    try:
        conn = _OathConnection(OathClient(card))
        conn.program(spec, material, Access())
        assert totp.check(conn, spec, material, 7) == 7
        assert totp.check(AnswersInBytes(conn), spec, material, 7) == 7
        assert totp.check(conn, spec, Material(os.urandom(SECRET_LENGTH)), 7) is None
        an_hour_ago = time.time() - 3600  # the station's clock, not the key's
        monkeypatch.setattr(modes, "time", SimpleNamespace(time=lambda: an_hour_ago))
        assert totp.check(conn, spec, material, 7) == 7
    finally:
        card.close()


def test_a_key_failing_with_a_known_error_shows_its_message(inv):
    failing = _Failing(DeviceError("cable pulled"))
    summary = Provisioner(inv, lambda s, d: failing).run(CHALRESP, VirtualPool(1, prefix="f"))
    (outcome,) = summary.outcomes
    assert (outcome.result, outcome.message) == ("failed", "cable pulled")  # no class name
    rec = only(inv, outcome.serial)
    assert rec.state is State.PENDING and rec.last_error == "cable pulled"
    assert rec.attempts == 0 and rec.programmed_at is None  # the write never happened
    assert inv.last_error()["serial"] == rec.serial
    # the cable is fixed: resume programs it and clears the error
    settled = Provisioner(inv, applet).resume(RecordedKeys())
    assert settled.outcomes == [Outcome(rec.serial, rec.device, "done", "", True)]
    after = only(inv, rec.key)
    assert after.last_error is None and after.state is State.DONE and after.attempts == 1


def test_a_key_failing_with_a_library_error_shows_no_library_text(inv):
    failing = _Failing(ValueError("bad frame 0x01 secret=abc"))
    summary = Provisioner(inv, lambda s, d: failing).run(CHALRESP, VirtualPool(1, prefix="v"))
    msg = "the key's client library failed unexpectedly"  # no class name, no library text
    assert [(o.result, o.message) for o in summary.outcomes] == [("failed", msg)]
    assert only(inv, summary.outcomes[0].serial).last_error == msg


def test_a_key_that_stores_another_secret_fails_its_check(inv):
    summary = Provisioner(inv, lambda s, d: _WritesAnotherSecret()).run(
        CHALRESP, VirtualPool(1, prefix="w"))
    (outcome,) = summary.outcomes
    assert (outcome.result, outcome.message, outcome.reprogrammed) == ("failed", MISMATCH, False)
    rec = only(inv, outcome.serial)
    assert rec.state is State.PENDING and rec.last_error == MISMATCH and rec.attempts == 1
    assert summary.exit_code == 1
    # resumed with a key that keeps what it is given: programmed a second time, and counted
    settled = Provisioner(inv, applet).resume(RecordedKeys())
    assert [(o.result, o.reprogrammed) for o in settled.outcomes] == [("done", True)]
    assert only(inv, rec.key).attempts == 2


def test_a_key_that_cannot_be_opened_leaves_only_an_event(inv):
    broken = _Failing(OSError("no such device"), on="connect")
    summary = Provisioner(inv, lambda s, d: broken).run(CHALRESP, VirtualPool(1, prefix="u"))
    msg = "the key's client library failed unexpectedly"
    (device,) = VirtualPool(1, prefix="u").arrivals()
    assert summary.outcomes == [Outcome(device.serial, device.spec, "failed", msg)]
    assert inv.records() == []
    assert (inv.last_error()["serial"], inv.last_error()["message"]) == (device.serial, msg)


def test_a_setup_error_stops_the_run_and_is_logged(inv):
    broken = _Failing(SetupError("pcscd is not running"), on="connect")
    with pytest.raises(SetupError):
        Provisioner(inv, lambda s, d: broken).run(CHALRESP, VirtualPool(2, prefix="s"))
    assert inv.records() == []
    last = inv.last_error()
    assert last["message"] == "pcscd is not running (run stopped)"
    assert last["serial"] == virtual_serial(pool_name(1, "s"))
    assert virtual_serial(pool_name(2, "s")) is None  # the second key was never reached


@pytest.mark.parametrize("on", ["connect", "program"])
def test_an_unavailable_inventory_stops_the_run(inv, on):
    broken = _Failing(InventoryUnavailable("database is gone"), on=on)
    with pytest.raises(InventoryUnavailable):
        Provisioner(inv, lambda s, d: broken).run(CHALRESP, VirtualPool(2, prefix="i"))
    assert inv.last_error() is None  # not a failure of the key
    assert virtual_serial(pool_name(2, "i")) is None


def test_a_busy_key_is_reported_after_the_others_and_leaves_no_record(inv, no_busy_wait):
    pool = VirtualPool(2, prefix="b")
    first, second = list(pool.arrivals())
    with _held(_record_of(first)) as busy_msg:
        summary = Provisioner(inv, applet).run(CHALRESP, pool)
    assert summary.outcomes == [Outcome(second.serial, second.spec, "done"),
                                Outcome(first.serial, first.spec, "busy", busy_msg)]
    assert only(inv, first.serial) is None  # opened before recording: nothing half-done


def test_a_busy_key_is_retried_after_the_others(inv, clock):
    pool = VirtualPool(2, prefix="r")
    first, second = list(pool.arrivals())
    with _busy(clock, [_record_of(first)], until=1):
        summary = Provisioner(inv, applet).run(CHALRESP, pool)
    assert summary.outcomes == [Outcome(second.serial, second.spec, "done"),
                                Outcome(first.serial, first.spec, "done")]


def test_a_run_stops_at_count_done_keys_without_retrying_busy_ones(inv, clock):
    pool = VirtualPool(3, prefix="c")
    first = next(iter(VirtualPool(1, prefix="c").arrivals()))
    with _busy(clock, [_record_of(first)]):
        summary = Provisioner(inv, applet).run(CHALRESP, pool, count=1)
    assert [o.result for o in summary.outcomes] == ["done"]
    assert clock.sleeps == 0  # nor waits for them
    assert summary.outcomes[0].serial == virtual_serial(pool_name(2, "c"))
    assert only(inv, first.serial) is None
    assert virtual_serial(pool_name(3, "c")) is None  # never reached


def test_a_run_stops_at_count_also_among_keys_retried_after_being_busy(inv, clock):
    pool = VirtualPool(2, prefix="cc")
    devices = list(pool.arrivals())
    with _busy(clock, [_record_of(d) for d in devices], until=1):
        summary = Provisioner(inv, applet).run(CHALRESP, pool, count=1)
    assert [(o.serial, o.result) for o in summary.outcomes] == [(devices[0].serial, "done")]
    assert only(inv, devices[1].serial) is None  # one key asked for, one programmed


def test_a_key_still_busy_at_the_deadline_is_reported_after_retrying_it(inv, clock):
    (device,) = VirtualPool(1, prefix="stuck").arrivals()
    with _busy(clock, [_record_of(device)]) as (busy_msg,):
        summary = Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="stuck"))
    assert summary.outcomes == [Outcome(device.serial, device.spec, "busy", busy_msg)]
    assert clock.sleeps == 2  # retried after 1 s and at the deadline (2 s), then reported
    assert summary.seconds == 2.0
    assert only(inv, device.serial) is None


def test_a_key_busy_for_several_retries_is_done_once_free(inv, clock):
    (device,) = VirtualPool(1, prefix="slow").arrivals()
    with _busy(clock, [_record_of(device)], until=2):
        summary = Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="slow"))
    assert summary.outcomes == [Outcome(device.serial, device.spec, "done")]
    assert clock.sleeps == 2


def test_a_run_retries_every_busy_key_while_one_stays_busy(inv, clock):
    pool = VirtualPool(2, prefix="two")
    first, second = list(pool.arrivals())
    with _busy(clock, [_record_of(first)]) as (busy_msg,), \
            _busy(clock, [_record_of(second)], until=1):
        summary = Provisioner(inv, applet).run(CHALRESP, pool)
    assert summary.outcomes == [Outcome(second.serial, second.spec, "done"),
                                Outcome(first.serial, first.spec, "busy", busy_msg)]


def test_a_busy_key_retried_is_reprogrammed_when_the_run_reprograms(inv, clock):
    pool = VirtualPool(1, prefix="again")
    Provisioner(inv, applet).run(CHALRESP, pool)
    (old,) = inv.records()
    with _busy(clock, [old], until=1):
        summary = Provisioner(inv, applet).run(CHALRESP, pool, reprogram=True)
    assert summary.outcomes == [Outcome(old.serial, old.device, "done")]
    new = only(inv, old.key)
    assert new.sealed != old.sealed and _holds(new, inv.secret(new))


def test_a_run_counts_every_key_done_on_retry_towards_count(inv, clock):
    pool = VirtualPool(3, prefix="cnt")
    devices = list(pool.arrivals())
    with _busy(clock, [_record_of(d) for d in devices[1:]], until=1):
        summary = Provisioner(inv, applet).run(CHALRESP, pool, count=2)
    assert [(o.serial, o.result) for o in summary.outcomes] == [
        (devices[0].serial, "done"), (devices[1].serial, "done")]
    assert only(inv, devices[2].serial) is None  # two keys asked for, two programmed


def test_refused_keys_do_not_count_towards_count(inv):
    Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="n"))
    summary = Provisioner(inv, applet).run(CHALRESP, VirtualPool(3, prefix="n"), count=1)
    assert [o.result for o in summary.outcomes] == ["refused", "done"]
    assert virtual_serial(pool_name(3, "n")) is None


def test_keys_already_recorded_are_refused_with_what_to_do(inv):
    rec = _pending(inv, "p", "program")
    Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="d"))
    (done_rec,) = inv.records(states=[State.DONE])
    again = Provisioner(inv, applet)
    pending = again.run(CHALRESP, VirtualPool(1, prefix="p")).outcomes[0]
    done = again.run(CHALRESP, VirtualPool(1, prefix="d")).outcomes[0]
    assert pending == Outcome(
        rec.serial, rec.device, "refused", "slot 2 is already in the inventory (pending); "
        "pending from an earlier run: `hwtoken provision resume` settles it")
    assert done == Outcome(
        done_rec.serial, done_rec.device, "refused",
        "slot 2 is already in the inventory (done); use --reprogram to program it again")
    assert (pending.reason, done.reason) == ("recorded", "recorded")
    assert Summary([pending, done]).exit_code == 1  # keys came, none ended done


def test_provision_refuses_a_recorded_key_unless_asked_to_reprogram(inv):
    (device,) = VirtualPool(1, prefix="api").arrivals()
    Provisioner(inv, applet).provision(CHALRESP, device)
    (old,) = inv.records()
    assert Provisioner(inv, applet).provision(CHALRESP, device).result == "refused"
    assert only(inv, old.key).sealed == old.sealed
    assert Provisioner(inv, applet).provision(CHALRESP, device, reprogram=True).result == "done"


def test_reprogram_replaces_the_secret_in_the_same_place_only(inv):
    Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="x"))
    (old,) = inv.records()
    # another place on the same key is a record of its own: the slot-2 one stays
    other_place = Provisioner(inv, applet).run(Spec(Mode.CHALRESP, slot=1),
                                               VirtualPool(1, prefix="x"), reprogram=True)
    assert other_place.outcomes == [Outcome(old.serial, old.device, "done")]
    assert (other_place.outcomes[0].application, other_place.outcomes[0].target) == ("otp", "1")
    assert only(inv, old.key).sealed == old.sealed
    assert [r.target for r in inv.records()] == ["2", "1"]
    same = Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="x"), reprogram=True)
    assert same.outcomes == [Outcome(old.serial, old.device, "done")]
    new = only(inv, old.key)
    assert new.sealed != old.sealed and new.state is State.DONE
    assert _holds(new, inv.secret(new)) and not _holds(new, inv.secret(old))


def test_reprogram_opens_a_protected_slot_with_the_recorded_code_and_leaves_it_on(inv):
    """The inventory knows the code it left on the slot: a reprogram needs none given, and
    the new secret is protected by the same code."""
    code = b"\x01\x02\x03\x04\x05\x06"
    Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="rp"), new_access_code=code)
    (old,) = inv.records()
    again = Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="rp"), reprogram=True)
    assert again.outcomes == [Outcome(old.serial, old.device, "done")]
    new = only(inv, old.key)
    assert new.sealed != old.sealed and inv.access_code(new) == code
    assert _holds(new, inv.secret(new))
    assert _slot_access_code(new) == code


def test_the_fault_injector_hears_each_step_of_each_key(inv, monkeypatch):
    """HWTOKEN_FAULT=after:verify@2 kills the station right after the second key's verify
    step (os.kill stands in for the kill here, so the run goes on and shows where)."""
    heard: list[str] = []
    monkeypatch.setenv("HWTOKEN_FAULT", "after:verify@2")
    monkeypatch.setattr(os, "kill", lambda pid, sig: heard.append(
        f"kill {'self' if pid == os.getpid() else pid} {sig.name}"))
    Provisioner(inv, applet, hook=lambda step, rec: heard.append(step)).run(
        CHALRESP, VirtualPool(2, prefix="fi"))
    assert heard == ["record", "program", "verify", "done",
                     "record", "program", "verify", "kill self SIGKILL", "done"]


def test_a_refused_reprogram_on_resume_keeps_the_recorded_access_code(inv, tmp_path):
    """A run left slot 2 recorded with code X, unprogrammed; another station then
    protected it with code Z. Resume cannot write it: the refusal says where and that it
    was a reprogram, and the record still holds X, the code its write would leave."""
    ours, theirs = b"\x01\x02\x03\x04\x05\x06", b"\x0a\x0b\x0c\x0d\x0e\x0f"
    with pytest.raises(_Crash):
        Provisioner(inv, applet, hook=_crash_after("record")).run(
            CHALRESP, VirtualPool(1, prefix="ak"), new_access_code=ours)
    (rec,) = inv.records()
    with opened(str(tmp_path / "theirs.db")) as other:
        assert Provisioner(other, applet).run(CHALRESP, VirtualPool(1, prefix="ak"),
                                              new_access_code=theirs).exit_code == 0
    summary = Provisioner(inv, applet).resume(RecordedKeys())
    (out,) = summary.outcomes
    assert (out.result, out.reprogrammed) == ("refused", True)
    assert _place(out) == ("otp", "2", "chalresp", "access-code")
    after = only(inv, rec.key)
    assert after.state is State.PENDING and inv.access_code(after) == ours


def test_run_stops_once_count_keys_are_done(inv):
    summary = Provisioner(inv, applet).run(CHALRESP, VirtualPool(3, prefix="cnt"), count=2)
    assert [o.result for o in summary.outcomes] == ["done", "done"]
    assert len(inv.records()) == 2


def test_run_opens_protected_slots_with_the_access_code_it_is_given(inv, tmp_path):
    code = b"\x01\x02\x03\x04\x05\x06"
    with opened(str(tmp_path / "theirs.db")) as other:
        Provisioner(other, applet).run(CHALRESP, VirtualPool(1, prefix="ra"),
                                       new_access_code=code)
    summary = Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="ra"),
                                           overwrite=True, access_code=code)
    assert [o.result for o in summary.outcomes] == ["done"]
    (rec,) = inv.records()
    assert inv.access_code(rec) == code and _holds(rec, inv.secret(rec))


def test_each_programmer_is_chosen_for_the_key_at_hand(inv):
    asked: list[Device] = []

    def programmer_for(spec: Spec, device: Device):
        asked.append(device)
        return AppletProgrammer()

    pool = VirtualPool(1, prefix="pf")
    (device,) = pool.arrivals()
    summary = Provisioner(inv, programmer_for).run(PLAN, pool)
    assert [o.result for o in summary.outcomes] == ["done", "done"]
    assert asked and all(d == device for d in asked)


def test_every_outcome_is_passed_on_as_it_happens(inv):
    told: list[Outcome] = []
    summary = Provisioner(inv, applet, on_outcome=told.append).run(
        CHALRESP, VirtualPool(2, prefix="o"))
    assert told == summary.outcomes and len(told) == 2


# -- log -------------------------------------------------------------------------------------
def test_the_log_tells_each_step_and_the_outcome_of_each_key(inv, caplog):
    caplog.set_level(logging.DEBUG, logger=runner.__name__)
    (done,) = Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="log")).outcomes
    assert [r.getMessage() for r in caplog.records if r.name == runner.__name__] == [
        *(f"key {done.serial} ({done.device}): step {step} complete"
          for step in ("record", "program", "verify", "done")),
        f"key {done.serial}: done "]


@pytest.mark.parametrize(("exc", "with_traceback"), [
    (DeviceError("cable pulled"), False),  # ours: its message says it all
    (ValueError("bad frame"), True),  # a library's: the traceback is for debugging it
])
def test_a_failure_is_logged_with_a_traceback_only_for_a_library_error(inv, caplog, exc,
                                                                        with_traceback):
    caplog.set_level(logging.DEBUG, logger=runner.__name__)
    failing = _Failing(exc)
    (failed,) = Provisioner(inv, lambda s, d: failing).run(
        CHALRESP, VirtualPool(1, prefix="tb")).outcomes
    (debug,) = [r for r in caplog.records if r.getMessage() == f"key {failed.serial} failed"]
    assert debug.levelno == logging.DEBUG
    assert (debug.exc_info[1] if debug.exc_info else None) is (exc if with_traceback else None)
    assert caplog.records[-1].getMessage() == f"key {failed.serial}: failed {failed.message}"


# -- summary ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("results", "code"), [
    ([], 0),
    (["done"], 0),
    (["done", "refused", "busy"], 0),
    (["refused"], 1),
    (["refused", "busy"], 1),
    (["done", "failed"], 1),
    (["done", "missing"], 1),
    (["done", "unchecked"], 1),
])
def test_summary_exit_code(results, code):
    assert Summary([Outcome(i, "emu:k", r) for i, r in enumerate(results)]).exit_code == code


def test_summary_and_outcome_as_json():
    summary = Summary([Outcome(7, "emu:a", "done", application="otp", target="2",
                               mode="chalresp"),
                       Outcome(8, "usb:8", "failed", "why", True),
                       Outcome(9, "emu:c", "refused", "held", reason="occupied"),
                       Outcome(9, "emu:c", "refused", "held", reason="occupied")],
                      seconds=1.23456)
    assert summary.to_json() == {
        "counts": {"done": 1, "failed": 1, "refused": 2}, "refused": {"occupied": 2},
        "keys_seen": 3, "seconds": 1.235,
        "keys": [
            {"serial": 7, "device": "emu:a", "application": "otp", "target": "2",
             "mode": "chalresp", "result": "done", "reason": None, "message": "",
             "reprogrammed": False},
            {"serial": 8, "device": "usb:8", "application": "", "target": "", "mode": "",
             "result": "failed", "reason": None, "message": "why", "reprogrammed": True},
            {"serial": 9, "device": "emu:c", "application": "", "target": "", "mode": "",
             "result": "refused", "reason": "occupied", "message": "held",
             "reprogrammed": False},
            {"serial": 9, "device": "emu:c", "application": "", "target": "", "mode": "",
             "result": "refused", "reason": "occupied", "message": "held",
             "reprogrammed": False}]}


# -- several places per key, what a key holds, access codes, typed codes ------------------------
PLAN = [Spec(Mode.CHALRESP, slot=1), Spec(Mode.HOTP, slot=2)]


def _foreign(inv_path, prefix: str, spec: Spec = CHALRESP) -> Record:
    """Key ``prefix``-0001 programmed by another inventory (another batch, a typo)."""
    with opened(str(inv_path)) as other:
        Provisioner(other, applet).run(spec, VirtualPool(1, prefix=prefix))
        (rec,) = other.records()
    return rec


def test_a_key_holding_a_place_this_inventory_did_not_write_is_refused_whole(inv, tmp_path):
    theirs = _foreign(tmp_path / "theirs.db", "occ")
    asked: list[tuple[int, list[str]]] = []

    def no(device: Device, occupied: list[str]) -> bool:
        asked.append((device.serial, occupied))
        return False

    summary = Provisioner(inv, applet).run(PLAN, VirtualPool(1, prefix="occ"), overwrite=no)
    msg = "slot 2 is programmed (challenge-response)"
    assert asked == [(theirs.serial, [msg])]
    assert [(o.target, o.result, o.reason) for o in summary.outcomes] == [
        ("1", "refused", "occupied"), ("2", "refused", "occupied")]
    assert summary.outcomes[0].message == (f"{msg}, which this inventory did not write: pass "
                                           "--overwrite to replace it")
    assert summary.refusals() == {"occupied": 2} and summary.exit_code == 1
    assert inv.records() == []
    with AppletProgrammer().connect(Device(theirs.serial, theirs.device)) as conn:
        assert conn.occupant(Spec(Mode.CHALRESP, slot=1)) is None  # slot 1 not written
    # told to: both places written, each a record of its own
    yes = Provisioner(inv, applet).run(PLAN, VirtualPool(1, prefix="occ"), overwrite=True)
    assert [(o.target, o.mode, o.result) for o in yes.outcomes] == [
        ("1", "chalresp", "done"), ("2", "hotp", "done")]
    assert sorted(r.key for r in inv.records()) == [(theirs.serial, "otp", "1"),
                                                     (theirs.serial, "otp", "2")]


def test_this_inventorys_own_places_are_not_foreign(inv):
    Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="own"))
    told = []
    again = Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="own"),
                                         reprogram=True,
                                         overwrite=lambda d, o: told.append(o) or False)
    assert told == [] and [o.result for o in again.outcomes] == ["done"]


def test_each_record_is_told_as_soon_as_it_is_done(inv):
    told: list[Outcome] = []

    def hook(step: str, rec: Record) -> None:
        if step == "record" and rec.slot == 2:
            assert [(o.target, o.result) for o in told] == [("1", "done")]

    Provisioner(inv, applet, hook=hook, on_outcome=told.append).run(
        PLAN, VirtualPool(1, prefix="tell"))
    assert [(o.target, o.result) for o in told] == [("1", "done"), ("2", "done")]


class _NoSerial:
    """Discovery shows one key without a serial, at ``/dev/hidraw7``."""

    def __init__(self, interfaces: frozenset[str] | None) -> None:
        self.interfaces = interfaces

    def arrivals(self):
        yield Device(None, "/dev/hidraw7", model="YubiKey 5 NFC", interfaces=self.interfaces)

    def present(self, record):  # pragma: no cover
        return None


@pytest.mark.parametrize("interfaces", [None, frozenset({"otp", "fido", "ccid"})])
def test_a_key_without_a_serial_is_refused_as_such(inv, interfaces):
    summary = Provisioner(inv, applet).run(CHALRESP, _NoSerial(interfaces))
    assert summary.outcomes == [Outcome(None, "/dev/hidraw7", "refused", "YubiKey 5 NFC shows "
                                        "no serial number, so its records could not be told "
                                        "apart: take it out")]
    assert summary.outcomes[0].reason == "no-serial" and inv.records() == []


def test_a_fido_only_key_without_a_serial_at_an_otp_station_is_refused_as_fido_only(inv):
    """A Security Key shows no serial (as a real one does not): what the operator needs to
    hear is that it is the wrong kind of key, not that its serial is missing."""
    source = _NoSerial(frozenset({"fido"}))
    summary = Provisioner(inv, applet).run(CHALRESP, source)
    assert summary.outcomes == [Outcome(None, "/dev/hidraw7", "refused", "YubiKey 5 NFC is a "
                                        "FIDO-only key (FIDO interface only): it has no OTP "
                                        "slots")]
    assert summary.outcomes[0].reason == "unsuitable" and inv.records() == []


def test_random_access_codes_are_per_slot_and_sealed(inv):
    from hwtoken.provision.model import RANDOM

    Provisioner(inv, applet).run(PLAN, VirtualPool(2, prefix="ac"), new_access_code=RANDOM)
    codes = {r.key: inv.access_code(r) for r in inv.records()}
    assert len(codes) == 4 and len(set(codes.values())) == 4
    for rec in inv.records():
        assert _slot_access_code(rec) == codes[rec.key]


def test_a_slot_protected_by_an_unknown_code_is_refused_and_counted(inv, tmp_path):
    with opened(str(tmp_path / "theirs.db")) as other:
        Provisioner(other, applet).run(CHALRESP, VirtualPool(1, prefix="lock"),
                                       new_access_code=b"\x01\x02\x03\x04\x05\x06")
    summary = Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="lock"),
                                           overwrite=True)
    (out,) = summary.outcomes
    assert (out.result, out.reason) == ("refused", "access-code")
    (rec,) = inv.records()
    assert (rec.state, rec.attempts, rec.programmed_at) == (State.PENDING, 1, None)
    assert rec.last_error == out.message and inv.access_code(rec) is None
    # a wrong code: refused again, counted, and the record keeps no code
    wrong = Provisioner(inv, applet).resume(RecordedKeys(), access_code=b"\x09" * 6)
    assert [(o.result, o.reason) for o in wrong.outcomes] == [("refused", "access-code")]
    rec = inv.get(rec.key)
    assert rec.attempts == 2 and inv.access_code(rec) is None
    settled = Provisioner(inv, applet).resume(RecordedKeys(),
                                              access_code=b"\x01\x02\x03\x04\x05\x06")
    assert [(o.result, o.reprogrammed) for o in settled.outcomes] == [("done", True)]
    rec = inv.get(rec.key)
    assert rec.attempts == 3 and inv.access_code(rec) == b"\x01\x02\x03\x04\x05\x06"


def test_yubico_otp_through_the_applet_path(inv):
    from hwtoken.provision import yubiotp

    summary = Provisioner(inv, applet).run(Spec(Mode.YUBIOTP, slot=1),
                                           VirtualPool(1, prefix="yo"))
    assert summary.counts() == {"done": 1}
    (rec,) = inv.records()
    assert rec.params == {"public_id": yubiotp.serial_public_id(rec.serial)}
    assert len(inv.secret(rec)) == yubiotp.SECRET_SIZE
    key = VirtualKey.load(paths.virtual_key_path(rec.device[4:]))
    try:
        assert yubiotp.matches(key.otp.touch(1), rec.params["public_id"], inv.secret(rec))
    finally:
        key.close()
    # the public parameters are bound to the sealed secret: changed, it no longer opens
    inv.update(rec.key, params={"public_id": "vvcccccccccc"})
    from hwtoken.provision.sealing import WrongKey

    with pytest.raises(WrongKey):
        inv.secret(inv.get(rec.key))


def test_a_typed_code_settles_a_pending_typing_slot_without_the_key(inv):
    rec = _pending(inv, "typed", "program", Spec(Mode.HOTP, slot=1))
    secret = inv.secret(rec)
    code = _typed_then_taken_away(rec)  # counter 0 is used
    wrong = Provisioner(inv, applet).resume(RecordedKeys(), codes={rec.serial: ["000000"]})
    assert [o.result for o in wrong.outcomes] == ["failed"]
    assert inv.get(rec.key).state is State.PENDING
    done = Provisioner(inv, applet).resume(RecordedKeys(), codes={rec.serial: [code]})
    assert done.outcomes == [Outcome(rec.serial, rec.device, "done",
                                     "checked by the code typed by hand")]
    after = inv.get(rec.key)
    assert after.state is State.DONE and after.counter == 1 and code == hotp_code(secret, 0, 6)
    assert after.attempts == rec.attempts  # nothing written


class _ReadFails:
    """A key whose places cannot be read (``occupant`` raises ``exc``); otherwise the
    virtual key through the applet path."""

    name = "read-fails"

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    @contextlib.contextmanager
    def connect(self, device: Device):
        with AppletProgrammer().connect(device) as conn:
            exc = self.exc

            class Conn:
                def occupant(self, spec):
                    raise exc

                program = staticmethod(conn.program)
                calculate = staticmethod(conn.calculate)

            yield Conn()


@pytest.mark.parametrize(("exc", "msg"), [
    (DeviceError("the reader lost the card"), "the reader lost the card"),
    (DeviceError(""), "the key failed without saying why"),
    (ValueError("bad frame secret=abc"), "the key's client library failed unexpectedly"),
])
def test_a_key_whose_places_cannot_be_read_fails_and_leaves_only_an_event(inv, exc, msg):
    pool = VirtualPool(1, prefix="rd")
    (device,) = pool.arrivals()
    summary = Provisioner(inv, lambda s, d: _ReadFails(exc)).run(CHALRESP, pool)
    assert summary.outcomes == [Outcome(device.serial, device.spec, "failed", msg)]
    assert summary.outcomes[0].application == "" and summary.exit_code == 1
    assert _place(summary.outcomes[0]) == ("", "", "", "")  # the key, not one place of it
    assert inv.records() == []  # read before step 1: nothing recorded
    assert (inv.last_error()["serial"], inv.last_error()["message"]) == (device.serial, msg)


def test_a_key_without_the_application_found_while_reading_is_refused_whole(inv):
    pool = VirtualPool(1, prefix="un")
    (device,) = pool.arrivals()
    no_oath = Unsuitable("the key has no OATH application")
    summary = Provisioner(inv, lambda s, d: _ReadFails(no_oath)).run(PLAN, pool)
    assert summary.outcomes == [Outcome(device.serial, device.spec, "refused",
                                        "the key has no OATH application")]
    assert summary.outcomes[0].reason == "unsuitable" and summary.refusals() == {
        "unsuitable": 1}
    assert inv.records() == [] and inv.last_error() is None  # refused, not failed


@pytest.mark.parametrize("exc", [DeviceBusy("another program has the key open"),
                                 SetupError("pcscd is not running"),
                                 InventoryUnavailable("database is gone")])
def test_reading_a_key_lets_busy_setup_and_inventory_errors_through(inv, no_busy_wait, exc):
    pool = VirtualPool(1, prefix="rb")
    (device,) = pool.arrivals()
    provisioner = Provisioner(inv, lambda s, d: _ReadFails(exc))
    if isinstance(exc, DeviceBusy):
        summary = provisioner.run(CHALRESP, pool)
        assert summary.outcomes == [Outcome(device.serial, device.spec, "busy",
                                            "another program has the key open")]
    else:
        with pytest.raises(type(exc)):
            provisioner.run(CHALRESP, pool)
    assert inv.records() == [] and inv.last_error() is None


@pytest.mark.parametrize(("exc", "msg"), [
    (DeviceError("no OATH reader configured"), "no OATH reader configured"),
    (DeviceError(""), "the key failed without saying why"),
])
def test_a_key_no_programmer_can_reach_fails_and_leaves_only_an_event(inv, exc, msg):
    def programmer_for(spec: Spec, device: Device):
        raise exc

    pool = VirtualPool(1, prefix="np")
    (device,) = pool.arrivals()
    summary = Provisioner(inv, programmer_for).run(CHALRESP, pool)
    assert summary.outcomes == [Outcome(device.serial, device.spec, "failed", msg)]
    assert inv.records() == []
    assert (inv.last_error()["serial"], inv.last_error()["message"]) == (device.serial, msg)


@pytest.mark.parametrize("exc", [SetupError("pcscd is not running"),
                                 InventoryUnavailable("database is gone")])
def test_choosing_a_programmer_lets_setup_and_inventory_errors_through(inv, exc):
    def programmer_for(spec: Spec, device: Device):
        raise exc

    with pytest.raises(type(exc)) as raised:
        Provisioner(inv, programmer_for).run(CHALRESP, VirtualPool(2, prefix="ns"))
    assert raised.value is exc
    assert inv.records() == [] and inv.last_error() is None
    assert virtual_serial(pool_name(2, "ns")) is None  # the run stopped at the first key


def test_a_busy_key_is_busy_only_for_the_places_not_already_refused(inv, no_busy_wait):
    Provisioner(inv, applet).run(Spec(Mode.CHALRESP, slot=1), VirtualPool(1, prefix="bp"))
    (rec,) = inv.records()
    with _held(rec) as busy_msg:
        summary = Provisioner(inv, applet).run(PLAN, VirtualPool(1, prefix="bp"))
    assert [(o.target, o.result, o.reason) for o in summary.outcomes] == [
        ("1", "refused", "recorded"), ("2", "busy", "")]
    assert summary.outcomes[1].message == busy_msg
    assert [r.key for r in inv.records()] == [rec.key]  # slot 2 never recorded


@pytest.mark.parametrize(("exc", "reason"), [
    (Unsuitable("the key has no OTP application"), "unsuitable"),
    (AccessDenied("slot 2 is protected by an access code"), "access-code"),
])
def test_resume_refuses_a_key_that_cannot_take_its_record(inv, exc, reason):
    rec = _pending(inv, "rs", "record")
    summary = Provisioner(inv, lambda s, d: _Failing(exc, on="connect")).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "refused", str(exc))]
    assert summary.outcomes[0].reason == reason and summary.refusals() == {reason: 1}
    assert (summary.outcomes[0].application, summary.outcomes[0].target) == ("otp", "2")
    after = inv.get(rec.key)
    assert after.state is State.PENDING and after.last_error == str(exc)
    assert after.attempts == rec.attempts  # nothing written


class _CannotAsk:
    """A key that takes every write but cannot be asked for a code now (a real key's HOTP
    slot with nobody to touch it); counts its writes. ``until_written``: its slot answers
    until it is written, and only then wants a touch."""

    name = "cannot-ask"

    def __init__(self, *, until_written: bool = False) -> None:
        self.writes = 0
        self.until_written = until_written

    @contextlib.contextmanager
    def connect(self, device: Device):
        with AppletProgrammer().connect(device) as conn:
            outer = self

            class Conn:
                def program(self, spec, material, access):
                    outer.writes += 1
                    conn.program(spec, material, access)

                def calculate(self, spec, challenge):
                    if outer.until_written and not outer.writes:
                        return conn.calculate(spec, challenge)
                    raise CannotCheck(TOUCH)

                occupant = staticmethod(conn.occupant)

            yield Conn()


TOUCH = "a real key's HOTP slot can only be checked by touching it"


def test_a_key_that_cannot_be_asked_stays_pending_unchecked_and_is_not_reprogrammed(inv):
    key = _CannotAsk()
    summary = Provisioner(inv, lambda s, d: key).run(Spec(Mode.HOTP), VirtualPool(1, prefix="ca"))
    (outcome,) = summary.outcomes
    assert outcome == Outcome(outcome.serial, outcome.device, "unchecked", TOUCH)
    assert summary.exit_code == 1 and summary.counts() == {"unchecked": 1}
    rec = only(inv, outcome.serial)
    assert (rec.state, rec.last_error, rec.attempts) == (State.PENDING, TOUCH, 1)
    assert inv.last_error()["message"] == TOUCH
    again = Provisioner(inv, lambda s, d: key).resume(RecordedKeys())
    assert again.outcomes == [Outcome(rec.serial, rec.device, "unchecked", TOUCH)]
    assert key.writes == 1 and inv.get(rec.key).attempts == 1  # the key may hold it


def test_a_key_resume_reprogrammed_but_cannot_ask_is_unchecked_and_reprogrammed(inv):
    rec = _pending(inv, "tw", "record")  # never programmed: resume must program it
    key = _CannotAsk(until_written=True)
    summary = Provisioner(inv, lambda s, d: key).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "unchecked", TOUCH, True)]
    assert _place(summary.outcomes[0]) == ("otp", "2", "chalresp", "")
    assert key.writes == 1 and only(inv, rec.key).state is State.PENDING


def test_keys_without_a_serial_are_each_a_key_of_their_own():
    summary = Summary([Outcome(None, "/dev/hidraw7", "refused"),
                       Outcome(None, "/dev/hidraw7", "refused"),
                       Outcome(5, "emu:a", "done"), Outcome(5, "emu:a", "refused")])
    assert summary.keys_seen == 3


@pytest.mark.parametrize(("results", "counts"), [
    ([], False),
    (["done"], True),
    (["done", "refused"], True),
    (["refused"], False),
    (["done", "failed"], False),
    (["done", "unchecked"], False),
    (["done", "busy"], False),
])
def test_a_key_counts_towards_count_when_done_and_nothing_of_it_failed(results, counts):
    assert runner._key_done([Outcome(1, "emu:k", r) for r in results]) is counts


class _Logged(AppletProgrammer):
    """The applet path under another name (another programmer), telling ``log`` when it
    opens and closes the key."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log

    @contextlib.contextmanager
    def connect(self, device: Device):
        self.log.append(("open", self.name))
        with super().connect(device) as conn:
            yield conn
        self.log.append(("close", self.name))


def _two_programmers(log: list[tuple[str, str]]):
    """Slot 1 through programmer ``first``, slot 2 through ``second``."""
    first, second = _Logged("first", log), _Logged("second", log)
    return lambda spec, device: first if spec.slot == 1 else second


def test_places_of_two_programmers_are_read_last_group_first_and_written_in_plan_order(inv):
    log: list[tuple[str, str]] = []
    summary = Provisioner(inv, _two_programmers(log)).run(PLAN, VirtualPool(1, prefix="tp"))
    assert [(o.target, o.result) for o in summary.outcomes] == [("1", "done"), ("2", "done")]
    # the first group's connection stays open from its read to its write: one key open
    # at a time
    assert log == [("open", "second"), ("close", "second"), ("open", "first"),
                   ("close", "first"), ("open", "second"), ("close", "second")]


def test_places_of_two_programmers_held_by_another_inventory_are_named_in_plan_order(
        inv, tmp_path):
    with opened(str(tmp_path / "theirs.db")) as other:
        Provisioner(other, applet).run(PLAN, VirtualPool(1, prefix="tq"))
    log: list[tuple[str, str]] = []
    summary = Provisioner(inv, _two_programmers(log)).run(PLAN, VirtualPool(1, prefix="tq"))
    what = ("slot 1 is programmed (challenge-response); slot 2 is programmed (it types on "
            "touch: HOTP, Yubico OTP or a static password)")
    assert [(o.target, o.result, o.reason, o.message) for o in summary.outcomes] == [
        (t, "refused", "occupied", f"{what}, which this inventory did not write: pass "
                                   "--overwrite to replace it") for t in ("1", "2")]
    assert log == [("open", "second"), ("close", "second"), ("open", "first"),
                   ("close", "first")]  # the kept connection is closed too
    assert inv.records() == []


class _OathApplet:
    """A virtual key's OATH applet, through yubikit's OathSession in process."""

    name = "oath-applet"

    @contextlib.contextmanager
    def connect(self, device: Device):
        from hwtoken.emulator.transports.card_direct import DirectCardConnection
        from hwtoken.yubikey.oath import OathClient

        with AppletProgrammer().connect(device) as otp:
            yield _OathConnection(OathClient(DirectCardConnection(otp.key)))


def test_an_access_code_is_left_on_otp_slots_only(inv):
    code = b"\x01\x02\x03\x04\x05\x06"
    plan = [Spec(Mode.CHALRESP, slot=2), Spec(Mode.OATH_TOTP, name="mail")]
    oath = _OathApplet()
    summary = Provisioner(inv, lambda s, d: oath if s.application == "oath" else applet(s, d)
                          ).run(plan, VirtualPool(1, prefix="ao"), new_access_code=code)
    assert [(o.application, o.target, o.result) for o in summary.outcomes] == [
        ("otp", "2", "done"), ("oath", "mail", "done")]
    codes = {r.application: inv.access_code(r) for r in inv.records()}
    assert codes == {"otp": code, "oath": None}


@pytest.mark.parametrize(("exc", "with_traceback"), [(DeviceError("cable pulled"), False),
                                                     (ValueError("bad frame"), True)])
@pytest.mark.parametrize(("where", "message"), [("read", "reading key failed"),
                                                ("connect", "opening key failed")])
def test_a_key_failing_to_open_or_read_is_logged_with_a_traceback_only_for_a_library_error(
        inv, caplog, exc, with_traceback, where, message):
    caplog.set_level(logging.DEBUG, logger=runner.__name__)
    key = _ReadFails(exc) if where == "read" else _Failing(exc, on="connect")
    (failed,) = Provisioner(inv, lambda s, d: key).run(
        CHALRESP, VirtualPool(1, prefix="lg")).outcomes
    assert failed.result == "failed"
    (debug,) = [r for r in caplog.records if r.getMessage() == message]
    assert debug.levelno == logging.DEBUG
    assert (debug.exc_info[1] if debug.exc_info else None) is (exc if with_traceback else None)


def _events(inv, kind: str) -> list[tuple]:
    return [tuple(r) for r in inv.query("SELECT serial, message, place FROM events "
                                        "WHERE kind = ? ORDER BY id", (kind,))]


def test_typed_codes_still_settle_a_record_another_station_held_at_first(inv, tmp_path, clock):
    """Resume keeps the typed codes for its retry of a record that was busy."""
    rec = _pending(inv, "typedbusy", "program", Spec(Mode.HOTP, slot=1))
    code = _typed_then_taken_away(rec)
    with held_by_another_station(str(tmp_path / "inv.db"), rec.serial) as let_go:
        clock.at(1, let_go)
        summary = Provisioner(inv, applet).resume(RecordedKeys(), codes={rec.serial: [code]})
    assert clock.sleeps == 1  # busy at first, settled at the first retry
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "done",
                                        "checked by the code typed by hand")]
    assert inv.get(rec.key).state is State.DONE


def test_a_typed_code_is_logged_as_the_check_and_a_wrong_one_as_the_error(inv):
    rec = _pending(inv, "tl", "program", Spec(Mode.HOTP, slot=1))
    code = hotp_code(inv.secret(rec), 0, 6)
    wrong_code = "000000" if code != "000000" else "111111"
    wrong = Provisioner(inv, applet).resume(RecordedKeys(), codes={rec.serial: [wrong_code]})
    msg = "the code typed for slot 1 does not match its recorded secret (the record stays " \
          "pending)"
    assert wrong.outcomes == [Outcome(rec.serial, rec.device, "failed", msg)]
    assert inv.get(rec.key).last_error == msg
    assert _events(inv, "error") == [(rec.serial, msg, "slot 1")]
    done = Provisioner(inv, applet).resume(RecordedKeys(), codes={rec.serial: ["1", code]})
    assert [(o.result, o.message) for o in done.outcomes] == [
        ("done", "checked by the code typed by hand")]
    assert _events(inv, "checked") == [(rec.serial, "checked by a code typed by hand",
                                        "slot 1")]
    after = inv.get(rec.key)
    assert (after.state, after.counter, after.last_error) == (State.DONE, 1, None)


def test_resume_asks_the_key_when_no_code_was_typed_for_its_record(inv):
    typing = _pending(inv, "ty", "program", Spec(Mode.HOTP, slot=1))
    chalresp = _pending(inv, "tz", "program")
    summary = Provisioner(inv, applet).resume(
        RecordedKeys(), codes={chalresp.serial: [hotp_code(inv.secret(chalresp), 0, 6)]})
    # settled through the keys themselves: the codes are for typing slots only
    assert sorted((o.serial, o.result, o.message) for o in summary.outcomes) == sorted(
        [(typing.serial, "done", ""), (chalresp.serial, "done", "")])
    assert _events(inv, "checked") == []


def test_resume_keeps_no_access_code_for_an_oath_credential(inv):
    spec = Spec(Mode.OATH_TOTP, name="mail")
    oath = _OathApplet()
    with pytest.raises(_Crash):
        Provisioner(inv, lambda s, d: oath, hook=_crash_after("record")).run(
            spec, VirtualPool(1, prefix="oa"))
    (rec,) = inv.records()
    settled = Provisioner(inv, lambda s, d: oath).resume(RecordedKeys(),
                                                          access_code=b"\x01" * 6)
    assert settled.outcomes == [Outcome(rec.serial, rec.device, "done", "", True)]
    after = inv.get(rec.key)
    assert after.state is State.DONE and after.access_code is None


def test_provision_leaves_a_foreign_place_alone_unless_told_to_overwrite(inv, tmp_path):
    theirs = _foreign(tmp_path / "theirs.db", "pf")
    device = Device(theirs.serial, theirs.device)
    refused = Provisioner(inv, applet).provision(CHALRESP, device)
    assert (refused.result, refused.reason) == ("refused", "occupied")
    assert inv.records() == []
    done = Provisioner(inv, applet).provision(CHALRESP, device, overwrite=True)
    assert (done.result, done.target) == ("done", "2")


def test_provision_takes_the_access_codes_it_is_given(inv):
    (device,) = VirtualPool(1, prefix="pc").arrivals()
    code, other = b"\x01\x02\x03\x04\x05\x06", b"\x0a\x0b\x0c\x0d\x0e\x0f"
    assert Provisioner(inv, applet).provision(CHALRESP, device,
                                              new_access_code=code).result == "done"
    (rec,) = inv.records()
    assert inv.access_code(rec) == code
    # programmed again elsewhere: this inventory forgets it, and must be given the code
    inv.query("DELETE FROM records")
    again = Provisioner(inv, applet).provision(CHALRESP, device, overwrite=True,
                                               access_code=code, new_access_code=other)
    assert again.result == "done" and inv.access_code(inv.get(rec.key)) == other


def test_provision_reports_a_busy_key_at_once(inv):
    (device,) = VirtualPool(1, prefix="pb").arrivals()
    with _held(_record_of(device)) as busy_msg:
        outcome = Provisioner(inv, applet).provision(CHALRESP, device)
    assert outcome == Outcome(device.serial, device.spec, "busy", busy_msg)
    assert inv.records() == []


def test_a_key_without_a_serial_or_model_is_checked_for_each_place_of_the_plan(inv):
    asked: list[tuple[Spec, Device]] = []

    def programmer_for(spec: Spec, device: Device):
        asked.append((spec, device))
        return AppletProgrammer()

    class _Anonymous(_NoSerial):
        def arrivals(self):
            yield Device(None, "/dev/hidraw8")

    summary = Provisioner(inv, programmer_for).run(PLAN, _Anonymous(None))
    assert summary.outcomes == [Outcome(None, "/dev/hidraw8", "refused", "a key shows no "
                                        "serial number, so its records could not be told "
                                        "apart: take it out")]
    assert asked == [(PLAN[0], Device(None, "/dev/hidraw8")),
                     (PLAN[1], Device(None, "/dev/hidraw8"))]


def test_a_typed_code_outcome_names_its_place(inv):
    rec = _pending(inv, "tn", "program", Spec(Mode.HOTP, slot=1))
    code = hotp_code(inv.secret(rec), 0, 6)
    wrong = Provisioner(inv, applet).resume(
        RecordedKeys(), codes={rec.serial: ["000000" if code != "000000" else "111111"]})
    done = Provisioner(inv, applet).resume(RecordedKeys(), codes={rec.serial: [code]})
    for summary, result in ((wrong, "failed"), (done, "done")):
        (outcome,) = summary.outcomes
        assert (outcome.result, outcome.application, outcome.target, outcome.mode) == (
            result, "otp", "1", "hotp")


def test_resume_checks_a_yubico_otp_slot_with_its_public_id(inv):
    rec = _pending(inv, "yr", "program", Spec(Mode.YUBIOTP, slot=1))
    assert rec.params["public_id"]
    summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "done", "", False)]


def test_resume_leaves_the_recorded_access_code_on_the_slot(inv):
    code = b"\x01\x02\x03\x04\x05\x06"
    with pytest.raises(_Crash):
        Provisioner(inv, applet, hook=_crash_after("record")).run(
            CHALRESP, VirtualPool(1, prefix="rc"), new_access_code=code)
    (rec,) = inv.records()
    assert inv.access_code(rec) == code
    summary = Provisioner(inv, applet).resume(RecordedKeys())
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "done", "", True)]
    assert inv.access_code(inv.get(rec.key)) == code
    assert _slot_access_code(rec) == code


def test_each_step_hands_on_the_record_as_it_stands(inv):
    seen: list[tuple] = []

    def hook(step: str, rec: Record) -> None:
        seen.append((step, rec.state, rec.counter, rec.attempts, rec.programmed_at is None))

    (done,) = Provisioner(inv, applet, hook=hook).run(
        Spec(Mode.HOTP, slot=1), VirtualPool(1, prefix="st")).outcomes
    assert done.result == "done"
    assert seen == [("record", State.PENDING, 0, 0, True),
                    ("program", State.PENDING, 0, 1, True),
                    ("verify", State.PENDING, 0, 1, True),
                    ("done", State.DONE, 1, 1, True)]
    rec = only(inv, done.serial)
    assert (rec.state, rec.counter, rec.attempts) == (State.DONE, 1, 1)
    assert rec.programmed_at is not None and rec.programmed_at > 1_700_000_000


def test_resume_outcomes_name_the_place_and_the_key_is_opened_for_its_spec(inv, no_busy_wait):
    missing = _pending(inv, "pm", "record", Spec(Mode.HOTP, slot=1))
    key_file = paths.virtual_key_path(missing.device[4:])
    key_file.rename(key_file.with_name("elsewhere"))
    broken = _pending(inv, "pf", "record")
    busy = _pending(inv, "pz", "record")
    asked: list[Spec] = []

    def programmer_for(spec: Spec, device: Device):
        asked.append(spec)
        if device.serial == broken.serial:
            return _Failing(DeviceError("cable pulled"), on="connect")
        return AppletProgrammer()

    with _held(busy) as busy_msg:
        summary = Provisioner(inv, programmer_for).resume(RecordedKeys())
    assert [(o.serial, o.result, o.message, o.application, o.target, o.mode)
            for o in summary.outcomes] == [
        (missing.serial, "missing", MISSING, "otp", "1", "hotp"),
        (broken.serial, "failed", "cable pulled", "otp", "2", "chalresp"),
        (busy.serial, "busy", busy_msg, "otp", "2", "chalresp")]
    assert asked == [broken.spec, busy.spec, busy.spec]  # the busy key: once more at the end


def test_resume_retries_a_busy_key_with_the_access_code_it_was_given(inv, tmp_path, clock):
    code = b"\x01\x02\x03\x04\x05\x06"
    with opened(str(tmp_path / "theirs.db")) as other:
        Provisioner(other, applet).run(CHALRESP, VirtualPool(1, prefix="rl"),
                                       new_access_code=code)
    refused = Provisioner(inv, applet).run(CHALRESP, VirtualPool(1, prefix="rl"),
                                           overwrite=True)
    assert [o.reason for o in refused.outcomes] == ["access-code"]
    (rec,) = inv.records()
    with _busy(clock, [rec], until=1):
        summary = Provisioner(inv, applet).resume(RecordedKeys(), access_code=code)
    assert summary.outcomes == [Outcome(rec.serial, rec.device, "done", "", True)]
    assert clock.sleeps == 1
