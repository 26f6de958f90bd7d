"""Finding umockdev's preload library: the override, the standard places, and the one-line
error that tells a user what to install."""

from __future__ import annotations

import sysconfig

import pytest

from hwtoken.emulator.transports.umockdev import library
from hwtoken.errors import DeviceError

# where Debian's umockdev package (which `make deps` installs) puts it
DEBIAN = f"/usr/lib/{sysconfig.get_config_var('MULTIARCH')}/libumockdev-preload.so.0"


def test_the_debian_library_is_found_in_its_standard_place(monkeypatch):
    monkeypatch.delenv(library.PRELOAD_ENV, raising=False)
    assert str(library.find_preload()) == DEBIAN


def test_the_first_standard_place_that_has_it_wins(monkeypatch, tmp_path):
    monkeypatch.delenv(library.PRELOAD_ENV, raising=False)
    first, second = tmp_path / "a", tmp_path / "b"
    for d in (first, second):
        d.mkdir()
        (d / library.PRELOAD_NAME).write_bytes(b"")
    monkeypatch.setattr(library, "LIB_DIRS", (str(tmp_path / "none"), str(first), str(second)))
    assert library.find_preload() == first / library.PRELOAD_NAME


def test_the_override_is_used_instead_of_the_standard_places(monkeypatch, tmp_path):
    mine = tmp_path / "libumockdev-preload.so.0"
    mine.write_bytes(b"")
    monkeypatch.setenv(library.PRELOAD_ENV, str(mine))
    assert library.find_preload() == mine


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_an_override_that_is_no_file_fails_without_looking_elsewhere(monkeypatch, tmp_path,
                                                                      what):
    override = tmp_path / "lib"
    if what == "directory":
        override.mkdir()
    monkeypatch.setenv(library.PRELOAD_ENV, str(override))
    with pytest.raises(library.UmockdevUnavailable) as e:
        library.find_preload()  # the Debian one is there, but the user named another
    assert str(e.value) == (
        f"umockdev's libumockdev-preload.so.0 was not found ({override}): install the "
        "Debian package 'umockdev' (apt install umockdev) or set $HWTOKEN_UMOCKDEV_PRELOAD")


def test_nowhere_names_every_place_looked_in(monkeypatch, tmp_path):
    monkeypatch.delenv(library.PRELOAD_ENV, raising=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "other.so").write_bytes(b"")
    dirs = (str(tmp_path / "a"), str(tmp_path / "b"))
    monkeypatch.setattr(library, "LIB_DIRS", dirs)
    with pytest.raises(library.UmockdevUnavailable) as e:
        library.find_preload()
    assert str(e.value) == (
        f"umockdev's libumockdev-preload.so.0 was not found ({dirs[0]}, {dirs[1]}): install "
        "the Debian package 'umockdev' (apt install umockdev) or set "
        "$HWTOKEN_UMOCKDEV_PRELOAD")
    assert isinstance(e.value, DeviceError)  # the CLI's device-error exit and one line
