"""``-m fido`` in process: virtual keys through python-fido2 (ClientPin, Config), crashes
at every step, a key that has a PIN already, a reset that needs its 10-second window.

libfido2's own fido2-token against keys a station provisioned is in
test_provision_piv_programs.py."""

from __future__ import annotations

import pytest
from fido2.ctap import CtapError
from fido2.ctap2.pin import ClientPin
from piv_helpers import ctap, pool_key, provisioner
from provision_helpers import opened

from hwtoken.emulator.key import VirtualKey
from hwtoken.provision.faults import PROGRAM_STEPS, RUN_STEPS
from hwtoken.provision.model import Mode, RecordKey, Spec, State
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


@pytest.mark.parametrize("step", [*RUN_STEPS, "fido-pin", "fido-always-uv", "fido-config"])
def test_a_crash_at_any_step_resumes_to_the_same_pin(inv, step):
    class Crash(BaseException):
        pass

    def crash(seen: str, *_: object) -> None:
        if seen == step:
            raise Crash

    device, serial = pool_key(1)
    runner = provisioner(inv, hook=crash)
    runner._hook = crash
    with pytest.raises(Crash):
        runner.run(FIDO, VirtualPool(1))
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
