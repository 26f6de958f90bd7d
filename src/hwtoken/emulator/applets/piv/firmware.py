"""What the PIV applet of a given YubiKey firmware version can do, as yubikit checks it.

A key made with ``version=(5, 4, 3)`` answers like a YubiKey 5.4.3: 3DES as the default
management key, no Ed25519/X25519/RSA-3072/RSA-4096 and no MOVE KEY (5.7), no AES
management key before 5.4, no GET METADATA before 5.3. The thresholds are yubikit's
(``yubikit.piv``: ``require_version`` and ``_do_check_key_support``).
"""

from __future__ import annotations

from hwtoken.emulator.applets.piv.constants import (
    INS_ATTEST,
    INS_GET_METADATA,
    INS_GET_SERIAL,
    INS_MOVE_KEY,
    KEY_TYPE,
    MANAGEMENT_KEY_TYPE,
    PIN_POLICY,
    TOUCH_POLICY,
)

Version = tuple[int, int, int]

#: Yubico instructions and the firmware that brought them
INSTRUCTION_SINCE: dict[int, Version] = {
    INS_ATTEST: (4, 3, 0),
    INS_GET_SERIAL: (5, 0, 0),
    INS_GET_METADATA: (5, 3, 0),
    INS_MOVE_KEY: (5, 7, 0),
}
#: slot key types newer than RSA-1024/2048 and P-256
KEY_TYPE_SINCE: dict[KEY_TYPE, Version] = {
    KEY_TYPE.ECCP384: (4, 0, 0),
    KEY_TYPE.RSA3072: (5, 7, 0),
    KEY_TYPE.RSA4096: (5, 7, 0),
    KEY_TYPE.ED25519: (5, 7, 0),
    KEY_TYPE.X25519: (5, 7, 0),
}
POLICIES_SINCE: Version = (4, 0, 0)  # a PIN or touch policy other than DEFAULT
CACHED_TOUCH_SINCE: Version = (4, 3, 0)
AES_MANAGEMENT_KEY_SINCE: Version = (5, 4, 0)
AES_DEFAULT_MANAGEMENT_KEY_SINCE: Version = (5, 7, 0)
#: firmware whose RSA key generation was withdrawn (the ROCA weakness): import only
ROCA: tuple[Version, Version] = ((4, 2, 0), (4, 3, 5))


def has_instruction(version: Version, ins: int) -> bool:
    """False for a Yubico instruction this firmware does not know (it answers 6D00)."""
    since = INSTRUCTION_SINCE.get(ins)
    return since is None or version >= since


def supports_key_type(version: Version, key_type: KEY_TYPE, *, generate: bool) -> bool:
    """True if this firmware generates (``generate``) or imports keys of ``key_type``."""
    if version < KEY_TYPE_SINCE.get(key_type, (0, 0, 0)):
        return False
    return not (generate and key_type.is_rsa and ROCA[0] <= version < ROCA[1])


def supports_policies(version: Version, pin: PIN_POLICY, touch: TOUCH_POLICY) -> bool:
    """True if this firmware takes the PIN and touch policies a GENERATE/IMPORT asks for."""
    if (pin, touch) != (PIN_POLICY.DEFAULT, TOUCH_POLICY.DEFAULT) and version < POLICIES_SINCE:
        return False
    return touch is not TOUCH_POLICY.CACHED or version >= CACHED_TOUCH_SINCE


def supports_management_key(version: Version, key_type: MANAGEMENT_KEY_TYPE) -> bool:
    """3DES always; AES-128/192/256 from 5.4."""
    return key_type is MANAGEMENT_KEY_TYPE.TDES or version >= AES_MANAGEMENT_KEY_SINCE


def default_management_key_type(version: Version) -> MANAGEMENT_KEY_TYPE:
    """The factory management key's algorithm: AES-192 from 5.7, 3DES before (the same
    24 bytes either way)."""
    if version >= AES_DEFAULT_MANAGEMENT_KEY_SINCE:
        return MANAGEMENT_KEY_TYPE.AES192
    return MANAGEMENT_KEY_TYPE.TDES
