"""hidraw as programs use it, under the testbed: poll/EAGAIN, blocking reads, a reader
thread beside a writer thread, short buffers, several openers and two processes at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwtoken.emulator.transports import umockdev
from hwtoken.emulator.transports.umockdev.enumeration import usage_page

CLIENT = str(Path(__file__).with_name("hidraw_client.py"))


def _client(tb, mode: str, path: str) -> dict:
    proc = tb.run([sys.executable, CLIENT, mode, path], capture_output=True, text=True,
                  timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _testbed(key, reads):
    tb = umockdev.Testbed(reads=reads)
    return tb, tb.plug(key).fido_hidraw


@pytest.fixture(params=["auto", "pty", "emulated"])
def any_reads(request, virtual_key):
    """A testbed in each --reads mode."""
    tb, path = _testbed(virtual_key, request.param)
    with tb:
        yield tb, path


@pytest.fixture(params=["auto", "pty"])
def unlocked_reads(request, virtual_key):
    """The modes in which a blocked read() does not hold umockdev's per-file lock
    (--reads emulated does, by design: a program that reads in one thread and writes
    from another needs auto or pty)."""
    tb, path = _testbed(virtual_key, request.param)
    with tb:
        yield tb, path


def _init_reply(report_hex: str, nonce: bytes) -> bool:
    raw = bytes.fromhex(report_hex)
    return raw[:4] == b"\xff" * 4 and raw[4] == 0x86 and raw[7:15] == nonce


def test_info_ioctls_and_not_a_tty(plugged_key):
    out = _client(plugged_key.testbed, "info", plugged_key.hidraw)
    assert (out["bus"], out["vid"], out["pid"]) == (3, 0x1050, 0x0407)
    assert usage_page(bytes.fromhex(out["rdesc"])) == 0xF1D0
    assert out["tcgets"] == "ENOTTY"
    # glibc's isatty() calls the ioctl internally, past umockdev: it sees the pty behind
    # the node and says True (a documented limit; no HID client asks)


def test_nonblocking_read_gets_eagain_and_poll_is_exact(any_reads):
    tb, path = any_reads
    out = _client(tb, "nonblocking", path)
    assert out["empty"] == "EAGAIN"
    assert out["poll"] is True
    assert _init_reply(out["reply"], b"12345678")
    assert out["after"] == "EAGAIN" and out["poll_after"] is False


def test_blocking_read_before_the_write(unlocked_reads):
    tb, path = unlocked_reads
    out = _client(tb, "blocking-first", path)
    assert out["reply"] and _init_reply(out["reply"], b"abcdefgh")


def test_reader_thread_beside_writer_thread(unlocked_reads):
    tb, path = unlocked_reads
    out = _client(tb, "threads", path)
    assert out["finished"] is True
    assert out["pings"] == [f"ping {i:02d}" for i in range(20)]


def test_a_short_read_buffer_loses_the_rest_of_one_report(plugged_key):
    out = _client(plugged_key.testbed, "short", plugged_key.hidraw)
    assert len(bytes.fromhex(out["first"])) == 8
    assert _init_reply(out["second"], b"secondrq")  # the next report is whole


def test_two_processes_at_once_each_get_their_own_reports(plugged_key):
    script = (
        "import sys\n"
        "from fido2.hid import CtapHidDevice\n"
        "from hwtoken.testing import WebAuthnHelper\n"
        "dev = next(iter(CtapHidDevice.list_devices()))\n"
        "for i in range(8):\n"
        "    h = WebAuthnHelper(dev, 'p%s-%d.example' % (sys.argv[1], i))\n"
        "    h.register('user')\n"
        "    h.authenticate()\n"
        "print('ok', sys.argv[1])\n")
    procs = [plugged_key.popen([sys.executable, "-c", script, str(n)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for n in range(2)]
    for n, proc in enumerate(procs):
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == f"ok {n}"
