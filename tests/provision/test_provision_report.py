"""What the operator's terminal shows (provision/report.py), on a stream the test reads back:
finished records stay above the bar, a prompt never lands on the bar's line, real keys
without --count get a running tally, --json is JSON Lines."""

from __future__ import annotations

import io
import json
import os
import signal
import sys

import pytest

from hwtoken.provision.report import StationReport, ctrl_c_kept, describe, summary_line
from hwtoken.provision.runner import Outcome, Summary

CLEAR = "\r\x1b[K"


def _done(serial: int, target: str = "2") -> Outcome:
    return Outcome(serial, f"usb:{serial}", "done", application="otp", target=target,
                   mode="chalresp")


def screen(text: str) -> list[str]:
    """What a terminal shows: each carriage return starts the line again."""
    rows = []
    for line in text.split("\n"):
        rows.append(line.split("\r")[-1].replace("\x1b[K", ""))
    return rows


def test_finished_records_stay_above_the_bar():
    out = io.StringIO()
    report = StationReport(as_json=False, total=3, label="provisioning", out=out, tty=True)
    with report:
        report.outcome(_done(11))
        report.outcome(Outcome(22, "usb:22", "refused", "slot 2 is programmed",
                               application="otp", target="2", mode="chalresp",
                               reason="occupied"))
    rows = screen(out.getvalue())
    assert rows[0] == "11 slot 2 (chalresp) done"
    assert rows[1] == "22 slot 2 (chalresp) refused: slot 2 is programmed"
    assert rows[2].startswith("provisioning [") is False  # cleared at the end
    # between the lines, the bar was drawn and cleared again on its own line
    assert out.getvalue().count(CLEAR + "provisioning [") >= 3
    assert "2/3" in out.getvalue()


def test_a_prompt_clears_the_bar_first_and_the_bar_comes_back():
    out = io.StringIO()
    report = StationReport(as_json=False, total=2, label="provisioning", out=out, tty=True)
    with report:
        before = out.getvalue()
        assert before.endswith("0/2")
        with report.paused():
            assert out.getvalue() == before + CLEAR  # the prompt starts on an empty line
            out.write("touch the key (slot 1); it types its code here: 123456\n")
        assert out.getvalue().endswith("0/2")


def test_real_keys_without_a_count_get_a_running_tally():
    out = io.StringIO()
    report = StationReport(as_json=False, total=None, label="provisioning", out=out, tty=True)
    with report:
        report.say("insert the first key...")
        assert screen(out.getvalue())[-1] == ("provisioning: 0 key(s): 0 done  insert the "
                                              "first key...")
        report.outcome(_done(11))
        report.outcome(_done(11, "1"))  # two records, one key
        report.outcome(Outcome(12, "usb:12", "failed", "cable", application="otp",
                               target="2", mode="hotp"))
        report.say("remove it and insert the next key...")
        assert screen(out.getvalue())[-1] == ("provisioning: 2 key(s): 2 done, 1 failed  "
                                              "remove it and insert the next key...")


def test_without_a_terminal_lines_go_to_stdout_and_hints_to_stderr():
    out, err = io.StringIO(), io.StringIO()
    report = StationReport(as_json=False, total=None, label="x", out=out, err=err, tty=False)
    with report:
        report.say("insert the first key...")
        report.outcome(_done(11))
    report.summary(Summary([_done(11)], seconds=1.25))
    assert out.getvalue() == "11 slot 2 (chalresp) done\n1 done in 1.2 s\n"
    assert err.getvalue() == "insert the first key...\n"


def test_json_lines_and_no_hints():
    out, err = io.StringIO(), io.StringIO()
    report = StationReport(as_json=True, total=2, label="x", out=out, err=err, tty=True)
    with report:
        report.say("insert the first key...")
        report.outcome(_done(11))
    report.summary(Summary([_done(11)], seconds=0.5), nothing_pending=False)
    docs = [json.loads(line) for line in out.getvalue().splitlines()]
    assert docs[0]["serial"] == 11 and docs[0]["target"] == "2"
    assert docs[1] == {"summary": {"counts": {"done": 1}, "refused": {}, "keys_seen": 1,
                                   "seconds": 0.5, "nothing_pending": False}}
    assert err.getvalue() == ""


def test_lines_and_summaries_in_words():
    assert describe(Outcome(None, "usb", "refused", "no serial", reason="no-serial")) == \
        "(no serial) refused: no serial"
    assert describe(Outcome(None, "/dev/hidraw3", "refused", "FIDO only",
                            reason="unsuitable")) == "/dev/hidraw3 refused: FIDO only"
    assert describe(Outcome(5, "emu:a", "done", "", True, application="oath", target="mail",
                            mode="oath-totp")) == \
        "5 OATH credential 'mail' (oath-totp) done (reprogrammed)"
    summary = Summary([_done(1), _done(1, "1"),
                       Outcome(2, "u", "refused", reason="occupied", application="otp",
                               target="2"),
                       Outcome(3, "u", "refused", reason="access-code", application="otp",
                               target="2")], seconds=2.0)
    assert summary_line(summary) == ("2 done, 2 refused (access-code 1, occupied 1) in 2.0 s "
                                     "(3 keys)")
    assert summary_line(Summary()) == "no keys in 0.0 s"


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="Ctrl-C is ignored in this process")
def test_a_ctrl_c_dropped_in_a_finalizer_is_raised_at_the_next_outcome():
    seen = []
    hook = sys.unraisablehook
    with pytest.raises(KeyboardInterrupt), ctrl_c_kept() as told:
        on_outcome = told(seen.append)

        class Handle:
            def __del__(self) -> None:
                os.kill(os.getpid(), signal.SIGINT)  # lands in a finalizer: Python drops it
                signal.pthread_sigmask(signal.SIG_BLOCK, [])  # let the handler run here

        Handle()  # noqa: B018 - collected at once
        on_outcome("first record")
    assert seen == ["first record"]
    assert sys.unraisablehook is hook  # put back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_ctrl_c_that_came_through_is_not_raised_twice():
    with ctrl_c_kept() as told:
        on_outcome = told(lambda o: None)
        on_outcome("x")  # nothing pressed: nothing raised


class Terminal(io.StringIO):
    """A stream that remembers what had been flushed (what the operator sees by now)."""

    def __init__(self, tty: bool | None = True) -> None:
        super().__init__()
        self.tty = tty
        self.flushed = ""

    def flush(self) -> None:
        self.flushed = self.getvalue()

    def isatty(self) -> bool:
        if self.tty is None:
            raise ValueError("I/O operation on closed file")
        return self.tty


def test_every_line_is_shown_at_once():
    out = Terminal()
    report = StationReport(as_json=False, total=2, label="p", out=out, tty=True)
    with report:
        assert out.flushed == out.getvalue() == CLEAR + "p [" + "-" * 28 + "] 0/2"
        report.outcome(_done(11))
        assert out.flushed == out.getvalue()
        report.say("insert the next key...")
        assert out.flushed == out.getvalue()
        with report.paused():
            assert out.flushed == out.getvalue()
        assert out.flushed == out.getvalue()
        report.summary(Summary([_done(11)], seconds=1.0))
        assert out.flushed == out.getvalue()
    out, err = Terminal(False), Terminal(False)
    report = StationReport(as_json=False, total=2, label="p", out=out, err=err)
    report.say("insert the first key...")
    assert err.flushed == err.getvalue() == "insert the first key...\n"
    report.outcome(_done(11))
    assert out.flushed == out.getvalue() == "11 slot 2 (chalresp) done\n"
    out = Terminal()
    report = StationReport(as_json=True, total=2, label="p", out=out)
    report.outcome(_done(11))
    assert out.flushed == out.getvalue() != ""
    report.summary(Summary([_done(11)], seconds=1.0))
    assert out.flushed == out.getvalue()


def test_the_bar_fills_up_and_no_further():
    out = io.StringIO()
    report = StationReport(as_json=False, total=4, label="provisioning", out=out, tty=True)
    with report:
        report.outcome(_done(11))
        assert screen(out.getvalue())[-1] == f"provisioning [{'#' * 7}{'-' * 21}] 1/4"
        report.outcome(_done(11, "1"))  # the same key
        assert screen(out.getvalue())[-1] == f"provisioning [{'#' * 7}{'-' * 21}] 1/4"
        for serial in (12, 13, 14, 15):
            report.outcome(_done(serial))
        assert screen(out.getvalue())[-1] == f"provisioning [{'#' * 28}] 5/4"
        report.say("done")
        assert screen(out.getvalue())[-1] == f"provisioning [{'#' * 28}] 5/4  done"


def test_keys_without_a_serial_count_one_each():
    out = io.StringIO()
    report = StationReport(as_json=False, total=None, label="p", out=out, tty=True)
    with report:
        seen = [Outcome(None, f"/dev/hidraw{n}", "refused", "no serial", reason="no-serial")
                for n in (1, 2)]  # the run's summary keeps them
        for outcome in seen:
            report.outcome(outcome)
        assert screen(out.getvalue())[-1] == "p: 2 key(s): 2 refused"


def test_the_bottom_line_is_cut_to_the_terminal(monkeypatch):
    out = io.StringIO()
    report = StationReport(as_json=False, total=None, label="provisioning", out=out, tty=True)
    monkeypatch.setenv("COLUMNS", "31")
    with report:
        report.say("insert the first key, then the next one...")
        assert screen(out.getvalue())[-1] == "provisioning: 0 key(s): 0 done"
        monkeypatch.setenv("COLUMNS", "8")  # never shorter than 20 characters
        report.say("insert the next key...")
        assert screen(out.getvalue())[-1] == "provisioning: 0 key("


@pytest.mark.parametrize(("tty", "live"), [(True, True), (False, False), (None, False)])
def test_a_bar_only_on_a_terminal(tty, live):
    """tty=None: a stream that cannot say (closed) is no terminal."""
    out = Terminal(tty)
    with StationReport(as_json=False, total=1, label="p", out=out) as report:
        assert report.live is live
        assert out.getvalue() == (CLEAR + "p [" + "-" * 28 + "] 0/1" if live else "")
    with StationReport(as_json=True, total=1, label="p", out=Terminal(True)) as report:
        assert report.live is False and report.out.getvalue() == ""


def test_a_stream_without_isatty_is_no_terminal():
    class Pipe:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

    out = Pipe()
    with StationReport(as_json=False, total=1, label="p", out=out) as report:
        report.outcome(_done(11))
    assert report.live is False and out.text == "11 slot 2 (chalresp) done\n"


def test_stdout_and_stderr_by_default(capsys):
    report = StationReport(as_json=False, total=None, label="p", tty=False)
    report.say("insert the first key...")
    report.outcome(_done(11))
    assert capsys.readouterr() == ("11 slot 2 (chalresp) done\n", "insert the first key...\n")


def test_the_summary_replaces_the_bar_for_good():
    out = io.StringIO()
    with StationReport(as_json=False, total=1, label="p", out=out, tty=True) as report:
        report.outcome(_done(11))
        before = out.getvalue()
        report.summary(Summary([_done(11)], seconds=3.14159))
        assert out.getvalue() == before + CLEAR + "1 done in 3.1 s\n"
        report.say("a hint after the summary goes to stderr")
    assert out.getvalue() == before + CLEAR + "1 done in 3.1 s\n"  # nothing drawn again


def test_a_prompt_that_fails_still_brings_the_bar_back_and_clears_once():
    out = io.StringIO()
    with StationReport(as_json=False, total=1, label="p", out=out, tty=True) as report:
        before = out.getvalue()
        with report.paused(), report.paused():
            assert out.getvalue() == before + CLEAR  # cleared once, not twice
        assert out.getvalue() == before + CLEAR + before + before
        with pytest.raises(KeyboardInterrupt), report.paused():
            raise KeyboardInterrupt
        assert out.getvalue() == before + CLEAR + before + before + CLEAR + before
    assert out.getvalue().endswith(before + CLEAR)  # cleared on the way out
    not_live = io.StringIO()
    with StationReport(as_json=False, total=1, label="p", out=not_live, tty=False) as report, \
            report.paused():
        pass
    assert not_live.getvalue() == ""


def test_json_summary_takes_extra_fields_and_leaves_out_the_keys():
    out = io.StringIO()
    report = StationReport(as_json=True, total=None, label="x", out=out)
    report.summary(Summary([_done(11), _done(12)], seconds=0.25), nothing_pending=True,
                   inventory="keys.db")
    assert json.loads(out.getvalue()) == {"summary": {
        "counts": {"done": 2}, "refused": {}, "keys_seen": 2, "seconds": 0.25,
        "nothing_pending": True, "inventory": "keys.db"}}


def test_refusals_without_a_reason_are_other():
    def refused(serial: int, reason: str = "") -> Outcome:
        return Outcome(serial, "u", "refused", reason=reason, application="otp", target="2")

    assert summary_line(Summary([refused(1), refused(2, "occupied")], seconds=1.0)) == \
        "2 refused (other 1, occupied 1) in 1.0 s"
    assert summary_line(Summary([refused(1), refused(2)], seconds=1.0)) == "2 refused in 1.0 s"
    assert summary_line(Summary([_done(1), refused(1, "occupied")], seconds=0.04)) == \
        "1 done, 1 refused (occupied 1) in 0.0 s (1 keys)"


def test_describe_a_key_without_a_serial_or_a_place():
    assert describe(Outcome(None, "emu:x", "failed", "")) == "(no serial) failed"
    assert describe(Outcome(7, "usb:7", "busy", "held by host:1")) == \
        "7 busy: held by host:1"


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler,
                    reason="Ctrl-C is ignored in this process")
def test_ctrl_c_is_remembered_by_the_handler_and_the_hook(monkeypatch):
    others = []
    monkeypatch.setattr(sys, "unraisablehook", others.append)

    class Info:
        def __init__(self, exc: BaseException) -> None:
            self.exc_value = exc

    with pytest.raises(KeyboardInterrupt), ctrl_c_kept() as told:
        handler = signal.getsignal(signal.SIGINT)
        assert handler is not signal.default_int_handler
        assert sys.unraisablehook is not others.append
        other = Info(OSError("a finalizer failed"))
        sys.unraisablehook(other)  # not a Ctrl-C: the hook before hears it
        assert others == [other]
        told(lambda o: None)("x")  # nothing pressed yet
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, None)
        with pytest.raises(KeyboardInterrupt):
            told(lambda o: None)("y")
    assert sys.unraisablehook == others.append
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt), ctrl_c_kept():
        sys.unraisablehook(Info(KeyboardInterrupt()))  # dropped in a finalizer
    assert others == [other]


def test_an_ignored_ctrl_c_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    hook = sys.unraisablehook
    try:
        with ctrl_c_kept() as told:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert sys.unraisablehook is hook
            told(lambda o: None)("x")
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_summary_without_a_bar_drawn_clears_nothing():
    out = io.StringIO()
    report = StationReport(as_json=False, total=1, label="p", out=out, tty=True)
    report.summary(Summary([_done(11)], seconds=1.0))  # never entered: no bar on screen
    assert out.getvalue() == "1 done in 1.0 s\n"


@pytest.mark.skipif(sys.__stdout__ is not None and sys.__stdout__.isatty(),
                    reason="the terminal's own width applies")
def test_without_a_known_width_the_bottom_line_is_cut_at_99(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    out = io.StringIO()
    with StationReport(as_json=False, total=None, label="p", out=out, tty=True) as report:
        report.say("x" * 200)
        assert screen(out.getvalue())[-1] == ("p: 0 key(s): 0 done  " + "x" * 200)[:99]
