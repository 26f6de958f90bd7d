"""A reference relying party: a sign-up and sign-in page with ``Fido2Server`` behind it.

The enrolment story of a site that takes security keys seriously, small enough to read:

1. register a security key for a user name (or a *passkey*: a discoverable credential);
2. sign in with it — by user name, or with no user name at all (the passkey says who);
3. set up the fallback: an authenticator app (TOTP: secret, otpauth:// URI and QR code,
   confirmed with a first code) and, once that is confirmed, a one-time paper key that is
   shown once and stored only as a hash;
4. sign in without the key: a TOTP code (each accepted once) or the paper key (used up).

:class:`WebAuthnSite` serves the page (``site.html`` beside this module) and its JSON API on
127.0.0.1, at ``http://localhost:PORT/`` (``localhost`` is a secure context for WebAuthn
and a valid RP ID). Registrations and assertions are verified by
``fido2.server.Fido2Server``, TOTP codes by :class:`hwtoken.otp.Verifier` with a replay
store, paper keys by :mod:`hwtoken.paperkey`. Every outcome, good or bad, is appended to
:attr:`WebAuthnSite.events`, so a test can check what the server accepted, not only what
the page shows; the page also reports the time ``navigator.credentials.create``/``get``
took in the browser.

:class:`SitePage` drives that page in a :class:`hwtoken.browser.Browser` the way a user
does (type, click, wait for the outcome). ``python -m hwtoken.browser.site`` serves the
page until Ctrl-C, to try it with a browser started by ``hwtoken emulate run``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from fido2.webauthn import AttestedCredentialData

    from hwtoken.browser.driver import Browser

log = logging.getLogger(__name__)

RP_ID = "localhost"
MAX_BODY = 64 * 1024
CEREMONY_TTL = 300.0  # seconds a begun registration or sign-in may take to complete
MAX_PENDING = 256
PAGE = "site.html"


class SiteError(Exception):
    """A request the site refuses (answered with HTTP 400 and ``{"ok": false, "error"}``)."""


@dataclass
class Credential:
    """One registered security key credential of a user."""

    data: AttestedCredentialData
    sign_count: int
    discoverable: bool
    aaguid: str

    @property
    def credential_id(self) -> bytes:
        return bytes(self.data.credential_id)


@dataclass
class User:
    """An account: its WebAuthn user handle, keys, and fallback factors."""

    name: str
    handle: bytes
    credentials: list[Credential] = field(default_factory=list)
    totp: Any = None  # hwtoken.otp.OtpParams once confirmed
    pending_totp: Any = None  # ... between enrol and confirm
    paper_key_hash: str | None = None


@dataclass
class Event:
    """One thing the site decided: ``kind`` (``register``, ``login``, ``login-totp``,
    ``login-paperkey``, ``totp-confirm``, ``client-error``), for whom, and whether it
    was accepted; ``detail`` holds what was verified (and the browser's timing)."""

    kind: str
    user: str | None
    ok: bool
    detail: dict[str, Any] = field(default_factory=dict)


def _attestation_summary(credential: Any) -> dict[str, Any]:
    """What a registration's attestation statement holds: its format, how many
    certificates (x5c) and the first one's subject."""
    from cryptography import x509
    from fido2.webauthn import RegistrationResponse

    att = RegistrationResponse.from_dict(credential).response.attestation_object
    chain = list(att.att_stmt.get("x5c") or [])
    subject = (x509.load_der_x509_certificate(bytes(chain[0])).subject.rfc4514_string()
               if chain else None)
    return {"format": att.fmt, "x5c": len(chain), "subject": subject}


class WebAuthnSite:
    """The reference site on ``http://localhost:PORT/`` (bound to 127.0.0.1, free port).

    ``user_verification`` is what the site asks of keys (``discouraged`` by default, so
    keys without a PIN work everywhere; ``preferred``/``required`` make browsers ask for
    the PIN of a key that has one); ``attestation`` its conveyance preference, and
    ``verify_attestation`` what checks it (python-fido2's ``verify_attestation``, such as
    :class:`hwtoken.fido.trust.TrustedRoots`: a site that trusts only some models);
    ``timeout`` the WebAuthn ``timeout`` (seconds) the page passes to the browser (None:
    the browser's default; Chromium never waits less than 10 s).
    """

    def __init__(self, *, port: int = 0, rp_name: str = "hwtoken reference site",
                 user_verification: str = "discouraged", attestation: str = "none",
                 timeout: float | None = None, state_dir: str | Path | None = None,
                 verify_attestation: Any = None) -> None:
        from fido2.server import Fido2Server
        from fido2.webauthn import AttestationConveyancePreference, PublicKeyCredentialRpEntity

        self.rp_id = RP_ID
        self.server = Fido2Server(PublicKeyCredentialRpEntity(name=rp_name, id=RP_ID),
                                  attestation=AttestationConveyancePreference(attestation),
                                  verify_attestation=verify_attestation)
        if timeout is not None:
            self.server.timeout = int(timeout * 1000)
        self.user_verification = user_verification
        self.users: dict[str, User] = {}
        self.events: list[Event] = []
        self._pending: dict[str, tuple[float, str, str | None, Any, bool]] = {}
        self._lock = threading.RLock()
        self._recorded = threading.Condition(self._lock)  # notified on each new event
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if state_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="hwtoken-site-")
            state_dir = self._tmp.name
        self.state_dir = Path(state_dir)
        self._page = resources.files(__package__).joinpath(PAGE).read_bytes()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        name="hwtoken-site")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{RP_ID}:{self.port}/"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> WebAuthnSite:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def events_of(self, kind: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.kind == kind]

    def wait_for_events(self, kind: str, count: int = 1, timeout: float = 20.0) -> list[Event]:
        """:meth:`events_of` once there are ``count`` of ``kind`` or ``timeout`` has passed.

        For what the page reports after the WebAuthn call has returned to the test, without
        awaiting it (``client-error``)."""
        with self._recorded:
            self._recorded.wait_for(lambda: len(self.events_of(kind)) >= count, timeout)
            return self.events_of(kind)

    # -- the API -----------------------------------------------------------------------------
    def _record(self, kind: str, user: str | None, ok: bool, **detail: Any) -> Event:
        event = Event(kind, user, ok, detail)
        with self._recorded:
            self.events.append(event)
            self._recorded.notify_all()
        return event

    def _user(self, name: Any, *, create: bool = False) -> User:
        if not isinstance(name, str) or not name.strip() or len(name) > 64:
            raise SiteError("a user name (1 to 64 characters) is needed")
        name = name.strip()
        user = self.users.get(name)
        if user is None:
            if not create:
                raise SiteError(f"no user {name!r} here")
            user = self.users[name] = User(name, secrets.token_bytes(16))
        return user

    def _begin(self, kind: str, user: str | None, state: Any, discoverable: bool) -> str:
        ceremony = secrets.token_urlsafe(16)
        now = time.monotonic()
        for cid in [c for c, p in self._pending.items() if now - p[0] > CEREMONY_TTL]:
            del self._pending[cid]
        if len(self._pending) >= MAX_PENDING:
            raise SiteError("too many ceremonies in progress")
        self._pending[ceremony] = (now, kind, user, state, discoverable)
        return ceremony

    def _take(self, ceremony: Any, kind: str) -> tuple[str | None, Any, bool]:
        pending = self._pending.pop(ceremony, None) if isinstance(ceremony, str) else None
        if pending is None or pending[1] != kind or \
                time.monotonic() - pending[0] > CEREMONY_TTL:
            raise SiteError("unknown or expired ceremony: begin again")
        return pending[2], pending[3], pending[4]

    def register_begin(self, body: dict[str, Any]) -> dict[str, Any]:
        from fido2.webauthn import (
            PublicKeyCredentialUserEntity,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )

        discoverable = bool(body.get("discoverable"))
        with self._lock:
            user = self._user(body.get("user"), create=True)
            options, state = self.server.register_begin(
                PublicKeyCredentialUserEntity(name=user.name, id=user.handle,
                                              display_name=user.name),
                [c.data for c in user.credentials],
                resident_key_requirement=(ResidentKeyRequirement.REQUIRED if discoverable
                                          else ResidentKeyRequirement.DISCOURAGED),
                user_verification=UserVerificationRequirement(self.user_verification))
            ceremony = self._begin("register", user.name, state, discoverable)
        return {"ceremony": ceremony, "publicKey": dict(options)["publicKey"]}

    def register_complete(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            name, state, discoverable = self._take(body.get("ceremony"), "register")
            user = self._user(name)
            try:
                auth_data = self.server.register_complete(state, body.get("credential"))
            except Exception as exc:
                self._record("register", user.name, False, error=str(exc),
                             client_ms=body.get("clientMs"))
                raise SiteError(f"registration refused: {exc}") from None
            data = auth_data.credential_data
            assert data is not None  # noqa: S101 - register_complete guarantees it
            cred = Credential(data, int(auth_data.counter), discoverable, str(data.aaguid))
            user.credentials.append(cred)
            self._record("register", user.name, True, credential_id=cred.credential_id.hex(),
                         aaguid=cred.aaguid, discoverable=discoverable,
                         user_verified=bool(auth_data.is_user_verified()),
                         attestation=_attestation_summary(body.get("credential")),
                         client_ms=body.get("clientMs"))
        return {"user": user.name, "credentialId": cred.credential_id.hex(),
                "aaguid": cred.aaguid}

    def login_begin(self, body: dict[str, Any]) -> dict[str, Any]:
        from fido2.webauthn import UserVerificationRequirement

        name = body.get("user")
        with self._lock:
            if name:  # allow list: the user's keys
                user = self._user(name)
                if not user.credentials:
                    raise SiteError(f"{user.name} has no security key yet")
                creds: Any = [c.data for c in user.credentials]
            else:  # a passkey sign-in: the key says who
                user, creds = None, None
            options, state = self.server.authenticate_begin(
                creds, user_verification=UserVerificationRequirement(self.user_verification))
            ceremony = self._begin("login", user.name if user else None, state, user is None)
        return {"ceremony": ceremony, "publicKey": dict(options)["publicKey"]}

    def login_complete(self, body: dict[str, Any]) -> dict[str, Any]:
        from fido2.webauthn import AuthenticationResponse

        with self._lock:
            name, state, discoverable = self._take(body.get("ceremony"), "login")
            try:
                response = AuthenticationResponse.from_dict(body.get("credential"))
            except Exception as exc:
                raise SiteError(f"malformed assertion: {exc}") from None
            if discoverable:
                handle = response.response.user_handle
                user = next((u for u in self.users.values()
                             if handle is not None and u.handle == bytes(handle)), None)
                if user is None:
                    self._record("login", None, False, error="unknown user handle")
                    raise SiteError("this key's passkey belongs to no user here")
            else:
                user = self._user(name)
            try:
                data = self.server.authenticate_complete(
                    state, [c.data for c in user.credentials], response)
            except Exception as exc:
                self._record("login", user.name, False, error=str(exc),
                             client_ms=body.get("clientMs"))
                raise SiteError(f"sign-in refused: {exc}") from None
            cred = next(c for c in user.credentials
                        if c.credential_id == bytes(data.credential_id))
            auth_data = response.response.authenticator_data
            counter = int(auth_data.counter)
            if counter and counter <= cred.sign_count:  # a cloned key (or a replay)
                self._record("login", user.name, False, error="signature counter went back",
                             sign_count=counter, previous=cred.sign_count)
                raise SiteError("signature counter did not rise: possible cloned key")
            cred.sign_count = counter
            self._record("login", user.name, True, credential_id=cred.credential_id.hex(),
                         sign_count=counter, discoverable=discoverable,
                         user_verified=bool(auth_data.is_user_verified()),
                         client_ms=body.get("clientMs"))
        return {"user": user.name, "credentialId": cred.credential_id.hex(),
                "signCount": counter, "userVerified": bool(auth_data.is_user_verified())}

    def register_with_fido2(self, device: Any, user: str, *, discoverable: bool = False,
                            pin: str | None = None) -> dict[str, Any]:
        """Register ``device`` (a ``fido2`` CtapDevice, e.g. :func:`hwtoken.emulator.
        fido_device` of a virtual key) for ``user`` with ``fido2.client.Fido2Client`` as the
        browser, through this site's own API: a passkey made outside any browser, for a
        browser test to sign in with (headless Chromium cannot create one, see
        docs/browsers.md)."""
        from fido2.client import DefaultClientDataCollector, Fido2Client, UserInteraction

        class _Pin(UserInteraction):
            def request_pin(self, permissions: Any, rp_id: str | None) -> str | None:
                return pin

        client = Fido2Client(device, client_data_collector=DefaultClientDataCollector(
            self.url.rstrip("/")), user_interaction=_Pin())
        begin = self.register_begin({"user": user, "discoverable": discoverable})
        from fido2.webauthn import PublicKeyCredentialCreationOptions

        response = client.make_credential(
            PublicKeyCredentialCreationOptions.from_dict(begin["publicKey"]))
        return self.register_complete({"ceremony": begin["ceremony"],
                                       "credential": dict(response)})

    def client_error(self, body: dict[str, Any]) -> dict[str, Any]:
        """What the page reports when the browser rejected a ceremony (NotAllowedError...)."""
        with self._lock:
            name = body.get("user") if isinstance(body.get("user"), str) else None
            self._pending.pop(str(body.get("ceremony")), None)
            self._record("client-error", name or None, False, action=str(body.get("action")),
                         name=str(body.get("name"))[:64], message=str(body.get("message"))[:500],
                         client_ms=body.get("clientMs"))
        return {}

    def totp_enrol(self, body: dict[str, Any]) -> dict[str, Any]:
        import segno

        from hwtoken import otp

        with self._lock:
            user = self._user(body.get("user"))
            params = otp.OtpParams("totp", otp.new_secret(), "hwtoken reference site",
                                   user.name)
            user.pending_totp = params
        uri = params.to_uri()
        return {"secret": params.secret_b32, "uri": uri,
                "qr": segno.make(uri, error="m").svg_inline(scale=3)}

    def totp_confirm(self, body: dict[str, Any]) -> dict[str, Any]:
        from hwtoken import paperkey

        with self._lock:
            user = self._user(body.get("user"))
            if user.pending_totp is None:
                raise SiteError("set up the authenticator app first")
            if not self._verifier(user.pending_totp).verify(str(body.get("code", ""))):
                self._record("totp-confirm", user.name, False)
                raise SiteError("that code is not right: try the current one")
            user.totp, user.pending_totp = user.pending_totp, None
            paper = paperkey.new()
            user.paper_key_hash = paper.hash
            self._record("totp-confirm", user.name, True)
        return {"paperKey": paper.grouped}

    def login_totp(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            user = self._user(body.get("user"))
            ok = user.totp is not None and \
                self._verifier(user.totp).verify(str(body.get("code", "")))
            self._record("login-totp", user.name, bool(ok))
            if not ok:
                raise SiteError("wrong or already used code")
        return {"user": user.name}

    def login_paperkey(self, body: dict[str, Any]) -> dict[str, Any]:
        from hwtoken import paperkey
        from hwtoken.errors import InvalidInput

        with self._lock:
            user = self._user(body.get("user"))
            try:
                ok = user.paper_key_hash is not None and \
                    paperkey.check(str(body.get("paperKey", "")), user.paper_key_hash)
            except InvalidInput as exc:
                self._record("login-paperkey", user.name, False, error=str(exc))
                raise SiteError(str(exc)) from None
            self._record("login-paperkey", user.name, bool(ok))
            if not ok:
                raise SiteError("that paper key is not right (or was used already)")
            user.paper_key_hash = None  # one-time: it is used up
        return {"user": user.name}

    def _verifier(self, params: Any) -> Any:
        from hwtoken import otp

        return otp.Verifier(params, window=1, store=otp.ReplayStore(self.state_dir /
                                                                   "totp-replay.json"))

    _ROUTES = {
        "/api/register/begin": "register_begin",
        "/api/register/complete": "register_complete",
        "/api/login/begin": "login_begin",
        "/api/login/complete": "login_complete",
        "/api/client-error": "client_error",
        "/api/totp/enrol": "totp_enrol",
        "/api/totp/confirm": "totp_confirm",
        "/api/login/totp": "login_totp",
        "/api/login/paperkey": "login_paperkey",
    }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        site = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "hwtoken-site"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass  # quiet: tests read site.events

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.split("?")[0] in ("/", "/index.html"):
                    self._send(200, site._page, "text/html; charset=utf-8")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def do_POST(self) -> None:  # noqa: N802
                method = site._ROUTES.get(self.path)
                if method is None:
                    self._send(404, b"{}", "application/json")
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > MAX_BODY:
                        raise SiteError("request too large")
                    try:
                        body = json.loads(self.rfile.read(length) or b"{}")
                    except ValueError:
                        raise SiteError("the request is not JSON") from None
                    if not isinstance(body, dict):
                        raise SiteError("the request is not a JSON object")
                    result = {"ok": True, **getattr(site, method)(body)}
                    status = HTTPStatus.OK
                except SiteError as exc:
                    result, status = {"ok": False, "error": str(exc)}, HTTPStatus.BAD_REQUEST
                except Exception:  # a bug: answer, and keep serving
                    log.exception("reference site: %s failed", self.path)
                    result = {"ok": False, "error": "internal error"}
                    status = HTTPStatus.INTERNAL_SERVER_ERROR
                self._send(status, json.dumps(result).encode(), "application/json")

        return Handler


class SitePage:
    """The reference page in a browser, used the way a person would.

    Each action types into the page, clicks its button (a real click: user activation)
    and waits for the page to say how it ended; it returns the page's result:
    ``{"ok": bool, "action", "user", "ms" (the WebAuthn call, in the browser), "error":
    {"name", "message"} when it failed, plus what the server answered}``.
    """

    def __init__(self, browser: Browser, site: WebAuthnSite, *, timeout: float = 40.0) -> None:
        self.browser = browser
        self.site = site
        self.timeout = timeout

    def open(self) -> SitePage:
        self.browser.get(self.site.url)
        self.browser.wait_for("return window.hwtokenSite && window.hwtokenSite.ready",
                              what="the reference page to load")
        return self

    def _act(self, button: str, **fields: str) -> dict[str, Any]:
        b = self.browser
        for selector, value in fields.items():
            b.fill(f"#{selector.replace('_', '-')}", value)
        seq = int(b.execute("return window.hwtokenSite.seq"))
        b.click(f"#{button}")
        result = b.wait_for(
            "const s = window.hwtokenSite;"
            "return s.seq > arguments[0] && s.state !== 'busy' ? s.last : null;",
            seq, timeout=self.timeout, what=f"the page to finish {button!r}")
        return dict(result)

    def register(self, user: str, *, passkey: bool = False) -> dict[str, Any]:
        """Register a security key (``passkey``: a discoverable credential) for ``user``."""
        return self._act("register-passkey" if passkey else "register", user=user)

    def sign_in(self, user: str | None = None) -> dict[str, Any]:
        """Sign in with a security key: by user name, or (None) with a passkey."""
        if user is None:
            return self._act("login-passkey")
        return self._act("login", user=user)

    def set_up_totp(self, user: str) -> dict[str, Any]:
        """Start the authenticator-app set-up; the result has ``secret`` and ``uri``."""
        return self._act("totp-enrol", user=user)

    def confirm_totp(self, code: str) -> dict[str, Any]:
        """Confirm the app with its first code; the result has the one-time ``paperKey``."""
        return self._act("totp-confirm", totp_code=code)

    def sign_in_with_code(self, user: str, code: str) -> dict[str, Any]:
        return self._act("login-totp", user=user, fallback_code=code)

    def sign_in_with_paper_key(self, user: str, paper_key: str) -> dict[str, Any]:
        return self._act("login-paperkey", user=user, fallback_paper=paper_key)


def main() -> None:  # pragma: no cover - interactive
    """Serve the reference site until Ctrl-C (``python -m hwtoken.browser.site``)."""
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    with WebAuthnSite(port=port) as site:
        print(f"reference site on {site.url} (Ctrl-C to stop)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    main()


__all__ = ["WebAuthnSite", "SitePage", "SiteError", "User", "Credential", "Event", "RP_ID"]
