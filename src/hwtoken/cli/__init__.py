"""The ``hwtoken`` command line: a thin layer over the library.

``main`` answers the most frequent call (``hwtoken otp code SECRET``) without importing
click; everything else goes to the click group :data:`cli` (in :mod:`hwtoken.cli.root`),
whose subcommands are imported only when they run.
"""

from __future__ import annotations

import sys
from typing import Any


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    if args[:2] == ["otp", "code"]:
        from hwtoken.cli.fastpath import otp_code

        rc = otp_code(args[2:])
        if rc is not None:
            sys.exit(rc)
    from hwtoken.cli.common import run_main
    from hwtoken.cli.root import cli

    run_main(cli, args)


def __getattr__(name: str) -> Any:
    if name in ("cli", "SUBCOMMANDS", "LazyGroup"):
        from hwtoken.cli import root

        return getattr(root, name)
    raise AttributeError(name)
