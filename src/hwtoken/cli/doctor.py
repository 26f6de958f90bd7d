"""``hwtoken doctor`` and ``hwtoken udev``: is this machine set up for keys and fobs?"""

from __future__ import annotations

import click

from hwtoken.cli.common import HwtokenCommand, HwtokenGroup, emit_json, json_option
from hwtoken.errors import CheckFailed

ROOT_OPTION = click.option("--root", default="/", show_default=True, hidden=False,
                           type=click.Path(file_okay=False, exists=True),
                           help="Check a directory tree standing in for / (images, tests).")

_MARK = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "red")}


@click.command("doctor", cls=HwtokenCommand)
@ROOT_OPTION
@click.option("--for", "audience", type=click.Choice(["developer", "admin", "maker"]),
              help="Only what this kind of user needs: developer (virtual keys, WebAuthn "
                   "tests), admin (real YubiKeys), maker (the fob). Default: everything.")
@json_option
def doctor(root: str, audience: str | None, as_json: bool) -> None:
    """Check this machine: extras, keys and permissions, udev rules, libusb, pcscd, vpcd,
    usbip, the fob's serial port, mpremote and the clock. Each problem comes with its fix.

    Exit 0 when nothing failed ("warn" lines are optional parts), 1 when something needs
    fixing. With --for, only what that kind of user needs (the rest is left out or only
    warns): a developer who uses virtual keys needs no pcscd or udev rules.
    """
    from hwtoken import doctor as doc

    checks = doc.run_checks(root, audience=audience)
    code = doc.exit_code(checks)
    failed = sum(c.status == "fail" for c in checks)
    report = {"ok": code == 0, "for": audience, "checks": [c.as_dict() for c in checks]}
    if not as_json:
        for c in checks:
            label, colour = _MARK[c.status]
            click.echo(f"[{click.style(f'{label:>4}', fg=colour)}] {c.name}: {c.detail}")
            if c.fix and c.status != "ok":
                click.echo(f"       fix: {c.fix}")
        if not failed:
            click.echo("all checks passed")
    if failed:
        names = ", ".join(c.name for c in checks if c.status == "fail")
        raise CheckFailed(f"{failed} check(s) need fixing: {names}", details=report)
    if as_json:
        emit_json(report)


@click.group(cls=HwtokenGroup)
def udev() -> None:
    """Install and check the udev rules that let you use keys and fobs without root."""


@udev.command("install")
@click.option("--dry-run", is_flag=True, help="Say what would be done; change nothing.")
@ROOT_OPTION
@json_option
def udev_install(dry_run: bool, root: str, as_json: bool) -> None:
    """Copy 70-hwtoken.rules to /etc/udev/rules.d, reload and trigger udev (needs root)."""
    from hwtoken import udev as udevlib

    report = udevlib.install(root, dry_run=dry_run)
    if as_json:
        emit_json({"path": report.path, "changed": report.changed, "dry_run": report.dry_run,
                   "actions": report.actions})
        return
    for line in report.actions:
        click.echo(line)


@udev.command("check")
@ROOT_OPTION
@json_option
def udev_check(root: str, as_json: bool) -> None:
    """Tell whether the rules are installed and current, and that no rule gives the console
    user /dev/uhid (exit 0 yes, 1 no)."""
    from hwtoken import udev as udevlib

    st = udevlib.check(root)
    doc = {**st.as_dict(), "ok": st.ok}
    if st.ok:
        if as_json:
            emit_json(doc)
        else:
            click.echo(f"{st.path}: installed and current")
        return
    raise CheckFailed(udevlib.problem(st), details=doc)
