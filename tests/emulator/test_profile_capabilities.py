"""Every profile's advertised capabilities follow the applets it really has, both ways.

What the management applet reports (``ykman info``: supported and enabled over USB and
NFC) must be exactly what a host can reach: each smart-card application SELECTs over the
USB CCID interface and over NFC, U2F and FIDO2 answer on the FIDO interface, OTP has its
keyboard interface and card face. A profile that drops an applet but keeps its bit (or
the reverse) fails here, for every profile in :data:`PROFILES`, the ones added later too.
"""

from __future__ import annotations

import pytest
from yubikit.core import TRANSPORT
from yubikit.management import CAPABILITY, ManagementSession

from hwtoken.emulator.iso7816 import CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.profiles import PROFILES
from hwtoken.emulator.transports.card_direct import DirectCardConnection
from hwtoken.emulator.usb import usb_model

#: the smart-card applications behind capability bits, by AID (yubikit's AID names)
CARD_AIDS = {
    CAPABILITY.OTP: "a0000005272001",
    CAPABILITY.OATH: "a0000005272101",
    CAPABILITY.PIV: "a000000308",
    CAPABILITY.OPENPGP: "d27600012401",
    CAPABILITY.HSMAUTH: "a000000527210701",
}
AID_FIDO = "a0000006472f0001"
AID_MANAGEMENT = "a000000527471117"
U2F_VERSION = bytes.fromhex("0003000000")
ALL = [CAPABILITY.OTP, CAPABILITY.U2F, CAPABILITY.FIDO2, CAPABILITY.PIV, CAPABILITY.OATH,
       CAPABILITY.OPENPGP, CAPABILITY.HSMAUTH]


@pytest.fixture(params=sorted(PROFILES))
def key(request, tmp_path):
    k = VirtualKey.create(tmp_path / "k.key", profile=request.param)
    yield k
    k.close()


def selects(card: CardOS, aid: str) -> bool:
    a = bytes.fromhex(aid)
    return card.transmit(bytes([0, 0xA4, 4, 0, len(a)]) + a)[-2:] == b"\x90\x00"


def reachable_over_usb(key) -> set[CAPABILITY]:
    """What a host finds on the key's USB interfaces."""
    interfaces = usb_model(key.profile.name).interfaces
    found = set()
    if "ccid" in interfaces:
        card = CardOS(key, transport="usb", strict=True)
        found |= {cap for cap, aid in CARD_AIDS.items()
                  if cap != CAPABILITY.OTP and selects(card, aid)}
    if "otp" in interfaces:
        found.add(CAPABILITY.OTP)
    if "fido" in interfaces:
        if key.fido.u2f(U2F_VERSION) == b"U2F_V2\x90\x00":
            found.add(CAPABILITY.U2F)
        if key.fido.ctap2(b"\x04")[:1] == b"\x00":
            found.add(CAPABILITY.FIDO2)
    return found


def reachable_over_nfc(key) -> set[CAPABILITY]:
    """What a reader finds on the key as a contactless card."""
    card = CardOS(key, transport="nfc", strict=True)
    found = {cap for cap, aid in CARD_AIDS.items() if selects(card, aid)}
    card = CardOS(key, transport="nfc", strict=True)
    if selects(card, AID_FIDO):
        if card.transmit(U2F_VERSION) == b"U2F_V2\x90\x00":
            found.add(CAPABILITY.U2F)
        resp = card.transmit(bytes.fromhex("80100000010400"))  # NFCCTAP_MSG getInfo
        if resp[:1] == b"\x00" and resp[-2] in (0x90, 0x61):  # 61xx: more to read
            found.add(CAPABILITY.FIDO2)
    return found


def bits(caps: set[CAPABILITY]) -> int:
    out = 0
    for cap in caps:
        out |= cap
    return out


def test_advertised_capabilities_are_the_reachable_applets(key):
    profile = key.profile
    usb = reachable_over_usb(key)
    assert bits(usb) == profile.capabilities, \
        f"{profile.name}: advertises {CAPABILITY(profile.capabilities)!r}, USB has {usb}"
    nfc = reachable_over_nfc(key) if profile.nfc else set()
    if profile.nfc:
        assert bits(nfc) == profile.capabilities, f"{profile.name}: over NFC {nfc}"
    else:
        card = CardOS(key, transport="nfc", strict=True)
        assert not any(selects(card, aid) for aid in [*CARD_AIDS.values(), AID_FIDO])


def test_management_reports_what_the_profile_has(key):
    """ykman's view: supported = enabled = what is reachable, per transport."""
    profile = key.profile
    interfaces = usb_model(profile.name).interfaces
    card = None
    if profile.nfc:
        card = CardOS(key, transport="nfc", strict=True)
    elif "ccid" in interfaces:
        card = CardOS(key, transport="usb", strict=True)
    if card is not None and selects(card, AID_MANAGEMENT):
        info = ManagementSession(DirectCardConnection(card)).read_device_info()
    elif "management" in profile.applets:
        # no smart card (a YubiKey Bio): ykman reads the device info over FIDO HID
        from hwtoken.emulator import fido_device

        with fido_device(key) as dev:
            info = ManagementSession(dev).read_device_info()
    else:
        # no management applet to ask (a U2F-only key): nothing beyond U2F is there
        assert reachable_over_usb(key) == {CAPABILITY.U2F}
        return
    usb = bits(reachable_over_usb(key))
    assert info.supported_capabilities[TRANSPORT.USB] == usb
    assert info.config.enabled_capabilities[TRANSPORT.USB] == usb
    if profile.nfc:
        nfc = bits(reachable_over_nfc(key))
        assert info.supported_capabilities[TRANSPORT.NFC] == nfc
        assert info.config.enabled_capabilities[TRANSPORT.NFC] == nfc
    else:
        assert TRANSPORT.NFC not in info.supported_capabilities
    assert tuple(info.version) == profile.firmware


def test_every_capability_bit_is_checked_here():
    """A new capability in a profile needs a way to reach it above."""
    for profile in PROFILES.values():
        assert profile.capabilities & ~bits(set(ALL)) == 0, profile.name


#: the capability bit of each applet a profile lists (FIDO: by its U2F and CTAP2 flags)
APPLET_CAPABILITY = {"otp": CAPABILITY.OTP, "oath": CAPABILITY.OATH, "piv": CAPABILITY.PIV,
                     "openpgp": CAPABILITY.OPENPGP, "hsmauth": CAPABILITY.HSMAUTH}


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_no_listed_applet_is_switched_off_by_its_missing_bit(name):
    """An applet the profile lists but whose bit it lacks would be unreachable (the card OS
    switches off what management does not enable): the profile would lie the other way."""
    profile = PROFILES[name]
    expected = bits({cap for applet, cap in APPLET_CAPABILITY.items() if applet in profile.applets})
    if "fido" in profile.applets:
        expected |= (CAPABILITY.U2F if profile.u2f else 0) | \
            (CAPABILITY.FIDO2 if profile.ctap2 else 0)
    assert profile.capabilities == expected
