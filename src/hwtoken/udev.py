"""Installing and checking hwtoken's udev rules.

Every function takes ``root`` (default ``/``) so that tests, and people preparing an image,
can work on a directory tree standing in for the real system.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from hwtoken.errors import DeviceError
from hwtoken.fileio import atomic_write

RULES_NAME = "70-hwtoken.rules"
RULES_DIR = Path("etc/udev/rules.d")
#: a rule line that hands /dev/uhid to the user at the console (uaccess, or a loose mode)
_UHID_GRANT = re.compile(r'KERNEL=="uhid".*(TAG\+="uaccess"|MODE="0?[0-7][0-7][2367])')


def packaged_rules() -> bytes:
    """The rules file shipped with this version of hwtoken."""
    return resources.files("hwtoken").joinpath("data", RULES_NAME).read_bytes()


def installed_path(root: str | os.PathLike[str] = "/") -> Path:
    return Path(root) / RULES_DIR / RULES_NAME


@dataclass
class RulesStatus:
    """Whether the rules are installed under ``root`` and identical to the packaged ones, and
    which rules files there give the console user ``/dev/uhid`` (``uhid_granted_by``)."""

    path: str
    installed: bool
    current: bool
    installed_sha256: str | None
    packaged_sha256: str
    uhid_granted_by: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.installed and self.current and not self.uhid_granted_by

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "installed": self.installed, "current": self.current,
                "installed_sha256": self.installed_sha256,
                "packaged_sha256": self.packaged_sha256,
                "uhid_granted_by": self.uhid_granted_by}


def uhid_grants(root: str | os.PathLike[str] = "/") -> list[str]:
    """The rules files under ``root``/etc/udev/rules.d with a rule that lets the user at the
    console (uaccess) or everyone (mode) open ``/dev/uhid``: such a user can create input
    devices, e.g. a keyboard that types into other sessions. Older hwtoken rules did."""
    found = []
    directory = Path(root) / RULES_DIR
    try:
        files = sorted(directory.glob("*.rules"))
    except OSError:
        return found
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if any(_UHID_GRANT.search(line) for line in text.splitlines()
               if not line.lstrip().startswith("#")):
            found.append(str(path))
    return found


def check(root: str | os.PathLike[str] = "/") -> RulesStatus:
    """Compare the installed rules file with the packaged one."""
    path = installed_path(root)
    want = packaged_rules()
    try:
        have: bytes | None = path.read_bytes()
    except FileNotFoundError:
        have = None
    except PermissionError:
        raise DeviceError(f"cannot read {path}: permission denied") from None
    sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
    return RulesStatus(str(path), have is not None, have == want,
                       sha(have) if have is not None else None, sha(want), uhid_grants(root))


def problem(st: RulesStatus) -> str:
    """What is wrong with the rules ``st`` describes (when not ``st.ok``), in one line."""
    if st.uhid_granted_by:
        ours = [f for f in st.uhid_granted_by if Path(f).name == RULES_NAME]
        fix = ("run `sudo hwtoken udev install`" if ours == st.uhid_granted_by
               else "remove that rule" + (" (and run `sudo hwtoken udev install`)" if ours else ""))
        return (f"{', '.join(st.uhid_granted_by)} give(s) the user at the console /dev/uhid: "
                "they can create input devices, such as a keyboard that types into other "
                f"sessions, and no hwtoken code needs it; {fix}")
    state = "installed but outdated" if st.installed else "not installed"
    return f"{st.path}: {state}; run `sudo hwtoken udev install`"


@dataclass
class InstallReport:
    """What :func:`install` did (or, with ``dry_run``, would do)."""

    path: str
    changed: bool
    dry_run: bool
    actions: list[str] = field(default_factory=list)


def install(root: str | os.PathLike[str] = "/", *, dry_run: bool = False,
            reload: bool = True) -> InstallReport:
    """Copy the rules to ``root``/etc/udev/rules.d, then reload and trigger udev.

    udev is only reloaded when installing to the real root (``/``) and ``udevadm`` exists.
    """
    status = check(root)
    path = Path(status.path)
    report = InstallReport(str(path), not status.current, dry_run)
    if status.current:
        report.actions.append(f"{path} is already current; nothing to copy")
    else:
        verb = "would write" if dry_run else "wrote"
        report.actions.append(f"{verb} {path} ({'updated' if status.installed else 'new'})")
        if not dry_run:
            try:
                atomic_write(path, packaged_rules(), mode=0o644, make_parents=True)
            except PermissionError:
                raise DeviceError(f"cannot write {path}: permission denied; "
                                  "run `sudo hwtoken udev install`") from None
    real_root = Path(root).resolve() == Path("/")
    udevadm = shutil.which("udevadm")
    commands = [["udevadm", "control", "--reload-rules"],
                ["udevadm", "trigger", "--action=change", "--subsystem-match=hidraw",
                 "--subsystem-match=usb", "--subsystem-match=tty", "--subsystem-match=misc"]]
    if not reload or not real_root:
        report.actions.append("udev not reloaded (installing into another root)")
    elif udevadm is None:
        report.actions.append("udevadm not found: reload udev or replug your keys yourself")
    else:
        for cmd in commands:
            if dry_run:
                report.actions.append("would run: " + " ".join(cmd))
                continue
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if res.returncode != 0:
                report.actions.append(f"ran: {' '.join(cmd)} (failed: {res.stderr.strip()})")
            else:
                report.actions.append("ran: " + " ".join(cmd))
        if not dry_run:
            report.actions.append("replug your keys if they were already connected")
    return report
