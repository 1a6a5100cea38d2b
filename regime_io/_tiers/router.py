"""The tier router: the one place that decides how a read combines the storage tiers.

Every reader hands the router what it reads (a :class:`Scope`: symbols, window,
filters) and how (a :class:`RowRead`, or SQL over a relation the router names): the
reader builds SQL and decodes answers, the router runs every statement of the read;
the router decides which tiers take part (row tier only, row tier + sealed chunks,
as known at a knowledge time) and keeps the answer consistent:

* A read of a sealable table carries a **guard** in its statement: the fingerprint of
  the chunks its scope covers (:func:`~regime_io._tiers.sealed_read.fingerprint_sql`)
  must equal the one the router expects, or the statement fails with
  :data:`TIERS_CHANGED`. One statement is one snapshot, so an answer that comes back
  saw exactly the chunks expected; a seal, unseal or merge that committed in between
  fails the statement and the read runs again (at most :data:`MAX_TRIES` times).
* Round trips: with nothing sealed in its scope, a read is one statement (the row
  read, guarded by "no chunks"); with chunks, two (the chunks with their fingerprint,
  then the guarded row read). A table seen with chunks starts with the chunks.
* Tiers are combined as relations: SQL readers build their query over the relation
  the router passes them (the row table, rows + decoded chunks, or the table as known
  at an instant), never by rewriting their SQL text.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pyarrow as pa
import pyarrow.compute as pc

from .._conn.copy import copy_into, session_table
from .._conn.engines import pooled_read, read_adbc, read_adbc_together, read_cx, read_lookup, together
from .._frames import constant
from .._sql.names import chunk_table, history_table
from .._sql.query import Query, TimeRange
from .._sql.quote import literal, quote_ident
from ..errors import ReadError
from ..tables import TableSpec
from . import sealed_format as chunks
from .catalog import window_rows
from .knowledge import ABSENT, KNOWN_FROM, KNOWN_TO, key_row, stored_known_from
from .rows import as_declared, declared_select
from .sealed_read import (
    chunk_conditions,
    decode_sealed,
    fingerprint_sql,
    sealed_fingerprint,
    sealed_rows,
    sealed_rows_checked,
    sealed_rows_sql,
    sealed_schema,
    to_reader,
)

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = [
    "MAX_TRIES",
    "NEWEST_CHUNK_MATCH",
    "TIERS_CHANGED",
    "Relation",
    "RowRead",
    "Scope",
    "SqlBuilder",
    "collation_order",
    "guarded",
    "is_changed",
    "known_sealed",
    "merge_latest",
    "newest_chunks_queries",
    "newest_sealed_rows",
    "read_in_snapshot",
    "read_last",
    "read_rows",
    "read_sql",
    "read_with_sealed",
    "sealed_floor",
    "sort_as_server",
    "stream_guard",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

# Attempts of a read whose sealed tier keeps changing under it (each seal or unseal of
# its scope that commits between the two statements costs one).
MAX_TRIES = 4

# Raised by the guard inside a statement (as a failed text-to-integer cast of this text):
# the chunks of the read's scope are not those the router expected.
TIERS_CHANGED = "regime_io: the sealed tier changed during the read"

# A relation the router hands a SQL reader: called with the reader's Query at the point
# where the relation appears, it binds its own values there and returns its SQL text.
Relation = Callable[[Query], str]
# A reader's SQL over a relation: a fresh Query and its text (called once per attempt).
SqlBuilder = Callable[[Relation], tuple[Query, str]]


@dataclass(frozen=True)
class Scope:
    """What a read covers: the symbols, the time window and equality filters on other
    columns (``extra``: the chunk pruning uses them, and the guard fingerprints the
    chunks they select)."""

    symbols: list[str] | None  # None: every symbol (scan() without a symbol filter; guards only)
    window: TimeRange
    extra: Sequence[tuple[str, Any]] = field(default=())


@dataclass(frozen=True)
class RowRead:
    """A reader's row read, described rather than run: the router runs every statement of
    a read (so it owns the round trips and the retries), the reader only writes SQL and
    decodes answers, both without touching the server.

    ``build(columns, relation)``: the reader's query for ``columns`` over ``relation``
    (the guarded row table; ``None``: the plain table), its answer in the reader's order.
    ``decode(table, columns)``: the driver's answer in the reader's types. ``inline``:
    values inlined into the SQL, so the ADBC driver streams the result through ``COPY``
    (large ranges) instead of holding it in libpq first (bound parameters).

    ``split(symbols)``: the same read of some of the symbols of ``scope`` (what the read
    covers; its answer ordered by symbol first), for a read large enough that statements
    over runs of its symbols, run at once in one snapshot
    (:func:`~regime_io._conn.engines.read_adbc_together`), may pay for their round trips;
    None: one statement.
    """

    build: Callable[[list[str], Relation | None], tuple[Query, str]]
    decode: Callable[[pa.Table, list[str]], pa.Table]
    what: str
    inline: bool = False
    scope: Scope | None = None
    split: Callable[[list[str]], RowRead] | None = None

    def run(self, db: Database, spec: TableSpec, columns: Sequence[str], relation: Relation | None) -> pa.Table:
        names = list(columns)
        groups = _symbol_groups(db, spec, self.scope) if self.split is not None else []
        if len(groups) > 1:
            assert self.split is not None
            reads = [self.split(group) for group in groups]
            tables = read_adbc_together(db, [read.build(names, relation) for read in reads],
                                        what=self.what, table=spec.key)
            return pa.concat_tables([read.decode(t, names) for read, t in zip(reads, tables, strict=True)])
        q, sql = self.build(names, relation)
        if self.inline:
            q, sql = Query(), q.inline(sql)
        return self.decode(read_adbc(db, q, sql, what=self.what, table=spec.key), names)


# A read the catalog expects to return fewer rows than this runs as one statement. Forced
# on smaller reads, two statements ran at par (7,500 and 18,760 rows: 1.00x and 0.99x, 15
# alternated rounds) and gained 0.58x at 200,000 rows: 50,000 keeps the snapshot's extra
# round trips and the second connection to reads where the second core pays.
TOGETHER_ROWS = 50_000


def _symbol_groups(db: Database, spec: TableSpec, scope: Scope | None) -> list[list[str]]:
    """The scope's symbols in runs of consecutive symbols in the server's collation order
    (the order of the answer, so the runs' answers one after the other are the whole
    read's), one per statement the read runs at once, about even in the rows the catalog
    expects of each; none (one statement) when the read is expected small or the server
    takes one statement at a time (:func:`~regime_io._conn.engines.together`)."""
    n = together(db)
    if scope is None or scope.symbols is None or len(scope.symbols) < 2 or n < 2:
        return []
    try:
        expected = window_rows(db, spec, scope.symbols, scope.window)
    except ReadError as err:
        if "does not exist" not in str(err):
            raise
        return []  # no catalog (schema not initialised): the row read's own error names the table
    total = sum(rows for _, rows in expected)
    if total < TOGETHER_ROWS:
        return []
    groups: list[list[str]] = [[]]
    seen = 0.0
    for symbol, rows in expected:
        # A new run when this symbol's rows lie more past the run's share than within it.
        if groups[-1] and len(groups) < n and seen + rows / 2 > total * len(groups) / n:
            groups.append([])
        groups[-1].append(symbol)
        seen += rows
    return groups


def _changed(err: BaseException) -> bool:
    return isinstance(err, ReadError) and TIERS_CHANGED in str(err)


def _guard(q: Query, db: Database, spec: TableSpec, scope: Scope, expected: str) -> str:
    """A WHERE condition true when the scope's chunks fingerprint as ``expected``; else the
    statement fails with :data:`TIERS_CHANGED` (a failed text-to-integer cast).

    The condition is one uncorrelated scalar subquery: the planner makes it a one-time
    filter, evaluated before any row is read, also when the row tier has no row in the
    scope (a volatile ELSE branch, tried first, made it a per-row filter that an empty
    scan skips: tests/test_router.py caught the missed seal). Inside it the fingerprint
    is computed once (written twice, as WHEN and ELSE, it was planned twice: ~0.3 ms more
    per read here), and the cast reads the fingerprint's column, so the planner cannot
    fold it into an error at plan time.
    """
    fp = fingerprint_sql(q, db, spec, scope.symbols, scope.window, scope.extra)
    return (f"(SELECT CASE WHEN g.fp = {q.param(expected)}::text THEN true "
            f"ELSE ({q.param(TIERS_CHANGED + ': ')}::text || g.fp)::int = 0 END FROM (SELECT {fp} AS fp) g)")


def _rows_relation(db: Database, spec: TableSpec, scope: Scope, expected: str,
                   sealed_temp: str | None = None) -> Relation:
    """The row table guarded by ``expected`` (and, with ``sealed_temp``, the decoded
    sealed rows added to it) as a parenthesised relation with every declared column."""
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)

    def relation(q: Query) -> str:
        guard = _guard(q, db, spec, scope, expected)
        if sealed_temp is None:  # the planner pulls this up: the reader's own projection and plan
            return f"(SELECT * FROM {db.table(spec.key)} WHERE {guard})"
        return (f"(SELECT {cols} FROM {db.table(spec.key)} WHERE {guard} "
                f"UNION ALL SELECT {cols} FROM pg_temp.{quote_ident(sealed_temp)})")

    return relation


def _start_sealed(db: Database, spec: TableSpec) -> bool:
    """Whether a read of ``spec`` starts by fetching chunks: once a table was seen with
    chunks (a seal, or a read that met them), its reads take the two-statement path."""
    return spec.key in db.sealed_tables


def known_sealed(db: Database, spec: TableSpec) -> bool:
    """Whether ``spec`` was seen with chunks in this process (its reads start with them)."""
    return _start_sealed(db, spec)


def guarded(sealed_read: Callable[[], T], row_read: Callable[[], object]) -> T:
    """``sealed_read()``; if the chunk table is missing (schema not initialised), the
    reader's own row read runs instead, so the error names the table the user knows."""
    try:
        return sealed_read()
    except ReadError as err:
        if "does not exist" in str(err):
            row_read()
        raise


def _sealed(db: Database, spec: TableSpec, scope: Scope, row_read: Callable[[], object]) -> tuple[pa.Table, str]:
    """The scope's sealed rows and fingerprint (:func:`guarded`)."""
    sealed, fp = guarded(lambda: sealed_rows(db, spec, scope.symbols, scope.window, scope.extra), row_read)
    if fp:
        db.sealed_tables.add(spec.key)
    return sealed, fp


def _sealed_checked(db: Database, spec: TableSpec, scope: Scope, row_read: Callable[[], object], *,
                    exact: bool, views: bool = False) -> tuple[pa.Table, str, bool]:
    """:func:`_sealed`, and whether the row tier may hold rows of the scope (same snapshot);
    decimals as float64 unless ``exact``; the chunk key's text as string views with ``views``."""
    sealed, fp, may_have_rows = guarded(
        lambda: sealed_rows_checked(db, spec, scope.symbols, scope.window, scope.extra, exact=exact, views=views),
        row_read)
    if fp:
        db.sealed_tables.add(spec.key)
    return sealed, fp, may_have_rows


def _again(db: Database, spec: TableSpec) -> None:
    """After a guard failed: the table has chunks (or had); read them first from now on."""
    log.debug("%s: the sealed tier changed under a read (or was not expected); reading again", spec.key)
    db.sealed_tables.add(spec.key)


def _like(spec: TableSpec, sealed: pa.Table, rows: pa.Table, exact: bool) -> pa.Table:
    """Decoded sealed rows in the reader's types and the columns of its row answer ``rows``
    (text decoded as string views stays so: :func:`merge_sorted` decides)."""
    full = spec.read_schema(exact=exact)
    views = {f.name for f in sealed.schema if f.type == pa.string_view()}
    return to_reader(spec, sealed, pa.schema([full.field(n).with_type(pa.string_view()) if n in views
                                              else full.field(n) for n in rows.column_names]))


def _gave_up(spec: TableSpec) -> ReadError:
    return ReadError(f"{spec.key}: the sealed tier changed (a seal, unseal or merge) during each of {MAX_TRIES} "
                     "attempts to read it; try again", table=spec.key)


# ---------------------------------------------------------------------------------------
# Range reads: rows through the reader's own query, merged with decoded chunks


def read_rows(db: Database, spec: TableSpec, scope: Scope, read: RowRead, *, names: Sequence[str], exact: bool,
              order: Sequence[str], views: bool = False) -> pa.Table:
    """A range read over both tiers: the reader's row read (``read``, its answer in
    ``order``) over the guarded row table, and the scope's sealed rows decoded, converted
    to the reader's types and merged in ``order``. ``views``: an answer of chunks alone
    may carry the chunk key's text as Arrow string views (for polars, which takes them as
    they are: ``_frames.convert``)."""
    if not spec.sealable:
        return read.run(db, spec, names, None)
    for _ in range(MAX_TRIES):
        try:
            if not _start_sealed(db, spec):
                return read.run(db, spec, names, _rows_relation(db, spec, scope, ""))  # one statement
            sealed, fp, may_have_rows = _sealed_checked(db, spec, scope, lambda: read.run(db, spec, names, None),
                                                        exact=exact, views=views)
            if sealed.num_rows == 0:
                return read.run(db, spec, names, _rows_relation(db, spec, scope, fp))
            # The merge sorts by the order columns: read them even when not asked for.
            wider = [*names, *(c for c in order if c not in names and c in spec.column_names)]
            if may_have_rows:
                got = read.run(db, spec, wider, _rows_relation(db, spec, scope, fp))
            else:  # the chunks' statement saw no row of the scope: they are the answer (one round trip)
                full = spec.read_schema(exact=exact)
                got = pa.schema([full.field(n) for n in wider]).empty_table()
        except ReadError as err:
            if not _changed(err):
                raise
            _again(db, spec)
            continue
        merged = merge_sorted(db, spec, got, _like(spec, sealed, got, exact), order)
        return merged.select(list(names))
    raise _gave_up(spec)


# ---------------------------------------------------------------------------------------
# The last rows of each symbol: the row tier's newest rows and the newest chunks


def read_last(db: Database, spec: TableSpec, scope: Scope, n: int, read: RowRead, *, names: Sequence[str],
              exact: bool, order: Sequence[str]) -> pa.Table:
    """The last ``n`` rows of each symbol of ``scope`` (greatest time, ties by the rest of
    the key) over both tiers, in ``order``, without reading the whole window.

    ``read`` is the reader's row read of the last ``n`` rows of each symbol, in
    ``order``. With chunks in the scope:

    1. one lookup of the scope's chunk metadata (per symbol and period: rows held, newest
       row) and its fingerprint -- no payload;
    2. the row read, guarded by that fingerprint;
    3. per symbol, only the chunks that can hold one of its last rows: none when the row
       tier's ``n`` rows are newer than every chunk; else its newest periods, newest
       first, until they hold the ``n - k`` rows of the window still missing (``k``: the
       symbol's rows newer than all its chunks; a chunk's row count is a bound: filters
       and the window's ends may leave fewer, and then older periods follow);
    4. when chunks were decoded, the fingerprint once more: equal, the chunks decoded are
       those the row read was checked against.
    """
    if not spec.sealable or not scope.symbols:
        return read.run(db, spec, names, None)
    time_col = spec.time_column or "timestamp"
    wider = [*names, *(c for c in order if c not in names and c in spec.column_names)]
    if time_col not in wider:
        wider.append(time_col)
    for _ in range(MAX_TRIES):
        try:
            if not _start_sealed(db, spec):
                return read.run(db, spec, names, _rows_relation(db, spec, scope, ""))  # one statement
            periods, fp = guarded(lambda: _sealed_periods(db, spec, scope), lambda: read.run(db, spec, names, None))
            if not periods:
                return read.run(db, spec, names, _rows_relation(db, spec, scope, ""))
            db.sealed_tables.add(spec.key)
            got = read.run(db, spec, wider, _rows_relation(db, spec, scope, fp))
            parts = []
            for symbol, held in periods.items():
                mine = got.filter(pc.equal(got.column("symbol"), symbol)).column(time_col)
                floor = pc.min(mine).as_py() if len(mine) >= n else None
                # Rows newer than every chunk are among the last whatever the chunks hold.
                newer = pc.sum(pc.greater(mine, pa.scalar(max(p[2] for p in held), mine.type))).as_py() or 0
                parts.append(_newest_sealed(db, spec, scope, symbol, held, n - newer, floor, exact=exact))
            if any(p.num_rows for p in parts) and sealed_fingerprint(db, spec, scope.symbols, scope.window,
                                                                     scope.extra) != fp:
                raise ReadError(TIERS_CHANGED, table=spec.key)
        except ReadError as err:
            if not _changed(err):
                raise
            _again(db, spec)
            continue
        sealed = _like(spec, pa.concat_tables(parts), got, exact)
        if sealed.num_rows == 0:
            return got.select(list(names))
        newest_first = ["symbol", time_col, *(c for c in spec.primary_key if c not in ("symbol", time_col))]
        last = _last_of_each(sort_as_server(db, pa.concat_tables([got, sealed]), newest_first), n)
        return sort_as_server(db, last, order).select(list(names))
    raise _gave_up(spec)


def _sealed_periods(db: Database, spec: TableSpec,
                    scope: Scope) -> tuple[dict[str, list[tuple[dt.date, int, dt.datetime]]], str]:
    """Per symbol of ``scope`` with chunks in it: its periods (newest first) with the rows
    their chunks hold (a bound of the rows in the window and filters) and their newest
    row's time; and the scope's fingerprint (same statement). No payload is read."""
    q = Query()
    fp = fingerprint_sql(q, db, spec, scope.symbols, scope.window, scope.extra)
    sql = (f"SELECT t.symbol, t.period_start, sum(t.row_count)::int8 AS n, max(t.last_ts) AS last_ts, {fp} AS fp "
           f"FROM {chunk_table(spec, db.settings)} t "
           f"WHERE {' AND '.join(chunk_conditions(q, spec, scope.symbols, scope.window, scope.extra))} "
           "GROUP BY t.symbol, t.period_start ORDER BY t.symbol, t.period_start DESC")
    found = read_lookup(db, q, sql, what=f"{spec.key} sealed chunks", table=spec.key).to_pylist()
    out: dict[str, list[tuple[dt.date, int, dt.datetime]]] = {}
    for r in found:
        out.setdefault(r["symbol"], []).append((r["period_start"], int(r["n"]), r["last_ts"]))
    return out, str(found[0]["fp"]) if found else ""


def _newest_sealed(db: Database, spec: TableSpec, scope: Scope, symbol: str,
                   periods: list[tuple[dt.date, int, dt.datetime]], n: int, floor: dt.datetime | None, *,
                   exact: bool) -> pa.Table:
    """``symbol``'s sealed rows that can be among its last ``n``: none older than ``floor``
    (the oldest of ``n`` rows the row tier holds, if it holds ``n``), and of the newest
    periods holding at least ``n`` rows of the window (all of them when fewer)."""
    lowest = scope.window.start if floor is None else max(scope.window.start, floor)
    eligible = [p for p in periods if p[2] >= lowest]
    take, held = 0, 0
    while eligible:
        while take < len(eligible) and (held < n or take == 0):
            held += eligible[take][1]
            take += 1
        start = lowest if take == len(eligible) else max(lowest, dt.datetime.combine(eligible[take - 1][0], dt.time()))
        window = TimeRange(start, scope.window.end, scope.window.end_exclusive)
        sealed, _ = sealed_rows(db, spec, [symbol], window, scope.extra, exact=exact)
        if sealed.num_rows >= n or take == len(eligible):
            return sealed
        held = sealed.num_rows  # the window or the filters left fewer rows than the chunks hold: take more
    return sealed_schema(spec, scope.extra, exact=exact).empty_table()


def _last_of_each(table: pa.Table, n: int) -> pa.Table:
    """The last ``n`` rows of each run of equal ``symbol`` values (``table`` is sorted by symbol)."""
    symbols = table.column("symbol").to_pylist()
    keep: list[int] = []
    start = 0
    for i in range(1, len(symbols) + 1):
        if i == len(symbols) or symbols[i] != symbols[start]:
            keep.extend(range(max(start, i - n), i))
            start = i
    return table.take(pa.array(keep, pa.int64()))


def read_with_sealed(db: Database, spec: TableSpec, scope: Scope, build: SqlBuilder, *,
                     what: str) -> tuple[pa.Table, pa.Table]:
    """The reader's SQL (``build``) run over the guarded row table, and the scope's sealed
    rows (every declared column, exact types), consistent with each other: for readers
    that merge the two themselves (knowledge-time versions, whose current rows may sit in
    chunks)."""
    empty = spec.arrow_schema().empty_table()

    def read(relation: Relation) -> pa.Table:
        q, sql = build(relation)
        return read_adbc(db, q, sql, what=what, table=spec.key)

    if not spec.sealable:
        return read(lambda q: db.table(spec.key)), empty
    for _ in range(MAX_TRIES):
        try:
            if not _start_sealed(db, spec):
                return read(_rows_relation(db, spec, scope, "")), empty
            sealed, fp = _sealed(db, spec, scope, lambda: read(lambda q: db.table(spec.key)))
            return read(_rows_relation(db, spec, scope, fp)), sealed
        except ReadError as err:
            if not _changed(err):
                raise
            _again(db, spec)
    raise _gave_up(spec)


def read_in_snapshot(cur: Any, db: Database, spec: TableSpec, scope: Scope) -> pa.Table:
    """Both tiers of ``scope`` read on ``cur``, inside a ``REPEATABLE READ`` transaction
    the caller holds (the live follower's catch-up, whose position is that snapshot): one
    snapshot sees the two tiers consistent, so no guard and no retry. Every declared
    column in its declared type, ordered by time, then the rest of the key."""
    q = Query()
    time_col = quote_ident(spec.time_column or "timestamp")
    conds = scope.window.conditions(q, f"t.{time_col}")
    if scope.symbols is not None:
        conds.append(f"t.symbol = ANY({q.param(scope.symbols)}::text[])")
    cur.execute(f"SELECT {declared_select(spec)} FROM {db.table(spec.key)} t WHERE {' AND '.join(conds)}",
                parameters=tuple(q.params) if q.params else None)
    parts = [as_declared(spec, cur.fetch_arrow_table())]
    if spec.sealable:
        q = Query()
        cur.execute(sealed_rows_sql(q, db, spec, scope.symbols, scope.window, scope.extra),
                    parameters=tuple(q.params) if q.params else None)
        sealed, _ = decode_sealed(spec, cur.fetch_arrow_table().to_pylist(), scope.window, scope.extra)
        parts.append(sealed)
    both = pa.concat_tables(parts)
    order = [(spec.time_column or "timestamp", "ascending"),
             *((c, "ascending") for c in spec.primary_key if c != spec.time_column)]
    return both.sort_by(order)


def stream_guard(db: Database, spec: TableSpec, scope: Scope) -> Relation | None:
    """The relation a streamed row read (which cannot be re-run once it yielded) reads when
    the scope has no chunks: the guarded row table, failing at once with
    :data:`TIERS_CHANGED` if chunks appear. ``None`` when the scope has chunks (the
    stream must read both tiers piece by piece)."""
    if not spec.sealable:
        return lambda q: db.table(spec.key)
    # Always looked up first (one lookup per stream, which reads many rows): a stream's
    # guard that trips fails inside connectorx's worker thread, which prints a Rust panic
    # on stderr even though the error is caught and the read retried.
    if sealed_fingerprint(db, spec, scope.symbols, scope.window, scope.extra):
        db.sealed_tables.add(spec.key)
        return None
    return _rows_relation(db, spec, scope, "")


def is_changed(err: BaseException) -> bool:
    """True for the error a guard raises when the sealed tier changed under a read."""
    return _changed(err)


# ---------------------------------------------------------------------------------------
# Merging rows and decoded chunks


def collation_order(db: Database, values: list[str]) -> list[str]:
    """``values`` in the server's collation order (the ORDER BY of the rows a read returns)."""
    if len(values) < 2:
        return values
    q = Query()
    table = read_lookup(db, q, f"SELECT v FROM unnest({q.param(values)}::text[]) AS u(v) ORDER BY v",
                        what="collation order")
    return [str(v) for v in table.column("v").to_pylist()]


def _collation_ranks(db: Database, values: list[str]) -> dict[str, int]:
    """Each text value's position in the server's collation order."""
    return {v: i for i, v in enumerate(collation_order(db, values))}


def merge_sorted(db: Database, spec: TableSpec, rows: pa.Table, sealed: pa.Table, order: Sequence[str]) -> pa.Table:
    """``rows`` (already in ``order``) and ``sealed`` (chunk key, time order) as one table in
    ``order``, text columns compared as the server compares them."""
    if sealed.num_rows == 0:
        return rows
    if rows.num_rows == 0 and list(order[: len(spec.chunk_by) + 1]) == [*spec.chunk_by, spec.time_column]:
        return sealed  # chunks come in the server's order of their key, then by period
    # Text decoded as string views goes back to text: the rows' type, and the collation
    # ranks below are computed over text.
    sealed = pa.Table.from_arrays([c.cast(pa.string()) if c.type == pa.string_view() else c for c in sealed.columns],
                                  names=sealed.column_names)
    both = pa.concat_tables([rows, sealed.select(rows.column_names)]) if rows.num_rows else sealed
    return sort_as_server(db, both, order)


def sort_as_server(db: Database, both: pa.Table, order: Sequence[str]) -> pa.Table:
    """``both`` sorted by ``order`` (ascending), text columns compared as the server compares them."""
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


# ---------------------------------------------------------------------------------------
# Latest rows


def newest_sealed_rows(db: Database, spec: TableSpec) -> Relation:
    """Each chunk's newest row (``last_row``, turned back into the table's row on the
    server) as a relation with the declared columns: the latest-row reader joins it to the
    series catalog beside the row table, in the same statement, and gets the sealed tier's
    latest rows in the types of the row tier's, with no payload read (a 41,760-row month
    payload is ~570 KB: the latest row of a sealed symbol took 1.8 ms fetching it and
    decoding one record batch, 0.8-1.0 ms this way)."""
    time_col = spec.time_column or "timestamp"

    def column(name: str) -> str:
        if name in spec.chunk_by:
            return f"k.{quote_ident(name)}"
        # The chunk's last_ts is the row's time: the catalog join probes the chunks' index.
        if name == time_col:
            return f"k.last_ts AS {quote_ident(name)}"
        # Only the other columns are read back from the JSON, each text value through its
        # declared type's input (as jsonb_to_record does): 100.5 against 102.8 us a lookup
        # (3,000 alternated, the lookup alone), jsonb_to_record's function scan the rest;
        # jsonb_populate_record of the table's row type also parsed the key and the time.
        return f"(k.last_row->>{literal(name)})::{spec.column(name).pg_type} AS {quote_ident(name)}"

    def relation(q: Query) -> str:
        return (f"(SELECT {', '.join(column(c) for c in spec.column_names)}, k.period_start AS {_PERIOD} "
                f"FROM {chunk_table(spec, db.settings)} k WHERE k.last_row IS NOT NULL)")

    return relation


_PERIOD = '"_chunk_period"'

# How the latest-row reader's join (catalog ``s``, :func:`newest_sealed_rows` as ``t``)
# finds the one chunk holding a series' newest row: the period of the catalog's newest
# time, so the chunk key's index finds it. Matched on last_ts alone, the scan visited
# every chunk of the series: 60 for five years of months.
NEWEST_CHUNK_MATCH = f"t.{_PERIOD} = {chunks.period_sql('s.last_ts')}"


def newest_chunks_queries(db: Database, spec: TableSpec, wanted: list[str] | None,
                          timeframe: str | None) -> list[tuple[Query, str]]:
    """The lookups :func:`merge_latest` needs beside the latest-row query, independent of
    its answer (the latest-row reader sends them in the same round trip): none once a read
    found that no chunk of the table predates ``last_row`` (``db.last_rows_complete``;
    sending them cost ~0.2 ms of a 0.78 ms ``get_latest``), else :func:`newest_chunks_query`
    and whether the table has such chunks at all."""
    if not spec.sealable or spec.key in db.last_rows_complete:
        return []
    return [newest_chunks_query(db, spec, wanted, timeframe),
            (Query(), f"SELECT NOT EXISTS (SELECT 1 FROM {chunk_table(spec, db.settings)} WHERE last_row IS NULL) "
                      "AS complete")]


def newest_chunks_query(db: Database, spec: TableSpec, wanted: list[str] | None,
                        timeframe: str | None) -> tuple[Query, str]:
    """The newest chunk without a ``last_row`` (written before schema version 8) of each
    series asked for (key, period, ``last_ts``), for :func:`merge_latest`."""
    q = Query()
    key = [c for c in spec.chunk_by]
    cols = ", ".join(f"t.{quote_ident(c)}" for c in key)
    conds = ["t.last_row IS NULL"]
    if wanted is not None:
        conds.append(f"t.symbol = ANY({q.param(wanted)}::text[])")
    if timeframe is not None and "timeframe" in key:
        conds.append(f"t.timeframe = {q.param(timeframe)}")
    where = f"WHERE {' AND '.join(conds)}"
    payload = ""
    if not db.settings.citus:
        # The payload too when no row of the series is as new as the chunk's last one: the
        # latest row is then in the chunk, and one round trip brings it (the row tier's
        # index answers the check backwards). Citus plans no correlated subquery here.
        time_col = quote_ident(spec.time_column or "timestamp")
        same = " AND ".join(f"r.{quote_ident(c)} = t.{quote_ident(c)}" for c in key)
        payload = (f", CASE WHEN NOT EXISTS (SELECT 1 FROM {db.table(spec.key)} r WHERE {same} "
                   f"AND r.{time_col} >= t.last_ts) THEN t.payload END AS payload, t.patch, "
                   "t.schema_fingerprint, t.codec")
    return q, (f"SELECT {cols}, t.period_start, t.last_ts{payload} FROM (SELECT DISTINCT ON ({cols}) * FROM "
               f"{chunk_table(spec, db.settings)} t {where} ORDER BY {cols}, t.period_start DESC) t")


def merge_latest(db: Database, spec: TableSpec, rows: pa.Table, found: Sequence[pa.Table],
                 schema: pa.Schema) -> pa.Table:
    """The row tier's latest rows (``rows``, one per series) corrected by the sealed tier
    (``found``: the answers to :func:`newest_chunks_queries`): a series whose newest chunk
    ends after its latest row (or that has no rows) takes that chunk's last row, which
    costs one more lookup; otherwise nothing is read."""
    if not found:
        return rows
    newest = found[0].to_pylist()
    if found[1].column("complete")[0].as_py():
        db.last_rows_complete.add(spec.key)
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
    found = [r for r in stale if r.get("payload") is not None]  # brought by newest_chunks_query
    missing = [r for r in stale if r.get("payload") is None]
    if missing:
        q = Query()
        picks = [f"(t.period_start = {q.param(r['period_start'])} AND "
                 + " AND ".join(f"t.{quote_ident(c)} = {q.param(r[c])}" for c in key) + ")" for r in missing]
        found += read_lookup(db, q, f"SELECT {cols}, t.last_ts, t.schema_fingerprint, t.codec, t.payload, t.patch FROM "
                             f"{chunk_table(spec, db.settings)} t WHERE {' OR '.join(picks)}",
                             what="get_latest (sealed)", table=spec.key).to_pylist()
    full = sealed_schema(spec, (), exact=any(pa.types.is_decimal(f.type) for f in schema))
    floats = full != spec.arrow_schema()
    lasts = []
    for r in found:
        # Only the record batch holding the chunk's last row is decoded (1 of ~6 in a month).
        payload = chunks.decode(spec, r["payload"], r["schema_fingerprint"], codec=r["codec"],
                                window=(r["last_ts"], r["last_ts"]), floats=floats, patch=r.get("patch"))
        ts = payload.column(time_col)
        last = payload.slice(pc.index(ts, pc.max(ts)).as_py(), 1)
        lasts.append(pa.Table.from_arrays([constant(r[f.name], 1, f.type) if f.name in key
                                           else chunks.as_type(last.column(f.name), f.type) for f in full],
                                          schema=full))
    sealed = to_reader(spec, pa.concat_tables(lasts), schema)
    replaced = {tuple(r[c] for c in series) for r in sealed.select(series).to_pylist()}
    keep = [i for i, r in enumerate(rows.select(series).to_pylist()) if tuple(r[c] for c in series) not in replaced]
    both = pa.concat_tables([rows.take(pa.array(keep, pa.int64())), sealed])
    return merge_sorted(db, spec, both.slice(0, 0), both, series)


# ---------------------------------------------------------------------------------------
# SQL readers (statistics, resampling, option chains, as-of rows): SQL over a relation


def read_sql(db: Database, spec: TableSpec, scope: Scope, build: SqlBuilder, *, what: str,
             as_of: dt.datetime | None = None, engine: Literal["cx", "adbc"] = "adbc") -> pa.Table:
    """Run a reader's SQL over both tiers (now, or as known at ``as_of``).

    ``build(relation)`` returns the reader's query over ``relation``. With no chunks in
    the scope the relation is the guarded row table (or the table as known at ``as_of``)
    and the query runs on ``engine``; with chunks, their rows are decoded into a session
    table on a primary connection and the relation adds them: the same SQL computes the
    same answer over both tiers.
    """

    def run(relation: Relation) -> pa.Table:
        q, sql = build(relation)
        if engine == "cx":
            return read_cx(db, q, sql, what=what, table=spec.key)
        return read_adbc(db, q, sql, what=what, table=spec.key)

    def relation(expected: str | None, sealed_temp: str | None) -> Relation:
        if as_of is not None:
            return lambda q: as_of_view(db, spec, q, as_of, sealed_temp=sealed_temp,
                                        guard=None if expected is None else (scope, expected))
        if expected is None:
            return lambda q: db.table(spec.key)
        return _rows_relation(db, spec, scope, expected, sealed_temp)

    if not spec.sealable:
        return run(relation(None, None))
    for _ in range(MAX_TRIES):
        try:
            if not _start_sealed(db, spec):
                return run(relation("", None))  # one statement
            sealed, fp = _sealed(db, spec, scope, lambda: run(relation(None, None)))
            if sealed.num_rows == 0:
                return run(relation(fp, None))
            temp = f"_rio_{'asof' if as_of is not None else 'sealed'}_{spec.key}"
            return pooled_read(db, partial(_with_sealed, db, spec, sealed, build, relation(fp, temp), temp),
                               what=what, table=spec.key)
        except ReadError as err:
            if not _changed(err):
                raise
            _again(db, spec)
    raise _gave_up(spec)


def _with_sealed(db: Database, spec: TableSpec, sealed: pa.Table, build: SqlBuilder, relation: Relation,
                 temp: str) -> pa.Table:
    """The reader's SQL on a primary connection, over ``relation``, which reads the
    session table ``temp`` holding ``sealed``."""
    q, sql = build(relation)
    with db.connection() as conn:
        cur = conn.cursor()
        try:
            session_table(cur, spec, temp)
            copy_into(cur, temp, sealed, temporary=True)
            cur.execute(sql, parameters=tuple(q.params) if q.params else None)
            return cur.fetch_arrow_table()
        finally:
            cur.close()


def as_of_view(db: Database, spec: TableSpec, q: Query, as_of: dt.datetime, *, sealed_temp: str | None,
               guard: tuple[Scope, str] | None = None) -> str:
    """The row table as known at ``as_of`` (rows known by then, versions of the knowledge
    table valid then, and the decoded sealed rows in ``sealed_temp`` not superseded since),
    as a parenthesised relation. ``guard``: the scope and fingerprint the row part checks."""
    target = db.table(spec.key)
    hist = history_table(spec, db.settings)
    # A naive UTC value turned into timestamptz by an immutable expression: folded into a
    # constant when the plan is made (a text parameter cast to timestamptz is parsed per row).
    at = f"({q.param(as_of.astimezone(dt.timezone.utc).replace(tzinfo=None))} AT TIME ZONE 'UTC')"
    zone = f"{q.param(db.settings.storage_timezone)}::text"
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    checked = f" AND {_guard(q, db, spec, guard[0], guard[1])}" if guard is not None else ""
    parts = [f"SELECT id, {cols}, created_at FROM {target} r WHERE {stored_known_from('r', zone)} <= {at}{checked}",
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
