"""The CCID interface of the USB device model (emulator/usb.py): bulk transfers in, answers
out in order, time extensions while the card works, "slot busy", bus resets -- driven by
URBs on the model itself, as every USB transport drives it."""

from __future__ import annotations

import struct
import threading

import pytest
from usbip import core as usb_core

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.presence import AskCallback
from hwtoken.emulator.usb import CCID_EP_IN, CCID_EP_NOTIFY, CCID_EP_OUT, YubiKeyUsb

SELECT_OATH = bytes.fromhex("00a4040007a0000005272101")


def msg(kind: int, data: bytes = b"", *, seq: int = 0, b7: int = 0) -> bytes:
    return struct.pack("<BIBBBBB", kind, len(data), 0, seq, b7, 0, 0) + data


class Host:
    """A host's side of one USB session: bulk OUT writes, IN URBs that wait for data."""

    def __init__(self, session) -> None:
        self.dev = session.device
        self.seq = 0

    def write(self, data: bytes, ep: int = CCID_EP_OUT) -> None:
        self.seq += 1
        urb = usb_core.Urb(direction=usb_core.OUT, ep=ep & 0x0F, length=len(data),
                           buffer=bytes(data), seqnum=self.seq)
        result = self.dev.handle_urb(urb)
        assert result is not None and result.status == 0

    def read(self, ep: int = CCID_EP_IN, length: int = 3072, timeout: float = 10) -> bytes:
        self.seq += 1
        done, box = threading.Event(), []
        urb = usb_core.Urb(direction=usb_core.IN, ep=ep & 0x0F, length=length, buffer=b"",
                           seqnum=self.seq)
        result = self.dev.handle_urb(urb, respond=lambda u: (box.append(u), done.set()))
        if result is None:
            assert done.wait(timeout), "no answer on the IN endpoint"
            result = box[0]
        return bytes(result.buffer[:result.actual])


@pytest.fixture
def key(tmp_path):
    with VirtualKey.create(tmp_path / "k.key", serial=5550123) as k:
        yield k


@pytest.fixture
def host(key):
    usb = YubiKeyUsb(key)
    usb.start()
    session = usb.open_session()
    try:
        yield Host(session)
    finally:
        usb.stop()


def _touch_credential(key, name: bytes) -> None:
    from yubikit.oath import CredentialData, OathSession

    from hwtoken.emulator.iso7816 import CardOS
    from hwtoken.emulator.transports.card_direct import DirectCardConnection

    OathSession(DirectCardConnection(CardOS(key))).put_credential(
        CredentialData.parse_uri(f"otpauth://totp/{name.decode()}?secret=JBSWY3DPEHPK3PXP"),
        touch_required=True)


def _calculate(name: bytes) -> bytes:
    body = b"\x71" + bytes([len(name)]) + name + b"\x74\x08" + bytes(8)
    return b"\x00\xa2\x00\x01" + bytes([len(body)]) + body


def test_the_slot_change_waits_on_the_interrupt_endpoint(host):
    assert host.read(CCID_EP_NOTIFY, 8) == b"\x50\x03"


def test_answers_come_in_order_with_their_seq(host):
    host.write(msg(0x62, seq=1))
    assert host.read()[:7] == bytes([0x80, 23, 0, 0, 0, 0, 1])  # DataBlock, ATR, bSeq 1
    host.write(msg(0x6F, SELECT_OATH, seq=2))
    answer = host.read()
    assert answer[6] == 2 and answer[-2:] == b"\x90\x00"


def test_a_long_command_gets_time_extensions_then_its_answer(host, key):
    name = b"touch-me"
    _touch_credential(key, name)
    touched, asked = threading.Event(), threading.Event()

    def touch(reason: str) -> bool:
        asked.set()
        return touched.wait(30)

    key.presence = AskCallback(touch)
    host.write(msg(0x62, seq=1))
    host.read()
    host.write(msg(0x6F, SELECT_OATH, seq=2))
    host.read()
    host.write(msg(0x6F, _calculate(name), seq=3))
    assert asked.wait(10)
    extension = host.read()  # the key asks for more time while it waits for the touch
    assert (extension[0], extension[6], extension[7], extension[8]) == (0x80, 3, 0x80, 1)
    host.write(msg(0x65, seq=4))  # the host does not wait: the slot is busy
    busy = host.read()
    assert (busy[0], busy[6], busy[7], busy[8]) == (0x81, 4, 0x40, 0xE0)
    touched.set()
    while True:
        answer = host.read()
        assert answer[6] == 3
        if answer[7] & 0xC0 != 0x80:  # not (another) time extension
            break
    assert answer[7] == 0 and answer[-2:] == b"\x90\x00"
    assert answer[10] == 0x76  # a truncated response TLV: the code


def test_a_bus_reset_drops_the_pending_answer_and_powers_the_card_off(host, key):
    name = b"reset-me"
    _touch_credential(key, name)
    touched, asked = threading.Event(), threading.Event()
    key.presence = AskCallback(lambda reason: (asked.set(), touched.wait(30))[1])
    host.write(msg(0x62, seq=1))
    host.read()
    host.write(msg(0x6F, SELECT_OATH, seq=2))
    host.read()
    host.read(CCID_EP_NOTIFY, 8)
    host.write(msg(0x6F, _calculate(name), seq=3))
    assert asked.wait(10)
    host.dev.reset_io()  # what a USB/IP attach or SET_CONFIGURATION does
    assert host.read(CCID_EP_NOTIFY, 8) == b"\x50\x03"  # the card is announced again
    touched.set()
    host.write(msg(0x65, seq=9))
    status = host.read()
    while status[6] != 9:  # extensions sent after the reset: the host skips stale bSeq
        assert status[6] == 3 and status[7] & 0xC0 == 0x80
        status = host.read()
    assert (status[0], status[7]) == (0x81, 0x01)  # present, powered off by the reset


def test_a_message_split_over_transfers_is_joined(host):
    host.write(msg(0x62, seq=1))
    host.read()
    whole = msg(0x6F, b"\x00\xa4\x04\x00\x7f" + bytes(127), seq=2)  # 142 bytes
    host.write(whole[:64])  # two full packets, then the rest
    host.write(whole[64:128])
    host.write(whole[128:])
    answer = host.read()
    assert answer[6] == 2 and answer[-2:] == b"\x6a\x82"  # no such applet


# -- heavy work off the card thread ------------------------------------------------------------
def hold_the_interpreter_lock_until_released(fifo: str) -> bytes:
    """Block inside one C call that keeps its process's interpreter lock (ctypes.PyDLL),
    as OpenSSL's RSA key check does, until a byte arrives on ``fifo`` (at most 20 s)."""
    import ctypes
    import os
    import select

    class PollFd(ctypes.Structure):
        _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_short),
                    ("revents", ctypes.c_short)]

    fd = os.open(fifo, os.O_RDWR)  # a FIFO opened for both never blocks the open
    try:
        entry = PollFd(fd, select.POLLIN, 0)
        ctypes.PyDLL(None).poll(ctypes.byref(entry), 1, 20_000)
        return b"released" if entry.revents & select.POLLIN else b"timed out"
    finally:
        os.close(fd)


class _HeavyApplet:
    """A card applet whose one command is heavy work handed to the offload worker."""

    aid = bytes.fromhex("f000000001")

    def __init__(self, fifo: str) -> None:
        self.fifo = fifo

    def select(self, apdu) -> bytes:
        return b""

    def process(self, apdu) -> bytes:
        from hwtoken.emulator import offload

        return offload.run(hold_the_interpreter_lock_until_released, self.fifo)


def test_time_extensions_flow_while_heavy_work_holds_an_interpreter_lock(key, tmp_path,
                                                                         monkeypatch):
    """Work that keeps Python's lock for long (RSA-4096's key check: 0.3 s, seconds under
    load) runs in the offload worker: the CCID thread keeps sending time extensions. Here
    the work holds its lock until the host has seen two extensions -- in this process it
    would have stopped them all."""
    import os

    fifo = str(tmp_path / "release")
    os.mkfifo(fifo)
    monkeypatch.setattr(key, "card_applets", lambda transport="nfc": [_HeavyApplet(fifo)])
    usb = YubiKeyUsb(key)
    usb.start()
    try:
        host = Host(usb.open_session())
        host.write(msg(0x62, seq=1))
        host.read()
        host.write(msg(0x6F, bytes.fromhex("00a4040005f000000001"), seq=2))
        assert host.read()[-2:] == b"\x90\x00"
        host.write(msg(0x6F, bytes.fromhex("00010000"), seq=3))
        for _ in range(2):
            extension = host.read(timeout=30)
            assert (extension[0], extension[6], extension[7]) == (0x80, 3, 0x80), extension
        with open(fifo, "wb") as release:  # waits for the worker to hold the FIFO open
            release.write(b"!")
        answer = host.read(timeout=30)
        while answer[7] & 0xC0 == 0x80:  # extensions sent before the release landed
            answer = host.read(timeout=30)
        assert answer[6] == 3 and answer[10:] == b"released\x90\x00"
    finally:
        usb.stop()
