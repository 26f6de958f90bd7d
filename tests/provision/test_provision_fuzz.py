"""Fuzzing what comes from outside: sealed blobs read from the database, key files, the
fault-injection variable, inventory URLs. Each either works or raises our one-line error."""

from __future__ import annotations

import base64
import contextlib
import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hwtoken.errors import HwtokenError
from hwtoken.provision.faults import FaultInjector
from hwtoken.provision.sealing import Sealer, WrongKey, read_key_file

SEALER = Sealer(os.urandom(32))
KEY = bytes(range(32))
KEY_FILE_FORMS = (KEY, KEY.hex().encode() + b"\n", base64.b64encode(KEY))  # raw, hex, base64


@given(st.text(max_size=200) | st.binary(max_size=120).map(
    lambda b: __import__("base64").b64encode(b).decode()))
def test_open_garbage_sealed_values(blob):
    with pytest.raises(WrongKey):  # garbage never authenticates, and fails only this way
        SEALER.open(blob, b"aad")


@given(st.binary(min_size=1, max_size=80), st.binary(max_size=40))
def test_seal_roundtrip_and_aad_binding(secret, aad):
    sealed = SEALER.seal(secret, aad)
    assert SEALER.open(sealed, aad) == secret
    if len(secret) >= 8:  # a 1-byte secret's 2 hex digits turn up in base64 by chance
        assert secret.hex() not in sealed
    with pytest.raises(WrongKey):
        SEALER.open(sealed, aad + b"x")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(st.binary(max_size=100))
@example(KEY_FILE_FORMS[0])  # the accepted forms too, which random bytes almost never hit
@example(KEY_FILE_FORMS[1])
@example(KEY_FILE_FORMS[2])
def test_key_files(tmp_path, data):
    path = tmp_path / "k"
    path.write_bytes(data)
    try:
        key = read_key_file(path)
    except HwtokenError:
        assert data not in KEY_FILE_FORMS
        return
    assert len(key) == 32
    if data in KEY_FILE_FORMS:
        assert key == KEY


@given(st.text(max_size=40))
def test_fault_spec(spec):
    try:
        inj = FaultInjector(spec)
    except HwtokenError:
        return
    assert inj.step is None or spec.startswith("after:")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz:/._-@?=", max_size=40))
def test_inventory_urls(tmp_path, monkeypatch, url):
    from hwtoken.provision.inventory import open_inventory

    monkeypatch.chdir(tmp_path)
    if url.startswith(("postgres://", "postgresql://")):
        url = "postgresql://x@/db?host=/nonexistent"
    # keep every file this creates inside tmp_path: absolute paths go under it, and no
    # ".." climbs out of it (it used to leave inventories such as /zy at the root)
    url = url.replace("..", "_.")
    if url.startswith("sqlite://"):
        rest = url[len("sqlite://"):]
        url = f"sqlite://{tmp_path}{rest}" if rest.startswith("/") else url
    elif url.startswith("/"):
        url = f"{tmp_path}{url}"
    with contextlib.suppress(HwtokenError):
        open_inventory(url).close()
