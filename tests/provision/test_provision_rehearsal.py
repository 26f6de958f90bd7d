"""The OATH rehearsal of docs/umockdev.md, run as the page gives it: the station in a
testbed with its own pcscd (`emulate run --pcscd`), three virtual keys plugged in and
pulled out one after another from "another terminal"."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from provision_helpers import PASSPHRASE

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def documented_block() -> list[str]:
    """The commands of the rehearsal block, continuation lines joined, comments dropped."""
    text = (REPO / "docs" / "umockdev.md").read_text()
    section = text[text.index("### Rehearsing a provisioning batch"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    commands, current = [], ""
    for line in block.splitlines():
        line = re.sub(r"\s+#.*$", "", line) if not line.startswith("#") else ""
        if not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    return commands


def test_the_documented_oath_rehearsal(tmp_path):
    commands = documented_block()
    create, station, *operator = commands
    assert station.startswith("hwtoken emulate run --pcscd ") and "-m oath-totp" in station
    assert [c.split()[2] for c in operator] == ["plug", "unplug"] * 2 + ["plug"]
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "HWTOKEN_STATE_DIR": str(tmp_path / "state"),
           "HWTOKEN_INVENTORY_PASSPHRASE": PASSPHRASE}
    env.pop("PCSCLITE_CSOCK_NAME", None)  # the testbed's pcscd, not another one
    (tmp_path / "state").mkdir()

    def sh(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, text=True,
                              capture_output=True, timeout=120, stdin=subprocess.DEVNULL)

    made = sh(create)
    assert made.returncode == 0, made.stderr
    proc = subprocess.Popen(["bash", "-c", station], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    seen: list[str] = []

    def wait_for_done(n: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while sum(" done" in line for line in seen) < n:
            left = deadline - time.monotonic()
            assert left > 0 and proc.poll() is None, (seen, proc.stderr.read()
                                                      if proc.poll() is not None else "")
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                seen.append(proc.stdout.readline())

    try:
        _wait_for_standby(sh, ["batch-1", "batch-2", "batch-3"])
        done = 0
        for command in operator:
            result = sh(command)
            assert result.returncode == 0, (command, result.stderr)
            if " plug " in f" {command} ":
                done += 1
                wait_for_done(done)  # "... wait for "done", then"
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    rest = proc.stdout.read()
    assert rest.strip().splitlines()[-1].startswith("3 done in ")
    assert all("OATH credential 'hwtoken' (oath-totp) done" in line for line in seen)
    status = sh("hwtoken provision status -i rehearsal.db --json")
    assert json.loads(status.stdout)["counts"] == {"pending": 0, "done": 3, "exported": 0}
    serials = {json.loads(sh(f"hwtoken emulate show batch-{i} --json").stdout)["serial"]
               for i in (1, 2, 3)}
    listed = json.loads(sh("hwtoken provision list -i rehearsal.db --json").stdout)
    assert {r["serial"] for r in listed["records"]} == serials


def _wait_for_standby(sh, names: list[str], timeout: float = 60.0) -> None:
    """The testbed holds the keys (their control socket is up) before the operator
    plugs one in."""
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            shown = sh(f"hwtoken emulate show {name} --json")
            doc = json.loads(shown.stdout) if shown.returncode == 0 else {}
            if ((doc.get("served") or {}).get("local") or {}).get("control"):
                break
            assert time.monotonic() < deadline, shown.stdout + shown.stderr
            time.sleep(0.1)
