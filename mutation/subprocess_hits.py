"""pytest plugin for `make mutate`: mutants run, and are seen to run, in the tests' child processes.

Many tests here reach the code under test in a process of their own: the ``hwtoken`` CLI as a
real program, a key served by ``hwtoken emulate serve`` or held by a driver and killed with
SIGKILL (the durability tests). mutmut only knows what happens inside the pytest process, so
without this plugin

- a child process imports the unmutated ``src/`` of the editable install, so a mutant never
  runs there and those tests cannot kill it;
- the functions a child process calls are not recorded against the test while mutmut gathers
  which test reaches which function, so the test is never chosen for their mutants.

mutmut loads this plugin (``pytest_add_cli_args`` in pyproject.toml). It puts the mutated
package first on ``PYTHONPATH`` for every child (the active mutant already travels in the
environment, ``MUTANT_UNDER_TEST``), together with ``mutation/site/sitecustomize.py``, which
makes a child that runs while mutmut gathers its statistics append each function it enters
to a file of its own, at once (a child killed with SIGKILL has no exit handler). Before each
test's records are filed, the new lines of those files are added to that test's.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SITE = Path(__file__).resolve().parent / "site"
HITS_ENV = "MUTMUT_SUBPROCESS_HITS"

_offsets: dict[Path, int] = {}


def _prepend_path(*dirs: str) -> None:
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join([*dirs, *(p for p in current if p not in dirs)])


def pytest_configure(config: pytest.Config) -> None:
    if "MUTANT_UNDER_TEST" not in os.environ:
        return  # not under mutmut: nothing to do
    import hwtoken

    package_root = Path(hwtoken.__file__).resolve().parent.parent  # mutants/src
    _prepend_path(str(package_root), str(SITE))
    hits = package_root.parent / "subprocess-hits"
    hits.mkdir(exist_ok=True)
    os.environ[HITS_ENV] = str(hits)


def _new_hits() -> set[str]:
    """Function names the children recorded since the last call (whole lines only)."""
    directory = os.environ.get(HITS_ENV)
    names: set[str] = set()
    if not directory:
        return names
    for path in Path(directory).iterdir():
        start = _offsets.get(path, 0)
        with path.open("rb") as f:
            f.seek(start)
            data = f.read()
        complete = data[:data.rfind(b"\n") + 1]
        _offsets[path] = start + len(complete)
        names.update(complete.decode().split())
    return names


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Add the children's records to the test's before mutmut files them."""
    if os.environ.get("MUTANT_UNDER_TEST") != "stats":
        return
    from mutmut.state import state

    state()._stats.update(_new_hits())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the helper processes the tests share before the session ends: the emulator's
    offload worker (:mod:`hwtoken.emulator.offload`) and this process's private pcscd.

    mutmut runs the statistics and the clean tests inside its own process and then collects
    each mutant's process with ``os.wait()``, which takes any child: a helper that outlives
    the session there is a child of mutmut's, and when it ends (a mutant's test restarts
    pcscd, a killed mutant leaves the worker's pipe broken) mutmut stops with a ``KeyError``
    on its pid. The forked mutant processes would otherwise share these helpers too, and a
    mutant process ends with ``os._exit``, which skips the atexit handlers that stop them.
    """
    if "MUTANT_UNDER_TEST" not in os.environ:
        return
    import sys

    offload = sys.modules.get("hwtoken.emulator.offload")
    if offload is not None:
        offload.shutdown()
    pcscd = sys.modules.get("hwtoken.emulator.pcscd")
    if pcscd is not None:
        pcscd.stop_shared_pcscd()
