"""Every hypothesis test runs under the shared profile of tests/conftest.py."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import settings

TESTS = Path(__file__).parent
MAX_EXAMPLES = 2000


# settings( ... deadline ... ): the call's arguments, one level of nested brackets allowed
_DEADLINE_IN_SETTINGS = re.compile(r"settings\((?:[^()]|\([^()]*\))*\bdeadline\b")


def _test_sources():
    for path in sorted(TESTS.rglob("*.py")):
        if "node_modules" not in path.parts and path not in (TESTS / "conftest.py",
                                                              Path(__file__)):
            yield path


def test_profile_is_loaded_with_no_deadline():
    assert settings.default.deadline is None
    assert settings.default.max_examples <= MAX_EXAMPLES
    assert settings.get_profile("hwtoken").deadline is None


def test_no_test_sets_its_own_deadline_and_every_bound_is_finite():
    """A deadline comes from the profile only; max_examples stays bounded everywhere."""
    offenders = []
    for path in _test_sources():
        text = path.read_text()
        if _DEADLINE_IN_SETTINGS.search(text):
            offenders.append(f"{path}: sets a hypothesis deadline")
        for n in re.findall(r"max_examples\s*=\s*(\d+)", text):
            if int(n) > MAX_EXAMPLES:
                offenders.append(f"{path}: max_examples={n}")
    assert offenders == []
