"""WebAuthn end to end in real, unmodified headless browsers (Debian's Chromium and Firefox
ESR) against virtual keys plugged in through umockdev, with the reference site's
``Fido2Server`` verifying every registration and assertion.

The browser finds the key as ``/dev/hidrawN`` the way it finds a hardware key; a click is a
WebDriver click (user activation). Times of ``navigator.credentials.create``/``get`` as the
page measured them are attached to each test (``user_properties``: ``ms:<action>``).
"""

from __future__ import annotations

import os
import time

import pytest
from browser_versions import ALL_PARAMS, FIREFOX_PARAMS, major_version
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin

from hwtoken.browser.site import SitePage, WebAuthnSite
from hwtoken.emulator import ApproveAfterDelay, ApproveAlways, DenyAlways, VirtualKey, fido_device

pytestmark = pytest.mark.slow  # two real browsers, ~45 s: `make test-slow` (and CI)

PIN = "4711"
NOT_TOUCHED = 30.0  # seconds: a key with this delay is one the user never touches here


def ms(request, result):
    """Attach the page's timing of the WebAuthn call to the test's report."""
    request.node.user_properties.append((f"ms:{result['action']}", round(result["ms"], 1)))
    return result


def holds_credential(key: VirtualKey, credential_id_hex: str) -> bool:
    """Whether ``key`` can sign with that credential (a silent CTAP2 pre-flight)."""
    device = fido_device(key)
    try:
        allow = [{"type": "public-key", "id": bytes.fromhex(credential_id_hex)}]
        Ctap2(device).get_assertion("localhost", os.urandom(32), allow, options={"up": False})
        return True
    except CtapError as exc:
        if exc.code == CtapError.ERR.NO_CREDENTIALS:
            return False
        raise
    finally:
        device.close()


def set_pin(key: VirtualKey, pin: str = PIN) -> None:
    device = fido_device(key)
    try:
        ClientPin(Ctap2(device)).set_pin(pin)
    finally:
        device.close()


def asks_for_a_key(browser) -> int:
    """How often the browser has asked for a security key so far: Chromium's dialog step
    "insert your key" (from its device log), Firefox's "presence" prompt (recorded once
    ``answer_prompts()`` hooked them)."""
    if browser.name == "firefox":
        return sum(p["type"] == "presence" for p in browser.prompts())
    return ui_steps(browser).count("kUsbInsertAndActivate")


def wait_for_ask(browser, before: int, timeout: float = 20.0) -> None:
    """Wait until the browser asks for a key once more than ``before`` times."""
    deadline = time.monotonic() + timeout
    while asks_for_a_key(browser) <= before:
        assert time.monotonic() < deadline, browser.timed_out(
            f"{browser.name} never asked for a key (asked {before} times before)")
        time.sleep(0.05)


def ui_steps(browser) -> list[str]:
    """Chromium's WebAuthn dialog steps, from its device log."""
    return [line.rsplit("UI step: ", 1)[1].strip() for line in browser.log().splitlines()
            if "UI step: " in line]


@pytest.fixture
def second_key(plugged_key, tmp_path):
    """Another virtual key plugged in next to ``plugged_key`` (before the browser starts)."""
    key = VirtualKey.create(tmp_path / "second.key")
    plugged = plugged_key.testbed.plug(key)
    try:
        yield key
    finally:
        plugged_key.testbed.unplug(plugged)
        key.close()


@pytest.mark.parametrize("hwtoken_browser", ALL_PARAMS, indirect=True)
def test_register_then_sign_in(request, hwtoken_browser, webauthn_site, virtual_key, plugged_key):
    """Register, sign in twice; then the key is pulled out, the sign-in waits for it, and
    plugging it back in (the testbed's hot plug: a udev event) completes it."""
    page = SitePage(hwtoken_browser, webauthn_site).open()
    registered = ms(request, page.register("alice"))
    assert registered["ok"], registered
    signed_in = ms(request, page.sign_in("alice"))
    assert signed_in["ok"], signed_in
    again = ms(request, page.sign_in("alice"))
    assert again["ok"], again
    # the server verified both: attestation, then the assertions' signatures, rising counters
    [reg] = webauthn_site.events_of("register")
    logins = webauthn_site.events_of("login")
    assert reg.ok and [e.ok for e in logins] == [True, True]
    assert {e.detail["credential_id"] for e in logins} == {reg.detail["credential_id"]}
    assert logins[1].detail["sign_count"] > logins[0].detail["sign_count"] > 0
    assert holds_credential(virtual_key, reg.detail["credential_id"])
    assert not reg.detail["user_verified"]  # no PIN on the key, the site discourages UV

    plugged_key.unplug()
    seq = hwtoken_browser.execute("return window.hwtokenSite.seq")
    if hwtoken_browser.name == "firefox":
        hwtoken_browser.answer_prompts()  # only to record them: each still goes to Firefox's UI
    asked = asks_for_a_key(hwtoken_browser)
    hwtoken_browser.click("#login")
    wait_for_ask(hwtoken_browser, asked)  # the user looks for the key while the browser asks
    assert hwtoken_browser.execute(
        "return [window.hwtokenSite.state, window.hwtokenSite.seq]") == \
        ["busy", seq]
    plugged_key.plug()
    inserted = hwtoken_browser.wait_for("const s = window.hwtokenSite;"
                                        "return s.seq > arguments[0] ? s.last : null;", seq,
                                        what="the sign-in to finish once the key is back")
    assert inserted["ok"] and inserted["credentialId"] == reg.detail["credential_id"], inserted
    assert [e.ok for e in webauthn_site.events_of("login")] == [True, True, True]
    # with attestation "none": Chromium and Firefox ESR 140 zero the AAGUID, ESR 153 keeps it
    kept = hwtoken_browser.name == "firefox" and major_version(hwtoken_browser) >= 153
    expected = virtual_key.aaguid if kept else bytes(16)
    assert reg.detail["aaguid"] == str(__import__("uuid").UUID(bytes=expected))


@pytest.mark.parametrize("hwtoken_browser", ALL_PARAMS, indirect=True)
def test_two_keys_plugged_in_the_touched_one_answers(request, virtual_key, second_key,
                                                     hwtoken_browser, webauthn_site):
    """A primary and a backup key on one account, both plugged in; each time the user
    touches one of them (the other would answer only after NOT_TOUCHED seconds).

    Both browsers send the request to both keys and take the key touched first: Chromium
    cancels the other; Firefox first shows its "select-device" prompt (touch the key you
    want: it asks every key for a touch) and drops the key not chosen. Adding the backup
    key while the primary is plugged in works because the primary, finding its credential
    in the exclude list, waits for a touch before it says CREDENTIAL_EXCLUDED."""
    primary, backup = virtual_key, second_key

    def touch(key):
        key.presence = ApproveAlways()
        (backup if key is primary else primary).presence = ApproveAfterDelay(NOT_TOUCHED)

    page = SitePage(hwtoken_browser, webauthn_site).open()
    touch(primary)
    first = ms(request, page.register("alice"))
    touch(backup)
    second = ms(request, page.register("alice"))  # "add a backup key"
    assert first["ok"] and second["ok"], (first, second)
    assert holds_credential(primary, first["credentialId"])
    assert holds_credential(backup, second["credentialId"])
    assert not holds_credential(backup, first["credentialId"])
    for key, expected in ((primary, first), (backup, second), (primary, first)):
        touch(key)
        signed_in = ms(request, page.sign_in("alice"))
        assert signed_in["ok"] and signed_in["credentialId"] == expected["credentialId"], \
            signed_in
    if hwtoken_browser.name == "firefox":
        kinds = [p["type"] for p in hwtoken_browser.prompts()]
        assert kinds.count("select-device") >= 5, kinds  # at least once per request


PAGE_TIMEOUT = 10  # seconds: the shortest WebAuthn timeout Chromium takes from a page


@pytest.mark.parametrize("hwtoken_browser", ["chromium"], indirect=True)
def test_chromium_denied_touch_shows_its_error_sheet_and_never_rejects(request,
                                                                      hwtoken_browser,
                                                                      virtual_key):
    """The same refusal in headless Chromium: it shows its error sheet (UI step
    kErrorInternalUnrecognized) and rejects the page's call only when someone closes the
    sheet, which nobody does headless. The page asks for a 10 s timeout; Chromium runs the
    request with 180 s (its log shows the request it sent with "timeout": 180000), and
    when those end it shows a second sheet (kTimedOut) and still does not reject: in a run
    of 700 s the page's promise never settled. Only leaving the page ends it (kClosed).
    This test checks the sheet, the 180 s, and that the call is still pending well after
    the page's own timeout; then it leaves the page."""
    with WebAuthnSite(timeout=PAGE_TIMEOUT) as site:
        page = SitePage(hwtoken_browser, site).open()
        assert page.register("alice")["ok"]
        virtual_key.presence = DenyAlways()
        started = time.monotonic()
        hwtoken_browser.click("#login")
        assert "kErrorInternalUnrecognized" in wait_for_ui_step(hwtoken_browser,
                                                                "kErrorInternalUnrecognized")
        log = hwtoken_browser.log()
        assert "kCtap2ErrOperationDenied" in log
        assert log.count('"timeout": 180000') == 2  # the registration and this sign-in
        time.sleep(max(0.0, started + PAGE_TIMEOUT + 5 - time.monotonic()))
        assert hwtoken_browser.execute("return window.hwtokenSite.state") == "busy"
        assert "kTimedOut" not in ui_steps(hwtoken_browser)
        hwtoken_browser.get("about:blank")  # leaving the page ends the request
        assert wait_for_ui_step(hwtoken_browser, "kClosed")[-1] == "kClosed"
        assert site.events_of("login") == [] and site.events_of("client-error") == []


@pytest.mark.parametrize("hwtoken_browser", FIREFOX_PARAMS, indirect=True)
def test_firefox_passkey_sign_in_then_a_refused_touch(request, hwtoken_browser, webauthn_site,
                                                      virtual_key):
    """A passkey: register, then sign in with no user name (the key says who). Then the
    user refuses the touch (the key answers CTAP2_ERR_OPERATION_DENIED): the page's
    navigator.credentials.get rejects with NotAllowedError at once, nothing reaches the
    server; with the next touch given, sign-in works again."""
    page = SitePage(hwtoken_browser, webauthn_site).open()
    registered = ms(request, page.register("bob", passkey=True))
    assert registered["ok"], registered
    page.browser.fill("#user", "")
    signed_in = ms(request, page.sign_in(None))
    assert signed_in["ok"] and signed_in["user"] == "bob", signed_in
    [event] = webauthn_site.events_of("login")
    assert event.detail["discoverable"] and event.detail["credential_id"] == \
        registered["credentialId"]
    residents = virtual_key.store.section("fido").get("resident") or []
    assert len(residents) == 1

    virtual_key.presence = DenyAlways()
    denied = ms(request, page.sign_in(None))
    assert not denied["ok"] and denied["error"]["name"] == "NotAllowedError", denied
    # the page reports the error to the server after the call has returned, unawaited
    [refused] = webauthn_site.wait_for_events("client-error")
    assert refused.detail["name"] == "NotAllowedError"
    assert len(webauthn_site.events_of("login")) == 1
    virtual_key.presence = ApproveAlways()
    assert page.sign_in("bob")["ok"]


@pytest.fixture
def key_with_pin(virtual_key):
    """``virtual_key`` with a PIN (set before the browser starts)."""
    set_pin(virtual_key)
    return virtual_key


@pytest.mark.parametrize("hwtoken_browser", FIREFOX_PARAMS, indirect=True)
def test_firefox_pin_prompts_answered_through_marionette(request, key_with_pin, hwtoken_browser):
    """A key with a PIN and a site that requires user verification: Firefox asks for the
    PIN on every request, the test answers through Marionette, and registration, sign-in,
    passkey registration and passkey sign-in all carry UV."""
    hwtoken_browser.answer_prompts(pin=PIN)
    with WebAuthnSite(user_verification="required") as site:
        page = SitePage(hwtoken_browser, site).open()
        for step in (lambda: page.register("carol"), lambda: page.sign_in("carol"),
                     lambda: page.register("dora", passkey=True), lambda: page.sign_in(None)):
            result = ms(request, step())
            assert result["ok"], result
        pin_prompts = [p for p in hwtoken_browser.prompts() if p["type"] == "pin-required"]
        assert [p["answered"] for p in pin_prompts] == ["pin"] * 4
        verified = [e for e in site.events if e.kind in ("register", "login")]
        assert len(verified) == 4 and all(e.ok and e.detail["user_verified"] for e in verified)


@pytest.mark.parametrize("hwtoken_browser", ["chromium"], indirect=True)
def test_chromium_pin_flows_and_passkeys(request, key_with_pin, hwtoken_browser, webauthn_site):
    """Chromium and a key with a PIN, the site discouraging UV: registering and signing in
    with a non-discoverable credential need no PIN (the key has makeCredUvNotRqd). A passkey
    sign-in makes Chromium ask for the PIN (UI step kClientPinEntry; without a PIN on the
    key it refuses the key instead), and headless Chromium has no way to type it: the
    request waits until the page goes away. (Making a passkey asks for the PIN too, so this
    one is made with python-fido2.)"""
    device = fido_device(key_with_pin)
    try:
        passkey = webauthn_site.register_with_fido2(device, "erin", discoverable=True, pin=PIN)
    finally:
        device.close()
    page = SitePage(hwtoken_browser, webauthn_site).open()
    for step in (lambda: page.register("frank"), lambda: page.sign_in("frank")):
        result = ms(request, step())
        assert result["ok"] and not result.get("userVerified"), result
    hwtoken_browser.click("#login-passkey")
    hwtoken_browser.wait_for(
        "return window.hwtokenSite.state === 'busy'", what="the passkey sign-in to start")
    assert "kClientPinEntry" in wait_for_ui_step(hwtoken_browser, "kClientPinEntry")
    assert hwtoken_browser.execute("return window.hwtokenSite.state") == "busy"
    hwtoken_browser.get("about:blank")  # leaving the page ends the pending request
    assert [e.user for e in webauthn_site.events_of("login")] == ["frank"]
    assert passkey["credentialId"]


def wait_for_ui_step(browser, step: str, timeout: float = 20.0) -> list[str]:
    """Chromium's dialog steps once ``step`` is among them (or after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while step not in (steps := ui_steps(browser)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return steps


def test_sign_up_with_fallbacks_in_chromium(request, hwtoken_browser, webauthn_site):
    """The whole enrolment story in the page: a security key, then an authenticator app
    (TOTP) and a paper key; sign in with each; codes and the paper key work once."""
    from hwtoken import otp

    page = SitePage(hwtoken_browser, webauthn_site).open()
    assert ms(request, page.register("grace"))["ok"]
    enrolled = page.set_up_totp("grace")
    assert enrolled["ok"] and enrolled["uri"].startswith("otpauth://totp/")
    assert hwtoken_browser.execute("return document.querySelector('#totp-qr svg') !== null")
    totp = otp.parse_uri(enrolled["uri"]).generator()
    import time

    now = time.time()
    confirmed = page.confirm_totp(totp.at(now))
    assert confirmed["ok"], confirmed
    paper_key = confirmed["paperKey"]
    assert hwtoken_browser.text("#paper-key") == paper_key
    # the code that confirmed the app is used up; the next step's code (within the window)
    # signs in once
    assert not page.sign_in_with_code("grace", totp.at(now))["ok"]
    assert page.sign_in_with_code("grace", totp.at(now + 30))["ok"]
    assert not page.sign_in_with_code("grace", totp.at(now + 30))["ok"]
    # the paper key, typed the way people do, signs in exactly once
    typed = paper_key.lower().replace("-", " ")
    assert page.sign_in_with_paper_key("grace", typed)["ok"]
    again = page.sign_in_with_paper_key("grace", typed)
    assert not again["ok"] and "used" in again["error"]["message"]
    assert ms(request, page.sign_in("grace"))["ok"]  # the key still works
    kinds = [(e.kind, e.ok) for e in webauthn_site.events]
    assert kinds == [("register", True), ("totp-confirm", True), ("login-totp", False),
                     ("login-totp", True), ("login-totp", False), ("login-paperkey", True),
                     ("login-paperkey", False), ("login", True)]
