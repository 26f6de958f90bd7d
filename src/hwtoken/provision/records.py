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
