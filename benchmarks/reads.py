"""Read benchmarks: range reads into Polars, latest rows, regime statistics, rolling saves.

Range read of the whole stored table (every symbol, the full time range) by:

- ``regime_io._read.readers.get_market_data`` into Polars (Float64 prices);
- ``COPY (same query) TO STDOUT (FORMAT binary)`` through psycopg, every block thrown
  away: the server's cost of producing those rows plus the socket, i.e. the limit;
  the same with the reader's ``::float8`` casts, for reference (the server's cast is not free);
- raw connectorx on the same query (NUMERIC decoded as decimal128(38,10)) into Polars;
- ``pandas.read_sql`` through SQLAlchemy + psycopg (fewer repeats: it is slow).

All baselines use the same WHERE clause and ORDER BY as the reader. Latest rows are
measured warm over many calls (p50 / p99), next to a prepared psycopg query that is the
floor of one round trip.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source
from psycopg import sql

from regime_io import synthetic
from regime_io._read import readers as reading
from regime_io._write.save import save, save_rolling_market_regime

from .data import MINUTES_PER_DAY, BarStream, symbol_names
from .measure import Figure, latency, time_it, unavailable
from .server import BenchServer
from .writes import COLUMNS, DECIMALS, table_ident

__all__ = ["plugin_collect", "range_query", "run_latest", "run_range_reads", "run_regimes"]

log = logging.getLogger(__name__)


def _missing(name: str) -> str | None:
    if not hasattr(reading, name):
        return f"regime_io._read.readers.{name} does not exist yet"
    return None


def range_query(db: Any, symbols: list[str], start: dt.datetime, end: dt.datetime, *,
                casts: bool = False) -> sql.Composed:
    """The reader's range query: same WHERE, same ORDER BY; plain columns unless ``casts``."""
    cols = [sql.SQL("{}::float8 AS {}").format(sql.Identifier(c), sql.Identifier(c)) if casts and c in DECIMALS
            else sql.Identifier(c) for c in COLUMNS]
    symbol_cond = (sql.SQL("symbol = {}").format(sql.Literal(symbols[0])) if len(symbols) == 1 else
                   sql.SQL("symbol = ANY({}::text[])").format(sql.Literal(symbols)))
    return sql.SQL("SELECT {} FROM {} WHERE {} AND timestamp >= {} AND timestamp <= {} "
                   "ORDER BY symbol, timeframe, timestamp").format(
        sql.SQL(", ").join(cols), table_ident(db), symbol_cond, sql.Literal(start), sql.Literal(end))


def _copy_out(server: BenchServer, query: sql.Composed) -> Callable[[], int]:
    statement = sql.SQL("COPY ({}) TO STDOUT (FORMAT binary)").format(query)
    conn = server.connect()

    def run() -> int:
        size = 0
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for block in copy:
                size += len(block)
        return size

    return run


def run_range_reads(server: BenchServer, db: Any, stream: BarStream, *, repeats: int, slow_repeats: int,
                    say: Callable[[str], None]) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    symbols = stream.symbols
    start, end = stream.span()
    with server.connect() as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table_ident(db))).fetchone()
        n = int(row[0]) if row else 0
        text = range_query(db, symbols, start, end).as_string(conn)
        text_casts = range_query(db, symbols, start, end, casts=True).as_string(conn)
    say(f"range reads of {n:,} rows ({len(symbols)} symbols, {start:%Y-%m-%d} .. {end:%Y-%m-%d})")

    reason = _missing("get_market_data")
    label = "regime_io get_market_data -> polars (Float64 prices)"
    if reason:
        figures["read.range.regime_io"] = unavailable(label, reason)
    else:
        got = reading.get_market_data(db, symbols, start, end)
        if got.height != n:
            raise RuntimeError(f"get_market_data returned {got.height} rows, expected {n}")
        del got
        figures["read.range.regime_io"] = time_it(lambda: reading.get_market_data(db, symbols, start, end),
                                                  repeats=repeats, label=label, rows=n, warmup=1)
        exact_label = "regime_io get_market_data(exact=True) -> polars (Decimal prices)"
        figures["read.range.regime_io_exact"] = time_it(
            lambda: reading.get_market_data(db, symbols, start, end, exact=True),
            repeats=repeats, label=exact_label, rows=n)

    copy_plain = _copy_out(server, range_query(db, symbols, start, end))
    copy_plain()  # warm the cache
    figures["read.range.copy_binary"] = time_it(
        copy_plain, repeats=repeats, rows=n,
        label="COPY (same query) TO STDOUT (FORMAT binary), discarded: the limit")
    figures["read.range.copy_binary_float8"] = time_it(
        _copy_out(server, range_query(db, symbols, start, end, casts=True)), repeats=repeats, rows=n,
        label="COPY (same query with ::float8 casts) TO STDOUT (FORMAT binary), discarded")

    import connectorx as cx

    url = server.url()

    def cx_raw() -> pl.DataFrame:
        return pl.from_arrow(cx.read_sql(url, text, return_type="arrow"))  # type: ignore[return-value]

    figures["read.range.connectorx_numeric"] = time_it(
        cx_raw, repeats=repeats, rows=n, label="raw connectorx -> polars, NUMERIC decoded (decimal128(38,10))")
    figures["read.range.connectorx_float8"] = time_it(
        lambda: pl.from_arrow(cx.read_sql(url, text_casts, return_type="arrow")), repeats=repeats, rows=n,
        label="raw connectorx -> polars, query with ::float8 casts")

    try:
        import pandas as pd

        from .writes import _sqlalchemy_engine

        engine = _sqlalchemy_engine(server)
        say(f"pandas.read_sql of {n:,} rows ({slow_repeats} runs)")
        figures["read.range.pandas_read_sql"] = time_it(
            lambda: pd.read_sql(text, engine), repeats=slow_repeats, rows=n,
            label="pandas.read_sql (SQLAlchemy+psycopg), NUMERIC as Decimal objects")
        engine.dispose()
    except ImportError as err:
        figures["read.range.pandas_read_sql"] = unavailable("pandas.read_sql", f"{err}")

    # One symbol, one day: the typical backtest slice (also the scale curve's read).
    day_start, day_end = stream.day_bounds(0)
    if not _missing("get_market_data"):
        figures["read.one_day.regime_io"] = latency(
            lambda: reading.get_market_data(db, symbols[0], day_start, day_end), calls=max(5, repeats * 10),
            label=f"regime_io get_market_data, 1 symbol x 1 day ({MINUTES_PER_DAY} rows), warm")
    return figures


def run_latest(server: BenchServer, db: Any, symbols: list[str], *, calls: int, prefix: str,
               rows: int) -> dict[str, Figure]:
    """Latest row of one symbol and of all symbols, warm, p50/p99 over ``calls`` calls."""
    figures: dict[str, Figure] = {}
    reason = _missing("get_latest")
    where = f"{rows:,} rows, {len(symbols)} symbols"
    one, all_ = f"{prefix}.one_symbol", f"{prefix}.all_symbols"
    if reason:
        figures[one] = unavailable(f"get_latest, one symbol ({where})", reason, kind="latency")
        figures[all_] = unavailable(f"get_latest, all symbols ({where})", reason, kind="latency")
        return figures
    got = reading.get_latest(db, "market_data", symbols[0])
    if got.height != 1:
        raise RuntimeError(f"get_latest returned {got.height} rows for one symbol")
    figures[one] = latency(lambda: reading.get_latest(db, "market_data", symbols[0]), calls=calls,
                           label=f"regime_io get_latest('market_data', one symbol), warm ({where})")
    got = reading.get_latest(db, "market_data")
    if got.height != len(symbols):
        raise RuntimeError(f"get_latest returned {got.height} rows for {len(symbols)} symbols")
    figures[all_] = latency(lambda: reading.get_latest(db, "market_data"), calls=max(5, calls // 4),
                            label=f"regime_io get_latest('market_data'), every symbol, warm ({where})")
    figures[f"{all_}_listed"] = latency(
        lambda: reading.get_latest(db, "market_data", symbols=symbols), calls=max(5, calls // 4),
        label=f"regime_io get_latest('market_data', symbols=[all {len(symbols)}]), warm ({where})")

    conn = server.connect()
    query = sql.SQL("SELECT {} FROM {} WHERE symbol = %s AND timeframe = %s ORDER BY timestamp DESC LIMIT 1").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS), table_ident(db))

    def psy() -> Any:
        return conn.execute(query, (symbols[0], "1m"), prepare=True).fetchone()

    figures[f"{one}_psycopg"] = latency(
        psy, calls=calls, label=f"psycopg prepared ORDER BY timestamp DESC LIMIT 1, one symbol: the floor ({where})")
    conn.close()
    return figures


def run_regimes(server: BenchServer, *, days: int, symbols: int, rolling_symbols: int, repeats: int, calls: int,
                seed: int, say: Callable[[str], None]) -> dict[str, Figure]:
    """Regime distribution and transitions over ``days`` of minute regimes; rolling saves."""
    figures: dict[str, Figure] = {}
    db = server.database("regimes")
    names = symbol_names(symbols)
    start_day = dt.date(2023, 1, 2)
    say(f"minute regimes: {len(names)} symbols x {days} days")
    frame = synthetic.minute_regimes(names, days=days, seed=seed, start=start_day)
    save(db, "market_regimes_1min", frame)
    with server.connect() as conn:
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(
            sql.Identifier(db.settings.schema, db.settings.table_name("market_regimes_1min"))))
    first: dt.datetime = frame["timestamp"].min()  # type: ignore[assignment]
    last: dt.datetime = frame["timestamp"].max()  # type: ignore[assignment]
    per_symbol = frame.height // len(names)
    what = f"1 symbol, {days} days x 375 minutes = {per_symbol:,} rows"
    for key, fn_name in (("regimes.distribution", "get_market_regime_distribution"),
                         ("regimes.transitions", "get_regime_transitions")):
        reason = _missing(fn_name)
        label = f"regime_io {fn_name} ({what})"
        if reason:
            figures[key] = unavailable(label, reason)
            continue
        fn: Callable[..., Any] = getattr(reading, fn_name)
        result = fn(db, names[0], first, last)
        if result.height == 0:
            raise RuntimeError(f"{fn_name} returned no rows")
        figures[key] = time_it(partial(fn, db, names[0], first, last), repeats=repeats, label=label,
                               rows=per_symbol, warmup=1)

    # Rolling saves: one row per symbol per minute, after the stored history.
    live_names = symbol_names(rolling_symbols)
    live = synthetic.minute_regimes(live_names, days=max(1, -(-(calls + 5) // MINUTES_PER_DAY)), seed=seed + 1,
                                    start=(last + dt.timedelta(days=1)).date())
    minutes = live.sort("timestamp", maintain_order=True).partition_by("timestamp", maintain_order=True)[: calls + 5]
    say(f"save_rolling_market_regime: {len(minutes)} calls of {len(live_names)} rows")
    it = iter(minutes)
    figures["regimes.rolling_save"] = latency(
        lambda: save_rolling_market_regime(db, next(it), window_minutes=375), calls=len(minutes) - 5, warmup=5,
        label=f"regime_io save_rolling_market_regime, {len(live_names)} rows/call (one per symbol), window 375 min")
    db.close()
    return figures


def plugin_collect(read: Callable[[], pl.DataFrame], schema: Any, symbol: str, start: dt.datetime,
                   end: dt.datetime) -> pl.DataFrame:
    """What polars' IO-plugin machinery costs: a source that returns ``read()`` (a frame
    already read, or the eager read itself), under the filter scan() gets (its predicate
    parsed, so polars filters nothing). The read runs in the source's call, on the thread
    that collects, as scan() reads its first frame (polars pulls frames on a thread of its
    own, where the same read ran 1.12-1.22x against 1.03-1.04x here)."""
    def source(with_columns: Any, predicate: Any, n_rows: Any, batch_size: Any) -> Any:
        return iter([read()])

    return (register_io_source(source, schema=schema)
            .filter((pl.col("symbol") == symbol) & pl.col("timestamp").is_between(start, end)).collect())
