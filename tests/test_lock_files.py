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


# -- fileio in process: exact errors, modes, waits --------------------------------------------
def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_require_parent_names_what_is_missing(tmp_path):
    fileio.require_parent(tmp_path / "x")
    with pytest.raises(InvalidInput) as exc:
        fileio.require_parent(tmp_path / "no" / "x")
    assert str(exc.value) == (f"cannot write {tmp_path / 'no' / 'x'}: the directory "
                              f"{tmp_path / 'no'} does not exist (hwtoken does not create "
                              "directories for the files you name)")
    (tmp_path / "f").write_text("")
    with pytest.raises(InvalidInput) as exc:
        fileio.require_parent(str(tmp_path / "f" / "x"))
    assert str(exc.value) == (f"cannot write {tmp_path / 'f' / 'x'}: the directory "
                              f"{tmp_path / 'f'} is not a directory (hwtoken does not create "
                              "directories for the files you name)")


def test_atomic_write_modes_parents_and_fsyncs(tmp_path, monkeypatch):
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    old = os.umask(0)
    try:
        fileio.atomic_write(tmp_path / "s", "sécret")
        assert (tmp_path / "s").read_bytes() == "sécret".encode()
        assert os.stat(tmp_path / "s").st_mode & 0o7777 == 0o600
        assert synced == ["file", "dir"]
        synced.clear()
        fileio.atomic_write(str(tmp_path / "p"), b"\x00\x01", mode=0o644, fsync=False)
        assert (tmp_path / "p").read_bytes() == b"\x00\x01"
        assert os.stat(tmp_path / "p").st_mode & 0o7777 == 0o644
        assert synced == []
        fileio.atomic_write(tmp_path / "a" / "b" / "c", b"x", make_parents=True)
        assert (tmp_path / "a" / "b" / "c").read_bytes() == b"x"
    finally:
        os.umask(old)
    with pytest.raises(InvalidInput, match="the directory .*/n does not exist"):
        fileio.atomic_write(tmp_path / "n" / "c", b"x")
    assert not (tmp_path / "n").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "p", "s"]


def test_atomic_write_leaves_no_temporary_file_behind(tmp_path, monkeypatch):
    (tmp_path / "s").write_bytes(b"old")
    seen: list[str] = []
    real_replace = os.replace

    def replace(src, dst):  # noqa: ANN001
        assert os.path.dirname(src) == str(tmp_path)  # beside the file: a rename, no copy
        seen.append(os.path.basename(src))
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        fileio.atomic_write(tmp_path / "s", b"new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert len(seen) == 1 and seen[0].startswith(".s.") and seen[0].endswith(".tmp")
    assert [p.name for p in tmp_path.iterdir()] == ["s"]
    assert (tmp_path / "s").read_bytes() == b"old"


def test_fsync_dir_never_fails(tmp_path, monkeypatch):
    before = _open_fds()
    fileio.fsync_dir(tmp_path / "missing")

    def fsync(fd: int) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(os, "fsync", fsync)
    fileio.fsync_dir(tmp_path)
    assert _open_fds() == before


def test_open_own_file_refusals_are_exact(tmp_path):
    target = tmp_path / "t"
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(InvalidInput) as exc:
        fileio.open_own_file(tmp_path / "link", what="lock file of the key")
    assert str(exc.value) == (f"the lock file of the key {tmp_path / 'link'} is a symbolic "
                              "link; hwtoken does not follow links there (another user could "
                              "have planted it): put the file itself there")
    assert not target.exists()
    before = _open_fds()
    with pytest.raises(InvalidInput) as exc:
        fileio.open_own_file(tmp_path, os.O_RDONLY)
    assert str(exc.value) == (f"the file {tmp_path} is not a regular file (hwtoken needs one "
                              "there)")
    theirs = tmp_path / "theirs"
    theirs.write_text("")
    os.chown(theirs, 65534, 65534)
    with pytest.raises(InvalidInput) as exc:
        fileio.open_own_file(theirs)
    assert str(exc.value) == (f"the file {theirs} belongs to uid 65534, not to you (uid "
                              f"{os.geteuid()}); hwtoken uses only your own files there "
                              "(another user could have planted it): run as uid 65534, or "
                              "check the file and chown it")
    assert _open_fds() == before
    with pytest.raises(FileNotFoundError):
        fileio.open_own_file(tmp_path / "none", os.O_RDONLY)


def test_open_own_file_creates_a_secret_file(tmp_path):
    old = os.umask(0)
    try:
        fd = fileio.open_own_file(tmp_path / "new")
    finally:
        os.umask(old)
    try:
        assert os.fstat(fd).st_mode & 0o7777 == 0o600
        assert os.write(fd, b"rw") == 2  # opened for writing too
        assert os.get_inheritable(fd) is False  # O_CLOEXEC
    finally:
        os.close(fd)
    fd = fileio.open_own_file(tmp_path / "other", os.O_RDWR | os.O_CREAT, 0o640)
    os.close(fd)
    assert (tmp_path / "other").stat().st_mode & 0o777 == 0o640 & ~old


def test_file_lock_errors_name_what_and_how_long(tmp_path, monkeypatch):
    with pytest.raises(InvalidInput, match=r"^cannot write .*/no/l: the directory"):
        FileLock(tmp_path / "no" / "l")
    (tmp_path / "link").symlink_to(tmp_path / "t")
    with pytest.raises(InvalidInput, match=r"^the lock file of the key k .*/link is a symbolic"):
        FileLock(tmp_path / "link", what="key k")
    with FileLock(tmp_path / "a" / "b" / "l", make_parents=True, what="key k") as held:
        assert held.held and held.path == tmp_path / "a" / "b" / "l"
        assert fileio.is_locked(tmp_path / "a" / "b" / "l")
        before = _open_fds()
        with pytest.raises(DeviceBusy) as exc:
            FileLock(tmp_path / "a" / "b" / "l", what="key k")
        assert str(exc.value) == (f"key k is in use by another process (lock "
                                  f"{tmp_path / 'a' / 'b' / 'l'})")
        with pytest.raises(DeviceBusy) as exc:
            FileLock(tmp_path / "a" / "b" / "l", what="key k", blocking=True, timeout=0.05)
        assert str(exc.value) == (f"key k is locked by another process (lock "
                                  f"{tmp_path / 'a' / 'b' / 'l'}); gave up after waiting "
                                  "0.05 s: is a stuck process holding it?")
        monkeypatch.setattr(fileio, "LOCK_TIMEOUT", 0.04)
        with pytest.raises(DeviceBusy, match=r"gave up after waiting 0.04 s: is a stuck"):
            FileLock(tmp_path / "a" / "b" / "l", blocking=True)
        assert _open_fds() == before
    assert not held.held and not fileio.is_locked(tmp_path / "a" / "b" / "l")
    held.release()  # twice: nothing more to do
    assert fileio.LOCK_TIMEOUT == 0.04 and fileio.SECRET_MODE == 0o600


def test_file_lock_closes_its_file_on_any_error(tmp_path, monkeypatch):
    def interrupted(fd: int, wait: float) -> None:
        raise KeyboardInterrupt

    before = _open_fds()
    monkeypatch.setattr(fileio, "_flock_within", interrupted)
    with pytest.raises(KeyboardInterrupt):
        FileLock(tmp_path / "l")
    assert _open_fds() == before


def test_a_held_lock_is_retried_with_growing_pauses(tmp_path, monkeypatch):
    class Clock:
        now = 100.0
        pauses: list[float] = []

        @classmethod
        def monotonic(cls) -> float:
            return cls.now

        @classmethod
        def sleep(cls, seconds: float) -> None:
            assert len(cls.pauses) < 20, cls.pauses  # a wait that never ends
            cls.pauses.append(round(seconds, 6))
            cls.now += seconds

    held = FileLock(tmp_path / "l")
    monkeypatch.setattr(fileio, "time", Clock)
    fd = os.open(tmp_path / "l", os.O_RDWR)
    try:
        with pytest.raises(BlockingIOError):
            fileio._flock_within(fd, 1.0)
        assert Clock.pauses == [0.02, 0.04, 0.08, 0.16, 0.25, 0.25, 0.2]
        Clock.pauses.clear()
        with pytest.raises(BlockingIOError):
            fileio._flock_within(fd, 0)
        assert Clock.pauses == []
        held.release()
        fileio._flock_within(fd, 0)
        assert fileio.is_locked(tmp_path / "l")
    finally:
        os.close(fd)
    assert not fileio.is_locked(tmp_path / "l")


def test_is_locked_cases(tmp_path):
    assert fileio.is_locked(tmp_path / "none") is False
    (tmp_path / "free").write_text("")
    assert fileio.is_locked(tmp_path / "free") is False
    before = _open_fds()
    with FileLock(tmp_path / "held"):
        assert fileio.is_locked(tmp_path / "held") is True
        assert _open_fds() == before + 1
    with pytest.raises(IsADirectoryError):
        fileio.is_locked(tmp_path)


def _gone_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)
    return int(proc.stdout)


def test_remove_dead_dirs(tmp_path):
    gone = _gone_pid()
    for name, text in (("s-dead", f"{gone}\n"), ("s-dead2", f" {gone} "),
                       ("s-live", f"{os.getpid()}\n"), ("s-junk", "x"), ("o-dead", f"{gone}")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "owner.pid").write_text(text)
    (tmp_path / "s-none").mkdir()
    assert fileio.remove_dead_dirs(tmp_path, "s-*") == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o-dead", "s-junk", "s-live", "s-none"]
    assert fileio.remove_dead_dirs(tmp_path / "missing", "s-*") == 0
    assert fileio.pid_alive(os.getpid()) is True
    assert fileio.pid_alive(gone) is False


def test_another_users_process_counts_as_alive(monkeypatch):
    """kill(pid, 0) on another user's process fails with EPERM (when not root): it is there."""
    def kill(pid: int, sig: int) -> None:
        assert (pid, sig) == (4242, 0)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", kill)
    assert fileio.pid_alive(4242) is True


def test_parents_that_exist_already_are_fine(tmp_path, monkeypatch):
    fileio.atomic_write(tmp_path / "a", b"x", make_parents=True)
    assert (tmp_path / "a").read_bytes() == b"x"
    waits: list[float] = []
    real = fileio._flock_within

    def flock_within(fd: int, wait: float) -> None:
        waits.append(wait)
        real(fd, wait)

    monkeypatch.setattr(fileio, "_flock_within", flock_within)
    with FileLock(tmp_path / "l", make_parents=True) as held:
        assert held.held
        with pytest.raises(DeviceBusy):
            FileLock(tmp_path / "l")  # not blocking: tried once, no wait
    assert waits == [0.0, 0.0]
    (tmp_path / "link").symlink_to(tmp_path / "t")
    with pytest.raises(InvalidInput) as exc:
        FileLock(tmp_path / "link")
    assert str(exc.value).startswith(f"the lock file of the file {tmp_path / 'link'} is a ")


def test_fsync_dir_opens_only_a_directory(tmp_path, monkeypatch):
    synced: list[int] = []
    monkeypatch.setattr(os, "fsync", synced.append)
    (tmp_path / "f").write_text("")
    fileio.fsync_dir(tmp_path / "f")
    assert synced == []
    fileio.fsync_dir(tmp_path)
    assert len(synced) == 1
