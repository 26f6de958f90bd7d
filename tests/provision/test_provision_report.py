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
