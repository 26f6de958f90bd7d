"""What a FIDO key says about itself: versions, AAGUID, options, extensions, PIN state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fido2.ctap import CtapDevice, CtapError
from fido2.ctap2.pin import ClientPin
from fido2.hid import CAPABILITY

from hwtoken.fido.session import ctap2

_ALG_NAMES = {-7: "ES256", -8: "EdDSA", -35: "ES384", -36: "ES512", -257: "RS256",
              -47: "ES256K"}


@dataclass(frozen=True)
class KeyInfo:
    """The parts of authenticatorGetInfo an admin asks about, plus PIN retries."""

    versions: list[str]
    aaguid: str
    options: dict[str, bool]
    extensions: list[str]
    algorithms: list[str]
    pin_set: bool
    pin_retries: int | None
    remaining_resident: int | None
    min_pin_length: int
    firmware_version: int | None
    transports: list[str] = field(default_factory=list)
    device_version: tuple[int, int, int] | None = None
    ctap2: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "versions": self.versions, "aaguid": self.aaguid, "options": self.options,
            "extensions": self.extensions, "algorithms": self.algorithms,
            "pin_set": self.pin_set, "pin_retries": self.pin_retries,
            "remaining_resident_credentials": self.remaining_resident,
            "min_pin_length": self.min_pin_length, "firmware_version": self.firmware_version,
            "transports": self.transports,
            "device_version": ".".join(map(str, self.device_version))
            if self.device_version else None,
        }


def key_info(device: CtapDevice) -> KeyInfo:
    """Read getInfo (and the PIN retries when the key has a PIN feature)."""
    dev_version = getattr(device, "device_version", None)
    if not device.capabilities & CAPABILITY.CBOR:
        return KeyInfo(versions=["U2F_V2"], aaguid="", options={}, extensions=[],
                       algorithms=["ES256"], pin_set=False, pin_retries=None,
                       remaining_resident=0, min_pin_length=0, firmware_version=None,
                       device_version=dev_version, ctap2=False)
    ctap = ctap2(device)
    info = ctap.info
    retries = None
    if info.options.get("clientPin"):  # unset: keys may answer PIN_NOT_SET
        try:
            retries = ClientPin(ctap).get_pin_retries()[0]
        except CtapError:
            retries = None
    algs = [_ALG_NAMES.get(a.get("alg"), str(a.get("alg"))) for a in info.algorithms]
    return KeyInfo(
        versions=list(info.versions), aaguid=str(info.aaguid), options=dict(info.options),
        extensions=list(info.extensions), algorithms=algs,
        pin_set=bool(info.options.get("clientPin")), pin_retries=retries,
        remaining_resident=info.remaining_disc_creds, min_pin_length=info.min_pin_length,
        firmware_version=info.firmware_version or None, transports=list(info.transports),
        device_version=dev_version)
