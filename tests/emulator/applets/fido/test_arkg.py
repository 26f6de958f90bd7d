"""ARKG-P256's private side (hwtoken.emulator.applets.fido.arkg) against the test vectors of
draft-bradleylundberg-cfrg-arkg, and against python-fido2's public side (fido2.cose's
ARKG_P256_PLACEHOLDER): every key it derives is the private key of the public key the
relying party derived."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2.cose import ARKG_P256_PLACEHOLDER

from hwtoken.emulator.applets.fido import arkg

IKM_BL = bytes(range(0x00, 0x20))
IKM_KEM = bytes(range(0x20, 0x40))
PK_BL = ("046d3bdf31d0db48988f16d47048fdd24123cd286e42d0512daa9f726b4ecf18df"
         "65ed42169c69675f936ff7de5f9bd93adbc8ea73036b16e8d90adbfabdaddba7")
PK_KEM = ("04c38bbdd7286196733fa177e43b73cfd3d6d72cd11cc0bb2c9236cf85a42dcff5"
          "dfa339c1e07dfcdfda8d7be2a5a3c7382991f387dfe332b1dd8da6e0622cfb35")
SK_BL = 0xd959500a78ccf850ce46c80a8c5043c9a2e33844232b3829df37d05b3069f455
SK_KEM = 0x74e0a4cd81ca2d24246ff75bfd6d4fb7f9dfc938372627feb2c2348f8b1493b5
# (ctx, kh, sk') of the draft's three ARKG-P256 vectors
VECTORS = [
    (b"ARKG-P256.test vectors",
     "27987995f184a44cfa548d104b0a461d0487fc739dbcdabc293ac5469221da91b220e04c681074ec469"
     "2a76ffacb9043dec2847ea9060fd42da267f66852e63589f0c00dc88f290d660c65a65a50c86361",
     0x775d7fe9a6dfba43ce671cb38afca3d272c4d14aff97bd67559eb500a092e5e7),
    (b"ARKG-P256.test vectors",
     "b7507a82771776fbac41a18d94e19a7e0457fd1e438280c127dd55a6138d1baf0a35e3e9671f7e42d83"
     "45f47374afa83247a078fa2196cd69497aed59ef92c05cb6b03d306ec24f2f4ff2db09cd95d1b11",
     0x6228e470290e9d7cc0feff32a74caafa14c608c956337eba23997f5904cff226),
    (b"ARKG-P256.test vectors.0",
     "81c4e65b552e52350b49864b98b87d510487fc739dbcdabc293ac5469221da91b220e04c681074ec469"
     "2a76ffacb9043dec2847ea9060fd42da267f66852e63589f0c00dc88f290d660c65a65a50c86361",
     0x2a97f4232f9abba32fbfc28c6686f8afd2d851c2a95a3ed2f0a384b9ad55068d),
]


@pytest.fixture
def seed():
    return arkg.PrivateSeed.derive(IKM_BL, IKM_KEM)


def test_derive_seed_matches_the_draft(seed):
    assert (seed.sk_bl, seed.sk_kem) == (SK_BL, SK_KEM)
    assert seed.pk_bl.hex() == PK_BL
    assert seed.pk_kem.hex() == PK_KEM


@pytest.mark.parametrize(("ctx", "kh", "sk_prime"), VECTORS)
def test_derive_private_key_matches_the_draft(seed, ctx, kh, sk_prime):
    key = seed.derive_private_key(bytes.fromhex(kh), ctx)
    assert key.private_numbers().private_value == sk_prime


def test_expand_message_xmd_matches_rfc9380():
    # RFC 9380 appendix K.1, expand_message_xmd(SHA-256), msg "abc", len_in_bytes 0x20
    dst = b"QUUX-V01-CS02-with-expander-SHA256-128"
    assert arkg.expand_message_xmd(b"abc", dst, 0x20).hex() == (
        "d8ccab23b5985ccea865c6c97b6e5b8350e794e603b4b97902f53a8a0d605615")
    assert arkg.expand_message_xmd(b"", dst, 0x20).hex() == (
        "68a985b87eb6b46952128911f2a4412bbc302a9d759667f87f7a21d803f07235")
    assert len(arkg.expand_message_xmd(b"", dst, 0x80)) == 0x80


def test_keys_derived_by_python_fido2_are_signed_for(seed):
    """The relying party's side (fido2.cose) derives a public key and key handle from the
    public seed; the key derives the matching private key and its signatures verify."""
    public_seed = ARKG_P256_PLACEHOLDER({
        1: -65537, 3: -65700, -3: -9,
        -1: {1: 2, 3: -7, -1: 1, -2: seed.pk_bl[1:33], -3: seed.pk_bl[33:]},
        -2: {1: 2, 3: -25, -1: 1, -2: seed.pk_kem[1:33], -3: seed.pk_kem[33:]},
    })
    for ctx in (b"", b"python-fido2.test", bytes(64)):
        public, args = public_seed.derive_public_key(os.urandom(32), ctx)
        private = seed.derive_private_key(args[-1], args[-2])
        signature = private.sign(b"message", ec.ECDSA(hashes.SHA256()))
        public.verify(b"message", signature)


def test_another_ctx_fails_the_mac(seed):
    ctx, kh, _ = VECTORS[0]
    with pytest.raises(arkg.ArkgError, match="MAC"):
        seed.derive_private_key(bytes.fromhex(kh), ctx + b"x")


def test_a_tampered_key_handle_fails_the_mac(seed):
    ctx, kh, _ = VECTORS[0]
    raw = bytearray.fromhex(kh)
    raw[3] ^= 1
    with pytest.raises(arkg.ArkgError, match="MAC"):
        seed.derive_private_key(bytes(raw), ctx)


def test_another_seed_cannot_open_a_key_handle():
    ctx, kh, _ = VECTORS[0]
    other = arkg.PrivateSeed.derive(IKM_BL, IKM_BL)
    with pytest.raises(arkg.ArkgError, match="MAC"):
        other.derive_private_key(bytes.fromhex(kh), ctx)


@pytest.mark.parametrize("kh", [b"", bytes(80), bytes(82)])
def test_key_handles_of_the_wrong_length(seed, kh):
    with pytest.raises(arkg.ArkgError, match="length"):
        seed.derive_private_key(kh, b"")


def test_a_key_handle_without_a_curve_point(seed):
    with pytest.raises(arkg.ArkgError, match="point"):
        seed.derive_private_key(bytes(16) + b"\x04" + bytes(64), b"")


def test_ctx_longer_than_64_bytes(seed):
    _, kh, _ = VECTORS[0]
    with pytest.raises(arkg.ArkgError, match="64"):
        seed.derive_private_key(bytes.fromhex(kh), bytes(65))


def test_derived_keys_differ_per_key_handle(seed):
    keys = {seed.derive_private_key(bytes.fromhex(kh), ctx).private_numbers().private_value
            for ctx, kh, _ in VECTORS}
    assert len(keys) == 3
    key = seed.derive_private_key(bytes.fromhex(VECTORS[0][1]), VECTORS[0][0])
    other = seed.derive_private_key(bytes.fromhex(VECTORS[1][1]), VECTORS[1][0])
    signature = key.sign(b"m", ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        other.public_key().verify(signature, b"m", ec.ECDSA(hashes.SHA256()))


def test_error_messages_are_exact(seed):
    ctx, kh, _ = VECTORS[0]
    raw = bytes.fromhex(kh)
    cases = [
        (raw[:-1], ctx, "ARKG key handle has the wrong length"),
        (bytes(16) + b"\x04" + bytes(64), ctx, "ARKG key handle holds no P-256 point"),
        (raw, ctx + b"x", "ARKG key handle fails its MAC"),
        (raw, bytes(65), "ARKG ctx longer than 64 bytes"),
    ]
    for kh_, ctx_, message in cases:
        with pytest.raises(arkg.ArkgError) as caught:
            seed.derive_private_key(kh_, ctx_)
        assert str(caught.value) == message


def test_expand_message_xmd_limits():
    """RFC 9380 §5.3.1: at most 255 blocks (8160 bytes) and a DST of at most 255 bytes."""
    longest = arkg.expand_message_xmd(b"abc", b"D" * 255, 255 * 32)
    assert len(longest) == 255 * 32
    for msg, dst, length in ((b"abc", b"DST", 255 * 32 + 1), (b"abc", b"D" * 256, 32)):
        with pytest.raises(arkg.ArkgError) as caught:
            arkg.expand_message_xmd(msg, dst, length)
        assert str(caught.value) == "expand_message_xmd: output or DST too long"


def test_hkdf_expand_matches_rfc5869():
    # RFC 5869 appendix A.1 (SHA-256): PRK and OKM of test case 1, L = 42 (two blocks)
    prk = bytes.fromhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    assert arkg._hkdf_expand(prk, info, 42).hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")


@pytest.mark.parametrize("zero_dst", [b"ARKG-BL-EC-KG.", b"ARKG-KEM-ECDH-KG."])
def test_a_zero_seed_scalar_is_refused(monkeypatch, zero_dst):
    """A seed scalar of 0 (probability 2^-256) is refused, whichever half it is."""
    real = arkg.hash_to_scalar
    monkeypatch.setattr(arkg, "hash_to_scalar",
                        lambda msg, dst: 0 if dst.startswith(zero_dst) else real(msg, dst))
    with pytest.raises(arkg.ArkgError) as caught:
        arkg.PrivateSeed.derive(IKM_BL, IKM_KEM)
    assert str(caught.value) == "degenerate ARKG seed"


def test_a_zero_derived_key_is_refused(seed, monkeypatch):
    """tau = -sk_bl (probability 2^-256) would give the private key 0: refused."""
    ctx, kh, _ = VECTORS[0]
    monkeypatch.setattr(arkg, "hash_to_scalar", lambda msg, dst: arkg.N - SK_BL)
    with pytest.raises(arkg.ArkgError) as caught:
        seed.derive_private_key(bytes.fromhex(kh), ctx)
    assert str(caught.value) == "ARKG derived a zero private key"
    monkeypatch.setattr(arkg, "hash_to_scalar", lambda msg, dst: arkg.N - SK_BL + 1)
    assert seed.derive_private_key(bytes.fromhex(kh), ctx).private_numbers().private_value == 1
