"""Programs run against virtual keys plugged in through umockdev (hwtoken's testbed).

Every test here starts real, unmodified programs (libfido2's tools, OpenSSH, pam_u2f,
ykman, python-fido2, udevadm) with the testbed's environment, the way a user's own test
suite would with the ``plugged_key`` fixture.
"""
