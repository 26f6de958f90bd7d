"""What the YubiHSM Auth applet keeps in the key's ``hsmauth`` store section.

Layout (bytes are stored by the key store as base64)::

    {"management_key": 16 bytes, "management_retries": int,
     "credentials": [Credential, ...]}

Each record converts explicitly with ``to_store()`` / ``from_store()``; the applet writes
the state back and commits the store before it answers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

MANAGEMENT_KEY_LEN = 16
PASSWORD_LEN = 16
DEFAULT_MANAGEMENT_KEY = b"\0" * MANAGEMENT_KEY_LEN
INITIAL_RETRIES = 8
MAX_CREDENTIALS = 32
MIN_LABEL_LEN, MAX_LABEL_LEN = 1, 64
AES_KEY_LEN = 16
EC_PRIVATE_LEN = 32


class Algorithm(enum.IntEnum):
    """Credential algorithms (yubikit's ``hsmauth.ALGORITHM``)."""

    AES128_YUBICO_AUTHENTICATION = 38
    EC_P256_YUBICO_AUTHENTICATION = 39


@dataclass
class Credential:
    """One credential: its label, its long-lived keys and what guards them.

    Symmetric credentials hold K-ENC and K-MAC; asymmetric ones the private scalar SK-OCE.
    ``retries`` counts the wrong credential passwords still allowed.
    """

    label: bytes
    algorithm: Algorithm
    password: bytes
    touch: bool = False
    retries: int = INITIAL_RETRIES
    key_enc: bytes = b""
    key_mac: bytes = b""
    private: bytes = b""

    @property
    def symmetric(self) -> bool:
        return self.algorithm == Algorithm.AES128_YUBICO_AUTHENTICATION

    def to_store(self) -> dict[str, Any]:
        keys = ({"key_enc": self.key_enc, "key_mac": self.key_mac} if self.symmetric
                else {"private": self.private})
        return {"label": self.label, "algorithm": int(self.algorithm),
                "password": self.password, "touch": self.touch, "retries": self.retries,
                **keys}

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> Credential:
        return cls(bytes(raw["label"]), Algorithm(int(raw["algorithm"])),
                   bytes(raw["password"]), bool(raw["touch"]), int(raw["retries"]),
                   bytes(raw.get("key_enc", b"")), bytes(raw.get("key_mac", b"")),
                   bytes(raw.get("private", b"")))


@dataclass
class HsmAuthState:
    """The whole applet: the management key, its retry counter and the credentials."""

    management_key: bytes = DEFAULT_MANAGEMENT_KEY
    management_retries: int = INITIAL_RETRIES
    credentials: list[Credential] = field(default_factory=list)

    def find(self, label: bytes) -> Credential | None:
        return next((c for c in self.credentials if c.label == label), None)

    def to_store(self) -> dict[str, Any]:
        return {"management_key": self.management_key,
                "management_retries": self.management_retries,
                "credentials": [c.to_store() for c in self.credentials]}

    @classmethod
    def from_store(cls, raw: dict[str, Any]) -> HsmAuthState:
        if not raw:
            return cls()
        return cls(bytes(raw["management_key"]), int(raw["management_retries"]),
                   [Credential.from_store(c) for c in raw["credentials"]])
