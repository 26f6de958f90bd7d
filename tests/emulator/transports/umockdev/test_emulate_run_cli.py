"""``hwtoken emulate run`` as a user runs it: a real subprocess, its exit codes, its errors,
signals, and nothing left behind (no testbed directory, no lock, the key's state whole)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from umockdev_helpers import VENV_BIN

HWTOKEN = [sys.executable, "-m", "hwtoken"]
CHECKOUT = Path(__file__).resolve().parents[4]


@pytest.fixture(autouse=True)
def private_tmp(monkeypatch):
    """A TMPDIR of this test's own, so the testbeds counted here are its own (other test
    runs on the machine make and remove theirs in /tmp meanwhile)."""
    d = tempfile.mkdtemp(prefix="hwt-")  # short: Unix socket paths live below it
    monkeypatch.setenv("TMPDIR", d)
    yield d
    subprocess.run(["rm", "-rf", d], check=False)


def hw(*args, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    env = dict(os.environ)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.update(kwargs.pop("env", {}))
    return subprocess.run([*HWTOKEN, *args], env=env, **kwargs)


def _testbeds() -> set[str]:
    return set(glob.glob(os.path.join(os.environ["TMPDIR"], "hwtoken-umockdev.*")))


@pytest.fixture
def key_name():
    assert hw("emulate", "create", "alice", "--serial", "7654321").returncode == 0
    return "alice"


def test_runs_the_command_with_the_key_and_exits_with_its_status(key_name):
    before = _testbeds()
    proc = hw("emulate", "run", key_name, "--", "fido2-token", "-L")
    assert proc.returncode == 0, proc.stderr
    assert "vendor=0x1050, product=0x0407" in proc.stdout
    failed = hw("emulate", "run", key_name, "--", "sh", "-c", "echo why >&2; exit 7")
    assert failed.returncode == 7
    assert failed.stderr == "why\n"  # CMD says what went wrong; hwtoken adds nothing
    assert _testbeds() == before  # removed each time


def test_two_keys_are_two_devices(key_name):
    assert hw("emulate", "create", "bob").returncode == 0
    proc = hw("emulate", "run", key_name, "bob", "--", "fido2-token", "-L")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("vendor=0x1050") == 2


def test_bad_input_is_one_error_line(key_name):
    cases = [
        (["emulate", "run", key_name, "--", "no-such-program-xyz"], 127,
         "command not found: no-such-program-xyz"),
        (["emulate", "run", key_name, "--"], 2, "no command after --"),
        (["emulate", "run", key_name], 2, "give the command after --"),
        (["emulate", "run", "nosuch", "--", "true"], 2, "no virtual key named 'nosuch'"),
        (["emulate", "run", key_name, key_name, "--", "true"], 2, "repeated"),
        (["emulate", "run", key_name, "--touch", "delay:nan", "--", "true"], 2, "delay:"),
        (["emulate", "run", key_name, "--touch", "delay:1e999", "--", "true"], 2, "delay:"),
        (["emulate", "run", key_name, "--touch", "maybe", "--", "true"], 2, "--touch"),
    ]
    for argv, code, message in cases:
        proc = hw(*argv)
        assert proc.returncode == code, (argv, proc.stderr)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and message in errors[0], (argv, proc.stderr)
        assert "Traceback" not in proc.stderr


def test_not_executable_is_126(key_name, tmp_path):
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(0o600)
    proc = hw("emulate", "run", key_name, "--", str(script))
    assert proc.returncode == 126 and "permission denied" in proc.stderr


def test_umockdev_missing_names_the_package(key_name):
    proc = hw("emulate", "run", key_name, "--", "true",
              env={"HWTOKEN_UMOCKDEV_PRELOAD": "/nonexistent/libumockdev-preload.so.0"})
    assert proc.returncode == 2
    assert "apt install umockdev" in proc.stderr and proc.stderr.count("error:") == 1


def test_a_key_already_in_use_is_refused(key_name):
    holder = subprocess.Popen([*HWTOKEN, "emulate", "run", key_name, "--", "sleep", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PATH": VENV_BIN + os.pathsep +
                                   os.environ["PATH"]})
    try:
        deadline = time.monotonic() + 30
        while True:  # wait until the first run holds the key (its runtime file says so)
            show = json.loads(hw("emulate", "show", key_name, "--json").stdout)
            if show["served"]:
                break
            assert holder.poll() is None, holder.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert show["served"]["local"]["nodes"]
        proc = hw("emulate", "run", key_name, "--", "true")
        assert proc.returncode == 2
        assert f"already served by pid {holder.pid}" in proc.stderr
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=30)


def _wait_for_testbed(before: set[str], proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 30
    while True:
        new = _testbeds() - before
        if new and glob.glob(os.path.join(next(iter(new)), "dev", "hidraw*")):
            return next(iter(new))
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["SIGTERM to run", "SIGINT to run", "SIGKILL to CMD"])
def test_signals_leave_nothing_behind_and_the_state_whole(key_name, how):
    from hwtoken import paths
    from hwtoken.emulator.key import VirtualKey

    before = _testbeds()
    proc = subprocess.Popen([*HWTOKEN, "emulate", "run", key_name, "--", "sleep", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_testbed(before, proc)
    child = None
    deadline = time.monotonic() + 10
    while child is None and time.monotonic() < deadline:
        out = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "^sleep 60$"],
                             capture_output=True, text=True).stdout.split()
        child = int(out[0]) if out else None
    assert child is not None
    if how == "SIGTERM to run":
        proc.send_signal(signal.SIGTERM)
        expected = 128 + signal.SIGTERM
    elif how == "SIGINT to run":  # sent to hwtoken only (not a terminal's Ctrl-C)
        proc.send_signal(signal.SIGINT)
        expected = 128 + signal.SIGINT
    else:
        os.kill(child, signal.SIGKILL)
        expected = 128 + signal.SIGKILL
    proc.communicate(timeout=30)
    assert proc.returncode == expected
    assert _testbeds() == before
    path = paths.virtual_key_path(key_name)
    with VirtualKey.load(path) as key:  # not locked any more, and loads whole
        assert key.serial == 7654321
    assert not Path(str(path)[:-4] + ".serve.json").exists()


def test_the_next_run_removes_a_testbed_left_by_a_killed_run(key_name):
    before = _testbeds()
    proc = subprocess.Popen([*HWTOKEN, "emulate", "run", key_name, "--", "sleep", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    left = _wait_for_testbed(before, proc)
    deadline = time.monotonic() + 30
    while not subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "^sleep 60$"],
                             capture_output=True).stdout:  # CMD runs
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    orphans = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                             text=True).stdout.split()
    proc.kill()  # hwtoken itself: nothing can clean up now
    for pid in orphans:  # CMD (and the pty guards) outlive it
        subprocess.run(["kill", "-9", pid], check=False)
    proc.communicate(timeout=30)
    assert Path(left).exists()
    assert hw("emulate", "run", key_name, "--", "true").returncode == 0
    assert not Path(left).exists()


def as_nobody(argv: list[str], checkout: Path = CHECKOUT) -> list[str]:
    """``argv`` as the user nobody. A checkout under a directory nobody may not enter (a
    clone in root's home, 0700 on Debian) is reached at the same path in a mount namespace
    of the command's own, where that directory is an empty 0755 tmpfs holding only a bind
    mount of the checkout."""
    drop = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    closed = next((d for d in reversed(checkout.parents) if not d.stat().st_mode & 0o001),
                  None)
    if closed is None:
        return drop
    script = ('set -e; keep=$(mktemp -d); mount --bind "$1" "$keep"; '
              'mount -t tmpfs -o mode=755 tmpfs "$2"; mkdir -p "$1"; '
              'mount --bind "$keep" "$1"; umount "$keep"; rmdir "$keep"; shift 2; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(checkout), str(closed), *drop]


def test_no_root_needed(key_name):
    """The whole of `emulate run` and the program, as the unprivileged user nobody."""
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: every other test here proves it")
    state = Path(tempfile.mkdtemp(prefix="hwtoken-nobody-"))  # pytest's tmp is root-only
    os.chmod(state, 0o755)
    os.chown(state, 65534, 65534)
    env = {**os.environ, "HWTOKEN_STATE_DIR": str(state), "HOME": str(state),
           "PATH": VENV_BIN + os.pathsep + os.environ["PATH"]}
    made = subprocess.run(as_nobody([*HWTOKEN, "emulate", "create", "nobodys"]), env=env,
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    proc = subprocess.run(as_nobody([*HWTOKEN, "emulate", "run", "nobodys", "--", "sh", "-c",
                                     "id -u; fido2-token -L; ssh-keygen -q -t ecdsa-sk -N '' "
                                     f"-f {state}/id"]), env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "65534"
    assert "vendor=0x1050" in lines[1]
    assert (state / "id.pub").read_text().startswith("sk-ecdsa-sha2-nistp256@openssh.com")
    subprocess.run(["rm", "-rf", str(state)], check=False)


def test_serve_local_prints_the_environment_for_other_shells(key_name):
    serve = subprocess.Popen([*HWTOKEN, "emulate", "serve", key_name, "--local",
                              "--no-usbip", "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        lines = [serve.stdout.readline()]
        while lines[-1] and lines[-1] != "}\n":  # one indented JSON document
            lines.append(serve.stdout.readline())
        doc = json.loads("".join(lines))
        local = doc["local"]
        assert "/dev/hidraw1" in local["nodes"] and doc["usbip"] is None
        env = {**os.environ, "UMOCKDEV_DIR": local["dir"], "LD_PRELOAD": local["preload"]}
        listed = subprocess.run(["fido2-token", "-L"], env=env, capture_output=True,
                                text=True, timeout=60)
        assert "/dev/hidraw1: vendor=0x1050" in listed.stdout, listed.stderr
        shown = json.loads(hw("emulate", "show", key_name, "--json").stdout)
        assert shown["served"]["local"]["dir"] == local["dir"]
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)
    assert serve.returncode == 0
    assert not Path(local["dir"]).exists()


def test_plug_and_unplug_from_another_shell_while_cmd_runs(key_name):
    """An admin rehearsing a station: `emulate run --standby` holds the key unplugged,
    `emulate plug/unplug` in another shell move it in and out while CMD runs."""
    assert hw("emulate", "create", "bob").returncode == 0
    watcher = (
        "import glob, sys, time\n"
        "seen = []\n"
        "for _ in range(600):\n"  # at most 60 s
        "    now = len(glob.glob('/dev/hidraw*'))\n"
        "    if not seen or seen[-1] != now:\n"
        "        seen.append(now); print(now, flush=True)\n"
        "    if now == 0:\n"
        "        break\n"
        "    time.sleep(0.1)\n")
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ["PATH"]}
    proc = subprocess.Popen([*HWTOKEN, "emulate", "run", key_name, "--standby", "bob",
                             "--json", "--", sys.executable, "-c", watcher],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    def expect(count: str) -> None:
        """The next settled number of hidraw nodes (a key's nodes come one by one)."""
        for _ in range(10):
            line = proc.stdout.readline().strip()
            if line == count:
                return
            assert line and int(line) % 2, (line, count)  # only a half-plugged key between
        raise AssertionError(f"never saw {count} hidraw nodes")

    try:
        doc = json.loads(proc.stdout.readline())
        assert [k["plugged"] for k in doc["keys"]] == [True, False]
        expect("2")  # alice's two hidraw nodes
        shown = json.loads(hw("emulate", "show", "bob", "--json").stdout)
        assert shown["served"]["local"]["plugged"] is False
        r = hw("emulate", "plug", "bob")
        assert r.returncode == 0 and "/dev/hidraw" in r.stdout, r.stderr
        expect("4")
        again = hw("emulate", "plug", "bob")
        assert again.returncode == 2 and "already plugged in" in again.stderr
        assert hw("emulate", "unplug", "bob", "--json").returncode == 0
        expect("2")
        assert hw("emulate", "unplug", key_name).returncode == 0
        expect("0")
        proc.communicate(timeout=60)
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    missing = hw("emulate", "plug", "bob")
    assert missing.returncode == 2 and "not held by a testbed" in missing.stderr


def test_emu_name_inside_the_testbed_is_the_plugged_device(key_name):
    """`--device emu:NAME` inside `emulate run` uses the key where it is plugged in; from
    outside, the error says how to reach it."""
    inside = hw("emulate", "run", key_name, "--", sys.executable, "-m", "hwtoken", "fido2",
                "--device", f"emu:{key_name}", "info", "--json")
    assert inside.returncode == 0, inside.stderr
    assert json.loads(inside.stdout)["device"] == "7654321"  # the USB device's serial
    yk = hw("emulate", "run", key_name, "--", sys.executable, "-m", "hwtoken", "yubikey",
            "--device", f"emu:{key_name}", "info", "--json")
    assert yk.returncode == 0, yk.stderr
    assert json.loads(yk.stdout)["serial"] == 7654321
    holder = subprocess.Popen([*HWTOKEN, "emulate", "run", key_name, "--", "sleep", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (json.loads(hw("emulate", "show", key_name, "--json").stdout)["served"]):
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.05)
        outside = hw("fido2", "--device", f"emu:{key_name}", "info")
        assert outside.returncode == 2
        assert "plugged in locally" in outside.stderr and "UMOCKDEV_DIR=" in outside.stderr
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=30)


def test_touching_a_key_a_testbed_holds(key_name):
    """`yubikey hotp touch -d emu:NAME` from another shell presses the button in the
    testbed: the key types its HOTP code (the one oathtool computes)."""
    import pyotp

    secret = pyotp.random_base32(32)
    env = {**os.environ, "PATH": VENV_BIN + os.pathsep + os.environ["PATH"]}
    assert hw("yubikey", "hotp", "program", "1", "--secret", "-", "-d", f"emu:{key_name}",
              input=secret + "\n").returncode == 0
    holder = subprocess.Popen([*HWTOKEN, "emulate", "run", key_name, "--", "sleep", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        while not (json.loads(hw("emulate", "show", key_name, "--json").stdout)["served"]):
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.05)
        touched = hw("yubikey", "hotp", "touch", "1", "-d", f"emu:{key_name}", "--json")
        assert touched.returncode == 0, touched.stderr
        assert json.loads(touched.stdout)["typed"].strip() == pyotp.HOTP(secret).at(0)
        again = hw("yubikey", "hotp", "touch", "1", "-d", f"emu:{key_name}")
        assert again.stdout.strip() == pyotp.HOTP(secret).at(1)
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.communicate(timeout=30)
