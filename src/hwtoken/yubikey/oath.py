"""The OATH applet of a YubiKey (real or virtual) over PC/SC, via yubikit's ``OathSession``.

Open a connection with :func:`open_connection` (``--device`` spec: None = the one real
YubiKey, a serial number, a PC/SC reader name, or ``emu:NAME``), then use :class:`OathClient`::

    with open_connection("emu:demo") as conn:
        client = OathClient(conn, password=os.environ.get("HWTOKEN_OATH_PASSWORD"))
        client.add("alice", secret, issuer="Example")
        print(client.codes())

For ``emu:NAME`` the key is inserted into pcscd through the vpcd driver for the duration of
the block (pcscd at ``$HWTOKEN_VPCD`` or 127.0.0.1:35963), or the running
``hwtoken emulate serve NAME --pcsc`` is used. If no pcscd listens, the key's card OS is
driven in-process (the same APDUs, without the daemon).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from hwtoken.errors import CheckFailed, DeviceError, InvalidInput, SetupError

PASSWORD_ENV = "HWTOKEN_OATH_PASSWORD"
VPCD_ENV = "HWTOKEN_VPCD"
YUBIKEY_READER = "yubico yubikey"


@dataclass(frozen=True)
class Account:
    """One OATH credential on the key (never its secret)."""

    id: str
    name: str
    issuer: str | None
    type: str  # "totp" or "hotp"
    period: int
    touch: bool | None

    @property
    def display(self) -> str:
        return f"{self.issuer}:{self.name}" if self.issuer else self.name

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["display"] = self.display
        return d


@dataclass(frozen=True)
class CodeResult:
    """A calculated code (``code`` is None for HOTP/touch accounts not calculated)."""

    account: Account
    code: str | None
    valid_from: int | None = None
    valid_to: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"account": self.account.display, "type": self.account.type,
                "code": self.code, "valid_from": self.valid_from,
                "valid_to": self.valid_to if self.account.type == "totp" else None,
                "touch": self.account.touch}


def _account(cred: Any) -> Account:
    from yubikit.oath import OATH_TYPE

    return Account(id=bytes(cred.id).decode(errors="replace"), name=cred.name,
                   issuer=cred.issuer, type="hotp" if cred.oath_type == OATH_TYPE.HOTP
                   else "totp", period=int(cred.period), touch=cred.touch_required)


def split_name(name: str, issuer: str | None = None) -> tuple[str | None, str]:
    """``"Issuer:name"`` -> (issuer, name) unless ``issuer`` is given explicitly."""
    if issuer is None and ":" in name:
        issuer, name = name.split(":", 1)
    if not name:
        raise InvalidInput("the account name is empty")
    return issuer or None, name


def decode_secret(secret_b32: str, *, allow_weak: bool = False) -> bytes:
    """Base32 (spaces, lower case and missing padding allowed) -> bytes; under 80 bits
    refused unless ``allow_weak``."""
    from yubikit.oath import parse_b32_key

    from hwtoken.otp import check_strength

    try:
        raw = parse_b32_key(secret_b32.strip())
    except (ValueError, TypeError):
        raise InvalidInput("the secret is not valid base32") from None
    if not raw:
        raise InvalidInput("the secret is empty")
    return check_strength(bytes(raw), allow_weak=allow_weak)


def parse_uri(uri: str, *, allow_weak: bool = False) -> Any:
    """An ``otpauth://`` URI -> yubikit ``CredentialData`` (InvalidInput if malformed).

    The URI is first checked as strictly as ``hwtoken otp uri`` checks it
    (:func:`hwtoken.otp.parse_uri`), then read by yubikit.
    """
    from yubikit.oath import CredentialData

    from hwtoken.otp import parse_uri as check_uri

    check_uri(uri, allow_weak=allow_weak)
    try:
        data = CredentialData.parse_uri(uri.strip())
    except (ValueError, KeyError, TypeError) as exc:
        # (exc's text is not shown: it may quote the URI, secret included)
        raise InvalidInput(f"yubikit cannot read this otpauth URI ({exc.__class__.__name__})"
                           ) from None
    _check(data)
    return data


def _check(data: Any) -> None:
    if not 6 <= data.digits <= 8:
        raise InvalidInput("digits must be 6, 7 or 8")
    if data.period <= 0:
        raise InvalidInput("period must be positive")
    if not data.secret:
        raise InvalidInput("the secret is empty")
    if len(data.get_id()) > 64:
        raise InvalidInput("issuer + name are too long (64 bytes at most)")


def read_uri_file(text: str, *, allow_weak: bool = False) -> list[Any]:
    """Parse otpauth URIs, one per line (blank lines and ``#`` comments skipped)."""
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            out.append(parse_uri(line, allow_weak=allow_weak))
        except InvalidInput as exc:
            raise InvalidInput(f"line {lineno}: {exc}") from None
    return out


class OathClient:
    """Manage the OATH applet on a ``yubikit`` :class:`SmartCardConnection`."""

    def __init__(self, connection: Any, password: str | None = None, *,
                 require_unlock: bool = True) -> None:
        from yubikit.core import ApplicationNotAvailableError
        from yubikit.oath import OathSession

        try:
            self.session = OathSession(connection)
        except ApplicationNotAvailableError:
            raise DeviceError("this key has no OATH applet (or it is disabled)") from None
        if self.session.locked and (require_unlock or password is not None):
            if password is None:
                raise InvalidInput(f"the OATH applet is password protected: give the "
                                   f"password at the prompt or in ${PASSWORD_ENV}")
            self.unlock(password)

    @property
    def locked(self) -> bool:
        return bool(self.session.locked)

    @property
    def has_password(self) -> bool:
        return bool(self.session.has_key)

    @property
    def device_id(self) -> str:
        return str(self.session.device_id)

    @property
    def version(self) -> str:
        return ".".join(str(v) for v in tuple(self.session.version))

    def unlock(self, password: str) -> None:
        """Validate the access password (CheckFailed if wrong)."""
        from yubikit.core.smartcard import ApduError

        try:
            self.session.validate(self.session.derive_key(password))
        except ApduError:
            raise CheckFailed("wrong OATH password") from None

    # -- accounts ----------------------------------------------------------------------------
    def _creds(self) -> list[Any]:
        return sorted(self.session.list_credentials())

    def list(self) -> list[Account]:
        """All accounts, sorted by issuer and name."""
        return [_account(c) for c in self._creds()]

    def add(self, name: str, secret: bytes, *, issuer: str | None = None,
            hotp: bool = False, digits: int = 6, algorithm: str = "SHA1",
            period: int = 30, counter: int = 0, touch: bool = False,
            overwrite: bool = False) -> Account:
        """Store a TOTP (default) or HOTP account; InvalidInput if it exists and not
        ``overwrite``."""
        from yubikit.oath import HASH_ALGORITHM, OATH_TYPE, CredentialData

        issuer, name = split_name(name, issuer)
        try:
            algo = HASH_ALGORITHM[algorithm.upper()]
        except KeyError:
            raise InvalidInput("algorithm must be SHA1, SHA256 or SHA512") from None
        data = CredentialData(name=name, oath_type=OATH_TYPE.HOTP if hotp else OATH_TYPE.TOTP,
                              hash_algorithm=algo, secret=secret, digits=digits,
                              period=period, counter=counter, issuer=issuer)
        return self.put(data, touch=touch, overwrite=overwrite)

    def put(self, data: Any, *, touch: bool = False, overwrite: bool = False) -> Account:
        """Store a yubikit ``CredentialData`` (e.g. from :func:`parse_uri`)."""
        from yubikit.core.smartcard import SW, ApduError

        _check(data)
        cred_id = data.get_id()
        if not overwrite and any(c.id == cred_id for c in self.session.list_credentials()):
            raise InvalidInput(f"an account {cred_id.decode()!r} already exists "
                               "(use --force to overwrite it)")
        try:
            cred = self.session.put_credential(data, touch)
        except ApduError as exc:
            if exc.sw == SW.NO_SPACE:
                raise DeviceError("no space left for OATH accounts on this key") from None
            raise DeviceError(f"the key refused the account ({exc})") from None
        return _account(cred)

    def match(self, query: str) -> tuple[Any, bool]:
        """The one credential ``query`` names, and whether it named it exactly.

        Exact: the display name (``Issuer:name``) or the credential id equals ``query``.
        Otherwise the one account whose display name contains ``query`` (case-insensitive)
        is returned with ``False``: a caller that changes or uses up the account must
        confirm it first. InvalidInput if none or several match.
        """
        creds = self._creds()
        exact = [c for c in creds if _account(c).display == query or c.id == query.encode()]
        if len(exact) == 1:
            return exact[0], True
        q = query.lower()
        hits = [c for c in creds if q in _account(c).display.lower()]
        if len(hits) == 1:
            return hits[0], False
        if not hits:
            raise InvalidInput(f"no OATH account matches {query!r}")
        names = ", ".join(_account(c).display for c in hits)
        raise InvalidInput(f"{query!r} matches several accounts: {names}; give the exact name")

    def find(self, query: str, *, exact: bool = True) -> Any:
        """The credential ``query`` names exactly (with ``exact=False`` also the one
        account it is part of). InvalidInput if none, several, or only a partial match
        when ``exact``."""
        cred, is_exact = self.match(query)
        if exact and not is_exact:
            raise InvalidInput(f"{query!r} is not an account name; did you mean "
                               f"{_account(cred).display!r}? Give the exact name")
        return cred

    def account(self, query: str) -> tuple[Account, bool]:
        """(the account ``query`` names, whether exactly): see :meth:`match`."""
        cred, is_exact = self.match(query)
        return _account(cred), is_exact

    def codes(self, query: str | None = None, timestamp: int | None = None, *,
              exact: bool = True) -> list[CodeResult]:
        """Codes of all accounts (TOTP only: HOTP and touch accounts are calculated only
        when ``query`` picks exactly that account, because calculating one uses it up).
        ``query`` must name the account exactly unless ``exact=False``."""
        from yubikit.core.smartcard import SW, ApduError

        ts = int(timestamp if timestamp is not None else time.time())
        if query is not None:
            cred = self.find(query, exact=exact)
            try:
                code = self.session.calculate_code(cred, ts)
            except ApduError as exc:
                if exc.sw == SW.SECURITY_CONDITION_NOT_SATISFIED:
                    raise CheckFailed("the key was not touched in time") from None
                raise DeviceError(f"calculation failed ({exc})") from None
            return [CodeResult(_account(cred), code.value, code.valid_from, code.valid_to)]
        out = []
        for cred, code in sorted(self.session.calculate_all(ts).items(),
                                 key=lambda kv: kv[0]):
            if code is None:
                out.append(CodeResult(_account(cred), None))
            else:
                out.append(CodeResult(_account(cred), code.value, code.valid_from,
                                      code.valid_to))
        return out

    def delete(self, query: str, *, exact: bool = True) -> Account:
        """Delete the account ``query`` names (exactly, unless ``exact=False``)."""
        cred = self.find(query, exact=exact)
        self.session.delete_credential(cred.id)
        return _account(cred)

    def rename(self, query: str, new_name: str, issuer: str | None = None, *,
               exact: bool = True) -> Account:
        """Rename (``new_name`` may be ``Issuer:name``; ``query`` exact unless
        ``exact=False``)."""
        from yubikit.core.smartcard import ApduError
        from yubikit.oath import HASH_ALGORITHM, OATH_TYPE, CredentialData

        cred = self.find(query, exact=exact)
        issuer, name = split_name(new_name, issuer)
        # the id yubikit will send (it renames in TOTP form): check it before the key sees it
        period = int(cred.period) if cred.oath_type == OATH_TYPE.TOTP else 30
        _check(CredentialData(name, OATH_TYPE.TOTP, HASH_ALGORITHM.SHA1, b"\0",
                              period=period, issuer=issuer))
        try:
            new_id = self.session.rename_credential(cred.id, name, issuer)
        except ApduError as exc:
            raise DeviceError(f"the key refused the new name ({exc})") from None
        return Account(id=new_id.decode(), name=name, issuer=issuer,
                       type=_account(cred).type, period=int(cred.period),
                       touch=cred.touch_required)

    def set_password(self, password: str) -> None:
        if not password:
            raise InvalidInput("the new password is empty (use `password clear`)")
        self.session.set_key(self.session.derive_key(password))

    def clear_password(self) -> None:
        self.session.unset_key()

    def reset(self) -> None:
        """Delete every account and the password (a new device id is drawn)."""
        self.session.reset()


# -- connections ------------------------------------------------------------------------------
def _vpcd_address() -> tuple[str, int]:
    from hwtoken.emulator.transports.vpcd import parse_hostport

    return parse_hostport(os.environ.get(VPCD_ENV))


def _pcsc_readers() -> list[Any]:
    from smartcard.pcsc.PCSCExceptions import EstablishContextException, ListReadersException
    from smartcard.System import readers

    try:
        return list(readers())
    except (EstablishContextException, ListReadersException):
        raise SetupError("pcscd is not running (start it: `systemctl start pcscd`)") from None


def _pcsc_answers() -> bool:
    """True if pcscd answers this process (a quick question; no waiting)."""
    try:
        _pcsc_readers()
    except DeviceError:
        return False
    return True


def _open_reader(name: str) -> Any:
    from ykman.pcsc import list_devices
    from yubikit.core.smartcard import SmartCardConnection

    _pcsc_readers()
    devs = [d for d in list_devices(name) if d.reader.name == name] or list_devices(name)
    if not devs:
        raise DeviceError(f"no PC/SC reader named {name!r}")
    if len(devs) > 1:
        raise DeviceError(f"several PC/SC readers match {name!r}: give the full name")
    try:
        return devs[0].open_connection(SmartCardConnection)
    except Exception as exc:  # noqa: BLE001 - pyscard raises many kinds
        raise DeviceError(f"cannot connect to the card in {name!r} ({exc})") from None


def _real_devices() -> list[Any]:
    """The YubiKeys pcscd shows (none when pcscd does not answer)."""
    from ykman.pcsc import list_devices

    if not _pcsc_answers():
        return []
    return list(list_devices(YUBIKEY_READER))


def _open_settled(serial: int | None, settle: float) -> Any:
    """:func:`_open_real`, trying again for up to ``settle`` seconds while the key is absent."""
    deadline = time.monotonic() + settle
    while True:
        try:
            return _open_real(serial)
        except DeviceError:
            if serial is None or time.monotonic() >= deadline:
                raise
        time.sleep(0.2)


def _open_real(serial: int | None) -> Any:
    from ykman.pcsc import list_devices
    from yubikit.core.smartcard import SmartCardConnection
    from yubikit.support import read_info

    _pcsc_readers()
    devs = list_devices(YUBIKEY_READER if serial is None else "")
    if serial is None:
        if len(devs) != 1:
            from hwtoken.devices import pick_one

            pick_one([d.reader.name for d in devs], what="YubiKey", transport="pcsc")
            if not devs:  # a serve started meanwhile: the next run picks it
                raise DeviceError("no YubiKey found over PC/SC")
        try:
            return devs[0].open_connection(SmartCardConnection)
        except Exception as exc:  # noqa: BLE001 - pyscard raises many kinds
            raise DeviceError(f"cannot connect to the key in {devs[0].reader.name!r} ({exc}); "
                              "if it was just plugged in, try again in a moment") from None
    for dev in devs:
        try:
            conn = dev.open_connection(SmartCardConnection)
        except Exception:  # noqa: BLE001,S112 - empty reader, busy card: skip it
            continue
        try:
            if read_info(conn, dev.pid).serial == serial:
                return conn
        except Exception:  # noqa: BLE001,S110 - not a YubiKey
            pass
        conn.close()
    raise DeviceError(f"no YubiKey with serial {serial} found over PC/SC")


@contextlib.contextmanager
def _virtual(name: str) -> Iterator[Any]:
    from hwtoken import devices
    from hwtoken.emulator.pcscd import port_listening, wait_for_card

    with devices.open_virtual(name) as handle:
        if handle.key is None:  # served by `hwtoken emulate serve`
            if handle.pcsc is None:
                raise DeviceError(f"virtual key {name!r} is served without PC/SC: restart "
                                  f"`hwtoken emulate serve {name}` with --pcsc")
            reader = devices.pcsc_reader_for(handle.pcsc[1])
            wait_for_card(reader, timeout=10)
            conn = _open_reader(reader)
            try:
                yield conn
            finally:
                conn.close()
            return
        host, port = _vpcd_address()
        explicit = bool(os.environ.get(VPCD_ENV))
        local = host in ("127.0.0.1", "localhost", "::1")
        if not explicit and local and (not port_listening(port) or not _pcsc_answers()):
            # No pcscd with the vpcd driver here (or pcscd does not answer this process):
            # drive the card OS in-process, as documented; $HWTOKEN_VPCD asks for pcscd.
            from hwtoken.emulator.transports.card_direct import DirectCardConnection

            conn = DirectCardConnection(handle.key)
            try:
                yield conn
            finally:
                conn.close()
            return
        from hwtoken.emulator.transports.vpcd import VpcdLink

        if not _pcsc_answers():
            raise SetupError(f"pcscd does not answer (no PC/SC service for this process) "
                             f"while ${VPCD_ENV}={host}:{port} asks for it: start pcscd with "
                             f"the vpcd driver, or unset ${VPCD_ENV} to use the key "
                             "in-process")
        link = VpcdLink(handle.key, host, port).start()
        try:
            if not link.wait_connected(5):
                raise SetupError(f"no pcscd with the vpcd driver at {host}:{port} "
                                 f"(start pcscd, or set ${VPCD_ENV}=HOST:PORT)")
            reader = devices.pcsc_reader_for(port)
            try:
                wait_for_card(reader, timeout=10)
            except DeviceError as exc:
                raise SetupError(f"pcscd at {host}:{port} did not show the virtual key: "
                                 f"{exc}") from None
            conn = _open_reader(reader)
            try:
                yield conn
            finally:
                conn.close()
        finally:
            link.stop()


@contextlib.contextmanager
def open_connection(device: str | None, *, settle: float = 0.0) -> Iterator[Any]:
    """A yubikit ``SmartCardConnection`` to the key ``device`` names (see module doc).

    ``settle``: seconds to keep looking for a real key given by serial that is not (yet)
    shown over PC/SC -- one just plugged in appears on USB before pcscd adds its reader.
    """
    from hwtoken.devices import parse_spec, pick_one, served_virtual_names

    spec = parse_spec(device)
    if spec.raw is None and served_virtual_names(transport="pcsc"):
        real = [d.reader.name for d in _real_devices()]
        spec = parse_spec(pick_one(real, what="YubiKey", transport="pcsc"))
    if spec.is_virtual:
        assert spec.name is not None
        with _virtual(spec.name) as conn:
            yield conn
        return
    # a device "path" here is a PC/SC reader name
    conn = (_open_reader(spec.path) if spec.path is not None
            else _open_settled(spec.serial, settle))
    try:
        yield conn
    finally:
        conn.close()
