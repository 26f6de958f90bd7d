"""``-m fido`` in process: virtual keys through python-fido2 (ClientPin, Config), crashes
at every step, a key that has a PIN already, a reset that needs its 10-second window.

libfido2's own fido2-token against keys a station provisioned is in
test_provision_piv_programs.py."""

from __future__ import annotations

import contextlib
import threading
from types import SimpleNamespace

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin
from piv_helpers import ctap, pool_key, provisioner
from provision_helpers import opened
from ykman.base import REINSERT_STATUS, CancelledException, YkmanDevice
from yubikit.core import TRANSPORT
from yubikit.core.fido import FidoConnection

from hwtoken.emulator.key import VirtualKey
from hwtoken.errors import CheckFailed, DeviceError
from hwtoken.provision import modes
from hwtoken.provision.faults import PROGRAM_STEPS, RUN_STEPS
from hwtoken.provision.fido import Fido2PinProgrammer, FidoPinDriver
from hwtoken.provision.model import Material, Mode, RecordKey, Spec, State
from hwtoken.provision.protocol import AccessDenied, Device, NotProgrammed, Presented, Station
from hwtoken.provision.sources import RecordedKeys, VirtualPool

FIDO = Spec(Mode.FIDO, name="pin", min_pin_length=6, always_uv=True)


@pytest.fixture
def inv(tmp_path):
    with opened(str(tmp_path / "inv.db")) as inventory:
        yield inventory


def _pin(inv, serial: int) -> str:
    rec = inv.get(RecordKey(serial, "fido", "pin"))
    assert rec is not None
    return inv.secret(rec).decode()


def _assert_forced(device: str, pin: str, *, min_length: int = 6, always_uv: bool = True):
    """The key has ``pin``, must change it before any use, and changes it with it."""
    with ctap(device) as c:
        info = c.info
        assert info.options["clientPin"] and info.force_pin_change
        assert info.min_pin_length == min_length
        assert bool(info.options.get("alwaysUv")) is always_uv
        cp = ClientPin(c)
        with pytest.raises(CtapError) as refused:  # the mailer's PIN gives no token
            cp.get_pin_token(pin, ClientPin.PERMISSION.GET_ASSERTION, "example.com")
        assert refused.value.code == CtapError.ERR.PIN_INVALID
        assert cp.get_pin_retries()[0] == 8  # the right PIN: no try spent
        if min_length > 4:
            with pytest.raises(CtapError) as short:
                cp.change_pin(pin, "1" * (min_length - 1))  # under the new minimum
            assert short.value.code == CtapError.ERR.PIN_POLICY_VIOLATION
        cp.change_pin(pin, "user-chosen")
        assert not ctap_info_forced(c)
        cp.get_pin_token("user-chosen", ClientPin.PERMISSION.GET_ASSERTION, "example.com")


def ctap_info_forced(c) -> bool:  # noqa: ANN001
    return bool(c.get_info().force_pin_change)


def test_a_batch_gets_a_pin_the_user_must_change(inv):
    devices = [pool_key(i) for i in (1, 2)]
    summary = provisioner(inv).run(FIDO, VirtualPool(2))
    assert summary.counts() == {"done": 2}
    pins = [_pin(inv, serial) for _, serial in devices]
    assert all(len(p) == 8 and p.isdigit() for p in pins) and pins[0] != pins[1]
    for (device, _), pin in zip(devices, pins, strict=True):
        _assert_forced(device, pin)


def test_without_options_the_key_keeps_its_minimum_and_alwaysuv_off(inv):
    device, serial = pool_key(1)
    plan = Spec(Mode.FIDO, name="pin", pin_length=4)
    assert provisioner(inv).run(plan, VirtualPool(1)).counts() == {"done": 1}
    pin = _pin(inv, serial)
    assert len(pin) == 4
    _assert_forced(device, pin, min_length=4, always_uv=False)


class _Crash(BaseException):
    pass


def _crash_at(inv, step: str) -> tuple[str, int]:  # noqa: ANN001
    """A new pool key programmed until the station dies at ``step`` (the runner's own steps
    included); the key's device spec and serial."""
    def crash(seen: str, *_: object) -> None:
        if seen == step:
            raise _Crash

    device, serial = pool_key(1)
    runner = provisioner(inv, hook=crash)
    runner._hook = crash
    with pytest.raises(_Crash):
        runner.run(FIDO, VirtualPool(1))
    return device, serial


@pytest.mark.parametrize("step", [*RUN_STEPS, "fido-pin", "fido-always-uv", "fido-config"])
def test_a_crash_at_any_step_resumes_to_the_same_pin(inv, step):
    device, serial = _crash_at(inv, step)
    pin = _pin(inv, serial)
    provisioner(inv).resume(RecordedKeys())
    assert inv.get(RecordKey(serial, "fido", "pin")).state is State.DONE
    assert _pin(inv, serial) == pin
    _assert_forced(device, pin)
    assert all(n.kind != "overwrite" for n in inv.notes(RecordKey(serial, "fido", "pin")))


def test_a_pin_set_already_is_refused_unless_overwrite_which_resets_the_key(inv):
    device, serial = pool_key(1)
    with ctap(device) as c:
        ClientPin(c).set_pin("somebody-elses")
    (refused,) = provisioner(inv).run(FIDO, VirtualPool(1)).outcomes
    assert (refused.result, refused.reason, refused.message) == (
        "refused", "occupied", "its FIDO2 PIN is set, which this inventory did not write: "
        "pass --overwrite to replace it")
    assert inv.records() == []
    with ctap(device) as c:
        assert ClientPin(c).get_pin_retries()[0] == 8  # nothing was tried on it
    (done,) = provisioner(inv).run(FIDO, VirtualPool(1), overwrite=True).outcomes
    assert done.result == "done"
    _assert_forced(device, _pin(inv, serial))
    assert [n.kind for n in inv.notes(RecordKey(serial, "fido", "pin"))] == [
        "credentials", "overwrite"]


def test_the_reset_waits_for_a_replug_when_the_key_was_plugged_in_too_long_ago(
        inv, monkeypatch):
    """authenticatorReset is refused 10 s after power-up: the station re-plugs the key (a
    virtual one is power-cycled) and resets it then."""
    device, serial = pool_key(1)
    with ctap(device) as c:
        ClientPin(c).set_pin("somebody-elses")
    cycles: list[float] = []
    real_cycle = VirtualKey.power_cycle

    def power_cycle(self) -> None:  # noqa: ANN001
        cycles.append(self.seconds_since_power_up())
        real_cycle(self)

    real_since = VirtualKey.seconds_since_power_up
    monkeypatch.setattr(VirtualKey, "power_cycle", power_cycle)
    monkeypatch.setattr(VirtualKey, "seconds_since_power_up",
                        lambda self: real_since(self) if cycles else 11.0)
    (done,) = provisioner(inv).run(FIDO, VirtualPool(1), overwrite=True).outcomes
    assert done.result == "done" and len(cycles) == 1
    _assert_forced(device, _pin(inv, serial))


def test_reprogram_changes_the_pin_it_set_without_a_reset(inv):
    from fido2.ctap2.credman import CredentialManagement

    device, serial = pool_key(1)
    provisioner(inv).run(FIDO, VirtualPool(1))
    old = _pin(inv, serial)
    (again,) = provisioner(inv).run(FIDO, VirtualPool(1), reprogram=True).outcomes
    assert again.result == "done"
    new = _pin(inv, serial)
    assert new != old
    _assert_forced(device, new)
    notes = inv.notes(RecordKey(serial, "fido", "pin"))
    assert "overwrite" not in [n.kind for n in notes]  # changed with the old PIN, not reset
    with ctap(device) as c:  # and the key's metadata survived (no reset)
        cp = ClientPin(c)
        token = cp.get_pin_token("user-chosen", ClientPin.PERMISSION.CREDENTIAL_MGMT)
        assert CredentialManagement(c, cp.protocol, token).get_metadata()[1] == 0


def test_a_key_without_authenticator_config_is_refused_as_such(inv):
    pool_key(1, profile="u2f-only")
    (refused,) = provisioner(inv).run(FIDO, VirtualPool(1)).outcomes
    assert (refused.result, refused.reason, refused.message) == (
        "refused", "unsuitable", "FIDO U2F Security Key by Yubico (no CTAP2): this key "
        "speaks only U2F (CTAP1), not FIDO2, so it has no FIDO2 PIN")
    assert inv.records() == []


def test_program_steps_are_the_faults_a_test_can_inject():
    assert {s for s in PROGRAM_STEPS if s.startswith("fido-")} == {
        "fido-pin", "fido-reset", "fido-always-uv", "fido-config"}


def _material(pin: bytes, **params: str) -> Material:
    return Material(pin, {"min_pin_length": "6", "always_uv": "1", **params})


def _connect(inv, device: str, serial: int):  # noqa: ANN001, ANN202
    return Fido2PinProgrammer(Station(journal=inv)).connect(Device(serial, device))


def test_the_material_is_a_pin_of_the_length_asked_and_the_options():
    driver = FidoPinDriver()
    first, second = (driver.material(FIDO, 1) for _ in range(2))
    assert len(first.secret) == 8 and first.secret.isdigit() and first.secret != second.secret
    assert first.params == {"min_pin_length": "6", "always_uv": "1"}
    plain = driver.material(Spec(Mode.FIDO, name="pin", pin_length=5), 1)
    assert len(plain.secret) == 5 and plain.params == {"min_pin_length": "", "always_uv": "0"}


def test_the_check_wants_the_pin_forced_with_the_minimum_and_alwaysuv_asked_for(inv):
    device, serial = pool_key(1)
    assert provisioner(inv).run(FIDO, VirtualPool(1)).counts() == {"done": 1}
    pin = _pin(inv, serial).encode()
    driver = FidoPinDriver()
    with _connect(inv, device, serial) as conn:
        assert driver.check(conn, FIDO, _material(pin), 4) == 4
        assert driver.check(conn, FIDO, _material(pin, min_pin_length=""), 4) == 4
        assert driver.check(conn, FIDO, _material(pin, always_uv="0"), 4) == 4
        assert driver.check(conn, FIDO, _material(pin, min_pin_length="7"), 4) is None
        assert driver.check(conn, FIDO, _material(b"00000000"), 4) is None  # not its PIN
        evidence = conn.calculate(FIDO, Presented(b"nonce", _material(pin)))
        assert evidence.accepted == {"pin"} and evidence.state == {
            "force_pin_change": "1", "min_pin_length": "6", "always_uv": "1"}


def test_the_check_refuses_a_pin_not_forced_or_without_alwaysuv(inv):
    plain = Spec(Mode.FIDO, name="pin")
    device, serial = pool_key(1)
    assert provisioner(inv).run(plain, VirtualPool(1)).counts() == {"done": 1}
    pin = _pin(inv, serial).encode()
    driver = FidoPinDriver()
    with _connect(inv, device, serial) as conn:
        assert driver.check(conn, plain, _material(pin, min_pin_length=""), 2) is None
        assert driver.check(conn, plain, _material(pin, always_uv="0"), 2) is None  # min 6
        evidence = conn.calculate(plain, Presented(b"nonce", _material(pin)))
        assert evidence.state == {"force_pin_change": "1", "min_pin_length": "4",
                                  "always_uv": "0"}
        assert driver.check(conn, plain, _material(pin, min_pin_length="",
                                                   always_uv="0"), 2) == 2
    other, other_serial = pool_key(2)
    with ctap(other) as c:
        ClientPin(c).set_pin("24681357")  # a PIN the user chose: not forced
    with _connect(inv, other, other_serial) as conn:
        assert driver.check(conn, plain, _material(b"24681357", min_pin_length="",
                                                   always_uv="0"), 2) is None
        assert conn.calculate(plain, Presented(b"n", _material(b"24681357"))).state[
            "force_pin_change"] == "0"


def test_a_key_without_a_pin_or_without_the_pin_gives_nothing_to_check(inv):
    device, serial = pool_key(1)
    with _connect(inv, device, serial) as conn:
        assert conn.occupant(FIDO) is None
        with pytest.raises(NotProgrammed) as no_pin:
            conn.calculate(FIDO, Presented(b"nonce", _material(b"12345678")))
        assert str(no_pin.value) == "the key has no FIDO2 PIN"
        with pytest.raises(NotProgrammed) as not_presented:
            conn.calculate(FIDO, b"a challenge")
        assert str(not_presented.value) == "a FIDO2 PIN is checked with the PIN"
        assert modes.check(conn, FIDO, _material(b"12345678"), 1) is None  # step 3: None


def test_wrong_pins_in_a_row_and_a_blocked_pin_are_refused_with_what_to_do(inv):
    blocked = ("the key's FIDO2 PIN is blocked (too many wrong PINs): re-plug it, or reset "
               "it with --overwrite")
    device, serial = pool_key(1)
    with ctap(device) as c:
        ClientPin(c).set_pin("24681357")
    wrong = Presented(b"nonce", _material(b"11111111"))
    for tries in (3, 3, 2):  # the third wrong PIN in a row blocks it until a re-plug
        with _connect(inv, device, serial) as conn:
            for _ in range(tries - 1):
                assert conn.calculate(FIDO, wrong).accepted == frozenset()
            with pytest.raises(AccessDenied) as refused:
                conn.calculate(FIDO, wrong)
            assert str(refused.value) == blocked
    with ctap(device) as c:
        assert ClientPin(c).get_pin_retries()[0] == 0
    with _connect(inv, device, serial) as conn, pytest.raises(AccessDenied) as refused:
        conn.calculate(FIDO, Presented(b"nonce", _material(b"24681357")))  # even the right one
    assert str(refused.value) == blocked


def test_a_minimum_pin_length_the_key_has_already_is_not_lowered(inv):
    from fido2.ctap2.config import Config

    device, serial = pool_key(1)
    with ctap(device) as c:
        Config(c).set_min_pin_length(8)  # no PIN yet: no token needed
    (failed,) = provisioner(inv).run(FIDO, VirtualPool(1)).outcomes
    assert (failed.result, failed.message) == (
        "failed", "the key's minimum PIN length is 8 already: --min-pin-length 6 cannot "
        "lower it")
    with ctap(device) as c:
        assert c.info.min_pin_length == 8 and not c.info.force_pin_change


def test_a_reset_the_key_refuses_after_a_replug_fails_with_what_to_do(inv, monkeypatch):
    device, serial = pool_key(1)
    with ctap(device) as c:
        ClientPin(c).set_pin("somebody-elses")
    cycles: list[int] = []
    real_cycle, real_since = VirtualKey.power_cycle, VirtualKey.seconds_since_power_up

    def power_cycle(self) -> None:  # noqa: ANN001
        cycles.append(1)
        real_cycle(self)

    monkeypatch.setattr(VirtualKey, "power_cycle", power_cycle)
    monkeypatch.setattr(VirtualKey, "seconds_since_power_up", lambda self: 11.0)
    (failed,) = provisioner(inv).run(FIDO, VirtualPool(1), overwrite=True).outcomes
    assert (failed.result, failed.message) == (
        "failed", "the key refused the FIDO2 reset: it allows one only within 10 s of being "
        "plugged in, with a touch")
    assert len(cycles) == 1
    with ctap(device) as c:
        assert ClientPin(c).get_pin_token("somebody-elses")  # the PIN it had: still there
    # plugged in again in time: resume resets it, as the run was told to (its journal)
    monkeypatch.setattr(VirtualKey, "seconds_since_power_up", real_since)
    (done,) = provisioner(inv).resume(RecordedKeys()).outcomes
    assert done.result == "done"
    _assert_forced(device, _pin(inv, serial))
    assert [(n.kind, n.value) for n in inv.notes(RecordKey(serial, "fido", "pin"))][1:] == [
        ("overwrite", "FIDO2 application reset")] * 2  # one reset asked for per attempt


class _OlderKey:
    """The virtual key's own CTAPHID device, its getInfo answered without ``dropped``
    options: a key whose firmware predates them (CTAP 2.0: no authenticatorConfig)."""

    def __init__(self, device, *dropped: str) -> None:  # noqa: ANN001
        self.device, self.dropped = device, dropped

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.device, name)

    def call(self, cmd, data=b"", event=None, on_keepalive=None):  # noqa: ANN001, ANN201
        from fido2 import cbor
        from fido2.hid import CTAPHID

        response = self.device.call(cmd, data, event, on_keepalive)
        if cmd == CTAPHID.CBOR and data[:1] == b"\x04" and response[:1] == b"\x00":
            info = cbor.decode(response[1:])
            for option in self.dropped:
                del info[4][option]
            response = b"\x00" + cbor.encode(info)
        return response


@pytest.mark.parametrize(("dropped", "spec", "message"), [
    (("authnrCfg",), FIDO, "cannot force a PIN change (no authenticatorConfig "
                           "setMinPINLength: CTAP 2.1 is needed)"),
    (("setMinPINLength",), FIDO, "cannot force a PIN change (no authenticatorConfig "
                                 "setMinPINLength: CTAP 2.1 is needed)"),
    (("alwaysUv",), FIDO, "has no alwaysUv setting"),
    (("alwaysUv",), Spec(Mode.FIDO, name="pin"), None),
], ids=["no-config", "no-min-pin-length", "no-alwaysuv", "alwaysuv-not-asked"])
def test_a_key_without_the_settings_the_run_needs_is_unsuitable(inv, dropped, spec, message):
    from hwtoken.fido.device import open_key
    from hwtoken.provision.fido import _FidoConnection
    from hwtoken.provision.protocol import Unsuitable

    device, serial = pool_key(1)
    with open_key(device) as key:
        conn = _FidoConnection(Device(serial, device, model="Old Key"), Station(journal=inv),
                               _OlderKey(key.device, *dropped), lambda: None)
        if message is None:
            assert conn.occupant(spec) is None
            return
        with pytest.raises(Unsuitable) as refused:
            conn.occupant(spec)
    assert str(refused.value) == f"Old Key {message}"


def _fido_steps(inv, plan: Spec, prefix: str = "prov", **run) -> list[str]:  # noqa: ANN001, ANN003
    """The fido steps of a run on key 1 of pool ``prefix``, each told for its record."""
    steps: list[tuple[str, object]] = []
    summary = provisioner(inv, hook=lambda step, key: steps.append((step, key))).run(
        plan, VirtualPool(1, prefix=prefix), **run)
    assert summary.counts() == {"done": 1}, summary.outcomes
    fido = [(step, key) for step, key in steps if step.startswith("fido-")]
    assert {key for _, key in fido} == {RecordKey(summary.outcomes[0].serial, "fido", "pin")}
    return [step for step, _ in fido]


def test_the_steps_a_key_goes_through(inv):
    pool_key(1)
    assert _fido_steps(inv, Spec(Mode.FIDO, name="pin")) == ["fido-pin", "fido-config"]
    assert _fido_steps(inv, FIDO, reprogram=True) == [  # its own PIN: changed, no reset
        "fido-pin", "fido-always-uv", "fido-config"]
    other, serial = pool_key(1, prefix="other")
    with ctap(other) as c:
        ClientPin(c).set_pin("somebody-elses")
    assert _fido_steps(inv, FIDO, prefix="other", overwrite=True) == [
        "fido-reset", "fido-pin", "fido-always-uv", "fido-config"]
    _assert_forced(other, _pin(inv, serial))


def test_resume_does_not_reset_a_pin_somebody_else_set_since_the_record_was_made(inv):
    device, serial = _crash_at(inv, "record")
    with ctap(device) as c:
        ClientPin(c).set_pin("somebody-elses")
    (refused,) = provisioner(inv).resume(RecordedKeys()).outcomes
    assert (refused.result, refused.message) == (
        "refused", "the key's FIDO2 PIN is set and is not one this inventory set: pass "
        "--overwrite to reset the key (its credentials are lost)")
    with ctap(device) as c:
        assert ClientPin(c).get_pin_token("somebody-elses")  # still the key's PIN
    assert "overwrite" not in [n.kind for n in inv.notes(RecordKey(serial, "fido", "pin"))]


def _block_pin(device: str) -> None:
    """8 wrong PINs, re-plugged after each 3 in a row: the key's PIN is blocked."""
    for _ in range(3):
        with ctap(device) as c:
            for _ in range(3):
                with contextlib.suppress(CtapError):
                    ClientPin(c).get_pin_token("11111111")
    with ctap(device) as c:
        assert ClientPin(c).get_pin_retries()[0] == 0


def test_a_pin_blocked_by_wrong_tries_is_refused_unless_overwrite_which_resets_it(inv):
    """Fixed: a key whose PIN wrong tries had blocked was refused even with --overwrite
    (with the advice to pass --overwrite); it is reset like any other PIN."""
    device, serial = pool_key(1)
    with ctap(device) as c:
        ClientPin(c).set_pin("somebody-elses")
    _block_pin(device)
    (refused,) = provisioner(inv).run(FIDO, VirtualPool(1)).outcomes
    assert (refused.result, refused.reason) == ("refused", "occupied")
    (done,) = provisioner(inv).run(FIDO, VirtualPool(1), overwrite=True).outcomes
    assert done.result == "done"
    _assert_forced(device, _pin(inv, serial))
    assert [n.kind for n in inv.notes(RecordKey(serial, "fido", "pin"))] == [
        "credentials", "overwrite"]


def test_a_key_discovery_saw_without_a_fido_interface_is_refused_before_it_is_opened():
    from hwtoken.provision.protocol import Unsuitable

    programmer = Fido2PinProgrammer()
    otp_only = Device(4242, "usb:4242", model="YubiKey 5 NFC", interfaces=frozenset({"otp"}))
    with pytest.raises(Unsuitable) as refused, programmer.connect(otp_only):
        pass
    assert str(refused.value) == ("YubiKey 5 NFC is a key (OTP interface only): it has no "
                                  "FIDO2 application")
    programmer.check_suitable(Device(4242, "usb:4242", interfaces=frozenset({"fido"})))
    assert programmer.station == Station()  # no journal, no CA, no operator to tell


def test_random_pins_are_digits_of_the_length_asked():
    from hwtoken.provision.fido import random_pin

    pins = [random_pin(8) for _ in range(60)]
    assert all(len(p) == 8 and p.isdigit() for p in pins)
    assert set("".join(pins)) == set("0123456789")  # 480 digits: every one turns up



def test_reprogram_finds_the_keys_pin_among_the_earlier_ones(inv):
    """The key holds the PIN of an older generation (not the newest): the newer ones are
    tried, found wrong, and that one changes it."""
    device, serial = pool_key(1)
    assert provisioner(inv).run(FIDO, VirtualPool(1)).counts() == {"done": 1}
    first = _pin(inv, serial)
    assert provisioner(inv).run(FIDO, VirtualPool(1), reprogram=True).counts() == {"done": 1}
    with ctap(device) as c:
        ClientPin(c).change_pin(_pin(inv, serial), first)  # back to the first generation's
    (done,) = provisioner(inv).run(FIDO, VirtualPool(1), reprogram=True).outcomes
    assert done.result == "done"
    _assert_forced(device, _pin(inv, serial))
    assert "overwrite" not in [n.kind for n in inv.notes(RecordKey(serial, "fido", "pin"))]


def test_reprogram_of_a_key_whose_pin_wrong_tries_blocked_is_refused_with_what_to_do(inv):
    """A record this inventory owns is programmed again without asking what the key holds
    (no --overwrite to take from there): the blocked PIN is refused, not reset."""
    device, serial = pool_key(1)
    assert provisioner(inv).run(FIDO, VirtualPool(1)).counts() == {"done": 1}
    pin = _pin(inv, serial)
    _block_pin(device)
    (refused,) = provisioner(inv).run(FIDO, VirtualPool(1), reprogram=True).outcomes
    assert (refused.result, refused.reason, refused.message) == (
        "refused", "access-code", "the key's FIDO2 PIN is blocked (too many wrong PINs): "
        "re-plug it, or reset it with --overwrite")
    assert "overwrite" not in [n.kind for n in inv.notes(RecordKey(serial, "fido", "pin"))]
    with ctap(device) as c:
        with pytest.raises(CtapError) as still:  # not reset: blocked as it was
            ClientPin(c).get_pin_token(pin)
        assert still.value.code == CtapError.ERR.PIN_BLOCKED


class _PluggedKey(YkmanDevice):
    """What ykman's discovery finds for a real key: here the virtual key ``key`` (its
    CTAPHID device), which ``_do_reinsert`` power-cycles as an operator's re-plug would;
    ``gone`` keeps the operator from ever plugging it back."""

    def __init__(self, key, *, fido: bool = True, gone: bool = False) -> None:  # noqa: ANN001
        super().__init__(TRANSPORT.USB, id(key), None)
        self.key, self.fido, self.gone = key, fido, gone
        self.opened: list[type] = []
        self.events: list[threading.Event] = []

    def supports_connection(self, connection_type) -> bool:  # noqa: ANN001
        return self.fido and connection_type is FidoConnection

    def open_connection(self, connection_type):  # noqa: ANN001, ANN201
        if not self.supports_connection(connection_type):
            raise ValueError("Unsupported Connection type")  # as ykman's devices do
        self.opened.append(connection_type)
        return self.key.device

    def _do_reinsert(self, reinsert_cb, event) -> None:  # noqa: ANN001
        self.events.append(event)
        reinsert_cb(REINSERT_STATUS.REMOVE)
        if self.gone:
            if event.wait(10):  # ykman's loop, cancelled by the caller's event
                raise CancelledException()
            return  # nobody cancelled: the test sees the wait end without an error
        self.key.replug()
        reinsert_cb(REINSERT_STATUS.REINSERT)


def _discovered(monkeypatch, *found) -> None:  # noqa: ANN001
    """ykman's list_all_devices answers ``found``: (device, serial) pairs."""
    import ykman.device

    monkeypatch.setattr(ykman.device, "list_all_devices", lambda: [
        (dev, SimpleNamespace(serial=serial)) for dev, serial in found])


def test_a_real_key_is_opened_and_replugged_through_ykmans_discovery(monkeypatch):
    from hwtoken.fido.device import open_key
    from hwtoken.provision.fido import _open_real

    device, serial = pool_key(1)
    with open_key(device) as key:
        other, plugged = _PluggedKey(None), _PluggedKey(key)
        _discovered(monkeypatch, (other, serial + 1), (plugged, serial))
        said: list[str] = []
        first, reinsert = _open_real(serial, said.append)
        assert first is key.device and plugged.opened == [FidoConnection]
        assert other.opened == [] and said == []
        again = reinsert()
        assert said == [f"remove key {serial} to reset its FIDO2 application...",
                        f"insert key {serial} again and touch it within 10 s..."]
        assert again is key.device is not first  # the key's device after the power-cycle
        assert plugged.opened == [FidoConnection] * 2
        (event,) = plugged.events
        assert isinstance(event, threading.Event) and not event.is_set()
        Ctap2(again).get_info()  # the re-plugged key answers
        # nobody to tell: the re-plug happens all the same
        _, quiet = _open_real(serial, None)
        assert quiet() is key.device


def test_a_real_key_not_replugged_in_time_fails_with_how_long_it_waited(monkeypatch):
    from hwtoken.fido.device import open_key
    from hwtoken.provision import fido

    monkeypatch.setattr(fido, "REPLUG_TIMEOUT", 1.0)
    device, serial = pool_key(1)
    with open_key(device) as key:
        plugged = _PluggedKey(key, gone=True)
        _discovered(monkeypatch, (plugged, serial))
        said: list[str] = []
        _, reinsert = fido._open_real(serial, said.append)
        with pytest.raises(CheckFailed) as late:
            reinsert()
        assert str(late.value) == (f"key {serial} was not re-plugged within 1 s for its "
                                   "FIDO2 reset")
        assert said == [f"remove key {serial} to reset its FIDO2 application..."]
        assert plugged.opened == [FidoConnection]  # not opened again


def test_a_real_key_missing_or_without_fido_is_refused_by_serial(monkeypatch):
    from hwtoken.provision.fido import _open_real
    from hwtoken.provision.protocol import Unsuitable

    _discovered(monkeypatch, (_PluggedKey(None), 7))
    with pytest.raises(DeviceError) as missing:
        _open_real(8, None)
    assert str(missing.value) == "key 8 is not plugged in"
    otp_only = _PluggedKey(None, fido=False)
    _discovered(monkeypatch, (otp_only, 8))
    with pytest.raises(Unsuitable) as refused:
        _open_real(8, None)
    assert str(refused.value) == "key 8 has no FIDO interface"
    assert otp_only.opened == []


def test_the_programmer_reaches_a_real_key_through_discovery_and_closes_it(monkeypatch):
    from hwtoken.fido.device import open_key

    device, serial = pool_key(1)
    with open_key(device) as key:
        closed: list[int] = []
        real_close = key.device.close
        monkeypatch.setattr(key.device, "close", lambda: (closed.append(1), real_close()))
        _discovered(monkeypatch, (_PluggedKey(key), serial))
        usb = Device(serial, f"usb:{serial}", interfaces=frozenset({"fido"}))
        with Fido2PinProgrammer().connect(usb) as conn:
            assert conn.occupant(FIDO) is None  # asked the key: it has no PIN
            assert closed == []
        assert closed == [1]
