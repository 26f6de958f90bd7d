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
