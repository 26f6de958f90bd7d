"""pam_u2f (Debian libpam-u2f) through pamtester: a PAM login with the virtual key, set up
with pamu2fcfg, exactly as an admin enables U2F for sudo or login."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest
from umockdev_helpers import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the PAM service file goes to /etc/pam.d (root)")

ORIGIN = "pam://hwtoken-test"


@pytest.fixture
def pam_service(tmp_path):
    """A PAM service that requires pam_u2f with an authfile in tmp_path; removed after."""
    name = f"hwtoken-test-{secrets.token_hex(4)}"
    authfile = tmp_path / "u2f_keys"
    path = Path("/etc/pam.d") / name
    path.write_text(f"auth required pam_u2f.so authfile={authfile} origin={ORIGIN} "
                    f"appid={ORIGIN} cue\naccount required pam_permit.so\n")
    try:
        yield name, authfile
    finally:
        path.unlink(missing_ok=True)


def test_pamu2fcfg_then_pamtester_authenticates(plugged_key, pam_service):
    service, authfile = pam_service
    user = "root"
    cfg = run(plugged_key, ["pamu2fcfg", "-u", user, "-o", ORIGIN, "-i", ORIGIN]).stdout
    assert cfg.startswith(f"{user}:")
    authfile.write_text(cfg.strip() + "\n")
    ok = run(plugged_key, ["pamtester", service, user, "authenticate"])
    assert "successfully authenticated" in ok.stdout + ok.stderr


def test_a_key_without_the_credential_is_refused(plugged_key, pam_service, tmp_path):
    from hwtoken.emulator.key import VirtualKey
    from hwtoken.emulator.transports.umockdev import Testbed

    service, authfile = pam_service
    cfg = run(plugged_key, ["pamu2fcfg", "-u", "root", "-o", ORIGIN, "-i", ORIGIN]).stdout
    authfile.write_text(cfg.strip() + "\n")
    with VirtualKey.create(tmp_path / "other.key") as other, Testbed() as tb:
        tb.plug(other)
        refused = tb.run(["pamtester", service, "root", "authenticate"], capture_output=True,
                         text=True, timeout=60)
    assert refused.returncode != 0
    assert "successfully authenticated" not in refused.stdout + refused.stderr
