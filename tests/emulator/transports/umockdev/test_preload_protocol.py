"""umockdev's preload protocol from the client side, spoken by hand: every request gets an
answer (never a closed socket or ABORT, which would make umockdev kill the program), and
arbitrary ioctls, reads and writes leave the key working. Hypothesis drives the requests."""

from __future__ import annotations

import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from umockdev_helpers import FakeClient

from hwtoken.emulator.transports.umockdev import preload


def _sock_path(plugged_key) -> str:
    node = plugged_key.hidraw.rsplit("/", 1)[1]
    return str(plugged_key.testbed.root / "ioctl" / "dev" / node)


def test_hidraw_info_ioctls_by_hand(plugged_key):
    client = FakeClient(_sock_path(plugged_key))
    res, err = client.call(preload.REQ_IOCTL, 0x80084803, 0x1000)  # HIDIOCGRAWINFO
    assert (res, err) == (0, 0)
    assert struct.unpack("Ihh", client.memory[0x1000]) == (3, 0x1050, 0x0407)
    res, err = client.call(preload.REQ_IOCTL, 0x5401, 0x2000)  # TCGETS
    assert (res, err) == (-1, 25)  # ENOTTY
    res, _ = client.call(preload.REQ_IOCTL, 0x5421, 0x2000)  # FIONBIO: the real file's
    assert res == preload.UNHANDLED
    client.close()


requests = st.tuples(
    st.sampled_from([preload.REQ_IOCTL, preload.REQ_READ, preload.REQ_WRITE]),
    st.one_of(st.integers(0, 2**32 - 1),
              st.sampled_from([0x80044801, 0x90044802, 0x80084803, 0xC0094806,
                               0xC0094807, 0x80404804, 0x80404805, 0x80404808,
                               0xC0404809, 0xC040480A, 0x5421])),
    st.one_of(st.integers(-2**63, 2**63 - 1), st.integers(0, 70)),
    st.binary(max_size=80))


@settings(max_examples=150,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(requests, min_size=1, max_size=12))
def test_any_request_gets_an_answer_and_the_key_keeps_working(plugged_key, calls):
    client = FakeClient(_sock_path(plugged_key))
    try:
        for cmd, a1, a2, mem in calls:
            if cmd != preload.REQ_IOCTL:
                a2 = a2 % 200  # a read or write of up to 200 bytes at address a1
            client.call(cmd, a1, a2, mem)
    finally:
        client.close()
    out = plugged_key.run(["fido2-token", "-I", plugged_key.hidraw], capture_output=True,
                          text=True, timeout=30)
    assert out.returncode == 0 and "FIDO_2_1" in out.stdout
    assert os.path.exists(_sock_path(plugged_key))
