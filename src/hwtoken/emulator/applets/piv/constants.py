"""Numbers of the PIV card application (NIST SP 800-73-4) and Yubico's extensions to it,
named as yubikit's ``yubikit.piv`` names them."""

from __future__ import annotations

from enum import IntEnum

AID_PIV = bytes.fromhex("a000000308000010000100")

# -- instructions (SP 800-73-4 part 2, then Yubico's) --------------------------------------
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE = 0x24
INS_RESET_RETRY = 0x2C
INS_GENERATE_ASYMMETRIC = 0x47
INS_AUTHENTICATE = 0x87
INS_GET_DATA = 0xCB
INS_PUT_DATA = 0xDB
INS_MOVE_KEY = 0xF6
INS_GET_METADATA = 0xF7
INS_GET_SERIAL = 0xF8
INS_ATTEST = 0xF9
INS_SET_PIN_RETRIES = 0xFA
INS_RESET = 0xFB
INS_GET_VERSION = 0xFD
INS_IMPORT_KEY = 0xFE
INS_SET_MGMKEY = 0xFF

# -- tags ------------------------------------------------------------------------------------
TAG_AUTH_WITNESS = 0x80
TAG_AUTH_CHALLENGE = 0x81
TAG_AUTH_RESPONSE = 0x82
TAG_AUTH_EXPONENTIATION = 0x85
TAG_GEN_ALGORITHM = 0x80
TAG_GEN_TEMPLATE = 0xAC
TAG_PUBLIC_KEY = 0x7F49
TAG_RSA_MODULUS = 0x81
TAG_RSA_EXPONENT = 0x82
TAG_EC_POINT = 0x86
TAG_OBJ_DATA = 0x53
TAG_OBJ_ID = 0x5C
TAG_CERTIFICATE = 0x70
TAG_CERT_INFO = 0x71
TAG_DYN_AUTH = 0x7C
TAG_LRC = 0xFE
TAG_PIN_POLICY = 0xAA
TAG_TOUCH_POLICY = 0xAB
TAG_APT = 0x61  # application property template (the SELECT answer)
TAG_AID = 0x4F
TAG_COEXISTENT_TAG_ALLOCATION = 0x79
TAG_DISCOVERY = 0x7E
TAG_PIN_USAGE_POLICY = 0x5F2F

# IMPORT KEY private-key parts
TAG_RSA_P = 0x01
TAG_RSA_Q = 0x02
TAG_RSA_DP = 0x03
TAG_RSA_DQ = 0x04
TAG_RSA_QINV = 0x05
TAG_EC_PRIVATE = 0x06
TAG_ED25519_PRIVATE = 0x07
TAG_X25519_PRIVATE = 0x08

# GET METADATA
TAG_METADATA_ALGO = 0x01
TAG_METADATA_POLICY = 0x02
TAG_METADATA_ORIGIN = 0x03
TAG_METADATA_PUBLIC_KEY = 0x04
TAG_METADATA_IS_DEFAULT = 0x05
TAG_METADATA_RETRIES = 0x06
ALGO_PIN = 0xFF
ORIGIN_GENERATED = 1
ORIGIN_IMPORTED = 2

# -- key references ------------------------------------------------------------------------
PIN_P2 = 0x80
PUK_P2 = 0x81
UV_P2 = 0x96  # YubiKey Bio only
SLOT_CARD_MANAGEMENT = 0x9B
SLOT_AUTHENTICATION = 0x9A
SLOT_SIGNATURE = 0x9C
SLOT_KEY_MANAGEMENT = 0x9D
SLOT_CARD_AUTH = 0x9E
SLOT_ATTESTATION = 0xF9
RETIRED_SLOTS = tuple(range(0x82, 0x96))
#: Slots that hold asymmetric keys (F9 only by import: it signs attestations).
KEY_SLOTS = (SLOT_AUTHENTICATION, SLOT_SIGNATURE, SLOT_KEY_MANAGEMENT, SLOT_CARD_AUTH,
             *RETIRED_SLOTS, SLOT_ATTESTATION)


class KEY_TYPE(IntEnum):  # noqa: N801 - yubikit's name
    """Asymmetric algorithms (P1 of GENERATE / IMPORT / GENERAL AUTHENTICATE)."""

    RSA1024 = 0x06
    RSA2048 = 0x07
    RSA3072 = 0x05
    RSA4096 = 0x16
    ECCP256 = 0x11
    ECCP384 = 0x14
    ED25519 = 0xE0
    X25519 = 0xE1

    @property
    def is_rsa(self) -> bool:
        return self.name.startswith("RSA")

    @property
    def rsa_bits(self) -> int:
        return int(self.name[3:]) if self.is_rsa else 0

    @property
    def byte_len(self) -> int:
        """Modulus, field element or Curve25519 key length in bytes."""
        if self.is_rsa:
            return self.rsa_bits // 8
        return {KEY_TYPE.ECCP256: 32, KEY_TYPE.ECCP384: 48}.get(self, 32)


class MANAGEMENT_KEY_TYPE(IntEnum):  # noqa: N801 - yubikit's name
    """Symmetric algorithms of the card management key (slot 9B)."""

    TDES = 0x03
    AES128 = 0x08
    AES192 = 0x0A
    AES256 = 0x0C

    @property
    def key_len(self) -> int:
        return 24 if self is MANAGEMENT_KEY_TYPE.TDES else int(self.name[3:]) // 8

    @property
    def challenge_len(self) -> int:
        """The cipher's block size: witnesses and challenges are one block."""
        return 8 if self is MANAGEMENT_KEY_TYPE.TDES else 16


class PIN_POLICY(IntEnum):  # noqa: N801 - yubikit's name
    DEFAULT = 0x0
    NEVER = 0x1
    ONCE = 0x2
    ALWAYS = 0x3
    MATCH_ONCE = 0x4  # YubiKey Bio only
    MATCH_ALWAYS = 0x5


class TOUCH_POLICY(IntEnum):  # noqa: N801 - yubikit's name
    DEFAULT = 0x0
    NEVER = 0x1
    ALWAYS = 0x2
    CACHED = 0x3


#: SP 800-73-4's access rules per slot, as a YubiKey applies them for PIN_POLICY.DEFAULT.
DEFAULT_PIN_POLICY = {SLOT_SIGNATURE: PIN_POLICY.ALWAYS, SLOT_CARD_AUTH: PIN_POLICY.NEVER,
                      SLOT_ATTESTATION: PIN_POLICY.NEVER}
#: Touch policy DEFAULT means NEVER on every slot.
CACHED_TOUCH_SECONDS = 15.0

# -- data objects ----------------------------------------------------------------------------
OBJ_DISCOVERY = 0x7E
OBJ_CAPABILITY = 0x5FC107
OBJ_CHUID = 0x5FC102
OBJ_AUTHENTICATION = 0x5FC105
OBJ_FINGERPRINTS = 0x5FC103
OBJ_SECURITY = 0x5FC106
OBJ_FACIAL = 0x5FC108
OBJ_PRINTED = 0x5FC109
OBJ_SIGNATURE = 0x5FC10A
OBJ_KEY_MANAGEMENT = 0x5FC10B
OBJ_CARD_AUTH = 0x5FC101
OBJ_KEY_HISTORY = 0x5FC10C
OBJ_IRIS = 0x5FC121
OBJ_ATTESTATION = 0x5FFF01  # Yubico: the certificate of the F9 key
OBJ_PIVMAN_DATA = 0x5FFF00  # ykman's own (management key flags, salt)
#: Objects whose GET DATA needs the PIN (SP 800-73-4 table 1 access rules; ykman keeps its
#: PIN-protected management key in PRINTED).
PIN_PROTECTED_OBJECTS = frozenset({OBJ_FINGERPRINTS, OBJ_FACIAL, OBJ_PRINTED, OBJ_IRIS})
#: The largest object a YubiKey 5 stores (``CB_OBJ_MAX`` in yubico-piv-tool).
MAX_OBJECT_SIZE = 3063


def slot_object(slot: int) -> int:
    """The data object holding the certificate of ``slot``."""
    if slot == SLOT_ATTESTATION:
        return OBJ_ATTESTATION
    fixed = {SLOT_AUTHENTICATION: OBJ_AUTHENTICATION, SLOT_SIGNATURE: OBJ_SIGNATURE,
             SLOT_KEY_MANAGEMENT: OBJ_KEY_MANAGEMENT, SLOT_CARD_AUTH: OBJ_CARD_AUTH}
    if slot in fixed:
        return fixed[slot]
    return 0x5FC10D + (slot - RETIRED_SLOTS[0])


# -- defaults of firmware 5.7 ----------------------------------------------------------------
DEFAULT_PIN = b"123456"
DEFAULT_PUK = b"12345678"
DEFAULT_RETRIES = 3
DEFAULT_MANAGEMENT_KEY = bytes.fromhex("010203040506070801020304050607080102030405060708")
DEFAULT_MANAGEMENT_KEY_TYPE = MANAGEMENT_KEY_TYPE.AES192
PIN_LEN = 8
MIN_PIN_LEN = 6

# -- status words this applet uses beyond ``iso7816.SW`` -------------------------------------
SW_INCORRECT_P1P2 = 0x6A86
SW_RETRIES = 0x63C0  # | remaining tries (at most 15)
