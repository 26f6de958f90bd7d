"""python-fido2's own hardware-key test suite (``tests/device/`` of its sdist, for the
installed fido2 version) runs unchanged against virtual keys through
``pytest --hwtoken-fido2-hid``, and between two models nothing is left skipped: a
``latest`` key passes everything but bio enrollment (previewSign with ARKG included), and
a ``yubikey-bio`` key passes bio enrollment.

``make deps`` downloads the sdist into .cache/fido2-sdist; without it this test downloads
it the same way (pip, from the package index). ``make fido2-device-tests`` prints the runs.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET  # noqa: S405 - our own pytest's report
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # ~25 s: `make test-slow` (and CI) runs it

ROOT = Path(__file__).resolve().parents[4]
SDIST_DIR = ROOT / ".cache" / "fido2-sdist"
EP_RP_ID = "enterprise.example.com"  # the latest profile's vendor-facilitated EA RP ID
BIO_SKIP = "BioEnrollment not supported"
BIO_TESTS = "tests/device/test_bioenroll.py"


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


def run_suite(root: Path, profile: str, report: Path, *tests: str) -> tuple[str, str]:
    """Run the device tests on a fresh key of ``profile`` -> (output, summary line)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HWTOKEN_FIDO2_HID")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         "--hwtoken-fido2-hid", "--hwtoken-fido2-hid-profile", profile,
         "--ep-rp-id", EP_RP_ID, f"--junitxml={report}", *tests],
        cwd=root, capture_output=True, text=True, timeout=600, env=env)
    out = result.stdout + result.stderr
    summary = out.strip().splitlines()[-1]
    print(f"{profile}: {summary}")
    assert result.returncode == 0, out[-4000:]
    return out, summary


def outcomes(report: Path) -> dict[str, str]:
    """test id -> passed / skipped / failed, from a JUnit XML report."""
    result = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = ("failed" if kinds & {"failure", "error"} else
                   "skipped" if "skipped" in kinds else "passed")
        result[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return result


def counts(summary: str) -> dict[str, int]:
    return {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}


def test_python_fido2_device_suite_passes_on_latest_plus_bio(tmp_path):
    root = extract_tests(fido2_sdist(), tmp_path)
    out, summary = run_suite(root, "latest", tmp_path / "latest.xml", "tests/device")
    latest = counts(summary)
    assert latest.get("failed", 0) == latest.get("error", 0) == 0, summary
    assert latest["passed"] >= 363, summary  # previewSign's 273 and every algorithm, ...
    skips = re.findall(r"^SKIPPED \[(\d+)\] (\S+): (.*)$", out, re.M)
    assert sum(int(n) for n, _, _ in skips) == latest.get("skipped", 0)
    for _, where, reason in skips:  # a latest key has no fingerprint sensor, and only that
        assert reason.startswith(BIO_SKIP) and where.startswith(BIO_TESTS), (where, reason)

    _, bio_summary = run_suite(root, "yubikey-bio", tmp_path / "bio.xml", BIO_TESTS)
    bio = counts(bio_summary)
    assert bio.get("skipped", 0) == bio.get("failed", 0) == bio.get("error", 0) == 0
    assert bio["passed"] == latest.get("skipped", 0) == 3, (summary, bio_summary)
    # nothing left: every test skipped on latest passed on the bio key
    on_latest, on_bio = outcomes(tmp_path / "latest.xml"), outcomes(tmp_path / "bio.xml")
    skipped = {t for t, o in on_latest.items() if o == "skipped"}
    assert skipped and all(on_bio.get(t) == "passed" for t in skipped), (skipped, on_bio)
