"""The saved credential: what a relying party keeps after a registration, as a JSON file.

It holds the credential ID, the COSE public key, the RP and the user, the authenticator's
AAGUID and the last sign counter seen. It holds no secret, but it is written like one
(0600, atomically), because swapping its public key would let a different key sign in.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fido2 import cbor
from fido2.cose import CoseKey
from fido2.utils import websafe_decode, websafe_encode
from fido2.webauthn import Aaguid, AttestedCredentialData

from hwtoken import paths
from hwtoken.errors import CheckFailed, InvalidInput
from hwtoken.fileio import atomic_write, require_parent

FORMAT = "hwtoken-fido2-credential/1"


@dataclass(frozen=True)
class SavedCredential:
    """A registered credential as the relying party stores it."""

    rp_id: str
    user_name: str
    user_id: bytes
    credential_id: bytes
    public_key: bytes  # the COSE_Key, CBOR encoded, as the authenticator returned it
    aaguid: str
    sign_count: int
    rp_name: str | None = None
    user_display_name: str | None = None
    resident: bool = False
    algorithm: str = "es256"
    hmac_secret: bool = False
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def cose_key(self) -> CoseKey:
        return CoseKey.parse(cbor.decode(self.public_key))

    @property
    def attested(self) -> AttestedCredentialData:
        """The form ``fido2.server.Fido2Server.authenticate_complete`` takes."""
        return AttestedCredentialData.create(Aaguid.parse(self.aaguid), self.credential_id,
                                             self.cose_key)

    def with_count(self, count: int) -> SavedCredential:
        return replace(self, sign_count=count)

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (binary fields base64url, like WebAuthn's JSON)."""
        return {
            "format": FORMAT,
            "rp": {"id": self.rp_id, "name": self.rp_name or self.rp_id},
            "user": {"id": websafe_encode(self.user_id), "name": self.user_name,
                     "display_name": self.user_display_name or self.user_name},
            "credential_id": websafe_encode(self.credential_id),
            "public_key": websafe_encode(self.public_key),
            "algorithm": self.algorithm,
            "aaguid": self.aaguid,
            "sign_count": self.sign_count,
            "resident": self.resident,
            "hmac_secret": self.hmac_secret,
            "created": self.created,
        }

    @classmethod
    def from_dict(cls, doc: Any, source: str = "credential") -> SavedCredential:
        """Parse and check a document; :class:`InvalidInput` if anything is off."""
        try:
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError(f"not a hwtoken credential file (format must be {FORMAT})")
            rp, user = doc["rp"], doc["user"]
            cred = cls(
                rp_id=_str(rp["id"]), rp_name=rp.get("name"),
                user_name=_str(user["name"]), user_id=websafe_decode(_str(user["id"])),
                user_display_name=user.get("display_name"),
                credential_id=websafe_decode(_str(doc["credential_id"])),
                public_key=websafe_decode(_str(doc["public_key"])),
                algorithm=_str(doc.get("algorithm", "es256")),
                aaguid=str(Aaguid.parse(_str(doc["aaguid"]))),
                sign_count=_int(doc["sign_count"]),
                resident=bool(doc.get("resident", False)),
                hmac_secret=bool(doc.get("hmac_secret", False)),
                created=_int(doc.get("created", 0)),
            )
            if not cred.credential_id:
                raise ValueError("empty credential_id")
            try:
                cred.cose_key  # noqa: B018 - parse now so a broken key is an input error
            except Exception as exc:  # CBOR/COSE decoding raises assorted types
                raise InvalidInput(f"{source} is malformed: public_key is not a COSE public "
                                   f"key ({exc or type(exc).__name__})") from None
        except InvalidInput:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InvalidInput(f"{source} is malformed: {detail or type(exc).__name__}") \
                from None
        except Exception as exc:  # CBOR/COSE decoding raises assorted types
            raise InvalidInput(f"{source} is malformed: bad public_key "
                               f"({type(exc).__name__})") from None
        return cred


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise TypeError(f"expected a non-negative integer, got {v!r}")
    return v


def check_writable(path: str | os.PathLike[str], *, new: bool = True,
                   make_parents: bool = False) -> Path:
    """:class:`InvalidInput` unless a credential file can be written at ``path``.

    Run it before a registration touches the key, so that a bad ``--out`` never leaves a
    credential on the key whose public key was not saved. With ``new``, an existing file
    is refused too: it holds another credential's public key, which would be lost.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory; give a file name for the credential")
    if new and (path.exists() or path.is_symlink()):
        raise InvalidInput(f"credential file {path} already exists (it holds another "
                           "credential's public key); choose another file, or --force")
    if not make_parents:
        require_parent(path)
    try:
        paths.private_dir(path.parent)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe",
                                     dir=path.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InvalidInput(f"cannot write credential file {path}: "
                           f"{exc.strerror or exc}") from None
    return path


def save(cred: SavedCredential, path: str | os.PathLike[str], *,
         make_parents: bool = False) -> Path:
    """Write ``cred`` to ``path`` (0600, atomic). Returns the path.

    The directory must exist unless ``make_parents`` (the default path under the state
    directory).

    :class:`CheckFailed` (a one-line message naming the credential) if it cannot be
    written: the key already holds or used the credential at this point.
    """
    path = Path(path)
    try:
        atomic_write(path, json.dumps(cred.to_dict(), indent=2) + "\n",
                     make_parents=make_parents)
    except (OSError, InvalidInput) as exc:
        raise CheckFailed(f"could not save credential {websafe_encode(cred.credential_id)} "
                          f"to {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return path


def load(path: str | os.PathLike[str]) -> SavedCredential:
    """Read a credential file; :class:`InvalidInput` if missing or malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"credential file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read credential file {path}: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"credential file {path} is not JSON ({exc.msg}, line "
                           f"{exc.lineno})") from None
    return SavedCredential.from_dict(doc, source=f"credential file {path}")


def default_dir() -> Path:
    """Where ``register`` saves credentials when no ``--out`` is given."""
    return paths.state_dir() / "fido2" / "credentials"


def default_path(cred: SavedCredential) -> Path:
    """``<state>/fido2/credentials/<rp>-<user>-<id prefix>.json``."""
    safe_rp = "".join(c if c.isalnum() or c in ".-" else "_" for c in cred.rp_id)
    safe_user = "".join(c if c.isalnum() or c in ".-" else "_" for c in cred.user_name)[:32]
    return default_dir() / f"{safe_rp}-{safe_user}-{cred.credential_id.hex()[:12]}.json"


def find_saved(rp_id: str, credential_id: bytes) -> tuple[Path, SavedCredential] | None:
    """The credential file under :func:`default_dir` for this RP and credential ID."""
    d = default_dir()
    if not d.is_dir():
        return None
    for path in sorted(d.glob("*.json")):
        try:
            cred = load(path)
        except InvalidInput:
            continue
        if cred.rp_id == rp_id and cred.credential_id == credential_id:
            return path, cred
    return None
