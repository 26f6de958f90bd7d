"""The PIV applet's cryptography (hwtoken.emulator.applets.piv.keys) against published
vectors (FIPS 197, SP 800-67, RFC 7748, RFC 8032) and the public-key operation: every
private-key operation, every import, and the exact refusal (6A80) of input that does not fit.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from hwtoken.emulator.applets.piv import keys
from hwtoken.emulator.applets.piv.constants import KEY_TYPE, MANAGEMENT_KEY_TYPE
from hwtoken.emulator.iso7816 import SW, ApduError

H = bytes.fromhex


def refused(call, *args) -> None:
    with pytest.raises(ApduError) as err:
        call(*args)
    assert err.value.sw == SW.INCORRECT_PARAMETERS == 0x6A80


@pytest.fixture(scope="module")
def rsa1024() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)


# -- the management key's block cipher --------------------------------------------------------
@pytest.mark.parametrize(("key_type", "key", "plain", "cipher"), [
    # FIPS 197 appendix C.1-C.3
    (MANAGEMENT_KEY_TYPE.AES128, H("000102030405060708090a0b0c0d0e0f"),
     H("00112233445566778899aabbccddeeff"), H("69c4e0d86a7b0430d8cdb78070b4c55a")),
    (MANAGEMENT_KEY_TYPE.AES192, H("000102030405060708090a0b0c0d0e0f1011121314151617"),
     H("00112233445566778899aabbccddeeff"), H("dda97ca4864cdfe06eaf70a0ec0d7191")),
    (MANAGEMENT_KEY_TYPE.AES256,
     H("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
     H("00112233445566778899aabbccddeeff"), H("8ea2b7ca516745bfeafc49904b496089")),
    # SP 800-67 (rev. 1) appendix B: "The qufc" under three distinct keys
    (MANAGEMENT_KEY_TYPE.TDES, H("0123456789abcdef23456789abcdef01456789abcdef0123"),
     b"The qufc", H("a826fd8ce53b855f")),
])
def test_management_key_block_cipher_vectors(key_type, key, plain, cipher):
    assert keys.encrypt_block(key_type, key, plain) == cipher
    assert keys.decrypt_block(key_type, key, cipher) == plain


# -- keys and their encodings -----------------------------------------------------------------
@pytest.mark.parametrize("key_type", [KEY_TYPE.RSA1024, KEY_TYPE.ECCP256, KEY_TYPE.ECCP384,
                                      KEY_TYPE.ED25519, KEY_TYPE.X25519], ids=str)
def test_generated_keys_are_of_their_type_and_survive_the_store(key_type):
    key = keys.generate(key_type)
    assert keys.key_type_of(key) is key_type
    assert keys.key_type_of(key.public_key()) is key_type
    again = keys.from_der(keys.to_der(key))
    assert keys.to_der(again) == keys.to_der(key)
    assert keys.to_der(key).startswith(b"\x30")  # PKCS#8, unencrypted
    if key_type.is_rsa:
        assert key.public_key().public_numbers().e == 65537 and key.key_size == 1024


def test_key_types_of_other_keys():
    assert keys.key_type_of(rsa.generate_private_key(65537, 2048)) is KEY_TYPE.RSA2048
    p521 = ec.generate_private_key(ec.SECP521R1())
    with pytest.raises(ValueError, match="^unsupported curve secp521r1$"):
        keys.key_type_of(p521)
    ed448_der = ed448.Ed448PrivateKey.generate().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(ValueError, match="^not a PIV key type$"):
        keys.from_der(ed448_der)


def test_public_key_data_as_piv_encodes_it(rsa1024):
    n = rsa1024.public_key().public_numbers().n
    assert keys.public_key_data(KEY_TYPE.RSA1024, rsa1024.public_key()) == \
        b"\x81\x81\x80" + n.to_bytes(128, "big") + b"\x82\x03\x01\x00\x01"
    p256 = ec.derive_private_key(1, ec.SECP256R1()).public_key()  # the generator
    g = H("046b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
          "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5")
    assert keys.public_key_data(KEY_TYPE.ECCP256, p256) == b"\x86\x41" + g
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(ED_SECRET).public_key()
    assert keys.public_key_data(KEY_TYPE.ED25519, ed) == b"\x86\x20" + ED_PUBLIC
    x = x25519.X25519PrivateKey.from_private_bytes(X_ALICE).public_key()
    assert keys.public_key_data(KEY_TYPE.X25519, x) == b"\x86\x20" + X_ALICE_PUBLIC


# -- signing ----------------------------------------------------------------------------------
def test_rsa_is_raw_rsa_on_a_block_of_the_modulus_length(rsa1024):
    pub = rsa1024.public_key().public_numbers()
    block = b"\x00\x01" + b"\xff" * 100 + b"\x00" + b"x" * 25
    out = keys.sign(KEY_TYPE.RSA1024, rsa1024, block)
    assert len(out) == 128 and pow(int.from_bytes(out, "big"), pub.e, pub.n) == \
        int.from_bytes(block, "big")
    small = keys.sign(KEY_TYPE.RSA1024, rsa1024, bytes(127) + b"\x01")
    assert small == bytes(127) + b"\x01"  # 1^d = 1, still a full block
    top = (pub.n - 1).to_bytes(128, "big")
    assert keys.sign(KEY_TYPE.RSA1024, rsa1024, top) == top  # (-1)^d = -1 (d is odd)
    refused(keys.sign, KEY_TYPE.RSA1024, rsa1024, pub.n.to_bytes(128, "big"))  # >= n
    refused(keys.sign, KEY_TYPE.RSA1024, rsa1024, block[1:])  # 127 bytes
    refused(keys.sign, KEY_TYPE.RSA1024, rsa1024, block + b"\0")  # 129


def test_an_rsa_key_from_its_parts_passes_openssls_check(rsa1024):
    n = rsa1024.private_numbers()
    der = keys.checked_rsa_key(n.p, n.q, n.d, n.dmp1, n.dmq1, n.iqmp)
    key = serialization.load_der_private_key(der, None)
    assert key.private_numbers() == n and der == keys.to_der(rsa1024)
    with pytest.raises(ValueError):  # inconsistent parts fail OpenSSL's check
        keys.checked_rsa_key(n.p, n.q, n.d, n.dmp1 ^ 2, n.dmq1, n.iqmp)
    with pytest.raises(ValueError):
        keys.checked_rsa_key(n.p, n.q, n.d + 2, n.dmp1, n.dmq1, n.iqmp)


def test_the_crt_gives_the_private_exponents_result(rsa1024):
    # first the worked example of RSA (p 61, q 53, e 17, d 2753; dP 53, dQ 49, qInv 38):
    # 2790 -> 65, and every c of n = 3233 (small: a lost modulus fails here at once)
    assert keys.rsa_private(2790, 61, 53, 53, 49, 38) == 65
    assert [keys.rsa_private(c, 61, 53, 53, 49, 38) for c in range(3233)] == \
        [pow(c, 2753, 3233) for c in range(3233)]
    nums = rsa1024.private_numbers()
    for c in (0, 1, 2, 12345, nums.public_numbers.n - 1, nums.p, nums.q + 7):
        assert keys.rsa_private(c, nums.p, nums.q, nums.dmp1, nums.dmq1, nums.iqmp) == \
            pow(c, nums.d, nums.public_numbers.n)


@pytest.mark.parametrize(("key_type", "curve", "hash_"), [
    (KEY_TYPE.ECCP256, ec.SECP256R1(), hashes.SHA256()),
    (KEY_TYPE.ECCP384, ec.SECP384R1(), hashes.SHA384()),
], ids=["p256", "p384"])
def test_ecdsa_signs_the_hash_padded_or_cut_to_the_order(key_type, curve, hash_):
    key = ec.generate_private_key(curve)
    size = key_type.byte_len

    def verifies(data: bytes, digest: bytes) -> None:
        sig = keys.sign(key_type, key, data)
        key.public_key().verify(sig, digest, ec.ECDSA(Prehashed(hash_)))

    full = bytes(range(1, size + 1))
    verifies(full, full)
    verifies(full[:20], bytes(size - 20) + full[:20])  # a SHA-1 hash: left-padded
    verifies(full + b"extra", full)  # too long: its leftmost bytes
    verifies(b"\x07", bytes(size - 1) + b"\x07")
    refused(keys.sign, key_type, key, b"")


def test_ed25519_signs_the_message_rfc8032_test_1():
    key = ed25519.Ed25519PrivateKey.from_private_bytes(ED_SECRET)
    assert keys.sign(KEY_TYPE.ED25519, key, b"") == ED_SIGNATURE


def test_x25519_cannot_sign():
    refused(keys.sign, KEY_TYPE.X25519, x25519.X25519PrivateKey.generate(), b"data")


# -- key agreement ----------------------------------------------------------------------------
ED_SECRET = H("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
ED_PUBLIC = H("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
ED_SIGNATURE = H("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a3"
                 "3bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
X_ALICE = H("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
X_ALICE_PUBLIC = H("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
X_BOB_PUBLIC = H("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
X_SHARED = H("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def test_x25519_agreement_rfc7748_section_6_1():
    key = x25519.X25519PrivateKey.from_private_bytes(X_ALICE)
    assert keys.agree(KEY_TYPE.X25519, key, X_BOB_PUBLIC) == X_SHARED
    refused(keys.agree, KEY_TYPE.X25519, key, X_BOB_PUBLIC[:31])
    refused(keys.agree, KEY_TYPE.X25519, key, X_BOB_PUBLIC + b"\0")
    refused(keys.agree, KEY_TYPE.X25519, key, bytes(32))  # a low-order point: all-zero secret


@pytest.mark.parametrize(("key_type", "curve"), [(KEY_TYPE.ECCP256, ec.SECP256R1()),
                                                 (KEY_TYPE.ECCP384, ec.SECP384R1())],
                         ids=["p256", "p384"])
def test_ecdh_with_an_uncompressed_point(key_type, curve):
    key, peer = ec.generate_private_key(curve), ec.generate_private_key(curve)
    point = peer.public_key().public_bytes(serialization.Encoding.X962,
                                           serialization.PublicFormat.UncompressedPoint)
    assert keys.agree(key_type, key, point) == peer.exchange(ec.ECDH(), key.public_key())
    compressed = peer.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.CompressedPoint)
    refused(keys.agree, key_type, key, compressed)
    refused(keys.agree, key_type, key, point[:-1])
    refused(keys.agree, key_type, key, point + b"\0")
    refused(keys.agree, key_type, key, b"\x05" + point[1:])  # not the uncompressed form
    refused(keys.agree, key_type, key, point[:-1] + bytes([point[-1] ^ 1]))  # off the curve


def test_keys_that_cannot_agree(rsa1024):
    refused(keys.agree, KEY_TYPE.RSA1024, rsa1024, bytes(128))
    ed = ed25519.Ed25519PrivateKey.from_private_bytes(ED_SECRET)
    refused(keys.agree, KEY_TYPE.ED25519, ed, X_BOB_PUBLIC)


# -- IMPORT KEY -------------------------------------------------------------------------------
def _crt(key: rsa.RSAPrivateKey, size: int) -> dict[int, bytes]:
    n = key.private_numbers()
    return {1: n.p.to_bytes(size, "big"), 2: n.q.to_bytes(size, "big"),
            3: n.dmp1.to_bytes(size, "big"), 4: n.dmq1.to_bytes(size, "big"),
            5: n.iqmp.to_bytes(size, "big")}


def test_rsa_import_from_its_crt_parts(rsa1024):
    imported = keys.from_import(KEY_TYPE.RSA1024, _crt(rsa1024, 64))
    assert imported.private_numbers() == rsa1024.private_numbers()


@pytest.mark.parametrize("tag", [1, 2, 3, 4, 5])
def test_rsa_import_refuses_a_missing_empty_or_long_part(rsa1024, tag):
    for value in (None, b"", b"\0" + _crt(rsa1024, 64)[tag]):
        fields = _crt(rsa1024, 64)
        if value is None:
            del fields[tag]
        else:
            fields[tag] = value
        refused(keys.from_import, KEY_TYPE.RSA1024, fields)


def test_rsa_import_refuses_inconsistent_parts(rsa1024):
    good = _crt(rsa1024, 64)
    for tag in (3, 4, 5):
        fields = dict(good)
        fields[tag] = (int.from_bytes(good[tag], "big") ^ 2).to_bytes(64, "big")
        refused(keys.from_import, KEY_TYPE.RSA1024, fields)
    # parts of a 1024-bit key do not make a 2048-bit one
    refused(keys.from_import, KEY_TYPE.RSA2048, _crt(rsa1024, 64))
    refused(keys.from_import, KEY_TYPE.RSA2048, _crt(rsa1024, 128))
    e3 = rsa.generate_private_key(3, 1024)  # only e = 65537 is PIV's
    refused(keys.from_import, KEY_TYPE.RSA1024, _crt(e3, 64))
    tiny = dict(good)
    tiny[1] = b"\x02"
    refused(keys.from_import, KEY_TYPE.RSA1024, tiny)
    swapped = dict(good)
    swapped[1], swapped[2] = good[2], good[1]  # qinv no longer fits
    refused(keys.from_import, KEY_TYPE.RSA1024, swapped)


@pytest.mark.parametrize(("key_type", "curve"), [(KEY_TYPE.ECCP256, ec.SECP256R1()),
                                                 (KEY_TYPE.ECCP384, ec.SECP384R1())],
                         ids=["p256", "p384"])
def test_ec_import_takes_a_scalar_of_the_fields_length(key_type, curve):
    size = key_type.byte_len
    key = keys.from_import(key_type, {6: (1).to_bytes(size, "big")})
    assert key.curve.name == curve.name
    assert key.public_key() == ec.derive_private_key(1, curve).public_key()
    scalar = ec.generate_private_key(curve).private_numbers().private_value
    assert keys.from_import(key_type, {6: scalar.to_bytes(size, "big")}) \
        .private_numbers().private_value == scalar
    for bad in (b"\x01", (1).to_bytes(size - 1, "big"), (1).to_bytes(size + 1, "big"),
                bytes(size), b"\xff" * size):  # short, long, zero, above the order
        refused(keys.from_import, key_type, {6: bad})
    refused(keys.from_import, key_type, {})
    refused(keys.from_import, key_type, {7: (1).to_bytes(size, "big")})


def test_curve25519_imports():
    ed = keys.from_import(KEY_TYPE.ED25519, {7: ED_SECRET})
    assert isinstance(ed, ed25519.Ed25519PrivateKey)
    assert ed.public_key().public_bytes_raw() == ED_PUBLIC
    x = keys.from_import(KEY_TYPE.X25519, {8: X_ALICE})
    assert isinstance(x, x25519.X25519PrivateKey)
    assert x.public_key().public_bytes_raw() == X_ALICE_PUBLIC
    refused(keys.from_import, KEY_TYPE.ED25519, {8: ED_SECRET})  # each has its own tag
    refused(keys.from_import, KEY_TYPE.X25519, {7: X_ALICE})
    for bad in (ED_SECRET[:31], ED_SECRET + b"\0", b""):
        refused(keys.from_import, KEY_TYPE.ED25519, {7: bad})
        refused(keys.from_import, KEY_TYPE.X25519, {8: bad})
