"""The series catalog: one row per stored series, kept by the writers.

A *series* is what "the latest row" means for a table: a symbol, or a (symbol,
timeframe) pair in the tables that have a timeframe. The catalog table
``<prefix>series`` holds, per time-series table (derived from the declarations in
:mod:`regime_io.tables`) and series, the first and last timestamp and the row count:

* **kept by the writers, in the write's own transaction**: one upsert per write with one
  row per series that gained rows (``row_count + inserted``, ``LEAST``/``GREATEST`` of
  the timestamps), counts taken from the write's exact inserted counts; rolling trims
  and ``cleanup_old_data`` subtract what they deleted and move ``first_ts``;
* **rebuilt by** :func:`refresh` for rows written or deleted by other tools (one
  ``GROUP BY`` over the table and its sealed chunks: it reads every row);
* **distributed like the data** on Citus (by ``symbol``, co-located with
  ``market_data``), so the catalog row of a series and its rows live on the same worker.

Readers use it for "the latest row of every series": the catalog joined to the table on
the exact key ``(symbol[, timeframe], timestamp = last_ts)``, one primary-key probe per
series, whatever the length of the history; on Citus a co-located join that every worker
runs on its own shards.

Example:
    >>> from regime_io.config import Settings
    >>> print(catalog_sql(Settings())[0].splitlines()[0])
    CREATE TABLE IF NOT EXISTS "public"."mr_series" (
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from .._conn.driver_errors import DRIVER_ERRORS, is_connection_error, maintenance_error
from .._conn.engines import read_lookups
from .._frames import conform
from .._sql.names import catalog_table
from .._sql.query import Query, TimeRange
from .._sql.quote import literal, qualified, quote_ident
from ..errors import UsageError
from ..tables import TABLES, TableKey, TableSpec, table_spec

if TYPE_CHECKING:
    from .._conn.database import Database
    from ..config import Settings

__all__ = [
    "CATALOG_SCHEMA", "SERIES_TABLES", "catalog_sql", "fill_catalog", "read_catalog", "record_deletes",
    "record_writes", "refresh", "removed_sql", "series_columns", "series_counts", "series_stats",
    "subtract_sql", "window_rows",
]

log = logging.getLogger(__name__)


#: The tables the catalog describes: every table with a time column.
SERIES_TABLES: tuple[TableKey, ...] = tuple(k for k, s in TABLES.items() if s.time_column is not None)


#: The frame :func:`regime_io.PostgreSQLIntegration.catalog` returns.
CATALOG_SCHEMA = pa.schema([
    pa.field("table", pa.string()), pa.field("symbol", pa.string()), pa.field("timeframe", pa.string()),
    pa.field("first_timestamp", pa.timestamp("us")), pa.field("last_timestamp", pa.timestamp("us")),
    pa.field("row_count", pa.int64()), pa.field("rows", pa.int64()), pa.field("sealed", pa.int64()),
])


# A series without a timeframe stores '' (a primary-key column cannot be NULL); the
# catalog frame shows it as null.
_NO_TIMEFRAME = ""


SeriesKey = tuple[str, str]  # (symbol, timeframe or '')


def series_columns(spec: TableSpec) -> tuple[str, ...]:
    """The columns that name one series of ``spec``: ``symbol`` [, ``timeframe``]."""
    return ("symbol", "timeframe") if "timeframe" in spec.column_names else ("symbol",)


def catalog_sql(settings: Settings) -> list[str]:
    """DDL of the catalog table (types of ``symbol`` and ``timeframe`` as in the data tables)."""
    symbol = TABLES["market_data"].column("symbol").pg_type
    timeframe = TABLES["market_data"].column("timeframe").pg_type
    return [
        f"CREATE TABLE IF NOT EXISTS {catalog_table(settings)} (\n"
        "    table_key VARCHAR(32) NOT NULL,\n"
        f"    symbol {symbol} NOT NULL,\n"
        f"    timeframe {timeframe} NOT NULL DEFAULT '',\n"
        "    first_ts TIMESTAMP NOT NULL,\n"
        "    last_ts TIMESTAMP NOT NULL,\n"
        "    row_count BIGINT NOT NULL,\n"
        "    PRIMARY KEY (table_key, symbol, timeframe)\n)"
    ]


def series_counts(spec: TableSpec, batch: pa.Table, inserted: Mapping[SeriesKey, int] | None = None
                  ) -> list[dict[str, Any]]:
    """Per series of ``batch``: first/last timestamp and rows inserted.

    ``inserted`` gives each series' inserted count (a merge's exact counts); without it
    every row of the batch counts as inserted (a plain COPY). Series with nothing
    inserted are left out: they were already in the catalog, inside its range.
    """
    out = []
    for key, first, last, rows in series_stats(spec, batch):
        count = rows if inserted is None else inserted.get(key, 0)
        if count:
            out.append({"symbol": key[0], "timeframe": key[1], "first_ts": first.isoformat(),
                        "last_ts": last.isoformat(), "n": int(count)})
    return sorted(out, key=lambda e: (e["symbol"], e["timeframe"]))


def series_stats(spec: TableSpec, batch: pa.Table) -> list[tuple[SeriesKey, dt.datetime, dt.datetime, int]]:
    """Per series of ``batch`` (rows in natural-key order, as :func:`regime_io._write.validate.validate`
    returns them): its key, first and last timestamp (naive, in the storage zone) and row count."""
    if spec.key not in SERIES_TABLES or batch.num_rows == 0:
        return []
    time = spec.time_column
    assert time is not None
    cols = series_columns(spec)
    times = batch.column(time)
    # Zone-aware times are stored as their wall time in the storage zone (the batch
    # carries them converted); the catalog holds the same naive values.
    if getattr(times.type, "tz", None):
        times = pc.local_timestamp(times).cast(pa.timestamp("us"))
    if spec.primary_key[:len(cols) + 1] == (*cols, time):
        # Rows in key order: each series is one run, its times ascending. The run ends
        # of the series columns are the whole answer (~40 us for a live save's 2 rows,
        # ~0.6 ms for 500 series, where Arrow's hash aggregation took ~0.17 and ~2 ms).
        ends = sorted({e for c in cols
                       for e in pc.run_end_encode(batch.column(c).combine_chunks()).run_ends.to_pylist()})
        firsts = [0, *ends[:-1]]
        counts = [b - a for a, b in zip(firsts, ends, strict=True)]
        symbol, timeframe = batch.column(cols[0]), batch.column(cols[1]) if len(cols) == 2 else None
        if len(ends) <= 16:  # scalars: ~2 us each, where a take costs ~20 us
            return [((symbol[a].as_py(), timeframe[a].as_py() if timeframe is not None else _NO_TIMEFRAME),
                     times[a].as_py(), times[b - 1].as_py(), n) for a, b, n in zip(firsts, ends, counts, strict=True)]
        starts, lasts = pa.array(firsts, pa.int64()), pa.array([e - 1 for e in ends], pa.int64())
        timeframes = timeframe.take(starts).to_pylist() if timeframe is not None else [_NO_TIMEFRAME] * len(ends)
        keys = zip(symbol.take(starts).to_pylist(), timeframes, strict=True)
        return list(zip(keys, _datetimes(times.take(starts)), _datetimes(times.take(lasts)), counts, strict=True))
    table = pa.table({**{c: batch.column(c) for c in cols}, time: times})
    stats = table.group_by(list(cols), use_threads=False).aggregate([(time, "min"), (time, "max"),
                                                                     ([], "count_all")])
    keys = zip(stats.column(cols[0]).to_pylist(),
               stats.column(cols[1]).to_pylist() if len(cols) == 2 else [_NO_TIMEFRAME] * stats.num_rows,
               strict=True)
    return list(zip(keys, _datetimes(stats.column(f"{time}_min")), _datetimes(stats.column(f"{time}_max")),
                    stats.column("count_all").to_pylist(), strict=True))


def _datetimes(values: pa.Array | pa.ChunkedArray) -> list[dt.datetime]:
    """Naive ``timestamp[us]`` values (no nulls) as datetimes: numpy makes them ~50x faster
    than Arrow's to_pylist (22 us against 1.0 ms for 500 values here)."""
    assert values.type == pa.timestamp("us"), values.type  # datetime64[s]/[ns] would not become datetimes
    return values.to_numpy().astype(object).tolist()  # type: ignore[no-any-return]


def record_writes(cur: Any, settings: Settings, spec: TableSpec, counts: list[dict[str, Any]]) -> None:
    """Add the inserted rows of one write to the catalog (one statement, in the write's transaction).

    Rows are upserted in key order, so concurrent writers lock catalog rows in the same
    order (no deadlock between them).
    """
    merged: dict[SeriesKey, dict[str, Any]] = {}
    for entry in counts:  # a write's parts (sealed chunks, row tier) may name a series twice
        key = (entry["symbol"], entry["timeframe"])
        if key in merged:
            seen = merged[key]
            seen["n"] += entry["n"]
            seen["first_ts"] = min(seen["first_ts"], entry["first_ts"])  # ISO text orders as time
            seen["last_ts"] = max(seen["last_ts"], entry["last_ts"])
        else:
            merged[key] = dict(entry)
    if not merged:
        return
    counts = [merged[k] for k in sorted(merged)]
    table = catalog_table(settings)
    cur.execute(
        f"INSERT INTO {table} AS s (table_key, symbol, timeframe, first_ts, last_ts, row_count) "
        "SELECT $1, x.symbol, x.timeframe, x.first_ts, x.last_ts, x.n "
        "FROM jsonb_to_recordset($2::jsonb) AS x(symbol text, timeframe text, first_ts timestamp, "
        "last_ts timestamp, n bigint) ORDER BY x.symbol, x.timeframe "
        "ON CONFLICT (table_key, symbol, timeframe) DO UPDATE SET "
        "first_ts = LEAST(s.first_ts, EXCLUDED.first_ts), last_ts = GREATEST(s.last_ts, EXCLUDED.last_ts), "
        "row_count = s.row_count + EXCLUDED.row_count",
        parameters=(spec.key, json.dumps(counts)),
    )


def removed_sql(spec: TableSpec) -> tuple[str, str]:
    """(RETURNING list, GROUP BY select) for a DELETE whose removed rows feed :func:`record_deletes`."""
    cols = series_columns(spec)
    returning = ", ".join(f"t.{quote_ident(c)}" for c in cols)
    timeframe = quote_ident("timeframe") if len(cols) == 2 else "''"
    return returning, f"symbol, {timeframe} AS timeframe, count(*) AS n"


def record_deletes(cur: Any, settings: Settings, spec: TableSpec, removed: Iterable[tuple[str, str, int]], *,
                   may_empty: bool = True) -> None:
    """Subtract deleted rows from their series, move ``first_ts`` to the first row left,
    and drop series left empty.

    ``removed`` holds ``(symbol, timeframe or '', rows deleted)``. Deletes remove the
    oldest rows (retention, rolling windows), so ``last_ts`` stays; the new ``first_ts``
    is one index probe per affected series (row tier and chunks), inside the update.
    Statements whose results nobody reads: a pipelined small write sends them with its
    commit (regime_io._conn.pipeline). ``may_empty=False``: the caller knows every series
    keeps a row (a rolling trim keeps each symbol's newest), so no empty series is looked for.
    """
    totals: dict[SeriesKey, int] = {}
    for symbol, timeframe, n in removed:  # one entry per series (an UPDATE applies one source row)
        totals[(symbol, timeframe)] = totals.get((symbol, timeframe), 0) + int(n)
    rows = [{"symbol": s, "timeframe": tf, "n": n} for (s, tf), n in sorted(totals.items()) if n]
    if not rows:
        return
    source = "jsonb_to_recordset($2::jsonb) AS x(symbol text, timeframe text, n bigint)"
    cur.execute(subtract_sql(settings, spec, source, table_key="$1"), parameters=(spec.key, json.dumps(rows)))
    if may_empty:
        cur.execute(f"DELETE FROM {catalog_table(settings)} WHERE table_key = $1 AND row_count <= 0",
                    parameters=(spec.key,))


def subtract_sql(settings: Settings, spec: TableSpec, source: str, *, table_key: str, since: str | None = None) -> str:
    """The catalog ``UPDATE`` of :func:`record_deletes`: subtract ``x.n`` rows from each
    series ``(x.symbol, x.timeframe)`` of ``source`` (a relation aliased ``x``) and move
    ``first_ts`` to the first row left. ``since``: SQL of the oldest timestamp kept, for
    an ``UPDATE`` in the same statement as its ``DELETE`` (as a CTE), which still sees
    the deleted rows (one snapshot per statement)."""
    return (
        f"UPDATE {catalog_table(settings)} AS s SET row_count = s.row_count - x.n, "
        f"first_ts = COALESCE({_first_row_sql(settings, spec, since)}, s.first_ts) "
        f"FROM {source} WHERE s.table_key = {table_key} AND s.symbol = x.symbol AND s.timeframe = x.timeframe"
    )


def _first_row_sql(settings: Settings, spec: TableSpec, since: str | None = None) -> str:
    """The first stored timestamp of the catalog row ``s``'s series (row tier and chunks),
    as a scalar subquery (on Citus: co-located with ``s``, pushed down to its shard);
    ``since``: row-tier rows before it do not count (see :func:`subtract_sql`)."""
    time = quote_ident(spec.time_column or "timestamp")
    target = qualified(settings.schema, settings.table_name(spec.key))
    match = "t.symbol = s.symbol" + (" AND t.timeframe = s.timeframe" if len(series_columns(spec)) == 2 else "")
    kept = f" AND t.{time} >= {since}" if since is not None else ""
    sources = [f"(SELECT t.{time} AS ts FROM {target} t WHERE {match}{kept} ORDER BY t.{time} LIMIT 1)"]
    if spec.sealable:
        chunks = qualified(settings.schema, f"{settings.table_name(spec.key)}_chunks")
        sources.append(f"(SELECT min(t.first_ts) AS ts FROM {chunks} t WHERE {match})")
    return f"(SELECT min(u.ts) FROM ({' UNION ALL '.join(sources)}) u)"


def refresh(db: Database, table: str | Sequence[str] | None = None) -> dict[str, int]:
    """Rebuild the catalog rows of ``table`` (a name, several, or every time-series table
    when None) from the data.

    For rows written or deleted by other tools than regime_io. One transaction per call:
    the catalog rows of each table are replaced by one ``GROUP BY`` over the table's rows
    and its sealed chunks (it reads every row: minutes on billions of rows). Returns the
    number of series per table.
    """
    keys = _selected(table)
    settings = db.settings
    out: dict[str, int] = {}

    spec = TABLES[keys[0]]
    try:
        with db.connection() as conn:
            cur = conn.cursor()
            try:
                for key in keys:
                    spec = TABLES[key]
                    out[key] = _refresh_table(cur, settings, spec)
            finally:
                cur.close()
    except DRIVER_ERRORS as err:
        if is_connection_error(err):
            raise  # the pool reports it as ServerUnavailableError
        raise maintenance_error(err, db, spec, what="refresh of the series catalog") from err
    log.info("series catalog refreshed: %s", ", ".join(f"{k} {n} series" for k, n in out.items()))
    return out


def fill_catalog(cur: Any, settings: Settings) -> None:
    """Catalogue every table's stored rows (``initialize_database``, the first time it runs
    the catalog's schema version: the tables may hold rows written before it)."""
    for key in SERIES_TABLES:
        _refresh_table(cur, settings, TABLES[key])


def _refresh_table(cur: Any, settings: Settings, spec: TableSpec) -> int:
    table = catalog_table(settings)
    time = quote_ident(spec.time_column or "timestamp")
    tf = "timeframe" if len(series_columns(spec)) == 2 else "''::text"
    target = qualified(settings.schema, settings.table_name(spec.key))
    parts = [f"SELECT symbol, {tf} AS timeframe, min({time}) AS first_ts, max({time}) AS last_ts, "
             f"count(*) AS n FROM {target} GROUP BY 1, 2"]
    if spec.sealable:
        chunks = qualified(settings.schema, f"{settings.table_name(spec.key)}_chunks")
        parts.append(f"SELECT symbol, {tf} AS timeframe, min(first_ts), max(last_ts), sum(row_count) "
                     f"FROM {chunks} GROUP BY 1, 2")
    cur.execute(f"DELETE FROM {table} WHERE table_key = $1", parameters=(spec.key,))
    cur.execute(
        f"INSERT INTO {table} (table_key, symbol, timeframe, first_ts, last_ts, row_count) "
        f"SELECT $1, symbol, timeframe, min(first_ts), max(last_ts), sum(n) FROM ({' UNION ALL '.join(parts)}) u "
        "GROUP BY symbol, timeframe",
        parameters=(spec.key,),
    )
    cur.execute(f"SELECT count(*) FROM {table} WHERE table_key = $1", parameters=(spec.key,))
    row = cur.fetchone()
    return int(row[0]) if row else 0


def _selected(tables: str | Iterable[str] | None) -> list[TableKey]:
    if tables is None:
        return list(SERIES_TABLES)
    names = [tables] if isinstance(tables, str) else list(tables)
    keys: list[TableKey] = []
    for name in names:
        spec = table_spec(name)
        if spec.key not in SERIES_TABLES:
            raise UsageError(f"{spec.key!r} has no time column, so no series in the catalog; allowed: "
                             f"{', '.join(SERIES_TABLES)}", table=spec.key, value=name)
        if spec.key not in keys:
            keys.append(spec.key)
    return keys


def window_rows(db: Database, spec: TableSpec, symbols: Sequence[str], window: TimeRange) -> list[tuple[str, float]]:
    """Each of ``symbols`` in the server's collation order (the order of a read's answer)
    with the rows the catalog expects of it in ``window``: its series' row counts (both
    tiers) times the part of each series' span inside the window, as if the rows were
    spread evenly. An estimate: rows written by other tools count after :func:`refresh`."""
    q = Query()
    start, end = q.param(window.start), q.param(window.end)
    span = "extract(epoch FROM c.last_ts - c.first_ts)"
    inside = f"extract(epoch FROM least(c.last_ts, {end}) - greatest(c.first_ts, {start}))"
    sql = (f"SELECT u.v AS symbol, coalesce(sum(c.row_count * CASE WHEN {span} > 0 "
           f"THEN greatest(0, {inside}) / {span} "
           f"ELSE (c.first_ts >= {start} AND c.first_ts < {end})::int END), 0)::float8 AS n "
           f"FROM unnest({q.param(list(symbols))}::text[]) AS u(v) LEFT JOIN {catalog_table(db.settings)} c "
           f"ON c.table_key = {q.param(spec.key)} AND c.symbol = u.v GROUP BY u.v ORDER BY u.v")
    found = read_lookups(db, [(q, sql)], what="rows expected", table=spec.key)[0]
    return list(zip(found.column("symbol").to_pylist(), found.column("n").to_pylist(), strict=True))


def read_catalog(db: Database, table: str | Sequence[str] | None = None) -> pa.Table:
    """The catalog rows of ``table`` (every time-series table when None) as an Arrow table
    with :data:`CATALOG_SCHEMA`, ordered by table, symbol and timeframe.

    ``row_count`` counts both tiers; ``sealed`` is the part in sealed chunks (summed from
    the chunk table's ``row_count``: one row per series-month, so cheap) and ``rows`` the
    part in the row table (``row_count - sealed``): the same split as ``regime-io doctor``.
    """

    keys = _selected(table)
    q = Query()
    sql = (f'SELECT table_key AS "table", symbol, timeframe, '
           "first_ts AS first_timestamp, last_ts AS last_timestamp, row_count "
           f"FROM {catalog_table(db.settings)} WHERE table_key = ANY({q.param(keys)}::text[]) "
           'ORDER BY table_key COLLATE "C", symbol COLLATE "C", timeframe COLLATE "C"')
    queries = [(q, sql)]
    for key in keys:
        spec = TABLES[key]
        if spec.sealable:
            tf = "timeframe" if len(series_columns(spec)) == 2 else "''::text"
            chunks = qualified(db.settings.schema, f"{db.settings.table_name(key)}_chunks")
            queries.append((Query(), f'SELECT {literal(key)} AS "table", symbol, {tf} AS timeframe, '
                                     f"sum(row_count)::int8 AS sealed FROM {chunks} GROUP BY 2, 3"))
    found = read_lookups(db, queries, what="catalog", table=keys[0] if len(keys) == 1 else None)
    listed = found[0]
    if listed.num_rows == 0:
        return CATALOG_SCHEMA.empty_table()
    key_cols = ["table", "symbol", "timeframe"]
    listed = listed.select([*key_cols, "first_timestamp", "last_timestamp", "row_count"]).cast(pa.schema([
        pa.field(n, CATALOG_SCHEMA.field(n).type) for n in
        (*key_cols, "first_timestamp", "last_timestamp", "row_count")]))
    sealed_parts = [t.cast(pa.schema([*(pa.field(n, pa.string()) for n in key_cols), pa.field("sealed", pa.int64())]))
                    for t in found[1:] if t.num_rows]
    if sealed_parts:
        joined = listed.join(pa.concat_tables(sealed_parts), keys=key_cols, join_type="left outer")
        sealed = pc.fill_null(joined.column("sealed"), 0)
    else:
        joined, sealed = listed, pa.array([0] * listed.num_rows, pa.int64())
    joined = joined.drop_columns([c for c in ("sealed",) if c in joined.column_names])
    joined = joined.append_column("rows", pc.subtract(joined.column("row_count"), sealed))
    joined = joined.append_column("sealed", sealed)
    timeframe = joined.column("timeframe")
    joined = joined.set_column(2, "timeframe", pc.if_else(pc.equal(timeframe, ""), pa.scalar(None, pa.string()),
                                                          timeframe))
    joined = joined.sort_by([("table", "ascending"), ("symbol", "ascending"), ("timeframe", "ascending")])
    return conform(joined, CATALOG_SCHEMA)
