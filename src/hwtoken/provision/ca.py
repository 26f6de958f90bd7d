"""The admin's CA, which turns a PIV slot's CSR into its certificate.

Two kinds of :class:`Signer`:

* :class:`LocalCa` (``--ca-cert ca.pem --ca-key ca.key``): the CA's certificate and
  private key in files, the key's passphrase (if it has one) from stdin or
  ``$HWTOKEN_CA_PASSPHRASE``. It issues an end-entity certificate for the CSR's subject
  and public key: ``--days`` long, digitalSignature, client authentication and smart-card
  logon, the CA's key identifier;
* :class:`CommandCa` (``--ca-command CMD``): any program that reads a CSR (PEM) on stdin
  and writes the certificate (PEM or DER; a chain's first certificate) on stdout --
  ``openssl x509 -req -CA ...``, ``openssl ca -batch -in /dev/stdin ...``, ``step ca
  sign``, a corporate signer. CMD is split like a shell would split it, and run without
  one (wrap a pipeline in ``sh -c '...'``).

Whatever the signer, the station checks that the certificate is for the CSR's public key
before it writes it down (:func:`check_issued`).
"""

from __future__ import annotations

import datetime
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, Protocol

from hwtoken.errors import CheckFailed, InvalidInput

PASSPHRASE_ENV = "HWTOKEN_CA_PASSPHRASE"
COMMAND_TIMEOUT = 120.0  # seconds a --ca-command may take for one certificate
DEFAULT_DAYS = 365
OID_SMARTCARD_LOGON = "1.3.6.1.4.1.311.20.2.2"  # Microsoft's EKU for smart-card logon


class Signer(Protocol):
    """Issues a certificate for a CSR."""

    description: str

    def sign(self, csr: Any) -> Any:
        """The certificate (``x509.Certificate``) for ``csr``; :class:`CheckFailed` if the
        CA refuses or fails."""


class LocalCa:
    """A CA whose certificate and key are files on the station."""

    def __init__(self, cert_path: str, key_path: str, passphrase: bytes | None = None, *,
                 days: int = DEFAULT_DAYS) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        self.cert = _read_certificate(cert_path)
        key_data = _read(key_path, "--ca-key")
        try:
            self.key = load_pem_private_key(key_data, passphrase or None)
        except TypeError:  # encrypted without a passphrase, or one given for a plain key
            if passphrase:
                self.key = load_pem_private_key(key_data, None)
            else:
                raise InvalidInput(f"the CA key {key_path} is encrypted: give its passphrase "
                                   f"on stdin (--ca-passphrase -) or in ${PASSPHRASE_ENV}"
                                   ) from None
        except ValueError:
            raise InvalidInput(f"cannot read the CA key {key_path}: not a PEM private key, "
                               "or a wrong passphrase") from None
        if _spki(self.key.public_key()) != _spki(self.cert.public_key()):
            raise InvalidInput(f"the CA key {key_path} is not the key of {cert_path}")
        try:
            ca = self.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            ca = False
        if not ca:
            raise InvalidInput(f"{cert_path} is not a CA certificate (basicConstraints CA:TRUE)")
        self.days = days
        self.description = f"the CA {self.cert.subject.rfc4514_string()}"

    def sign(self, csr: Any) -> Any:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ed448, ed25519
        from cryptography.x509.oid import ExtendedKeyUsageOID

        if not csr.is_signature_valid:
            raise CheckFailed("the CSR's signature does not verify: the CA refused it")
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        public = csr.public_key()
        builder = (x509.CertificateBuilder()
                   .subject_name(csr.subject).issuer_name(self.cert.subject)
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=self.days))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                   .add_extension(x509.KeyUsage(
                       digital_signature=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                       key_cert_sign=False, crl_sign=False, encipher_only=False,
                       decipher_only=False), True)
                   .add_extension(x509.ExtendedKeyUsage([
                       ExtendedKeyUsageOID.CLIENT_AUTH,
                       x509.ObjectIdentifier(OID_SMARTCARD_LOGON)]), False)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       self.cert.public_key()), False))
        edwards = isinstance(self.key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        algorithm = None if edwards else hashes.SHA256()
        return builder.sign(self.key, algorithm)  # type: ignore[arg-type]


class CommandCa:
    """A program that reads a CSR on stdin and writes the certificate on stdout."""

    def __init__(self, command: str, *, timeout: float = COMMAND_TIMEOUT) -> None:
        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise InvalidInput(f"--ca-command cannot be split into words: {exc}") from None
        if not self.argv:
            raise InvalidInput("--ca-command is empty")
        if shutil.which(self.argv[0]) is None:
            raise InvalidInput(f"--ca-command: no program {self.argv[0]!r} (or it cannot be "
                               "run)")
        self.timeout = timeout
        self.description = f"the CA command {self.argv[0]}"

    def sign(self, csr: Any) -> Any:
        from cryptography.hazmat.primitives.serialization import Encoding

        try:
            proc = subprocess.run(self.argv, input=csr.public_bytes(Encoding.PEM),
                                  capture_output=True, timeout=self.timeout, check=False)
        except FileNotFoundError:
            raise CheckFailed(f"--ca-command: no program {self.argv[0]!r}") from None
        except PermissionError:
            raise CheckFailed(f"--ca-command: {self.argv[0]!r} cannot be run") from None
        except subprocess.TimeoutExpired:
            raise CheckFailed(f"{self.description} gave no certificate within "
                              f"{self.timeout:.0f} s") from None
        if proc.returncode != 0:
            said = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise CheckFailed(f"{self.description} exited {proc.returncode}"
                              + (f": {said[-1][:200]}" if said else ""))
        return _parse_certificate(proc.stdout, self.description)


def _read(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {option} {path}: {exc.strerror or exc}") from None


def _read_certificate(path: str) -> Any:
    from cryptography import x509

    data = _read(path, "--ca-cert")  # its InvalidInput (a ValueError) says why, as it is
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise InvalidInput(f"--ca-cert {path} holds no PEM certificate") from None


def _parse_certificate(data: bytes, who: str) -> Any:
    """The first certificate of PEM (a chain is fine) or DER output."""
    from cryptography import x509

    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificates(data)[0]
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise CheckFailed(f"{who} wrote no certificate on stdout") from None


def _spki(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return bytes(public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def check_issued(cert: Any, csr: Any, who: str) -> None:
    """The certificate ``who`` issued is for the CSR's public key."""
    if _spki(cert.public_key()) != _spki(csr.public_key()):
        raise CheckFailed(f"{who} issued a certificate for another public key than the CSR's")


def signer_from(*, ca_cert: str | None, ca_key: str | None, passphrase: str | None,
                ca_command: str | None, days: int = DEFAULT_DAYS) -> Signer | None:
    """The signer ``--ca-cert/--ca-key`` or ``--ca-command`` name (None for neither),
    checked before any key is touched (a wrong passphrase is refused here)."""
    if ca_command is not None and (ca_cert or ca_key):
        raise InvalidInput("give --ca-command, or --ca-cert with --ca-key: not both")
    if bool(ca_cert) != bool(ca_key):
        raise InvalidInput("--ca-cert and --ca-key go together (the CA's certificate and "
                           "its private key)")
    if passphrase is not None and not ca_key:
        raise InvalidInput("--ca-passphrase is the passphrase of --ca-key")
    if ca_command is not None:
        return CommandCa(ca_command)
    if ca_cert and ca_key:
        return LocalCa(ca_cert, ca_key, passphrase.encode() if passphrase else None, days=days)
    return None


def rehearsal_ca(directory: Path, *, passphrase: bytes | None = None,
                 name: str = "hwtoken rehearsal CA") -> tuple[Path, Path]:
    """A throwaway P-256 CA for a rehearsal on virtual keys (and tests): ``ca.pem`` and
    ``ca.key`` (0600; encrypted with ``passphrase`` if given) in ``directory``, valid ten
    years, for ``--ca-cert``/``--ca-key``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from hwtoken.fileio import atomic_write

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = Path(directory) / "ca.pem", Path(directory) / "ca.key"
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    atomic_write(key_path, key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8, encryption))
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path
