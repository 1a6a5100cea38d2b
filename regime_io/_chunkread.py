"""Readers over both tiers: the sealed chunks a range read needs, decoded and merged.

A range read fetches only the chunks of the asked symbols whose period and
``first_ts``/``last_ts`` overlap the window (and, for option filters, whose
``min_``/``max_`` statistics can hold the asked strikes and types), decodes them on
parallel threads (pyarrow's IPC reader and zstd release the GIL), trims them to the
window and filters, and merges them with the row tier's answer in the reader's row order.

Consistency without a shared snapshot: the row tier is read by connectorx on its own
connection, so the chunk list is read before and after it; if a seal, unseal or merge
committed in between (a chunk appeared, vanished or changed its ``xmin``), the read runs
again. Seal and unseal change both tiers in one transaction, so equal chunk lists before
and after mean the row read saw the same state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from . import _chunks as chunks
from ._frames import constant
from ._readsql import Query, TimeRange, read_lookup
from ._schema import chunk_table
from ._sql import quote_ident
from .errors import ReadError
from .tables import TableSpec

if TYPE_CHECKING:
    from .database import Database

__all__ = ["guarded", "read_both", "sealed_rows", "sealed_versions"]

T = TypeVar("T")

_MAX_TRIES = 4


def _conditions(q: Query, spec: TableSpec, symbols: list[str], rng: TimeRange,
                extra: Sequence[tuple[str, Any]]) -> list[str]:
    conds = [f"t.symbol = {q.param(symbols[0])}" if len(symbols) == 1
             else f"t.symbol = ANY({q.param(symbols)}::text[])"]
    conds.append(f"t.period_start >= {q.param(chunks.period_of(rng.start))}")
    conds.append(f"t.period_start <= {q.param(rng.end.date())}")
    conds.append(f"t.last_ts >= {q.param(rng.start)}")
    conds.append(f"t.first_ts {'<' if rng.end_exclusive else '<='} {q.param(rng.end)}")
    for name, value in extra:
        if name.endswith(">="):  # a lower bound on a chunk-key column (unexpired option contracts)
            conds.append(f"t.{quote_ident(name[:-2])} >= {q.param(value)}")
            continue
        column = spec.column(name)
        values = value if isinstance(value, list) else [value]
        if name in spec.chunk_by:
            cast = {"date": "date", "decimal": "numeric"}.get(column.kind, "text")
            conds.append(f"t.{quote_ident(name)} = ANY({q.param(values)}::{cast}[])")
        elif values:
            # Prune by the chunk's statistics: it may hold one of the values.
            conds.append(f"t.{quote_ident('min_' + name)} <= {q.param(max(values))}")
            conds.append(f"t.{quote_ident('max_' + name)} >= {q.param(min(values))}")
    return conds


def sealed_versions(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange,
              extra: Sequence[tuple[str, Any]]) -> tuple[tuple[Any, ...], ...]:
    q = Query()
    key = ", ".join(f"t.{quote_ident(c)}" for c in spec.chunk_by)
    sql = (f"SELECT {key}, t.period_start, t.xmin::text AS v FROM {chunk_table(spec, db.settings)} t "
           f"WHERE {' AND '.join(_conditions(q, spec, symbols, rng, extra))} ORDER BY {key}, t.period_start")
    table = read_lookup(db, q, sql, what=f"{spec.key} sealed chunks", table=spec.key)
    return tuple(tuple(r.values()) for r in table.to_pylist())


def sealed_rows(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange,
                extra: Sequence[tuple[str, Any]]) -> tuple[pa.Table, tuple[tuple[Any, ...], ...]]:
    """The sealed rows of ``symbols`` in the window matching ``extra`` (every declared
    column, exact types, ordered by chunk key and time) and the chunk versions read."""
    q = Query()
    key = ", ".join(f"t.{quote_ident(c)}" for c in spec.chunk_by)
    sql = (f"SELECT {key}, t.period_start, t.xmin::text AS v, t.schema_fingerprint, t.codec, t.first_ts, "
           "t.last_ts, t.payload "
           f"FROM {chunk_table(spec, db.settings)} t WHERE {' AND '.join(_conditions(q, spec, symbols, rng, extra))} "
           f"ORDER BY {key}, t.period_start")
    # The lookup pool: one round trip (prepared), which matters for small reads.
    found = read_lookup(db, q, sql, what=f"{spec.key} sealed chunks", table=spec.key)
    n = len(spec.chunk_by)
    meta = found.drop_columns(["payload"]).to_pylist()
    versions = tuple(tuple(list(r.values())[: n + 2]) for r in meta)
    schema = spec.arrow_schema()
    if not meta:
        return schema.empty_table(), versions
    payloads = found.column("payload").combine_chunks()

    def one(i: int) -> pa.Table:
        row = list(meta[i].values())
        first, last = row[n + 4], row[n + 5]
        inside = first >= rng.start and (last < rng.end if rng.end_exclusive else last <= rng.end)
        payload = chunks.decode(spec, payloads[i].as_buffer(), row[n + 2], codec=row[n + 3],
                                window=None if inside else (rng.start, rng.end))
        if not inside or any(name not in spec.chunk_by for name, _ in extra):
            payload = _trim(spec, payload, rng, extra)
        arrays = [constant(row[spec.chunk_by.index(f.name)], payload.num_rows, f.type) if f.name in spec.chunk_by
                  else payload.column(f.name) for f in schema]
        return pa.Table.from_arrays(arrays, schema=schema)

    if len(meta) == 1:
        parts = [one(0)]
    else:
        with ThreadPoolExecutor(max_workers=min(4, len(meta))) as pool:
            parts = list(pool.map(one, range(len(meta))))
    return pa.concat_tables(parts), versions


def _trim(spec: TableSpec, payload: pa.Table, rng: TimeRange, extra: Sequence[tuple[str, Any]]) -> pa.Table:
    ts = payload.column(spec.time_column or "timestamp")
    lo = pa.scalar(rng.start, ts.type)
    hi = pa.scalar(rng.end, ts.type)
    mask = pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi) if rng.end_exclusive else pc.less_equal(ts, hi))
    for name, value in extra:
        if name in spec.chunk_by or name.endswith(">="):
            continue
        column = payload.column(name)
        values = pa.array(value if isinstance(value, list) else [value]).cast(column.type)
        mask = pc.and_(mask, pc.is_in(column, value_set=values))
    if pc.all(mask).as_py():
        return payload
    return payload.filter(mask)


def guarded(sealed_read: Callable[[], T], row_read: Callable[[], object]) -> T:
    """``sealed_read()``; if the chunk table is missing (schema not initialised), the
    reader's own row read runs instead, so the error names the table the user knows."""
    try:
        return sealed_read()
    except ReadError as err:
        if "does not exist" in str(err):
            row_read()
        raise


def to_reader(spec: TableSpec, sealed: pa.Table, schema: pa.Schema) -> pa.Table:
    """Sealed rows (declared types) in a reader's schema: decimals as float64 unless exact."""
    arrays = []
    for field in schema:
        column = sealed.column(field.name)
        if pa.types.is_float64(field.type) and pa.types.is_decimal(column.type):
            arrays.append(chunks.decimal_to_float(column))
        elif column.type != field.type:
            arrays.append(column.cast(field.type))
        else:
            arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=schema)


def _collation_ranks(db: Database, values: list[str]) -> dict[str, int]:
    """Each text value's position in the server's collation order (ORDER BY of the rows)."""
    q = Query()
    table = read_lookup(db, q, f"SELECT v FROM unnest({q.param(values)}::text[]) AS u(v) ORDER BY v",
                        what="collation order")
    return {v: i for i, v in enumerate(table.column("v").to_pylist())}


def merge_sorted(db: Database, spec: TableSpec, rows: pa.Table, sealed: pa.Table, order: Sequence[str]) -> pa.Table:
    """``rows`` (already in ``order``) and ``sealed`` (chunk key, time order) as one table in
    ``order``, text columns compared as the server compares them."""
    if sealed.num_rows == 0:
        return rows
    if rows.num_rows == 0 and list(order[: len(spec.chunk_by) + 1]) == [*spec.chunk_by, spec.time_column]:
        return sealed  # chunks come in the server's order of their key, then by period
    both = pa.concat_tables([rows, sealed.select(rows.column_names)]) if rows.num_rows else sealed
    sort_cols: list[tuple[str, str]] = []
    extra_cols: dict[str, pa.Array] = {}
    for name in order:
        if name not in both.column_names:
            continue
        column = both.column(name)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            distinct = [v for v in pc.unique(column).to_pylist() if v is not None]
            if len(distinct) > 1:
                ranks = _collation_ranks(db, distinct)
                keys = pa.array(list(ranks), pa.string())
                index = pc.index_in(column, value_set=keys)
                lookup = pa.array([ranks[k] for k in ranks], pa.int64())
                extra_cols[f"__rank_{name}"] = pc.take(lookup, index)
                sort_cols.append((f"__rank_{name}", "ascending"))
            continue
        sort_cols.append((name, "ascending"))
    keyed = both
    for name, array in extra_cols.items():
        keyed = keyed.append_column(name, array)
    indices = pc.sort_indices(keyed, sort_keys=sort_cols) if sort_cols else None
    return both.take(indices) if indices is not None else both


def read_both(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange, extra: Sequence[tuple[str, Any]],
              names: Sequence[str], exact: bool, order: Sequence[str],
              read_rows: Callable[[list[str]], pa.Table]) -> pa.Table:
    """``read_rows(columns)`` (the row tier's answer with those columns, in ``order``)
    merged with the sealed rows of the same window, consistently (module docstring)."""
    if not spec.sealable:
        return read_rows(list(names))
    for _ in range(_MAX_TRIES):
        sealed, before = guarded(lambda: sealed_rows(db, spec, symbols, rng, extra),
                                 lambda: read_rows(list(names)))
        if sealed.num_rows == 0:
            rows = read_rows(list(names))
        else:
            # The merge sorts by the order columns: read them even when not asked for.
            wider = [*names, *(c for c in order if c not in names and c in spec.column_names)]
            rows = read_rows(wider)
        after = sealed_versions(db, spec, symbols, rng, extra)
        if before == after:
            if sealed.num_rows == 0:
                return rows
            full = spec.read_schema(exact=exact)
            schema = pa.schema([full.field(n) for n in rows.column_names])
            merged = merge_sorted(db, spec, rows, to_reader(spec, sealed, schema), order)
            return merged.select(list(names))
    raise ReadError(f"{spec.key}: history was sealed or unsealed during each of {_MAX_TRIES} attempts to read it; "
                    "try again", table=spec.key)



# ---------------------------------------------------------------------------------------
# Latest rows


def newest_chunks_query(db: Database, spec: TableSpec, wanted: list[str] | None,
                        timeframe: str | None) -> tuple[Query, str]:
    """The newest chunk of each series asked for (key, period, ``last_ts``), for
    :func:`merge_latest`; independent of the row tier's answer, so the latest-row
    reader sends both queries in one round trip."""
    q = Query()
    key = [c for c in spec.chunk_by]
    cols = ", ".join(f"t.{quote_ident(c)}" for c in key)
    conds = []
    if wanted is not None:
        conds.append(f"t.symbol = ANY({q.param(wanted)}::text[])")
    if timeframe is not None and "timeframe" in key:
        conds.append(f"t.timeframe = {q.param(timeframe)}")
    where = f"WHERE {' AND '.join(conds)}" if conds else ""
    return q, (f"SELECT DISTINCT ON ({cols}) {cols}, t.period_start, t.last_ts FROM {chunk_table(spec, db.settings)} t "
               f"{where} ORDER BY {cols}, t.period_start DESC")


def merge_latest(db: Database, spec: TableSpec, rows: pa.Table, newest: list[dict[str, Any]],
                 schema: pa.Schema) -> pa.Table:
    """The row tier's latest rows (``rows``, one per series) corrected by the sealed tier
    (``newest``: the rows of :func:`newest_chunks_query`): a series whose newest chunk
    ends after its latest row (or that has no rows) takes that chunk's last row, which
    costs one more lookup; otherwise nothing is read."""
    if not newest:
        return rows
    key = [c for c in spec.chunk_by]
    cols = ", ".join(f"t.{quote_ident(c)}" for c in key)
    time_col = spec.time_column or "timestamp"
    series = [c for c in ("symbol", "timeframe") if c in rows.column_names and c in key]
    current = {tuple(r[c] for c in series): r[time_col] for r in rows.select([*series, time_col]).to_pylist()}
    stale = [r for r in newest if current.get(tuple(r[c] for c in series)) is None
             or r["last_ts"] > current[tuple(r[c] for c in series)]]
    if not stale:
        return rows
    q = Query()
    picks = [f"(t.period_start = {q.param(r['period_start'])} AND "
             + " AND ".join(f"t.{quote_ident(c)} = {q.param(r[c])}" for c in key) + ")" for r in stale]
    found = read_lookup(db, q, f"SELECT {cols}, t.schema_fingerprint, t.codec, t.payload FROM "
                        f"{chunk_table(spec, db.settings)} t WHERE {' OR '.join(picks)}",
                        what="get_latest (sealed)", table=spec.key)
    full = spec.arrow_schema()
    lasts = []
    for r in found.to_pylist():
        payload = chunks.decode(spec, r["payload"], r["schema_fingerprint"], codec=r["codec"])
        ts = payload.column(time_col)
        last = payload.slice(pc.index(ts, pc.max(ts)).as_py(), 1)
        lasts.append(pa.Table.from_arrays([constant(r[f.name], 1, f.type) if f.name in key else last.column(f.name)
                                           for f in full], schema=full))
    sealed = to_reader(spec, pa.concat_tables(lasts), schema)
    replaced = {tuple(r[c] for c in series) for r in sealed.select(series).to_pylist()}
    keep = [i for i, r in enumerate(rows.select(series).to_pylist()) if tuple(r[c] for c in series) not in replaced]
    both = pa.concat_tables([rows.take(pa.array(keep, pa.int64())), sealed])
    return merge_sorted(db, spec, both.slice(0, 0), both, series)


# ---------------------------------------------------------------------------------------
# SQL readers (statistics, resampling, option chains, as-of rows)


def read_query_both(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange,
                    extra: Sequence[tuple[str, Any]], q: Query, sql: str, *, what: str,
                    rows_reader: Callable[[], pa.Table] | None = None) -> pa.Table:
    """Run a reader's SQL over both tiers.

    ``sql`` names the row table (``db.table(spec.key)``); when sealed chunks overlap the
    window, their rows are decoded into a temporary table on a primary connection and the
    query runs, on that connection, with the table replaced by ``(rows UNION ALL sealed
    rows)``: the same SQL computes the same answer over both tiers.
    """
    from ._readsql import _pooled_read, read_adbc

    plain = rows_reader or (lambda: read_adbc(db, q, sql, what=what, table=spec.key))
    if not spec.sealable:
        return plain()
    for _ in range(_MAX_TRIES):
        sealed, before = guarded(lambda: sealed_rows(db, spec, symbols, rng, extra), plain)
        if sealed.num_rows == 0:
            result = plain()
        else:
            result = _pooled_read(db, partial(_run_with_sealed, db, spec, sealed, q, sql), what=what, table=spec.key)
        if sealed_versions(db, spec, symbols, rng, extra) == before:
            return result
    raise ReadError(f"{spec.key}: history was sealed or unsealed during each of {_MAX_TRIES} attempts to read it; "
                    "try again", table=spec.key)


def _run_with_sealed(db: Database, spec: TableSpec, sealed: pa.Table, q: Query, sql: str) -> pa.Table:
    """``sql`` on a primary connection, its row table replaced by rows + ``sealed`` (a temp table)."""
    from ._writing import _ingest, session_table

    target = db.table(spec.key)
    temp = f"_rio_sealed_{spec.key}"
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    union = f"(SELECT {cols} FROM {target} UNION ALL SELECT {cols} FROM pg_temp.{quote_ident(temp)})"
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            session_table(cur, spec, temp)
            _ingest(cur, temp, sealed, temporary=True)
            cur.execute(sql.replace(target, union), parameters=tuple(q.params) if q.params else None)
            return cur.fetch_arrow_table()
        finally:
            cur.close()


def sealed_floor(db: Database, spec: TableSpec, symbols: list[str], before: dt.datetime) -> dt.datetime:
    """The start of the oldest month holding some symbol's newest sealed row before
    ``before`` (``before`` itself when there is none): a window starting there holds
    every symbol's last sealed row before ``before``."""
    q = Query()
    sql = ("SELECT min(p) AS p FROM (SELECT t.symbol, max(t.period_start) AS p "
           f"FROM {chunk_table(spec, db.settings)} t WHERE t.symbol = ANY({q.param(symbols)}::text[]) "
           f"AND t.first_ts < {q.param(before)} GROUP BY t.symbol) s")
    found = read_lookup(db, q, sql, what="as-of rows (sealed)", table=spec.key).column("p").to_pylist()
    return dt.datetime.combine(found[0], dt.time()) if found and found[0] is not None else before
