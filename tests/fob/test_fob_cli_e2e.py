"""`hwtoken fob` end to end: mpremote's raw REPL against the fob firmware on MicroPython.

The virtual fob (hwtoken.fob.emulator) runs the WebAssembly port's REPL behind a loopback
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
def test_deploy_sync_add_list_remove_wipe(virtual_fob, monkeypatch, caplog):
    fob_port = virtual_fob.url
    out = run("fob", "deploy", "--port", fob_port, "--board", "pico", "--json")
    doc = json.loads(out)
    assert doc["board"] == "pico" and doc["files"]["main.py"] == "written"
    assert doc["settings"] == {"kept": ["board"], "moved_from_config_py": [], "reset": False,
                               "ignored": []}
    again = run("fob", "deploy", "--port", fob_port, "--board", "pico")
    assert "0 file(s) written, 12 unchanged" in again
    with Fob(fob_port) as f:
        names = f.files()
        settings = json.loads(bytes(f._t.fs_readfile("settings.json")))
        # the board speaks raw-paste mode, as current firmware does
        assert f._t.use_raw_paste is True
    assert {"main.py", "app.py", "totp.py", "sha.py", "config.py"} <= set(names)
    assert "machine.py" not in names  # built into the (virtual) board, as on a real one
    assert settings == {"board": "pico"}

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
    virtual_fob.emulator.shift_rtc(-90)
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



LEGACY = (Path(__file__).with_name("legacy") / "config_v1.py").read_text()
WIFI_PASSWORD = "correct horse battery"


@pytest.mark.slow
@pytest.mark.system
def test_deploy_over_firmware_1_0_keeps_its_settings_and_config_changes_them(virtual_fob,
                                                                            monkeypatch):
    port = virtual_fob.url
    # a board set up with firmware 1.0: its settings edited into config.py
    old = (LEGACY.replace("OLED_ADDR = 0x3C", "OLED_ADDR = 0x3D")
           .replace('WIFI_SSID = ""', 'WIFI_SSID = "home"')
           .replace('WIFI_PASSWORD = ""', f'WIFI_PASSWORD = "{WIFI_PASSWORD}"')
           .replace('"pico": {"i2c": 0, "sda": 4, "scl": 5, "button_a": 14',
                    '"pico": {"i2c": 0, "sda": 16, "scl": 17, "button_a": 14'))
    with Fob(port) as f:
        f._t.fs_writefile("config.py", old.encode())
    for args in (["config"], ["config", "brightness=9"]):  # before the update: say so
        r = CliRunner().invoke(cli, ["fob", *args, "--port", port])
        assert r.exit_code == 2 and r.output == ("error: the fob has no hwtoken firmware (or "
                                                 "an old one): run `hwtoken fob deploy`\n")
    out = run("fob", "deploy", "--port", port)
    assert "settings: moved from the old config.py to settings.json and kept: oled_addr, " \
           "scl, sda, wifi_password, wifi_ssid" in out
    assert WIFI_PASSWORD not in out

    def board_files() -> tuple[dict, str]:
        with Fob(port) as f:
            return (json.loads(bytes(f._t.fs_readfile("settings.json"))),
                    bytes(f._t.fs_readfile("config.py")).decode())

    settings, config = board_files()
    assert settings == {"oled_addr": 0x3D, "wifi_ssid": "home", "wifi_password": WIFI_PASSWORD,
                        "sda": 16, "scl": 17}
    assert "jsonfile" in config and WIFI_PASSWORD not in config  # the new code, no settings
    # the next deploy (a firmware update) keeps them
    out = run("fob", "deploy", "--port", port, "--force")
    assert "settings: kept (oled_addr, scl, sda, wifi_password, wifi_ssid; the rest are " \
           "defaults)" in out
    assert board_files()[0] == settings

    # `fob config`: shows them (the password only as set), changes them
    shown = run("fob", "config", "--port", port)
    assert "oled_addr       0x3D\n" in shown and "wifi_password   set\n" in shown
    assert "brightness      255  (default)\n" in shown and WIFI_PASSWORD not in shown
    doc = json.loads(run("fob", "config", "--port", port, "brightness=40", "sda=", "--json"))
    assert doc["changed"] == ["brightness", "sda"]
    assert doc["settings"]["brightness"] == "40" and doc["settings"]["sda"] == "4"
    assert doc["custom"] == ["brightness", "oled_addr", "scl", "wifi_password", "wifi_ssid"]
    out = run("fob", "config", "--port", port, "--wifi", input="cafe\n\n")
    assert out.startswith("set on the fob: wifi_ssid=cafe, wifi_password=not set;")
    assert board_files()[0]["wifi_password"] == ""
    out = run("fob", "config", "--port", port, "--wifi", input="\n")  # no Wi-Fi at all
    assert "wifi_ssid (default )" in out and "wifi_ssid" not in board_files()[0]
    r = CliRunner().invoke(cli, ["fob", "config", "--port", port, "brightness=999"])
    assert r.exit_code == 2 and r.output.startswith("error: brightness: brightness must be")

    # --reset-settings: refused without a terminal or --force, asked on one, then done
    r = CliRunner().invoke(cli, ["fob", "deploy", "--port", port, "--reset-settings"])
    assert r.exit_code == 2 and r.stderr.strip() == (
        "error: --reset-settings forgets the fob's Wi-Fi, pins and display settings; pass "
        "--force to confirm")
    with monkeypatch.context() as m:
        m.setattr("hwtoken.cli.common.is_interactive", lambda: True)
        r = CliRunner().invoke(cli, ["fob", "deploy", "--port", port, "--reset-settings"],
                               input="n\n")
    assert r.exit_code == 1 and "Forget the fob's settings" in r.stderr
    assert board_files()[0]["brightness"] == 40
    out = run("fob", "deploy", "--port", port, "--reset-settings", "--force", "--board", "esp32")
    assert "settings: reset to the defaults, then board set" in out
    assert board_files()[0] == {"board": "esp32"}
    info = json.loads(run("fob", "config", "--port", port, "--json"))
    assert info["settings"]["oled_addr"] == "0x3C" and info["board_detected"] == "esp32"
    assert info["settings"]["sda"] == "21"  # esp32's pins


def test_config_and_reset_refuse_bad_input_as_real_processes(tmp_path):
    env = dict(os.environ, HWTOKEN_FOB_PORT="socket://127.0.0.1:9")
    cases = [
        (["fob", "config", "oled_addr=nan"], None,
         "error: oled_addr: an I2C address must be a whole number from 8 to 119, not 'nan'"),
        (["fob", "config", "brightness=99999999999999999999"], None,
         "error: brightness: brightness must be from 0 to 255, not '99999999999999999999'"),
        (["fob", "config", "wifi_password=hunter22"], None,
         "error: wifi_password is read from stdin, never from the command line: use hwtoken "
         "fob config --wifi"),
        (["fob", "config", b"oled_addr=\xff"], None, "error: Invalid value for "),
        (["fob", "config", "--wifi"], b"", "error: --wifi reads the network name (SSID) and "
                                           "its password from stdin, one line each"),
        (["fob", "config", "--wifi"], b"caf\xe9\npassword1\n",
         "error: stdin is not valid UTF-8 text"),
        (["fob", "config", "--wifi"], b"home\nshort\n", "error: a WPA2 Wi-Fi password is 8"),
        (["fob", "deploy", "--reset-settings"], b"y\n",
         "error: --reset-settings forgets the fob's Wi-Fi, pins and display settings; pass "
         "--force to confirm"),
        (["fob", "deploy", "--board", "arduino"], None, "error: Invalid value for '--board'"),
    ]
    for args, stdin, message in cases:
        proc = subprocess.run([str(HWTOKEN), *args], env=env, input=stdin,
                              capture_output=True, timeout=60)
        err = proc.stderr.decode()
        assert proc.returncode == 2, (args, err)
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(message), (args, err)
        assert proc.stdout == b"" and "Traceback" not in err
        assert "hunter22" not in err
