"""Chromium under umockdev runs its network service in the browser process: a child forked
from the multi-threaded browser can deadlock before exec inside umockdev's preload, and
without a network service no page loads. A stress run of 150 starts in a testbed hung on
the first page load 6 times, each time with the network service's child stuck under the
browser's own command line; with the network service in process, none did."""

from __future__ import annotations

import pytest

from hwtoken.browser import start_browser
from hwtoken.browser.driver import describe_process
from hwtoken.testing import require_browser

pytestmark = pytest.mark.slow  # starts a real browser: make test-slow runs it


def test_chromium_forks_no_network_service_process(request, plugged_key, tmp_path):
    require_browser(request, "chromium")
    with start_browser("chromium", plugged_key.testbed, workdir=tmp_path) as browser:
        browser.get("data:text/html,<p>loaded</p>")
        processes = [describe_process(pid) for pid in browser.processes()]
    assert any("--type=renderer" in p for p in processes), processes  # the listing works
    assert not any("NetworkService" in p for p in processes), processes
