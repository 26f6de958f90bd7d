"""A browser that does not do what a test asked in time says so with its own log: a page
that never loads ends in a BrowserError naming the URL and ending with the tail of the
browser's log (Chromium's and chromedriver's, or Firefox's) and its processes with their
state, not in a bare driver timeout."""

from __future__ import annotations

import contextlib
import socket

import pytest
from browser_versions import FIREFOXES

from hwtoken.browser import BROWSERS, BrowserError, BrowserUnavailable, start_browser
from hwtoken.testing import require_browser


@contextlib.contextmanager
def _never_answering_server():
    """An http:// URL on 127.0.0.1 whose server takes connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel completes the handshakes; nobody reads or writes
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/"


@pytest.mark.slow
@pytest.mark.parametrize("name", BROWSERS)
def test_a_page_that_never_loads_fails_with_the_browser_log(request, tmp_path, name):
    require_browser(request, name)
    with _never_answering_server() as url, \
            start_browser(name, workdir=tmp_path, timeout=3) as browser:
        with pytest.raises(BrowserError) as failed:
            browser.get(url)
        browser.get("about:blank")  # and the browser goes on working
    first, *rest = str(failed.value).splitlines()
    assert first.startswith(f"{name} did not load {url}: ")
    assert f"--- last lines of {tmp_path / f'{name}.log'} ---" in rest
    processes = rest[rest.index("--- processes (pid, state, kernel wait, command) ---") + 1:]
    leader = [line for line in processes if line.startswith(f"{browser.pid} ")]
    assert len(leader) == 1 and leader[0].split()[1] in "RSD", processes  # state of a live one


@pytest.mark.slow  # starts Firefox
def test_a_firefox_whose_prompts_cannot_be_answered_names_its_version(request, tmp_path):
    """ESR 140 keeps WebAuthnPromptHelper as a global of the browser window; with it gone
    (as in a Firefox that moved it where hwtoken does not look) answer_prompts is a
    BrowserError naming the version and the versions it is tested with."""
    binary = FIREFOXES[140]
    require_browser(request, "firefox", binary)
    with start_browser("firefox", workdir=tmp_path, binary=binary) as firefox:
        firefox.execute_chrome("window.WebAuthnPromptHelper = undefined;")
        with pytest.raises(BrowserError) as failed:
            firefox.answer_prompts(pin="1234")
    assert firefox.version.startswith("140.")
    assert str(failed.value) == (
        f"Firefox {firefox.version}: cannot answer its WebAuthn prompts (no "
        "WebAuthnPromptHelper in this Firefox); hwtoken answers them in Firefox ESR 140 and "
        "153 (docs/browsers.md)")


def test_a_browser_binary_that_is_not_there(tmp_path):
    with pytest.raises(BrowserUnavailable, match="^Firefox /nonexistent/firefox is not an "
                                                "executable file$"):
        start_browser("firefox", workdir=tmp_path, binary="/nonexistent/firefox")
