"""The tier router: combines the row tier, the sealed tier and knowledge time for every read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from .._conn.copy import _ingest, session_table
from .._conn.engines import pooled_read, read_adbc, read_cx, read_lookup
from .._frames import constant
from .._sql.names import chunk_table, history_table
from .._sql.query import Query, TimeRange
from .._sql.quote import quote_ident
from ..errors import ReadError
from ..tables import TableSpec
from . import sealed_format as chunks
from .knowledge import ABSENT, KNOWN_FROM, KNOWN_TO, key_row, stored_known_from
from .sealed_read import sealed_rows, sealed_versions, to_reader

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["guarded", "read_both", "run_as_of"]


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
        # Sealed rows not superseded by a version known later than ``at``: by key, not by a
        # correlated subquery joining the temp table to the history (refused by Citus: key_row).
        temp = f"pg_temp.{quote_ident(sealed_temp)}"
        keys = ", ".join(quote_ident(c) for c in spec.primary_key)
        parts.append(f"SELECT NULL::int8, {cols}, NULL::timestamp FROM {temp} s WHERE {key_row(spec, 's')} NOT IN "
                     f"(SELECT {keys} FROM {hist} h WHERE h.{KNOWN_TO} > {at} AND {key_row(spec, 'h')} IN "
                     f"(SELECT {keys} FROM {temp}))")
    return "(" + " UNION ALL ".join(parts) + ")"


_AS_OF_TRIES = 3


def run_as_of(db: Database, spec: TableSpec, q: Query, sql: str, *, as_of: dt.datetime,
              scope: tuple[list[str], TimeRange, Sequence[tuple[str, Any]]], what: str,
              engine: Literal["cx", "adbc"] = "adbc") -> pa.Table:
    """Run a reader's ``sql`` (which names the row table) as of ``as_of``, over both tiers.

    Sealed rows of ``scope`` (symbols, window, filters) are decoded into a temporary table
    on a primary connection when any overlap; otherwise the query runs on ``engine``.
    """

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
    for _ in range(_AS_OF_TRIES):
        sealed, before = guarded(lambda: sealed_rows(db, spec, symbols, rng, extra), plain)
        if sealed.num_rows == 0:
            result = plain()
        else:
            result = pooled_read(db, partial(_as_of_with_sealed, db, spec, sealed, q, sql, as_of), what=what,
                                  table=spec.key)
        if sealed_versions(db, spec, symbols, rng, extra) == before:
            return result

    raise ReadError(f"{spec.key}: history was sealed or unsealed during each of {_AS_OF_TRIES} attempts to read it; "
                    "try again", table=spec.key)


def _copy(q: Query) -> Query:
    out = Query()
    out.params = list(q.params)
    return out


def _as_of_with_sealed(db: Database, spec: TableSpec, sealed: pa.Table, q: Query, sql: str,
                     as_of: dt.datetime) -> pa.Table:

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


T = TypeVar("T")

_MAX_TRIES = 4


def guarded(sealed_read: Callable[[], T], row_read: Callable[[], object]) -> T:
    """``sealed_read()``; if the chunk table is missing (schema not initialised), the
    reader's own row read runs instead, so the error names the table the user knows."""
    try:
        return sealed_read()
    except ReadError as err:
        if "does not exist" in str(err):
            row_read()
        raise


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

    plain = rows_reader or (lambda: read_adbc(db, q, sql, what=what, table=spec.key))
    if not spec.sealable:
        return plain()
    for _ in range(_MAX_TRIES):
        sealed, before = guarded(lambda: sealed_rows(db, spec, symbols, rng, extra), plain)
        if sealed.num_rows == 0:
            result = plain()
        else:
            result = pooled_read(db, partial(_run_with_sealed, db, spec, sealed, q, sql), what=what, table=spec.key)
        if sealed_versions(db, spec, symbols, rng, extra) == before:
            return result
    raise ReadError(f"{spec.key}: history was sealed or unsealed during each of {_MAX_TRIES} attempts to read it; "
                    "try again", table=spec.key)


def _run_with_sealed(db: Database, spec: TableSpec, sealed: pa.Table, q: Query, sql: str) -> pa.Table:
    """``sql`` on a primary connection, its row table replaced by rows + ``sealed`` (a temp table)."""

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
