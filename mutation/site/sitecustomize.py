"""Imported at start-up by every child process of a test run under `make mutate`.

mutation/subprocess_hits.py puts this directory on ``PYTHONPATH``. While mutmut gathers which
test reaches which function (``MUTANT_UNDER_TEST=stats``), each function the child enters is
appended to ``$MUTMUT_SUBPROCESS_HITS/<pid>`` the first time, and written at once, so a child
killed with SIGKILL has recorded everything it ran. Otherwise this does nothing. (It hides a
system-wide sitecustomize for those children; Debian 12's python3.11 ships none.)
"""

import os

if os.environ.get("MUTANT_UNDER_TEST") == "stats" and os.environ.get("MUTMUT_SUBPROCESS_HITS"):
    import mutmut.mutation.trampoline as _trampoline

    _seen: set[str] = set()

    def _record(name: str, caller: str | None = None) -> None:
        if name in _seen:
            return
        _seen.add(name)
        path = os.path.join(os.environ["MUTMUT_SUBPROCESS_HITS"], str(os.getpid()))
        with open(path, "a") as f:
            f.write(name + "\n")

    _trampoline.record_trampoline_hit = _record
