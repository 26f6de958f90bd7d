"""Kill tests: what a real key keeps across power loss survives a SIGKILL of the virtual key.

Each test runs the key in a process of its own (the real ``hwtoken emulate serve`` reached by
python-fido2 over USB/IP, or the small ``key_driver.py`` reached by yubikit's sessions),
does one operation, kills the process with SIGKILL the moment the answer reached the client,
loads the key again in this process and checks the state through the same client library.
A clean ``close()`` saves everything anyway; only these tests show that every answer left
the key after its state was durable (a YubiKey keeps it by nature: its flash is written
before it answers).
"""

from __future__ import annotations

import contextlib

import pytest
from durability_support import DrivenKey, EngineOtpConnection, ServedKey
from fido2.ctap import CtapError
from fido2.ctap2 import CredentialManagement, Ctap2
from fido2.ctap2.pin import ClientPin
from yubikit.core.otp import CommandRejectedError
from yubikit.core.smartcard import SW, ApduError
from yubikit.oath import HASH_ALGORITHM, OATH_TYPE, CredentialData, OathSession
from yubikit.piv import InvalidPinError, PivSession
from yubikit.yubiotp import HotpSlotConfiguration, UpdateConfiguration, YubiOtpSession

from hwtoken import paths
from hwtoken.emulator import fido_device
from hwtoken.emulator.key import VirtualKey
from hwtoken.emulator.transports.card_direct import DirectCardConnection
from hwtoken.otp import hotp_code

PIN, NEW_PIN, WRONG_PIN = "4711-pin", "0815-new", "not-the-pin"
RP = {"id": "example.com", "name": "Example"}
USER = {"id": b"user-1", "name": "alice"}
ES256 = [{"type": "public-key", "alg": -7}]
CDH = bytes(32)


@pytest.fixture
def keyfile(_isolated_state_dir):
    """A fresh virtual key ``k`` (saved, unlocked): (state dir, name, state file)."""
    path = paths.virtual_key_path("k")
    VirtualKey.create(path, serial=4242).close()
    return _isolated_state_dir, "k", path


@contextlib.contextmanager
def reloaded(path):
    """The key as the killed process left it, opened in this process."""
    key = VirtualKey.load(path)
    try:
        yield key
    finally:
        key.close()


# -- FIDO2, through `hwtoken emulate serve` and python-fido2 over USB/IP ----------------------
def _pin_retries(path) -> int:
    with reloaded(path) as key:
        return ClientPin(Ctap2(fido_device(key))).get_pin_retries()[0]


def _set_pin_in_process(path) -> None:
    with reloaded(path) as key:
        ClientPin(Ctap2(fido_device(key))).set_pin(PIN)


def test_pin_set_and_every_wrong_guess_survive_a_kill(keyfile):
    state_dir, name, path = keyfile
    with ServedKey(state_dir, name) as srv:
        ClientPin(Ctap2(srv.fido())).set_pin(PIN)
        srv.kill()
    assert _pin_retries(path) == 8

    # killing the key after each wrong guess must not give the guesser more tries
    for left in (7, 6, 5):
        with ServedKey(state_dir, name) as srv:
            with pytest.raises(CtapError) as e:
                ClientPin(Ctap2(srv.fido())).get_pin_token(WRONG_PIN)
            assert e.value.code == CtapError.ERR.PIN_INVALID
            srv.kill()
        assert _pin_retries(path) == left

    # the right PIN restores the counter, durably too
    with ServedKey(state_dir, name) as srv:
        ClientPin(Ctap2(srv.fido())).get_pin_token(PIN)
        srv.kill()
    assert _pin_retries(path) == 8


def test_pin_change_survives_a_kill(keyfile):
    state_dir, name, path = keyfile
    _set_pin_in_process(path)
    with ServedKey(state_dir, name) as srv:
        ClientPin(Ctap2(srv.fido())).change_pin(PIN, NEW_PIN)
        srv.kill()
    with reloaded(path) as key:
        cp = ClientPin(Ctap2(fido_device(key)))
        with pytest.raises(CtapError) as e:
            cp.get_pin_token(PIN)
        assert e.value.code == CtapError.ERR.PIN_INVALID
        assert cp.get_pin_token(NEW_PIN)
        assert cp.get_pin_retries()[0] == 8


def _counter(auth_data) -> int:
    return int(auth_data.counter)


def test_signature_counter_never_repeats_after_a_kill(keyfile):
    """After SIGKILL the next counter is above every counter a client has seen."""
    state_dir, name, path = keyfile
    seen: list[int] = []
    cred_id = None
    for _round in range(2):
        with ServedKey(state_dir, name) as srv:
            ctap = Ctap2(srv.fido())
            if cred_id is None:
                att = ctap.make_credential(CDH, RP, USER, ES256)
                seen.append(_counter(att.auth_data))
                cred_id = att.auth_data.credential_data.credential_id
            for _ in range(3):
                a = ctap.get_assertion(RP["id"], CDH, [{"type": "public-key", "id": cred_id}])
                seen.append(_counter(a.auth_data))
            srv.kill()
        with reloaded(path) as key:
            a = Ctap2(fido_device(key)).get_assertion(
                RP["id"], CDH, [{"type": "public-key", "id": cred_id}])
            assert _counter(a.auth_data) > max(seen), (seen, _counter(a.auth_data))
            seen.append(_counter(a.auth_data))
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_resident_credential_creation_survives_a_kill(keyfile):
    state_dir, name, path = keyfile
    with ServedKey(state_dir, name) as srv:
        att = Ctap2(srv.fido()).make_credential(CDH, RP, USER, ES256, options={"rk": True})
        srv.kill()
    cred_id = att.auth_data.credential_data.credential_id
    with reloaded(path) as key:
        found = Ctap2(fido_device(key)).get_assertions(RP["id"], CDH)  # discoverable
        assert [(a.credential["id"], a.user["id"]) for a in found] == [(cred_id, USER["id"])]


def _cred_mgmt(ctap: Ctap2) -> CredentialManagement:
    cp = ClientPin(ctap)
    token = cp.get_pin_token(PIN, ClientPin.PERMISSION.CREDENTIAL_MGMT)
    return CredentialManagement(ctap, cp.protocol, token)


def test_credential_update_and_deletion_survive_a_kill(keyfile):
    state_dir, name, path = keyfile
    with reloaded(path) as key:
        ctap = Ctap2(fido_device(key))
        ClientPin(ctap).set_pin(PIN)
        cp = ClientPin(ctap)
        token = cp.get_pin_token(PIN, ClientPin.PERMISSION.MAKE_CREDENTIAL, RP["id"])
        att = ctap.make_credential(CDH, RP, USER, ES256, options={"rk": True},
                                   pin_uv_param=cp.protocol.authenticate(token, CDH),
                                   pin_uv_protocol=cp.protocol.VERSION)
    cred_id = att.auth_data.credential_data.credential_id
    renamed = {"id": USER["id"], "name": "alice@new", "displayName": "Alice"}
    with ServedKey(state_dir, name) as srv:
        _cred_mgmt(Ctap2(srv.fido())).update_user_info(
            {"type": "public-key", "id": cred_id}, renamed)
        srv.kill()
    with reloaded(path) as key:
        cm = _cred_mgmt(Ctap2(fido_device(key)))
        rp_hash = cm.enumerate_rps()[0][CredentialManagement.RESULT.RP_ID_HASH]
        (cred,) = cm.enumerate_creds(rp_hash)
        assert cred[CredentialManagement.RESULT.USER] == renamed

    with ServedKey(state_dir, name) as srv:
        _cred_mgmt(Ctap2(srv.fido())).delete_cred({"type": "public-key", "id": cred_id})
        srv.kill()
    with reloaded(path) as key:
        ctap = Ctap2(fido_device(key))
        assert _cred_mgmt(ctap).get_metadata()[CredentialManagement.RESULT.EXISTING_CRED_COUNT] == 0
        with pytest.raises(CtapError) as e:
            ctap.get_assertions(RP["id"], CDH)
        assert e.value.code == CtapError.ERR.NO_CREDENTIALS


def test_reset_survives_a_kill(keyfile):
    state_dir, name, path = keyfile
    with reloaded(path) as key:
        ctap = Ctap2(fido_device(key))
        att = ctap.make_credential(CDH, RP, USER, ES256, options={"rk": True})
        ClientPin(ctap).set_pin(PIN)
    cred_id = att.auth_data.credential_data.credential_id
    with ServedKey(state_dir, name) as srv:
        Ctap2(srv.fido()).reset()  # the USB/IP import was the plug-in: within 10 s of power-up
        srv.kill()
    with reloaded(path) as key:
        ctap = Ctap2(fido_device(key))
        assert ctap.get_info().options["clientPin"] is False
        with pytest.raises(CtapError) as e:
            ctap.get_assertions(RP["id"], CDH)
        assert e.value.code == CtapError.ERR.NO_CREDENTIALS
        with pytest.raises(CtapError) as e:  # the old credential ID no longer opens
            ctap.get_assertion(RP["id"], CDH, [{"type": "public-key", "id": cred_id}])
        assert e.value.code == CtapError.ERR.NO_CREDENTIALS


# -- OTP slots, through the driver and yubikit's OTP session -----------------------------------
HOTP_SECRET = bytes(range(20))
ACC, NEW_ACC = bytes.fromhex("010203040506"), bytes.fromhex("a1a2a3a4a5a6")


def _touch_in_process(path, slot: int) -> str:
    with reloaded(path) as key:
        return key.otp.touch(slot).strip()


def test_otp_slot_programming_and_access_code_survive_a_kill(keyfile):
    _, _, path = keyfile
    with DrivenKey(path) as drv:
        YubiOtpSession(drv.otp()).put_configuration(1, HotpSlotConfiguration(HOTP_SECRET),
                                                    acc_code=ACC)
        drv.kill()
    with reloaded(path) as key:
        assert key.otp.describe()["slots"]["1"] is not None
        assert key.otp.slot_config(1).acc_code == ACC

    # a new access code, given with the old one
    with DrivenKey(path) as drv:
        YubiOtpSession(drv.otp()).update_configuration(1, UpdateConfiguration(),
                                                       acc_code=NEW_ACC, cur_acc_code=ACC)
        drv.kill()
    with DrivenKey(path) as drv:
        session = YubiOtpSession(drv.otp())
        with pytest.raises(CommandRejectedError):  # the old code no longer opens the slot
            session.delete_slot(1, cur_acc_code=ACC)
        session.delete_slot(1, cur_acc_code=NEW_ACC)
        drv.kill()
    with reloaded(path) as key:
        assert key.otp.describe()["slots"]["1"] is None


def test_otp_hotp_counter_survives_a_kill_after_each_code(keyfile):
    """A crashed key must never type the same HOTP code twice."""
    _, _, path = keyfile
    with reloaded(path) as key:
        YubiOtpSession(EngineOtpConnection(key)).put_configuration(
            2, HotpSlotConfiguration(HOTP_SECRET))
    typed = []
    for _ in range(3):
        with DrivenKey(path) as drv:
            typed.append(drv.touch(2).strip())
            drv.kill()
    assert typed == [hotp_code(HOTP_SECRET, c) for c in range(3)]
    assert _touch_in_process(path, 2) == hotp_code(HOTP_SECRET, 3)


def _yubico_otp_counters(text: str, aes: bytes) -> tuple[int, int]:
    """(use counter, session counter) from a typed Yubico OTP."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from yubikit.core.otp import modhex_decode

    dec = Cipher(algorithms.AES(aes), modes.ECB()).decryptor()
    plain = dec.update(modhex_decode(text.strip()[12:])) + dec.finalize()
    return int.from_bytes(plain[6:8], "little"), plain[11]


def test_yubico_otp_use_counter_survives_a_kill(keyfile):
    """A Yubico OTP typed after a crash must count above every OTP typed before it."""
    from yubikit.yubiotp import YubiOtpSlotConfiguration

    _, _, path = keyfile
    aes = bytes(range(16))
    with reloaded(path) as key:
        YubiOtpSession(EngineOtpConnection(key)).put_configuration(
            1, YubiOtpSlotConfiguration(b"\x11" * 6, b"\x22" * 6, aes))
    seen = []
    for _ in range(2):
        with DrivenKey(path) as drv:
            seen.append(_yubico_otp_counters(drv.touch(1), aes))
            drv.kill()
    assert seen == [(1, 0), (2, 0)]  # each power-up starts a new use
    assert _yubico_otp_counters(_touch_in_process(path, 1), aes) == (3, 0)


# -- OATH, through the driver and yubikit's OATH session ---------------------------------------
OATH_SECRET = b"12345678901234567890"  # RFC 4226's
HOTP_CRED = CredentialData("acme:alice", OATH_TYPE.HOTP, HASH_ALGORITHM.SHA1, OATH_SECRET)


def _oath_in_process(key) -> OathSession:
    return OathSession(DirectCardConnection(key))


def test_oath_credential_and_hotp_counter_survive_a_kill(keyfile):
    _, _, path = keyfile
    with DrivenKey(path) as drv:
        OathSession(drv.card()).put_credential(HOTP_CRED)
        drv.kill()
    for counter in range(3):
        with DrivenKey(path) as drv:
            session = OathSession(drv.card())
            cred = next(c for c in session.list_credentials() if c.id == HOTP_CRED.get_id())
            code = session.calculate_code(cred).value
            drv.kill()
        assert code == hotp_code(OATH_SECRET, counter)
    with reloaded(path) as key:
        session = _oath_in_process(key)
        cred = next(c for c in session.list_credentials() if c.id == HOTP_CRED.get_id())
        assert session.calculate_code(cred).value == hotp_code(OATH_SECRET, 3)


def test_oath_rename_and_delete_survive_a_kill(keyfile):
    _, _, path = keyfile
    with reloaded(path) as key:
        _oath_in_process(key).put_credential(HOTP_CRED)
    with DrivenKey(path) as drv:
        new_id = OathSession(drv.card()).rename_credential(HOTP_CRED.get_id(), "bob", "acme")
        drv.kill()
    with reloaded(path) as key:
        assert [c.id for c in _oath_in_process(key).list_credentials()] == [new_id]
    with DrivenKey(path) as drv:
        OathSession(drv.card()).delete_credential(new_id)
        drv.kill()
    with reloaded(path) as key:
        assert _oath_in_process(key).list_credentials() == []


def test_oath_password_set_and_removal_survive_a_kill(keyfile):
    _, _, path = keyfile
    with DrivenKey(path) as drv:
        session = OathSession(drv.card())
        session.set_key(session.derive_key("hunter2"))
        drv.kill()
    with reloaded(path) as key:
        session = _oath_in_process(key)
        assert session.locked
        with pytest.raises(ApduError) as exc:  # a wrong password: 6A80, as Yubico's applet
            session.validate(session.derive_key("wrong"))
        assert exc.value.sw == SW.INCORRECT_PARAMETERS
        session = _oath_in_process(key)
        session.validate(session.derive_key("hunter2"))
        assert session.list_credentials() == []

    with DrivenKey(path) as drv:  # and removing it again
        session = OathSession(drv.card())
        session.validate(session.derive_key("hunter2"))
        session.unset_key()
        drv.kill()
    with reloaded(path) as key:
        session = _oath_in_process(key)
        assert not session.locked and session.list_credentials() == []


def test_oath_reset_survives_a_kill(keyfile):
    _, _, path = keyfile
    with reloaded(path) as key:
        session = _oath_in_process(key)
        session.put_credential(HOTP_CRED)
        session.set_key(session.derive_key("hunter2"))
        device_id = session.device_id
    with DrivenKey(path) as drv:
        OathSession(drv.card()).reset()
        drv.kill()
    with reloaded(path) as key:
        session = _oath_in_process(key)
        assert not session.locked and session.device_id != device_id
        assert session.list_credentials() == []


# -- PIV, through the driver and yubikit's PIV session -----------------------------------------
def _piv_attempts(path) -> int:
    with reloaded(path) as key:
        return PivSession(DirectCardConnection(key)).get_pin_attempts()


def test_piv_pin_tries_unblock_and_change_survive_a_kill(keyfile):
    _, _, path = keyfile
    for left in (2, 1):
        with DrivenKey(path) as drv:
            with pytest.raises(InvalidPinError) as e:
                PivSession(drv.card()).verify_pin("999999")
            assert e.value.attempts_remaining == left
            drv.kill()
        assert _piv_attempts(path) == left
    with DrivenKey(path) as drv:  # a wrong old PIN in CHANGE REFERENCE counts too
        with pytest.raises(InvalidPinError) as e:
            PivSession(drv.card()).change_pin("999999", "654321")
        assert e.value.attempts_remaining == 0
        drv.kill()
    assert _piv_attempts(path) == 0

    with DrivenKey(path) as drv:  # the PUK unblocks, durably
        PivSession(drv.card()).unblock_pin("12345678", "222222")
        drv.kill()
    assert _piv_attempts(path) == 3
    with DrivenKey(path) as drv:
        session = PivSession(drv.card())
        with pytest.raises(InvalidPinError):
            session.verify_pin("999999")
        session.verify_pin("222222")  # the right PIN gives every try back
        drv.kill()
    assert _piv_attempts(path) == 3
    with DrivenKey(path) as drv:
        PivSession(drv.card()).change_pin("222222", "654321")
        drv.kill()
    with reloaded(path) as key:
        session = PivSession(DirectCardConnection(key))
        assert session.get_pin_attempts() == 3
        session.verify_pin("654321")


# -- YubiHSM Auth, through the driver and yubikit's HSM Auth session ----------------------------
def test_hsmauth_credential_and_every_wrong_password_survive_a_kill(keyfile):
    from yubikit.hsmauth import DEFAULT_MANAGEMENT_KEY, HsmAuthSession
    from yubikit.hsmauth import InvalidPinError as WrongPassword

    _, _, path = keyfile
    with DrivenKey(path) as drv:
        HsmAuthSession(drv.card()).put_credential_derived(DEFAULT_MANAGEMENT_KEY, "hsm",
                                                          "derive-me", "pw")
        drv.kill()
    for left in (7, 6):
        with DrivenKey(path) as drv:
            with pytest.raises(WrongPassword) as e:
                HsmAuthSession(drv.card()).calculate_session_keys_symmetric(
                    "hsm", bytes(16), "wrong")
            assert e.value.attempts_remaining == left
            drv.kill()
        with reloaded(path) as key:
            creds = HsmAuthSession(DirectCardConnection(key)).list_credentials()
            assert [(c.label, c.counter) for c in creds] == [("hsm", left)]
    with DrivenKey(path) as drv:  # a wrong management key counts too
        with pytest.raises(WrongPassword):
            HsmAuthSession(drv.card()).delete_credential(bytes(15) + b"\1", "hsm")
        drv.kill()
    with reloaded(path) as key:
        assert HsmAuthSession(DirectCardConnection(key)).get_management_key_retries() == 7


# -- Security Domain, through the driver and yubikit's SecurityDomainSession ---------------------
def test_scp_key_set_and_failed_attempts_survive_a_kill(keyfile):
    import os

    from yubikit.core.smartcard.scp import KeyRef, Scp03KeyParams, StaticKeys
    from yubikit.securitydomain import SecurityDomainSession

    _, _, path = keyfile
    keys = StaticKeys(os.urandom(16), os.urandom(16), os.urandom(16))
    with DrivenKey(path) as drv:
        session = SecurityDomainSession(drv.card())
        session.authenticate(Scp03KeyParams())
        session.put_key(KeyRef(1, 2), keys)
        drv.kill()
    with reloaded(path) as key:
        session = SecurityDomainSession(DirectCardConnection(key))
        session.authenticate(Scp03KeyParams(KeyRef(1, 2), keys))
        assert KeyRef(1, 0xFF) not in session.get_key_information()
    with DrivenKey(path) as drv:  # an unfinished handshake counts against the key set
        SecurityDomainSession(drv.card()).protocol.send_apdu(0x80, 0x50, 2, 0, bytes(8))
        drv.kill()
    with reloaded(path) as key:
        assert key.store.section("securitydomain")["scp03"][0]["failures"] == 1


# -- OpenPGP, through the driver and yubikit's OpenPGP session ---------------------------------
def _openpgp_in_process(key):
    from yubikit.openpgp import OpenPgpSession

    return OpenPgpSession(DirectCardConnection(key))


def test_openpgp_pin_tries_keys_and_signature_counter_survive_a_kill(keyfile):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from yubikit.core import InvalidPinError as PgpInvalidPin
    from yubikit.openpgp import KEY_REF, KEY_STATUS, OID, OpenPgpSession

    _, _, path = keyfile
    for left in (2, 1):  # killing the key after each wrong guess gives no try back
        with DrivenKey(path) as drv:
            with pytest.raises(PgpInvalidPin) as e:
                OpenPgpSession(drv.card()).verify_pin("999999")
            assert e.value.attempts_remaining == left
            drv.kill()
        with reloaded(path) as key:
            assert _openpgp_in_process(key).get_pin_status().attempts_user == left

    with DrivenKey(path) as drv:  # a key generated on the card
        session = OpenPgpSession(drv.card())
        session.verify_admin("12345678")
        public = session.generate_ec_key(KEY_REF.SIG, OID.SECP256R1)
        drv.kill()
    with reloaded(path) as key:
        session = _openpgp_in_process(key)
        assert session.get_public_key(KEY_REF.SIG) == public
        assert session.get_pin_status().attempts_user == 1  # PW1 was not given since

    signatures = []
    for _ in range(2):  # the counter is durable before the signature leaves the card
        with DrivenKey(path) as drv:
            session = OpenPgpSession(drv.card())
            session.verify_pin("123456")
            signatures.append(session.sign(b"durable", hashes.SHA256()))
            drv.kill()
    for sig in signatures:
        public.verify(sig, b"durable", ec.ECDSA(hashes.SHA256()))
    with reloaded(path) as key:
        session = _openpgp_in_process(key)
        assert session.get_signature_counter() == 2
        assert session.get_pin_status().attempts_user == 3

    with DrivenKey(path) as drv:  # a changed PIN and the factory reset
        OpenPgpSession(drv.card()).change_pin("123456", "654321")
        drv.kill()
    with reloaded(path) as key:
        _openpgp_in_process(key).verify_pin("654321")
    with DrivenKey(path) as drv:
        OpenPgpSession(drv.card()).reset()
        drv.kill()
    with reloaded(path) as key:
        session = _openpgp_in_process(key)
        assert session.get_key_information()[KEY_REF.SIG] is KEY_STATUS.NONE
        assert session.get_signature_counter() == 0
        session.verify_pin("123456")
