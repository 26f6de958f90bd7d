"""One key, one state, two transports at once: PC/SC (pcscd + vpcd) and USB/IP."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import yubico
from ykman.pcsc import list_devices
from yubikit.core.smartcard import SmartCardConnection
from yubikit.yubiotp import SLOT, HmacSha1SlotConfiguration, YubiOtpSession

from hwtoken.emulator.pcscd import READER_0, shared_pcscd, wait_for_card
from hwtoken.emulator.serve import KeyService, read_runtime
from hwtoken.emulator.transports.pyusb_backend import UsbipBackend, use_backend
from hwtoken.emulator.transports.usbip_fido import open_usbip_fido

pytestmark = pytest.mark.system


def test_slot_programmed_over_pcsc_answers_over_usbip(usbip_key):
    pcscd = shared_pcscd()
    with KeyService(usbip_key, usbip=("127.0.0.1", 0), pcsc=("127.0.0.1", pcscd.port)) as svc:
        doc = read_runtime(usbip_key.path)
        assert doc is not None and doc["pcsc"]["port"] == pcscd.port
        assert doc["usbip"]["port"] == svc.usbip.port
        assert svc.vpcd.wait_connected(10), pcscd.log_tail()
        wait_for_card(READER_0, timeout=10)

        secret = bytes(range(20))
        (dev,) = list_devices(READER_0)
        with dev.open_connection(SmartCardConnection) as conn:  # yubikit over pcscd
            otp = YubiOtpSession(conn)
            assert otp.get_serial() == usbip_key.serial
            otp.put_configuration(SLOT.TWO, HmacSha1SlotConfiguration(secret))

        host, port, busid = svc.usbip.address
        fido = open_usbip_fido(host, port, busid)  # FIDO over USB/IP while the card is in
        assert fido.ping(b"both") == b"both"
        fido.close()
        with UsbipBackend(host, port) as backend, use_backend(backend):  # python-yubico
            yk = yubico.find_yubikey()
            challenge = b"hwtoken both transports"
            response = yk.challenge_response(challenge, slot=2)
            del yk
        assert response == hmac.new(secret, challenge, hashlib.sha1).digest()
    assert read_runtime(usbip_key.path) is None  # removed on stop


def test_emulate_serve_pcsc_only_subprocess(_isolated_state_dir):
    """`hwtoken emulate serve NAME --no-usbip --pcsc HOST:PORT` inserts the key into pcscd."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from hwtoken import devices

    pcscd = shared_pcscd()
    hwtoken = str(Path(sys.executable).with_name("hwtoken"))
    env = dict(os.environ, HWTOKEN_STATE_DIR=str(_isolated_state_dir))
    subprocess.run([hwtoken, "emulate", "create", "card", "--serial", "5550123"], env=env,
                   check=True, capture_output=True, timeout=60)
    proc = subprocess.Popen([hwtoken, "emulate", "serve", "card", "--no-usbip", "--pcsc-address",
                             f"127.0.0.1:{pcscd.port}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while devices.running_serve("card") is None:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        doc = devices.running_serve("card")
        assert doc["usbip"] is None and doc["pcsc"]["port"] == pcscd.port
        wait_for_card(READER_0, timeout=10)
        (dev,) = list_devices(READER_0)
        with dev.open_connection(SmartCardConnection) as conn:
            assert YubiOtpSession(conn).get_serial() == 5550123
        # fido_device_for falls back to PC/SC (fido2's CtapPcscDevice) for this serve
        from fido2.ctap2 import Ctap2
        from fido2.pcsc import CtapPcscDevice

        with devices.fido_device_for("card") as fido:
            assert isinstance(fido, CtapPcscDevice)
            ctap2 = Ctap2(fido)
            assert "FIDO_2_0" in ctap2.get_info().versions
            ctap2.make_credential(
                bytes(32), {"id": "example.com", "name": "Ex"}, {"id": b"u", "name": "u"},
                [{"type": "public-key", "alg": -7}], options={"rk": True})
        # and so does `hwtoken fido2` (docs/usbip.md promises it for a PC/SC-only serve)
        import json

        info = subprocess.run([hwtoken, "fido2", "-d", "emu:card", "info", "--json"],
                              env={**env, **pcscd.env}, capture_output=True, text=True,
                              timeout=60)
        assert info.returncode == 0, info.stderr
        doc = json.loads(info.stdout)
        assert doc["device"] == "emu:card" and "FIDO_2_0" in doc["versions"]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert devices.running_serve("card") is None
    from hwtoken.emulator.store import KeyStore

    saved = KeyStore.read(devices.key_path_for("card"))
    assert len(saved.data["fido"]["resident"]) == 1  # made over PC/SC, saved by the serve


def test_both_transports_change_and_save_state_under_the_key_lock(usbip_key):
    """USB/IP and PC/SC at once: every save of the state happens under ``key.lock``, and
    requests from both sides running concurrently all land in the state file."""
    import threading

    from fido2.ctap2 import Ctap2
    from yubikit.oath import HASH_ALGORITHM, OATH_TYPE, CredentialData, OathSession

    from hwtoken.emulator.store import KeyStore

    saves: list[tuple[str, bool]] = []
    real_commit = usbip_key.store.commit

    def commit() -> None:
        saves.append((threading.current_thread().name, usbip_key.lock._is_owned()))
        real_commit()

    usbip_key.store.commit = commit
    pcscd = shared_pcscd()
    with KeyService(usbip_key, usbip=("127.0.0.1", 0), pcsc=("127.0.0.1", pcscd.port)) as svc:
        assert svc.vpcd.lock is usbip_key.lock
        assert svc.vpcd.wait_connected(10), pcscd.log_tail()
        wait_for_card(READER_0, timeout=10)
        host, port, busid = svc.usbip.address
        errors: list[BaseException] = []

        def fido_side() -> None:
            try:
                dev = open_usbip_fido(host, port, busid, timeout=30)
                try:
                    for i in range(4):
                        Ctap2(dev).make_credential(
                            bytes(32), {"id": "example.com", "name": "Ex"},
                            {"id": bytes([i]), "name": "u"}, [{"type": "public-key", "alg": -7}],
                            options={"rk": True})
                finally:
                    dev.close()
                with UsbipBackend(host, port) as backend, use_backend(backend):
                    yk = yubico.find_yubikey()
                    cfg = yk.init_config()
                    cfg.mode_challenge_response(b"h:" + bytes(range(20)).hex().encode())
                    yk.write_config(cfg, slot=1)
                    del yk
            except BaseException as exc:  # reported below
                errors.append(exc)

        t = threading.Thread(target=fido_side)
        t.start()
        (dev,) = list_devices(READER_0)
        with dev.open_connection(SmartCardConnection) as conn:
            oath = OathSession(conn)
            for i in range(4):
                oath.put_credential(CredentialData(f"acct{i}", OATH_TYPE.TOTP,
                                                   HASH_ALGORITHM.SHA1, bytes(20)))
        t.join(timeout=60)
        assert not t.is_alive() and not errors, errors
        assert saves, "nothing was saved"
        # saved from PC/SC's thread and from USB/IP's connection threads
        assert {name for name, _ in saves} >= {f"hwtoken-vpcd-{pcscd.port}",
                                                "hwtoken-usbip-conn"}, saves
        assert all(owned for _name, owned in saves), saves
    del usbip_key.store.commit
    store = KeyStore.read(usbip_key.path)  # every change from both sides is on disk
    assert len(store.data["fido"]["resident"]) == 4
    assert len(store.data["oath"]["credentials"]) == 4
    assert store.data["otp"]["slots"]["1"]
