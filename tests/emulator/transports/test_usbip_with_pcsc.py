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
    proc = subprocess.Popen([hwtoken, "emulate", "serve", "card", "--no-usbip", "--pcsc",
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
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert devices.running_serve("card") is None
