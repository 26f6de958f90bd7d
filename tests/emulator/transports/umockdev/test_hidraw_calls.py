"""Each hidraw call, answered exactly as linux/hidraw.h and drivers/hid/hidraw.c answer it.

The calls are made by hand over umockdev's preload protocol (what libumockdev-preload does in
a program), in this process: no program is started, so every ioctl number, size, direction
and result, every errno and every byte the key writes into the caller's memory can be checked
one by one, quickly. The programs themselves (libfido2, python-fido2, ykman) are in the
neighbouring tests.
"""

from __future__ import annotations

import errno
import logging
import struct
import threading
import time

import pytest
from umockdev_helpers import FakeClient

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.transports import umockdev
from hwtoken.emulator.transports.umockdev import preload
from hwtoken.emulator.transports.umockdev.hidraw import ioc
from hwtoken.emulator.usb import OTP_REPORT_DESCRIPTOR as OTP_DESCRIPTOR

READ, WRITE = 2, 1
ADDR = 0x1000
#: the FIDO HID report descriptor of CTAP 2.2 section 11.2.8.1 (64-byte input and output)
FIDO_DESCRIPTOR = bytes.fromhex(
    "06d0f10901a1010920150026ff007508954081020921150026ff00750895409102c0")
NAME = "Yubico YubiKey OTP+FIDO+CCID"
SERIAL = 12345678
CTAPHID_INIT = b"\xff\xff\xff\xff\x86\x00\x08" + b"nonce-01"


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    key = VirtualKey.create(tmp_path_factory.mktemp("hidraw") / "k.key", serial=SERIAL)
    testbed = umockdev.Testbed()
    try:
        yield testbed, testbed.plug(key)
    finally:
        testbed.close()
        key.close()


def _open(bed, which: str) -> FakeClient:
    testbed, plugged = bed
    node = getattr(plugged, f"{which}_hidraw").rsplit("/", 1)[1]
    return FakeClient(str(testbed.root / "ioctl" / "dev" / node))


@pytest.fixture
def fido(bed):
    client = _open(bed, "fido")
    yield client
    client.close()


@pytest.fixture
def otp(bed):
    client = _open(bed, "otp")
    # the key is shared by the module's tests: leave no answer of an earlier one pending
    client.call(preload.REQ_IOCTL, ioc(READ | WRITE, 0x06, 9), ADDR, b"\0" + bytes(7) + b"\x8f")
    yield client
    client.close()


def ioctl(client: FakeClient, direction: int, nr: int, size: int, mem: bytes = b""):
    client.memory.clear()
    return client.call(preload.REQ_IOCTL, ioc(direction, nr, size), ADDR, mem)


def fail(err: int) -> tuple[int, int]:
    return (-1, err)


# -- the descriptor and the device's identity ------------------------------------------------
@pytest.mark.parametrize(("which", "descriptor"), [("fido", FIDO_DESCRIPTOR),
                                                   ("otp", OTP_DESCRIPTOR)])
def test_report_descriptor_size_and_bytes(bed, which, descriptor):
    client = _open(bed, which)
    try:
        assert ioctl(client, READ, 0x01, 4) == (0, 0)  # HIDIOCGRDESCSIZE
        assert client.memory == {ADDR: struct.pack("i", len(descriptor))}
        # HIDIOCGRDESC: the caller's struct says how many bytes it wants, after its size
        size = 4 + 4096
        assert ioctl(client, READ, 0x02, size, struct.pack("I", len(descriptor))) == (0, 0)
        assert client.memory == {ADDR + 4: descriptor}
        assert ioctl(client, READ, 0x02, size, struct.pack("I", 10)) == (0, 0)
        assert client.memory == {ADDR + 4: descriptor[:10]}
        assert ioctl(client, READ, 0x02, size, struct.pack("I", 4095)) == (0, 0)
        assert client.memory == {ADDR + 4: descriptor}
        assert ioctl(client, READ, 0x02, size, struct.pack("I", 4096)) == fail(errno.EINVAL)
    finally:
        client.close()


def test_raw_info_is_usb_and_yubicos_ids(fido):
    assert ioctl(fido, READ, 0x03, 8) == (0, 0)
    assert fido.memory == {ADDR: struct.pack("Ihh", 3, 0x1050, 0x0407)}


@pytest.mark.parametrize(("nr", "text"), [(0x04, NAME), (0x05, "usb-0000:00:14.0-1/input1"),
                                          (0x08, str(SERIAL))])
def test_name_phys_and_uniq_with_their_nul_cut_to_the_buffer(fido, nr, text):
    whole = text.encode() + b"\0"
    assert ioctl(fido, READ, nr, 256) == (len(whole), 0)
    assert fido.memory == {ADDR: whole}
    assert ioctl(fido, READ, nr, 5) == (5, 0)  # the kernel copies at most the buffer's size
    assert fido.memory == {ADDR: whole[:5]}


@pytest.mark.parametrize(("direction", "nr", "size"), [
    (READ, 0x01, 8),  # HIDIOCGRDESCSIZE of the wrong size
    (READ, 0x02, 4),  # HIDIOCGRDESC without room for the descriptor
    (READ, 0x03, 4),  # HIDIOCGRAWINFO of the wrong size
    (WRITE, 0x04, 64),  # HIDIOCGRAWNAME written to instead of read
    (READ | WRITE, 0x05, 64),  # HIDIOCGRAWPHYS both ways
    (WRITE, 0x08, 64),  # HIDIOCGRAWUNIQ written to
    (READ, 0x06, 9),  # HIDIOCSFEATURE must be read/write
    (WRITE, 0x07, 9),  # HIDIOCGFEATURE too
    (READ | WRITE, 0x0D, 9),  # no such hidraw ioctl
])
def test_malformed_hidraw_ioctls_are_einval(fido, direction, nr, size):
    assert ioctl(fido, direction, nr, size) == fail(errno.EINVAL)
    assert fido.memory == {}


def test_other_ioctls_are_enotty_and_file_ioctls_go_to_the_file(fido):
    assert fido.call(preload.REQ_IOCTL, 0x5401, ADDR) == fail(errno.ENOTTY)  # TCGETS
    assert fido.call(preload.REQ_IOCTL, 0x40045401 | (ord("J") << 8), ADDR) == fail(errno.ENOTTY)
    for request in (0x5451, 0x5450, 0x5421, 0x5452):  # FIOCLEX FIONCLEX FIONBIO FIOASYNC
        assert fido.call(preload.REQ_IOCTL, request, ADDR) == (preload.UNHANDLED, 0)


# -- feature reports (the OTP interface) -------------------------------------------------------
def _get_feature(client: FakeClient, size: int = 9) -> bytes:
    assert ioctl(client, READ | WRITE, 0x07, size, b"\0") == (9, 0)
    return client.memory[ADDR + 1]  # after the report number the caller put in buf[0]


def _serial_frame() -> list[bytes]:
    from yubico.yubikey_frame import YubiKeyFrame

    raw = YubiKeyFrame(0x10, bytes(64)).to_string()
    return [raw[i * 7:(i + 1) * 7] + bytes([0x80 | i]) for i in range(10)]


def test_feature_reports_carry_an_otp_command_and_its_answer(bed, otp):
    testbed, plugged = bed
    status = _get_feature(otp)
    assert status == b"\0" + plugged.key.otp.status() + b"\0"
    for report in _serial_frame():  # report number 0, then the 8 bytes: 9 written
        assert ioctl(otp, READ | WRITE, 0x06, 9, b"\0" + report) == (9, 0)
    first = _get_feature(otp, size=0x3FFF)  # the largest size an ioctl number can carry
    assert first[7] == 0x40 and first[:4] == SERIAL.to_bytes(4, "big")
    assert _get_feature(otp) == bytes(7) + b"\x40"  # the end of the answer
    assert ioctl(otp, READ | WRITE, 0x06, 9, b"\0" + bytes(7) + b"\x8f") == (9, 0)
    assert _get_feature(otp) == status


def test_a_numbered_report_keeps_its_number_byte(otp):
    # a report number other than 0 goes to the device and stays in the buffer: the answer
    # is written from buf[0], and counted whole
    assert ioctl(otp, READ | WRITE, 0x07, 9, b"\x02") == (8, 0)
    assert list(otp.memory) == [ADDR]


@pytest.mark.parametrize("size", [0, 1])  # hidraw_{send,get}_report want 2 bytes at least
@pytest.mark.parametrize("nr", [0x06, 0x07, 0x09, 0x0A, 0x0B, 0x0C])
def test_report_ioctls_of_a_bad_length_are_einval(otp, nr, size):
    assert ioctl(otp, READ | WRITE, nr, size, b"\0") == fail(errno.EINVAL)
    assert otp.memory == {}


def test_a_report_the_device_stalls_is_epipe(otp):
    # the OTP interface has no input report to set and no output report to read
    assert ioctl(otp, READ | WRITE, 0x09, 9, b"\0") == fail(errno.EPIPE)  # HIDIOCSINPUT
    assert ioctl(otp, READ | WRITE, 0x0C, 9, b"\0") == fail(errno.EPIPE)  # HIDIOCGOUTPUT


# -- read() and write() (the FIDO interface) ---------------------------------------------------
def test_a_written_report_is_answered_on_the_next_read(fido):
    assert fido.call(preload.REQ_WRITE, ADDR, 65, b"\0" + CTAPHID_INIT.ljust(64, b"\0")) \
        == (65, 0)
    fido.memory.clear()
    assert fido.call(preload.REQ_READ, 0x3000, 64) == (64, 0)
    answer = fido.memory[0x3000]
    assert answer[:4] == b"\xff" * 4 and answer[4] == 0x86 and answer[7:15] == b"nonce-01"


def test_a_report_written_without_its_number_byte(fido):
    # a first byte other than 0 is the report itself (the device numbers no reports)
    assert fido.call(preload.REQ_WRITE, ADDR, 64, CTAPHID_INIT.ljust(64, b"\0")) == (64, 0)
    fido.memory.clear()
    assert fido.call(preload.REQ_READ, 0x3000, 10) == (10, 0)  # the rest of it is lost
    assert fido.memory == {0x3000: CTAPHID_INIT[:7].replace(b"\x08", b"\x11") + b"non"}
    assert fido.call(preload.REQ_READ, 0x3000, 64) == (preload.UNHANDLED, 0)  # nothing queued


@pytest.mark.parametrize("count", [0, 1, 16385])  # hidraw_send_report: 2 to 16384 bytes
def test_a_write_of_a_bad_length_is_einval(fido, count):
    assert fido.call(preload.REQ_WRITE, ADDR, count, b"\0") == fail(errno.EINVAL)


def test_the_largest_write_is_taken(fido):
    assert fido.call(preload.REQ_WRITE, ADDR, 16384, b"\0") == (16384, 0)
    assert fido.call(preload.REQ_WRITE, ADDR, 2, b"\0") == (2, 0)


def test_an_output_report_on_the_otp_interface_is_a_set_report(otp):
    # the keyboard has no OUT endpoint: its LED report goes as SET_REPORT(Output), taken
    assert otp.call(preload.REQ_WRITE, ADDR, 2, b"\0\x01") == (2, 0)
    assert _get_feature(otp)[7] == 0  # and the OTP interface goes on answering


def test_every_call_on_an_unplugged_key_is_enodev(tmp_path):
    key = VirtualKey.create(tmp_path / "gone.key")
    testbed = umockdev.Testbed()
    try:
        plugged = testbed.plug(key)
        client = _open((testbed, plugged), "fido")
        testbed.unplug(plugged)
        assert client.call(preload.REQ_READ, ADDR, 64) == fail(errno.ENODEV)
        assert client.call(preload.REQ_WRITE, ADDR, 65, b"\0") == fail(errno.ENODEV)
        assert ioctl(client, READ, 0x03, 8) == fail(errno.ENODEV)
        assert client.call(preload.REQ_IOCTL, 0x5421, ADDR) == (preload.UNHANDLED, 0)
        client.close()
    finally:
        testbed.close()
        key.close()


def test_ids_are_the_kernels_signed_shorts():
    # struct hidraw_devinfo holds vendor and product as __s16: ids from 0x8000 are negative
    from hwtoken.emulator.transports.umockdev.hidraw import _s16

    assert [_s16(v) for v in (0, 0x1050, 0x7FFF, 0x8000, 0x8001, 0xFFFF)] == \
        [0, 0x1050, 0x7FFF, -0x8000, -0x7FFF, -1]


def test_a_read_of_zero_bytes_takes_the_report(fido):
    # hidraw_read copies min(count, report) bytes and drops the report all the same
    fido.call(preload.REQ_WRITE, ADDR, 65, b"\0" + CTAPHID_INIT.ljust(64, b"\0"))
    fido.memory.clear()
    assert fido.call(preload.REQ_READ, 0x3000, 0) == (0, 0)
    assert fido.memory == {}
    assert fido.call(preload.REQ_READ, 0x3000, 64) == (preload.UNHANDLED, 0)


@pytest.mark.parametrize("reads", ["pty", "emulated"])
def test_the_read_modes(tmp_path, reads):
    key = VirtualKey.create(tmp_path / "modes.key")
    testbed = umockdev.Testbed(reads=reads)
    try:
        client = _open((testbed, testbed.plug(key)), "fido")
        # nothing queued: "pty" lets the program read its pty itself; "emulated" reads it
        # inside the call, and a non-blocking file gets EAGAIN there
        empty = (preload.UNHANDLED, 0) if reads == "pty" else fail(errno.EAGAIN)
        assert client.call(preload.REQ_READ, ADDR, 64) == empty
        client.call(preload.REQ_WRITE, ADDR, 65, b"\0" + CTAPHID_INIT.ljust(64, b"\0"))
        client.memory.clear()
        if reads == "pty":  # the answer is on the pty, never handed over in the call
            assert client.call(preload.REQ_READ, ADDR, 64) == (preload.UNHANDLED, 0)
        else:
            assert client.call(preload.REQ_READ, ADDR, 64) == (64, 0)
            assert client.memory[ADDR][7:15] == b"nonce-01"
        client.close()
    finally:
        testbed.close()
        key.close()


def test_an_unknown_read_mode_is_refused():
    from hwtoken.emulator.transports.umockdev.hidraw import HidrawNode

    with pytest.raises(ValueError, match=r"^reads must be one of \('auto', 'emulated', 'pty'\)$"):
        HidrawNode(None, None, None, None, reads="fast")  # type: ignore[arg-type]


# -- what the kernel sends the device, and reads from the caller -------------------------------
def test_report_ioctls_as_usbhid_sends_them(bed, otp, monkeypatch):
    from hwtoken.emulator.transports.umockdev import enumeration, hidraw

    sent: list[tuple] = []
    real = enumeration.control

    def control(device, request_type, request, value, index, data_or_length):
        sent.append((request_type, request, value, index, data_or_length))
        return real(device, request_type, request, value, index, data_or_length)

    monkeypatch.setattr(hidraw.enumeration, "control", control)
    _, plugged = bed
    ifnum = next(n for n, b in plugged.hid.items() if b.layout.hidraw in plugged.otp_hidraw)
    otp.reads.clear()
    assert ioctl(otp, READ | WRITE, 0x07, 2, b"\0") == (2, 0)  # the smallest: one byte
    assert otp.memory == {ADDR + 1: b"\0"}
    assert otp.reads == [(ADDR, 1)]  # a GET reads only the report number from the caller
    otp.reads.clear()
    report = b"\0" + bytes(7) + b"\x8f"
    assert ioctl(otp, READ | WRITE, 0x06, 9, report) == (9, 0)
    assert otp.reads == [(ADDR, 9)]
    # class requests to the interface: GET_REPORT(Feature, 0) for the rest of the buffer,
    # SET_REPORT(Feature, 0) with the report after its number
    assert sent == [(0xA1, 0x01, 0x0300, ifnum, 1), (0x21, 0x09, 0x0300, ifnum, report[1:])]
    # a write on an interface without an OUT endpoint: SET_REPORT(Output, number)
    sent.clear()
    assert otp.call(preload.REQ_WRITE, ADDR, 2, b"\0\x01") == (2, 0)
    assert otp.call(preload.REQ_WRITE, ADDR, 3, b"\x05\x01\x02") == (3, 0)
    wait_until = time.monotonic() + 5  # the write's call returns before the device has it
    while len(sent) < 2:
        assert time.monotonic() < wait_until
        time.sleep(0.01)
    assert sent == [(0x21, 0x09, 0x0200, ifnum, b"\x01"),
                    (0x21, 0x09, 0x0205, ifnum, b"\x05\x01\x02")]


def _emulated(tmp_path):
    key = VirtualKey.create(tmp_path / "emulated.key")
    testbed = umockdev.Testbed(reads="emulated")
    return key, testbed, testbed.plug(key)


@pytest.mark.parametrize("answer", [(64, 0), (0, 0), (-1, errno.EINTR)])
def test_an_emulated_read_ends_as_the_programs_own_read(tmp_path, answer):
    key, testbed, plugged = _emulated(tmp_path)
    try:
        client = _open((testbed, plugged), "fido")
        client.run_answer = answer  # the program read its pty inside the call: this came
        assert client.call(preload.REQ_READ, ADDR, 64) == answer
        client.run_answer = (-1, 0)  # a failure without an errno is EIO
        assert client.call(preload.REQ_READ, ADDR, 64) == fail(errno.EIO)
        client.close()
    finally:
        testbed.close()
        key.close()


def test_an_unplug_during_an_emulated_read_is_enodev(tmp_path):
    key, testbed, plugged = _emulated(tmp_path)
    try:
        client = _open((testbed, plugged), "fido")
        client.on_run = lambda: testbed.unplug(plugged)
        assert client.call(preload.REQ_READ, ADDR, 64) == fail(errno.ENODEV)
        client.close()
    finally:
        testbed.close()
        key.close()


def test_a_program_that_closes_during_an_emulated_read_is_let_go(tmp_path, caplog):
    class Closed(Exception):
        pass

    key, testbed, plugged = _emulated(tmp_path)
    try:
        client = _open((testbed, plugged), "fido")

        def close() -> None:
            client.close()
            raise Closed

        client.on_run = close
        with caplog.at_level(logging.DEBUG, logger="hwtoken"), pytest.raises(Closed):
            client.call(preload.REQ_READ, ADDR, 64)
        deadline = time.monotonic() + 5
        while plugged.open_files:
            assert time.monotonic() < deadline, "the closed file was never released"
            time.sleep(0.01)
        assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    finally:
        testbed.close()
        key.close()


class _Urb:
    def __init__(self, status: int, data: bytes) -> None:
        self.status, self.buffer, self.actual = status, data, len(data)


def test_an_interrupt_urb_that_failed_delivers_nothing_and_is_not_resubmitted(bed, fido):
    _, plugged = bed
    node = next(b.node for b in plugged.hid.values() if b.layout.hidraw in plugged.fido_hidraw)
    assert ioctl(fido, READ, 0x03, 8) == (0, 0)  # the open is served by now
    (opened,) = node._opens
    put: list[bytes] = []
    queue, opened.queue = opened.queue, type("Queue", (), {"put": lambda _, d: put.append(d)})()
    try:
        assert opened._deliver(_Urb(-108, b"\x01" * 64)) is False  # ESHUTDOWN: usbhid stops
        assert opened._deliver(_Urb(0, b"")) is True and put == []  # nothing read
        assert opened._deliver(_Urb(0, b"\x02" * 64)) is True and put == [b"\x02" * 64]
        opened._closed = True
        assert opened._deliver(_Urb(0, b"\x03" * 64)) is False and put == [b"\x02" * 64]
    finally:
        opened.queue, opened._closed = queue, False


# -- the open file's life: what it holds and gives back ----------------------------------------
def _served(testbed, plugged, which: str):
    """A client of ``which`` node, the node, and the open file serving the client."""
    hidraw = getattr(plugged, f"{which}_hidraw")
    node = next(b.node for b in plugged.hid.values() if b.layout.hidraw in hidraw)
    before = set(node._opens)
    client = _open((testbed, plugged), which)
    assert ioctl(client, READ, 0x03, 8) == (0, 0)  # the open is served by now
    (opened,) = set(node._opens) - before
    return client, node, opened


def _until(done, what: str) -> None:
    deadline = time.monotonic() + 5
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_a_descriptor_length_above_the_signed_range_is_einval(fido):
    # hidraw.c reads rdesc.size as __u32: 0xFFFFFFFF is far above HID_MAX_DESCRIPTOR_SIZE
    assert ioctl(fido, READ, 0x02, 4 + 4096, struct.pack("I", 0xFFFFFFFF)) == fail(errno.EINVAL)
    assert ioctl(fido, READ, 0x02, 4 + 4096, struct.pack("I", 0x80000000)) == fail(errno.EINVAL)
    assert fido.memory == {}


def test_a_closed_file_gives_back_its_session_and_its_pty(tmp_path):
    key = VirtualKey.create(tmp_path / "closed.key")
    testbed = umockdev.Testbed()
    try:
        plugged = testbed.plug(key)
        client, node, opened = _served(testbed, plugged, "fido")
        sessions = opened.node.usb.session_count
        pty = opened.queue.pty
        assert node.open_count == 1 and pty.path in node.pool._owned
        client.close()
        _until(lambda: pty.path not in node.pool._owned, "the closed file kept its pty")
        assert opened._closed is True  # (releasing its pty is the last thing a close does)
        assert node.open_count == 0
        assert opened.node.usb.session_count == sessions - 1
    finally:
        testbed.close()
        key.close()


def test_no_interrupt_urb_is_submitted_for_a_closed_or_unplugged_file(bed):
    testbed, plugged = bed
    client, _, opened = _served(testbed, plugged, "fido")
    submitted: list = []
    opened.device = type("Device", (), {"handle_urb": lambda _, urb, respond: submitted.append(
        urb)})()
    try:
        opened._closed = True
        opened._submit_in()
        opened._closed = False
        opened._gone.set()
        opened._submit_in()
        assert submitted == []
        opened._gone.clear()
        opened._submit_in()  # and while it is open and plugged, one is
        assert [(u.direction, u.ep) for u in submitted] == [(1, opened._in.number)]
    finally:
        opened._closed = True  # its own device is not the key's any more: let it go
        client.close()


def test_the_keyboard_types_on_the_otp_node(tmp_path):
    from yubikit.core.otp import OtpConnection
    from yubikit.yubiotp import StaticPasswordSlotConfiguration, YubiOtpSession

    from hwtoken.emulator.applets.otp.hid import OtpHidEngine, press
    from hwtoken.emulator.applets.otp.keyboard import decode

    key = VirtualKey.create(tmp_path / "typing.key")
    testbed = umockdev.Testbed()
    try:
        engine = OtpHidEngine(key)

        class Direct(OtpConnection):
            def receive(self) -> bytes:
                return engine.get_feature()

            def send(self, data: bytes) -> None:
                engine.set_feature(data)

            def close(self) -> None:
                pass

        YubiOtpSession(Direct()).put_configuration(
            2, StaticPasswordSlotConfiguration(bytes([0x04, 0x85, 0x1E])))
        engine.close()
        plugged = testbed.plug(key)
        client, _, _ = _served(testbed, plugged, "otp")
        assert press(key, 2) == "aB1\n"
        reports: list[bytes] = []
        deadline = time.monotonic() + 10
        while not decode(reports).endswith("\n"):  # the reports the interrupt IN URBs bring
            assert time.monotonic() < deadline, f"typed so far: {decode(reports)!r}"
            client.memory.clear()
            got = client.call(preload.REQ_READ, ADDR, 64)
            if got == (8, 0):
                reports.append(client.memory[ADDR])
            else:
                assert got == (preload.UNHANDLED, 0)
                time.sleep(0.01)
        assert decode(reports) == "aB1\n"
        client.close()
    finally:
        testbed.close()
        key.close()


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        self.event = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        self.event.set()


def _hidraw_log():
    records = _Records()
    logger = logging.getLogger("hwtoken.emulator.transports.umockdev.hidraw")
    logger.addHandler(records)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    return records, lambda: (logger.removeHandler(records), logger.setLevel(old))


def test_an_output_report_the_endpoint_stalls_is_dropped_without_a_flush(tmp_path):
    key = VirtualKey.create(tmp_path / "stall.key")
    testbed = umockdev.Testbed()
    records, undo = _hidraw_log()
    try:
        plugged = testbed.plug(key)
        client, _, opened = _served(testbed, plugged, "fido")
        flushed = threading.Event()
        real_flush = opened.session.flush_fido
        opened.session.flush_fido = lambda: (flushed.set(), real_flush())
        # a report taken by the endpoint is flushed to the reader at once
        assert client.call(preload.REQ_WRITE, ADDR, 65, b"\0" + CTAPHID_INIT.ljust(64, b"\0")) \
            == (65, 0)
        assert flushed.wait(5)
        flushed.clear()
        opened.device._ep_map[(opened._out.number, 0)].halted = True  # OUT endpoint halted
        assert client.call(preload.REQ_WRITE, ADDR, 65, b"\0" + CTAPHID_INIT.ljust(64, b"\0")) \
            == (65, 0)
        assert records.event.wait(5)
        assert records.messages == [
            f"the device stalled an output report on {opened.iface.number}"]
        assert not flushed.is_set()
        client.close()
    finally:
        undo()
        testbed.close()
        key.close()


def test_a_set_report_the_device_refuses_is_dropped_and_logged(bed, monkeypatch):
    from hwtoken.emulator.transports.umockdev import enumeration, hidraw

    def refuse(*_args):
        raise enumeration.ControlError("stalled")

    monkeypatch.setattr(hidraw.enumeration, "control", refuse)
    records, undo = _hidraw_log()
    try:
        testbed, plugged = bed
        client, _, opened = _served(testbed, plugged, "otp")
        assert client.call(preload.REQ_WRITE, ADDR, 2, b"\0\x01") == (2, 0)  # taken anyway
        assert records.event.wait(5)
        assert records.messages == [
            f"the device stalled an output report on {opened.iface.number}"]
        client.close()
    finally:
        undo()


def test_reports_the_device_holds_already_are_all_taken_before_an_urb_waits(bed):
    # usbhid resubmits its interrupt URB as each completes: when the device had reports
    # queued, each submission completes at once, until one has to wait (is parked)
    testbed, plugged = bed
    client, _, opened = _served(testbed, plugged, "fido")
    held = [_Urb(0, b"\x01" * 64), _Urb(0, b"\x02" * 64), None]
    calls: list = []

    def handle_urb(urb, respond):
        calls.append(urb)
        return held[len(calls) - 1]

    put: list[bytes] = []
    device, queue = opened.device, opened.queue
    opened.device = type("Device", (), {"handle_urb": staticmethod(handle_urb)})()
    opened.queue = type("Queue", (), {"put": lambda _, d: put.append(d)})()
    try:
        opened._submit_in()
        assert put == [b"\x01" * 64, b"\x02" * 64] and len(calls) == 3
    finally:
        opened.device, opened.queue, opened._closed = device, queue, True
        client.close()
