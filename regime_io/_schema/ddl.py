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

import logging
from typing import Any

from .._conn.pool import ConnectionPool
from .._sql.names import (
    chunk_table,
    ddl_lock_key,
    history_table,
    index_name,
    metadata_table,
    qualified_table,
    version_table,
)
from .._sql.quote import literal, quote_ident
from .._tiers.catalog import catalog_sql, fill_catalog
from .._tiers.changes import live_sql
from .._tiers.knowledge import history_sql
from .._tiers.sealed_format import chunk_stat_columns, chunk_table_columns
from .._tiers.sealed_guard import extend_to_chunks, guard_sql
from ..config import Settings
from ..errors import WIDEN, SchemaError
from ..tables import TABLES, TableSpec, price_type, table_spec
from . import citus as scaling
from .timezones import metadata_sql, record_storage_zone

__all__ = ["SCHEMA_VERSION", "chunk_table_sql", "create_table_sql", "initialize_database"]

log = logging.getLogger(__name__)


# Bump with a migration in initialize_database when the DDL changes: add its line to
# _VERSIONS (every statement of schema_sql is idempotent, so the migration is running it).
SCHEMA_VERSION = 9


_VERSIONS = {
    1: "initial schema: five tables, natural primary keys, range partitions on timestamp",
    2: "sealed tier: a <table>_chunks table per time-series table",
    3: "metadata: the storage time zone and each table's time kind (naive or aware)",
    4: "series catalog: first/last timestamp and row count per stored series",
    5: "knowledge time: known_from on every table, a <table>_history table of superseded versions",
    6: "live tail: change_xid (writing transaction id, BRIN-indexed) on every table, <prefix>sealed_changes",
    7: "sealed-month guard: a trigger refusing other tools' rows in sealed series-months (<table>_sealed_guard)",
    8: "sealed tier: last_row, each chunk's newest row beside its payload (get_latest without the payload); "
       "sealed_changes payloads stored EXTERNAL (no pglz pass over compressed data)",
    9: "sealed tier: patch, the rows restated since a chunk's payload was written (a restatement rewrites "
       "the patch, not the month)",
}


# The version whose migration fills the series catalog from the rows already stored.
_CATALOG_VERSION = 4


# Both halves of the advisory lock key: a constant namespace and a hash of the schema.
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


def chunk_table_sql(spec: TableSpec, settings: Settings) -> list[str]:
    """The DDL of a table's chunk table (the sealed tier), derived from its declaration.

    One row per ``chunk_by`` key and period: the key columns with the row table's types,
    ``period_start``, ``row_count``, ``first_ts``/``last_ts``, ``min_<c>``/``max_<c>``
    per payload column (pruning), the payload's schema fingerprint and codec, the
    payload itself, stored EXTERNAL: it is already compressed, so TOAST must not spend
    time compressing it again; and ``last_row``, the chunk's newest row as JSON (every
    declared column, exact values; NULL in chunks written before schema version 8), which
    the latest-row reader turns back into a row on the server instead of decoding the
    payload; and ``patch``, the rows restated since the payload was written (schema
    version 9, NULL when none: :data:`~regime_io._tiers.sealed_format.PATCH_ROWS`), stored
    EXTERNAL too: pglz ran over every patch in full (the Arrow header compresses, so it did
    not give up in its first kB) -- 10 patches of a restated day took 8.0 ms to UPDATE
    and 2.9 ms stored EXTERNAL. Citus refuses ``SET STORAGE`` on a distributed table: a
    table created here gets it before it is distributed (shards copy it); a Citus table
    that gained ``patch`` by an upgrade keeps the default (correct, slower restatements).
    """
    lines = [f"    {quote_ident(name)} {pg_type}{' NOT NULL' if not_null else ''}"
             f"{' DEFAULT CURRENT_TIMESTAMP' if name == 'sealed_at' else ''}"
             for name, pg_type, not_null in chunk_table_columns(spec)]
    lines += [f"    PRIMARY KEY ({', '.join(quote_ident(c) for c in (*spec.chunk_by, 'period_start'))})"]
    table = chunk_table(spec, settings)
    # Schema version 8, to chunk tables created before: checked first, so a second
    # initialize_database takes no ACCESS EXCLUSIVE lock (ADD COLUMN IF NOT EXISTS would).
    last_row = (f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {literal(table)}::regclass "
                "AND attname = 'last_row' AND NOT attisdropped) THEN "
                f"ALTER TABLE {table} ADD COLUMN last_row JSONB; END IF; END $$")
    patch = (f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {literal(table)}::regclass "
             "AND attname = 'patch' AND NOT attisdropped) THEN "
             f"ALTER TABLE {table} ADD COLUMN patch BYTEA; END IF; END $$")
    # After the columns exist; only when not set yet, so a second initialize_database takes
    # no lock. Citus refuses SET STORAGE on a distributed table (feature_not_supported): a
    # patch column added there by an upgrade keeps the default storage.
    storage = [(f"DO $$ BEGIN IF (SELECT attstorage FROM pg_attribute WHERE attrelid = {literal(table)}::regclass "
                f"AND attname = '{column}') <> 'e' THEN "
                f"ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL; END IF; "
                "EXCEPTION WHEN feature_not_supported THEN NULL; END $$") for column in ("payload", "patch")]
    return [f"CREATE TABLE IF NOT EXISTS {table} (\n" + ",\n".join(lines) + "\n)", last_row, patch, *storage]


def schema_specs(settings: Settings) -> list[TableSpec]:
    """The five declarations with the price columns at the configured ``price_scale``."""
    return [table_spec(key, price_scale=settings.price_scale) for key in TABLES]


def schema_sql(settings: Settings) -> list[str]:
    """Every statement ``initialize_database`` runs, in order."""
    statements = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(settings.schema)}"]
    for spec in schema_specs(settings):
        statements.extend(create_table_sql(spec, settings))
        if spec.sealable:
            statements.extend(chunk_table_sql(spec, settings))
            statements.extend(guard_sql(spec, settings))
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


def initialize_database(pool: ConnectionPool, settings: Settings, *, widen_prices: bool = False) -> int:
    """Create the schema, the five tables and their indexes if missing; record the version.

    Idempotent, and safe when several processes call it at once: the statements run under
    a transaction-scoped advisory lock. Returns the schema version now recorded.
    ``widen_prices``: a ``price_scale`` larger than the schema's widens its price columns
    (:func:`record_price_scale`); otherwise another scale is refused.
    """
    with pool.connection() as conn:
        cur = conn.cursor()
        try:
            cur.execute(f"SELECT pg_advisory_xact_lock({ddl_lock_key(settings)})")
            cur.fetchall()
            if settings.citus:
                # Citus refuses triggers on distributed tables (and distributing a table that has
                # one) unless this is on; the sealed-month guard is such a trigger (docs/scaling.md).
                cur.execute("SET LOCAL citus.enable_unsafe_triggers = on")
            for statement in schema_sql(settings):
                cur.execute(statement)
            for spec in schema_specs(settings):
                extend_to_chunks(cur, spec, settings)  # months sealed before the guard existed
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
            record_price_scale(cur, settings, widen=widen_prices)
            cur.execute(f"SELECT max(version) FROM {version_table(settings)}")
            row = cur.fetchone()
            if settings.citus:
                _distribute_if_citus(cur, settings)
        finally:
            cur.close()
    log.info("database initialised (%s), schema version %s", settings.describe(), row[0] if row else None)
    return int(row[0]) if row and row[0] is not None else SCHEMA_VERSION


def record_price_scale(cur: Any, settings: Settings, *, widen: bool = False) -> None:
    """At ``initialize_database``: record the scale of the price columns, or refuse a
    ``price_scale`` other than the one the schema stores (the transaction rolls back);
    with ``widen``, a larger one widens the stored price columns first.

    The scale recorded is the one the columns have: a schema created before the setting
    existed (no record) has the seed's NUMERIC(10,2), whatever is configured now.
    """
    table = metadata_table(settings)
    cur.execute(f"SELECT value FROM {table} WHERE key = 'price_scale'")
    row = cur.fetchone()
    if row is not None:
        stored = int(row[0])
    else:
        # atttypmod of NUMERIC(p, s) is ((p << 16) | s) + 4.
        cur.execute(f"SELECT (atttypmod - 4) & 65535 FROM pg_attribute WHERE attrelid = "
                    f"{literal(qualified_table(TABLES['market_data'], settings))}::regclass AND attname = 'close'")
        stored = int(cur.fetchone()[0])
        cur.execute(f"INSERT INTO {table} (key, value) VALUES ('price_scale', {literal(str(stored))})")
    wanted = settings.price_scale
    if stored == wanted:
        return
    if widen and wanted > stored:
        for statement in widen_prices_sql(settings):
            cur.execute(statement)
        cur.execute(f"UPDATE {table} SET value = {literal(str(wanted))}, recorded_at = LOCALTIMESTAMP "
                    "WHERE key = 'price_scale'")
        log.info("price columns of schema %r widened from %s to %s", settings.schema, price_type(stored),
                 price_type(wanted))
        return
    remedy = (f", or widen its price columns to {price_type(wanted)} with {{fix}} (docs/schema.md, \"Changing the "
              "price scale\")" if wanted > stored else
              "; a smaller scale would round the stored prices (copy them into a new schema instead)")
    raise SchemaError(f"price_scale is {wanted} ({price_type(wanted)}) but schema {settings.schema!r} stores prices "
                      f"with price_scale {stored} ({price_type(stored)}); nothing was changed. Set price_scale = "
                      f"{stored} to use the schema as it is{remedy}", fixes=(WIDEN,) if wanted > stored else ())


def widen_prices_sql(settings: Settings) -> list[str]:
    """``ALTER TABLE`` statements that give every stored price column the configured scale:
    the row tables (their partitions follow), their history tables and the sealed tier's
    per-chunk min/max columns. Sealed payloads keep the scale they were written with and
    are converted when decoded (a larger scale is exact). Each ALTER rewrites its table
    under an ACCESS EXCLUSIVE lock."""
    statements = []
    for spec in schema_specs(settings):
        if not spec.price_columns:
            continue
        relations = [(qualified_table(spec, settings), spec.price_columns),
                     (history_table(spec, settings), spec.price_columns)]
        if spec.sealable:
            stats = [f"{end}_{name}" for name in chunk_stat_columns(spec) if name in spec.price_columns
                     for end in ("min", "max")]
            relations.append((chunk_table(spec, settings), tuple(stats)))
        pg_type = price_type(settings.price_scale)
        for relation, columns in relations:
            changes = ", ".join(f"ALTER COLUMN {quote_ident(c)} TYPE {pg_type}" for c in columns)
            statements.append(f"ALTER TABLE {relation} {changes}")
    return statements


def _distribute_if_citus(cur: object, settings: Settings) -> None:
    """Distribute the tables by ``symbol`` when the citus extension is installed.

    Filled in by the scaling work (issue 8); a plain server skips this with a log line.
    """

    scaling.distribute_tables(cur, settings)


