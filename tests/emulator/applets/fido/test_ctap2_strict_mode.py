"""The CTAP2 authenticator's strict mode (tests/conftest.py turns it on for every test):
a bug still answers CTAP1_ERR_OTHER, as on a real key, and is recorded so the test fails,
also when CTAPHID's worker thread ran the request; a failed write is not a bug."""

from __future__ import annotations

import errno

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2

from hwtoken.emulator.applets.fido.ctap2.authenticator import Authenticator


def test_a_bug_is_answered_err_other_and_recorded(ctap, monkeypatch, _strict_ctap2):
    def broken(self):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(Authenticator, "get_info", broken)
    with pytest.raises(CtapError) as exc:
        ctap.get_info()  # through CTAPHID: the request ran on its worker thread
    assert exc.value.code == CtapError.ERR.OTHER
    assert [type(e) for e in _strict_ctap2] == [ZeroDivisionError]
    _strict_ctap2.clear()  # (seen: this test passes)


def test_a_failed_write_is_not_a_bug(device, monkeypatch, _strict_ctap2):
    from fido2.ctap2.pin import ClientPin

    from hwtoken.emulator import store

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m, pytest.raises(CtapError) as exc:
        m.setattr(store, "atomic_write", disk_full)
        ClientPin(Ctap2(device)).set_pin("12345678")
    assert exc.value.code == CtapError.ERR.OTHER
    assert _strict_ctap2 == []


def test_strict_mode_is_on_in_every_test(_strict_ctap2):
    assert Authenticator.internal_errors is _strict_ctap2
