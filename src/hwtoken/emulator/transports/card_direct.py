"""An in-process ``yubikit`` smart-card connection to a virtual key (no pcscd).

``DirectCardConnection(CardOS(key))`` lets yubikit's sessions (``OathSession``,
``ManagementSession``, ``YubiOtpSession``) drive the key's card OS directly: the same
APDUs they would send through pcscd, without the daemon. Useful in fast tests.
"""

from __future__ import annotations

from typing import Any

from yubikit.core import TRANSPORT
from yubikit.core.smartcard import SmartCardConnection

from hwtoken.emulator.iso7816 import CardOS


class DirectCardConnection(SmartCardConnection):
    """A :class:`yubikit.core.smartcard.SmartCardConnection` over :class:`CardOS`."""

    def __init__(self, card: CardOS | Any, transport: TRANSPORT = TRANSPORT.NFC) -> None:
        self.card = card if isinstance(card, CardOS) else CardOS(card)
        self._transport = transport
        self.card.power_on()

    @property
    def transport(self) -> TRANSPORT:
        return self._transport

    def send_and_receive(self, apdu: bytes) -> tuple[bytes, int]:
        resp = self.card.transmit(apdu)
        return resp[:-2], (resp[-2] << 8) | resp[-1]

    def close(self) -> None:
        self.card.power_off()
