"""`hwtoken doctor` against prepared directory trees standing in for /sys, /dev and /etc."""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwtoken import doctor, udev
from hwtoken.cli import cli

USER = doctor.Who(uid=54321, gids=frozenset({54321}), name="alice")
YUBIKEY_DESC = bytes.fromhex("06d0f10901a1010920150026ff007508954081020921150026ff007508"
                             "954091 02c0".replace(" ", ""))


def synced():
    return doctor.ClockState(True, "test clock in sync")


def add_hidraw(root: Path, node: str, vid: int, pid: int, desc: bytes, mode: int = 0o600,
               uid: int = 0) -> Path:
    dev_dir = root / "sys/class/hidraw" / node / "device"
    dev_dir.mkdir(parents=True)
    (dev_dir / "uevent").write_text(
        f"DRIVER=hid-generic\nHID_ID=0003:{vid:08X}:{pid:08X}\nHID_NAME=Test Key {node}\n")
    (dev_dir / "report_descriptor").write_bytes(desc)
    dev = root / "dev" / node
    dev.parent.mkdir(exist_ok=True)
    dev.write_bytes(b"")
    os.chmod(dev, mode)
    os.chown(dev, uid, 0)
    return dev


def add_tty(root: Path, node: str, vid: str, pid: str, mode: int = 0o660) -> Path:
    usb = root / "sys/devices/pci0/usb1/1-1"
    intf = usb / "1-1:1.0"
    (intf / "tty" / node).mkdir(parents=True)
    (usb / "idVendor").write_text(vid + "\n")
    (usb / "idProduct").write_text(pid + "\n")
    cls = root / "sys/class/tty"
    cls.mkdir(parents=True, exist_ok=True)
    (cls / node).symlink_to(intf / "tty" / node)
    (intf / "tty" / node / "device").symlink_to(intf)
    dev = root / "dev" / node
    dev.parent.mkdir(exist_ok=True)
    dev.write_bytes(b"")
    os.chmod(dev, mode)
    return dev


def pcscd_listening(root: Path) -> socket.socket:
    path = root / "run/pcscd/pcscd.comm"
    path.parent.mkdir(parents=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.listen(1)
    return s


def healthy_tree(root: Path) -> socket.socket:
    udev.install(root, reload=False)
    for p in ("usr/lib/pcsc/drivers/serial/libifdvpcd.so", "etc/reader.conf.d/vpcd",
              "usr/sbin/usbip", "usr/sbin/pcscd", "usr/lib/x86_64-linux-gnu/libusb-1.0.so.0",
              "usr/lib/x86_64-linux-gnu/libumockdev-preload.so.0"):
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_text("CHANNELID 0x8C7B\n" if p.endswith("vpcd") else "")
    (root / "sys/devices/platform/vhci_hcd.0").mkdir(parents=True)
    for program in PROGRAMS:
        add_program(root, program)
    return pcscd_listening(root)


PROGRAMS = ("usr/bin/ssh-keygen", "usr/bin/fido2-token", "usr/lib/chromium/chromium",
            "usr/bin/chromedriver", "usr/bin/firefox-esr")


def add_program(root: Path, path: str) -> None:
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text("#!/bin/sh\n")
    (root / path).chmod(0o755)


def by_name(checks):
    return {c.name: c for c in checks}


def test_healthy_machine_passes(tmp_path):
    sock = healthy_tree(tmp_path)
    try:
        add_hidraw(tmp_path, "hidraw0", 0x1050, 0x0407, YUBIKEY_DESC, mode=0o600, uid=USER.uid)
        add_tty(tmp_path, "ttyACM0", "2e8a", "0005", mode=0o666)
        checks = doctor.run_checks(tmp_path, who=USER, clock_probe=synced)
    finally:
        sock.close()
    c = by_name(checks)
    assert all(x.status == "ok" for x in checks), [x for x in checks if x.status != "ok"]
    assert "hidraw0" in c["keys"].detail and "Raspberry Pi" in c["fob serial port"].detail
    assert doctor.exit_code(checks) == 0


def test_empty_machine_fails_with_fixes(tmp_path):
    checks = by_name(doctor.run_checks(tmp_path, who=USER,
                                       clock_probe=lambda: doctor.ClockState(False, "off")))
    assert checks["udev rules"].status == "fail" and "udev install" in checks["udev rules"].fix
    assert checks["pcscd"].status == "fail" and "apt install pcscd" in checks["pcscd"].fix
    assert checks["vpcd driver"].status == "warn"
    assert checks["usbip tools"].status == "warn" and checks["vhci-hcd"].status == "warn"
    assert checks["keys"].status == "warn"
    assert checks["umockdev"].status == "warn" and "apt install umockdev" in \
        checks["umockdev"].fix
    assert checks["clock"].status == "fail" and "set-ntp" in checks["clock"].fix
    assert doctor.exit_code(checks.values()) == 1


def test_key_owned_by_root_is_a_failure_until_acl_grants_it(tmp_path):
    dev = add_hidraw(tmp_path, "hidraw3", 0x1050, 0x0407, YUBIKEY_DESC, mode=0o600)
    c = doctor.check_keys(tmp_path, USER)
    assert c.status == "fail" and "hidraw3" in c.detail and "replug" in c.fix
    # what udev's uaccess does: an ACL entry user:alice:rw- (and a mask)
    acl = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in [
        (0x01, 6, 0xFFFFFFFF), (0x02, 6, USER.uid), (0x04, 0, 0xFFFFFFFF),
        (0x10, 6, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)])
    try:
        os.setxattr(dev, "system.posix_acl_access", acl)
    except OSError as exc:  # the file system under tmp_path has no ACLs
        pytest.skip(f"no POSIX ACL support here: {exc}")
    assert doctor.check_keys(tmp_path, USER).status == "ok"


def test_group_permission_counts(tmp_path):
    dev = add_hidraw(tmp_path, "hidraw1", 0x20A0, 0x42B1, YUBIKEY_DESC, mode=0o660)
    os.chown(dev, 0, 54321)
    assert doctor.check_keys(tmp_path, USER).status == "ok"


def test_non_fido_hid_devices_are_ignored(tmp_path):
    add_hidraw(tmp_path, "hidraw0", 0x046D, 0xC52B, bytes.fromhex("05010902a101"))
    assert doctor.check_keys(tmp_path, USER).status == "warn"


def test_fido_key_of_other_vendor_found_by_usage_page(tmp_path):
    add_hidraw(tmp_path, "hidraw2", 0x1209, 0x5070, YUBIKEY_DESC, mode=0o666)
    c = doctor.check_keys(tmp_path, USER)
    assert c.status == "ok" and "hidraw2" in c.detail


def test_fob_port_not_accessible(tmp_path):
    add_tty(tmp_path, "ttyUSB0", "10c4", "ea60", mode=0o660)
    c = doctor.check_fob(tmp_path, USER)
    assert c.status == "fail" and "/dev/ttyUSB0" in c.detail and "udev install" in c.fix


def test_unrelated_serial_port_ignored(tmp_path):
    add_tty(tmp_path, "ttyUSB0", "067b", "2303", mode=0o600)
    assert doctor.check_fob(tmp_path, USER).status == "ok"


def test_outdated_rules_fail(tmp_path):
    path = udev.installed_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text("# an old version\n")
    c = doctor.check_udev_rules(tmp_path)
    assert c.status == "fail" and "differs" in c.detail


def test_pcscd_socket_present_but_dead(tmp_path):
    path = tmp_path / "run/pcscd/pcscd.comm"
    path.parent.mkdir(parents=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens
    c = doctor.check_pcscd(tmp_path)
    assert c.status == "fail" and "refuses" in c.detail


def test_missing_extras_warn_one_line_per_extra_and_missing_core_fails():
    checks = by_name(doctor.check_python(lambda m: None if m in ("usbip", "psycopg") else object()))
    assert checks["python: fido"].status == "warn"
    assert checks["python: fido"].detail.startswith("missing usbip (the virtual key as a USB")
    assert checks["python: fido"].fix == "pip install 'hwtoken[fido]'"
    assert checks["python: provision"].fix == "pip install 'hwtoken[provision]'"
    assert {n for n, c in checks.items() if c.status != "ok"} == {"python: fido",
                                                                  "python: provision"}
    assert checks["python: browser"].detail == "selenium present"
    core = by_name(doctor.check_python(lambda m: None if m == "click" else object()))
    assert core["python: core"].status == "fail"


def test_missing_programs_warn_with_the_package_to_install(tmp_path):
    add_program(tmp_path, "usr/bin/ssh-keygen")
    add_program(tmp_path, "usr/lib/chromium/chromium")
    checks = by_name(doctor.check_programs(tmp_path))
    assert checks["ssh-keygen"].status == "ok" and checks["ssh-keygen"].detail == \
        "/usr/bin/ssh-keygen"
    assert checks["fido2-tools"].status == "warn"
    assert checks["fido2-tools"].fix == "sudo apt install fido2-tools"
    assert checks["chromium"].status == "warn" and "chromedriver not found" in \
        checks["chromium"].detail and checks["chromium"].fix == "sudo apt install chromium-driver"
    assert checks["firefox"].fix == "sudo apt install firefox-esr"


def test_programs_on_this_machine_with_their_versions():
    """make test installs all of them; the browsers say their version."""
    checks = by_name(doctor.check_programs(Path("/")))
    assert all(c.status == "ok" for c in checks.values()), checks
    assert "Chromium 1" in checks["chromium"].detail
    assert "Firefox 1" in checks["firefox"].detail


def test_a_check_that_crashes_is_reported_not_raised(tmp_path, monkeypatch):
    def broken(root):
        raise RuntimeError("boom")

    def needs_a_package(root):
        raise ModuleNotFoundError("No module named 'usbip'", name="usbip")

    monkeypatch.setattr(doctor, "check_programs", broken)
    monkeypatch.setattr(doctor, "check_umockdev", needs_a_package)
    checks = by_name(doctor.run_checks(tmp_path, who=USER, clock_probe=synced))
    assert checks["programs"].status == "fail"
    assert checks["programs"].detail == "the check itself failed: RuntimeError: boom"
    assert checks["umockdev"].status == "warn"
    assert checks["umockdev"].fix == "pip install 'hwtoken[fido]'"
    r = CliRunner().invoke(cli, ["doctor", "--root", str(tmp_path), "--json"])
    assert r.exit_code == 1 and "programs" in json.loads(r.stdout)["error"]


def test_clock_unknown_is_a_warning():
    assert doctor.check_clock(lambda: doctor.ClockState(None, "?")).status == "warn"
    assert doctor.check_clock(synced).status == "ok"


def _adjtimex_now() -> tuple[int, int, int]:
    """The kernel's own answer, read here with a read-only adjtimex (modes 0)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    tx = doctor._Timex()
    state = libc.adjtimex(ctypes.byref(tx))
    return state, tx.status, tx.maxerror


def test_kernel_clock_probe_reports_what_the_kernel_says():
    """On Linux adjtimex always answers: the probe is never "cannot tell" here, and it says
    synced exactly when the kernel's STA_UNSYNC bit is clear (and no TIME_ERROR)."""
    st = doctor.kernel_clock_state()
    state, status, _ = _adjtimex_now()
    assert state >= 0
    assert st.synced is (not (status & 0x0040) and state != 5), (st, state, status)
    assert st.detail


@pytest.mark.parametrize(("state", "status", "synced", "words"), [
    (0, 0, True, "max error 16 ms"),
    (0, 0x0040, False, "not synchronised"),  # STA_UNSYNC
    (5, 0, False, "not synchronised"),  # TIME_ERROR
    (-1, 0, None, "adjtimex failed"),
])
def test_clock_state_from_adjtimex(state, status, synced, words):
    st = doctor.clock_state_from_adjtimex(state, status, 16_000)
    assert st.synced is synced and words in st.detail


def test_clock_marker_in_a_prepared_tree(tmp_path):
    assert doctor.kernel_clock_state(tmp_path).synced is None
    marker = tmp_path / "run/systemd/timesync/synchronized"
    marker.parent.mkdir(parents=True)
    marker.touch()
    assert doctor.kernel_clock_state(tmp_path).synced is True


def test_cli_json_and_exit_code(tmp_path):
    r = CliRunner().invoke(cli, ["doctor", "--root", str(tmp_path), "--json"])
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["code"] == 1 and doc["error"] == "3 check(s) need fixing: udev rules, libusb, pcscd"
    assert r.stderr == f"error: {doc['error']}\n"
    assert doc["ok"] is False
    names = {c["name"] for c in doc["checks"]}
    assert {"keys", "udev rules", "pcscd", "vpcd driver", "usbip tools", "vhci-hcd",
            "fob serial port", "python: fob", "ssh-keygen", "chromium", "clock"} <= names
    human = CliRunner().invoke(cli, ["doctor", "--root", str(tmp_path)])
    assert "fix: sudo hwtoken udev install" in human.output


def test_umockdev_found_on_this_machine():
    """make test installs umockdev: the check finds the real library."""
    c = doctor.check_umockdev(Path("/"))
    assert c.status == "ok" and "libumockdev-preload.so.0" in c.detail


def test_libusb_is_checked(tmp_path):
    c = doctor.check_libusb(tmp_path)
    assert c.status == "fail" and "apt install libusb-1.0-0" in c.fix
    lib = tmp_path / "usr/lib/aarch64-linux-gnu/libusb-1.0.so.0"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"")
    assert doctor.check_libusb(tmp_path).status == "ok"


def test_for_developer_needs_no_pcscd_udev_or_key(tmp_path):
    """A developer on virtual keys: pcscd, udev rules, libusb and keys are optional."""
    checks = by_name(doctor.run_checks(tmp_path, who=USER, clock_probe=synced,
                                       audience="developer"))
    assert doctor.exit_code(checks.values()) == 0
    for name in ("pcscd", "udev rules", "libusb"):
        assert checks[name].status == "warn" and "optional for a developer" in checks[name].detail
    assert "fob serial port" not in checks and "python: fob" not in checks
    # the same machine fails for an admin, who needs all three
    admin = by_name(doctor.run_checks(tmp_path, who=USER, clock_probe=synced, audience="admin"))
    assert {n for n, c in admin.items() if c.status == "fail"} == {"pcscd", "udev rules",
                                                                    "libusb"}
    assert "vhci-hcd" not in admin and "python: fob" not in admin and "chromium" not in admin
    maker = by_name(doctor.run_checks(tmp_path, who=USER, clock_probe=synced, audience="maker",
                                      find_spec=lambda m: None if m == "mpremote" else object()))
    assert {n for n, c in maker.items() if c.status == "fail"} == {"udev rules", "python: fob"}
    assert "pcscd" not in maker and "keys" not in maker


def test_for_on_the_command_line(tmp_path):
    r = CliRunner().invoke(cli, ["doctor", "--root", str(tmp_path), "--for", "developer",
                                 "--json"])
    doc = json.loads(r.stdout)
    assert doc["for"] == "developer"
    assert {c["name"]: c["status"] for c in doc["checks"]}["pcscd"] == "warn"
    assert r.exit_code == (1 if any(c["status"] == "fail" for c in doc["checks"]) else 0)
    r = CliRunner().invoke(cli, ["doctor", "--for", "tester"])
    assert r.exit_code == 2 and r.stderr.startswith("error: Invalid value for '--for'")


def test_the_virtual_fob_needs_node_and_the_webassembly_port():
    from hwtoken.errors import SetupError
    from hwtoken.fob.emulator import locate

    def missing_node():
        raise SetupError("the virtual fob needs Node.js: install it (Debian: apt install "
                         "nodejs npm)")

    c = doctor.check_virtual_fob(node=missing_node)
    assert (c.status, c.fix) == ("warn", "install it (Debian: apt install nodejs npm)")
    assert c.detail == "`hwtoken fob emulate` is unavailable: the virtual fob needs Node.js"
    c = doctor.check_virtual_fob(node=lambda: "/usr/bin/node", micropython=locate.micropython)
    assert c.status == "ok", c  # make deps installs the port for the fob's tests
    assert c.detail.startswith("Node.js at /usr/bin/node, MicroPython's WebAssembly port at ")
    checks = by_name(doctor.for_audience([c], "maker"))
    assert checks["virtual fob"].status == "ok"
    assert doctor.for_audience([c], "admin") == []


def test_for_developer_a_container_without_ntp_passes_and_fido_is_required(tmp_path):
    """A container's clock is the host's, and adjtimex says unsynchronised: a developer on
    virtual keys is not failed for it (an admin and a maker are). Without the fido extra a
    developer has nothing to work with: that fails."""
    unsynced = lambda: doctor.ClockState(False, "the kernel clock is not synchronised by NTP")  # noqa: E731
    dev = by_name(doctor.run_checks(tmp_path, who=USER, clock_probe=unsynced,
                                    audience="developer"))
    assert dev["clock"].status == "warn" and "optional for a developer" in dev["clock"].detail
    assert doctor.exit_code(dev.values()) == 0
    admin = by_name(doctor.run_checks(tmp_path, who=USER, clock_probe=unsynced, audience="admin"))
    assert admin["clock"].status == "fail"
    bare = by_name(doctor.run_checks(tmp_path, who=USER, clock_probe=synced, audience="developer",
                                     find_spec=lambda m: None if m in ("fido2", "usbip")
                                     else object()))
    assert bare["python: fido"].status == "fail"
    assert bare["python: fido"].fix == "pip install 'hwtoken[fido]'"
