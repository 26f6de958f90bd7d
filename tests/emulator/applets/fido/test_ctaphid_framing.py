"""CTAPHID framing and errors, driven with raw 64-byte reports into CtapHidEngine."""

from __future__ import annotations

import os
import struct
import threading
import time

import pytest
from fido2.hid import CAPABILITY, CTAPHID
from presence_support import UntilCancelled

from hwtoken.emulator import ApproveAfterDelay
from hwtoken.emulator.applets.fido.ctaphid import (
    BROADCAST_CID,
    MAX_MESSAGE,
    CtapHidEngine,
    HidError,
    frames,
)

KEEPALIVE = 0x3B
ERROR = 0x3F


class RawHost:
    """A minimal CTAPHID host speaking raw reports, to provoke every error."""

    def __init__(self, engine: CtapHidEngine) -> None:
        self.engine = engine

    def send(self, cid: int, cmd: int, data: bytes = b"") -> None:
        for report in frames(cid, cmd, data):
            self.engine.write(report)

    def raw(self, report: bytes) -> None:
        self.engine.write(report)

    def recv(self, timeout: float = 5.0) -> tuple[int, int, bytes]:
        """One whole response message: (cid, cmd, payload); keepalives are returned too."""
        first = self.engine.read(timeout)
        assert first is not None, "no answer from the key"
        assert len(first) == 64
        cid, cmd, length = struct.unpack(">IBH", first[:7])
        data = bytearray(first[7:])
        seq = 0
        while len(data) < length:
            cont = self.engine.read(timeout)
            assert cont is not None
            assert int.from_bytes(cont[:4], "big") == cid
            assert cont[4] == seq
            seq += 1
            data += cont[5:]
        return cid, cmd & 0x7F, bytes(data[:length])

    def recv_final(self, timeout: float = 10.0) -> tuple[int, int, bytes, list[int]]:
        """Skip keepalives; return the response and the keepalive statuses seen."""
        statuses = []
        while True:
            cid, cmd, data = self.recv(timeout)
            if cmd == KEEPALIVE:
                statuses.append(data[0])
                continue
            return cid, cmd, data, statuses

    def nothing(self, timeout: float = 0.2) -> bool:
        return self.engine.read(timeout) is None

    def init(self) -> int:
        nonce = os.urandom(8)
        self.send(BROADCAST_CID, CTAPHID.INIT, nonce)
        cid, cmd, data = self.recv()
        assert (cid, cmd) == (BROADCAST_CID, CTAPHID.INIT)
        assert data[:8] == nonce
        return struct.unpack(">I", data[8:12])[0]


@pytest.fixture
def engine(virtual_key):
    eng = CtapHidEngine(virtual_key)
    yield eng
    eng.close()


@pytest.fixture
def host(engine):
    return RawHost(engine)


def error_of(reply):
    cid, cmd, data = reply
    assert cmd == ERROR, f"expected an ERROR, got command {cmd:#x} {data.hex()}"
    return cid, data[0]


def test_init_allocates_distinct_channels_and_reports_version(host, virtual_key):
    nonce = b"12345678"
    host.send(BROADCAST_CID, CTAPHID.INIT, nonce)
    cid, cmd, data = host.recv()
    assert (cid, cmd, len(data)) == (BROADCAST_CID, CTAPHID.INIT, 17)
    assert data[:8] == nonce
    new_cid, proto, major, minor, build, caps = struct.unpack(">IBBBBB", data[8:])
    assert new_cid not in (0, BROADCAST_CID)
    assert proto == 2
    assert (major, minor, build) == virtual_key.version
    assert caps & CAPABILITY.WINK and caps & CAPABILITY.CBOR
    assert not caps & CAPABILITY.NMSG  # MSG (U2F) works
    assert host.init() != new_cid


def test_init_on_own_channel_resynchronises(host):
    cid = host.init()
    host.send(cid, CTAPHID.INIT, b"abcdefgh")
    rcid, cmd, data = host.recv()
    assert (rcid, cmd, data[:8]) == (cid, CTAPHID.INIT, b"abcdefgh")
    assert struct.unpack(">I", data[8:12])[0] == cid


def test_init_with_wrong_length_is_invalid_len(host):
    host.send(BROADCAST_CID, CTAPHID.INIT, b"1234567")
    assert error_of(host.recv()) == (BROADCAST_CID, HidError.INVALID_LEN)


@pytest.mark.parametrize("size", [0, 1, 57, 58, 116, 117, 1000, MAX_MESSAGE])
def test_ping_echoes_across_continuation_packets(host, size):
    cid = host.init()
    payload = os.urandom(size)
    host.send(cid, CTAPHID.PING, payload)
    assert host.recv() == (cid, CTAPHID.PING, payload)


def test_message_longer_than_128_continuations_is_invalid_len(host):
    cid = host.init()
    host.raw(struct.pack(">IBH", cid, 0x80 | CTAPHID.PING, MAX_MESSAGE + 1).ljust(64, b"\0"))
    assert error_of(host.recv()) == (cid, HidError.INVALID_LEN)


def test_unknown_channel_and_channel_zero_are_invalid_channel(host):
    host.init()
    host.send(0x01020304, CTAPHID.PING, b"x")
    assert error_of(host.recv()) == (0x01020304, HidError.INVALID_CHANNEL)
    host.send(0, CTAPHID.PING, b"x")
    assert error_of(host.recv()) == (0, HidError.INVALID_CHANNEL)
    host.send(BROADCAST_CID, CTAPHID.PING, b"x")  # only INIT may use broadcast
    assert error_of(host.recv()) == (BROADCAST_CID, HidError.INVALID_CHANNEL)


@pytest.mark.parametrize("cmd", [0x02, 0x05, 0x3B, 0x3F, 0x41, 0x44, 0x7F])
def test_unknown_command_is_invalid_cmd(host, cmd):
    # (0x40, 0x42 and 0x43 are YubiKey vendor commands: test_ctaphid_vendor.py)
    cid = host.init()
    host.send(cid, cmd, b"")
    assert error_of(host.recv()) == (cid, HidError.INVALID_CMD)


def test_continuation_out_of_sequence_is_invalid_seq(host):
    cid = host.init()
    reports = frames(cid, CTAPHID.PING, os.urandom(200))
    host.raw(reports[0])
    host.raw(reports[2])  # seq 1 where 0 was due
    assert error_of(host.recv()) == (cid, HidError.INVALID_SEQ)
    host.send(cid, CTAPHID.PING, b"still fine")
    assert host.recv() == (cid, CTAPHID.PING, b"still fine")


def test_new_request_in_the_middle_of_a_message_is_invalid_seq(host):
    cid = host.init()
    host.raw(frames(cid, CTAPHID.PING, os.urandom(100))[0])
    host.send(cid, CTAPHID.PING, b"again")
    assert error_of(host.recv()) == (cid, HidError.INVALID_SEQ)


def test_spurious_continuation_packets_are_ignored(host):
    cid = host.init()
    host.raw(struct.pack(">IB", cid, 0).ljust(64, b"\0"))
    assert host.nothing()


def test_other_channel_during_a_message_gets_channel_busy(host):
    a, b = host.init(), host.init()
    reports = frames(a, CTAPHID.PING, b"A" * 100)
    host.raw(reports[0])
    host.send(b, CTAPHID.PING, b"B")
    assert error_of(host.recv()) == (b, HidError.CHANNEL_BUSY)
    host.raw(reports[1])
    assert host.recv() == (a, CTAPHID.PING, b"A" * 100)
    host.send(b, CTAPHID.PING, b"B")
    assert host.recv() == (b, CTAPHID.PING, b"B")


def test_incomplete_message_times_out(virtual_key):
    engine = CtapHidEngine(virtual_key, msg_timeout=0.2)
    try:
        host = RawHost(engine)
        cid = host.init()
        host.raw(frames(cid, CTAPHID.PING, os.urandom(100))[0])
        assert error_of(host.recv(timeout=5)) == (cid, HidError.MSG_TIMEOUT)
        host.send(cid, CTAPHID.PING, b"ok")
        assert host.recv() == (cid, CTAPHID.PING, b"ok")
    finally:
        engine.close()


def test_wink_reaches_the_applet(host, virtual_key):
    cid = host.init()
    host.send(cid, CTAPHID.WINK)
    assert host.recv() == (cid, CTAPHID.WINK, b"")
    assert virtual_key.fido.winks == 1
    host.send(cid, CTAPHID.WINK, b"x")
    assert error_of(host.recv()) == (cid, HidError.INVALID_LEN)


def test_lock_keeps_other_channels_out_until_released(host):
    a, b = host.init(), host.init()
    host.send(a, CTAPHID.LOCK, b"\x05")
    assert host.recv() == (a, CTAPHID.LOCK, b"")
    host.send(b, CTAPHID.PING, b"b")
    assert error_of(host.recv()) == (b, HidError.CHANNEL_BUSY)
    host.send(a, CTAPHID.PING, b"a")
    assert host.recv() == (a, CTAPHID.PING, b"a")
    host.send(a, CTAPHID.LOCK, b"\x00")
    assert host.recv() == (a, CTAPHID.LOCK, b"")
    host.send(b, CTAPHID.PING, b"b")
    assert host.recv() == (b, CTAPHID.PING, b"b")


def test_lock_parameters_are_checked(host):
    cid = host.init()
    host.send(cid, CTAPHID.LOCK, b"\x0b")
    assert error_of(host.recv()) == (cid, HidError.INVALID_PAR)
    host.send(cid, CTAPHID.LOCK, b"")
    assert error_of(host.recv()) == (cid, HidError.INVALID_LEN)


def test_empty_msg_and_cbor_are_invalid_len(host):
    cid = host.init()
    for cmd in (CTAPHID.MSG, CTAPHID.CBOR):
        host.send(cid, cmd)
        assert error_of(host.recv()) == (cid, HidError.INVALID_LEN)


def test_short_and_long_reports_do_not_break_the_engine(host):
    cid = host.init()
    host.raw(b"")
    host.raw(b"\x01")
    host.raw(os.urandom(200))
    while host.engine.read(0.05) is not None:
        pass  # whatever the garbage provoked
    # a short report is zero-padded like a USB short packet
    host.raw(struct.pack(">IBH", cid, 0x80 | CTAPHID.PING, 2) + b"hi")
    assert host.recv() == (cid, CTAPHID.PING, b"hi")


def test_hidraw_style_report_id_prefix_is_accepted(host):
    cid = host.init()
    host.raw(b"\0" + frames(cid, CTAPHID.PING, b"with report id")[0])
    assert host.recv() == (cid, CTAPHID.PING, b"with report id")


U2F_VERSION_APDU = bytes.fromhex("00030000")
U2F_REGISTER_APDU = bytes.fromhex("0001000040") + bytes(64)


def test_msg_runs_u2f(host):
    cid = host.init()
    host.send(cid, CTAPHID.MSG, U2F_VERSION_APDU)
    assert host.recv() == (cid, CTAPHID.MSG, b"U2F_V2\x90\x00")


def test_busy_while_waiting_for_presence_with_upneeded_keepalives(host, virtual_key):
    virtual_key.presence = ApproveAfterDelay(0.5)
    a, b = host.init(), host.init()
    host.send(a, CTAPHID.MSG, U2F_REGISTER_APDU)
    host.send(b, CTAPHID.PING, b"b")
    host.send(a, CTAPHID.PING, b"a")
    errors, statuses = [], []
    while True:
        cid, cmd, data = host.recv()
        if cmd == KEEPALIVE:
            assert cid == a
            statuses.append(data[0])
        elif cmd == ERROR:
            errors.append((cid, data[0]))
        else:
            break
    assert errors == [(b, HidError.CHANNEL_BUSY), (a, HidError.CHANNEL_BUSY)]
    assert (cid, cmd, data[-2:]) == (a, CTAPHID.MSG, b"\x90\x00")
    assert 2 in statuses  # UPNEEDED while the presence policy waited
    assert set(statuses) <= {1, 2}


def test_cancel_stops_the_presence_wait(host, virtual_key):
    presence = virtual_key.presence = UntilCancelled()
    cid = host.init()
    host.send(cid, CTAPHID.MSG, U2F_REGISTER_APDU)
    assert host.recv()[1] == KEEPALIVE
    host.send(cid, CTAPHID.CANCEL)
    rcid, cmd, data, _ = host.recv_final()
    assert (rcid, cmd, data) == (cid, CTAPHID.MSG, b"\x69\x85")
    assert presence.cancelled.is_set()  # the cancel ended the wait (nothing else would)


def test_cancel_without_a_request_is_ignored(host):
    cid = host.init()
    host.send(cid, CTAPHID.CANCEL)
    assert host.nothing()


def test_init_abandons_a_running_request(host, virtual_key):
    presence = virtual_key.presence = UntilCancelled()
    cid = host.init()
    host.send(cid, CTAPHID.MSG, U2F_REGISTER_APDU)
    assert host.recv()[1] == KEEPALIVE
    host.send(cid, CTAPHID.INIT, b"resync!!")
    while True:
        rcid, cmd, data = host.recv()
        if cmd != KEEPALIVE:
            break
    assert (rcid, cmd, data[:8]) == (cid, CTAPHID.INIT, b"resync!!")
    # INIT cancelled the touch wait; the abandoned request never answers, and once its
    # worker is gone the channel works again
    assert presence.cancelled.wait(60)
    for _attempt in range(200):
        host.send(cid, CTAPHID.PING, b"p")
        r = host.recv()
        if r == (cid, CTAPHID.PING, b"p"):
            break
        assert r[1] in (ERROR, KEEPALIVE) and r[1] != CTAPHID.MSG
        time.sleep(0.05)
    else:
        raise AssertionError("the channel stayed busy after the abandoned request")


def test_keepalive_statuses_through_fido2(fido_device, virtual_key):
    virtual_key.presence = ApproveAfterDelay(0.4)
    seen = []
    resp = fido_device.call(CTAPHID.MSG, U2F_REGISTER_APDU, on_keepalive=seen.append)
    assert resp[-2:] == b"\x90\x00"
    assert 2 in seen  # STATUS.UPNEEDED


def test_cancel_through_fido2_event(fido_device, virtual_key):
    virtual_key.presence = ApproveAfterDelay(30)
    event = threading.Event()
    timer = threading.Timer(0.3, event.set)
    timer.start()
    try:
        resp = fido_device.call(CTAPHID.MSG, U2F_REGISTER_APDU, event=event)
    finally:
        timer.cancel()
    assert resp == b"\x69\x85"


class _SlowSilentPresence(ApproveAfterDelay):
    """Thinks for a while without asking for a touch (no keepalive callback)."""

    def decide(self, reason, cancel, keepalive):
        return not cancel.wait(self.delay)


def test_processing_keepalives_while_the_key_is_busy(host, virtual_key):
    virtual_key.presence = _SlowSilentPresence(0.35)
    cid = host.init()
    host.send(cid, CTAPHID.MSG, U2F_REGISTER_APDU)
    rcid, cmd, data, statuses = host.recv_final()
    assert (rcid, cmd, data[-2:]) == (cid, CTAPHID.MSG, b"\x90\x00")
    assert statuses and set(statuses) == {1}  # PROCESSING, never UPNEEDED
