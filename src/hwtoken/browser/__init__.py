"""Real browsers, headless, against virtual keys: WebAuthn end to end in tests.

:func:`start_browser` starts Chromium (through Selenium and chromedriver) or Firefox
(through its own Marionette protocol) with a fresh profile, inside a umockdev testbed
(:class:`hwtoken.emulator.transports.umockdev.Testbed`) so that the browser finds the
testbed's virtual keys as ``/dev/hidrawN``, exactly as it finds a hardware key. It hands
back a :class:`Browser`: a small driver API (``get``, ``click``, ``fill``, ``text``,
``execute``, ``wait_for``) that is the same for both, plus each browser's own driver
(``Chromium.webdriver``, ``Firefox.marionette``). ``close()`` ends the browser's whole
process group and removes its profile.

:mod:`hwtoken.browser.site` is a reference relying party (a page and a
``fido2.server.Fido2Server`` behind it) to try that on. The pytest fixtures are in
:mod:`hwtoken.testing` (``browser``, ``webauthn_site``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hwtoken.browser.driver import Browser, BrowserError, BrowserUnavailable, Installed

BROWSERS = ("chromium", "firefox")


@dataclass(frozen=True)
class BrowserSpec:
    """A browser to start: its name and, to test another version than the one on PATH,
    its binary. The ``hwtoken_browser`` fixture takes one as its (indirect) parameter:
    ``pytest.param(BrowserSpec("firefox", "/opt/firefox-140/firefox"), id="firefox-140")``.
    """

    name: str
    binary: str | None = None


def find_browser(name: str, binary: str | os.PathLike[str] | None = None) -> Installed:
    """Where ``name``'s programs are (``binary``: that one); :class:`BrowserUnavailable`
    (saying what to install)."""
    if name == "chromium":
        from hwtoken.browser import chromium

        return chromium.find(binary)
    if name == "firefox":
        from hwtoken.browser import firefox

        return firefox.find(binary)
    raise ValueError(f"unknown browser {name!r} (one of {', '.join(BROWSERS)})")


def start_browser(name: str, testbed: Any = None, *, env: Mapping[str, str] | None = None,
                  workdir: str | os.PathLike[str] | None = None, device_log: bool = True,
                  **options: Any) -> Browser:
    """Start ``name`` (``chromium`` or ``firefox``) headless with a fresh profile.

    With ``testbed`` the browser runs in it (``testbed.env(env)``) and sees its keys.
    ``workdir`` holds the profile (removed at close) and the browser's log
    (``<name>.log``: its stderr, with the FIDO/HID device log when ``device_log``);
    without one a temporary directory is used and removed. ``options``: ``binary`` (a
    browser other than the one on PATH), ``timeout``, ``extra_args``, Firefox's ``prefs``.
    Use the result as a context manager, or call ``close()``.
    """
    run_env = testbed.env(env) if testbed is not None else dict(os.environ if env is None
                                                                 else env)
    if name == "chromium":
        from hwtoken.browser.chromium import Chromium

        return Chromium(run_env, workdir=workdir, device_log=device_log, **options)
    if name == "firefox":
        from hwtoken.browser.firefox import Firefox

        return Firefox(run_env, workdir=workdir, device_log=device_log, **options)
    raise ValueError(f"unknown browser {name!r} (one of {', '.join(BROWSERS)})")


__all__ = ["BROWSERS", "Browser", "BrowserError", "BrowserSpec", "BrowserUnavailable",
           "find_browser", "start_browser"]
