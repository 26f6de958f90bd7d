"""GnuPG and ykman against the virtual key through a private pcscd.

GnuPG gets a temporary GNUPGHOME whose
scdaemon reaches the card through libpcsclite (``disable-ccid``), and gpg driven the way
scripts drive it -- ``--command-fd`` answers, ``--status-fd`` prompts, ``--with-colons``
listings and ``--pinentry-mode loopback`` for every PIN.

gpg-agent and scdaemon outlive each gpg call and keep pcscd's socket (and the card) open:
:meth:`GnuPG.stop_daemons` kills them by PID between phases and at the end, so each phase
starts from a card that remembers no verified PIN.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PIN, ADMIN_PIN = "123456", "12345678"
SERIAL = 20240521
YKMAN = str(Path(sys.executable).with_name("ykman"))
HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))


def _libpcsclite() -> str:
    found = sorted(Path("/usr/lib").glob("*/libpcsclite.so.1"))
    return str(found[0] if found else Path("/usr/lib/libpcsclite.so.1"))


#: a pinentry for gpg-agent's SSH signatures (no gpg there to loop the PIN back): it
#: answers every GETPIN with $HWTOKEN_TEST_PIN and logs what it was asked
PINENTRY = """#!/bin/sh
echo "OK hwtoken test pinentry"
while IFS= read -r line; do
  case "$line" in
    SETDESC*) printf '%s\\n' "$line" >> "$0.log"; echo OK ;;
    GETPIN*) echo GETPIN >> "$0.log"; echo "D $HWTOKEN_TEST_PIN"; echo OK ;;
    BYE*) echo OK; exit 0 ;;
    *) echo OK ;;
  esac
done
"""


@dataclass
class Dialogue:
    """What one gpg run with scripted answers did."""

    returncode: int
    status: list[str]  # the [GNUPG:] lines, without the prefix
    stderr: str
    #: prompts met that the script had no (or another) answer for
    unexpected: list[str] = field(default_factory=list)

    def has(self, keyword: str) -> list[list[str]]:
        """The status lines with ``keyword``, split into fields."""
        return [line.split()[1:] for line in self.status if line.split()[:1] == [keyword]]


class GnuPG:
    """gpg in a GNUPGHOME of its own, for the card in ``reader`` of the pcscd ``env``
    points at."""

    def __init__(self, env: dict[str, str], reader: str, *, ssh: bool = False) -> None:
        # short: gpg-agent's sockets live in GNUPGHOME (no /run/user here), and a socket
        # path has at most 107 bytes
        self.home = Path(tempfile.mkdtemp(prefix="hwtoken-gpg-"))
        self.home.chmod(0o700)
        self.pinentry = self.home / "pinentry-test"
        self.pinentry.write_text(PINENTRY)
        self.pinentry.chmod(0o700)
        (self.home / "scdaemon.conf").write_text(
            f"disable-ccid\npcsc-driver {_libpcsclite()}\nreader-port {reader}\n")
        agent = f"allow-loopback-pinentry\npinentry-program {self.pinentry}\n"
        (self.home / "gpg-agent.conf").write_text(agent + ("enable-ssh-support\n" if ssh
                                                           else ""))
        self.env = {**env, "GNUPGHOME": str(self.home), "LC_ALL": "C", "LANGUAGE": "C",
                    "HWTOKEN_TEST_PIN": PIN}
        self.env.pop("GPG_AGENT_INFO", None)
        self.env.pop("SSH_AUTH_SOCK", None)

    # -- plain runs -----------------------------------------------------------------------------
    def run(self, *args: str, input: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["gpg", "--batch", "--no-tty", *args], env=self.env,
                              input=input, capture_output=True, timeout=timeout,
                              cwd=self.home)

    def ok(self, *args: str, **kw) -> bytes:
        r = self.run(*args, **kw)
        assert r.returncode == 0, f"gpg {args}: {r.stderr.decode(errors='replace')}"
        return r.stdout

    def card_status(self) -> dict[str, list[list[str]]]:
        """``gpg --card-status --with-colons``: each record type, its fields (every line)."""
        out = self.ok("--with-colons", "--card-status").decode()
        records: dict[str, list[list[str]]] = {}
        for line in out.splitlines():
            name, _, rest = line.partition(":")
            records.setdefault(name, []).append(rest.split(":"))
        return records

    # -- scripted dialogues ---------------------------------------------------------------
    def dialogue(self, *args: str, answers: list[tuple[str, str]],
                 timeout: float = 180) -> Dialogue:
        """Run gpg with ``--command-fd 0 --status-fd N``; answer each GET_LINE, GET_BOOL and
        GET_HIDDEN prompt with the next of ``answers`` (keyword, answer), which must be the
        prompt's keyword. A prompt without its answer ends gpg (killed) and is reported."""
        read_end, write_end = os.pipe()
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - read below, closed with it
        proc = subprocess.Popen(
            ["gpg", "--no-tty", "--command-fd", "0", "--status-fd", str(write_end),
             "--pinentry-mode", "loopback", *args],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr, env=self.env,
            cwd=self.home, pass_fds=(write_end,))
        os.close(write_end)
        pending = list(answers)
        status: list[str] = []
        unexpected: list[str] = []
        deadline = time.monotonic() + timeout
        buf = b""
        with os.fdopen(read_end, "rb", buffering=0) as pipe:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([pipe], [], [], left)[0]:
                    unexpected.append("timeout")
                    break
                chunk = pipe.read(4096)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    raw, buf = buf.split(b"\n", 1)
                    line = raw.decode(errors="replace").removeprefix("[GNUPG:] ")
                    status.append(line)
                    fields = line.split()
                    if len(fields) < 2 or fields[0] not in ("GET_LINE", "GET_BOOL",
                                                            "GET_HIDDEN"):
                        continue
                    if not pending or pending[0][0] != fields[1]:
                        unexpected.append(fields[1])
                        proc.kill()
                        break
                    proc.stdin.write(pending.pop(0)[1].encode() + b"\n")
                    proc.stdin.flush()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
        try:
            returncode = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            returncode = proc.wait(timeout=30)
        stderr.seek(0)
        err = stderr.read().decode(errors="replace")
        stderr.close()
        if pending and not unexpected:
            unexpected.append(f"unused answers {pending}")
        return Dialogue(returncode, status, err, unexpected)

    def expect(self, *args: str, answers: list[tuple[str, str]]) -> Dialogue:
        """:meth:`dialogue` that must succeed with every answer used."""
        d = self.dialogue(*args, answers=answers)
        assert d.returncode == 0 and not d.unexpected, (
            f"gpg {args}: exit {d.returncode}, unexpected {d.unexpected}\n"
            + "\n".join(d.status[-15:]) + "\n" + d.stderr[-2000:])
        return d

    # -- the daemons ------------------------------------------------------------------------
    def _agent(self, command: str) -> str | None:
        """One command to a running gpg-agent (never starts one); its data line."""
        r = subprocess.run(["gpg-connect-agent", "--no-autostart", command, "/bye"],
                           env=self.env, capture_output=True, text=True, timeout=30)
        for line in r.stdout.splitlines():
            if line.startswith("D "):
                return line[2:]
            if line.startswith("OK"):
                return ""
        return None

    def daemon_pids(self) -> list[int]:
        """gpg-agent's and scdaemon's PIDs (those running)."""
        agent = self._agent("GETINFO pid")
        if not agent:
            return []
        pids = [int(agent)]
        if self._agent("GETINFO scd_running") is not None:
            scd = self._agent("SCD GETINFO pid")
            if scd:
                pids.append(int(scd))
        return pids

    def stop_daemons(self, timeout: float = 5) -> None:
        """Kill gpg-agent, then scdaemon, by PID (SIGTERM, then SIGKILL) and wait until
        they are gone. (scdaemon ignores SIGTERM while the agent is connected; the agent
        goes at once and takes scdaemon with it.)"""
        for pid in self.daemon_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            killed = False
            while _alive(pid):
                if time.monotonic() > deadline:
                    assert not killed, f"process {pid} survived SIGKILL"
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                    killed, deadline = True, time.monotonic() + timeout
                time.sleep(0.05)

    def close(self) -> None:
        self.stop_daemons()
        shutil.rmtree(self.home, ignore_errors=True)


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


class Ykman:
    """ykman as a program, for the card in ``reader``."""

    def __init__(self, env: dict[str, str], reader: str, home: Path) -> None:
        self.env = dict(env)
        self.env["HOME"] = str(home)
        self.reader = reader
        self.home = home

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([YKMAN, "--reader", self.reader, *args], env=self.env,
                              input=input, capture_output=True, text=True, timeout=120,
                              cwd=self.home)

    def ok(self, *args: str, **kw) -> str:
        r = self.run(*args, **kw)
        assert r.returncode == 0, f"ykman {args}: {r.stdout}\n{r.stderr}"
        return r.stdout
