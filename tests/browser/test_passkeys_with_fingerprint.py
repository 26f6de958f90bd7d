"""Passkeys in headless Chromium (and Firefox) with a key that verifies its user itself: a
``yubikey-bio`` key with a finger enrolled. Headless Chromium cannot type a PIN, and it
refuses a passkey sign-in on a key without user verification; the fingerprint sensor is
what a real YubiKey Bio gives it, so registration and sign-in without a user name both
carry UV, and a finger that is not enrolled ends in Chromium's PIN fallback. The key is
plugged in through umockdev, as for the other browser tests."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin
from test_browser_fixtures import run_in_plain_project
from test_webauthn_in_browsers import ms, ui_steps, wait_for_ui_step

from hwtoken.browser.site import SitePage, WebAuthnSite
from hwtoken.emulator import Finger, fido_device
from hwtoken.testing import enroll_finger

PIN = "4711"
CHROMIUM = pytest.mark.parametrize("hwtoken_browser", ["chromium"], indirect=True)
# real browsers: make test-slow runs them
pytestmark = [pytest.mark.hwtoken_profile("yubikey-bio"), pytest.mark.slow]


@pytest.mark.parametrize("hwtoken_browser", ["chromium", "firefox"], indirect=True)
def test_passkey_with_a_fingerprint(request, virtual_key, hwtoken_browser):
    """A passkey registered and used to sign in with no user name on a site that requires
    user verification; then the same key as a second factor (sign-in by user name) there
    and on a site that only prefers UV: every step verified by the finger, none by the
    PIN. (One passkey only: with two for one site Chromium shows its account chooser.)"""
    enroll_finger(virtual_key, "right-index", pin=PIN)
    virtual_key.presence = Finger("right-index")
    with WebAuthnSite(user_verification="required") as site:
        page = SitePage(hwtoken_browser, site).open()
        registered = ms(request, page.register("hana", passkey=True))
        assert registered["ok"], registered
        hwtoken_browser.fill("#user", "")
        signed_in = ms(request, page.sign_in(None))
        assert signed_in["ok"] and signed_in["user"] == "hana", signed_in
        assert signed_in["userVerified"], signed_in
        [reg] = site.events_of("register")
        [login] = site.events_of("login")
        assert reg.detail["user_verified"] and reg.detail["discoverable"]
        assert login.detail["user_verified"] and login.detail["discoverable"]
        assert login.detail["credential_id"] == reg.detail["credential_id"]
        assert ms(request, page.register("ivo"))["ok"]
        by_name = ms(request, page.sign_in("ivo"))
        assert by_name["ok"] and by_name["userVerified"], by_name
    with WebAuthnSite(user_verification="preferred") as site:
        page = SitePage(hwtoken_browser, site).open()
        assert ms(request, page.register("jan"))["ok"]
        by_name = ms(request, page.sign_in("jan"))
        assert by_name["ok"] and by_name["userVerified"], by_name
        assert [e.detail["user_verified"] for e in site.events_of("register")] == [True]
    if hwtoken_browser.name == "chromium":
        steps = ui_steps(hwtoken_browser)
        assert "kClientPinEntry" not in steps, steps  # the finger, never the PIN
    else:
        assert [p for p in hwtoken_browser.prompts() if p["type"] == "pin-required"] == []


@CHROMIUM
def test_chromium_retries_a_wrong_finger_then_falls_back_to_the_pin(request, virtual_key,
                                                                    hwtoken_browser):
    """A finger that is not enrolled: the key answers UV_INVALID and Chromium asks the user
    to try again (UI step kRetryInternalUserVerification) -- the key has 3 UV retries, the
    third miss blocks UV (UV_BLOCKED) and Chromium falls back to the PIN (kClientPinEntry),
    as with a real YubiKey Bio. Headless, nobody types it; the PIN given another way
    restores the retries and the right finger signs in again."""
    enroll_finger(virtual_key, "right-index", pin=PIN)
    with WebAuthnSite(user_verification="required") as site:
        page = SitePage(hwtoken_browser, site).open()
        assert ms(request, page.register("hana", passkey=True))["ok"]
        virtual_key.presence = Finger("left-thumb")
        hwtoken_browser.click("#login-passkey")
        steps = wait_for_ui_step(hwtoken_browser, "kClientPinEntry")
        tail = steps[steps.index("kUsbInsertAndActivate", 1):]
        assert tail == ["kUsbInsertAndActivate", "kRetryInternalUserVerification",
                        "kRetryInternalUserVerification", "kClientPinEntry"], steps
        log = hwtoken_browser.log()
        assert log.count("kCtap2ErrUvInvalid") == 2 and log.count("kCtap2ErrUvBlocked") == 1
        hwtoken_browser.get("about:blank")  # leaving the page ends the request waiting for the PIN
        assert site.events_of("login") == []

        device = fido_device(virtual_key)
        try:
            assert ClientPin(Ctap2(device)).get_uv_retries() == 0
            ClientPin(Ctap2(device)).get_pin_token(PIN, ClientPin.PERMISSION.GET_ASSERTION,
                                                   "localhost")
            assert ClientPin(Ctap2(device)).get_uv_retries() == 3
        finally:
            device.close()
        virtual_key.presence = Finger("right-index")
        page = SitePage(hwtoken_browser, site).open()
        signed_in = ms(request, page.sign_in(None))
        assert signed_in["ok"] and signed_in["user"] == "hana", signed_in


def test_the_documented_passkey_example_passes_as_pasted(tmp_path):
    """docs/browsers.md's passkey example, verbatim, in a project with no conftest."""
    doc = Path(__file__).resolve().parents[2] / "docs" / "browsers.md"
    [example] = [b for b in re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
                 if "def test_passkey(" in b]
    proc = run_in_plain_project(tmp_path, example)
    assert "1 passed" in proc.stdout, proc.stdout + proc.stderr
