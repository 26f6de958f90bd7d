"""What the connections of the modes that program a place in several steps (``piv``,
``fido``) share: the record of the place they write, its journal, each step reported to
the fault injector, and the credentials this inventory set on the place before.

A credential is kept in the journal (sealed, once per generation of the record) before
the key is changed, so that a later ``--reprogram`` -- a new generation, whose record
holds only the new credentials -- can still open what the key holds now.
"""

from __future__ import annotations

import contextlib

from hwtoken.errors import DeviceError
from hwtoken.provision.model import RecordKey, Spec
from hwtoken.provision.protocol import Device, Journal, Station
from hwtoken.provision.sealing import WrongKey

CREDENTIALS = "credentials"  # the journal's kind for a sealed copy of the record's secret


class JournaledConnection:
    """Base of a connection that writes its steps in the record's journal."""

    application = ""

    def __init__(self, device: Device, station: Station) -> None:
        self.device = device
        self.station = station

    def _record(self, spec: Spec) -> RecordKey:
        assert self.device.serial is not None
        return RecordKey(self.device.serial, self.application, spec.target)

    def _journal(self) -> Journal:
        if self.station.journal is None:
            raise DeviceError(f"programming {self.application} needs the inventory's "
                              "journal (a Station with the inventory)")
        return self.station.journal

    def _step(self, step: str, key: RecordKey) -> None:
        from hwtoken.provision.faults import program_step

        program_step(step, self.station.hook, key)

    def _keep_credentials(self, key: RecordKey, secret: bytes) -> None:
        """A sealed copy of this generation's secret, before the key is changed."""
        journal = self._journal()
        if not any(n.current and n.kind == CREDENTIALS for n in journal.notes(key)):
            journal.note_secret(key, CREDENTIALS, secret)

    def _earlier_secrets(self, key: RecordKey) -> list[bytes]:
        """The secrets this inventory set on the place in earlier generations, newest
        first (a damaged one, which the inventory's key no longer opens, is left out)."""
        journal = self._journal()
        found: list[bytes] = []
        for note in reversed(journal.notes(key)):
            if note.kind == CREDENTIALS and note.sealed and not note.current:
                with contextlib.suppress(WrongKey):
                    found.append(journal.open_note(key, note))
        return list(dict.fromkeys(found))
