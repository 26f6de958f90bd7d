"""Step 3: does the key hold the secret? Ask the key, compute the expected value, compare.

The checks live with their modes (:mod:`hwtoken.provision.modes`); this is the entry point
for a bare secret (modes without public parameters).
"""

from __future__ import annotations

from hwtoken.provision.model import Material, Spec
from hwtoken.provision.modes import CHALLENGE_SIZE
from hwtoken.provision.modes import check as check_material
from hwtoken.provision.protocol import KeyConnection

__all__ = ["CHALLENGE_SIZE", "check"]


def check(conn: KeyConnection, spec: Spec, secret: bytes | Material,
          counter: int) -> int | None:
    """The next HOTP counter (``counter`` unchanged for other modes) if the key proved it
    holds ``secret``; None if it answered something else or has nothing programmed."""
    material = secret if isinstance(secret, Material) else Material(secret)
    return check_material(conn, spec, material, counter)
