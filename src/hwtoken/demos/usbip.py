"""Demo: a virtual key served as a USB device over USB/IP; WebAuthn through it.

Creates a key, serves it on a free loopback port, shows what the USB/IP server exports,
then registers and authenticates a WebAuthn credential with python-fido2's
``Fido2Client`` (the browser's part) and ``Fido2Server`` (the website's part), every
CTAPHID report travelling over USB/IP.
"""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from collections.abc import Callable


def run(echo: Callable[[str], None], workdir: pathlib.Path) -> None:
    from fido2.client import DefaultClientDataCollector, Fido2Client
    from fido2.server import Fido2Server
    from fido2.webauthn import (
        PublicKeyCredentialRpEntity,
        PublicKeyCredentialUserEntity,
        UserVerificationRequirement,
    )
    from usbip import USBIP
    from usbip import host as usbip_host

    from hwtoken.emulator import VirtualKey
    from hwtoken.emulator.key import lock_path
    from hwtoken.emulator.serve import served
    from hwtoken.emulator.transports.usbip_fido import open_usbip_fido

    path = workdir / "usbip-demo.key"
    for leftover in (path, lock_path(path)):
        leftover.unlink(missing_ok=True)
    with VirtualKey.create(path) as key, served(key) as srv:
        host, port, busid = srv.address
        echo(f"virtual key serial {key.serial} served over USB/IP on {host}:{port}")
        for dev in usbip_host.list_devices(USBIP(host, port)):
            ifaces = " ".join(f"{c:02x}/{s:02x}/{p:02x}" for c, s, p in dev["interfaces"])
            echo(f"  exported {dev['busid']}: {dev['idVendor']:04x}:{dev['idProduct']:04x} "
                 f"interfaces {ifaces}")
        if shutil.which("usbip"):
            out = subprocess.run(["usbip", "--tcp-port", str(port), "list", "-r", host],
                                 capture_output=True, text=True, timeout=10, check=False)
            line = next((ln.strip() for ln in out.stdout.splitlines() if "1050:" in ln), None)
            if line:
                echo(f"  the Linux usbip tool sees it: {line}")

        device = open_usbip_fido(host, port, busid)
        echo(f"fido2 opened {device.descriptor.path}: {device.descriptor.product_name}, "
             f"CTAPHID version {'.'.join(map(str, device.device_version))}")
        try:
            rp = PublicKeyCredentialRpEntity(name="Example", id="example.com")
            server = Fido2Server(rp)
            client = Fido2Client(device, DefaultClientDataCollector("https://example.com"))
            user = PublicKeyCredentialUserEntity(name="alice", id=b"alice",
                                                 display_name="Alice")
            options, state = server.register_begin(
                user, user_verification=UserVerificationRequirement.DISCOURAGED)
            reg = client.make_credential(options.public_key)
            auth_data = server.register_complete(state, reg)
            cred = auth_data.credential_data
            assert cred is not None  # noqa: S101 - register_complete guarantees it
            echo(f"registered credential {bytes(cred.credential_id)[:8].hex()}... for "
                 f"alice@example.com (attestation {reg.response.attestation_object.fmt})")
            options, state = server.authenticate_begin(
                [cred], user_verification=UserVerificationRequirement.DISCOURAGED)
            selection = client.get_assertion(options.public_key)
            response = selection.get_response(0)
            server.authenticate_complete(state, [cred], response)
            echo(f"authenticated: signature verified by Fido2Server, counter "
                 f"{response.response.authenticator_data.counter}")
        finally:
            device.close()
        echo(f"served {srv.sessions} USB/IP session(s); stopping the server")
