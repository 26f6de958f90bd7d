"""The state directory and its folders are private (0700): another user cannot even list the
names of your virtual keys and credential files; an older, open one is tightened with a
warning."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hwtoken import paths

HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))
LIST = ("import os, sys\ntry:\n    print(os.listdir(sys.argv[1]))\n"
        "except OSError as e:\n    print(e.strerror)")


@pytest.fixture
def reachable_state(monkeypatch):
    """A state directory whose parent every user can enter (pytest's tree is 0700)."""
    parent = Path(tempfile.mkdtemp(prefix="hwtoken-state-", dir="/tmp"))
    parent.chmod(0o755)
    state = parent / "state"
    monkeypatch.setenv("HWTOKEN_STATE_DIR", str(state))
    paths.set_state_dir(None)
    yield state
    shutil.rmtree(parent, ignore_errors=True)


def _hwtoken(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HWTOKEN, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent"})


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_a_new_state_directory_is_private(reachable_state, other_user):
    old = os.umask(0o022)  # the usual umask, which made 0755 folders before
    try:
        made = _hwtoken("emulate", "create", "alice")
    finally:
        os.umask(old)
    assert made.returncode == 0, made.stderr
    assert _mode(reachable_state) == _mode(reachable_state / "keys") == 0o700
    assert _mode(reachable_state.parent) == 0o755  # only hwtoken's own folders change
    seen = other_user.python_as_other_user(LIST, str(reachable_state / "keys"))
    assert seen.stdout.strip() == "Permission denied", seen


def test_an_open_state_directory_is_tightened_with_a_warning(reachable_state, other_user):
    assert _hwtoken("emulate", "create", "alice").returncode == 0
    for d in (reachable_state, reachable_state / "keys"):
        d.chmod(0o755)  # as an older hwtoken left it
    before = other_user.python_as_other_user(LIST, str(reachable_state / "keys"))
    assert "alice.key" in before.stdout  # what the review saw
    listed = _hwtoken("emulate", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("alice "), listed
    assert listed.stderr.splitlines() == [
        f"warning: {d} was open to other users (mode 0755): they could list your virtual "
        "keys and credential files; made it private (0700)"
        for d in (reachable_state, reachable_state / "keys")]
    assert _mode(reachable_state) == _mode(reachable_state / "keys") == 0o700
    after = other_user.python_as_other_user(LIST, str(reachable_state / "keys"))
    assert after.stdout.strip() == "Permission denied", after
    again = _hwtoken("emulate", "list")
    assert again.returncode == 0 and again.stderr == ""


def test_the_credential_folders_are_private(tmp_path):
    from hwtoken.fido import credfile

    target = credfile.default_dir() / "example.com-alice-0011.json"
    old = os.umask(0o022)
    try:
        credfile.check_writable(target, make_parents=True)
    finally:
        os.umask(old)
    state = paths.state_dir()
    for d in (state, state / "fido2", state / "fido2" / "credentials"):
        assert _mode(d) == 0o700, d


def test_a_folder_outside_the_state_directory_is_left_as_it_is(tmp_path):
    outside = tmp_path / "elsewhere" / "deeper"
    old = os.umask(0o022)
    try:
        assert paths.private_dir(outside) == outside
    finally:
        os.umask(old)
    assert _mode(outside) == 0o755
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    paths.private_dir(loose, create=False)
    assert _mode(loose) == 0o755


def test_reading_does_not_create_the_state_directory():
    paths.private_dir(paths.keys_dir(), create=False)
    assert not paths.state_dir().joinpath("keys").exists()
