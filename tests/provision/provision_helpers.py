"""Helpers for the provisioning tests: a throwaway PostgreSQL server and CLI helpers.

PostgreSQL refuses to run as root, so the server runs as ``nobody`` (via ``runuser``)
with its data directory and Unix socket in a fresh temp dir; it listens on no TCP port.
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
import uuid
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSPHRASE = "correct horse battery staple"
HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))


def _pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if PG_BIN.joinpath("initdb").exists():
        return PG_BIN
    if candidates:
        return candidates[-1].parent
    raise RuntimeError("PostgreSQL server binaries not found: `make test` installs postgresql")


def _as_pg_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "nobody", "--"]


class PgServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hwtoken-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "nobody")
        os.chmod(self.dir, 0o700)
        self.bin = _pg_bin()
        data = self.dir / "data"
        subprocess.run([*_as_pg_user(), str(self.bin / "initdb"), "-D", str(data), "-U",
                        "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        self.log = open(self.dir / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [*_as_pg_user(), str(self.bin / "postgres"), "-D", str(data), "-k", str(self.dir),
             "-c", "listen_addresses=", "-c", "fsync=off", "-c", "max_connections=100"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start: "
                                       + (self.dir / "server.log").read_text()[-2000:]) from None
                time.sleep(0.1)

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres@/{db}?host={self.dir}"

    def new_database(self) -> str:
        import psycopg

        name = "inv_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    def _postmaster_pid(self) -> int | None:
        """The server's own pid (``self.proc`` may be runuser, which forwards no SIGINT)."""
        try:
            return int((self.dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        pid = self._postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)  # fast shutdown: clients are disconnected
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            if pid is not None:  # never leave the server running without its data dir
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def hwtoken(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            check: int | None = 0) -> subprocess.CompletedProcess[str]:
    """Run the real ``hwtoken`` console script."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    proc = subprocess.run([HWTOKEN, *args], capture_output=True, text=True, env=full_env,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if check is not None and proc.returncode != check:
        raise AssertionError(f"hwtoken {' '.join(args)} exited {proc.returncode} "
                             f"(expected {check})\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def opened(url: str):
    """The inventory at ``url``, unlocked with the test passphrase."""
    from hwtoken.provision.inventory import open_inventory
    from hwtoken.provision.sealing import Unlocker

    inv = open_inventory(url)
    try:
        inv.unlock(Unlocker(passphrase=PASSPHRASE))
        yield inv
    finally:
        inv.close()


def key_calculate(device: str, serial: int, mode: str, challenge=None, slot: int = 2,
                  digits: int = 6):
    """Ask the key itself, through the client path (python-yubico / yubikit)."""
    from hwtoken.provision.model import Mode, Spec
    from hwtoken.provision.programmers import programmer_for
    from hwtoken.provision.protocol import Device

    spec = Spec(Mode(mode), slot=slot, digits=digits)
    dev = Device(serial, device)
    with programmer_for(spec, dev).connect(dev) as conn:
        return conn.calculate(spec, challenge)


def chalresp_matches(device: str, serial: int, secret: bytes) -> bool:
    import hashlib
    import hmac

    from hwtoken.provision.protocol import NotProgrammed

    challenge = os.urandom(32)
    try:
        got = key_calculate(device, serial, "chalresp", challenge)
    except NotProgrammed:
        return False
    return got == hmac.new(secret, challenge, hashlib.sha1).digest()


def read_pskc(path, password: str | None = None) -> dict[int, object]:
    """serial -> pskc Key of an exported file (parsed back by python-pskc)."""
    import pskc

    doc = pskc.PSKC(str(path))
    if password is not None:
        doc.encryption.derive_key(password)
    return {int(k.serial): k for k in doc.keys}


@contextlib.contextmanager
def held_by_another_station(url: str, serial: int):
    """``serial`` held in the inventory at ``url`` by a station in another process (a
    station's hold excludes other processes only); yields a function that lets go early
    (when it returns, the hold has ended: the station's process has exited)."""
    code = ("import sys\n"
            "from hwtoken.provision.inventory import open_inventory\n"
            "with open_inventory(sys.argv[1]) as inv, inv.hold(int(sys.argv[2])):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n")
    proc = subprocess.Popen([sys.executable, "-c", code, url, str(serial)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def let_go() -> None:
        if not proc.stdin.closed:
            proc.stdin.close()
        proc.wait(timeout=30)

    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready and proc.stdout.readline() == "held\n", "the other station did not start"
        yield let_go
    finally:
        let_go()
        proc.wait(timeout=30)


def only(inv, key):
    """The record ``key`` names (a RecordKey), or the one record of key ``serial`` (an
    int; None if it has none)."""
    from hwtoken.provision.model import RecordKey

    if isinstance(key, RecordKey):
        return inv.get(key)
    records = inv.records(serial=key)
    assert len(records) <= 1, records
    return records[0] if records else None


#: the tables of a schema-1 inventory, as hwtoken wrote them before several records per key
#: (SQLite; PostgreSQL had the same with BIGINT, DOUBLE PRECISION and BIGSERIAL)
V1_SCHEMA = [
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE records (
    serial {big} PRIMARY KEY,
    mode TEXT NOT NULL, slot INTEGER NOT NULL, digits INTEGER NOT NULL,
    touch INTEGER NOT NULL, name TEXT NOT NULL, sealed TEXT NOT NULL,
    state TEXT NOT NULL, counter {big} NOT NULL DEFAULT 0,
    device TEXT NOT NULL, station TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT, created_at {real} NOT NULL, updated_at {real} NOT NULL,
    programmed_at {real}, exported_at {real})""",
    "CREATE INDEX records_state ON records (state)",
    """CREATE TABLE events (
    id {id}, at {real} NOT NULL, station TEXT NOT NULL,
    serial {big}, kind TEXT NOT NULL, message TEXT NOT NULL)""",
    """CREATE TABLE exports (
    serial {big} NOT NULL, kind TEXT NOT NULL, sealed TEXT NOT NULL, at {real} NOT NULL,
    PRIMARY KEY (serial, kind))""",
]


def make_v1_inventory(url: str, records: list[dict], *, export_state: bool = True,
                      exports: list[tuple[int, str]] = ()) -> None:
    """A schema-1 inventory at ``url`` (SQLite path or PostgreSQL URL) holding ``records``
    (dicts with serial, mode, slot, digits, name, secret, state and optionally
    exported_at/counter), sealed with the test passphrase as schema 1 sealed them.
    ``export_state``: whether it kept export state per kind already (``exports``: its
    (serial, kind) rows)."""
    from hwtoken.provision.sealing import Unlocker, unlock

    if url.startswith("postgresql://"):
        import psycopg

        db = psycopg.connect(url, autocommit=True)
        types, mark = {"big": "BIGINT", "real": "DOUBLE PRECISION",
                       "id": "BIGSERIAL PRIMARY KEY"}, "%s"
    else:
        import sqlite3

        db = sqlite3.connect(url.removeprefix("sqlite://"), isolation_level=None)
        types, mark = {"big": "INTEGER", "real": "REAL",
                       "id": "INTEGER PRIMARY KEY AUTOINCREMENT"}, "?"

    def q(sql: str, params=()):
        return list(db.execute(sql.replace("?", mark), params).fetchall()) \
            if sql.lstrip().upper().startswith("SELECT") else db.execute(sql.replace("?", mark),
                                                                           params)

    try:
        for statement in V1_SCHEMA:
            q(statement.format(**types))
        meta: dict[str, str] = {}

        def meta_init(name: str, value: str) -> str:
            meta[name] = value
            q("INSERT INTO meta (name, value) VALUES (?, ?)", (name, value))
            return value

        sealer = unlock(meta.get, meta_init, Unlocker(passphrase=PASSPHRASE))
        if export_state:
            q("INSERT INTO meta (name, value) VALUES ('export_state', 'per-kind')")
        for r in records:
            aad = f"hwtoken-provision:{r['serial']}:{r['mode']}:{r['slot']}".encode()
            sealed = sealer.seal(r["secret"], aad)
            q("INSERT INTO records (serial, mode, slot, digits, touch, name, sealed, state, "
              "counter, device, station, attempts, last_error, created_at, updated_at, "
              "programmed_at, exported_at) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?, 'old:1', 1, "
              "NULL, ?, ?, ?, ?)",
              (r["serial"], r["mode"], r["slot"], r["digits"], r["name"], sealed, r["state"],
               r.get("counter", 0), r.get("device", f"emu:k{r['serial']}"),
               1_600_000_000.0 + r["serial"], 1_600_000_000.0 + r["serial"], 1_600_000_000.0,
               r.get("exported_at")))
            for serial, kind in exports:
                if serial == r["serial"]:
                    q("INSERT INTO exports (serial, kind, sealed, at) VALUES (?, ?, ?, ?)",
                      (serial, kind, sealed, 1_700_000_000.0))
        q("INSERT INTO events (at, station, serial, kind, message) VALUES "
          "(1600000000, 'old:1', ?, 'error', 'an old error')", (records[0]["serial"],))
    finally:
        db.close()


def on_terminal(*args: str, answers: dict[str, str] | None = None,
                env: dict[str, str] | None = None) -> tuple[int, str]:
    """``hwtoken ARGS`` with stdin, stdout and stderr on a pseudo-terminal; each prompt
    (a key of ``answers`` seen in the output) is answered once. Returns the exit status
    and everything the terminal showed."""
    import pty
    import select

    leader, follower = pty.openpty()
    proc = subprocess.Popen([HWTOKEN, *args], stdin=follower, stdout=follower,
                            stderr=follower, env={**os.environ, "COLUMNS": "200",
                                                  **(env or {})})
    os.close(follower)
    shown = b""
    pending = dict(answers or {})
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 120)
            assert ready, f"the terminal went quiet: {shown!r}"
            try:
                data = os.read(leader, 4096)
            except OSError:  # EIO: the process closed the terminal
                break
            if not data:
                break
            shown += data
            for prompt, answer in list(pending.items()):
                if prompt.encode() in shown:
                    os.write(leader, answer.encode() + b"\n")
                    del pending[prompt]
        return proc.wait(timeout=60), shown.decode("utf-8", "replace")
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


class AnswersInBytes:
    """A connection answering in bytes, as ``KeyConnection.calculate`` may, after
    ``prefix`` (what a keyboard layout garbled)."""

    def __init__(self, conn, prefix: bytes = b"") -> None:  # noqa: ANN001
        self.conn, self.prefix = conn, prefix

    def calculate(self, spec, challenge):  # noqa: ANN001, ANN201
        return self.prefix + self.conn.calculate(spec, challenge).encode("ascii")
