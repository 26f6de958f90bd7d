"""The pytest plugin: the example in docs/pytest-plugin.md runs as a developer would paste it,
and --hwtoken-fido2-hid lets a suite written for hardware keys find the virtual key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hwtoken.emulator import VirtualKey

DOC = Path(__file__).resolve().parents[4] / "docs" / "pytest-plugin.md"


def _first_python_block(text: str) -> str:
    match = re.search(r"```python\n(.*?)```", text, re.S)
    assert match, "docs/pytest-plugin.md lost its example"
    return match.group(1)


def _pytest(tmp_path: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "HWTOKEN_FIDO2_HID"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, env=environ,
    )


def test_documented_example_passes_as_pasted(tmp_path):
    example = _first_python_block(DOC.read_text())
    assert "def test_register_then_login(webauthn)" in example
    (tmp_path / "test_login.py").write_text(example)
    # no conftest.py: the fixtures come from the installed pytest11 entry point
    result = _pytest(tmp_path, "test_login.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def _run_example(tmp_path: Path, containing: str, *args: str
                 ) -> subprocess.CompletedProcess[str]:
    """Run the docs/pytest-plugin.md example containing ``containing`` as pasted."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    [example] = [b for b in blocks if containing in b]
    (tmp_path / "test_example.py").write_text(example)
    result = _pytest(tmp_path, "test_example.py", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_documented_profile_choice_passes_as_pasted(tmp_path):
    result = _run_example(tmp_path, "test_my_rp_accepts_every_model", "-vv")
    assert "5 passed" in result.stdout
    for model in ("yubikey-5", "security-key", "latest"):
        assert f"test_my_rp_accepts_every_model[{model}] PASSED" in result.stdout


def test_documented_fingerprint_example_passes_as_pasted(tmp_path):
    result = _run_example(tmp_path, "FingerCallback", "--strict-markers")
    assert "3 passed" in result.stdout


SUITE = '''
from fido2.ctap2 import Ctap2
from fido2.hid import CtapHidDevice, list_descriptors, open_connection, open_device


def _virtual():
    return [d for d in list_descriptors() if str(d.path).startswith("emu:")]


def test_discover_and_use():
    [desc] = _virtual()
    assert (desc.vid, desc.pid) == (0x1050, 0x0407)
    dev = CtapHidDevice(desc, open_connection(desc))
    assert dev.ping(b"hello") == b"hello"
    assert "FIDO_2_1" in Ctap2(dev).get_info().versions
    dev.close()


def test_open_device_by_path():
    [desc] = _virtual()
    dev = open_device(desc.path)
    assert "U2F_V2" in Ctap2(dev).get_info().versions
    dev.close()


def test_list_devices():
    assert any(d.descriptor.path.startswith("emu:") for d in CtapHidDevice.list_devices())


def test_selection_then_replug():
    from fido2.client import DefaultClientDataCollector, Fido2Client
    from hwtoken.emulator.transports.fido_hid import simulate_replug
    from hwtoken.testing import fido2_hid_session_key

    [desc] = _virtual()
    dev = CtapHidDevice(desc, open_connection(desc))
    Fido2Client(dev, DefaultClientDataCollector("https://example.com")).selection()
    simulate_replug(fido2_hid_session_key(), away=0.2).join(10)
    assert [d.path for d in _virtual()] == [desc.path]
'''


def test_option_registers_a_key_for_a_hardware_suite(tmp_path):
    (tmp_path / "test_hw_suite.py").write_text(SUITE)
    result = _pytest(tmp_path, "--hwtoken-fido2-hid", "test_hw_suite.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    # without the option there is no virtual key to find
    result = _pytest(tmp_path, "test_hw_suite.py")
    assert result.returncode != 0


@pytest.mark.slow
def test_environment_variable_and_key_file(tmp_path):
    (tmp_path / "test_hw_suite.py").write_text(SUITE)
    result = _pytest(tmp_path, "test_hw_suite.py", env={"HWTOKEN_FIDO2_HID": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "test_model.py").write_text(
        "from fido2.ctap2 import Ctap2\nfrom hwtoken.testing import fido2_hid_session_key\n"
        "def test_model():\n    assert fido2_hid_session_key().profile.name == 'latest'\n")
    for args, env in (((("--hwtoken-fido2-hid", "--hwtoken-fido2-hid-profile", "latest")), {}),
                      ((), {"HWTOKEN_FIDO2_HID": "1", "HWTOKEN_FIDO2_HID_PROFILE": "latest"})):
        result = _pytest(tmp_path, *args, "test_model.py", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    result = _pytest(tmp_path, "--hwtoken-fido2-hid", "--hwtoken-fido2-hid-profile", "nope",
                     "test_model.py")
    assert result.returncode == 4 and "unknown key profile 'nope'" in result.stderr
    keyfile = tmp_path / "kept.key"
    result = _pytest(tmp_path, "--hwtoken-fido2-hid-key", str(keyfile), "test_hw_suite.py")
    assert result.returncode == 0, result.stdout + result.stderr
    serial = VirtualKey.peek(keyfile).section("identity")["serial"]
    result = _pytest(tmp_path, "test_hw_suite.py", env={"HWTOKEN_FIDO2_HID": str(keyfile)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert VirtualKey.peek(keyfile).section("identity")["serial"] == serial


RECONNECT_SUITE = '''
import threading

from fido2.ctap2 import Ctap2
from fido2.ctap2.pin import ClientPin
from fido2.hid import list_descriptors, open_device


def _reconnect(path):
    """What python-fido2's tests/device/conftest.py does after "Disconnect the
    Authenticator": poll until the key is gone, then until a key appears (bounded here)."""
    pause = threading.Event()
    for _ in range(160):
        if path not in {d.path for d in list_descriptors()}:
            break
        pause.wait(0.05)
    else:
        raise AssertionError("never unplugged")
    for _ in range(160):
        pause.wait(0.05)
        if path in {d.path for d in list_descriptors()}:
            return open_device(path)
    raise AssertionError("never plugged in again")


def test_factory_reset_after_reconnect():
    [path] = [d.path for d in list_descriptors() if str(d.path).startswith("emu:")]
    dev = open_device(path)
    ClientPin(Ctap2(dev)).set_pin("a1b2c3d4")
    dev.close()
    dev = _reconnect(path)
    Ctap2(dev).reset()  # only allowed right after power-up
    assert not Ctap2(dev).get_info().options["clientPin"]
    dev.close()
'''


@pytest.mark.slow
def test_key_replugs_for_a_suite_that_waits_for_it(tmp_path):
    (tmp_path / "test_reconnect.py").write_text(RECONNECT_SUITE)
    result = _pytest(tmp_path, "--hwtoken-fido2-hid", "test_reconnect.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    result = _pytest(tmp_path, "--hwtoken-fido2-hid", "--hwtoken-fido2-hid-no-replug",
                     "test_reconnect.py")
    assert "never unplugged" in result.stdout


def test_unusable_key_file_is_a_usage_error(tmp_path):
    (tmp_path / "test_hw_suite.py").write_text(SUITE)
    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    for spec in (bad, bad / "below-a-file.key"):
        result = _pytest(tmp_path, "--hwtoken-fido2-hid-key", str(spec), "test_hw_suite.py")
        assert result.returncode == 4, result.stdout + result.stderr  # pytest: usage error
        assert "INTERNALERROR" not in result.stdout + result.stderr
        assert f"hwtoken virtual key {spec}" in result.stderr


def test_documented_plugged_key_example_passes_as_pasted(tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    [example] = [b for b in blocks if "def test_ssh_keygen_makes_an_sk_key(plugged_key" in b]
    (tmp_path / "test_programs.py").write_text(example)
    result = _pytest(tmp_path, "test_programs.py", "-o", "hwtoken_require_umockdev=true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


SETTINGS_SUITE = '''
import pytest


def test_defaults(webauthn, fido_device):
    from fido2.ctap2 import Ctap2

    assert webauthn.rp_id == "ini.example" and webauthn.pin == "1357"
    assert Ctap2(fido_device).get_info().options["clientPin"] is True
    webauthn.register("alice")
    assert webauthn.authenticate().user_verified


@pytest.mark.hwtoken(rp_id="marker.example", pin=None)
def test_marker_wins(webauthn, fido_device):
    from fido2.ctap2 import Ctap2

    assert webauthn.rp_id == "marker.example" and webauthn.pin is None
    assert Ctap2(fido_device).get_info().options["clientPin"] is False
    webauthn.register("bob")
    assert not webauthn.authenticate().user_verified


@pytest.mark.hwtoken(colour="blue")
def test_unknown_setting(webauthn):
    pass


def test_plugged_key_has_the_pin(plugged_key):
    """The PIN applies to every fixture: libfido2 sees it on the plugged-in key."""
    info = plugged_key.run(["fido2-token", "-I", plugged_key.hidraw], capture_output=True,
                           text=True, check=True, timeout=60).stdout
    assert "clientPin" in info.split("options: ", 1)[1].splitlines()[0]
    assert "pin retries: 8" in info and plugged_key.pin == "1357"


@pytest.mark.hwtoken(pin="97531")
def test_a_marker_pin_on_the_key_alone(virtual_key):
    from fido2.ctap2 import Ctap2
    from fido2.ctap2.pin import ClientPin
    from hwtoken.emulator import fido_device

    device = fido_device(virtual_key)
    try:
        ClientPin(Ctap2(device)).get_pin_token("97531")  # the marker's PIN, not the ini's
    finally:
        device.close()


@pytest.mark.hwtoken_profile("u2f-only")
def test_a_u2f_key_passes_the_ini_pin_by(virtual_key):
    assert virtual_key.profile.name == "u2f-only"


@pytest.mark.hwtoken_profile("u2f-only")
@pytest.mark.hwtoken(pin="2468")
def test_a_u2f_key_cannot_have_the_marker_pin(virtual_key):
    pass
'''


def test_ini_options_and_marker_set_pin_and_rp_id(tmp_path):
    (tmp_path / "test_settings.py").write_text(SETTINGS_SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nhwtoken_pin = 1357\n"
                                         "hwtoken_rp_id = ini.example\n"
                                         "markers =\n    slow: unused\n")
    result = _pytest(tmp_path, "--strict-markers", "-rE", "test_settings.py")
    assert "5 passed, 2 errors" in result.stdout, result.stdout + result.stderr
    assert "takes only pin, rp_id, fingers as keywords" in result.stdout
    assert ("\n@pytest.mark.hwtoken(pin=...): the u2f-only model has no FIDO2 PIN (it speaks "
            "only U2F)\n") in result.stdout


def test_the_plugin_can_be_turned_off(tmp_path):
    """A project with fixtures of its own named webauthn or virtual_key: -p no:hwtoken."""
    (tmp_path / "conftest.py").write_text(
        "import pytest\n\n@pytest.fixture\ndef webauthn():\n    return 'mine'\n")
    (tmp_path / "test_own.py").write_text(
        "def test_own(webauthn):\n    assert webauthn == 'mine'\n\n"
        "def test_no_virtual_key(request):\n"
        "    assert 'virtual_key' not in request.fixturenames\n"
        "    import pytest\n"
        "    with pytest.raises(pytest.FixtureLookupError):\n"
        "        request.getfixturevalue('virtual_key')\n")
    result = _pytest(tmp_path, "-p", "no:hwtoken", "test_own.py")
    assert result.returncode == 0 and "2 passed" in result.stdout, result.stdout
