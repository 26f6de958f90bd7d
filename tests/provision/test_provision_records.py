"""Managing the records themselves (provision/records.py), in-process on a SQLite inventory:
``--app`` parsed, the records of one key or place selected and forgotten (with the key held
and the audit trail written), keys given typed codes checked, and what the CA was asked
for and issued for a PIV slot, every generation."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from provision_helpers import held_by_another_station, opened

from hwtoken.errors import InvalidInput
from hwtoken.provision import records
from hwtoken.provision.inventory import RecordBusy
from hwtoken.provision.model import Mode, Record, RecordKey, State


@pytest.fixture
def url(tmp_path):
    return f"sqlite:///{tmp_path / 'inventory.db'}"


@pytest.fixture
def inv(url):
    with opened(url) as inventory:
        yield inventory


def add(inv, serial: int, mode: Mode, *, slot: int = 2, name: str = "hwtoken",
        state: State = State.PENDING, secret: bytes = b"s" * 20) -> Record:
    rec = Record(serial=serial, mode=mode, slot=slot, digits=6, touch=False, name=name,
                 sealed="", device=f"emu:k{serial}")
    inv.seal(rec, secret)
    assert inv.claim(rec, reprogram=inv.get(rec.key) is not None)
    if state is not State.PENDING:
        inv.update(rec.key, state=state)
    return inv.get(rec.key)


def events(inv) -> list[tuple]:
    return [tuple(r) for r in inv.query("SELECT kind, message, serial, place FROM events "
                                        "ORDER BY id")]


# -- --app APP[:TARGET] ---------------------------------------------------------------------
def test_the_applications_are_the_modes_ones_in_order():
    assert records.APPLICATIONS == ("fido", "oath", "otp", "piv")


@pytest.mark.parametrize(("value", "parsed"), [
    (None, (None, None)),
    ("otp", ("otp", None)),
    ("otp:2", ("otp", "2")),
    ("oath:mail", ("oath", "mail")),
    ("oath:a:b", ("oath", "a:b")),
    ("piv:9a", ("piv", "9a")),
    ("fido", ("fido", None)),
])
def test_an_app_and_its_place(value, parsed):
    assert records.parse_app(value) == parsed


@pytest.mark.parametrize(("value", "message"), [
    ("hotp", "--app 'hotp': use one of fido, oath, otp, piv (and :SLOT or :NAME for one "
             "place)"),
    ("OTP:2", "--app 'OTP': use one of fido, oath, otp, piv (and :SLOT or :NAME for one "
              "place)"),
    ("", "--app '': use one of fido, oath, otp, piv (and :SLOT or :NAME for one place)"),
    ("otp:", "--app 'otp:': give the slot or name after ':'"),
    ("oath:", "--app 'oath:': give the slot or name after ':'"),
])
def test_an_app_that_is_not_is_refused(value, message):
    with pytest.raises(InvalidInput) as info:
        records.parse_app(value)
    assert str(info.value) == message and info.value.exit_code == 2


# -- select and forget -------------------------------------------------------------------------
@pytest.fixture
def three(inv):
    """Key 11 with slots 1 and 2 and an OATH credential; key 12 with slot 2."""
    add(inv, 11, Mode.HOTP, slot=1)
    add(inv, 11, Mode.CHALRESP, slot=2, state=State.DONE)
    add(inv, 11, Mode.OATH_TOTP, name="mail")
    add(inv, 12, Mode.CHALRESP, slot=2)
    return inv


def keys(found: list[Record]) -> list[tuple[int, str, str]]:
    return [tuple(r.key) for r in found]


def test_select_one_key_one_application_or_one_place(three):
    inv = three
    assert keys(records.select(inv, 11)) == [(11, "otp", "1"), (11, "otp", "2"),
                                             (11, "oath", "mail")]
    assert keys(records.select(inv, 11, "otp")) == [(11, "otp", "1"), (11, "otp", "2")]
    assert keys(records.select(inv, 11, "otp", "2")) == [(11, "otp", "2")]
    assert keys(records.select(inv, 11, "oath", "mail")) == [(11, "oath", "mail")]
    assert keys(records.select(inv, 11, None, "mail")) == [(11, "oath", "mail")]
    assert records.select(inv, 11, "oath", "2") == []
    assert records.select(inv, 11, "piv") == []
    assert keys(records.select(inv, 12)) == [(12, "otp", "2")]
    assert records.select(inv, 13) == []


def test_forget_drops_the_chosen_records_and_says_so_in_the_audit_trail(three):
    inv = three
    before = len(events(inv))
    dropped = records.forget(inv, 11, "otp")
    assert keys(dropped) == [(11, "otp", "1"), (11, "otp", "2")]
    assert keys(inv.records()) == [(11, "oath", "mail"), (12, "otp", "2")]
    assert events(inv)[before:] == [
        ("forgot", "hotp record (pending) dropped from the inventory", 11, "slot 1"),
        ("forgot", "chalresp record (done) dropped from the inventory", 11, "slot 2")]
    add(inv, 11, Mode.OATH_HOTP, name="vpn")
    assert keys(records.forget(inv, 11, "oath", "mail")) == [(11, "oath", "mail")]
    assert keys(inv.records(serial=11)) == [(11, "oath", "vpn")]  # one place only
    inv.forget(RecordKey(11, "oath", "vpn"))
    assert events(inv)[-1] == ("forgot", "oath-totp record (pending) dropped from the "
                               "inventory", 11, "OATH credential 'mail'")
    assert records.forget(inv, 11) == []
    assert len(events(inv)) == before + 3
    assert keys(records.forget(inv, 12)) == [(12, "otp", "2")]
    assert inv.records() == []


def test_forget_waits_for_no_station_programming_the_key(url, three):
    inv = three
    with held_by_another_station(url, 11), pytest.raises(RecordBusy):
        records.forget(inv, 11)
    assert len(records.select(inv, 11)) == 3
    # another key is not held
    assert keys(records.forget(inv, 12)) == [(12, "otp", "2")]


# -- keys given a typed code ---------------------------------------------------------------------
def test_a_typed_code_needs_a_pending_hotp_or_yubico_otp_slot(inv):
    add(inv, 21, Mode.HOTP, slot=1)
    add(inv, 22, Mode.YUBIOTP, slot=2)
    add(inv, 23, Mode.HOTP, slot=1, state=State.DONE)
    add(inv, 23, Mode.CHALRESP, slot=2)
    add(inv, 24, Mode.OATH_HOTP, name="x")
    records.check_typed(inv, [])
    records.check_typed(inv, [21, 22])
    for serial in (23, 24, 25):
        with pytest.raises(InvalidInput) as info:
            records.check_typed(inv, [21, serial, 22])
        assert str(info.value) == (f"--code: key {serial} has no pending HOTP or Yubico OTP "
                                   "slot in this inventory")


# -- what the CA was asked for and issued ----------------------------------------------------------
def certificate(serial_number: int, cn: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(serial_number)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def fingerprint(pem: str) -> str:
    return x509.load_pem_x509_certificate(pem.encode()).fingerprint(hashes.SHA256()).hex()


def at_of(inv, key: RecordKey) -> list[float]:
    return [n.at for n in inv.notes(key)]


def test_issued_lists_every_certificate_and_marks_the_current_one(inv):
    rec = add(inv, 31, Mode.PIV, name="9a", secret=b"first" * 4)
    first, second, third = (certificate(0xABC, "old"), certificate(0x1F, "older current"),
                            certificate(0x2A, "current"))
    inv.note(rec.key, "csr", "a CSR")  # notes of other kinds are not listed
    inv.note(rec.key, "ca-request", "asked 1")
    inv.note(rec.key, "certificate", first)
    rec = add(inv, 31, Mode.PIV, name="9a", secret=b"again" * 4)  # a new generation
    inv.note(rec.key, "ca-request", "asked 2")
    inv.note(rec.key, "certificate", second)
    inv.note(rec.key, "ca-request", "asked 3")
    inv.note(rec.key, "certificate", third)
    inv.note(rec.key, "attested", "yes")
    at = at_of(inv, rec.key)
    assert records.issued(inv, rec) == [
        {"certificate_serial": "abc", "sha256": fingerprint(first), "subject": "CN=old",
         "at": at[2], "current": False},
        {"certificate_serial": "1f", "sha256": fingerprint(second),
         "subject": "CN=older current", "at": at[4], "current": False},
        {"certificate_serial": "2a", "sha256": fingerprint(third), "subject": "CN=current",
         "at": at[6], "current": True},
    ]


def test_a_certificate_of_an_earlier_generation_is_never_current(inv):
    rec = add(inv, 32, Mode.PIV, name="9c", secret=b"first" * 4)
    pem = certificate(5, "gone")
    inv.note(rec.key, "certificate", pem)
    rec = add(inv, 32, Mode.PIV, name="9c", secret=b"again" * 4)
    inv.note(rec.key, "ca-request", "asked again")
    found = records.issued(inv, rec)
    assert found == [{"certificate_serial": "5", "sha256": fingerprint(pem),
                      "subject": "CN=gone", "at": at_of(inv, rec.key)[0],
                      "current": False}]  # pending: the answer to "asked again" may come


def test_requests_without_an_answer_are_listed_in_order(inv):
    rec = add(inv, 33, Mode.PIV, name="9a")
    pem = certificate(7, "k")
    inv.note(rec.key, "ca-request", "lost in a crash")
    inv.note(rec.key, "ca-request", "asked again")
    inv.note(rec.key, "certificate", pem)
    inv.note(rec.key, "ca-request", "asked a third time")
    at = at_of(inv, rec.key)
    unanswered = {"unanswered_request": "lost in a crash", "at": at[0]}
    cert = {"certificate_serial": "7", "sha256": fingerprint(pem), "subject": "CN=k",
            "at": at[2], "current": True}
    assert records.issued(inv, rec) == [unanswered, cert]  # pending: the last may come
    inv.update(rec.key, state=State.DONE)
    rec = inv.get(rec.key)
    assert records.issued(inv, rec) == [
        unanswered, cert, {"unanswered_request": "asked a third time", "at": at[3]}]


def test_nothing_asked_nothing_listed(inv):
    rec = add(inv, 34, Mode.PIV, name="9a", state=State.DONE)
    assert records.issued(inv, rec) == []
    inv.note(rec.key, "ca-request", "only asked")
    assert records.issued(inv, inv.get(rec.key)) == [
        {"unanswered_request": "only asked", "at": at_of(inv, rec.key)[0]}]
