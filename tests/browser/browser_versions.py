"""The browsers the browser tests run on: Debian's Chromium, and both of Debian 12's
Firefox ESRs (main suite 140, security suite 153): the one installed and the other one
unpacked by `make deps` (tools/fetch-firefox-esr) into .cache/firefox-esr/MAJOR/.

A version that is missing is still a parameter: the test fails saying where it looked
(pyproject.toml sets hwtoken_require_browsers), it is never skipped.
"""

from __future__ import annotations

import configparser
import os
import shutil
from pathlib import Path

import pytest

from hwtoken.browser import BrowserSpec
from hwtoken.browser.firefox import PROMPT_HOOK_TESTED

ROOT = Path(__file__).resolve().parents[2]
FIREFOX_ESR_DIR = ROOT / ".cache" / "firefox-esr"


def firefox_version(binary: str | os.PathLike[str]) -> str | None:
    """The version in application.ini beside the real binary (no browser started)."""
    ini = Path(binary).resolve().parent / "application.ini"
    parser = configparser.ConfigParser()
    try:
        parser.read_string(ini.read_text())
        return parser.get("App", "Version")
    except (OSError, configparser.Error):
        return None


def firefox_binaries() -> dict[int, str]:
    """Major version -> binary, for the ESRs the tests run on."""
    found: dict[int, str] = {}
    installed = shutil.which("firefox-esr")
    candidates = [installed] if installed else []
    candidates += [str(FIREFOX_ESR_DIR / str(major) / "usr/lib/firefox-esr/firefox-esr")
                   for major in PROMPT_HOOK_TESTED]
    for binary in candidates:
        version = firefox_version(binary)
        if version is not None:
            found.setdefault(int(version.split(".")[0]), binary)
    for major in PROMPT_HOOK_TESTED:  # missing: a path that fails the test, saying so
        found.setdefault(major, str(FIREFOX_ESR_DIR / str(major) /
                                    "usr/lib/firefox-esr/firefox-esr (run make deps)"))
    return dict(sorted(found.items()))


FIREFOXES = firefox_binaries()
#: pytest params for the hwtoken_browser fixture, one per Firefox ESR
FIREFOX_PARAMS = [pytest.param(BrowserSpec("firefox", binary), id=f"firefox-{major}")
                  for major, binary in FIREFOXES.items()]
ALL_PARAMS = [pytest.param("chromium", id="chromium"), *FIREFOX_PARAMS]


def major_version(browser) -> int:
    """The running browser's major version (what it reported when it started)."""
    return int(browser.version.split(".")[0])
