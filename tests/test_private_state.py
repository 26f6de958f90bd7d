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


# -- in process: where the state directory is, and how its folders are made private ---------
def test_the_state_directory_is_found_in_order(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HWTOKEN_STATE_DIR", "~/state")
    monkeypatch.setenv("XDG_DATA_HOME", "~/xdg")
    paths.set_state_dir("~/given")
    try:
        assert paths.state_dir() == tmp_path / "home" / "given"
        paths.set_state_dir("")  # as no --state-dir
        assert paths.state_dir() == tmp_path / "home" / "state"
        paths.set_state_dir(None)
        assert paths.state_dir() == tmp_path / "home" / "state"
        assert paths.keys_dir() == tmp_path / "home" / "state" / "keys"
        monkeypatch.setenv("HWTOKEN_STATE_DIR", "")
        assert paths.state_dir() == tmp_path / "home" / "xdg" / "hwtoken"
        monkeypatch.delenv("HWTOKEN_STATE_DIR")
        assert paths.state_dir() == tmp_path / "home" / "xdg" / "hwtoken"
        monkeypatch.setenv("XDG_DATA_HOME", "")
        assert paths.state_dir() == tmp_path / "home" / ".local" / "share" / "hwtoken"
        monkeypatch.delenv("XDG_DATA_HOME")
        assert paths.state_dir() == tmp_path / "home" / ".local" / "share" / "hwtoken"
    finally:
        paths.set_state_dir(None)


def test_virtual_key_names(monkeypatch, tmp_path):
    from hwtoken.errors import InvalidInput

    monkeypatch.setenv("HWTOKEN_STATE_DIR", str(tmp_path))
    for name in ("a", "_x", "9", "Az09_-", "b" * 64):
        assert paths.virtual_key_path(name) == tmp_path / "keys" / f"{name}.key"
    rule = "use 1 to 64 ASCII letters, digits, - and _ (not starting with -)"
    for name, shown in (("", "''"), ("-a", "'-a'"), ("b" * 65, repr("b" * 65)),
                        ("a.b", "'a.b'"), ("../x", "'../x'"), ("a\n", "'a\\n'"),
                        ("\u00e4", "'\u00e4'"), ("\udcff", "'\\\\udcff'"), (5, "'5'"),
                        (None, "'None'")):
        with pytest.raises(InvalidInput) as exc:
            paths.virtual_key_path(name)  # type: ignore[arg-type]
        assert str(exc.value) == f"invalid virtual key name {shown}: {rule}", name


@pytest.fixture
def fresh_state(monkeypatch, tmp_path):
    """A state directory below a missing folder, and nothing known to be private yet."""
    state = tmp_path / "missing" / "state"
    monkeypatch.setenv("HWTOKEN_STATE_DIR", str(state))
    monkeypatch.setattr(paths, "_private", set())
    old = os.umask(0o022)
    yield state
    os.umask(old)


def test_each_missing_level_is_made_private(fresh_state):
    deep = fresh_state / "fido2" / "credentials"
    assert paths.private_dir(deep, create=False) == deep
    assert not fresh_state.parent.exists()
    assert paths.private_dir(deep) == deep
    assert _mode(fresh_state.parent) == 0o755  # not hwtoken's
    for d in (fresh_state, fresh_state / "fido2", deep):
        assert _mode(d) == 0o700, d
    assert paths._private == {fresh_state, fresh_state / "fido2", deep}
    assert paths.PRIVATE_DIR_MODE == 0o700


def test_an_open_folder_of_ours_is_tightened_once(fresh_state, caplog):
    keys = fresh_state / "keys"
    keys.mkdir(parents=True, mode=0o755)
    fresh_state.chmod(0o750)
    with caplog.at_level("DEBUG", logger="hwtoken.paths"):
        assert paths.private_dir(keys, create=False) == keys
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("hwtoken.paths", "WARNING", f"{d} was open to other users (mode {m}): they could list "
         "your virtual keys and credential files; made it private (0700)")
        for d, m in ((fresh_state, "0750"), (keys, "0755"))]
    assert _mode(fresh_state) == _mode(keys) == 0o700
    keys.chmod(0o755)  # known private in this process: not looked at again
    caplog.clear()
    paths.private_dir(keys)
    assert _mode(keys) == 0o755 and caplog.records == []


def test_a_private_folder_is_left_as_it_is(fresh_state, caplog):
    keys = fresh_state / "keys"
    keys.mkdir(parents=True, mode=0o700)
    fresh_state.chmod(0o700)
    with caplog.at_level("DEBUG", logger="hwtoken.paths"):
        paths.private_dir(keys / "more", create=False)
    assert caplog.records == [] and paths._private == {fresh_state, keys}
    assert not (keys / "more").exists()


def test_another_users_open_folder_is_not_touched(fresh_state, caplog):
    keys = fresh_state / "keys"
    keys.mkdir(parents=True, mode=0o700)
    fresh_state.chmod(0o700)
    keys.chmod(0o755)
    os.chown(keys, 65534, 65534)
    with caplog.at_level("DEBUG", logger="hwtoken.paths"):
        paths.private_dir(keys / "sub")
    assert _mode(keys) == 0o755 and caplog.records == []
    assert keys.stat().st_uid == 65534
    assert paths._private == {fresh_state, keys / "sub"}  # keys: looked at each time
    assert _mode(keys / "sub") == 0o700
    os.chown(keys, 65534, 65534)
    keys.chmod(0o700)  # not open: private, whoever owns it
    paths.private_dir(keys)
    assert keys in paths._private


def test_a_file_in_the_way_stops_the_walk(fresh_state):
    fresh_state.mkdir(parents=True, mode=0o700)
    (fresh_state / "keys").write_text("")
    assert paths.private_dir(fresh_state / "keys" / "deeper") == fresh_state / "keys" / "deeper"
    assert (fresh_state / "keys").is_file()
    assert paths._private == {fresh_state}


def test_a_folder_made_by_another_process_meanwhile_is_checked(fresh_state, monkeypatch,
                                                                caplog):
    """Between the look and the mkdir another hwtoken made the folder (0755, as an older one
    would): it is then checked as one that was there."""
    real_mkdir = Path.mkdir
    keys = fresh_state / "keys"

    def mkdir(self: Path, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        if self == keys:
            real_mkdir(self, 0o755)  # the other process
        real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    with caplog.at_level("WARNING", logger="hwtoken.paths"):
        assert paths.private_dir(keys / "sub") == keys / "sub"
    assert _mode(keys) == _mode(keys / "sub") == 0o700
    assert [r.getMessage() for r in caplog.records] == [
        f"{keys} was open to other users (mode 0755): they could list your virtual keys and "
        "credential files; made it private (0700)"]
    assert paths._private == {fresh_state, keys, keys / "sub"}


def test_a_folder_outside_the_state_directory_may_exist_already(tmp_path):
    outside = tmp_path / "elsewhere"
    assert paths.private_dir(outside) == outside
    assert paths.private_dir(outside) == outside  # there already: fine
    assert paths.private_dir(str(tmp_path / "none"), create=False) == tmp_path / "none"
    assert not (tmp_path / "none").exists()


def test_the_state_directorys_missing_parents_are_made(fresh_state, monkeypatch):
    state = fresh_state.parent / "deeper" / "still" / "state"
    monkeypatch.setenv("HWTOKEN_STATE_DIR", str(state))
    assert paths.private_dir(state / "keys") == state / "keys"
    assert _mode(state.parent) == _mode(state.parent.parent) == 0o755  # not hwtoken's
    assert _mode(state) == _mode(state / "keys") == 0o700
