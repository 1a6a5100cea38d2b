"""The same data and calls on a plain server and on a Citus cluster: the figures in docs/scaling.md.

Usage:
    .venv/bin/python -m benchmarks.citus_compare [--symbols 100] [--minutes 10000]

The plain server is ``REGIME_IO_BENCH_DSN`` when set, else a throwaway embedded server;
the cluster is ``REGIME_IO_BENCH_CITUS_DSN`` (a coordinator URL) when set, else a
coordinator with two workers started from the test tier's build (``tests/_citus.py``).
Each side gets a fresh schema, dropped at the end. On one machine the cluster shares its
cores with the coordinator and the client: the figures show Citus's overhead there, not
its gain on real workers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import psycopg

from regime_io import PostgreSQLIntegration
from regime_io._conn import embedded as embedded
from regime_io.config import load_settings

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def _plain() -> Iterator[str]:
    dsn = os.environ.get("REGIME_IO_BENCH_DSN")
    if dsn:
        yield dsn
        return
    base = Path(tempfile.mkdtemp(prefix="rio-bench-plain-"))
    info = embedded.start(base / "pgdata")
    try:
        yield f"postgresql://postgres@/postgres?host={info.socket_dir}&port={info.port}"
    finally:
        embedded.stop(base / "pgdata", mode="immediate")
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def _cluster() -> Iterator[str]:
    dsn = os.environ.get("REGIME_IO_BENCH_CITUS_DSN")
    if dsn:
        yield dsn
        return
    sys.path.insert(0, str(ROOT))
    from tests import _citus

    cluster = _citus.start()
    try:
        yield cluster.url()
    finally:
        cluster.stop()


def _p50_ms(call: Callable[[], Any], calls: int) -> float:
    call()
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _bars(symbols: list[str], minutes: int, start: dt.datetime) -> pl.DataFrame:
    n = len(symbols) * minutes
    frame = pl.DataFrame({"symbol": pl.Series(symbols).repeat_by(minutes).explode(),
                          "i": pl.concat([pl.int_range(0, minutes, eager=True)] * len(symbols))})
    price = 100 + (pl.col("i") % 500) / 10
    return frame.select(
        "symbol", (pl.lit(start) + pl.duration(minutes=pl.col("i"))).alias("timestamp"),
        price.round(2).alias("open"), (price + 1).round(2).alias("high"), (price - 1).round(2).alias("low"),
        (price + 0.5).round(2).alias("close"), pl.col("i").cast(pl.Int64).alias("volume"),
        pl.lit("1m").alias("timeframe")).head(n)


def measure(dsn: str, *, citus: bool, symbols: list[str], minutes: int) -> dict[str, float]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = load_settings(config={"database": {"dsn": dsn, "schema": schema, "citus": str(citus).lower()}},
                             env={})
    start = dt.datetime(2024, 1, 1, 9, 15)
    batches = [_bars(symbols[i:i + 10], minutes, start) for i in range(0, len(symbols), 10)]
    out: dict[str, float] = {}
    pg = PostgreSQLIntegration(settings=settings)
    try:
        pg.initialize_database()
        started = time.perf_counter()
        for batch in batches:
            pg.save_market_data(batch)
        out["ingest_s"] = time.perf_counter() - started
        out["rows"] = sum(b.height for b in batches)
        changed = batches[0].head(100_000).with_columns(pl.col("volume") + 1)
        out["resave_100k_s"] = pg.save_market_data(changed).seconds
        day = (start, start + dt.timedelta(hours=6, minutes=14))
        out["one_symbol_day_ms"] = _p50_ms(lambda: pg.get_market_data(symbols[1], *day), 30)
        out["all_symbols_day_ms"] = _p50_ms(lambda: pg.get_market_data(symbols, *day), 5)
        out["latest_one_ms"] = _p50_ms(lambda: pg.get_latest("bars", symbols[1]), 100)
        out["latest_all_ms"] = _p50_ms(lambda: pg.get_latest("bars"), 30)
    finally:
        pg.close()
        with psycopg.connect(settings.url(redact=False), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=10_000)
    args = parser.parse_args(argv)
    symbols = [f"S{i:03d}" for i in range(args.symbols)]
    with _plain() as plain, _cluster() as cluster:
        for name, dsn, citus in (("plain", plain, False), ("citus", cluster, True)):
            figures = measure(dsn, citus=citus, symbols=symbols, minutes=args.minutes)
            print(name, ", ".join(f"{k} {v:,.2f}" for k, v in figures.items()), flush=True)


if __name__ == "__main__":
    main()
