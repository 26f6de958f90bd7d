"""Lock files fail closed: never followed through a planted link, never another user's, never
waited for without end (the replay lock, a virtual key's lock, the inventory and its holds).

The planted links and files are made by another user (uid 65534) in a directory it owns, as
in the security review; the kernel's protected-symlink rule does not cover such a
directory (it is not sticky and world-writable), so only hwtoken's own checks stand in the
way.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwtoken import fileio, otp
from hwtoken.cli import cli
from hwtoken.errors import DeviceBusy, InvalidInput
from hwtoken.fileio import FileLock

SECRET = "JBSWY3DPEHPK3PXP"
HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))


def _verify(state: Path, *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    code = otp.TOTP(otp.decode_secret(SECRET)).now()
    return subprocess.run([HWTOKEN, "otp", "verify", "-", code, "--state", str(state)],
                          input=SECRET, capture_output=True, text=True, timeout=timeout)


def _one_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_replay_lock_link_planted_by_another_user_is_not_followed(other_user,
                                                                     other_users_dir, tmp_path):
    victim = tmp_path / "created-by-root"
    state = other_users_dir / "state.json"
    planted = other_user.as_other_user(["ln", "-s", str(victim), f"{state}.lock"])
    assert planted.returncode == 0, planted.stderr
    proc = _verify(state)
    _one_error(proc, f"the lock file of the replay state file {state} {state}.lock is a "
                     "symbolic link")
    assert not victim.exists() and not state.exists()


def test_a_replay_lock_another_user_holds_is_refused_at_once(other_user, other_users_dir):
    state = other_users_dir / "state.json"
    holder = other_user.start_as_other_user([other_user.other_user_python(), "-c", (
        "import fcntl, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "sys.stdin.read()\n"), f"{state}.lock"])
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = _verify(state, timeout=30)  # before: waited for ever
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    _one_error(proc, f"{state}.lock belongs to uid 65534, not to you (uid 0)")
    assert not state.exists()


def test_a_lock_held_too_long_by_another_process_ends_in_a_clear_error(tmp_path, monkeypatch):
    state = tmp_path / "state.json"
    held = FileLock(tmp_path / "state.json.lock")  # a stuck verifier of the same user
    monkeypatch.setattr(fileio, "LOCK_TIMEOUT", 0.3)
    try:
        code = otp.TOTP(otp.decode_secret(SECRET)).now()
        result = CliRunner().invoke(cli, ["otp", "verify", "-", code, "--state", str(state)],
                                    input=SECRET)
    finally:
        held.release()
    assert result.exit_code == 2, result.output
    assert (f"error: replay state file {state} is locked by another process (lock "
            f"{state}.lock); gave up after waiting 0.3 s") in result.stderr
    assert not state.exists()


def test_the_library_takes_a_lock_timeout(tmp_path):
    held = FileLock(tmp_path / "r.json.lock")
    gen = otp.TOTP(otp.decode_secret(SECRET))
    try:
        with pytest.raises(DeviceBusy, match="gave up after waiting 0.1 s"):
            otp.Verifier(gen, store=otp.ReplayStore(tmp_path / "r.json", lock_timeout=0.1)
                         ).verify(gen.now())
    finally:
        held.release()
    assert otp.Verifier(gen, store=otp.ReplayStore(tmp_path / "r.json")).verify(gen.now())


def test_a_blocking_lock_waits_for_its_release(tmp_path, monkeypatch):
    """The wait is a wait (not an error at the first try): it ends when the holder lets go."""
    held = FileLock(tmp_path / "l")
    attempts: list[bool] = []
    retried = threading.Event()
    real_flock = fcntl.flock

    def flock(fd: int, op: int) -> None:
        try:
            real_flock(fd, op)
        except BlockingIOError:
            attempts.append(False)
            if len(attempts) >= 3:
                retried.set()
            raise

    monkeypatch.setattr(fcntl, "flock", flock)
    got: list[FileLock] = []
    waiter = threading.Thread(target=lambda: got.append(
        FileLock(tmp_path / "l", blocking=True, timeout=60)))
    waiter.start()
    try:
        assert retried.wait(30)
        assert not got
    finally:
        held.release()
        waiter.join(30)
    assert len(got) == 1 and got[0].held
    got[0].release()


def test_a_virtual_keys_lock_link_is_refused(other_user, other_users_dir, tmp_path):
    from hwtoken.emulator import VirtualKey

    key = other_users_dir / "k.key"
    VirtualKey.create(tmp_path / "k.key").close()
    (tmp_path / "k.key").rename(key)
    (tmp_path / "k.key.lock").unlink()
    victim = tmp_path / "victim"
    assert other_user.as_other_user(["ln", "-s", str(victim), f"{key}.lock"]).returncode == 0
    with pytest.raises(InvalidInput, match="is a symbolic link"):
        VirtualKey.load(key)
    assert not victim.exists()


def test_a_lock_file_of_another_user_is_refused(other_user, other_users_dir):
    lock = other_users_dir / "x.lock"
    assert other_user.as_other_user(["touch", str(lock)]).returncode == 0
    with pytest.raises(InvalidInput, match=f"{lock} belongs to uid 65534"):
        FileLock(lock)


def test_a_lock_path_that_is_no_file_is_refused(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(InvalidInput, match="is not a regular file"):
        fileio.open_own_file(tmp_path / "fifo", os.O_RDONLY | os.O_NONBLOCK)


def test_is_locked_does_not_follow_a_link(tmp_path):
    held = FileLock(tmp_path / "real.lock")
    try:
        (tmp_path / "link.lock").symlink_to(tmp_path / "real.lock")
        assert fileio.is_locked(tmp_path / "real.lock")
        assert not fileio.is_locked(tmp_path / "link.lock")
    finally:
        held.release()


# -- the provisioning inventory ---------------------------------------------------------------
def test_an_inventory_link_planted_by_another_user_is_refused(other_user, other_users_dir,
                                                              tmp_path):
    from hwtoken.provision.sqlite import SqliteInventory

    victim = tmp_path / "victim.db"
    db = other_users_dir / "keys.db"
    assert other_user.as_other_user(["ln", "-s", str(victim), str(db)]).returncode == 0
    with pytest.raises(InvalidInput, match=f"the inventory {db} is a symbolic link"):
        SqliteInventory(db)
    assert not victim.exists()


def test_an_inventory_holds_link_planted_by_another_user_is_refused(other_user,
                                                                     other_users_dir, tmp_path):
    from hwtoken.provision.sqlite import SqliteInventory

    db = other_users_dir / "keys.db"
    inventory = SqliteInventory(db)
    try:
        victim = tmp_path / "victim"
        planted = other_user.as_other_user(["ln", "-s", str(victim), f"{db}.holds"])
        assert planted.returncode == 0, planted.stderr
        with pytest.raises(InvalidInput, match=r"\.holds is a symbolic link"), \
                inventory.hold(1234):
            pass
        assert not victim.exists()
    finally:
        inventory.close()


def test_an_inventory_of_another_user_is_refused(other_user, other_users_dir):
    from hwtoken.provision.sqlite import SqliteInventory

    db = other_users_dir / "keys.db"
    assert other_user.as_other_user(["touch", str(db)]).returncode == 0
    with pytest.raises(InvalidInput, match="belongs to uid 65534"):
        SqliteInventory(db)
