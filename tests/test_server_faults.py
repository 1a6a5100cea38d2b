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
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, ServerUnavailableError
from regime_io._conn.embedded import status
from regime_io.config import settings_replace
from tests._helpers import drivers_reading, insert_ten_second_bars, stop_server_when_running

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
        with pytest.raises(ServerUnavailableError,
                           match=r"nothing from this call was committed|cannot reach the primary server") as info:
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


# Every read driver, through a reader that uses it: name -> (driver, row table it reads, call).
# get_market_data, history and the distribution run on the warm ADBC connection, latest rows
# on a pooled psycopg lookup; resampling, the as-of join and streams on connectorx; scan() on an ADBC stream
# (a new connection per read, opened only after a pooled ``SELECT 1`` answered).
DAY = dt.timedelta(days=1)
READERS: dict[str, tuple[str, str, Callable[[PostgreSQLIntegration], Any]]] = {
    "range read": ("adbc", "mr_market_data", lambda pg: pg.get_market_data("SYM0", T0, T0 + DAY)),
    "history": ("adbc", "mr_market_regimes_1min", lambda pg: pg.history("1min", "SYM0", T0, T0 + DAY)),
    "latest": ("lookup", "mr_market_data", lambda pg: pg.get_latest("market_data", "SYM0")),
    "resampled read": ("connectorx", "mr_market_data",
                       lambda pg: pg.get_market_data("SYM0", T0, T0 + DAY, resample="15m")),
    "as-of join": ("connectorx", "mr_market_regimes_1min",
                   lambda pg: pg.asof_regimes(symbol="SYM0", start_date=T0, end_date=T0 + DAY)),
    "stream": ("connectorx stream", "mr_market_data",
               lambda pg: pl.from_arrow(list(pg.iter_market_data("SYM0", T0, T0 + DAY, batch_rows=10,
                                                                 return_type="arrow")))),
    "scan": ("adbc stream", "mr_market_data",
             lambda pg: pg.scan("bars").filter(pl.col("symbol") == "SYM0").collect()),
}


def minute_regimes(n: int) -> pl.DataFrame:
    """``n`` one-minute regimes of SYM0 from T0 (for the as-of join and history)."""
    return pl.DataFrame({
        "symbol": ["SYM0"] * n,
        "timestamp": pl.datetime_range(T0, T0 + dt.timedelta(minutes=n - 1), "1m", eager=True),
        "regime": [("Bullish", "Bearish", "Sideways")[k % 3] for k in range(n)],
        "confidence": [0.5] * n,
    })


def test_calls_during_an_outage_fail_fast(server: Any, pg: PostgreSQLIntegration,
                                          record_property: Callable[[str, Any], None],
                                          caplog: pytest.LogCaptureFixture) -> None:
    """With a warm pool, every read driver and the writer fail fast while the server is
    down, and the same object serves the same answers, from the same driver, once it is back."""
    pg.save_market_data(bars(100))
    pg.save_1min_market_regime(minute_regimes(60))
    fast = settings_replace(pg.settings, connection_timeout=2, retry_attempts=0)
    with PostgreSQLIntegration(settings=fast) as outage:
        before = {}
        for name, (driver, table, call) in READERS.items():  # warm every pool, note each answer
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="regime_io"):
                before[name] = call(outage)
            assert before[name].height > 0, name
            assert driver in drivers_reading(caplog.records, table), name
        server.stop("immediate")
        try:
            calls: dict[str, Callable[[], Any]] = {
                f"{name} ({driver})": lambda call=call: call(outage) for name, (driver, _, call) in READERS.items()}
            calls["write"] = lambda: outage.save_market_data(bars(10, start=T0 + dt.timedelta(days=3)))
            for name, call in calls.items():
                err, seconds = _timed(call)
                record_property(f"outage {name} seconds", round(seconds, 3))
                log.info("outage: %s failed in %.3fs", name, seconds)
                assert isinstance(err, ServerUnavailableError), (name, err)
                # Generous (timing belongs in benchmarks), and below connectorx's own 30 s of retries.
                assert seconds < 15, (name, seconds)
        finally:
            server.start()
        # The same object works again once the server is back: same answers, same drivers.
        for name, (driver, table, call) in READERS.items():
            caplog.clear()
            with caplog.at_level(logging.DEBUG, logger="regime_io"):
                assert_frame_equal(call(outage), before[name]), name
            assert driver in drivers_reading(caplog.records, table), name
        assert outage.save_market_data(bars(10, start=T0 + dt.timedelta(days=3))).inserted == 10


def test_the_server_dying_during_a_connectorx_read_is_a_server_unavailable_error(
        server: Any, pg: PostgreSQLIntegration, caplog: pytest.LogCaptureFixture) -> None:
    """The server stops while connectorx runs a resampling query (a watcher stops it as soon
    as the query is active on the server): the call raises ServerUnavailableError, not a
    driver error, and the next call is served again by connectorx."""
    first = insert_ten_second_bars(pg, query_runner(server), 300_000)
    end = first + dt.timedelta(seconds=10 * 300_000)
    watcher, fired, cancel = stop_server_when_running(server, "%date_bin%")
    watcher.start()
    try:
        with caplog.at_level(logging.DEBUG, logger="regime_io"):
            err, _ = _timed(lambda: pg.get_market_data("NIFTY", first, end, resample="1h"))
        watcher.join(30)
        assert fired.is_set(), "the server was not stopped during the query"
        assert drivers_reading(caplog.records, "mr_market_data") == ["connectorx"]
        assert isinstance(err, ServerUnavailableError), repr(err)
        assert "get_market_data(resample=...)" in str(err)
    finally:
        cancel.set()
        watcher.join(30)
        if status(server.pgdata) is None:
            server.start()
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="regime_io"):
        again = pg.get_market_data("NIFTY", first, end, resample="1h")
    assert again["volume"].sum() == sum(range(300_000))  # every bar counted once
    assert drivers_reading(caplog.records, "mr_market_data") == ["connectorx"]
    # library mismatch reported: the same fault during a connectorx *stream* (iter_market_data,
    # scan().collect()) escapes as pyo3_runtime.PanicException ("cx writer failed: ...
    # Connection reset by peer"), a BaseException that engines.stream_cx's `except Exception`
    # does not wrap, instead of ServerUnavailableError; the case is added once fixed.


def query_runner(server: Any) -> Callable[..., Any]:
    return lambda text, params=None: query_or_run(server, text, params)


def query_or_run(server: Any, text: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        cur = conn.execute(text, params)
        return cur.fetchall() if cur.description else []


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
        with PostgreSQLIntegration(settings=hung) as pg, \
                caplog.at_level(logging.WARNING, logger="regime_io._conn.pool"):
            for name, call in {"read (adbc)": lambda: READERS["range read"][2](pg),
                               "resampled read (connectorx)": lambda: READERS["resampled read"][2](pg),
                               "write": lambda: pg.save_market_data(bars(10))}.items():
                caplog.clear()
                err, seconds = _timed(call)
                record_property(f"hung server {name} seconds", round(seconds, 3))
                log.info("hung server: %s failed in %.3fs", name, seconds)
                assert isinstance(err, ServerUnavailableError), (name, err)
                assert "after 2 attempts" in str(err)
                assert len([r for r in caplog.records if "failed (attempt" in r.getMessage()]) == 2
                assert seconds < 15, (name, seconds)
