"""Which attestations a relying party trusts: python-fido2's ``AttestationVerifier`` over a
set of root certificates (PEM or DER), such as a virtual key's attestation root.

``Fido2Server(rp, attestation="direct", verify_attestation=TrustedRoots([pem]))`` then
accepts a registration only when its attestation statement verifies and its certificate
chain ends at one of those roots: what a site that allow-lists authenticator models does,
tested against a virtual key (``hwtoken emulate show NAME --attestation-root``, or
:func:`hwtoken.emulator.attestation_root_pem`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fido2.attestation import AttestationVerifier

from hwtoken.errors import InvalidInput

PEM_MARKER = b"-----BEGIN CERTIFICATE-----"


def load_certificates(data: bytes | str) -> list[x509.Certificate]:
    """Every certificate in ``data``: PEM (one or more) or a single DER certificate."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    try:
        if PEM_MARKER in raw:
            return list(x509.load_pem_x509_certificates(raw))
        return [x509.load_der_x509_certificate(raw)]
    except ValueError as exc:
        raise InvalidInput(f"not a certificate (PEM or DER): {exc}") from None


class TrustedRoots(AttestationVerifier):
    """An attestation verifier that trusts exactly ``roots`` (certificates, PEM or DER).

    ``ca_lookup`` returns the root whose subject issued the last certificate of the
    attestation's trust path; python-fido2 then verifies the chain up to it. Any other
    attestation (another vendor's, self attestation) is ``UntrustedAttestation``.
    """

    def __init__(self, roots: Iterable[bytes | str | x509.Certificate],
                 attestation_types: Sequence[Any] | None = None) -> None:
        super().__init__(attestation_types)
        self.roots: list[x509.Certificate] = []
        for root in roots:
            self.roots += [root] if isinstance(root, x509.Certificate) else \
                load_certificates(root)
        if not self.roots:
            raise InvalidInput("no root certificate to trust")

    @classmethod
    def from_files(cls, *paths: str | os.PathLike[str]) -> TrustedRoots:
        """Trust the certificates in these files (PEM or DER)."""
        return cls(Path(p).read_bytes() for p in paths)

    def ca_lookup(self, attestation_result: Any, auth_data: Any) -> bytes | None:
        path = list(attestation_result.trust_path or [])
        if not path:
            return None
        issuer = x509.load_der_x509_certificate(bytes(path[-1])).issuer
        for root in self.roots:
            if root.subject == issuer:
                return root.public_bytes(Encoding.DER)
        return None


__all__ = ["TrustedRoots", "load_certificates"]
