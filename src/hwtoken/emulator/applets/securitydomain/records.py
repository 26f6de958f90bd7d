"""What the Security Domain keeps in the key's ``securitydomain`` store section.

Layout (bytes are stored by the key store as base64; key references as ``"KIDKVN"`` hex)::

    {"scp03": [Scp03KeySet, ...],
     "ec_keys": [EcKey, ...],                      # SCP11 keys and OCE CA public keys
     "certificates": {"1301": [DER, ...]},         # certificate bundles, leaf last
     "allowlists": {"1003": ["serial hex", ...]},  # allowed OCE certificate serials
     "ca_identifiers": {"1301": CaIdentifier},     # KLCC / KLOC subject key identifiers
     "authority": Authority}                       # the key's own SCP certificate authority

Each record converts explicitly with ``to_store()`` / ``from_store()``; the applet writes
the state back and commits the store before it answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KID_SCP03 = 0x01  # with 0x02 (MAC) and 0x03 (DEK): one key set
KID_SCP11A = 0x11
KID_SCP11B = 0x13
KID_SCP11C = 0x15
SCP11_KIDS = (KID_SCP11A, KID_SCP11B, KID_SCP11C)
KLOC_KIDS = (0x10, *range(0x20, 0x30))  # OCE certificate authorities (PK.CA-KLOC.ECDSA)
DEFAULT_KVN = 0xFF  # the factory SCP03 key set
DEFAULT_SCP11B_KVN = 0x01
DEFAULT_KEY = bytes(range(0x40, 0x50))
MAX_SCP03_SETS = 3
MAX_EC_KEYS = 16
#: failed authentications after which a key is blocked (yubikit's reset tries 65 times)
BLOCK_AFTER = 65

Ref = tuple[int, int]  # (KID, KVN)


def ref_name(ref: Ref) -> str:
    """The store's name of a key reference: ``"1301"``."""
    return f"{ref[0]:02x}{ref[1]:02x}"


def ref_of(name: str) -> Ref:
    return int(name[:2], 16), int(name[2:], 16)


@dataclass
class Scp03KeySet:
    """Static keys K-ENC, K-MAC and K-DEK under one KVN, and its failed authentications."""

    kvn: int
    enc: bytes
    mac: bytes
    dek: bytes
    failures: int = 0

    @property
    def blocked(self) -> bool:
        return self.failures >= BLOCK_AFTER

    @property
    def refs(self) -> list[Ref]:
        return [(kid, self.kvn) for kid in (0x01, 0x02, 0x03)]

    def to_store(self) -> dict[str, Any]:
        return {"kvn": self.kvn, "enc": self.enc, "mac": self.mac, "dek": self.dek,
                "failures": self.failures}

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> Scp03KeySet:
        return cls(int(raw["kvn"]), bytes(raw["enc"]), bytes(raw["mac"]), bytes(raw["dek"]),
                   int(raw["failures"]))


@dataclass
class EcKey:
    """A P-256 key: an SCP11 key pair of the card (``private`` scalar) or an OCE CA's
    public key (``public`` point), and its failed authentications."""

    kid: int
    kvn: int
    private: bytes = b""
    public: bytes = b""
    failures: int = 0

    @property
    def ref(self) -> Ref:
        return self.kid, self.kvn

    @property
    def blocked(self) -> bool:
        return self.failures >= BLOCK_AFTER

    def to_store(self) -> dict[str, Any]:
        return {"kid": self.kid, "kvn": self.kvn, "private": self.private,
                "public": self.public, "failures": self.failures}

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> EcKey:
        return cls(int(raw["kid"]), int(raw["kvn"]), bytes(raw["private"]),
                   bytes(raw["public"]), int(raw["failures"]))


@dataclass
class CaIdentifier:
    """The subject key identifier of the CA behind a key: KLCC (the card's keys) or KLOC
    (the OCE's)."""

    klcc: bool
    ski: bytes

    def to_store(self) -> dict[str, Any]:
        return {"klcc": self.klcc, "ski": self.ski}

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> CaIdentifier:
        return cls(bool(raw["klcc"]), bytes(raw["ski"]))


@dataclass
class Authority:
    """The key's SCP certificate authority, a factory identity that survives a reset: the
    root's certificate (its private key was discarded after issuing) and the intermediate
    that certifies the card's SCP11 keys."""

    root_cert: bytes  # DER
    intermediate_key: bytes  # PKCS#8 DER
    intermediate_cert: bytes  # DER

    def to_store(self) -> dict[str, Any]:
        return {"root_cert": self.root_cert, "intermediate_key": self.intermediate_key,
                "intermediate_cert": self.intermediate_cert}

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> Authority:
        return cls(bytes(raw["root_cert"]), bytes(raw["intermediate_key"]),
                   bytes(raw["intermediate_cert"]))


@dataclass
class SdState:
    """Every key and datum of the Security Domain."""

    authority: Authority
    scp03: list[Scp03KeySet] = field(default_factory=list)
    ec_keys: list[EcKey] = field(default_factory=list)
    certificates: dict[Ref, list[bytes]] = field(default_factory=dict)
    allowlists: dict[Ref, list[int]] = field(default_factory=dict)
    ca_identifiers: dict[Ref, CaIdentifier] = field(default_factory=dict)

    def scp03_set(self, kvn: int) -> Scp03KeySet | None:
        return next((s for s in self.scp03 if s.kvn == kvn), None)

    def ec_key(self, ref: Ref) -> EcKey | None:
        return next((k for k in self.ec_keys if k.ref == ref), None)

    def refs(self) -> list[Ref]:
        """Every key reference, in the order GET DATA lists them."""
        return [r for s in self.scp03 for r in s.refs] + [k.ref for k in self.ec_keys]

    def forget(self, ref: Ref) -> None:
        """Drop what belongs to a deleted or replaced key."""
        self.certificates.pop(ref, None)
        self.allowlists.pop(ref, None)
        self.ca_identifiers.pop(ref, None)

    def to_store(self) -> dict[str, Any]:
        return {
            "authority": self.authority.to_store(),
            "scp03": [s.to_store() for s in self.scp03],
            "ec_keys": [k.to_store() for k in self.ec_keys],
            "certificates": {ref_name(r): list(c) for r, c in self.certificates.items()},
            "allowlists": {ref_name(r): [f"{s:x}" for s in v]
                           for r, v in self.allowlists.items()},
            "ca_identifiers": {ref_name(r): c.to_store()
                               for r, c in self.ca_identifiers.items()},
        }

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> SdState:
        return cls(
            Authority.from_store(raw["authority"]),
            [Scp03KeySet.from_store(s) for s in raw["scp03"]],
            [EcKey.from_store(k) for k in raw["ec_keys"]],
            {ref_of(n): [bytes(c) for c in v] for n, v in raw["certificates"].items()},
            {ref_of(n): [int(s, 16) for s in v] for n, v in raw["allowlists"].items()},
            {ref_of(n): CaIdentifier.from_store(c) for n, c in raw["ca_identifiers"].items()},
        )
