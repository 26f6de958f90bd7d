"""hypothesis fuzzing of CTAP2 request decoding: every input gets a status, the key
survives, and after every request the state in memory is the state on disk (a failing
command leaves nothing behind). CTAP 2.2's commands and parameters are fuzzed on a
``latest`` key: credentialMgmtPreview, pcmr tokens, enterpriseAttestation,
enableEnterpriseAttestation, hmac-secret-mc, thirdPartyPayment, every algorithm."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fido2 import cbor
from fido2.ctap import CtapError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwtoken.emulator import VirtualKey
from hwtoken.emulator.applets.fido.ctap2 import Authenticator
from hwtoken.emulator.applets.fido.ctap2.cbor import CborError
from hwtoken.emulator.applets.fido.ctap2.cbor import decode as strict_decode
from hwtoken.emulator.store import KeyStore, _encode

KNOWN = {int(e) for e in CtapError.ERR} - {int(CtapError.ERR.OTHER)}
# Commands that cannot brick the key for the usability check (no reset, no config).
SAFE_COMMANDS = [0x01, 0x02, 0x04, 0x06, 0x08, 0x0A, 0x0B, 0x0C, 0x41]
ALL_COMMANDS = SAFE_COMMANDS + [0x07, 0x0D, 0x03, 0x05, 0x09, 0x40, 0xFF]

SETTINGS = settings(max_examples=600,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])

scalars = (st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.booleans()
           | st.binary(max_size=80) | st.text(max_size=20)
           | st.sampled_from(["public-key", "example.com", "id", "alg", "type", "rk", "up",
                              "uv", "hmac-secret", "credProtect", "credBlob", "largeBlobKey",
                              "minPinLength", "hmac-secret-mc", "thirdPartyPayment"])
           | st.sampled_from([-7, -8, -35, -36, -37, -257, -47, -48, -49, -50, 0x40, 0x20]))
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.integers(-3, 12) | st.sampled_from(
        ["id", "alg", "type", "name", "rk", "up", "uv", "hmac-secret", "credProtect"]),
        children, max_size=5),
    max_leaves=20,
)
requests = st.dictionaries(st.integers(0, 12), values, max_size=8)


def valid_requests() -> list[bytes]:
    cdh = bytes(32)
    return [
        b"\x01" + cbor.encode({1: cdh, 2: {"id": "example.com", "name": "Ex"},
                               3: {"id": b"user", "name": "u", "displayName": "U"},
                               4: [{"type": "public-key", "alg": -7}],
                               6: {"hmac-secret": True, "credProtect": 2, "credBlob": b"b"},
                               7: {"rk": True}}),
        b"\x02" + cbor.encode({1: "example.com", 2: cdh, 5: {"up": True}}),
        b"\x06" + cbor.encode({1: 2, 2: 2}),
        b"\x0a" + cbor.encode({1: 1, 3: 2, 4: bytes(32)}),
        b"\x0c" + cbor.encode({1: 100, 3: 0}),
    ]


def check(response: bytes, key=None) -> None:
    assert isinstance(response, bytes) and response
    assert response[0] == 0 or response[0] in KNOWN, hex(response[0])
    if key is not None:  # nothing changed in memory that was not saved
        on_disk = json.loads(Path(key.path).read_text())
        assert json.loads(json.dumps(_encode(key.store.data))) == on_disk


def usable(auth: Authenticator) -> None:
    cdh = os.urandom(32)
    resp = auth.process(b"\x01" + cbor.encode({
        1: cdh, 2: {"id": "usable.example"}, 3: {"id": b"u"},
        4: [{"type": "public-key", "alg": -7}]}))
    assert resp[0] == 0, hex(resp[0])
    cid = cbor.decode(resp[1:])[2][55:]  # rpIdHash 32, flags 1, counter 4, aaguid 16, len 2
    cid = cid[: int.from_bytes(cbor.decode(resp[1:])[2][53:55], "big")]
    resp = auth.process(b"\x02" + cbor.encode({1: "usable.example", 2: cdh,
                                               3: [{"type": "public-key", "id": cid}]}))
    assert resp[0] == 0, hex(resp[0])


@pytest.fixture
def auth(key):
    return Authenticator(key)


def test_random_bytes(key, auth):
    @SETTINGS
    @given(st.sampled_from(SAFE_COMMANDS), st.binary(max_size=300))
    def run(cmd, body):
        check(auth.process(bytes([cmd]) + body), key)

    run()
    usable(auth)
    key.close()
    KeyStore.read(key.path)  # still a readable state file


def test_structured_requests(auth):
    @SETTINGS
    @given(st.sampled_from(SAFE_COMMANDS), requests)
    def run(cmd, req):
        check(auth.process(bytes([cmd]) + cbor.encode(req)), auth.key)

    run()
    usable(auth)


def fuzz_mutations_of(auth, seeds: list[bytes]) -> None:
    """Valid requests with bytes overwritten and tails cut: every answer is well-formed
    and the authenticator stays usable."""

    @SETTINGS
    @given(st.sampled_from(seeds), st.lists(st.tuples(st.integers(0, 10_000),
                                                      st.integers(0, 255)), max_size=6),
           st.integers(0, 400))
    def run(seed, flips, cut):
        data = bytearray(seed)
        for pos, val in flips:
            data[pos % len(data)] = val
        check(auth.process(bytes(data[: max(1, len(data) - cut % 8)])), auth.key)

    run()
    usable(auth)


def test_mutated_valid_requests(auth):
    fuzz_mutations_of(auth, valid_requests())


def test_every_command_never_crashes(auth):
    @SETTINGS
    @given(st.sampled_from(ALL_COMMANDS), requests | st.just(None))
    def run(cmd, req):
        check(auth.process(bytes([cmd]) + (cbor.encode(req) if req is not None else b"")),
              auth.key)

    run()


# -- CTAP 2.2 and the latest profile ----------------------------------------------------------
@pytest.fixture
def latest_auth(tmp_path):
    """A latest key with a PIN, an enabled enterprise attestation and a resident ML-DSA-87
    credential, so the fuzzed requests reach deep into the new code."""
    from fido2.ctap2 import Config, Ctap2
    from fido2.ctap2.pin import ClientPin

    from hwtoken.emulator import fido_device

    key = VirtualKey.create(tmp_path / "latest.key", profile="latest")
    ctap = Ctap2(fido_device(key))
    ClientPin(ctap).set_pin("12345678")
    cp = ClientPin(ctap)
    Config(ctap, cp.protocol, cp.get_pin_token("12345678", ClientPin.PERMISSION.AUTHENTICATOR_CFG)
           ).enable_enterprise_attestation()
    cp.get_pin_token("12345678", ClientPin.PERMISSION.PERSISTENT_CREDENTIAL_MGMT)
    token = cp.get_pin_token("12345678", ClientPin.PERMISSION.MAKE_CREDENTIAL, "example.com")
    cdh = bytes(32)
    ctap.make_credential(cdh, {"id": "example.com"}, {"id": b"pq", "name": "pq"},
                         [{"type": "public-key", "alg": -50}], options={"rk": True},
                         extensions={"thirdPartyPayment": True, "hmac-secret": True},
                         pin_uv_param=cp.protocol.authenticate(token, cdh),
                         pin_uv_protocol=cp.protocol.VERSION)
    yield Authenticator(key)
    key.close()


def valid_ctap22_requests() -> list[bytes]:
    cdh = bytes(32)
    key_agreement = {1: 2, 3: -25, -1: 1, -2: bytes(32), -3: bytes(32)}
    return [
        b"\x01" + cbor.encode({1: cdh, 2: {"id": "enterprise.example.com"},
                               3: {"id": b"user", "name": "u"},
                               4: [{"type": "public-key", "alg": a} for a in (-50, -257, -7)],
                               6: {"hmac-secret": True, "thirdPartyPayment": True,
                                   "hmac-secret-mc": {1: key_agreement, 2: bytes(32),
                                                      3: bytes(16), 4: 1}},
                               10: 1, 11: ["packed", "none"]}),
        b"\x02" + cbor.encode({1: "example.com", 2: cdh,
                               4: {"thirdPartyPayment": True, "credBlob": True},
                               5: {"up": False}}),
        b"\x06" + cbor.encode({1: 2, 2: 9, 3: key_agreement, 6: bytes(32), 9: 0x40}),
        b"\x41" + cbor.encode({1: 1, 3: 2, 4: bytes(32)}),
        b"\x0a" + cbor.encode({1: 4, 2: {1: bytes(32)}, 3: 1, 4: bytes(16)}),
        b"\x0d" + cbor.encode({1: 1, 3: 2, 4: bytes(32)}),
        b"\x04",
    ]


def test_mutated_ctap22_requests(latest_auth):
    fuzz_mutations_of(latest_auth, valid_ctap22_requests())


def test_structured_ctap22_requests(latest_auth):
    @SETTINGS
    @given(st.sampled_from(SAFE_COMMANDS + [0x0D]), requests)
    def run(cmd, req):
        check(latest_auth.process(bytes([cmd]) + cbor.encode(req)), latest_auth.key)

    run()
    usable(latest_auth)
    # the ML-DSA-87 passkey is still there and still signs 4627-byte signatures
    resp = latest_auth.process(b"\x02" + cbor.encode({1: "example.com", 2: bytes(32)}))
    assert resp[0] == 0 and len(cbor.decode(resp[1:])[3]) == 4627


@settings(max_examples=1000)
@given(st.binary(max_size=200))
def test_strict_decoder_only_raises_cbor_error(data):
    try:
        value = strict_decode(data)
    except CborError:
        return
    # only the CTAP2 data model comes out: no floats, tags or undefined values
    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                assert type(k) in (int, str)
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        else:
            assert v is None or type(v) in (int, bool, bytes, str)

    walk(value)


def test_strict_decoder_rejects_what_fido2_accepts():
    for bad in (b"\x42\x01",  # byte string shorter than its length
                b"\xa1\x01",  # map missing its value
                b"\xf6\x01",  # trailing data
                b"\xfb" + bytes(8),  # float
                b"\x5f\x41\x00\xff",  # indefinite length
                b"\xc2\x41\x00",  # tag
                b"\xa2\x01\x00\x01\x00"):  # duplicate key
        try:
            strict_decode(bad)
        except CborError:
            continue
        raise AssertionError(f"accepted {bad.hex()}")
    # the well-formed neighbours still decode (a decoder rejecting everything must fail here)
    for good, value in ((b"\x42\x01\x02", b"\x01\x02"), (b"\xa1\x01\x00", {1: 0}),
                        (b"\xf6", None), (b"\x41\x00", b"\x00"),
                        (b"\xa2\x01\x00\x02\x00", {1: 0, 2: 0})):
        assert strict_decode(good) == value, good.hex()


def test_oversized_request_and_unknown_command(tmp_path):
    with VirtualKey.create(tmp_path / "k.key") as key:
        auth = Authenticator(key)
        assert auth.process(b"\x04" + bytes(1300)) == bytes([CtapError.ERR.REQUEST_TOO_LARGE])
        assert auth.process(b"\x42") == bytes([CtapError.ERR.INVALID_COMMAND])
        assert auth.process(b"") == bytes([CtapError.ERR.INVALID_LENGTH])
        assert auth.process(b"\x01\xff") == bytes([CtapError.ERR.INVALID_CBOR])
        assert auth.process(b"\x01\x80") == bytes([CtapError.ERR.CBOR_UNEXPECTED_TYPE])
        assert auth.process(b"\x01\xa0") == bytes([CtapError.ERR.MISSING_PARAMETER])
        assert auth.process(b"\x02" + cbor.encode({1: 5, 2: b""})) == bytes(
            [CtapError.ERR.CBOR_UNEXPECTED_TYPE])
