"""The exact fields of every exported key, by type: what each must carry and, as much, what
it must NOT (a TOTP key with a <Counter>, an HOTP key with a <TimeInterval>, a response
format on the wrong type: a server reading those imports the wrong token). Read from the
XML itself, plain and encrypted, and from the CSV rows."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import pytest
from provision_helpers import opened

from hwtoken.provision.export import export
from hwtoken.provision.model import Mode, Record, State

NS = "{urn:ietf:params:xml:ns:keyprov:pskc}"
MODES = {201: Mode.HOTP, 202: Mode.CHALRESP, 203: Mode.OATH_TOTP, 204: Mode.OATH_HOTP}

#: serial -> (Algorithm URI suffix, <Data> children, <AlgorithmParameters> children)
EXPECTED = {
    201: (":hotp", ["Secret", "Counter"], ["Suite", "ResponseFormat"]),
    202: (":hmac-sha1", ["Secret"], ["Suite", "ChallengeFormat", "ResponseFormat"]),
    203: (":totp", ["Secret", "Time", "TimeInterval"], ["Suite", "ResponseFormat"]),
    204: (":hotp", ["Secret", "Counter"], ["Suite", "ResponseFormat"]),
}

pytestmark = pytest.mark.usefixtures("cheap_kdf")


@pytest.fixture
def inventory(tmp_path):
    url = str(tmp_path / "inv.db")
    with opened(url) as inv:
        for serial, mode in MODES.items():
            rec = Record(serial=serial, mode=mode, slot=2, digits=6, touch=False, name="acct",
                         sealed="", device=f"emu:k{serial}")
            inv.seal(rec, os.urandom(20))
            inv.claim(rec)
            # every record has a counter of 7 in the inventory: only HOTP may export it
            inv.update(rec.key, state=State.DONE, counter=7, programmed_at=1_700_000_000.0)
    return url


def local(tag: str) -> str:
    return tag.removeprefix(NS)


def key_packages(path) -> dict[int, ET.Element]:
    root = ET.parse(path).getroot()
    out = {}
    for package in root.iter(f"{NS}KeyPackage"):
        serial = int(package.find(f"{NS}DeviceInfo/{NS}SerialNo").text)
        out[serial] = package.find(f"{NS}Key")
    return out


@pytest.mark.parametrize("protection", [None, "password", "psk"])
def test_each_pskc_key_has_exactly_its_types_fields(inventory, tmp_path, protection):
    out = tmp_path / "keys.pskc"
    kw = {"password": "a long pass phrase"} if protection == "password" else \
        {"preshared_key": os.urandom(16)} if protection == "psk" else {}
    with opened(inventory) as inv:
        export(inv, "pskc", str(out), **kw)
    keys = key_packages(out)
    assert set(keys) == set(MODES)
    for serial, key in keys.items():
        suffix, data, params = EXPECTED[serial]
        assert key.get("Algorithm").endswith(suffix)
        assert [local(e.tag) for e in key.find(f"{NS}Data")] == data, serial
        assert [local(e.tag) for e in key.find(f"{NS}AlgorithmParameters")] == params, serial
        assert [local(e.tag) for e in key] == ["AlgorithmParameters", "FriendlyName", "Data"]


def test_plain_values_of_counter_and_time(inventory, tmp_path):
    out = tmp_path / "keys.pskc"
    with opened(inventory) as inv:
        export(inv, "pskc", str(out))
    keys = key_packages(out)

    def value(serial: int, field: str) -> str:
        return keys[serial].find(f"{NS}Data/{NS}{field}/{NS}PlainValue").text

    assert value(201, "Counter") == value(204, "Counter") == "7"
    assert (value(203, "Time"), value(203, "TimeInterval")) == ("0", "30")
    for serial in (201, 203, 204):
        fmt = keys[serial].find(f"{NS}AlgorithmParameters/{NS}ResponseFormat")
        assert fmt.attrib == {"Encoding": "DECIMAL", "Length": "6"}
    fmt = keys[202].find(f"{NS}AlgorithmParameters/{NS}ResponseFormat")
    assert fmt.attrib == {"Encoding": "HEXADECIMAL", "Length": "20"}


def test_csv_rows_carry_a_counter_only_for_hotp(inventory, tmp_path):
    out = tmp_path / "keys.csv"
    with opened(inventory) as inv:
        result = export(inv, "csv", str(out))
    assert sorted(k.serial for k in result.exported) == [201, 203, 204]  # not chalresp
    rows = {}
    for line in out.read_text().splitlines():
        if line and not line.startswith("#"):
            fields = [f.strip() for f in line.split(",")]
            rows[fields[0]] = fields[2:]
    assert rows == {"UBOM201_2": ["hotp", "6", "7"], "UBOA203_acct": ["totp", "6", "30"],
                    "UBOA204_acct": ["hotp", "6", "7"]}
