"""Measure bytes per row of market_data and options_data, and project the sizes in docs/scaling.md.

Inserts rows server-side with generate_series into a fresh schema (the real DDL: natural
primary keys, monthly partitions), runs VACUUM ANALYZE, and reports heap and index bytes
per row from pg_table_size / pg_indexes_size summed over the partitions.

Usage:
    .venv/bin/python benchmarks/measure_row_size.py [--rows 200000]

It uses REGIME_IO_BENCH_DSN when set, else a throwaway embedded server (stopped and
deleted at the end). Prices and greeks are random with realistic magnitudes: NUMERIC
stores digits, so its size depends on the values (a 4-digit price with 2 decimals takes
fewer bytes than a 6-digit one).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from regime_io import PostgreSQLIntegration
from regime_io._conn import embedded as embedded
from regime_io.config import load_settings
from regime_io.tables import TABLES

# Sizing assumptions (docs/scaling.md).
TRADING_MINUTES_PER_DAY = 375  # NSE cash and F&O: 09:15 to 15:30
TRADING_DAYS_PER_YEAR = 250
YEARS = 10
SYMBOLS = 5_000
OPTION_CONTRACTS = 2 * 10 * 100 * 2  # 2 index underlyings x 10 expiries x 100 strikes x CE/PE


@contextlib.contextmanager
def _server() -> Iterator[dict[str, Any]]:
    dsn = os.environ.get("REGIME_IO_BENCH_DSN")
    if dsn:
        yield {"dsn": dsn}
        return
    base = Path(tempfile.mkdtemp(prefix="rio-bench-"))
    info = embedded.start(base / "pgdata")
    try:
        yield {"host": info.socket_dir, "port": info.port}
    finally:
        embedded.stop(base / "pgdata", mode="fast")
        shutil.rmtree(base, ignore_errors=True)


def _execute(pg: PostgreSQLIntegration, statement: str, *, fetch: bool = False) -> list[tuple[Any, ...]]:
    with pg.db.connection() as conn:
        cur = conn.cursor()
        try:
            cur.execute(statement)
            return list(cur.fetchall()) if fetch else []
        finally:
            cur.close()


def _vacuum(pg: PostgreSQLIntegration, table: str, *, command: str = "VACUUM ANALYZE") -> None:
    with pg.db.connection() as conn:
        # VACUUM, and REINDEX of a partitioned table, cannot run in a transaction block.
        conn.adbc_connection.set_autocommit(True)
        try:
            cur = conn.cursor()
            cur.execute(f"{command} {table}")
            cur.close()
        finally:
            conn.adbc_connection.set_autocommit(False)


def _reindex(pg: PostgreSQLIntegration, table: str) -> None:
    _vacuum(pg, table, command="REINDEX TABLE")
    _vacuum(pg, table)


def _sizes(pg: PostgreSQLIntegration, key: str) -> dict[str, Any]:
    parent = pg.settings.table_name(key)  # type: ignore[arg-type]
    schema = pg.settings.schema
    rows = _execute(pg, f"""
        SELECT count(*) FILTER (WHERE true),
               sum(pg_table_size(c.oid)), sum(pg_indexes_size(c.oid)), sum(pg_total_relation_size(c.oid))
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = p.relnamespace
        WHERE n.nspname = '{schema}' AND p.relname = '{parent}'""", fetch=True)
    partitions, heap, indexes, total = rows[0]
    per_index = _execute(pg, f"""
        SELECT CASE WHEN x.indisprimary THEN 'primary key' ELSE pg_get_indexdef(x.indexrelid) END,
               sum(pg_relation_size(x.indexrelid))
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
        JOIN pg_namespace n ON n.oid = p.relnamespace JOIN pg_index x ON x.indrelid = c.oid
        WHERE n.nspname = '{schema}' AND p.relname = '{parent}' GROUP BY 1""", fetch=True)
    count = _execute(pg, f'SELECT count(*), avg(pg_column_size(t.*)) FROM "{schema}"."{parent}" t', fetch=True)[0]
    return {"rows": int(count[0]), "tuple_bytes": float(count[1]), "partitions": int(partitions),
            "heap": int(heap), "indexes": int(indexes), "total": int(total),
            "per_index": _by_label(per_index)}


def _by_label(per_index: list[tuple[Any, ...]]) -> dict[str, int]:
    # One row per partition's index: add them up per index of the parent.
    out: dict[str, int] = {}
    for name, size in per_index:
        label = _index_label(name)
        out[label] = out.get(label, 0) + int(size)
    return out


def _index_label(definition: str) -> str:
    if definition == "primary key":
        return definition
    return "index (" + definition.split("(", 1)[1]


def _fill_market_data(pg: PostgreSQLIntegration, rows: int, *, order: str) -> None:
    symbols = 200
    minutes = rows // symbols
    start = dt.datetime(2024, 1, 2, 9, 15)
    spec = TABLES["market_data"]
    pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, start, start + dt.timedelta(days=5))
    # Trading minutes 09:15-15:29 on consecutive days, prices 100-5000 with two decimals.
    outer, inner = ("m", "s") if order == "time-major" else ("s", "m")
    _execute(pg, f"""
        INSERT INTO {pg.db.table('market_data')} (symbol, timestamp, open, high, low, close, volume, timeframe)
        SELECT 'SYM' || lpad(s::text, 5, '0'),
               timestamp '{start:%Y-%m-%d %H:%M}' + (m / {TRADING_MINUTES_PER_DAY}) * interval '1 day'
                   + (m % {TRADING_MINUTES_PER_DAY}) * interval '1 minute',
               p, p + 1.25, p - 1.25, p + 0.5, (random() * 1000000)::bigint, '1min'
        FROM generate_series(0, {symbols - 1}) s, generate_series(0, {minutes - 1}) m,
             LATERAL (SELECT round((100 + random() * 4900)::numeric, 2) + s * 0 + m * 0 AS p) price
        ORDER BY {outer}, {inner}""")


def _fill_options_data(pg: PostgreSQLIntegration, rows: int) -> None:
    contracts = 2000  # one underlying: 10 expiries x 100 strikes x 2 types
    minutes = rows // contracts
    start = dt.datetime(2024, 1, 2, 9, 15)
    spec = TABLES["options_data"]
    pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, start, start + dt.timedelta(days=5))
    # Time-major, like a live chain snapshot every minute.
    _execute(pg, f"""
        INSERT INTO {pg.db.table('options_data')} (symbol, expiry_date, strike_price, option_type, timestamp,
            open, high, low, close, volume, open_interest, implied_volatility, delta, gamma, theta, vega)
        SELECT 'NIFTY', date '2024-01-04' + 7 * e, 17000 + 50 * k, CASE WHEN t = 0 THEN 'CE' ELSE 'PE' END,
               timestamp '{start:%Y-%m-%d %H:%M}' + m * interval '1 minute',
               p, p + 2.5, greatest(p - 2.5, 0.05), p + 0.5, (random() * 100000)::bigint,
               (random() * 5000000)::bigint, round((0.08 + random() * 0.4)::numeric, 4),
               round((random() * 2 - 1)::numeric, 4), round((random() * 0.01)::numeric, 4),
               round((-random() * 20)::numeric, 4), round((random() * 15)::numeric, 4)
        FROM generate_series(0, {minutes - 1}) m, generate_series(0, 9) e, generate_series(0, 99) k,
             generate_series(0, 1) t,
             LATERAL (SELECT round((0.05 + random() * 800)::numeric, 2) + m * 0 + e * 0 + k * 0 + t * 0 AS p) price
        ORDER BY m, e, k, t""")


def _report(label: str, s: dict[str, Any]) -> None:
    n = s["rows"]
    print(f"\n{label}: {n:,} rows in {s['partitions']} partition(s)")
    print(f"  avg tuple (pg_column_size)  {s['tuple_bytes']:8.1f} B")
    print(f"  heap (pg_table_size)        {s['heap'] / n:8.1f} B/row  ({s['heap'] / 2**20:.1f} MiB)")
    for name, size in sorted(s["per_index"].items()):
        print(f"  {name:<27} {size / n:8.1f} B/row  ({size / 2**20:.1f} MiB)")
    print(f"  total (pg_total_relation)   {s['total'] / n:8.1f} B/row")


def _project(label: str, per_row: float, rows_per_year: float) -> None:
    month = rows_per_year / 12
    print(f"  {label}: {rows_per_year:,.0f} rows/year, {month:,.0f} rows/month "
          f"= {month * per_row / 2**30:.1f} GiB per monthly partition, "
          f"{rows_per_year * per_row / 2**30:,.0f} GiB/year, {YEARS * rows_per_year * per_row / 2**40:.2f} TiB "
          f"for {YEARS} years")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows per table (default 200000)")
    args = parser.parse_args()
    with _server() as where:
        results: dict[str, dict[str, Any]] = {}
        for order in ("time-major", "symbol-major"):
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            settings = load_settings(config={"database": {**where, "schema": schema}}, env={})
            with PostgreSQLIntegration(settings=settings) as pg:
                pg.initialize_database()
                try:
                    _fill_market_data(pg, args.rows, order=order)
                    _vacuum(pg, pg.db.table("market_data"))
                    results[f"market_data ({order} insert)"] = _sizes(pg, "market_data")
                    if order == "time-major":
                        # A closed month's index, rebuilt once (REINDEX builds it sorted and packed).
                        _reindex(pg, pg.db.table("market_data"))
                        results["market_data (time-major insert, after REINDEX)"] = _sizes(pg, "market_data")
                    if order == "time-major":
                        _fill_options_data(pg, args.rows)
                        _vacuum(pg, pg.db.table("options_data"))
                        results["options_data (time-major insert)"] = _sizes(pg, "options_data")
                    version = _execute(pg, "SELECT current_setting('server_version')", fetch=True)[0][0]
                finally:
                    _execute(pg, f'DROP SCHEMA "{schema}" CASCADE')
        print(f"PostgreSQL {version}")
        for label, sizes in results.items():
            _report(label, sizes)
        print("\nProjection (per-row totals above, heap + indexes):")
        bars = results["market_data (time-major insert)"]
        chain = results["options_data (time-major insert)"]
        _project(f"market_data, {SYMBOLS:,} symbols", bars["total"] / bars["rows"],
                 SYMBOLS * TRADING_MINUTES_PER_DAY * TRADING_DAYS_PER_YEAR)
        _project(f"options_data, {OPTION_CONTRACTS:,} contracts", chain["total"] / chain["rows"],
                 OPTION_CONTRACTS * TRADING_MINUTES_PER_DAY * TRADING_DAYS_PER_YEAR)


if __name__ == "__main__":
    main()
