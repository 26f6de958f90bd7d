"""python-fido2's own Linux backend (``fido2.hid.linux``: /dev/hidraw*, ioctls, blocking
reads) against a virtual key plugged in via umockdev: ``hwtoken fido2`` with no --device
takes exactly the path it takes with a real key."""

from __future__ import annotations

import json

from umockdev_helpers import run


def test_hwtoken_fido2_info_register_authenticate_without_device(plugged_key, tmp_path):
    info = json.loads(run(plugged_key, ["hwtoken", "fido2", "info", "--json"]).stdout)
    assert info["aaguid"] == str(__import__("uuid").UUID(bytes=plugged_key.key.aaguid))
    cred = tmp_path / "cred.json"
    reg = run(plugged_key, ["hwtoken", "fido2", "register", "--rp", "example.com",
                            "--user", "alice", "--out", str(cred), "--json"])
    assert json.loads(reg.stdout)["attestation"]["verified"] is True
    for _ in range(2):
        auth = run(plugged_key, ["hwtoken", "fido2", "authenticate", "--rp", "example.com",
                                 "--cred", str(cred), "--json"])
        assert json.loads(auth.stdout)["verified"] is True


def test_fido2_list_devices_in_a_program(plugged_key):
    script = (
        "from fido2.hid import CtapHidDevice\n"
        "from fido2.ctap2 import Ctap2\n"
        "devs = list(CtapHidDevice.list_devices())\n"
        "print(len(devs), devs[0].descriptor.path, devs[0].descriptor.vid, "
        "devs[0].descriptor.pid, Ctap2(devs[0]).get_info().versions)\n")
    out = run(plugged_key, ["python", "-c", script]).stdout.split(maxsplit=4)
    assert out[0] == "1"
    assert out[1] == plugged_key.hidraw
    assert (int(out[2]), int(out[3])) == (0x1050, 0x0407)
    assert "FIDO_2_1" in out[4]
