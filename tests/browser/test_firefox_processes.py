"""Firefox under umockdev forks its content processes from its fork server, not from the
browser process. A child forked from the multi-threaded browser can deadlock before exec
inside umockdev's preload (as Chromium's network service did: tests/browser/
test_chromium_processes.py), and the page it was to show never loads: ESR 140 hung on the
first page load in 5 of 30 starts on the loaded 2-core test machine, each time with a child
stuck in futex_wait under the browser's own command line. The fork server is one process,
started once and single-threaded when it forks, so the browser itself forks once."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser_versions import FIREFOX_PARAMS

from hwtoken.browser import start_browser
from hwtoken.testing import require_browser

pytestmark = pytest.mark.slow  # starts a real browser: make test-slow runs it


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


@pytest.mark.parametrize("spec", [p.values[0] for p in FIREFOX_PARAMS],
                         ids=[p.id for p in FIREFOX_PARAMS])
def test_firefox_content_processes_come_from_the_fork_server(request, plugged_key, tmp_path,
                                                             spec):
    require_browser(request, "firefox", spec.binary)
    with start_browser("firefox", plugged_key.testbed, workdir=tmp_path,
                       binary=spec.binary) as firefox:
        firefox.get("data:text/html,<p>loaded</p>")
        children = {pid: parent_of(pid) for pid in firefox.processes() if pid != firefox.pid}
        cmdlines = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    for pid in children}
    shown = {pid: (children[pid], b" ".join(cmdlines[pid])[:160]) for pid in children}
    # the browser forked one process, the fork server; the content processes come from it
    forked_by_browser = [pid for pid, parent in children.items() if parent == firefox.pid]
    assert len(forked_by_browser) == 1, shown
    [server] = forked_by_browser
    assert b"-ipcHandle" in cmdlines[server], shown
    assert sum(parent == server for parent in children.values()) >= 2, shown
