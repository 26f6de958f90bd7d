"""The ``hwtoken`` command line: a thin layer over the library.

``main`` answers the most frequent call (``hwtoken otp code SECRET``) without importing
click; everything else goes to the click group :data:`cli` (in :mod:`hwtoken.cli.root`),
whose subcommands are imported only when they run. Both keep the contract of
:mod:`hwtoken.cli.contract`: one ``error:`` line, exit 0/1/2/130, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Any


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    try:
        from hwtoken.cli import contract

        if args[:2] == ["otp", "code"]:
            from hwtoken.cli.fastpath import otp_code

            rc = contract.run(lambda: otp_code(args[2:]), args)
            if rc is not None:
                sys.exit(rc)
        from hwtoken.cli.root import cli

        cli.main(args=args, prog_name="hwtoken")
    except KeyboardInterrupt:  # before the contract's handler is in place (imports)
        sys.stderr.write("interrupted\n")
        sys.exit(130)


def __getattr__(name: str) -> Any:
    if name in ("cli", "SUBCOMMANDS", "LazyGroup"):
        from hwtoken.cli import root

        return getattr(root, name)
    raise AttributeError(name)
