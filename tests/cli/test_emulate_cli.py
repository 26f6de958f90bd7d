"""`hwtoken emulate` through click's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from hwtoken import devices
from hwtoken.cli import cli

HWTOKEN = Path(sys.executable).with_name("hwtoken")


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_create_show_list_delete(_isolated_state_dir):
    r = run("emulate", "create", "alpha", "--serial", "4242", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["serial"] == 4242 and doc["version"] == "5.7.4"
    key_file = Path(doc["path"])
    assert key_file == _isolated_state_dir / "keys" / "alpha.key"
    assert key_file.stat().st_mode & 0o777 == 0o600

    r = run("emulate", "show", "alpha", "--json")
    info = json.loads(r.output)
    assert info["serial"] == 4242
    assert info["credentials"] == 0 and info["pin_set"] is False
    assert set(info["slots"]) == {"1", "2"} and info["served"] is None
    assert len(info["aaguid"]) == 36

    r = run("emulate", "show", "alpha")
    assert "serial:" in r.output and "4242" in r.output and str(key_file) in r.output
    assert "master_secret" not in r.output

    r = run("emulate", "list")
    assert r.exit_code == 0 and "alpha" in r.output and "4242" in r.output
    assert [k["name"] for k in json.loads(run("emulate", "list", "--json").output)] == ["alpha"]

    r = run("emulate", "delete", "alpha")  # no tty, no --force: refused
    assert r.exit_code == 2 and "--force" in r.output
    assert key_file.exists()
    r = run("emulate", "delete", "alpha", "--force")
    assert r.exit_code == 0 and not key_file.exists()
    assert json.loads(run("emulate", "list", "--json").output) == []


def test_errors_are_one_line_with_exit_2():
    assert run("emulate", "create", "dup").exit_code == 0
    r = run("emulate", "create", "dup")
    assert r.exit_code == 2 and r.output.startswith("error: ") and "already exists" in r.output
    r = run("emulate", "show", "missing")
    assert r.exit_code == 2 and "emulate create missing" in r.output
    assert "Traceback" not in r.output
    r = run("emulate", "create", "../evil")
    assert r.exit_code == 2 and "invalid virtual key name" in r.output
    r = run("emulate", "create", "s", "--serial", "0")
    assert r.exit_code == 2


def test_state_dir_before_or_after_the_subcommand(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("emulate", "create", "bar", "--state-dir", str(a)).exit_code == 0
    assert run("--state-dir", str(b), "emulate", "create", "bar").exit_code == 0
    assert run("emulate", "--state-dir", str(b), "show", "bar").exit_code == 0
    assert (a / "keys" / "bar.key").exists() and (b / "keys" / "bar.key").exists()


def test_serve_refuses_a_remote_address_without_allow_remote():
    run("emulate", "create", "r")
    r = run("emulate", "serve", "r", "--usbip", "0.0.0.0:0")
    assert r.exit_code == 2 and "--allow-remote" in r.output


def _wait_runtime(name: str, proc: subprocess.Popen, timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        doc = devices.running_serve(name)
        if doc is not None:
            return doc
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early: {proc.stderr.read()}")
        time.sleep(0.05)
    raise AssertionError("serve did not start")


@pytest.fixture
def serving(_isolated_state_dir):
    """`hwtoken emulate serve key1 --usbip 0` as a subprocess; yields (proc, runtime doc)."""
    env = dict(os.environ, HWTOKEN_STATE_DIR=str(_isolated_state_dir))
    subprocess.run([str(HWTOKEN), "emulate", "create", "key1", "--serial", "777"], env=env,
                   check=True, capture_output=True, timeout=60)
    proc = subprocess.Popen([str(HWTOKEN), "emulate", "serve", "key1", "--usbip", "0"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield proc, _wait_runtime("key1", proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_serve_subprocess_end_to_end(serving, _isolated_state_dir):
    proc, doc = serving
    host, port, busid = doc["usbip"]["host"], doc["usbip"]["port"], doc["usbip"]["busid"]
    assert host == "127.0.0.1" and port > 0 and busid == "1-1"
    runtime = _isolated_state_dir / "keys" / "key1.serve.json"
    assert runtime.stat().st_mode & 0o777 == 0o600

    # a second serve of the same key is refused: the first holds its lock
    second = subprocess.run([str(HWTOKEN), "emulate", "serve", "key1", "--usbip", "0"],
                            capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert second.stderr.strip() == f"error: virtual key 'key1' is already served by pid {proc.pid}"

    # other commands find the running serve through devices.*, on its private Unix socket
    sock = Path(doc["usbip"]["socket"])
    assert sock.is_socket() and stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    with devices.usbip_endpoint_for("key1") as endpoint:
        assert endpoint == (str(sock), 0, busid)
    with devices.fido_device_for("key1") as dev:
        assert dev.descriptor.serial_number == "777"
        assert dev.descriptor.path == f"usbip+unix://{sock}/1-1"
        assert dev.ping(b"hello") == b"hello"
    with devices.open_virtual("key1") as handle:
        assert handle.served and handle.key is None and handle.usbip == (str(sock), 0, busid)
    r = run("emulate", "delete", "key1", "--force")  # refused while served
    assert r.exit_code == 2 and "in use" in r.output
    shown = json.loads(run("emulate", "show", "key1", "--json").output)
    assert shown["served"]["pid"] == proc.pid and shown["served"]["usbip"]["port"] == port

    # SIGTERM: clean stop, runtime file removed, exit 0
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "serving virtual key key1" in out and "stopped serving key1" in out
    assert not runtime.exists()
    assert not sock.parent.exists()  # the private runtime directory goes with it
    assert devices.running_serve("key1") is None


def test_serve_stops_on_sigint(serving):
    proc, _doc = serving
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130  # Ctrl-C: a clean stop, reported as every command does
    assert "stopped serving" in out and err.strip().splitlines()[-1] == "interrupted"


def test_stale_runtime_file_is_ignored(_isolated_state_dir):
    run("emulate", "create", "stale")
    runtime = _isolated_state_dir / "keys" / "stale.serve.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runtime.write_text(json.dumps({"pid": dead.pid, "usbip": {"host": "127.0.0.1",
                                                              "port": 1, "busid": "1-1"}}))
    assert devices.running_serve("stale") is None
    with devices.open_virtual("stale") as handle:
        assert handle.key is not None and not handle.served


def _serve(state_dir: Path, name: str, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, HWTOKEN_STATE_DIR=str(state_dir))
    subprocess.run([str(HWTOKEN), "emulate", "create", name], env=env, check=True,
                   capture_output=True, timeout=60)
    return subprocess.Popen([str(HWTOKEN), "emulate", "serve", name, "--usbip", "0", *extra],
                            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _make_credential(name: str) -> None:
    from fido2.ctap2 import Ctap2

    with devices.fido_device_for(name) as dev:
        Ctap2(dev).make_credential(
            bytes(32), {"id": "example.com", "name": "Example"},
            {"id": b"u", "name": "u"}, [{"type": "public-key", "alg": -7}])


def _stderr_lines(proc: subprocess.Popen):
    """A queue that receives the process's stderr line by line (read in a thread)."""
    import queue
    import threading

    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        buf = ""
        while True:
            ch = proc.stderr.read(1)
            if not ch:
                return
            buf += ch
            if ch == "\n" or buf.endswith(": "):  # a prompt ends without a newline
                lines.put(buf)
                buf = ""

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_pipe_read(pipe, timeout: float = 20.0) -> None:
    """Wait until the process at the other end of ``pipe`` has read all that was written
    (FIONREAD of a pipe counts the bytes not read yet, from either end)."""
    import fcntl
    import struct
    import termios

    deadline = time.monotonic() + timeout
    while struct.unpack("i", fcntl.ioctl(pipe.fileno(), termios.FIONREAD, bytes(4)))[0]:
        assert time.monotonic() < deadline, "the process never read its stdin"
        time.sleep(0.01)


def _wait_line(lines, needle: str, timeout: float = 20.0) -> str:
    import queue

    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not in stderr: {seen}")


def _make_credential_in_thread(name: str):
    import threading

    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            _make_credential(name)
            outcome.append(None)
        except BaseException as exc:  # checked by the caller
            outcome.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, outcome


def test_serve_touch_deny(_isolated_state_dir):
    from fido2.ctap import CtapError

    proc = _serve(_isolated_state_dir, "t", "--touch", "deny")
    try:
        _wait_runtime("t", proc)
        with pytest.raises(CtapError) as e:
            _make_credential("t")
        assert e.value.code == CtapError.ERR.OPERATION_DENIED
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


@pytest.mark.parametrize(("typed_ahead", "answer", "approved"), [
    ("", "y\n", True),
    ("", "\n", True),  # Enter takes the default, like pressing the button
    ("", "n\n", False),
    ("y\n", "n\n", False),  # typed before the request: thrown away, not an approval
    ("", "maybe\nyes\n", True),  # asked again until y or n
])
def test_serve_touch_prompt(_isolated_state_dir, typed_ahead, answer, approved):
    from fido2.ctap import CtapError

    proc = _serve(_isolated_state_dir, "t", "--touch", "prompt")
    lines = _stderr_lines(proc)
    try:
        _wait_runtime("t", proc)
        if typed_ahead:
            proc.stdin.write(typed_ahead)
            proc.stdin.flush()
            _wait_pipe_read(proc.stdin)  # serve's stdin reader took it in, before the request
        t, outcome = _make_credential_in_thread("t")
        _wait_line(lines, "touch requested")  # asked only once the host asks
        proc.stdin.write(answer)
        proc.stdin.flush()
        t.join(timeout=30)
        assert outcome, "the request did not finish"
        if approved:
            assert outcome[0] is None
        else:
            assert isinstance(outcome[0], CtapError)
        # the next request gets its own question
        t, outcome = _make_credential_in_thread("t")
        _wait_line(lines, "touch requested")
        proc.stdin.write("y\n")
        proc.stdin.flush()
        t.join(timeout=30)
        assert outcome == [None]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0


def test_show_exports_the_piv_attestation_root(_isolated_state_dir):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from hwtoken.emulator.key import VirtualKey

    assert run("emulate", "create", "p", "--serial", "777").exit_code == 0
    info = json.loads(run("emulate", "show", "p", "--json").output)
    assert info["piv_keys"] == 0 and len(info["piv_attestation_root_sha256"]) == 64
    r = run("emulate", "show", "p", "--piv-attestation-root")
    assert r.exit_code == 0
    root = x509.load_pem_x509_certificate(r.output.encode())
    assert "777" in root.subject.rfc4514_string()
    assert root.fingerprint(hashes.SHA256()).hex() == info["piv_attestation_root_sha256"]
    doc = json.loads(run("emulate", "show", "p", "--piv-attestation-root", "--json").output)
    assert doc["piv_attestation_root"] == r.output
    # a key from before PIV existed has no root until PIV is first used
    path = _isolated_state_dir / "keys" / "p.key"
    with VirtualKey.load(path) as key:
        del key.store.data["piv"]
    assert json.loads(run("emulate", "show", "p", "--json").output)[
        "piv_attestation_root_sha256"] is None
    r = run("emulate", "show", "p", "--piv-attestation-root")
    assert r.exit_code == 2 and r.output.startswith("error: ") and r.output.count("\n") == 1


def test_show_exports_the_scp_ca_once_the_security_domain_is_used(_isolated_state_dir):
    from cryptography import x509
    from yubikit.core.smartcard.scp import KeyRef
    from yubikit.securitydomain import SecurityDomainSession

    from hwtoken.emulator.iso7816 import CardOS
    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.transports.card_direct import DirectCardConnection

    assert run("emulate", "create", "s", "--serial", "778").exit_code == 0
    r = run("emulate", "show", "s", "--scp-ca")
    assert r.exit_code == 2 and r.output.startswith("error: ") and r.output.count("\n") == 1
    with VirtualKey.load(_isolated_state_dir / "keys" / "s.key") as key:
        chain = SecurityDomainSession(DirectCardConnection(CardOS(key))).get_certificate_bundle(
            KeyRef(0x13, 0x01))
    r = run("emulate", "show", "s", "--scp-ca")
    assert r.exit_code == 0
    root = x509.load_pem_x509_certificate(r.output.encode())
    chain[0].verify_directly_issued_by(root)  # what ykman --scp-ca checks
    assert json.loads(run("emulate", "show", "s", "--scp-ca", "--json").output)[
        "scp_ca"] == r.output
    r = run("emulate", "show", "s", "--scp-ca", "--piv-attestation-root")
    assert r.exit_code == 2 and "choose one" in r.output


def test_show_exports_the_openpgp_attestation_root(_isolated_state_dir):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from hwtoken.emulator.key import VirtualKey

    assert run("emulate", "create", "g", "--serial", "778").exit_code == 0
    info = json.loads(run("emulate", "show", "g", "--json").output)
    assert info["openpgp_keys"] == [] and len(info["openpgp_attestation_root_sha256"]) == 64
    r = run("emulate", "show", "g", "--openpgp-attestation-root")
    assert r.exit_code == 0
    root = x509.load_pem_x509_certificate(r.output.encode())
    assert root.subject.rfc4514_string() == "CN=hwtoken Virtual OpenPGP Root CA 778,O=hwtoken"
    assert root.fingerprint(hashes.SHA256()).hex() == info["openpgp_attestation_root_sha256"]
    assert info["openpgp_attestation_root_sha256"] != info["piv_attestation_root_sha256"]
    doc = json.loads(run("emulate", "show", "g", "--openpgp-attestation-root",
                         "--json").output)
    assert doc == {"name": "g", "openpgp_attestation_root": r.output}
    human = run("emulate", "show", "g").output
    assert "OpenPGP keys:             -\n" in human
    # one root at a time, as a real process: one error line, exit 2
    hwtoken = str(Path(sys.executable).with_name("hwtoken"))
    both = subprocess.run([hwtoken, "emulate", "show", "g", "--openpgp-attestation-root",
                           "--piv-attestation-root"], capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    assert both.returncode == 2 and both.stdout == ""
    assert both.stderr == ("error: choose one of --attestation-root, --piv-attestation-root, "
                           "--openpgp-attestation-root and --scp-ca\n")
    # a key from before OpenPGP existed has no root until OpenPGP is first used
    path = _isolated_state_dir / "keys" / "g.key"
    with VirtualKey.load(path) as key:
        del key.store.data["openpgp"]
    assert json.loads(run("emulate", "show", "g", "--json").output)[
        "openpgp_attestation_root_sha256"] is None
    r = run("emulate", "show", "g", "--openpgp-attestation-root")
    assert r.exit_code == 2 and r.output.startswith("error: ") and r.output.count("\n") == 1
    assert "OpenPGP" in r.output


def test_create_with_a_profile_and_list_profiles(_isolated_state_dir):
    from fido2.ctap2 import Ctap2

    from hwtoken.emulator import VirtualKey, fido_device
    from hwtoken.emulator.profiles import PROFILES

    r = run("emulate", "create", "sk", "--profile", "security-key", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["profile"] == "security-key" and doc["version"] == "5.7.1"
    assert json.loads(run("emulate", "show", "sk", "--json").output)["profile"] == "security-key"
    assert "security-key" in run("emulate", "list").output
    run("emulate", "create", "new", "--profile", "latest")
    with VirtualKey.load(devices.key_path_for("new")) as key:
        assert "FIDO_2_2" in Ctap2(fido_device(key)).get_info().versions
    r = run("emulate", "create", "bad", "--profile", "yubikey-99")
    assert r.exit_code == 2 and "yubikey-99" in r.output
    assert not (_isolated_state_dir / "keys" / "bad.key").exists()

    r = run("emulate", "profiles", "--json")
    assert r.exit_code == 0
    listed = json.loads(r.output)
    assert [p["name"] for p in listed] == list(PROFILES)
    latest = next(p for p in listed if p["name"] == "latest")
    assert "ML-DSA-87" in latest["fido"]["algorithms"]
    assert latest["usb"]["product_id"] == "0407"
    assert latest["usb"]["interfaces"] == ["otp", "fido", "ccid"]
    text = run("emulate", "profiles").output
    assert "yubikey-5 (default)" in text and "1050:0120" in text and "CTAP1/U2F" in text


def test_otp_commands_on_a_key_without_otp_say_so(_isolated_state_dir):
    run("emulate", "create", "sk", "--profile", "security-key")
    r = run("yubikey", "info", "--device", "emu:sk")
    assert r.exit_code != 0
    assert "emu:sk has no OTP slots: it is a Security Key NFC by Yubico" in r.output
    assert "Traceback" not in r.output
