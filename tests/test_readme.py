"""The README keeps its promises: the quick start, and the pytest example that is tested."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_start_is_exactly_make_demo_and_make_test():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = [ln.strip() for ln in section.splitlines() if ln.startswith("    ")]
    assert commands == ["make demo", "make test"]


def test_quick_start_says_what_it_assumes_in_one_line():
    """Debian 12, root or sudo, and the one apt-get install that brings make and python3 (the
    packages tools/fresh-debian-check installs in its fresh tree)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    [line] = [ln for ln in section.splitlines() if "apt-get install" in ln]
    assert "Debian 12" in line and "root" in line and "sudo" in line
    assert re.search(r"`apt-get install [^`]*\bmake\b[^`]*`", line)
    assert re.search(r"`apt-get install [^`]*\bpython3\b[^`]*`", line)


def test_readme_pytest_example_is_the_tested_one():
    """tests/emulator/applets/fido/test_fido_hid_plugin_docs.py runs the docs' example verbatim."""
    def example(path: Path) -> str:
        m = re.search(r"```python\n(import pytest.*?)```", path.read_text(), re.S)
        assert m, f"{path.name} lost its pytest example"
        return m.group(1)

    assert example(ROOT / "README.md") == example(ROOT / "docs" / "pytest-plugin.md")


def test_readme_links_exist():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        assert (ROOT / target).exists(), target
