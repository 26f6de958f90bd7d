"""Sealing secrets at rest (hwtoken.provision.sealing): AES-256-GCM blobs, key files,
where the key comes from, and the inventory's sealing description checked against an
independent scrypt and AES-GCM."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hwtoken.errors import InvalidInput
from hwtoken.provision import sealing
from hwtoken.provision.sealing import (
    CHECK_PLAINTEXT,
    KEY_FILE_ENV,
    PASSPHRASE_ENV,
    Sealer,
    Unlocker,
    WrongKey,
    new_key_file,
    read_key_file,
    unlock,
)

KEY = bytes(range(32))
DAMAGED = "a sealed secret in the inventory is damaged"
TAMPERED = ("cannot open a sealed secret: wrong inventory passphrase or key file, or the "
            "record was tampered with")
WRONG = "wrong passphrase or key file for this inventory"


@pytest.fixture(autouse=True)
def _no_key_source(monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)


class Meta:
    """The inventory's meta table: ``init`` keeps a value already there (first one wins)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.values.get(name)

    def init(self, name: str, value: str) -> str:
        return self.values.setdefault(name, value)


# -- Sealer ---------------------------------------------------------------------------------
def test_sealed_blob_is_version_nonce_and_aes_gcm_with_the_record_as_associated_data():
    sealed = Sealer(KEY).seal(b"secret", b"serial:1")
    blob = base64.b64decode(sealed, validate=True)
    assert blob[:1] == b"\x01" and len(blob) == 1 + 12 + len(b"secret") + 16
    assert AESGCM(KEY).decrypt(blob[1:13], blob[13:], b"serial:1") == b"secret"
    assert Sealer(KEY).open(sealed, b"serial:1") == b"secret"
    assert Sealer(KEY).seal(b"secret", b"serial:1") != sealed  # a fresh nonce each time


def test_an_empty_secret_seals_to_the_shortest_blob_and_opens():
    sealed = Sealer(KEY).seal(b"", b"aad")
    assert len(base64.b64decode(sealed)) == 1 + 12 + 16
    assert Sealer(KEY).open(sealed, b"aad") == b""


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_the_key_is_32_bytes(length):
    with pytest.raises(InvalidInput) as e:
        Sealer(bytes(length))
    assert str(e.value) == "the inventory key must be 32 bytes"


def _refusal(sealed: str) -> str:
    with pytest.raises(WrongKey) as e:
        Sealer(KEY).open(sealed, b"aad")
    return str(e.value)


def test_damaged_blobs_are_refused_as_damaged():
    good = Sealer(KEY).seal(b"secret", b"aad")
    assert _refusal(good[:8] + "!" + good[8:]) == DAMAGED  # not base64
    # symbols outside base64 are refused, not skipped (the rest alone would open)
    assert _refusal(good[:8] + "...." + good[8:]) == DAMAGED
    assert _refusal(base64.b64encode(b"\x01" + bytes(27)).decode()) == DAMAGED  # too short
    blob = bytearray(base64.b64decode(good))
    blob[0] = 2  # another version
    assert _refusal(base64.b64encode(bytes(blob)).decode()) == DAMAGED


def test_a_wrong_key_record_or_bit_is_refused():
    sealed = Sealer(KEY).seal(b"secret", b"aad")
    with pytest.raises(WrongKey) as e:
        Sealer(bytes(32)).open(sealed, b"aad")
    assert str(e.value) == TAMPERED
    with pytest.raises(WrongKey) as e:
        Sealer(KEY).open(sealed, b"another record")
    assert str(e.value) == TAMPERED
    blob = bytearray(base64.b64decode(sealed))
    blob[-1] ^= 1
    assert _refusal(base64.b64encode(bytes(blob)).decode()) == TAMPERED


def test_reprs_name_the_object_and_hide_the_secrets(tmp_path):
    assert repr(Sealer(KEY)) == "Sealer(<key hidden>)"
    assert KEY.hex() not in repr(Sealer(KEY))
    unlocker = Unlocker(key_file=tmp_path / "k", passphrase="correct horse")
    assert repr(unlocker) == f"Unlocker(key_file={tmp_path / 'k'!r}, passphrase=<hidden>)"


# -- key files ------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [
    KEY,  # raw
    KEY.hex().encode() + b"\n",
    KEY.hex().upper().encode(),
    base64.b64encode(KEY) + b"\n",
    b"  " + KEY.hex().encode() + b"\r\n",
], ids=["raw", "hex", "HEX", "base64", "spaces"])
def test_key_file_forms(tmp_path, content):
    path = tmp_path / "inventory.key"
    path.write_bytes(content)
    assert read_key_file(path) == KEY


def test_32_raw_bytes_are_the_key_even_when_they_read_as_text(tmp_path):
    path = tmp_path / "inventory.key"
    path.write_bytes(b"0123456789abcdef" * 2)  # 32 bytes that are also 16 bytes of hex
    assert read_key_file(path) == b"0123456789abcdef" * 2


@pytest.mark.parametrize("content", [
    KEY.hex()[:-2].encode(),  # 31 bytes of hex
    base64.b64encode(KEY + b"x"),  # 33 bytes of base64
    b"\xff" * 40,  # neither
    b"",
], ids=["short-hex", "long-base64", "binary", "empty"])
def test_a_key_file_of_another_size_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "inventory.key"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as e:
        read_key_file(path)
    assert str(e.value) == (f"the inventory key file {path} must hold 32 bytes (raw, hex or "
                            "base64)")


def test_a_missing_key_file_is_named_with_the_reason(tmp_path):
    path = tmp_path / "nowhere.key"
    with pytest.raises(InvalidInput) as e:
        read_key_file(path)
    assert str(e.value) == f"cannot read the inventory key file {path}: No such file or directory"


def test_new_key_file_is_private_hex_and_fresh(tmp_path):
    first, second = tmp_path / "a.key", tmp_path / "b.key"
    new_key_file(first)
    new_key_file(second)
    text = first.read_text()
    assert len(text) == 65 and text.endswith("\n") and bytes.fromhex(text)
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    assert read_key_file(first) != read_key_file(second)


# -- where the key comes from ---------------------------------------------------------------
def test_unlocker_sources(tmp_path, monkeypatch):
    asked: list[bool] = []

    def prompt(new: bool) -> str:
        asked.append(new)
        return "typed"

    assert Unlocker(passphrase="given", prompt=prompt).passphrase(True) == "given"
    assert Unlocker(prompt=prompt).passphrase(True) == "typed"
    assert Unlocker(prompt=prompt).passphrase(False) == "typed"
    assert asked == [True, False]
    assert not Unlocker(prompt=prompt).has_passphrase  # asking is not having one
    with pytest.raises(InvalidInput) as e:
        Unlocker().passphrase(False)
    assert str(e.value) == ("the inventory needs a passphrase: set "
                            "HWTOKEN_INVENTORY_PASSPHRASE, use --key-file, or run on a "
                            "terminal to be asked")
    monkeypatch.setenv(PASSPHRASE_ENV, "from-env")
    assert Unlocker(prompt=prompt).passphrase(True) == "from-env" and asked == [True, False]
    assert Unlocker().has_passphrase and Unlocker(passphrase="x").has_passphrase
    assert Unlocker(passphrase="given").passphrase(False) == "given"
    assert Unlocker().key_file is None
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "env.key"))
    assert Unlocker().key_file == str(tmp_path / "env.key")
    assert Unlocker(key_file=tmp_path / "arg.key").key_file == tmp_path / "arg.key"


# -- the inventory's sealing description ------------------------------------------------------
def _argon2id(passphrase: bytes, doc: dict, **params: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    return Argon2id(salt=base64.b64decode(doc["salt"]), length=32,
                    iterations=params.get("iterations", doc.get("iterations", 0)),
                    lanes=params.get("lanes", doc.get("lanes", 0)),
                    memory_cost=params.get("memory_kib", doc.get("memory_kib", 0))
                    ).derive(passphrase)


def test_cryptographys_argon2id_is_rfc_9106s():
    """RFC 9106 section 5.3's test vector (with its secret and associated data)."""
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    tag = Argon2id(salt=bytes([2]) * 16, length=32, iterations=3, lanes=4, memory_cost=32,
                   ad=bytes([4]) * 12, secret=bytes([3]) * 8).derive(bytes([1]) * 32)
    assert tag.hex() == "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"


def test_a_passphrase_inventory_is_argon2id_with_a_check_value():
    meta = Meta()
    sealer = unlock(meta.get, meta.init, Unlocker(passphrase="correct horse"))
    doc = json.loads(meta.values["sealing"])
    assert set(doc) == {"kdf", "memory_kib", "iterations", "lanes", "salt", "check"}
    assert (doc["kdf"], doc["memory_kib"], doc["iterations"], doc["lanes"]) == \
        ("argon2id", 65536, 3, 4)  # RFC 9106's second recommended setting
    assert len(base64.b64decode(doc["salt"], validate=True)) == 16
    key = _argon2id(b"correct horse", doc)
    assert Sealer(key).open(doc["check"], b"check") == CHECK_PLAINTEXT
    assert Sealer(key).open(sealer.seal(b"secret", b"r"), b"r") == b"secret"
    # the same passphrase opens it again; a new inventory gets a new salt
    again = unlock(meta.get, meta.init, Unlocker(passphrase="correct horse"))
    assert again.open(sealer.seal(b"s", b"r"), b"r") == b"s"
    other = Meta()
    unlock(other.get, other.init, Unlocker(passphrase="correct horse"))
    assert json.loads(other.values["sealing"])["salt"] != doc["salt"]


def test_without_argon2id_a_new_inventory_gets_a_stronger_scrypt(monkeypatch):
    monkeypatch.setattr(sealing, "argon2id_available", lambda: False)
    meta = Meta()
    sealer = unlock(meta.get, meta.init, Unlocker(passphrase="correct horse"))
    doc = json.loads(meta.values["sealing"])
    assert set(doc) == {"kdf", "n", "r", "p", "salt", "check"}
    assert (doc["kdf"], doc["n"], doc["r"], doc["p"]) == ("scrypt", 2**17, 8, 1)
    key = hashlib.scrypt(b"correct horse", salt=base64.b64decode(doc["salt"]), n=2**17, r=8,
                         p=1, dklen=32, maxmem=2**28)  # an independent scrypt
    assert Sealer(key).open(doc["check"], b"check") == CHECK_PLAINTEXT
    assert Sealer(key).open(sealer.seal(b"secret", b"r"), b"r") == b"secret"


def _old_description(passphrase: bytes) -> tuple[dict, bytes]:
    """A sealing description as hwtoken wrote it before Argon2id (scrypt, N=2^15), made
    here with hashlib's scrypt and AES-GCM, and its key."""
    salt = os.urandom(16)
    key = hashlib.scrypt(passphrase, salt=salt, n=2**15, r=8, p=1, dklen=32, maxmem=2**26)
    nonce = os.urandom(12)
    check = b"\x01" + nonce + AESGCM(key).encrypt(nonce, CHECK_PLAINTEXT, b"check")
    return {"kdf": "scrypt", "n": 2**15, "r": 8, "p": 1,
            "salt": base64.b64encode(salt).decode(),
            "check": base64.b64encode(check).decode()}, key


def test_an_inventory_sealed_with_the_old_scrypt_still_opens():
    doc, key = _old_description(b"correct horse")
    meta = Meta()
    meta.values["sealing"] = json.dumps(doc)
    nonce = os.urandom(12)
    record = base64.b64encode(b"\x01" + nonce + AESGCM(key).encrypt(nonce, b"hotp key",
                                                                     b"serial:1")).decode()
    sealer = unlock(meta.get, meta.init, Unlocker(passphrase="correct horse"))
    assert sealer.open(record, b"serial:1") == b"hotp key"
    assert json.loads(meta.values["sealing"]) == doc  # opened as it is, not rewritten
    with pytest.raises(WrongKey):
        unlock(meta.get, meta.init, Unlocker(passphrase="battery staple"))


def test_the_cli_opens_an_inventory_sealed_with_the_old_scrypt(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from hwtoken.provision.sqlite import SqliteInventory

    doc, _key = _old_description(b"correct horse")
    inv = SqliteInventory(tmp_path / "old.db")
    inv.meta_init("sealing", json.dumps(doc))
    inv.close()
    hwtoken = str(Path(sys.executable).with_name("hwtoken"))

    def export(passphrase: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([hwtoken, "provision", "export", "-i", str(tmp_path / "old.db"),
                               "--format", "csv", "-o", str(tmp_path / "out.csv")],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, PASSPHRASE_ENV: passphrase})

    opened = export("correct horse")  # unlocked: then there is simply nothing to export
    assert opened.returncode == 1 and "wrong passphrase" not in opened.stderr, opened
    refused = export("battery staple")
    assert refused.returncode == 2 and refused.stderr == f"error: {WRONG}\n", refused


def test_an_argon2id_inventory_without_argon2id_says_what_to_install(monkeypatch):
    meta = Meta()
    unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    monkeypatch.setattr(sealing, "argon2id_available", lambda: False)
    with pytest.raises(InvalidInput, match=r"cannot do: upgrade it \(pip install "):
        unlock(meta.get, meta.init, Unlocker(passphrase="pw"))


def test_the_wrong_passphrase_is_refused_before_anything_is_sealed():
    meta = Meta()
    unlock(meta.get, meta.init, Unlocker(passphrase="correct horse"))
    with pytest.raises(WrongKey) as e:
        unlock(meta.get, meta.init, Unlocker(passphrase="battery staple"))
    assert str(e.value) == WRONG


def test_a_check_value_that_opens_to_something_else_is_refused():
    meta = Meta()
    unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    doc = json.loads(meta.values["sealing"])
    key = _argon2id(b"pw", doc)
    doc["check"] = Sealer(key).seal(b"not the check constant", b"check")
    meta.values["sealing"] = json.dumps(doc)
    with pytest.raises(WrongKey) as e:
        unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    assert str(e.value) == WRONG


def test_the_prompt_is_told_whether_the_inventory_is_new():
    meta, asked = Meta(), []

    def prompt(new: bool) -> str:
        asked.append(new)
        return "typed"

    unlock(meta.get, meta.init, Unlocker(prompt=prompt))
    unlock(meta.get, meta.init, Unlocker(prompt=prompt))
    assert asked == [True, False]


def test_a_key_file_inventory(tmp_path):
    path = tmp_path / "inventory.key"
    path.write_bytes(KEY)
    meta = Meta()
    sealer = unlock(meta.get, meta.init, Unlocker(key_file=path))
    doc = json.loads(meta.values["sealing"])
    assert set(doc) == {"kdf", "check"} and doc["kdf"] == "keyfile"
    assert Sealer(KEY).open(doc["check"], b"check") == CHECK_PLAINTEXT
    assert Sealer(KEY).open(sealer.seal(b"secret", b"r"), b"r") == b"secret"
    with pytest.raises(InvalidInput) as e:  # a passphrase does not open it
        unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    assert str(e.value) == ("this inventory is sealed with a key file: pass --key-file (or "
                            "set HWTOKEN_INVENTORY_KEY_FILE)")
    path.write_bytes(bytes(32))
    with pytest.raises(WrongKey) as e:
        unlock(meta.get, meta.init, Unlocker(key_file=path))
    assert str(e.value) == WRONG


def test_a_passphrase_inventory_wants_its_passphrase_even_with_a_key_file(tmp_path, monkeypatch):
    path = tmp_path / "inventory.key"
    path.write_bytes(KEY)
    meta = Meta()
    unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    with pytest.raises(InvalidInput) as e:
        unlock(meta.get, meta.init, Unlocker(key_file=path))
    assert str(e.value) == "this inventory is sealed with a passphrase, not a key file"
    # a key file set in the environment does not get in the way of the passphrase
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    assert unlock(meta.get, meta.init, Unlocker(passphrase="pw"))


def test_an_unknown_sealing_method_is_refused():
    meta = Meta()
    meta.values["sealing"] = json.dumps({"kdf": "argon2", "check": ""})
    with pytest.raises(InvalidInput) as e:
        unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    assert str(e.value) == "unknown inventory sealing method 'argon2'"


def test_two_stations_creating_one_inventory_agree_on_the_first_description():
    meta = Meta()
    first = unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    stored = meta.values["sealing"]

    class Late(Meta):
        """The second station: it saw no description, but the first one was stored first."""

        def __init__(self) -> None:
            super().__init__()
            self.looked = False

        def get(self, name: str) -> str | None:
            if not self.looked:
                self.looked = True
                return None
            return stored

        def init(self, name: str, value: str) -> str:
            return stored

    late = Late()
    second = unlock(late.get, late.init, Unlocker(passphrase="pw"))
    assert second.open(first.seal(b"secret", b"r"), b"r") == b"secret"


def test_derive_reads_the_recorded_parameters(monkeypatch):
    # an inventory made with other scrypt parameters opens with those, not today's defaults
    monkeypatch.setattr(sealing, "argon2id_available", lambda: False)
    monkeypatch.setattr(sealing, "SCRYPT_N", 2**10)
    monkeypatch.setattr(sealing, "SCRYPT_R", 4)
    monkeypatch.setattr(sealing, "SCRYPT_P", 2)
    meta = Meta()
    sealer = unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    doc = json.loads(meta.values["sealing"])
    assert (doc["n"], doc["r"], doc["p"]) == (2**10, 4, 2)
    monkeypatch.undo()
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    again = unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    assert again.open(sealer.seal(b"s", b"r"), b"r") == b"s"
    key = hashlib.scrypt(b"pw", salt=base64.b64decode(doc["salt"]), n=2**10, r=4, p=2,
                         dklen=32)
    assert Sealer(key).open(doc["check"], b"check") == CHECK_PLAINTEXT


def test_derive_reads_the_recorded_argon2id_parameters(monkeypatch):
    monkeypatch.setattr(sealing, "ARGON2_MEMORY_KIB", 64)
    monkeypatch.setattr(sealing, "ARGON2_ITERATIONS", 1)
    monkeypatch.setattr(sealing, "ARGON2_LANES", 2)
    meta = Meta()
    sealer = unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    doc = json.loads(meta.values["sealing"])
    assert (doc["memory_kib"], doc["iterations"], doc["lanes"]) == (64, 1, 2)
    monkeypatch.undo()
    again = unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    assert again.open(sealer.seal(b"s", b"r"), b"r") == b"s"
    assert Sealer(_argon2id(b"pw", doc)).open(doc["check"], b"check") == CHECK_PLAINTEXT


# -- edges ----------------------------------------------------------------------------------
def test_the_shortest_blob_is_opened_not_called_damaged():
    shortest = base64.b64encode(b"\x01" + bytes(12 + 16)).decode()  # version, nonce, tag
    assert _refusal(shortest) == TAMPERED
    assert _refusal(base64.b64encode(b"\x01" + bytes(12 + 15)).decode()) == DAMAGED
    assert _refusal("") == DAMAGED


def test_argon2id_available_asks_cryptography(monkeypatch):
    import sys

    from cryptography.hazmat.backends.openssl.backend import backend

    assert sealing.argon2id_available() is bool(backend.argon2_supported())
    monkeypatch.setattr(backend, "argon2_supported", lambda: 0)
    assert sealing.argon2id_available() is False
    monkeypatch.setattr(backend, "argon2_supported", lambda: 1)
    assert sealing.argon2id_available() is True
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.kdf.argon2", None)
    assert sealing.argon2id_available() is False  # an older cryptography: no such module


def test_new_passphrase_kdf_has_a_fresh_16_byte_salt(monkeypatch):
    first, second = sealing.new_passphrase_kdf(), sealing.new_passphrase_kdf()
    assert first["salt"] != second["salt"]
    assert len(base64.b64decode(first["salt"], validate=True)) == 16
    monkeypatch.setattr(sealing, "argon2id_available", lambda: True)
    doc = sealing.new_passphrase_kdf()
    assert doc == {"kdf": "argon2id", "memory_kib": 65536, "iterations": 3, "lanes": 4,
                   "salt": doc["salt"]}
    monkeypatch.setattr(sealing, "argon2id_available", lambda: False)
    doc = sealing.new_passphrase_kdf()
    assert doc == {"kdf": "scrypt", "n": 2**17, "r": 8, "p": 1, "salt": doc["salt"]}


def test_a_key_file_that_is_a_directory_or_33_raw_bytes(tmp_path):
    with pytest.raises(InvalidInput) as e:
        read_key_file(tmp_path)
    assert str(e.value) == f"cannot read the inventory key file {tmp_path}: Is a directory"
    path = tmp_path / "inventory.key"
    path.write_bytes(KEY + b"\n")  # 33 bytes: not raw, and no text
    with pytest.raises(InvalidInput) as e:
        read_key_file(path)
    assert str(e.value) == (f"the inventory key file {path} must hold 32 bytes (raw, hex or "
                            "base64)")
    path.write_bytes(base64.b64encode(KEY)[:-1] + b"\n")  # base64 with its padding cut
    with pytest.raises(InvalidInput):
        read_key_file(path)


def test_an_empty_key_file_name_is_none(monkeypatch, tmp_path):
    assert Unlocker(key_file="").key_file is None
    monkeypatch.setenv(KEY_FILE_ENV, "")
    assert Unlocker().key_file is None
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "env.key"))
    assert Unlocker(key_file="").key_file == str(tmp_path / "env.key")
    assert not Unlocker(passphrase="").has_passphrase
    monkeypatch.setenv(PASSPHRASE_ENV, "")
    assert not Unlocker().has_passphrase
    with pytest.raises(InvalidInput, match="^the inventory needs a passphrase: "):
        Unlocker(passphrase="", prompt=lambda new: "").passphrase(True)


def test_a_new_inventorys_passphrase_goes_through_the_policy():
    checked: list[str] = []

    def policy(value: str) -> None:
        checked.append(value)
        if len(value) < 8:
            raise InvalidInput("the passphrase is too short")

    assert Unlocker(passphrase="long enough", new_policy=policy).passphrase(True) == (
        "long enough")
    assert Unlocker(passphrase="short", new_policy=policy).passphrase(False) == "short"
    assert checked == ["long enough"]  # an existing inventory's passphrase is what it is
    with pytest.raises(InvalidInput) as e:
        Unlocker(passphrase="short", new_policy=policy).passphrase(True)
    assert str(e.value) == "the passphrase is too short"
    meta = Meta()
    with pytest.raises(InvalidInput):
        unlock(meta.get, meta.init, Unlocker(passphrase="short", new_policy=policy))
    assert meta.values == {}  # nothing stored for a refused passphrase


def test_the_stored_description_is_the_one_its_check_was_sealed_under(monkeypatch):
    monkeypatch.setattr(sealing, "ARGON2_MEMORY_KIB", 64)
    monkeypatch.setattr(sealing, "ARGON2_ITERATIONS", 1)
    monkeypatch.setattr(sealing, "ARGON2_LANES", 1)
    meta = Meta()
    sealer = unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    assert list(meta.values) == ["sealing"]
    doc = json.loads(meta.values["sealing"])
    assert list(doc) == ["kdf", "memory_kib", "iterations", "lanes", "salt", "check"]
    assert sealer.open(doc["check"], b"check") == CHECK_PLAINTEXT
    with pytest.raises(WrongKey):
        sealer.open(doc["check"], b"another")


def test_the_argon2id_refusal_in_full(monkeypatch):
    monkeypatch.setattr(sealing, "ARGON2_MEMORY_KIB", 64)
    monkeypatch.setattr(sealing, "ARGON2_ITERATIONS", 1)
    meta = Meta()
    unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    monkeypatch.setattr(sealing, "argon2id_available", lambda: False)
    with pytest.raises(InvalidInput) as e:
        unlock(meta.get, meta.init, Unlocker(passphrase="pw"))
    assert str(e.value) == ("this inventory's key is derived with Argon2id, which the "
                            "installed cryptography package cannot do: upgrade it (pip "
                            "install 'cryptography>=44')")


def test_unlock_reads_and_stores_the_sealing_entry_only(tmp_path):
    """The description is the meta entry "sealing" (a key file inventory: no KDF to wait
    for, so a wrong name fails at once instead of deriving keys over and over)."""
    path = tmp_path / "inventory.key"
    path.write_bytes(KEY)
    calls: list[tuple[str, str]] = []
    values: dict[str, str] = {}

    def get(name: str) -> str | None:
        calls.append(("get", name))
        return values.get(name)

    def init(name: str, value: str) -> str:
        calls.append(("init", name))
        if len(calls) > 10:
            raise AssertionError(f"unlock keeps going: {calls}")
        return values.setdefault(name, value)

    unlock(get, init, Unlocker(key_file=path))
    assert calls == [("get", "sealing"), ("init", "sealing")] and list(values) == ["sealing"]
    calls.clear()
    unlock(get, init, Unlocker(key_file=path))
    assert calls == [("get", "sealing")]


def test_a_new_scrypt_inventory_tells_the_prompt_and_the_policy_it_is_new(monkeypatch):
    monkeypatch.setattr(sealing, "argon2id_available", lambda: False)
    monkeypatch.setattr(sealing, "SCRYPT_N", 2**10)
    meta, asked, checked = Meta(), [], []

    def prompt(new: bool) -> str:
        asked.append(new)
        return "typed"

    source = Unlocker(prompt=prompt, new_policy=checked.append)
    unlock(meta.get, meta.init, source)
    unlock(meta.get, meta.init, source)
    assert asked == [True, False] and checked == ["typed"]
