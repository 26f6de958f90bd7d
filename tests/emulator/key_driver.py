"""A small driver that holds one virtual key in its own process, for the kill tests.

Run as ``python key_driver.py STATE_FILE``. It loads (and locks) the key, prints
``{"ready": PID}`` and then answers one JSON request per line on stdin with one JSON
line on stdout, flushed before the next request is read:

- ``{"op": "apdu", "data": HEX}`` -> ``{"data": HEX}``: a command APDU through the key's
  card OS (OATH, PIV, OpenPGP, OTP, management applets), response data and status word;
- ``{"op": "otp_set", "data": HEX}`` / ``{"op": "otp_get"}``: one 8-byte HID feature
  report to / from the OTP interface (what yubikit and python-yubico send over USB);
- ``{"op": "touch", "slot": N}`` -> ``{"text": TEXT}``: a touch of the button, and what the
  key types.

It never closes the key: the test kills it (SIGKILL) the moment an answer has arrived,
so only what the key made durable before answering survives.
"""

from __future__ import annotations

import json
import os
import sys


def main(path: str) -> None:
    from hwtoken.emulator.applets.otp.hid import OtpHidEngine
    from hwtoken.emulator.iso7816 import CardOS
    from hwtoken.emulator.key import VirtualKey

    key = VirtualKey.load(path)
    card = CardOS(key)
    card.power_on()
    otp = OtpHidEngine(key)
    out = sys.stdout
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "apdu":
            answer: dict[str, object] = {"data": card.transmit(bytes.fromhex(req["data"])).hex()}
        elif op == "otp_set":
            otp.set_feature(bytes.fromhex(req["data"]))
            answer = {}
        elif op == "otp_get":
            answer = {"data": otp.get_feature().hex()}
        elif op == "touch":
            answer = {"text": otp.touch(int(req["slot"]))}
        else:
            answer = {"error": f"unknown op {op!r}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main(sys.argv[1])
