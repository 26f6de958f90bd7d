"""No secret in any message: every command that takes a secret, an otpauth:// URI or an
access code is fed malformed and well-formed inputs holding a fresh random secret, as a real
process, and its stdout and stderr are searched for the secret (whole, any 8-character
piece of it, any case).

The URIs are the ways a secret ends up where a parser complains about it: a missing or
%-encoded '=', a repeated parameter, a secret in the label, the type, the scheme, the
algorithm or the fragment.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cli_contract import Zygote, env_for

from hwtoken.emulator import VirtualKey

CHUNK = 8  # a piece this long of a random base32 secret appears nowhere by chance


def _malformed_uris(s: str) -> list[str]:
    return [
        f"otpauth://totp/ACME:bob?secret{s}",
        f"otpauth://totp/ACME:bob?secret%3D{s}",
        f"otpauth://totp/ACME:bob?issuer=ACME&secret%3d{s}&digits=6",
        f"otpauth://totp/ACME:bob?{s}",
        f"otpauth://totp/ACME:bob?issuer=ACME&{s}&secret={s}",
        f"otpauth://totp/ACME:bob?secret={s}&secret={s}",
        f"otpauth://totp/ACME:bob?secret={s}x!",
        f"otpauth://totp/ACME:bob?secret={s}%ZZ",
        f"otpauth://totp/ACME:bob?secret={s[:12]}",  # too short: under 80 bits
        f"otpauth://{s}/bob?secret={s}",
        f"{s}://totp/bob?secret={s}",
        f"{s}:totp/bob",
        f"otpauth://totp/{s}:bob?secret={s}&issuer=ACME",
        f"otpauth://totp/bob:{s}:x?secret={s}",
        f"otpauth://totp/ACME:{s}%20?secret={s}",
        f"otpauth://totp/bob?secret={s}&algorithm={s}",
        f"otpauth://totp/bob?secret={s}&digits={s}",
        f"otpauth://totp/bob?secret={s}&period={s}",
        f"otpauth://totp/bob?secret={s}#{s}",
        f"otpauth://hotp/bob?secret={s}",
        f"otpauth://hotp/bob?secret={s}&counter={s}",
        f"otpauth://totp/bob?secret={s}&issuer=A%0A{s}",
        f"otpauth://totp/bob?secret={s}&issuer=%FF{s}",
        f"otpauth:/totp/bob?secret={s}",
    ]


def _secrets(s: str) -> list[str]:
    return [
        f"{s}!",  # a character outside base32
        f"{s[:-1]}1",
        s[:7],  # a length base32 cannot have
        s[:12],  # too short
        f"otpauth://totp/bob?secret%3D{s}",  # a URI where a bare secret is expected
        s,  # well-formed: used, never shown
        s.lower(),
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[tuple[Zygote, Path, str, str]]:
    d = tmp_path_factory.mktemp("no-secret")
    for sub in ("state", "home"):
        (d / sub).mkdir()
    s = base64.b32encode(secrets.token_bytes(20)).decode()
    VirtualKey.create(d / "state" / "keys" / "k.key").close()
    for p in (d, d / "state", d / "home", d / "state" / "keys"):
        p.chmod(stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
    for parent in d.parents:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    z = Zygote(d)
    try:
        yield z, d, s, "emu:k"
    finally:
        z.close()


def _pieces(secret: str) -> set[str]:
    text = secret.lower()
    return {text[i:i + CHUNK] for i in range(len(text) - CHUNK + 1)}


def _run(world, argv: list[str], stdin: str = "") -> tuple[int | None, str]:
    z, d, _s, _key = world
    rc, out, err = z.run([a.encode() for a in argv], env_for(d), d, stdin=stdin.encode())
    return rc, (out + err).decode("utf-8", "replace")


def _assert_hidden(world, argv: list[str], value: str, *, stdin: bool) -> None:
    secret = world[2]
    args = [a if a != "VALUE" else ("-" if stdin else value) for a in argv]
    rc, output = _run(world, args, value + "\n" if stdin else "")
    assert rc is not None, (argv, value)
    assert "Traceback" not in output and "No such option" not in output, output
    shown = {p for p in _pieces(secret) if p in output.lower()}
    assert not shown, (args, value, output)


URI_COMMANDS = [
    ["otp", "code", "VALUE"],  # the fast path
    ["otp", "code", "VALUE", "--json"],
    ["otp", "code", "VALUE", "--at=0"],  # the click path (the fast path takes no --at=)
    ["otp", "verify", "VALUE", "123456"],
    ["otp", "verify", "VALUE", "123456", "--json"],
    ["otp", "uri", "VALUE"],
    ["otp", "uri", "VALUE", "--json"],
    ["yubikey", "oath", "add", "acct", "--uri", "VALUE", "-d", "emu:k", "--force"],
    ["fob", "add", "acct", "--uri", "VALUE"],
    ["fob", "simulate", "--uri", "VALUE", "--json"],
]

SECRET_COMMANDS = [
    ["otp", "code", "VALUE"],
    ["otp", "verify", "VALUE", "123456"],
    ["yubikey", "oath", "add", "acct", "--secret", "VALUE", "-d", "emu:k", "--force"],
    ["yubikey", "hotp", "program", "1", "--secret", "VALUE", "-d", "emu:k", "--force"],
    ["yubikey", "chalresp", "program", "2", "--secret", "VALUE", "-d", "emu:k", "--force"],
    ["fob", "add", "acct", "--secret", "VALUE"],
    ["fob", "simulate", "--secret", "VALUE", "--json"],
]


@pytest.mark.parametrize("argv", URI_COMMANDS, ids=" ".join)
def test_malformed_uris_are_never_echoed(world, argv):
    for n, uri in enumerate(_malformed_uris(world[2])):
        _assert_hidden(world, argv, uri, stdin=n % 2 == 0)


@pytest.mark.parametrize("argv", SECRET_COMMANDS, ids=" ".join)
def test_secrets_are_never_echoed(world, argv):
    for n, value in enumerate(_secrets(world[2])):
        _assert_hidden(world, argv, value, stdin=n % 2 == 1)


def test_a_file_of_uris_is_never_echoed(world):
    secret = world[2]
    for uri in _malformed_uris(secret):
        text = f"otpauth://totp/ok?secret={base64.b32encode(os.urandom(20)).decode()}\n{uri}\n"
        rc, output = _run(world, ["yubikey", "oath", "import", "-", "-d", "emu:k"], text)
        assert rc == 2, output
        assert output.startswith("error: line 2: "), output
        assert not {p for p in _pieces(secret) if p in output.lower()}, (uri, output)


@pytest.mark.parametrize("argv", [
    ["yubikey", "delete", "1", "--access-code", "VALUE", "-d", "emu:k", "--force"],
    ["yubikey", "swap", "--access-code", "VALUE", "-d", "emu:k", "--force"],
    ["yubikey", "hotp", "program", "1", "--secret", "JBSWY3DPEHPK3PXP", "--access-code",
     "VALUE", "-d", "emu:k", "--force"],
], ids=" ".join)
def test_access_codes_are_never_echoed(world, argv):
    code = secrets.token_hex(6)
    for value in (code, code + "ff", code[:-1] + "z"):
        rc, output = _run(world, [a if a != "VALUE" else value for a in argv])
        assert rc is not None and "Traceback" not in output, output
        assert code[:CHUNK] not in output.lower() and code[-CHUNK:] not in output.lower(), \
            (argv, value, output)


def test_an_inventory_key_file_is_never_echoed(world):
    from hwtoken.provision.sqlite import SqliteInventory

    z, d, _s, _key = world
    SqliteInventory(d / "inv.db").close()
    material = secrets.token_hex(24)  # 24 bytes: not a key, but secret all the same
    key_file = d / "inventory.key"
    key_file.write_text(material + "\n")
    for extra in ([], ["--json"]):
        rc, output = _run(world, ["provision", "export", "-i", str(d / "inv.db"), "--key-file",
                                  str(key_file), "--format", "csv", "-o", str(d / "x.csv"),
                                  *extra])
        assert rc == 2 and "must hold 32 bytes" in output, output
        assert material[:CHUNK] not in output and material[-CHUNK:] not in output, output


def test_the_check_finds_a_secret_when_it_is_shown(world):
    """The search above can fail: `otp uri --show-secret` prints the secret, and it is found."""
    secret = world[2]
    rc, output = _run(world, ["otp", "uri", "-", "--show-secret"],
                      f"otpauth://totp/ACME:bob?secret={secret}\n")
    assert rc == 0, output
    assert {p for p in _pieces(secret) if p in output.lower()}
