"""Mean APDU round trip through pcscd + vpcd vs the in-process card OS.

A private pcscd (vpcd driver) is started, a virtual key is inserted as a card through
:class:`~hwtoken.emulator.transports.vpcd.VpcdLink`, and pyscard sends SELECT (OATH)
APDUs to it; the baseline is the same APDU handed to ``CardOS.transmit`` directly,
measured in the same run. Before the vpcd socket set TCP_NODELAY / TCP_QUICKACK, every
round trip waited for a delayed ACK (~40 ms, a ratio near 10,000x). Goal: <= 50x.

A second row (informational, no goal): the same APDU through pcscd's own CCID driver to
the key's USB CCID interface in a umockdev testbed (libccid -> libusb -> usbfs URBs, each
ioctl a round trip to the testbed), measured by pyscard in a child process (libpcsclite
reads its socket's name once per process).

Needs root (the private pcscd runs in its own mount namespace), like ``make test``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwtoken.emulator.iso7816 import CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.pcscd import READER_0, Pcscd, UsbPcscd, wait_for_card
from hwtoken.emulator.transports.vpcd import VpcdLink

N = int(os.environ.get("HWTOKEN_BENCH_APDUS", "300"))
SELECT_OATH = bytes.fromhex("00a4040007a0000005272101")
GOAL = 50.0


def in_process_ms(key: VirtualKey, n: int) -> float:
    """Best-of-5 mean of ``CardOS.transmit`` for one SELECT, in ms."""
    card = CardOS(key)
    card.power_on()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            card.transmit(SELECT_OATH)
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1000


def pcscd_ms(n: int, name: str = READER_0) -> float:
    """Best-of-3 mean round trip of one SELECT through pyscard -> pcscd -> reader ``name``
    (vpcd's by default), in ms."""
    from smartcard.System import readers

    (reader,) = [r for r in readers() if r.name == name]
    conn = reader.createConnection()
    conn.connect()
    try:
        for _ in range(10):  # warm up
            conn.transmit(list(SELECT_OATH))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(n):
                _, sw1, sw2 = conn.transmit(list(SELECT_OATH))
                if (sw1, sw2) != (0x90, 0x00):
                    raise SystemExit(f"SELECT answered {sw1:02X}{sw2:02X}")
            best = min(best, (time.perf_counter() - start) / n)
        return best * 1000
    finally:
        conn.disconnect()


def ccid_ms(n: int) -> float:
    """The same through pcscd's CCID driver to a key plugged into a umockdev testbed."""
    from hwtoken.emulator.transports.umockdev import Testbed

    with tempfile.TemporaryDirectory(prefix="hwtoken-bench-ccid-") as tmp, \
            VirtualKey.create(Path(tmp) / "ccid.key", serial=4343) as key, \
            Testbed(tmpdir=tmp) as testbed:
        testbed.plug(key)
        daemon = UsbPcscd(testbed).start()
        try:
            daemon.wait_for_readers(lambda names: daemon.reader in names)
            child = subprocess.run([sys.executable, __file__, "--measure", daemon.reader,
                                    str(n)], env=daemon.client_env(), capture_output=True,
                                   text=True, timeout=600)
            if child.returncode != 0:
                raise SystemExit(f"the CCID measurement failed: {child.stderr[-800:]}")
            return float(child.stdout.split()[-1])
        finally:
            daemon.stop()


def main() -> int:
    if sys.argv[1:2] == ["--measure"]:  # the child of ccid_ms
        print(pcscd_ms(int(sys.argv[3]), sys.argv[2]))
        return 0
    with tempfile.TemporaryDirectory(prefix="hwtoken-bench-pcsc-") as tmp:
        key = VirtualKey.create(Path(tmp) / "bench.key", serial=4242)
        daemon = Pcscd().start()
        link = VpcdLink(key, port=daemon.port).start()
        try:
            daemon.export_env()
            if not link.wait_connected(10):
                raise SystemExit(f"pcscd's vpcd driver did not connect: {daemon.log_tail()}")
            wait_for_card(READER_0, timeout=15)
            base = in_process_ms(key, max(N, 1000))
            through = pcscd_ms(N)
        finally:
            link.stop()
            daemon.stop()
            key.close()
    ccid = ccid_ms(N)
    ratio = through / base
    print(f"in-process CardOS.transmit: {base:8.4f} ms per APDU")
    print(f"pyscard -> pcscd -> vpcd:   {through:8.4f} ms per APDU ({N} APDUs)")
    print(f"ratio: {ratio:.0f}x (goal <= {GOAL:.0f}x)")
    print(f"pyscard -> pcscd -> libccid -> usbfs (umockdev): {ccid:8.4f} ms per APDU "
          f"({ccid / base:.0f}x in-process, {ccid / through:.1f}x vpcd; no goal)")
    print("goal met" if ratio <= GOAL else "GOAL NOT MET")
    return 0 if ratio <= GOAL or "--no-fail" in sys.argv else 1


if __name__ == "__main__":
    sys.exit(main())
