"""``hwtoken provision`` through click's CliRunner and as a real process."""

from __future__ import annotations

import json
import stat

from click.testing import CliRunner
from provision_helpers import hwtoken, only

from hwtoken.cli import cli


def test_help_lists_the_commands():
    result = CliRunner().invoke(cli, ["provision", "--help"])
    assert result.exit_code == 0
    for name in ("run", "resume", "status", "list", "forget", "export"):
        assert name in result.output
    run_help = CliRunner().invoke(cli, ["provision", "run", "--help"]).output
    for opt in ("--mode", "--slot", "--digits", "--touch", "--inventory", "--count",
                "--virtual", "--reprogram", "--overwrite", "--force", "--access-code",
                "--new-access-code", "--public-id", "--allow-weak", "--json"):
        assert opt in run_help
    resume_help = CliRunner().invoke(cli, ["provision", "resume", "--help"]).output
    assert "--code" in resume_help and "--access-code" in resume_help


def test_run_status_and_refusal(tmp_path):
    url = f"sqlite:///{tmp_path / 'inv.db'}"
    runner = CliRunner()
    first = runner.invoke(cli, ["provision", "run", "-i", url, "-m", "chalresp",
                                "--virtual", "2", "--json"])
    assert first.exit_code == 0, first.output
    lines = [json.loads(x) for x in first.stdout.splitlines()]
    # a typo in the path shows itself
    assert first.stderr == f"new inventory: {tmp_path / 'inv.db'}\n"
    assert [d.get("result") for d in lines[:2]] == ["done", "done"]
    assert lines[-1]["summary"]["counts"] == {"done": 2}
    assert stat.S_IMODE((tmp_path / "inv.db").stat().st_mode) == 0o600

    again = runner.invoke(cli, ["provision", "run", "-i", url, "-m", "chalresp",
                                "--virtual", "2"])
    assert again.exit_code == 1  # every key refused: the run programmed nothing
    assert again.stdout.count("refused: slot 2 is already in the inventory (done)") == 2

    status = runner.invoke(cli, ["provision", "status", "-i", url, "--json"])
    doc = json.loads(status.output)
    assert doc["counts"] == {"pending": 0, "done": 2, "exported": 0}
    assert doc["pending"] == [] and doc["last_error"] is None


def test_count_stops_early_and_human_output(tmp_path):
    url = str(tmp_path / "inv.db")
    proc = hwtoken("provision", "run", "-i", url, "-m", "oath-totp", "--virtual", "5",
                   "--count", "2")
    assert proc.stdout.splitlines()[-1].startswith("2 done in ")
    status = hwtoken("provision", "status", "-i", url)
    assert "done: 2" in status.stdout


def test_user_errors_are_one_line(tmp_path):
    cases = [
        (["provision", "run", "-i", "mysql://x", "-m", "hotp", "--virtual", "1"], 2),
        (["provision", "status", "-i", str(tmp_path / "missing.db")], 2),
        (["provision", "run", "-i", str(tmp_path / "a.db"), "-m", "hotp", "--digits", "7",
          "--virtual", "1"], 2),
        (["provision", "export", "-i", str(tmp_path / "a.db"), "--format", "xml", "-o", "x"], 2),
    ]
    for args, code in cases:
        proc = hwtoken(*args, check=code)
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].lower().startswith("error")


def test_fault_variable_is_validated(tmp_path):
    proc = hwtoken("provision", "run", "-i", str(tmp_path / "f.db"), "-m", "hotp",
                   "--virtual", "1", env={"HWTOKEN_FAULT": "after:lunch"}, check=2)
    assert "HWTOKEN_FAULT" in proc.stderr


def _run_on_a_terminal(*args: str) -> str:
    """Run the real ``hwtoken`` with its stdout and stderr on a pseudo-terminal."""
    from provision_helpers import on_terminal

    code, shown = on_terminal(*args)
    assert code == 0, shown
    return shown


def test_progress_bar_on_a_terminal_json_lines_otherwise(tmp_path):
    url = str(tmp_path / "inv.db")
    shown = _run_on_a_terminal("provision", "run", "-i", url, "-m", "chalresp",
                               "--virtual", "3")
    assert "provisioning" in shown and "[####" in shown and "3/3" in shown
    assert "3 done in " in shown
    as_json = _run_on_a_terminal("provision", "run", "-i", url, "-m", "chalresp",
                                 "--virtual", "3", "--reprogram", "--json")
    docs = [json.loads(ln) for ln in as_json.splitlines() if ln.strip()]
    assert [d["result"] for d in docs[:3]] == ["done"] * 3  # no bar, only JSON lines
    assert docs[-1]["summary"]["counts"] == {"done": 3}


def test_another_slot_of_a_recorded_key_is_a_record_of_its_own(tmp_path):
    from provision_helpers import chalresp_matches, opened

    url = str(tmp_path / "inv.db")
    hwtoken("provision", "run", "-i", url, "-m", "chalresp", "--slot", "2", "--virtual", "1")
    with opened(url) as inv:
        (rec,) = inv.records()
        secret = inv.secret(rec)
    proc = hwtoken("provision", "run", "-i", url, "-m", "hotp", "--slot", "1", "--virtual",
                   "1", "--json")
    (doc,) = [json.loads(ln) for ln in proc.stdout.splitlines() if '"serial"' in ln]
    assert (doc["result"], doc["application"], doc["target"]) == ("done", "otp", "1")
    with opened(url) as inv:  # the slot-2 secret is still recorded, and still on the key
        assert inv.secret(only(inv, rec.key)) == secret
        assert [(r.target, r.mode.value) for r in inv.records()] == [("2", "chalresp"),
                                                                      ("1", "hotp")]
    assert chalresp_matches(rec.device, rec.serial, secret)
    # the same place may be reprogrammed, in another mode too
    proc = hwtoken("provision", "run", "-i", url, "-m", "hotp", "--slot", "2", "--virtual",
                   "1", "--reprogram", "--json")
    assert '"result": "done"' in proc.stdout
    with opened(url) as inv:
        assert sorted((r.target, r.mode.value) for r in inv.records()) == [("1", "hotp"),
                                                                            ("2", "hotp")]


def test_ctrl_c_points_to_resume(tmp_path):
    import os
    import signal
    import subprocess

    from provision_helpers import HWTOKEN

    url = str(tmp_path / "inv.db")
    proc = subprocess.Popen([HWTOKEN, "provision", "run", "-i", url, "-m", "chalresp",
                             "--virtual", "40", "--json"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        first = proc.stdout.readline()  # one key done: the run is under way
        assert '"result": "done"' in first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted: `hwtoken provision resume")
    hwtoken("provision", "resume", "-i", url)  # settles whatever was in progress
    assert json.loads(hwtoken("provision", "status", "-i", url, "--json").stdout)[
        "counts"]["pending"] == 0


def test_a_database_password_on_the_command_line_is_warned_about(tmp_path):
    url = f"postgresql://prov:hunter2@/db?host={tmp_path}"  # no server there
    proc = hwtoken("provision", "status", "-i", url, check=2)
    assert proc.stderr.startswith("warning: the inventory URL on the command line holds")
    assert "hunter2" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot connect")
    # from the environment it is not on the command line: no warning
    proc = hwtoken("provision", "status", env={"HWTOKEN_INVENTORY": url}, check=2)
    assert "warning" not in proc.stderr and "hunter2" not in proc.stderr


def test_an_empty_oath_name_is_refused_once_up_front(tmp_path):
    inv = tmp_path / "inv.db"
    proc = hwtoken("provision", "run", "-i", str(inv), "-m", "oath-totp", "--name", "",
                   "--virtual", "3", check=2)
    assert proc.stderr.count("error:") == 1 and "--name ''" in proc.stderr
    assert proc.stdout == "" and not inv.exists()  # no key was touched, nothing recorded


def test_a_broken_pcsc_setup_stops_the_run_at_once_and_is_recorded(tmp_path):
    """$HWTOKEN_VPCD asks for pcscd; pcscd does not answer: no per-key 10 s waits."""
    inv = str(tmp_path / "inv.db")
    env = {"HWTOKEN_VPCD": "127.0.0.1:35963", "PCSCLITE_CSOCK_NAME": str(tmp_path / "none")}
    proc = hwtoken("provision", "run", "-i", inv, "-m", "oath-totp", "--virtual", "4",
                   "--json", env=env, check=2)
    assert proc.stdout.count('"result"') == 0  # stopped before any key's outcome
    assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")] == [
        "error: pcscd does not answer (no PC/SC service for this process) while "
        "$HWTOKEN_VPCD=127.0.0.1:35963 asks for it: start pcscd with the vpcd driver, or "
        "unset $HWTOKEN_VPCD to use the key in-process"]
    doc = json.loads(hwtoken("provision", "status", "-i", inv, "--json").stdout)
    assert doc["counts"]["done"] == doc["counts"]["pending"] == 0
    assert "pcscd does not answer" in doc["last_error"]["message"]
    assert "run stopped" in doc["last_error"]["message"]


def test_without_pcscd_the_documented_in_process_fallback_is_used(tmp_path):
    inv = str(tmp_path / "inv.db")
    env = {"HWTOKEN_VPCD": "", "PCSCLITE_CSOCK_NAME": str(tmp_path / "none")}
    proc = hwtoken("provision", "run", "-i", inv, "-m", "oath-hotp", "--virtual", "2",
                   env=env)
    assert proc.stdout.splitlines()[-1].startswith("2 done in ")


def test_status_shows_exported_as_a_part_of_done(tmp_path):
    inv = str(tmp_path / "inv.db")
    hwtoken("provision", "run", "-i", inv, "-m", "chalresp", "--virtual", "2")
    assert "  pending: 0  done: 2 (exported: 0)" in hwtoken("provision", "status", "-i",
                                                             inv).stdout.splitlines()
    hwtoken("provision", "export", "-i", inv, "--format", "pskc", "-o",
            str(tmp_path / "out.pskc"))
    assert "  pending: 0  done: 2 (exported: 2)" in hwtoken("provision", "status", "-i",
                                                             inv).stdout.splitlines()
