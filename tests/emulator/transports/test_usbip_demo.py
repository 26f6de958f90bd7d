"""The `make demo` part for USB/IP runs and tells what happened."""

from __future__ import annotations

from hwtoken.demos.usbip import run


def test_usbip_demo(tmp_path):
    lines: list[str] = []
    run(lines.append, tmp_path)
    text = "\n".join(lines)
    assert "1050:0407" in text
    assert "registered credential" in text
    assert "authenticated: signature verified by Fido2Server" in text
    assert "attestation packed" in text  # CTAP2 over USB/IP, not the U2F fallback
