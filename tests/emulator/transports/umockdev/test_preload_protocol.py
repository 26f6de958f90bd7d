"""umockdev's preload protocol from the client side, spoken by hand: every request gets an
answer (never a closed socket or ABORT, which would make umockdev kill the program), and
arbitrary ioctls, reads and writes leave the key working. Hypothesis drives the requests."""

from __future__ import annotations

import errno
import os
import struct
import threading
from pathlib import Path

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


def _nodes(tb, plugged) -> list[tuple[Path, Path]]:
    """(device node, its ioctl socket) of each node a plugged key made."""
    devs = [plugged.usbfs, *plugged.hidraw]
    return [(tb.root / d.lstrip("/"), tb.root / "ioctl" / d.lstrip("/")) for d in devs]


def test_an_open_that_connects_after_the_key_went_gets_enodev(tmp_path, monkeypatch):
    """A program that opened the node just before the key was pulled connects only then:
    the node's socket still answers (ENODEV); an unanswerable socket makes umockdev
    abort the program (a station died with SIGABRT so in CI)."""
    from hwtoken.emulator import VirtualKey
    from hwtoken.emulator.transports import umockdev

    monkeypatch.setattr(preload, "RETIRE_GRACE", 30.0)
    with VirtualKey.create(tmp_path / "k.key") as key, umockdev.Testbed() as tb:
        plugged = tb.plug(key)
        nodes = _nodes(tb, plugged)
        held = [(FakeClient(str(sock)), sock) for _, sock in nodes]  # the last open
        tb.unplug(plugged)
        for node, _sock in nodes:
            assert not os.path.lexists(node)  # gone: no open can begin after the unplug
        for client, sock in held:
            assert os.path.exists(sock)
            late = FakeClient(str(sock))
            assert late.call(preload.REQ_IOCTL, 0x80084803, 0x1000) == (-1, errno.ENODEV)
            # FIONBIO is the program's own file's, answered by it as on any open
            assert late.call(preload.REQ_IOCTL, 0x5421, 0x1000) == (preload.UNHANDLED, 0)
            assert client.call(preload.REQ_READ, 0x1000, 64) == (-1, errno.ENODEV)
            late.close()
            client.close()


def test_a_retired_socket_never_removes_a_newer_nodes_socket(tmp_path):
    """The key back on the same port makes the same hidraw node again: the old listener's
    delayed close leaves the new socket alone."""
    from hwtoken.emulator import VirtualKey
    from hwtoken.emulator.transports import umockdev

    with VirtualKey.create(tmp_path / "k.key") as key, umockdev.Testbed() as tb:
        first = tb.plug(key)
        old, nodes = next(iter(first.hid.values())).listener, first.hidraw
        tb.unplug(first)
        again = tb.plug(key)
        assert again.hidraw == nodes
        new_sock = old.sock_path
        old.close()  # what the grace timer does
        assert os.path.exists(new_sock)
        client = FakeClient(str(new_sock))
        res, err = client.call(preload.REQ_IOCTL, 0x80084803, 0x1000)  # HIDIOCGRAWINFO
        assert (res, err) == (0, 0)
        client.close()


def test_a_port_is_not_reused_until_its_key_is_all_gone(tmp_path, monkeypatch):
    """Plugging in while another key is still being pulled out takes another port (the
    same port's sysfs entries were being removed while made again)."""
    from hwtoken.emulator import VirtualKey
    from hwtoken.emulator.transports import umockdev
    from hwtoken.emulator.transports.umockdev import sysfs

    with VirtualKey.create(tmp_path / "a.key") as a, VirtualKey.create(
            tmp_path / "b.key") as b, umockdev.Testbed() as tb:
        first = tb.plug(a)
        removing, go_on = threading.Event(), threading.Event()
        original = sysfs.Sysfs.remove

        def slow_remove(self, syspath):  # noqa: ANN001, ANN202
            if syspath == first.tree.syspath:
                removing.set()
                assert go_on.wait(30)
            return original(self, syspath)

        monkeypatch.setattr(sysfs.Sysfs, "remove", slow_remove)
        t = threading.Thread(target=tb.unplug, args=(first,))
        t.start()
        assert removing.wait(30)
        second = tb.plug(b)
        assert second.port != first.port
        go_on.set()
        t.join(30)
        assert tb.plugged == [second]
        third = tb.plug(a)
        assert third.port == first.port  # free again once a is all gone


def test_a_driver_never_binds_to_a_key_that_was_pulled_out(tmp_path):
    """libusb gives usbhid back an interface when a program lets go of a pulled key
    (USBDEVFS_CONNECT): a kernel answers ENODEV. Binding it made the key's sysfs entries
    again under the removed device, so the key never left the port (CI, plugged keys)."""
    from hwtoken.emulator import VirtualKey
    from hwtoken.emulator.transports import umockdev

    with VirtualKey.create(tmp_path / "k.key") as key, umockdev.Testbed() as tb:
        plugged = tb.plug(key)
        hid = sorted(plugged.hid)
        assert plugged.drivers.detach(hid[0]) == 0  # a program took the interface
        syspath = tb.sysfs.path(plugged.tree.syspath)
        tb.unplug(plugged)
        assert not syspath.exists()
        assert plugged.drivers.attach(hid[0]) == -errno.ENODEV
        assert plugged.drivers.detach(hid[-1]) == errno.ENODEV
        tb._bind_hid(plugged, hid[0])  # a bind that was already on its way when it went
        assert not syspath.exists()
        assert plugged.hid == {}
