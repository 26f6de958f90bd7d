"""User presence outcomes and the CTAP2 error each one gives through the real fido2 client."""

from __future__ import annotations

import threading

import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2

from hwtoken.emulator import (
    ApproveAfterDelay,
    ApproveAlways,
    AskCallback,
    Decision,
    DenyAlways,
    VirtualKey,
    fido_device,
)


def test_policies_report_how_the_wait_ended():
    assert ApproveAlways().wait("x") is Decision.APPROVED
    assert DenyAlways().wait("x") is Decision.DENIED
    assert AskCallback(lambda r: False).wait("x") is Decision.DENIED
    hang = threading.Event()
    slow = AskCallback(lambda r: hang.wait(5), timeout=0.2)
    assert slow.wait("x") is Decision.TIMEOUT
    hang.set()
    cancel = threading.Event()
    cancel.set()
    assert ApproveAfterDelay(5).wait("x", cancel) is Decision.CANCELLED
    assert not Decision.TIMEOUT and not Decision.DENIED and Decision.APPROVED


@pytest.mark.parametrize("policy,expected", [
    (DenyAlways(), CtapError.ERR.OPERATION_DENIED),
    (AskCallback(lambda r: threading.Event().wait(2), timeout=0.3),
     CtapError.ERR.USER_ACTION_TIMEOUT),
])
def test_ctap2_error_for_no_touch(tmp_path, policy, expected):
    with VirtualKey.create(tmp_path / "k.key") as key:
        ctap = Ctap2(fido_device(key))
        key.presence = policy
        with pytest.raises(CtapError) as exc:
            ctap.make_credential(b"\1" * 32, {"id": "example.com"},
                                 {"id": b"u", "name": "u"}, [{"type": "public-key", "alg": -7}])
        assert exc.value.code == expected
