"""CTAP2 status codes (re-exported from ``fido2``) and the exception that carries one."""

from __future__ import annotations

from fido2.ctap import CtapError

ERR = CtapError.ERR


class Ctap2Error(Exception):
    """Abort the current command with CTAP status ``code``."""

    def __init__(self, code: int) -> None:
        super().__init__(f"CTAP2 status 0x{int(code):02X}")
        self.code = int(code)
