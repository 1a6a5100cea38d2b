"""Knowledge time: superseded versions of changed rows, and reads as of an instant.

Each table that keeps history (``[DATABASE] history_tables``) has a companion
``<table>_history``: the row table's columns plus ``known_from``/``known_to``
(``timestamptz``), one row per superseded version, keyed by the natural key plus
``known_from``. The row table carries ``known_from`` too (NULL: known since the row was
inserted, i.e. ``created_at``). Only the update path of a staged upsert writes history:
unchanged rows and appends (COPY) write none.

Versioned merge (``on_conflict="update"`` on a history table), in the write transaction:

1. per-symbol advisory locks (exclusive, sorted), then one ``clock_timestamp()``: the
   knowledge time ``k`` of the write, read after every earlier writer of these symbols
   has committed, so chains grow in commit order;
2. ``INSERT ... ON CONFLICT DO NOTHING``: the new keys (after it, every staged key exists
   and is visible; a concurrent inserter of one of them has committed or rolled back);
3. the stored versions that the batch changes go to the history with ``[known_from, k)``;
4. ``ON CONFLICT DO UPDATE ... WHERE ... IS DISTINCT FROM``: the rows take the new values
   and ``known_from = k``.

Restating a sealed period records the changed chunk rows the same way
(:func:`record_sealed`); a sealed row's own insertion time is not kept in the chunk,
so its first version counts as known from ``-infinity`` (docs/history.md).

Reads as of ``t`` replace the row table in a reader's SQL by
``(current rows known by t UNION ALL versions whose interval holds t [UNION ALL sealed
rows not superseded after t])``: every SQL reader answers as of ``t`` unchanged.
"""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from ._readsql import EARLIEST, LATEST, Query, TimeRange, parse_time
from ._sql import literal, qualified, quote_ident
from .errors import UsageError, WriteError
from .tables import TableSpec
from .types import DateLike, ReturnType

if TYPE_CHECKING:
    from .config import Settings
    from .database import Database

__all__ = ["as_of_instant", "history_sql", "history_table", "keeps_history", "known_at_instant", "record_sealed",
           "run_as_of", "versioned_merge"]

log = logging.getLogger(__name__)

KNOWN_FROM = "known_from"
KNOWN_TO = "known_to"
# A history row that records that the key had no value yet (a row added to a sealed chunk).
ABSENT = "absent"
# The per-row knowledge time column of a vintages stage table.
ROW_KNOWN_AT = "__known_at"


def history_table(spec: TableSpec, settings: Settings) -> str:
    """The quoted ``"schema"."<table>_history"``."""
    return qualified(settings.schema, f"{settings.table_name(spec.key)}_history")


def keeps_history(settings: Settings, spec: TableSpec) -> bool:
    return spec.key in settings.history_tables


def history_sql(spec: TableSpec, settings: Settings) -> list[str]:
    """DDL: ``known_from`` on the row table (added when missing) and ``<table>_history``.

    The history table has the row table's ``id``, declared columns and ``created_at``,
    then ``known_from``/``known_to``; primary key: the natural key plus ``known_from``
    (symbol first, so on Citus it distributes and co-locates like the row table).
    """
    from ._schema import qualified_table

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


def _join(spec: TableSpec, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{quote_ident(c)} = {right}.{quote_ident(c)}" for c in spec.primary_key)


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
    ``_stage_and_merge`` returns: inserted, updated and the catalog's per-series rows.

    ``per_row``: the stage has a ``__known_at`` column, each row's knowledge time (the
    vintages of ``known_at=<column>``); otherwise ``known_at`` or the server's clock."""
    from ._schema import qualified_table
    from ._writing import _merge_sql, merged_counts

    row_known = f'"{ROW_KNOWN_AT}"'
    if on_conflict != "update":  # inserts only: no version is superseded
        at = row_known if per_row else None if known_at is None else "$1::timestamptz"
        cur.execute(_merge_sql(spec, db, on_conflict, known_from=at, stage=stage),
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
        cur.execute(_merge_sql(spec, db, "ignore", known_from=insert_at if known_at or per_row else None,
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
    cur.execute(_merge_sql(spec, db, "update", known_from=row_known if per_row else "$1::timestamptz",
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


def changed_rows(spec: TableSpec, existing: pa.Table | None, incoming: pa.Table, key: tuple[Any, ...]) -> pa.Table:
    """What a merge of ``incoming`` into one chunk (``existing``) supersedes, with every
    declared column (the chunk key ``key`` filled in) and ``absent``: the previous values
    of the rows it changes (``absent`` false), and the rows it adds (``absent`` true: the
    key had no value before; a chunk row keeps no insertion time, so this is recorded)."""
    import polars as pl

    inner = [c for c in spec.primary_key if c not in spec.chunk_by]
    values = [c for c in spec.chunk_columns if c not in inner]
    new = pl.from_arrow(incoming.select(list(spec.chunk_columns)))
    assert isinstance(new, pl.DataFrame)
    if existing is None or existing.num_rows == 0:
        parts = [new.with_columns(pl.lit(True).alias(ABSENT))]
    else:
        old = pl.from_arrow(existing.select(list(spec.chunk_columns)))
        assert isinstance(old, pl.DataFrame)
        both = old.join(new, on=inner, how="inner", suffix="__new", nulls_equal=True)
        changed = pl.lit(False)
        for v in values:
            changed = changed | ~pl.col(v).eq_missing(pl.col(f"{v}__new"))
        parts = [both.filter(changed).select(list(spec.chunk_columns)).with_columns(pl.lit(False).alias(ABSENT)),
                 new.join(old, on=inner, how="anti", nulls_equal=True).with_columns(pl.lit(True).alias(ABSENT))]
    out = pl.concat(parts)
    for name, value in zip(spec.chunk_by, key, strict=True):
        out = out.with_columns(pl.lit(value).alias(name))
    table = out.select([*spec.column_names, ABSENT]).to_arrow()
    return table.cast(pa.schema([*spec.arrow_schema(), pa.field(ABSENT, pa.bool_())]))


def record_sealed(cur: Any, settings: Settings, spec: TableSpec, old_rows: Sequence[pa.Table],
                  known_at: dt.datetime | None) -> int:
    """History rows for sealed rows a restatement changed (``old_rows``: their previous
    values). A version starts where the key's last recorded version ended, else at
    ``-infinity`` (a chunk keeps no per-row insertion time); it ends at ``known_at`` or
    the server's clock (read after the chunk's row lock: later than any earlier writer)."""
    from ._writing import _ingest

    parts = [t for t in old_rows if t.num_rows]
    if not parts or not keeps_history(settings, spec):
        return 0
    table = pa.concat_tables(parts)
    temp = f"_rio_hist_{spec.key}"
    columns = ", ".join(f"{quote_ident(c.name)} {c.pg_type}" for c in spec.columns) + f", {ABSENT} BOOLEAN"
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {quote_ident(temp)} ({columns}) ON COMMIT DELETE ROWS")
    cur.execute(f"TRUNCATE {quote_ident(temp)}")
    _ingest(cur, temp, table, temporary=True)
    hist = history_table(spec, settings)
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    s_cols = ", ".join(f"s.{quote_ident(c.name)}" for c in spec.columns)
    cur.execute(f"INSERT INTO {hist} ({cols}, {ABSENT}, {KNOWN_FROM}, {KNOWN_TO}) "
                f"SELECT {s_cols}, s.{ABSENT}, "
                f"coalesce((SELECT max(h.{KNOWN_TO}) FROM {hist} h WHERE {_join(spec, 'h', 's')}), "
                f"'-infinity'::timestamptz), coalesce($1::timestamptz, clock_timestamp()) "
                f"FROM pg_temp.{quote_ident(temp)} s",
                parameters=(known_at.isoformat() if known_at else None,))
    return table.num_rows


# ---------------------------------------------------------------------------------------
# Reading


def as_of_view(db: Database, spec: TableSpec, q: Query, as_of: dt.datetime, *, sealed_temp: str | None) -> str:
    """The row table as known at ``as_of``, as a parenthesised subquery (module docstring)."""
    target = db.table(spec.key)
    hist = history_table(spec, db.settings)
    # A naive UTC value turned into timestamptz by an immutable expression: folded into a
    # constant when the plan is made (a text parameter cast to timestamptz is parsed per row).
    at = f"({q.param(as_of.astimezone(dt.timezone.utc).replace(tzinfo=None))} AT TIME ZONE 'UTC')"
    zone = f"{q.param(db.settings.storage_timezone)}::text"
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    parts = [f"SELECT id, {cols}, created_at FROM {target} r WHERE {stored_known_from('r', zone)} <= {at}",
             f"SELECT id, {cols}, created_at FROM {hist} h WHERE h.{KNOWN_FROM} <= {at} AND h.{KNOWN_TO} > {at} "
             f"AND NOT h.{ABSENT}"]
    if sealed_temp is not None:
        parts.append(f"SELECT NULL::int8, {cols}, NULL::timestamp FROM pg_temp.{quote_ident(sealed_temp)} s "
                     f"WHERE NOT EXISTS (SELECT 1 FROM {hist} h WHERE {_join(spec, 'h', 's')} "
                     f"AND h.{KNOWN_TO} > {at})")
    return "(" + " UNION ALL ".join(parts) + ")"


_MAX_TRIES = 3


def run_as_of(db: Database, spec: TableSpec, q: Query, sql: str, *, as_of: dt.datetime,
              scope: tuple[list[str], TimeRange, Sequence[tuple[str, Any]]], what: str,
              engine: Literal["cx", "adbc"] = "adbc") -> pa.Table:
    """Run a reader's ``sql`` (which names the row table) as of ``as_of``, over both tiers.

    Sealed rows of ``scope`` (symbols, window, filters) are decoded into a temporary table
    on a primary connection when any overlap; otherwise the query runs on ``engine``.
    """
    from ._chunkread import guarded, sealed_rows, sealed_versions
    from ._readsql import _pooled_read, read_adbc, read_cx

    target = db.table(spec.key)

    def plain() -> pa.Table:
        qq = _copy(q)
        text = sql.replace(target, as_of_view(db, spec, qq, as_of, sealed_temp=None))
        if engine == "cx":
            return read_cx(db, qq, text, what=what, table=spec.key)
        return read_adbc(db, qq, text, what=what, table=spec.key)

    if not spec.sealable:
        return plain()
    symbols, rng, extra = scope
    for _ in range(_MAX_TRIES):
        sealed, before = guarded(lambda: sealed_rows(db, spec, symbols, rng, extra), plain)
        if sealed.num_rows == 0:
            result = plain()
        else:
            result = _pooled_read(db, partial(_run_with_sealed, db, spec, sealed, q, sql, as_of), what=what,
                                  table=spec.key)
        if sealed_versions(db, spec, symbols, rng, extra) == before:
            return result
    from .errors import ReadError

    raise ReadError(f"{spec.key}: history was sealed or unsealed during each of {_MAX_TRIES} attempts to read it; "
                    "try again", table=spec.key)


def _copy(q: Query) -> Query:
    out = Query()
    out.params = list(q.params)
    return out


def _run_with_sealed(db: Database, spec: TableSpec, sealed: pa.Table, q: Query, sql: str,
                     as_of: dt.datetime) -> pa.Table:
    from ._writing import _ingest, session_table

    temp = f"_rio_asof_{spec.key}"
    qq = _copy(q)
    text = sql.replace(db.table(spec.key), as_of_view(db, spec, qq, as_of, sealed_temp=temp))
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            session_table(cur, spec, temp)
            _ingest(cur, temp, sealed, temporary=True)
            cur.execute(text, parameters=tuple(qq.params) if qq.params else None)
            return cur.fetch_arrow_table()
        finally:
            cur.close()


def history_rows(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange | None,
                 exact: bool) -> pa.Table:
    """Every version of the rows of ``symbols`` in ``rng``: the superseded ones and the
    current one, each with ``known_from`` and ``known_to`` (null: still current), ordered
    by the natural key, then ``known_from``."""
    from ._chunkread import sealed_rows
    from ._decode import reader_schema
    from ._frames import conform
    from ._readsql import read_adbc
    from ._sqltext import range_order, select_list, symbol_condition

    q = Query()
    names = list(spec.column_names)
    select = select_list(spec, names, exact=exact, engine="adbc", alias="v")
    zone = f"{q.param(db.settings.storage_timezone)}::text"
    conds = [symbol_condition(q, symbols).replace("t.", "v.")]
    if rng is not None and spec.time_column:
        conds += rng.conditions(q, f"v.{quote_ident(spec.time_column)}")
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    order = ", ".join(f"v.{quote_ident(c)}" for c in range_order(spec))
    sql = (f"SELECT {select}, v.{KNOWN_FROM}, v.{KNOWN_TO}, v.{ABSENT} FROM ("
           f"SELECT {cols}, {stored_known_from('r', zone)} AS {KNOWN_FROM}, NULL::timestamptz AS {KNOWN_TO}, "
           f"false AS {ABSENT} FROM {db.table(spec.key)} r UNION ALL "
           f"SELECT {cols}, {KNOWN_FROM}, {KNOWN_TO}, {ABSENT} FROM {history_table(spec, db.settings)}) v "
           f"WHERE {' AND '.join(conds)} ORDER BY {order}, v.{KNOWN_FROM}")
    table = read_adbc(db, q, sql, what="history", table=spec.key)
    schema = reader_schema(spec, names, exact=exact)
    utc = pa.timestamp("us", tz="UTC")
    full = pa.schema([*schema, pa.field(KNOWN_FROM, utc), pa.field(KNOWN_TO, utc)])
    table = conform(_infinite_to_null(table), pa.schema([*full, pa.field(ABSENT, pa.bool_())]))
    if spec.sealable and rng is not None:
        sealed, _ = sealed_rows(db, spec, symbols, rng, [])
        if sealed.num_rows:
            table = _with_sealed_current(db, spec, table, sealed, schema)
    # "No value yet" records (rows added to sealed chunks) only date the next version.
    return table.filter(pc.invert(table.column(ABSENT))).drop_columns([ABSENT]).cast(full)


def _infinite_to_null(table: pa.Table) -> pa.Table:
    """``-infinity`` knowledge starts come back as the type's minimum: show them as null."""
    for name in (KNOWN_FROM, KNOWN_TO):
        if name in table.column_names:
            col = table.column(name)
            if pa.types.is_timestamp(col.type):
                low = pa.scalar(dt.datetime(1, 1, 2, tzinfo=dt.timezone.utc), col.type)
                masked = pc.if_else(pc.less(col, low), pa.scalar(None, col.type), col)
                table = table.set_column(table.column_names.index(name), name, masked)
    return table


def _with_sealed_current(db: Database, spec: TableSpec, table: pa.Table, sealed: pa.Table,
                         schema: pa.Schema) -> pa.Table:
    """Add the current versions held in sealed chunks (known since the key's last
    superseded version ended, null when it never changed)."""
    import polars as pl

    from ._chunkread import to_reader

    current = pl.from_arrow(to_reader(spec, sealed, schema))
    have = pl.from_arrow(table)
    assert isinstance(current, pl.DataFrame) and isinstance(have, pl.DataFrame)
    key = list(spec.primary_key)
    starts = (have.filter(pl.col(KNOWN_TO).is_not_null()).group_by(key)
              .agg(pl.col(KNOWN_TO).max().alias(KNOWN_FROM)))
    current = current.join(starts, on=key, how="left").with_columns(
        pl.lit(None, dtype=have.schema[KNOWN_TO]).alias(KNOWN_TO), pl.lit(False).alias(ABSENT))
    both = pl.concat([have, current.select(have.columns)], how="vertical")
    both = both.sort([*key, KNOWN_FROM], nulls_last=False)
    return both.to_arrow().cast(table.schema)


# ---------------------------------------------------------------------------------------
# known_at: vintages


def vintages(db: Database, spec: TableSpec, data: Any, known_at: Any, options: dict[str, Any], *,
             stream: bool) -> list[tuple[dt.datetime | None, pa.Table]] | None:
    """The validated batches of a write with ``known_at``, each with its knowledge time,
    in knowledge order: one for a timestamp, one per distinct value for a column name."""
    import polars as pl

    from ._frames import to_polars
    from ._validation import validate

    if not keeps_history(db.settings, spec):
        known_at_instant(db, spec, known_at)  # raises the UsageError
    if stream:
        raise UsageError(f"{spec.key}: known_at= takes one frame, not a stream of chunks", table=spec.key,
                         value=known_at)
    frame = to_polars(data, what=spec.key) if isinstance(known_at, str) else None
    if frame is not None and isinstance(known_at, str) and known_at in frame.columns:
        column = frame.schema[known_at]
        if not isinstance(column, pl.Datetime):
            raise UsageError(f"{spec.key}: known_at column {known_at!r} must hold datetimes, not {column}",
                             table=spec.key, column=known_at)
        if frame[known_at].null_count():
            raise UsageError(f"{spec.key}: known_at column {known_at!r} has nulls; every row needs its "
                             "knowledge time", table=spec.key, column=known_at)
        zone = db.settings.storage_timezone
        stamps = frame[known_at]
        if getattr(stamps.dtype, "time_zone", None) is None:
            stamps = stamps.dt.replace_time_zone(zone)
        frame = frame.with_columns(stamps.dt.convert_time_zone("UTC").alias(known_at))
        out: list[tuple[dt.datetime | None, pa.Table]] = []
        if _has_chunks(db, spec, frame):
            # Sealed periods merge chunk by chunk with one knowledge time: one vintage per value.
            for (value,), part in sorted(frame.partition_by(known_at, as_dict=True, maintain_order=True).items(),
                                         key=lambda kv: kv[0][0]):
                out.append((value, validate(spec, part.drop(known_at), **options)))
            return out
        # One merge per rank: every key's first version, then every key's second..., each
        # row with its own knowledge time (a live archive has one version per key: one merge).
        keys = [c for c in spec.primary_key if c in frame.columns]
        ranked = frame.with_columns(pl.col(known_at).rank("ordinal").over(keys).alias("__rank"))
        for (_,), part in sorted(ranked.partition_by("__rank", as_dict=True, maintain_order=True).items(),
                                 key=lambda kv: kv[0][0]):
            batch = validate(spec, part.drop(known_at, "__rank"), **options)
            if batch.num_rows != part.height:
                raise UsageError(f"{spec.key}: with known_at={known_at!r}, write rows whose keys are spelled "
                                 "the same way (the vintages of one row are ranked by key)", table=spec.key)
            stamps_us = part[known_at].dt.cast_time_unit("us").to_arrow()
            out.append((None, batch.append_column(ROW_KNOWN_AT, stamps_us)))
        return out
    try:
        when = known_at_instant(db, spec, known_at)
    except UsageError:
        if isinstance(known_at, str):
            raise UsageError(f"{spec.key}: known_at={known_at!r} is neither a column of the data nor a timestamp",
                             table=spec.key, value=known_at) from None
        raise
    assert when is not None
    return [(when, validate(spec, data, **options))]


def _has_chunks(db: Database, spec: TableSpec, frame: Any) -> bool:
    """Whether sealed chunks exist for the symbols and periods of ``frame`` (raw input)."""
    import polars as pl

    from ._chunkstore import existing_chunks, period_range

    if not spec.sealable or spec.time_column not in frame.columns or "symbol" not in frame.columns:
        return False
    times = frame[spec.time_column]
    if not isinstance(times.dtype, pl.Datetime) or times.null_count() == len(times):
        return True  # unparsed times: take the exact (slower) path
    symbols = [str(v) for v in frame["symbol"].drop_nulls().unique().to_list()]
    periods = period_range(times.min().date(), times.max().date())  # type: ignore[union-attr]
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            return bool(existing_chunks(cur, db.settings, spec, symbols, periods))
        finally:
            cur.close()


def save_vintages(db: Database, spec: TableSpec, batches: list[tuple[dt.datetime | None, pa.Table]], *,
                  on_conflict: Any, chunk_rows: int, tier: Any) -> Any:
    """Write ``batches`` in one transaction, each merged (staged) with its knowledge time
    (``None``: each row's own, in its ``__known_at`` column)."""
    import time

    import adbc_driver_manager

    from . import _catalog as catalog
    from ._chunkstore import route_batch
    from ._driver_errors import write_error
    from ._schema import ANALYZE_AFTER_ROWS, analyze_fresh_partitions
    from ._timezones import record_time_kind, time_kind
    from ._writing import WriteResult, _sealed_series, _stage_and_merge, _time_range

    started = time.perf_counter()
    rows = sum(b.num_rows for _, b in batches)
    if rows == 0:
        return WriteResult(spec.key, 0, 0, 0, 0, "empty")
    spans = [r for r in (_time_range(spec, b) for _, b in batches) if r is not None]
    try:
        if spans:
            db.partitions.ensure(db.pool, db.settings, spec, min(s[0] for s in spans), max(s[1] for s in spans))
        inserted = updated = 0
        with db.connection() as conn:
            cur = conn.cursor()
            try:
                for when, batch in batches:
                    if batch.num_rows == 0:
                        continue
                    record_time_kind(cur, db, spec, time_kind(batch))
                    per_row = when is None
                    data = batch.drop_columns([ROW_KNOWN_AT]) if per_row else batch
                    # Per-row vintages were checked to touch no sealed chunk; routing still takes
                    # the period locks (a period sealed since then gets the group's latest time).
                    at = pc.max(batch.column(ROW_KNOWN_AT)).as_py() if per_row else when
                    rest, sealed = route_batch(cur, db.settings, spec, data, on_conflict=on_conflict,
                                               sealed_tier=tier == "sealed", known_at=at)
                    inserted, updated = inserted + sealed.inserted, updated + sealed.updated
                    series = _sealed_series(spec, sealed)
                    if rest.num_rows and per_row:
                        ins, upd, merged = _merge_per_row(cur, db, spec, batch, rest, on_conflict)
                        inserted, updated = inserted + ins, updated + upd
                        series += merged
                    elif rest.num_rows:
                        ins, upd, merged = _stage_and_merge(cur, db, spec, [rest], on_conflict, chunk_rows, None,
                                                            rest.num_rows, known_at=when)
                        inserted, updated = inserted + ins, updated + upd
                        series += merged
                    catalog.record_writes(cur, db.settings, spec, series)
            finally:
                cur.close()
    except adbc_driver_manager.Error as err:
        db.partitions.forget()
        raise write_error(err, db, spec) from err
    if rows >= ANALYZE_AFTER_ROWS:
        analyze_fresh_partitions(db.pool, db.settings, spec)  # committed: statistics for new partitions
    return WriteResult(spec.key, rows, inserted, updated, rows - inserted - updated, "staged",
                       time.perf_counter() - started)


def latest_as_of(db: Database, spec: TableSpec, wanted: list[str] | None, timeframe: str | None, *, exact: bool,
                 as_of: dt.datetime) -> pa.Table:
    """``get_latest`` as of ``as_of``: per series of the catalog, its newest row as then
    known (one ``ORDER BY timestamp DESC LIMIT 1`` over the table as of ``as_of``)."""
    from ._catalog import catalog_table
    from ._readsql import read_lookup
    from ._sqltext import catalog_series, select_list

    q = Query()
    c = catalog_series(q, spec, wanted, timeframe=timeframe)
    sql = (f"SELECT l.* FROM (SELECT DISTINCT {c.columns} FROM {catalog_table(db.settings)} s "
           f"WHERE {c.where}) s CROSS JOIN LATERAL (SELECT "
           f"{select_list(spec, list(spec.column_names), exact=exact, engine='adbc', alias='t')} "
           f"FROM {db.table(spec.key)} t WHERE {c.match} ORDER BY t.{c.time} DESC LIMIT 1) l ORDER BY {c.order}")
    symbols = wanted
    if symbols is None:
        qs = Query()
        found = read_lookup(db, qs, f"SELECT DISTINCT symbol FROM {catalog_table(db.settings)} "
                            f"WHERE table_key = {qs.param(spec.key)}", what="get_latest", table=spec.key)
        symbols = [str(v) for v in found.column("symbol").to_pylist()]
    extra = [("timeframe", timeframe)] if timeframe is not None else []
    everything = TimeRange(EARLIEST, LATEST, end_exclusive=False)
    return run_as_of(db, spec, q, sql, as_of=as_of, scope=(symbols, everything, extra), what="get_latest")


# ---------------------------------------------------------------------------------------
# The public reader of versions


def history(db: Database, table: str, symbol: str | Sequence[str] | None = None, start_date: DateLike | None = None,
            end_date: DateLike | None = None, *, symbols: Sequence[str] | None = None, exact: bool = False,
            return_type: ReturnType = "polars") -> Any:
    """Every version of the rows of ``symbol`` in ``[start_date, end_date]``, each with
    the interval ``[known_from, known_to)`` during which it was the known value.

    The current version has ``known_to`` null; a version known since before it was
    sealed (chunks keep no per-row insertion time) has ``known_from`` null. Rows are
    ordered by the natural key, then ``known_from``. Knowledge times are UTC.

    Example:
        >>> history(db, "market_regimes_1min", "NIFTY", "2024-01-02", "2024-01-02")  # doctest: +SKIP
    """
    from ._frames import check_return_type, convert
    from ._readsql import parse_range, resolve_symbols
    from .tables import table_spec

    check_return_type(return_type)
    spec = table_spec(table)
    if not keeps_history(db.settings, spec):
        raise UsageError(f"{spec.key} keeps no history; add it to [DATABASE] history_tables (docs/history.md)",
                         table=spec.key, value=table)
    wanted = resolve_symbols(symbol, symbols)
    assert wanted is not None
    rng = parse_range(start_date, end_date, timezone=db.settings.storage_timezone) if spec.time_column else None
    if not wanted:
        from ._decode import reader_schema

        utc = pa.timestamp("us", tz="UTC")
        schema = pa.schema([*reader_schema(spec, list(spec.column_names), exact=exact),
                            pa.field(KNOWN_FROM, utc), pa.field(KNOWN_TO, utc)])
        return convert(schema.empty_table(), return_type)
    return convert(history_rows(db, spec, wanted, rng, exact), return_type)


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


# ---------------------------------------------------------------------------------------
# The point-in-time as-of join


def pit_versions(db: Database, spec: TableSpec, symbols: list[str], first: dt.datetime, last: dt.datetime, *,
                 tolerance: dt.timedelta | None, timeframe: str | None, names: list[str]) -> Any:
    """Every version of the regime rows that bars stamped in ``[first, last]`` may get, as a
    polars frame: ``names`` plus ``__kf``/``__kt`` (knowledge interval, naive storage-zone
    times; null: unbounded) and ``__timeframe``. The window starts at ``first - tolerance``,
    or without a tolerance at the oldest of each symbol's newest row before ``first``."""
    import polars as pl

    from ._catalog import catalog_table
    from ._chunkread import sealed_floor, sealed_rows, to_reader
    from ._decode import decimal_text_to_float, reader_schema
    from ._frames import conform
    from ._readsql import read_adbc, read_lookup
    from ._sqltext import select_list

    zone = db.settings.storage_timezone
    target = db.table(spec.key)
    tf_cond = ' AND t."timeframe" = $3' if timeframe is not None else ""
    lo = first - tolerance if tolerance is not None else first
    if tolerance is None:
        q = Query()
        p_sym, p_first = q.param(symbols), q.param(first)
        if timeframe is not None:
            q.param(timeframe)
        sql = (f"SELECT min(l.ts) AS lo FROM (SELECT DISTINCT c.symbol FROM {catalog_table(db.settings)} c "
               f"WHERE c.table_key = {q.param(spec.key)} AND c.symbol = ANY({p_sym}::text[])) s "
               f'CROSS JOIN LATERAL (SELECT t."timestamp" AS ts FROM {target} t WHERE t."symbol" = s.symbol{tf_cond} '
               f'AND t."timestamp" < {p_first} ORDER BY t."timestamp" DESC LIMIT 1) l')
        found = read_lookup(db, q, sql, what="asof_regimes", table=spec.key).column("lo").to_pylist()
        if found and found[0] is not None:
            lo = min(lo, found[0])
        if spec.sealable:
            lo = min(lo, sealed_floor(db, spec, symbols, first))
    q = Query()
    z = f"{q.param(zone)}::text"
    select = select_list(spec, names, exact=False, engine="adbc", alias="v")
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    conds = [f'v."symbol" = ANY({q.param(symbols)}::text[])', f'v."timestamp" >= {q.param(lo)}',
             f'v."timestamp" <= {q.param(last)}']
    if timeframe is not None:
        conds.append(f'v."timeframe" = {q.param(timeframe)}')
    has_tf = "timeframe" in spec.column_names
    tf_col = 'v."timeframe"' if has_tf else "NULL::text"
    sql = (f"SELECT {select}, {tf_col} AS __timeframe, "
           f"CASE WHEN isfinite(v.kf) THEN v.kf AT TIME ZONE {z} END AS __kf, "
           f"CASE WHEN isfinite(v.kt) THEN v.kt AT TIME ZONE {z} END AS __kt, v.{ABSENT} AS __absent FROM ("
           f"SELECT {cols}, {stored_known_from('r', z)} AS kf, NULL::timestamptz AS kt, false AS {ABSENT} "
           f"FROM {target} r UNION ALL SELECT {cols}, {KNOWN_FROM}, {KNOWN_TO}, {ABSENT} "
           f"FROM {history_table(spec, db.settings)}) v WHERE {' AND '.join(conds)}")
    schema = reader_schema(spec, names, exact=False)
    extra_fields = [pa.field("__timeframe", pa.string()), pa.field("__kf", pa.timestamp("us")),
                    pa.field("__kt", pa.timestamp("us")), pa.field("__absent", pa.bool_())]
    full = pa.schema([*schema, *extra_fields])
    rows = conform(decimal_text_to_float(read_adbc(db, q, sql, what="asof_regimes", table=spec.key), spec), full)
    frame = pl.from_arrow(rows)
    assert isinstance(frame, pl.DataFrame)
    if spec.sealable:
        extra = [("timeframe", timeframe)] if timeframe is not None else []
        sealed, _ = sealed_rows(db, spec, symbols, TimeRange(lo, last, end_exclusive=False), extra)
        if sealed.num_rows:
            wide = pa.schema([*schema, *([spec.read_schema(exact=False).field("timeframe")] if has_tf else [])])
            current = pl.from_arrow(to_reader(spec, sealed, wide))
            assert isinstance(current, pl.DataFrame)
            key = ["symbol", "timestamp", *(["__timeframe"] if has_tf else [])]
            if has_tf:
                current = current.rename({"timeframe": "__timeframe"})
            else:
                current = current.with_columns(pl.lit(None, dtype=pl.String).alias("__timeframe"))
            starts = (frame.filter(pl.col("__kt").is_not_null()).group_by(key)
                      .agg(pl.col("__kt").max().alias("__kf")))
            current = current.join(starts, on=key, how="left").with_columns(
                pl.lit(None, dtype=pl.Datetime("us")).alias("__kt"), pl.lit(False).alias("__absent"))
            frame = pl.concat([frame, current.select(frame.columns)])
    return frame.filter(~pl.col("__absent")).drop("__absent")


def pit_join(left: Any, versions: Any, *, lag: dt.timedelta, tolerance: dt.timedelta | None) -> Any:
    """Each bar of ``left`` (``symbol``, ``timestamp``) with the newest regime row stamped at
    or before it whose version was known at the bar's time plus ``lag``, in that version.

    A regime row is usable by a bar at ``b`` once ``b >= its timestamp`` and ``b + lag >=
    the start of its first version``: both hold from ``max(timestamp, first start - lag)``
    on, so the newest usable row is a running maximum over rows ordered by that instant
    (one as-of join); its version known at ``b + lag`` is then one per chain."""
    import polars as pl

    kf, kt = pl.col("__kf"), pl.col("__kt")
    keys = (versions.group_by("symbol", "timestamp")
            .agg(pl.when(kf.is_null().any()).then(None).otherwise(kf.min()).alias("__first")))
    keys = keys.with_columns(pl.when(pl.col("__first").is_null()).then(pl.col("timestamp"))
                             .otherwise(pl.max_horizontal(pl.col("timestamp"), pl.col("__first") - lag))
                             .alias("__usable"))
    keys = keys.sort("symbol", "__usable").with_columns(pl.col("timestamp").cum_max().over("symbol").alias("__best"))
    keys = keys.select("symbol", "__usable", "__best").sort("__usable")
    bars = left.sort("timestamp", maintain_order=True)
    picked = bars.join_asof(keys, left_on="timestamp", right_on="__usable", by="symbol", strategy="backward",
                            check_sortedness=False)
    if tolerance is not None:
        picked = picked.with_columns(pl.when(pl.col("timestamp") - pl.col("__best") <= tolerance)
                                     .then(pl.col("__best")).alias("__best"))
    known = pl.col("timestamp") + lag
    chosen = picked.join(versions.rename({"timestamp": "regime_timestamp"}), left_on=["symbol", "__best"],
                         right_on=["symbol", "regime_timestamp"], how="left", coalesce=False)
    chosen = chosen.filter(pl.col("__best").is_null()
                           | ((kf.is_null() | (kf <= known)) & (kt.is_null() | (known < kt))))
    return chosen.drop("__usable", "__best", "__kf", "__kt", *(["symbol_right"] if "symbol_right" in chosen.columns
                                                                else []))


def _merge_per_row(cur: Any, db: Database, spec: TableSpec, batch: pa.Table, rest: pa.Table,
                   on_conflict: Any) -> tuple[int, int, list[dict[str, Any]]]:
    """Stage ``batch`` (with its ``__known_at`` column) and merge it, each row with its own
    knowledge time. ``rest`` is what routing left for the row tier (all of it, normally)."""
    from ._writing import _ingest

    if rest.num_rows != batch.num_rows:  # a period was sealed meanwhile: keep the rows routing left
        keys = {tuple(r.values()) for r in rest.select(list(spec.primary_key)).to_pylist()}
        mask = pa.array([tuple(r.values()) in keys for r in batch.select(list(spec.primary_key)).to_pylist()])
        batch = batch.filter(mask)
    stage = f"_rio_vstage_{spec.key}"
    columns = ", ".join(f"{quote_ident(c.name)} {c.wire_pg_type}" for c in spec.columns)
    cur.execute(f"CREATE TEMP TABLE IF NOT EXISTS {quote_ident(stage)} ({columns}, "
                f"{quote_ident(ROW_KNOWN_AT)} TIMESTAMPTZ) ON COMMIT DELETE ROWS")
    cur.execute(f"TRUNCATE {quote_ident(stage)}")
    _ingest(cur, stage, batch, temporary=True)
    return versioned_merge(cur, db, spec, stage, None, on_conflict, per_row=True)
