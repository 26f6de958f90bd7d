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


# -- the serial extension, the chain's length, the exact refusals ------------------------------
@pytest.mark.parametrize(("value", "serial"), [
    (b"\x02\x04" + (12345678).to_bytes(4, "big"), 12345678),
    (b"\x02\x01\x07", 7),
    (b"\x02\x01\xff", -1),  # a DER INTEGER is signed
    (b"\x02\x02\x00\x80", 128),
    (b"\x02\x00", 0),  # no content octets (not DER, but nothing is cut off)
    (b"", None),
    (b"\x02", None),  # no length
    (b"\x04\x01\x07", None),  # an OCTET STRING, not an INTEGER
    (b"\x02\x02\x07", None),  # shorter than it says
    (b"\x02\x01\x07\x00", None),  # longer than it says
], ids=["four-bytes", "one-byte", "negative", "leading-zero", "empty-integer", "empty",
        "tag-only", "octet-string", "short", "long"])
def test_the_attested_serial_is_the_extensions_der_integer(value, serial):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("slot", key, "f9", key, ca=False, serial_ext=value)
    assert attestation.attested_serial(cert) == serial


def _chain_of(links: int):  # noqa: ANN202
    """root -> ``links`` intermediates -> F9: the F9 certificate, the trust, the root."""
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("root", root_key, "root", root_key)
    issuer, issuer_key, inters = "root", root_key, []
    for n in range(links):
        key = ec.generate_private_key(ec.SECP256R1())
        inters.append(_cert(f"inter{n}", key, issuer, issuer_key))
        issuer, issuer_key = f"inter{n}", key
    f9 = _cert("f9", ec.generate_private_key(ec.SECP256R1()), issuer, issuer_key)
    return f9, Trust((root,), tuple(reversed(inters))), root


def test_a_chain_is_followed_up_to_max_chain_links():
    assert attestation.MAX_CHAIN == 6
    for links in (0, 1, 5):  # F9 and five intermediates: six certificates to check
        f9, trust, root = _chain_of(links)
        assert attestation.chain_to_root(f9, trust) == root
    f9, trust, _ = _chain_of(6)
    with pytest.raises(AttestationFailed) as e:
        attestation.chain_to_root(f9, trust)
    assert str(e.value) == (
        "its PIV attestation certificate (CN=f9, issued by CN=inter5) does not chain to "
        "Yubico's PIV roots: not a genuine key, or the wrong roots (virtual keys in a "
        "testbed: pass --attestation-roots with each key's `hwtoken emulate show NAME "
        "--piv-attestation-root`)")


def test_a_root_among_several_and_intermediates_in_any_order(chain):
    root, inter, f9, _slot, _keys = chain
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("other", other_key, "other", other_key)
    unrelated = _cert("inter", ec.generate_private_key(ec.SECP256R1()), "other", other_key)
    trust = Trust((other, root), (unrelated, inter))
    assert attestation.chain_to_root(f9, trust) == root
    assert attestation.chain_to_root(inter, trust) == root
    assert attestation.chain_to_root(root, trust) == root  # a root issued itself


def test_a_self_issued_certificate_is_not_its_own_next_link():
    """F9 is self-issued and also listed as an intermediate; a cross-certificate for the
    same name and key, issued by the root, is the real next link."""
    root_key, f9_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(2))
    root = _cert("root", root_key, "root", root_key)
    f9 = _cert("f9", f9_key, "f9", f9_key)
    cross = _cert("f9", f9_key, "root", root_key)
    assert attestation.chain_to_root(f9, Trust((root,), (f9, cross))) == root
    with pytest.raises(AttestationFailed, match=r"^its PIV attestation certificate \(CN=f9, "
                       r"issued by CN=f9\) does not chain to the admin's roots: "):
        attestation.chain_to_root(f9, Trust((root,), (f9,), "the admin's roots"))


def test_with_root_adds_a_root_and_names_it(chain):
    root, inter, f9, _slot, _keys = chain
    trust = attestation.yubico().with_root(root, "the root of emu:k1")
    assert trust.roots == (*attestation.yubico().roots, root)
    assert trust.intermediates == attestation.yubico().intermediates
    assert trust.source == "Yubico's PIV roots or the root of emu:k1"
    assert attestation.chain_to_root(inter, trust) == root


def test_the_checks_refusals_name_the_slot_and_the_serials(chain):
    root, inter, f9, slot, keys = chain
    trust = Trust((root,), (inter,))

    def refusal(*args) -> str:  # noqa: ANN002
        with pytest.raises(AttestationFailed) as e:
            attestation.check(*args)
        return str(e.value)

    forged = _cert("slot", keys["slot"], "f9", keys["root"], ca=False)
    assert refusal(forged, f9, trust, keys["slot"].public_key(), 12345678, "9c") == (
        "the attestation of PIV slot 9c is not signed by the key's attestation key (slot F9)")
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert refusal(slot, f9, trust, other, 12345678, "9d") == (
        "the attestation of PIV slot 9d is for another key than the one in the slot")
    assert refusal(slot, f9, trust, keys["slot"].public_key(), 1, "9e") == (
        "the attestation of PIV slot 9e names key 12345678, not 1")
    unserialed = _cert("slot", keys["slot"], "f9", keys["f9"], ca=False)
    assert refusal(unserialed, f9, trust, keys["slot"].public_key(), 1, "82") == (
        "the attestation of PIV slot 82 names key None, not 1")
    assert refusal(slot, f9, Trust((root,), (), "nothing"), keys["slot"].public_key(),
                   12345678, "9a").endswith("issued by CN=inter) does not chain to nothing: "
                                            "not a genuine key, or the wrong roots (virtual "
                                            "keys in a testbed: pass --attestation-roots "
                                            "with each key's `hwtoken emulate show NAME "
                                            "--piv-attestation-root`)")


def test_a_virtual_keys_own_root(tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding
    from piv_helpers import pool_key

    from hwtoken import paths
    from hwtoken.emulator.key import VirtualKey

    device, _serial = pool_key(1, "attest")
    name = device.removeprefix("emu:")
    key = VirtualKey.load(paths.virtual_key_path(name))
    try:
        der = key.piv.attestation_root
    finally:
        key.close()
    root = attestation.virtual_root(name)
    assert root.public_bytes(Encoding.DER) == der
    assert root == x509.load_der_x509_certificate(der)
    # a key whose PIV state has no root yet, or no PIV state at all (never used)
    for piv in ({}, None):
        store = VirtualKey.peek(paths.virtual_key_path(name))
        if piv is None:
            del store.data["piv"]
        else:
            store.data["piv"] = piv
        store.commit()
        assert attestation.virtual_root(name) is None


def test_attestation_roots_from_a_file_name_the_file_and_the_reason(tmp_path, chain):
    from cryptography.hazmat.primitives.serialization import Encoding

    root, inter = chain[0], chain[1]
    both = tmp_path / "roots.pem"
    both.write_bytes(root.public_bytes(Encoding.PEM) + inter.public_bytes(Encoding.PEM))
    assert attestation.load(str(both)).roots == (root, inter)
    with pytest.raises(InvalidInput) as e:
        attestation.load(str(tmp_path / "missing.pem"))
    assert str(e.value) == (f"cannot read --attestation-roots {tmp_path / 'missing.pem'}: "
                            "No such file or directory")
    with pytest.raises(InvalidInput) as e:
        attestation.load(str(tmp_path))
    assert str(e.value) == f"cannot read --attestation-roots {tmp_path}: Is a directory"
    bad = tmp_path / "bad.pem"
    bad.write_text("no certificate here\n")
    with pytest.raises(InvalidInput) as e:
        attestation.load(str(bad))
    assert str(e.value) == f"--attestation-roots {bad} holds no PEM certificate"
