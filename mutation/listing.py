"""Each listed equivalent mutant of a module, its reason, and what the mutant is now.

    python mutation/listing.py MODULE

A name in ``mutation/equivalent.txt`` can come to mean another mutant after the module's
source changes (mutmut numbers the mutants of a function anew); ``run.py`` sees only names
that no longer exist or that a test kills. Read this output to check each reason against
its diff.
"""

from __future__ import annotations

import sys

import run


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: python mutation/listing.py MODULE", file=sys.stderr)
        return 2
    module = run.path_to_module(sys.argv[1])
    for name, why in run.equivalents().items():
        if not name.startswith(module + ".x"):
            continue
        print(f"## {name.rsplit('.', 1)[-1]}  # {why}")
        for line in run.mutant_diff(module, name):
            print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
