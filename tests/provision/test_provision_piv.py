"""``-m piv`` in process: virtual keys through yubikit's PivSession (their card OS driven
directly, no pcscd), a test CA, crashes at every step inside and around ``program``.

The real programs (ykman, OpenSC, ssh, openssl) through a private pcscd are in
test_provision_piv_programs.py; the CLI's options in test_provision_piv_cli.py.
"""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from piv_helpers import SUBJECT, CountingCa, piv_session, pool_key, provisioner
from provision_helpers import opened
from yubikit.core.smartcard import ApduError
from yubikit.piv import (
    DEFAULT_MANAGEMENT_KEY,
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    OBJECT_ID,
    PIN_POLICY,
    SLOT,
    TOUCH_POLICY,
    InvalidPinError,
)

from hwtoken.errors import InvalidInput
from hwtoken.provision import records as record_ops
from hwtoken.provision.faults import PROGRAM_STEPS, RUN_STEPS
from hwtoken.provision.model import Mode, RecordKey, Spec, State
from hwtoken.provision.piv import (
    DEFAULT_PIN,
    DEFAULT_PUK,
    PivCredentials,
    PivDriver,
    check_subject,
    fingerprint,
    random_digits,
    render_subject,
    verify_signature,
)
from hwtoken.provision.protocol import Evidence
from hwtoken.provision.sources import RecordedKeys, VirtualPool

PIV = Spec(Mode.PIV, name="9a", subject=SUBJECT)


@pytest.fixture
def inv(tmp_path):
    with opened(str(tmp_path / "inv.db")) as inventory:
        yield inventory


@pytest.fixture
def ca(tmp_path):
    return CountingCa(tmp_path)


def _credentials(inv, serial: int, slot: str = "9a") -> PivCredentials:
    rec = inv.get(RecordKey(serial, "piv", slot))
    assert rec is not None
    return PivCredentials.unpack(inv.secret(rec))


def _assert_provisioned(inv, ca, device: str, serial: int, *, slot: str = "9a",
                        key_type: KEY_TYPE = KEY_TYPE.ECCP256,
                        management: MANAGEMENT_KEY_TYPE = MANAGEMENT_KEY_TYPE.AES192,
                        protected: bool = False) -> x509.Certificate:
    """The key takes the recorded credentials and no default one; its slot holds a key
    pair made on it and the CA's certificate for it, with a CHUID and a CCC."""
    creds = _credentials(inv, serial, slot)
    with piv_session(device) as s:
        with pytest.raises(ApduError):
            s.authenticate(DEFAULT_MANAGEMENT_KEY)
        s.authenticate(creds.management_key)
        assert s.management_key_type is management
        assert not s.get_pin_metadata().default_value
        assert not s.get_puk_metadata().default_value
        with pytest.raises(InvalidPinError) as wrong:
            s.verify_pin(DEFAULT_PIN)
        assert wrong.value.attempts_remaining == 2
        s.verify_pin(creds.pin)  # and the try comes back
        assert s.get_pin_attempts() == 3
        s.change_puk(creds.puk, creds.puk)
        meta = s.get_slot_metadata(SLOT(int(slot, 16)))
        assert meta.generated and meta.key_type is key_type
        cert = s.get_certificate(SLOT(int(slot, 16)))
        assert cert.public_key() == meta.public_key
        cert.verify_directly_issued_by(ca.cert)
        assert cert.subject.rfc4514_string() == f"CN={serial},O=ACME"
        assert s.get_object(OBJECT_ID.CHUID) and s.get_object(OBJECT_ID.CAPABILITY)
        from ykman.piv import get_pivman_data, get_pivman_protected_data

        assert get_pivman_data(s).mgm_key_protected is protected
        if protected:
            assert get_pivman_protected_data(s).key == creds.management_key
    assert creds.pin.isdigit() and len(creds.puk) == 8 and creds.puk.isdigit()
    return cert


def test_a_batch_gets_credentials_a_key_made_on_it_and_the_cas_certificate(inv, ca):
    devices = [pool_key(i) for i in (1, 2)]
    heard = []
    summary = provisioner(inv, ca, hook=lambda *step: heard.append(step)).run(
        PIV, VirtualPool(2))
    assert summary.counts() == {"done": 2}
    assert heard == [(step, RecordKey(serial, "piv", "9a")) for _, serial in devices
                     for step in ("piv-credentials", "piv-generate", "piv-csr", "piv-signed",
                                  "piv-imported")]
    certs = [_assert_provisioned(inv, ca, device, serial) for device, serial in devices]
    assert len(ca.issued) == 2 and {c.serial_number for c in certs} == {
        c.serial_number for c in ca.issued}
    for _, serial in devices:  # the journal says what was asked and issued, in order
        notes = inv.notes(RecordKey(serial, "piv", "9a"))
        assert [n.kind for n in notes] == ["credentials", "generating", "attestation", "csr",
                                           "ca-request", "certificate"]
        assert notes[0].sealed and all(not n.sealed for n in notes[1:])
        attested = x509.load_pem_x509_certificate(notes[2].value.encode())
        assert attested.public_key() == next(
            c for c in certs if c.subject.rfc4514_string() == f"CN={serial},O=ACME").public_key()


def test_protect_stores_the_management_key_pin_protected_and_firmware_before_57_gets_3des(
        inv, ca):
    device, serial = pool_key(1, version=(5, 4, 3))
    plan = Spec(Mode.PIV, name="9c", subject=SUBJECT, protect=True, pin_length=6)
    assert provisioner(inv, ca).run(plan, VirtualPool(1)).counts() == {"done": 1}
    _assert_provisioned(inv, ca, device, serial, slot="9c",
                        management=MANAGEMENT_KEY_TYPE.TDES, protected=True)
    assert len(_credentials(inv, serial, "9c").pin) == 6


class _Crash(BaseException):
    """Like SIGKILL: nothing in the station catches it."""


def _crash_at(inv, ca, step: str, spec: Spec = PIV, **create) -> tuple[str, int]:  # noqa: ANN001, ANN003
    """A new pool key (made with ``create``) programmed with ``spec`` until the station
    dies at ``step`` (the runner's own steps included); its device spec and serial."""
    def crash(seen: str, *_: object) -> None:
        if seen == step:
            raise _Crash

    device, serial = pool_key(1, **create)
    runner = provisioner(inv, ca, hook=crash)
    runner._hook = crash  # the runner's own four steps too
    with pytest.raises(_Crash):
        runner.run(spec, VirtualPool(1))
    return device, serial


@pytest.mark.parametrize("step", [*RUN_STEPS, *(s for s in PROGRAM_STEPS if
                                                s.startswith("piv-"))])
def test_a_crash_at_any_step_resumes_with_one_key_pair_and_one_certificate(inv, ca, step):
    device, serial = _crash_at(inv, ca, step)
    rec = inv.get(RecordKey(serial, "piv", "9a"))
    assert rec is not None and rec.state is (State.DONE if step == "done" else State.PENDING)
    summary = provisioner(inv, ca).resume(RecordedKeys())
    assert [o.result for o in summary.outcomes] in ([], ["done"])
    assert inv.get(rec.key).state is State.DONE
    cert = _assert_provisioned(inv, ca, device, serial)
    assert len(ca.issued) == 1 and ca.issued[0].serial_number == cert.serial_number
    notes = inv.notes(rec.key)
    assert [n.kind for n in notes].count("generating") == 1  # one key pair, ever
    assert [n.kind for n in notes].count("certificate") == 1
    # the attestation each run checked, all of the one key pair (a virtual key's attestation
    # certificates differ from call to call: a resume that attests again notes its own)
    attested = [x509.load_pem_x509_certificate(n.value.encode())
                for n in notes if n.kind == "attestation"]
    assert len(attested) == (2 if step in ("piv-csr", "piv-signed") else 1)
    assert all(a.public_key() == cert.public_key() for a in attested)


def test_a_ca_answer_lost_in_a_crash_is_listed_as_a_request_to_check(inv, ca):
    class Crash(BaseException):
        pass

    device, serial = pool_key(1)
    ca.fail_after = Crash()  # the CA issued, the station died before writing it down
    with pytest.raises(Crash):
        provisioner(inv, ca).run(PIV, VirtualPool(1))
    provisioner(inv, ca).resume(RecordedKeys())
    rec = inv.get(RecordKey(serial, "piv", "9a"))
    assert rec.state is State.DONE and len(ca.issued) == 2
    issued = record_ops.issued(inv, rec)
    assert [sorted(i) for i in issued] == [
        ["at", "unanswered_request"],
        ["at", "certificate_serial", "current", "sha256", "subject"]]
    import hashlib

    from cryptography.hazmat.primitives.serialization import Encoding

    (csr,) = [x509.load_pem_x509_csr(n.value.encode()) for n in inv.notes(rec.key)
              if n.kind == "csr"]  # the request the CA answered twice
    digest = hashlib.sha256(csr.public_bytes(Encoding.DER)).hexdigest()
    assert issued[0]["unanswered_request"] == f"the CA CN=hwtoken test CA: CSR sha256 {digest}"
    assert issued[1]["certificate_serial"] == f"{ca.issued[1].serial_number:x}"


def test_a_slot_changed_after_its_certificate_was_issued_gets_a_new_one_and_the_old_is_to_revoke(
        inv, ca):
    device, serial = _crash_at(inv, ca, "piv-signed")
    creds = _credentials(inv, serial)
    with piv_session(device) as s:  # meanwhile someone makes a new key pair in the slot
        s.authenticate(creds.management_key)
        theirs = s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, PIN_POLICY.DEFAULT,
                                TOUCH_POLICY.DEFAULT)
    assert [o.result for o in provisioner(inv, ca).resume(RecordedKeys()).outcomes] == ["done"]
    cert = _assert_provisioned(inv, ca, device, serial)
    assert cert.public_key() != theirs  # a key pair of its own, made after theirs was noted
    notes = inv.notes(RecordKey(serial, "piv", "9a"))
    assert [n.value for n in notes if n.kind == "generating"] == ["none", fingerprint(theirs)]
    attested = [x509.load_pem_x509_certificate(n.value.encode()).public_key()
                for n in notes if n.kind == "attestation"]
    assert attested == [ca.issued[0].public_key(), cert.public_key()]
    assert len(ca.issued) == 2
    issued = record_ops.issued(inv, inv.get(RecordKey(serial, "piv", "9a")))
    assert [(i["certificate_serial"], i["current"]) for i in issued] == [
        (f"{ca.issued[0].serial_number:x}", False), (f"{cert.serial_number:x}", True)]


def test_a_key_pair_put_into_the_slot_from_outside_is_never_certified(inv, ca):
    device, serial = _crash_at(inv, ca, "piv-credentials")
    creds = _credentials(inv, serial)
    outside = ec.generate_private_key(ec.SECP256R1())
    with piv_session(device) as s:  # imported, not generated: it cannot be attested
        s.authenticate(creds.management_key)
        s.put_key(SLOT.AUTHENTICATION, outside)
    # the station made no key pair before the crash: it makes one now (the imported
    # key is what the slot held before, written down as such)
    assert [o.result for o in provisioner(inv, ca).resume(RecordedKeys()).outcomes] == ["done"]
    notes = inv.notes(RecordKey(serial, "piv", "9a"))
    assert [n.value for n in notes if n.kind == "generating"] == [
        fingerprint(outside.public_key())]
    cert = _assert_provisioned(inv, ca, device, serial)
    assert cert.public_key() != outside.public_key()


def test_a_key_imported_after_the_station_made_one_fails_its_attestation(inv, ca):
    device, serial = _crash_at(inv, ca, "piv-generate")
    creds = _credentials(inv, serial)
    with piv_session(device) as s:
        s.authenticate(creds.management_key)
        s.put_key(SLOT.AUTHENTICATION, ec.generate_private_key(ec.SECP256R1()))
    (outcome,) = provisioner(inv, ca).resume(RecordedKeys()).outcomes
    assert (outcome.result, outcome.message) == (
        "failed", "the key in PIV slot 9a cannot be attested: it was not generated on the key")
    assert ca.issued == [] and inv.get(RecordKey(serial, "piv", "9a")).state is State.PENDING


def test_a_key_whose_attestation_does_not_chain_to_the_roots_is_refused_before_any_write(
        inv, ca, tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding

    from hwtoken import paths
    from hwtoken.emulator.key import VirtualKey
    from hwtoken.provision.attestation import Trust

    device, serial = pool_key(1)
    with piv_session(device):
        pass  # the PIV applet made its attestation PKI
    (tmp_path / "other").mkdir()
    other = CountingCa(tmp_path / "other")
    key = VirtualKey.load(paths.virtual_key_path(device[4:]))
    try:  # the root `emulate show` exports is not the one the key's F9 chains to
        key.store.section("piv")["attestation_root"] = other.cert.public_bytes(Encoding.DER)
        key.store.commit()
    finally:
        key.close()
    trust = Trust((other.cert,), source="the test roots")
    (outcome,) = provisioner(inv, ca, trust=trust).run(PIV, VirtualPool(1)).outcomes
    assert (outcome.result, outcome.reason) == ("refused", "unsuitable")
    assert outcome.message.startswith(f"key {serial} is refused: its PIV attestation "
                                      "certificate (")
    assert "does not chain to the test roots or the root of emu:prov-0001" in outcome.message
    assert inv.records() == [] and ca.issued == []
    with piv_session(device) as s:
        assert s.get_pin_metadata().default_value  # nothing was written


def test_an_occupied_slot_or_changed_credentials_are_refused_unless_overwrite(inv, ca):
    device, serial = pool_key(1)
    with piv_session(device) as s:
        s.authenticate(DEFAULT_MANAGEMENT_KEY)
        s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, PIN_POLICY.DEFAULT,
                       TOUCH_POLICY.DEFAULT)
    (refused,) = provisioner(inv, ca).run(PIV, VirtualPool(1)).outcomes
    assert (refused.result, refused.reason, refused.message) == (
        "refused", "occupied", "PIV slot 9a holds a key or certificate, which this inventory "
        "did not write: pass --overwrite to replace it")
    assert inv.records() == []
    (done,) = provisioner(inv, ca).run(PIV, VirtualPool(1), overwrite=True).outcomes
    assert done.result == "done"
    _assert_provisioned(inv, ca, device, serial)

    other, other_serial = pool_key(1, prefix="other")
    with piv_session(other) as s:  # another admin's PIN: unknown here
        s.change_pin(DEFAULT_PIN, "87654321")
    (refused,) = provisioner(inv, ca).run(PIV, VirtualPool(1, prefix="other")).outcomes
    assert refused.message.startswith("its PIV PIN is not the factory default, which")
    (denied,) = provisioner(inv, ca).run(PIV, VirtualPool(1, prefix="other"),
                                         overwrite=True).outcomes
    assert (denied.result, denied.reason) == ("refused", "access-code")
    assert denied.message.startswith("the PIV PIN is neither the factory default nor one "
                                     "this inventory set")
    with piv_session(other) as s:  # the metadata said changed: only the recorded PIN tried
        assert s.get_pin_attempts() == 2
    with piv_session(other) as s:
        s.verify_pin("87654321")  # the station tried what it knew: the PIN is intact
        assert s.get_pin_attempts() == 3


def test_reprogram_uses_the_credentials_it_set_and_keeps_the_old_certificate_to_revoke(
        inv, ca):
    device, serial = pool_key(1)
    provisioner(inv, ca).run(PIV, VirtualPool(1))
    old = _credentials(inv, serial)
    (again,) = provisioner(inv, ca).run(PIV, VirtualPool(1), reprogram=True).outcomes
    assert again.result == "done"
    new = _credentials(inv, serial)
    assert (new.pin, new.puk, new.management_key) != (old.pin, old.puk, old.management_key)
    _assert_provisioned(inv, ca, device, serial)
    issued = record_ops.issued(inv, inv.get(RecordKey(serial, "piv", "9a")))
    assert [i["current"] for i in issued] == [False, True] and len(ca.issued) == 2
    with piv_session(device) as s, pytest.raises(InvalidPinError):
        s.verify_pin(old.pin)


def _check(inv, device: str, serial: int, slot: str = "9a", *,
           without: str = "") -> int | None:
    """``provision check``'s verdict on the record of ``device``'s slot (0: it passes);
    ``without``: a parameter the record lacks (one written before it existed)."""
    from hwtoken.provision.model import Material
    from hwtoken.provision.modes import check
    from hwtoken.provision.programmers import programmer_for
    from hwtoken.provision.protocol import Device, Station

    rec = inv.get(RecordKey(serial, "piv", slot))
    material = Material(inv.secret(rec), {k: v for k, v in rec.params.items() if k != without})
    dev = Device(serial, device)
    station = Station(journal=inv)
    with programmer_for(rec.spec, dev, station).connect(dev) as conn:
        return check(conn, rec.spec, material, 0)


def test_the_check_fails_a_key_whose_certificate_is_not_the_recorded_one(inv, ca):
    from hwtoken.provision.model import Material
    from hwtoken.provision.modes import check
    from hwtoken.provision.programmers import programmer_for
    from hwtoken.provision.protocol import Device, Station

    device, serial = pool_key(1)
    provisioner(inv, ca).run(PIV, VirtualPool(1))
    rec = inv.get(RecordKey(serial, "piv", "9a"))
    creds = _credentials(inv, serial)
    material = Material(inv.secret(rec), dict(rec.params))
    dev = Device(serial, device)
    station = Station(journal=inv)

    def checked() -> int | None:
        with programmer_for(rec.spec, dev, station).connect(dev) as conn:
            return check(conn, rec.spec, material, 0)

    assert checked() == 0
    with piv_session(device) as s:  # someone swaps in a self-signed certificate of that key
        s.authenticate(creds.management_key)
        s.put_certificate(SLOT.AUTHENTICATION, _self_signed(s, creds))
    assert checked() is None
    with piv_session(device) as s:  # the recorded one back, but the PUK changed
        s.authenticate(creds.management_key)
        s.put_certificate(SLOT.AUTHENTICATION, ca.issued[0])
        s.change_puk(creds.puk, DEFAULT_PUK)
    assert checked() is None


def _self_signed(session, creds):  # noqa: ANN001, ANN202
    import datetime

    from cryptography.x509.oid import NameOID
    from ykman.piv import sign_certificate_builder

    public = session.get_slot_metadata(SLOT.AUTHENTICATION).public_key
    session.verify_pin(creds.pin)
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "other")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(public).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1)))
    return sign_certificate_builder(session, SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, builder)


@pytest.mark.parametrize("algorithm", ["ECCP384", "ED25519",
                                       pytest.param("RSA2048", marks=pytest.mark.slow)])
def test_other_algorithms(inv, ca, algorithm):
    device, serial = pool_key(1)
    plan = Spec(Mode.PIV, name="9d", subject=SUBJECT, algorithm=algorithm)
    assert provisioner(inv, ca).run(plan, VirtualPool(1)).counts() == {"done": 1}
    _assert_provisioned(inv, ca, device, serial, slot="9d", key_type=KEY_TYPE[algorithm])
    assert _check(inv, device, serial, "9d") == 0  # it signs the nonce with that key


# -- the pieces, in process -------------------------------------------------------------------
def test_credentials_pack_into_the_sealed_secret_and_back():
    creds = PivCredentials("1234567", "87654321", bytes(range(24)))
    packed = creds.pack()
    assert packed == b"piv1\x071234567\x0887654321" + bytes(range(24))
    assert PivCredentials.unpack(packed) == creds
    assert repr(creds) == "PivCredentials(<hidden>)"
    with pytest.raises(ValueError, match=r"^not a PIV record's secret$"):
        PivCredentials.unpack(b"piv2" + packed[4:])
    for wrong in (packed[:-1], packed + b"\0"):
        with pytest.raises(ValueError,
                           match=r"^a PIV record's secret holds a 24-byte management key$"):
            PivCredentials.unpack(wrong)


def test_random_credentials_are_digits_of_the_asked_length_and_a_24_byte_key():
    creds = PivCredentials.random(7)
    assert len(creds.pin) == 7 and creds.pin.isdigit()
    assert len(creds.puk) == 8 and creds.puk.isdigit()
    assert len(creds.management_key) == 24
    assert PivCredentials.random(7).management_key != creds.management_key
    digits = random_digits(2000)
    assert len(digits) == 2000 and set(digits) == set("0123456789")


@pytest.mark.parametrize(("template", "message"), [
    ("CN={serial", "--subject 'CN={serial' is not a template: expected '}' before end of "
                   "string"),
    ("CN={0}", "--subject 'CN={0}' is not a template: Format string contains positional "
               "fields"),
    ("CN={serial.x}", "--subject 'CN={serial.x}' is not a template: 'str' object has no "
                      "attribute 'x'"),
    ("CN={serial[99]}", "--subject 'CN={serial[99]}' is not a template: string index out of "
                        "range"),
])
def test_a_subject_template_that_does_not_fill_in_is_refused(template, message):
    with pytest.raises(InvalidInput) as refused:
        render_subject(template, 12345678, "9a")
    assert str(refused.value) == message + " (write a literal brace as {{ or }})"
    with pytest.raises(InvalidInput) as refused:
        check_subject(template)
    assert str(refused.value) == message + " (write a literal brace as {{ or }})"


def test_a_subject_template_naming_another_field_is_refused():
    """Fixed: the refusal was wrapped in "is not a template: ..." a second time."""
    for refuse in (lambda t: render_subject(t, 12345678, "9a"), check_subject):
        with pytest.raises(InvalidInput) as refused:
            refuse("CN={user}")
        assert str(refused.value) == "--subject: unknown field {user}: use {serial}, {slot}"


def test_the_subject_template_names_the_serial_and_the_slot():
    assert render_subject("CN={serial},OU={slot},O=ACME {{x}}", 42, "9c") == \
        "CN=42,OU=9c,O=ACME {x}"
    assert check_subject("CN={serial}+UID={slot},O=ACME") is None
    # checked with an 8-digit serial and slot 9a, as the keys fill it in
    assert check_subject("CN={serial[7]}") is None
    # F4 starts a 4-byte UTF-8 sequence whose next byte is 80..8F: \f4\80 is one, \f4\90 not
    assert check_subject(r"CN=\f4\{serial[7]}0\80\80") is None
    with pytest.raises(InvalidInput) as refused:
        check_subject("CN={slot[2]}")
    assert str(refused.value) == "--subject 'CN={slot[2]}' is not a template: string index " \
        "out of range (write a literal brace as {{ or }})"
    with pytest.raises(InvalidInput) as refused:
        check_subject("FOO={serial}")
    assert str(refused.value) == "--subject 'FOO={serial}' is not an RFC 4514 name " \
        "(CN=...,O=...): "
    with pytest.raises(InvalidInput) as refused:
        check_subject("")
    assert str(refused.value) == "--subject is empty: give at least CN=..."


def test_fingerprint_and_signatures_of_each_key_type():
    import hashlib

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, x25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    ec_key = ec.generate_private_key(ec.SECP256R1())
    spki = ec_key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert fingerprint(ec_key.public_key()) == hashlib.sha256(spki).hexdigest()
    assert fingerprint(None) == "none"
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    message = b"the nonce"
    signed = [
        (ec_key, ec_key.sign(message, ec.ECDSA(hashes.SHA256()))),
        (rsa_key, rsa_key.sign(message, padding.PKCS1v15(), hashes.SHA256())),
        (ed_key, ed_key.sign(message)),
    ]
    for private, signature in signed:
        assert verify_signature(private.public_key(), signature, message) is True
        assert verify_signature(private.public_key(), signature, b"another nonce") is False
    assert verify_signature(ec_key.public_key(), ec_key.sign(
        message, ec.ECDSA(hashes.SHA384())), message) is False
    assert verify_signature(rsa_key.public_key(), rsa_key.sign(
        message, padding.PKCS1v15(), hashes.SHA384()), message) is False
    assert verify_signature(x25519.X25519PrivateKey.generate().public_key(), b"x" * 64,
                            message) is False


def test_the_material_is_sealed_credentials_and_the_rendered_subject():
    plan = Spec(Mode.PIV, name="9c", subject="CN={serial},OU={slot}", algorithm="ECCP384",
                pin_length=6, protect=True)
    material = PivDriver().material(plan, 4242)
    creds = PivCredentials.unpack(material.secret)
    assert len(creds.pin) == 6 and len(creds.puk) == 8
    assert material.params == {"algorithm": "ECCP384", "subject": "CN=4242,OU=9c",
                               "protect": "1"}
    assert PivDriver().material(PIV, 7).params == {"algorithm": "ECCP256", "subject":
                                                   "CN=7,O=ACME", "protect": "0"}


def _edit_piv_store(device: str, edit) -> None:  # noqa: ANN001
    """Change the PIV applet's stored state of virtual key ``device`` (what no APDU can)."""
    from hwtoken import paths
    from hwtoken.emulator.key import VirtualKey

    with piv_session(device):
        pass  # the PIV applet made its factory state
    key = VirtualKey.load(paths.virtual_key_path(device[4:]))
    try:
        edit(key.store.section("piv"))
        key.store.commit()
    finally:
        key.close()


def test_firmware_before_53_has_no_metadata_the_station_tries_what_it_knows(inv, ca):
    # the credentials set, then the station dies
    device, serial = _crash_at(inv, ca, "piv-credentials", version=(5, 2, 7))
    summary = provisioner(inv, ca).resume(RecordedKeys())
    assert [o.result for o in summary.outcomes] == ["done"]
    creds = _credentials(inv, serial)
    with piv_session(device) as s:
        with pytest.raises(ApduError):
            s.authenticate(DEFAULT_MANAGEMENT_KEY)
        s.authenticate(creds.management_key)
        assert s.management_key_type is MANAGEMENT_KEY_TYPE.TDES
        assert s.get_pin_attempts() == 3  # the recorded PIN was tried first
        s.verify_pin(creds.pin)
        cert = s.get_certificate(SLOT.AUTHENTICATION)
        assert cert.public_key() == s.attest_key(SLOT.AUTHENTICATION).public_key()
    assert [c.serial_number for c in ca.issued] == [cert.serial_number]
    # the check reads the slot's public key from its attestation on this firmware
    assert _check(inv, device, serial) == 0

    other, _ = pool_key(1, prefix="other", version=(5, 2, 7))
    with piv_session(other) as s:  # only the management key can be told changed
        s.authenticate(DEFAULT_MANAGEMENT_KEY)
        s.set_management_key(MANAGEMENT_KEY_TYPE.TDES, bytes(range(24)))
    (refused,) = provisioner(inv, ca).run(PIV, VirtualPool(1, prefix="other")).outcomes
    assert (refused.result, refused.reason, refused.message) == (
        "refused", "occupied", "its PIV management key is not the factory default, which "
        "this inventory did not write: pass --overwrite to replace it")
    (denied,) = provisioner(inv, ca).run(PIV, VirtualPool(1, prefix="other"),
                                         overwrite=True).outcomes
    assert (denied.result, denied.reason, denied.message) == (
        "refused", "access-code", "the PIV management key is neither the factory default nor "
        "one this inventory set: reset the PIV applet (`ykman piv reset`) to provision this "
        "key")


def test_everything_changed_is_named_in_the_refusal(inv, ca):
    device, _ = pool_key(1)
    with piv_session(device) as s:
        s.change_pin(DEFAULT_PIN, "87654321")
        s.change_puk(DEFAULT_PUK, "11223344")
        s.authenticate(DEFAULT_MANAGEMENT_KEY)
        s.put_certificate(SLOT.AUTHENTICATION, ca.cert)
    (refused,) = provisioner(inv, ca).run(PIV, VirtualPool(1)).outcomes
    assert refused.message == (
        "PIV slot 9a holds a key or certificate; its PIV PIN, PUK are not the factory "
        "default, which this inventory did not write: pass --overwrite to replace it")
    other, _ = pool_key(1, prefix="other")
    with piv_session(other) as s:  # the PIN is the default, the PUK is not
        s.change_puk(DEFAULT_PUK, "11223344")
    (refused,) = provisioner(inv, ca).run(PIV, VirtualPool(1, prefix="other")).outcomes
    assert refused.message == (
        "its PIV PUK is not the factory default, which this inventory did not write: pass "
        "--overwrite to replace it")
    (denied,) = provisioner(inv, ca).run(PIV, VirtualPool(1, prefix="other"),
                                         overwrite=True).outcomes
    assert (denied.result, denied.reason, denied.message) == (
        "refused", "access-code", "the PIV PUK is neither the factory default nor one this "
        "inventory set: reset the PIV applet (`ykman piv reset`) to provision this key")


def test_a_key_without_an_attestation_certificate_is_refused(inv, ca):
    device, _ = pool_key(1)
    _edit_piv_store(device, lambda sec: sec["objects"].clear())
    (refused,) = provisioner(inv, ca).run(PIV, VirtualPool(1)).outcomes
    assert (refused.result, refused.reason, refused.message) == (
        "refused", "unsuitable", f"{device}: its PIV applet has no attestation certificate, "
        "so a key made on it cannot be proven")


def test_without_a_ca_the_slot_is_left_pending(inv):
    device, serial = pool_key(1)
    (failed,) = provisioner(inv).run(PIV, VirtualPool(1)).outcomes
    assert (failed.result, failed.message) == (
        "failed", "PIV slot 9a needs its certificate from a CA: pass --ca-cert and --ca-key, "
        "or --ca-command")
    rec = inv.get(RecordKey(serial, "piv", "9a"))
    assert rec.state is State.PENDING
    assert [n.kind for n in inv.notes(rec.key)] == ["credentials", "generating",
                                                     "attestation", "csr"]


def test_an_algorithm_the_firmware_cannot_generate_fails(inv, ca):
    device, serial = pool_key(1, version=(5, 4, 3))
    plan = Spec(Mode.PIV, name="9a", subject=SUBJECT, algorithm="ED25519")
    (failed,) = provisioner(inv, ca).run(plan, VirtualPool(1)).outcomes
    assert (failed.result, failed.message) == (
        "failed", "this key cannot generate ED25519 keys (ED25519 requires YubiKey 5.7 or "
        "later)")
    with piv_session(device) as s, pytest.raises(ApduError):
        s.get_slot_metadata(SLOT.AUTHENTICATION)


def test_the_check_wants_the_chuid_the_ccc_the_protection_asked_and_the_slots_own_key(inv, ca):
    from ykman.piv import pivman_set_mgm_key

    devices = [pool_key(i) for i in (1, 2, 3, 4, 5)]
    assert provisioner(inv, ca).run(PIV, VirtualPool(5)).counts() == {"done": 5}
    assert [_check(inv, d, s) for d, s in devices] == [0] * 5
    creds = [_credentials(inv, s) for _, s in devices]
    with piv_session(devices[0][0]) as s:
        s.authenticate(creds[0].management_key)
        s.put_object(OBJECT_ID.CHUID, None)
    with piv_session(devices[1][0]) as s:
        s.authenticate(creds[1].management_key)
        s.put_object(OBJECT_ID.CAPABILITY, None)
    with piv_session(devices[2][0]) as s:  # stored on the key: not what the record asked
        s.authenticate(creds[2].management_key)
        s.verify_pin(creds[2].pin)
        pivman_set_mgm_key(s, creds[2].management_key, MANAGEMENT_KEY_TYPE.AES192,
                           store_on_device=True)
    with piv_session(devices[3][0]) as s:  # a new key pair under the old certificate
        s.authenticate(creds[3].management_key)
        s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, PIN_POLICY.DEFAULT,
                       TOUCH_POLICY.DEFAULT)
    with piv_session(devices[4][0]) as s:  # the PIN changed: the certificate is not looked at
        s.change_pin(creds[4].pin, "24682468")
    assert [_check(inv, d, s) for d, s in devices] == [None] * 5


def test_a_piv_slot_is_checked_only_with_its_credentials(inv):
    from hwtoken.provision.piv import YubikitPivProgrammer
    from hwtoken.provision.protocol import Device, NotProgrammed, Station

    device, serial = pool_key(1)
    dev = Device(serial, device)
    with YubikitPivProgrammer(Station(journal=inv)).connect(dev) as conn, \
            pytest.raises(NotProgrammed) as refused:
        conn.calculate(PIV, b"a challenge")
    assert str(refused.value) == "a PIV slot is checked with its credentials"


def test_the_check_of_a_protected_management_key(inv, ca):
    from ykman.piv import OBJECT_ID_PIVMAN_PROTECTED_DATA, pivman_set_mgm_key

    plan = Spec(Mode.PIV, name="9a", subject=SUBJECT, protect=True)
    devices = [pool_key(i) for i in (1, 2)]
    assert provisioner(inv, ca).run(plan, VirtualPool(2)).counts() == {"done": 2}
    assert [_check(inv, d, s) for d, s in devices] == [0, 0]
    device, serial = devices[0]
    creds = _credentials(inv, serial)
    with piv_session(device) as s:  # no longer stored on the key
        s.authenticate(creds.management_key)
        s.verify_pin(creds.pin)
        pivman_set_mgm_key(s, creds.management_key, MANAGEMENT_KEY_TYPE.AES192,
                           store_on_device=False)
    assert _check(inv, device, serial) is None
    device, serial = devices[1]
    creds = _credentials(inv, serial)
    with piv_session(device) as s:  # the flag says stored, but the stored key is gone
        s.authenticate(creds.management_key)
        s.put_object(OBJECT_ID_PIVMAN_PROTECTED_DATA, None)
    assert _check(inv, device, serial) is None
    with piv_session(device) as s:  # or it is unreadable
        s.authenticate(creds.management_key)
        s.put_object(OBJECT_ID_PIVMAN_PROTECTED_DATA, b"\x01")
    assert _check(inv, device, serial) is None


def test_a_key_without_a_smart_card_interface_or_piv_applet_is_unsuitable(inv, ca):
    from hwtoken import paths
    from hwtoken.emulator.applets.management import ManagementApplet
    from hwtoken.emulator.key import VirtualKey
    from hwtoken.provision.piv import YubikitPivProgrammer
    from hwtoken.provision.protocol import Device, Unsuitable

    fido_only = Device(1, "usb:1", "YubiKey Security Key", frozenset({"fido"}))
    with pytest.raises(Unsuitable) as refused:
        YubikitPivProgrammer().check_suitable(fido_only)
    assert str(refused.value) == ("YubiKey Security Key is a FIDO-only key (FIDO interface "
                                  "only): it has no PIV applet (no smart-card interface)")
    YubikitPivProgrammer().check_suitable(Device(1, "usb:1", "YubiKey 5", frozenset({"ccid"})))

    device, _ = pool_key(1)
    key = VirtualKey.load(paths.virtual_key_path(device[4:]))
    try:  # PIV switched off (ykman config usb/nfc --disable PIV): the in-process card OS
        state = ManagementApplet(key).state  # of a virtual key is reached as over NFC
        state["usb_enabled"] &= ~0x10
        state["nfc_enabled"] &= ~0x10
        key.store.commit()
    finally:
        key.close()
    (refused,) = provisioner(inv, ca).run(PIV, VirtualPool(1)).outcomes
    assert (refused.result, refused.reason) == ("refused", "unsuitable")
    assert refused.message.endswith(" has no PIV applet (or it is disabled)")


def test_firmware_57_gets_an_aes_management_key(inv, ca):
    device, serial = pool_key(1, version=(5, 7, 0))
    with piv_session(device) as s:  # its factory key is AES too: made 3DES, as on older keys
        s.authenticate(DEFAULT_MANAGEMENT_KEY)
        s.set_management_key(MANAGEMENT_KEY_TYPE.TDES, DEFAULT_MANAGEMENT_KEY)
    assert provisioner(inv, ca).run(PIV, VirtualPool(1)).counts() == {"done": 1}
    _assert_provisioned(inv, ca, device, serial)


def test_the_evidence_a_slot_shows(inv, ca):
    from cryptography.hazmat.primitives.serialization import Encoding

    from hwtoken.provision.model import Material
    from hwtoken.provision.piv import YubikitPivProgrammer
    from hwtoken.provision.protocol import Device, Presented, Station

    devices = [pool_key(i) for i in (1, 2, 3)]
    assert provisioner(inv, ca).run(PIV, VirtualPool(3)).counts() == {"done": 3}

    def evidence(i: int, nonce: bytes = b"the nonce"):  # noqa: ANN202
        device, serial = devices[i]
        rec = inv.get(RecordKey(serial, "piv", "9a"))
        dev = Device(serial, device)
        with YubikitPivProgrammer(Station(journal=inv)).connect(dev) as conn:
            return conn.calculate(PIV, Presented(nonce, Material(inv.secret(rec),
                                                                 dict(rec.params))))

    all_three = frozenset({"management-key", "pin", "puk"})
    state = {"protected": "0", "recorded": "1", "chuid": "1", "ccc": "1"}
    ev = evidence(0)
    der = [c.public_bytes(Encoding.DER) for c in ca.issued]
    assert (ev.accepted, ev.certificate, ev.state) == (all_three, der[0], state)
    assert verify_signature(ca.issued[0].public_key(), ev.signature, b"the nonce")
    creds = _credentials(inv, devices[0][1])
    with piv_session(devices[0][0]) as s:  # no CHUID, no CCC, a certificate not recorded
        s.authenticate(creds.management_key)
        s.put_object(OBJECT_ID.CHUID, None)
        s.put_object(OBJECT_ID.CAPABILITY, None)
        s.put_certificate(SLOT.AUTHENTICATION, _self_signed(s, creds))
    assert evidence(0).state == {"protected": "0", "recorded": "0", "chuid": "0", "ccc": "0"}

    creds = _credentials(inv, devices[1][1])
    with piv_session(devices[1][0]) as s:  # a new key pair under the recorded certificate
        s.authenticate(creds.management_key)
        s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, PIN_POLICY.DEFAULT,
                       TOUCH_POLICY.DEFAULT)
    assert evidence(1) == Evidence(all_three, der[1], b"", state)

    creds = _credentials(inv, devices[2][1])
    with piv_session(devices[2][0]) as s:  # the certificate deleted
        s.authenticate(creds.management_key)
        s.delete_certificate(SLOT.AUTHENTICATION)
    assert evidence(2) == Evidence(all_three)
    assert _check(inv, *devices[2]) is None
    with piv_session(devices[2][0]) as s:  # and the PIN changed
        s.change_pin(creds.pin, "24682468")
    assert evidence(2) == Evidence(frozenset({"management-key", "puk"}))


def test_the_check_of_default_credentials_spends_no_retry(inv, ca):
    devices = [pool_key(i) for i in (1, 2)]
    assert provisioner(inv, ca).run(PIV, VirtualPool(2)).counts() == {"done": 2}
    (pin_device, pin_serial), (puk_device, puk_serial) = devices
    with piv_session(pin_device) as s:
        s.change_pin(_credentials(inv, pin_serial).pin, DEFAULT_PIN)
    with piv_session(puk_device) as s:
        s.change_puk(_credentials(inv, puk_serial).puk, DEFAULT_PUK)
    assert _check(inv, pin_device, pin_serial) is None
    assert _check(inv, puk_device, puk_serial) is None
    with piv_session(pin_device) as s:
        assert s.get_pin_attempts() == 3
    with piv_session(puk_device) as s:
        assert s.get_puk_metadata().attempts_remaining == 3


def test_a_record_without_the_protect_parameter_wants_the_key_unprotected(inv, ca):
    device, serial = pool_key(1)
    assert provisioner(inv, ca).run(PIV, VirtualPool(1)).counts() == {"done": 1}
    assert _check(inv, device, serial, without="protect") == 0



def test_a_default_pin_with_one_try_left_is_not_tried_with_another_pin(inv, ca):
    device, serial = pool_key(1)
    with piv_session(device) as s:
        for _ in range(2):
            with pytest.raises(InvalidPinError):
                s.verify_pin("999999")
        assert s.get_pin_attempts() == 1
    assert provisioner(inv, ca).run(PIV, VirtualPool(1)).counts() == {"done": 1}
    _assert_provisioned(inv, ca, device, serial)


def test_protection_removed_after_a_crash_is_restored(inv, ca):
    from ykman.piv import pivman_set_mgm_key

    plan = Spec(Mode.PIV, name="9a", subject=SUBJECT, protect=True)
    device, serial = _crash_at(inv, ca, "piv-credentials", plan)
    creds = _credentials(inv, serial)
    with piv_session(device) as s:  # the same management key, no longer stored on the key
        s.authenticate(creds.management_key)
        s.verify_pin(creds.pin)
        pivman_set_mgm_key(s, creds.management_key, MANAGEMENT_KEY_TYPE.AES192,
                           store_on_device=False)
    assert [o.result for o in provisioner(inv, ca).resume(RecordedKeys()).outcomes] == ["done"]
    _assert_provisioned(inv, ca, device, serial, protected=True)


def test_a_key_pair_deleted_after_a_crash_gets_a_new_one(inv, ca):
    device, serial = _crash_at(inv, ca, "piv-generate")
    creds = _credentials(inv, serial)
    with piv_session(device) as s:
        s.authenticate(creds.management_key)
        s.delete_key(SLOT.AUTHENTICATION)
    assert [o.result for o in provisioner(inv, ca).resume(RecordedKeys()).outcomes] == ["done"]
    _assert_provisioned(inv, ca, device, serial)
    notes = inv.notes(RecordKey(serial, "piv", "9a"))
    assert [n.value for n in notes if n.kind == "generating"] == ["none", "none"]


def test_firmware_with_the_roca_flaw_generates_no_rsa_key(inv, ca):
    device, serial = pool_key(1, version=(4, 3, 4))
    plan = Spec(Mode.PIV, name="9a", subject=SUBJECT, algorithm="RSA2048")
    (failed,) = provisioner(inv, ca).run(plan, VirtualPool(1)).outcomes
    assert (failed.result, failed.message) == (
        "failed", "this key cannot generate RSA2048 keys (RSA key generation not supported "
        "on this YubiKey)")


def test_a_ca_answer_for_another_key_is_not_imported(inv, ca):
    class WrongCa:
        description = ca.description

        def sign(self, csr):  # noqa: ANN001, ANN202 - answers another CSR
            other = ec.generate_private_key(ec.SECP256R1())
            from cryptography.hazmat.primitives import hashes

            wrong = x509.CertificateSigningRequestBuilder().subject_name(csr.subject).sign(
                other, hashes.SHA256())
            return ca.sign(wrong)

    device, serial = pool_key(1)
    (failed,) = provisioner(inv, WrongCa()).run(PIV, VirtualPool(1)).outcomes
    assert (failed.result, failed.message) == (
        "failed", "the CA CN=hwtoken test CA issued a certificate for another public key than "
        "the CSR's")
    assert inv.get(RecordKey(serial, "piv", "9a")).state is State.PENDING
    with piv_session(device) as s, pytest.raises(ApduError):
        s.get_certificate(SLOT.AUTHENTICATION)


def test_an_f9_certificate_that_did_not_sign_the_attestation_is_refused(inv, ca, tmp_path):
    from hwtoken.provision.attestation import Trust

    device, serial = pool_key(1)
    (tmp_path / "other").mkdir()
    other = CountingCa(tmp_path / "other")
    with piv_session(device) as s:  # ykman piv certificates import f9: trusted, not the key's
        s.authenticate(DEFAULT_MANAGEMENT_KEY)
        s.put_certificate(SLOT.ATTESTATION, other.cert)
    trust = Trust((other.cert,), source="the test roots")
    (failed,) = provisioner(inv, ca, trust=trust).run(PIV, VirtualPool(1)).outcomes
    assert (failed.result, failed.message) == (
        "failed", "the attestation of PIV slot 9a is not signed by the key's attestation key "
        "(slot F9)")
    assert ca.issued == []


