"""Batch provisioning: program keys by the hundred and lose no secret.

Every place on a key (an OTP slot, an OATH credential; one record each) goes through four
durable steps (record -> program -> verify -> done) against an inventory (SQLite or
PostgreSQL) that keeps each secret sealed with AES-GCM; a place the key holds that the
inventory did not write is not overwritten unless asked; after a crash,
:meth:`Provisioner.resume` settles the pending records. Exports hand the secrets to
a validation server (``target="privacyidea"``/``"linotp"``: what that server imports whole)
as PSKC or OATH CSV, or as the Yubico personalisation-tool CSV, and the challenge-response
secrets apart (``chalresp-csv``).

Typical use::

    from hwtoken.provision import (Mode, Provisioner, Spec, Unlocker, VirtualPool,
                                   open_inventory, programmer_for)
    from hwtoken.provision.export import export

    with open_inventory("sqlite:///tmp/keys.db") as inv:
        inv.unlock(Unlocker(passphrase="..."))
        Provisioner(inv, programmer_for).run(Spec(Mode.CHALRESP, slot=2), VirtualPool(5))
        export(inv, "chalresp-csv", "/tmp/batch.csv")

Submodules are imported lazily, so ``import hwtoken.provision`` stays cheap. (``export``
is not re-exported here: it would collide with the submodule of the same name.)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Mode": "hwtoken.provision.model",
    "Record": "hwtoken.provision.model",
    "RecordKey": "hwtoken.provision.model",
    "Material": "hwtoken.provision.model",
    "Access": "hwtoken.provision.model",
    "Spec": "hwtoken.provision.model",
    "State": "hwtoken.provision.model",
    "Inventory": "hwtoken.provision.inventory",
    "open_inventory": "hwtoken.provision.inventory",
    "Unlocker": "hwtoken.provision.sealing",
    "Provisioner": "hwtoken.provision.runner",
    "Summary": "hwtoken.provision.runner",
    "Outcome": "hwtoken.provision.runner",
    "programmer_for": "hwtoken.provision.programmers",
    "VirtualPool": "hwtoken.provision.sources",
    "UsbKeys": "hwtoken.provision.sources",
    "RecordedKeys": "hwtoken.provision.sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hwtoken.provision' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
