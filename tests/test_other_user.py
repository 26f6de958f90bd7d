"""The helpers that act as another local user work wherever the checkout is."""

from __future__ import annotations

import os


def test_python_as_other_user_imports_from_a_directory_that_user_cannot_read(other_user,
                                                                            tmp_path):
    # a fresh Debian's /root is 0700: a checkout (and its .venv) there is unreadable to
    # uid 65534, yet the code it runs must get the suite's libraries
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    (hidden / "only_root_reads.py").write_text("WHO = 'imported'\n")
    probe = tmp_path / "probe"
    probe.write_text("root's file\n")
    probe.chmod(0o600)
    res = other_user.python_as_other_user(
        "import os, sys\n"
        "import only_root_reads\n"
        "try:\n"
        "    open(sys.argv[1]).read()\n"
        "    opened = 'read'\n"
        "except PermissionError:\n"
        "    opened = 'refused'\n"
        "print(only_root_reads.WHO, os.getuid(), os.getgid(), os.getgroups(), opened,\n"
        "      sys.argv[1:])\n",
        str(probe), env={**os.environ, "PYTHONPATH": str(hidden)})
    assert res.returncode == 0, res.stderr
    # the import was made before the drop; the file, opened after it, is refused
    assert res.stdout.split("\n")[0] == f"imported 65534 65534 [] refused ['{probe}']"
