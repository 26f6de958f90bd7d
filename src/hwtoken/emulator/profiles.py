"""Model profiles of the virtual key: which YubiKey (or other key) it pretends to be.

A :class:`Profile` fixes everything a host can observe about a key's model: the firmware
version it starts with, which applets exist, the management applet's capabilities and form
factor, and for FIDO the whole ``authenticatorGetInfo`` (versions, extensions, options,
algorithms, limits). It is chosen once, at :meth:`hwtoken.emulator.VirtualKey.create`,
and recorded in the key's state file; a key made before profiles existed is ``yubikey-5``.
The USB identity (product ID, interfaces) of each profile lives in one place,
:mod:`hwtoken.emulator.usb`, which every USB transport follows.

Profiles (the table in docs/ctap2.md lists every getInfo field):

* ``yubikey-5`` (default) -- a YubiKey 5 NFC with firmware 5.7.4: CTAP 2.1 (and the
  pre-standard ``FIDO_2_1_PRE`` / credentialMgmtPreview), U2F, OTP, OATH, PIV, OpenPGP,
  YubiHSM Auth, the Security Domain (SCP03/SCP11), management;
* ``security-key`` -- a Security Key NFC by Yubico (5.7): FIDO2 and U2F only;
* ``u2f-only`` -- an old FIDO U2F Security Key: CTAP1/U2F over HID, no CTAP2;
* ``latest`` -- everything this project implements: CTAP 2.2 (persistent PIN/UV auth
  token, hmac-secret-mc, thirdPartyPayment, enterprise attestation, previewSign) and every
  COSE algorithm from ES256 to ML-DSA-87;
* ``yubikey-bio`` -- a YubiKey Bio Series - FIDO Edition (5.5.6): CTAP 2.1 with a
  fingerprint sensor (bio enrollment, built-in user verification), U2F, USB only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from hwtoken.errors import InvalidInput

# COSE algorithm identifiers (IANA "COSE Algorithms"; python-fido2's fido2.cose names).
ES256 = -7
EDDSA = -8
ES384 = -35
ES512 = -36
PS256 = -37
RS256 = -257
ES256K = -47
MLDSA44 = -48
MLDSA65 = -49
MLDSA87 = -50

# Management capability bits (yubikit.management.CAPABILITY)
CAP_OTP = 0x01
CAP_U2F = 0x02
CAP_OPENPGP = 0x08
CAP_PIV = 0x10
CAP_OATH = 0x20
CAP_HSMAUTH = 0x100
CAP_FIDO2 = 0x200

FORM_FACTOR_USB_A_KEYCHAIN = 0x01
FORM_FACTOR_USB_A_BIO = 0x06
#: Form-factor flag of a Security Key (yubikit's DeviceInfo.is_sky; 0x80 would be FIPS)
FORM_FACTOR_SKY = 0x40

ZERO_AAGUID = bytes(16)

# AAGUIDs from Yubico's "YubiKey hardware FIDO2 AAGUIDs" list (docs/ctap2.md cites it), for
# the firmware each profile models (the list has a second 5.7 AAGUID per model, for later
# 5.7 keys; these are the first).
AAGUID_YUBIKEY_5_NFC_57 = "a25342c0-3cdc-4414-8e46-f4807fca511c"  # YubiKey 5 (C) NFC, 5.7
AAGUID_SECURITY_KEY_NFC_57 = "e77e3c64-05e3-428b-8824-0cbeb04b829d"  # Security Key NFC, 5.7
AAGUID_YUBIKEY_5_NFC_58 = "f4ce5fc0-57d3-46f5-a736-efb7d5bc63b5"  # YubiKey 5 (C) NFC, 5.8
AAGUID_YUBIKEY_BIO_FIDO = "d8522d9f-575b-4866-88a9-ba99fa02f35b"  # YubiKey Bio FIDO Edition

CTAP21_EXTENSIONS = ("credBlob", "credProtect", "hmac-secret", "largeBlobKey", "minPinLength")


@dataclass(frozen=True)
class BioSensor:
    """A fingerprint sensor: built-in user verification and authenticatorBioEnrollment."""

    max_templates: int = 5  #: fingerprints that can be enrolled
    samples: int = 5  #: good captures an enrollment needs (maxCaptureSamplesRequiredForEnroll)
    max_name: int = 15  #: maxTemplateFriendlyName, in bytes of UTF-8
    max_uv_retries: int = 3  #: failed matches before UV is blocked (and the PIN is needed)
    preferred_platform_uv_attempts: int = 3  #: getInfo 0x11
    uv_bio_enroll: bool = True  #: a UV-made token may carry the be permission (uvBioEnroll)


@dataclass(frozen=True)
class Profile:
    """One key model: identity, applets and the FIDO authenticator's getInfo."""

    name: str
    model: str  #: what it models, for humans ("YubiKey 5 NFC, firmware 5.7")
    summary: str  #: what it offers, one line
    firmware: tuple[int, int, int]
    applets: frozenset[str]  #: of "fido", "otp", "oath", "piv", "openpgp", "management", ...
    nfc: bool = True  #: reachable as a smart card (PC/SC stands in for NFC)
    capabilities: int = 0  #: management capability bits (USB and NFC alike)
    form_factor: int = FORM_FACTOR_USB_A_KEYCHAIN  #: with FORM_FACTOR_SKY for a Security Key
    serial_visible: bool = True  #: device info carries the serial (a Security Key's does not)
    # -- FIDO ------------------------------------------------------------------------------
    ctap2: bool = True  #: False: CTAP1/U2F only (no CBOR capability over CTAPHID)
    versions: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    algorithms: tuple[int, ...] = (ES256,)
    max_msg_size: int = 1280
    max_creds_in_list: int = 8
    max_cred_id_length: int = 128
    max_resident: int = 100
    max_large_blob: int = 4096
    max_rpids_for_min_pin: int = 1
    credential_mgmt_preview: bool = False  #: answers 0x41, lists credentialMgmtPreview
    enterprise_attestation: bool = False  #: the "ep" option and enableEnterpriseAttestation
    persistent_token: bool = False  #: pcmr permission, perCredMgmtRO, encIdentifier
    attestation_formats: tuple[str, ...] = ()  #: getInfo 0x16 (absent when empty)
    #: RP IDs a vendor-facilitated enterprise attestation is given to (when enabled)
    enterprise_rp_ids: tuple[str, ...] = field(default=())
    bio: BioSensor | None = None  #: a fingerprint sensor (built-in UV), or none
    #: The AAGUID the vendor publishes for this model and firmware (docs/ctap2.md cites
    #: Yubico's list); a new key gets it unless created with another one. None: the model
    #: has none (a U2F-only key), so the key's AAGUID is all zeros.
    aaguid: str | None = None

    @property
    def aaguid_bytes(self) -> bytes:
        """:attr:`aaguid` as the 16 bytes getInfo and attested credential data carry."""
        return uuid.UUID(self.aaguid).bytes if self.aaguid else ZERO_AAGUID

    @property
    def transports(self) -> list[str]:
        """getInfo transports."""
        return ["nfc", "usb"] if self.nfc else ["usb"]

    @property
    def u2f(self) -> bool:
        return "U2F_V2" in self.versions

    @property
    def ctap22(self) -> bool:
        return "FIDO_2_2" in self.versions

    def has(self, applet: str) -> bool:
        return applet in self.applets

    def describe(self) -> dict[str, object]:
        """A JSON-friendly summary (``hwtoken emulate profiles --json``)."""
        from hwtoken.emulator.usb import usb_model

        usb = usb_model(self.name)
        return {
            "name": self.name, "model": self.model, "summary": self.summary,
            "firmware": ".".join(map(str, self.firmware)),
            "aaguid": str(uuid.UUID(bytes=self.aaguid_bytes)),
            "applets": sorted(self.applets), "transports": self.transports,
            "usb": {"vendor_id": f"{usb.vendor_id:04x}", "product_id": f"{usb.product_id:04x}",
                    "product": usb.product, "interfaces": list(usb.interfaces)},
            "fido": {"versions": list(self.versions), "extensions": list(self.extensions),
                     "algorithms": [ALGORITHM_NAMES[a] for a in self.algorithms]},
        }


ALGORITHM_NAMES = {
    ES256: "ES256", EDDSA: "EdDSA", ES384: "ES384", ES512: "ES512", PS256: "PS256",
    RS256: "RS256", ES256K: "ES256K", MLDSA44: "ML-DSA-44", MLDSA65: "ML-DSA-65",
    MLDSA87: "ML-DSA-87",
}

YUBIKEY_5 = Profile(
    name="yubikey-5",
    model="YubiKey 5 NFC, firmware 5.7",
    summary="FIDO2 (CTAP 2.1) + U2F, OTP slots, OATH, PIV, OpenPGP, YubiHSM Auth, "
            "SCP03/SCP11, management",
    firmware=(5, 7, 4),
    applets=frozenset({"fido", "otp", "oath", "piv", "openpgp", "management", "ndef",
                       "hsmauth", "securitydomain"}),
    capabilities=CAP_OTP | CAP_U2F | CAP_OPENPGP | CAP_PIV | CAP_OATH | CAP_HSMAUTH
    | CAP_FIDO2,
    versions=("U2F_V2", "FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"),
    extensions=CTAP21_EXTENSIONS,
    algorithms=(ES256, EDDSA, ES384),
    credential_mgmt_preview=True,
    aaguid=AAGUID_YUBIKEY_5_NFC_57,
)

SECURITY_KEY = Profile(
    name="security-key",
    model="Security Key NFC by Yubico, firmware 5.7",
    summary="FIDO2 (CTAP 2.1) + U2F only: no OTP, no OATH",
    firmware=(5, 7, 1),
    applets=frozenset({"fido", "management"}),
    capabilities=CAP_U2F | CAP_FIDO2,
    form_factor=FORM_FACTOR_USB_A_KEYCHAIN | FORM_FACTOR_SKY,
    serial_visible=False,
    versions=("U2F_V2", "FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"),
    extensions=CTAP21_EXTENSIONS,
    algorithms=(ES256, EDDSA, ES384),
    credential_mgmt_preview=True,
    aaguid=AAGUID_SECURITY_KEY_NFC_57,
)

U2F_ONLY = Profile(
    name="u2f-only",
    model="FIDO U2F Security Key by Yubico (no CTAP2)",
    summary="CTAP1/U2F over USB HID only",
    firmware=(4, 1, 8),
    applets=frozenset({"fido"}),
    nfc=False,
    capabilities=CAP_U2F,
    ctap2=False,
    versions=("U2F_V2",),
)

LATEST = Profile(
    name="latest",
    model="everything hwtoken implements (a YubiKey 5 NFC shape)",
    summary="CTAP 2.2 (persistent PIN/UV token, hmac-secret-mc, thirdPartyPayment, "
            "enterprise attestation), ten COSE algorithms incl. ML-DSA, U2F, OTP, OATH, PIV, "
            "OpenPGP, YubiHSM Auth, SCP03/SCP11",
    firmware=(5, 8, 0),
    applets=frozenset({"fido", "otp", "oath", "piv", "openpgp", "management", "ndef",
                       "hsmauth", "securitydomain"}),
    capabilities=CAP_OTP | CAP_U2F | CAP_OPENPGP | CAP_PIV | CAP_OATH | CAP_HSMAUTH
    | CAP_FIDO2,
    versions=("U2F_V2", "FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1", "FIDO_2_2"),
    extensions=CTAP21_EXTENSIONS + ("hmac-secret-mc", "thirdPartyPayment", "previewSign"),
    algorithms=(ES256, EDDSA, ES384, ES512, PS256, RS256, ES256K, MLDSA44, MLDSA65, MLDSA87),
    max_msg_size=2048,
    max_cred_id_length=384,
    max_rpids_for_min_pin=4,
    credential_mgmt_preview=True,
    enterprise_attestation=True,
    persistent_token=True,
    attestation_formats=("packed", "none"),
    enterprise_rp_ids=("enterprise.example.com",),
    aaguid=AAGUID_YUBIKEY_5_NFC_58,  # the shape and firmware it models (5.8 has no ML-DSA)
)

YUBIKEY_BIO = Profile(
    name="yubikey-bio",
    model="YubiKey Bio Series - FIDO Edition, firmware 5.5.6",
    summary="FIDO2 (CTAP 2.1) + U2F with a fingerprint sensor: bio enrollment and "
            "built-in user verification, PIN as fallback; USB only",
    firmware=(5, 5, 6),
    applets=frozenset({"fido", "management"}),
    nfc=False,
    capabilities=CAP_U2F | CAP_FIDO2,
    form_factor=FORM_FACTOR_USB_A_BIO,
    versions=("U2F_V2", "FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"),
    extensions=("credProtect", "hmac-secret", "largeBlobKey", "credBlob", "minPinLength"),
    algorithms=(ES256, EDDSA),
    max_msg_size=1200,
    max_resident=25,
    max_large_blob=1024,
    credential_mgmt_preview=True,
    bio=BioSensor(),
    aaguid=AAGUID_YUBIKEY_BIO_FIDO,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (YUBIKEY_5, SECURITY_KEY, U2F_ONLY, LATEST,
                                                   YUBIKEY_BIO)}
DEFAULT_PROFILE = YUBIKEY_5.name


def parse_aaguid(value: bytes | str | uuid.UUID) -> bytes:
    """An AAGUID as 16 bytes: from bytes, a :class:`uuid.UUID`, its text form (with or
    without dashes or braces) or ``"random"`` (a fresh random one, as keys had before
    profiles carried their model's); :class:`InvalidInput` for anything else."""
    if isinstance(value, uuid.UUID):
        return value.bytes
    if isinstance(value, bytes):
        if len(value) != 16:
            raise InvalidInput(f"an AAGUID is 16 bytes, not {len(value)}")
        return value
    text = str(value).strip()
    if text.lower() == "random":
        return uuid.uuid4().bytes
    try:
        return uuid.UUID(text).bytes
    except ValueError:
        raise InvalidInput(f"{text[:60]!r} is not an AAGUID: give a UUID such as "
                           f"{AAGUID_YUBIKEY_5_NFC_57}, or 'random'") from None


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (:class:`InvalidInput` naming the choices if unknown)."""
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        raise InvalidInput(f"unknown key profile {name!r}; choose one of "
                           f"{', '.join(PROFILES)}") from None
