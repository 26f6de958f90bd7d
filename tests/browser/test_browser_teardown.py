"""A browser is torn down whatever happened to it: after its own process died under it
(a crash), close() still ends every process it started and removes its profile (and
does not wait on the dead protocol connection: the suite's timeout would catch a hang)."""

from __future__ import annotations

import os
import signal

import pytest

from hwtoken.browser import BROWSERS, start_browser
from hwtoken.testing import require_browser

pytestmark = pytest.mark.slow  # starts a real browser: make test-slow runs it


@pytest.mark.parametrize("name", BROWSERS)
def test_close_after_the_browser_died(request, plugged_key, tmp_path, name):
    require_browser(request, name)
    browser = start_browser(name, plugged_key.testbed, workdir=tmp_path)
    try:
        browser.get("about:blank")
        assert len(browser.processes()) > 1  # the leader and what it started
        profile = browser.profile
        assert profile.is_dir()
        os.kill(browser.pid, signal.SIGKILL)  # chromedriver, or Firefox itself
    finally:
        browser.close()
    assert browser.processes() == []
    assert not profile.exists()
    assert (tmp_path / f"{name}.log").exists()  # the log stays for a post-mortem
