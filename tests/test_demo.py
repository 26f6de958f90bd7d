"""The tour's first part runs non-interactively and tells the story it promises."""

from __future__ import annotations

from click.testing import CliRunner

from hwtoken.cli import cli


def test_enrolment_part_of_demo():
    r = CliRunner().invoke(cli, ["demo", "--part", "none"])
    assert r.exit_code == 0, r.output
    for needle in ("otpauth://totp/", "accepted", "refused (already used)",
                   "shown once", "$scrypt$", "matches", "every part behaved"):
        assert needle in r.output
