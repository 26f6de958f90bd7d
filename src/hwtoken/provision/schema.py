"""The inventory's tables, their version, and the upgrade of older inventories in place.

Schema versions (kept in ``meta`` as ``schema``):

1. one record per key: ``records`` keyed by ``serial``; ``exports`` by ``(serial, kind)``.
   (Inventories from before export state per kind have no ``exports`` table and no
   ``export_state`` in ``meta``: the upgrade carries them over too, as such a key counts
   as exported for every kind.)
2. several records per key: ``records`` keyed by ``(serial, application, target)``, with
   the sealed access code, the mode's public parameters and the version of the associated
   data the secret is sealed with; ``exports`` keyed by the record and the kind; an
   event names the place on the key it is about.
3. a record's *journal* (``artifacts``): what a programmer writes down while it programs
   one place in several steps, each before the step it makes possible -- a PIV slot's
   CSR and the certificate a CA issued, so a station killed half-way neither makes a
   second key pair nor asks for a second certificate, and the record says what was
   issued. Each row belongs to one *generation* of its record (a hash of the sealed
   secret it was written for): a reprogrammed record starts a new one, and the earlier
   rows stay as its history.

Upgrades run in one transaction (SQLite and PostgreSQL both roll DDL back), so a
station killed in the middle of it leaves the inventory exactly as it was, and the next
open upgrades it again. ``HWTOKEN_FAULT=after:upgrade@N`` kills the process after the
upgrade's N-th statement, to test just that.
"""

from __future__ import annotations

from collections.abc import Callable

from hwtoken.provision.model import APPLICATION

VERSION = 3
#: export kind of the rows written by inventories from before per-kind export state: such
#: a key counts as exported for every kind (it went to *some* validation server)
LEGACY_EXPORT_KIND = "legacy"

COLUMNS = ("serial", "application", "target", "mode", "slot", "digits", "touch", "name",
           "sealed", "state", "counter", "device", "station", "attempts", "last_error",
           "created_at", "updated_at", "programmed_at", "exported_at", "access_code",
           "params", "aad_version")
KEY_COLUMNS = ("serial", "application", "target")

_TYPES = {
    "sqlite": {"big": "INTEGER", "real": "REAL", "id": "INTEGER PRIMARY KEY AUTOINCREMENT"},
    "postgres": {"big": "BIGINT", "real": "DOUBLE PRECISION", "id": "BIGSERIAL PRIMARY KEY"},
}


def _records(table: str, t: dict[str, str]) -> str:
    return f"""CREATE TABLE {table} (
        serial {t['big']} NOT NULL, application TEXT NOT NULL, target TEXT NOT NULL,
        mode TEXT NOT NULL, slot INTEGER NOT NULL, digits INTEGER NOT NULL,
        touch INTEGER NOT NULL, name TEXT NOT NULL, sealed TEXT NOT NULL,
        state TEXT NOT NULL, counter {t['big']} NOT NULL DEFAULT 0,
        device TEXT NOT NULL, station TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT, created_at {t['real']} NOT NULL, updated_at {t['real']} NOT NULL,
        programmed_at {t['real']}, exported_at {t['real']},
        access_code TEXT, params TEXT NOT NULL DEFAULT '{{}}',
        aad_version INTEGER NOT NULL DEFAULT 2,
        PRIMARY KEY (serial, application, target))"""


def _exports(table: str, t: dict[str, str]) -> str:
    return f"""CREATE TABLE {table} (
        serial {t['big']} NOT NULL, application TEXT NOT NULL, target TEXT NOT NULL,
        kind TEXT NOT NULL, sealed TEXT NOT NULL, at {t['real']} NOT NULL,
        PRIMARY KEY (serial, application, target, kind))"""


def _artifacts(t: dict[str, str]) -> list[str]:
    return [f"""CREATE TABLE artifacts (
        id {t['id']}, serial {t['big']} NOT NULL, application TEXT NOT NULL,
        target TEXT NOT NULL, generation TEXT NOT NULL, kind TEXT NOT NULL,
        value TEXT NOT NULL, at {t['real']} NOT NULL, station TEXT NOT NULL)""",
            "CREATE INDEX artifacts_record ON artifacts (serial, application, target)"]


def meta_ddl() -> str:
    return "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"


def create(dialect: str) -> list[str]:
    """The statements that make a new inventory's tables (version :data:`VERSION`)."""
    t = _TYPES[dialect]
    return [
        _records("records", t),
        "CREATE INDEX records_state ON records (state)",
        f"""CREATE TABLE events (
            id {t['id']}, at {t['real']} NOT NULL, station TEXT NOT NULL,
            serial {t['big']}, kind TEXT NOT NULL, message TEXT NOT NULL, place TEXT)""",
        _exports("exports", t),
        *_artifacts(t),
        f"INSERT INTO meta (name, value) VALUES ('schema', '{VERSION}')",  # noqa: S608
        "INSERT INTO meta (name, value) VALUES ('export_state', 'per-kind')",
    ]


def _case(column_if_otp: str, column_else: str) -> str:
    otp = ", ".join(f"'{m.value}'" for m, app in APPLICATION.items() if app == "otp")
    return f"CASE WHEN mode IN ({otp}) THEN {column_if_otp} ELSE {column_else} END"


def upgrade_from_1(dialect: str, *, export_state: bool) -> list[str]:
    """The statements that carry a version-1 inventory to version 2, in order (then
    :func:`upgrade_from_2` carries it on).

    ``export_state``: the inventory already keeps export state per kind (else its keys
    exported so far count as exported for every kind, :data:`LEGACY_EXPORT_KIND`).
    """
    t = _TYPES[dialect]
    steps = [f"""CREATE TABLE IF NOT EXISTS exports (
        serial {t['big']} NOT NULL, kind TEXT NOT NULL, sealed TEXT NOT NULL,
        at {t['real']} NOT NULL, PRIMARY KEY (serial, kind))"""]
    if not export_state:
        assert LEGACY_EXPORT_KIND == "legacy"
        steps.append("INSERT INTO exports (serial, kind, sealed, at) SELECT serial, "
                     "'legacy', sealed, exported_at FROM records WHERE exported_at "
                     "IS NOT NULL ON CONFLICT (serial, kind) DO NOTHING")
    old = ("mode, slot, digits, touch, name, sealed, state, counter, device, station, "
           "attempts, last_error, created_at, updated_at, programmed_at, exported_at")
    steps += [
        _records("records_v2", t),
        f"INSERT INTO records_v2 (serial, application, target, {old}, access_code, params, "  # noqa: S608
        f"aad_version) SELECT serial, {_case(repr('otp'), repr('oath'))}, "
        f"{_case('CAST(slot AS TEXT)', 'name')}, {old}, NULL, '{{}}', 1 FROM records",
        _exports("exports_v2", t),
        "INSERT INTO exports_v2 (serial, application, target, kind, sealed, at) "
        "SELECT e.serial, r.application, r.target, e.kind, e.sealed, e.at "
        "FROM exports e JOIN records_v2 r ON r.serial = e.serial",
        "DROP TABLE exports",
        "ALTER TABLE exports_v2 RENAME TO exports",
        "DROP TABLE records",
        "ALTER TABLE records_v2 RENAME TO records",
        "CREATE INDEX records_state ON records (state)",
        f"CREATE TABLE IF NOT EXISTS events (id {t['id']}, at {t['real']} NOT NULL, "
        f"station TEXT NOT NULL, serial {t['big']}, kind TEXT NOT NULL, message TEXT NOT NULL)",
        "ALTER TABLE events ADD COLUMN place TEXT",
        "DELETE FROM meta WHERE name IN ('schema', 'export_state')",
        "INSERT INTO meta (name, value) VALUES ('schema', '2')",
        "INSERT INTO meta (name, value) VALUES ('export_state', 'per-kind')",
    ]
    return steps


def upgrade_from_2(dialect: str) -> list[str]:
    """The statements that carry a version-2 inventory to version 3 (the journal)."""
    assert VERSION == 3
    return [*_artifacts(_TYPES[dialect]),
            "UPDATE meta SET value = '3' WHERE name = 'schema'"]


def upgrade(dialect: str, version: int, *, export_state: bool) -> list[str]:
    """Every statement from schema ``version`` to :data:`VERSION`, in order."""
    steps = upgrade_from_1(dialect, export_state=export_state) if version == 1 else []
    return steps + upgrade_from_2(dialect)


def version_of(has_table: Callable[[str], bool], meta_get: Callable[[str], str | None]) -> int:
    """The schema version of an inventory: 0 if it has no tables yet."""
    if not has_table("records"):
        return 0
    value = meta_get("schema") if has_table("meta") else None
    if value is None:
        return 1
    try:
        return int(value)
    except ValueError:
        return -1
