"""Managing the records themselves: which ones there are, dropping one, and which ones a
code typed by hand can settle."""

from __future__ import annotations

from hwtoken.errors import InvalidInput
from hwtoken.provision.inventory import Inventory
from hwtoken.provision.model import APPLICATION, Record, State

APPLICATIONS = tuple(sorted(set(APPLICATION.values())))


def parse_app(value: str | None) -> tuple[str | None, str | None]:
    """``--app APP[:TARGET]`` (``otp``, ``otp:2``, ``oath:mail``) -> (application, target)."""
    if value is None:
        return None, None
    app, sep, target = value.partition(":")
    if app not in APPLICATIONS:
        raise InvalidInput(f"--app {app!r}: use one of {', '.join(APPLICATIONS)} (and "
                           ":SLOT or :NAME for one place)")
    if sep and not target:
        raise InvalidInput(f"--app {value!r}: give the slot or name after ':'")
    return app, target if sep else None


def select(inv: Inventory, serial: int, application: str | None = None,
           target: str | None = None) -> list[Record]:
    """The records of key ``serial``, of one application or one place in it."""
    return [r for r in inv.records(serial=serial)
            if application in (None, r.application) and target in (None, r.target)]


def forget(inv: Inventory, serial: int, application: str | None = None,
           target: str | None = None) -> list[Record]:
    """Drop the records :func:`select` names, holding the key meanwhile (a station
    programming it right now makes this :class:`~hwtoken.provision.inventory.RecordBusy`).
    The key keeps whatever it holds; the secrets are gone from the inventory."""
    with inv.hold(serial):
        chosen = select(inv, serial, application, target)
        for rec in chosen:
            inv.forget(rec.key)
            inv.log_event("forgot", f"{rec.mode.value} record ({rec.state.value}) dropped "
                          "from the inventory", serial, rec.place)
    return chosen


def check_typed(inv: Inventory, serials: list[int]) -> None:
    """Every key given a typed code has a pending record such a code can settle."""
    for serial in serials:
        if not any(r.mode.typed for r in inv.records(serial=serial, states=[State.PENDING])):
            raise InvalidInput(f"--code: key {serial} has no pending HOTP or Yubico OTP slot "
                               "in this inventory")


def issued(inv: Inventory, rec: Record) -> list[dict[str, object]]:
    """What the CA was asked for and issued for a PIV record's place, oldest first (every
    generation): each certificate with its serial, SHA-256 and subject, ``current`` for the
    one the slot holds (the last of the record's current secret) -- the others are to be
    revoked -- and each request to the CA whose answer was not recorded (a crash in
    between: the CA's own log says whether it issued one)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    notes = inv.notes(rec.key)
    last = max((i for i, n in enumerate(notes) if n.current and n.kind == "certificate"),
               default=None)
    out: list[dict[str, object]] = []
    asked: dict[str, object] | None = None
    for i, note in enumerate(notes):
        if note.kind == "ca-request":
            if asked is not None:
                out.append(asked)
            asked = {"unanswered_request": note.value, "at": note.at}
        elif note.kind == "certificate":
            asked = None
            cert = x509.load_pem_x509_certificate(note.value.encode())
            out.append({"certificate_serial": f"{cert.serial_number:x}",
                        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
                        "subject": cert.subject.rfc4514_string(), "at": note.at,
                        "current": i == last})
    if asked is not None and rec.state is State.DONE:  # pending: the answer may still come
        out.append(asked)
    return out
