"""The time zone rule: one storage zone per schema, and per table one kind of timestamp.

PostgreSQL's ``TIMESTAMP`` columns hold naive times. regime_io stores every time in the
storage zone (``storage_timezone``, recorded with the schema at ``initialize_database``):
zone-aware inputs are converted to it, naive inputs are taken to be in it already.

That alone cannot catch the classic mistake: regimes written as naive exchange-local
times (09:15 meaning 09:15 IST) under the default storage zone UTC, then joined with
zone-aware IST bars, which convert to 03:45 and pick up the previous day's regime. So
each table also records whether its timestamps arrived naive or aware (on the first write
through regime_io), and a later write, reader bound or as-of join that brings the other
kind is refused with a message saying how to make the two agree (``docs/timezones.md``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from .._sql.names import metadata_table
from .._sql.quote import literal
from ..errors import ConfigError, UsageError
from ..tables import TableSpec

if TYPE_CHECKING:
    from .._conn.database import Database
    from ..config import Settings

__all__ = [
    "TIME_KIND_KEY", "check_time_kind", "metadata_sql", "metadata_table", "record_storage_zone",
    "record_time_kind", "time_kind",
]


TimeKind = Literal["naive", "aware"]


TIME_KIND_KEY = "regime_io.time_input"  # Arrow schema metadata key set by validate()


def metadata_sql(settings: Settings) -> list[str]:
    """DDL of the key/value table that records the storage zone and the time kinds."""
    return [f"CREATE TABLE IF NOT EXISTS {metadata_table(settings)} (\n"
            "    key TEXT PRIMARY KEY,\n    value TEXT NOT NULL,\n"
            "    recorded_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP\n)"]


def record_storage_zone(cur: Any, settings: Settings) -> None:
    """At ``initialize_database``: record the storage zone, or refuse a different one."""
    cur.execute(f"INSERT INTO {metadata_table(settings)} (key, value) VALUES ('storage_timezone', "
                f"{literal(settings.storage_timezone)}) ON CONFLICT (key) DO NOTHING")
    cur.execute(f"SELECT value FROM {metadata_table(settings)} WHERE key = 'storage_timezone'")
    row = cur.fetchone()
    _check_zone(settings, row[0] if row else None)


def _check_zone(settings: Settings, recorded: str | None) -> None:
    if recorded is not None and recorded != settings.storage_timezone:
        raise ConfigError([f"storage_timezone is {settings.storage_timezone!r} but schema {settings.schema!r} "
                           f"stores its times in {recorded!r}: naive times would be read in the wrong zone; "
                           f"set storage_timezone = {recorded}"])


def time_kinds(db: Database) -> dict[str, str]:
    """The recorded storage zone and time kinds (the schema's metadata, read once per
    Database: :meth:`~regime_io.database.Database.metadata`)."""
    found = db.metadata()
    _check_zone(db.settings, found.get("storage_timezone"))
    return found


def check_time_kind(db: Database, spec: TableSpec, *, aware: bool, what: str) -> None:
    """Refuse ``aware``/naive input against a table whose stored times are the other kind."""
    if not db.settings.enabled:
        return
    recorded = time_kinds(db).get(f"time_input:{spec.key}")
    kind: TimeKind = "aware" if aware else "naive"
    if recorded is None or recorded == kind:
        return
    raise UsageError(_mismatch(db, spec, recorded, kind, what), table=spec.key, column=spec.time_column)


def _mismatch(db: Database, spec: TableSpec, recorded: str, kind: str, what: str) -> str:
    zone = db.settings.storage_timezone
    if recorded == "naive":
        return (f"{what}: zone-aware timestamps, but {spec.key} was written with naive ones, which regime_io "
                f"takes as {zone} (the storage zone). If those naive times were {zone}, drop the zone after "
                f"converting (polars: .dt.convert_time_zone({zone!r}).dt.replace_time_zone(None)); if they were "
                "exchange-local times, the schema should use that zone as storage_timezone "
                "(see docs/timezones.md). Mixing both would shift every time silently.")
    return (f"{what}: naive timestamps, but {spec.key} was written with zone-aware ones (stored as {zone}). "
            f"Attach the zone they are in (polars: .dt.replace_time_zone('Asia/Kolkata')) so they can be "
            "converted (see docs/timezones.md).")


def time_kind(batch: Any) -> str | None:
    """The time kind :func:`~regime_io._write.validate.validate` recorded in a batch's schema."""
    metadata = batch.schema.metadata or {}
    value = metadata.get(TIME_KIND_KEY.encode())
    return value.decode() if value else None


def record_time_kind(cur: Any, db: Database, spec: TableSpec, kind: str | None) -> None:
    """Inside a write transaction: record the table's time kind on its first write, or
    refuse a batch of the other kind (the transaction then rolls back: nothing written)."""
    if kind is None:
        return
    key = f"time_input:{spec.key}"
    known = time_kinds(db)
    if known.get(key) == kind:
        return
    table = metadata_table(db.resolved)
    cur.execute(f"INSERT INTO {table} (key, value) VALUES ({literal(key)}, {literal(kind)}) "
                "ON CONFLICT (key) DO NOTHING")
    cur.execute(f"SELECT value FROM {table} WHERE key = {literal(key)}")
    row = cur.fetchone()
    recorded = str(row[0]) if row else kind
    if recorded != kind:
        raise UsageError(_mismatch(db, spec, recorded, kind, f"save to {spec.key}"), table=spec.key,
                         column=spec.time_column)
    db.remember(key, recorded)
