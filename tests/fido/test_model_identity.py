"""The model's identity as a relying party sees it: each profile's published AAGUID (in
getInfo, in the attested credential data and in the attestation certificate), --aaguid,
and the attestation root exported in the forms an RP test trusts: python-fido2's
Fido2Server with an attestation verifier (TrustedRoots), and a plain PEM."""

from __future__ import annotations

import uuid

import pytest
from cryptography import x509
from fido2.attestation import UntrustedAttestation
from fido2.ctap2 import Ctap2
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity

from hwtoken.emulator import VirtualKey, attestation_root_pem, fido_device
from hwtoken.emulator.applets.fido.attestation import OID_AAGUID, attestation_certificate
from hwtoken.emulator.profiles import PROFILES
from hwtoken.fido.trust import TrustedRoots, load_certificates
from hwtoken.testing import WebAuthnHelper

#: Yubico's "YubiKey hardware FIDO2 AAGUIDs" (docs/ctap2.md cites it)
PUBLISHED = {"yubikey-5": "a25342c0-3cdc-4414-8e46-f4807fca511c",
             "security-key": "e77e3c64-05e3-428b-8824-0cbeb04b829d",
             "latest": "f4ce5fc0-57d3-46f5-a736-efb7d5bc63b5",
             "u2f-only": "00000000-0000-0000-0000-000000000000",
             "yubikey-bio": "d8522d9f-575b-4866-88a9-ba99fa02f35b"}


def rp_with_trust(*roots) -> Fido2Server:
    return Fido2Server(PublicKeyCredentialRpEntity(name="Example", id="example.com"),
                       attestation="direct", verify_attestation=TrustedRoots(roots))


def cert_aaguid(key: VirtualKey) -> str | None:
    cert = x509.load_der_x509_certificate(attestation_certificate(key))
    try:
        ext = cert.extensions.get_extension_for_oid(OID_AAGUID)
    except x509.ExtensionNotFound:
        return None
    return str(uuid.UUID(bytes=ext.value.value[2:]))


def test_every_profile_has_its_published_aaguid():
    assert {name: str(uuid.UUID(bytes=p.aaguid_bytes)) for name, p in PROFILES.items()} == \
        PUBLISHED


@pytest.mark.parametrize("virtual_key", ["yubikey-5", "security-key", "latest"],
                         indirect=True)
def test_the_rp_sees_the_models_aaguid_and_trusts_the_exported_root(virtual_key):
    """getInfo, the registration's attested credential data and the certificate's
    id-fido-gen-ce-aaguid extension all carry the AAGUID; Fido2Server verifies the packed
    attestation up to the exported root."""
    published = PUBLISHED[virtual_key.profile.name]
    device = fido_device(virtual_key)
    try:
        assert str(Ctap2(device).get_info().aaguid) == published
        helper = WebAuthnHelper(device)
        helper.server = rp_with_trust(attestation_root_pem(virtual_key))
        registration = helper.register("alice")
    finally:
        device.close()
    assert str(registration.credential.aaguid) == published
    assert registration.response.response.attestation_object.fmt == "packed"
    assert cert_aaguid(virtual_key) == published


def test_a_root_from_another_key_is_not_trusted(virtual_key, tmp_path):
    with VirtualKey.create(tmp_path / "other.key") as other:
        other_root = attestation_root_pem(other)
    device = fido_device(virtual_key)
    try:
        helper = WebAuthnHelper(device)
        helper.server = rp_with_trust(other_root)
        with pytest.raises(UntrustedAttestation):
            helper.register("alice")
        assert helper.credentials == []
    finally:
        device.close()


def test_aaguid_override_and_a_key_made_before_profiles_had_one(tmp_path):
    """--aaguid (here a fixed one) replaces the model's everywhere, attestation included;
    a key whose state file holds a random AAGUID (every key made before this change) keeps
    it, and its attestation still verifies."""
    fixed = "00112233-4455-6677-8899-aabbccddeeff"
    with VirtualKey.create(tmp_path / "fixed.key", aaguid=fixed) as key:
        assert str(uuid.UUID(bytes=key.aaguid)) == fixed and cert_aaguid(key) == fixed
    old = tmp_path / "old.key"
    with VirtualKey.create(old, aaguid="random") as key:
        random_aaguid = str(uuid.UUID(bytes=key.aaguid))
    assert random_aaguid not in PUBLISHED.values()
    with VirtualKey.load(old) as key:
        device = fido_device(key)
        try:
            assert str(Ctap2(device).get_info().aaguid) == random_aaguid
            helper = WebAuthnHelper(device)
            helper.server = rp_with_trust(attestation_root_pem(key))
            assert str(helper.register("bob").credential.aaguid) == random_aaguid
            assert helper.authenticate().credential_id == helper.credentials[0].credential_id
        finally:
            device.close()


def test_the_u2f_model_has_no_aaguid_in_its_certificate(tmp_path):
    with VirtualKey.create(tmp_path / "u2f.key", profile="u2f-only") as key:
        assert key.aaguid == bytes(16) and cert_aaguid(key) is None


def test_trusted_roots_take_pem_files_der_and_refuse_garbage(virtual_key, tmp_path):
    from hwtoken.errors import InvalidInput

    pem = attestation_root_pem(virtual_key)
    path = tmp_path / "root.pem"
    path.write_text(pem + pem)  # two certificates in one file
    assert len(TrustedRoots.from_files(path).roots) == 2
    [cert] = load_certificates(pem)
    der = cert.public_bytes(__import__("cryptography").hazmat.primitives.serialization
                            .Encoding.DER)
    assert TrustedRoots([der]).roots == [cert]
    with pytest.raises(InvalidInput, match="not a certificate"):
        TrustedRoots([b"nonsense"])
    with pytest.raises(InvalidInput, match="no root certificate"):
        TrustedRoots([])


def test_the_cli_exports_the_same_root(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hwtoken import paths
    from hwtoken.cli import cli

    monkeypatch.setenv("HWTOKEN_STATE_DIR", str(tmp_path))
    made = CliRunner().invoke(cli, ["emulate", "create", "k", "--profile", "security-key"])
    assert made.exit_code == 0 and PUBLISHED["security-key"] in made.output
    shown = CliRunner().invoke(cli, ["emulate", "show", "k", "--attestation-root"])
    with VirtualKey.load(paths.virtual_key_path("k")) as key:
        assert shown.exit_code == 0 and shown.stdout == attestation_root_pem(key)


def test_trusted_roots_add_up_and_say_exactly_what_is_missing(virtual_key):
    from hwtoken.errors import InvalidInput

    pem = attestation_root_pem(virtual_key)
    [cert] = load_certificates(pem)
    assert TrustedRoots([cert, pem]).roots == [cert, cert]  # an object, then a PEM
    with pytest.raises(InvalidInput, match="^no root certificate to trust$"):
        TrustedRoots([])


def test_trusted_roots_check_only_the_attestation_types_they_are_given(virtual_key):
    from fido2.attestation import FidoU2FAttestation, UnsupportedType

    device = fido_device(virtual_key)
    try:
        helper = WebAuthnHelper(device)
        helper.server = Fido2Server(
            PublicKeyCredentialRpEntity(name="Example", id="example.com"), attestation="direct",
            verify_attestation=TrustedRoots([attestation_root_pem(virtual_key)],
                                            attestation_types=[FidoU2FAttestation()]))
        with pytest.raises(UnsupportedType):  # the key's packed attestation is not one
            helper.register("alice")
    finally:
        device.close()
