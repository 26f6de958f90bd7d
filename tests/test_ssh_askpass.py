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


# In process: what answer() and main() give for each kind of prompt, and where program()
# looks for the askpass program.

PIN_PROMPT = "Enter PIN for authenticator: "


def test_answer_gives_the_pin_for_a_pin_prompt():
    assert ssh_askpass.answer(PIN_PROMPT, {"HWTOKEN_PIN": "246810"}) == (0, "246810\n")


def test_answer_stays_silent_for_a_notice_only():
    notice = "Confirm user presence for key ED25519-SK SHA256:x"
    env = {"HWTOKEN_PIN": "246810", "SSH_ASKPASS_PROMPT": "none"}
    assert ssh_askpass.answer(notice, env) == (0, "")
    assert ssh_askpass.answer(PIN_PROMPT, env) == (0, "")  # even a PIN prompt, as a notice
    # any other kind of prompt is answered as usual
    env["SSH_ASKPASS_PROMPT"] = "confirm"
    assert ssh_askpass.answer(PIN_PROMPT, env) == (0, "246810\n")


def test_answer_refuses_a_prompt_without_pin_naming_it():
    env = {"HWTOKEN_PIN": "246810"}
    assert ssh_askpass.answer("  Enter passphrase: \n", env) == (
        1, "hwtoken-ssh-askpass: only answers PIN prompts, not 'Enter passphrase:'\n")
    assert ssh_askpass.answer("Enter pin: ", env) == (
        1, "hwtoken-ssh-askpass: only answers PIN prompts, not 'Enter pin:'\n")
    # the prompt is checked before the PIN: no PIN set still says which prompt it was
    assert ssh_askpass.answer("Enter passphrase: ", {}) == (
        1, "hwtoken-ssh-askpass: only answers PIN prompts, not 'Enter passphrase:'\n")


@pytest.mark.parametrize("env", [{}, {"HWTOKEN_PIN": ""}])
def test_answer_refuses_when_no_pin_is_set(env):
    assert ssh_askpass.answer(PIN_PROMPT, env) == (
        1, "hwtoken-ssh-askpass: OpenSSH asks for a PIN and $HWTOKEN_PIN is not set\n")


def test_main_prints_the_pin_on_stdout(monkeypatch, capsys):
    monkeypatch.setenv("HWTOKEN_PIN", "135790")
    monkeypatch.delenv("SSH_ASKPASS_PROMPT", raising=False)
    assert ssh_askpass.main(["hwtoken-ssh-askpass", PIN_PROMPT]) == 0
    assert capsys.readouterr() == ("135790\n", "")


def test_main_reads_sys_argv_by_default(monkeypatch, capsys):
    monkeypatch.setenv("HWTOKEN_PIN", "135790")
    monkeypatch.delenv("SSH_ASKPASS_PROMPT", raising=False)
    monkeypatch.setattr("sys.argv", ["hwtoken-ssh-askpass", PIN_PROMPT])
    assert ssh_askpass.main() == 0
    assert capsys.readouterr() == ("135790\n", "")


def test_main_refuses_on_stderr(monkeypatch, capsys):
    monkeypatch.setenv("HWTOKEN_PIN", "135790")
    monkeypatch.delenv("SSH_ASKPASS_PROMPT", raising=False)
    assert ssh_askpass.main(["hwtoken-ssh-askpass", "Enter passphrase: "]) == 1
    assert capsys.readouterr() == (
        "", "hwtoken-ssh-askpass: only answers PIN prompts, not 'Enter passphrase:'\n")


def test_main_without_a_prompt_is_an_empty_prompt(monkeypatch, capsys):
    monkeypatch.setenv("HWTOKEN_PIN", "135790")
    monkeypatch.delenv("SSH_ASKPASS_PROMPT", raising=False)
    assert ssh_askpass.main(["hwtoken-ssh-askpass"]) == 1
    assert capsys.readouterr() == (
        "", "hwtoken-ssh-askpass: only answers PIN prompts, not ''\n")


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_program_prefers_the_one_beside_python(tmp_path, monkeypatch):
    beside = _executable(tmp_path / "venv" / "bin" / "hwtoken-ssh-askpass")
    on_path = _executable(tmp_path / "path" / "hwtoken-ssh-askpass")
    monkeypatch.setattr("sys.executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert ssh_askpass.program() == str(beside)


@pytest.mark.parametrize("beside_mode", [None, 0o644])
def test_program_falls_back_to_path(tmp_path, monkeypatch, beside_mode):
    beside = tmp_path / "venv" / "bin" / "hwtoken-ssh-askpass"
    if beside_mode is None:  # nothing beside python, only a directory of that name
        beside.mkdir(parents=True)
        beside.chmod(0o755)
    else:  # there, but not executable
        _executable(beside).chmod(beside_mode)
    on_path = _executable(tmp_path / "path" / "hwtoken-ssh-askpass")
    monkeypatch.setattr("sys.executable", str(tmp_path / "venv" / "bin" / "python"))
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert ssh_askpass.program() == str(on_path)


def test_program_missing_everywhere_is_a_setup_error(tmp_path, monkeypatch):
    from hwtoken.errors import SetupError

    python = tmp_path / "venv" / "bin" / "python"
    monkeypatch.setattr("sys.executable", str(python))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SetupError) as err:
        ssh_askpass.program()
    assert str(err.value) == (
        f"hwtoken-ssh-askpass is not installed beside {python} or on PATH "
        "(it comes with hwtoken: reinstall it)")
    assert err.value.exit_code == 2


def test_askpass_env_starts_from_this_environment(monkeypatch):
    monkeypatch.setenv("HWTOKEN_TEST_MARK", "kept")
    monkeypatch.setenv("HWTOKEN_PIN", "old")
    env = ssh_askpass.askpass_env("1234")
    assert env["HWTOKEN_TEST_MARK"] == "kept"
    assert env["HWTOKEN_PIN"] == "1234"
    assert env["SSH_ASKPASS"] == str(PROGRAM)
    assert env["SSH_ASKPASS_REQUIRE"] == "force"
    assert os.environ["HWTOKEN_PIN"] == "old"  # a copy: this process's environment is left alone
