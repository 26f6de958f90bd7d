"""``hwtoken otp code`` without click: the call scripts make most often, answered fast.

Only plain, well-formed invocations are handled here; anything else (help, unknown
options, out-of-range values, undecodable bytes) returns None and goes through the click
command, which owns the messages for bad usage. Library errors (bad secret, bad URI) are
reported the same way the click path reports them (:mod:`hwtoken.cli.contract` runs this
too): one ``error:`` line and exit 2.
"""

from __future__ import annotations

import math
import sys

_VALUE_OPTS = {"--at", "--counter", "--digits", "--algorithm", "--period"}
_FLAGS = {"--hotp", "--json", "--allow-weak"}
_MAX_TIME = 253402300799  # as hwtoken.otp.MAX_TIME (not imported: it costs startup time)


def _plain(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def otp_code(args: list[str]) -> int | None:
    """Print the code for ``args`` (after ``otp code``); None means: let click handle it."""
    opts: dict[str, str] = {}
    flags: set[str] = set()
    positional: list[str] = []
    it = iter(args)
    for arg in it:
        if not _plain(arg):
            return None
        if arg in _VALUE_OPTS:
            value = next(it, None)
            if value is None or arg in opts or not _plain(value):
                return None
            opts[arg] = value
        elif arg in _FLAGS:
            flags.add(arg)
        elif arg.startswith("-") and arg != "-":
            return None
        else:
            positional.append(arg)
    if len(positional) != 1:
        return None
    try:
        at = float(opts["--at"]) if "--at" in opts else None
        counter = int(opts["--counter"]) if "--counter" in opts else None
        digits = int(opts["--digits"]) if "--digits" in opts else None
        period = int(opts["--period"]) if "--period" in opts else None
    except ValueError:
        return None
    algorithm = opts.get("--algorithm")
    if (at is not None and not (math.isfinite(at) and 0 <= at <= _MAX_TIME)) \
            or (digits is not None and digits not in (6, 7, 8)) \
            or (counter is not None and not 0 <= counter < 2**64) \
            or (period is not None and not 1 <= period <= 86400) \
            or (algorithm is not None and algorithm.upper() not in ("SHA1", "SHA256", "SHA512")):
        return None

    from hwtoken import otp
    from hwtoken.cli import contract
    from hwtoken.errors import HwtokenError

    value = positional[0]
    if value == "-":
        value = sys.stdin.readline().strip()
    else:
        sys.stderr.write(contract.ARGV_SECRET_WARNING.format(env="") + "\n")
    try:
        params = otp.parse_secret_or_uri(value, hotp="--hotp" in flags, digits=digits,
                                         algorithm=algorithm, period=period, counter=counter,
                                         allow_weak="--allow-weak" in flags)
        doc = otp.code_report(params, at)
    except HwtokenError as exc:
        return contract.report(str(exc), exc.exit_code, as_json="--json" in flags)
    if "--json" in flags:
        import json

        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        sys.stdout.write(f"{doc['code']}\n")
    return 0
