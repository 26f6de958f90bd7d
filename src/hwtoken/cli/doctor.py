"""``hwtoken doctor`` and ``hwtoken udev``: is this machine set up for keys and fobs?"""

from __future__ import annotations

import sys

import click

from hwtoken.cli.common import HwtokenGroup, emit_json, json_option

ROOT_OPTION = click.option("--root", default="/", show_default=True, hidden=False,
                           type=click.Path(file_okay=False),
                           help="Check a directory tree standing in for / (images, tests).")

_MARK = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red")}


@click.command("doctor")
@ROOT_OPTION
@json_option
def doctor(root: str, as_json: bool) -> None:
    """Check this machine: extras, keys and permissions, udev rules, pcscd, vpcd, usbip,
    the fob's serial port, mpremote and the clock. Each problem comes with its fix.

    Exit 0 when nothing failed ("warn" lines are optional parts), 1 when something needs
    fixing.
    """
    from hwtoken import doctor as doc

    checks = doc.run_checks(root)
    code = doc.exit_code(checks)
    if as_json:
        emit_json({"ok": code == 0, "checks": [c.as_dict() for c in checks]})
    else:
        for c in checks:
            label, colour = _MARK[c.status]
            click.echo(f"[{click.style(f'{label:>4}', fg=colour)}] {c.name}: {c.detail}")
            if c.fix and c.status != "ok":
                click.echo(f"       fix: {c.fix}")
        failed = sum(c.status == "fail" for c in checks)
        click.echo("all checks passed" if not failed else f"{failed} check(s) need fixing")
    sys.exit(code)


@click.group(cls=HwtokenGroup)
def udev() -> None:
    """Install and check the udev rules that let you use keys and fobs without root."""


@udev.command("install")
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
@ROOT_OPTION
def udev_install(dry_run: bool, root: str) -> None:
    """Copy 70-hwtoken.rules to /etc/udev/rules.d, reload and trigger udev (needs root)."""
    from hwtoken import udev as udevlib

    report = udevlib.install(root, dry_run=dry_run)
    for line in report.actions:
        click.echo(line)


@udev.command("check")
@ROOT_OPTION
@json_option
def udev_check(root: str, as_json: bool) -> None:
    """Tell whether the rules are installed and current (exit 0 yes, 1 no)."""
    from hwtoken import udev as udevlib

    st = udevlib.check(root)
    if as_json:
        emit_json({**st.as_dict(), "ok": st.ok})
    elif st.ok:
        click.echo(f"{st.path}: installed and current")
    elif st.installed:
        click.echo(f"{st.path}: installed but outdated; run `sudo hwtoken udev install`")
    else:
        click.echo(f"{st.path}: not installed; run `sudo hwtoken udev install`")
    sys.exit(0 if st.ok else 1)
