"""Acting as another local user in tests (the suite runs as root): uid/gid 65534 ("nobody").

:func:`as_other_user` runs a command as that user with ``setpriv``, with no supplementary
groups; :func:`other_user_python` is the interpreter it runs (this suite's own, which
must be reachable and executable by that user: :func:`check_reachable` fails the test,
with the reason, when it is not). :func:`shared_dir` makes a directory that user owns
(outside pytest's 0700 temporary tree), where it plants files and links for root to
trip over.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

OTHER_UID = OTHER_GID = 65534
SETPRIV = ["setpriv", "--reuid", str(OTHER_UID), "--regid", str(OTHER_GID), "--clear-groups"]


def other_user_python() -> str:
    return sys.executable


def check_reachable() -> None:
    """Fail (not skip) when the other user cannot run this suite's python."""
    if os.geteuid() != 0:
        pytest.fail("acting as another user needs root (the suite runs as root)")
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to act as another user")
    res = subprocess.run([*SETPRIV, other_user_python(), "-c", "import os; print(os.getuid())"],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0 or res.stdout.strip() != str(OTHER_UID):
        pytest.fail(f"uid {OTHER_UID} cannot run {other_user_python()}: {res.stderr.strip()}")


def as_other_user(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as uid/gid 65534 and wait for it (text output, 60 s at most)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    return subprocess.run([*SETPRIV, *argv], **kwargs)


def start_as_other_user(argv: list[str], **kwargs: Any) -> subprocess.Popen[str]:
    """Start ``argv`` as uid/gid 65534 (stdout and stdin piped, text)."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stdin", subprocess.PIPE)
    kwargs.setdefault("text", True)
    return subprocess.Popen([*SETPRIV, *argv], **kwargs)


# Runs as root: the module-level imports of the code first, then the drop to the other user
# (as setpriv --reuid --regid --clear-groups does), then the code. A checkout the other user
# cannot read (under /root, mode 0700, as on a fresh Debian) still gives it this suite's
# libraries; everything the code opens or connects to after its imports, it does as that user.
_IMPORT_THEN_DROP = f"""\
import ast, os, sys
code = sys.argv[1]
sys.argv = ["-c", *sys.argv[2:]]
tree = ast.parse(code)
imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
exec(compile(ast.Module(body=imports, type_ignores=[]), "<imports>", "exec"), {{}})
import encodings.idna  # what socket imports on its first host name, and the stdlib may be
                       # unreadable too (a pyenv python under /root)
os.setgroups([])
os.setgid({OTHER_GID})
os.setuid({OTHER_UID})
exec(compile(tree, "<string>", "exec"), {{"__name__": "__main__"}})
"""


def python_as_other_user(code: str, *args: str, **kwargs: Any
                         ) -> subprocess.CompletedProcess[str]:
    """Run Python ``code`` as the other user: its module-level imports are made before the
    drop (see ``_IMPORT_THEN_DROP``), everything else after it."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    return subprocess.run([other_user_python(), "-c", _IMPORT_THEN_DROP, code, *args], **kwargs)


def shared_dir() -> Path:
    """A new directory under the system's temporary directory owned by the other user
    (mode 0755): root can write there, and so can the other user. Remove it with
    :func:`remove_shared_dir`."""
    path = Path(tempfile.mkdtemp(prefix="hwtoken-other-user-", dir="/tmp"))
    os.chown(path, OTHER_UID, OTHER_GID)
    path.chmod(0o755)
    return path


def remove_shared_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
