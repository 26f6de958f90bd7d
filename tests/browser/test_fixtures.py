"""The pytest plugin's browser fixtures as a developer's suite sees them: a browser that is
not installed skips the test and says what to install, except under CI (``$CI``) or with
``hwtoken_require_browsers``, where it fails; and the fixtures work in a plain project
with no conftest."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

USER_TEST = '''
import pytest
from hwtoken.browser.site import SitePage

@pytest.mark.parametrize("browser", ["BROWSER"], indirect=True)
def test_login(browser, webauthn_site):
    page = SitePage(browser, webauthn_site).open()
    assert page.register("alice")["ok"]
    assert page.sign_in("alice")["ok"]
'''


def run_suite(tmp_path, ini: str, browser: str = "firefox",
              **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(USER_TEST.replace("BROWSER", browser))
    (tmp_path / "pytest.ini").write_text("[pytest]\n" + ini)
    run_env = {k: v for k, v in os.environ.items() if k != "CI"}
    run_env.update(env)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p",
                           "no:cacheprovider", str(tmp_path)], cwd=tmp_path, env=run_env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("ini", "env", "outcome"), [
    ("", {}, "1 skipped"),
    ("", {"CI": "true"}, "1 error"),
    ("hwtoken_require_browsers = true\n", {}, "1 error"),
])
def test_a_missing_browser(tmp_path, ini, env, outcome):
    missing = str(tmp_path / "no-such-firefox")
    proc = run_suite(tmp_path, ini, HWTOKEN_FIREFOX=missing, **env)
    assert outcome in proc.stdout, proc.stdout + proc.stderr
    assert "firefox-esr" in proc.stdout  # what to install


def test_the_fixtures_in_a_plain_project(tmp_path):
    proc = run_suite(tmp_path, "", "chromium")
    assert "1 passed" in proc.stdout, proc.stdout + proc.stderr
