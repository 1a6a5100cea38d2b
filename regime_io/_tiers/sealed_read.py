"""Readers over both tiers: the sealed chunks a range read needs, decoded and merged.

A range read fetches only the chunks of the asked symbols whose period and
``first_ts``/``last_ts`` overlap the window (and, for option filters, whose
``min_``/``max_`` statistics can hold the asked strikes and types), decodes them (float
reads straight to float64), trims them to the window and filters; the router
(:mod:`regime_io._tiers.router`) merges them with the row tier's answer in the reader's
row order and keeps the two consistent (the fingerprint guard, :func:`fingerprint_sql`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from .._conn.engines import lookup_records, read_lookup, stream_records
from .._frames import constant
from .._sql.names import chunk_table, qualified_table
from .._sql.query import AtLeast, Query, TimeRange
from .._sql.quote import quote_ident
from ..tables import TableSpec
from . import sealed_format as chunks

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = [
    "chunk_conditions", "decode_sealed", "fingerprint_sql", "sealed_fingerprint", "sealed_rows",
    "sealed_rows_checked", "sealed_rows_sql", "sealed_schema",
]


T = TypeVar("T")


def chunk_conditions(q: Query, spec: TableSpec, symbols: list[str] | None, rng: TimeRange,
                extra: Sequence[tuple[str, Any]]) -> list[str]:
    """Which chunks a read of ``symbols`` (``None``: every symbol) in ``rng`` matching ``extra`` needs."""
    conds = [] if symbols is None else [f"t.symbol = {q.param(symbols[0])}" if len(symbols) == 1
                                        else f"t.symbol = ANY({q.param(symbols)}::text[])"]
    conds.append(f"t.period_start >= {q.param(chunks.period_of(rng.start))}")
    conds.append(f"t.period_start <= {q.param(rng.end.date())}")
    conds.append(f"t.last_ts >= {q.param(rng.start)}")
    conds.append(f"t.first_ts {'<' if rng.end_exclusive else '<='} {q.param(rng.end)}")
    for name, value in extra:
        if isinstance(value, AtLeast):  # a lower bound on a chunk-key column (unexpired option contracts)
            conds.append(f"t.{quote_ident(name)} >= {q.param(value.value)}")
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


def fingerprint_sql(q: Query, db: Database, spec: TableSpec, symbols: list[str] | None, rng: TimeRange,
                    extra: Sequence[tuple[str, Any]]) -> str:
    """A scalar subquery: one text naming the state of the chunks a read covers (which
    chunks, each at which row version), ``''`` when none. Equal text in two statements
    means the sealed tier of that scope did not change in between (seal, unseal and
    merges all replace chunk rows, which changes their ``xmin``)."""
    key = ", ".join(f"t.{quote_ident(c)}" for c in spec.chunk_by)
    return (f"(SELECT coalesce(md5(string_agg(concat_ws('/', {key}, t.period_start, t.xmin), ',' "
            f"ORDER BY {key}, t.period_start)), '') FROM {chunk_table(spec, db.settings)} t "
            f"WHERE {' AND '.join(chunk_conditions(q, spec, symbols, rng, extra))})")


def sealed_fingerprint(db: Database, spec: TableSpec, symbols: list[str] | None, rng: TimeRange,
                       extra: Sequence[tuple[str, Any]]) -> str:
    """The :func:`fingerprint_sql` of a scope now (one lookup)."""
    q = Query()
    sql = f"SELECT {fingerprint_sql(q, db, spec, symbols, rng, extra)} AS fp"
    return str(read_lookup(db, q, sql, what=f"{spec.key} sealed chunks", table=spec.key).column("fp")[0].as_py())


def sealed_rows(db: Database, spec: TableSpec, symbols: list[str] | None, rng: TimeRange,
                extra: Sequence[tuple[str, Any]], *, exact: bool = True) -> tuple[pa.Table, str]:
    """The sealed rows of ``symbols`` in the window matching ``extra`` (every declared
    column, ordered by chunk key and time; ``exact=False``: decimals as float64, else the
    declared types) and the :func:`fingerprint_sql` of the chunks read."""
    q = Query()
    sql = sealed_rows_sql(q, db, spec, symbols, rng, extra)
    return decode_sealed(spec, _chunk_records(db, spec, q, sql, symbols, rng), rng, extra, exact=exact)


# From this many chunks on (a guess from the symbols and months asked), the chunks are
# received on a worker thread while the first ones decode (engines.stream_records): every
# bar of the benchmark, 30 chunks: 41.4 -> 36.5 ms. A smaller read keeps one prepared
# round trip on the calling thread (handing rows between threads costs more than it saves).
_STREAM_FROM_CHUNKS = 4


def _chunk_records(db: Database, spec: TableSpec, q: Query, sql: str, symbols: list[str] | None,
                   rng: TimeRange) -> Iterable[dict[str, Any]]:
    """The rows of a :func:`sealed_rows_sql` statement: streamed when the read may span many
    chunks, else in one prepared round trip on the lookup pool."""
    what = f"{spec.key} sealed chunks"
    months = chunks.period_number(rng.end) - chunks.period_number(rng.start) + 1
    if symbols is None or len(symbols) * months >= _STREAM_FROM_CHUNKS:
        return stream_records(db, q, sql, what=what, table=spec.key)
    return lookup_records(db, q, sql, what=what, table=spec.key)


def sealed_rows_checked(db: Database, spec: TableSpec, symbols: list[str] | None, rng: TimeRange,
                        extra: Sequence[tuple[str, Any]], *, exact: bool = True,
                        views: bool = False) -> tuple[pa.Table, str, bool]:
    """:func:`sealed_rows`, and whether the row tier may hold rows of the scope, both from
    one statement (one snapshot): with chunks and no such rows, the chunks are the whole
    answer and the row read can be skipped (a backtest over sealed months: one round
    trip). ``True`` when unsure (filters other than symbol and time are not checked)."""
    q = Query()
    # Citus plans no subquery over one distributed table in the select list of a query
    # over another ("complex joins are only supported when ... co-located"): unchecked there.
    check = not db.settings.citus
    sql = sealed_rows_sql(q, db, spec, symbols, rng, extra, rows_check=check)
    seen: list[Mapping[str, Any]] = []

    def noting_first(rows: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        for row in rows:
            if not seen:
                seen.append(row)
            yield row

    rows, fp = decode_sealed(spec, noting_first(_chunk_records(db, spec, q, sql, symbols, rng)), rng, extra,
                             exact=exact, views=views)
    may_have_rows = bool(seen[0]["has_rows"]) if check and seen else True
    return rows, fp, may_have_rows


def sealed_rows_sql(q: Query, db: Database, spec: TableSpec, symbols: list[str] | None, rng: TimeRange,
                    extra: Sequence[tuple[str, Any]], *, rows_check: bool = False) -> str:
    """The statement :func:`sealed_rows` runs: the scope's chunks and their fingerprint
    (``rows_check``: and whether the row tier has a row of the scope's symbols and window)."""
    key = ", ".join(f"t.{quote_ident(c)}" for c in spec.chunk_by)
    # The fingerprint comes from the same statement (one snapshot) as the chunks.
    fp = fingerprint_sql(q, db, spec, symbols, rng, extra)
    where = " AND ".join(chunk_conditions(q, spec, symbols, rng, extra))
    check = ""
    if rows_check:  # its values bound last: the chunk conditions keep their numbers ($1 ...)
        time_col = quote_ident(spec.time_column or "timestamp")
        conds = rng.conditions(q, f"r.{time_col}")
        if symbols is not None:
            conds.append(f"r.symbol = ANY({q.param(symbols)}::text[])")
        check = (f"EXISTS (SELECT 1 FROM {qualified_table(spec, db.settings)} r WHERE {' AND '.join(conds)}) "
                 "AS has_rows, ")
    return (f"SELECT {key}, t.period_start, t.xmin::text AS v, t.schema_fingerprint, t.codec, t.first_ts, "
            f"t.last_ts, {fp} AS fp, {check}t.payload, t.patch FROM {chunk_table(spec, db.settings)} t "
            f"WHERE {where} ORDER BY {key}, t.period_start")


def sealed_schema(spec: TableSpec, extra: Sequence[tuple[str, Any]], *, exact: bool) -> pa.Schema:
    """The schema of :func:`decode_sealed`'s rows: the declared one, decimals as float64
    when not ``exact`` -- unless ``extra`` filters a decimal payload column, whose values
    are compared exact (as the row tier's SQL compares them)."""
    schema = spec.arrow_schema()
    if exact or any(name not in spec.chunk_by and spec.column(name).kind == "decimal" for name, _ in extra):
        return schema
    return pa.schema([pa.field(f.name, pa.float64(), f.nullable) if pa.types.is_decimal(f.type) else f
                      for f in schema])


def decode_sealed(spec: TableSpec, found: Iterable[Mapping[str, Any]], rng: TimeRange,
                  extra: Sequence[tuple[str, Any]], *, exact: bool = True,
                  views: bool = False) -> tuple[pa.Table, str]:
    """The answer of :func:`sealed_rows_sql` (its rows as dicts, payloads as ``bytes``;
    decoded as they come) as rows (every declared column; ``exact=False``: decimals as
    float64, else the declared types; ``views``: the chunk key's text as Arrow string
    views, see :func:`~regime_io._frames.constant`) and the fingerprint."""
    schema = sealed_schema(spec, extra, exact=exact)
    floats = schema != spec.arrow_schema()
    if views:
        schema = pa.schema([pa.field(f.name, pa.string_view(), f.nullable)
                            if f.name in spec.chunk_by and f.type == pa.string() else f for f in schema])

    def one(row: Mapping[str, Any]) -> pa.Table:
        first, last = row["first_ts"], row["last_ts"]
        inside = first >= rng.start and (last < rng.end if rng.end_exclusive else last <= rng.end)
        payload = chunks.decode(spec, row["payload"], row["schema_fingerprint"], codec=row["codec"],
                                window=None if inside else (rng.start, rng.end), floats=floats,
                                patch=row.get("patch"))
        # decode() cut the rows to the window, both ends included: an end excluded or a
        # filter on a payload column is applied here.
        if (not inside and rng.end_exclusive) or any(name not in spec.chunk_by for name, _ in extra):
            payload = _trim(spec, payload, rng, extra)
        arrays = [constant(row[f.name], payload.num_rows, f.type) if f.name in spec.chunk_by
                  else chunks.as_type(payload.column(f.name), f.type) for f in schema]
        return pa.Table.from_arrays(arrays, schema=schema)

    # On the calling thread: decoding is mostly GIL-held work (numpy on 8,192-row batches),
    # so threads lost here -- 30 chunks of 1M bars: 43 ms serially, 46 ms on 2 threads
    # (2 cores); 3 chunks of one symbol: 3.8 ms against 4.7.
    fingerprint = ""
    parts = []
    for row in found:
        fingerprint = str(row["fp"])  # the same in every row: one statement's
        parts.append(one(row))
    return (pa.concat_tables(parts) if parts else schema.empty_table()), fingerprint


def _trim(spec: TableSpec, payload: pa.Table, rng: TimeRange, extra: Sequence[tuple[str, Any]]) -> pa.Table:
    ts = payload.column(spec.time_column or "timestamp")
    lo = pa.scalar(rng.start, ts.type)
    hi = pa.scalar(rng.end, ts.type)
    mask = pc.and_(pc.greater_equal(ts, lo), pc.less(ts, hi) if rng.end_exclusive else pc.less_equal(ts, hi))
    for name, value in extra:
        if name in spec.chunk_by:
            continue
        if isinstance(value, AtLeast):
            mask = pc.and_(mask, pc.greater_equal(payload.column(name), pa.scalar(value.value)))
            continue
        column = payload.column(name)
        values = pa.array(value if isinstance(value, list) else [value]).cast(column.type)
        mask = pc.and_(mask, pc.is_in(column, value_set=values))
    if pc.all(mask).as_py():
        return payload
    return payload.filter(mask)


def to_reader(spec: TableSpec, sealed: pa.Table, schema: pa.Schema) -> pa.Table:
    """Sealed rows (declared types) in a reader's schema: decimals as float64 unless exact."""
    return pa.Table.from_arrays([chunks.as_type(sealed.column(f.name), f.type) for f in schema], schema=schema)
