"""hwtoken-ssh-askpass as OpenSSH runs it: the prompt as its one argument, the answer on
stdout; PIN prompts only, silence for notices, exit 1 (and no answer) for anything else.
tests/emulator/transports/umockdev/test_openssh.py has ssh-keygen use it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hwtoken import ssh_askpass

PROGRAM = Path(sys.executable).with_name("hwtoken-ssh-askpass")


def ask(prompt: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("HWTOKEN_PIN", "SSH_ASKPASS_PROMPT")}
    return subprocess.run([str(PROGRAM), prompt], capture_output=True, text=True,
                          timeout=30, env={**base, **env}, stdin=subprocess.DEVNULL)


def test_the_program_is_installed_and_found():
    assert ssh_askpass.program() == str(PROGRAM)
    env = ssh_askpass.askpass_env("1234", {"PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin", "SSH_ASKPASS": str(PROGRAM),
                   "SSH_ASKPASS_REQUIRE": "force", "HWTOKEN_PIN": "1234"}


@pytest.mark.parametrize("prompt", ["Enter PIN for authenticator: ",
                                    "Enter PIN for ED25519-SK key /tmp/id: "])
def test_pin_prompts_get_the_pin(prompt):
    proc = ask(prompt, HWTOKEN_PIN="246810")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "246810\n", "")


def test_a_notice_gets_no_answer():
    proc = ask("Confirm user presence for key ED25519-SK SHA256:x", HWTOKEN_PIN="246810",
               SSH_ASKPASS_PROMPT="none")
    assert (proc.returncode, proc.stdout) == (0, "")


def test_a_passphrase_prompt_is_refused():
    proc = ask("Enter passphrase (empty for no passphrase): ", HWTOKEN_PIN="246810")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("hwtoken-ssh-askpass: only answers PIN prompts")


def test_no_pin_set_is_refused():
    proc = ask("Enter PIN for authenticator: ")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "$HWTOKEN_PIN is not set" in proc.stderr
