"""KeyStore: a commit is all or nothing, in memory too."""

from __future__ import annotations

import errno
import json

import pytest

from hwtoken.emulator import store
from hwtoken.emulator.store import KeyStore


def test_failed_commit_rolls_back_in_place(tmp_path, monkeypatch):
    s = KeyStore(tmp_path / "k.key")
    section = s.section("fido")
    section.update({"counter": 1, "blob": b"\x00\x01"})
    s.commit()
    dropped = []

    class View:
        def forget(self):
            dropped.append(1)

    view = View()
    s.on_rollback(view.forget)
    section["counter"] = 2
    s.section("new")["x"] = 1

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "atomic_write", full)
    with pytest.raises(OSError):
        s.commit()
    assert s.section("fido") is section  # applets keep their section dicts...
    assert section == {"counter": 1, "blob": b"\x00\x01"}  # ...now as last saved
    assert "new" not in s.data and dropped == [1]
    assert json.loads((tmp_path / "k.key").read_text())["fido"]["counter"] == 1
    del view  # listeners are held weakly
    s.rollback()
    assert dropped == [1]


IDENTITY = {"serial": 7, "version": [5, 7, 1], "aaguid": bytes(16),
            "master_secret": bytes(32)}  # what KeyStore.read checks a key file has


def test_rollback_of_a_store_never_saved_returns_to_its_data(tmp_path):
    s = KeyStore(tmp_path / "k.key", {"format": 1, "identity": dict(IDENTITY)})
    s.section("identity")["serial"] = 8
    s.rollback()
    assert s.section("identity") == IDENTITY
    read = KeyStore.read(_saved(s))
    read.section("identity")["serial"] = 9
    read.rollback()
    assert read.section("identity") == IDENTITY


def _saved(s: KeyStore):
    s.commit()
    return s.path
