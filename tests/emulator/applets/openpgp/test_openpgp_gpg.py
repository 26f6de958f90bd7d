"""GnuPG (gpg, gpg-agent, scdaemon through libpcsclite) with the virtual key as its
OpenPGP card in a private pcscd: card status, keys generated on the card, signatures,
encryption, keytocard, PIN counters and the resetting code, factory reset.

Every gpg run answers its prompts from a script (``--command-fd``), reads ``--status-fd``
and takes the PINs by ``--pinentry-mode loopback``; gpg-agent and scdaemon are killed by
PID between phases, so each phase meets a card that remembers no verified PIN.
"""

from __future__ import annotations

import pytest
from openpgp_support import ADMIN_PIN, PIN, SERIAL

pytestmark = pytest.mark.system

MESSAGE = b"signed and sealed by a virtual OpenPGP card\n"
BAD_PIN = str((6 << 24) | 87)  # GPG_ERR_BAD_PIN from scdaemon (source 6)
PIN_BLOCKED = str((6 << 24) | 130)  # GPG_ERR_PIN_BLOCKED


def _secret_keys(gnupg) -> list[list[str]]:
    """``gpg -K --with-colons``: the sec/ssb records (fields after the type)."""
    out = gnupg.ok("--with-colons", "-K").decode()
    return [line.split(":") for line in out.splitlines() if line[:3] in ("sec", "ssb")]


def _generate_on_card(gnupg) -> str:
    """``--edit-card``: key attributes to Curve 25519, then ``generate``; the new
    primary key's fingerprint."""
    curve25519 = [("cardedit.genkeys.algo", "2"), ("keygen.curve", "1"),
                  ("passphrase.enter", ADMIN_PIN)]
    d = gnupg.expect("--edit-card", answers=[
        ("cardedit.prompt", "admin"), ("cardedit.prompt", "key-attr"), *curve25519 * 3,
        ("cardedit.prompt", "generate"), ("cardedit.genkeys.backup_enc", "n"),
        ("passphrase.enter", PIN), ("keygen.valid", "0"), ("keygen.name", "Alice Card"),
        ("keygen.email", "alice@example.com"), ("keygen.comment", ""),
        ("passphrase.enter", ADMIN_PIN), ("passphrase.enter", PIN),
        ("cardedit.prompt", "quit")])
    (created,) = d.has("KEY_CREATED")
    return created[1]


def test_card_status_shows_the_serial_and_yubico(gnupg):
    status = gnupg.card_status()
    assert status["Reader"][0][2] == "D2760001240103040006202405210000"
    assert status["vendor"] == [["0006", "Yubico", ""]]
    assert status["serial"] == [[str(SERIAL), ""]]
    assert status["version"] == [["0304", ""]]
    assert status["pinretry"] == [["3", "0", "3", ""]]
    assert status["maxpinlen"] == [["127", "127", "127", ""]]
    assert [attr[:3] for attr in status["keyattr"]] == [["1", "1", "2048"], ["2", "1", "2048"],
                                                        ["3", "1", "2048"]]


def test_generate_on_card_then_sign_verify_encrypt_decrypt(gnupg, tmp_path):
    fingerprint = _generate_on_card(gnupg)
    gnupg.stop_daemons()
    status = gnupg.card_status()
    assert [attr[:3] for attr in status["keyattr"]] == [["1", "22", "Ed25519"],
                                                        ["2", "18", "Curve25519"],
                                                        ["3", "22", "Ed25519"]]
    assert status["fpr"][0][0] == fingerprint
    keys = _secret_keys(gnupg)
    assert [(k[0], k[11], k[16]) for k in keys] == [
        ("sec", "scESCA", "ed25519"), ("ssb", "a", "ed25519"), ("ssb", "e", "cv25519")]
    assert all(k[14] == "D2760001240103040006202405210000" for k in keys)  # on the card

    message = tmp_path / "message.txt"
    message.write_bytes(MESSAGE)
    gnupg.stop_daemons()
    d = gnupg.expect("--yes", "--local-user", fingerprint, "--detach-sign", "--output",
                     str(tmp_path / "message.sig"), str(message),
                     answers=[("passphrase.enter", PIN)])
    assert d.has("SIG_CREATED")[0][5] == fingerprint
    verified = gnupg.run("--status-fd", "1", "--verify", str(tmp_path / "message.sig"),
                         str(message))
    assert verified.returncode == 0, verified.stderr
    assert f"VALIDSIG {fingerprint}" in verified.stdout.decode()

    gnupg.ok("--trust-model", "always", "--recipient", "alice@example.com", "--output",
             str(tmp_path / "message.gpg"), "--encrypt", str(message))
    gnupg.stop_daemons()
    d = gnupg.expect("--yes", "--output", str(tmp_path / "message.out"), "--decrypt",
                     str(tmp_path / "message.gpg"), answers=[("passphrase.enter", PIN)])
    assert d.has("DECRYPTION_OKAY")
    assert (tmp_path / "message.out").read_bytes() == MESSAGE
    counter = int(gnupg.card_status()["sigcount"][0][0])
    assert counter >= 2  # the key's self-signatures and the detached signature


def test_keytocard_moves_software_keys(gnupg, tmp_path):
    gnupg.ok("--passphrase", "", "--pinentry-mode", "loopback", "--quick-gen-key",
             "Bob Soft <bob@example.com>", "rsa2048", "sign", "0")
    primary = next(k for k in _secret_keys(gnupg) if k[0] == "sec")[4]
    fingerprint = gnupg.ok("--with-colons", "--fingerprint", primary).decode() \
        .split("fpr:::::::::")[1].split(":")[0]
    gnupg.ok("--passphrase", "", "--pinentry-mode", "loopback", "--quick-add-key",
             fingerprint, "nistp384", "encr", "0")
    gnupg.stop_daemons()
    gnupg.expect("--edit-key", fingerprint, answers=[
        ("keyedit.prompt", "keytocard"), ("keyedit.keytocard.use_primary", "y"),
        ("cardedit.genkeys.storekeytype", "1"), ("passphrase.enter", ADMIN_PIN),
        ("keyedit.prompt", "key 1"), ("keyedit.prompt", "keytocard"),
        ("cardedit.genkeys.storekeytype", "2"), ("passphrase.enter", ADMIN_PIN),
        ("keyedit.prompt", "save")])
    status = gnupg.card_status()
    assert [attr[:3] for attr in status["keyattr"]][:2] == [["1", "1", "2048"],
                                                            ["2", "18", "NIST P-384"]]
    assert status["fpr"][0][0] == fingerprint
    assert all(k[14] for k in _secret_keys(gnupg))  # both now only stubs for the card

    message = tmp_path / "message.txt"
    message.write_bytes(MESSAGE)
    gnupg.stop_daemons()
    gnupg.expect("--yes", "--local-user", fingerprint, "--output", str(tmp_path / "m.sig"),
                 "--sign", str(message), answers=[("passphrase.enter", PIN)])
    verified = gnupg.run("--status-fd", "1", "--verify", str(tmp_path / "m.sig"))
    assert f"VALIDSIG {fingerprint}" in verified.stdout.decode(), verified.stderr
    gnupg.ok("--trust-model", "always", "--recipient", fingerprint, "--output",
             str(tmp_path / "m.gpg"), "--encrypt", str(message))
    gnupg.stop_daemons()
    gnupg.expect("--yes", "--output", str(tmp_path / "m.out"), "--decrypt",
                 str(tmp_path / "m.gpg"), answers=[("passphrase.enter", PIN)])
    assert (tmp_path / "m.out").read_bytes() == MESSAGE


def test_wrong_pin_counts_down_blocks_and_the_reset_code_unblocks(gnupg, tmp_path):
    fingerprint = _generate_on_card(gnupg)
    message = tmp_path / "message.txt"
    message.write_bytes(MESSAGE)
    for left in (2, 1, 0):
        gnupg.stop_daemons()
        d = gnupg.dialogue("--yes", "--local-user", fingerprint, "--output",
                           str(tmp_path / "m.sig"), "--sign", str(message),
                           answers=[("passphrase.enter", "999999")])
        assert d.returncode != 0 and not d.unexpected, d.status
        assert d.has("FAILURE") == [["sign", BAD_PIN]], d.status
        assert gnupg.card_status()["pinretry"][0][0] == str(left)
    gnupg.stop_daemons()
    d = gnupg.dialogue("--yes", "--local-user", fingerprint, "--output",
                       str(tmp_path / "m.sig"), "--sign", str(message),
                       answers=[("passphrase.enter", PIN)])
    assert d.returncode != 0 and not d.unexpected  # blocked: the right PIN is refused too
    assert d.has("FAILURE") == [["sign", PIN_BLOCKED]], d.stderr

    gnupg.stop_daemons()
    gnupg.expect("--edit-card", answers=[
        ("cardedit.prompt", "admin"), ("cardedit.prompt", "passwd"),
        ("cardutil.change_pin.menu", "4"), ("passphrase.enter", ADMIN_PIN),
        ("passphrase.enter", "87654321"), ("passphrase.enter", "87654321"),
        ("cardutil.change_pin.menu", "q"), ("cardedit.prompt", "quit")])
    assert gnupg.card_status()["pinretry"][0][:2] == ["0", "3"]
    gnupg.stop_daemons()
    gnupg.expect("--edit-card", answers=[
        ("cardedit.prompt", "unblock"), ("passphrase.enter", "87654321"),
        ("passphrase.enter", "246810"), ("passphrase.enter", "246810"),
        ("cardedit.prompt", "quit")])
    assert gnupg.card_status()["pinretry"][0][:3] == ["3", "3", "3"]
    gnupg.stop_daemons()
    gnupg.expect("--yes", "--local-user", fingerprint, "--output", str(tmp_path / "m.sig"),
                 "--sign", str(message), answers=[("passphrase.enter", "246810")])


def test_factory_reset(gnupg):
    _generate_on_card(gnupg)
    gnupg.stop_daemons()
    gnupg.expect("--edit-card", answers=[
        ("cardedit.prompt", "admin"), ("cardedit.prompt", "factory-reset"),
        ("cardedit.factory-reset.proceed", "y"), ("cardedit.factory-reset.really", "yes"),
        ("cardedit.prompt", "quit")])
    gnupg.stop_daemons()
    status = gnupg.card_status()
    assert status["pinretry"] == [["3", "0", "3", ""]]
    assert [attr[:3] for attr in status["keyattr"]] == [["1", "1", "2048"], ["2", "1", "2048"],
                                                        ["3", "1", "2048"]]
    assert all(not fpr for fpr in status["fpr"][0][:3])
