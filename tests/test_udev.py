"""The udev rules file: udevadm accepts it, and `hwtoken udev` installs and checks it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from hwtoken import udev
from hwtoken.cli import cli
from hwtoken.errors import DeviceError

REPO_RULES = Path(__file__).resolve().parents[1] / "udev" / "70-hwtoken.rules"


def udevadm_parse_messages(rules_dir: Path) -> str:
    """Run `udevadm test` with ``rules_dir`` mounted over /etc/udev/rules.d (private mount
    namespace, so the real system is untouched) and return what it said."""
    if shutil.which("unshare") is None or shutil.which("udevadm") is None:
        pytest.fail("udevadm and unshare are needed (make test installs udev)")
    script = (f"mount --bind {rules_dir} /etc/udev/rules.d && "
              "udevadm test --action=add /sys/devices/virtual/mem/null 2>&1")
    res = subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                         text=True, timeout=120)
    if "Reading rules file" not in res.stdout:
        pytest.fail(f"udevadm test did not run: {res.stdout[-500:]} {res.stderr[-500:]}")
    return res.stdout


def test_repo_rules_file_is_the_packaged_one():
    assert REPO_RULES.read_bytes() == udev.packaged_rules()


def test_udevadm_accepts_the_rules(tmp_path):
    shutil.copy(REPO_RULES, tmp_path / udev.RULES_NAME)
    out = udevadm_parse_messages(tmp_path)
    assert f"/etc/udev/rules.d/{udev.RULES_NAME}" in out
    complaints = [line for line in out.splitlines() if f"{udev.RULES_NAME}:" in line]
    assert complaints == []


def test_udevadm_check_can_fail(tmp_path):
    """The check above would notice a broken rule (it is not a test that cannot fail)."""
    (tmp_path / udev.RULES_NAME).write_text('KERNEL=="hidraw*", BOGUS_KEY="1"\n')
    out = udevadm_parse_messages(tmp_path)
    assert any(f"{udev.RULES_NAME}:1" in line for line in out.splitlines())


def test_rules_cover_what_the_issue_asks():
    text = udev.packaged_rules().decode()
    for needle in ('ATTRS{idVendor}=="1050"', 'ID_FIDO_TOKEN', '"2e8a"', '"303a"', '"10c4"',
                   '"1a86"', 'SUBSYSTEM=="tty"', 'TAG+="uaccess"'):
        assert needle in text
    rule_lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert all("MODE=" not in ln for ln in rule_lines)  # uaccess, not world-writable nodes


def test_install_and_check_in_a_prepared_root(tmp_path):
    r = CliRunner().invoke(cli, ["udev", "check", "--root", str(tmp_path), "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["installed"] is False
    dry = CliRunner().invoke(cli, ["udev", "install", "--dry-run", "--root", str(tmp_path)])
    assert dry.exit_code == 0 and "would write" in dry.output
    assert not udev.installed_path(tmp_path).exists()
    done = CliRunner().invoke(cli, ["udev", "install", "--root", str(tmp_path)])
    assert done.exit_code == 0 and "wrote" in done.output and "not reloaded" in done.output
    assert udev.installed_path(tmp_path).stat().st_mode & 0o777 == 0o644
    ok = CliRunner().invoke(cli, ["udev", "check", "--root", str(tmp_path)])
    assert ok.exit_code == 0 and "current" in ok.output
    again = CliRunner().invoke(cli, ["udev", "install", "--root", str(tmp_path)])
    assert "already current" in again.output
    udev.installed_path(tmp_path).write_text("# old\n")
    old = CliRunner().invoke(cli, ["udev", "check", "--root", str(tmp_path)])
    assert old.exit_code == 1 and "outdated" in old.output


# -- /dev/uhid: never handed to the user at the console ---------------------------------------
OLD_UHID_RULE = 'KERNEL=="uhid", SUBSYSTEM=="misc", TAG+="uaccess"\n'


def test_the_rules_do_not_give_anyone_uhid(tmp_path):
    """Whoever opens /dev/uhid can create a keyboard that types into other sessions."""
    rule_lines = [ln for ln in udev.packaged_rules().decode().splitlines()
                  if ln.strip() and not ln.lstrip().startswith("#")]
    assert not [ln for ln in rule_lines if "uhid" in ln]
    udev.install(tmp_path, reload=False)
    assert udev.uhid_grants(tmp_path) == []


def test_check_reports_the_uhid_rule_of_older_hwtoken_rules(tmp_path):
    path = udev.installed_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(udev.packaged_rules() + OLD_UHID_RULE.encode())  # as 0.1 installed it
    r = CliRunner().invoke(cli, ["udev", "check", "--root", str(tmp_path)])
    assert r.exit_code == 1
    assert r.stderr == (f"error: {path} give(s) the user at the console /dev/uhid: they can "
                        "create input devices, such as a keyboard that types into other "
                        "sessions, and no hwtoken code needs it; run `sudo hwtoken udev "
                        "install`\n")
    doc = json.loads(CliRunner().invoke(cli, ["udev", "check", "--root", str(tmp_path),
                                              "--json"]).stdout)
    assert doc["uhid_granted_by"] == [str(path)] and doc["ok"] is False
    done = CliRunner().invoke(cli, ["udev", "install", "--root", str(tmp_path)])
    assert done.exit_code == 0
    ok = CliRunner().invoke(cli, ["udev", "check", "--root", str(tmp_path)])
    assert ok.exit_code == 0, ok.output


@pytest.mark.parametrize("rule", [
    OLD_UHID_RULE, 'KERNEL=="uhid", MODE="0666"\n',
    'SUBSYSTEM=="misc", KERNEL=="uhid", GROUP="input", MODE="0662"\n'])
def test_check_reports_a_uhid_grant_in_another_rules_file(tmp_path, rule):
    udev.install(tmp_path, reload=False)
    other = udev.installed_path(tmp_path).with_name("99-local.rules")
    other.write_text("# KERNEL==\"uhid\", TAG+=\"uaccess\" (a comment is no rule)\n" + rule)
    r = CliRunner().invoke(cli, ["udev", "check", "--root", str(tmp_path)])
    assert r.exit_code == 1 and f"{other} give(s)" in r.stderr and "remove that rule" in r.stderr
    from hwtoken.doctor import FAIL, check_udev_rules

    assert check_udev_rules(tmp_path).status == FAIL


def test_a_comment_or_a_private_mode_is_no_uhid_grant(tmp_path):
    udev.install(tmp_path, reload=False)
    other = udev.installed_path(tmp_path).with_name("50-uhid.rules")
    other.write_text('# KERNEL=="uhid", TAG+="uaccess"\nKERNEL=="uhid", MODE="0600"\n')
    assert udev.uhid_grants(tmp_path) == []
    assert CliRunner().invoke(cli, ["udev", "check", "--root", str(tmp_path)]).exit_code == 0


# -- install() and check() in process: exact reports, and udevadm as it is run ------------------
TRIGGER = ("udevadm trigger --action=change --subsystem-match=hidraw --subsystem-match=usb "
           "--subsystem-match=tty --subsystem-match=misc")
UHID_PROBLEM = ("give(s) the user at the console /dev/uhid: they can create input devices, such "
                "as a keyboard that types into other sessions, and no hwtoken code needs it; ")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def system(tmp_path, monkeypatch):
    """A stand-in for the real system, so that install() on the root `/` can be tested without
    touching /etc: udev's rules directory is moved under tmp_path (RULES_DIR relative to `/`),
    a fake `udevadm` that records its arguments comes first on PATH, and every
    subprocess.run call is recorded (then run for real). The working directory is a scratch
    one, so that nothing is ever written relative to the checkout."""
    rules = tmp_path / "system" / "etc" / "udev" / "rules.d"
    monkeypatch.setattr(udev, "RULES_DIR", rules.relative_to("/"))
    scratch = tmp_path / "cwd"
    scratch.mkdir()
    monkeypatch.chdir(scratch)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "udevadm.log"
    fake = bin_dir / "udevadm"
    fake.write_text("#!/bin/sh\n"
                    f'printf "%s\\n" "$*" >> "{log}"\n'
                    "echo chatter on stdout\n"
                    'echo "  ${UDEVADM_ERR:-chatter on stderr}  " >&2\n'
                    'if [ "$1" = "$UDEVADM_FAIL_ON" ]; then exit 1; fi\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("UDEVADM_FAIL_ON", raising=False)
    calls: list[tuple[list[str], dict]] = []
    real_run = subprocess.run

    def run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        return real_run(cmd, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    return SimpleNamespace(rules=rules, path=rules / udev.RULES_NAME, log=log, calls=calls,
                           bin_dir=bin_dir)


def udevadm_calls(system) -> list[str]:
    return system.log.read_text().splitlines() if system.log.exists() else []


def test_install_on_the_real_root_writes_the_rules_and_reloads_udev(system, capfd):
    report = udev.install()
    path = system.path
    assert report == udev.InstallReport(str(path), True, False, [
        f"wrote {path} (new)",
        "ran: udevadm control --reload-rules",
        f"ran: {TRIGGER}",
        "replug your keys if they were already connected"])
    assert path.read_bytes() == udev.packaged_rules()
    assert path.stat().st_mode & 0o777 == 0o644
    assert udevadm_calls(system) == ["control --reload-rules", TRIGGER[len("udevadm "):]]
    options = {"capture_output": True, "text": True, "timeout": 60}
    assert system.calls == [(["udevadm", "control", "--reload-rules"], options),
                            (TRIGGER.split(), options)]
    assert capfd.readouterr() == ("", "")  # udevadm's chatter is captured, not shown


def test_install_again_copies_nothing_and_still_reloads(system):
    udev.install("/")
    report = udev.install("/")
    assert report == udev.InstallReport(str(system.path), False, False, [
        f"{system.path} is already current; nothing to copy",
        "ran: udevadm control --reload-rules",
        f"ran: {TRIGGER}",
        "replug your keys if they were already connected"])
    assert len(udevadm_calls(system)) == 4


def test_install_replaces_outdated_rules(system):
    system.rules.mkdir(parents=True)
    system.path.write_text("# old\n")
    report = udev.install("/", reload=False)
    assert report == udev.InstallReport(str(system.path), True, False, [
        f"wrote {system.path} (updated)", "udev not reloaded (installing into another root)"])
    assert system.path.read_bytes() == udev.packaged_rules()
    assert udevadm_calls(system) == [] and system.calls == []


def test_dry_run_on_the_real_root_says_what_it_would_do_and_does_nothing(system):
    report = udev.install("/", dry_run=True)
    assert report == udev.InstallReport(str(system.path), True, True, [
        f"would write {system.path} (new)",
        "would run: udevadm control --reload-rules",
        f"would run: {TRIGGER}"])
    assert not system.rules.exists()
    assert udevadm_calls(system) == [] and system.calls == []
    system.rules.mkdir(parents=True)
    system.path.write_text("# old\n")
    assert udev.install("/", dry_run=True).actions[0] == f"would write {system.path} (updated)"
    assert system.path.read_text() == "# old\n"


def test_install_into_another_root_does_not_reload_udev(system, tmp_path):
    image = tmp_path / "image"
    report = udev.install(image)
    path = udev.installed_path(image)
    assert path == image / udev.RULES_DIR / udev.RULES_NAME
    assert report == udev.InstallReport(str(path), True, False, [
        f"wrote {path} (new)", "udev not reloaded (installing into another root)"])
    assert path.read_bytes() == udev.packaged_rules()
    assert udevadm_calls(system) == [] and system.calls == []


def test_install_without_udevadm(system, tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    report = udev.install("/")
    assert report.actions == [f"wrote {system.path} (new)",
                              "udevadm not found: reload udev or replug your keys yourself"]
    assert system.calls == []


def test_a_failing_udevadm_is_reported_with_what_it_said(system, monkeypatch):
    monkeypatch.setenv("UDEVADM_FAIL_ON", "trigger")
    monkeypatch.setenv("UDEVADM_ERR", "Failed to trigger: Permission denied")
    report = udev.install("/")
    assert report.actions == [
        f"wrote {system.path} (new)",
        "ran: udevadm control --reload-rules",
        f"ran: {TRIGGER} (failed: Failed to trigger: Permission denied)",
        "replug your keys if they were already connected"]


def test_install_without_permission_to_write(system, monkeypatch):
    def denied(path, data, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(udev, "atomic_write", denied)
    with pytest.raises(DeviceError) as err:
        udev.install("/")
    assert str(err.value) == (f"cannot write {system.path}: permission denied; "
                              "run `sudo hwtoken udev install`")
    assert err.value.exit_code == 2 and system.calls == []


def test_check_without_permission_to_read(system, monkeypatch):
    real_read_bytes = Path.read_bytes

    def read_bytes(self):
        if self == system.path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(DeviceError) as err:
        udev.check()
    assert str(err.value) == f"cannot read {system.path}: permission denied"


def test_the_default_root_is_the_real_one():
    assert udev.installed_path() == Path("/etc/udev/rules.d/70-hwtoken.rules")
    assert udev.check().path == "/etc/udev/rules.d/70-hwtoken.rules"  # only reads


def test_check_defaults_to_the_real_root(system):
    assert udev.installed_path() == system.path
    system.rules.mkdir(parents=True)
    grant = system.rules / "99-local.rules"
    grant.write_text(OLD_UHID_RULE)
    assert udev.uhid_grants() == [str(grant)]
    st = udev.check()
    assert (st.path, st.installed, st.uhid_granted_by) == (str(system.path), False, [str(grant)])


def test_check_as_dict(tmp_path):
    packaged = udev.packaged_rules()
    path = udev.installed_path(tmp_path)
    assert udev.check(tmp_path).as_dict() == {
        "path": str(path), "installed": False, "current": False, "installed_sha256": None,
        "packaged_sha256": sha256(packaged), "uhid_granted_by": []}
    path.parent.mkdir(parents=True)
    path.write_bytes(b"# old\n")
    assert udev.check(tmp_path).as_dict() == {
        "path": str(path), "installed": True, "current": False,
        "installed_sha256": sha256(b"# old\n"), "packaged_sha256": sha256(packaged),
        "uhid_granted_by": []}
    path.write_bytes(packaged)
    st = udev.check(tmp_path)
    assert st.as_dict() == {
        "path": str(path), "installed": True, "current": True,
        "installed_sha256": sha256(packaged), "packaged_sha256": sha256(packaged),
        "uhid_granted_by": []}
    assert st.ok


def test_problem_names_what_is_wrong_and_the_fix(tmp_path):
    path = udev.installed_path(tmp_path)
    assert udev.problem(udev.check(tmp_path)) == (
        f"{path}: not installed; run `sudo hwtoken udev install`")
    path.parent.mkdir(parents=True)
    path.write_text("# old\n")
    assert udev.problem(udev.check(tmp_path)) == (
        f"{path}: installed but outdated; run `sudo hwtoken udev install`")
    path.write_bytes(udev.packaged_rules())
    other = path.with_name("99-local.rules")
    other.write_text(OLD_UHID_RULE)
    assert udev.problem(udev.check(tmp_path)) == f"{other} {UHID_PROBLEM}remove that rule"
    path.write_bytes(udev.packaged_rules() + OLD_UHID_RULE.encode())
    assert udev.problem(udev.check(tmp_path)) == (
        f"{path}, {other} {UHID_PROBLEM}remove that rule "
        "(and run `sudo hwtoken udev install`)")
    other.unlink()
    assert udev.problem(udev.check(tmp_path)) == (
        f"{path} {UHID_PROBLEM}run `sudo hwtoken udev install`")


def test_uhid_grants_reads_every_rules_file_it_can(tmp_path):
    rules = tmp_path / udev.RULES_DIR
    rules.mkdir(parents=True)
    (rules / "10-a-directory.rules").mkdir()  # unreadable as a file: skipped
    binary = rules / "20-binary.rules"
    binary.write_bytes(b'# \xff\xfe not UTF-8\n' + OLD_UHID_RULE.encode())
    indented = rules / "30-indented-comment.rules"
    indented.write_text('   # KERNEL=="uhid", TAG+="uaccess"\n')
    late = rules / "40-late.rules"
    late.write_text('KERNEL=="uhid", MODE="0666"\n')
    assert udev.uhid_grants(tmp_path) == [str(binary), str(late)]
