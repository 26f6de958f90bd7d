"""An admin's delivered batch, as real ``hwtoken provision`` processes: never overwrite what a
key holds without being told, inventories that show a typo, several records per key,
access codes, record management, Yubico OTP, and output an operator can trust.

The typo case comes first: it is why the rest exists.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from provision_helpers import HWTOKEN, key_calculate, on_terminal, opened, read_pskc

from hwtoken import paths
from hwtoken.emulator.key import VirtualKey
from hwtoken.otp import hotp_code
from hwtoken.provision.model import Mode, State
from hwtoken.provision.sources import pool_name, virtual_serial

#: an exception class name where an operator reads a message ("CheckFailed: ...")
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Failed|Exception|Busy|Denied)\b")
OCCUPIED = ("slot 1 is programmed (it types on touch: HOTP, Yubico OTP or a static "
            "password), which this inventory did not write: pass --overwrite to replace it")


def hw(*args: str, input: str | None = None, env: dict[str, str] | None = None,
       check: int | None = 0) -> subprocess.CompletedProcess[str]:
    """``hwtoken ARGS`` as a real process, stdin not a terminal (``input`` or nothing)."""
    proc = subprocess.run([HWTOKEN, *args], capture_output=True, text=True, timeout=180,
                          input=input if input is not None else "",
                          env={**os.environ, **(env or {})})
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
    if proc.returncode > 0:
        errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert not CLASS_NAME.search(proc.stdout + proc.stderr), proc.stdout + proc.stderr
    return proc


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict]:
    """--json output: JSON Lines, every line one object."""
    return [json.loads(ln) for ln in proc.stdout.splitlines()]


def hotp_on_key(device: str, serial: int, slot: int) -> str:
    return str(key_calculate(device, serial, "hotp", slot=slot))


# -- never overwrite in silence ------------------------------------------------------------------
def test_a_typo_in_the_inventory_name_refuses_the_programmed_keys(tmp_path):
    """The issue's case: a batch programmed and exported, then the same run with kyes.db."""
    keys, typo = tmp_path / "keys.db", tmp_path / "kyes.db"
    first = hw("provision", "run", "-m", "hotp", "--slot", "1", "--virtual", "2", "-i", str(keys))
    assert first.stderr == f"new inventory: {keys}\n"
    hw("provision", "export", "-i", str(keys), "--for", "privacyidea", "--format", "csv",
       "-o", str(tmp_path / "batch.csv"))
    with opened(str(keys)) as inv:
        recorded = {r.serial: (r, inv.secret(r)) for r in inv.records()}

    again = hw("provision", "run", "-m", "hotp", "--slot", "1", "--virtual", "2", "-i",
               str(typo), check=1)
    # the typo shows itself, and each key is one line: its serial, what it holds, the flag
    assert again.stderr.splitlines() == [
        f"new inventory: {typo}",
        "error: 2 record(s) refused: see the lines above, or `hwtoken provision status`"]
    assert again.stdout.splitlines()[:2] == [
        f"{serial} slot 1 (hotp) refused: {OCCUPIED}" for serial in recorded]
    assert again.stdout.splitlines()[2].startswith("2 refused (occupied 2) in ")
    # the keys still answer with the exported secrets
    for serial, (rec, secret) in recorded.items():
        assert hotp_on_key(rec.device, serial, 1) == hotp_code(secret, rec.counter, 6)
    with opened(str(typo)) as inv:
        assert inv.records() == []
    as_json = hw("provision", "run", "-m", "hotp", "--slot", "1", "--virtual", "2", "-i",
                 str(typo), "--json", check=1)
    docs = lines(as_json)
    assert [(d["result"], d["reason"]) for d in docs[:2]] == [("refused", "occupied")] * 2
    assert docs[2]["summary"]["refused"] == {"occupied": 2}
    assert docs[3] == {"error": "2 record(s) refused: see the lines above, or `hwtoken "
                                "provision status`", "code": 1}


def test_overwrite_without_a_terminal_needs_force(tmp_path):
    hw("provision", "run", "-m", "chalresp", "--virtual", "1", "-i", str(tmp_path / "a.db"))
    other = tmp_path / "b.db"
    proc = hw("provision", "run", "-m", "chalresp", "--virtual", "1", "-i", str(other),
              "--overwrite", check=2)
    assert proc.stderr == ("error: --overwrite replaces what keys hold: without a terminal "
                           "to ask on, pass --force as well\n")
    assert not other.exists()  # refused before anything was opened
    proc = hw("provision", "run", "-m", "chalresp", "--virtual", "1", "-i", str(other),
              "--force", check=2)
    assert "--force only confirms --overwrite" in proc.stderr and not other.exists()
    done = hw("provision", "run", "-m", "chalresp", "--virtual", "1", "-i", str(other),
              "--overwrite", "-f", "--json")
    assert [d["result"] for d in lines(done)[:1]] == ["done"]
    # --reprogram is about this inventory's own records: it does not overwrite others'
    third = tmp_path / "c.db"
    proc = hw("provision", "run", "-m", "chalresp", "--virtual", "1", "-i", str(third),
              "--reprogram", "--json", check=1)
    assert lines(proc)[0]["reason"] == "occupied"


def test_overwrite_asks_once_per_run_on_a_terminal(tmp_path):
    hw("provision", "run", "-m", "hotp", "--slot", "1", "--virtual", "3",
       "-i", str(tmp_path / "a.db"))
    question = "Overwrite what the keys of this run hold?"
    code, shown = on_terminal("provision", "run", "-m", "hotp", "--slot", "1", "--virtual",
                              "3", "-i", str(tmp_path / "b.db"), "--overwrite",
                              answers={question: "n"})
    assert code == 1 and shown.count(question) == 1
    assert shown.count("refused: slot 1 is programmed") == 3
    code, shown = on_terminal("provision", "run", "-m", "hotp", "--slot", "1", "--virtual",
                              "3", "-i", str(tmp_path / "c.db"), "--overwrite",
                              answers={question: "y"})
    assert code == 0 and shown.count(question) == 1 and shown.count(" done") >= 3
    # the question starts a line of its own: never on the progress bar's line
    for row in re.split(r"\r|\n", shown):
        if question in row:
            assert "provisioning [" not in row, row


# -- inventories ---------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [
    ["run", "-m", "chalresp", "--virtual", "1"],
    ["status"], ["list"], ["resume"], ["forget", "1", "-f"],
    ["export", "--format", "pskc", "-o", "x.pskc"]])
def test_an_inventory_goes_into_a_directory_that_exists(tmp_path, command):
    path = tmp_path / "nodir" / "keys.db"
    proc = hw("provision", command[0], "-i", str(path), *command[1:], check=2)
    assert not path.parent.exists()
    assert proc.stderr.startswith("error: ") and str(path) in proc.stderr


def test_a_new_inventory_needs_a_passphrase_of_12_characters(tmp_path):
    inv = tmp_path / "weak.db"
    short = {"HWTOKEN_INVENTORY_PASSPHRASE": "hunter2hunt"}  # 11
    proc = hw("provision", "run", "-m", "chalresp", "--virtual", "1", "-i", str(inv),
              env=short, check=2)
    assert proc.stderr.splitlines()[-1] == (
        "error: the passphrase of a new inventory needs at least 12 characters (this one "
        "has 11): choose a longer one, use --key-file, or pass --allow-weak")
    assert not inv.exists() and list(tmp_path.iterdir()) == []  # no half-made inventory
    hw("provision", "run", "-m", "chalresp", "--virtual", "1", "-i", str(inv), "--allow-weak",
       env=short)
    # an inventory made so is still opened with its passphrase (the rule is for new ones)
    assert "done: 1" in hw("provision", "status", "-i", str(inv), env=short).stdout
    hw("provision", "export", "-i", str(inv), "--format", "chalresp-csv", "-o",
       str(tmp_path / "x.csv"),
       env=short)


def test_an_unencrypted_pskc_export_warns(tmp_path):
    inv = str(tmp_path / "keys.db")
    hw("provision", "run", "-m", "oath-totp", "--virtual", "1", "-i", inv)
    plain = hw("provision", "export", "-i", inv, "--format", "pskc", "-o",
               str(tmp_path / "plain.pskc"))
    assert plain.stderr == (f"warning: {tmp_path / 'plain.pskc'} holds the secrets "
                            "unencrypted: keep it like the inventory passphrase, or encrypt "
                            "it (--pskc-password or --pskc-key-file)\n")
    sealed = hw("provision", "export", "-i", inv, "--format", "pskc", "--all", "-o",
                str(tmp_path / "sealed.pskc"), "--pskc-password",
                env={"HWTOKEN_PSKC_PASSWORD": "an export password"})
    assert sealed.stderr == ""


# -- several records per key ---------------------------------------------------------------------
def test_one_key_carries_three_applications_as_three_records(tmp_path):
    inv = str(tmp_path / "keys.db")
    plan = ["-m", "chalresp:1", "-m", "hotp:2", "-m", "oath-totp:mail"]
    # the run is killed right after the second record of the first key is programmed
    crashed = hw("provision", "run", "-i", inv, *plan, "--virtual", "2", "--json",
                 env={"HWTOKEN_FAULT": "after:program@2"}, check=-9)
    assert [(d["target"], d["result"]) for d in lines(crashed)] == [("1", "done")]
    status = json.loads(hw("provision", "status", "-i", inv, "--json").stdout)
    assert status["counts"] == {"pending": 1, "done": 1, "exported": 0}
    (pending,) = status["pending"]
    assert (pending["application"], pending["target"], pending["mode"]) == ("otp", "2", "hotp")
    resumed = hw("provision", "resume", "-i", inv, "--json")
    assert [(d["target"], d["result"], d["reprogrammed"]) for d in lines(resumed)[:-1]] == [
        ("2", "done", False)]  # only that record: the key already held its secret
    # the first key goes on with the one place left; the second key gets all three
    rest = hw("provision", "run", "-i", inv, *plan, "--virtual", "2", "--json", check=0)
    got = [(d["serial"], d["target"], d["result"], d["reason"]) for d in lines(rest)[:-1]]
    first, second = virtual_serial(pool_name(1)), virtual_serial(pool_name(2))
    assert got == [(first, "1", "refused", "recorded"), (first, "2", "refused", "recorded"),
                   (first, "mail", "done", None), (second, "1", "done", None),
                   (second, "2", "done", None), (second, "mail", "done", None)]
    listed = json.loads(hw("provision", "list", "-i", inv, "--json").stdout)["records"]
    assert sorted((r["serial"], r["application"], r["target"], r["state"]) for r in listed) \
        == sorted((s, app, t, "done") for s in (first, second)
                  for app, t in (("otp", "1"), ("otp", "2"), ("oath", "mail")))
    out = tmp_path / "all.pskc"
    hw("provision", "export", "-i", inv, "--format", "pskc", "-o", str(out))
    import pskc

    ids = sorted(k.id for k in pskc.PSKC(str(out)).keys)
    assert ids == sorted(f"{s}:{p}" for s in (first, second) for p in ("1", "2", "oath:mail"))
    with opened(inv) as opened_inv:  # each place answers with its own secret
        for rec in opened_inv.records():
            if rec.mode is Mode.CHALRESP:
                got = key_calculate(rec.device, rec.serial, "chalresp", os.urandom(32),
                                    slot=rec.slot)
                assert isinstance(got, bytes)
            elif rec.mode is Mode.HOTP:
                assert hotp_on_key(rec.device, rec.serial, 2) == hotp_code(
                    opened_inv.secret(rec), rec.counter, 6)
    lst = hw("provision", "list", "-i", inv, "--state", "pending")
    assert lst.stdout == f"no records pending in sqlite://{tmp_path / 'keys.db'}\n"


def test_two_modes_for_one_place_are_refused_up_front(tmp_path):
    proc = hw("provision", "run", "-i", str(tmp_path / "x.db"), "-m", "chalresp", "-m", "hotp",
              "--virtual", "1", check=2)
    assert proc.stderr == ("error: two modes for slot 2 (chalresp and hotp): give each its "
                           "own slot (-m MODE:SLOT) or OATH credential name (-m MODE:NAME)\n")
    assert not (tmp_path / "x.db").exists()
    for bad, why in (("hotp:3", "an OTP slot is 1 or 2"), ("u2f", "'u2f' is not one of 'hotp'"),
                     ("oath-totp:", "give the slot or name after ':'")):
        proc = hw("provision", "run", "-i", str(tmp_path / "x.db"), "-m", bad, "--virtual",
                  "1", check=2)
        assert why in proc.stderr


# -- access codes --------------------------------------------------------------------------------
def _slot_code(device: str, slot: int) -> bytes:
    """The access code the virtual key's slot holds (read from its state, as the key
    would compare it)."""
    key = VirtualKey.load(paths.virtual_key_path(device.removeprefix("emu:")))
    try:
        return key.otp.slot_config(slot).acc_code
    finally:
        key.close()


def test_new_access_codes_are_per_slot_sealed_and_exported_for_the_admin(tmp_path):
    inv = str(tmp_path / "keys.db")
    hw("provision", "run", "-i", inv, "-m", "chalresp:1", "-m", "yubiotp:2", "-m", "oath-totp",
       "--virtual", "2", "--new-access-code", "random")
    codes = tmp_path / "codes.csv"
    proc = hw("provision", "export", "-i", inv, "--format", "access-codes", "-o", str(codes))
    assert proc.stdout == f"wrote 4 record(s) to {codes}\n"
    rows = codes.read_text().splitlines()
    assert rows[0] == "# hwtoken access codes: serial,slot,access code(hex),state"
    seen = set()
    with opened(inv) as opened_inv:
        for row in rows[1:]:
            serial, slot, code, state = row.split(",")
            (rec,) = [r for r in opened_inv.records(serial=int(serial)) if r.target == slot]
            assert bytes.fromhex(code) == opened_inv.access_code(rec) == _slot_code(
                rec.device, int(slot))
            assert state == "done" and rec.access_code not in (None, code)  # sealed
            seen.add(code)
        oath = [r for r in opened_inv.records() if r.mode is Mode.OATH_TOTP]
        assert all(r.access_code is None for r in oath)  # codes are an OTP slot's
    assert len(seen) == 4  # random: one per slot
    assert oct(codes.stat().st_mode & 0o777) == "0o600"
    # the same code for all, from stdin: no warning; from argv: a warning
    stdin = hw("provision", "run", "-i", str(tmp_path / "b.db"), "-m", "chalresp",
               "--virtual", "1", "--new-access-code", "-", "--overwrite", "-f",
               "--access-code", "0011223344ff", input="a1a2a3a4a5a6\n", check=1)
    assert "warning" in stdin.stderr and "--access-code" not in stdin.stderr.split(
        "warning")[0]
    # (the slot was left with a random code by the first run: 0011223344ff is wrong)
    assert lines(hw("provision", "run", "-i", str(tmp_path / "c.db"), "-m", "chalresp",
                    "--virtual", "1", "--json", check=1))[0]["reason"] == "occupied"


def test_a_slot_protected_by_a_code_not_given_is_refused_and_counts_an_attempt(tmp_path):
    inv = str(tmp_path / "keys.db")
    hw("provision", "run", "-i", inv, "-m", "chalresp", "--virtual", "1",
       "--new-access-code", "-", input="0a0b0c0d0e0f\n")
    device = f"emu:{pool_name(1)}"
    assert _slot_code(device, 2) == bytes.fromhex("0a0b0c0d0e0f")
    other = str(tmp_path / "other.db")
    proc = hw("provision", "run", "-i", other, "-m", "chalresp", "--virtual", "1",
              "--overwrite", "-f", "--json", check=1)
    (refused, summary, error) = lines(proc)
    assert (refused["result"], refused["reason"]) == ("refused", "access-code")
    assert refused["message"] == ("slot 2 is protected by an access code that was not given: "
                                  "pass the code it has with --access-code")
    assert summary["summary"]["refused"] == {"access-code": 1} and error["code"] == 1
    (rec,) = json.loads(hw("provision", "list", "-i", other, "--json").stdout)["records"]
    assert (rec["state"], rec["attempts"]) == ("pending", 1)
    assert rec["last_error"] == refused["message"]
    # resume without the code: refused again, a second attempt
    again = lines(hw("provision", "resume", "-i", other, "--json", check=1))
    assert again[0]["reason"] == "access-code"
    assert json.loads(hw("provision", "list", "-i", other, "--json").stdout)[
        "records"][0]["attempts"] == 2
    # a wrong code on the command line: warned about, and refused too
    wrong = hw("provision", "resume", "-i", other, "--access-code", "111111111111", check=1)
    assert wrong.stderr.startswith("warning: a secret on the command line can be read by "
                                   "other users")
    # the right one from the environment: settled, and the slot keeps that code
    done = hw("provision", "resume", "-i", other, "--json",
              env={"HWTOKEN_ACCESS_CODE": "0a0b0c0d0e0f"})
    assert lines(done)[0]["result"] == "done" and "warning" not in done.stderr
    assert _slot_code(device, 2) == bytes.fromhex("0a0b0c0d0e0f")
    with opened(other) as o:
        (r,) = o.records()
        assert o.access_code(r) == bytes.fromhex("0a0b0c0d0e0f") and r.state is State.DONE


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (["--access-code", "12345"], "", "--access-code must be 12 hex digits (6 bytes)"),
    (["--access-code", "-"], "zzzzzzzzzzzz\n", "--access-code must be 12 hex digits"),
    (["--access-code", "000000000000"], "", "an all-zero access code means no code at all"),
    (["--new-access-code", "randomly"], "", "--new-access-code must be 12 hex digits"),
    (["--access-code", "-", "--new-access-code", "-"], "", "only one of --access-code and"),
])
def test_bad_access_codes_are_refused_before_any_key(tmp_path, args, stdin, message):
    """(Bytes that are not UTF-8 on stdin: tests/cli/test_contract_cases.py.)"""
    inv = tmp_path / "x.db"
    proc = hw("provision", "run", "-i", str(inv), "-m", "chalresp", "--virtual", "1", *args,
              input=stdin, check=2)
    assert message in proc.stderr and not inv.exists()
    oath = hw("provision", "run", "-i", str(inv), "-m", "oath-totp", "--virtual", "1",
              "--new-access-code", "random", check=2)
    assert "access codes protect OTP slots" in oath.stderr


# -- record management ---------------------------------------------------------------------------
def test_list_and_forget(tmp_path):
    inv = str(tmp_path / "keys.db")
    hw("provision", "run", "-i", inv, "-m", "chalresp:1", "-m", "oath-hotp", "--virtual", "2")
    serial = virtual_serial(pool_name(1))
    table = hw("provision", "list", "-i", inv).stdout.splitlines()
    assert table[0].split() == ["SERIAL", "PLACE", "MODE", "STATE", "TRIES", "EXPORTED",
                                "LAST", "ERROR"]
    assert len(table) == 5 and all(" done " in row for row in table[1:])
    # without a terminal and without --force: refused, nothing dropped
    proc = hw("provision", "forget", str(serial), "-i", inv, check=2)
    assert proc.stderr == ("error: forgetting records loses their secrets (slot 1 "
                           "(chalresp, done), OATH credential 'hwtoken' (oath-hotp, done)); "
                           "pass --force to confirm\n")
    assert len(json.loads(hw("provision", "list", "-i", inv, "--json").stdout)["records"]) == 4
    # on a terminal it asks; "n" changes nothing
    code, shown = on_terminal("provision", "forget", str(serial), "-i", inv,
                              answers={"Their secrets are lost for good": "n"})
    assert code == 1 and "aborted: nothing was changed" in shown
    gone = json.loads(hw("provision", "forget", str(serial), "--app", "otp:1", "-f", "-i", inv,
                         "--json").stdout)
    assert [(r["application"], r["target"]) for r in gone["forgotten"]] == [("otp", "1")]
    left = json.loads(hw("provision", "list", "-i", inv, "--json").stdout)["records"]
    assert sorted((r["serial"], r["target"]) for r in left) == sorted(
        [(serial, "hwtoken"), (virtual_serial(pool_name(2)), "1"),
         (virtual_serial(pool_name(2)), "hwtoken")])
    hw("provision", "forget", str(serial), "--app", "oath", "-f", "-i", inv)
    proc = hw("provision", "forget", str(serial), "-f", "-i", inv, check=2)
    assert proc.stderr == f"error: the inventory has no record of key {serial}\n"
    for bad, why in (("u2f", "--app 'u2f': use one of fido, oath, otp, piv"),
                     ("otp:", "give the slot or name after ':'")):
        assert why in hw("provision", "forget", "5", "--app", bad, "-f", "-i", inv,
                         check=2).stderr
    # a key forgotten is a key like any other: its slot is programmed, so it is refused
    again = hw("provision", "run", "-i", inv, "-m", "chalresp:1", "--virtual", "1", "--json",
               check=1)
    assert lines(again)[0]["reason"] == "occupied"


def test_resume_with_nothing_pending_says_so(tmp_path):
    inv = str(tmp_path / "keys.db")
    hw("provision", "run", "-i", inv, "-m", "chalresp", "--virtual", "1")
    proc = hw("provision", "resume", "-i", inv)
    assert proc.stderr == f"nothing pending in sqlite://{tmp_path / 'keys.db'}\n"
    assert proc.stdout.startswith("no keys in ")
    (summary,) = lines(hw("provision", "resume", "-i", inv, "--json"))
    assert summary["summary"]["nothing_pending"] is True
    assert summary["summary"]["counts"] == {}


def test_a_code_typed_by_hand_needs_a_pending_typing_slot(tmp_path):
    inv = str(tmp_path / "keys.db")
    hw("provision", "run", "-i", inv, "-m", "chalresp", "--virtual", "1")
    serial = virtual_serial(pool_name(1))
    proc = hw("provision", "resume", "-i", inv, "--code", f"{serial}=123456", check=2)
    assert proc.stderr == (f"error: --code: key {serial} has no pending HOTP or Yubico OTP "
                           "slot in this inventory\n")
    for bad in ("123456", "x=123456", f"{serial}=", f"{serial}=12 34"):
        assert "--code" in hw("provision", "resume", "-i", inv, "--code", bad, check=2).stderr


# -- Yubico OTP ----------------------------------------------------------------------------------
def test_yubico_otp_public_ids_and_the_log_line_are_ykmans(tmp_path):
    from ykman.otp import format_csv
    from yubikit.core.otp import modhex_encode

    inv = str(tmp_path / "keys.db")
    hw("provision", "run", "-i", inv, "-m", "yubiotp", "--virtual", "2")
    hw("provision", "run", "-i", inv, "-m", "yubiotp:1", "--public-id", "random", "--virtual",
       "2")
    out = tmp_path / "log.csv"
    hw("provision", "export", "-i", inv, "--format", "yubico-csv", "-o", str(out))
    rows = out.read_text().splitlines()
    with opened(inv) as o:
        records = o.records()
        assert len(records) == len(rows) == 4
        by_serial_id = {(r.serial, r.params["public_id"]): r for r in records}
        for row in rows:
            serial, public_id = row.split(",")[:2]
            rec = by_serial_id[(int(serial), public_id)]
            secret = o.secret(rec)
            from datetime import datetime

            stamp = datetime.fromisoformat(row.split(",")[5])
            # ykman otp yubiotp --config-output writes exactly this line
            assert row == format_csv(rec.serial, bytes.fromhex(
                _modhex_to_hex(public_id)), secret[:6], secret[6:], None, stamp)
            if rec.slot == 2:  # ykman otp yubiotp --serial-public-id
                assert public_id == modhex_encode(b"\xff\x00" + rec.serial.to_bytes(4, "big"))
            else:
                assert public_id.startswith("vv") and len(public_id) == 12
    randoms = [r.params["public_id"] for r in records if r.slot == 1]
    assert len(set(randoms)) == 2
    pskc = read_pskc(hw("provision", "export", "-i", inv, "--format", "pskc", "-o",
                        str(tmp_path / "y.pskc")) and tmp_path / "y.pskc")
    assert set(pskc) == {r.serial for r in records}


def _modhex_to_hex(text: str) -> str:
    from yubikit.core.otp import modhex_decode

    return modhex_decode(text).hex()


# -- output an operator can trust ------------------------------------------------------------------
def test_a_fido_only_key_is_reported_as_such(tmp_path):
    VirtualKey.create(paths.virtual_key_path(pool_name(1)), profile="security-key").close()
    for mode in ("hotp", "oath-totp"):
        proc = hw("provision", "run", "-i", str(tmp_path / "keys.db"), "-m", mode,
                  "--virtual", "1", "--json", check=1)
        (refused, summary, _) = lines(proc)
        assert (refused["result"], refused["reason"]) == ("refused", "unsuitable"), refused
        assert "Security Key" in refused["message"] and "not plugged" not in refused["message"]
        assert summary["summary"]["refused"] == {"unsuitable": 1}
    with opened(str(tmp_path / "keys.db")) as o:
        assert o.records() == []


def test_json_lines_in_every_case(tmp_path):
    inv = str(tmp_path / "keys.db")
    cases = [
        (["run", "-i", inv, "-m", "chalresp", "--virtual", "2"], 0),
        (["run", "-i", inv, "-m", "chalresp", "--virtual", "2"], 1),  # refused
        (["run", "-i", inv, "-m", "chalresp", "--virtual", "2", "--digits", "9"], 2),
        (["run", "-i", inv, "-m", "nope", "--virtual", "1"], 2),
        (["run", "-i", str(tmp_path / "no" / "x.db"), "-m", "hotp", "--virtual", "1"], 2),
        (["resume", "-i", inv], 0),
        (["resume", "-i", str(tmp_path / "missing.db")], 2),
        (["run", "-i", inv, "-m", "oath-totp", "--virtual", "1"], 2),  # broken pcscd setup
    ]
    env = {"HWTOKEN_VPCD": "127.0.0.1:1", "PCSCLITE_CSOCK_NAME": str(tmp_path / "none")}
    for args, code in cases:
        proc = hw("provision", *args, "--json", env=env, check=code)
        docs = lines(proc)  # every line is one JSON object
        assert docs, args
        if code:
            assert docs[-1]["code"] == code and docs[-1]["error"], args


def test_progress_lines_stay_above_the_bar(tmp_path):
    inv = str(tmp_path / "keys.db")
    hw("provision", "run", "-i", inv, "-m", "chalresp", "--virtual", "1")
    code, shown = on_terminal("provision", "run", "-i", inv, "-m", "chalresp", "--virtual",
                              "3")
    assert code == 0
    rows = [r for r in re.split(r"\r\n|\n", shown) if r]
    # each finished record's line is a line of its own, the bar cleared before it
    finished = [r for r in rows if re.search(r"\d+ slot 2 \(chalresp\) (done|refused)", r)]
    assert len(finished) == 3
    for row in finished:
        visible = row.split("\x1b[K")[-1]
        assert "provisioning [" not in visible, row
    assert "refused: slot 2 is already in the inventory (done)" in shown
    assert "provisioning [" in shown and "3/3" in shown
    assert rows[-1].split("\x1b[K")[-1].startswith("2 done, 1 refused (recorded 1) in ")
