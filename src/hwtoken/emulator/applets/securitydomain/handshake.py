"""Opening a secure channel, card side: the cryptography of SCP03 and SCP11 handshakes.

* **SCP03** (GPC Amendment D, S8 mode, i = ``60``: R-MAC and R-ENC, random challenges):
  INITIALIZE UPDATE takes an 8-byte host challenge and answers key diversification data
  (10), key information (KVN, ``03``, i), the card challenge (8) and the card cryptogram (8);
  EXTERNAL AUTHENTICATE (C-MAC'd) carries the host cryptogram and the security level.
* **SCP11** (GPC Amendment F, as yubikit's ``ScpState.scp11_init`` speaks it): the host sends
  ``A6 {90 {11 variant} 95 {key usage} 80 {88} 81 {10}} 5F49 {EPK.OCE}``; with an ephemeral
  card key, ShSee = ECDH(eSK.SD, ePK.OCE), ShSes = ECDH(SK.SD, PK.OCE) -- PK.OCE is the
  certified OCE key for SCP11a/c, ePK.OCE again for SCP11b -- and X9.63 KDF (SHA-256,
  shared info = usage || type || length) gives five AES keys: the receipt key, S-ENC, S-MAC,
  S-RMAC and the DEK. The answer is ``5F49 {ePK.SD} 86 {receipt}``, the receipt being the
  CMAC over the command data and the ``5F49`` TLV; it starts the MAC chain.

Every function raises :class:`~hwtoken.emulator.iso7816.ApduError` for bad input; counting
failed attempts is the applet's business.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF

from hwtoken.emulator import tlv
from hwtoken.emulator.applets.securitydomain.attestation import point, private_key
from hwtoken.emulator.applets.securitydomain.records import (
    KID_SCP11A,
    KID_SCP11B,
    KID_SCP11C,
    Scp03KeySet,
)
from hwtoken.emulator.iso7816 import SW, Apdu, ApduError
from hwtoken.emulator.scp import (
    DERIVE_CARD_CRYPTOGRAM,
    DERIVE_HOST_CRYPTOGRAM,
    DERIVE_S_ENC,
    DERIVE_S_MAC,
    DERIVE_S_RMAC,
    MAC_LEN,
    VALID_LEVELS,
    Level,
    SecureChannel,
    SessionKeys,
    aes_cmac,
    derive,
    mac_header,
)

SCP03_I = 0x60  # R-MAC and R-ENC supported, random card challenge
CHALLENGE_LEN = 8
CRYPTOGRAM_LEN = 8
AUTHENTICATION_FAILED = 0x6300

TAG_CONTROL_REFERENCE = 0xA6
TAG_SCP_ID = 0x90
TAG_KEY_USAGE = 0x95
TAG_KEY_TYPE = 0x80
TAG_KEY_LENGTH = 0x81
TAG_EPK = 0x5F49
TAG_RECEIPT = 0x86
SCP11_ID = 0x11
SCP11_VARIANT = {KID_SCP11A: 0x01, KID_SCP11B: 0x00, KID_SCP11C: 0x03}
KEY_TYPE_AES = 0x88
KEY_LENGTH = 16
#: SCP11 key usage qualifier -> security level of the session
USAGE_LEVELS = {0x3C: Level(0x33), 0x34: Level(0x11)}


@dataclass
class PendingScp03:
    """An INITIALIZE UPDATE waiting for its EXTERNAL AUTHENTICATE."""

    kvn: int
    context: bytes
    keys: SessionKeys


def initialize_update(keys: Scp03KeySet, host_challenge: bytes,
                      diversification: bytes) -> tuple[bytes, PendingScp03]:
    """The INITIALIZE UPDATE answer for ``keys``, and what EXTERNAL AUTHENTICATE checks."""
    if len(host_challenge) != CHALLENGE_LEN:
        raise ApduError(SW.INCORRECT_PARAMETERS)
    card_challenge = os.urandom(CHALLENGE_LEN)
    context = host_challenge + card_challenge
    session = SessionKeys(derive(keys.enc, DERIVE_S_ENC, context),
                          derive(keys.mac, DERIVE_S_MAC, context),
                          derive(keys.mac, DERIVE_S_RMAC, context), keys.dek)
    cryptogram = derive(session.mac, DERIVE_CARD_CRYPTOGRAM, context, 64)
    answer = diversification + bytes([keys.kvn, 0x03, SCP03_I]) + card_challenge + cryptogram
    return answer, PendingScp03(keys.kvn, context, session)


def external_authenticate(pending: PendingScp03, apdu: Apdu) -> SecureChannel:
    """The SCP03 session EXTERNAL AUTHENTICATE opens: ``6982`` without a C-MAC, ``6300`` if
    the host cryptogram or its MAC is wrong."""
    if apdu.p1 not in VALID_LEVELS or apdu.p2 != 0:
        raise ApduError(SW.WRONG_PARAMETERS_P1P2)
    data = apdu.data
    if not apdu.cla & 0x04 or len(data) != CRYPTOGRAM_LEN + MAC_LEN:
        raise ApduError(SW.SECURITY_CONDITION_NOT_SATISFIED)
    host, mac = data[:CRYPTOGRAM_LEN], data[CRYPTOGRAM_LEN:]
    full = aes_cmac(pending.keys.mac, b"\0" * 16, mac_header(apdu, len(data)), host)
    expected = derive(pending.keys.mac, DERIVE_HOST_CRYPTOGRAM, pending.context, 64)
    if not (hmac.compare_digest(full[:MAC_LEN], mac) and hmac.compare_digest(host, expected)):
        raise ApduError(AUTHENTICATION_FAILED)
    return SecureChannel("scp03", pending.keys, apdu.p1, full, oce_authenticated=True)


@dataclass(frozen=True)
class Scp11Request:
    """A parsed SCP11 key agreement command."""

    level: Level
    shared_info: bytes
    epk_oce: ec.EllipticCurvePublicKey


def parse_scp11(data: bytes, kid: int) -> Scp11Request:
    """The key agreement data of INTERNAL/EXTERNAL AUTHENTICATE for the card key ``kid``
    (``6A80`` for anything it does not support)."""
    fields = tlv.parse_dict(data)
    if set(fields) != {TAG_CONTROL_REFERENCE, TAG_EPK}:
        raise ApduError(SW.INCORRECT_PARAMETERS)
    control = tlv.parse_dict(fields[TAG_CONTROL_REFERENCE])
    usage = control.get(TAG_KEY_USAGE, b"")
    if (control.get(TAG_SCP_ID) != bytes([SCP11_ID, SCP11_VARIANT[kid]])
            or len(usage) != 1 or usage[0] not in USAGE_LEVELS
            or control.get(TAG_KEY_TYPE) != bytes([KEY_TYPE_AES])
            or control.get(TAG_KEY_LENGTH) != bytes([KEY_LENGTH])):
        raise ApduError(SW.INCORRECT_PARAMETERS)
    return Scp11Request(USAGE_LEVELS[usage[0]], usage + bytes([KEY_TYPE_AES, KEY_LENGTH]),
                        load_point(fields[TAG_EPK]))


def load_point(value: bytes) -> ec.EllipticCurvePublicKey:
    """A P-256 public key from host bytes (``6A80`` if it is not one)."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), value)
    except ValueError:
        raise ApduError(SW.INCORRECT_PARAMETERS) from None


def agree(kid: int, sk_sd: bytes, request: Scp11Request, data: bytes,
          pk_oce: ec.EllipticCurvePublicKey | None) -> tuple[bytes, SecureChannel]:
    """The answer to an SCP11 key agreement and the session it opens. ``pk_oce`` is the OCE's
    certified key (SCP11a/c); SCP11b uses the ephemeral key in its place."""
    esk_sd = ec.generate_private_key(ec.SECP256R1())
    static_peer = pk_oce if pk_oce is not None else request.epk_oce
    secret = (esk_sd.exchange(ec.ECDH(), request.epk_oce)
              + private_key(sk_sd).exchange(ec.ECDH(), static_peer))
    keys = X963KDF(hashes.SHA256(), 5 * KEY_LENGTH, request.shared_info).derive(secret)
    receipt_key, enc, mac, rmac, dek = (keys[i:i + KEY_LENGTH]
                                        for i in range(0, 5 * KEY_LENGTH, KEY_LENGTH))
    epk_tlv = tlv.tlv(TAG_EPK, point(esk_sd))
    receipt = aes_cmac(receipt_key, data, epk_tlv)
    name = {KID_SCP11A: "scp11a", KID_SCP11B: "scp11b", KID_SCP11C: "scp11c"}[kid]
    channel = SecureChannel(name, SessionKeys(enc, mac, rmac, dek), request.level, receipt,
                            oce_authenticated=kid == KID_SCP11A)
    return epk_tlv + tlv.tlv(TAG_RECEIPT, receipt), channel


def verify_certificate(cert: x509.Certificate, issuer: ec.EllipticCurvePublicKey) -> bool:
    """True if ``issuer`` signed ``cert`` (ECDSA)."""
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        issuer.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def load_certificate(der: bytes) -> x509.Certificate:
    """An X.509 certificate from host bytes (``6A80`` if it is not one)."""
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.public_key()  # an unsupported key type fails here, not later
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ApduError(SW.INCORRECT_PARAMETERS) from None
    return cert
