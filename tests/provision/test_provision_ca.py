"""The admin's CA (hwtoken.provision.ca) in-process: the files --ca-cert/--ca-key name, the
certificate a LocalCa issues, a --ca-command run as a real program (sh, openssl), and the
throwaway rehearsal CA, each checked field by field with ``cryptography``."""

from __future__ import annotations

import datetime
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hwtoken.errors import CheckFailed, InvalidInput
from hwtoken.provision import ca
from hwtoken.provision.ca import CommandCa, LocalCa, check_issued, rehearsal_ca, signer_from

SMARTCARD_LOGON = x509.ObjectIdentifier("1.3.6.1.4.1.311.20.2.2")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _csr(key=None, cn: str = "alice"):  # noqa: ANN001, ANN202
    key = key or ec.generate_private_key(ec.SECP256R1())
    return x509.CertificateSigningRequestBuilder().subject_name(_name(cn)).sign(
        key, hashes.SHA256()), key


def _ca_files(directory: Path, key, *, basic: x509.BasicConstraints | None = None,  # noqa: ANN001
              password: bytes | None = None, cn: str = "Test CA") -> tuple[str, str]:
    """A self-signed certificate for ``key`` (with ``basic`` if given) and its key, as PEM."""
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=1))
               .not_valid_after(now + datetime.timedelta(days=30)))
    if basic is not None:
        builder = builder.add_extension(basic, True)
    edwards = isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    cert = builder.sign(key, None if edwards else hashes.SHA256())
    cert_path, key_path = directory / f"{cn}.pem", directory / f"{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encryption = (serialization.BestAvailableEncryption(password) if password
                  else serialization.NoEncryption())
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8, encryption))
    return str(cert_path), str(key_path)


def _error(kind: type[Exception], fn, *args, **kwargs) -> str:  # noqa: ANN001
    with pytest.raises(kind) as e:
        fn(*args, **kwargs)
    assert type(e.value) is kind
    return str(e.value)


# -- LocalCa: the files ------------------------------------------------------------------------
def test_local_ca_reads_its_certificate_and_key(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path, name="Station CA")
    local = LocalCa(str(cert_path), str(key_path))
    assert local.cert == x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert local.key.private_numbers() == serialization.load_pem_private_key(
        key_path.read_bytes(), None).private_numbers()
    assert local.days == ca.DEFAULT_DAYS == 365
    assert LocalCa(str(cert_path), str(key_path), days=7).days == 7
    assert local.description == "the CA CN=Station CA"


def test_missing_or_unreadable_files_are_named_with_the_reason(tmp_path):
    # the CA certificate's read error was reported as "holds no PEM certificate" (the
    # InvalidInput of the read is a ValueError, and was caught as a parse error)
    cert_path, key_path = rehearsal_ca(tmp_path)
    missing = tmp_path / "none.pem"
    assert _error(InvalidInput, LocalCa, str(missing), str(key_path)) == (
        f"cannot read --ca-cert {missing}: No such file or directory")
    assert _error(InvalidInput, LocalCa, str(cert_path), str(missing)) == (
        f"cannot read --ca-key {missing}: No such file or directory")
    assert _error(InvalidInput, LocalCa, str(cert_path), str(tmp_path)) == (
        f"cannot read --ca-key {tmp_path}: Is a directory")
    assert _error(InvalidInput, LocalCa, str(key_path), str(key_path)) == (
        f"--ca-cert {key_path} holds no PEM certificate")
    assert _error(InvalidInput, LocalCa, str(cert_path), str(cert_path)) == (
        f"cannot read the CA key {cert_path}: not a PEM private key, or a wrong passphrase")


def test_an_encrypted_ca_key_needs_its_passphrase(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path, passphrase=b"ca secret")
    assert b"ENCRYPTED" in key_path.read_bytes()
    for none in (None, b""):
        assert _error(InvalidInput, LocalCa, str(cert_path), str(key_path), none) == (
            f"the CA key {key_path} is encrypted: give its passphrase on stdin "
            "(--ca-passphrase -) or in $HWTOKEN_CA_PASSPHRASE")
    assert _error(InvalidInput, LocalCa, str(cert_path), str(key_path), b"wrong") == (
        f"cannot read the CA key {key_path}: not a PEM private key, or a wrong passphrase")
    local = LocalCa(str(cert_path), str(key_path), b"ca secret")
    assert local.key.public_key() == local.cert.public_key()


def test_a_passphrase_given_for_a_plain_key_is_not_needed(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path)
    local = LocalCa(str(cert_path), str(key_path), b"not needed")
    assert local.key.public_key() == local.cert.public_key()
    assert local.description == "the CA CN=hwtoken rehearsal CA"
    cert, _ = _csr()
    local.sign(cert).verify_directly_issued_by(local.cert)


def test_the_key_must_be_the_certificates(tmp_path):
    cert_path, _ = rehearsal_ca(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _, other_key = rehearsal_ca(other)
    assert _error(InvalidInput, LocalCa, str(cert_path), str(other_key)) == (
        f"the CA key {other_key} is not the key of {cert_path}")


@pytest.mark.parametrize("basic", [None, x509.BasicConstraints(ca=False, path_length=None)],
                         ids=["no-basic-constraints", "ca-false"])
def test_the_certificate_must_be_a_cas(tmp_path, basic):
    cert_path, key_path = _ca_files(tmp_path, ec.generate_private_key(ec.SECP256R1()),
                                    basic=basic)
    assert _error(InvalidInput, LocalCa, cert_path, key_path) == (
        f"{cert_path} is not a CA certificate (basicConstraints CA:TRUE)")


# -- LocalCa: what it issues -------------------------------------------------------------------
def test_the_issued_certificate_field_by_field(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path, name="Issuing CA")
    local = LocalCa(str(cert_path), str(key_path), days=30)
    csr, key = _csr(cn="bob")
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cert = local.sign(csr)
    after = datetime.datetime.now(datetime.UTC)
    cert.verify_directly_issued_by(local.cert)
    assert cert.version is x509.Version.v3
    assert cert.subject == csr.subject == _name("bob")
    assert cert.issuer == local.cert.subject == _name("Issuing CA")
    assert cert.public_key() == key.public_key()
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    start = cert.not_valid_before_utc + datetime.timedelta(minutes=5)
    assert before <= start <= after and start.microsecond == 0
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(
        days=30, minutes=5)
    ext = {e.oid: e for e in cert.extensions}
    assert len(ext) == 5
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value == x509.BasicConstraints(ca=False, path_length=None)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value == x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert not eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.CLIENT_AUTH, SMARTCARD_LOGON]
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert not aki.critical
    assert aki.value.key_identifier == local.cert.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert local.sign(csr).serial_number != cert.serial_number  # a fresh serial each time


def test_the_default_validity_is_a_year(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path)
    cert = LocalCa(str(cert_path), str(key_path)).sign(_csr()[0])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(
        days=365, minutes=5)


def test_a_csr_whose_signature_does_not_verify_is_refused(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path)
    csr, _ = _csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-1] ^= 1  # the signature's last bit
    forged = x509.load_der_x509_csr(bytes(der))
    assert not forged.is_signature_valid
    assert _error(CheckFailed, LocalCa(str(cert_path), str(key_path)).sign, forged) == (
        "the CSR's signature does not verify: the CA refused it")


@pytest.mark.parametrize("make", [
    lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ed25519.Ed25519PrivateKey.generate,
    ed448.Ed448PrivateKey.generate,
], ids=["rsa", "ed25519", "ed448"])
def test_cas_of_other_key_types_sign(tmp_path, make):
    cert_path, key_path = _ca_files(tmp_path, make(),
                                    basic=x509.BasicConstraints(ca=True, path_length=None))
    local = LocalCa(cert_path, key_path)
    cert = local.sign(_csr()[0])
    cert.verify_directly_issued_by(local.cert)
    edwards = not isinstance(local.key, rsa.RSAPrivateKey)
    assert (cert.signature_hash_algorithm is None) is edwards
    if not edwards:
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


# -- CommandCa ---------------------------------------------------------------------------------
def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_a_ca_command_is_split_like_a_shell_and_must_exist(tmp_path):
    command = CommandCa("sh -c 'cat >/dev/null' 'two words'")
    assert command.argv == ["sh", "-c", "cat >/dev/null", "two words"]
    assert command.timeout == ca.COMMAND_TIMEOUT == 120.0
    assert command.description == "the CA command sh"
    assert CommandCa("true", timeout=3).timeout == 3
    assert _error(InvalidInput, CommandCa, "sh -c 'unbalanced") == (
        "--ca-command cannot be split into words: No closing quotation")
    for empty in ("", "   "):
        assert _error(InvalidInput, CommandCa, empty) == "--ca-command is empty"
    assert _error(InvalidInput, CommandCa, "no-such-signer --in -") == (
        "--ca-command: no program 'no-such-signer' (or it cannot be run)")
    plain = tmp_path / "not-executable"
    plain.write_text("#!/bin/sh\n")
    assert _error(InvalidInput, CommandCa, str(plain)) == (
        f"--ca-command: no program {str(plain)!r} (or it cannot be run)")


def test_openssl_as_the_ca_command(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path, name="OpenSSL CA")
    csr, key = _csr(cn="carol")
    command = CommandCa(f"openssl x509 -req -CA {cert_path} -CAkey {key_path} -days 2")
    cert = command.sign(csr)
    assert cert.subject == _name("carol") and cert.issuer == _name("OpenSSL CA")
    assert cert.public_key() == key.public_key()
    check_issued(cert, csr, command.description)


def test_the_command_reads_the_csr_as_pem_and_its_first_certificate_counts(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path)
    local = LocalCa(str(cert_path), str(key_path))
    csr, _ = _csr()
    issued = local.sign(csr)
    chain = tmp_path / "chain.pem"
    chain.write_bytes(issued.public_bytes(serialization.Encoding.PEM)
                      + local.cert.public_bytes(serialization.Encoding.PEM))
    got = tmp_path / "stdin.pem"
    command = CommandCa(_script(tmp_path / "signer", f"cat > {got}\ncat {chain}\n"))
    assert command.sign(csr) == issued
    assert got.read_bytes() == csr.public_bytes(serialization.Encoding.PEM)


def test_a_der_certificate_on_stdout(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path)
    issued = LocalCa(str(cert_path), str(key_path)).sign(_csr()[0])
    der = tmp_path / "cert.der"
    der.write_bytes(issued.public_bytes(serialization.Encoding.DER))
    command = CommandCa(_script(tmp_path / "signer", f"cat >/dev/null\ncat {der}\n"))
    assert command.sign(_csr()[0]) == issued


@pytest.mark.parametrize("output", [b"", b"not a certificate\n",
                                    b"-----BEGIN CERTIFICATE-----\nAAAA\n"
                                    b"-----END CERTIFICATE-----\n"],
                         ids=["nothing", "text", "bad-pem"])
def test_output_that_is_no_certificate_is_refused(tmp_path, output):
    out = tmp_path / "out"
    out.write_bytes(output)
    script = _script(tmp_path / "signer", f"cat >/dev/null\ncat {out}\n")
    assert _error(CheckFailed, CommandCa(script).sign, _csr()[0]) == (
        f"the CA command {script} wrote no certificate on stdout")


def test_a_failing_command_says_its_status_and_its_last_line(tmp_path):
    csr, _ = _csr()
    said = CommandCa("sh -c 'cat >/dev/null; echo first >&2; echo \"  last words  \" >&2; "
                     "echo >&2; exit 3'")
    assert _error(CheckFailed, said.sign, csr) == "the CA command sh exited 3:   last words"
    silent = CommandCa("sh -c 'cat >/dev/null; exit 4'")
    assert _error(CheckFailed, silent.sign, csr) == "the CA command sh exited 4"
    long = CommandCa("sh -c 'cat >/dev/null; printf \"%0300d\\377\" 0 >&2; exit 1'")
    assert _error(CheckFailed, long.sign, csr) == "the CA command sh exited 1: " + "0" * 200
    bad = CommandCa("sh -c 'cat >/dev/null; printf \"bad \\377 byte\" >&2; exit 1'")
    assert _error(CheckFailed, bad.sign, csr) == "the CA command sh exited 1: bad \ufffd byte"


def test_a_command_gone_or_no_longer_executable_when_it_is_run(tmp_path):
    csr, _ = _csr()
    script = _script(tmp_path / "signer", "cat\n")
    gone = CommandCa(script)
    os.unlink(script)
    assert _error(CheckFailed, gone.sign, csr) == f"--ca-command: no program {script!r}"
    script = _script(tmp_path / "signer", "cat\n")
    locked = CommandCa(script)
    os.chmod(script, stat.S_IRUSR | stat.S_IWUSR)
    assert _error(CheckFailed, locked.sign, csr) == f"--ca-command: {script!r} cannot be run"


def test_a_command_that_takes_too_long_is_stopped(tmp_path):
    command = CommandCa("sleep 60", timeout=1)
    with pytest.raises(CheckFailed) as e:
        command.sign(_csr()[0])
    assert str(e.value) == "the CA command sleep gave no certificate within 1 s"
    assert isinstance(e.value.__cause__, type(None)) and e.value.__suppress_context__


def test_check_issued_compares_the_public_keys(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path)
    local = LocalCa(str(cert_path), str(key_path))
    csr, _ = _csr()
    check_issued(local.sign(csr), csr, "the CA X")
    other, _ = _csr()
    assert _error(CheckFailed, check_issued, local.sign(other), csr, "the CA X") == (
        "the CA X issued a certificate for another public key than the CSR's")


# -- signer_from -------------------------------------------------------------------------------
def test_signer_from_the_options(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path, passphrase=b"pw")
    cert, key = str(cert_path), str(key_path)
    assert signer_from(ca_cert=None, ca_key=None, passphrase=None, ca_command=None) is None
    command = signer_from(ca_cert=None, ca_key=None, passphrase=None, ca_command="cat -")
    assert isinstance(command, CommandCa) and command.argv == ["cat", "-"]
    local = signer_from(ca_cert=cert, ca_key=key, passphrase="pw", ca_command=None, days=9)
    assert isinstance(local, LocalCa) and local.days == 9
    assert signer_from(ca_cert=cert, ca_key=key, passphrase="pw", ca_command=None).days == 365
    assert _error(InvalidInput, signer_from, ca_cert=cert, ca_key=key, passphrase="",
                  ca_command=None).startswith(f"the CA key {key} is encrypted")


@pytest.mark.parametrize(("options", "message"), [
    ({"ca_cert": "c", "ca_key": "k", "ca_command": "cat"},
     "give --ca-command, or --ca-cert with --ca-key: not both"),
    ({"ca_cert": "c", "ca_command": "cat"},
     "give --ca-command, or --ca-cert with --ca-key: not both"),
    ({"ca_key": "k", "ca_command": "cat"},
     "give --ca-command, or --ca-cert with --ca-key: not both"),
    ({"ca_key": "k", "ca_command": ""},
     "give --ca-command, or --ca-cert with --ca-key: not both"),
    ({"ca_cert": "c"},
     "--ca-cert and --ca-key go together (the CA's certificate and its private key)"),
    ({"ca_key": "k"},
     "--ca-cert and --ca-key go together (the CA's certificate and its private key)"),
    ({"ca_command": "cat", "passphrase": "pw"}, "--ca-passphrase is the passphrase of --ca-key"),
    ({"ca_command": "cat", "passphrase": ""}, "--ca-passphrase is the passphrase of --ca-key"),
    ({"passphrase": "pw"}, "--ca-passphrase is the passphrase of --ca-key"),
    ({"ca_command": ""}, "--ca-command is empty"),
], ids=["all", "cert-command", "key-command", "key-empty-command", "cert-alone", "key-alone",
        "passphrase-command", "empty-passphrase-command", "passphrase-alone", "empty-command"])
def test_signer_from_refuses_option_mixes(options, message):
    full = {"ca_cert": None, "ca_key": None, "passphrase": None, "ca_command": None, **options}
    assert _error(InvalidInput, signer_from, **full) == message


# -- rehearsal_ca ------------------------------------------------------------------------------
def test_the_rehearsal_ca_field_by_field(tmp_path):
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cert_path, key_path = rehearsal_ca(tmp_path)
    after = datetime.datetime.now(datetime.UTC)
    assert (cert_path, key_path) == (tmp_path / "ca.pem", tmp_path / "ca.key")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert b"ENCRYPTED" not in key_path.read_bytes()
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject == cert.issuer == _name("hwtoken rehearsal CA")
    assert cert.public_key() == key.public_key()
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    start = cert.not_valid_before_utc + datetime.timedelta(days=1)
    assert before - datetime.timedelta(seconds=1) <= start <= after
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == datetime.timedelta(days=3651)
    assert len(cert.extensions) == 3
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value == x509.BasicConstraints(ca=True, path_length=None)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value == x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
        encipher_only=False, decipher_only=False)
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert not ski.critical
    assert ski.value == x509.SubjectKeyIdentifier.from_public_key(key.public_key())


def test_a_rehearsal_ca_with_a_passphrase_and_a_name(tmp_path):
    cert_path, key_path = rehearsal_ca(tmp_path, passphrase=b"rehearse", name="Bench CA")
    assert b"ENCRYPTED" in key_path.read_bytes()
    key = serialization.load_pem_private_key(key_path.read_bytes(), b"rehearse")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject == _name("Bench CA") and cert.public_key() == key.public_key()
    proc = subprocess.run(["openssl", "verify", "-CAfile", str(cert_path), str(cert_path)],
                          capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"{cert_path}: OK")


@pytest.fixture
def station_timezone(monkeypatch):
    """The station's clock five hours behind UTC (a POSIX TZ rule: no zone files needed)."""
    import time

    monkeypatch.setenv("TZ", "XST+05:00")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


def test_validity_is_in_utc_whatever_the_stations_time_zone(tmp_path, station_timezone):
    assert datetime.datetime.now().hour != datetime.datetime.now(datetime.UTC).hour
    cert_path, key_path = rehearsal_ca(tmp_path)
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    cert = LocalCa(str(cert_path), str(key_path)).sign(_csr()[0])
    after = datetime.datetime.now(datetime.UTC)
    start = cert.not_valid_before_utc + datetime.timedelta(minutes=5)
    assert before <= start <= after
    ca_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ca_start = ca_cert.not_valid_before_utc + datetime.timedelta(days=1)
    assert before - datetime.timedelta(minutes=1) <= ca_start <= after
