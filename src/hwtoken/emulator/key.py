"""``VirtualKey``: identity + applets + persisted state of one software YubiKey.

Which YubiKey (or other key) it is -- applets, firmware, FIDO getInfo, USB identity -- is
its :class:`~hwtoken.emulator.profiles.Profile`, recorded in the state file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hwtoken.emulator.presence import ApproveAlways, UserPresence
from hwtoken.emulator.profiles import DEFAULT_PROFILE, Profile, get_profile, parse_aaguid
from hwtoken.emulator.store import KeyStore
from hwtoken.errors import InvalidInput
from hwtoken.fileio import FileLock
from hwtoken.paths import private_dir

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.applets.fido.applet import FidoApplet
    from hwtoken.emulator.applets.oath import OathApplet
    from hwtoken.emulator.applets.openpgp.applet import OpenPgpApplet
    from hwtoken.emulator.applets.otp.applet import OtpApplet
    from hwtoken.emulator.applets.piv.applet import PivApplet

DEFAULT_VERSION = get_profile(DEFAULT_PROFILE).firmware
APPLET_NAMES = ("fido", "otp", "oath", "piv", "openpgp")


def lock_path(path: str | os.PathLike[str]) -> Path:
    """The lock file that guards the state file at ``path``."""
    p = Path(path)
    return p.with_name(p.name + ".lock")


class VirtualKey:
    """A software YubiKey whose whole state lives in one file.

    Open with :meth:`create` or :meth:`load`; the key holds an exclusive lock on its
    state file until :meth:`close`, so two processes never write it at once.
    """

    def __init__(self, store: KeyStore, lock: FileLock | None,
                 presence: UserPresence | None = None) -> None:
        self.store = store
        self._lock = lock
        self.presence: UserPresence = presence or ApproveAlways()
        #: Held by a transport while an applet handles one request, so that two transports
        #: (USB/IP and PC/SC at once) never change or save the state at the same time.
        self.lock = threading.RLock()
        self.powered_at = time.monotonic()
        self._reboot_listeners: list[Callable[[], None]] = []

    # -- opening -------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str], *, serial: int | None = None,
               version: tuple[int, int, int] | None = None,
               presence: UserPresence | None = None, overwrite: bool = False,
               profile: str = DEFAULT_PROFILE,
               aaguid: bytes | str | uuid.UUID | None = None) -> VirtualKey:
        """Make a new key whose state is the file ``path`` (0600); it must not exist.

        ``profile`` names the model (:data:`hwtoken.emulator.profiles.PROFILES`);
        ``version`` defaults to that model's firmware version and ``aaguid`` to the AAGUID
        the vendor publishes for it (:func:`~hwtoken.emulator.profiles.parse_aaguid` says
        what else it takes, ``"random"`` among them).
        """
        path = Path(path)
        model = get_profile(profile)
        aaguid_bytes = model.aaguid_bytes if aaguid is None else parse_aaguid(aaguid)
        try:
            private_dir(path.parent)
            lock = FileLock(lock_path(path), what=f"virtual key {path.name}")
        except OSError as exc:
            raise InvalidInput(f"cannot create a virtual key in {path.parent}: "
                               f"{exc.strerror or exc}") from None
        try:
            if path.exists() and not overwrite:
                raise InvalidInput(f"a virtual key already exists at {path}")
            if serial is None:
                serial = 10_000_000 + secrets.randbelow(89_999_999)
            if not 0 < serial < 2**32:
                raise InvalidInput("serial must be between 1 and 4294967295")
            store = KeyStore(path)
            ident = store.section("identity")
            ident.update({
                "serial": int(serial),
                "profile": model.name,
                "version": list(version if version is not None else model.firmware),
                "aaguid": aaguid_bytes,
                "master_secret": secrets.token_bytes(32),
                "created": int(time.time()),
            })
            key = cls(store, lock, presence)
            key._init_applets()
            try:
                store.commit()
            except OSError as exc:
                raise InvalidInput(f"cannot create a virtual key in {path.parent}: "
                                   f"{exc.strerror or exc}") from None
            return key
        except BaseException:
            lock.release()
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str], *,
             presence: UserPresence | None = None) -> VirtualKey:
        """Open an existing key (locks it; :class:`hwtoken.errors.DeviceBusy` if in use)."""
        path = Path(path)
        if not path.exists():
            raise InvalidInput(f"no virtual key state file at {path}")
        try:
            lock = FileLock(lock_path(path), what=f"virtual key {path.name}")
        except OSError as exc:
            raise InvalidInput(f"cannot open virtual key {path}: {exc.strerror or exc}"
                               ) from None
        try:
            store = KeyStore.read(path)
            get_profile(str(store.section("identity").get("profile", DEFAULT_PROFILE)))
            return cls(store, lock, presence)
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def peek(path: str | os.PathLike[str]) -> KeyStore:
        """Read a key's state without locking it (for listing; never write it back)."""
        return KeyStore.read(path)

    def close(self) -> None:
        """Persist and release the lock. The object must not be used afterwards.

        Applets first record what they only keep in memory (the exact signature counter),
        so a clean close loses nothing; a crash may only make such values skip ahead.
        """
        if self._lock is not None and self._lock.held:
            try:
                for applet in self._loaded_applets():
                    hook = getattr(applet, "before_close", None)
                    if hook is not None:
                        hook()
                self.store.commit()
            finally:
                self._lock.release()

    def __enter__(self) -> VirtualKey:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- identity ------------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.store.path

    @property
    def identity(self) -> dict[str, Any]:
        return self.store.section("identity")

    @property
    def profile(self) -> Profile:
        """The model this key is (``yubikey-5`` for keys made before profiles existed)."""
        return get_profile(str(self.identity.get("profile", DEFAULT_PROFILE)))

    @property
    def serial(self) -> int:
        return int(self.identity["serial"])

    @property
    def version(self) -> tuple[int, int, int]:
        v = self.identity["version"]
        return (int(v[0]), int(v[1]), int(v[2]))

    @property
    def aaguid(self) -> bytes:
        return bytes(self.identity["aaguid"])

    @property
    def master_secret(self) -> bytes:
        return bytes(self.identity["master_secret"])

    # -- power -----------------------------------------------------------------------------
    def power_cycle(self) -> None:
        """Unplug and plug in again: volatile state is dropped, the reset window reopens."""
        self.powered_at = time.monotonic()
        for applet in self._loaded_applets():
            hook = getattr(applet, "power_cycle", None)
            if hook is not None:
                hook()

    def seconds_since_power_up(self) -> float:
        return time.monotonic() - self.powered_at

    def on_reboot(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener()`` when the key asks to reboot (:meth:`request_reboot`); the
        transport that carries the key re-enumerates it there. Returns the function that
        stops listening."""
        self._reboot_listeners.append(listener)

        def stop() -> None:
            with contextlib.suppress(ValueError):
                self._reboot_listeners.remove(listener)

        return stop

    def request_reboot(self) -> None:
        """The key reboots once its current answer is out (management's WRITE CONFIG with
        the reboot flag, as ``ykman config usb`` sends when the USB interfaces change).

        Each transport that listens (:meth:`on_reboot`) takes the key off its bus after
        the answer and plugs it in again, as the device its USB-enabled applications now
        make; with none, the key just loses its volatile state, as a reboot does.
        """
        listeners = list(self._reboot_listeners)
        if not listeners:
            self.power_cycle()
        for listener in listeners:
            listener()

    # -- applets (imported on first use) ----------------------------------------------------
    def _init_applets(self) -> None:
        """Let every applet initialise its section of a new key (keys, defaults)."""
        for name in APPLET_NAMES:
            if not self.profile.has(name):
                continue
            applet = getattr(self, name)
            init = getattr(applet, "initialise", None)
            if init is not None:
                init()

    def _loaded_applets(self) -> list[Any]:
        return [self.__dict__[n] for n in ("fido", "otp", "oath", "piv", "openpgp",
                                           "management")
                if n in self.__dict__]

    def card_applets(self, transport: str = "nfc") -> list[Any]:
        """The smart-card applets this key's model has over ``transport`` (``nfc``/``usb``),
        for a :class:`~hwtoken.emulator.iso7816.CardOS`.

        Over NFC a YubiKey 5 NFC has management, OTP, OATH, PIV, OpenPGP, FIDO and NDEF, a
        Security Key management and FIDO, a key without NFC none. Over its USB CCID interface
        a YubiKey 5 has management, OTP, OATH, PIV and OpenPGP: FIDO is not a smart-card
        application there (it has its HID interface; SELECT answers 6A82 as on a real key) and
        NDEF is an NFC tag.
        """
        from hwtoken.emulator.applets.management import ManagementApplet
        from hwtoken.emulator.applets.ndef import NdefApplet
        from hwtoken.emulator.card_faces import FidoCardApplet, OtpCardApplet

        profile = self.profile

        def has(name: str) -> bool:
            if transport == "usb":
                return name not in ("fido", "ndef") and profile.has(name)
            return profile.nfc and profile.has(name)

        applets: list[Any] = []
        if has("management"):
            applets.append(ManagementApplet(self))
        if has("otp"):
            applets.append(OtpCardApplet(self))
        if has("oath"):
            applets.append(self.oath)
        if has("piv"):
            applets.append(self.piv)
        if has("openpgp"):
            applets.append(self.openpgp)
        if has("fido"):
            applets.append(FidoCardApplet(self))
        if has("ndef"):
            applets.append(NdefApplet(self))
        if has("hsmauth") and self.version >= (5, 4, 3):
            from hwtoken.emulator.applets.hsmauth.applet import HsmAuthApplet

            applets.append(HsmAuthApplet(self))
        if has("securitydomain") and self.version >= (5, 7, 2):  # with SCP11
            from hwtoken.emulator.applets.securitydomain.applet import SecurityDomainApplet

            applets.append(SecurityDomainApplet(self))
        return applets

    @cached_property
    def fido(self) -> FidoApplet:
        """FIDO2 (CTAP 2.1) and U2F (CTAP1) logic."""
        from hwtoken.emulator.applets.fido.applet import FidoApplet

        return FidoApplet(self)

    @cached_property
    def otp(self) -> OtpApplet:
        """The two OTP slots and the YubiKey configuration protocol."""
        from hwtoken.emulator.applets.otp.applet import OtpApplet

        return OtpApplet(self)

    @cached_property
    def oath(self) -> OathApplet:
        """The YKOATH applet."""
        from hwtoken.emulator.applets.oath import OathApplet

        return OathApplet(self)

    @cached_property
    def piv(self) -> PivApplet:
        """The PIV applet (SP 800-73-4 with Yubico's extensions)."""
        from hwtoken.emulator.applets.piv.applet import PivApplet

        return PivApplet(self)

    @cached_property
    def openpgp(self) -> OpenPgpApplet:
        """The OpenPGP card applet (OpenPGP card 3.4, as firmware 5.7 implements it)."""
        from hwtoken.emulator.applets.openpgp.applet import OpenPgpApplet

        return OpenPgpApplet(self)
