"""``hwtoken-ssh-askpass``: answers OpenSSH's security-key PIN prompts from ``$HWTOKEN_PIN``.

OpenSSH asks for a FIDO key's PIN through its askpass program (``SSH_ASKPASS``) when stdin
is not a terminal or ``SSH_ASKPASS_REQUIRE=force``: ``ssh-keygen -K`` (download resident
keys), ``ssh-keygen -t ed25519-sk -O verify-required`` and a login with such a key. This
program prints ``$HWTOKEN_PIN`` for a prompt that asks for a PIN, stays silent for
OpenSSH's "confirm user presence" notices (``SSH_ASKPASS_PROMPT=none``), and refuses
anything else (a passphrase: give ``ssh-keygen -N ''``), so a test never hangs on a
question nobody answers. :func:`askpass_env` makes the environment for it.

It imports nothing but the standard library: OpenSSH starts it for every prompt.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

PIN_ENV = "HWTOKEN_PIN"
PROGRAM = "hwtoken-ssh-askpass"


def answer(prompt: str, environ: Mapping[str, str]) -> tuple[int, str]:
    """(exit status, what to print) for OpenSSH's ``prompt``."""
    if environ.get("SSH_ASKPASS_PROMPT") == "none":
        return 0, ""  # a notice ("Confirm user presence for key ..."): nothing to answer
    pin = environ.get(PIN_ENV)
    if "PIN" not in prompt:
        return 1, f"{PROGRAM}: only answers PIN prompts, not {prompt.strip()!r}\n"
    if not pin:
        return 1, f"{PROGRAM}: OpenSSH asks for a PIN and ${PIN_ENV} is not set\n"
    return 0, pin + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    status, text = answer(args[1] if len(args) > 1 else "", os.environ)
    (sys.stdout if status == 0 else sys.stderr).write(text)
    return status


def program() -> str:
    """The path of ``hwtoken-ssh-askpass``: beside this Python (a venv's bin/), else on
    PATH."""
    beside = Path(sys.executable).parent / PROGRAM
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which(PROGRAM)
    if found is None:
        from hwtoken.errors import SetupError

        raise SetupError(f"{PROGRAM} is not installed beside {sys.executable} or on PATH "
                         "(it comes with hwtoken: reinstall it)")
    return found


def askpass_env(pin: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with OpenSSH's PIN prompts answered
    by ``pin``: ``SSH_ASKPASS`` is :func:`program`, ``SSH_ASKPASS_REQUIRE=force`` and
    ``HWTOKEN_PIN`` the PIN."""
    env = dict(os.environ if base is None else base)
    env.update({"SSH_ASKPASS": program(), "SSH_ASKPASS_REQUIRE": "force", PIN_ENV: pin})
    return env


if __name__ == "__main__":  # pragma: no cover - the console script calls main()
    sys.exit(main())
