"""Deleting a time range of some symbols from both tiers (``delete_range``).

One merge strategy of the one write transaction (:func:`regime_io._write.transaction.run`:
retries, nothing half-written), which in order:

1. clips the range to the data (the first and last stored timestamps of the symbols in
   it, both tiers) and takes the sealed-month period locks of those months, shared, as a
   writer does: a seal (exclusive) cannot move rows between the tiers meanwhile;
2. for a table that keeps history (``[DATABASE] history_tables``), takes the same
   per-symbol locks as a versioned write and ends the last version of each deleted row at
   the delete (clock read once, bound; a version dated in the future by ``known_at=``
   ends a microsecond after its start, as in an upsert): ``as_of=`` before the delete
   still sees the rows, ``history()`` lists them with their ``known_to``;
3. deletes the row tier's rows, counting them per series;
4. rewrites each sealed chunk holding rows of the range without them (a chunk left
   empty is deleted); for history tables their values become versions as in step 2;
5. updates the series catalog (counts, first and last timestamps, series left empty
   removed) and records the deleted range in the change log, which the live tail
   delivers as ``TailBatch.deleted`` (``NOTIFY`` wakes it at commit).

Example:
    >>> pg.delete_range("bars", "NIFTY", "2024-01-02", "2024-01-02")  # doctest: +SKIP
    375
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from .._conn.engines import read_lookup
from .._frames import constant
from .._schema.timezones import check_time_kind
from .._sql.args import is_aware, parse_range, resolve_symbols
from .._sql.names import catalog_table, chunk_table, history_table, qualified_table
from .._sql.query import Query, TimeRange
from .._sql.quote import quote_ident
from .._tiers import catalog, changes, knowledge
from .._tiers import row_groups as groups
from .._tiers import sealed_store as store
from .._tiers.sealed_read import chunk_conditions, sealed_rows
from ..errors import UsageError
from ..tables import TableSpec
from ..types import DateLike
from .transaction import Attempt, Merged, run

if TYPE_CHECKING:
    from .._conn.database import Database

__all__ = ["delete_range"]

log = logging.getLogger(__name__)


def delete_range(db: Database, table: str, symbol: str | Sequence[str] | None = None,
                 start_date: DateLike | None = None, end_date: DateLike | None = None, *,
                 symbols: Sequence[str] | None = None, dry_run: bool = False) -> int:
    """Delete the rows of ``symbol`` in ``[start_date, end_date]`` from both tiers; returns
    how many (``dry_run``: how many would be, nothing changed). See the module docstring."""
    spec = db.spec(table)
    if spec.time_column is None:
        raise UsageError(f"delete_range: {spec.key} has no time column; delete its rows with SQL "
                         "(by symbol and run_id)", table=spec.key, value=table)
    wanted = resolve_symbols(symbol, symbols, case=db.settings.symbol_case)
    assert wanted is not None
    rng = parse_range(start_date, end_date, timezone=db.settings.storage_timezone)
    if any(is_aware(b) for b in (start_date, end_date) if b is not None):
        check_time_kind(db, spec, aware=True, what=f"{spec.key} bounds")
    if not wanted:
        return 0
    if dry_run:
        return _count(db, spec, wanted, rng)

    def merge(cur: Any, attempt: Attempt) -> Merged:
        return _delete(cur, db, spec, wanted, rng)

    result = run(db, spec, merge, span=None)
    log.info("%s: %d row(s) of %s deleted in [%s, %s%s", spec.key, result.rows, ", ".join(wanted), rng.start,
             rng.end, ")" if rng.end_exclusive else "]")
    return result.rows


def _where(q: Query, spec: TableSpec, symbols: list[str], rng: TimeRange, alias: str = "t") -> str:
    time_col = f"{alias}.{quote_ident(spec.time_column or 'timestamp')}"
    return " AND ".join([f"{alias}.symbol = ANY({q.param(symbols)}::text[])", *rng.conditions(q, time_col)])


def _count(db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange) -> int:
    """Rows a delete would remove: the row tier's count plus the sealed rows in the range."""
    q = Query()
    sql = f"SELECT count(*) AS n FROM {db.table(spec.key)} t WHERE {_where(q, spec, symbols, rng)}"
    found = read_lookup(db, q, sql, what="delete_range (dry run)", table=spec.key)
    rows = int(found.column("n")[0].as_py())
    if spec.sealable:
        rows += sealed_rows(db, spec, symbols, rng, [])[0].num_rows
    return rows


def _run(cur: Any, sql: str, q: Query) -> list[tuple[Any, ...]]:
    cur.execute(sql, parameters=tuple(q.params) if q.params else None)
    return list(cur.fetchall())


def _clip(cur: Any, db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange) -> TimeRange | None:
    """``rng`` narrowed to the first and last stored timestamps in it (both tiers); None
    when nothing is stored there."""
    q = Query()
    time_col = quote_ident(spec.time_column or "timestamp")
    parts = [f"SELECT min(t.{time_col}) AS lo, max(t.{time_col}) AS hi FROM {qualified_table(spec, db.settings)} t "
             f"WHERE {_where(q, spec, symbols, rng)}"]
    if spec.sealable:
        parts.append(f"SELECT min(t.first_ts), max(t.last_ts) FROM {chunk_table(spec, db.settings)} t "
                     f"WHERE {' AND '.join(chunk_conditions(q, spec, symbols, rng, []))}")
    found = _run(cur, f"SELECT min(lo), max(hi) FROM ({' UNION ALL '.join(parts)}) u", q)
    lo, hi = found[0] if found else (None, None)
    if lo is None:
        return None
    return TimeRange(max(lo, rng.start), min(hi, rng.end), end_exclusive=False)


def _delete(cur: Any, db: Database, spec: TableSpec, symbols: list[str], rng: TimeRange) -> Merged:
    settings = db.settings
    span = _clip(cur, db, spec, symbols, rng)
    if span is None:
        return Merged(rows=0, inserted=0, updated=0, series=[], method="empty")
    periods = groups.period_range(span.start.date(), span.end.date()) if spec.sealable else []
    store.lock_periods(cur, settings, spec, periods, exclusive=False)
    history = knowledge.keeps_history(settings, spec)
    if history:
        knowledge.lock_symbols(cur, settings, spec, symbols)
        _end_versions(cur, db, spec, symbols, span)
    series = catalog.series_columns(spec)
    q = Query()
    removed_by: dict[tuple[str, str], int] = {}
    cols = ", ".join(f"t.{quote_ident(c)}" for c in series)
    rows = _run(cur, f"WITH d AS (DELETE FROM {qualified_table(spec, settings)} t WHERE "
                     f"{_where(q, spec, symbols, span)} RETURNING {cols}) "
                     f"SELECT {', '.join(quote_ident(c) for c in series)}, count(*) FROM d "
                     f"GROUP BY {', '.join(quote_ident(c) for c in series)}", q)
    for row in rows:
        key = (row[0], row[1] if len(series) == 2 else "")
        removed_by[key] = removed_by.get(key, 0) + int(row[-1])
    if spec.sealable:
        for key, n in _delete_sealed(cur, db, spec, symbols, span, periods, history).items():
            removed_by[key] = removed_by.get(key, 0) + n
    removed = sum(removed_by.values())
    if removed:
        catalog.record_deletes(cur, settings, spec, [(s, tf, n) for (s, tf), n in removed_by.items()])
        _last_ts(cur, db, spec, list(removed_by))
        changes.record_deleted_range(cur, settings, spec, symbols, span, removed)
        changes.notify(cur, settings, spec)
    return Merged(rows=removed, inserted=0, updated=0, series=[], method="staged")


def _end_versions(cur: Any, db: Database, spec: TableSpec, symbols: list[str], span: TimeRange) -> None:
    """History rows for the row tier's rows about to be deleted: their last version, known
    from its start until now (the clock read once and bound: Citus evaluates a volatile
    function beside a column on the coordinator and fails)."""
    settings = db.settings
    cur.execute("SELECT clock_timestamp()::text")
    ended = cur.fetchone()[0]
    q = Query()
    p_ended = q.param(ended)
    zone = f"{q.param(settings.storage_timezone)}::text"
    old = knowledge.stored_known_from("t", zone)
    cols = ", ".join(quote_ident(c.name) for c in spec.columns)
    t_cols = ", ".join(f"t.{quote_ident(c.name)}" for c in spec.columns)
    cur.execute(f"INSERT INTO {history_table(spec, settings)} (id, {cols}, created_at, {knowledge.KNOWN_FROM}, "
                f"{knowledge.KNOWN_TO}) SELECT t.id, {t_cols}, t.created_at, {old}, "
                f"greatest({p_ended}::timestamptz, {old} + interval '1 microsecond') "
                f"FROM {qualified_table(spec, settings)} t WHERE {_where(q, spec, symbols, span)}",
                parameters=tuple(q.params))


def _delete_sealed(cur: Any, db: Database, spec: TableSpec, symbols: list[str], span: TimeRange,
                   periods: list[dt.date], history: bool) -> dict[tuple[str, str], int]:
    """Rewrite the chunks of ``periods`` holding rows of ``symbols`` in ``span`` without
    them; returns the rows removed per catalog series."""
    settings = db.settings
    found = store.existing_chunks(cur, settings, spec, symbols, periods)
    by_period: dict[dt.date, list[groups.SeriesKey]] = {}
    for key, period in found:
        by_period.setdefault(period, []).append(key)
    time_col = spec.time_column or "timestamp"
    removed_by: dict[tuple[str, str], int] = {}
    at_symbol = spec.chunk_by.index("symbol")
    at_tf = spec.chunk_by.index("timeframe") if "timeframe" in spec.chunk_by else None
    for period in sorted(by_period):
        decoded = store.fetch_for_update(cur, settings, spec, period, sorted(by_period[period]))
        rewritten: dict[groups.SeriesKey, pa.Table] = {}
        gone: list[pa.Table] = []
        for key, payload in decoded.items():
            ts = payload.column(time_col)
            inside = pc.and_(pc.greater_equal(ts, pa.scalar(span.start, ts.type)),
                             pc.less_equal(ts, pa.scalar(span.end, ts.type)))
            n = pc.sum(inside).as_py() or 0
            if not n:
                continue
            rewritten[key] = payload.filter(pc.invert(inside))
            series = (key[at_symbol], key[at_tf] if at_tf is not None else "")
            removed_by[series] = removed_by.get(series, 0) + n
            if history:
                gone.append(_versions(spec, key, payload.filter(inside)))
        if rewritten:
            store.write_chunks(cur, settings, spec, period, rewritten)
            knowledge.record_sealed(cur, settings, spec, gone, None)
    return removed_by


def _versions(spec: TableSpec, key: groups.SeriesKey, payload: pa.Table) -> pa.Table:
    """Deleted sealed rows as :func:`knowledge.record_sealed` takes them: every declared
    column (chunk key filled in) and ``absent`` false (the key had these values)."""
    schema = spec.arrow_schema()
    arrays = [constant(key[spec.chunk_by.index(f.name)], payload.num_rows, f.type) if f.name in spec.chunk_by
              else payload.column(f.name) for f in schema]
    table = pa.Table.from_arrays(arrays, schema=schema)
    return table.append_column(pa.field(knowledge.ABSENT, pa.bool_()), pa.array([False] * table.num_rows))


def _last_ts(cur: Any, db: Database, spec: TableSpec, series: list[tuple[str, str]]) -> None:
    """Move each catalog series' ``last_ts`` to its last row left (row tier and chunks):
    :func:`catalog.record_deletes` moves ``first_ts`` only (retention deletes the oldest
    rows), a range may end at the newest."""
    settings = db.settings
    time_col = quote_ident(spec.time_column or "timestamp")
    two = len(catalog.series_columns(spec)) == 2
    match = "t.symbol = s.symbol" + (" AND t.timeframe = s.timeframe" if two else "")
    sources = [f"(SELECT t.{time_col} AS ts FROM {qualified_table(spec, settings)} t WHERE {match} "
               f"ORDER BY t.{time_col} DESC LIMIT 1)"]
    if spec.sealable:
        sources.append(f"(SELECT max(t.last_ts) AS ts FROM {chunk_table(spec, settings)} t WHERE {match})")
    rows = [{"symbol": s, "timeframe": tf} for s, tf in series]
    cur.execute(f"UPDATE {catalog_table(settings)} AS s SET last_ts = COALESCE((SELECT max(u.ts) FROM "
                f"({' UNION ALL '.join(sources)}) u), s.last_ts) "
                "FROM jsonb_to_recordset($2::jsonb) AS x(symbol text, timeframe text) "
                "WHERE s.table_key = $1 AND s.symbol = x.symbol AND s.timeframe = x.timeframe",
                parameters=(spec.key, json.dumps(rows)))

