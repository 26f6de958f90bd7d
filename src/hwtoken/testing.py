"""pytest plugin (``pytest11`` entry point): test WebAuthn and U2F code against a virtual key.

Installing hwtoken is enough; these fixtures are then available in every test:

* ``virtual_key`` — a fresh :class:`hwtoken.emulator.VirtualKey` in the test's tmp dir,
  closed at teardown (set ``virtual_key.presence`` to change how it answers touches). Its
  model is ``yubikey-5`` unless the test asks for another profile with the marker
  ``@pytest.mark.hwtoken_profile("latest")`` or by parametrizing the fixture
  (``@pytest.mark.parametrize("virtual_key", ["u2f-only", "latest"], indirect=True)``);
* ``fido_device`` — a ``fido2.hid.CtapHidDevice`` for that key (the full CTAPHID path);
* ``webauthn`` — a :class:`WebAuthnHelper` for ``example.com`` on that device;
* ``plugged_key`` — that key plugged in as a local USB device (umockdev) for programs
  your test starts: a :class:`PluggedKeyHelper` with ``env`` and ``run()``, so real
  binaries (ssh-keygen, fido2-token, your own app, a browser) find it as ``/dev/hidrawN``;
* ``hwtoken_browser`` — headless Chromium (default) or Firefox started inside that testbed
  with a fresh profile: a :class:`hwtoken.browser.Browser` (parametrize it indirectly with
  ``"chromium"``/``"firefox"``); ``webauthn_site`` — the reference relying party
  (:class:`hwtoken.browser.site.WebAuthnSite`) on ``http://localhost:PORT/``. (Not
  ``browser``: that is pytest-playwright's; no fixture here shares a name with
  pytest-playwright's or pytest-selenium's.)

Settings for those fixtures: the ini options ``hwtoken_pin`` (the key gets this FIDO PIN,
whichever fixture the test asks for; the helpers use it) and ``hwtoken_rp_id`` (the
helper's RP ID), or per test the marker ``@pytest.mark.hwtoken(pin=..., rp_id=...)``.
A project with fixtures of its own by these names keeps them (its conftest wins), or turns
the plugin off with ``-p no:hwtoken``.

:class:`WebAuthnHelper` registers and authenticates with ``fido2.client.Fido2Client``
against a real ``fido2.server.Fido2Server``, so every response is verified as a relying
party would. fido2 is imported only when a fixture is used, so the plugin costs nothing
in test runs that do not need it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from fido2.ctap import CtapDevice
    from fido2.hid import CtapHidDevice
    from fido2.webauthn import (
        AttestedCredentialData,
        AuthenticationResponse,
        AuthenticatorData,
        RegistrationResponse,
    )

    from hwtoken.emulator import VirtualKey

__all__ = ["WebAuthnHelper", "Registration", "Authentication", "PluggedKeyHelper",
           "virtual_key", "fido_device", "webauthn", "plugged_key", "hwtoken_browser",
           "webauthn_site", "require_browser", "enroll_finger", "FIXTURES"]

#: The fixtures this plugin adds (none shares a name with pytest-playwright's or
#: pytest-selenium's fixtures: tests/test_package.py checks it with both installed).
FIXTURES = ("virtual_key", "fido_device", "webauthn", "plugged_key", "hwtoken_browser",
            "webauthn_site")


@dataclass
class Registration:
    """What :meth:`WebAuthnHelper.register` got: the verified authenticator data and more."""

    auth_data: AuthenticatorData
    response: RegistrationResponse
    credential: AttestedCredentialData

    @property
    def credential_id(self) -> bytes:
        return bytes(self.credential.credential_id)

    @property
    def extension_results(self) -> Mapping[str, Any]:
        """Client extension outputs (e.g. ``credProps``, ``prf``)."""
        return self.response.client_extension_results or {}


@dataclass
class Authentication:
    """What :meth:`WebAuthnHelper.authenticate` got: the verified assertion."""

    credential: AttestedCredentialData
    response: AuthenticationResponse
    auth_data: AuthenticatorData
    user_handle: bytes | None

    @property
    def credential_id(self) -> bytes:
        return bytes(self.credential.credential_id)

    @property
    def sign_count(self) -> int:
        return int(self.auth_data.counter)

    @property
    def user_verified(self) -> bool:
        return bool(self.auth_data.is_user_verified())

    @property
    def extension_results(self) -> Mapping[str, Any]:
        return self.response.client_extension_results or {}


class WebAuthnHelper:
    """A relying party (``Fido2Server``) and a browser (``Fido2Client``) around one device.

    ``register()`` and ``authenticate()`` run a full ceremony and raise if the server
    rejects the response; registered credentials are remembered in ``credentials``.
    Pass ``pin`` if the key has a PIN (the client asks for it when needed). Without one,
    user verification defaults to ``"discouraged"`` (fido2 refuses ``"preferred"`` on a key
    that supports a PIN but has none set); with one, to ``"preferred"``.
    """

    def __init__(self, device: CtapDevice, rp_id: str = "example.com", *,
                 origin: str | None = None, rp_name: str = "Example RP",
                 pin: str | None = None) -> None:
        from fido2.client import DefaultClientDataCollector, Fido2Client
        from fido2.server import Fido2Server
        from fido2.webauthn import PublicKeyCredentialRpEntity

        self.device = device
        self.rp_id = rp_id
        self.server = Fido2Server(PublicKeyCredentialRpEntity(name=rp_name, id=rp_id))
        self.client = Fido2Client(
            device,
            client_data_collector=DefaultClientDataCollector(origin or f"https://{rp_id}"),
            user_interaction=_interaction(pin),
        )
        self.pin = pin
        self.credentials: list[AttestedCredentialData] = []
        self.sign_counts: dict[bytes, int] = {}

    def register(self, user: Mapping[str, Any] | str = "alice", *,
                 resident_key: bool = False, user_verification: str | None = None,
                 extensions: Mapping[str, Any] | None = None) -> Registration:
        """Register a credential for ``user`` (a name, or a WebAuthn user entity dict)."""
        from fido2.webauthn import PublicKeyCredentialUserEntity, ResidentKeyRequirement

        if isinstance(user, str):
            entity = PublicKeyCredentialUserEntity(name=user, id=user.encode(),
                                                   display_name=user)
        else:
            entity = PublicKeyCredentialUserEntity.from_dict(user)
        options, state = self.server.register_begin(
            entity, self.credentials,
            resident_key_requirement=(ResidentKeyRequirement.REQUIRED if resident_key
                                      else ResidentKeyRequirement.DISCOURAGED),
            user_verification=self._uv(user_verification),
            extensions=dict(extensions) if extensions else None,
        )
        response = self.client.make_credential(options.public_key)
        auth_data = self.server.register_complete(state, response)
        credential = auth_data.credential_data
        assert credential is not None  # noqa: S101 - register_complete guarantees it
        self.credentials.append(credential)
        self.sign_counts[bytes(credential.credential_id)] = int(auth_data.counter)
        return Registration(auth_data, response, credential)

    def authenticate(self, *, discoverable: bool = False, user_verification: str | None = None,
                     extensions: Mapping[str, Any] | None = None,
                     index: int = 0) -> Authentication:
        """Authenticate with a registered credential (``discoverable``: no allow list).

        Checks the signature with ``Fido2Server`` and that the signature counter rose.
        """
        options, state = self.server.authenticate_begin(
            None if discoverable else self.credentials,
            user_verification=self._uv(user_verification),
            extensions=dict(extensions) if extensions else None,
        )
        selection = self.client.get_assertion(options.public_key)
        response = selection.get_response(index)
        credential = self.server.authenticate_complete(state, self.credentials, response)
        auth_data = response.response.authenticator_data
        cred_id = bytes(credential.credential_id)
        previous = self.sign_counts.get(cred_id, 0)
        if auth_data.counter and auth_data.counter <= previous:
            raise AssertionError(
                f"signature counter did not rise: {auth_data.counter} after {previous}")
        self.sign_counts[cred_id] = int(auth_data.counter)
        user = response.response.user_handle
        return Authentication(credential, response, auth_data,
                              bytes(user) if user is not None else None)


    def _uv(self, requested: str | None) -> Any:
        from fido2.webauthn import UserVerificationRequirement

        if requested:
            return UserVerificationRequirement(requested)
        return (UserVerificationRequirement.PREFERRED if self.pin
                else UserVerificationRequirement.DISCOURAGED)


def _interaction(pin: str | None) -> Any:
    from fido2.client import UserInteraction

    class _Interaction(UserInteraction):
        def request_pin(self, permissions: Any, rp_id: str | None) -> str | None:
            return pin

    return _Interaction()


def enroll_finger(key: VirtualKey, finger: str = "right-index", *, pin: str,
                  name: str | None = None) -> bytes:
    """Enroll ``finger`` on the fingerprint sensor of ``key`` (a ``yubikey-bio`` key) the
    way a platform does, through python-fido2 over CTAPHID: a pinUvAuthToken with the
    ``be`` permission (setting ``pin`` first if the key has no PIN), then bio enrollment
    captures, ``finger`` touching the sensor, until no sample remains. Returns the template
    ID. The key's presence policy is ``Finger(finger)`` meanwhile and restored after."""
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.bio import FPBioEnrollment
    from fido2.ctap2.pin import ClientPin

    from hwtoken.emulator import Finger, fido_device

    device = fido_device(key)
    presence, key.presence = key.presence, Finger(finger)
    try:
        ctap = Ctap2(device)
        if not ctap.info.options.get("clientPin"):
            ClientPin(ctap).set_pin(pin)
        client_pin = ClientPin(ctap)
        token = client_pin.get_pin_token(pin, ClientPin.PERMISSION.BIO_ENROLL)
        bio = FPBioEnrollment(ctap, client_pin.protocol, token)
        context = bio.enroll()
        template_id = None
        while template_id is None:
            template_id = context.capture()
        if name is not None:
            bio.set_name(template_id, name)
        return template_id
    finally:
        key.presence = presence
        device.close()


# -- running suites written for hardware keys ------------------------------------------------
_session_key: Any = None
REPLUG_AWAY = 0.5  # seconds the session key stays unplugged when a suite waits for a replug
_session_tmp: str | None = None


#: marker and ini settings of the fixtures: name -> (ini help, default)
SETTINGS = {
    "pin": ("FIDO PIN the virtual key of every hwtoken fixture gets (virtual_key, "
            "fido_device, webauthn, plugged_key, hwtoken_browser), which the webauthn helper "
            "and plugged_key.ssh_env() use; default: no PIN", ""),
    "rp_id": ("RP ID of the webauthn fixture's relying party", "example.com"),
    "fingers": ("fingers enrolled on the fingerprint sensor of every hwtoken fixture's key "
                "(a yubikey-bio), comma-separated (right-index,left-thumb); needs a pin", ""),
}
MARKER = ("hwtoken(pin=None, rp_id=None, fingers=None): settings of hwtoken's fixtures for "
          "this test (the key's FIDO PIN, the webauthn helper's RP ID, the fingers enrolled "
          "on a yubikey-bio key; see the hwtoken_* ini options)")


def pytest_addoption(parser: pytest.Parser) -> None:
    for name, (help_text, default) in SETTINGS.items():
        parser.addini(f"hwtoken_{name}", help_text, default=default)
    group = parser.getgroup("hwtoken")
    group.addoption(
        "--hwtoken-fido2-hid", action="store_true", default=False,
        help="Make a fresh virtual key (in a temporary directory) discoverable through "
             "fido2.hid (list_descriptors, open_connection, open_device) for this run, so "
             "suites written for a hardware key run against it. "
             "Environment: HWTOKEN_FIDO2_HID=1, or =KEYFILE like --hwtoken-fido2-hid-key.",
    )
    group.addoption(
        "--hwtoken-fido2-hid-key", metavar="KEYFILE", default=None,
        help="Like --hwtoken-fido2-hid with the virtual key state file KEYFILE "
             "(created if missing, kept afterwards).",
    )
    parser.addini(
        "hwtoken_require_umockdev", type="bool", default=False,
        help="Fail (instead of skip) tests that use the plugged_key fixture when umockdev "
             "is not installed.")
    parser.addini(
        "hwtoken_require_browsers", type="bool", default=False,
        help="Fail (instead of skip) tests that use the hwtoken_browser fixture when the "
             "browser is not installed (also the case when $CI is set).")
    group.addoption(
        "--hwtoken-fido2-hid-profile", metavar="PROFILE", default=None,
        help="Model of the key --hwtoken-fido2-hid makes (yubikey-5, security-key, "
             "u2f-only, latest, yubikey-bio; default yubikey-5). Environment: "
             "HWTOKEN_FIDO2_HID_PROFILE.",
    )
    group.addoption(
        "--hwtoken-fido2-hid-no-replug", action="store_true", default=False,
        help="Do not play the user who unplugs and replugs the key when the suite waits "
             "for that (by polling fido2.hid.list_descriptors() while the key is idle).",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _session_key, _session_tmp
    import os

    config.addinivalue_line("markers", MARKER)
    config.addinivalue_line(
        "markers", "hwtoken_profile(name): the model of the virtual_key fixture's key "
        "(yubikey-5, security-key, u2f-only, latest, yubikey-bio)")
    profile = (config.getoption("hwtoken_fido2_hid_profile", default=None)
               or os.environ.get("HWTOKEN_FIDO2_HID_PROFILE") or None)
    spec = config.getoption("hwtoken_fido2_hid_key", default=None)
    if spec is None and config.getoption("hwtoken_fido2_hid", default=False):
        spec = ""
    if spec is None:
        env = os.environ.get("HWTOKEN_FIDO2_HID", "")
        if env in ("", "0"):
            return
        spec = "" if env == "1" else env
    if _session_key is not None:
        return
    import tempfile

    from hwtoken.emulator import VirtualKey
    from hwtoken.emulator.profiles import DEFAULT_PROFILE, get_profile
    from hwtoken.errors import HwtokenError

    with _optional_packages(pytest.UsageError):
        from hwtoken.emulator.transports.fido_hid import register_with_fido2_hid

    try:
        profile = get_profile(profile or DEFAULT_PROFILE).name
    except HwtokenError as exc:
        raise pytest.UsageError(f"--hwtoken-fido2-hid-profile: {exc}") from None
    if spec:
        path = Path(spec).expanduser()
        try:
            _session_key = (VirtualKey.load(path) if path.exists()
                            else VirtualKey.create(path, profile=profile))
        except (HwtokenError, OSError) as exc:  # a usage error, not an INTERNALERROR
            raise pytest.UsageError(f"hwtoken virtual key {path}: {exc}") from None
    else:
        _session_tmp = tempfile.mkdtemp(prefix="hwtoken-fido2-hid-")
        _session_key = VirtualKey.create(Path(_session_tmp) / "virtual-key.key",
                                         profile=profile)
    replug = None if config.getoption("hwtoken_fido2_hid_no_replug", default=False) else \
        REPLUG_AWAY
    register_with_fido2_hid(_session_key, replug_when_awaited=replug)


def fido2_hid_session_key() -> VirtualKey | None:
    """The key that ``--hwtoken-fido2-hid`` (or ``HWTOKEN_FIDO2_HID``) registered, if any.

    It unplugs and replugs itself when the suite polls discovery waiting for that (unless
    ``--hwtoken-fido2-hid-no-replug``); :func:`hwtoken.emulator.transports.fido_hid.
    simulate_replug` does it on demand.
    """
    return _session_key


def pytest_unconfigure(config: pytest.Config) -> None:
    global _session_key, _session_tmp
    if _session_key is None:
        return
    import shutil

    from hwtoken.emulator.transports.fido_hid import unregister_from_fido2_hid

    key, _session_key = _session_key, None
    unregister_from_fido2_hid(key)
    key.close()
    if _session_tmp is not None:
        shutil.rmtree(_session_tmp, ignore_errors=True)
        _session_tmp = None


# -- fixtures ----------------------------------------------------------------------------
@contextlib.contextmanager
def _optional_packages(fail: Callable[[str], Any] | None = None) -> Iterator[None]:
    """A missing optional package (fido2, usbip, selenium ...) ends the test with the one
    line that names the extra to install, not an import traceback from inside hwtoken."""
    from hwtoken.extras import missing_dependency

    try:
        yield
    except ImportError as exc:
        missing = missing_dependency(exc)
        if missing is None:
            raise
        message = f"hwtoken: {missing}"
        if fail is not None:
            raise fail(message) from None
        pytest.fail(message, pytrace=False)


@pytest.fixture
def virtual_key(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VirtualKey]:
    """A fresh virtual key whose state file lives in the test's tmp dir.

    Its profile: the fixture's parameter (indirect parametrization), else the test's
    ``hwtoken_profile`` marker, else ``yubikey-5``. With a ``pin`` setting (the
    ``hwtoken`` marker or the ``hwtoken_pin`` ini option) it has that FIDO2 PIN, so every
    fixture built on it (``fido_device``, ``plugged_key``, ``hwtoken_browser``...) does;
    with ``fingers`` (a ``yubikey-bio`` key) those fingers are enrolled
    (:func:`enroll_finger`).
    """
    from hwtoken.emulator.profiles import DEFAULT_PROFILE, get_profile

    profile = getattr(request, "param", None)
    if profile is None:
        marker = request.node.get_closest_marker("hwtoken_profile")
        profile = marker.args[0] if marker is not None and marker.args else DEFAULT_PROFILE
    with _optional_packages():
        from hwtoken.emulator import create_key

        pin = _pin_for(request, get_profile(str(profile)))
        key = create_key(tmp_path / "virtual-key.key", profile=str(profile), pin=pin)
    try:
        fingers = [f.strip() for f in (setting(request, "fingers") or "").split(",")
                   if f.strip()]
        if fingers and not pin:
            raise pytest.UsageError("the hwtoken fingers setting needs a pin setting too "
                                    "(enrolling a finger takes a PIN)")
        for finger in fingers:
            assert pin is not None
            enroll_finger(key, finger, pin=pin)
        yield key
    finally:
        key.close()


def setting(request: pytest.FixtureRequest, name: str) -> str | None:
    """A fixture setting: the test's ``hwtoken`` marker, else the ini option, else None."""
    marker = request.node.get_closest_marker("hwtoken")
    if marker is not None:
        unknown = set(marker.kwargs) - set(SETTINGS)
        if unknown or marker.args:
            raise pytest.UsageError(f"@pytest.mark.hwtoken takes only {', '.join(SETTINGS)} "
                                    f"as keywords, not {sorted(unknown) or marker.args}")
        if name in marker.kwargs:
            value = marker.kwargs[name]
            return None if value is None else str(value)
    return str(request.config.getini(f"hwtoken_{name}")) or None


def _pin_for(request: pytest.FixtureRequest, profile: Any) -> str | None:
    """The PIN a new key of ``profile`` gets: the ``pin`` setting. A U2F-only model has no
    PIN: the project-wide ini option passes it by, a marker asking for one is an error."""
    pin = setting(request, "pin")
    if pin is None or profile.ctap2:
        return pin
    marker = request.node.get_closest_marker("hwtoken")
    if marker is not None and marker.kwargs.get("pin") is not None:
        pytest.fail(f"@pytest.mark.hwtoken(pin=...): the {profile.name} model has no FIDO2 "
                    "PIN (it speaks only U2F)", pytrace=False)
    return None


@pytest.fixture
def fido_device(virtual_key: VirtualKey) -> Iterator[CtapHidDevice]:
    """A ``fido2.hid.CtapHidDevice`` on ``virtual_key`` (in process, full CTAPHID path)."""
    from hwtoken.emulator import fido_device as open_device

    with _optional_packages():
        device = open_device(virtual_key)
    try:
        yield device
    finally:
        device.close()


@pytest.fixture
def webauthn(fido_device: CtapHidDevice, request: pytest.FixtureRequest) -> WebAuthnHelper:
    """A :class:`WebAuthnHelper` on ``fido_device`` for the ``rp_id`` setting (default
    ``example.com``), using the ``pin`` setting when there is one."""
    return WebAuthnHelper(fido_device, rp_id=setting(request, "rp_id") or "example.com",
                          pin=setting(request, "pin"))


class PluggedKeyHelper:
    """A virtual key plugged in as a local USB device for the programs a test starts.

    ``env`` is the environment that makes a program see the key (umockdev's
    ``LD_PRELOAD`` library and its device tree); :meth:`run` and :meth:`popen` are
    ``subprocess.run``/``Popen`` with it. ``hidraw`` is the key's FIDO node
    (``/dev/hidrawN`` as the program sees it), ``otp_hidraw`` its OTP keyboard node.
    ``pin`` is the key's PIN (the ``pin`` setting); :meth:`ssh_env` answers OpenSSH's PIN
    prompts with it, :meth:`chromium` hands out how to start Chromium with the key.
    """

    def __init__(self, key: VirtualKey, testbed: Any, plugged: Any,
                 pin: str | None = None) -> None:
        self.key = key
        self.testbed = testbed
        self.plugged = plugged
        self.pin = pin

    @property
    def env(self) -> dict[str, str]:
        return self.testbed.env()

    @property
    def hidraw(self) -> str:
        return str(self.plugged.fido_hidraw)

    @property
    def otp_hidraw(self) -> str:
        return str(self.plugged.otp_hidraw)

    def run(self, argv: Any, **kwargs: Any) -> Any:
        """``subprocess.run(argv, ...)`` with the key plugged in."""
        return self.testbed.run(argv, **kwargs)

    def popen(self, argv: Any, **kwargs: Any) -> Any:
        """``subprocess.Popen(argv, ...)`` with the key plugged in."""
        return self.testbed.popen(argv, **kwargs)

    def ssh_env(self, pin: str | None = None) -> dict[str, str]:
        """:attr:`env` with OpenSSH's security-key PIN prompts answered by ``pin`` (default:
        the key's PIN) through ``hwtoken-ssh-askpass``: for ``ssh-keygen -K``, ``-O
        verify-required`` and logins with such keys (:mod:`hwtoken.ssh_askpass`)."""
        from hwtoken.ssh_askpass import askpass_env

        chosen = pin if pin is not None else self.pin
        if chosen is None:
            raise ValueError("ssh_env: the key has no PIN (set one with "
                             "@pytest.mark.hwtoken(pin=...) or pass pin=)")
        return askpass_env(chosen, self.env)

    def chromium(self, **options: Any) -> Any:
        """How to start Debian's Chromium so that it finds the key: a
        :class:`hwtoken.browser.chromium.ChromiumLaunch` (``executable``, ``args``,
        ``env``, ``driver``) for Playwright's ``chromium.launch`` or Selenium's
        ``ChromeOptions``/``Service``. ``options``: ``headless``, ``device_log``."""
        from hwtoken.browser.chromium import launch_options

        return launch_options(self.env, **options)

    def unplug(self) -> None:
        """Pull the key out (programs holding it open get ENODEV)."""
        self.testbed.unplug(self.plugged)

    def plug(self) -> None:
        """Plug it back in (after :meth:`unplug`)."""
        self.plugged = self.testbed.plug(self.key)


@pytest.fixture
def plugged_key(virtual_key: VirtualKey, request: pytest.FixtureRequest
                ) -> Iterator[PluggedKeyHelper]:
    """``virtual_key`` plugged in as a local USB device (umockdev) for subprocesses.

    Skipped when umockdev is not installed, unless the ini option
    ``hwtoken_require_umockdev = true`` makes that a failure.
    """
    with _optional_packages():
        from hwtoken.emulator.transports.umockdev import Testbed, UmockdevUnavailable

        try:
            testbed = Testbed()
        except UmockdevUnavailable as exc:
            if request.config.getini("hwtoken_require_umockdev"):
                pytest.fail(str(exc))
            pytest.skip(str(exc))
    try:
        with _optional_packages():
            plugged = testbed.plug(virtual_key)
        yield PluggedKeyHelper(virtual_key, testbed, plugged,
                               pin=_pin_for(request, virtual_key.profile))
    finally:
        testbed.close()


# -- browsers ------------------------------------------------------------------------------
def require_browser(request: pytest.FixtureRequest, name: str,
                    binary: str | None = None) -> None:
    """Skip the test when browser ``name`` (``binary``: that one) is not installed, saying
    what to install; fail instead under CI (``$CI``) or with the ini option
    ``hwtoken_require_browsers``."""
    import os

    from hwtoken.browser import BrowserUnavailable, find_browser

    try:
        find_browser(name, binary)
        return
    except BrowserUnavailable as exc:
        reason = f"{name}: {exc}"
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
    if ci or request.config.getini("hwtoken_require_browsers"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def hwtoken_browser(request: pytest.FixtureRequest, plugged_key: PluggedKeyHelper,
                    tmp_path: Path) -> Iterator[Any]:
    """A headless browser with a fresh profile, running where ``plugged_key`` is plugged in.

    Chromium unless parametrized: ``@pytest.mark.parametrize("hwtoken_browser",
    ["chromium", "firefox"], indirect=True)`` (a :class:`hwtoken.browser.BrowserSpec`
    picks another binary). Its log (with the FIDO/HID device log) is
    ``tmp_path / "<name>.log"``. Quit, and its processes ended, at teardown.
    """
    from hwtoken.browser import BrowserSpec, start_browser

    param = getattr(request, "param", None) or "chromium"
    spec = param if isinstance(param, BrowserSpec) else BrowserSpec(str(param))
    require_browser(request, spec.name, spec.binary)
    with _optional_packages():
        started = start_browser(spec.name, plugged_key.testbed, workdir=tmp_path,
                                binary=spec.binary)
    with started:
        yield started


@pytest.fixture
def webauthn_site() -> Iterator[Any]:
    """The reference relying party (``Fido2Server`` behind a sign-up/sign-in page) on
    ``http://localhost:PORT/``; its ``events`` say what it verified."""
    with _optional_packages():
        from hwtoken.browser.site import WebAuthnSite

        site = WebAuthnSite()
    with site:
        yield site
