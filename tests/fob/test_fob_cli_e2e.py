"""`hwtoken fob` end to end: mpremote's raw REPL against the MicroPython interpreter.

The bridge (tests/fob/node/mp.mjs serve) puts the WebAssembly port's REPL on a loopback
TCP port; mpremote's SerialTransport reaches it through pyserial's socket:// URL, so the
raw-REPL protocol, file writes and exec/eval run exactly as against a board.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner

from hwtoken.cli import cli
from hwtoken.fob import FobAccount, render
from hwtoken.fob.device import Fob

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
HWTOKEN = Path(sys.executable).with_name("hwtoken")


def run(*args, input=None, code=0):
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exit_code == code, (result.output, result.exception)
    assert SECRET not in result.output and SECRET.lower() not in result.output
    return result.output


@pytest.mark.slow
@pytest.mark.system
def test_deploy_sync_add_list_remove_wipe(fob_port, monkeypatch, caplog):
    out = run("fob", "deploy", "--port", fob_port, "--board", "pico", "--json")
    doc = json.loads(out)
    assert doc["board"] == "pico" and doc["files"]["main.py"] == "written"
    again = run("fob", "deploy", "--port", fob_port, "--board", "pico")
    assert "0 file(s) written, 11 unchanged" in again
    with Fob(fob_port) as f:
        names = f.files()
        config = bytes(f._t.fs_readfile("config.py")).decode()
        # the bridge answered the raw-paste request "not supported": mpremote fell back to
        # the plain raw REPL, as with older firmware
        assert f._t.use_raw_paste is False
    assert {"main.py", "app.py", "totp.py", "sha.py", "machine.py"} <= set(names)
    assert 'BOARD = "pico"' in config

    # freshly flashed: the chip RTC is at 2021 -> no trusted time
    st = json.loads(run("fob", "status", "--port", fob_port, "--json"))
    assert st["trusted"] is False and st["source"] == "rtc" and st["accounts"] == 0
    assert st["board"] == "pico"
    human = run("fob", "status", "--port", fob_port)
    assert "NOT TRUSTED" in human

    out = run("fob", "sync-time", "--port", fob_port)
    assert "no trusted time before" in out
    st = json.loads(run("fob", "status", "--port", fob_port, "--json"))
    assert st["trusted"] is True and abs(st["offset"]) <= 2
    assert "s from this computer" in run("fob", "status", "--port", fob_port)

    # the fob's clock runs 90 s slow; sync-time reports and corrects it
    with Fob(fob_port) as f:
        f.call("None", "machine")
        f._exec("import machine\nmachine._RtcState.offset -= 90")
    doc = json.loads(run("fob", "sync-time", "--port", fob_port, "--json"))
    assert -92 <= doc["drift"] <= -88
    out = run("fob", "sync-time", "--port", fob_port)
    assert "drift" in out or "in step" in out

    # secrets from stdin (never argv), and from an otpauth URI; no subprocess is started
    # (so no secret can reach a child's argv) and nothing is logged, even at DEBUG
    def no_subprocess(*args, **kwargs):
        raise AssertionError(f"a subprocess was started: {args!r}")

    with monkeypatch.context() as m:
        m.setattr(subprocess, "Popen", no_subprocess)
        m.setattr(os, "posix_spawn", no_subprocess)
        m.setattr(os, "system", no_subprocess)
        caplog.set_level(logging.DEBUG)
        out = run("fob", "add", "github", "--secret", "-", "--port", fob_port,
                  input=SECRET + "\n")
    assert SECRET not in caplog.text and "github" not in caplog.text
    assert "github" in out and "1 account" in out
    uri = f"otpauth://totp/ACME:alice@example.com?secret={SECRET}&digits=8&algorithm=SHA256"
    doc = json.loads(run("fob", "add", "--uri", "-", "--port", fob_port, "--json",
                         input=uri + "\n"))
    assert doc == {"name": "ACME:alice@example.com", "algorithm": "SHA256", "digits": 8,
                   "period": 30, "accounts": 2}
    listed = json.loads(run("fob", "list", "--port", fob_port, "--json"))
    assert listed == [
        {"name": "github", "algorithm": "SHA1", "digits": 6, "period": 30},
        {"name": "ACME:alice@example.com", "algorithm": "SHA256", "digits": 8, "period": 30},
    ]
    assert "github" in run("fob", "list", "--port", fob_port)

    # the fob's accounts give the codes pyotp computes
    with Fob(fob_port) as f:
        accounts = f.export_accounts()
        codes = f.call("[a.code(1700000000) for a in accounts.load()]", "accounts")
    assert codes == [pyotp.TOTP(SECRET).at(1700000000),
                     pyotp.TOTP(SECRET, digits=8, digest="sha256").at(1700000000)]
    assert accounts[0] == FobAccount("github", SECRET)

    # simulate from the fob's own accounts = the host rendering of the same account
    out = run("fob", "simulate", "--port", fob_port, "--at", "1700000000", "--account",
              "github", "--ascii")
    expected = render([FobAccount("github", SECRET)], 1700000000).to_ascii()
    # two accounts on the fob: its header shows "1/2"
    assert out.strip() != expected.strip()
    expected2 = render(accounts, 1700000000, index=0).to_ascii()
    assert out.strip() == expected2.strip()

    # bad input is refused by the fob's own validation, with a one-line error
    result = CliRunner().invoke(cli, ["fob", "add", "x" * 41, "--secret", "-", "--port",
                                      fob_port], input=SECRET + "\n")
    assert result.exit_code == 2 and "name must be 1-40 characters" in result.output

    # remove: the exact name only, confirmed (or --force); an unknown name is bad input
    out = CliRunner().invoke(cli, ["fob", "remove", "git", "--force", "--port", fob_port])
    assert out.exit_code == 2 and "no account named 'git'" in out.stderr
    out = CliRunner().invoke(cli, ["fob", "remove", "github", "--port", fob_port])
    assert out.exit_code == 2 and "pass --force" in out.stderr  # no terminal to ask on
    with monkeypatch.context() as m:
        m.setattr("hwtoken.cli.common.is_interactive", lambda: True)
        out = CliRunner().invoke(cli, ["fob", "remove", "github", "--port", fob_port],
                                 input="n\n")
    assert out.exit_code == 1 and "Remove the account 'github'" in out.stderr
    assert len(json.loads(run("fob", "list", "--port", fob_port, "--json"))) == 2
    run("fob", "remove", "github", "--force", "--port", fob_port)
    run("fob", "remove", "github", "--force", "--port", fob_port, code=2)
    assert [a["name"] for a in json.loads(run("fob", "list", "--port", fob_port, "--json"))] \
        == ["ACME:alice@example.com"]
    run("fob", "wipe", "--force", "--port", fob_port)
    assert json.loads(run("fob", "list", "--port", fob_port, "--json")) == []


@pytest.mark.slow
@pytest.mark.system
def test_real_subprocess_reads_secret_from_stdin(fob_port):
    env = dict(os.environ, HWTOKEN_FOB_PORT=fob_port)
    proc = subprocess.run([str(HWTOKEN), "fob", "deploy"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([str(HWTOKEN), "fob", "add", "mail", "--secret", "-"], env=env,
                          input=SECRET + "\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    proc = subprocess.run([str(HWTOKEN), "fob", "list", "--json"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert json.loads(proc.stdout) == [{"name": "mail", "algorithm": "SHA1", "digits": 6,
                                        "period": 30}]


def test_commands_before_deploy_say_what_to_do(fob_port):
    result = CliRunner().invoke(cli, ["fob", "list", "--port", fob_port])
    assert result.exit_code == 2
    assert "hwtoken fob deploy" in result.output
    assert "Traceback" not in result.output


def test_no_repl_on_port_is_a_clean_error():
    result = CliRunner().invoke(cli, ["fob", "status", "--port", "socket://127.0.0.1:9"])
    assert result.exit_code == 2
    assert result.output.startswith("error: cannot open socket://127.0.0.1:9")


@pytest.mark.parametrize("args, message", [
    (["--secret", "JBSWY3DPEHPK3PXP", "--uri", "otpauth://totp/x?secret=A"], "exactly one"),
    (["--secret", "not base32!"], "base32"),
    (["--uri", "otpauth://hotp/x?secret=JBSWY3DPEHPK3PXP&counter=1"], "TOTP"),
])
def test_add_rejects_bad_input_before_connecting(args, message):
    result = CliRunner().invoke(cli, ["fob", "add", "n", *args, "--port", "socket://127.0.0.1:9"])
    assert result.exit_code == 2
    assert message in result.output

