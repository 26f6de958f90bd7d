"""hwtoken.emulator.transports.usbip_urbs: the bounded URB loop, in process.

The loop serves a ``usbip`` package device (a HID interface with an interrupt IN and an
interrupt OUT endpoint) on one end of a socketpair; the test is the host on the other end
and writes USB/IP commands by hand (headers as in the kernel's usbip_protocol.rst).
"""

from __future__ import annotations

import contextlib
import fcntl
import socket
import struct
import termios
import threading
import time

import pytest
from usbip.classes.device import hid
from usbip.classes.device.uac import UAC
from usbip.device import USBDevice
from usbip_wire import read_exact

from hwtoken.emulator.transports import usbip_urbs
from hwtoken.emulator.transports.usbip_urbs import Ended, UrbLoop, recv_exact

OUT, IN = 0, 1
CMD_SUBMIT, CMD_UNLINK, RET_SUBMIT, RET_UNLINK = 1, 2, 3, 4
DEVID = 0x00010002
GET_DEVICE_DESCRIPTOR = bytes([0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 18, 0])
SET_CONFIGURATION = bytes([0x00, 0x09, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00])
EP_IN, EP_OUT = 1, 2
LIMITS = {0: 0xFFFF, EP_OUT: 100}


def _submit(seq: int, direction: int, ep: int, length: int, setup: bytes = bytes(8)) -> bytes:
    return (struct.pack(">IIIII", CMD_SUBMIT, seq, DEVID, direction, ep)
            + struct.pack(">Iiiii", 0, length, 0, 0, 0) + setup)


def _unlink(seq: int, victim: int) -> bytes:
    return struct.pack(">IIIIIIiiii8s", CMD_UNLINK, seq, DEVID, OUT, EP_IN, victim, 0, 0, 0, 0,
                       bytes(8))


def _answer(s: socket.socket) -> tuple[int, int, int, bytes]:
    """(command, seqnum, status, IN data) of the next answer."""
    head = read_exact(s, 48)
    command, seqnum, devid, direction, _ep = struct.unpack(">IIIII", head[:20])
    status, actual = struct.unpack(">ii", head[20:28])
    assert devid == DEVID
    data = read_exact(s, actual) if direction == IN and actual > 0 else b""
    return command, seqnum, status, data


def _pending(sock: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]


def _consumed(sock: socket.socket) -> None:
    """Wait (10 s at most) until the server has read everything sent to ``sock``."""
    deadline = time.monotonic() + 10
    while _pending(sock):
        assert time.monotonic() < deadline, "the server does not read"
        time.sleep(0.01)


class Served:
    """A device served by :class:`UrbLoop` in a thread; ``host`` is the peer's socket."""

    def __init__(self, dev: USBDevice, *, idle_timeout: float | None = None,
                 out_limits: dict[int, int] | None = None) -> None:
        self.dev = dev
        self.server, self.host = socket.socketpair()
        self.host.settimeout(5)  # answers are local and at once; a missing one fails soon
        self.loop = UrbLoop(self.server, dev, out_limits=LIMITS if out_limits is None
                            else out_limits, idle_timeout=idle_timeout)
        self.outcome: object = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.outcome = self.loop.run()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            self.outcome = exc

    def start(self) -> Served:
        self.thread.start()
        return self

    def result(self, timeout: float = 10) -> object:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the loop is still serving"
        return self.outcome

    def ended(self, timeout: float = 10) -> str:
        outcome = self.result(timeout)
        assert isinstance(outcome, Ended), outcome
        return str(outcome)

    def close(self) -> None:
        self.host.close()
        self.thread.join(10)
        self.server.close()


def _hid_device() -> tuple[USBDevice, hid.HID]:
    dev = USBDevice(0x1050, 0x0407, product="test key")
    iface = hid.HID(b"\x06\xd0\xf1\x09\x01\xa1\x01\xc0", in_ep=0x80 | EP_IN, out_ep=EP_OUT)
    dev.add(iface)
    return dev, iface


@pytest.fixture
def served():
    made: list[Served] = []

    def make(**kw) -> tuple[Served, hid.HID]:
        dev, iface = _hid_device()
        s = Served(dev, **kw)
        made.append(s)
        return s, iface

    yield make
    for s in made:
        s.close()


# -- recv_exact and the timeval ------------------------------------------------------------------

def test_timeval_is_seconds_and_microseconds():
    assert usbip_urbs._timeval(1.0) == struct.pack("@ll", 1, 0)
    assert usbip_urbs._timeval(10.0) == struct.pack("@ll", 10, 0)
    assert usbip_urbs._timeval(2.5) == struct.pack("@ll", 2, 500000)
    assert usbip_urbs._timeval(0.25) == struct.pack("@ll", 0, 250000)


def test_recv_exact_gathers_the_pieces():
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.05)
        b.sendall(b"abc")
        b.sendall(b"defgh")
        assert recv_exact(a, 8, time.monotonic() + 10) == b"abcdefgh"
        b.sendall(b"x" * 70000)
        assert recv_exact(a, 70000, time.monotonic() + 10) == b"x" * 70000


def test_recv_exact_of_a_peer_that_left_at_once_is_none():
    a, b = socket.socketpair()
    with a:
        b.close()
        assert recv_exact(a, 8, time.monotonic() + 10) is None


def test_recv_exact_of_a_peer_that_left_half_way_ends():
    a, b = socket.socketpair()
    with a:
        a.settimeout(0.05)
        b.sendall(b"abc")
        b.close()
        with pytest.raises(Ended, match=r"^closed after 3 of 8 bytes$"):
            recv_exact(a, 8, time.monotonic() + 10)


@pytest.mark.parametrize("timeout", [0.05, 0.0])  # a timeout, and non-blocking
def test_recv_exact_too_slow_ends(timeout):
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(timeout)
        b.sendall(b"abc")
        with pytest.raises(Ended, match=r"^3 of 8 bytes arrived in time; too slow$"):
            recv_exact(a, 8, time.monotonic() + 0.3)


def test_recv_exact_past_its_deadline_reads_nothing():
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.05)
        b.sendall(b"abcdefgh")
        with pytest.raises(Ended, match=r"^0 of 8 bytes arrived in time; too slow$"):
            recv_exact(a, 8, time.monotonic() - 1)
        assert recv_exact(a, 0, time.monotonic() - 1) == b""


# -- the loop -------------------------------------------------------------------------------------

def test_a_control_transfer_is_answered_and_a_leaving_host_detaches(served):
    s, _ = served()
    s.start()
    s.host.sendall(_submit(7, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    command, seq, status, data = _answer(s.host)
    assert (command, seq, status) == (RET_SUBMIT, 7, 0)
    assert data[:2] == b"\x12\x01" and data[8:12] == bytes([0x50, 0x10, 0x07, 0x04])
    s.host.shutdown(socket.SHUT_WR)
    assert s.result() == "detached"


def test_the_sockets_own_timeouts_are_set(served):
    s, _ = served()
    s.server.settimeout(3)
    s.start()
    s.host.sendall(_submit(1, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:3] == (RET_SUBMIT, 1, 0)
    assert s.server.gettimeout() is None  # blocking, with the kernel's timeouts
    size = len(usbip_urbs._timeval(0))
    assert s.server.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, size) == \
        usbip_urbs._timeval(1.0)
    assert s.server.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, size) == \
        usbip_urbs._timeval(10.0)


def test_a_header_in_pieces_is_put_together(served):
    s, _ = served()
    s.start()
    request = _submit(3, IN, 0, 18, GET_DEVICE_DESCRIPTOR)
    s.host.sendall(request[:10])
    _consumed(s.server)
    s.host.sendall(request[10:30])
    _consumed(s.server)
    s.host.sendall(request[30:])
    assert _answer(s.host)[:3] == (RET_SUBMIT, 3, 0)


def test_a_header_cut_short_ends_the_connection(served):
    s, _ = served()
    s.start()
    s.host.sendall(_submit(3, IN, 0, 18, GET_DEVICE_DESCRIPTOR)[:20])
    s.host.shutdown(socket.SHUT_WR)
    assert s.ended() == "closed after 20 of 48 bytes"


def test_a_header_cut_in_its_second_part_ends_the_connection(served):
    s, _ = served()
    s.start()
    s.host.sendall(_submit(3, IN, 0, 18, GET_DEVICE_DESCRIPTOR)[:10])
    _consumed(s.server)
    s.host.sendall(b"\0" * 5)
    s.host.shutdown(socket.SHUT_WR)
    assert s.ended() == "closed after 5 of 38 bytes"


def test_a_header_too_slow_ends_the_connection(served, monkeypatch):
    monkeypatch.setattr(usbip_urbs, "STALL_TIMEOUT", 0.3)
    s, _ = served()
    s.start()
    s.host.sendall(_submit(3, IN, 0, 18, GET_DEVICE_DESCRIPTOR)[:10])
    assert s.ended() == "0 of 38 bytes arrived in time; too slow"


def test_a_negative_length_ends_the_connection(served):
    s, _ = served()
    s.start()
    s.host.sendall(_submit(1, IN, EP_IN, -1))
    assert s.ended() == "a transfer of -1 bytes"


def test_an_out_transfer_up_to_its_endpoints_limit_is_delivered(served):
    s, iface = served()
    s.start()
    s.host.sendall(_submit(1, OUT, EP_OUT, 100) + b"\x42" * 100)
    assert _answer(s.host)[:3] == (RET_SUBMIT, 1, 0)
    assert iface.last_output == b"\x42" * 100


def test_an_out_transfer_over_its_endpoints_limit_is_never_read(served):
    s, iface = served()
    s.start()
    s.host.sendall(_submit(1, OUT, EP_OUT, 101))
    assert s.ended() == ("an OUT transfer of 101 bytes to endpoint 2, which takes at most "
                         "100")


def test_an_endpoint_without_a_limit_takes_one_packet(served):
    s, _ = served()
    s.start()
    s.host.sendall(_submit(1, OUT, 5, 64) + b"\0" * 64)
    assert _answer(s.host)[:3] == (RET_SUBMIT, 1, -19)  # no such endpoint, but read
    s.host.sendall(_submit(2, OUT, 5, 65) + b"\0" * 65)
    assert s.ended() == "an OUT transfer of 65 bytes to endpoint 5, which takes at most 64"


def test_an_empty_out_transfer_reads_no_data(served):
    s, _ = served()
    s.start()
    s.host.sendall(_submit(1, OUT, 0, 0, SET_CONFIGURATION))
    s.host.sendall(_submit(2, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:3] == (RET_SUBMIT, 1, 0)
    assert _answer(s.host)[:3] == (RET_SUBMIT, 2, 0)


def test_an_in_transfer_reads_no_data(served):
    s, iface = served()
    s.start()
    # an IN header announcing 64 bytes, and the next request right behind it
    s.host.sendall(_submit(1, IN, EP_IN, 64) + _submit(2, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:3] == (RET_SUBMIT, 2, 0)
    iface.send_report(b"r" * 64)
    assert _answer(s.host) == (RET_SUBMIT, 1, 0, b"r" * 64)


def test_an_out_transfer_whose_data_never_comes_ends(served):
    s, _ = served()
    s.start()
    s.host.sendall(_submit(1, OUT, EP_OUT, 64))
    s.host.shutdown(socket.SHUT_WR)
    assert s.ended() == "closed before the transfer's data"


def test_an_out_transfer_cut_short_ends(served):
    s, _ = served()
    s.start()
    s.host.sendall(_submit(1, OUT, EP_OUT, 64) + b"\0" * 10)
    s.host.shutdown(socket.SHUT_WR)
    assert s.ended() == "closed after 10 of 64 bytes"


def test_an_out_transfer_too_slow_ends(served, monkeypatch):
    monkeypatch.setattr(usbip_urbs, "STALL_TIMEOUT", 0.3)
    s, _ = served()
    s.start()
    s.host.sendall(_submit(1, OUT, EP_OUT, 64) + b"\0" * 10)
    assert s.ended() == "10 of 64 bytes arrived in time; too slow"


def test_an_isochronous_transfer_ends_the_connection():
    dev = USBDevice(0x1050, 0x0407)
    dev.add(UAC())
    s = Served(dev).start()
    try:
        s.host.sendall(_submit(1, IN, 2, 0))
        assert s.ended() == "an isochronous transfer (the key has no such endpoint)"
    finally:
        s.close()


def test_a_waiting_in_transfer_is_answered_when_the_device_has_data(served):
    s, iface = served()
    s.start()
    s.host.sendall(_submit(1, IN, EP_IN, 64) + _submit(2, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:2] == (RET_SUBMIT, 2)  # the IN transfer waits
    assert s.loop._parked == {1}
    iface.send_report(b"d" * 64)
    assert _answer(s.host) == (RET_SUBMIT, 1, 0, b"d" * 64)
    assert s.loop._parked == set()


def test_a_fresh_connection_drops_stale_in_data(served):
    s, iface = served()
    iface.send_report(b"stale".ljust(64, b"\0"))
    s.start()
    s.host.sendall(_submit(1, IN, EP_IN, 64) + _submit(2, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:2] == (RET_SUBMIT, 2)
    iface.send_report(b"f" * 64)
    assert _answer(s.host) == (RET_SUBMIT, 1, 0, b"f" * 64)


def test_an_unlinked_transfer_is_not_answered(served):
    s, iface = served()
    s.start()
    s.host.sendall(_submit(1, IN, EP_IN, 64) + _unlink(2, 1))
    command, seq, status, _ = _answer(s.host)
    assert (command, seq, status) == (RET_UNLINK, 2, 0)
    assert s.loop._parked == set()
    iface.send_report(b"u" * 64)  # buffered: no transfer waits for it
    s.host.sendall(_submit(3, IN, 0, 18, GET_DEVICE_DESCRIPTOR) + _submit(4, IN, EP_IN, 64))
    assert _answer(s.host)[:2] == (RET_SUBMIT, 3)
    assert _answer(s.host) == (RET_SUBMIT, 4, 0, b"u" * 64)


def test_idle_connections_are_closed(served):
    s, _ = served(idle_timeout=0.2)
    s.start()
    s.host.sendall(_submit(1, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:2] == (RET_SUBMIT, 1)
    assert s.result() == "idle"


def test_a_host_waiting_on_the_key_is_not_idle(served):
    s, iface = served(idle_timeout=0.2)
    s.start()
    s.host.sendall(_submit(1, IN, EP_IN, 64))
    s.thread.join(2.5)  # two looks at the idle clock, each past the idle timeout
    assert s.thread.is_alive()
    iface.send_report(b"w" * 64)
    assert _answer(s.host) == (RET_SUBMIT, 1, 0, b"w" * 64)
    assert s.result() == "idle"  # nothing waits any more


def test_an_unlink_leaves_the_connection_idle(served):
    s, _ = served(idle_timeout=0.2)
    s.start()
    s.host.sendall(_submit(1, IN, EP_IN, 64) + _unlink(2, 1))
    assert _answer(s.host)[:2] == (RET_UNLINK, 2)
    assert s.result() == "idle"


def test_a_bus_reset_drops_the_waiting_transfers(served):
    s, _ = served(idle_timeout=0.2)
    s.start()
    s.host.sendall(_submit(1, IN, EP_IN, 64) + _submit(2, OUT, 0, 0, SET_CONFIGURATION))
    assert _answer(s.host)[:2] == (RET_SUBMIT, 2)
    assert s.result() == "idle"


def test_without_an_idle_timeout_a_connection_stays(served):
    s, _ = served(idle_timeout=None)
    s.start()
    s.thread.join(1.5)  # past one look at the idle clock
    assert s.thread.is_alive()
    s.host.sendall(_submit(1, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:3] == (RET_SUBMIT, 1, 0)


def test_at_most_max_parked_in_transfers_wait(served):
    s, _ = served()
    s.start()
    s.host.sendall(b"".join(_submit(seq, IN, EP_IN, 64) for seq in range(1, 65)))
    s.host.sendall(_submit(100, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:3] == (RET_SUBMIT, 100, 0)  # 64 waiting: still served
    assert len(s.loop._parked) == usbip_urbs.MAX_PARKED == 64
    s.host.sendall(_submit(65, IN, EP_IN, 64))
    assert s.ended() == "more than 64 IN transfers waiting at once"


def test_a_host_that_takes_no_answers_is_cut_off(served, monkeypatch):
    monkeypatch.setattr(usbip_urbs, "STALL_TIMEOUT", 0.3)
    s, _ = served()
    s.start()
    flood = _submit(1, IN, 0, 18, GET_DEVICE_DESCRIPTOR) * 20000

    def send() -> None:
        with contextlib.suppress(OSError):  # the server shut the connection down
            s.host.sendall(flood)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    assert s.result(20) == "detached"
    sender.join(10)
    assert not sender.is_alive()


def test_timeval_truncates_to_whole_microseconds():
    assert usbip_urbs._timeval(1.5000009) == struct.pack("@ll", 1, 500000)
    assert usbip_urbs._timeval(0.9999995) == struct.pack("@ll", 0, 999999)


def test_recv_exact_reads_no_byte_past_what_it_was_asked_for():
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.05)
        got: list[bytes | None] = []
        reader = threading.Thread(
            target=lambda: got.append(recv_exact(a, 8, time.monotonic() + 10)), daemon=True)
        b.sendall(b"abc")
        reader.start()
        _consumed(a)
        b.sendall(b"defghXYZ")  # the next message is already there behind the rest
        reader.join(10)
        assert got == [b"abcdefgh"]
        assert a.recv(100) == b"XYZ"


def test_an_idle_timeout_longer_than_one_look_is_waited_out(served):
    s, _ = served(idle_timeout=2.5)
    s.start()
    s.thread.join(1.5)  # one look at the idle clock (after 1 s): not idle yet
    assert s.thread.is_alive()
    s.host.sendall(_submit(1, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:3] == (RET_SUBMIT, 1, 0)
    assert s.result() == "idle"


def test_an_unlink_is_answered_with_the_commands_own_header_fields(served):
    s, _ = served()
    s.start()
    s.host.sendall(_submit(1, IN, EP_IN, 64) + _unlink(9, 1))
    head = read_exact(s.host, 48)
    assert struct.unpack(">IIIIIiiiii8s", head) == (
        RET_UNLINK, 9, DEVID, OUT, EP_IN, 0, 0, 0, 0, 0, bytes(8))


def test_a_control_out_without_data_delivers_no_data(served):
    s, iface = served()
    s.start()
    set_output_report = bytes([0x21, 0x09, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00])
    s.host.sendall(_submit(1, OUT, 0, 0, set_output_report))
    assert _answer(s.host)[:3] == (RET_SUBMIT, 1, 0)
    assert iface.last_output == b""


def test_a_one_byte_out_transfer_is_read(served):
    s, iface = served()
    s.start()
    s.host.sendall(_submit(1, OUT, EP_OUT, 1) + b"\x07"
                   + _submit(2, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:3] == (RET_SUBMIT, 1, 0)
    assert _answer(s.host)[:3] == (RET_SUBMIT, 2, 0)
    assert iface.last_output == b"\x07"


def test_an_in_transfer_takes_at_most_its_length(served):
    s, iface = served()
    s.start()
    s.host.sendall(_submit(1, IN, EP_IN, 8) + _submit(2, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:2] == (RET_SUBMIT, 2)
    iface.send_report(bytes(range(64)))
    assert _answer(s.host) == (RET_SUBMIT, 1, 0, bytes(range(8)))


class _Without:
    """The device, lacking the optional methods named (a device of another kind)."""

    def __init__(self, dev: USBDevice, *missing: str) -> None:
        self._dev = dev
        self._missing = missing

    def __getattr__(self, name: str) -> object:
        if name in self._missing:
            raise AttributeError(name)
        return getattr(self._dev, name)


def test_a_device_without_reset_or_unlink_support_is_served():
    dev, iface = _hid_device()
    s = Served(_Without(dev, "reset_io", "cancel_urb")).start()  # type: ignore[arg-type]
    try:
        s.host.sendall(_submit(1, IN, EP_IN, 64) + _unlink(2, 1))
        assert _answer(s.host)[:3] == (RET_UNLINK, 2, 0)
        assert s.loop._parked == set()
        s.host.sendall(_submit(3, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
        assert _answer(s.host)[:3] == (RET_SUBMIT, 3, 0)
    finally:
        s.close()


def test_an_answer_after_the_connection_closed_is_dropped(served):
    s, iface = served()
    s.start()
    s.host.sendall(_submit(1, IN, EP_IN, 64) + _submit(2, IN, 0, 18, GET_DEVICE_DESCRIPTOR))
    assert _answer(s.host)[:2] == (RET_SUBMIT, 2)
    s.host.close()
    assert s.result() == "detached"
    s.server.close()  # as the server does when the loop returns
    iface.send_report(b"z" * 64)  # the device answers the waiting transfer: nobody to take it
    assert s.loop._parked == set()
