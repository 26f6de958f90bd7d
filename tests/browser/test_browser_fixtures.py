"""The pytest plugin's browser fixtures as a developer's suite sees them: a browser that is
not installed skips the test and says what to install, except under CI (``$CI``) or with
``hwtoken_require_browsers``, where it fails; and the fixtures work in a plain project
with no conftest (the documented example, run verbatim)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

USER_TEST = '''
import pytest
from hwtoken.browser.site import SitePage

@pytest.mark.parametrize("browser", ["firefox"], indirect=True)
def test_login(browser, webauthn_site):
    page = SitePage(browser, webauthn_site).open()
    assert page.register("alice")["ok"]
    assert page.sign_in("alice")["ok"]
'''


def run_suite(tmp_path, ini: str, **env: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user.py").write_text(USER_TEST)
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


def browser_example(path: Path) -> str:
    """The browser example of docs/browsers.md (and of the README)."""
    m = re.search(r"```python\n(import pytest\nfrom hwtoken.browser.*?)```", path.read_text(),
                  re.S)
    assert m, f"{path.name} lost its browser example"
    return m.group(1)


@pytest.mark.slow
def test_the_documented_example_in_a_plain_project(tmp_path):
    """The example of docs/browsers.md, verbatim, in a project with no conftest: the
    plugin's fixtures are all it needs. The README shows the same example."""
    example = browser_example(ROOT / "docs" / "browsers.md")
    assert browser_example(ROOT / "README.md") == example
    (tmp_path / "test_login.py").write_text(example)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=180, env={k: v for k, v in os.environ.items() if k != "CI"})
    assert "3 passed" in proc.stdout, proc.stdout + proc.stderr
