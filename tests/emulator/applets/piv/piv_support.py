"""Helpers for the PIV tests through a private pcscd: the real programs run with that
pcscd's socket, and fast in-process provisioning of keys and certificates."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path

from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.pcscd import READER_0

YKMAN = str(Path(sys.executable).with_name("ykman"))
HWTOKEN = str(Path(sys.executable).with_name("hwtoken"))


def _module(name: str) -> str:
    """A PKCS#11 module installed by Debian (in the multiarch library directory)."""
    found = sorted(Path("/usr/lib").glob(f"*/{name}")) or [Path("/usr/lib") / name]
    return str(found[0])


OPENSC_PKCS11 = _module("opensc-pkcs11.so")
YKCS11 = _module("libykcs11.so")
MGMT = "010203040506070801020304050607080102030405060708"
PIN, PUK = "123456", "12345678"


class Programs:
    """Runs the real programs against ``pcscd`` with HOME in the test's directory."""

    def __init__(self, pcscd, home: Path) -> None:
        self.env = pcscd.client_env()
        self.env["HOME"] = str(home)
        self.env.pop("XDG_CONFIG_HOME", None)
        self.home = home

    def run(self, *args: str, input: str | None = None, timeout: float = 60,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), env={**self.env, **(env or {})}, input=input,
                              capture_output=True, text=True, timeout=timeout, cwd=self.home)

    def ok(self, *args: str, **kw) -> str:
        r = self.run(*args, **kw)
        assert r.returncode == 0, f"{args}: {r.stdout}\n{r.stderr}"
        return r.stdout + r.stderr

    def ykman(self, *args: str, **kw) -> subprocess.CompletedProcess[str]:
        return self.run(YKMAN, "--reader", READER_0, *args, **kw)

    def ykman_ok(self, *args: str, **kw) -> str:
        return self.ok(YKMAN, "--reader", READER_0, *args, **kw)


def provision(key: VirtualKey, slot, key_type, subject: str):
    """Generate a key in ``slot`` and store a certificate the card signed for it, through
    yubikit in-process (fast; the tests then use it through pcscd). Returns the public key.

    Call it before the card is in a reader: this session goes around pcscd, which sees
    the card idle and may power it down half-way -- dropping the management key
    authentication, as a real card would (PUT DATA then fails with 6982)."""
    from cryptography import x509
    from ykman.piv import sign_certificate_builder
    from yubikit.piv import DEFAULT_MANAGEMENT_KEY, PivSession

    from hwtoken.emulator.iso7816 import CardOS
    from hwtoken.emulator.transports.card_direct import DirectCardConnection

    session = PivSession(DirectCardConnection(CardOS(key)))
    session.authenticate(DEFAULT_MANAGEMENT_KEY)
    public = session.generate_key(slot, key_type)
    session.verify_pin(PIN)
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name.from_rfc4514_string(subject)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(public).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30)))
    session.put_certificate(slot, sign_certificate_builder(session, slot, key_type, builder))
    key.power_cycle()  # leave no PIN or management key state behind
    return public
