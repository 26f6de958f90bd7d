"""The reference site's server side, driven over its HTTP API with python-fido2 as the
browser (``Fido2Client`` on an in-process virtual key): what a browser test relies on
before any browser starts — verification, counters, passkeys, TOTP and paper keys, and
refusals of everything malformed."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.webauthn import PublicKeyCredentialRequestOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwtoken import otp
from hwtoken.browser.site import SiteError, WebAuthnSite


@pytest.fixture
def site(tmp_path):
    with WebAuthnSite(state_dir=tmp_path) as s:
        yield s


def post(site, path, body):
    """POST ``body`` (bytes or JSON-able) to the running site: (status, JSON answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(site.url.rstrip("/") + path, data=data, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def client(site, device):
    return Fido2Client(device, client_data_collector=DefaultClientDataCollector(
        site.url.rstrip("/")))


def sign_in(site, device, user=None):
    """The page's sign-in, with fido2's client as the browser, over HTTP."""
    status, begin = post(site, "/api/login/begin", {"user": user})
    assert status == 200, begin
    options = PublicKeyCredentialRequestOptions.from_dict(begin["publicKey"])
    selection = client(site, device).get_assertion(options)
    return post(site, "/api/login/complete", {"ceremony": begin["ceremony"],
                                              "credential": dict(selection.get_response(0))})


def test_page_is_served_and_nothing_else(site):
    with urllib.request.urlopen(site.url, timeout=10) as resp:
        page = resp.read().decode()
        assert resp.headers["Content-Type"].startswith("text/html")
    for element in ('id="register"', 'id="login-passkey"', 'id="totp-enrol"',
                    'id="login-paperkey"', "window.hwtokenSite"):
        assert element in page
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(site.url + "etc/passwd", timeout=10)
    assert exc.value.code == 404
    assert site.url.startswith("http://localhost:")


def test_register_and_sign_in_verified_with_rising_counter(site, fido_device):
    registered = site.register_with_fido2(fido_device, "alice")
    for _ in range(2):
        status, answer = sign_in(site, fido_device, "alice")
        assert status == 200 and answer["ok"], answer
        assert answer["credentialId"] == registered["credentialId"]
    logins = site.events_of("login")
    assert [e.ok for e in logins] == [True, True]
    assert logins[1].detail["sign_count"] > logins[0].detail["sign_count"]


def test_passkey_sign_in_finds_the_user_by_handle(site, fido_device):
    site.register_with_fido2(fido_device, "alice")
    passkey = site.register_with_fido2(fido_device, "bob", discoverable=True)
    status, answer = sign_in(site, fido_device, None)
    assert status == 200 and answer["user"] == "bob"
    assert answer["credentialId"] == passkey["credentialId"]
    assert site.events_of("login")[-1].detail["discoverable"]


def test_a_ceremony_is_used_once_and_only_for_its_kind(site, fido_device):
    site.register_with_fido2(fido_device, "alice")
    _, begin = post(site, "/api/login/begin", {"user": "alice"})
    options = PublicKeyCredentialRequestOptions.from_dict(begin["publicKey"])
    response = dict(client(site, fido_device).get_assertion(options).get_response(0))
    body = {"ceremony": begin["ceremony"], "credential": response}
    assert post(site, "/api/register/complete", body)[0] == 400  # wrong kind: and it is gone
    status, answer = post(site, "/api/login/complete", body)
    assert status == 400 and "begin again" in answer["error"]


def test_a_replayed_or_tampered_assertion_is_refused(site, fido_device):
    site.register_with_fido2(fido_device, "alice")
    _, begin = post(site, "/api/login/begin", {"user": "alice"})
    options = PublicKeyCredentialRequestOptions.from_dict(begin["publicKey"])
    response = dict(client(site, fido_device).get_assertion(options).get_response(0))
    tampered = json.loads(json.dumps(response))
    sig = tampered["response"]["signature"]
    tampered["response"]["signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]
    status, answer = post(site, "/api/login/complete", {"ceremony": begin["ceremony"],
                                                         "credential": tampered})
    assert status == 400 and "refused" in answer["error"]
    assert site.events_of("login")[-1].ok is False


def test_totp_then_paper_key_fallback(site, fido_device):
    site.register_with_fido2(fido_device, "carol")
    _, enrol = post(site, "/api/totp/enrol", {"user": "carol"})
    assert enrol["qr"].startswith("<svg") and "secret=" in enrol["uri"]
    totp = otp.parse_uri(enrol["uri"]).generator()
    now = time.time()
    assert post(site, "/api/totp/confirm", {"user": "carol", "code": "000000x"})[0] == 400
    status, confirmed = post(site, "/api/totp/confirm", {"user": "carol",
                                                         "code": totp.at(now)})
    assert status == 200
    paper = confirmed["paperKey"]
    assert post(site, "/api/login/totp", {"user": "carol", "code": totp.at(now)})[0] == 400
    assert post(site, "/api/login/totp", {"user": "carol", "code": totp.at(now + 30)})[0] == 200
    assert post(site, "/api/login/paperkey", {"user": "carol", "paperKey": "0" * 64})[0] == 400
    assert post(site, "/api/login/paperkey", {"user": "carol", "paperKey": paper})[0] == 200
    status, answer = post(site, "/api/login/paperkey", {"user": "carol", "paperKey": paper})
    assert status == 400 and "used" in answer["error"]
    assert site.users["carol"].paper_key_hash is None


def test_refusals(site):
    assert post(site, "/api/login/begin", {"user": "nobody"})[1]["error"].startswith("no user")
    assert post(site, "/api/register/begin", {"user": ""})[0] == 400
    assert post(site, "/api/register/begin", {"user": "x" * 65})[0] == 400
    assert post(site, "/api/register/begin", b"not json")[0] == 400
    assert post(site, "/api/register/begin", b"[1, 2]")[0] == 400
    assert post(site, "/api/nothing", {})[0] == 404
    post(site, "/api/register/begin", {"user": "dave"})
    assert "no security key" in post(site, "/api/login/begin", {"user": "dave"})[1]["error"]
    with pytest.raises(SiteError):
        site.totp_confirm({"user": "dave", "code": "123456"})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                max_size=4),
    max_leaves=12)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(sorted(WebAuthnSite._ROUTES)),
       body=st.dictionaries(st.sampled_from(["user", "ceremony", "credential", "code",
                                             "paperKey", "discoverable", "clientMs"]),
                            json_values, max_size=5))
def test_any_json_gets_a_json_answer(site, path, body):
    """Whatever a page (or an attacker) posts: a JSON answer, 200 or 400, never a crash."""
    status, answer = post(site, path, body)
    assert status in (200, 400) and isinstance(answer, dict) and "ok" in answer


def test_wait_for_events_returns_an_event_the_page_reports_later(site):
    """The page reports a refused ceremony after the call returned: the wait sees it come."""
    import threading

    report = {"action": "sign-in", "name": "NotAllowedError", "message": "refused"}
    later = threading.Timer(0.2, post, (site, "/api/client-error", report))
    later.start()
    try:
        [event] = site.wait_for_events("client-error")
    finally:
        later.join(10)
    assert (event.ok, event.detail["name"]) == (False, "NotAllowedError")
    # none of another kind comes: what there is once the timeout has passed
    assert site.wait_for_events("login", timeout=0.05) == []
