"""Health checks behind ``regime-io doctor``: configuration, server, schema, tables.

Each check reports ``ok``, ``warn`` or ``fail`` with a one-line detail (never a
password). Connecting tries once, without the configured retries: a doctor should
answer quickly, not wait ``retry_attempts x retry_delay`` seconds.

Example:
    >>> from regime_io.config import load_settings
    >>> report = diagnose(load_settings(env={}))          # doctest: +SKIP
    >>> [(c.name, c.status) for c in report.checks]       # doctest: +SKIP
    [('configuration', 'ok'), ('server', 'ok'), ('schema', 'ok'), ('tables', 'ok')]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import adbc_driver_manager
import polars as pl

from .._conn import embedded
from .._conn.database import Database
from .._conn.driver_errors import first_line, server_message
from .._sql.names import chunk_table, metadata_table, version_table
from .._sql.quote import qualified
from .._tiers.sealing import sealed_overlaps
from ..config import Settings, settings_replace
from ..errors import RegimeIOError
from ..tables import TABLES, price_type
from .ddl import SCHEMA_VERSION

__all__ = ["Check", "Diagnosis", "diagnose"]


Status = Literal["ok", "warn", "fail"]


MIN_SERVER_VERSION = 140000


@dataclass(frozen=True)
class Check:
    """One line of the diagnosis."""

    name: str
    status: Status
    detail: str


@dataclass(frozen=True)
class Diagnosis:
    """Every check, and a frame of the tables (name, present, partitions, rows) when the
    server answered."""

    checks: tuple[Check, ...]
    tables: pl.DataFrame | None = None

    @property
    def ok(self) -> bool:
        """False when any check failed (warnings are fine)."""
        return all(c.status != "fail" for c in self.checks)


def diagnose(settings: Settings, *, count_rows: bool = True) -> Diagnosis:
    """Check that ``settings`` lead to a reachable server with the five tables.

    Parameters:
        settings: the configuration to check (never modified).
        count_rows: count each table's rows exactly (``count(*)``); False reports the
            planner's estimates instead (instant on huge tables, null before ANALYZE).

    Returns:
        A :class:`Diagnosis`; it never raises for a server or schema problem.

    Example:
        >>> diagnose(settings).ok                     # doctest: +SKIP
        True
    """
    checks: list[Check] = [Check("configuration", "ok", f"from {settings.source}: {settings.describe()}")]
    if not settings.enabled:
        checks.append(Check("enabled", "warn", "enabled = false: writes are skipped and reads return empty frames"))
    resolved = settings
    if settings.embedded:
        server = embedded.status(settings.embedded_dir)
        if server is None:
            checks.append(Check("embedded server", "warn",
                                f"not running (data {embedded.data_dir(settings.embedded_dir)}); it starts on "
                                "first use, or run: regime-io db start"))
            return Diagnosis(tuple(checks))
        checks.append(Check("embedded server", "ok", f"running, pid {server.pid}, data {server.pgdata}"))
        resolved = settings_replace(settings, host=server.socket_dir, port=server.port, user=server.user,
                                    database=server.database)
    quick = settings_replace(resolved, retry_attempts=0, max_connections=1,
                             connection_timeout=min(resolved.connection_timeout, 10.0))
    db = Database(quick)
    rows: list[dict[str, object]] = []
    try:
        started = time.perf_counter()
        with db.connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                            "current_user, current_database()")
                version, version_num, user, database = cur.fetchone()  # type: ignore[misc]
                elapsed = (time.perf_counter() - started) * 1000
                status: Status = "ok" if version_num >= MIN_SERVER_VERSION else "warn"
                note = "" if status == "ok" else " (regime_io needs PostgreSQL 14 or later)"
                checks.append(Check("server", status, f"reachable in {elapsed:.0f} ms: PostgreSQL {version}{note}, "
                                                      f"user {user!r}, database {database!r}"))
                cur.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                            parameters=(quick.schema,))
                schema_exists = bool(cur.fetchone()[0])  # type: ignore[index]
                if not schema_exists:
                    checks.append(Check("schema", "warn", f"schema {quick.schema!r} does not exist yet; "
                                                          "create it with: regime-io init"))
                    return Diagnosis(tuple(checks))
                cur.execute("SELECT to_regclass($1) IS NOT NULL", parameters=(version_table(quick),))
                if cur.fetchone()[0]:  # type: ignore[index]
                    cur.execute(f"SELECT max(version) FROM {version_table(quick)}")
                    recorded = cur.fetchone()[0]  # type: ignore[index]
                    status = "ok" if recorded == SCHEMA_VERSION else "warn"
                    checks.append(Check("schema", status, f"{quick.schema!r}, schema version {recorded} "
                                                          f"(this regime_io: {SCHEMA_VERSION})"))
                    checks.extend(_price_scale_check(cur, quick))
                else:
                    checks.append(Check("schema", "warn", f"{quick.schema!r} exists but regime_io has not "
                                                          "initialised it; run: regime-io init"))
                for key, spec in TABLES.items():
                    name = quick.table_name(key)
                    full = qualified(quick.schema, name)
                    cur.execute("SELECT to_regclass($1) IS NOT NULL", parameters=(full,))
                    present = bool(cur.fetchone()[0])  # type: ignore[index]
                    parts: int | None = None
                    count: int | None = None
                    sealed: int | None = None
                    if present and spec.sealable:
                        cur.execute(f"SELECT coalesce(sum(row_count), 0)::int8 FROM {chunk_table(spec, quick)}")
                        sealed = int(cur.fetchone()[0])  # type: ignore[index]
                    if present:
                        cur.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass($1)",
                                    parameters=(full,))
                        parts = int(cur.fetchone()[0])  # type: ignore[index]
                        if count_rows:
                            cur.execute(f"SELECT count(*) FROM {full}")
                            count = int(cur.fetchone()[0])  # type: ignore[index]
                        else:
                            cur.execute(
                                "SELECT sum(greatest(c.reltuples, 0))::int8 FROM pg_class c WHERE c.oid = "
                                "to_regclass($1) OR c.oid IN (SELECT inhrelid FROM pg_inherits "
                                "WHERE inhparent = to_regclass($1))", parameters=(full,))
                            value = cur.fetchone()[0]  # type: ignore[index]
                            count = None if value is None else int(value)
                    rows.append({"table": key, "name": name, "present": present,
                                 "partitions": parts if spec.partitioned else None, "rows": count,
                                 "sealed": sealed,
                                 "total": None if count is None else count + (sealed or 0)})
            finally:
                cur.close()
        # After the connection above went back: the quick pool holds one.
        sealed_check = _sealed_check(db) if rows and all(r["present"] for r in rows) else None
    except RegimeIOError as err:
        checks.append(Check("server", "fail", settings.redact(str(err))))
        return Diagnosis(tuple(checks))
    except adbc_driver_manager.Error as err:  # a catalog query refused (permissions...)
        checks.append(Check("query", "fail", settings.redact(server_message(err) or first_line(err))))
        return Diagnosis(tuple(checks))
    finally:
        db.close()
    frame = pl.DataFrame(rows, schema=TABLES_SCHEMA)
    missing = frame.filter(~pl.col("present"))["table"].to_list()
    if missing:
        checks.append(Check("tables", "warn", f"missing: {', '.join(missing)}; create them with: regime-io init"))
    else:
        in_rows, sealed = int(frame["rows"].sum() or 0), int(frame["sealed"].sum() or 0)
        checks.append(Check("tables", "ok", f"all {frame.height} present, {in_rows + sealed:,} rows: "
                                            f"{in_rows:,} in the row tables"
                                            + ("" if count_rows else " (planner estimates)")
                                            + f", {sealed:,} sealed"))
        if sealed_check is not None:
            checks.append(sealed_check)
    return Diagnosis(tuple(checks), frame)


def _price_scale_check(cur: Any, settings: Settings) -> list[Check]:
    """The scale the schema stores prices at, against the configured one: a client set to
    another scale is refused at initialize_database, and reads the schema's scale anyway
    (docs/schema.md, "Changing the price scale"). None recorded (a schema older than the
    setting): no line."""
    cur.execute("SELECT to_regclass($1) IS NOT NULL", parameters=(metadata_table(settings),))
    if not cur.fetchone()[0]:
        return []
    cur.execute(f"SELECT value FROM {metadata_table(settings)} WHERE key = 'price_scale'")
    row = cur.fetchone()
    if row is None:
        return []
    stored, wanted = int(row[0]), settings.price_scale
    if stored == wanted:
        return [Check("price scale", "ok", f"{stored} ({price_type(stored)})")]
    return [Check("price scale", "warn", f"the schema stores prices at scale {stored} ({price_type(stored)}) but "
                                         f"price_scale is {wanted}: reads use {stored}; initialize_database "
                                         f"refuses {wanted} (docs/schema.md, \"Changing the price scale\")")]


# The tables frame: per table its row tier (``rows``), its sealed tier (``sealed``: rows in
# ``<table>_chunks``, null for tables without one) and both (``total``); one count everywhere
# (docs/maintenance.md, "Counting rows").
TABLES_SCHEMA = {"table": pl.String(), "name": pl.String(), "present": pl.Boolean(), "partitions": pl.Int64(),
                 "rows": pl.Int64(), "sealed": pl.Int64(), "total": pl.Int64()}


def _sealed_check(db: Database) -> Check:
    """Rows in sealed series-months (a second tier of one month): written by other tools
    before the guard existed, or while a seal ran."""
    found = []
    try:
        for spec in TABLES.values():
            overlaps = sealed_overlaps(db, spec)
            if overlaps:
                n_rows = sum(sum(series.values()) for series in overlaps.values())
                n_months = sum(len(series) for series in overlaps.values())
                found.append(f"{spec.key}: {n_rows:,} row(s) in {n_months:,} sealed series-month(s) "
                             f"(first {min(overlaps):%Y-%m})")
    except (RegimeIOError, adbc_driver_manager.Error) as err:
        return Check("sealed months", "warn", f"could not check: {db.redact(first_line(err))}")
    if not found:
        return Check("sealed months", "ok", "no rows beside a sealed month (every key in one tier)")
    return Check("sealed months", "warn", "; ".join(found) + ": rows the row tables hold beside sealed chunks "
                 "(written by other tools before schema version 7); readers may return two versions of a "
                 "key; merge them with: regime-io repair-sealed")
