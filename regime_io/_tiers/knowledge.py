"""Knowledge time: versioned rows (``known_from``/``known_to``) in ``<t>_history`` tables."""

from __future__ import annotations

import datetime as dt
import json
import logging
import zoneinfo
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .._conn.copy import copy_into
from .._frames import conform
from .._sql.args import parse_time
from .._sql.names import history_table, qualified_table
from .._sql.quote import literal, quote_ident
from ..errors import UsageError, WriteError
from ..tables import TableSpec
from .rows import merge_sql, merged_counts

if TYPE_CHECKING:
    from .._conn.database import Database
    from ..config import Settings

__all__ = [
    "as_of_instant",
    "history_sql",
    "keeps_history",
    "known_at_instant",
    "lock_symbols",
    "record_sealed",
    "superseded_rows",
    "versioned_merge",
]

log = logging.getLogger(__name__)


KNOWN_FROM = "known_from"


KNOWN_TO = "known_to"


# A history row that records that the key had no value yet (a row added to a sealed chunk).
ABSENT = "absent"


# The per-row knowledge time column of a vintages stage table.
ROW_KNOWN_AT = "__known_at"


def keeps_history(settings: Settings, spec: TableSpec) -> bool:
    return spec.key in settings.history_tables


def history_sql(spec: TableSpec, settings: Settings) -> list[str]:
    """DDL: ``known_from`` on the row table (added when missing) and ``<table>_history``.

    The history table has the row table's ``id``, declared columns and ``created_at``,
    then ``known_from``/``known_to``; primary key: the natural key plus ``known_from``
    (symbol first, so on Citus it distributes and co-locates like the row table).
    """

    row = qualified_table(spec, settings)
    add = (f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {literal(row)}::regclass "
           f"AND attname = {literal(KNOWN_FROM)} AND NOT attisdropped) THEN "
           f"ALTER TABLE {row} ADD COLUMN {KNOWN_FROM} TIMESTAMPTZ; END IF; END $$")
    lines = ["    id BIGINT"]
    for col in spec.columns:
        lines.append(f"    {quote_ident(col.name)} {col.pg_type}{'' if col.nullable else ' NOT NULL'}")
    lines += ["    created_at TIMESTAMP", f"    {KNOWN_FROM} TIMESTAMPTZ NOT NULL",
              f"    {KNOWN_TO} TIMESTAMPTZ NOT NULL", f"    {ABSENT} BOOLEAN NOT NULL DEFAULT false",
              f"    CHECK ({KNOWN_TO} > {KNOWN_FROM})",
              f"    PRIMARY KEY ({', '.join(quote_ident(c) for c in (*spec.primary_key, KNOWN_FROM))})"]
    hist = history_table(spec, settings)
    # ``absent`` came after the first release of these tables: added where missing.
    absent = (f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = {literal(hist)}::regclass "
              f"AND attname = {literal(ABSENT)} AND NOT attisdropped) THEN "
              f"ALTER TABLE {hist} ADD COLUMN {ABSENT} BOOLEAN NOT NULL DEFAULT false; END IF; END $$")
    return [add, f"CREATE TABLE IF NOT EXISTS {hist} (\n" + ",\n".join(lines) + "\n)", absent]


# ---------------------------------------------------------------------------------------
# Arguments


def _instant(value: Any, *, name: str, timezone: str) -> dt.datetime:
    """A knowledge instant as an aware datetime (naive values are storage-zone times)."""
    if isinstance(value, bool) or not isinstance(value, (str, dt.datetime, dt.date)):
        raise UsageError(f"{name}: expected a datetime or an ISO string, got {value!r}", value=value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value
    when, _ = parse_time(value, name=name, timezone=timezone)
    if when.tzinfo is None:
        when = when.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
    return when


def as_of_instant(db: Database, spec: TableSpec, as_of: Any) -> dt.datetime | None:
    """``as_of`` checked: None, or an aware datetime; refused for tables keeping no history."""
    return _history_instant(db, spec, as_of, name="as_of", refusal="it cannot be read as of {value!r}")


def known_at_instant(db: Database, spec: TableSpec, known_at: Any) -> dt.datetime | None:
    """``known_at`` as a timestamp (a column name is handled by the writer)."""
    return _history_instant(db, spec, known_at, name="known_at", refusal="known_at= has no meaning")


def _history_instant(db: Database, spec: TableSpec, value: Any, *, name: str, refusal: str) -> dt.datetime | None:
    if value is None:
        return None
    if not keeps_history(db.settings, spec):
        raise UsageError(f"{spec.key} keeps no history, so {refusal.format(value=value)}; add it to "
                         "[DATABASE] history_tables (docs/history.md)", table=spec.key, value=value)
    return _instant(value, name=name, timezone=db.settings.storage_timezone)


# ---------------------------------------------------------------------------------------
# Writing


def _lock_space(settings: Settings, spec: TableSpec) -> str:
    return f"regime_io.history:{settings.schema}.{settings.table_name(spec.key)}"


def lock_symbols(cur: Any, settings: Settings, spec: TableSpec, symbols: Sequence[str]) -> None:
    """Take the per-symbol locks of a versioned write (:func:`versioned_merge`), in the
    same order, for another change that versions rows (a range delete)."""
    cur.execute("SELECT count(pg_advisory_xact_lock(hashtext($1::text), hashtext(s))) "
                "FROM (SELECT DISTINCT s FROM jsonb_array_elements_text($2::jsonb) AS j(s) ORDER BY 1) x",
                parameters=(_lock_space(settings, spec), json.dumps(list(symbols))))
    cur.fetchall()


def _join(spec: TableSpec, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote_ident(c)} = {right}.{quote_ident(c)}" for c in spec.primary_key)


def key_row(spec: TableSpec, alias: str | None = None) -> str:
    """The primary key as a row value, ``(a.k1, a.k2)``: for ``IN``/``NOT IN`` over subqueries.

    A session's temporary table joined to a distributed table is refused by Citus ("direct
    joins between distributed and local tables are not supported"); an uncorrelated
    ``(key) IN (SELECT key FROM temp)`` is planned recursively (the temp rows become an
    intermediate result), and the plain server runs it as a semi-join on the key index.
    """
    prefix = f"{alias}." if alias else ""
    return "(" + ", ".join(f"{prefix}{quote_ident(c)}" for c in spec.primary_key) + ")"


def _distinct(spec: TableSpec, stored: str, staged: str) -> str:
    """``(stored values) IS DISTINCT FROM (staged values)``; staged JSON travels as text."""
    values = spec.value_columns
    left = ", ".join(f"{stored}.{quote_ident(v)}" for v in values)
    right = ", ".join(f"{staged}.{quote_ident(v)}::{spec.column(v).pg_type}" if spec.column(v).kind == "json"
                      else f"{staged}.{quote_ident(v)}" for v in values)
    return f"({left}) IS DISTINCT FROM ({right})"


def stored_known_from(alias: str, zone: str) -> str:
    """A stored row's knowledge start: ``known_from``, else its insertion time."""
    return f"coalesce({alias}.{KNOWN_FROM}, {alias}.created_at AT TIME ZONE {zone})"


def versioned_merge(cur: Any, db: Database, spec: TableSpec, stage: str, known_at: dt.datetime | None,
                    on_conflict: Any = "update", *, per_row: bool = False) -> tuple[int, int, list[dict[str, Any]]]:
    """The staged upsert of a history table (module docstring). Returns what
    ``stage_and_merge`` returns: inserted, updated and the catalog's per-series rows.

    ``per_row``: the stage has a ``__known_at`` column, each row's knowledge time (the
    vintages of ``known_at=<column>``); otherwise ``known_at`` or the server's clock."""

    row_known = f'"{ROW_KNOWN_AT}"'
    if on_conflict != "update":  # inserts only: no version is superseded
        at = row_known if per_row else None if known_at is None else "$1::timestamptz"
        cur.execute(merge_sql(spec, db, on_conflict, known_from=at, stage=stage),
                    parameters=(known_at.isoformat(),) if known_at and not per_row else None)
        return merged_counts(cur.fetchall())
    settings = db.settings
    target = qualified_table(spec, settings)
    staged = quote_ident(stage)
    cur.execute(f"WITH l AS MATERIALIZED (SELECT count(pg_advisory_xact_lock(hashtext($1::text), hashtext(s))) "
                f"FROM (SELECT DISTINCT symbol::text AS s FROM {staged} ORDER BY 1) x) "
                "SELECT clock_timestamp() FROM l", parameters=(_lock_space(settings, spec),))
    row = cur.fetchone()
    assert row is not None
    when = known_at or row[0]
    # A join on the natural key. Citus refuses a LATERAL (... LIMIT 1) whose outer side is a
    # local table (the staging table), so the probe per staged row comes from the planner:
    # with the staging table analysed it knows the batch is small and probes the primary
    # key per row instead of hashing whole partitions (without statistics a temporary table
    # looks big).
    cur.execute(f"ANALYZE {staged}")
    # How many staged keys are not stored yet (read after the locks: other writers only ever
    # add keys meanwhile, versioned ones wait for the locks, so zero stays zero).
    cur.execute(f"SELECT (SELECT count(*) FROM {staged}) - (SELECT count(*) FROM {staged} s "
                f"JOIN {target} t ON {_join(spec, 't', 's')})")
    counted = cur.fetchone()
    missing = int(counted[0]) if counted and counted[0] is not None else 1
    # The knowledge instant: a bound value (known_at or the clock read after the locks), or
    # each staged row's own; ``params`` binds it (if bound) and the storage zone.
    params: tuple[Any, ...]
    if per_row:
        k, zone, params, insert_at = f"s.{row_known}", "$1::text", (settings.storage_timezone,), row_known
        insert_params: tuple[Any, ...] | None = None
    else:
        k, zone, params, insert_at = "$1::timestamptz", "$2::text", (when.isoformat(), settings.storage_timezone), \
            "$1::timestamptz"
        insert_params = (when.isoformat(),)
    inserted, series = 0, list[dict[str, Any]]()
    if missing:  # step 2; a pure restatement (every key stored) skips it
        cur.execute(merge_sql(spec, db, "ignore", known_from=insert_at if known_at or per_row else None,
                               stage=stage), parameters=insert_params if known_at and not per_row else None)
        inserted, _, series = merged_counts(cur.fetchall())
    if known_at is not None or per_row:
        _check_order(cur, spec, target, staged, k, zone, params)
    old = stored_known_from("t", zone)
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    t_cols = ", ".join(f"t.{quote_ident(c.name)}" for c in spec.columns)
    cur.execute(f"INSERT INTO {history_table(spec, settings)} (id, {cols}, created_at, {KNOWN_FROM}, {KNOWN_TO}) "
                f"SELECT t.id, {t_cols}, t.created_at, {old}, greatest({k}, {old} + interval '1 microsecond') "
                f"FROM {staged} s JOIN {target} t ON {_join(spec, 't', 's')} "
                f"WHERE {_distinct(spec, 't', 's')}", parameters=params)
    # Citus refuses non-IMMUTABLE functions in DO UPDATE SET (a parameter cast to
    # timestamptz, timestamptz + interval): k reaches it as EXCLUDED.known_from (every
    # staged key exists by now, so the insert side supplies it and never inserts), the
    # zone as a literal of the configuration, and the microsecond is added to UTC
    # timestamps; the value is the same on a plain server.
    old_literal = stored_known_from("t", literal(settings.storage_timezone))
    new_known = (f"greatest(EXCLUDED.{KNOWN_FROM}, "
                 f"timezone('UTC', timezone('UTC', {old_literal}) + interval '1 microsecond'))")
    cur.execute(merge_sql(spec, db, "update", known_from=row_known if per_row else "$1::timestamptz",
                           known_from_update=new_known, stage=stage),
                parameters=None if per_row else (when.isoformat(),))
    # Every staged key exists after step 2, so each row this merge returns is an update
    # (one inserted earlier in this transaction, by an earlier vintage, looks inserted).
    more, updated, _ = merged_counts(cur.fetchall())
    return inserted, updated + more, series


def _check_order(cur: Any, spec: TableSpec, target: str, staged: str, k: str, zone: str,
                 params: tuple[Any, ...]) -> None:
    """``known_at`` must come after the stored version it supersedes (chains grow forward)."""
    old = stored_known_from("t", zone)
    keys = ", ".join(f"t.{quote_ident(c)}::text" for c in spec.primary_key)
    cur.execute(f"SELECT {keys}, ({old})::text, ({k})::text FROM {staged} s JOIN {target} t "
                f"ON {_join(spec, 't', 's')} WHERE {_distinct(spec, 't', 's')} AND {old} >= {k} LIMIT 1",
                parameters=params)
    row = cur.fetchone()
    if row:
        *key, known, new = row
        raise WriteError(f"{spec.key}: known_at {new} is not after the stored version's knowledge time "
                         f"{known} (key ({', '.join(spec.primary_key)})=({', '.join(map(str, key))})); write the "
                         "vintages of a row in knowledge order; nothing was written", table=spec.key)


def superseded_rows(spec: TableSpec, before: pa.Table, added: pa.Table, key: tuple[Any, ...]) -> pa.Table:
    """What a merge into one chunk superseded, from the merge's own difference
    (:class:`regime_io._tiers.chunk_merge.ChunkMerge`), with every declared column (the
    chunk key ``key`` filled in) and ``absent``: the previous values of the rows it changed
    (``absent`` false), and the rows it added (``absent`` true: the key had no value before;
    a chunk row keeps no insertion time, so this is recorded)."""
    rows = pa.concat_tables([before, added.cast(before.schema)])
    rows = rows.append_column(ABSENT, pa.array(np.repeat([False, True], [before.num_rows, added.num_rows])))
    schema = pa.schema([*spec.arrow_schema(), pa.field(ABSENT, pa.bool_())])
    return conform(rows, schema, constants=dict(zip(spec.chunk_by, key, strict=True)))


def record_sealed(cur: Any, settings: Settings, spec: TableSpec, old_rows: Sequence[pa.Table],
                  known_at: dt.datetime | None) -> int:
    """History rows for sealed rows a restatement changed (``old_rows``: their previous
    values). A version starts where the key's last recorded version ended, else at
    ``-infinity`` (a chunk keeps no per-row insertion time); it ends at ``known_at`` or
    the server's clock (read after the chunk's row lock: later than any earlier writer)."""

    parts = [t for t in old_rows if t.num_rows]
    if not parts or not keeps_history(settings, spec):
        return 0
    table = pa.concat_tables(parts)
    temp = f"_rio_hist_{spec.key}"
    columns = ", ".join(f"{quote_ident(c.name)} {c.pg_type}" for c in spec.columns) + f", {ABSENT} BOOLEAN"
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {quote_ident(temp)} ({columns}) ON COMMIT DELETE ROWS")
    cur.execute(f"TRUNCATE {quote_ident(temp)}")
    copy_into(cur, temp, table, temporary=True)
    hist = history_table(spec, settings)
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    s_cols = ", ".join(f"s.{quote_ident(c.name)}" for c in spec.columns)
    # The previous versions' ends, found by key (not by a correlated subquery over the temp
    # table, which Citus refuses to join with the distributed history: see key_row).
    keys = ", ".join(quote_ident(c) for c in spec.primary_key)
    prev = (f"WITH prev AS (SELECT {keys}, max({KNOWN_TO}) AS ended, "
            f"max({KNOWN_TO}) + interval '1 microsecond' AS just_after FROM {hist} "
            f"WHERE {key_row(spec)} IN (SELECT {keys} FROM pg_temp.{quote_ident(temp)}) GROUP BY {keys}) ")
    if known_at is not None:
        # The sealed row's current version is known since its last recorded version ended:
        # the same order rule, and the same WriteError, as the row tier (_check_order).
        s_keys = ", ".join(f"s.{quote_ident(c)}::text" for c in spec.primary_key)
        cur.execute(f"{prev}SELECT {s_keys}, p.ended::text, $1::timestamptz::text FROM pg_temp.{quote_ident(temp)} s "
                    f"JOIN prev p ON {_join(spec, 'p', 's')} WHERE p.ended >= $1::timestamptz LIMIT 1",
                    parameters=(known_at.isoformat(),))
        row = cur.fetchone()
        if row:
            *key, known, new = row
            raise WriteError(f"{spec.key}: known_at {new} is not after the stored version's knowledge time "
                             f"{known} (key ({', '.join(spec.primary_key)})=({', '.join(map(str, key))})); write "
                             "the vintages of a row in knowledge order; nothing was written", table=spec.key)
    # Without known_at the clock ends the version, or a microsecond after a version that
    # an earlier known_at= dated in the future (as the row tier's greatest()). The clock is
    # read first and bound: Citus evaluates a volatile function of the target list on the
    # coordinator, which fails when the expression also holds a column ("bogus varno").
    if known_at is None:
        cur.execute("SELECT clock_timestamp()::text")
        ended = cur.fetchone()[0]
    else:
        ended = known_at.isoformat()
    cur.execute(f"{prev}INSERT INTO {hist} ({cols}, {ABSENT}, {KNOWN_FROM}, {KNOWN_TO}) "
                f"SELECT {s_cols}, s.{ABSENT}, coalesce(p.ended, '-infinity'::timestamptz), "
                f"greatest($1::timestamptz, p.just_after) "
                f"FROM pg_temp.{quote_ident(temp)} s LEFT JOIN prev p ON {_join(spec, 'p', 's')}",
                parameters=(ended,))
    return table.num_rows


# ---------------------------------------------------------------------------------------
# Retention


def clean_history(cur: Any, settings: Settings, spec: TableSpec, cutoff: dt.datetime, *, dry_run: bool) -> int:
    """Remove (or count) superseded versions: those of rows older than ``cutoff`` (the
    row retention) and those superseded more than ``history_days`` ago. Returns how many."""
    hist = history_table(spec, settings)
    cur.execute("SELECT to_regclass($1::text) IS NOT NULL", parameters=(hist,))
    row = cur.fetchone()
    if not (row and row[0]):
        return 0
    column = quote_ident(spec.time_column or "created_at")
    where = f"{column} < $1::timestamp"
    params: tuple[Any, ...] = (cutoff,)
    if settings.history_days is not None:
        where += f" OR {KNOWN_TO} < now() - make_interval(days => $2::int)"
        params = (cutoff, settings.history_days)
    sql = (f"SELECT count(*) FROM {hist} WHERE {where}" if dry_run else
           f"WITH d AS (DELETE FROM {hist} WHERE {where} RETURNING 1) SELECT count(*) FROM d")
    cur.execute(sql, parameters=params)
    row = cur.fetchone()
    removed = int(row[0]) if row and row[0] is not None else 0
    if removed:
        log.info("cleanup: %s superseded version(s) of %s %s", removed, spec.key, "to remove" if dry_run else "removed")
    return removed
