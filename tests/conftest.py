"""Shared test set-up: every test gets its own hwtoken state directory, every hypothesis
test runs under one profile, and child processes get Ctrl-C even if the suite was started
with it ignored.

The CTAP2 authenticator runs in strict mode (an internal exception fails the test).

The ``hwtoken`` profile sets hypothesis' deadline explicitly to None: a per-example time
limit fails at random on a loaded two-core machine, and the project asserts nothing about
time in tests. It also bounds ``max_examples``; a test may ask for fewer or more examples
(a bounded number) but never sets a deadline of its own (tests/test_hypothesis_profile.py
checks that).
"""

from __future__ import annotations

import signal

import pytest
from hypothesis import HealthCheck, settings

from hwtoken import paths

PROFILE = "hwtoken"
settings.register_profile(PROFILE, deadline=None, max_examples=100,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(PROFILE)

# A suite started in the background of a script (`make test &`, a CI runner's job, a
# nohup'd mutation run) has Ctrl-C ignored, and an ignored signal is inherited by every
# child: the tests that press Ctrl-C on a real `hwtoken` process would see it ignored.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_state_dir(tmp_path_factory, monkeypatch):
    d = tmp_path_factory.mktemp("hwtoken-state")
    monkeypatch.setenv("HWTOKEN_STATE_DIR", str(d))
    paths.set_state_dir(None)
    yield d
    paths.set_state_dir(None)


@pytest.fixture(autouse=True)
def _strict_ctap2(monkeypatch):
    """Strict mode for the CTAP2 authenticator in every test: an internal exception (which
    the key answers with ERR_OTHER, so a crash could pass for a refusal) fails the test."""
    from hwtoken.emulator.applets.fido.ctap2.authenticator import Authenticator

    errors: list[BaseException] = []
    monkeypatch.setattr(Authenticator, "internal_errors", errors)
    yield errors
    if errors:
        import traceback

        shown = "".join(traceback.format_exception(errors[0]))
        pytest.fail(f"{len(errors)} internal error(s) in the CTAP2 authenticator (answered "
                    f"ERR_OTHER); the first:\n{shown}", pytrace=False)


@pytest.fixture
def as_terminal(monkeypatch):
    """Commands that confirm see a person at a terminal (click's runner has no tty)."""
    from hwtoken.cli import common

    monkeypatch.setattr(common, "is_interactive", lambda: True)


@pytest.fixture
def other_user():
    """The other local user (uid 65534) tests act as: checked to be able to run this
    suite's python. Yields the helper module (``as_other_user``, ``python_as_other_user``,
    ``start_as_other_user``)."""
    import other_user as helpers

    helpers.check_reachable()
    return helpers


@pytest.fixture
def other_users_dir(other_user):
    """A directory the other user owns (0755), outside pytest's private temporary tree."""
    path = other_user.shared_dir()
    yield path
    other_user.remove_shared_dir(path)
