"""The ``fido`` mode: a FIDO2 PIN the user must change, through python-fido2's
``ClientPin`` and ``Config`` (authenticatorConfig).

For each key (the record's place is its one PIN, ``pin``):

1. a random PIN of ``--pin-length`` digits is sealed in the record, then set
   (``ClientPin.set_pin``);
2. with a PIN token for authenticatorConfig, ``--always-uv`` turns alwaysUv on (a toggle:
   only when it is off), and ``setMinPINLength`` sets ``forcePINChange`` (and
   ``--min-pin-length``): the key refuses every use of that PIN but a change, so the user
   chooses their own PIN at first use, with the one from the PIN mailer.

A key whose PIN is set already is refused (the PIN is its occupant) unless ``--overwrite``:
then the FIDO application is reset -- every credential and the PIN gone -- which a key
allows only within 10 seconds of being plugged in, and only with a touch: the station
asks for a re-plug (a virtual key is power-cycled). A PIN this inventory set before on
the same key (``--reprogram``) is changed with the old one instead, so the key keeps its
credentials.

Which PIN a key has is learned without guessing blindly: a PIN token for the recorded PIN
(``getPinToken``) succeeds, or -- while ``forcePINChange`` is on, when the key answers
``PIN_INVALID`` even to the right PIN -- leaves the retry counter where it was or puts it
back to its maximum, where a wrong PIN takes one off.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from typing import Any

from hwtoken.errors import CheckFailed, DeviceError
from hwtoken.provision.journaled import JournaledConnection
from hwtoken.provision.model import Access, Material, RecordKey, Spec
from hwtoken.provision.protocol import (
    AccessDenied,
    Device,
    Evidence,
    KeyConnection,
    NotProgrammed,
    Presented,
    Station,
    Unsuitable,
)

REPLUG_TIMEOUT = 60.0  # seconds the operator has to re-plug a real key for a reset


def random_pin(length: int) -> str:
    return "".join(str(secrets.randbelow(10)) for _ in range(length))


class FidoPinDriver:
    """``fido``: a random PIN; the check that the key accepts it and forces its change
    (with the minimum length and alwaysUv the run asked for)."""

    def material(self, spec: Spec, serial: int) -> Material:
        return Material(random_pin(spec.pin_length).encode("ascii"), {
            "min_pin_length": str(spec.min_pin_length or ""),
            "always_uv": "1" if spec.always_uv else "0"})

    def check(self, conn: KeyConnection, spec: Spec, material: Material,
              counter: int) -> int | None:
        ev = conn.calculate(spec, Presented(secrets.token_bytes(16), material))
        if not isinstance(ev, Evidence) or ev.accepted != {"pin"}:
            return None
        state, params = ev.state, material.params
        if state.get("force_pin_change") != "1":
            return None
        if params.get("always_uv") == "1" and state.get("always_uv") != "1":
            return None
        wanted = params.get("min_pin_length")
        if wanted and int(state.get("min_pin_length") or 0) < int(wanted):
            return None
        return counter


class _FidoConnection(JournaledConnection):
    """python-fido2 on one key's FIDO interface, for its ``fido`` record."""

    application = "fido"

    def __init__(self, device: Device, station: Station, ctap_device: Any,
                 reinsert: Callable[[], Any]) -> None:
        super().__init__(device, station)
        self.dev = ctap_device
        self._reinsert = reinsert  # re-plugs the key; returns its new CtapDevice
        self._occupied: set[str] = set()

    # -- helpers ------------------------------------------------------------------------
    def _ctap(self) -> Any:
        from hwtoken.fido.session import ctap2

        return ctap2(self.dev)  # a fresh getInfo each time: the key's state changes

    def _pin_state(self, ctap: Any, pin: str) -> str:
        """``ok`` (the key takes ``pin``), ``forced`` (it is the PIN, and must be
        changed), or ``wrong``."""
        from fido2.ctap import CtapError
        from fido2.ctap2.pin import ClientPin

        cp = ClientPin(ctap)
        before, _ = cp.get_pin_retries()
        try:
            cp.get_pin_token(pin)
        except CtapError as exc:
            if exc.code in (CtapError.ERR.PIN_BLOCKED, CtapError.ERR.PIN_AUTH_BLOCKED):
                raise AccessDenied("the key's FIDO2 PIN is blocked (too many wrong PINs): "
                                   "re-plug it, or reset it with --overwrite") from None
            if exc.code != CtapError.ERR.PIN_INVALID:
                raise
            after, _ = cp.get_pin_retries()
            return "forced" if after >= before else "wrong"
        return "ok"

    def _earlier_pins(self, key: RecordKey) -> list[str]:
        found = []
        for secret in self._earlier_secrets(key):
            with contextlib.suppress(UnicodeDecodeError):
                found.append(secret.decode("ascii"))
        return found

    # -- KeyConnection --------------------------------------------------------------------
    def occupant(self, spec: Spec) -> str | None:
        from fido2.ctap2.config import Config

        from hwtoken.provision.programmers import model_of

        model = model_of(self.device)
        try:
            info = self._ctap().info
        except DeviceError as exc:  # a U2F-only key
            raise Unsuitable(f"{model}: {exc}, so it has no FIDO2 PIN") from None
        if not Config.is_supported(info) or "setMinPINLength" not in info.options:
            raise Unsuitable(f"{model} cannot force a PIN change (no authenticatorConfig "
                             "setMinPINLength: CTAP 2.1 is needed)")
        if spec.always_uv and "alwaysUv" not in info.options:
            raise Unsuitable(f"{model} has no alwaysUv setting")
        if info.options.get("clientPin"):
            self._occupied.add(spec.target)  # read: the runner writes only when told to
            return "its FIDO2 PIN is set"
        return None

    def program(self, spec: Spec, material: Material, access: Access) -> None:
        from fido2.ctap2.pin import ClientPin

        from hwtoken.fido.session import validate_new_pin

        pin = material.secret.decode("ascii")
        key = self._record(spec)
        self._keep_credentials(key, material.secret)
        notes = self._journal().notes(key)
        ctap = self._ctap()
        if ctap.info.options.get("clientPin"):
            try:
                state = self._pin_state(ctap, pin)
            except AccessDenied:  # blocked by wrong PINs: reset away too, if told to
                if not self._told(spec, notes):
                    raise
                state = "wrong"
            if state == "wrong":
                self._replace_pin(spec, key, ctap, pin, notes)
        else:
            validate_new_pin(ctap, pin)
            ClientPin(ctap).set_pin(pin)
        self._step("fido-pin", key)
        self._configure(spec, material, key)

    def _told(self, spec: Spec, notes: list[Any]) -> bool:
        """The run may overwrite the key's PIN (now, or the run that began this record)."""
        return spec.target in self._occupied or any(
            n.current and n.kind == "overwrite" for n in notes)

    def _replace_pin(self, spec: Spec, key: RecordKey, ctap: Any, pin: str,
                     notes: list[Any]) -> None:
        """The key has a PIN that is not the recorded one: one this inventory set before
        is changed; another is reset away, if the run may overwrite it."""
        from fido2.ctap2.pin import ClientPin

        for old in self._earlier_pins(key):
            if self._pin_state(ctap, old) != "wrong":
                ClientPin(ctap).change_pin(old, pin)
                return
        if not self._told(spec, notes):
            raise AccessDenied("the key's FIDO2 PIN is set and is not one this inventory "
                               "set: pass --overwrite to reset the key (its credentials "
                               "are lost)")
        self._journal().note(key, "overwrite", "FIDO2 application reset")
        self._reset()
        self._step("fido-reset", key)
        ClientPin(self._ctap()).set_pin(pin)

    def _reset(self) -> None:
        """authenticatorReset: within 10 s of power-up, with a touch (a re-plug first
        when the key refuses it for the time)."""
        from fido2.ctap import CtapError

        try:
            self._ctap().reset()
            return
        except CtapError as exc:
            if exc.code != CtapError.ERR.NOT_ALLOWED:
                raise
        self.dev = self._reinsert()
        try:
            self._ctap().reset()
        except CtapError as exc:
            if exc.code in (CtapError.ERR.NOT_ALLOWED, CtapError.ERR.USER_ACTION_TIMEOUT):
                raise CheckFailed("the key refused the FIDO2 reset: it allows one only "
                                  "within 10 s of being plugged in, with a touch") from None
            raise

    def _configure(self, spec: Spec, material: Material, key: RecordKey) -> None:
        """alwaysUv (if asked), then forcePINChange with the minimum PIN length: the last
        write, after which the PIN gives no token."""
        from fido2.ctap2.config import Config
        from fido2.ctap2.pin import ClientPin

        pin = material.secret.decode("ascii")
        params = material.params
        ctap = self._ctap()
        info = ctap.info
        if info.force_pin_change:
            return  # written already (a crash after it): the check says whether all is
        cp = ClientPin(ctap)
        token = cp.get_pin_token(pin, ClientPin.PERMISSION.AUTHENTICATOR_CFG)
        config = Config(ctap, cp.protocol, token)
        if params.get("always_uv") == "1" and not info.options.get("alwaysUv"):
            config.toggle_always_uv()
            self._step("fido-always-uv", key)
        wanted = int(params["min_pin_length"]) if params.get("min_pin_length") else None
        if wanted is not None and wanted < (info.min_pin_length or 4):
            raise CheckFailed(f"the key's minimum PIN length is {info.min_pin_length} "
                              f"already: --min-pin-length {wanted} cannot lower it")
        config.set_min_pin_length(min_pin_length=wanted, force_change_pin=True)
        self._step("fido-config", key)

    def calculate(self, spec: Spec, challenge: Any) -> Evidence:
        if not isinstance(challenge, Presented):
            raise NotProgrammed("a FIDO2 PIN is checked with the PIN")
        ctap = self._ctap()
        info = ctap.info
        if not info.options.get("clientPin"):
            raise NotProgrammed("the key has no FIDO2 PIN")
        state = self._pin_state(ctap, challenge.material.secret.decode("ascii"))
        info = self._ctap().info
        return Evidence(frozenset({"pin"}) if state != "wrong" else frozenset(), state={
            "force_pin_change": "1" if info.force_pin_change else "0",
            "min_pin_length": str(info.min_pin_length or ""),
            "always_uv": "1" if info.options.get("alwaysUv") else "0"})


def _open_real(serial: int, say: Callable[[str], None] | None) -> Any:
    """The FIDO interface of real key ``serial`` through ykman's discovery, and a
    function that waits for the operator to re-plug it (ykman's ``reinsert``)."""
    from ykman.base import REINSERT_STATUS
    from ykman.device import list_all_devices
    from yubikit.core.fido import FidoConnection

    found = [dev for dev, info in list_all_devices() if info.serial == serial]
    if not found:
        raise DeviceError(f"key {serial} is not plugged in")
    dev = found[0]
    if not dev.supports_connection(FidoConnection):
        raise Unsuitable(f"key {serial} has no FIDO interface")

    def reinsert() -> Any:
        def told(status: Any) -> None:
            if say is None:
                return
            if status == REINSERT_STATUS.REMOVE:
                say(f"remove key {serial} to reset its FIDO2 application...")
            else:
                say(f"insert key {serial} again and touch it within 10 s...")

        cancel = threading.Event()
        timer = threading.Timer(REPLUG_TIMEOUT, cancel.set)
        timer.start()
        try:
            dev.reinsert(told, cancel)
        except Exception:  # noqa: BLE001 - CancelledException, another key inserted
            raise CheckFailed(f"key {serial} was not re-plugged within "
                              f"{REPLUG_TIMEOUT:.0f} s for its FIDO2 reset") from None
        finally:
            timer.cancel()
        return dev.open_connection(FidoConnection)

    return dev.open_connection(FidoConnection), reinsert


class Fido2PinProgrammer:
    """The FIDO2 PIN through python-fido2: a virtual key as ``hwtoken.fido.device`` opens
    it (in this process, or over USB/IP when served), a real one through ykman's
    discovery (its FIDO HID interface)."""

    name = "python-fido2"

    def __init__(self, station: Station | None = None) -> None:
        self.station = station or Station()

    def check_suitable(self, device: Device) -> None:
        from hwtoken.provision.programmers import require_interface

        require_interface(device, "fido", "FIDO2 application")

    @contextlib.contextmanager
    def connect(self, device: Device) -> Iterator[KeyConnection]:
        self.check_suitable(device)
        if device.virtual:
            from hwtoken.fido.device import open_key

            with open_key(device.spec) as key:
                def replug() -> Any:
                    key.replug()
                    return key.device

                yield _FidoConnection(device, self.station, key.device, replug)
            return
        assert device.serial is not None
        ctap_device, reinsert = _open_real(device.serial, self.station.say)
        conn = _FidoConnection(device, self.station, ctap_device, reinsert)
        try:
            yield conn
        finally:
            with contextlib.suppress(Exception):
                conn.dev.close()
