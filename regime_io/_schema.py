"""Database schema: DDL derived from the table declarations, initialisation, partitions.

Time-series tables are range-partitioned on ``timestamp`` (monthly by default) and
their natural key is the primary key; partitions are created on demand, in their own
short transaction, before the data transaction that needs them, as ``CREATE TABLE``
plus ``ATTACH PARTITION`` (which, unlike ``CREATE TABLE ... PARTITION OF``, does not
block readers of the parent). See ``docs/schema.md``.

Example:
    >>> from regime_io.config import Settings
    >>> from regime_io.tables import TABLES
    >>> print(create_table_sql(TABLES["market_regimes_1min"], Settings())[0].splitlines()[0])
    CREATE TABLE IF NOT EXISTS "public"."mr_market_regimes_1min" (
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import zoneinfo
from collections.abc import Iterable
from typing import Any

from ._catalog import catalog_sql, fill_catalog
from ._changes import live_sql
from ._driver_errors import DRIVER_ERRORS, first_line
from ._history import history_sql
from ._pool import ConnectionPool
from ._sql import literal, qualified, quote_ident
from ._timezones import metadata_sql, record_storage_zone
from .config import PartitionInterval, Settings
from .errors import RegimeIOError, ValidationError
from .tables import TABLES, TableKey, TableSpec

__all__ = ["ANALYZE_AFTER_ROWS", "SCHEMA_VERSION", "PartitionCache", "analyze_fresh_partitions", "chunk_table_sql",
           "create_table_sql", "initialize_database"]

log = logging.getLogger(__name__)

# Bump with a migration in initialize_database when the DDL changes: add its line to
# _VERSIONS (every statement of schema_sql is idempotent, so the migration is running it).
SCHEMA_VERSION = 6
_VERSIONS = {
    1: "initial schema: five tables, natural primary keys, range partitions on timestamp",
    2: "columnar history tier: a <table>_chunks table per time-series table",
    3: "metadata: the storage time zone and each table's time kind (naive or aware)",
    4: "series catalog: first/last timestamp and row count per stored series",
    5: "knowledge time: known_from on every table, a <table>_history table of superseded versions",
    6: "live tail: change_xid (writing transaction id, BRIN-indexed) on every table, <prefix>sealed_changes",
}
# The version whose migration fills the series catalog from the rows already stored.
_CATALOG_VERSION = 4

# Both halves of the advisory lock key: a constant namespace and a hash of the schema.
_LOCK_NAMESPACE = 0x5245_4749  # "REGI"

# One write may create at most this many partitions: more usually means garbage timestamps
# (seconds read as microseconds, 1970 epochs) rather than a real history.
MAX_NEW_PARTITIONS = 2000


def qualified_table(spec: TableSpec, settings: Settings) -> str:
    """The quoted ``"schema"."prefix+name"`` of a table."""
    return qualified(settings.schema, settings.table_name(spec.key))


def version_table(settings: Settings) -> str:
    return qualified(settings.schema, f"{settings.table_prefix}schema_version")


def index_name(settings: Settings, spec: TableSpec, columns: Iterable[str]) -> str:
    name = f"{settings.table_name(spec.key)}_{'_'.join(columns)}_idx"
    return name[:63]


def create_table_sql(spec: TableSpec, settings: Settings) -> list[str]:
    """The DDL for one table: CREATE TABLE (partitioned where declared) and its indexes."""
    lines = ["    id BIGSERIAL NOT NULL"]
    for col in spec.columns:
        lines.append(f"    {quote_ident(col.name)} {col.pg_type}{'' if col.nullable else ' NOT NULL'}")
    lines.append("    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP")
    lines.append(f"    PRIMARY KEY ({', '.join(quote_ident(c) for c in spec.primary_key)})")
    partition = f" PARTITION BY RANGE ({quote_ident(spec.time_column)})" if spec.time_column else ""
    statements = [
        f"CREATE TABLE IF NOT EXISTS {qualified_table(spec, settings)} (\n" + ",\n".join(lines) + f"\n){partition}"
    ]
    for columns in spec.indexes:
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {quote_ident(index_name(settings, spec, columns))} "
            f"ON {qualified_table(spec, settings)} ({', '.join(quote_ident(c) for c in columns)})"
        )
    return statements


def chunk_table(spec: TableSpec, settings: Settings) -> str:
    """The quoted ``"schema"."<table>_chunks"`` of a sealable table."""
    return qualified(settings.schema, f"{settings.table_name(spec.key)}_chunks")


def chunk_stat_columns(spec: TableSpec) -> tuple[str, ...]:
    """Payload columns whose min/max each chunk records for pruning (all but time and JSON)."""
    return tuple(n for n in spec.chunk_columns
                 if n != spec.time_column and spec.column(n).kind != "json")


def chunk_table_sql(spec: TableSpec, settings: Settings) -> list[str]:
    """The DDL of a table's chunk table (the sealed tier), derived from its declaration.

    One row per ``chunk_by`` key and period: the key columns with the row table's types,
    ``period_start``, ``row_count``, ``first_ts``/``last_ts``, ``min_<c>``/``max_<c>``
    per payload column (pruning), the payload's schema fingerprint and codec, and the
    payload itself, stored EXTERNAL: it is already zstd-compressed, so TOAST must not
    spend time compressing it again.
    """
    lines = [f"    {quote_ident(c)} {spec.column(c).pg_type} NOT NULL" for c in spec.chunk_by]
    lines += ["    period_start DATE NOT NULL", "    row_count INTEGER NOT NULL",
              "    first_ts TIMESTAMP NOT NULL", "    last_ts TIMESTAMP NOT NULL"]
    for name in chunk_stat_columns(spec):
        pg_type = spec.column(name).pg_type
        lines += [f"    {quote_ident('min_' + name)} {pg_type}", f"    {quote_ident('max_' + name)} {pg_type}"]
    lines += ["    schema_fingerprint TEXT NOT NULL", "    codec TEXT NOT NULL",
              "    sealed_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP", "    payload BYTEA NOT NULL",
              f"    PRIMARY KEY ({', '.join(quote_ident(c) for c in (*spec.chunk_by, 'period_start'))})"]
    table = chunk_table(spec, settings)
    # Only when not set yet: Citus refuses SET STORAGE on a distributed table, and a second
    # initialize_database must not fail there.
    storage = (f"DO $$ BEGIN IF (SELECT attstorage FROM pg_attribute WHERE attrelid = {literal(table)}::regclass "
               "AND attname = 'payload') <> 'e' THEN "
               f"ALTER TABLE {table} ALTER COLUMN payload SET STORAGE EXTERNAL; END IF; END $$")
    return [f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(lines) + "\n)", storage]


def schema_sql(settings: Settings) -> list[str]:
    """Every statement ``initialize_database`` runs, in order."""
    statements = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(settings.schema)}"]
    for spec in TABLES.values():
        statements.extend(create_table_sql(spec, settings))
        if spec.sealable:
            statements.extend(chunk_table_sql(spec, settings))
        statements.extend(history_sql(spec, settings))
    statements.append(
        f"CREATE TABLE IF NOT EXISTS {version_table(settings)} (\n"
        "    version INTEGER PRIMARY KEY,\n"
        "    applied_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,\n"
        "    description TEXT NOT NULL\n)"
    )
    statements.extend(metadata_sql(settings))
    statements.extend(catalog_sql(settings))
    statements.extend(live_sql(settings))
    return statements


def _lock_key(settings: Settings) -> str:
    return f"{_LOCK_NAMESPACE}, hashtext({literal(settings.schema + '.' + settings.table_prefix)})"


def initialize_database(pool: ConnectionPool, settings: Settings) -> int:
    """Create the schema, the five tables and their indexes if missing; record the version.

    Idempotent, and safe when several processes call it at once: the statements run under
    a transaction-scoped advisory lock. Returns the schema version now recorded.
    """
    with pool.connection() as conn:
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT pg_advisory_xact_lock({_lock_key(settings)})")
            cur.fetchall()
            for statement in schema_sql(settings):
                cur.execute(statement)
            cur.execute(f"SELECT count(*) FROM {version_table(settings)} WHERE version = {_CATALOG_VERSION}")
            row = cur.fetchone()
            if not (row and row[0]):
                # First run of this version: catalogue the rows stored before it (none on a new schema).
                fill_catalog(cur, settings)
            for version, description in sorted(_VERSIONS.items()):
                cur.execute(
                    f"INSERT INTO {version_table(settings)} (version, description) "
                    f"VALUES ({version}, {literal(description)}) ON CONFLICT (version) DO NOTHING"
                )
            record_storage_zone(cur, settings)
            cur.execute(f"SELECT max(version) FROM {version_table(settings)}")
            row = cur.fetchone()
            if settings.citus:
                _distribute_if_citus(cur, settings)
        finally:
            cur.close()
    log.info("database initialised (%s), schema version %s", settings.describe(), row[0] if row else None)
    return int(row[0]) if row and row[0] is not None else SCHEMA_VERSION


def _distribute_if_citus(cur: object, settings: Settings) -> None:
    """Distribute the tables by ``symbol`` when the citus extension is installed.

    Filled in by the scaling work (issue 8); a plain server skips this with a log line.
    """
    from . import _scaling as scaling

    scaling.distribute_tables(cur, settings)


# ---------------------------------------------------------------------------------------
# Partitions


def bucket_start(value: dt.datetime | dt.date, interval: PartitionInterval) -> dt.date:
    """The first day of the partition holding ``value``."""
    day = value.date() if isinstance(value, dt.datetime) else value
    if interval == "day":
        return day
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def next_bucket(start: dt.date, interval: PartitionInterval) -> dt.date:
    if interval == "day":
        return start + dt.timedelta(days=1)
    if interval == "week":
        return start + dt.timedelta(days=7)
    if interval == "month":
        return (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return start.replace(year=start.year + 1)


def partition_name(settings: Settings, spec: TableSpec, start: dt.date, interval: PartitionInterval) -> str:
    """``<table>_p2024_01`` (month), ``_p2024`` (year), ``_p2024_01_15`` (day, week)."""
    suffix = {"year": "%Y", "month": "%Y_%m"}.get(interval, "%Y_%m_%d")
    return f"{settings.table_name(spec.key)}_p{start.strftime(suffix)}"


def buckets(ts_min: dt.datetime | dt.date, ts_max: dt.datetime | dt.date,
            interval: PartitionInterval) -> list[dt.date]:
    """Start dates of every partition between two timestamps, inclusive."""
    out = []
    start = bucket_start(ts_min, interval)
    last = bucket_start(ts_max, interval)
    while start <= last:
        out.append(start)
        start = next_bucket(start, interval)
    return out


def upcoming_bucket(settings: Settings, last: dt.date) -> list[dt.date]:
    """``[next partition]`` when a write reaches the current partition (by the clock, in
    the storage zone), else ``[]``: live writers create next month's partition during this
    month, so the first bars after the boundary find it and no writer takes the parent's
    ACCESS EXCLUSIVE lock at the busiest moment. Backfills of past data create nothing extra.
    """
    today = dt.datetime.now(zoneinfo.ZoneInfo(settings.storage_timezone)).date()
    current = bucket_start(today, settings.partition_interval)
    return [next_bucket(current, settings.partition_interval)] if last == current else []


#: A write of at least this many rows gives never-analysed partitions planner statistics
#: (:func:`analyze_fresh_partitions`); below it the planner's default guesses cost little.
ANALYZE_AFTER_ROWS = 10_000

# What a failed ANALYZE may raise (the pool reports a lost connection as RegimeIOError).
_ANALYZE_ERRORS: tuple[type[Exception], ...] = (RegimeIOError, *DRIVER_ERRORS)


def analyze_fresh_partitions(pool: ConnectionPool, settings: Settings, spec: TableSpec) -> list[str]:
    """``ANALYZE`` the key columns of ``spec``'s partitions that were never analysed;
    returns their names.

    Until autovacuum's next pass (it never analyses a partitioned parent) a freshly
    loaded partition has no statistics, and the planner's defaults chose bad plans: a
    10-symbol range read right after a 1M-bar save sorted the rows on disk (5.1 s against
    0.86 s analysed, docs/performance.md), and the rolling trim's DELETE for 500 symbols
    scanned all 187,500 rows of the window (45 ms against 13 ms). Those plans need the
    key columns only, and analysing only them cost 0.11 s after a 2.35 s save of 450,000
    bars (all columns: 0.34 s). Called after the write committed: a failure (a concurrent
    ANALYZE or VACUUM holding the lock past ``lock_timeout``, a lost connection) is
    logged, never raised; autovacuum will do it later. Not on Citus: the coordinator's
    partitions hold no rows, so they would look fresh after every write; the workers'
    autovacuum analyses the shards.
    """
    if not spec.partitioned or settings.citus:
        return []
    columns = ", ".join(quote_ident(c) for c in spec.primary_key)
    names: list[str] = []
    try:
        with pool.connection() as conn:
            cur = conn.cursor()
            try:
                cur.execute("SELECT format('%I.%I', n.nspname, c.relname) FROM pg_inherits i "
                            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE i.inhparent = $1::regclass AND c.reltuples < 0 ORDER BY 1",
                            parameters=(qualified_table(spec, settings),))
                names = [str(r[0]) for r in cur.fetchall()]
                if names:
                    cur.execute("SET LOCAL lock_timeout = '200ms'")
                for name in names:
                    cur.execute(f"ANALYZE {name} ({columns})")
            finally:
                cur.close()
    except _ANALYZE_ERRORS as err:
        log.warning("%s: could not analyse its new partitions (autovacuum will): %s", spec.key,
                    settings.redact(first_line(err)))
        return []
    if names:
        log.info("analysed %d new partition(s) of %s (key columns)", len(names), settings.table_name(spec.key))
    return names


class PartitionCache:
    """Remembers which partitions exist, so a warm write pays no catalog round trip.

    The cache may go stale (another process drops a partition in cleanup); writers
    then see "no partition found", call :meth:`forget` and retry once.
    """

    def __init__(self) -> None:
        self._known: set[tuple[str, dt.date]] = set()
        self._lock = threading.Lock()

    def forget(self) -> None:
        with self._lock:
            self._known.clear()

    def ensure(self, pool: ConnectionPool, settings: Settings, spec: TableSpec,
               ts_min: dt.datetime | dt.date, ts_max: dt.datetime | dt.date, *, conn: Any = None) -> int:
        """Create the partitions covering ``[ts_min, ts_max]`` that do not exist yet.

        Runs in its own short transaction, or inside ``conn``'s transaction when given
        (streamed writes, which learn their time span only after staging). Returns how
        many partitions were created.
        """
        if not spec.partitioned:
            return 0
        interval = settings.partition_interval
        name = settings.table_name(spec.key)
        wanted = buckets(ts_min, ts_max, interval)
        wanted += upcoming_bucket(settings, wanted[-1])
        with self._lock:
            missing = [b for b in wanted if (name, b) not in self._known]
        if not missing:
            return 0
        if len(missing) > MAX_NEW_PARTITIONS:
            raise ValidationError(
                f"{spec.key}: timestamps span {len(missing)} {interval} partitions "
                f"({ts_min} .. {ts_max}); more than {MAX_NEW_PARTITIONS} in one write usually means "
                "wrong timestamps (epoch units?) — check them or use a coarser partition_interval",
                table=spec.key, column=spec.time_column,
            )
        if conn is not None:
            created = self._create(conn, settings, spec, missing)
        else:
            with pool.connection() as own:
                created = self._create(own, settings, spec, missing)
        with self._lock:
            self._known.update((name, b) for b in wanted)
        if created:
            log.info("created %d partition(s) of %s", created, name)
        return created

    def _create(self, conn: Any, settings: Settings, spec: TableSpec, missing: list[dt.date]) -> int:
        interval = settings.partition_interval
        parent = qualified_table(spec, settings)
        created = 0
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT pg_advisory_xact_lock({_lock_key(settings)})")
            cur.fetchall()
            existing = self._existing(cur, settings, spec)
            for start in missing:
                end = next_bucket(start, interval)
                # Partitions made under another partition_interval may cover part of this
                # bucket: create only the uncovered gaps, so changing the interval later works.
                for lo, hi in _gaps(start, end, existing):
                    part = (partition_name(settings, spec, start, interval) if (lo, hi) == (start, end)
                            else f"{settings.table_name(spec.key)}_p{lo.strftime('%Y_%m_%d')}")
                    # CREATE + ATTACH, not CREATE ... PARTITION OF: ATTACH takes only SHARE UPDATE
                    # EXCLUSIVE on the parent, so readers never wait for it. A reader waiting on
                    # the parent can hang the whole process: connectorx streams hold the GIL
                    # while they wait, and this thread needs the GIL to commit.
                    cur.execute(f"CREATE TABLE {qualified(settings.schema, part)} "
                                f"(LIKE {parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                    cur.execute(
                        f"ALTER TABLE {parent} ATTACH PARTITION {qualified(settings.schema, part)} "
                        f"FOR VALUES FROM ({literal(lo.isoformat())}) TO ({literal(hi.isoformat())})"
                    )
                    existing.append((lo, hi))
                    created += 1
        finally:
            cur.close()
        return created

    @staticmethod
    def _existing(cur: Any, settings: Settings, spec: TableSpec) -> list[tuple[dt.date, dt.date]]:
        """The ``[from, to)`` ranges of the table's partitions (the DEFAULT partition has none)."""
        cur.execute(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
            f"WHERE n.nspname = {literal(settings.schema)} AND p.relname = {literal(settings.table_name(spec.key))}"
        )
        ranges = []
        for (bound,) in cur.fetchall():
            match = _BOUNDS.search(bound or "")
            if match:
                ranges.append((_bound_date(match.group(1), dt.date.min), _bound_date(match.group(2), dt.date.max)))
        return ranges


_BOUNDS = re.compile(r"FROM \((.+?)\) TO \((.+?)\)")


def _bound_date(text: str, unbounded: dt.date) -> dt.date:
    text = text.strip().strip("'")
    if text.upper() in ("MINVALUE", "MAXVALUE"):
        return unbounded
    value = dt.datetime.fromisoformat(text)
    # A bound that is not midnight belongs to the day it falls in; partitions we create
    # always start at midnight, so rounding up keeps the gaps non-overlapping.
    return value.date() + (dt.timedelta(days=1) if value.time() != dt.time(0) else dt.timedelta(0))


def _gaps(start: dt.date, end: dt.date, taken: list[tuple[dt.date, dt.date]]) -> list[tuple[dt.date, dt.date]]:
    """``[start, end)`` minus every range in ``taken``, as sorted half-open ranges."""
    gaps = [(start, end)]
    for lo, hi in taken:
        next_gaps = []
        for a, b in gaps:
            if hi <= a or lo >= b:  # no overlap
                next_gaps.append((a, b))
                continue
            if a < lo:
                next_gaps.append((a, lo))
            if hi < b:
                next_gaps.append((hi, b))
        gaps = next_gaps
    return sorted(gaps)


def table_exists(pool: ConnectionPool, settings: Settings, key: TableKey) -> bool:
    with pool.connection() as conn:
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT to_regclass({literal(qualified(settings.schema, settings.table_name(key)))})")
            row = cur.fetchone()
        finally:
            cur.close()
    return bool(row and row[0])
