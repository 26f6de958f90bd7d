"""The card's SCP11 keys and their certificates, and the Security Domain's factory state.

A YubiKey (5.7.2+) leaves the factory with the default SCP03 key set (KVN ``FF``, keys
``40..4F``) and an SCP11b key (``13 01``) whose certificate chain Yubico's CA signed; keys it
generates later are certified the same way. Here each virtual key gets its own CA the first
time the Security Domain is used (made like the PIV attestation CA): a root, whose subject
key identifier the card lists as the KLCC CA of its SCP11b key, and an intermediate that
certifies every SCP11 key the card generates (keyAgreement). A certificate bundle is
[intermediate, leaf]; ``hwtoken emulate show NAME --scp-ca`` prints the root.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from hwtoken.emulator.applets.securitydomain.records import (
    DEFAULT_KEY,
    DEFAULT_KVN,
    DEFAULT_SCP11B_KVN,
    KID_SCP11B,
    Authority,
    CaIdentifier,
    EcKey,
    Ref,
    Scp03KeySet,
    SdState,
)

SCALAR_LEN = 32


def new_authority(serial: int) -> Authority:
    """A root and an intermediate CA for the key with ``serial`` (P-256)."""
    from hwtoken.emulator.applets import pki

    made = pki.new_authority(f"hwtoken Virtual SCP Root CA {serial}",
                             f"hwtoken Virtual SCP Attestation {serial}")
    return Authority(made.root_cert,
                     made.key.private_bytes(Encoding.DER, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()),
                     made.cert)


def point(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> bytes:
    """The uncompressed point of a P-256 key."""
    public = key.public_key() if isinstance(key, ec.EllipticCurvePrivateKey) else key
    return public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)


def scalar(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_numbers().private_value.to_bytes(SCALAR_LEN, "big")


def private_key(value: bytes) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(value, "big"), ec.SECP256R1())


def certify(authority: Authority, public: ec.EllipticCurvePublicKey, ref: Ref,
            serial: int) -> list[bytes]:
    """The bundle [intermediate, leaf] for the card's key ``public`` at ``ref``."""
    issuer = x509.load_der_x509_certificate(authority.intermediate_cert)
    signer = serialization.load_der_private_key(authority.intermediate_key, None)
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=True,
                          key_cert_sign=False, crl_sign=False, encipher_only=False,
                          decipher_only=False)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hwtoken"),
        x509.NameAttribute(NameOID.COMMON_NAME,
                           f"hwtoken Virtual SCP11 Key {ref[0]:02X}{ref[1]:02X} {serial}")])
    leaf = (x509.CertificateBuilder()
            .subject_name(subject).issuer_name(issuer.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(issuer.not_valid_before_utc)
            .not_valid_after(issuer.not_valid_after_utc)
            .add_extension(usage, critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.public_key()), critical=False)  # type: ignore[arg-type]
            .sign(signer, hashes.SHA256()))  # type: ignore[arg-type]
    return [authority.intermediate_cert, leaf.public_bytes(Encoding.DER)]


def generate(state: SdState, ref: Ref, serial: int) -> EcKey:
    """A new SCP11 key pair at ``ref``, certified by the card (not yet in ``state``'s keys;
    its bundle is)."""
    key = ec.generate_private_key(ec.SECP256R1())
    state.certificates[ref] = certify(state.authority, key.public_key(), ref, serial)
    return EcKey(ref[0], ref[1], private=scalar(key))


def factory_state(serial: int, authority: Authority | None = None) -> SdState:
    """The Security Domain as it leaves the factory, or as a reset leaves it (``authority``
    kept): the default SCP03 keys and a new, certified SCP11b key."""
    authority = authority or new_authority(serial)
    state = SdState(authority, [Scp03KeySet(DEFAULT_KVN, DEFAULT_KEY, DEFAULT_KEY,
                                            DEFAULT_KEY)])
    ref = (KID_SCP11B, DEFAULT_SCP11B_KVN)
    state.ec_keys.append(generate(state, ref, serial))
    root = x509.load_der_x509_certificate(authority.root_cert)
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    state.ca_identifiers[ref] = CaIdentifier(klcc=True, ski=ski)
    return state
