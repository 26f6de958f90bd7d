"""YubiHSM Auth at the APDU level, in process: the exact bytes of SELECT, LIST and the
retry counters, the status word of every malformed command (labels, lengths, repeated
tags, touch and algorithm bytes, P1/P2), and what each command leaves on disk. yubikit
checks most of these on its side, so these tests go around it."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hwtoken.emulator.applets.hsmauth.applet import AID_HSMAUTH
from hwtoken.emulator.applets.management import tlv
from hwtoken.emulator.iso7816 import SW, Apdu, CardOS
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.presence import AskCallback, DenyAlways

MGMT = bytes(16)
OTHER = bytes([1]) * 16
PASSWORD = b"p" * 16
AES = b"\x26"
EC = b"\x27"


@pytest.fixture
def make_key(tmp_path):
    made: list[VirtualKey] = []

    def make(version=(5, 7, 4), **kw) -> VirtualKey:
        made.append(VirtualKey.create(tmp_path / f"{len(made)}.key", version=version, **kw))
        return made[-1]

    yield make
    for k in made:
        k.close()


class Card:
    def __init__(self, key: VirtualKey) -> None:
        self.key = key
        self.os = CardOS(key, strict=True, transport="usb")
        self.select_answer = self.os.transmit(Apdu(0, 0xA4, 4, 0, AID_HSMAUTH).to_bytes())

    def raw(self, ins: int, data: bytes = b"", p1: int = 0, p2: int = 0) -> bytes:
        return self.os.transmit(Apdu(0, ins, p1, p2, data).to_bytes())

    def sw(self, ins: int, data: bytes = b"", p1: int = 0, p2: int = 0) -> int:
        return int.from_bytes(self.raw(ins, data, p1, p2)[-2:], "big")

    def ok(self, ins: int, data: bytes = b"", p1: int = 0, p2: int = 0) -> bytes:
        resp = self.raw(ins, data, p1, p2)
        assert resp[-2:] == b"\x90\x00", resp.hex()
        return resp[:-2]

    def stored(self) -> dict:
        """The section as committed to the key file (not the applet's memory)."""
        return json.loads(self.key.path.read_text())["hsmauth"]


@pytest.fixture
def card(make_key) -> Card:
    return Card(make_key())


def put_aes(label: bytes = b"cred", mgmt: bytes = MGMT, touch: bytes | None = None,
            password: bytes = PASSWORD) -> bytes:
    return (tlv(0x7B, mgmt) + tlv(0x71, label) + tlv(0x74, AES) + tlv(0x75, bytes(16))
            + tlv(0x76, bytes(16)) + tlv(0x73, password)
            + (tlv(0x7A, touch) if touch is not None else b""))


def put_ec(label: bytes = b"ec", private: bytes = b"", mgmt: bytes = MGMT) -> bytes:
    return (tlv(0x7B, mgmt) + tlv(0x71, label) + tlv(0x74, EC) + tlv(0x7D, private)
            + tlv(0x73, PASSWORD))


def calculate(label: bytes = b"cred", password: bytes = PASSWORD, extra: bytes = b"") -> bytes:
    return tlv(0x71, label) + tlv(0x77, bytes(16)) + extra + tlv(0x73, password)


def test_select_version_retries_and_list_bytes(card):
    assert card.select_answer == bytes.fromhex("7903050704" "9000")
    assert card.ok(0x07) == bytes([5, 7, 4])
    assert card.ok(0x09) == b"\x08"
    assert card.ok(0x05) == b""
    assert card.ok(0x01, put_aes(b"a", touch=b"\1")) == b""
    assert card.ok(0x01, put_ec(b"e")) == b""
    assert card.ok(0x05) == bytes.fromhex("7204" "2601" "61" "08" "7204" "2700" "65" "08")
    assert card.raw(0x0C)[-2:] == b"\x6d\x00"


def test_put_refusals_cost_no_try_and_store_nothing(card):
    bad = [
        put_aes(b""), put_aes(b"x" * 65),  # label lengths
        put_aes(mgmt=bytes(15)),  # management key length
        put_aes() + tlv(0x71, b"again"),  # a repeated label
        put_aes(touch=b"\2"), put_aes(touch=b"\0\0"), put_aes() + tlv(0x7A, b"\1") * 2,
        put_aes(password=bytes(15)),
        put_aes().replace(tlv(0x74, AES), tlv(0x74, b"\x28")),  # no such algorithm
        put_aes().replace(tlv(0x74, AES), tlv(0x74, b"\x00\x26")),
        put_aes().replace(tlv(0x75, bytes(16)), tlv(0x75, bytes(15))),
        put_aes().replace(tlv(0x76, bytes(16)), tlv(0x76, bytes(17))),
        put_ec(private=bytes(31)), put_ec(private=bytes(32)),  # 0 is no scalar
        put_ec() + tlv(0x7D, b""),
    ]
    for data in bad:
        assert card.sw(0x01, data) == SW.INCORRECT_PARAMETERS, data.hex()
    assert card.ok(0x09) == b"\x08"
    assert card.ok(0x05) == b""


def test_labels_of_1_and_64_bytes(card):
    assert card.ok(0x01, put_aes(b"1")) == b""
    assert card.ok(0x01, put_aes(b"x" * 64)) == b""
    assert card.ok(0x01, put_aes(b"t", touch=b"\0")) == b""
    assert [c["touch"] for c in card.stored()["credentials"]] == [False, False, False]


def test_ec_credentials_need_5_6(make_key):
    old = Card(make_key((5, 4, 3)))
    assert old.sw(0x01, put_ec()) == SW.INCORRECT_PARAMETERS
    assert old.sw(0x0A, tlv(0x71, b"ec")) == SW.INVALID_INSTRUCTION
    new = Card(make_key((5, 6, 0)))
    assert new.ok(0x01, put_ec()) == b""
    assert len(new.ok(0x0A, tlv(0x71, b"ec"))) == 65
    assert new.ok(0x01, put_ec(b"sym-chal")) == b""
    # 5.6: GET CHALLENGE needs no password yet
    assert len(new.ok(0x04, tlv(0x71, b"ec"))) == 65


def test_generated_and_imported_ec_keys(card):
    private = ec.generate_private_key(ec.SECP256R1())
    scalar = private.private_numbers().private_value.to_bytes(32, "big")
    assert card.ok(0x01, put_ec(b"imported", scalar)) == b""
    public = private.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    assert card.ok(0x0A, tlv(0x71, b"imported")) == public
    assert card.ok(0x01, put_ec(b"generated")) == b""
    generated = card.stored()["credentials"][1]
    assert len(card.ok(0x0A, tlv(0x71, b"generated"))) == 65
    assert "private" in generated and "key_enc" not in generated
    assert card.sw(0x0A, tlv(0x71, b"nope")) == SW.FILE_NOT_FOUND


def test_a_right_management_key_gives_the_tries_back_on_disk(card):
    assert card.sw(0x01, put_aes(mgmt=OTHER)) == 0x63C7
    assert card.stored()["management_retries"] == 7
    assert card.ok(0x01, put_aes()) == b""
    assert card.stored()["management_retries"] == 8
    assert card.ok(0x09) == b"\x08"


def test_put_management_key_refusals(card):
    for data in (tlv(0x7B, MGMT), tlv(0x7B, MGMT) + tlv(0x7B, OTHER) + tlv(0x7B, OTHER),
                 tlv(0x7B, MGMT) + tlv(0x7B, OTHER[:15]), tlv(0x7B, MGMT[:15]) + tlv(0x7B, OTHER)):
        assert card.sw(0x08, data) == SW.INCORRECT_PARAMETERS
    assert card.sw(0x08, tlv(0x7B, OTHER) + tlv(0x7B, OTHER)) == 0x63C7
    assert card.ok(0x08, tlv(0x7B, MGMT) + tlv(0x7B, OTHER)) == b""
    assert card.ok(0x09) == b"\x08"
    assert card.sw(0x01, put_aes()) == 0x63C7
    assert card.ok(0x01, put_aes(mgmt=OTHER)) == b""


def test_delete_refusals_and_answer(card):
    assert card.ok(0x01, put_aes()) == b""
    assert card.sw(0x02, tlv(0x7B, MGMT[:15]) + tlv(0x71, b"cred")) == SW.INCORRECT_PARAMETERS
    assert card.sw(0x02, tlv(0x7B, MGMT) + tlv(0x71, b"")) == SW.INCORRECT_PARAMETERS
    assert card.sw(0x02, tlv(0x7B, OTHER) + tlv(0x71, b"cred")) == 0x63C7
    assert card.sw(0x02, tlv(0x7B, MGMT) + tlv(0x71, b"nope")) == SW.FILE_NOT_FOUND
    assert card.ok(0x02, tlv(0x7B, MGMT) + tlv(0x71, b"cred")) == b""
    assert card.stored()["credentials"] == []
    assert card.stored()["management_retries"] == 8


def test_calculate_refusals(card):
    assert card.ok(0x01, put_aes()) == b""
    assert card.sw(0x03, calculate(b"nope")) == SW.FILE_NOT_FOUND
    assert card.sw(0x03, calculate(password=bytes(15))) == SW.INCORRECT_PARAMETERS
    assert card.sw(0x03, calculate() + tlv(0x73, PASSWORD)) == SW.INCORRECT_PARAMETERS
    assert card.sw(0x03, calculate(extra=tlv(0x78, bytes(8)) * 2)) == SW.INCORRECT_PARAMETERS
    assert card.sw(0x03, tlv(0x71, b"cred") + tlv(0x73, PASSWORD)) == SW.INCORRECT_PARAMETERS
    assert card.stored()["credentials"][0]["retries"] == 8
    keys = card.ok(0x03, calculate())
    assert len(keys) == 48
    assert card.sw(0x03, calculate(password=b"q" * 16)) == 0x63C7
    assert card.stored()["credentials"][0]["retries"] == 7
    assert card.ok(0x03, calculate()) == keys  # the same context, the same keys
    assert card.stored()["credentials"][0]["retries"] == 8


def test_ec_calculate_needs_public_key_and_receipt(card):
    assert card.ok(0x01, put_ec()) == b""
    assert len(card.ok(0x04, tlv(0x71, b"ec") + tlv(0x73, PASSWORD))) == 65
    assert card.sw(0x03, calculate(b"ec", extra=tlv(0x78, bytes(16)))) \
        == SW.INCORRECT_PARAMETERS  # no public key
    assert card.sw(0x03, calculate(b"ec", extra=tlv(0x7C, bytes(65)))) \
        == SW.INCORRECT_PARAMETERS  # no receipt
    assert card.sw(0x03, calculate(b"ec", password=b"q" * 16,
                                   extra=tlv(0x7C, bytes(65)) + tlv(0x78, bytes(16)))) \
        == 0x63C7
    assert card.stored()["credentials"][0]["retries"] == 7


def test_the_last_wrong_password_deletes_the_credential_and_its_challenge(card):
    assert card.ok(0x01, put_ec()) == b""
    assert card.ok(0x01, put_ec(b"other")) == b""
    card.ok(0x04, tlv(0x71, b"ec") + tlv(0x73, PASSWORD))
    for left in range(7, -1, -1):
        assert card.sw(0x04, tlv(0x71, b"ec") + tlv(0x73, b"q" * 16)) == 0x63C0 | left
    assert card.ok(0x05) == tlv(0x72, b"\x27\x00other\x08")
    assert card.ok(0x01, put_ec()) == b""  # the label is free again, with a new key
    body = calculate(b"ec", extra=tlv(0x7C, bytes(65)) + tlv(0x78, bytes(16)))
    assert card.sw(0x03, body) == SW.CONDITIONS_NOT_SATISFIED  # no challenge survived


def test_delete_drops_the_pending_challenge(card):
    assert card.ok(0x01, put_ec()) == b""
    card.ok(0x04, tlv(0x71, b"ec") + tlv(0x73, PASSWORD))
    assert card.ok(0x02, tlv(0x7B, MGMT) + tlv(0x71, b"ec")) == b""
    assert card.ok(0x01, put_ec()) == b""
    body = calculate(b"ec", extra=tlv(0x7C, bytes(65)) + tlv(0x78, bytes(16)))
    assert card.sw(0x03, body) == SW.CONDITIONS_NOT_SATISFIED


@pytest.mark.parametrize("forget", ["select", "power", "reset"])
def test_challenges_are_volatile(card, forget):
    assert card.ok(0x01, put_ec()) == b""
    card.ok(0x04, tlv(0x71, b"ec") + tlv(0x73, PASSWORD))
    if forget == "select":
        card.select_answer = card.os.transmit(Apdu(0, 0xA4, 4, 0, AID_HSMAUTH).to_bytes())
    elif forget == "power":
        card.os.power_on()
        card.os.transmit(Apdu(0, 0xA4, 4, 0, AID_HSMAUTH).to_bytes())
    else:
        assert card.ok(0x06, p1=0xDE, p2=0xAD) == b""
        assert card.ok(0x01, put_ec()) == b""
    body = calculate(b"ec", extra=tlv(0x7C, bytes(65)) + tlv(0x78, bytes(16)))
    assert card.sw(0x03, body) == SW.CONDITIONS_NOT_SATISFIED


def test_symmetric_challenge_is_8_random_bytes(card):
    assert card.ok(0x01, put_aes()) == b""
    first, second = card.ok(0x04, tlv(0x71, b"cred")), card.ok(0x04, tlv(0x71, b"cred"))
    assert len(first) == len(second) == 8 and first != second
    assert card.sw(0x04, tlv(0x71, b"nope")) == SW.FILE_NOT_FOUND
    assert card.sw(0x0A, tlv(0x71, b"cred")) == SW.INCORRECT_PARAMETERS


def test_reset_clears_everything_on_disk(card):
    assert card.ok(0x01, put_aes()) == b""
    assert card.ok(0x08, tlv(0x7B, MGMT) + tlv(0x7B, OTHER)) == b""
    assert card.sw(0x06, p1=0xDE, p2=0xAE) == SW.WRONG_PARAMETERS_P1P2
    assert card.sw(0x06, p1=0xDF, p2=0xAD) == SW.WRONG_PARAMETERS_P1P2
    assert card.ok(0x06, p1=0xDE, p2=0xAD) == b""
    stored = card.stored()
    assert stored["credentials"] == [] and stored["management_retries"] == 8
    assert card.ok(0x01, put_aes()) == b""  # the default management key again


def test_touch_refused_costs_nothing(make_key):
    card = Card(make_key(presence=DenyAlways()))
    assert card.ok(0x01, put_aes(touch=b"\1")) == b""
    assert card.sw(0x03, calculate()) == SW.SECURITY_CONDITION_NOT_SATISFIED
    assert card.ok(0x01, put_aes(b"plain")) == b""
    assert len(card.ok(0x03, calculate(b"plain"))) == 48


def test_the_touch_prompt_names_the_applet(make_key):
    asked: list[str] = []
    card = Card(make_key(presence=AskCallback(lambda why: asked.append(why) or True,
                                              timeout=5)))
    assert card.ok(0x01, put_aes(touch=b"\1")) == b""
    assert card.ok(0x01, put_aes(b"plain")) == b""
    assert len(card.ok(0x03, calculate(b"plain"))) == 48
    assert asked == []  # no touch for a credential without it
    assert len(card.ok(0x03, calculate())) == 48
    assert asked == ["hsmauth"]


def test_change_password_refusals(make_key):
    card = Card(make_key((5, 8, 0)))
    assert card.ok(0x01, put_aes()) == b""
    new = b"n" * 16
    user = tlv(0x71, b"cred") + tlv(0x73, PASSWORD) + tlv(0x73, new)
    admin = tlv(0x71, b"cred") + tlv(0x7B, MGMT) + tlv(0x73, new)
    assert card.sw(0x0B, user, p1=2) == SW.WRONG_PARAMETERS_P1P2
    assert card.sw(0x0B, user, p2=1) == SW.WRONG_PARAMETERS_P1P2
    assert card.sw(0x0B, admin, p1=0) == SW.INCORRECT_PARAMETERS  # one password only
    assert card.sw(0x0B, user, p1=1) == SW.INCORRECT_PARAMETERS  # two, and no key
    assert card.sw(0x0B, tlv(0x71, b"cred") + tlv(0x73, PASSWORD) + tlv(0x73, new[:15])) \
        == SW.INCORRECT_PARAMETERS
    assert card.sw(0x0B, admin.replace(tlv(0x7B, MGMT), tlv(0x7B, MGMT[:15])), p1=1) \
        == SW.INCORRECT_PARAMETERS
    assert card.sw(0x0B, user.replace(b"cred", b"nope")) == SW.FILE_NOT_FOUND
    assert card.sw(0x0B, tlv(0x71, b"cred")) == SW.INCORRECT_PARAMETERS  # no password
    assert card.sw(0x0B, tlv(0x71, b"cred") + tlv(0x7B, MGMT), p1=1) == SW.INCORRECT_PARAMETERS
    assert card.ok(0x0B, admin, p1=1) == b""
    assert card.sw(0x03, calculate()) == 0x63C7  # the old password is gone
    assert len(card.ok(0x03, calculate(password=new))) == 48
    assert card.ok(0x0B, tlv(0x71, b"cred") + tlv(0x73, new) + tlv(0x73, PASSWORD)) == b""
    assert len(card.ok(0x03, calculate())) == 48


def test_thirty_two_credentials_at_most(card):
    for i in range(32):
        assert card.ok(0x01, put_aes(b"c%d" % i)) == b""
    assert card.sw(0x01, put_aes(b"more")) == SW.NO_SPACE
    assert card.sw(0x01, put_aes(b"c0")) == SW.AUTH_METHOD_BLOCKED
