"""docs/yubikey-otp.md's Python example runs as printed, also on slots already programmed."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from hwtoken import paths
from hwtoken.emulator import VirtualKey
from hwtoken.errors import InvalidInput
from hwtoken.yubikey import open_key

DOC = Path(__file__).resolve().parents[2] / "docs" / "yubikey-otp.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    [block] = [b for b in blocks if 'open_key("emu:alice")' in b]
    return block


def test_the_python_example_overwrites_programmed_slots(capsys):
    VirtualKey.create(paths.virtual_key_path("alice")).close()
    with open_key("emu:alice") as yk:  # both slots already hold something
        yk.program_chalresp(1, os.urandom(20), force=True)
        yk.program_chalresp(2, os.urandom(20), force=True)
        with pytest.raises(InvalidInput) as exc:  # what happens without force=True
            yk.program_hotp(1, os.urandom(20))
    assert "pass force=True" in str(exc.value)  # phrased for the library (the CLI's too)
    secret, hotp_secret = os.urandom(20), os.urandom(20)
    scope = {"secret": secret, "hotp_secret": hotp_secret}
    exec(compile(_example(), str(DOC), "exec"), scope)  # noqa: S102 - our own docs
    assert scope["response"] and scope["typed"].strip().isdigit()
    assert "'programmed': True" in capsys.readouterr().out
