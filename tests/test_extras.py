"""A missing optional package is a one-line error naming the extra that brings it (exit 2),
in the CLI, in `hwtoken doctor` and in the pytest plugin, never "internal error ... a bug";
and hwtoken.extras agrees with pyproject.toml's extras.

The packages are made missing the way Python sees an uninstalled one: ``sys.modules[name] =
None`` before anything imports them (``import name`` then raises ModuleNotFoundError with
that name), in a real ``hwtoken`` process. tests/test_package.py does the same with a
wheel installed into a clean venv without the extras.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from hwtoken import extras
from hwtoken.cli import contract

ROOT = Path(__file__).resolve().parents[1]

FIDO_LINE = ("error: the Python package {package} is not installed (needed for {needed}): "
             "pip install 'hwtoken[fido]'\n")


def hwtoken_without(missing: list[str], *args: str, state_dir: Path,
                    **kwargs) -> subprocess.CompletedProcess[str]:
    """``hwtoken ARGS`` in a process where the packages ``missing`` are not installed."""
    code = ("import sys\n"
            f"for name in {missing!r}: sys.modules[name] = None\n"
            "from hwtoken.cli import main\n"
            "sys.argv[0] = 'hwtoken'\n"
            "main()\n")
    env = {**os.environ, "HWTOKEN_STATE_DIR": str(state_dir)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, timeout=120, env=env, stdin=subprocess.DEVNULL, **kwargs)


def line(module: str) -> str:
    requirement = extras.for_module(module)
    assert requirement is not None
    return FIDO_LINE.format(package=requirement.package, needed=requirement.needed_for)


def test_every_requirement_is_in_its_extra_in_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]

    def packages(extra: str) -> set[str]:
        out: set[str] = set()
        for spec in optional[extra]:
            name = spec.split(";")[0].split("[")[0]
            for op in "<>=!~ ":
                name = name.split(op)[0]
            if name == "hwtoken":  # hwtoken[a,b]: those extras' packages
                for inner in spec.split("[", 1)[1].split("]")[0].split(","):
                    out |= packages(inner)
            else:
                out.add(name.lower())
        return out

    for r in extras.REQUIREMENTS:
        assert r.package.lower() in packages(r.extra), (r.extra, r.package)
    assert set(extras.EXTRAS) <= set(optional)
    # the developer's virtual key needs one extra: fido brings the USB device model too
    assert {"fido2", "usbip"} <= packages("fido")
    assert {"fido2", "usbip", "selenium"} <= packages("browser")
    every = packages("all")
    assert {r.package.lower() for r in extras.REQUIREMENTS} <= every


def test_a_missing_hwtoken_module_is_still_a_bug():
    """Only the optional packages are named as extras: a module of hwtoken itself (or any
    other) that cannot be imported is an internal error, as before."""
    message, code, _ = contract.classify(ModuleNotFoundError("x", name="hwtoken.gone"))
    assert code == 1 and message.startswith("internal error: ModuleNotFoundError")
    message, code, _ = contract.classify(ModuleNotFoundError("x", name="fido2.hid"))
    assert code == 2 and message.endswith("pip install 'hwtoken[fido]'")


def test_emulate_create_without_fido2(tmp_path):
    proc = hwtoken_without(["fido2"], "emulate", "create", "k", state_dir=tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (2, "", line("fido2"))
    assert not (tmp_path / "keys" / "k.key").exists()  # no half-made key left behind


@pytest.fixture
def made_key(tmp_path):
    """A virtual key ``k`` made with every package present."""
    proc = hwtoken_without([], "emulate", "create", "k", state_dir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return tmp_path


@pytest.mark.parametrize(("missing", "args"), [
    ("usbip", ("emulate", "run", "k", "--", "true")),
    ("usbip", ("emulate", "serve", "k", "--usbip", "127.0.0.1:0")),
    ("fido2", ("fido2", "-d", "emu:k", "info")),
    ("fido2", ("emulate", "show", "k", "--attestation-root")),
])
def test_commands_name_the_extra(made_key, missing, args):
    proc = hwtoken_without([missing], *args, state_dir=made_key)
    if missing == "fido2" and args[:2] == ("emulate", "show"):
        assert proc.returncode == 0 and proc.stdout.startswith("-----BEGIN CERTIFICATE")
        return  # reading a key's file needs no fido2
    assert (proc.returncode, proc.stderr) == (2, line(missing)), proc.stderr


def test_json_error_names_the_extra(made_key):
    proc = hwtoken_without(["fido2"], "fido2", "-d", "emu:k", "info", "--json",
                           state_dir=made_key)
    assert proc.returncode == 2
    doc = json.loads(proc.stdout)
    assert doc == {"error": line("fido2")[len("error: "):-1], "code": 2}


def test_doctor_without_the_extras_reports_them(tmp_path):
    proc = hwtoken_without(["fido2", "usbip", "selenium"], "doctor", "--json",
                           state_dir=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    assert "internal error" not in proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["python: fido"]["status"] == "warn"
    assert checks["python: fido"]["fix"] == "pip install 'hwtoken[fido]'"
    assert checks["python: browser"]["fix"] == "pip install 'hwtoken[browser]'"
    assert checks["umockdev"]["status"] == "ok"  # found without the USB device model
    dev = hwtoken_without(["fido2", "usbip"], "doctor", "--for", "developer", "--json",
                          state_dir=tmp_path)
    assert dev.returncode == 1
    assert json.loads(dev.stdout)["error"].startswith("1 check(s) need fixing: python: fido")


def test_the_pytest_plugin_names_the_extra(tmp_path):
    """A project whose venv lacks usbip: plugged_key errors with the one line, and the tests
    that need no USB device still pass."""
    (tmp_path / "test_user.py").write_text(
        "def test_usb(plugged_key):\n    pass\n\n"
        "def test_in_process(webauthn):\n    webauthn.register('alice')\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    code = ("import sys\nsys.modules['usbip'] = None\nimport pytest\n"
            "sys.exit(pytest.main(['-q', '-p', 'no:cacheprovider', sys.argv[1]]))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert "1 passed, 1 error" in proc.stdout, proc.stdout
    assert ("hwtoken: the Python package usbip is not installed (needed for the virtual key "
            "as a USB device (emulate run/serve, plugged_key)): pip install 'hwtoken[fido]'"
            ) in proc.stdout
    assert "Traceback" not in proc.stdout and "enumeration.py" not in proc.stdout


def test_a_dotted_module_name_is_its_top_package():
    assert extras.for_module("fido2.ctap2.base").package == "fido2"
    assert extras.for_module("smartcard.System").package == "pyscard"
    assert extras.for_module(None) is None and extras.for_module("hwtoken.cli") is None


def test_the_install_command_lists_extras_in_pyprojects_order():
    assert extras.install_command(["pcsc", "fido", "pcsc"]) == "pip install 'hwtoken[fido,pcsc]'"


def test_nothing_is_missing_where_make_test_installed_every_extra():
    # importlib's own find_spec by default: this venv has all of them
    assert extras.missing() == []
    assert [r.module for r in extras.missing(lambda name: None if name == "usb" else object())] \
        == ["usb"]
