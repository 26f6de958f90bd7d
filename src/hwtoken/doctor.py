"""``hwtoken doctor``: is this machine ready for keys, the virtual key and the fob?

Each check looks at files under ``root`` (``/`` normally; a prepared tree in tests) and
returns a :class:`Check` with a status and, when something is wrong, the fix.

Statuses: ``ok``; ``warn`` (an optional part is missing or nothing is plugged in: it does
not change the exit code); ``fail`` (something needs fixing: exit 1).

``audience`` (``doctor --for``) keeps the checks a kind of user needs: a *developer*
who uses virtual keys needs no pcscd, udev rules or plugged-in key (those become
optional: a failure is only a warning), an *admin* programming real YubiKeys needs them,
a *maker* needs the fob's serial port and mpremote. :data:`AUDIENCE_NEEDS` says which
check matters to whom; a check it does not name matters to everyone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import grp
import importlib.util
import os
import pwd
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from hwtoken import extras, udev

OK, WARN, FAIL = "ok", "warn", "fail"

YUBICO_VID = 0x1050
FIDO_USAGE_PAGE = b"\x06\xd0\xf1"  # HID report descriptor: Usage Page (0xF1D0)
FOB_VIDS = {"2e8a": "Raspberry Pi (Pico)", "303a": "Espressif", "10c4": "Silicon Labs CP210x",
            "1a86": "WCH CH340/CH9102", "0403": "FTDI"}

CORE = ["click", "pyotp", "cryptography", "segno"]

AUDIENCES = ("developer", "admin", "maker")
NEED, OPTIONAL, REQUIRED = "need", "optional", "required"
#: check name -> audience -> NEED (a failure fails), OPTIONAL (a failure only warns),
#: REQUIRED (a warning fails too: the part is missing and that user cannot do without) or
#: absent (not shown). Checks not listed here are needed by everyone.
AUDIENCE_NEEDS: dict[str, dict[str, str]] = {
    "python: core": {"developer": NEED, "admin": NEED, "maker": NEED},
    "python: fido": {"developer": REQUIRED, "admin": OPTIONAL},
    "python: browser": {"developer": OPTIONAL},
    "python: yubikey": {"admin": REQUIRED},
    "python: pcsc": {"developer": OPTIONAL, "admin": REQUIRED},
    "python: provision": {"admin": OPTIONAL},
    "python: fob": {"maker": REQUIRED},
    "keys": {"developer": OPTIONAL, "admin": NEED},
    "udev rules": {"developer": OPTIONAL, "admin": NEED, "maker": NEED},
    "libusb": {"developer": OPTIONAL, "admin": NEED},
    "pcscd": {"developer": OPTIONAL, "admin": NEED},
    "vpcd driver": {"developer": OPTIONAL, "admin": OPTIONAL},
    "usbip tools": {"developer": OPTIONAL, "admin": OPTIONAL},
    "vhci-hcd": {"developer": OPTIONAL},
    "umockdev": {"developer": OPTIONAL, "admin": OPTIONAL},
    "ssh-keygen": {"developer": OPTIONAL},
    "fido2-tools": {"developer": OPTIONAL, "admin": OPTIONAL},
    "chromium": {"developer": OPTIONAL},
    "firefox": {"developer": OPTIONAL},
    "fob serial port": {"maker": NEED},
    "virtual fob": {"maker": OPTIONAL},
    # a virtual key and the code under test read the same clock: a container without NTP
    # is fine for a developer; TOTP on real keys and on the fob needs the true time
    "clock": {"developer": OPTIONAL, "admin": NEED, "maker": NEED},
}


@dataclass
class Check:
    """One line of the report."""

    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class Who:
    """The user whose access is checked (the one who ran sudo, if any)."""

    uid: int
    gids: frozenset[int]
    name: str

    @classmethod
    def current(cls) -> Who:
        uid = int(os.environ.get("SUDO_UID", os.getuid())) if os.geteuid() == 0 else os.getuid()
        try:
            pw = pwd.getpwuid(uid)
            name, gid = pw.pw_name, pw.pw_gid
            gids = {gid, *(g.gr_gid for g in grp.getgrall() if name in g.gr_mem)}
        except KeyError:
            name, gids = str(uid), {os.getgid()}
        return cls(uid, frozenset(gids), name)


def _acl_grants(path: Path, who: Who, want: int) -> bool:
    """True if the POSIX ACL on ``path`` gives ``who`` the ``want`` bits (r=4, w=2)."""
    try:
        raw = os.getxattr(path, "system.posix_acl_access")
    except OSError:
        return False
    # header: u32 version; entries: u16 tag, u16 perm, u32 id
    mask = 7
    user_perm = None
    group_perm = 0
    group_match = False
    for off in range(4, len(raw) - 7, 8):
        tag, perm, ident = struct.unpack_from("<HHI", raw, off)
        if tag == 0x02 and ident == who.uid:  # ACL_USER
            user_perm = perm
        elif tag == 0x08 and ident in who.gids:  # ACL_GROUP
            group_perm |= perm
            group_match = True
        elif tag == 0x10:  # ACL_MASK
            mask = perm
    if user_perm is not None:
        return (user_perm & mask & want) == want
    return group_match and (group_perm & mask & want) == want


def can_access(path: Path, who: Who, want: int = 6) -> bool:
    """Would ``who`` get read (4) and write (2) access to ``path``? (mode bits and ACL)"""
    try:
        st = path.stat()
    except OSError:
        return False
    if who.uid == 0:
        return True
    if st.st_uid == who.uid:
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid in who.gids:
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return (bits & want) == want or _acl_grants(path, who, want)


# -- individual checks ---------------------------------------------------------------------
def check_python(find_spec: Callable[[str], object] = importlib.util.find_spec) -> list[Check]:
    """The core packages, then one line per extra (``python: fido`` ...): present, or
    which of its packages are missing and the ``pip install`` that brings them."""
    out = []
    missing_core = [m for m in CORE if find_spec(m) is None]
    if missing_core:
        out.append(Check("python: core", FAIL, "missing " + ", ".join(missing_core),
                         "pip install --force-reinstall hwtoken"))
    else:
        out.append(Check("python: core", OK, "click, pyotp, cryptography, segno present"))
    absent = {r.module for r in extras.missing(find_spec)}
    for extra in extras.EXTRAS:
        wanted = [r for r in extras.REQUIREMENTS if r.extra == extra]
        lacking = [r for r in wanted if r.module in absent]
        name = f"python: {extra}"
        if lacking:
            out.append(Check(name, WARN, "missing " + "; ".join(
                f"{r.package} ({r.needed_for})" for r in lacking),
                extras.install_command([extra])))
        else:
            out.append(Check(name, OK, ", ".join(dict.fromkeys(r.package for r in wanted))
                             + " present"))
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _uevent(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in _read(path).splitlines() if "=" in line)


def find_hidraw_keys(root: Path) -> list[dict[str, object]]:
    """hidraw nodes that are YubiKeys or declare the FIDO usage page."""
    keys = []
    base = root / "sys/class/hidraw"
    for entry in sorted(base.glob("hidraw*")) if base.is_dir() else []:
        ev = _uevent(entry / "device/uevent")
        hid_id = ev.get("HID_ID", "")
        parts = hid_id.split(":")
        vid = int(parts[1], 16) if len(parts) == 3 else -1
        pid = int(parts[2], 16) if len(parts) == 3 else -1
        try:
            desc = (entry / "device/report_descriptor").read_bytes()
        except OSError:
            desc = b""
        fido = FIDO_USAGE_PAGE in desc
        if vid == YUBICO_VID or fido:
            keys.append({"node": entry.name, "vid": vid, "pid": pid, "fido": fido,
                         "name": ev.get("HID_NAME", "?"), "dev": root / "dev" / entry.name})
    return keys


def check_keys(root: Path, who: Who) -> Check:
    keys = find_hidraw_keys(root)
    if not keys:
        return Check("keys", WARN, "no YubiKey or FIDO key found", "plug in a key")
    blocked = [k for k in keys if not can_access(k["dev"], who)]  # type: ignore[arg-type]
    names = ", ".join(f"{k['node']} ({k['name']})" for k in keys)
    if blocked:
        return Check("keys", FAIL,
                     f"{who.name} cannot read/write " + ", ".join(str(k["node"]) for k in blocked),
                     "sudo hwtoken udev install, then unplug and replug the key")
    return Check("keys", OK, f"{len(keys)} found and usable by {who.name}: {names}")


def check_udev_rules(root: Path) -> Check:
    st = udev.check(root)
    if st.uhid_granted_by:
        return Check("udev rules", FAIL, udev.problem(st).rpartition(";")[0],
                     "sudo hwtoken udev install (and remove other rules that grant uhid)")
    if not st.installed:
        return Check("udev rules", FAIL, f"{st.path} is not installed", "sudo hwtoken udev install")
    if not st.current:
        return Check("udev rules", FAIL, f"{st.path} differs from this hwtoken's rules",
                     "sudo hwtoken udev install")
    return Check("udev rules", OK, f"{st.path} installed and current")


def find_libusb(root: Path) -> str | None:
    """Where libusb-1.0 is (what pyusb, and so python-yubico, needs for real keys)."""
    if root.resolve() == Path("/"):
        found = ctypes.util.find_library("usb-1.0")
        if found:
            return found
    for pattern in ("usr/lib/*/libusb-1.0.so*", "usr/lib/libusb-1.0.so*",
                    "lib/*/libusb-1.0.so*", "usr/lib64/libusb-1.0.so*"):
        hits = sorted(root.glob(pattern))
        if hits:
            return str(hits[0])
    return None


def check_libusb(root: Path) -> Check:
    found = find_libusb(root)
    if found is None:
        return Check("libusb", FAIL, "libusb-1.0 not found (python-yubico reaches a real "
                     "YubiKey's OTP slots through it)", "sudo apt install libusb-1.0-0")
    return Check("libusb", OK, found)


def pcscd_socket(root: Path) -> Path:
    env = os.environ.get("PCSCLITE_CSOCK_NAME")
    if env and root.resolve() == Path("/"):
        return Path(env)
    return root / "run/pcscd/pcscd.comm"


def check_pcscd(root: Path, timeout: float = 2.0) -> Check:
    sock_path = pcscd_socket(root)
    installed = any((root / p).exists() for p in ("usr/sbin/pcscd", "sbin/pcscd"))
    if not sock_path.exists():
        fix = ("sudo systemctl enable --now pcscd.socket" if installed
               else "sudo apt install pcscd (then: sudo systemctl enable --now pcscd.socket)")
        return Check("pcscd", FAIL, f"not running (no socket at {sock_path})", fix)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(sock_path))
    except OSError as exc:
        return Check("pcscd", FAIL, f"socket {sock_path} refuses connections ({exc.strerror})",
                     "sudo systemctl restart pcscd")
    finally:
        s.close()
    return Check("pcscd", OK, f"reachable at {sock_path}")


def check_vpcd(root: Path) -> Check:
    drivers = [root / "usr/lib/pcsc/drivers/serial/libifdvpcd.so"]
    conf = root / "etc/reader.conf.d/vpcd"
    if not any(d.exists() for d in drivers) or not conf.exists():
        return Check("vpcd driver", WARN, "not installed (needed to reach the virtual key over "
                     "PC/SC)", "sudo apt install vsmartcard-vpcd && sudo systemctl restart pcscd")
    port = ""
    for line in _read(conf).splitlines():
        if line.strip().upper().startswith("CHANNELID"):
            port = line.split()[-1]
    return Check("vpcd driver", OK, f"installed ({conf}{', port ' + port if port else ''})")


def check_usbip(root: Path) -> list[Check]:
    tools = [p for p in ("usr/sbin/usbip", "usr/bin/usbip", "sbin/usbip") if (root / p).exists()]
    out = [Check("usbip tools", OK, f"/{tools[0]}") if tools else
           Check("usbip tools", WARN, "not installed (lists and attaches served virtual keys)",
                 "sudo apt install usbip")]
    vhci = ("sys/devices/platform/vhci_hcd.0", "sys/module/vhci_hcd")
    if any((root / p).exists() for p in vhci):
        out.append(Check("vhci-hcd", OK, "loaded: `usbip attach` can make a virtual key a USB "
                         "device"))
    else:
        out.append(Check("vhci-hcd", WARN, "kernel module not loaded (only needed for "
                         "`usbip attach`)", "sudo modprobe vhci-hcd"))
    return out


def _usb_vendor_of(dev_dir: Path) -> tuple[str, str]:
    try:
        cur = dev_dir.resolve()
    except OSError:
        return "", ""
    for _ in range(5):
        vid = _read(cur / "idVendor").strip()
        if vid:
            return vid.lower(), _read(cur / "idProduct").strip().lower()
        cur = cur.parent
    return "", ""


def find_fob_ports(root: Path) -> list[dict[str, object]]:
    """USB serial ports whose board is one the fob firmware runs on."""
    ports = []
    base = root / "sys/class/tty"
    for entry in sorted(base.glob("tty[AU][CS][MB]*")) if base.is_dir() else []:
        vid, pid = _usb_vendor_of(entry / "device")
        if vid in FOB_VIDS:
            ports.append({"node": entry.name, "vid": vid, "pid": pid, "board": FOB_VIDS[vid],
                          "dev": root / "dev" / entry.name})
    return ports


def check_fob(root: Path, who: Who) -> Check:
    ports = find_fob_ports(root)
    if not ports:
        return Check("fob serial port", OK, "no fob board connected (nothing to check)")
    blocked = [p for p in ports if not can_access(p["dev"], who)]  # type: ignore[arg-type]
    if blocked:
        return Check("fob serial port", FAIL,
                     f"{who.name} cannot open " + ", ".join(f"/dev/{p['node']}" for p in blocked),
                     "sudo hwtoken udev install, then replug the board "
                     "(or: sudo usermod -aG dialout $USER and log in again)")
    return Check("fob serial port", OK, ", ".join(f"/dev/{p['node']} ({p['board']})"
                                                 for p in ports))


@dataclass(frozen=True)
class Program:
    """A program a developer's tests start against a (virtual) key."""

    check: str  #: the check's name
    names: tuple[str, ...]  #: on PATH, or absolute paths; the first found counts
    package: str  #: the Debian package that brings it
    needed_for: str
    version_arg: str | None = None  #: ask the program its version with this argument


def _programs() -> list[Program]:
    from hwtoken.browser import chromium, firefox

    return [
        Program("ssh-keygen", ("ssh-keygen",), "openssh-client",
                "OpenSSH security-key (sk) keys on a plugged-in virtual key"),
        Program("fido2-tools", ("fido2-token",), "fido2-tools",
                "libfido2's fido2-token, fido2-cred and fido2-assert"),
        Program("chromium", chromium.BINARIES, "chromium",
                "WebAuthn in headless Chromium (hwtoken_browser, Playwright, Selenium)",
                "--version"),
        Program("chromium", chromium.DRIVERS, "chromium-driver",
                "Selenium's chromedriver for Chromium (hwtoken_browser)"),
        Program("firefox", firefox.BINARIES, "firefox-esr",
                "WebAuthn in headless Firefox (hwtoken_browser)", "--version"),
    ]


PROGRAM_DIRS = ("usr/local/bin", "usr/bin", "bin", "usr/sbin", "sbin")
VERSION_TIMEOUT = 10.0  # seconds a program may take to print its version


def find_program(root: Path, names: Iterable[str]) -> str | None:
    """The first of ``names`` that is an executable under ``root`` (on PATH for ``/``)."""
    import shutil

    live = root.resolve() == Path("/")
    for name in names:
        if os.path.isabs(name):
            path = root / name.lstrip("/")
            if path.is_file() and os.access(path, os.X_OK):
                return name
        elif live:
            found = shutil.which(name)
            if found:
                return found
        else:
            for d in PROGRAM_DIRS:
                if (root / d / name).is_file():
                    return f"/{d}/{name}"
    return None


def program_version(path: str, arg: str) -> str:
    """The first line ``path arg`` prints (empty when it cannot say)."""
    import subprocess

    try:
        done = subprocess.run([path, arg], capture_output=True, text=True,
                              timeout=VERSION_TIMEOUT, stdin=subprocess.DEVNULL, check=False,
                              errors="replace")
    except (OSError, subprocess.SubprocessError):
        return ""
    return (done.stdout.strip().splitlines() or [""])[0]


def check_programs(root: Path) -> list[Check]:
    """ssh-keygen, fido2-tools and the browsers with their drivers: one check each (the
    browser's version when it is this machine's)."""
    live = root.resolve() == Path("/")
    grouped: dict[str, list[tuple[Program, str | None]]] = {}
    for program in _programs():
        grouped.setdefault(program.check, []).append(
            (program, find_program(root, program.names)))
    out = []
    for name, found in grouped.items():
        lacking = [p for p, path in found if path is None]
        if lacking:
            out.append(Check(name, WARN, "; ".join(
                f"{p.names[0]} not found (needed for {p.needed_for})" for p in lacking),
                "sudo apt install " + " ".join(dict.fromkeys(p.package for p in lacking))))
            continue
        shown = []
        for p, path in found:
            version = program_version(path, p.version_arg) if live and p.version_arg and \
                path else ""
            shown.append(f"{path}" + (f" ({version})" if version else ""))
        out.append(Check(name, OK, ", ".join(shown)))
    return out


def check_virtual_fob(node: Callable[[], str] | None = None,
                      micropython: Callable[[], object] | None = None) -> Check:
    """Node.js and MicroPython's WebAssembly port, which `hwtoken fob emulate` runs on."""
    from hwtoken.errors import SetupError
    from hwtoken.fob.emulator import locate

    try:
        found = (node or locate.node)()
        wasm = (micropython or locate.micropython)()
    except SetupError as exc:
        fix = str(exc).partition(": ")[2] or str(exc)
        return Check("virtual fob", WARN, "`hwtoken fob emulate` is unavailable: "
                     + str(exc).partition(":")[0], fix)
    return Check("virtual fob", OK, f"Node.js at {found}, MicroPython's WebAssembly port at "
                 f"{Path(str(wasm)).parent}: `hwtoken fob emulate` runs a fob without a board")


@dataclass
class ClockState:
    synced: bool | None  # None: cannot tell
    detail: str


class _Timex(ctypes.Structure):
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("constant", ctypes.c_long),
                ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
                ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long),
                ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
                ("shift", ctypes.c_int), ("stabil", ctypes.c_long),
                ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
                ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
                ("_pad", ctypes.c_int * 11)]


def kernel_clock_state(root: Path = Path("/")) -> ClockState:
    """Ask the kernel (adjtimex, read-only) whether an NTP client keeps the clock in sync."""
    if (root / "run/systemd/timesync/synchronized").exists():
        return ClockState(True, "systemd-timesyncd reports the clock synchronised")
    if root.resolve() != Path("/"):
        return ClockState(None, "no synchronisation marker in the prepared tree")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return ClockState(None, "cannot ask the kernel (adjtimex unavailable)")
    return clock_state_from_adjtimex(state, tx.status, tx.maxerror)


STA_UNSYNC = 0x0040
TIME_ERROR = 5


def clock_state_from_adjtimex(state: int, status: int, maxerror: int) -> ClockState:
    """What adjtimex's return value, ``status`` bits and ``maxerror`` (µs) say."""
    if state < 0:
        return ClockState(None, "adjtimex failed")
    if status & STA_UNSYNC or state == TIME_ERROR:
        return ClockState(False, "the kernel clock is not synchronised by NTP")
    return ClockState(True, f"NTP-synchronised (max error {maxerror / 1000:.0f} ms)")


def check_clock(probe: Callable[[], ClockState]) -> Check:
    st = probe()
    fix = "sudo timedatectl set-ntp true (or install chrony / systemd-timesyncd)"
    if st.synced is None:
        return Check("clock", WARN, f"unknown: {st.detail}", fix)
    if not st.synced:
        return Check("clock", FAIL, st.detail + "; TOTP codes are wrong when the clock drifts",
                     fix)
    return Check("clock", OK, st.detail)


def check_umockdev(root: Path) -> Check:
    """umockdev's preload library, which `hwtoken emulate run` and `serve --local` need."""
    from hwtoken.emulator.transports.umockdev.library import (
        DEBIAN_PACKAGES,
        LIB_DIRS,
        PRELOAD_ENV,
        PRELOAD_NAME,
    )

    override = os.environ.get(PRELOAD_ENV) if root == Path("/") else None
    candidates = [Path(override)] if override else [
        root / d.lstrip("/") / PRELOAD_NAME for d in LIB_DIRS]
    for path in candidates:
        if path.is_file():
            shown = "/" + str(path.relative_to(root)) if root != Path("/") else str(path)
            return Check("umockdev", OK, f"{PRELOAD_NAME} at {shown}: `hwtoken emulate run` "
                         "can plug virtual keys in as local USB devices")
    return Check("umockdev", WARN,
                 f"{PRELOAD_NAME} not found: `hwtoken emulate run` and `serve --local` "
                 "(virtual keys for unmodified programs) are unavailable",
                 f"apt install {DEBIAN_PACKAGES}")


# -- the whole report ------------------------------------------------------------------------
def run_checks(root: str | os.PathLike[str] = "/", *, who: Who | None = None,
               clock_probe: Callable[[], ClockState] | None = None,
               find_spec: Callable[[str], object] = importlib.util.find_spec,
               audience: str | None = None) -> list[Check]:
    """Every check, in the order they are shown (only ``audience``'s, see the module
    docstring)."""
    if audience is not None and audience not in AUDIENCES:
        from hwtoken.errors import InvalidInput

        raise InvalidInput(f"unknown audience {audience!r}: use {', '.join(AUDIENCES)}")
    r = Path(root)
    who = who or Who.current()
    steps: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("python", lambda: check_python(find_spec)),
        ("keys", lambda: check_keys(r, who)),
        ("udev rules", lambda: check_udev_rules(r)),
        ("libusb", lambda: check_libusb(r)),
        ("pcscd", lambda: check_pcscd(r)),
        ("vpcd driver", lambda: check_vpcd(r)),
        ("usbip tools", lambda: check_usbip(r)),
        ("umockdev", lambda: check_umockdev(r)),
        ("programs", lambda: check_programs(r)),
        ("fob serial port", lambda: check_fob(r, who)),
        ("virtual fob", check_virtual_fob),
        ("clock", lambda: check_clock(clock_probe or (lambda: kernel_clock_state(r)))),
    ]
    checks: list[Check] = []
    for name, step in steps:
        checks += guarded(name, step)
    return for_audience(checks, audience)


def guarded(name: str, check: Callable[[], Check | list[Check]]) -> list[Check]:
    """Run one check; if it raises, a line saying so takes its place (doctor never
    crashes: it is what people run when something is broken)."""
    try:
        result = check()
    except Exception as exc:  # noqa: BLE001 - reported as the check's outcome
        missing = extras.missing_dependency(exc)
        if missing is not None:
            return [Check(name, WARN, f"cannot check: {missing}",
                          extras.install_command([missing.requirement.extra]))]
        return [Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                      "a bug in hwtoken: please report it (HWTOKEN_DEBUG=1 shows more)")]
    return result if isinstance(result, list) else [result]


def for_audience(checks: Iterable[Check], audience: str | None) -> list[Check]:
    """The checks ``audience`` needs; an optional one's failure becomes a warning."""
    if audience is None:
        return list(checks)
    out = []
    for c in checks:
        need = AUDIENCE_NEEDS.get(c.name, {a: NEED for a in AUDIENCES}).get(audience)
        if need is None:
            continue
        if need == OPTIONAL and c.status == FAIL:
            c = Check(c.name, WARN, f"{c.detail} (optional for a {audience})", c.fix)
        elif need == REQUIRED and c.status == WARN:
            c = Check(c.name, FAIL, f"{c.detail} (a {audience} needs it)", c.fix)
        out.append(c)
    return out


def exit_code(checks: Iterable[Check]) -> int:
    """0 when nothing failed, 1 when something needs fixing."""
    return 1 if any(c.status == FAIL for c in checks) else 0

