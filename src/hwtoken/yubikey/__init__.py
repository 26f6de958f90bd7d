"""Host side for YubiKeys: the OTP slots through python-yubico (over pyusb).

The same calls work on a real key (python-yubico's own USB discovery) and on a virtual
key (``emu:NAME``: served on loopback over USB/IP and reached through pyusb, so the bytes
still go through python-yubico)::

    from hwtoken.yubikey import open_key

    with open_key("emu:alice") as yk:
        yk.program_chalresp(2, secret)
        yk.calculate(2, b"challenge")

The OATH applet lives in :mod:`hwtoken.yubikey.oath` (PC/SC, yubikit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.yubikey.device import KeyInfo, OtpKey, list_keys, open_key, open_virtual_key
    from hwtoken.yubikey.secrets import (
        generate_secret,
        parse_access_code,
        parse_b32_secret,
        parse_hex_secret,
    )

_EXPORTS = {
    "open_key": "hwtoken.yubikey.device",
    "open_virtual_key": "hwtoken.yubikey.device",
    "list_keys": "hwtoken.yubikey.device",
    "OtpKey": "hwtoken.yubikey.device",
    "KeyInfo": "hwtoken.yubikey.device",
    "parse_b32_secret": "hwtoken.yubikey.secrets",
    "parse_hex_secret": "hwtoken.yubikey.secrets",
    "parse_access_code": "hwtoken.yubikey.secrets",
    "generate_secret": "hwtoken.yubikey.secrets",
}

__all__ = ["KeyInfo", "OtpKey", "generate_secret", "list_keys", "open_key",
           "open_virtual_key", "parse_access_code", "parse_b32_secret", "parse_hex_secret"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(module), name)
