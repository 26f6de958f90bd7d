"""Helpers for the PIV and FIDO2 provisioning tests: a throwaway CA, a station wired to an
inventory, and sessions on a virtual key through the same client libraries (yubikit's
PivSession, python-fido2) a user would use."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

from cryptography import x509

from hwtoken import paths
from hwtoken.emulator.key import VirtualKey
from hwtoken.provision.ca import LocalCa, rehearsal_ca
from hwtoken.provision.programmers import programmer_for
from hwtoken.provision.protocol import Station
from hwtoken.provision.runner import Provisioner
from hwtoken.provision.sources import pool_name, virtual_serial

SUBJECT = "CN={serial},O=ACME"


def make_ca(directory: Path, *, passphrase: bytes | None = None,
            name: str = "hwtoken test CA") -> tuple[Path, Path]:
    """A P-256 CA: its certificate and key files (the key encrypted with ``passphrase``)."""
    return rehearsal_ca(directory, passphrase=passphrase, name=name)


class CountingCa:
    """The test CA, counting the certificates it issues (a crash must never make it issue
    a second one for the same key pair); ``fail_after`` raises that exception right after
    issuing (the station dies before writing the certificate down)."""

    def __init__(self, directory: Path) -> None:
        self.cert_path, self.key_path = make_ca(directory)
        self.ca = LocalCa(str(self.cert_path), str(self.key_path))
        self.description = self.ca.description
        self.issued: list[x509.Certificate] = []
        self.fail_after: BaseException | None = None

    @property
    def cert(self) -> x509.Certificate:
        return self.ca.cert

    def sign(self, csr):  # noqa: ANN001, ANN201
        cert = self.ca.sign(csr)
        self.issued.append(cert)
        if self.fail_after is not None:
            exc, self.fail_after = self.fail_after, None
            raise exc
        return cert


def provisioner(inv, signer=None, *, hook=None, trust=None, on_outcome=None):  # noqa: ANN001, ANN201
    """A Provisioner whose programmers have this inventory as their journal."""
    station = Station(journal=inv, signer=signer, trust=trust, hook=hook)
    return Provisioner(inv, functools.partial(programmer_for, station=station),
                       on_outcome=on_outcome)


def pool_key(index: int, prefix: str = "prov", **create) -> tuple[str, int]:  # noqa: ANN003
    """The ``index``-th key of a pool, made now with ``create``'s arguments (firmware,
    profile); its device spec and serial."""
    name = pool_name(index, prefix)
    VirtualKey.create(paths.virtual_key_path(name), **create).close()
    serial = virtual_serial(name)
    assert serial is not None
    return f"emu:{name}", serial


@contextlib.contextmanager
def piv_session(device: str):
    """yubikit's PivSession on virtual key ``device`` (``emu:NAME``), in this process."""
    from yubikit.piv import PivSession

    from hwtoken.emulator.transports.card_direct import DirectCardConnection

    key = VirtualKey.load(paths.virtual_key_path(device.removeprefix("emu:")))
    try:
        conn = DirectCardConnection(key)
        try:
            yield PivSession(conn)
        finally:
            conn.close()
    finally:
        key.close()


@contextlib.contextmanager
def ctap(device: str):
    """python-fido2's Ctap2 on virtual key ``device``, in this process."""
    from hwtoken.fido.device import open_key
    from hwtoken.fido.session import ctap2

    with open_key(device) as key:
        yield ctap2(key.device)
