"""The demo part: ykman lists and calculates the virtual key's OATH accounts via pcscd."""

from __future__ import annotations

import pytest

from hwtoken.demos import pcsc

pytestmark = pytest.mark.system


def test_demo_lists_accounts_and_agrees_with_pyotp(tmp_path):
    lines: list[str] = []
    pcsc.run(lines.append, tmp_path)
    text = "\n".join(lines)
    assert "Serial number: 5550123" in text
    assert "  Example:alice" in text and "  counter" in text
    assert "same as the key" in text or "step turned" in text
    assert lines[-1] == "stopped pcscd"
