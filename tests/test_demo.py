"""The tour's first part runs non-interactively and tells the story it promises."""

from __future__ import annotations

import json

from click.testing import CliRunner

from hwtoken.cli import cli


def test_enrolment_part_of_demo():
    r = CliRunner().invoke(cli, ["demo", "--part", "enrolment"])
    assert r.exit_code == 0, r.output
    for needle in ("otpauth://totp/", "accepted", "refused (already used)",
                   "shown once", "$scrypt$", "matches", "every part behaved"):
        assert needle in r.output


def test_unknown_part_is_bad_usage_and_json_reports_the_parts():
    r = CliRunner().invoke(cli, ["demo", "--part", "none"])
    assert r.exit_code == 2 and "'none' is not one of" in r.stderr
    r = CliRunner().invoke(cli, ["demo", "--part", "enrolment", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"parts": {}, "failures": 0}
    assert "otpauth://totp/" in r.stderr  # the tour itself goes to stderr
