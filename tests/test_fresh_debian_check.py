"""tools/fresh-debian-check: its parsing, its usage errors, and the parts of its clean-up
that must never go wrong (killing what runs in the tree, unmounting, refusing to delete
through a live mount), on real chroots and mounts in a private mount namespace. The whole
check itself is not part of `make test` (it runs `make test` in a fresh Debian tree)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "fresh-debian-check"

def load_tool():
    loader = SourceFileLoader("fresh_debian_check", str(TOOL))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


check = load_tool()

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot and mount need root")


def test_mountinfo_mount_points_unescaped_in_order():
    info = textwrap.dedent("""\
        27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
        90 27 254:0 /t /tmp/a\\040b rw - ext4 /dev/vda rw
        91 90 0:21 / /tmp/a\\040b/proc rw - proc proc rw
        92 27 0:22 / /tmp/a\\040bc rw - tmpfs tmpfs rw
        """)
    assert check.mount_points(info) == ["/", "/tmp/a b", "/tmp/a b/proc", "/tmp/a bc"]
    assert check.mounts_under("/tmp/a b", info) == ["/tmp/a b", "/tmp/a b/proc"]
    assert check.mounts_under("/srv", info) == []


def test_pytest_summary_lines():
    out = "....\n12 passed, 1 skipped, 2 warnings in 3.50s\n"
    assert check.pytest_summary(out) == {"passed": 12, "failed": 0, "skipped": 1, "errors": 0,
                                         "warnings": 2, "seconds": 3.5}
    out = ("FAILED tests/x.py::t\n"
           "= 2 failed, 696 passed, 1 skipped, 1 error in 295.12s (0:04:55) =\n")
    got = check.pytest_summary(out)
    assert (got["failed"], got["passed"], got["skipped"], got["errors"]) == (2, 696, 1, 1)
    assert check.pytest_summary("make: *** [Makefile:77: test] Error 1\n") is None
    out += "ERROR tests/y.py::u[fob add --secret -] - OSError: x - y\nERROR tests/z.py\n"
    assert check.failed_tests(out) == ["tests/x.py::t", "tests/y.py::u[fob add --secret -]",
                                       "tests/z.py"]


def test_duration():
    assert [check.duration(s) for s in (7, 295.4, 3723)] == ["7s", "4m55s", "1h02m03s"]


def test_the_readme_names_its_preconditions_and_the_check_installs_exactly_those():
    packages = check.precondition_packages((ROOT / "README.md").read_text())
    assert {"make", "python3"} <= set(packages)
    assert check.precondition_packages("# x\n\n## Quick start\n\n    make test\n") == []


def run_tool(*args, env=None):
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_help_says_what_it_does():
    proc = run_tool("--help")
    assert proc.returncode == 0
    for word in ("--keep", "debootstrap", "mountinfo", "CI=true make test", "make demo"):
        assert word in proc.stdout


@pytest.mark.parametrize("args, said", [
    (["--commit", "no-such-commit-anywhere"], "'no-such-commit-anywhere' is not a commit"),
    (["--repo", "/"], "is not in a git repository"),
    (["--timeout", "0"], "--timeout must be at least 1 minute"),
])
def test_bad_usage_is_one_error_line_and_exit_2_before_anything_is_built(args, said, tmp_path):
    """Said first, even where debootstrap is not installed (only git on the PATH)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    proc = run_tool(*args, "--cache-dir", str(tmp_path / "cache"),
                    env={**os.environ, "PATH": str(bin_dir)})
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert said in proc.stderr
    assert not (tmp_path / "cache").exists()


@needs_root
def test_not_root_is_bad_usage():
    """As another user (the script on stdin: that user may not read the checkout)."""
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "/usr/bin/python3", "-"], stdin=TOOL.open(), capture_output=True,
                          text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == "error: run it as root (debootstrap, chroot and mount need it)\n"


def in_private_mount_namespace(script: str) -> str:
    """Run ``script`` (with the tool loaded as ``check``) in a mount namespace of its own,
    so that nothing it mounts is seen outside or outlives it."""
    prelude = ("from importlib.machinery import SourceFileLoader\n"
               "from importlib.util import module_from_spec, spec_from_loader\n"
               f"loader = SourceFileLoader('c', {str(TOOL)!r})\n"
               "check = module_from_spec(spec_from_loader('c', loader))\n"
               "loader.exec_module(check)\n")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           "-c", prelude + textwrap.dedent(script)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@needs_root
def test_never_deletes_through_a_live_mount_and_unmounts_the_last_mounted_first(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("host data")
    tree = tmp_path / "work"
    out = in_private_mount_namespace(f"""
        import os, subprocess
        tree, outside = {str(tree)!r}, {str(outside)!r}
        os.makedirs(tree + "/root/dev")
        os.makedirs(tree + "/root/run")
        subprocess.run(["mount", "--bind", tree + "/root", tree + "/root"], check=True)
        subprocess.run(["mount", "--bind", outside, tree + "/root/dev"], check=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", tree + "/root/run"], check=True)
        try:
            check.remove_tree(tree)
        except check.CheckError as exc:
            print("refused:", exc)
        check.unmount_all(tree, None)
        print("mounted after:", check.mounts_under(tree))
        check.remove_tree(tree)
        print("gone:", not os.path.exists(tree))
        """)
    assert f"refused: not deleting {tree}: {tree}/root is still mounted under it" in out
    assert "mounted after: []" in out and "gone: True" in out
    assert (outside / "precious").read_text() == "host data"


def minimal_tree(root: Path) -> None:
    """A tree that can run /bin/sleep: the binary and the libraries it loads."""
    sleep = Path(shutil.which("sleep")).resolve()
    libs = subprocess.run(["ldd", str(sleep)], capture_output=True, text=True,
                          check=True).stdout
    for path in [str(sleep), *(w for w in libs.split() if w.startswith("/"))]:
        dest = root / path.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    (root / "bin").mkdir(exist_ok=True)
    if not (root / "bin/sleep").exists():
        shutil.copy2(sleep, root / "bin/sleep")
    (root / "deeper/bin").mkdir(parents=True)
    for path in root.rglob("*"):
        if path.is_file() and "deeper" not in path.parts:
            dest = root / "deeper" / path.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)


@needs_root
def test_kills_every_process_rooted_in_the_tree_and_nothing_else(tmp_path):
    root = tmp_path / "root"
    minimal_tree(root)
    inside = subprocess.Popen(["chroot", str(root), "/bin/sleep", "300"])
    deeper = subprocess.Popen(["chroot", str(root / "deeper"), "/bin/sleep", "300"])
    host = subprocess.Popen(["sleep", "300"])
    try:
        deadline = time.monotonic() + 30
        while len(check.processes_rooted_in(str(root))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(check.processes_rooted_in(str(root))) == sorted([inside.pid, deeper.pid])
        killed = check.kill_rooted_in(str(root))
        assert set(killed) == {f"sleep({inside.pid})", f"sleep({deeper.pid})"}
        assert inside.wait(timeout=10) != 0 and deeper.wait(timeout=10) != 0
        assert host.poll() is None
        assert check.processes_rooted_in(str(root)) == []
    finally:
        for proc in (inside, deeper, host):
            proc.kill()
            proc.wait()


def test_summary_line_says_counts_times_demo_and_what_failed_or_stayed():
    c = check.Check.__new__(check.Check)
    c.sha = "5e2b81ab1973" + "0" * 28
    c.results = {"test": {"exit": 0, "seconds": 610.2, "failed": [],
                          "pytest": {"passed": 698, "failed": 0, "skipped": 1, "errors": 0,
                                     "seconds": 295.1}},
                 "demo": {"exit": 0, "seconds": 41, "last_line": "every part behaved"}}
    line, failures = c.summary(1000)
    assert line == ("fresh-debian-check: 5e2b81ab1973 on Debian 12 (bookworm, minbase): make test "
                    "ok: 698 passed, 0 failed, 1 skipped (pytest 4m55s, make test 10m10s); make "
                    "demo ok in 41s ('every part behaved'); total 16m40s")
    assert failures == []
    c.results["test"].update(exit=2, failed=["a::b", "c::d", "e::f", "g::h"])
    c.results["test"]["pytest"]["failed"] = 4
    c.results["left_running"] = {"make test": ["pcscd(42)"]}
    line, failures = c.summary(1000)
    assert "make test FAILED: 698 passed, 4 failed" in line
    assert "failing: a::b, c::d, e::f and 1 more;" in line
    assert "left running: after make test: pcscd(42);" in line
    assert failures == ["make test exited 2", "processes were left running"]
    c.results = {"test": {"exit": 2, "seconds": 30, "failed": [], "pytest": None}}
    line, failures = c.summary(60)
    assert "make test FAILED (exit 2) with no pytest summary in 30s;" in line
    assert failures == ["make test exited 2"]
