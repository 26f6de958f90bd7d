"""Virtual keys provisioned per minute, with each inventory (SQLite, PostgreSQL).

Each figure runs the four durable steps for N fresh virtual keys through the real client
path (python-yubico over USB/IP for ``chalresp``; yubikit for ``oath-totp``, over the
in-process card connection that ``hwtoken.yubikey.oath`` uses when no pcscd runs), with
the inventory fsyncing every step. Baseline, measured in the same run: the same runner with
the interim applet path (no transport, no client library) on SQLite, so the ratios show
what the transport + client libraries cost versus what the inventory costs.

``oath-totp`` is measured a second time through a private pcscd with the vpcd driver (as
``provision run --mode oath-totp`` runs where pcscd is up): each key is inserted as a card
(pcscd notices it on its next presence poll) and every APDU crosses pcscd; once more with
the vpcd link's TCP_QUICKACK switched off, which is how every APDU cost ~48 ms before.
Needs root for the private pcscd; without it those rows are skipped.

``piv`` (ECCP256 in slot 9a, a CA certificate: credentials set, a key pair made and
attested, a CSR signed by a local CA, the certificate imported, checked with a signature)
and ``fido`` (a PIN set, then forcePINChange) run through yubikit's PivSession and
python-fido2 on the in-process key (the same client code as through pcscd or USB); ``piv``
once more through the private pcscd with the vpcd driver. RSA is left out (its key
generation alone takes seconds).

``yubiotp`` (Yubico OTP) is checked by a touch whose OTP is read back from the key's
keyboard interface, like ``hotp``. "3 applications per key" programs slot 1
challenge-response, slot 2 HOTP and an OATH-TOTP credential on each key in one pass (three
records per key; the figure counts keys).

``chalresp`` is measured once more the way a station runs with real keys: ``hwtoken provision
run`` (no --virtual) in a umockdev testbed, finding each key through ykman's discovery and
programming it through python-yubico over real libusb, while the benchmark plugs the keys in
one after another and pulls each out once its result is printed (hot plug, as at a station;
the station looks for new keys every 0.5 s, which is part of the figure).

PostgreSQL: a throwaway server is started as ``nobody`` (it refuses root) in a temp dir,
on a Unix socket only, with ``fsync=on`` so its commits are as durable as SQLite's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hwtoken import paths
from hwtoken.provision.inventory import open_inventory
from hwtoken.provision.model import Mode, Spec
from hwtoken.provision.programmers import PATH_ENV, programmer_for
from hwtoken.provision.runner import Provisioner
from hwtoken.provision.sealing import Unlocker

N = int(os.environ.get("HWTOKEN_BENCH_KEYS", "20"))


def start_postgres(workdir: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        return None
    bindir = bins[-1].parent
    os.chmod(workdir, 0o755)
    pg = workdir / "pg"
    pg.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(pg, "nobody")
        prefix = ["runuser", "-u", "nobody", "--"]
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(pg / "data"), "-U", "postgres",
                    "--auth=trust", "--no-sync"], check=True, capture_output=True,
                    timeout=120)
    proc = subprocess.Popen([*prefix, str(bindir / "postgres"), "-D", str(pg / "data"),
                             "-k", str(pg), "-c", "listen_addresses="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql://postgres@/postgres?host={pg}"
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(url, connect_timeout=2).close()
            return proc, url
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                proc.kill()
                return None
            time.sleep(0.1)


def stop_postgres(proc: subprocess.Popen[bytes], data: Path) -> None:
    """Fast shutdown, signalled to the postmaster itself (runuser forwards no SIGINT)."""
    try:
        pid: int | None = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid = None
    try:
        if pid is not None:
            os.kill(pid, signal.SIGINT)
        else:
            proc.terminate()
        proc.wait(20)
    except ProcessLookupError:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait(10)


class _Plugged:
    """The pool's keys, created beforehand: "plugging in" is not what is measured."""

    def __init__(self, devices: list) -> None:
        self.devices = devices

    def arrivals(self):  # noqa: ANN201
        return iter(self.devices)

    def present(self, record):  # noqa: ANN001, ANN201 - never asked: nothing is resumed
        return None


_CA: list[object] = []


def local_ca(work: Path) -> object:
    """A P-256 CA in files, as --ca-cert/--ca-key name them (made once)."""
    if not _CA:
        from hwtoken.provision.ca import LocalCa, rehearsal_ca

        cert, key = rehearsal_ca(work, name="bench CA")
        _CA.append(LocalCa(str(cert), str(key)))
    return _CA[0]


def keys_per_minute(url: str, mode: Mode | list[Spec], path: str, tag: str,
                    signer: object = None) -> float:
    """Keys per minute for one mode, or for a plan of several places on each key."""
    import functools

    from hwtoken.provision.protocol import Station
    from hwtoken.provision.sources import VirtualPool

    os.environ[PATH_ENV] = path
    plan = [Spec(mode, name={"piv": "9a", "fido": "pin"}.get(mode.application, "hwtoken"))
            ] if isinstance(mode, Mode) else mode
    with open_inventory(url) as inv:
        inv.unlock(Unlocker(passphrase="bench passphrase"))
        devices = list(VirtualPool(N, prefix=tag).arrivals())
        programmers = functools.partial(programmer_for,
                                        station=Station(journal=inv, signer=signer))
        start = time.perf_counter()
        summary = Provisioner(inv, programmers).run(plan, _Plugged(devices))
        elapsed = time.perf_counter() - start
    if summary.counts() != {"done": N * len(plan)}:
        bad = [o for o in summary.outcomes if o.result != "done"][:3]
        raise SystemExit(f"{tag}: {summary.counts()}: {[(o.serial, o.message) for o in bad]}")
    return N / elapsed * 60


def through_pcscd(work: Path) -> list[tuple[str, float]]:
    """oath-totp rows through a private pcscd (with and without the QUICKACK fix)."""
    from hwtoken.emulator import pcscd as pcscd_mod
    from hwtoken.emulator.transports import vpcd
    from hwtoken.yubikey.oath import VPCD_ENV

    if os.geteuid() != 0:
        print("not root: skipping the rows through a private pcscd")
        return []
    daemon = pcscd_mod.Pcscd().start()
    rows: list[tuple[str, float]] = []
    try:
        daemon.export_env()
        os.environ[VPCD_ENV] = f"127.0.0.1:{daemon.port}"
        rows.append(("oath-totp via yubikit through pcscd+vpcd, SQLite",
                     keys_per_minute(f"sqlite:///{work / 'oath-pcscd.db'}", Mode.OATH_TOTP,
                                     "client", "op")))
        rows.append(("piv (ECCP256 + CA certificate) via yubikit through pcscd+vpcd, SQLite",
                     keys_per_minute(f"sqlite:///{work / 'piv-pcscd.db'}", Mode.PIV,
                                     "client", "pp", local_ca(work))))
        quickack, vpcd._TCP_QUICKACK = vpcd._TCP_QUICKACK, None
        try:
            rows.append(("  same, without TCP_QUICKACK (before the fix)",
                         keys_per_minute(f"sqlite:///{work / 'oath-slow.db'}",
                                         Mode.OATH_TOTP, "client", "os")))
        finally:
            vpcd._TCP_QUICKACK = quickack
    finally:
        os.environ.pop(VPCD_ENV, None)
        daemon.stop()
    return rows


def plugged_one_after_another(work: Path, n: int) -> float:
    """Keys per minute for `provision run --mode chalresp` on keys plugged in through the
    umockdev testbed, each pulled out when done (see the module docstring)."""
    import json
    import threading

    from hwtoken.emulator import VirtualKey
    from hwtoken.emulator.transports.umockdev import Testbed

    keys = [VirtualKey.create(work / f"plugged-{i}.key") for i in range(n)]
    results: dict[int, str] = {}
    try:
        with Testbed() as tb:
            env = {**os.environ, "HWTOKEN_INVENTORY_PASSPHRASE": "bench passphrase"}
            proc = tb.popen([sys.executable, "-m", "hwtoken", "provision", "run", "-i",
                             f"sqlite:///{work / 'plugged.db'}", "-m", "chalresp",
                             "--idle-timeout", "5", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)

            def read() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if line.startswith('{"serial"'):
                        doc = json.loads(line)
                        results[doc["serial"]] = doc["result"]

            threading.Thread(target=read, daemon=True).start()
            start = time.perf_counter()
            for key in keys:
                plugged = tb.plug(key)
                deadline = time.monotonic() + 120
                while key.serial not in results:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit(f"plugged: no result for key {key.serial}")
                    time.sleep(0.01)
                tb.unplug(plugged)
                if results[key.serial] != "done":
                    raise SystemExit(f"plugged: key {key.serial} {results[key.serial]}")
            elapsed = time.perf_counter() - start
            proc.wait(60)
    finally:
        for key in keys:
            key.close()
    return n / elapsed * 60


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="hwtoken-bench-provision-"))
    paths.set_state_dir(work / "state")
    pg = None
    try:
        rows: list[tuple[str, float]] = []
        base = keys_per_minute(f"sqlite:///{work / 'base.db'}", Mode.CHALRESP, "applet",
                               "base")
        rows.append(("baseline: applet path, SQLite (no transport)", base))
        rows.append(("chalresp via python-yubico/USB-IP, SQLite",
                     keys_per_minute(f"sqlite:///{work / 'inv.db'}", Mode.CHALRESP, "client",
                                     "sq")))
        rows.append(("oath-totp via yubikit (in-process card), SQLite",
                     keys_per_minute(f"sqlite:///{work / 'oath.db'}", Mode.OATH_TOTP,
                                     "client", "oa")))
        rows.append(("yubiotp via python-yubico/USB-IP (touch read back), SQLite",
                     keys_per_minute(f"sqlite:///{work / 'yubiotp.db'}", Mode.YUBIOTP,
                                     "client", "yo")))
        three = [Spec(Mode.CHALRESP, slot=1), Spec(Mode.HOTP, slot=2),
                 Spec(Mode.OATH_TOTP, name="mail")]
        rows.append(("3 applications per key (chalresp:1, hotp:2, oath-totp), SQLite",
                     keys_per_minute(f"sqlite:///{work / 'three.db'}", three, "client",
                                     "three")))
        rows.append(("piv (ECCP256 + CA certificate) via yubikit (in-process card), SQLite",
                     keys_per_minute(f"sqlite:///{work / 'piv.db'}", Mode.PIV, "client",
                                     "piv", local_ca(work))))
        rows.append(("fido (PIN + forcePINChange) via python-fido2 (in-process), SQLite",
                     keys_per_minute(f"sqlite:///{work / 'fido.db'}", Mode.FIDO, "client",
                                     "fido")))
        rows += through_pcscd(work)
        n_plugged = min(N, 10)
        rows.append((f"chalresp, hot-plugged via umockdev + libusb ({n_plugged} keys)",
                     plugged_one_after_another(work, n_plugged)))
        pg = start_postgres(work)
        if pg is None:
            print("PostgreSQL server binaries not found: skipping that figure")
        else:
            rows.append(("chalresp via python-yubico/USB-IP, PostgreSQL",
                         keys_per_minute(pg[1], Mode.CHALRESP, "client", "pg")))
        print(f"virtual keys provisioned per minute ({N} keys each, 4 durable steps per "
              "record):")
        for label, rate in rows:
            print(f"  {label:<72} {rate:8.0f}/min  ({rate / base:5.2f} x baseline)")
    finally:
        if pg is not None:
            stop_postgres(pg[0], work / "pg" / "data")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
