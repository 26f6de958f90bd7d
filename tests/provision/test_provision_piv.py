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

from hwtoken.provision import records as record_ops
from hwtoken.provision.faults import PROGRAM_STEPS, RUN_STEPS
from hwtoken.provision.model import Mode, RecordKey, Spec, State
from hwtoken.provision.piv import DEFAULT_PIN, DEFAULT_PUK, PivCredentials, fingerprint
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
    summary = provisioner(inv, ca).run(PIV, VirtualPool(2))
    assert summary.counts() == {"done": 2}
    certs = [_assert_provisioned(inv, ca, device, serial) for device, serial in devices]
    assert len(ca.issued) == 2 and {c.serial_number for c in certs} == {
        c.serial_number for c in ca.issued}
    for _, serial in devices:  # the journal says what was asked and issued, in order
        notes = inv.notes(RecordKey(serial, "piv", "9a"))
        assert [n.kind for n in notes] == ["credentials", "generating", "attestation", "csr",
                                           "ca-request", "certificate"]
        assert notes[0].sealed and all(not n.sealed for n in notes[1:])


def test_protect_stores_the_management_key_pin_protected_and_firmware_before_57_gets_3des(
        inv, ca):
    device, serial = pool_key(1, version=(5, 4, 3))
    plan = Spec(Mode.PIV, name="9c", subject=SUBJECT, protect=True, pin_length=6)
    assert provisioner(inv, ca).run(plan, VirtualPool(1)).counts() == {"done": 1}
    _assert_provisioned(inv, ca, device, serial, slot="9c",
                        management=MANAGEMENT_KEY_TYPE.TDES, protected=True)
    assert len(_credentials(inv, serial, "9c").pin) == 6


@pytest.mark.parametrize("step", [*RUN_STEPS, *(s for s in PROGRAM_STEPS if
                                                s.startswith("piv-"))])
def test_a_crash_at_any_step_resumes_with_one_key_pair_and_one_certificate(inv, ca, step):
    class Crash(BaseException):  # like SIGKILL: nothing in the station catches it
        pass

    def crash(seen: str, *_: object) -> None:
        if seen == step:
            raise Crash

    device, serial = pool_key(1)
    runner = provisioner(inv, ca, hook=crash)
    runner._hook = crash  # the runner's own four steps too
    with pytest.raises(Crash):
        runner.run(PIV, VirtualPool(1))
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
    assert issued[0]["unanswered_request"].startswith("the CA CN=hwtoken test CA: CSR sha256 ")
    assert issued[1]["certificate_serial"] == f"{ca.issued[1].serial_number:x}"


def test_a_slot_changed_after_its_certificate_was_issued_gets_a_new_one_and_the_old_is_to_revoke(
        inv, ca):
    class Crash(BaseException):
        pass

    def crash(seen: str, *_: object) -> None:
        if seen == "piv-signed":
            raise Crash

    device, serial = pool_key(1)
    with pytest.raises(Crash):
        provisioner(inv, ca, hook=crash).run(PIV, VirtualPool(1))
    creds = _credentials(inv, serial)
    with piv_session(device) as s:  # meanwhile someone makes a new key pair in the slot
        s.authenticate(creds.management_key)
        s.generate_key(SLOT.AUTHENTICATION, KEY_TYPE.ECCP256, PIN_POLICY.DEFAULT,
                       TOUCH_POLICY.DEFAULT)
    assert [o.result for o in provisioner(inv, ca).resume(RecordedKeys()).outcomes] == ["done"]
    cert = _assert_provisioned(inv, ca, device, serial)
    assert len(ca.issued) == 2
    issued = record_ops.issued(inv, inv.get(RecordKey(serial, "piv", "9a")))
    assert [(i["certificate_serial"], i["current"]) for i in issued] == [
        (f"{ca.issued[0].serial_number:x}", False), (f"{cert.serial_number:x}", True)]


def test_a_key_pair_put_into_the_slot_from_outside_is_never_certified(inv, ca):
    class Crash(BaseException):
        pass

    def crash(seen: str, *_: object) -> None:
        if seen == "piv-credentials":
            raise Crash

    device, serial = pool_key(1)
    with pytest.raises(Crash):
        provisioner(inv, ca, hook=crash).run(PIV, VirtualPool(1))
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
    class Crash(BaseException):
        pass

    def crash(seen: str, *_: object) -> None:
        if seen == "piv-generate":
            raise Crash

    device, serial = pool_key(1)
    with pytest.raises(Crash):
        provisioner(inv, ca, hook=crash).run(PIV, VirtualPool(1))
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
