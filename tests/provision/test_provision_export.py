"""Exports: PSKC parses back with python-pskc (plain, PBKDF2, pre-shared key), the CSV follows
privacyIDEA's documented import layout, the Yubico CSV the Personalization Tool's format;
export state per target and format, empty exports, and what a server target refuses.
(The import into a real privacyIDEA is test_provision_privacyidea.py.)"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from datetime import datetime

import pytest
from provision_helpers import hwtoken, make_v1_inventory, only, opened, read_pskc

from hwtoken.errors import InvalidInput
from hwtoken.provision.export import NothingToExport, export, token_serial, unsupported
from hwtoken.provision.model import Mode, Record, State

SECRETS = {101: os.urandom(20), 102: os.urandom(20), 103: os.urandom(20), 104: os.urandom(20)}
MODES = {101: Mode.HOTP, 102: Mode.CHALRESP, 103: Mode.OATH_TOTP, 104: Mode.OATH_HOTP}

pytestmark = pytest.mark.usefixtures("cheap_kdf")


@pytest.fixture
def filled(tmp_path):
    url = str(tmp_path / "inv.db")
    with opened(url) as inv:
        for serial, secret in SECRETS.items():
            rec = Record(serial=serial, mode=MODES[serial], slot=1, digits=8, touch=False,
                         name="hw", sealed="", device=f"emu:k{serial}")
            inv.seal(rec, secret)
            inv.claim(rec)
            inv.update(rec.key, state=State.DONE, counter=5 if MODES[serial].is_hotp else 0,
                       programmed_at=1_700_000_000.0)
        # a pending key is never exported
        rec = Record(serial=999, mode=Mode.HOTP, slot=1, digits=6, touch=False, name="hw",
                     sealed="", device="emu:p")
        inv.seal(rec, os.urandom(20))
        inv.claim(rec)
    return url


def by_serial(skipped: dict) -> dict[int, str]:
    """What an export left out, by serial (these keys have one record each)."""
    return {key.serial: reason for key, reason in skipped.items()}


def parse_privacyidea_csv(text: str) -> dict[str, dict[str, object]]:
    """privacyIDEA's documented OATH CSV import: serial, key, type, otplen, counter|timestep
    (lines starting with # are comments; fields are trimmed)."""
    tokens = {}
    for line in text.split("\n"):
        if line.startswith("#") or len(line.split(",")) <= 1:
            continue
        f = [x.strip() for x in line.split(",")]
        tok = {"otpkey": f[1], "type": f[2].lower(), "otplen": int(f[3])}
        if tok["type"] == "hotp" and len(f) >= 5:
            tok["counter"] = int(f[4])
        if tok["type"] == "totp":
            tok["timeStep"] = int(f[4]) if len(f) >= 5 else 30
        tokens[f[0]] = tok
    return tokens


def test_pskc_roundtrip_plain_password_and_psk(filled, tmp_path):
    with opened(filled) as inv:
        plain = export(inv, "pskc", str(tmp_path / "a.pskc"))
        pw = export(inv, "pskc", str(tmp_path / "b.pskc"), include_exported=True,
                    password="s3cret pass")
        psk = os.urandom(16)
        export(inv, "pskc", str(tmp_path / "c.pskc"), include_exported=True, preshared_key=psk)
    assert sorted(plain.serials) == sorted(SECRETS) and pw.encrypted
    import pskc

    for path, unlock in ((tmp_path / "a.pskc", None), (tmp_path / "b.pskc", "pw"),
                         (tmp_path / "c.pskc", "psk")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        doc = pskc.PSKC(str(path))
        if unlock is not None:  # secrets are encrypted: not there in base64
            raw = path.read_bytes()
            assert not any(base64.b64encode(s) in raw for s in SECRETS.values())
        if unlock == "pw":
            doc.encryption.derive_key("s3cret pass")
        elif unlock == "psk":
            doc.encryption.key = psk
        keys = {int(k.serial): k for k in doc.keys}
        assert set(keys) == set(SECRETS)
        for serial, key in keys.items():
            assert key.secret == SECRETS[serial]
            assert key.manufacturer == "Yubico"
            assert key.algorithm_suite == "SHA1"
            if MODES[serial].is_hotp:
                assert key.algorithm.endswith(":hotp") and key.counter == 5
                assert (key.response_length, key.response_encoding) == (8, "DECIMAL")
            elif MODES[serial] is Mode.OATH_TOTP:
                assert key.algorithm.endswith(":totp") and key.time_interval == 30
                assert key.time_offset == 0  # T0 = the Unix epoch (RFC 6238)
                assert (key.response_length, key.response_encoding) == (8, "DECIMAL")
            else:  # challenge-response: HMAC-SHA1 of 1 to 64 bytes, a 20-byte response
                assert key.algorithm == "urn:hwtoken:params:xml:ns:keyprov:pskc:hmac-sha1"
                assert (key.response_length, key.response_encoding) == (20, "HEXADECIMAL")
                assert (key.challenge_encoding, key.challenge_min_length,
                        key.challenge_max_length) == ("HEXADECIMAL", 1, 64)
        if unlock == "pw":  # what a reader needs to derive the key: PBKDF2, AES-128-CBC
            assert doc.encryption.derivation.algorithm.endswith("#pbkdf2")
            assert doc.encryption.derivation.pbkdf2_iterations == 100_000
            assert doc.encryption.derivation.pbkdf2_key_length == 16
            assert doc.encryption.algorithm.endswith("#aes128-cbc")
        if unlock == "psk":  # RFC 6030 6.1: the file names the pre-shared key it needs
            assert doc.encryption.key_name == "hwtoken-psk"
            assert b"<ds:KeyName>hwtoken-psk</ds:KeyName>" in path.read_bytes()
    wrong = pskc.PSKC(str(tmp_path / "b.pskc"))
    wrong.encryption.derive_key("not it")
    from pskc.exceptions import DecryptionError

    with pytest.raises(DecryptionError):
        _ = wrong.keys[0].secret


def test_privacyidea_csv_layout(filled, tmp_path):
    out = tmp_path / "pi.csv"
    with opened(filled) as inv:
        result = export(inv, "csv", str(out))
    tokens = parse_privacyidea_csv(out.read_text())
    assert tokens == {
        "UBOM101_1": {"otpkey": SECRETS[101].hex(), "type": "hotp", "otplen": 8, "counter": 5},
        "UBOA103_hw": {"otpkey": SECRETS[103].hex(), "type": "totp", "otplen": 8,
                       "timeStep": 30},
        "UBOA104_hw": {"otpkey": SECRETS[104].hex(), "type": "hotp", "otplen": 8,
                       "counter": 5},
    }
    assert list(by_serial(result.skipped)) == [102]  # chalresp: no privacyIDEA CSV type
    # the layout as the docs give it, byte for byte (lower-case types, ", " between fields)
    assert out.read_text().splitlines() == [
        f"UBOM101_1, {SECRETS[101].hex()}, hotp, 8, 5",
        f"UBOA103_hw, {SECRETS[103].hex()}, totp, 8, 30",
        f"UBOA104_hw, {SECRETS[104].hex()}, hotp, 8, 5",
    ]


def parse_privacyidea_yubikey_csv(text: str) -> dict[str, dict[str, object]]:
    """How privacyIDEA's "Yubikey CSV" import reads the tool's Yubico format: a row whose
    third field is ``0`` is an OATH-HOTP token, an empty one a static password (skipped),
    any other value a Yubico OTP (AES) token."""
    tokens = {}
    for line in text.split("\n"):
        f = line.split(",")
        if len(f) < 6 or not f[0].strip().isdigit():
            continue
        third = f[2].strip()
        if third == "0":
            tokens[f"UBOM{f[0].strip()}_X"] = {"type": "hotp", "otpkey": f[3].strip()}
        elif third:
            tokens[f"UBAM{f[0].strip()}_X"] = {"type": "yubikey", "otpkey": f[3].strip()}
    return tokens


def test_yubico_csv_layout(filled, tmp_path):
    out = tmp_path / "yk.csv"
    with opened(filled) as inv:
        export(inv, "yubico-csv", str(out))
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert [r[0] for r in rows] == ["101", "102"]
    for r in rows:
        # serial, public id, moving factor seed|0, secret key, access code, timestamp, ""
        assert len(r) == 7 and r[1] == "" and r[4] == "" and r[6] == ""
        assert r[3] == SECRETS[int(r[0])].hex()
        # when the key was programmed, as the tool logs it (local time)
        assert r[5] == datetime.fromtimestamp(1_700_000_000).strftime("%Y-%m-%dT%H:%M:%S")
    # the HOTP slot's *initial* moving factor (what the tool logs), not its counter (5):
    # privacyIDEA would import a row with a non-zero third field as a Yubico OTP token
    assert rows[0][2] == "0" and rows[1][2] == "0"
    assert parse_privacyidea_yubikey_csv(out.read_text())["UBOM101_X"] == {
        "type": "hotp", "otpkey": SECRETS[101].hex()}


def test_yubico_csv_of_a_key_without_a_programming_time_logs_its_last_change(filled, tmp_path):
    with opened(filled) as inv:
        inv.query("UPDATE records SET programmed_at = NULL, updated_at = 1600000000 "
                  "WHERE serial = 101")
        export(inv, "yubico-csv", str(tmp_path / "yk.csv"))
    row = (tmp_path / "yk.csv").read_text().splitlines()[0].split(",")
    assert row[0] == "101"
    assert row[5] == datetime.fromtimestamp(1_600_000_000).strftime("%Y-%m-%dT%H:%M:%S")


def test_nothing_to_export_says_why(filled, tmp_path):
    with opened(filled) as inv:
        export(inv, "pskc", str(tmp_path / "1.pskc"))  # takes all four
        with pytest.raises(NothingToExport) as e:
            export(inv, "pskc", str(tmp_path / "2.pskc"))
        assert str(e.value) == ("no done key that an earlier --for generic --format pskc "
                                "export has not written already; no file written (--all "
                                "writes them again)")
        # done keys, but none that this target can import
        inv.query("UPDATE records SET state = 'pending' WHERE serial IN (101, 103, 104)")
        with pytest.raises(NothingToExport) as e:
            export(inv, "csv", str(tmp_path / "3.csv"), target="privacyidea")
        assert str(e.value) == (
            "none of the 1 done record(s) can go into this export (privacyIDEA has no token "
            "type that checks HMAC-SHA1 challenge-response: export these keys with --for "
            "generic --format chalresp-csv); no file written")
        inv.query("UPDATE records SET state = 'pending'")
        with pytest.raises(NothingToExport) as e:
            export(inv, "pskc", str(tmp_path / "4.pskc"), include_exported=True)
        assert str(e.value) == "the inventory has no done key; no file written"
    assert sorted(p.name for p in tmp_path.glob("[1-4].*")) == ["1.pskc"]


def test_export_to_an_unwritable_place_is_a_clean_error(filled, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = hwtoken("provision", "export", "-i", filled, "--format", "csv", "-o",
                   str(blocker / "sub" / "x.csv"), check=2)
    assert proc.stderr.startswith("error: cannot write") and "Traceback" not in proc.stderr
    # a directory that takes no new file (procfs): the cause, not the temporary file's name
    proc = hwtoken("provision", "export", "-i", filled, "--format", "csv", "-o",
                   "/proc/hwtoken-export.csv", check=2)
    assert proc.stderr.splitlines() == [
        "error: cannot write /proc/hwtoken-export.csv: No such file or directory"]
    with opened(filled) as inv:  # nothing was marked exported
        assert inv.counts()["exported"] == 0


def test_second_export_takes_only_new_records(filled, tmp_path):
    with opened(filled) as inv:
        first = export(inv, "pskc", str(tmp_path / "1.pskc"))
        assert len(first.serials) == 4
        with pytest.raises(NothingToExport, match="--all"):  # nothing new: no file
            export(inv, "pskc", str(tmp_path / "2.pskc"))
        assert not (tmp_path / "2.pskc").exists()
        rec = Record(serial=105, mode=Mode.CHALRESP, slot=2, digits=6, touch=False,
                     name="hw", sealed="", device="emu:n")
        inv.seal(rec, os.urandom(20))
        inv.claim(rec)
        inv.update(only(inv, 105).key, state=State.DONE)
        third = export(inv, "pskc", str(tmp_path / "3.pskc"))
        assert third.serials == [105]
        again = export(inv, "pskc", str(tmp_path / "4.pskc"), include_exported=True)
        assert len(again.serials) == 5
        with pytest.raises(InvalidInput, match="exists"):
            export(inv, "pskc", str(tmp_path / "4.pskc"))
        with pytest.raises(InvalidInput):
            export(inv, "csv", str(tmp_path / "5.csv"), password="x")
    assert set(read_pskc(tmp_path / "4.pskc")) == {101, 102, 103, 104, 105}


def test_a_pskc_export_does_not_hide_keys_from_a_csv_export(filled, tmp_path):
    """Trap: the CSV export after a PSKC export of the same batch wrote an empty file."""
    with opened(filled) as inv:
        export(inv, "pskc", str(tmp_path / "b.pskc"), target="privacyidea")
        csv = export(inv, "csv", str(tmp_path / "b.csv"), target="privacyidea")
        assert sorted(csv.serials) == [101, 103, 104]
        # the same format for another target is another export too
        generic = export(inv, "pskc", str(tmp_path / "g.pskc"))
        assert sorted(generic.serials) == [101, 102, 103, 104]
        with pytest.raises(NothingToExport):
            export(inv, "csv", str(tmp_path / "again.csv"), target="privacyidea")
        # a reprogrammed key (new secret) is due again for every kind of export
        rec = Record(serial=103, mode=Mode.OATH_TOTP, slot=1, digits=8, touch=False,
                     name="hw", sealed="", device="emu:k103")
        inv.seal(rec, b"R" * 20)
        assert inv.claim(rec, reprogram=True)
        inv.update(only(inv, 103).key, state=State.DONE)
        assert export(inv, "csv", str(tmp_path / "r.csv"), target="privacyidea").serials == [103]
        assert export(inv, "pskc", str(tmp_path / "r.pskc")).serials == [103]
    assert (b"R" * 20).hex() in (tmp_path / "r.csv").read_text()


def test_legacy_export_marks_count_for_every_format(tmp_path):
    """An inventory from before per-format state: what an export took stays taken (the
    schema upgrade carries the marks over)."""
    url = str(tmp_path / "old.db")
    make_v1_inventory(url, [
        {"serial": s, "mode": MODES[s].value, "slot": 1, "digits": 8, "name": "hw",
         "secret": SECRETS[s], "state": "done",
         "exported_at": 1_700_000_000.0 if s in (101, 103) else None}
        for s in SECRETS], export_state=False)
    with opened(url) as inv:
        got = export(inv, "csv", str(tmp_path / "x.csv"), target="privacyidea")
        assert got.serials == [104]
        assert sorted(export(inv, "pskc", str(tmp_path / "y.pskc")).serials) == [102, 104]


def test_export_cli_selecting_nothing_exits_1_and_writes_no_file(filled, tmp_path):
    out = tmp_path / "1.pskc"
    hwtoken("provision", "export", "-i", filled, "--format", "pskc", "-o", str(out))
    again = tmp_path / "2.pskc"
    proc = hwtoken("provision", "export", "-i", filled, "--format", "pskc", "-o", str(again),
                   check=1)
    assert proc.stderr.startswith("error: no done key") and "--all" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not again.exists()
    # --all with a file that exists: refused, the file untouched
    proc = hwtoken("provision", "export", "-i", filled, "--format", "pskc", "-o", str(out),
                   "--all", check=2)
    assert "exists" in proc.stderr
    # only keys the target cannot import are left: nothing to write either
    hwtoken("provision", "export", "-i", filled, "--for", "privacyidea", "--format", "csv",
            "-o", str(tmp_path / "pi.csv"), "--skip-unsupported")
    proc = hwtoken("provision", "export", "-i", filled, "--for", "privacyidea", "--format",
                   "csv", "-o", str(again), "--skip-unsupported", check=1)
    assert proc.stderr.startswith("error: none of the 1 done record(s) can go into this export")
    assert not again.exists()


def test_export_cli_leaves_out_what_the_server_cannot_import(filled, tmp_path):
    """Trap: challenge-response keys in a privacyIDEA file broke its whole import."""
    out = tmp_path / "pi.pskc"
    proc = hwtoken("provision", "export", "-i", filled, "--for", "privacyidea", "--format",
                   "pskc", "-o", str(out), "--json", check=1)
    import json

    doc = json.loads(proc.stdout)
    assert sorted(doc["serials"]) == [101, 103, 104] and list(doc["skipped"]) == ["102/otp:1"]
    assert {k: doc[k] for k in ("path", "format", "target", "count", "encrypted")} == {
        "path": str(out), "format": "pskc", "target": "privacyidea", "count": 3,
        "encrypted": False}
    assert "chalresp-csv" in doc["skipped"]["102/otp:1"]
    assert "left out 1 record(s) (102 slot 1): privacyIDEA has no token type" in proc.stderr
    assert set(read_pskc_serials(out)) == {"UBOM101_1", "UBOA103_hw", "UBOA104_hw"}
    # the challenge-response key goes to its own file; --skip-unsupported: exit 0
    cr = tmp_path / "cr.csv"
    proc = hwtoken("provision", "export", "-i", filled, "--format", "chalresp-csv", "-o",
                   str(cr), "--skip-unsupported")
    assert cr.read_text().splitlines() == [
        "# hwtoken challenge-response keys: serial,slot,key(hex),touch",
        f"102,1,{SECRETS[102].hex()},0"]
    assert "left out 3 record(s)" in proc.stderr


def read_pskc_serials(path) -> list[str]:
    import pskc

    return [k.serial for k in pskc.PSKC(str(path)).keys]


def test_server_targets_refuse_what_they_cannot_import(filled, tmp_path):
    """The one error line the admin reads, before any prompt or file."""
    psk32 = tmp_path / "psk32.hex"
    psk32.write_text(os.urandom(32).hex())
    psk20 = tmp_path / "psk20.hex"
    psk20.write_text(os.urandom(20).hex())
    psk16 = tmp_path / "psk16.hex"
    psk16.write_text(os.urandom(16).hex())
    aes128_only = ("{} imports PSKC files encrypted with AES-128 only, so the pre-shared key "
                   "must be 16 bytes (32 hex digits), not 32: make one with `(umask 077; "
                   "openssl rand -hex 16 > psk.hex)`")
    cases = [
        # trap: the docs' 32-byte key made an AES-256 file privacyIDEA refuses (ERR304)
        (["--for", "privacyidea", "--format", "pskc", "--pskc-key-file", str(psk32)],
         aes128_only.format("privacyIDEA")),
        (["--for", "linotp", "--format", "pskc", "--pskc-key-file", str(psk32)],
         aes128_only.format("LinOTP")),
        # trap: the Yubikey CSV import loses the slot and the code length
        (["--for", "privacyidea", "--format", "yubico-csv"],
         SERVER_YUBICO_CSV.format("privacyIDEA")),
        (["--for", "privacyidea", "--format", "chalresp-csv"],
         "chalresp-csv is not a format privacyIDEA imports; it is for the programs that use "
         "challenge-response keys: export it with --for generic"),
        (["--format", "csv", "--pskc-key-file", str(psk16)],
         "only the pskc format can be encrypted"),
        (["--format", "pskc", "--pskc-key-file", str(psk20)], PSK_SIZE),
        (["--format", "pskc", "--pskc-key-file", str(psk16), "--pskc-password"],
         "encrypt the PSKC file with a password or a pre-shared key, not both"),
        (["--for", "linotp", "--format", "pskc", "--pskc-password"], LINOTP_PASSWORD),
    ]
    for args, message in cases:
        out = tmp_path / "x"
        proc = hwtoken("provision", "export", "-i", filled, "-o", str(out), *args,
                       env={"HWTOKEN_PSKC_PASSWORD": "short"}, check=2)
        assert proc.stderr.splitlines() == [f"error: {message}"]
        assert not out.exists()
    with opened(filled) as inv:  # nothing was recorded as exported
        assert inv.counts()["exported"] == 0


def test_token_serials_name_the_oath_credential():
    """Trap: the credential name never reached the serial (TOTP and HOTP credentials on
    one key collided), and a numeric name read as an OTP slot."""
    def rec(mode, name="hwtoken", slot=2, serial=5551234):
        return Record(serial=serial, mode=mode, slot=slot, digits=6, touch=False, name=name,
                      sealed="")

    assert token_serial(rec(Mode.HOTP)) == "UBOM5551234_2"
    assert token_serial(rec(Mode.CHALRESP, slot=1)) == "UBCR5551234_1"
    assert token_serial(rec(Mode.OATH_TOTP, "mail")) == "UBOA5551234_mail"
    assert token_serial(rec(Mode.OATH_HOTP, "vpn")) == "UBOA5551234_vpn"
    assert token_serial(rec(Mode.OATH_HOTP, "2")) == "UBOA5551234_2" != token_serial(
        rec(Mode.HOTP))
    odd = [token_serial(rec(Mode.OATH_TOTP, n))
           for n in ("Example:alice@example.com", "a b", "a.b", "x" * 30)]
    assert len(set(odd)) == 4
    for serial in odd:  # what privacyIDEA accepts as a serial
        assert len(serial) <= 40 and all(c.isalnum() or c in "-_" for c in serial), serial
        assert serial.startswith("UBOA5551234_h")
    # the replacement is "h" and the first 12 hex digits of the name's SHA-256, so a server
    # that has the key already finds it under the same serial after another export
    assert odd[0] == "UBOA5551234_h" + hashlib.sha256(b"Example:alice@example.com").hexdigest()[:12]
    # a name is kept verbatim up to privacyIDEA's 40 characters, and only then replaced
    assert token_serial(rec(Mode.OATH_TOTP, "x" * 28)) == "UBOA5551234_" + "x" * 28
    assert token_serial(rec(Mode.OATH_TOTP, "x" * 29)) == (
        "UBOA5551234_h" + hashlib.sha256(b"x" * 29).hexdigest()[:12])


def test_export_cli_password_never_from_argv(filled, tmp_path):
    out = tmp_path / "x.pskc"
    proc = hwtoken("provision", "export", "-i", filled, "--format", "pskc", "-o", str(out),
                   "--pskc-password", check=2)
    assert proc.stderr.startswith("error:") and "HWTOKEN_PSKC_PASSWORD" in proc.stderr
    assert not out.exists()
    proc = hwtoken("provision", "export", "-i", filled, "--format", "pskc", "-o", str(out),
                   "--pskc-password", "--json", env={"HWTOKEN_PSKC_PASSWORD": "pw"})
    assert '"count": 4' in proc.stdout and '"encrypted": true' in proc.stdout
    assert set(read_pskc(out, "pw")) == set(SECRETS)


def test_export_cli_with_a_preshared_key_file(filled, tmp_path):
    psk = os.urandom(32)
    key_file = tmp_path / "psk.hex"
    key_file.write_text(psk.hex() + "\n")
    out = tmp_path / "psk.pskc"
    hwtoken("provision", "export", "-i", filled, "--format", "pskc", "-o", str(out),
            "--pskc-key-file", str(key_file))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    import pskc

    doc = pskc.PSKC(str(out))
    doc.encryption.key = psk
    assert {int(k.serial): k.secret for k in doc.keys} == SECRETS
    assert doc.encryption.algorithm.endswith("#aes256-cbc")  # a 32-byte key is AES-256
    key_file.write_text("not hex")
    proc = hwtoken("provision", "export", "-i", filled, "--format", "pskc", "-o",
                   str(tmp_path / "bad.pskc"), "--all", "--pskc-key-file", str(key_file),
                   check=2)
    assert proc.stderr.startswith("error:") and "hex" in proc.stderr


def test_a_key_reprogrammed_during_an_export_stays_unexported(filled, tmp_path):
    with opened(filled) as inv:
        real_records = inv.records

        def records_then_another_station_reprograms(**kw):
            rows = real_records(**kw)
            rec = Record(serial=101, mode=Mode.HOTP, slot=1, digits=8, touch=False,
                         name="hw", sealed="", device="emu:k101")
            inv.seal(rec, b"N" * 20)
            assert inv.claim(rec, reprogram=True)
            inv.update(rec.key, state=State.DONE)
            return rows

        inv.records = records_then_another_station_reprograms
        first = export(inv, "csv", str(tmp_path / "1.csv"))
        inv.records = real_records
        assert 101 in first.serials  # the old secret went into the file...
        second = export(inv, "csv", str(tmp_path / "2.csv"))
        assert second.serials == [101]  # ...and the new one goes into the next export
    assert (b"N" * 20).hex() in (tmp_path / "2.csv").read_text()


def test_linotp_files_carry_what_its_importer_reads(filled, tmp_path):
    """LinOTP is not installable here (see docs): check what its PSKC importer reads --
    DeviceInfo SerialNo as the token serial, AES-128-CBC, an HMAC-SHA1 MAC -- and that its
    CSV is the privacyIDEA one."""
    import pskc

    psk = os.urandom(16)
    with opened(filled) as inv:
        export(inv, "pskc", str(tmp_path / "l.pskc"), target="linotp", preshared_key=psk)
        export(inv, "csv", str(tmp_path / "l.csv"), target="linotp")
        export(inv, "csv", str(tmp_path / "p.csv"), target="privacyidea")
    doc = pskc.PSKC(str(tmp_path / "l.pskc"))
    doc.encryption.key = psk
    assert doc.encryption.algorithm.endswith("#aes128-cbc")
    assert doc.mac.algorithm.endswith("#hmac-sha1")
    assert {k.serial: k.secret for k in doc.keys} == {
        "UBOM101_1": SECRETS[101], "UBOA103_hw": SECRETS[103], "UBOA104_hw": SECRETS[104]}
    assert (tmp_path / "l.csv").read_text() == (tmp_path / "p.csv").read_text()


SERVER_YUBICO_CSV = (
    "{0}'s Yubikey CSV import names every key UBOM<serial>_X (no slot) and reads it as a "
    "6-digit HOTP token (an 8-digit or challenge-response slot never validates): for {0} "
    "export --format csv or --format pskc")
PSK_SIZE = "the PSKC pre-shared key must be 16, 24 or 32 bytes"
LINOTP_PASSWORD = "LinOTP takes a PSKC password of 6 to 64 ASCII characters"


@pytest.mark.parametrize(("fmt", "kw", "message"), [
    ("pskc", {"target": "freeradius"},
     "unknown export target 'freeradius': use one of generic, privacyidea, linotp"),
    ("xml", {}, "unknown export format 'xml': use one of pskc, csv, yubico-csv, chalresp-csv, "
                "access-codes, pin-mailer, certificates"),
    ("yubico-csv", {"target": "privacyidea"}, SERVER_YUBICO_CSV.format("privacyIDEA")),
    ("yubico-csv", {"target": "linotp"}, SERVER_YUBICO_CSV.format("LinOTP")),
    ("chalresp-csv", {"target": "privacyidea"},
     "chalresp-csv is not a format privacyIDEA imports; it is for the programs that use "
     "challenge-response keys: export it with --for generic"),
    ("access-codes", {"target": "privacyidea"},
     "access codes are for the admin, never for a validation server: export them with --for "
     "generic --format access-codes"),
    ("pin-mailer", {"target": "linotp"},
     "--format pin-mailer is for the admin, never for a validation server: export it with "
     "--for generic --format pin-mailer"),
    ("certificates", {"target": "privacyidea"},
     "--format certificates is for the admin, never for a validation server: export it with "
     "--for generic --format certificates"),
    ("access-codes", {"password": "s3cret pass"}, "only the pskc format can be encrypted"),
    ("csv", {"password": "s3cret pass"}, "only the pskc format can be encrypted"),
    # a key that would not encrypt a CSV must not let it through unencrypted either
    ("csv", {"preshared_key": bytes(16)}, "only the pskc format can be encrypted"),
    ("yubico-csv", {"preshared_key": bytes(16)}, "only the pskc format can be encrypted"),
    ("pskc", {"password": "s3cret pass", "preshared_key": bytes(16)},
     "encrypt the PSKC file with a password or a pre-shared key, not both"),
    ("pskc", {"password": ""}, "the PSKC password must not be empty"),
    ("pskc", {"target": "linotp", "password": "x" * 5}, LINOTP_PASSWORD),
    ("pskc", {"target": "linotp", "password": "x" * 65}, LINOTP_PASSWORD),
    ("pskc", {"target": "linotp", "password": "pässwort"}, LINOTP_PASSWORD),
    ("pskc", {"preshared_key": bytes(20)}, PSK_SIZE),
    ("pskc", {"preshared_key": bytes(25)}, PSK_SIZE),
    ("pskc", {"target": "privacyidea", "preshared_key": bytes(32)},
     "privacyIDEA imports PSKC files encrypted with AES-128 only, so the pre-shared key must "
     "be 16 bytes (32 hex digits), not 32: make one with `(umask 077; openssl rand -hex 16 > "
     "psk.hex)`"),
    ("pskc", {"target": "linotp", "preshared_key": bytes(24)},
     "LinOTP imports PSKC files encrypted with AES-128 only, so the pre-shared key must "
     "be 16 bytes (32 hex digits), not 24: make one with `(umask 077; openssl rand -hex 16 > "
     "psk.hex)`"),
])
def test_refused_options_say_what_to_do_instead(filled, tmp_path, fmt, kw, message):
    """What the admin reads when a combination cannot work: the whole message, and no file
    written, no key recorded as exported."""
    out = tmp_path / "x.out"
    with opened(filled) as inv:
        with pytest.raises(InvalidInput) as e:
            export(inv, fmt, str(out), **kw)
        assert str(e.value) == message
        assert inv.counts()["exported"] == 0
    assert not out.exists()


def test_linotp_takes_pskc_passwords_of_6_to_64_characters(filled, tmp_path):
    for length in (6, 64):
        password = "p" * length
        out = tmp_path / f"l{length}.pskc"
        with opened(filled) as inv:
            result = export(inv, "pskc", str(out), target="linotp", password=password,
                            include_exported=True)
        assert result.encrypted and sorted(result.serials) == [101, 103, 104]
        assert {k.serial for k in read_pskc_keys(out, password)} == {
            "UBOM101_1", "UBOA103_hw", "UBOA104_hw"}


def read_pskc_keys(path, password: str):
    import pskc

    doc = pskc.PSKC(str(path))
    doc.encryption.derive_key(password)
    return list(doc.keys)


def test_a_24_byte_preshared_key_makes_an_aes192_file(filled, tmp_path):
    import pskc

    psk = os.urandom(24)
    with opened(filled) as inv:
        export(inv, "pskc", str(tmp_path / "k.pskc"), preshared_key=psk)
    doc = pskc.PSKC(str(tmp_path / "k.pskc"))
    assert doc.encryption.algorithm.endswith("#aes192-cbc")
    doc.encryption.key = psk
    assert {int(k.serial): k.secret for k in doc.keys} == SECRETS


def test_left_out_keys_carry_the_reason_and_the_export_that_takes_them(filled, tmp_path):
    """The reasons an admin reads in stderr and in the --json document, word for word."""
    with opened(filled) as inv:
        csv = export(inv, "csv", str(tmp_path / "g.csv"))
        yubico = export(inv, "yubico-csv", str(tmp_path / "y.csv"))
        chalresp = export(inv, "chalresp-csv", str(tmp_path / "c.csv"))
        server = export(inv, "pskc", str(tmp_path / "p.pskc"), target="privacyidea")
    assert by_serial(csv.skipped) == {102: "the OATH CSV has no challenge-response type: "
                                           "export these keys with --format chalresp-csv"}
    only_slots = "the Yubico format covers OTP slots only (use pskc or csv)"
    assert by_serial(yubico.skipped) == {103: only_slots, 104: only_slots}
    only_chalresp = "chalresp-csv holds challenge-response slots only (use pskc or csv)"
    assert by_serial(chalresp.skipped) == {101: only_chalresp, 103: only_chalresp,
                                           104: only_chalresp}
    assert by_serial(server.skipped) == {102: "privacyIDEA has no token type that checks "
                                              "HMAC-SHA1 challenge-response: export these "
                                              "keys with --for generic --format chalresp-csv"}
    assert yubico.to_json()["skipped"] == {"103/oath:hw": only_slots, "104/oath:hw": only_slots}
    assert (csv.serials, yubico.serials, chalresp.serials) == ([101, 103, 104], [101, 102],
                                                                  [102])


def test_a_write_that_fails_is_a_clean_error_and_records_nothing(filled, tmp_path):
    """An OSError from the write itself (here: --force onto a directory) names the file and
    the cause, and no key is recorded as exported."""
    target = tmp_path / "a-directory"
    target.mkdir()
    with opened(filled) as inv:
        with pytest.raises(InvalidInput) as e:
            export(inv, "csv", str(target), force=True)
        assert str(e.value) == f"cannot write {target}: Is a directory"
        assert inv.counts()["exported"] == 0
    assert list(target.iterdir()) == [] and list(tmp_path.glob(".*.tmp")) == []


# -- the admin's formats and Yubico OTP slots, in-process ---------------------------------

PIV_CREDS = {301: ("123456", "12345678"), 305: ("24681357", "87654321")}
FIDO_PIN = b"654321"
YUBIOTP_SECRET = bytes(range(1, 23))  # private ID (6 bytes), then the AES key (16)
PUBLIC_ID = "vvccccbbbbbb"
ACCESS_CODE = bytes.fromhex("0102030405ff")


def _certificate_pem(common_name: str, serial_number: int) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(serial_number)
            .not_valid_before(datetime(2024, 1, 1)).not_valid_after(datetime(2034, 1, 1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _done(inv, rec: Record, secret: bytes, code: bytes | None = None, *, counter: int = 0,
          reprogram: bool = False) -> Record:
    inv.seal(rec, secret, code)
    assert inv.claim(rec, reprogram=reprogram)
    inv.update(rec.key, state=State.DONE, counter=counter, programmed_at=1_700_000_000.0)
    return inv.get(rec.key)


def _rec(serial: int, mode: Mode, *, slot: int = 1, name: str = "", touch: bool = False,
         **kw) -> Record:
    return Record(serial=serial, mode=mode, slot=slot, digits=6, touch=touch, name=name,
                  sealed="", device=f"emu:a{serial}", **kw)


def test_a_yubico_otp_key_goes_to_privacyidea_in_pskc_unless_the_file_is_encrypted():
    """unsupported() takes a file as unencrypted unless told it is not."""
    rec = _rec(303, Mode.YUBIOTP, params={"public_id": PUBLIC_ID})
    assert unsupported(rec, "privacyidea", "pskc") is None
    assert unsupported(rec, "privacyidea", "pskc", encrypted=False) is None
    assert unsupported(rec, "privacyidea", "pskc", encrypted=True) == (
        "privacyIDEA reads an encrypted Yubico OTP key from PSKC as text, which breaks it: "
        "export these keys unencrypted (--format csv, or pskc without encryption)")


def _piv_secret(serial: int) -> bytes:
    from hwtoken.provision.piv import PivCredentials

    pin, puk = PIV_CREDS[serial]
    return PivCredentials(pin, puk, bytes(range(24))).pack()


@pytest.fixture
def admin(tmp_path):
    """Done records of every application: PIV slot 9a (with two certificates written in
    its journal, the last one current), a FIDO2 PIN, a Yubico OTP slot and an HOTP slot
    (both with access codes, the HOTP's all zero), a challenge-response slot with touch,
    and a pending HOTP slot with an access code."""
    url = str(tmp_path / "admin.db")
    with opened(url) as inv:
        piv = _done(inv, _rec(301, Mode.PIV, name="9a"), _piv_secret(301))
        inv.note(piv.key, "certificate", _certificate_pem("old", 0x1001))
        inv.note(piv.key, "certificate", _certificate_pem("alice", 0xabc123))
        inv.note(piv.key, "csr", "not a certificate")
        _done(inv, _rec(302, Mode.FIDO, name="pin"), FIDO_PIN)
        _done(inv, _rec(303, Mode.YUBIOTP, params={"public_id": PUBLIC_ID}), YUBIOTP_SECRET,
              ACCESS_CODE)
        _done(inv, _rec(304, Mode.HOTP, slot=2), b"H" * 20, bytes(6), counter=9)
        _done(inv, _rec(306, Mode.CHALRESP, slot=2, touch=True), b"C" * 20)
        pending = _rec(307, Mode.HOTP)
        inv.seal(pending, b"P" * 20, b"\x07" * 6)
        inv.claim(pending)
    return url


def test_access_codes_lists_every_record_that_left_one_and_records_nothing(admin, tmp_path):
    out = tmp_path / "codes.csv"
    with opened(admin) as inv:
        result = export(inv, "access-codes", str(out))
        assert [k.label for k in result.exported] == ["303/otp:1", "304/otp:2", "307/otp:1"]
        assert result.to_json()["records"] == ["303/otp:1", "304/otp:2", "307/otp:1"]
        assert result.serials == [303, 304, 307] and result.skipped == {}
        # records no export state: the same file again, from scratch
        again = export(inv, "access-codes", str(tmp_path / "again.csv"))
        assert inv.counts()["exported"] == 0
    assert out.read_text() == (
        "# hwtoken access codes: serial,slot,access code(hex),state\n"
        "303,1,0102030405ff,done\n304,2,000000000000,done\n307,1,070707070707,pending\n")
    assert (tmp_path / "again.csv").read_text() == out.read_text()
    assert len(again.exported) == 3 and stat.S_IMODE(out.stat().st_mode) == 0o600


def test_access_codes_of_an_inventory_without_any_write_no_file(filled, tmp_path):
    with opened(filled) as inv, pytest.raises(NothingToExport) as e:
        export(inv, "access-codes", str(tmp_path / "codes.csv"))
    assert str(e.value) == ("no record in the inventory left an access code on its slot "
                            "(`run --new-access-code`); no file written")
    assert not (tmp_path / "codes.csv").exists()


PIN_MAILER_ONLY = "pin-mailer holds PIV and FIDO records only"


def test_pin_mailer_as_csv_and_as_json(admin, tmp_path):
    import json

    with opened(admin) as inv:
        as_csv = export(inv, "pin-mailer", str(tmp_path / "mailer.csv"))
        as_json = export(inv, "pin-mailer", str(tmp_path / "mailer.json"),
                         include_exported=True)
        with pytest.raises(NothingToExport):  # both were recorded as exported
            export(inv, "pin-mailer", str(tmp_path / "third.csv"))
    assert (tmp_path / "mailer.csv").read_bytes() == (  # "\n" line ends, as every format
        b"# hwtoken PIN mailer: serial,application,place,pin,puk\n"
        b"301,piv,9a,123456,12345678\n302,fido,pin,654321,\n")
    assert json.loads((tmp_path / "mailer.json").read_text()) == [
        {"serial": 301, "application": "piv", "place": "9a", "pin": "123456",
         "puk": "12345678"},
        {"serial": 302, "application": "fido", "place": "pin", "pin": "654321", "puk": ""}]
    assert (tmp_path / "mailer.json").read_text().startswith('[\n  {\n    "serial": 301,')
    assert (tmp_path / "mailer.json").read_text().endswith("]\n")
    assert as_csv.serials == as_json.serials == [301, 302]
    assert by_serial(as_csv.skipped) == {303: PIN_MAILER_ONLY, 304: PIN_MAILER_ONLY,
                                         306: PIN_MAILER_ONLY}


def test_certificates_bundle_and_table(admin, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    out = tmp_path / "certs.pem"
    with opened(admin) as inv:
        current = [n.value for n in inv.notes(only(inv, 301).key)
                   if n.kind == "certificate"][-1]
        result = export(inv, "certificates", str(out))
    assert out.read_text() == current  # the last certificate written, and only it
    cert = x509.load_pem_x509_certificate(current.encode())
    assert (tmp_path / "certs.csv").read_bytes() == (
        "# hwtoken certificates: serial,slot,subject,certificate serial,sha256\n"
        f"301,9a,CN=alice,abc123,{cert.fingerprint(hashes.SHA256()).hex()}\n").encode()
    assert result.also == [str(tmp_path / "certs.csv")] and result.serials == [301]
    assert result.to_json() == {
        "path": str(out), "format": "certificates", "target": "generic", "count": 1,
        "serials": [301], "records": ["301/piv:9a"], "encrypted": False,
        "files": [str(out), str(tmp_path / "certs.csv")],
        "skipped": {label: "certificates holds PIV records only" for label in (
            "302/fido:pin", "303/otp:1", "304/otp:2", "306/otp:2")}}
    for path in (out, tmp_path / "certs.csv"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_certificates_bundle_ends_each_certificate_with_a_newline(admin, tmp_path):
    with opened(admin) as inv:
        rec = _done(inv, _rec(305, Mode.PIV, name="9c"), _piv_secret(305))
        pem = _certificate_pem("bob", 7)
        inv.note(rec.key, "certificate", pem.rstrip("\n"))
        export(inv, "certificates", str(tmp_path / "certs.pem"))
        first = [n.value for n in inv.notes(only(inv, 301).key)][1]
    assert (tmp_path / "certs.pem").read_text() == first + pem
    assert [line.split(",")[:4] for line in
            (tmp_path / "certs.csv").read_text().splitlines()[1:]] == [
        ["301", "9a", "CN=alice", "abc123"], ["305", "9c", "CN=bob", "7"]]


def test_a_piv_record_without_a_current_certificate_stops_the_export(admin, tmp_path):
    """A certificate of the slot's earlier key is not the one it holds now."""
    from hwtoken.errors import CheckFailed

    with opened(admin) as inv:
        rec = only(inv, 301)
        _done(inv, _rec(301, Mode.PIV, name="9a"), _piv_secret(301), reprogram=True)
        assert [n.current for n in inv.notes(rec.key)] == [False, False, False]
        with pytest.raises(CheckFailed) as e:
            export(inv, "certificates", str(tmp_path / "certs.pem"))
        assert inv.counts()["exported"] == 0
    assert str(e.value) == "301/piv:9a is done but its journal holds no certificate"


def test_certificates_refuse_an_out_that_names_their_table(admin, tmp_path):
    with opened(admin) as inv:
        with pytest.raises(InvalidInput) as e:
            export(inv, "certificates", str(tmp_path / "certs.csv"))
        assert str(e.value) == ("--out names the PEM bundle of --format certificates; its "
                                "CSV goes next to it (certs.csv): give --out certs.pem")
        (tmp_path / "b.csv").write_text("kept")
        with pytest.raises(InvalidInput) as e:
            export(inv, "certificates", str(tmp_path / "b.pem"))
        assert str(e.value) == f"{tmp_path / 'b.csv'} exists; choose another file or pass --force"
        assert not (tmp_path / "b.pem").exists()
        export(inv, "certificates", str(tmp_path / "b.pem"), force=True)
    assert (tmp_path / "b.csv").read_text().startswith("# hwtoken certificates")


def test_piv_and_fido_records_never_go_to_a_validation_server(admin, tmp_path):
    with opened(admin) as inv:
        result = export(inv, "pskc", str(tmp_path / "x.pskc"))
    assert by_serial(result.skipped) == {
        301: "a piv record holds a PIN for the user, not a secret for a validation server: "
             "export it with --format pin-mailer (and its certificate with --format "
             "certificates)",
        302: "a fido record holds a PIN for the user, not a secret for a validation server: "
             "export it with --format pin-mailer"}
    assert result.serials == [303, 304, 306]


def test_chalresp_csv_carries_the_touch_flag(admin, tmp_path):
    with opened(admin) as inv:
        export(inv, "chalresp-csv", str(tmp_path / "c.csv"))
    assert (tmp_path / "c.csv").read_text() == (
        "# hwtoken challenge-response keys: serial,slot,key(hex),touch\n"
        f"306,2,{(b'C' * 20).hex()},1\n")


def test_a_yubico_otp_slot_in_pskc(admin, tmp_path):
    import pskc

    with opened(admin) as inv:
        export(inv, "pskc", str(tmp_path / "y.pskc"))
    key = next(k for k in pskc.PSKC(str(tmp_path / "y.pskc")).keys if k.serial == "303")
    assert (key.id, key.friendly_name, key.manufacturer) == ("303:1", "UBAM303_1", "Yubico")
    assert key.algorithm == "http://www.yubico.com/#yubikey-aes"
    assert key.secret == YUBIOTP_SECRET[6:]
    assert (key.response_length, key.response_encoding) == (44, "ALPHANUMERIC")
    assert key.key_userid == f"CN={PUBLIC_ID}, UID={YUBIOTP_SECRET[:6].hex()}"
    assert key.algorithm_suite is None


def test_a_yubico_otp_slot_in_the_csv_files(admin, tmp_path):
    with opened(admin) as inv:
        export(inv, "csv", str(tmp_path / "o.csv"), target="privacyidea")
        export(inv, "yubico-csv", str(tmp_path / "y.csv"))
    assert (tmp_path / "o.csv").read_text().splitlines() == [
        f"UBAM303_1, {YUBIOTP_SECRET[6:].hex()}, yubikey, 44",
        f"UBOM304_2, {(b'H' * 20).hex()}, hotp, 6, 9"]  # the rows after it too
    stamp = datetime.fromtimestamp(1_700_000_000).strftime("%Y-%m-%dT%H:%M:%S")
    assert (tmp_path / "y.csv").read_text().splitlines() == [
        # the access code left on the slot; an all-zero one is no code
        f"303,{PUBLIC_ID},{YUBIOTP_SECRET[:6].hex()},{YUBIOTP_SECRET[6:].hex()},"
        f"{ACCESS_CODE.hex()},{stamp},",
        f"304,,0,{(b'H' * 20).hex()},,{stamp},",
        f"306,,0,{(b'C' * 20).hex()},,{stamp},"]


def test_servers_that_cannot_take_a_yubico_otp_slot_say_so(admin, tmp_path):
    with opened(admin) as inv:
        linotp = export(inv, "csv", str(tmp_path / "l.csv"), target="linotp")
        encrypted = export(inv, "pskc", str(tmp_path / "p.pskc"), target="privacyidea",
                           preshared_key=bytes(16))
        plain = export(inv, "pskc", str(tmp_path / "q.pskc"), target="privacyidea")
    assert by_serial(linotp.skipped)[303] == (
        "hwtoken writes no Yubico OTP file for LinOTP: export these keys with --for generic "
        "--format yubico-csv")
    assert by_serial(encrypted.skipped)[303] == (
        "privacyIDEA reads an encrypted Yubico OTP key from PSKC as text, which breaks it: "
        "export these keys unencrypted (--format csv, or pskc without encryption)")
    assert encrypted.encrypted and not plain.encrypted
    assert 303 in plain.serials and 303 not in encrypted.serials


def test_pskc_key_ids_name_the_slot_or_the_oath_credential(filled, tmp_path):
    import pskc

    with opened(filled) as inv:
        export(inv, "pskc", str(tmp_path / "k.pskc"), target="privacyidea")
    keys = {k.serial: k for k in pskc.PSKC(str(tmp_path / "k.pskc")).keys}
    assert {serial: (k.id, k.friendly_name) for serial, k in keys.items()} == {
        "UBOM101_1": ("101:1", "UBOM101_1"), "UBOA103_hw": ("103:oath:hw", "UBOA103_hw"),
        "UBOA104_hw": ("104:oath:hw", "UBOA104_hw")}


def test_an_export_is_recorded_per_target_and_format(filled, tmp_path):
    with opened(filled) as inv:
        export(inv, "csv", str(tmp_path / "p.csv"), target="privacyidea")
        export(inv, "chalresp-csv", str(tmp_path / "c.csv"))
        kinds = sorted(tuple(r) for r in inv.query("SELECT serial, kind FROM exports"))
    assert kinds == [(101, "privacyidea:csv"), (102, "generic:chalresp-csv"),
                     (103, "privacyidea:csv"), (104, "privacyidea:csv")]


def test_nothing_to_export_gives_every_reason_once(admin, tmp_path):
    """Keys left out for different reasons: each reason once, in order."""
    with opened(admin) as inv:
        inv.query("UPDATE records SET state = 'pending' WHERE serial IN (303, 304)")
        with pytest.raises(NothingToExport) as e:
            export(inv, "csv", str(tmp_path / "x.csv"), target="privacyidea")
    assert str(e.value) == (
        "none of the 3 done record(s) can go into this export (a fido record holds a PIN for "
        "the user, not a secret for a validation server: export it with --format pin-mailer; "
        "a piv record holds a PIN for the user, not a secret for a validation server: export "
        "it with --format pin-mailer (and its certificate with --format certificates); "
        "privacyIDEA has no token type that checks HMAC-SHA1 challenge-response: export these "
        "keys with --for generic --format chalresp-csv); no file written")
