"""A raw hidraw client run under the testbed by test_hidraw_semantics.py.

It uses only os/fcntl/select, so each way a program may read a hidraw node is exercised
directly: ``poll`` then ``read``; a blocking ``read`` before the request is written;
``O_NONBLOCK`` with EAGAIN; a reader thread blocked in ``read`` while another thread
writes; a short read buffer. Prints one JSON object.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import struct
import sys
import threading

HIDIOCGRAWINFO = 0x80084803
HIDIOCGRDESCSIZE = 0x80044801
HIDIOCGRDESC = 0x90044802
BROADCAST = b"\xff\xff\xff\xff"


def init_packet(nonce: bytes) -> bytes:
    return b"\0" + BROADCAST + bytes([0x86, 0, 8]) + nonce + bytes(64 - 7 - 8)


def ping_packet(cid: bytes, data: bytes) -> bytes:
    return b"\0" + cid + bytes([0x81, 0, len(data)]) + data + bytes(64 - 7 - len(data))


def info(fd: int) -> dict:
    raw = fcntl.ioctl(fd, HIDIOCGRAWINFO, bytes(8))
    bus, vid, pid = struct.unpack("Ihh", raw)
    size = struct.unpack("i", fcntl.ioctl(fd, HIDIOCGRDESCSIZE, bytes(4)))[0]
    buf = bytearray(struct.pack("I", size) + bytes(4096))
    fcntl.ioctl(fd, HIDIOCGRDESC, buf, True)
    desc = bytes(buf[4:4 + size])
    return {"bus": bus, "vid": vid & 0xFFFF, "pid": pid & 0xFFFF, "rdesc": desc.hex()}


def main() -> None:
    mode, path = sys.argv[1], sys.argv[2]
    out: dict = {"mode": mode}
    if mode == "nonblocking":
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK)
        try:
            os.read(fd, 64)
            out["empty"] = "data"
        except BlockingIOError:
            out["empty"] = "EAGAIN"
        os.write(fd, init_packet(b"12345678"))
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        out["poll"] = bool(poller.poll(5000))
        out["reply"] = os.read(fd, 64).hex()
        try:
            os.read(fd, 64)
            out["after"] = "data"
        except BlockingIOError:
            out["after"] = "EAGAIN"
        out["poll_after"] = bool(poller.poll(50))
    elif mode == "blocking-first":
        fd = os.open(path, os.O_RDWR)
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(os.read(fd, 64)))
        reader.start()  # blocked in read() before anything was written
        os.write(fd, init_packet(b"abcdefgh"))
        reader.join(10)
        out["reply"] = got[0].hex() if got else None
    elif mode == "threads":
        # one thread reads all the time, another writes requests: the way some HID
        # libraries work; umockdev's per-file lock must not be held by the blocked reader
        fd = os.open(path, os.O_RDWR)
        os.write(fd, init_packet(b"threads!"))
        cid = os.read(fd, 64)[15:19]
        replies: list[bytes] = []
        done = threading.Event()

        def reader() -> None:
            while len(replies) < 20:
                replies.append(os.read(fd, 64))
            done.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        for i in range(20):
            os.write(fd, ping_packet(cid, f"ping {i:02d}".encode()))
            if not done.wait(0.001) and i == 19:
                pass
        out["finished"] = done.wait(20)
        out["pings"] = sorted(r[7:14].decode(errors="replace") for r in replies)
    elif mode == "short":
        fd = os.open(path, os.O_RDWR)
        os.write(fd, init_packet(b"shortbuf"))
        first = os.read(fd, 8)  # the rest of this report is lost, as on hidraw
        os.write(fd, init_packet(b"secondrq"))
        second = os.read(fd, 64)
        out["first"], out["second"] = first.hex(), second.hex()
    elif mode == "info":
        fd = os.open(path, os.O_RDWR)
        out.update(info(fd))
        try:
            fcntl.ioctl(fd, 0x5401, bytes(64))  # TCGETS: hidraw is not a terminal
            out["tcgets"] = "ok"
        except OSError as exc:
            out["tcgets"] = errno.errorcode[exc.errno]
        out["isatty"] = os.isatty(fd)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
