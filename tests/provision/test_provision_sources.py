"""Where keys come from: real keys arriving one after another, the virtual pool, resume."""

from __future__ import annotations

import contextlib

import pytest
from provision_helpers import chalresp_matches, held_by_another_station, only, opened

from hwtoken.provision import sources
from hwtoken.provision.model import Mode, Record, Spec, State
from hwtoken.provision.programmers import programmer_for
from hwtoken.provision.protocol import Device
from hwtoken.provision.runner import Provisioner


def _bus(*serials: int | str) -> list[tuple[object, Device]]:
    """What discovery shows: keys by serial, or (a string) a key without one."""
    return [(s, Device(s, f"usb:{s}")) if isinstance(s, int) else
            (("fingerprint", s), Device(None, "usb", model="Security Key NFC",
                                        interfaces=frozenset({"fido"})))
            for s in serials]


def test_usb_keys_arrive_once_each_in_plug_order(monkeypatch):
    # what the USB bus shows at each poll: key 11 plugged, swapped for 22, 11 again, 33
    polls = iter([[], [11], [11], [22], [11, 22], [33], []])
    monkeypatch.setattr(sources, "list_usb_keys", lambda: _bus(*next(polls)))
    said = []
    keys = sources.UsbKeys(count=3, poll=0, announce=said.append)
    assert [d for d in keys.arrivals()] == [Device(11, "usb:11"), Device(22, "usb:22"),
                                            Device(33, "usb:33")]
    assert said[0].startswith("insert")


def test_a_key_without_a_serial_arrives_once_per_plug_and_does_not_count(monkeypatch):
    polls = iter([["fp1"], ["fp1"], ["fp2", 7], [8]])  # fp1 stays in, then another
    monkeypatch.setattr(sources, "list_usb_keys", lambda: _bus(*next(polls)))
    got = list(sources.UsbKeys(count=2, poll=0).arrivals())
    assert [d.serial for d in got] == [None, None, 7, 8]  # --count 2: keys with a serial
    assert got[0].model == "Security Key NFC" and got[0].interfaces == {"fido"}


def test_usb_keys_idle_timeout_ends_the_run(monkeypatch):
    monkeypatch.setattr(sources, "list_usb_keys", lambda: _bus(5))
    keys = sources.UsbKeys(idle_timeout=0.05, poll=0.01)
    assert list(keys.arrivals()) == [Device(5, "usb:5")]


def test_present_finds_virtual_keys_by_serial_only():
    pool = sources.VirtualPool(1, prefix="src")
    (dev,) = list(pool.arrivals())
    rec = Record(serial=dev.serial, mode=Mode.HOTP, slot=1, digits=6, touch=False,
                 name="hw", sealed="", device=dev.spec)
    assert sources.present(rec) == dev
    rec.serial += 1  # the file now belongs to another key
    assert sources.present(rec) is None
    rec.device = "emu:src-9999"
    assert sources.present(rec) is None


class _Unreachable:
    name = "unreachable"

    @contextlib.contextmanager
    def connect(self, device):
        raise RuntimeError("no such device")
        yield  # pragma: no cover


class _PulledMidWrite:
    """The cable is pulled while the key is being programmed."""

    name = "pulled"

    @contextlib.contextmanager
    def connect(self, device):
        class Conn:
            def occupant(self, spec):
                return None

            def program(self, spec, material, access):
                raise RuntimeError("cable pulled")

            def calculate(self, spec, challenge):  # pragma: no cover
                raise AssertionError

        yield Conn()


def test_unreachable_key_leaves_no_record(tmp_path):
    with opened(str(tmp_path / "inv.db")) as inv:
        summary = Provisioner(inv, lambda s, d: _Unreachable()).run(Spec(Mode.HOTP),
                                                                    sources.VirtualPool(1))
        assert summary.counts() == {"failed": 1}
        assert summary.outcomes[0].message == "the key's client library failed unexpectedly"
        assert inv.records() == []


def test_failed_key_stays_pending_and_resume_settles_it(tmp_path):
    url = str(tmp_path / "inv.db")
    with opened(url) as inv:
        summary = Provisioner(inv, lambda s, d: _PulledMidWrite()).run(
            Spec(Mode.CHALRESP), sources.VirtualPool(2))
        assert summary.counts() == {"failed": 2} and summary.exit_code == 1
        assert {o.message for o in summary.outcomes} == {
            "the key's client library failed unexpectedly"}  # no class name, no library text
        assert inv.counts()["pending"] == 2
        assert inv.last_error()["message"] == "the key's client library failed unexpectedly"
        # the operator fixes the cable; a second run refuses and points to resume
        again = Provisioner(inv, programmer_for).run(Spec(Mode.CHALRESP),
                                                     sources.VirtualPool(2))
        assert {o.result for o in again.outcomes} == {"refused"}
        assert "resume" in again.outcomes[0].message
        settled = Provisioner(inv, programmer_for).resume(sources.RecordedKeys())
        assert settled.counts() == {"done": 2}
        assert all(o.reprogrammed for o in settled.outcomes)
        assert {r.state for r in inv.records()} == {State.DONE}


def test_resume_reports_missing_keys(tmp_path):
    import signal

    from provision_helpers import hwtoken

    from hwtoken import paths

    url = str(tmp_path / "inv.db")
    hwtoken("provision", "run", "-i", url, "-m", "chalresp", "--virtual", "1",
            env={"HWTOKEN_FAULT": "after:program"}, check=-signal.SIGKILL)
    key_file = paths.virtual_key_path(sources.pool_name(1))
    moved = key_file.with_name("elsewhere.bak")
    key_file.rename(moved)  # the key was unplugged
    proc = hwtoken("provision", "resume", "-i", url, "--json", check=1)
    assert '"result": "missing"' in proc.stdout
    status = hwtoken("provision", "status", "-i", url)
    assert "pending: 1" in status.stdout
    # status says why the key is still pending, and that was the last error
    assert "(key not present: plug it in and resume)" in status.stdout
    assert "last error" in status.stdout and "not present" in status.stdout.splitlines()[-1]
    moved.rename(key_file)  # plugged in again
    hwtoken("provision", "resume", "-i", url)
    assert "done: 1" in hwtoken("provision", "status", "-i", url).stdout


class _CannotAsk:
    """A key that programs fine but cannot be asked (a real HOTP slot, nobody to touch)."""

    name = "untouched"

    def __init__(self, programs: list[int]):
        self.programs = programs

    @contextlib.contextmanager
    def connect(self, device):
        from hwtoken.provision.protocol import CannotCheck

        programs = self.programs

        class Conn:
            def occupant(self, spec):
                return None

            def program(self, spec, material, access):
                programs.append(device.serial)

            def calculate(self, spec, challenge):
                raise CannotCheck("a real key's HOTP slot can only be checked by touching it")

        yield Conn()


def test_a_key_that_cannot_be_checked_stays_pending_with_the_reason(tmp_path):
    programs: list[int] = []
    with opened(str(tmp_path / "inv.db")) as inv:
        summary = Provisioner(inv, lambda s, d: _CannotAsk(programs)).run(
            Spec(Mode.HOTP), sources.VirtualPool(1))
        (outcome,) = summary.outcomes
        assert outcome.result == "unchecked" and "touching" in outcome.message
        assert "does not match" not in outcome.message  # it is not a wrong secret
        (rec,) = inv.records(states=[State.PENDING])
        assert "touching" in rec.last_error
        # resume asks again and does not overwrite the key (it may hold the secret)
        again = Provisioner(inv, lambda s, d: _CannotAsk(programs)).resume(
            sources.RecordedKeys())
        assert again.counts() == {"unchecked": 1} and not again.outcomes[0].reprogrammed
        assert programs == [rec.serial]  # programmed once, by the run


class _Crash(Exception):
    pass


def _crash_after_program(step, rec):
    """A runner hook: the process dies right after the key was programmed."""
    if step == "program":
        raise _Crash


def test_resume_waits_for_a_record_another_station_holds(inventory_url):
    import threading

    with opened(inventory_url) as inv:
        with pytest.raises(_Crash):
            Provisioner(inv, programmer_for, hook=_crash_after_program).run(
                Spec(Mode.CHALRESP), sources.VirtualPool(1))
        (pending,) = inv.records(states=[State.PENDING])
        with held_by_another_station(inventory_url, pending.serial) as let_go:
            # the other station lets go while resume is running
            threading.Timer(0.5, let_go).start()
            summary = Provisioner(inv, programmer_for).resume(sources.RecordedKeys())
        assert summary.counts() == {"done": 1}  # settled, not reported busy
        assert only(inv, pending.key).state is State.DONE


def test_polling_for_real_keys_prints_no_library_tracebacks(tmp_path):
    """No pcscd and no USB access: the station's terminal stays quiet while it polls."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PCSCLITE_CSOCK_NAME=str(tmp_path / "no-pcscd.sock"))
    proc = subprocess.run(
        [sys.executable, "-c", "from hwtoken.provision.sources import list_usb_serials\n"
         "for _ in range(2): list_usb_serials()"],
        capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""


def test_resume_settles_the_other_keys_when_one_record_is_damaged(tmp_path):
    with opened(str(tmp_path / "inv.db")) as inv:
        for n in (1, 2):  # two keys left pending by two crashed runs
            with pytest.raises(_Crash):
                Provisioner(inv, programmer_for, hook=_crash_after_program).run(
                    Spec(Mode.CHALRESP), sources.VirtualPool(n))
        first, second = inv.records(states=[State.PENDING])
        inv.update(first.key, sealed=second.sealed)  # damaged: bound to another key
        summary = Provisioner(inv, programmer_for).resume(sources.RecordedKeys())
        results = {o.serial: o.result for o in summary.outcomes}
        assert results == {first.serial: "failed", second.serial: "done"}
        assert "cannot open a sealed secret" in only(inv, first.key).last_error


def test_the_interim_applet_path_programs_what_the_client_path_reads(tmp_path, monkeypatch):
    """HWTOKEN_PROVISION_PATH=applet writes through the emulator's applet API; the key
    then answers python-yubico with the recorded secret (and not with another one)."""
    from hwtoken.provision.programmers import AppletProgrammer

    monkeypatch.setenv("HWTOKEN_PROVISION_PATH", "applet")
    with opened(str(tmp_path / "inv.db")) as inv:
        pool = sources.VirtualPool(1, prefix="applet")
        (dev,) = list(pool.arrivals())
        assert isinstance(programmer_for(Spec(Mode.CHALRESP), dev), AppletProgrammer)
        summary = Provisioner(inv, programmer_for).run(Spec(Mode.CHALRESP), pool)
        assert summary.counts() == {"done": 1}
        rec = only(inv, dev.serial)
        secret = inv.secret(rec)
    monkeypatch.delenv("HWTOKEN_PROVISION_PATH")
    assert chalresp_matches(rec.device, rec.serial, secret)
    assert not chalresp_matches(rec.device, rec.serial, bytes(len(secret)))
