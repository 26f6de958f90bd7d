"""WebAuthn create/get in headless Chromium and Firefox vs python-fido2, same key, same node.

One virtual key is plugged in through umockdev. The baseline is python-fido2's own Linux
backend (``fido2.hid``: /dev/hidrawN, blocking reads) in a process started in the testbed,
timing ``Fido2Client.make_credential`` and ``get_assertion``: the CTAP work plus the
transport, with no browser around it. The browsers run the reference page; its own
``performance.now()`` around ``navigator.credentials.create``/``get`` is the figure
(device discovery, the browser's request handling and UI model, CTAPHID, the key).
Medians of N calls each, all in the same run; ratios are browser / baseline.

Then where Firefox's ~100 ms go: the same sign-in with the key taking its time to be
touched (``ApproveAfterDelay``). Chromium's time grows with the delay; Firefox's jumps in
steps of 100 ms. Firefox hands a result to the page only after its WebAuthn service
cancelled the finished transaction (``WebAuthnTransactionParent::CompleteTransaction``
calls ``Cancel`` before resolving, "to work around Bug 1864526"), and that cancel joins
authenticator-rs's udev monitor thread, which only looks up when its ``poll()`` on the udev
socket times out (``POLL_TIMEOUT = 100`` ms in ``src/transport/linux/monitor.rs``). No
udev event comes during a request, with a hardware key as with this one, so every result
waits for the next 100 ms tick of that poll: the time is Firefox's own.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from hwtoken.browser import BROWSERS, BrowserUnavailable, find_browser, start_browser
from hwtoken.browser.site import SitePage, WebAuthnSite
from hwtoken.emulator import ApproveAfterDelay, ApproveAlways, VirtualKey
from hwtoken.emulator.transports.umockdev import plugged_in

N = 8

BASELINE = r"""
import json, sys, time
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.hid import CtapHidDevice
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

n = int(sys.argv[1])
[device] = list(CtapHidDevice.list_devices())
server = Fido2Server(PublicKeyCredentialRpEntity(name="bench", id="localhost"))
client = Fido2Client(device, client_data_collector=DefaultClientDataCollector(
    "http://localhost:8000"))
creates, gets, creds = [], [], []
for i in range(n):
    user = PublicKeyCredentialUserEntity(name=f"u{i}", id=f"u{i}".encode(), display_name="u")
    options, state = server.register_begin(user, user_verification="discouraged")
    t = time.perf_counter()
    response = client.make_credential(options.public_key)
    creates.append((time.perf_counter() - t) * 1000)
    creds.append(server.register_complete(state, response).credential_data)
for i in range(n):
    options, state = server.authenticate_begin([creds[i]], user_verification="discouraged")
    t = time.perf_counter()
    selection = client.get_assertion(options.public_key)
    gets.append((time.perf_counter() - t) * 1000)
    server.authenticate_complete(state, creds, selection.get_response(0))
print(json.dumps({"create": creates, "get": gets}))
"""


def baseline(testbed) -> dict[str, float]:
    proc = testbed.run([sys.executable, "-c", BASELINE, str(N)], capture_output=True,
                       text=True, timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"baseline failed:\n{proc.stderr}")
    times = json.loads(proc.stdout)
    return {k: statistics.median(v) for k, v in times.items()}


def in_browser(name: str, testbed) -> dict[str, float]:
    creates, gets = [], []
    with WebAuthnSite() as site, start_browser(name, testbed, device_log=False) as browser:
        page = SitePage(browser, site).open()
        for i in range(N):
            result = page.register(f"user{i}")
            assert result["ok"], result
            creates.append(result["ms"])
        for i in range(N):
            result = page.sign_in(f"user{i}")
            assert result["ok"], result
            gets.append(result["ms"])
    return {"create": statistics.median(creates), "get": statistics.median(gets)}


TOUCH_DELAYS = (0.0, 0.06, 0.12, 0.2)  # seconds the user takes to touch the key
QUANTUM_N = 3


def touch_delays(name: str, key: VirtualKey, testbed) -> dict[float, float]:
    """Median sign-in time (ms) for each of :data:`TOUCH_DELAYS`."""
    out = {}
    with WebAuthnSite() as site, start_browser(name, testbed, device_log=False) as browser:
        page = SitePage(browser, site).open()
        assert page.register("delays")["ok"]
        try:
            for delay in TOUCH_DELAYS:
                key.presence = ApproveAfterDelay(delay) if delay else ApproveAlways()
                times = []
                for _ in range(QUANTUM_N):
                    result = page.sign_in("delays")
                    assert result["ok"], result
                    times.append(result["ms"])
                out[delay] = statistics.median(times)
        finally:
            key.presence = ApproveAlways()
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, \
            VirtualKey.create(Path(tmp) / "bench.key") as key, plugged_in(key) as testbed:
        base = baseline(testbed)
        print(f"python-fido2 over /dev/hidraw (baseline): create {base['create']:.1f} ms, "
              f"get {base['get']:.1f} ms (median of {N})")
        for name in BROWSERS:
            try:
                find_browser(name)
            except BrowserUnavailable as exc:
                print(f"{name}: not measured ({exc})")
                continue
            t = in_browser(name, testbed)
            print(f"{name:9} create {t['create']:6.1f} ms = {t['create'] / base['create']:4.1f}x"
                  f"   get {t['get']:6.1f} ms = {t['get'] / base['get']:4.1f}x baseline")
        print(f"sign-in with the touch delayed (median of {QUANTUM_N}; Firefox steps by its "
              "100 ms udev-monitor poll):")
        for name in BROWSERS:
            try:
                find_browser(name)
            except BrowserUnavailable:
                continue
            delays = touch_delays(name, key, testbed)
            print(f"{name:9} " + "   ".join(f"touch +{d * 1000:3.0f} ms: {ms:6.1f} ms"
                                            for d, ms in delays.items()))


if __name__ == "__main__":
    main()
