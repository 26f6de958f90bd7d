"""The provisioning part of `make demo` runs and proves what it says."""

from __future__ import annotations

from hwtoken.demos.provision import run


def test_demo(tmp_path):
    lines: list[str] = []
    run(lines.append, tmp_path)
    text = "\n".join(lines)
    assert "SIGKILL" in text and "pending: 1" in text
    assert text.count("its HMAC response matches the exported secret") == 3
    assert "wrote 3 record(s)" in text and "(mode 0o600)" in text
