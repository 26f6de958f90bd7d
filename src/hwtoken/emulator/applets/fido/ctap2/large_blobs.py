"""authenticatorLargeBlobs (0x0C): the serialized large-blob array, in fragments."""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import TYPE_CHECKING, Any

from hwtoken.emulator.applets.fido.ctap2.client_pin import Permission
from hwtoken.emulator.applets.fido.ctap2.errors import ERR, Ctap2Error
from hwtoken.emulator.applets.fido.ctap2.params import Params

if TYPE_CHECKING:  # pragma: no cover
    from hwtoken.emulator.applets.fido.ctap2.authenticator import Authenticator

MIN_LENGTH = 17


class LargeBlobs:
    """Fragmented get/set of the large-blob array; a write lands only when complete and valid."""

    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth
        self.max_fragment = auth.profile.max_msg_size - 64
        self.max_length = auth.profile.max_large_blob
        self._buffer = b""
        self._expected_length = 0
        self._expected_offset = 0

    def power_cycle(self) -> None:
        self._buffer = b""
        self._expected_length = 0
        self._expected_offset = 0

    def process(self, p: Params) -> dict[int, Any] | None:
        get = p.opt(0x01, int)
        data = p.opt(0x02, bytes)
        offset = p.opt(0x03, int)
        length = p.opt(0x04, int)
        if (get is None) == (data is None) or offset is None or offset < 0:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        if get is not None:
            if length is not None or get < 0:
                raise Ctap2Error(ERR.INVALID_PARAMETER)
            if get > self.max_fragment:
                raise Ctap2Error(ERR.INVALID_LENGTH)
            stored = self.auth.state.large_blob
            if offset > len(stored):
                raise Ctap2Error(ERR.INVALID_PARAMETER)
            return {0x01: stored[offset:offset + get]}
        assert data is not None
        if len(data) > self.max_fragment:
            raise Ctap2Error(ERR.INVALID_LENGTH)
        if offset == 0:
            if length is None:
                raise Ctap2Error(ERR.INVALID_PARAMETER)
            if length > self.max_length:
                raise Ctap2Error(ERR.LARGE_BLOB_STORAGE_FULL)
            if length < MIN_LENGTH:
                raise Ctap2Error(ERR.INVALID_PARAMETER)
            self._buffer = b""
            self._expected_length = length
            self._expected_offset = 0
        elif length is not None:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        if offset != self._expected_offset:
            raise Ctap2Error(ERR.INVALID_SEQ)
        self._authorise(p, offset, data)
        if offset + len(data) > self._expected_length:
            raise Ctap2Error(ERR.INVALID_PARAMETER)
        self._buffer += data
        self._expected_offset += len(data)
        if self._expected_offset == self._expected_length:
            blob, self._buffer = self._buffer, b""
            self._expected_offset = 0
            body, check = blob[:-16], blob[-16:]
            if not hmac.compare_digest(hashlib.sha256(body).digest()[:16], check):
                raise Ctap2Error(ERR.INTEGRITY_FAILURE)
            self.auth.state.large_blob = blob
            self.auth.state.commit()
        return None

    def _authorise(self, p: Params, offset: int, data: bytes) -> None:
        state = self.auth.state
        pin_auth = p.opt(0x05, bytes)
        if pin_auth is None:
            if state.pin_set or state.always_uv:
                raise Ctap2Error(ERR.PUAT_REQUIRED)
            return
        proto = self.auth.pin.protocol_param(p, 0x06)
        message = (b"\xff" * 32 + b"\x0c\x00" + struct.pack("<I", offset)
                   + hashlib.sha256(data).digest())
        self.auth.pin.verify(proto, message, pin_auth)
        self.auth.pin.require(Permission.LARGE_BLOB_WRITE)
