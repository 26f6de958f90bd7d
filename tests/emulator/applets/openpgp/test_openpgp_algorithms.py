"""Algorithm attributes (:mod:`hwtoken.emulator.applets.openpgp.algorithms`) on their own:
the OID encoding, what a host may PUT in C1-C3/DA (each refusal with its status word), and
the list each slot accepts."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from hwtoken.emulator.applets.openpgp import algorithms
from hwtoken.emulator.applets.openpgp.algorithms import (
    ALGO_ECDH,
    ALGO_ECDSA,
    ALGO_EDDSA,
    ED25519,
    SECP256R1,
    WEIERSTRASS,
    X25519,
    Attributes,
)
from hwtoken.emulator.applets.openpgp.constants import ATT, AUT, DEC, SIG
from hwtoken.emulator.iso7816 import SW, ApduError

P256_OID = bytes.fromhex("2a8648ce3d030107")


@pytest.mark.parametrize(("dotted", "body"), [
    ("1.2.840.10045.3.1.7", "2a8648ce3d030107"),
    ("1.3.132.0.34", "2b81040022"),
    ("1.3.6.1.4.1.11591.15.1", "2b06010401da470f01"),
    ("1.3.6.1.4.1.41482.5", "2b0601040182c40a05"),  # three bytes for 41482
    ("2.5.4.3", "550403"),
    ("1.3.6.1.4.1.3029.1.5.1", "2b060104019755010501"),
])
def test_oid_body(dotted, body):
    assert algorithms.oid_body(dotted) == bytes.fromhex(body)


def test_curves_know_their_oids_sizes_and_kinds():
    assert [(c.name, c.oid.hex(), c.size, c.kind) for c in algorithms.CURVES] == [
        ("secp256r1", "2a8648ce3d030107", 32, "ec"),
        ("secp256k1", "2b8104000a", 32, "ec"),
        ("secp384r1", "2b81040022", 48, "ec"),
        ("secp521r1", "2b81040023", 66, "ec"),
        ("brainpoolP256r1", "2b2403030208010107", 32, "ec"),
        ("brainpoolP384r1", "2b240303020801010b", 48, "ec"),
        ("brainpoolP512r1", "2b240303020801010d", 64, "ec"),
        ("ed25519", "2b06010401da470f01", 32, "ed25519"),
        ("x25519", "2b060104019755010501", 32, "x25519"),
    ]
    for curve in WEIERSTRASS:
        made = curve.ec_curve()
        assert isinstance(made, ec.EllipticCurve) and made.name == curve.name
        assert (made.key_size + 7) // 8 == curve.size


@pytest.mark.parametrize(("data", "parsed"), [
    ("010800001100", Attributes.rsa(2048)),
    ("0108000011", Attributes.rsa(2048)),  # no import format byte
    ("010c00002000", Attributes(0x01, 3072, 32)),  # gpg asks for e of 32 bits
    ("011000001100", Attributes.rsa(4096)),
    ("13" + P256_OID.hex(), Attributes.ecc(ALGO_ECDSA, SECP256R1)),
    ("12" + P256_OID.hex() + "ff", Attributes.ecc(ALGO_ECDH, SECP256R1)),
    ("13" + P256_OID.hex() + "00", Attributes.ecc(ALGO_ECDSA, SECP256R1)),
    ("16" + ED25519.oid.hex(), Attributes.ecc(ALGO_EDDSA, ED25519)),
    ("12" + X25519.oid.hex() + "ff", Attributes.ecc(ALGO_ECDH, X25519)),
])
def test_attributes_parse(data, parsed):
    assert Attributes.parse(bytes.fromhex(data)) == parsed


@pytest.mark.parametrize(("data", "sw"), [
    ("", SW.WRONG_LENGTH),
    ("01080000110000", SW.INCORRECT_PARAMETERS),  # 7 bytes
    ("01080000", SW.INCORRECT_PARAMETERS),
    ("010400001100", SW.INCORRECT_PARAMETERS),  # RSA-1024
    ("010800001000", SW.INCORRECT_PARAMETERS),  # e of 16 bits
    ("010800002100", SW.INCORRECT_PARAMETERS),  # e of 33 bits
    ("010800001101", SW.INCORRECT_PARAMETERS),  # another import format
    ("14" + P256_OID.hex(), SW.INCORRECT_PARAMETERS),  # no such algorithm
    ("13" + P256_OID.hex() + "01", SW.INCORRECT_PARAMETERS),
    ("13" + P256_OID.hex()[:-2], SW.INCORRECT_PARAMETERS),
    ("13", SW.INCORRECT_PARAMETERS),
])
def test_attributes_refused(data, sw):
    with pytest.raises(ApduError) as e:
        Attributes.parse(bytes.fromhex(data))
    assert e.value.sw == sw


def test_attributes_encode_and_describe_a_key_type():
    gpg_rsa = Attributes(0x01, 3072, 32)
    assert bytes(gpg_rsa) == bytes.fromhex("010c00002000")
    assert bytes(gpg_rsa.key_type) == bytes.fromhex("010c00001100")
    assert gpg_rsa.key_type == Attributes.rsa(3072)
    assert gpg_rsa.is_rsa and gpg_rsa.byte_len == 384 and gpg_rsa.curve is None
    assert bytes(Attributes.ecc(ALGO_ECDH, X25519)) == b"\x12" + X25519.oid
    p521 = Attributes.parse(bytes.fromhex("13 2b81040023"))
    assert not p521.is_rsa and p521.byte_len == 66
    assert p521.key_type is not p521 and p521.key_type == p521
    assert algorithms.default() == Attributes.rsa(2048)


def test_which_slot_takes_which_key_type():
    ecdsa = Attributes.ecc(ALGO_ECDSA, SECP256R1)
    ecdh = Attributes.ecc(ALGO_ECDH, SECP256R1)
    eddsa, cv25519 = Attributes.ecc(ALGO_EDDSA, ED25519), Attributes.ecc(ALGO_ECDH, X25519)
    assert [ecdsa.fits(s) for s in (SIG, DEC, AUT, ATT)] == [True, False, True, True]
    assert [ecdh.fits(s) for s in (SIG, DEC, AUT, ATT)] == [False, True, False, False]
    assert [eddsa.fits(s) for s in (SIG, DEC, AUT, ATT)] == [True, False, True, False]
    assert [cv25519.fits(s) for s in (SIG, DEC, AUT, ATT)] == [False, True, False, False]
    assert Attributes(0x01, 4096, 32).fits(ATT)  # the exponent's size does not matter
    assert len(algorithms.supported(SIG)) == len(algorithms.supported(AUT)) == 3 + 7 + 1
    assert len(algorithms.supported(DEC)) == 3 + 7 + 1
    assert len(algorithms.supported(ATT)) == 3 + 7
    info = algorithms.algorithm_information()
    assert [tag for tag, _ in info] == [0xC1] * 11 + [0xC2] * 11 + [0xC3] * 11 + [0xDA] * 10
    assert info[0] == (0xC1, bytes.fromhex("010800001100"))
    assert info[10] == (0xC1, b"\x16" + ED25519.oid)
    assert info[21] == (0xC2, b"\x12" + X25519.oid)
