"""WebDriver's virtual authenticator against hwtoken's virtual key, both in one test per
browser, so that every row of docs/browsers.md's comparison table is measured here:
attestation (format, certificates, AAGUID, whether an RP can trust it), PIN and user
verification, Firefox, the real HID path, hot plug, a refused touch, and the same key in
OpenSSH.

Chromium's virtual authenticator is Selenium's ``add_virtual_authenticator`` (Chrome
DevTools' ``WebAuthn.enable`` / ``WebAuthn.addVirtualAuthenticator`` underneath);
Firefox's is Marionette's ``WebAuthn:AddVirtualAuthenticator``, what geckodriver exposes.
"""

from __future__ import annotations

import time

import pytest
from browser_versions import FIREFOX_PARAMS
from selenium.webdriver.common.virtual_authenticator import VirtualAuthenticatorOptions

from hwtoken.browser import start_browser
from hwtoken.browser.site import SitePage, WebAuthnSite
from hwtoken.emulator import attestation_root_pem
from hwtoken.fido.trust import TrustedRoots
from hwtoken.testing import require_browser

PIN = "246810"
PAGE_TIMEOUT = 10  # seconds the page asks for (Chromium's minimum)
CHROMIUM_VA_AAGUID = "01020304-0506-0708-0102-030405060708"
FIREFOX_VA_AAGUID = "68e100a5-0b47-9104-b854-97a9ba510638"
USB_KEYS_OFF = {"security.webauth.webauthn_enable_softtoken": True,
                "security.webauth.webauthn_enable_usbtoken": False}


def sites(key):
    """(trusting, open): the same site twice, asking for direct attestation; one trusts
    only the virtual key's exported root (TrustedRoots), the other verifies signatures but
    trusts any attestation."""
    trusting = WebAuthnSite(attestation="direct", user_verification="preferred",
                            timeout=PAGE_TIMEOUT,
                            verify_attestation=TrustedRoots([attestation_root_pem(key)]))
    return trusting, WebAuthnSite(attestation="direct", user_verification="preferred",
                                  timeout=PAGE_TIMEOUT)


def last(site, kind="register"):
    return site.events_of(kind)[-1]


def timed(step):
    start = time.monotonic()
    result = step()
    return result, time.monotonic() - start


def ssh_keygen_on(plugged_key, tmp_path, name):
    """An OpenSSH security key made on the plugged key: the same device, another program."""
    out = tmp_path / name
    proc = plugged_key.run(["ssh-keygen", "-q", "-t", "ecdsa-sk", "-N", "", "-f", str(out)],
                           capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return out.with_suffix(".pub").read_text()


def fido_devices(plugged_key) -> list[str]:
    out = plugged_key.run(["fido2-token", "-L"], capture_output=True, text=True, timeout=60)
    return [ln for ln in out.stdout.splitlines() if ln.strip()]


@pytest.mark.slow
@pytest.mark.parametrize("hwtoken_browser", ["chromium"], indirect=True)
def test_chromium_virtual_authenticator_and_the_virtual_key(hwtoken_browser, plugged_key,
                                                           virtual_key, tmp_path):
    browser = hwtoken_browser
    trusting, open_site = sites(virtual_key)
    with trusting, open_site:
        # -- the virtual key, as a USB device ------------------------------------------------
        page = SitePage(browser, trusting).open()
        assert page.register("key")["ok"]
        reg = last(trusting)
        assert reg.ok and reg.detail["aaguid"] == "a25342c0-3cdc-4414-8e46-f4807fca511c"
        assert reg.detail["attestation"]["format"] == "packed"
        assert reg.detail["attestation"]["x5c"] == 1  # issued by the root the RP exported
        # the real HID path: Chromium's HID service found a YubiKey (0x1050:0x0407)
        assert "HID device detected: vendorId=4176, productId=1031" in browser.log()
        # the same key, meanwhile, in OpenSSH; then in the browser again
        assert ssh_keygen_on(plugged_key, tmp_path, "id_ecdsa_sk").startswith("sk-ecdsa")
        assert page.sign_in("key")["ok"]
        # hot plug: pulled out, the sign-in waits; put back, it completes
        plugged_key.unplug()
        seq = browser.execute("return window.hwtokenSite.seq")
        browser.click("#login")
        browser.wait_for("return window.hwtokenSite.state === 'busy'", what="the sign-in")
        plugged_key.plug()
        done = browser.wait_for("const s = window.hwtokenSite;"
                                "return s.seq > arguments[0] ? s.last : null;", seq,
                                what="the sign-in once the key is back")
        assert done["ok"], done

        # -- the virtual authenticator, in the same browser ------------------------------------
        browser.webdriver.add_virtual_authenticator(VirtualAuthenticatorOptions(
            has_resident_key=True, has_user_verification=True, is_user_verified=True))
        page = SitePage(browser, open_site).open()
        made = page.register("va", passkey=True)
        assert made["ok"], made
        va = last(open_site)
        assert va.detail["aaguid"] == CHROMIUM_VA_AAGUID  # the same for every test
        assert va.detail["attestation"] == {
            "format": "packed", "x5c": 1,
            "subject": "CN=Batch Certificate,OU=Authenticator Attestation,O=Chromium,C=US"}
        assert va.detail["user_verified"]  # UV is a flag: no PIN exists, none is asked
        signed = page.sign_in(None)
        assert signed["ok"] and signed["signCount"] > 0
        ours = SitePage(browser, trusting).open()
        refused = ours.register("va")  # the site that trusts a root: there is none for it
        assert not refused["ok"] and "registration refused" in refused["error"]["message"]
        assert "No root found" in last(trusting).detail["error"]
        # while it is on, the real key is out of reach
        (gone, seconds) = timed(lambda: ours.sign_in("key"))
        assert gone["error"]["name"] == "NotAllowedError" and seconds < 5
        # it is no device: libfido2 in the browser's own environment sees the key only
        assert len(fido_devices(plugged_key)) == 1
        # a refused touch: NotAllowedError when the page's timeout ends
        browser.webdriver.remove_virtual_authenticator()
        browser.webdriver.add_virtual_authenticator(
            VirtualAuthenticatorOptions(is_user_consenting=False))
        (denied, seconds) = timed(lambda: page.register("nobody"))
        assert denied["error"]["name"] == "NotAllowedError"
        assert PAGE_TIMEOUT <= seconds < PAGE_TIMEOUT + 8
        # hot plug has no counterpart: removing it and adding another forgets its passkey
        browser.webdriver.remove_virtual_authenticator()
        browser.webdriver.add_virtual_authenticator(VirtualAuthenticatorOptions(
            has_resident_key=True, has_user_verification=True, is_user_verified=True))
        assert page.sign_in(None)["error"]["name"] == "NotAllowedError"
        # and with none left, the plugged key stays out of reach in this session
        browser.webdriver.remove_virtual_authenticator()
        ours = SitePage(browser, trusting).open()
        (still_gone, seconds) = timed(lambda: ours.sign_in("key"))
        assert still_gone["error"]["name"] == "NotAllowedError"
        assert PAGE_TIMEOUT <= seconds < PAGE_TIMEOUT + 8


@pytest.mark.slow
@pytest.mark.hwtoken(pin=PIN)
@pytest.mark.parametrize("hwtoken_browser", FIREFOX_PARAMS, indirect=True)
def test_firefox_virtual_authenticator_and_the_virtual_key(request, hwtoken_browser,
                                                          plugged_key, virtual_key,
                                                          tmp_path):
    browser = hwtoken_browser
    browser.answer_prompts(pin=PIN, attestation=True)
    trusting, open_site = sites(virtual_key)
    with trusting, open_site:
        # -- the virtual key with a PIN: Firefox asks for it, the test types it --------------
        page = SitePage(browser, trusting).open()
        made = page.register("key", passkey=True)
        assert made["ok"], made
        reg = last(trusting)
        assert reg.detail["user_verified"] and reg.detail["attestation"]["x5c"] == 1
        assert reg.detail["aaguid"] == "a25342c0-3cdc-4414-8e46-f4807fca511c"
        assert [p["answered"] for p in browser.prompts() if p["type"] == "pin-required"] \
            == ["pin"]
        assert ssh_keygen_on(plugged_key, tmp_path, "id_ecdsa_sk").startswith("sk-ecdsa")
        assert page.sign_in(None)["ok"]
        # a refused touch: NotAllowedError at once
        from hwtoken.emulator import ApproveAlways, DenyAlways

        virtual_key.presence = DenyAlways()
        (denied, seconds) = timed(lambda: page.sign_in(None))
        assert denied["error"]["name"] == "NotAllowedError" and seconds < 5
        virtual_key.presence = ApproveAlways()

        # -- a virtual authenticator next to USB keys: accepted, and never asked ---------------
        browser.marionette.command("WebAuthn:AddVirtualAuthenticator", {
            "protocol": "ctap2", "transport": "usb", "hasResidentKey": True,
            "hasUserVerification": True, "isUserConsenting": True, "isUserVerified": True})
        plugged_key.unplug()  # no USB key to answer: would the virtual authenticator?
        page = SitePage(browser, open_site).open()
        (ignored, seconds) = timed(lambda: page.register("va", passkey=True))
        assert ignored["error"]["name"] == "NotAllowedError"
        assert PAGE_TIMEOUT <= seconds < PAGE_TIMEOUT + 8  # the timeout: nobody answered
        assert open_site.events_of("register") == []
        plugged_key.plug()

    # -- Firefox with USB keys off: the virtual authenticator works, the key is out of reach
    spec = request.node.callspec.params["hwtoken_browser"]
    require_browser(request, "firefox", spec.binary)
    trusting, open_site = sites(virtual_key)
    with trusting, open_site, start_browser("firefox", plugged_key.testbed,
                                            workdir=tmp_path / "usb-off", binary=spec.binary,
                                            prefs=USB_KEYS_OFF) as firefox:
        firefox.answer_prompts(attestation=True)
        page = SitePage(firefox, trusting).open()
        (unreachable, seconds) = timed(lambda: page.register("key"))
        assert unreachable["error"]["name"] == "NotAllowedError" and seconds < 5
        consenting = {"protocol": "ctap2", "transport": "usb", "hasResidentKey": True,
                      "hasUserVerification": True, "isUserConsenting": True,
                      "isUserVerified": True}
        va_id = firefox.marionette.command("WebAuthn:AddVirtualAuthenticator",
                                           consenting)["value"]
        page = SitePage(firefox, open_site).open()
        assert page.register("va", passkey=True)["ok"]
        va = last(open_site)
        assert va.detail["aaguid"] == FIREFOX_VA_AAGUID and va.detail["user_verified"]
        assert va.detail["attestation"] == {"format": "packed", "x5c": 0, "subject": None}
        signed = page.sign_in(None)
        assert signed["ok"] and signed["signCount"] == 0  # its counter never moves
        refused = SitePage(firefox, trusting).open().register("va")
        assert not refused["ok"] and "No root found" in last(trusting).detail["error"]
        firefox.marionette.command("WebAuthn:RemoveVirtualAuthenticator",
                                   {"authenticatorId": va_id})
        firefox.marionette.command("WebAuthn:AddVirtualAuthenticator",
                                   {**consenting, "isUserConsenting": False})
        (denied, seconds) = timed(lambda: page.register("nobody"))
        assert denied["error"]["name"] == "NotAllowedError" and seconds < 5
