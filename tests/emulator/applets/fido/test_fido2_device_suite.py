"""python-fido2's own hardware-key test suite (``tests/device/`` of its sdist, for the
installed fido2 version) runs unchanged against a ``latest`` virtual key through
``pytest --hwtoken-fido2-hid``: nothing fails, and the only skips are bio enrollment (the
key has no fingerprint reader) and previewSign (not implemented).

``make deps`` downloads the sdist into .cache/fido2-sdist; without it this test downloads
it the same way (pip, from the package index). ``make fido2-device-tests`` prints the run.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~25 s: `make test-slow` (and CI) runs it

ROOT = Path(__file__).resolve().parents[4]
SDIST_DIR = ROOT / ".cache" / "fido2-sdist"
EP_RP_ID = "enterprise.example.com"  # the latest profile's vendor-facilitated EA RP ID
ALLOWED_SKIPS = ("BioEnrollment not supported", "previewSign not supported")


def fido2_sdist() -> Path:
    version = importlib.metadata.version("fido2")
    path = SDIST_DIR / f"fido2-{version}.tar.gz"
    if not path.exists():
        SDIST_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--no-binary", ":all:", "-d", str(SDIST_DIR), f"fido2=={version}"],
                       check=True, timeout=300)
    return path


def extract_tests(sdist: Path, into: Path) -> Path:
    """The sdist's tests/ (not its fido2/: the installed fido2 is the one under test): its
    regular files only, written one by one (Debian 12's Python 3.11.2 has no extraction
    filters, which came with 3.11.4)."""
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if parts[1:2] != ["tests"] or not member.isfile() or ".." in parts or not parts[0]:
                continue
            dest = into.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(member).read())
    [root] = [p for p in into.iterdir() if p.is_dir()]
    return root


def test_python_fido2_device_suite_passes_on_latest(tmp_path):
    root = extract_tests(fido2_sdist(), tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWTOKEN_FIDO2_HID")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "--hwtoken-fido2-hid", "--hwtoken-fido2-hid-profile", "latest",
         "--ep-rp-id", EP_RP_ID, "tests/device"],
        cwd=root, capture_output=True, text=True, timeout=600, env=env)
    out = result.stdout + result.stderr
    summary = out.strip().splitlines()[-1]
    print(summary)
    assert result.returncode == 0, out[-4000:]
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    assert counts.get("failed", 0) == counts.get("error", 0) == 0, summary
    assert counts["passed"] >= 90, summary  # every algorithm, CTAP 2.2, config, credman...
    skips = re.findall(r"^SKIPPED \[(\d+)\] (\S+): (.*)$", out, re.M)
    assert sum(int(n) for n, _, _ in skips) == counts.get("skipped", 0)
    for _, where, reason in skips:
        assert reason.startswith(ALLOWED_SKIPS), f"{where}: {reason}"
