"""Soak: the live 1-minute loop (``save_rolling_market_regime``) for 50 symbols, one row
each per simulated minute, as fast as the machine allows, for a bounded time (60 s by
default; ``REGIME_IO_SOAK_SECONDS`` runs it longer). A reader polls the latest regimes
and a range as a dashboard would.

It checks that nothing accumulates: server-side connections (``pg_stat_activity``) and
the pool's open connections stay flat, the process's memory (RSS) stays within a
generous bound, and no minute is lost: every row inserted is either in the table or
was trimmed by the rolling window, and the window holds every minute exactly once.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import statistics
import time
import uuid
from typing import Any

import polars as pl
import psutil
import pytest

from regime_io import PostgreSQLIntegration
from regime_io.config import Settings, settings_replace

SECONDS = float(os.environ.get("REGIME_IO_SOAK_SECONDS", "60"))
SYMBOLS = [f"SYM{i:02d}" for i in range(50)]
WINDOW = 375  # minutes kept: one trading day
T0 = dt.datetime(2024, 1, 31, 18, 0)  # the run crosses a month, so a partition is created mid-run
MAX_CONNECTIONS = 4
RSS_GROWTH_LIMIT_MB = 200  # generous: this guards against leaks, not against allocator noise
WARM_UP = 800  # minutes before the baseline sample: pool, partitions, caches, allocator warm

log = logging.getLogger(__name__)


def minute_rows(minute: int) -> pl.DataFrame:
    n = len(SYMBOLS)
    return pl.DataFrame({
        "symbol": SYMBOLS,
        "timestamp": [T0 + dt.timedelta(minutes=minute)] * n,
        "regime": ["Bullish" if (minute + i) % 3 else "Bearish" for i in range(n)],
        "confidence": [float((minute * 7 + i) % 100) for i in range(n)],
        "directional_component": [((minute + i) % 200) / 100 - 1 for i in range(n)],
    })


def server_connections(sql: Any, name: str) -> int:
    return int(sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))[0][0])


@pytest.mark.slow
def test_rolling_loop_soak(settings: Settings, sql: Any, record_property: Any) -> None:
    name = f"rio_soak_{uuid.uuid4().hex[:8]}"
    tagged = settings_replace(settings, max_connections=MAX_CONNECTIONS,
                              libpq_options={**settings.libpq_options, "application_name": name})
    process = psutil.Process()
    latencies: list[float] = []
    samples: list[tuple[int, int, float, int]] = []  # (server connections, pool open, RSS MB, lookup open)
    inserted = trimmed = 0
    with PostgreSQLIntegration(settings=tagged) as pg:
        pg.initialize_database()
        pool, lookups = pg.db.pool, pg.db.lookup_pool
        minute = 0
        started = time.monotonic()
        baseline: tuple[int, int, float] | None = None
        while time.monotonic() - started < SECONDS or minute <= WARM_UP:
            rows = minute_rows(minute)
            t = time.perf_counter()
            result = pg.save_rolling_market_regime(rows, window_minutes=WINDOW)
            latencies.append(time.perf_counter() - t)
            assert result.rows == len(SYMBOLS)
            inserted += result.inserted
            trimmed += result.trimmed
            if minute % 10 == 0:  # a dashboard: latest regime of every symbol (lookup pool)
                assert pg.get_latest_1min_market_regime(symbols=SYMBOLS).height == len(SYMBOLS)
            if minute % 100 == 99:  # the last hour of one symbol (a small range: ADBC)
                hour = pg.get_1min_market_regimes("SYM07", T0 + dt.timedelta(minutes=minute - 59),
                                                  T0 + dt.timedelta(minutes=minute))
                assert hour.height == 60
            if minute % 200 == 0:
                gc.collect()
                samples.append((server_connections(sql, name), pool.open_connections,
                                process.memory_info().rss / 2**20, lookups.open_connections))
                if minute == WARM_UP:
                    baseline = samples[-1]
            minute += 1
        elapsed = time.monotonic() - started
        gc.collect()
        final = (server_connections(sql, name), pool.open_connections, process.memory_info().rss / 2**20,
                 lookups.open_connections)
        table = f'"{tagged.schema}"."{tagged.table_name("market_regimes_1min")}"'
        count, distinct_minutes, first, last = sql(
            f"SELECT count(*), count(DISTINCT timestamp), min(timestamp), max(timestamp) FROM {table}")[0]
        per_symbol = sql(f"SELECT count(DISTINCT symbol), min(n), max(n) FROM "
                         f"(SELECT symbol, count(*) AS n FROM {table} GROUP BY symbol) s")[0]
    # No lost minute: every row of every call was inserted once, and the rolling window
    # holds exactly the last WINDOW + 1 minutes of every symbol.
    kept = min(minute, WINDOW + 1)
    assert inserted == minute * len(SYMBOLS)
    assert count == kept * len(SYMBOLS) == inserted - trimmed
    assert distinct_minutes == kept
    assert last == T0 + dt.timedelta(minutes=minute - 1)
    assert first == last - dt.timedelta(minutes=kept - 1)
    assert per_symbol == (len(SYMBOLS), kept, kept)
    # Nothing accumulates.
    connections = [s[0] for s in samples] + [final[0]]
    opened = [s[1] for s in samples] + [final[1]]
    assert max(connections) <= 2 * MAX_CONNECTIONS, connections  # the ADBC pool and the lookup pool
    assert baseline is not None
    looked_up = [s[3] for s in samples] + [final[3]]
    assert max(looked_up) <= MAX_CONNECTIONS and final[3] <= baseline[3], looked_up
    assert max(opened) <= MAX_CONNECTIONS and final[1] <= baseline[1], opened  # no growth after warm-up
    assert final[0] <= baseline[0] + 1, connections  # (+1: a connectorx backend may still be exiting)
    growth = final[2] - baseline[2]
    assert growth < RSS_GROWTH_LIMIT_MB, [round(s[2]) for s in samples]
    p50, p99 = statistics.median(latencies), sorted(latencies)[int(len(latencies) * 0.99)]
    summary = {"calls": minute, "seconds": round(elapsed, 1), "calls_per_second": round(minute / elapsed, 1),
               "p50_ms": round(p50 * 1000, 2), "p99_ms": round(p99 * 1000, 2), "rss_growth_mb": round(growth, 1),
               "rss_mb": round(final[2]), "server_connections_max": max(connections), "pool_open_max": max(opened),
               "lookup_open_max": max(looked_up)}
    for key, value in summary.items():
        record_property(f"soak {key}", value)
    log.info("soak: %s", summary)
