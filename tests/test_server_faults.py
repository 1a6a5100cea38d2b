"""Server faults: the server dies in the middle of a large ingest, goes away while the
pool holds connections, or hangs. Calls fail with a connection-class error
(ServerUnavailableError), nothing half-written is ever visible, the same call succeeds
after a restart, and during an outage calls fail within the configured timeout.

These tests stop and restart the session's test server (the embedded one), so they
live in their own module and check their data with a fresh psycopg connection per
query. Every test leaves the server running, even when it fails.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl
import psycopg
import pytest

from regime_io import PostgreSQLIntegration, ServerUnavailableError
from regime_io._embedded import status
from regime_io.config import settings_replace
from tests._helpers import stop_server_when_running

ROWS = 200_000
CHUNK = 20_000
T0 = dt.datetime(2024, 3, 1)

log = logging.getLogger(__name__)


@pytest.fixture(autouse=True)
def controllable(server: Any, settings: Any) -> Iterator[None]:
    # Depends on settings so that its teardown (restart) runs before settings' (drop schema).
    if not server.controllable:
        pytest.skip("the test server is an external DSN: it cannot be stopped from here")
    yield
    if status(server.pgdata) is None:  # a failed test must not leave the server down
        server.start()


def query(server: Any, text: str, params: Any = None) -> list[tuple[Any, ...]]:
    """One query on a fresh psycopg connection (pooled ones die with the server)."""
    with psycopg.connect(server.url(), autocommit=True) as conn:
        return conn.execute(text, params).fetchall()


def bars(n: int, *, start: dt.datetime = T0, symbols: int = 4, close: float = 100.0) -> pl.DataFrame:
    """``n`` one-minute bars spread over ``symbols`` symbols, valid OHLC."""
    i = pl.int_range(0, n, eager=True)
    return pl.DataFrame({
        "symbol": [f"SYM{k % symbols}" for k in range(n)],
        "timestamp": pl.datetime_range(start, start + dt.timedelta(minutes=n - 1), "1m", eager=True),
        "open": (close + (i % 97) * 0.25).to_list(),
        "high": (close + 30 + (i % 97) * 0.25).to_list(),
        "low": (close - 30 + (i % 97) * 0.25).to_list(),
        "close": (close + (i % 89) * 0.25).to_list(),
        "volume": (i * 7 % 10_000).to_list(),
        "timeframe": ["1m"] * n,
    })


def fingerprint(server: Any, pg: PostgreSQLIntegration) -> tuple[Any, ...]:
    """Count, distinct keys and sums of every value column of market_data, checked server-side."""
    table = f'"{pg.settings.schema}"."{pg.settings.table_name("market_data")}"'
    return query(server, f"SELECT count(*), count(DISTINCT (symbol, timeframe, timestamp)), sum(open), sum(high), "
                         f"sum(low), sum(close), sum(volume), min(timestamp), max(timestamp) FROM {table}")[0]


def expected_fingerprint(frame: pl.DataFrame) -> tuple[Any, ...]:
    import decimal

    def total(name: str) -> decimal.Decimal:
        return sum((decimal.Decimal(str(v)).quantize(decimal.Decimal("0.01")) for v in frame.get_column(name)),
                   decimal.Decimal("0.00"))

    return (frame.height, frame.height, total("open"), total("high"), total("low"), total("close"),
            int(frame.get_column("volume").sum()), frame.get_column("timestamp").min(),
            frame.get_column("timestamp").max())


def killer(server: Any, after_rows: int) -> tuple[Callable[[int, int | None], None], list[int]]:
    """A progress callback that stops the server (immediate mode: a crash) once
    ``after_rows`` rows have been sent."""
    seen: list[int] = []

    def progress(done: int, total: int | None) -> None:
        seen.append(done)
        if done >= after_rows and len(seen) == 1:
            server.stop("immediate")

    return progress, seen


def merge_killer(server: Any) -> tuple[threading.Thread, threading.Event, threading.Event]:
    """A thread that stops the server as soon as a writer's final merge statement runs.
    Returns the thread, an event set when it fired, and one that cancels it."""
    return stop_server_when_running(server, "%WITH merged AS (INSERT INTO%")


@pytest.mark.slow
@pytest.mark.parametrize("path", ["copy", "staged", "stream", "stream-merge"])
def test_crash_mid_ingest_leaves_nothing_and_the_retry_lands_exactly(server: Any, pg: PostgreSQLIntegration,
                                                                      path: str) -> None:
    frame = bars(ROWS)
    existing = None
    if path == "staged":
        # Rows already stored with other values: the batch goes through staging and updates them.
        existing = bars(5_000, close=50.0)
        pg.save_market_data(existing)
    if path.startswith("stream"):
        # A month with no partition yet: the stream creates it inside its own transaction
        # (just before its final merge, the moment "stream-merge" crashes it).
        frame = bars(ROWS, start=dt.datetime(2024, 7, 1))

    def data() -> Any:
        return iter(frame.iter_slices(CHUNK)) if path.startswith("stream") else frame

    before = fingerprint(server, pg)
    progress, seen = killer(server, CHUNK)
    watcher, fired, cancel = merge_killer(server)
    if path == "stream-merge":
        watcher.start()
        progress = lambda done, total: seen.append(done)  # noqa: E731
    started = time.perf_counter()
    try:
        with pytest.raises(ServerUnavailableError) as info:
            pg.save_market_data(data(), chunk_rows=CHUNK, progress=progress)
    finally:
        cancel.set()
    failed_after = time.perf_counter() - started
    if path == "stream-merge":
        watcher.join()
        assert fired.is_set() and seen[-1] == ROWS  # everything was staged; the merge was cut off
    else:
        assert seen[0] == CHUNK and seen[-1] < ROWS  # it died part-way, not at the end
    # The batch paths re-run once after a lost connection, then fail to connect (the server
    # is still down); the stream cannot be re-read, so it reports the lost connection.
    text = str(info.value)
    assert "nothing from this call was committed" in text or "cannot reach the primary server" in text, text
    server.start()
    assert fingerprint(server, pg) == before  # no partial batch after crash recovery
    result = pg.save_market_data(data(), chunk_rows=CHUNK)  # the same call, retried on the same object
    assert result.rows == ROWS
    if existing is None:
        assert (result.inserted, result.updated) == (ROWS, 0)
    else:
        assert (result.inserted, result.updated) == (ROWS - existing.height, existing.height)
    assert fingerprint(server, pg) == expected_fingerprint(frame)
    log.info("%s: crash detected %.2fs after the call started", path, failed_after)


def test_pool_hands_out_only_healthy_connections_after_a_restart(server: Any, settings: Any) -> None:
    with PostgreSQLIntegration(settings=settings_replace(settings, max_connections=4)) as pg:
        pg.initialize_database()
        pg.save_market_data(bars(100))
        pool = pg.db.pool
        held = [pool.connection() for _ in range(4)]  # open all four, then give them back
        pids = set()
        for ctx in held:
            conn = ctx.__enter__()
            cur = conn.cursor()
            cur.execute("SELECT pg_backend_pid()")
            pids.add(cur.fetchone()[0])
            cur.close()
        for ctx in held:
            ctx.__exit__(None, None, None)
        assert pool.idle_connections == 4
        server.stop("immediate")
        server.start()
        # Every call after the restart works at the first attempt: no dead connection is handed out.
        for i in range(6):
            assert pg.save_market_data(bars(10, start=T0 + dt.timedelta(days=1 + i))).inserted == 10
            assert pg.get_latest("market_data", "SYM0").height == 1
            assert pg.get_market_data("SYM1", T0, T0 + dt.timedelta(days=10)).height > 0
            with pool.connection() as conn:
                cur = conn.cursor()
                cur.execute("SELECT pg_backend_pid()")
                assert cur.fetchone()[0] not in pids
                cur.close()
        assert pool.open_connections <= 4
        assert fingerprint(server, pg)[0] == 160


def _timed(call: Callable[[], Any]) -> tuple[BaseException, float]:
    started = time.perf_counter()
    try:
        call()
    except BaseException as err:  # returned for the caller's assertions
        return err, time.perf_counter() - started
    raise AssertionError("the call did not fail")


def test_calls_during_an_outage_fail_fast(server: Any, pg: PostgreSQLIntegration,
                                          record_property: Callable[[str, Any], None]) -> None:
    pg.save_market_data(bars(100))
    fast = settings_replace(pg.settings, connection_timeout=2, retry_attempts=0)
    with PostgreSQLIntegration(settings=fast) as outage:
        assert outage.get_market_data("SYM0", T0, T0 + dt.timedelta(days=1)).height == 25  # warm pool
        server.stop("immediate")
        try:
            calls = {
                "range read (connectorx)": lambda: outage.get_market_data("SYM0", T0, T0 + dt.timedelta(days=1)),
                "latest read (ADBC)": lambda: outage.get_latest("market_data", "SYM0"),
                "write": lambda: outage.save_market_data(bars(10, start=T0 + dt.timedelta(days=3))),
            }
            for name, call in calls.items():
                err, seconds = _timed(call)
                record_property(f"outage {name} seconds", round(seconds, 3))
                log.info("outage: %s failed in %.3fs", name, seconds)
                assert isinstance(err, ServerUnavailableError), (name, err)
                assert seconds < 15, (name, seconds)  # generous: timing belongs in benchmarks
        finally:
            server.start()
        # The same object works again once the server is back.
        assert outage.get_market_data("SYM0", T0, T0 + dt.timedelta(days=1)).height == 25
        assert outage.save_market_data(bars(10, start=T0 + dt.timedelta(days=3))).inserted == 10


def test_a_hung_server_fails_after_the_connection_timeout(settings: Any,
                                                          record_property: Callable[[str, Any], None],
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A host that accepts TCP connections but never answers (a black hole, a stopped VM):
    only the connect timeout can end the wait."""
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)  # the kernel completes handshakes; nobody ever reads or answers
        port = hole.getsockname()[1]
        hung = settings_replace(settings, host="127.0.0.1", port=port, connection_timeout=2, retry_attempts=1,
                                retry_delay=0.1)
        with PostgreSQLIntegration(settings=hung) as pg, caplog.at_level(logging.WARNING, logger="regime_io._pool"):
            for name, call in {"read": lambda: pg.get_market_data("SYM0", T0, T0 + dt.timedelta(days=1)),
                               "write": lambda: pg.save_market_data(bars(10))}.items():
                caplog.clear()
                err, seconds = _timed(call)
                record_property(f"hung server {name} seconds", round(seconds, 3))
                log.info("hung server: %s failed in %.3fs", name, seconds)
                assert isinstance(err, ServerUnavailableError), (name, err)
                assert "after 2 attempts" in str(err)
                assert len([r for r in caplog.records if "failed (attempt" in r.getMessage()]) == 2
                assert seconds < 15, (name, seconds)
