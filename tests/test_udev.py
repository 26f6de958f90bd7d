"""The udev rules file: udevadm accepts it, and `hwtoken udev` installs and checks it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwtoken import udev
from hwtoken.cli import cli

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
