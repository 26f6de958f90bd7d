"""The PIV attestation roots hwtoken ships, and the chain check on made-up chains.

The shipped files are Yubico's published certificates (see their headers for the
source): the fingerprints below were taken from Yubico's list and from a second,
independent copy, and a replaced or added certificate fails here.
"""

from __future__ import annotations

import datetime
import subprocess
from importlib.resources import files

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hwtoken.errors import InvalidInput
from hwtoken.provision import attestation
from hwtoken.provision.attestation import AttestationFailed, Trust

ROOTS = {
    "CN=Yubico PIV Root CA Serial 263751":
        "63ece914e54dd87915f34033c85af4c0696ba1512f8add66ced738331207b546",
    "CN=Yubico Attestation Root 1":
        "62760c6a6ef91679f454c8902b80fd009825b3f25da90f1fbace2ec6586cd5a8",
}
INTERMEDIATES = {
    "CN=Yubico PIV Attestation A 1":
        "6de693f05376f5d8ca29069261e1c8626c75d503bd2edbfd75354cad1f722870",
    "CN=Yubico Attestation Intermediate A 1":
        "4698a1d3389c3ec60016c216250f1d0439922832d65142327436376dc2942b55",
    "CN=Yubico PIV Attestation B 1":
        "2d55b7998f4e42569d6d8fa382b6dc77d1dacf07358b19701163892922b17052",
    "CN=Yubico Attestation Intermediate B 1":
        "d4cc3f456fdaf4e7812a21aab1dfe9d8e27d24e2fd2d6f21c9940109f0daa754",
}


def _fingerprints(certs) -> dict[str, str]:  # noqa: ANN001
    return {c.subject.rfc4514_string(): c.fingerprint(hashes.SHA256()).hex() for c in certs}


def test_the_shipped_roots_and_intermediates_are_yubicos():
    trust = attestation.yubico()
    assert _fingerprints(trust.roots) == ROOTS
    assert _fingerprints(trust.intermediates) == INTERMEDIATES


def test_openssl_verifies_the_intermediates_up_to_the_shipped_root():
    data = files("hwtoken").joinpath("data")
    roots = str(data.joinpath(attestation.ROOTS_FILE))
    inter = str(data.joinpath(attestation.INTERMEDIATES_FILE))
    proc = subprocess.run(["openssl", "verify", "-CAfile", roots, "-untrusted", inter, inter],
                          capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"{inter}: OK")


def _cert(subject: str, key, issuer_name: str, issuer_key, *, ca: bool = True,  # noqa: ANN001
          serial_ext: bytes | None = None, public=None):  # noqa: ANN001
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
               .public_key(public or key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
    if serial_ext is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(
            x509.ObjectIdentifier(attestation.OID_SERIAL), serial_ext), False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def chain():
    """root -> intermediate -> F9 -> a slot's attestation (serial 12345678)."""
    keys = {n: ec.generate_private_key(ec.SECP256R1()) for n in ("root", "inter", "f9", "slot")}
    root = _cert("root", keys["root"], "root", keys["root"])
    inter = _cert("inter", keys["inter"], "root", keys["root"])
    f9 = _cert("f9", keys["f9"], "inter", keys["inter"])
    slot = _cert("slot", keys["slot"], "f9", keys["f9"], ca=False,
                 serial_ext=b"\x02\x04" + (12345678).to_bytes(4, "big"))
    return root, inter, f9, slot, keys


def test_a_chain_through_an_intermediate_ends_at_its_root(chain):
    root, inter, f9, slot, keys = chain
    trust = Trust((root,), (inter,))
    assert attestation.chain_to_root(f9, trust) == root
    attestation.check(slot, f9, trust, keys["slot"].public_key(), 12345678, "9a")
    with pytest.raises(AttestationFailed, match="does not chain to Yubico's PIV roots"):
        attestation.chain_to_root(f9, Trust((root,)))  # the intermediate is missing
    with pytest.raises(AttestationFailed, match="does not chain to"):
        attestation.chain_to_root(f9, attestation.yubico())


def test_the_attestation_must_name_the_slots_key_and_the_keys_serial(chain):
    root, inter, f9, slot, keys = chain
    trust = Trust((root,), (inter,))
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(AttestationFailed, match="is for another key than the one in the slot"):
        attestation.check(slot, f9, trust, other.public_key(), 12345678, "9a")
    with pytest.raises(AttestationFailed, match="names key 12345678, not 87654321"):
        attestation.check(slot, f9, trust, keys["slot"].public_key(), 87654321, "9a")
    forged = _cert("slot", keys["slot"], "f9", other, ca=False)  # not signed by F9
    with pytest.raises(AttestationFailed, match="is not signed by the key's attestation key"):
        attestation.check(forged, f9, trust, keys["slot"].public_key(), 12345678, "9a")
    assert attestation.attested_serial(forged) is None


def test_attestation_roots_from_a_file(tmp_path, chain):
    from cryptography.hazmat.primitives.serialization import Encoding

    root = chain[0]
    good = tmp_path / "roots.pem"
    good.write_bytes(root.public_bytes(Encoding.PEM))
    trust = attestation.load(str(good))
    assert trust.roots == (root,) and trust.source == str(good)
    assert trust.intermediates == attestation.yubico().intermediates
    bad = tmp_path / "bad.pem"
    bad.write_text("no certificate here\n")
    with pytest.raises(InvalidInput, match="holds no PEM certificate"):
        attestation.load(str(bad))
    with pytest.raises(InvalidInput, match="cannot read --attestation-roots"):
        attestation.load(str(tmp_path / "missing.pem"))
