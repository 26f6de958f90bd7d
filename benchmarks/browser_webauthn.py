"""WebAuthn create/get in headless Chromium and Firefox vs python-fido2, same key, same node.

One virtual key is plugged in through umockdev. The baseline is python-fido2's own Linux
backend (``fido2.hid``: /dev/hidrawN, blocking reads) in a process started in the testbed,
timing ``Fido2Client.make_credential`` and ``get_assertion``: the CTAP work plus the
transport, with no browser around it. The browsers run the reference page; its own
``performance.now()`` around ``navigator.credentials.create``/``get`` is the figure
(device discovery, the browser's request handling and UI model, CTAPHID, the key).
Medians of N calls each, all in the same run; ratios are browser / baseline.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from hwtoken.browser import BROWSERS, BrowserUnavailable, find_browser, start_browser
from hwtoken.browser.site import SitePage, WebAuthnSite
from hwtoken.emulator import VirtualKey
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


if __name__ == "__main__":
    main()
