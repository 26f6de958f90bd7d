"""Exports: PSKC parses back with python-pskc (plain, PBKDF2, pre-shared key), the CSV follows
privacyIDEA's documented import layout, the Yubico CSV the Personalization Tool's format."""

from __future__ import annotations

import base64
import os
import stat

import pytest
from provision_helpers import hwtoken, opened, read_pskc

from hwtoken.errors import InvalidInput
from hwtoken.provision.export import export
from hwtoken.provision.model import Mode, Record, State

SECRETS = {101: os.urandom(20), 102: os.urandom(20), 103: os.urandom(20), 104: os.urandom(20)}
MODES = {101: Mode.HOTP, 102: Mode.CHALRESP, 103: Mode.OATH_TOTP, 104: Mode.OATH_HOTP}


@pytest.fixture
def filled(tmp_path):
    url = str(tmp_path / "inv.db")
    with opened(url) as inv:
        for serial, secret in SECRETS.items():
            rec = Record(serial=serial, mode=MODES[serial], slot=1, digits=8, touch=False,
                         name="hw", sealed="", device=f"emu:k{serial}")
            inv.seal(rec, secret)
            inv.claim(rec)
            inv.update(serial, state=State.DONE, counter=5 if MODES[serial].is_hotp else 0,
                       programmed_at=1_700_000_000.0)
        # a pending key is never exported
        rec = Record(serial=999, mode=Mode.HOTP, slot=1, digits=6, touch=False, name="hw",
                     sealed="", device="emu:p")
        inv.seal(rec, os.urandom(20))
        inv.claim(rec)
    return url


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
    assert sorted(plain.exported) == sorted(SECRETS) and pw.encrypted
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
            if MODES[serial].is_hotp:
                assert key.algorithm.endswith(":hotp") and key.counter == 5
                assert key.response_length == 8
            elif MODES[serial] is Mode.OATH_TOTP:
                assert key.algorithm.endswith(":totp") and key.time_interval == 30
    wrong = pskc.PSKC(str(tmp_path / "b.pskc"))
    wrong.encryption.derive_key("not it")
    with pytest.raises(Exception):  # noqa: B017 - python-pskc's DecryptionError
        _ = wrong.keys[0].secret


def test_privacyidea_csv_layout(filled, tmp_path):
    out = tmp_path / "pi.csv"
    with opened(filled) as inv:
        result = export(inv, "csv", str(out))
    tokens = parse_privacyidea_csv(out.read_text())
    assert tokens == {
        "UBOM101_1": {"otpkey": SECRETS[101].hex(), "type": "hotp", "otplen": 8, "counter": 5},
        "UBOA103": {"otpkey": SECRETS[103].hex(), "type": "totp", "otplen": 8, "timeStep": 30},
        "UBOA104": {"otpkey": SECRETS[104].hex(), "type": "hotp", "otplen": 8, "counter": 5},
    }
    assert list(result.skipped) == [102]  # challenge-response has no privacyIDEA CSV type


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
        assert len(r[5]) == 19 and r[5][10] == "T"
    # the HOTP slot's *initial* moving factor (what the tool logs), not its counter (5):
    # privacyIDEA would import a row with a non-zero third field as a Yubico OTP token
    assert rows[0][2] == "0" and rows[1][2] == "0"
    assert parse_privacyidea_yubikey_csv(out.read_text())["UBOM101_X"] == {
        "type": "hotp", "otpkey": SECRETS[101].hex()}


def test_export_to_an_unwritable_place_is_a_clean_error(filled, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = hwtoken("provision", "export", "-i", filled, "--format", "csv", "-o",
                   str(blocker / "sub" / "x.csv"), check=2)
    assert proc.stderr.startswith("error: cannot write") and "Traceback" not in proc.stderr
    with opened(filled) as inv:  # nothing was marked exported
        assert inv.counts()["exported"] == 0


def test_second_export_takes_only_new_records(filled, tmp_path):
    with opened(filled) as inv:
        first = export(inv, "pskc", str(tmp_path / "1.pskc"))
        second = export(inv, "pskc", str(tmp_path / "2.pskc"))
        assert len(first.exported) == 4 and second.exported == []
        rec = Record(serial=105, mode=Mode.CHALRESP, slot=2, digits=6, touch=False,
                     name="hw", sealed="", device="emu:n")
        inv.seal(rec, os.urandom(20))
        inv.claim(rec)
        inv.update(105, state=State.DONE)
        third = export(inv, "pskc", str(tmp_path / "3.pskc"))
        assert third.exported == [105]
        again = export(inv, "pskc", str(tmp_path / "4.pskc"), include_exported=True)
        assert len(again.exported) == 5
        with pytest.raises(InvalidInput, match="exists"):
            export(inv, "pskc", str(tmp_path / "4.pskc"))
        with pytest.raises(InvalidInput):
            export(inv, "csv", str(tmp_path / "5.csv"), password="x")
    assert set(read_pskc(tmp_path / "4.pskc")) == {101, 102, 103, 104, 105}


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
            inv.update(101, state=State.DONE)
            return rows

        inv.records = records_then_another_station_reprograms
        first = export(inv, "csv", str(tmp_path / "1.csv"))
        inv.records = real_records
        assert 101 in first.exported  # the old secret went into the file...
        second = export(inv, "csv", str(tmp_path / "2.csv"))
        assert second.exported == [101]  # ...and the new one goes into the next export
    assert (b"N" * 20).hex() in (tmp_path / "2.csv").read_text()
