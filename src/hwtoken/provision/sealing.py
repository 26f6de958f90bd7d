"""Secrets at rest in the inventory: AES-256-GCM under a key from a passphrase or a key file.

The inventory keeps, in its ``meta`` table, how its sealing key is derived (the KDF, its salt
and parameters, or "keyfile") and a *check value*: a constant sealed under that key, so a
wrong passphrase is refused before anything is written. The database alone reveals no secret.

A new inventory derives its key from the passphrase with Argon2id (RFC 9106's second
recommended setting: 64 MiB, 3 passes, 4 lanes); where the installed ``cryptography`` cannot
do Argon2id, with scrypt at N=2^17 (128 MiB). Inventories made earlier (scrypt, N=2^15)
open with the parameters recorded in them.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hwtoken.errors import HwtokenError, InvalidInput

PASSPHRASE_ENV = "HWTOKEN_INVENTORY_PASSPHRASE"
KEY_FILE_ENV = "HWTOKEN_INVENTORY_KEY_FILE"
VERSION = b"\x01"
CHECK_PLAINTEXT = b"hwtoken inventory sealing key check v1"
ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES = 64 * 1024, 3, 4
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**17, 8, 1  # (used where Argon2id is not available)
PASSPHRASE_KDFS = ("argon2id", "scrypt")


class WrongKey(HwtokenError):
    """The passphrase or key file does not open this inventory."""

    exit_code = 2


class Sealer:
    """Seal and open secrets with AES-256-GCM; associated data binds a secret to its record."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise InvalidInput("the inventory key must be 32 bytes")
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, aad: bytes) -> str:
        nonce = secrets.token_bytes(12)
        blob = VERSION + nonce + self._aead.encrypt(nonce, plaintext, aad)
        return base64.b64encode(blob).decode()

    def open(self, sealed: str, aad: bytes) -> bytes:
        try:
            blob = base64.b64decode(sealed, validate=True)
        except ValueError:
            raise WrongKey("a sealed secret in the inventory is damaged") from None
        if len(blob) < 1 + 12 + 16 or blob[:1] != VERSION:
            raise WrongKey("a sealed secret in the inventory is damaged")
        try:
            return self._aead.decrypt(blob[1:13], blob[13:], aad)
        except InvalidTag:
            raise WrongKey("cannot open a sealed secret: wrong inventory passphrase or key "
                           "file, or the record was tampered with") from None

    def __repr__(self) -> str:  # never show key material
        return "Sealer(<key hidden>)"


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def _argon2id(passphrase: str, salt: bytes, memory_kib: int, iterations: int,
              lanes: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    return Argon2id(salt=salt, length=32, iterations=iterations, lanes=lanes,
                    memory_cost=memory_kib).derive(passphrase.encode())


def argon2id_available() -> bool:
    """True if the installed ``cryptography`` (and its OpenSSL) can derive Argon2id keys."""
    try:
        from cryptography.hazmat.backends.openssl.backend import backend
        from cryptography.hazmat.primitives.kdf.argon2 import Argon2id  # noqa: F401
    except ImportError:
        return False
    return bool(backend.argon2_supported())


def new_passphrase_kdf() -> dict[str, object]:
    """How a new inventory derives its key from a passphrase (with a fresh salt)."""
    salt = base64.b64encode(secrets.token_bytes(16)).decode()
    if argon2id_available():
        return {"kdf": "argon2id", "memory_kib": ARGON2_MEMORY_KIB,
                "iterations": ARGON2_ITERATIONS, "lanes": ARGON2_LANES, "salt": salt}
    return {"kdf": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "salt": salt}


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """A key file holds 32 random bytes, raw or as 64 hex digits or base64 text."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read the inventory key file {path}: {exc.strerror}") from None
    if len(data) == 32:
        return data
    text = data.strip()
    for decode in (bytes.fromhex, base64.b64decode):
        try:
            key = decode(text.decode("ascii"))  # type: ignore[operator]
        except (ValueError, UnicodeDecodeError):
            continue
        if len(key) == 32:
            return key
    raise InvalidInput(f"the inventory key file {path} must hold 32 bytes (raw, hex or base64)")


def new_key_file(path: str | os.PathLike[str]) -> None:
    """Write a fresh random key file (0600, atomic)."""
    from hwtoken.fileio import atomic_write

    atomic_write(path, secrets.token_bytes(32).hex() + "\n")


class Unlocker:
    """Where the sealing key comes from: a key file, or a passphrase (env or prompt)."""

    def __init__(self, *, key_file: str | os.PathLike[str] | None = None,
                 passphrase: str | None = None,
                 prompt: Callable[[bool], str] | None = None,
                 new_policy: Callable[[str], None] | None = None) -> None:
        self.key_file = key_file or os.environ.get(KEY_FILE_ENV) or None
        self._passphrase = passphrase
        self._prompt = prompt
        self._new_policy = new_policy  # checks the passphrase of a new inventory

    @property
    def has_passphrase(self) -> bool:
        """A passphrase was given (argument or env), without asking for one."""
        return bool(self._passphrase or os.environ.get(PASSPHRASE_ENV))

    def passphrase(self, new: bool) -> str:
        value = self._passphrase or os.environ.get(PASSPHRASE_ENV)
        if not value and self._prompt is not None:
            value = self._prompt(new)
        if not value:
            raise InvalidInput(f"the inventory needs a passphrase: set {PASSPHRASE_ENV}, "
                               "use --key-file, or run on a terminal to be asked")
        if new and self._new_policy is not None:
            self._new_policy(value)
        return value

    def __repr__(self) -> str:
        return f"Unlocker(key_file={self.key_file!r}, passphrase=<hidden>)"


def unlock(meta_get: Callable[[str], str | None],
           meta_init: Callable[[str, str], str], source: Unlocker) -> Sealer:
    """Open (or, on a new inventory, set up) the sealing key described in the inventory.

    ``meta_init(name, value)`` stores ``value`` unless ``name`` is set and returns the stored
    value, so two stations creating one inventory at once agree on one salt.
    """
    existing = meta_get("sealing")
    if existing is None:
        doc = {"kdf": "keyfile"} if source.key_file else new_passphrase_kdf()
        new = True
    else:
        doc = json.loads(existing)
        new = False
    key = _derive(doc, source, new)
    sealer = Sealer(key)
    if new:
        doc["check"] = sealer.seal(CHECK_PLAINTEXT, b"check")
        stored = meta_init("sealing", json.dumps(doc))
        if stored != json.dumps(doc):  # another station set it up first: use theirs
            return unlock(meta_get, meta_init, source)
        return sealer
    try:
        check = sealer.open(doc["check"], b"check")
    except WrongKey:
        raise WrongKey("wrong passphrase or key file for this inventory") from None
    if not hmac.compare_digest(check, CHECK_PLAINTEXT):
        raise WrongKey("wrong passphrase or key file for this inventory")
    return sealer


def _derive(doc: dict[str, object], source: Unlocker, new: bool) -> bytes:
    kdf = doc.get("kdf")
    if kdf == "keyfile":
        if not source.key_file:
            raise InvalidInput("this inventory is sealed with a key file: pass --key-file "
                               "(or set HWTOKEN_INVENTORY_KEY_FILE)")
        return read_key_file(source.key_file)
    if kdf in PASSPHRASE_KDFS:
        if source.key_file and not source.has_passphrase:
            raise InvalidInput("this inventory is sealed with a passphrase, not a key file")
        salt = base64.b64decode(str(doc["salt"]))
        num = lambda name: int(doc[name])  # type: ignore[call-overload]  # noqa: E731
        if kdf == "argon2id":
            if not argon2id_available():
                raise InvalidInput("this inventory's key is derived with Argon2id, which the "
                                   "installed cryptography package cannot do: upgrade it "
                                   "(pip install 'cryptography>=44')")
            return _argon2id(source.passphrase(new), salt, num("memory_kib"),
                             num("iterations"), num("lanes"))
        return _scrypt(source.passphrase(new), salt, num("n"), num("r"), num("p"))
    raise InvalidInput(f"unknown inventory sealing method {kdf!r}")
