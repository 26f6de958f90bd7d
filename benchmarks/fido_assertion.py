"""getAssertion through fido_device(key) (full CTAPHID path, in process) vs raw ES256 signing.

The baseline is one ECDSA P-256/SHA-256 signature with ``cryptography`` (what a
getAssertion cannot avoid). The headline figure is a getAssertion request (CTAP2 CBOR,
built once) sent with ``fido_device(key).call(CTAPHID.CBOR, ...)``: python-fido2's HID
framing, the key's CTAPHID engine, CBOR decoding, credential-ID unwrapping, the signature
counter, signing and the CBOR response, on a non-resident ES256 credential; the response
is checked. Also shown: the same through ``fido2.ctap2.Ctap2.get_assertion``, which adds
fido2's own response parsing (client-side cost, not the key's), and makeCredential.
All in the same run, alternating, so the ratios hold on a noisy machine.
Goal: >= 20% of raw signing.

The USB/IP loopback figure (owned by the "usbip" transport) goes in :func:`usbip_loopback`.
:func:`umockdev_local` measures the same ``Ctap2.get_assertion`` in a program that finds the
key through python-fido2's own Linux backend (/dev/hidraw under ``hwtoken emulate run``'s
umockdev testbed), as a ratio to the in-process CTAPHID path. Goal: at most 3x slower.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from fido2.ctap2 import Ctap2
from fido2.hid import CTAPHID

from hwtoken.emulator import VirtualKey, fido_device

GOAL = 0.20
UMOCKDEV_GOAL = 3.0  # the local USB device path may be at most this many times slower
RP = {"id": "example.com", "name": "Example"}
USER = {"id": b"bench-user", "name": "bench"}
PARAMS = [{"type": "public-key", "alg": -7}]


def best_rate(fn: Callable[[], object], seconds: float = 0.4, repeat: int = 5) -> float:
    """Calls per second: the best of ``repeat`` timed runs of about ``seconds`` each."""
    fn()  # warm up caches
    n = 1
    while True:  # calibrate
        t = time.perf_counter()
        for _ in range(n):
            fn()
        dt = time.perf_counter() - t
        if dt > seconds / 4:
            break
        n *= 2
    n = max(1, int(n * seconds / max(dt, 1e-9)))
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def usbip_loopback(key: VirtualKey) -> tuple[str, float]:
    """(label, getAssertions per second over USB/IP loopback) for the same key.

    The key is served on a free 127.0.0.1 port and fido2 imports it with the usbip
    package's host side: every 64-byte report is a USB/IP URB over TCP.
    """
    from hwtoken.emulator.serve import served
    from hwtoken.emulator.transports.usbip_fido import open_usbip_fido

    with served(key) as srv:
        device = open_usbip_fido(*srv.address)
        try:
            ctap2 = Ctap2(device)
            cdh = os.urandom(32)
            cred = ctap2.make_credential(cdh, RP, USER, PARAMS).auth_data.credential_data
            allow = [{"type": "public-key", "id": cred.credential_id}]
            rate = best_rate(lambda: ctap2.get_assertion("example.com", cdh, allow),
                             seconds=0.3, repeat=3)
        finally:
            device.close()
    return "getAssertion over USB/IP loopback", rate


def umockdev_local(key: VirtualKey) -> float:
    """getAssertions per second in a separate program using python-fido2's Linux backend
    (``fido2.hid.linux``: /dev/hidraw, ioctls, blocking reads) on the key plugged in through
    the umockdev testbed, every report crossing umockdev's preload socket."""

    from hwtoken.emulator.transports.umockdev import Testbed

    with Testbed() as tb:
        tb.plug(key)
        proc = tb.run([sys.executable, __file__, "--umockdev-client"], capture_output=True,
                      text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"the umockdev client failed: {proc.stderr}")
    return float(proc.stdout.split()[-1])


def _umockdev_client() -> int:
    """Runs inside the testbed (see :func:`umockdev_local`); prints its rate."""
    from fido2.hid import CtapHidDevice

    device = next(iter(CtapHidDevice.list_devices()))
    ctap2 = Ctap2(device)
    cdh = os.urandom(32)
    cred = ctap2.make_credential(cdh, RP, USER, PARAMS).auth_data.credential_data
    allow = [{"type": "public-key", "id": cred.credential_id}]
    rate = max(best_rate(lambda: ctap2.get_assertion("example.com", cdh, allow),
                         seconds=0.3, repeat=3) for _ in range(3))
    print(f"rate {rate:.1f}")
    return 0


def main() -> int:
    if sys.argv[1:] == ["--umockdev-client"]:
        return _umockdev_client()
    with tempfile.TemporaryDirectory() as tmp:
        key = VirtualKey.create(Path(tmp) / "bench.key")
        try:
            return run(key)
        finally:
            key.close()


def run(key: VirtualKey) -> int:
    device = fido_device(key)
    ctap2 = Ctap2(device)
    cdh = os.urandom(32)
    cred = ctap2.make_credential(cdh, RP, USER, PARAMS).auth_data.credential_data
    allow = [{"type": "public-key", "id": cred.credential_id}]
    request = bytes([Ctap2.CMD.GET_ASSERTION]) + cbor.encode(
        {1: "example.com", 2: cdh, 3: allow})

    raw_key = ec.generate_private_key(ec.SECP256R1())
    message = os.urandom(37) + cdh
    algorithm = ec.ECDSA(hashes.SHA256())

    def raw_sign() -> None:
        raw_key.sign(message, algorithm)

    def get_assertion() -> None:
        response = device.call(CTAPHID.CBOR, request)
        if response[0] != 0:
            raise RuntimeError(f"getAssertion failed: status {response[0]:#x}")

    def get_assertion_fido2() -> None:
        ctap2.get_assertion("example.com", cdh, allow)

    def make_credential() -> None:
        ctap2.make_credential(cdh, RP, USER, PARAMS)

    raw_rates, ga_rates, gf_rates, mc_rates = [], [], [], []
    for _ in range(3):  # alternate so background load hits all alike
        raw_rates.append(best_rate(raw_sign))
        ga_rates.append(best_rate(get_assertion))
        gf_rates.append(best_rate(get_assertion_fido2, seconds=0.3, repeat=3))
        mc_rates.append(best_rate(make_credential, seconds=0.3, repeat=3))
    raw, ga, gf, mc = max(raw_rates), max(ga_rates), max(gf_rates), max(mc_rates)
    ratio = ga / raw
    print(f"{'raw ES256 sign (cryptography)':44s}{raw:9.0f} /s")
    print(f"{'getAssertion, fido_device(key).call(CBOR)':44s}{ga:9.0f} /s = {ratio:6.1%}"
          f" of raw signing (goal >= {GOAL:.0%})")
    print(f"{'getAssertion, Ctap2.get_assertion (+parse)':44s}{gf:9.0f} /s = {gf / raw:6.1%}")
    print(f"{'makeCredential, Ctap2.make_credential':44s}{mc:9.0f} /s = {mc / raw:6.1%}")
    label, rate = usbip_loopback(key)
    print(f"{label:44s}{rate:9.0f} /s = {rate / raw:6.1%}")
    gf_again, local_rates = [], []
    for _ in range(3):  # alternate in-process and local, like the rows above
        gf_again.append(best_rate(get_assertion_fido2, seconds=0.3, repeat=3))
        local_rates.append(umockdev_local(key))
    device.close()
    local = max(local_rates)
    slower = max(gf, *gf_again) / local
    print(f"{'getAssertion, fido2 Linux backend, umockdev':44s}{local:9.0f} /s = "
          f"{slower:4.1f}x slower than in process (goal <= {UMOCKDEV_GOAL:.0f}x)")
    if ratio < GOAL:
        print("FAIL: below the goal")
        return 1
    if slower > UMOCKDEV_GOAL:
        print("FAIL: the local USB device path is too slow")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
