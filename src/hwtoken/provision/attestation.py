"""PIV attestation: proof that a key pair was generated on the key itself.

A YubiKey signs, with the attestation key in slot F9, a certificate for a key it
generated (``attest_key``); the F9 certificate chains to the vendor's root. So a station
that checks the chain and that the attested public key is the one in the slot knows the
private key never left the device (an imported key cannot be attested).

The trust anchors (:class:`Trust`):

* real keys: Yubico's PIV roots, shipped with hwtoken (``hwtoken/data/
  yubico-piv-attestation-roots.pem``: "Yubico PIV Root CA Serial 263751" before firmware
  5.7.4, "Yubico Attestation Root 1" after it), with Yubico's intermediates for the newer
  chain (``yubico-piv-attestation-intermediates.pem``); see those files for where they
  come from;
* virtual keys: each has its own root, the one ``hwtoken emulate show NAME
  --piv-attestation-root`` exports (:func:`virtual_root`);
* ``--attestation-roots FILE``: the roots an admin names instead (a PEM bundle).

The chain is checked link by link (issuer name and signature); validity dates are not
(attestation certificates say where a key was made, not until when).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwtoken.errors import CheckFailed, InvalidInput

ROOTS_FILE = "yubico-piv-attestation-roots.pem"
INTERMEDIATES_FILE = "yubico-piv-attestation-intermediates.pem"
OID_SERIAL = "1.3.6.1.4.1.41482.3.7"  # Yubico's attestation extension: the key's serial
MAX_CHAIN = 6  # links from F9 up to a root (Yubico's newest chain has three)


class AttestationFailed(CheckFailed):
    """The key does not prove that a key pair was made on it (or that it is genuine)."""


@dataclass(frozen=True)
class Trust:
    """Roots a chain must end at, and intermediates that may complete it."""

    roots: tuple[Any, ...]  # x509.Certificate
    intermediates: tuple[Any, ...] = field(default=())
    source: str = "Yubico's PIV roots"

    def with_root(self, root: Any, source: str) -> Trust:
        """These roots and ``root`` (a virtual key's own)."""
        return Trust((*self.roots, root), self.intermediates, f"{self.source} or {source}")


def _data(name: str) -> bytes:
    from importlib.resources import files

    return files("hwtoken").joinpath("data", name).read_bytes()


def yubico() -> Trust:
    """Yubico's PIV attestation roots and intermediates, as shipped."""
    from cryptography import x509

    return Trust(tuple(x509.load_pem_x509_certificates(_data(ROOTS_FILE))),
                 tuple(x509.load_pem_x509_certificates(_data(INTERMEDIATES_FILE))))


def load(path: str) -> Trust:
    """The roots in the PEM file ``path`` (``--attestation-roots``), with Yubico's
    intermediates (they only help a chain that ends at one of these roots)."""
    from cryptography import x509

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read --attestation-roots {path}: "
                           f"{exc.strerror or exc}") from None
    try:
        roots = tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise InvalidInput(f"--attestation-roots {path} holds no PEM certificate") from None
    return Trust(roots, yubico().intermediates, source=path)


def virtual_root(name: str) -> Any | None:
    """The PIV attestation root of virtual key ``name`` (what ``emulate show
    --piv-attestation-root`` exports), read without locking the key; None before its PIV
    applet was first used."""
    from cryptography import x509

    from hwtoken import paths
    from hwtoken.emulator.key import VirtualKey

    piv = VirtualKey.peek(paths.virtual_key_path(name)).data.get("piv") or {}
    root = piv.get("attestation_root")
    return x509.load_der_x509_certificate(bytes(root)) if root else None


def _issued_by(cert: Any, issuer: Any) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # noqa: BLE001 - InvalidSignature, a key of another type, a name mismatch
        return False
    return True


def chain_to_root(cert: Any, trust: Trust) -> Any:
    """The root ``cert`` (a key's F9 certificate) chains to, link by link; raises
    :class:`AttestationFailed` if none of ``trust``'s roots."""
    current = cert
    for _ in range(MAX_CHAIN):
        for root in trust.roots:
            if _issued_by(current, root):
                return root
        step = next((c for c in trust.intermediates if c != current and _issued_by(current, c)),
                    None)
        if step is None:
            break
        current = step
    raise AttestationFailed(f"its PIV attestation certificate ({cert.subject.rfc4514_string()},"
                            f" issued by {cert.issuer.rfc4514_string()}) does not chain to "
                            f"{trust.source}: not a genuine key, or the wrong roots (virtual "
                            "keys in a testbed: pass --attestation-roots with each key's "
                            "`hwtoken emulate show NAME --piv-attestation-root`)")


def attested_serial(cert: Any) -> int | None:
    """The serial number Yubico's extension of an attestation certificate carries."""
    from cryptography import x509

    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(OID_SERIAL))
    except x509.ExtensionNotFound:
        return None
    raw = bytes(ext.value.value)  # DER INTEGER
    if len(raw) < 2 or raw[0] != 0x02 or raw[1] != len(raw) - 2:
        return None
    return int.from_bytes(raw[2:], "big", signed=True)


def check(attestation: Any, f9: Any, trust: Trust, public_key: Any, serial: int,
          slot: str) -> None:
    """The key in ``slot`` was generated on the key ``serial``: its attestation certificate
    is issued by the F9 certificate, which chains to ``trust``, and attests ``public_key``
    and ``serial``. Raises :class:`AttestationFailed` saying which does not hold."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    def spki(key: Any) -> bytes:
        return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))

    if not _issued_by(attestation, f9):
        raise AttestationFailed(f"the attestation of PIV slot {slot} is not signed by the "
                                "key's attestation key (slot F9)")
    chain_to_root(f9, trust)
    if spki(attestation.public_key()) != spki(public_key):
        raise AttestationFailed(f"the attestation of PIV slot {slot} is for another key than "
                                "the one in the slot")
    got = attested_serial(attestation)
    if got != serial:
        raise AttestationFailed(f"the attestation of PIV slot {slot} names key {got}, not "
                                f"{serial}")
