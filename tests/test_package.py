"""hwtoken in someone else's project: the sdist and wheel `make dist` builds, installed into
clean venvs (no checkout on sys.path) with exactly the extras the README names, where the
documented examples run verbatim.

* ``[fido]`` + pytest: the README's pytest example; docs/pytest-plugin.md's plugged_key
  examples (ssh-keygen, libfido2), OpenSSH with a PIN, and the model's attestation trusted
  by Fido2Server; a browser test there names the extra it lacks; ``hwtoken doctor --for
  developer`` passes on this container (no NTP).
* ``[browser]`` + pytest, pytest-playwright and pytest-selenium: the README's browser
  example; docs/browsers.md's pytest-playwright conftest and side-by-side test, Playwright
  and raw Selenium with the key plugged in; and no fixture name shared with either plugin.
* no extra: a command that needs one exits 2 naming it; doctor reports it.

Everything is installed with --no-index from `make deps`' wheelhouse, so the test needs no
network. How long each install took and how big each venv is are attached to the tests'
``user_properties``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from hwtoken.testing import FIXTURES

ROOT = Path(__file__).resolve().parents[1]
WHEELHOUSE = ROOT / ".cache" / "wheelhouse"
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.slow


def hermetic_env(**extra: str) -> dict[str, str]:
    """This process's environment without its venv, CI, hwtoken settings or a
    PYTHONPATH, and with pip reading only the wheelhouse."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "CI", "PYTHONHOME")
           and not k.startswith("HWTOKEN_")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if Path(sys.executable).parent != Path(p))
    env.update(PIP_NO_INDEX="1", PIP_FIND_LINKS=str(WHEELHOUSE),
               PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    return env


def run(argv, *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env or hermetic_env(),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}\n{proc.stdout[-4000:]}\n"
                             f"{proc.stderr[-4000:]}")
    return proc


def documented_install(extra: str) -> list[str]:
    """The README's `pip install` line for a wheel with ``extra``: its arguments."""
    m = re.search(r"^pip install '(dist/hwtoken-[^']+\.whl)\[" + extra + r"\]'(?P<more>[^#\n]*)",
                  README, re.M)
    assert m, f"the README lost its install line for [{extra}]"
    return [f"{m.group(1)}[{extra}]", *m.group("more").split()]


def code_block(path: Path, first_line: str) -> str:
    """The ```python block of ``path`` that starts with ``first_line``."""
    for block in re.findall(r"```python\n(.*?)```", path.read_text(), re.S):
        if block.startswith(first_line) or first_line in block.splitlines()[0:3]:
            return block
    raise AssertionError(f"{path.name} lost its example starting {first_line!r}")


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """`make dist`'s build (python -m build: an sdist, then the wheel from it)."""
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", out, ROOT], cwd=ROOT)
    return out


def test_the_sdist_and_the_wheel(dist):
    [sdist] = dist.glob("hwtoken-*.tar.gz")
    [wheel] = dist.glob("hwtoken-*-py3-none-any.whl")
    assert documented_install("fido")[0].startswith(f"dist/{wheel.name}")
    names = zipfile.ZipFile(wheel).namelist()
    assert "hwtoken/testing.py" in names and "hwtoken/browser/site.html" in names
    assert any(n.endswith(".data/data/share/hwtoken/firmware/main.py") for n in names)
    meta = next(n for n in names if n.endswith("entry_points.txt"))
    entry_points = zipfile.ZipFile(wheel).read(meta).decode()
    assert "hwtoken = hwtoken.testing" in entry_points  # the pytest plugin
    assert "hwtoken-ssh-askpass = hwtoken.ssh_askpass:main" in entry_points


def make_venv(tmp_path: Path, dist: Path, name: str, args: list[str], request) -> Path:
    """A clean venv with ``pip install ARGS`` (the wheel's path relative to ``dist``'s
    parent, as in the README); records the install's time and size."""
    venv = tmp_path / name
    base = getattr(sys, "_base_executable", None) or str(Path(sys.executable).resolve())
    run([base, "-m", "venv", venv], cwd=tmp_path)
    start = time.monotonic()
    link = tmp_path / "dist"
    if not link.exists():
        link.symlink_to(dist, target_is_directory=True)
    run([venv / "bin/pip", "install", "-q", *args], cwd=tmp_path)
    took = time.monotonic() - start
    where = run([venv / "bin/python", "-c", "import hwtoken; print(hwtoken.__file__)"],
                cwd=tmp_path).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout
    request.node.user_properties += [(f"install:{name}:seconds", round(took, 1)),
                                     (f"install:{name}:MB", round(du(venv) / 1e6))]
    return venv


def pytest_in(venv: Path, project: Path, files: dict[str, str], *args: str,
              ini: str = "") -> dict[str, str]:
    """Write ``files`` into ``project`` and run that venv's pytest there: the outcome of
    each test, by id."""
    project.mkdir()
    (project / "pytest.ini").write_text("[pytest]\nhwtoken_require_umockdev = true\n" + ini)
    for name, text in files.items():
        (project / name).write_text(text)
    report = project / "report.xml"
    proc = run([venv / "bin/python", "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                f"--junitxml={report}", *args], cwd=project, check=False, timeout=900)
    outcomes = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")),
                    "passed")
        detail = next((c.get("message", "") for c in case), "")
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = \
            kind if kind == "passed" else f"{kind}: {detail}"
    assert outcomes, proc.stdout + proc.stderr
    return outcomes


def all_passed(outcomes: dict[str, str]) -> bool:
    return all(v == "passed" for v in outcomes.values())


def test_fido_extra_runs_the_plugin_examples(tmp_path, dist, request):
    venv = make_venv(tmp_path, dist, "fido", documented_install("fido"), request)
    plugin_docs = ROOT / "docs" / "pytest-plugin.md"
    files = {
        "test_readme_example.py": code_block(ROOT / "README.md", "import pytest\nfrom fido2"),
        "test_plugged_key.py": code_block(plugin_docs, "import base64"),
        "test_openssh_pin.py": code_block(plugin_docs, "import subprocess\n\nimport pytest"),
        "test_model.py": code_block(plugin_docs, "from fido2.server import Fido2Server"),
        "test_needs_browser.py": ("def test_browser(hwtoken_browser):\n"
                                  "    pass\n"),
    }
    outcomes = pytest_in(venv, tmp_path / "project", files)
    needs_browser = outcomes.pop("test_needs_browser::test_browser")
    assert all_passed(outcomes), outcomes
    assert len(outcomes) == 4 + 4 + 1 + 1
    # without the browser extra: a skip (outside CI) that names what to install
    assert needs_browser.startswith("skipped") and "pip install 'hwtoken[browser]'" in \
        needs_browser, needs_browser
    doctor = run([venv / "bin/hwtoken", "doctor", "--for", "developer"], cwd=tmp_path,
                 check=False)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert "python: fido: fido2, usbip present" in doctor.stdout
    assert "python: browser: missing selenium" in doctor.stdout


def test_browser_extra_beside_pytest_playwright_and_pytest_selenium(tmp_path, dist, request):
    venv = make_venv(tmp_path, dist, "browser",
                     [*documented_install("browser"), "pytest-playwright", "pytest-selenium"],
                     request)
    browsers = ROOT / "docs" / "browsers.md"
    files = {
        "test_browser_example.py": code_block(ROOT / "README.md",
                                              "import pytest\nfrom hwtoken.browser"),
        "conftest.py": code_block(browsers, "# conftest.py").split("\n", 1)[1],
        "test_side_by_side.py": code_block(browsers, "# test_side_by_side.py"),
        "test_playwright_with_the_key.py": code_block(browsers,
                                                      "# test_playwright_with_the_key.py"),
        "test_selenium_with_the_key.py": code_block(browsers,
                                                    "# test_selenium_with_the_key.py"),
    }
    outcomes = pytest_in(venv, tmp_path / "project", files,
                         ini="hwtoken_require_browsers = true\n")
    assert all_passed(outcomes), outcomes
    assert len(outcomes) == 3 + 2 + 1 + 1
    # who defines which fixture, with all three plugins loaded
    listed = run([venv / "bin/python", "-m", "pytest", "--fixtures", "-p",
                  "no:cacheprovider"], cwd=tmp_path / "project").stdout
    owners: dict[str, str] = {}
    section = ""
    for line in listed.splitlines():
        header = re.match(r"-+ fixtures defined from (\S+) -+", line)
        if header:
            section = header.group(1)
        elif line and not line[0].isspace() and section:
            owners.setdefault(line.split()[0].split("[")[0], section)
    assert {name for name, owner in owners.items() if owner == "hwtoken.testing"} == \
        set(FIXTURES)
    assert owners["browser"].startswith("pytest_playwright")
    assert owners["page"].startswith("pytest_playwright")
    assert owners["selenium"].startswith("pytest_selenium")


def test_no_extra_names_the_extra_and_doctor_reports_it(tmp_path, dist, request):
    venv = make_venv(tmp_path, dist, "bare", [documented_install("fido")[0].split("[")[0]],
                     request)
    env = hermetic_env(HWTOKEN_STATE_DIR=str(tmp_path / "state"))
    made = run([venv / "bin/hwtoken", "emulate", "create", "k"], cwd=tmp_path, env=env,
               check=False)
    assert (made.returncode, made.stdout) == (2, "")
    assert made.stderr == ("error: the Python package fido2 is not installed (needed for "
                           "FIDO2 commands, the virtual key and the pytest plugin's "
                           "fixtures): pip install 'hwtoken[fido]'\n")
    doctor = run([venv / "bin/hwtoken", "doctor", "--for", "developer"], cwd=tmp_path,
                 env=env, check=False)
    assert doctor.returncode == 1 and "internal error" not in doctor.stderr
    assert "python: fido: missing fido2" in doctor.stdout
    assert "fix: pip install 'hwtoken[fido]'" in doctor.stdout
    assert shutil.which("hwtoken-ssh-askpass", path=str(venv / "bin"))
