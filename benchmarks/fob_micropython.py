"""The fob firmware on the real MicroPython interpreter: milliseconds per code, heap after boot.

Runs firmware/ on the WebAssembly port under Node.js (tests/fob/node, `make deps`
installs it). Per algorithm it times ``totp.totp`` through the port's hashlib where it has
the hash (sha256 here, as on a plain Pico) and through the pure-Python fallback (sha.py:
SHA-1 always, as on a Pico), and a full screen redraw (code + drawing). Baselines measured
in the same run: the port's hashlib (fallback/hashlib ratio) and the same firmware code on
CPython (MicroPython/CPython ratio). A Pico (133 MHz Cortex-M0+) is roughly 20-50x slower
than this WebAssembly build on a PC; the figures show which part dominates, not the
Pico's absolute speed.

Heap: the virtual fob (``hwtoken fob emulate``) boots the deployed firmware with 20
accounts and kept settings (settings.json: OLED address, pins, brightness, a clock in a
time zone, Wi-Fi), and ``gc.mem_alloc()`` is read after ``gc.collect()`` between two turns
of its main loop, the screen drawn: goal <= 64 KB (a Pico leaves about 190 KB to Python).
On that running board it also times one code per account, as the fob computes them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "tests" / "fob" / "node"
N = 200

SCRIPT = """
import gc, json, time, framebuf, totp, sha, accounts, screen
key = b"12345678901234567890123456789012345678901234567890123456789012345"
res = {}
def bench(label, fn, n):
    t0 = time.ticks_us()
    for i in range(n):
        fn(i)
    res[label] = time.ticks_diff(time.ticks_us(), t0) / 1000 / n
for alg in ("SHA1", "SHA256", "SHA512"):
    new = getattr(sha, alg.lower())
    bench(alg + " fallback", lambda i: totp.totp(key, 1700000000 + 30 * i, 6, alg, 30, new), N)
bench("SHA256 hashlib", lambda i: totp.totp(key, 1700000000 + 30 * i, 6, "SHA256"), N)
for i in range(20):
    accounts.add("account-%02d" % i, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
                 ("SHA1", "SHA256", "SHA512")[i % 3])
accts = accounts.load()
buf = bytearray(1024)
fb = framebuf.FrameBuffer(buf, 128, 64, framebuf.MONO_VLSB)
bench("screen SHA1", lambda i: screen.draw(fb, accts, 0, 1700000000 + 30 * i), N // 4)
bench("screen SHA512", lambda i: screen.draw(fb, accts, 2, 1700000000 + 30 * i), N // 4)
res["backends"] = [totp.hash_backend(a) for a in ("sha1", "sha256", "sha512")]
print(json.dumps(res))
"""

# on the running virtual fob: each account's code, its cache emptied first (ms per code)
ON_BOARD = """
import accounts, time, json
accts = accounts.load()
t0 = time.ticks_us()
for i, a in enumerate(accts):
    a._codes.clear()
    a.code(1700000000 + 30 * i)
print(json.dumps(time.ticks_diff(time.ticks_us(), t0) / 1000 / len(accts)))
"""


def micropython() -> dict:
    node = shutil.which("node")
    if not node or not (NODE_DIR / "node_modules").exists():
        sys.exit("needs Node.js and `npm install` in tests/fob/node (make deps)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.py"
        script.write_text(SCRIPT.replace("N)", f"{N})").replace("N // 4", str(N // 4)))
        proc = subprocess.run([node, str(NODE_DIR / "mp.mjs"), "run", str(script),
                               str(ROOT / "firmware")], capture_output=True, text=True,
                              timeout=600, cwd=tmp)
    if proc.returncode:
        sys.exit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpython() -> dict[str, float]:
    from hwtoken.fob.firmware import load_host_modules

    fw = load_host_modules()
    key = b"12345678901234567890123456789012345678901234567890123456789012345"
    out = {}
    for alg in ("SHA1", "SHA256", "SHA512"):
        new = getattr(fw.sha, alg.lower())
        t0 = time.perf_counter()
        for i in range(N):
            fw.totp.totp(key, 1700000000 + 30 * i, 6, alg, 30, new)
        out[alg + " fallback"] = (time.perf_counter() - t0) * 1000 / N
    return out


def virtual_fob() -> dict:
    """Heap after boot and ms per code on the virtual fob: 20 accounts, settings kept."""
    from hwtoken.fob.device import Fob
    from hwtoken.fob.emulator import FobEmulator
    from hwtoken.fob.emulator.ports import TcpPort
    from hwtoken.fob.settings import Changes
    from hwtoken.fob.simulate import FobAccount

    settings = Changes({"oled_addr": 0x3C, "sda": 4, "scl": 5, "brightness": 200,
                        "dim_after": 30, "show_clock": True, "utc_offset": 60,
                        "wifi_ssid": "home", "wifi_password": "correct horse"})
    with FobEmulator() as emu:
        port = TcpPort(emu)
        try:
            with Fob(port.url) as f:
                f.deploy()
                f.configure(settings)
                f.sync_time()
                for i in range(20):
                    f.add(FobAccount(f"account-{i:02d}", "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
                                     ("SHA1", "SHA256", "SHA512")[i % 3]))
            with Fob(port.url) as f:  # a firmware update: the settings must survive it
                kept = f.deploy(force=True).kept
            if not emu.wait_running(30):
                sys.exit("the virtual fob's main loop did not start")
            emu.wait_frame(lambda fr: fr.on and fr.n > 0)
            heap = emu.heap()
            with Fob(port.url) as f:
                per_code = json.loads(f._exec(ON_BOARD).decode().strip().splitlines()[-1])
        finally:
            port.close()
    return {"heap": heap["mem_alloc"], "kept": kept, "per_code": per_code}


def main() -> None:
    mp = micropython()
    cp = cpython()
    print(f"MicroPython {'/'.join(mp['backends'])} for sha1/sha256/sha512 on this port")
    print(f"{'ms per code (MicroPython)':<28}{'ms':>9}{'vs CPython':>12}")
    for label in ("SHA1 fallback", "SHA256 fallback", "SHA512 fallback", "SHA256 hashlib"):
        ratio = f"{mp[label] / cp[label]:.1f}x" if label in cp else ""
        print(f"{label:<28}{mp[label]:>9.3f}{ratio:>12}")
    slowdown = mp["SHA256 fallback"] / mp["SHA256 hashlib"]
    print(f"{'fallback / hashlib (SHA256)':<28}{slowdown:>8.1f}x")
    for label in ("screen SHA1", "screen SHA512"):
        print(f"{label + ' (code + draw)':<28}{mp[label]:>9.3f}")
    vf = virtual_fob()
    print(f"{'per code on the running fob':<28}{vf['per_code']:>9.3f}   (20 accounts, "
          "SHA1/SHA256/SHA512 mixed)")
    kb = vf["heap"] / 1024
    print(f"heap after boot, 20 accounts + screen, settings kept ({len(vf['kept'])}: "
          f"{', '.join(vf['kept'])}): {vf['heap']} bytes ({kb:.1f} KB; goal <= 64 KB)")
    if vf["heap"] > 64 * 1024:
        sys.exit("memory goal missed")


if __name__ == "__main__":
    main()
