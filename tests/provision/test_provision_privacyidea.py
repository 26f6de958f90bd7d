"""Exports into a real privacyIDEA (PyPI, in .venv-privacyidea): its own ``/token/load`` with
MAC checking on, then ``/validate/check`` with a code from each provisioned virtual key, once,
and never twice. One privacyIDEA (Flask test client, SQLite) per module, driven through
``privacyidea_driver.py`` in its own python; one batch of virtual keys per module:

* an OATH-HOTP slot (6 digits) and one with 8 digits, through python-yubico over USB/IP;
* an OATH-TOTP credential and an OATH-HOTP credential named ``2`` (a numeric name), through
  yubikit;
* a challenge-response slot, which no privacyIDEA file may carry.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import selectors
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from provision_helpers import PASSPHRASE, hwtoken, opened

from hwtoken import paths
from hwtoken.provision.export import token_serial
from hwtoken.provision.model import Mode, Record, Spec, State
from hwtoken.provision.programmers import programmer_for
from hwtoken.provision.protocol import Device
from hwtoken.provision.runner import Provisioner
from hwtoken.provision.sources import VirtualPool

REPO = Path(__file__).resolve().parents[2]
PI_PYTHON = REPO / ".venv-privacyidea" / "bin" / "python"
DRIVER = Path(__file__).with_name("privacyidea_driver.py")
PSKC_PASSWORD = "pskc import password"

#: the batch: virtual-key pool prefix -> what is programmed on those keys
BATCH = {
    "hotp6": Spec(Mode.HOTP, slot=2, digits=6),
    "hotp8": Spec(Mode.HOTP, slot=1, digits=8),
    "totp": Spec(Mode.OATH_TOTP, digits=6, name="mail"),
    "ohotp": Spec(Mode.OATH_HOTP, digits=6, name="2"),
    "cr": Spec(Mode.CHALRESP, slot=2),
}


class PrivacyIdea:
    """The driver process: one JSON request per line, one JSON answer per line."""

    def __init__(self, workdir: Path) -> None:
        if not PI_PYTHON.exists():
            raise RuntimeError(f"{PI_PYTHON} is missing: `make deps` (or `make test`) builds "
                               "privacyIDEA's venv")
        self.workdir = workdir
        self.log = workdir / "privacyidea.log"
        self._err = open(workdir / "driver.err", "w")  # noqa: SIM115
        self.proc = subprocess.Popen([str(PI_PYTHON), str(DRIVER), str(workdir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, text=True, cwd=workdir)
        assert self._read(timeout=120) == {"ready": True}

    def _read(self, timeout: float) -> dict:
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise TimeoutError(f"privacyIDEA driver silent for {timeout} s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("privacyIDEA driver died: "
                               + (self.workdir / "driver.err").read_text()[-3000:])
        return json.loads(line)

    def __call__(self, op: str, **kw: object) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout=60)

    def tokens(self) -> dict[str, dict]:
        return {t["serial"]: t for t in self("tokens")["tokens"]}

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._err.close()


@pytest.fixture(scope="module")
def privacyidea(tmp_path_factory):
    server = PrivacyIdea(tmp_path_factory.mktemp("privacyidea"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """One inventory holding the batch, its virtual keys in a state dir of their own."""
    state = tmp_path_factory.mktemp("pi-keys")
    url = str(state / "inventory.db")
    with keys_in(state), opened(url) as inv:
        for prefix, spec in BATCH.items():
            summary = Provisioner(inv, programmer_for).run(spec, VirtualPool(1, prefix))
            assert summary.counts() == {"done": 1}, summary.to_json()
        records = {r.mode if r.mode is not Mode.HOTP else f"hotp{r.digits}": r
                   for r in inv.records(states=[State.DONE])}
    return {"url": url, "state": state, "records": records}


@contextlib.contextmanager
def keys_in(state: Path):
    """Virtual keys in ``state`` (a module's own state dir), for code in this process."""
    old = os.environ.get("HWTOKEN_STATE_DIR")
    os.environ["HWTOKEN_STATE_DIR"] = str(state)
    paths.set_state_dir(None)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HWTOKEN_STATE_DIR", None)
        else:
            os.environ["HWTOKEN_STATE_DIR"] = old
        paths.set_state_dir(None)


@pytest.fixture(autouse=True)
def _batch_keys(request, monkeypatch):
    """The tests reach the batch's virtual keys; privacyIDEA starts each test empty."""
    if "batch" in request.fixturenames:
        monkeypatch.setenv("HWTOKEN_STATE_DIR", str(request.getfixturevalue("batch")["state"]))
        paths.set_state_dir(None)
    if "privacyidea" in request.fixturenames:
        assert request.getfixturevalue("privacyidea")("reset") == {"value": True}


def key_code(rec: Record) -> str:
    """The next code from the key itself (a touch on the HOTP slot; TOTP: now)."""
    dev = Device(rec.serial, rec.device)
    with programmer_for(rec.spec, dev).connect(dev) as conn:
        got = conn.calculate(rec.spec, int(time.time()) if rec.mode is Mode.OATH_TOTP else None)
    return got.decode() if isinstance(got, bytes) else got


def export(batch, out: Path, *args: str, env: dict[str, str] | None = None, check: int = 0):
    return hwtoken("provision", "export", "-i", batch["url"], "--for", "privacyidea",
                   "--all", "--force", "-o", str(out), *args, env=env, check=check)


def importable(batch) -> dict[str, Record]:
    """token serial -> record, for the keys privacyIDEA can take (not challenge-response)."""
    return {token_serial(r): r for r in batch["records"].values() if r.mode is not Mode.CHALRESP}


FORMATS = {
    "csv": (["--format", "csv"], {"type": "oathcsv"}, None),
    "pskc-plain": (["--format", "pskc"], {"type": "pskc"}, None),
    "pskc-password": (["--format", "pskc", "--pskc-password"],
                      {"type": "pskc", "password": PSKC_PASSWORD},
                      {"HWTOKEN_PSKC_PASSWORD": PSKC_PASSWORD}),
    "pskc-psk": (["--format", "pskc", "--pskc-key-file", "{psk}"], {"type": "pskc"}, None),
}


def export_and_load(privacyidea, batch, tmp_path, name: str) -> dict:
    args, load, env = FORMATS[name]
    psk = os.urandom(16).hex()
    (tmp_path / "psk.hex").write_text(psk + "\n")
    args = [a.replace("{psk}", str(tmp_path / "psk.hex")) for a in args]
    if name == "pskc-psk":
        load = {**load, "psk": psk}
    out = tmp_path / f"batch.{name}"
    proc = export(batch, out, *args, "--skip-unsupported", env=env)
    assert "left out 1 record(s)" in proc.stderr and "chalresp-csv" in proc.stderr
    return privacyidea("load", path=str(out), **load)


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_key_validates_once_after_the_import(privacyidea, batch, tmp_path, name):
    loaded = export_and_load(privacyidea, batch, tmp_path, name)
    assert loaded["status"] == 200, loaded
    assert loaded["value"] == {"n_imported": 4, "n_not_imported": 0}
    want = importable(batch)
    tokens = privacyidea.tokens()
    # the serials: the same from every format, the OATH credential name in them
    assert set(tokens) == set(want)
    ohotp = batch["records"][Mode.OATH_HOTP]
    assert f"UBOA{ohotp.serial}_2" in tokens and f"UBOM{ohotp.serial}_2" not in tokens
    for serial, rec in want.items():
        tok = tokens[serial]
        assert tok["type"] == ("hotp" if rec.mode.is_hotp else "totp")
        assert tok["otplen"] == rec.digits and tok["hashlib"] == "sha1"
        if rec.mode.is_hotp:
            assert tok["count"] == rec.counter  # the next counter, exactly
        else:
            assert int(tok["timeStep"]) == 30
    if name.startswith("pskc"):  # <Suite> is set: no SHA-1 fallback warning per key
        assert "No hashlib defined" not in privacyidea.log.read_text()
    for serial, rec in want.items():
        code = key_code(rec)
        first = privacyidea("check", serial=serial, **{"pass": code})
        assert first["value"] is True, (serial, first)
        replay = privacyidea("check", serial=serial, **{"pass": code})
        assert replay["value"] is False, (serial, replay)


def test_every_format_names_the_tokens_alike(privacyidea, batch, tmp_path):
    """Trap: PSKC gave OATH keys the bare serial, CSV UBOA<serial>: a batch exported in
    both formats became duplicate tokens. Each load now updates the same four tokens."""
    for name in FORMATS:
        assert export_and_load(privacyidea, batch, tmp_path, name)["status"] == 200
        assert set(privacyidea.tokens()) == set(importable(batch)), name


def test_generic_files_are_not_for_privacyidea(privacyidea, batch, tmp_path):
    """Why --for privacyidea exists: what privacyIDEA does with generic files."""
    out = tmp_path / "generic.pskc"
    hwtoken("provision", "export", "-i", batch["url"], "--all", "-o", str(out),
            "--format", "pskc")
    loaded = privacyidea("load", path=str(out), type="pskc")
    assert loaded["status"] != 200 and "hmac-sha1" in loaded["error"]  # ERR1610
    # the import stops at the challenge-response key (the last one here), and the keys
    # before it carry the generic file's DeviceInfo serial: bare for OATH credentials
    r = batch["records"]
    assert set(privacyidea.tokens()) == {
        f"UBOM{r['hotp6'].serial}_2", f"UBOM{r['hotp8'].serial}_1",
        str(r[Mode.OATH_TOTP].serial), str(r[Mode.OATH_HOTP].serial)}
    assert privacyidea("reset") == {"value": True}
    psk = os.urandom(32)
    (tmp_path / "psk32.hex").write_text(psk.hex())
    hwtoken("provision", "export", "-i", batch["url"], "--all", "--force", "-o", str(out),
            "--format", "pskc", "--pskc-key-file", str(tmp_path / "psk32.hex"))
    loaded = privacyidea("load", path=str(out), type="pskc", psk=psk.hex())
    assert loaded["status"] != 200 and "128 Bit" in loaded["error"]  # ERR301
    yk = tmp_path / "yubico.csv"
    hwtoken("provision", "export", "-i", batch["url"], "--all", "-o", str(yk),
            "--format", "yubico-csv", "--skip-unsupported")
    assert privacyidea("load", path=str(yk), type="yubikeycsv")["status"] == 200
    tokens = privacyidea.tokens()  # no slot, 6 digits, the chalresp slot as a HOTP token
    cr, hotp8 = batch["records"][Mode.CHALRESP], batch["records"]["hotp8"]
    assert tokens[f"UBOM{cr.serial}_X"]["type"] == "hotp"
    assert tokens[f"UBOM{hotp8.serial}_X"]["otplen"] == 6


def test_two_credentials_on_one_key_are_two_tokens(privacyidea, tmp_path):
    """Trap: an OATH-TOTP and an OATH-HOTP credential on one key got one serial."""
    urls = [str(tmp_path / "totp.db"), str(tmp_path / "hotp.db")]
    hwtoken("provision", "run", "-i", urls[0], "--mode", "oath-totp", "--name", "mail",
            "--virtual", "1")
    hwtoken("provision", "run", "-i", urls[1], "--mode", "oath-hotp", "--name", "vpn",
            "--virtual", "1")
    records = []
    for i, url in enumerate(urls):
        out = tmp_path / f"{i}.pskc"
        hwtoken("provision", "export", "-i", url, "--for", "privacyidea", "--format", "pskc",
                "-o", str(out))
        assert privacyidea("load", path=str(out), type="pskc")["status"] == 200
        with opened(url) as inv:
            records += inv.records()
    assert records[0].serial == records[1].serial  # one key
    tokens = privacyidea.tokens()
    assert set(tokens) == {f"UBOA{records[0].serial}_mail", f"UBOA{records[0].serial}_vpn"}
    for rec in records:
        assert privacyidea("check", serial=token_serial(rec),
                           **{"pass": key_code(rec)})["value"] is True


def test_chalresp_file_feeds_privacyideas_luks_application(privacyidea, batch, tmp_path):
    """privacyIDEA has no token type that checks challenge-response, but its LUKS machine
    application computes HMAC-SHA1 responses from a TOTP token named UBOM...: the docs'
    recipe turns chalresp-csv into such tokens, and privacyIDEA's response for a challenge
    is the key's own."""
    out = tmp_path / "chalresp.csv"
    hwtoken("provision", "export", "-i", batch["url"], "--format", "chalresp-csv", "--all",
            "-o", str(out), "--skip-unsupported")
    luks = tmp_path / "luks.csv"
    recipe = _docs_luks_recipe()
    subprocess.run(["sh", "-c", recipe], cwd=tmp_path, check=True, timeout=30)
    assert privacyidea("load", path=str(luks), type="oathcsv")["status"] == 200
    cr = batch["records"][Mode.CHALRESP]
    challenge = os.urandom(32)
    item = privacyidea("luks", serial=f"UBOM{cr.serial}_{cr.slot}",
                       challenge=challenge.hex())["value"]
    dev = Device(cr.serial, cr.device)
    with programmer_for(cr.spec, dev).connect(dev) as conn:
        on_key = conn.calculate(cr.spec, challenge)
    with opened(batch["url"]) as inv:
        want = hmac.new(inv.secret(cr), challenge, hashlib.sha1).digest()
    assert item["response"] == on_key.hex() == want.hex()


def _docs_luks_recipe() -> str:
    """The shell line docs/provision.md gives for chalresp-csv -> privacyIDEA LUKS tokens."""
    text = (REPO / "docs" / "provision.md").read_text()
    (line,) = [ln for ln in text.splitlines() if "> luks.csv" in ln]
    assert shutil.which("awk")
    return line.strip().removeprefix("$ ")


# -- Yubico OTP: privacyIDEA's yubikey token ----------------------------------------------------
@pytest.fixture(scope="module")
def yubiotp_batch(tmp_path_factory):
    """Two keys in Yubico OTP mode (slot 2 and slot 1), programmed by `provision run` as a
    real process: public IDs from the serial and at random."""
    state = tmp_path_factory.mktemp("pi-yubiotp")
    url = str(state / "inventory.db")
    env = {"HWTOKEN_STATE_DIR": str(state), "HWTOKEN_INVENTORY_PASSPHRASE": PASSPHRASE}
    hwtoken("provision", "run", "-i", url, "-m", "yubiotp", "--virtual", "1", env=env)
    hwtoken("provision", "run", "-i", url, "-m", "yubiotp:1", "--public-id", "random",
            "--virtual", "2", env=env)  # the first key: its slot 1 too
    with opened(url) as inv:
        records = inv.records(states=[State.DONE])
        secrets = {r.key: inv.secret(r) for r in records}
    assert len(records) == 3
    return {"url": url, "state": state, "records": records, "secrets": secrets}


def typed_otp(rec: Record, state: Path) -> str:
    """Touch the virtual key's slot: the OTP it types, read from its HID keyboard interface
    (boot-keyboard reports over USB/IP, decoded as a host's keyboard driver would)."""
    from hwtoken.yubikey.device import open_key

    with keys_in(state), open_key(rec.device) as key:
        return key.touch(rec.slot).strip()


@pytest.mark.parametrize("fmt", ["csv", "pskc"])
def test_yubico_otp_keys_validate_once_in_privacyideas_yubikey_token(privacyidea, yubiotp_batch,
                                                                     tmp_path, fmt):
    out = tmp_path / f"yubiotp.{fmt}"
    hwtoken("provision", "export", "-i", yubiotp_batch["url"], "--for", "privacyidea",
            "--format", fmt, "--all", "-o", str(out))
    loaded = privacyidea("load", path=str(out), type="oathcsv" if fmt == "csv" else "pskc")
    assert loaded["status"] == 200 and loaded["value"] == {"n_imported": 3,
                                                           "n_not_imported": 0}, loaded
    tokens = privacyidea.tokens()
    records = yubiotp_batch["records"]
    assert set(tokens) == {f"UBAM{r.serial}_{r.slot}" for r in records}
    for rec in records:
        assert tokens[token_serial(rec)]["type"] == "yubikey"
        assert tokens[token_serial(rec)]["otplen"] == 44
        otp = typed_otp(rec, yubiotp_batch["state"])
        assert otp.startswith(rec.params["public_id"]) and len(otp) == 44
        first = privacyidea("check", serial=token_serial(rec), **{"pass": otp})
        assert first["value"] is True, (rec.key, first)
        replay = privacyidea("check", serial=token_serial(rec), **{"pass": otp})
        assert replay["value"] is False, (rec.key, replay)
        # the next touch types a new OTP, which is valid once again
        nxt = typed_otp(rec, yubiotp_batch["state"])
        assert privacyidea("check", serial=token_serial(rec), **{"pass": nxt})["value"] is True
    # an OTP of one key never opens another's token (another AES key)
    a, b = records[0], records[1]
    wrong = privacyidea("check", serial=token_serial(b),
                        **{"pass": typed_otp(a, yubiotp_batch["state"])})
    assert wrong["value"] is False


def test_the_personalization_tools_format_imports_as_yubikey_tokens(privacyidea, yubiotp_batch,
                                                                    tmp_path):
    """--format yubico-csv (generic) is the Personalization Tool's log, which privacyIDEA's
    "Yubikey CSV" import reads: Yubico OTP rows become yubikey tokens UBAM<serial>_X (that
    format names no slot), and they validate."""
    out = tmp_path / "yubico.csv"
    hwtoken("provision", "export", "-i", yubiotp_batch["url"], "--format", "yubico-csv",
            "--all", "-o", str(out))
    assert privacyidea("load", path=str(out), type="yubikeycsv")["status"] == 200
    tokens = privacyidea.tokens()
    slot2 = next(r for r in yubiotp_batch["records"] if r.slot == 2)
    # two keys, one of them with two slots: the format keeps one token per serial
    assert {t["type"] for t in tokens.values()} == {"yubikey"}
    assert f"UBAM{slot2.serial}_X" in tokens
    other = next(r for r in yubiotp_batch["records"] if r.serial != slot2.serial)
    otp = typed_otp(other, yubiotp_batch["state"])
    assert privacyidea("check", serial=f"UBAM{other.serial}_X", **{"pass": otp})["value"]
