"""A real privacyIDEA (from PyPI) for the export tests, driven through its Flask test client.

Runs under the privacyIDEA venv's python (``make test`` builds ``.venv-privacyidea``), never
under ours: its dependencies must not mix with hwtoken's. It sets up privacyIDEA on a fresh
SQLite database in DIR (encryption key, config file, tables, one admin), then answers one
JSON request per line on stdin with one JSON line on stdout:

* ``{"op": "load", "path": F, "type": "pskc"|"oathcsv"|"yubikeycsv", "psk": HEX?,
  "password": PW?}`` -- privacyIDEA's own ``POST /token/load`` (MAC checking on:
  ``pskcValidateMAC=check_fail_hard``) -> ``{"status": HTTP, "value"|"error": ...}``;
* ``{"op": "check", "serial": S, "pass": OTP}`` -- ``POST /validate/check`` ->
  ``{"status": HTTP, "value": bool, "message": ...}``;
* ``{"op": "tokens"}`` -- ``GET /token/`` -> ``{"tokens": [{serial, type, otplen, count,
  hashlib, timeStep}, ...]}``;
* ``{"op": "luks", "serial": S, "challenge": HEX}`` -- the response privacyIDEA's LUKS
  machine application computes for a challenge-response key kept as a TOTP token;
* ``{"op": "reset"}`` -- delete every token (``DELETE /token/<serial>``).

Usage: ``python privacyidea_driver.py DIR``.
"""

from __future__ import annotations

import io
import json
import os
import sys


def _setup(workdir: str):
    cfg = os.path.join(workdir, "pi.cfg")
    enckey = os.path.join(workdir, "enckey")
    with open(enckey, "wb") as f:
        f.write(os.urandom(96))
    with open(cfg, "w") as f:
        f.write(f"""
SQLALCHEMY_DATABASE_URI = {"sqlite:///" + os.path.join(workdir, "pi.sqlite")!r}
SECRET_KEY = {os.urandom(24).hex()!r}
PI_PEPPER = {os.urandom(12).hex()!r}
PI_ENCFILE = {enckey!r}
PI_AUDIT_NO_SIGN = True
PI_NO_RESPONSE_SIGN = True
PI_LOGFILE = {os.path.join(workdir, "privacyidea.log")!r}
PI_LOGLEVEL = 30
PI_BASE_URL = "http://127.0.0.1"
""")
    from privacyidea.app import create_app
    from privacyidea.lib.auth import create_db_admin
    from privacyidea.models import db

    app = create_app("production", config_file=cfg, silent=True)
    with app.app_context():
        db.create_all()
        create_db_admin("admin", "admin@localhost", "admin-password")
        db.session.commit()
    client = app.test_client()
    res = client.post("/auth", json={"username": "admin", "password": "admin-password"})
    if res.status_code != 200:
        raise SystemExit(f"privacyIDEA /auth failed: {res.status_code} {res.get_data(True)}")
    return app, client, {"Authorization": res.json["result"]["value"]["token"]}


def _result(res) -> dict:
    doc = res.json or {}
    out: dict = {"status": res.status_code}
    result = doc.get("result", {})
    if result.get("status"):
        out["value"] = result.get("value")
        out["detail"] = doc.get("detail") or {}
    else:
        out["error"] = (result.get("error") or {}).get("message", res.get_data(True))
    return out


def main() -> None:
    proto = sys.stdout
    sys.stdout = sys.stderr  # privacyIDEA's own prints must not reach the protocol
    app, client, auth = _setup(sys.argv[1])
    proto.write(json.dumps({"ready": True}) + "\n")
    proto.flush()
    for line in sys.stdin:
        req = json.loads(line)
        op = req["op"]
        if op == "load":
            with open(req["path"], "rb") as f:
                data = {"file": (io.BytesIO(f.read()), os.path.basename(req["path"])),
                        "type": req["type"], "pskcValidateMAC": "check_fail_hard"}
            for name in ("psk", "password"):
                if req.get(name) is not None:
                    data[name] = req[name]
            res = client.post(f"/token/load/{os.path.basename(req['path'])}", data=data,
                              headers=auth, content_type="multipart/form-data")
            out = _result(res)
        elif op == "check":
            res = client.post("/validate/check", json={"serial": req["serial"],
                                                       "pass": req["pass"]})
            out = _result(res)
            out["message"] = out.get("detail", {}).get("message")
        elif op == "tokens":
            res = client.get("/token/", query_string={"pagesize": 1000}, headers=auth)
            value = _result(res)["value"]
            out = {"tokens": [{"serial": t["serial"], "type": t["tokentype"],
                               "otplen": t["otplen"], "count": t["count"],
                               "hashlib": t["info"].get("hashlib"),
                               "timeStep": t["info"].get("timeStep")}
                              for t in value["tokens"]]}
        elif op == "luks":
            from privacyidea.lib.applications.luks import MachineApplication

            with app.app_context():
                item = MachineApplication.get_authentication_item(
                    "totp", req["serial"], challenge=req["challenge"])
            out = {"value": item}
        elif op == "reset":
            res = client.get("/token/", query_string={"pagesize": 1000}, headers=auth)
            for tok in _result(res)["value"]["tokens"]:
                client.delete(f"/token/{tok['serial']}", headers=auth)
            out = {"value": True}
        else:
            out = {"error": f"unknown op {op!r}"}
        proto.write(json.dumps(out, default=str) + "\n")
        proto.flush()


if __name__ == "__main__":
    main()
