"""The sealed tier inside a transaction: period locks, chunk reads and writes, merges.

Used by sealing (``_sealing.py``) and by the writers (``_writing.py``); every function
takes a cursor of the caller's open transaction and never commits.

Locking protocol (one advisory lock per table and calendar month, transaction-scoped):

* writers take the period locks of the months they write **shared**: writers never wait
  for each other here (rows and chunk rows have their own locks), but a seal or unseal of
  one of those months waits for them, and they wait for it;
* seal, unseal, the ``tier="sealed"`` backfill and the cleanup of a boundary chunk take
  the lock **exclusive**: while it is held, no writer can add rows to the period's row
  tier or read a chunk state that is about to change;
* a writer that merges into a chunk locks the chunk's row (``SELECT ... FOR UPDATE``),
  so concurrent restatements of one chunk serialise, each decoding the previous one's
  result (READ COMMITTED re-reads the newest version after the wait).

So a row is never in both tiers: whether a series-month is sealed (its chunk exists) is
decided under the period lock, and every path that changes it holds the lock exclusive.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .._conn.copy import copy_into
from .._conn.pipeline import fetch_table, optional_sql, optional_text, run, run_arrays
from .._sql.names import chunk_table, qualified_table
from .._sql.query import Query
from .._sql.quote import literal, quote_ident
from ..errors import WriteError
from ..tables import TableSpec
from ..types import OnConflict
from . import changes as live
from . import chunk_bytes, knowledge
from . import sealed_format as chunks
from . import sealed_guard as guard
from .chunk_merge import ChunkMerge, MergeCounts, merge
from .column_codec import decimal_from_unscaled
from .row_groups import ChunkKey, SeriesKey, chunk_groups, period_range, periods_of, split_by_series, time_span
from .sealed_format import chunk_stat_columns

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "ChunkRow", "EncodedPatches", "Patch", "encode_patches", "existing_chunks", "fetch_chunk_rows",
    "fetch_for_update", "first_non_finite", "lock_periods", "patched", "route_batch", "route_staged", "select_rows",
    "stored_decimal_types", "write_chunks", "write_patches",
]


# ---------------------------------------------------------------------------------------
# Locks


def _lock_space(settings: Settings, spec: TableSpec) -> str:
    return f"regime_io.seal:{settings.schema}.{settings.table_name(spec.key)}"


def lock_periods(cur: Any, settings: Settings, spec: TableSpec, periods: Iterable[dt.date], *,
                 exclusive: bool) -> None:
    """Take the transaction-scoped period locks (sorted, so two lockers never deadlock).

    In the same statement, sets ``regime_io.tier_checked`` for the rest of the
    transaction: under these locks the caller decides which rows go to chunks, so the
    server-side guard (:mod:`regime_io._tiers.sealed_guard`) need not check its rows again.
    """
    keys = sorted({p.year * 12 + p.month - 1 for p in periods})
    if not keys:
        return
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    run(cur, f"SELECT count({fn}(hashtext($1::text), k)), "
        f"set_config({literal(guard.CHECKED_SETTING)}, 'on', true) FROM "
        "(SELECT (jsonb_array_elements_text($2::jsonb))::int4 AS k ORDER BY 1) s",
        (_lock_space(settings, spec), json.dumps(keys)))


# ---------------------------------------------------------------------------------------
# Reading chunks inside a transaction


def _key_filter(spec: TableSpec, keys: Sequence[SeriesKey], param: str, alias: str) -> str:
    """``(alias.k1, alias.k2) IN (...)`` over a JSON array of series keys bound as ``param``."""
    cols = ", ".join(f"{alias}.{quote_ident(c)}" for c in spec.chunk_by)
    picked = ", ".join(f"k.{quote_ident(c)}" for c in spec.chunk_by)
    return f"({cols}) IN (SELECT {picked} FROM jsonb_to_recordset({param}::jsonb) AS k({_key_record(spec)}))"


def _key_record(spec: TableSpec, *extra: str) -> str:
    """The column list of ``jsonb_to_recordset`` over series keys (:func:`_key_json`): the
    chunk key columns in their declared types, then ``extra`` ("name type")."""
    return ", ".join([*(f"{quote_ident(c)} {spec.column(c).pg_type}" for c in spec.chunk_by), *extra])


def _key_json(spec: TableSpec, key: SeriesKey) -> dict[str, Any]:
    return {c: chunks.json_value(v) for c, v in zip(spec.chunk_by, key, strict=True)}


def _keys_json(spec: TableSpec, keys: Iterable[SeriesKey]) -> str:
    return json.dumps([_key_json(spec, key) for key in keys])


def existing_chunks(cur: Any, settings: Settings, spec: TableSpec, symbols: Sequence[str],
                    periods: Sequence[dt.date]) -> set[ChunkKey]:
    """Which (series, period) chunks exist among these symbols and periods."""
    if not symbols or not periods:
        return set()
    key = ", ".join(quote_ident(c) for c in spec.chunk_by)
    cur.execute(f"SELECT {key}, period_start FROM {chunk_table(spec, settings)} "
                "WHERE symbol IN (SELECT jsonb_array_elements_text($1::jsonb)) "
                "AND period_start IN (SELECT (jsonb_array_elements_text($2::jsonb))::date)",
                parameters=(json.dumps(list(symbols)), json.dumps([p.isoformat() for p in periods])))
    return {(tuple(row[:-1]), row[-1]) for row in cur.fetchall()}


@dataclass(frozen=True)
class ChunkRow:
    """One chunk row read for update: its payload and patch as stored, and what deciding
    between patching it and rewriting it needs."""

    payload: pa.Buffer | None  # None when fetched without it (fetch_chunk_rows)
    patch: pa.Buffer | None
    fingerprint: str
    codec: str
    last_row: str | None  # JSON text; NULL in chunks written before schema version 8

    def rows(self, spec: TableSpec) -> pa.Table:
        """Every row of the chunk (payload with the patch laid over it), exact types."""
        assert self.payload is not None
        return chunks.decode(spec, self.payload, self.fingerprint, codec=self.codec, patch=self.patch)

    def patchable(self, spec: TableSpec) -> bool:
        """Whether a merge may add to this chunk's patch: written by this version's codec and
        declaration (patch and payload decode alike) with a ``last_row`` to keep current."""
        return self.codec == chunks.CODEC and self.fingerprint == chunks.fingerprint(spec) and self.last_row is not None

    def patch_rows(self, spec: TableSpec) -> pa.Table:
        if self.patch is None:
            return chunks.payload_schema(spec).empty_table()
        return chunks.decode_patch(spec, self.patch, self.fingerprint, codec=self.codec)


def fetch_chunk_rows(cur: Any, settings: Settings, spec: TableSpec, period: dt.date,
                     keys: Sequence[SeriesKey], *, payloads: bool = True) -> dict[SeriesKey, ChunkRow]:
    """The stored chunks of ``keys`` in ``period``, their rows locked until commit
    (``payloads=False``: all but the payload, see :func:`fetch_payloads`)."""
    if not keys:
        return {}
    key = ", ".join(quote_ident(c) for c in spec.chunk_by)
    rows: list[dict[str, Any]] = []
    for one, mine in _by_shard(settings, spec, keys):
        table = fetch_table(cur, f"SELECT {key}, schema_fingerprint, codec, {'payload' if payloads else 'NULL::bytea'} "
                                 "AS payload, patch, last_row::text AS last_row "
                                 f"FROM {chunk_table(spec, settings)} t "
                                 f"WHERE {one}t.period_start = $1 AND {_key_filter(spec, mine, '$2', 't')} "
                                 f"ORDER BY {key} FOR UPDATE", (period, _keys_json(spec, mine)))
        rows.extend(_with_buffers(table))
    return {tuple(row[c] for c in spec.chunk_by): ChunkRow(row["payload"], row["patch"], row["schema_fingerprint"],
                                                          row["codec"], row["last_row"]) for row in rows}


def _by_shard(settings: Settings, spec: TableSpec, keys: Sequence[SeriesKey]) -> list[tuple[str, list[SeriesKey]]]:
    """``keys`` grouped for the statements reading their chunk rows, each with the extra
    condition that routes it. Under Citus one statement per symbol: it takes row locks
    only in a query routed to one shard (an equality filter on the distribution column).
    A plain server reads them all in one statement (10 symbols: one round trip, not 10)."""
    if not settings.citus:
        return [("", list(keys))]
    at = spec.chunk_by.index("symbol")
    by_symbol: dict[Any, list[SeriesKey]] = {}
    for k in keys:
        by_symbol.setdefault(k[at], []).append(k)
    return [(f"t.symbol = {literal(symbol)} AND ", by_symbol[symbol]) for symbol in sorted(by_symbol)]


def _with_buffers(table: pa.Table) -> list[dict[str, Any]]:
    """Rows of ``table`` as dicts, its bytea columns as Arrow buffers (None for NULL), not
    bytes: to_pylist copied each one (10 month chunks of a restated day: 7 MB, 2 ms)."""
    blobs = [n for n in ("payload", "patch") if n in table.column_names]
    rows = table.drop_columns(blobs).to_pylist()
    for name in blobs:
        column = table.column(name)
        for i, row in enumerate(rows):
            value = column[i]
            row[name] = value.as_buffer() if value.is_valid else None
    return rows


def fetch_payloads(cur: Any, settings: Settings, spec: TableSpec, period: dt.date,
                   stored: dict[SeriesKey, ChunkRow]) -> dict[SeriesKey, ChunkRow]:
    """``stored`` (read by :func:`fetch_chunk_rows` without payloads, so locked already)
    with their payloads: one statement (per symbol under Citus, routed to its shard)."""
    if not stored:
        return {}
    key = ", ".join(quote_ident(c) for c in spec.chunk_by)
    out = dict(stored)
    for one, mine in _by_shard(settings, spec, list(stored)):
        table = fetch_table(cur, f"SELECT {key}, payload FROM {chunk_table(spec, settings)} t "
                                 f"WHERE {one}t.period_start = $1 AND {_key_filter(spec, mine, '$2', 't')}",
                            (period, _keys_json(spec, mine)))
        for row in _with_buffers(table):
            k = tuple(row[c] for c in spec.chunk_by)
            out[k] = replace(out[k], payload=row["payload"])
    return out


def fetch_payload_windows(cur: Any, settings: Settings, spec: TableSpec, period: dt.date,
                          windows: dict[SeriesKey, tuple[dt.datetime, dt.datetime]]) -> dict[SeriesKey, pa.Buffer]:
    """Each chunk of ``windows`` (read by :func:`fetch_chunk_rows`, so locked already) with
    as much of its payload as ``decode(window=...)`` reads: the footer and the record
    batches the window falls in (:func:`~regime_io._tiers.sealed_format.window_bytes`),
    zeros elsewhere. The first restatement of a day fetched 10 months' payloads, 7.7 MB,
    for the ~2.8 MB of batches it decodes; EXTERNAL storage lets ``substring`` read only
    the TOAST chunks of the range. Two statements (per symbol under Citus, routed to its
    shard): the payloads' sizes and last bytes, then each one's range."""
    if not windows:
        return {}
    cols = [quote_ident(c) for c in spec.chunk_by]
    table_name = chunk_table(spec, settings)
    ends: dict[SeriesKey, tuple[int, bytes]] = {}
    for one, mine in _by_shard(settings, spec, list(windows)):
        last = f"substring(t.payload FROM greatest(octet_length(t.payload) - {chunk_bytes.TAIL_BYTES - 1}, 1))"
        table = fetch_table(cur, f"SELECT {', '.join('t.' + c for c in cols)}, octet_length(t.payload) AS size, "
                                 f"{last} AS tail FROM {table_name} t "
                                 f"WHERE {one}t.period_start = $1 AND {_key_filter(spec, mine, '$2', 't')}",
                            (period, _keys_json(spec, mine)))
        for row in table.to_pylist():
            ends[tuple(row[c] for c in spec.chunk_by)] = (int(row["size"]), bytes(row["tail"]))
    ranges = {k: chunks.window_bytes(tail, size, windows[k]) or (0, size) for k, (size, tail) in ends.items()}
    typed = _key_record(spec, "start_at int", "length int")
    out: dict[SeriesKey, pa.Buffer] = {}
    for one, mine in _by_shard(settings, spec, list(ranges)):
        wanted = json.dumps([{**_key_json(spec, k), "start_at": ranges[k][0] + 1, "length": ranges[k][1] - ranges[k][0]}
                             for k in mine])
        table = fetch_table(cur, f"SELECT {', '.join('t.' + c for c in cols)}, "
                                 "substring(t.payload FROM w.start_at FOR w.length) AS payload "
                                 f"FROM {table_name} t JOIN jsonb_to_recordset($2::jsonb) AS w({typed}) ON "
                                 + " AND ".join(f"t.{c} = w.{c}" for c in cols)
                                 + f" WHERE {one}t.period_start = $1", (period, wanted))
        for row in _with_buffers(table):
            k = tuple(row[c] for c in spec.chunk_by)
            size, tail = ends[k]
            out[k] = chunk_bytes.sparse_payload(size, tail, ranges[k][0], row["payload"])
    return out


def fetch_for_update(cur: Any, settings: Settings, spec: TableSpec, period: dt.date,
                     keys: Sequence[SeriesKey]) -> dict[SeriesKey, pa.Table]:
    """Decode the chunks of ``keys`` in ``period``, locking their rows until commit."""
    return {k: row.rows(spec) for k, row in fetch_chunk_rows(cur, settings, spec, period, keys).items()}


def _period_rows(q: Query, spec: TableSpec, period: dt.date, keys: Sequence[SeriesKey] | None) -> str:
    """The condition on the row table ``t`` for the rows of ``keys`` in ``period`` (None:
    of every series)."""
    time_col = quote_ident(spec.time_column or "timestamp")
    during = (f"t.{time_col} >= {q.param(dt.datetime.combine(period, dt.time()))} "
              f"AND t.{time_col} < {q.param(dt.datetime.combine(chunks.next_period(period), dt.time()))}")
    return during if keys is None else f"{during} AND {_key_filter(spec, keys, q.param(_keys_json(spec, keys)), 't')}"


def select_rows(cur: Any, settings: Settings, spec: TableSpec, period: dt.date,
                keys: Sequence[SeriesKey] | None) -> pa.Table:
    """The row tier's rows of ``keys`` in ``period`` (None: of every series; the caller
    holds the period's lock exclusively, so no writer adds any), exact (decimals as
    decimal128)."""
    names = spec.column_names

    def column(n: str) -> str:
        c = spec.column(n)
        if c.kind == "decimal" and c.precision is not None and c.scale is not None and c.precision <= 18:
            # The unscaled integer (exact: NUMERIC(p, s) holds no more than s decimals):
            # 4 price columns of 1M bars as text took ~0.7 s of the server's numeric_out.
            return f"(t.{quote_ident(n)} * {10 ** c.scale})::int8 AS {quote_ident(n)}"
        if c.kind in ("decimal", "json"):
            return f"t.{quote_ident(n)}::text AS {quote_ident(n)}"
        return f"t.{quote_ident(n)}"

    select = ", ".join(column(n) for n in names)
    q = Query()
    sql = f"SELECT {select} FROM {qualified_table(spec, settings)} t WHERE {_period_rows(q, spec, period, keys)}"
    # Values inlined: without bound parameters the ADBC driver streams the answer through
    # COPY (FORMAT binary); with them libpq holds it whole first. 1M bars sealed here:
    # 1.6 s -> see docs/performance.md (issue 23).
    cur.execute(q.inline(sql))
    table = cur.fetch_arrow_table()
    schema = spec.arrow_schema()
    return pa.Table.from_arrays([decimal_from_unscaled(table.column(f.name), f.type)
                                 if pa.types.is_decimal(f.type) and pa.types.is_integer(table.column(f.name).type)
                                 else table.column(f.name).cast(f.type) for f in schema], schema=schema)


def stored_decimal_types(cur: Any, settings: Settings, spec: TableSpec) -> dict[str, str]:
    """The type each decimal column of ``spec``'s row table has in the server's catalog
    (``numeric(10,2)``), which :func:`select_rows` assumes is the declared one: a column
    another tool altered to hold more digits would have them rounded by its cast."""
    names = [c.name for c in spec.columns if c.kind == "decimal"]
    if not names:
        return {}
    cur.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = $1::regclass "
                "AND attnum > 0 AND NOT attisdropped AND attname = ANY($2::text[])",
                parameters=(qualified_table(spec, settings), names))
    return {str(name): str(kind) for name, kind in cur.fetchall()}


# What the server says when select_rows' cast to bigint meets a NUMERIC 'NaN' (or, in a
# column without a precision, an infinity): regime_io's writers refuse both, another
# tool's INSERT or UPDATE does not.
NON_FINITE_CAST = ("cannot convert NaN to bigint", "cannot convert infinity to bigint")


def first_non_finite(cur: Any, settings: Settings, spec: TableSpec, period: dt.date,
                     keys: Sequence[SeriesKey] | None) -> dict[str, Any] | None:
    """The earliest row of ``keys`` in ``period`` whose decimal column holds 'NaN' or an
    infinity, as ``{"column", "value", <chunk key columns>, <time column>}``, or None: what
    a seal names when :func:`select_rows` fails on one (:data:`NON_FINITE_CAST`)."""
    decimals = [c.name for c in spec.columns if c.kind == "decimal"]
    if not decimals:
        return None
    time_col = spec.time_column or "timestamp"
    shown = [*spec.chunk_by, time_col]
    bad = " OR ".join(f"t.{quote_ident(n)} IN ('NaN', 'Infinity', '-Infinity')" for n in decimals)
    texts = ", ".join(f"t.{quote_ident(n)}::text" for n in decimals)
    q = Query()
    cur.execute(f"SELECT {', '.join(f't.{quote_ident(n)}' for n in shown)}, ARRAY[{texts}] "
                f"FROM {qualified_table(spec, settings)} t WHERE {_period_rows(q, spec, period, keys)} AND ({bad}) "
                f"ORDER BY t.{quote_ident(time_col)} LIMIT 1", parameters=tuple(q.params) or None)
    row = cur.fetchone()
    if row is None:
        return None
    values = list(row[-1])
    at = next(i for i, v in enumerate(values) if v is not None and v.lower() in ("nan", "infinity", "-infinity"))
    return {"column": decimals[at], "value": values[at], **dict(zip(shown, row[:-1], strict=True))}


def delete_rows(cur: Any, settings: Settings, spec: TableSpec, period: dt.date,
                keys: Sequence[SeriesKey] | None) -> int:
    """Delete the row tier's rows of ``keys`` in ``period`` (None: of every series);
    returns how many went."""
    q = Query()
    sql = f"DELETE FROM {qualified_table(spec, settings)} t WHERE {_period_rows(q, spec, period, keys)}"
    # No RETURNING: it made the server fetch every deleted tuple a second time (417,600
    # rows: 842,012 buffer hits instead of 424,412, 0.44 s against 0.37 s). The count comes
    # from the command tag, which the ADBC driver reports for a statement without bound
    # parameters (values inlined, as in select_rows).
    cur.execute(q.inline(sql))
    count = cur.rowcount
    if count is None or count < 0:
        raise WriteError(f"{spec.key}: the driver did not report how many rows a DELETE removed; nothing was "
                         "written", table=spec.key)
    return int(count)


def delete_chunks(cur: Any, settings: Settings, spec: TableSpec, period: dt.date, keys: Sequence[SeriesKey]) -> int:
    if not keys:
        return 0
    cur.execute(f"WITH d AS (DELETE FROM {chunk_table(spec, settings)} t WHERE t.period_start = $1 "
                f"AND {_key_filter(spec, keys, '$2', 't')} RETURNING 1) SELECT count(*) FROM d",
                parameters=(period, _keys_json(spec, keys)))
    row = cur.fetchone()
    return int(row[0]) if row else 0


# ---------------------------------------------------------------------------------------
# Writing chunks


def _stage_name(spec: TableSpec) -> str:
    return f"_rio_chunk_stage_{spec.key}"


def write_chunks(cur: Any, settings: Settings, spec: TableSpec, period: dt.date,
                 tables: dict[SeriesKey, pa.Table], *,
                 keep: dict[SeriesKey, tuple[int, bytes]] | None = None) -> int:
    """Encode and upsert one chunk per series (``tables``: full rows of each series in
    ``period``, any column order); empty tables delete their chunk. Returns payload bytes;
    ``keep`` receives each chunk's row count and payload."""

    stats_cols = chunk_stat_columns(spec)
    empty = [k for k, t in tables.items() if t.num_rows == 0]
    delete_chunks(cur, settings, spec, period, empty)
    records: dict[str, list[Any]] = {c: [] for c in (*spec.chunk_by, "period_start", "row_count", "first_ts",
                                                     "last_ts", *(f"{m}_{c}" for c in stats_cols
                                                                  for m in ("min", "max")),
                                                     "schema_fingerprint", "codec", "payload", "last_row")}
    written = 0

    def encoded(item: tuple[SeriesKey, pa.Table]) -> tuple[SeriesKey, bytes, str, dict[str, Any]]:
        payload_table = chunks.conform_payload(spec, item[1])
        # Sorted by time: the last row is the newest (get_latest reads it without the payload).
        return (item[0], chunks.encode(spec, payload_table), chunks.last_row_json(spec, item[0], payload_table),
                chunks.chunk_stats(spec, payload_table))

    work = [(k, t) for k, t in tables.items() if t.num_rows]
    if len(work) > 1:
        # Sorting, zstd and IPC writing release the GIL: chunks encode side by side.
        with ThreadPoolExecutor(max_workers=min(4, len(work))) as pool:
            results = list(pool.map(encoded, work))
    else:
        results = [encoded(item) for item in work]
    for key, payload, last_row, stats in results:
        written += len(payload)
        if keep is not None:
            keep[key] = (stats["row_count"], payload)
        for c, v in zip(spec.chunk_by, key, strict=True):
            records[c].append(v)
        records["period_start"].append(period)
        for name, value in stats.items():
            records[name].append(value if name in ("row_count", "first_ts", "last_ts")
                                 else (None if value is None else str(value)))
        records["schema_fingerprint"].append(chunks.fingerprint(spec))
        records["codec"].append(chunks.CODEC)
        records["payload"].append(payload)
        records["last_row"].append(last_row)
    if not records["period_start"]:
        return 0
    guard.extend_horizon(cur, spec, settings, period)
    fields = [pa.field(name, _bound_type(spec, name)) for name in records]
    staged = pa.table({f.name: pa.array(records[f.name], f.type) for f in fields})
    stage = _stage_name(spec)
    stage_cols = ", ".join(f"{quote_ident(f.name)} {_stage_pg_type(spec, f.name)}" for f in fields)
    cur.execute(f"SELECT to_regclass({literal('pg_temp.' + quote_ident(stage))}) IS NULL")
    row = cur.fetchone()
    if row and row[0]:
        cur.execute(f"CREATE TEMP TABLE {quote_ident(stage)} ({stage_cols}) ON COMMIT DELETE ROWS")
        # The payloads are compressed already: no pglz attempt on the way through.
        cur.execute(f"ALTER TABLE {quote_ident(stage)} ALTER COLUMN payload SET STORAGE EXTERNAL")
    cur.execute(f"TRUNCATE {quote_ident(stage)}")
    copy_into(cur, stage, staged, temporary=True)
    names = [f.name for f in fields]
    select = ", ".join(f"{quote_ident(n)}::{spec.column(n[4:]).pg_type}" if n[:4] in ("min_", "max_")
                       and n[4:] in stats_cols else "last_row::jsonb" if n == "last_row" else quote_ident(n)
                       for n in names)
    pk = ", ".join(quote_ident(c) for c in (*spec.chunk_by, "period_start"))
    updates = ", ".join(f"{quote_ident(n)} = EXCLUDED.{quote_ident(n)}" for n in names
                        if n not in (*spec.chunk_by, "period_start"))
    # sealed_at comes from the SELECT (evaluated here, on the coordinator under Citus, which
    # refuses non-immutable functions in DO UPDATE SET of a distributed table).
    cur.execute(f"INSERT INTO {chunk_table(spec, settings)} ({', '.join(quote_ident(n) for n in names)}, sealed_at) "
                f"SELECT {select}, LOCALTIMESTAMP FROM {quote_ident(stage)} ON CONFLICT ({pk}) DO UPDATE SET "
                f"{updates}, sealed_at = EXCLUDED.sealed_at, patch = NULL")
    return written


@dataclass(frozen=True)
class Patch:
    """What a write makes of a chunk's patch: ``rows`` replace the segments ``replacing``
    of ``base`` (the stored patch, framed), the others kept
    (:func:`~regime_io._tiers.sealed_format.add_segment`); with ``base`` None, ``rows``
    are the whole patch."""

    rows: pa.Table  # payload columns, conformed (sorted)
    inserted: int  # rows the chunk did not hold before this write
    last_row: str  # the chunk's current newest row (JSON), before this write
    base: pa.Buffer | None = None
    replacing: tuple[chunk_bytes.Segment, ...] = ()


def patched(spec: TableSpec, old: pa.Table | None, diff: ChunkMerge) -> pa.Table:
    """``old`` (rows of a chunk's patch; None: none read) with the rows ``diff`` added or
    changed upserted by key."""
    changed = chunks.conform_payload(spec, pa.concat_tables([diff.added, diff.after]))
    return chunks.apply_patch(spec, old, changed) if old is not None and old.num_rows else changed


def _sort_values(spec: TableSpec, row: dict[str, Any]) -> tuple[Any, ...]:
    """The sort key of a row given as :func:`~regime_io._tiers.sealed_format.last_row_json`
    JSON, comparable across rows (times parsed, decimals exact)."""
    out: list[Any] = []
    for name, _ in chunks.sort_keys(spec):
        value, kind = row[name], spec.column(name).kind
        if value is None:
            out.append((0, None))
            continue
        if kind in ("timestamp", "date"):
            value = dt.datetime.fromisoformat(value) if kind == "timestamp" else dt.date.fromisoformat(value)
        elif kind == "decimal":
            value = decimal.Decimal(value)
        out.append((1, value))
    return tuple(out)


@dataclass(frozen=True)
class EncodedPatches:
    """The chunk rows' new values a write's patches make (:func:`encode_patches`), in the
    order every writer updates chunk rows in."""

    keys: list[SeriesKey]
    values: pa.Table  # one row per key: the patch, its statistics, its chunk's key and period
    bytes: int


def encode_patches(spec: TableSpec, period: dt.date, patches: dict[SeriesKey, Patch]) -> EncodedPatches:
    """Each chunk's new patch encoded, with the statistics it brings along."""
    stats_cols = chunk_stat_columns(spec)
    params: dict[str, list[Any]] = {n: [] for n in ("patch", "inserted", "first_ts", "last_ts", "last_row",
                                                    *(f"{m}_{c}" for c in stats_cols for m in ("min", "max")),
                                                    "period", *spec.chunk_by)}
    ordered = sorted(patches, key=repr)  # every writer locks and updates chunk rows in one order
    # Encoded together, on this thread: 10 patches of a restated day took 7.6 ms one after
    # the other and 9-13 ms on 4 threads (2 cores), where write_chunks' month-sized encodes
    # gain from threads. Their numpy work is done once over all ten (encode_many,
    # chunk_stats_many): a restated day 0.93 of the time it took patch by patch.
    tables = [patches[key].rows for key in ordered]
    encoded = chunks.add_segments(spec, [(patches[key].base, patches[key].rows, patches[key].replacing)
                                         for key in ordered])
    lasts = chunks.last_rows_json(spec, [(key, patches[key].rows) for key in ordered])
    for key, stats, last, payload in zip(ordered, chunks.chunk_stats_many(spec, tables), lasts, encoded, strict=True):
        patch = patches[key]
        params["patch"].append(payload)
        params["inserted"].append(patch.inserted)
        params["first_ts"].append(stats["first_ts"])
        params["last_ts"].append(stats["last_ts"])
        # Rows restated into the past leave the newest row where it was (NULL: kept).
        newer = _sort_values(spec, json.loads(last)) >= _sort_values(spec, json.loads(patch.last_row))
        params["last_row"].append(last if newer else None)
        for c in stats_cols:
            for m in ("min", "max"):
                value = stats[f"{m}_{c}"]
                params[f"{m}_{c}"].append(None if value is None else str(value))
        params["period"].append(period)
        for c, v in zip(spec.chunk_by, key, strict=True):
            params[c].append(v)
    # ``inserted`` is the row count's increment, ``period`` the period_start matched.
    column = {"inserted": "row_count", "period": "period_start"}
    table = pa.table({name: pa.array(values, _bound_type(spec, column.get(name, name)))
                      for name, values in params.items()})
    return EncodedPatches(ordered, table, sum(len(p) for p in params["patch"]))


def write_patches(cur: Any, settings: Settings, spec: TableSpec, encoded: EncodedPatches) -> int:
    """Store each chunk's new patch and bring its statistics along; the payload is not
    rewritten (an UPDATE that leaves a TOASTed column alone keeps its value where it is).
    One statement (per symbol under Citus, routed to its shard). Returns patch bytes."""
    if not encoded.keys:
        return 0
    stats_cols = chunk_stat_columns(spec)
    # The values in the chunk table's own types (one declaration: chunk_table_columns);
    # ``inserted`` is the row count's increment, ``period`` the period_start matched.
    # ``last_row`` and the statistics may be NULL ("keep the stored value"): sent as
    # optional text (run_arrays binds no NULL).
    table_types = {column: pg_type for column, pg_type, _ in chunks.chunk_table_columns(spec)}
    pg_types = {**table_types, "inserted": table_types["row_count"], "period": table_types["period_start"]}
    kept = {"last_row", *(f"{m}_{c}" for c in stats_cols for m in ("min", "max"))}

    def new(name: str) -> str:
        col = f"v.{quote_ident(name)}"
        return optional_sql(col, pg_types[name]) if name in kept else col

    sets = ["patch = v.patch", "row_count = t.row_count + v.inserted", "first_ts = LEAST(t.first_ts, v.first_ts)",
            "last_ts = GREATEST(t.last_ts, v.last_ts)", f"last_row = coalesce({new('last_row')}, t.last_row)"]
    for c in stats_cols:
        # Widened only (LEAST and GREATEST skip NULLs): the bounds prune reads, so they may
        # be loose, never narrow.
        for m, fn in (("min", "LEAST"), ("max", "GREATEST")):
            col = quote_ident(f"{m}_{c}")
            sets.append(f"{col} = {fn}(t.{col}, {new(f'{m}_{c}')})")
    where = ["t.period_start = v.period", *(f"t.{quote_ident(c)} = v.{quote_ident(c)}" for c in spec.chunk_by)]
    table = encoded.values
    for name in kept:
        at = table.schema.get_field_index(name)
        table = table.set_column(at, name, optional_text(table.column(at)))
    position = {key: i for i, key in enumerate(encoded.keys)}
    names = ", ".join(quote_ident(n) for n in table.column_names)
    for one, mine in _by_shard(settings, spec, encoded.keys):
        rows = table if len(mine) == len(encoded.keys) else table.take(pa.array([position[k] for k in mine]))
        run_arrays(cur, f"UPDATE {chunk_table(spec, settings)} t SET {', '.join(sets)} FROM ({{values}}) AS v({names}) "
                        f"WHERE {one}{' AND '.join(where)}", rows,
                   ["TEXT" if n in kept else pg_types[n] for n in table.column_names])
    return encoded.bytes


# The Arrow type a writer binds each of the chunk table's PostgreSQL types as: the staging
# table's COPY and the patches' arrays, one map for both (a type added to the chunk table
# and not here fails every write in the suite, not silently as text).
_BOUND_AS = {"DATE": pa.date32(), "INTEGER": pa.int32(), "TIMESTAMP": pa.timestamp("us"), "BYTEA": pa.binary(),
             "TEXT": pa.string(), "JSONB": pa.string()}


def _bound_type(spec: TableSpec, name: str) -> pa.DataType:
    """A chunk-table column's values as the writers bind them (:func:`write_chunks`'
    staging table, :func:`encode_patches`' arrays): the key columns in their declared
    Arrow types, the others by the type :func:`_stage_pg_type` gives them (statistics and
    ``last_row`` as text)."""
    if name in spec.chunk_by:
        return spec.column(name).arrow_type
    return _BOUND_AS[_stage_pg_type(spec, name)]


def _stage_pg_type(spec: TableSpec, name: str) -> str:
    """A chunk-table column's type in the writers' staging table: the table's own
    (:func:`~regime_io._tiers.sealed_format.chunk_table_columns`), but statistics and
    ``last_row`` as text, cast on the way in."""
    if name == "last_row" or name[:4] in ("min_", "max_"):
        return "TEXT"
    return {column: pg_type for column, pg_type, _ in chunks.chunk_table_columns(spec)}[name]


# ---------------------------------------------------------------------------------------
# Routing a batch into chunks (the writers' sealed path)


def route_batch(cur: Any, settings: Settings, spec: TableSpec, batch: pa.Table, *, on_conflict: OnConflict,
                sealed_tier: bool = False, known_at: dt.datetime | None = None) -> tuple[pa.Table, MergeCounts]:
    """Send the rows of ``batch`` that belong to sealed series-months into their chunks.

    Takes the period locks (shared; exclusive with ``sealed_tier``), finds the chunks the
    batch touches and merges into them. With ``sealed_tier`` every row goes to a chunk
    (rows already in the row tier for those series-months move along). Returns the rows
    left for the row tier and the counts of the chunk part.
    """
    counts = MergeCounts()
    if not spec.sealable or batch.num_rows == 0:
        return batch, counts
    periods = periods_of(spec, batch)
    lock_periods(cur, settings, spec, periods, exclusive=sealed_tier)
    symbols = [s for s in pc.unique(batch.column("symbol")).to_pylist() if s is not None]  # 1M rows: 7 ms, not 83
    found = existing_chunks(cur, settings, spec, symbols, periods)
    if not found and not sealed_tier:
        return batch, counts
    groups, number = chunk_groups(spec, batch)
    sealed = {g: part for g, part in groups.items() if sealed_tier or g in found}
    if len(sealed) == len(groups):  # a backfill, or a restatement of sealed months only
        rest = batch.schema.empty_table()
    else:
        # The row tier's rows keep the batch's order (regime_io._tiers.catalog.series_stats reads runs).
        to_rows = np.array([g not in sealed for g in groups])
        rest = batch.filter(pa.array(to_rows[number]))
    name = chunk_table(spec, settings)
    by_period: dict[dt.date, dict[SeriesKey, pa.Table]] = {}
    for (series, period), part in sealed.items():
        by_period.setdefault(period, {})[series] = part
    for period in sorted(by_period):
        incoming_by_key = by_period[period]
        keys = list(incoming_by_key)
        spans: dict[SeriesKey, tuple[Any, Any]] = {}  # each chunk's incoming rows' first and last time
        for key, part in incoming_by_key.items():
            span = time_span(spec, part)
            assert span is not None  # (a chunk's rows: never none)
            spans[key] = span
        stored = fetch_chunk_rows(cur, settings, spec, period, keys, payloads=sealed_tier)
        patches: dict[SeriesKey, Patch] = {}
        diffs: dict[SeriesKey, ChunkMerge] = {}
        if not sealed_tier:
            # A few rows into a chunk: merged against the patch and the payload's batches
            # they fall in, and written to the patch (write_patches).
            # Per chunk: the rows of the patch's segments the incoming span meets (None: it
            # meets none, or no patch), those in the span, and the merge when they decide it.
            near: dict[SeriesKey, tuple[pa.Table | None, pa.Table, ChunkMerge | None]] = {}
            met: dict[SeriesKey, tuple[chunk_bytes.Segment, ...] | None] = {}  # None: an unframed patch
            olds: dict[SeriesKey, pa.Table | None] = {}
            for key, incoming in incoming_by_key.items():
                row = stored.get(key)
                if row is None or not row.patchable(spec):
                    continue
                segments = chunk_bytes.patch_segments(row.patch)
                if segments is None:  # one IPC file (written before segments): read whole
                    whole = row.patch_rows(spec)
                    olds[key], count = whole, whole.num_rows
                else:
                    count = sum(s.rows for s in segments)
                if count + incoming.num_rows > chunks.PATCH_ROWS:
                    olds.pop(key, None)
                    continue  # folded: the chunk is rewritten whole, its patch emptied
                if segments is not None:
                    lo, hi = (chunks.pd_micros(v) for v in spans[key])
                    meets = tuple(s for s in segments if s.meets(lo, hi))
                    if len(segments) - len(meets) + 1 > chunk_bytes.MAX_SEGMENTS:
                        meets = tuple(segments)  # rewritten as one segment
                    met[key] = meets
                    olds[key] = None
                else:
                    met[key] = None
            olds |= _decoded_segments(spec, stored, {k: m for k, m in met.items() if m})
            for key, old in olds.items():
                incoming = incoming_by_key[key]
                if old is None:  # no key of the patch in the span: the payload's rows decide
                    near[key] = (None, chunks.payload_schema(spec).empty_table(), None)
                    continue
                # Only rows in the incoming rows' time span can share a key with them. A merge
                # against the patch alone that inserts nothing found every key there (a write
                # run again, a day restated once more): the payload's rows under them are
                # superseded, so that merge is the chunk's.
                mine = _in_span(spec, old, spans[key])
                first = merge(spec, mine, incoming, on_conflict=on_conflict, settings_table=name)
                near[key] = (old, mine, None if first.inserted else first)
            # The payloads only where the patch lacks a key (10 months of a restated day: 7.7
            # MB), and of those only the batches of the span, where the chunk is patched.
            stored |= fetch_payloads(cur, settings, spec, period, {k: r for k, r in stored.items() if k not in near})
            windows = {key: spans[key] for key, (_, _, known) in near.items() if known is None}
            parts = fetch_payload_windows(cur, settings, spec, period, windows)
            for key, (old, mine, known) in near.items():
                row = stored[key]
                diff = known
                if diff is None:
                    # ~1,440 rows of a restated day are built, not the 8,192 of each batch it falls in.
                    mine = chunks.apply_patch(spec, chunks.decode(spec, parts[key], row.fingerprint, codec=row.codec,
                                                                  window=windows[key]), mine)
                    diff = merge(spec, mine, incoming_by_key[key], on_conflict=on_conflict, settings_table=name)
                diffs[key] = diff
                if diff.inserted or diff.updated:
                    assert row.last_row is not None
                    replacing = met[key]
                    patches[key] = Patch(patched(spec, old, diff), diff.inserted, row.last_row,
                                         base=None if replacing is None else row.patch, replacing=replacing or ())
        existing = {k: row.rows(spec) for k, row in stored.items() if k not in diffs}
        if sealed_tier:
            rows = select_rows(cur, settings, spec, period, keys)
            if rows.num_rows:
                moved = split_by_series(spec, rows)
                for key, table in moved.items():
                    existing[key] = (pa.concat_tables([existing[key], table.select(list(spec.chunk_columns))])
                                     if key in existing else table)
                delete_rows(cur, settings, spec, period, keys)
        results: dict[SeriesKey, pa.Table] = {}
        superseded: list[pa.Table] = []  # previous values of changed rows, new rows (regime_io._tiers.knowledge)
        fresh: list[pa.Table] = []  # new values of changed rows, for the live tail (regime_io._tiers.changes)
        for key, incoming in incoming_by_key.items():
            diff = diffs.get(key) or merge(spec, existing.get(key), incoming, on_conflict=on_conflict,
                                           settings_table=name)
            ins, upd = diff.inserted, diff.updated
            counts.inserted += ins
            counts.updated += upd
            if (upd or ins) and spec.key in settings.history_tables:
                superseded.append(knowledge.superseded_rows(spec, diff.before, diff.added, key))
            if ins:
                times = incoming.column(spec.time_column or "timestamp")
                entry = counts.series.setdefault(key, [0, None, None])
                low, high = pc.min(times).as_py(), pc.max(times).as_py()
                entry[0] += ins
                entry[1] = low if entry[1] is None else min(entry[1], low)
                entry[2] = high if entry[2] is None else max(entry[2], high)
            whole = key not in existing and key not in diffs  # a new chunk: all its rows are new
            if (ins or upd) and not whole:
                fresh.append(live.changed_rows(spec, pa.concat_tables([diff.added, diff.after]), key))
            if key not in diffs and (ins or upd or key not in existing or sealed_tier):
                results[key] = diff.rows  # (built only here: a patched chunk's rows are its patch's)
        # The change-log entry is encoded on a thread while the chunks and patches are
        # written (the driver lets go of the GIL while the server works): zstd of a restated
        # day's 14,400 rows is ~3 ms beside the patches' UPDATE of ~4-6.
        encoded = encode_patches(spec, period, patches)
        logged = _Background(live.sealed_changes_entry, fresh) if fresh else None
        payloads: dict[SeriesKey, tuple[int, bytes]] = {}
        write_chunks(cur, settings, spec, period, results, keep=payloads)
        write_patches(cur, settings, spec, encoded)
        knowledge.record_sealed(cur, settings, spec, superseded, known_at)
        live.record_sealed_changes(cur, settings, spec, None if logged is None else logged.result())
        live.record_new_chunks(cur, settings, spec, [(key, *payloads[key]) for key in payloads
                                                     if key not in existing and key not in diffs])
    return rest, counts


class _Background:
    """``fn(*args)`` on a thread of its own, its result (or exception) taken by
    :meth:`result`. A thread per call, not a pool kept between calls: a pool's thread
    does not survive a fork, and a forked child would wait on it forever. Nor a
    ThreadPoolExecutor per call as write_chunks uses: its submit and shutdown ate the
    gain (restatement 0.991 the in-line time, against 0.965 for this thread; 80
    alternated rounds each)."""

    def __init__(self, fn: Any, *args: Any) -> None:
        self._out: list[Any] = []
        self._error: list[BaseException] = []

        def run() -> None:
            try:
                self._out.append(fn(*args))
            except BaseException as err:  # re-raised by result() in the caller's thread
                self._error.append(err)

        self._thread = threading.Thread(target=run, name="regime_io-encode", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error:
            raise self._error[0]
        return self._out[0]


def _decoded_segments(spec: TableSpec, stored: dict[SeriesKey, ChunkRow],
                      segments: dict[SeriesKey, tuple[chunk_bytes.Segment, ...]]) -> dict[SeriesKey, pa.Table]:
    """The rows of the given segments of each chunk's patch, the chunks of one
    fingerprint and codec decoded together (:func:`~regime_io._tiers.sealed_format.decode_patches`)."""
    alike: dict[tuple[str, str], list[SeriesKey]] = {}
    for key in segments:
        alike.setdefault((stored[key].fingerprint, stored[key].codec), []).append(key)
    out: dict[SeriesKey, pa.Table] = {}
    for (fingerprint, codec), keys in alike.items():
        tables = chunks.decode_patches(spec, [(stored[k].patch, segments[k]) for k in keys], fingerprint, codec=codec)
        out.update(zip(keys, tables, strict=True))
    return out


def route_staged(cur: Any, settings: Settings, spec: TableSpec, stage: str, first: dt.datetime,
                 last: dt.datetime, *, on_conflict: OnConflict) -> MergeCounts:
    """:func:`route_batch` for a streamed write: rows already in the staging table that
    belong to sealed series-months leave it and merge into their chunks."""

    if not spec.sealable:
        return MergeCounts()
    periods = period_range(first.date(), last.date())
    lock_periods(cur, settings, spec, periods, exclusive=False)
    cur.execute(f"SELECT DISTINCT symbol FROM {quote_ident(stage)}")
    symbols = [r[0] for r in cur.fetchall()]
    if not existing_chunks(cur, settings, spec, symbols, periods):
        return MergeCounts()
    select = ", ".join(f"{quote_ident(n)}::text AS {quote_ident(n)}" if spec.column(n).kind == "decimal"
                       else quote_ident(n) for n in spec.column_names)
    cur.execute(f"SELECT {select} FROM {quote_ident(stage)}")
    raw = cur.fetch_arrow_table()
    schema = spec.arrow_schema()
    staged = pa.Table.from_arrays([raw.column(f.name).cast(f.type) for f in schema], schema=schema)
    cur.execute(f"TRUNCATE {quote_ident(stage)}")
    rest, counts = route_batch(cur, settings, spec, staged, on_conflict=on_conflict)
    if rest.num_rows:
        copy_into(cur, stage, rest, temporary=True)
    return counts


def _in_span(spec: TableSpec, rows: pa.Table, span: tuple[Any, Any]) -> pa.Table:
    """The rows of ``rows`` whose time lies in ``span`` (both ends included). ``rows`` in
    time order (a patch's, a payload's): a slice found by binary search (a restated chunk:
    ~40 us against ~170 for Arrow's filter)."""
    if rows.num_rows == 0:
        return rows
    times = rows.column(spec.time_column or "timestamp")
    if pa.types.is_timestamp(times.type) and not times.null_count:
        values = chunks.int64_values(times)
        if bool(np.all(values[1:] >= values[:-1])):
            lo, hi = (pa.scalar(v, times.type).value for v in span)
            start = int(np.searchsorted(values, lo, side="left"))
            stop = int(np.searchsorted(values, hi, side="right"))
            return rows.slice(start, stop - start)
    return rows.filter(pc.and_(pc.greater_equal(times, span[0]), pc.less_equal(times, span[1])))
