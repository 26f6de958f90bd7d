"""hwtoken.otp's Verifier and ReplayStore: what a validation server accepts, refuses and keeps.

Codes are cross-checked with pyotp and RFC 4226; the replay store's file is checked byte for
byte (its entry ids are a format: a changed id silently forgets every code already used).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time

import pyotp
import pytest

from hwtoken import otp
from hwtoken.errors import InvalidInput
from hwtoken.fileio import FileLock

RFC4226_KEY = b"12345678901234567890"
RFC4226_CODES = ["755224", "287082", "359152", "969429", "338314",
                 "254676", "287922", "162583", "399871", "520489"]
# counters at which RFC 4226's key gives the codes 000000 and 000001 (oathtool agrees)
COUNTER_CODE_0, COUNTER_CODE_1 = 349495, 855553
T = 1_700_000_000
# ReplayStore.key_id: sha256("hwtoken-replay-v1\0" type "\0" algorithm "\0" secret), 32 hex
TOTP_ID = "24033d88639b5d140ee33426995d3cc3"  # TOTP, SHA1, RFC 4226's key
HOTP_ID = "e83bac3ba85cb7d9e1200482d112dda1"  # HOTP, SHA1, RFC 4226's key
FOREIGN = "is not a hwtoken replay state file (expected {\"format\": 1, \"entries\": {id: step}})"


# -- codes -----------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm,block", [("SHA1", 64), ("SHA256", 64), ("SHA512", 128)])
def test_verifier_accepts_pyotps_codes_for_keys_around_the_hmac_block_size(algorithm, block):
    """HMAC hashes a key longer than the hash's block and pads a shorter one (RFC 2104)."""
    digest = getattr(hashlib, algorithm.lower())
    for n in (block - 1, block, block + 1, 2 * block + 5):
        key = bytes((7 * i + n) % 256 for i in range(n))
        ref = pyotp.HOTP(base64.b32encode(key).decode(), digits=8, digest=digest)
        codes = [ref.at(c) for c in range(4)]
        gen = otp.HOTP(key, 8, algorithm)
        assert [gen.at(c) for c in range(4)] == codes, n
        v = otp.Verifier(gen, window=3)
        assert v.verify_hotp(codes[2]) == 2, n
        assert v.verify_hotp(codes[3]) == 3, n
        assert otp.Verifier(gen, window=0).verify_hotp(codes[1]) is None, n


def test_code_zero_and_int_codes():
    """000000 is a code like any other, given as text or as the number 0."""
    assert otp.HOTP(RFC4226_KEY).at(COUNTER_CODE_0) == "000000"
    gen = otp.HOTP(RFC4226_KEY, counter=COUNTER_CODE_0)
    assert otp.Verifier(gen, window=0).verify_hotp("000000") == COUNTER_CODE_0
    assert otp.Verifier(gen, window=0).verify_hotp(0) == COUNTER_CODE_0
    assert otp.Verifier(otp.HOTP(RFC4226_KEY), window=0).verify_hotp(755224) == 0
    assert otp.Verifier(otp.HOTP(RFC4226_KEY), window=0).verify_hotp(755225) is None


@pytest.mark.parametrize("code", [-1, 10**6, 10**6 + 1, 2**40, -2**40, 2**100,
                                  "abcdef", "00001", "0000001", " ", "-00001"])
def test_an_impossible_code_matches_nothing_and_raises_nothing(code):
    """Out of range or malformed: refused like a wrong code, even where the code is 000001."""
    gen = otp.HOTP(RFC4226_KEY, counter=COUNTER_CODE_1)
    assert gen.at(COUNTER_CODE_1) == "000001"
    assert otp.Verifier(gen, window=0).verify_hotp(1) == COUNTER_CODE_1  # the real code
    assert otp.Verifier(gen, window=0).verify_hotp(code) is None
    totp = otp.TOTP(RFC4226_KEY)
    assert otp.Verifier(totp).match_totp(code, T) is None


@pytest.mark.parametrize("typed", ["755 224", " 755224\n", "75 52 24", "\t755 224 "])
def test_code_as_apps_show_it_with_spaces(typed):
    assert otp.Verifier(otp.HOTP(RFC4226_KEY), window=0).verify_hotp(typed) == 0


# -- windows ---------------------------------------------------------------------------------
def test_default_totp_window_is_one_step_either_side():
    gen = otp.TOTP(RFC4226_KEY)
    v = otp.Verifier(gen)
    assert v.window == 1
    step = T // 30
    for d, found in ((-2, None), (-1, step - 1), (0, step), (1, step + 1), (2, None)):
        assert v.match_totp(gen.at(T + 30 * d), T) == found, d


def test_default_hotp_window_looks_ten_counters_ahead():
    gen = otp.HOTP(RFC4226_KEY)
    assert otp.Verifier(gen).window == 10
    assert otp.Verifier(gen).verify_hotp(gen.at(10)) == 10
    assert otp.Verifier(gen).verify_hotp(gen.at(11)) is None


def test_window_bounds_and_message():
    gen = otp.HOTP(RFC4226_KEY)
    for bad in (-1, 1001, -1001):
        with pytest.raises(InvalidInput) as exc:
            otp.Verifier(gen, window=bad)
        assert str(exc.value) == "window must be between 0 and 1000"
    assert otp.Verifier(gen, window=1000).verify_hotp(gen.at(1000)) == 1000
    totp = otp.TOTP(RFC4226_KEY)
    assert otp.Verifier(totp, window=1000).match_totp(totp.at(T - 30_000), T) == T // 30 - 1000


def test_totp_at_the_last_time_a_code_is_computed_for():
    gen = otp.TOTP(RFC4226_KEY)
    code = gen.at(otp.MAX_TIME)
    assert otp.Verifier(gen, window=0).match_totp(code, otp.MAX_TIME) == otp.MAX_TIME // 30


def test_verify_now():
    gen = otp.TOTP(RFC4226_KEY)
    assert otp.Verifier(gen).verify(gen.now())  # the default window covers a step change
    assert otp.Verifier(gen).match_totp(gen.at(time.time() - 3600)) is None


def test_verify_dispatches_on_the_type():
    gen = otp.HOTP(RFC4226_KEY)
    v = otp.Verifier(gen)
    assert v.verify(RFC4226_CODES[0]) is True
    assert v.verify(RFC4226_CODES[0]) is False  # the counter moved past it
    assert v.verify(RFC4226_CODES[5]) is True and v.counter == 6
    assert v.verify("12a456") is False


# -- the replay store ------------------------------------------------------------------------
def test_store_file_is_format_1_keyed_by_a_hash_of_the_secret(tmp_path):
    path = tmp_path / "replay.json"
    store = otp.ReplayStore(path)
    totp, hotp = otp.TOTP(RFC4226_KEY), otp.HOTP(RFC4226_KEY)
    assert otp.ReplayStore.key_id(totp.params()) == TOTP_ID == hashlib.sha256(
        b"hwtoken-replay-v1\0totp\0SHA1\0" + RFC4226_KEY).hexdigest()[:32]
    assert otp.ReplayStore.key_id(hotp.params()) == HOTP_ID
    assert otp.Verifier(totp, store=store).verify(totp.at(T), T)
    assert otp.Verifier(hotp, store=store).verify(RFC4226_CODES[2])
    assert json.loads(path.read_text()) == {"format": 1,
                                            "entries": {TOTP_ID: T // 30, HOTP_ID: 3}}
    assert store.get(TOTP_ID) == T // 30 and store.get(HOTP_ID) == 3
    assert store.get("0" * 32) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["replay.json", "replay.json.lock"]
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_store_written_earlier_still_refuses_its_codes(tmp_path):
    """An upgrade must not forget the codes already used: the ids are a file format."""
    path = tmp_path / "replay.json"
    path.write_text(json.dumps({"format": 1, "entries": {TOTP_ID: T // 30, HOTP_ID: 3}}))
    totp, hotp = otp.TOTP(RFC4226_KEY), otp.HOTP(RFC4226_KEY)
    assert not otp.Verifier(totp, store=otp.ReplayStore(path)).verify(totp.at(T), T)
    v = otp.Verifier(hotp, store=otp.ReplayStore(path))
    assert not v.verify(RFC4226_CODES[2])
    assert v.verify_hotp(RFC4226_CODES[3]) == 3


def test_secrets_sharing_a_store_do_not_share_entries(tmp_path):
    store = otp.ReplayStore(tmp_path / "replay.json")
    a, b = otp.TOTP(RFC4226_KEY), otp.TOTP(b"another secret of 20b")
    assert otp.Verifier(a, store=store).verify(a.at(T), T)
    assert otp.Verifier(b, store=store).verify(b.at(T), T)
    assert otp.Verifier(b, store=store).verify(b.at(T + 30), T + 30)
    assert otp.Verifier(a, store=store).verify(a.at(T + 30), T + 30)
    assert len(json.loads((tmp_path / "replay.json").read_text())["entries"]) == 2


def test_store_keeps_step_zero_and_the_counter_after_the_last_one(tmp_path):
    """The smallest and largest values a verifier writes read back as state, not damage."""
    path = tmp_path / "replay.json"
    gen = otp.TOTP(RFC4226_KEY)
    assert otp.Verifier(gen, store=otp.ReplayStore(path)).verify(gen.at(10), 10)
    assert otp.ReplayStore(path).get(TOTP_ID) == 0
    assert not otp.Verifier(gen, store=otp.ReplayStore(path)).verify(gen.at(10), 10)

    last = otp.HOTP(RFC4226_KEY, counter=otp.MAX_COUNTER)
    assert otp.Verifier(last, store=otp.ReplayStore(path)).verify_hotp("094451") == \
        otp.MAX_COUNTER
    assert otp.ReplayStore(path).get(HOTP_ID) == 2**64
    assert otp.Verifier(last, store=otp.ReplayStore(path)).verify_hotp("094451") is None


def test_a_missing_store_file_or_one_with_no_entries_yet_is_an_empty_store(tmp_path):
    path = tmp_path / "replay.json"
    gen = otp.TOTP(RFC4226_KEY)
    for content in (None, b'{"format": 1, "entries": {}}'):
        if content is not None:
            path.write_bytes(content)
        store = otp.ReplayStore(path)
        store.check()
        assert store.get(TOTP_ID) is None
        assert otp.Verifier(gen, store=store).verify(gen.at(T), T)
        assert store.get(TOTP_ID) == T // 30
        path.unlink()


@pytest.mark.parametrize("content", [b"", b"  \n", b"{}", b'{"format": 1}', b'{"entries": {}}',
                                     b'{"format": 2, "entries": {}}',
                                     b'{"format": true, "entries": {}}'])
def test_a_store_file_without_its_structure_fails_closed(tmp_path, content):
    """An emptied or half-written store would forget every code used: refused, untouched."""
    path = tmp_path / "replay.json"
    path.write_bytes(content)
    gen = otp.TOTP(RFC4226_KEY)
    for attempt in (otp.ReplayStore(path).check,
                    lambda: otp.Verifier(gen, store=otp.ReplayStore(path)).verify(gen.at(T), T)):
        with pytest.raises(InvalidInput) as exc:
            attempt()
        assert str(exc.value).startswith(f"replay state file {path} is ")
    assert path.read_bytes() == content


@pytest.mark.parametrize("content", [b"", b'{"format": 1}'])
def test_the_cli_refuses_a_store_file_without_its_structure(tmp_path, content):
    import subprocess
    import sys
    from pathlib import Path

    path = tmp_path / "replay.json"
    path.write_bytes(content)
    before = path.stat()
    gen = otp.TOTP(RFC4226_KEY)
    secret = base64.b32encode(RFC4226_KEY).decode()
    proc = subprocess.run([str(Path(sys.executable).with_name("hwtoken")), "otp", "verify", "-",
                           gen.now(), "--state", str(path)], input=secret, text=True,
                          capture_output=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr.startswith(f"error: replay state file {path} is "), proc.stderr
    after = path.stat()
    assert path.read_bytes() == content
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)


def test_a_verifier_without_a_store_accepts_a_code_once():
    gen = otp.TOTP(RFC4226_KEY)
    v = otp.Verifier(gen)
    assert v.verify(gen.at(T), T)
    assert not v.verify(gen.at(T), T)  # the same code again
    assert not v.verify(gen.at(T - 30), T)  # an earlier step within the window
    assert v.last_step == T // 30
    assert v.verify(gen.at(T + 30), T + 30)
    assert "memory is this object's alone" in " ".join(otp.Verifier.__doc__.split())


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe{}", b'{"entries": {"a": 1}'])
def test_a_damaged_store_file_is_named(tmp_path, content):
    path = tmp_path / "replay.json"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as exc:
        otp.ReplayStore(path).check()
    assert str(exc.value) == f"replay state file {path} is damaged (not JSON)"
    assert path.read_bytes() == content  # left as it was for the admin to look at


@pytest.mark.parametrize("doc", [
    [], [1, 2], 42, None, "entries",
    {"entries": []}, {"entries": [1]}, {"entries": None},
    {"entries": {"a": "7"}}, {"entries": {"a": True}}, {"entries": {"a": False}},
    {"entries": {"a": 1.5}}, {"entries": {"a": None}}, {"entries": {"a": -1}},
    {"entries": {"a": 2**64 + 1}}, {"entries": {"a": 5, "b": -3}},
])
def test_a_foreign_json_file_is_not_taken_for_a_store(tmp_path, doc):
    path = tmp_path / "replay.json"
    path.write_text(json.dumps(doc))
    gen = otp.TOTP(RFC4226_KEY)
    for attempt in (otp.ReplayStore(path).check,
                    lambda: otp.Verifier(gen, store=otp.ReplayStore(path)).verify(gen.at(T), T)):
        with pytest.raises(InvalidInput) as exc:
            attempt()
        assert str(exc.value) == f"replay state file {path} {FOREIGN}"
    assert json.loads(path.read_text()) == doc  # not overwritten


def test_an_unreadable_store_is_named_with_the_reason(tmp_path):
    path = tmp_path / "replay.json"
    path.mkdir()
    with pytest.raises(InvalidInput) as exc:
        otp.ReplayStore(path).check()
    assert str(exc.value) == f"cannot read replay state file {path}: Is a directory"


def test_a_store_that_cannot_be_locked_is_named_with_the_reason(tmp_path):
    path = tmp_path / "replay.json"
    (tmp_path / "replay.json.lock").mkdir()
    gen = otp.TOTP(RFC4226_KEY)
    with pytest.raises(InvalidInput) as exc:
        otp.Verifier(gen, store=otp.ReplayStore(path)).verify(gen.at(T), T)
    assert str(exc.value) == f"cannot update replay state file {path}: Is a directory"
    assert not path.exists()


def test_a_verifier_waits_for_the_lock_another_verifier_holds(tmp_path, monkeypatch):
    """Two verifiers (processes, threads) take turns on replay.json.lock: never refused, never
    both reading the same old state."""
    import fcntl

    path = tmp_path / "replay.json"
    lock = FileLock(tmp_path / "replay.json.lock")  # another verifier, mid-update
    gen = otp.TOTP(RFC4226_KEY)
    result: dict[str, object] = {}
    tried = threading.Event()
    real_flock = fcntl.flock

    def flock(fd: int, op: int) -> None:
        try:
            real_flock(fd, op)
        except BlockingIOError:
            tried.set()  # the verifier found the lock held and waits
            raise

    monkeypatch.setattr(fcntl, "flock", flock)

    def verify() -> None:
        try:
            result["ok"] = otp.Verifier(gen, store=otp.ReplayStore(path)).verify(gen.at(T), T)
        except Exception as exc:  # reported below
            result["error"] = exc

    worker = threading.Thread(target=verify)
    worker.start()
    try:
        assert tried.wait(30)
        assert worker.is_alive()
        assert not path.exists()  # nothing read or written while the other holds the lock
    finally:
        lock.release()
        worker.join(timeout=60)
    assert result == {"ok": True}
    assert otp.ReplayStore(path).get(TOTP_ID) == T // 30
