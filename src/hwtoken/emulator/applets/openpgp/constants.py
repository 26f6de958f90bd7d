"""Numbers of the OpenPGP card application 3.4 and Yubico's extensions to it, named as
yubikit's ``yubikit.openpgp`` names them, and what a YubiKey 5.7 announces."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

#: RID + PIX application, the part hosts SELECT by (``D2 76 00 01 24 01``)
AID_PREFIX = bytes.fromhex("d27600012401")
#: the whole AID is the prefix, the version, the manufacturer, the serial and ``00 00``
AID_VERSION = bytes([0x03, 0x04])  # OpenPGP card 3.4
MANUFACTURER_YUBICO = bytes([0x00, 0x06])

# -- instructions ------------------------------------------------------------------------------
INS_VERIFY = 0x20
INS_CHANGE_REFERENCE = 0x24
INS_PSO = 0x2A
INS_RESET_RETRY = 0x2C
INS_ACTIVATE = 0x44
INS_GENERATE_ASYM = 0x47
INS_GET_CHALLENGE = 0x84
INS_INTERNAL_AUTHENTICATE = 0x88
INS_SELECT_DATA = 0xA5
INS_GET_DATA = 0xCA
INS_GET_NEXT_DATA = 0xCC
INS_PUT_DATA = 0xDA
INS_PUT_DATA_ODD = 0xDB
INS_TERMINATE = 0xE6
# Yubico's
INS_GET_VERSION = 0xF1
INS_SET_PIN_RETRIES = 0xF2
INS_GET_ATTESTATION = 0xFB
CLA_YUBICO = 0x80  # GET ATTESTATION is sent with it

PSO_CDS = (0x9E, 0x9A)  # P1 P2 of PSO: COMPUTE DIGITAL SIGNATURE
PSO_DECIPHER = (0x80, 0x86)  # P1 P2 of PSO: DECIPHER
GENERATE = 0x80  # P1 of GENERATE ASYMMETRIC KEY PAIR: make a new key
READ_PUBLIC = 0x81  # ... and: read the public key


class PW(IntEnum):
    """VERIFY's P2: PW1 for signatures (81), PW1 for everything else (82), PW3 (83)."""

    USER = 0x81
    USER_OTHER = 0x82
    ADMIN = 0x83


# -- data objects ---------------------------------------------------------------------------
class DO(IntEnum):
    """Data object tags (GET DATA / PUT DATA P1 P2)."""

    PRIVATE_USE_1 = 0x0101
    PRIVATE_USE_2 = 0x0102
    PRIVATE_USE_3 = 0x0103
    PRIVATE_USE_4 = 0x0104
    AID = 0x4F
    NAME = 0x5B
    LOGIN_DATA = 0x5E
    LANGUAGE = 0x5F2D
    SEX = 0x5F35
    URL = 0x5F50
    HISTORICAL_BYTES = 0x5F52
    CARDHOLDER_RELATED_DATA = 0x65
    APPLICATION_RELATED_DATA = 0x6E
    DISCRETIONARY = 0x73
    SECURITY_SUPPORT_TEMPLATE = 0x7A
    SIGNATURE_COUNTER = 0x93
    CARDHOLDER_CERTIFICATE = 0x7F21
    EXTENDED_LENGTH_INFO = 0x7F66
    GENERAL_FEATURE_MANAGEMENT = 0x7F74
    EXTENDED_CAPABILITIES = 0xC0
    ALGORITHM_ATTRIBUTES_SIG = 0xC1
    ALGORITHM_ATTRIBUTES_DEC = 0xC2
    ALGORITHM_ATTRIBUTES_AUT = 0xC3
    PW_STATUS_BYTES = 0xC4
    FINGERPRINTS = 0xC5
    CA_FINGERPRINTS = 0xC6
    FINGERPRINT_SIG = 0xC7
    FINGERPRINT_DEC = 0xC8
    FINGERPRINT_AUT = 0xC9
    CA_FINGERPRINT_1 = 0xCA
    CA_FINGERPRINT_2 = 0xCB
    CA_FINGERPRINT_3 = 0xCC
    GENERATION_TIMES = 0xCD
    GENERATION_TIME_SIG = 0xCE
    GENERATION_TIME_DEC = 0xCF
    GENERATION_TIME_AUT = 0xD0
    RESETTING_CODE = 0xD3
    UIF_SIG = 0xD6
    UIF_DEC = 0xD7
    UIF_AUT = 0xD8
    UIF_ATT = 0xD9
    ALGORITHM_ATTRIBUTES_ATT = 0xDA
    FINGERPRINT_ATT = 0xDB
    CA_FINGERPRINT_4 = 0xDC
    GENERATION_TIME_ATT = 0xDD
    KEY_INFORMATION = 0xDE
    KDF = 0xF9
    ALGORITHM_INFORMATION = 0xFA
    ATT_CERTIFICATE = 0xFC


CA_FINGERPRINT_DOS = (DO.CA_FINGERPRINT_1, DO.CA_FINGERPRINT_2, DO.CA_FINGERPRINT_3,
                      DO.CA_FINGERPRINT_4)

# tags inside commands and answers
TAG_PUBLIC_KEY = 0x7F49
TAG_RSA_MODULUS = 0x81
TAG_RSA_EXPONENT = 0x82
TAG_EC_POINT = 0x86
TAG_CIPHER = 0xA6  # PSO: DECIPHER's ECDH input: A6 { 7F49 { 86 point } }
TAG_EXTENDED_HEADER_LIST = 0x4D  # key import
TAG_PRIVATE_KEY_TEMPLATE = 0x7F48
TAG_PRIVATE_KEY_DATA = 0x5F48
TAG_SELECT_DATA = 0x60
TAG_TAG_LIST = 0x5C
# private key template parts
TAG_IMPORT_RSA_E = 0x91
TAG_IMPORT_PRIVATE = 0x92  # RSA p, or the EC private key
TAG_IMPORT_RSA_Q = 0x93
TAG_IMPORT_RSA_QINV = 0x94
TAG_IMPORT_RSA_DP = 0x95
TAG_IMPORT_RSA_DQ = 0x96
TAG_IMPORT_RSA_N = 0x97
TAG_IMPORT_EC_PUBLIC = 0x99


# -- key slots --------------------------------------------------------------------------------
class KEY_STATUS(IntEnum):  # noqa: N801 - yubikit's name
    NONE = 0
    GENERATED = 1
    IMPORTED = 2


class UIF(IntEnum):
    """User interaction flag: whether a key use needs a touch."""

    OFF = 0x00
    ON = 0x01
    FIXED = 0x02
    CACHED = 0x03
    CACHED_FIXED = 0x04

    @property
    def is_fixed(self) -> bool:
        return self in (UIF.FIXED, UIF.CACHED_FIXED)

    @property
    def is_cached(self) -> bool:
        return self in (UIF.CACHED, UIF.CACHED_FIXED)


BUTTON = 0x20  # general feature management: the key has a button (UIF's second byte)


@dataclass(frozen=True)
class KeySlot:
    """One key of the card and the data objects that describe it."""

    name: str  #: the store's key, and what a presence prompt says ("sig")
    ref: int  #: KEY_REF (01 SIG, 02 DEC, 03 AUT, 81 ATT)
    crt: bytes  #: the control reference template that names it in GENERATE and import
    attributes_do: int
    fingerprint_do: int
    generation_time_do: int
    uif_do: int
    #: index of its certificate among the 7F21 occurrences (ATT's lives in FC instead)
    occurrence: int | None


SIG = KeySlot("sig", 0x01, bytes.fromhex("b600"), DO.ALGORITHM_ATTRIBUTES_SIG,
              DO.FINGERPRINT_SIG, DO.GENERATION_TIME_SIG, DO.UIF_SIG, 2)
DEC = KeySlot("dec", 0x02, bytes.fromhex("b800"), DO.ALGORITHM_ATTRIBUTES_DEC,
              DO.FINGERPRINT_DEC, DO.GENERATION_TIME_DEC, DO.UIF_DEC, 1)
AUT = KeySlot("aut", 0x03, bytes.fromhex("a400"), DO.ALGORITHM_ATTRIBUTES_AUT,
              DO.FINGERPRINT_AUT, DO.GENERATION_TIME_AUT, DO.UIF_AUT, 0)
ATT = KeySlot("att", 0x81, bytes.fromhex("b603840181"), DO.ALGORITHM_ATTRIBUTES_ATT,
              DO.FINGERPRINT_ATT, DO.GENERATION_TIME_ATT, DO.UIF_ATT, None)
#: in the order of the fingerprint, generation time and key information lists
SLOTS = (SIG, DEC, AUT, ATT)
SLOT_BY_NAME = {s.name: s for s in SLOTS}
SLOT_BY_OCCURRENCE = {s.occurrence: s for s in SLOTS if s.occurrence is not None}
FINGERPRINT_LEN = 20

# -- PINs -------------------------------------------------------------------------------------
DEFAULT_PW1 = b"123456"
DEFAULT_PW3 = b"12345678"
DEFAULT_RETRIES = 3
MIN_PW1 = 6
MIN_PW3 = 8
MIN_RC = 8
MAX_PIN = 127  # PW status bytes 2-4
MAX_RETRIES = 99
SW_WRONG_PIN = 0x6982  # a YubiKey 5 answers a wrong PIN so, not with 63Cx
SW_TERMINATED = 0x6285  # the application is in its termination state

# -- what a YubiKey 5.7 announces ---------------------------------------------------------------
MAX_CHALLENGE = 0x0BFE  # GET CHALLENGE, and the longest command and answer
MAX_CERTIFICATE = 0x0800
MAX_SPECIAL_DO = 0x00FF  # login data, URL, private use DOs
MAX_NAME = 39
MAX_LANGUAGE = 8
#: KDF, ALGORITHM ATTRIBUTES CHANGEABLE, PRIVATE USE, PW STATUS CHANGEABLE, KEY IMPORT,
#: GET CHALLENGE; no secure messaging, no AES
EXTENDED_CAPABILITY_FLAGS = 0x7D
#: category 00, card capabilities (73): command chaining, extended Lc/Le, extended length
#: information; status 05 90 00
HISTORICAL_BYTES = bytes.fromhex("00730000e0059000")
KDF_NONE = bytes.fromhex("810100")
KDF_ITERSALTED_S2K = 0x03
CACHED_TOUCH_SECONDS = 15.0
SIGNATURE_COUNTER_MAX = 0xFFFFFF
