"""Demo: program HMAC-SHA1 challenge-response on a virtual key through python-yubico.

The key is served over USB/IP on loopback; python-yubico finds it through pyusb like a
plugged-in YubiKey, writes the slot configuration and asks for a response, which is
checked against Python's own ``hmac``. Then an OATH-HOTP slot types its codes.
"""

from __future__ import annotations

import hashlib
import hmac
import pathlib
import secrets
from collections.abc import Callable


def run(echo: Callable[[str], None], workdir: pathlib.Path) -> None:
    import base64

    import pyotp

    from hwtoken.emulator import VirtualKey
    from hwtoken.errors import CheckFailed
    from hwtoken.yubikey import open_virtual_key

    with VirtualKey.create(workdir / "otp-demo.key") as vkey, \
            open_virtual_key(vkey, device="emu:otp-demo") as yk:
        info = yk.info()
        echo(f"python-yubico found {info.model} {info.firmware}, serial {info.serial}, "
             f"over USB/IP")
        secret = secrets.token_bytes(20)
        yk.program_chalresp(2, secret, access_code=bytes.fromhex("a1b2c3d4e5f6"))
        echo("slot 2 programmed: HMAC-SHA1 challenge-response, protected by an access code")
        challenge = b"login nonce " + secrets.token_hex(4).encode()
        response = yk.calculate(2, challenge)
        expected = hmac.new(secret, challenge, hashlib.sha1).digest()
        echo(f"challenge {challenge.decode()!r} -> response {response.hex()}")
        verdict = "matches" if response == expected else "DIFFERS"
        echo(f"hmac.new(secret, challenge, sha1) {verdict}")
        if response != expected:
            raise RuntimeError("the key's HMAC response is wrong")
        try:
            yk.delete(2)
        except CheckFailed:
            echo("deleting slot 2 without the access code: refused by the key")
        else:
            raise RuntimeError("the slot was deleted without its access code")

        hotp_secret = secrets.token_bytes(20)
        yk.program_hotp(1, hotp_secret, digits=6)
        typed = [yk.touch(1).strip() for _ in range(3)]
        reference = pyotp.HOTP(base64.b32encode(hotp_secret).decode())
        want = [reference.at(c) for c in range(3)]
        echo(f"slot 1 (OATH-HOTP) typed on three touches: {', '.join(typed)} "
             f"({'= pyotp' if typed == want else 'pyotp says otherwise'})")
        if typed != want:
            raise RuntimeError("HOTP codes typed by the key are wrong")
