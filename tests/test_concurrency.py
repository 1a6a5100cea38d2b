"""Concurrency: eight writers (threads, and processes started with 'spawn') saving
overlapping batches with conflicting values; readers polling while writers write;
initialize_database and cleanup_old_data racing each other and the writers.

The documented final state of conflicting upserts (``on_conflict="update"``): every
batch is atomic and the batches behave as if applied one after another in commit
order, so each row holds the values of the last committed batch that contains its
key. Which batch commits last is up to the scheduler; the tests check what is
promised:

* the row count equals the number of distinct keys written (nothing lost, nothing doubled);
* every row holds all the values of one batch that wrote that key (no torn rows);
* there is one commit order of the batches consistent with every row (the "who won which
  row" relation has no cycle), and it agrees with each writer's own order of calls.
"""

from __future__ import annotations

import datetime as dt
import graphlib
import logging
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import polars as pl
import psycopg
import pyarrow as pa
import pytest

from regime_io import PostgreSQLIntegration
from regime_io._schema.ddl import SCHEMA_VERSION
from regime_io.config import Settings, settings_replace
from regime_io.tables import TABLES
from tests._helpers import drivers_reading

T0 = dt.datetime(2024, 5, 1)
WRITERS = 8
BATCHES = 3  # per writer
SPAN = 600  # minutes per batch and symbol
SYMBOLS = ("A", "B")


def batch_id(writer: int, batch: int) -> int:
    return writer * 10 + batch + 1


def batch_minutes(writer: int, batch: int) -> range:
    start = writer * 150 + batch * 75  # every batch overlaps several others
    return range(start, start + SPAN)


def batch_frame(writer: int, batch: int) -> pl.DataFrame:
    """Rows whose every value encodes the batch: volume is the batch id, prices derive from it."""
    bid = batch_id(writer, batch)
    minutes = list(batch_minutes(writer, batch))
    n = len(minutes) * len(SYMBOLS)
    return pl.DataFrame({
        "symbol": [s for s in SYMBOLS for _ in minutes],
        "timestamp": [T0 + dt.timedelta(minutes=m) for _ in SYMBOLS for m in minutes],
        "open": [bid + 0.25] * n,
        "high": [bid + 1.0] * n,
        "low": [bid - 0.5] * n,
        "close": [bid + 0.5] * n,
        "volume": [bid] * n,
        "timeframe": ["1m"] * n,
    })


def write_batches(pg: PostgreSQLIntegration, writer: int) -> list[int]:
    """Writer ``writer``'s batches, in order; returns the batch ids (its program order)."""
    done = []
    for batch in range(BATCHES):
        # Alternate chunk sizes so both single-COPY and multi-chunk transactions race.
        pg.save_market_data(batch_frame(writer, batch), chunk_rows=97 if batch % 2 else 250_000)
        done.append(batch_id(writer, batch))
    return done


def writer_process(settings: Settings, writer: int, barrier: Any, results: Any) -> None:
    """One writer in its own process, with its own PostgreSQLIntegration built from the same Settings."""
    try:
        with PostgreSQLIntegration(settings=settings) as pg:
            barrier.wait(timeout=120)
            results.put((writer, write_batches(pg, writer), None))
    except BaseException as err:  # reported to the parent
        results.put((writer, [], repr(err)))


def check_final_state(sql: Any, settings: Settings) -> None:
    rows = sql(f'SELECT symbol, timestamp, open, high, low, close, volume FROM "{settings.schema}".'
               f'"{settings.table_name("market_data")}"')
    covering: dict[int, set[int]] = {}
    for w in range(WRITERS):
        for b in range(BATCHES):
            for m in batch_minutes(w, b):
                covering.setdefault(m, set()).add(batch_id(w, b))
    assert len(rows) == len(covering) * len(SYMBOLS)  # nothing lost, nothing doubled
    assert len({(r[0], r[1]) for r in rows}) == len(rows)
    order = graphlib.TopologicalSorter()
    for w in range(WRITERS):  # each writer's calls return after their commit
        for b in range(1, BATCHES):
            order.add(batch_id(w, b), batch_id(w, b - 1))
    for symbol, ts, open_, high, low, close, volume in rows:
        minute = int((ts - T0).total_seconds() // 60)
        assert volume in covering[minute], (symbol, ts, volume)  # written by a batch that has this key
        assert (open_, high, low, close) == (Decimal(volume) + Decimal("0.25"), Decimal(volume) + 1,
                                             Decimal(volume) - Decimal("0.5"), Decimal(volume) + Decimal("0.5"))
        order.add(volume, *(covering[minute] - {volume}))  # the winner committed after the others
    list(order.static_order())  # raises CycleError if no commit order explains the table


@pytest.mark.slow
def test_eight_threads_with_conflicting_overlapping_batches(pg: PostgreSQLIntegration, sql: Any) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(WRITERS)

    def run(writer: int) -> None:
        try:
            barrier.wait(timeout=60)
            write_batches(pg, writer)  # one shared PostgreSQLIntegration (and pool) for all threads
        except BaseException as err:  # asserted below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    check_final_state(sql, pg.settings)


@pytest.mark.slow
def test_eight_processes_with_conflicting_overlapping_batches(pg: PostgreSQLIntegration, sql: Any) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=writer_process, args=(pg.settings, w, barrier, results)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(30)
    assert [o[2] for o in outcomes] == [None] * WRITERS
    assert sorted(o[0] for o in outcomes) == list(range(WRITERS))
    check_final_state(sql, pg.settings)


# -- readers during writes --------------------------------------------------------------

BATCH_ROWS = 400


def batch_of(symbol: str) -> pl.DataFrame:
    return pl.DataFrame({
        "symbol": [symbol] * BATCH_ROWS,
        "timestamp": [T0 + dt.timedelta(minutes=i) for i in range(BATCH_ROWS)],
        "open": [1.0] * BATCH_ROWS, "high": [2.0] * BATCH_ROWS, "low": [0.5] * BATCH_ROWS,
        "close": [1.5] * BATCH_ROWS, "volume": list(range(BATCH_ROWS)), "timeframe": ["1m"] * BATCH_ROWS,
    })


def _counts(frame: pl.DataFrame) -> dict[str, int]:
    return {str(k): int(v) for k, v in frame.group_by("symbol").len().iter_rows()}


def _volumes(frame: pl.DataFrame) -> dict[str, int]:
    """Rows per symbol, told by a resampled frame: the volumes are 0..BATCH_ROWS-1, so a whole
    batch sums to BATCH_ROWS * (BATCH_ROWS - 1) / 2 and each row adds one to the second sum."""
    sums = frame.group_by("symbol").agg(pl.col("volume").sum())
    whole = BATCH_ROWS * (BATCH_ROWS - 1) // 2
    return {str(s): BATCH_ROWS if int(v) == whole else -int(v) for s, v in sums.iter_rows()}


def _latest(frame: pl.DataFrame) -> dict[str, int]:
    """A symbol's latest bar is the batch's last one (minute BATCH_ROWS - 1) when the batch is whole."""
    last = T0 + dt.timedelta(minutes=BATCH_ROWS - 1)
    return {str(s): BATCH_ROWS if ts == last and v == BATCH_ROWS - 1 else -1
            for s, ts, v in frame.select("symbol", "timestamp", "volume").iter_rows()}


@pytest.mark.slow
def test_readers_see_whole_batches_or_nothing(pg: PostgreSQLIntegration, server: Any,
                                              caplog: pytest.LogCaptureFixture) -> None:
    """Each read driver, through a reader that uses it, sees every batch whole or not at all
    while writers commit. The interleaving is forced: the writers stop halfway, after half
    of their symbols, until every reader has completed a read started at that point (it
    must see exactly half the symbols), then write the rest while the readers keep reading."""
    symbols = [f"S{i:02d}" for i in range(32)]
    end = T0 + dt.timedelta(days=1)
    sql_table = f'"{pg.settings.schema}"."{pg.settings.table_name("market_data")}"'

    def stream(frames: list[pa.RecordBatch]) -> dict[str, int]:
        whole = pl.from_arrow(frames) if frames else pl.DataFrame({"symbol": []}, schema={"symbol": pl.String})
        return _counts(whole)  # type: ignore[arg-type]

    # kind -> (driver, read returning rows per symbol: BATCH_ROWS for a whole batch)
    readers: dict[str, tuple[str | None, Callable[[], dict[str, int]]]] = {
        "psycopg (plain SQL)": (None, lambda: {}),  # replaced by a connection of its own below
        "get_market_data (adbc)": ("adbc", lambda: _counts(pg.get_market_data(symbols, T0, end))),
        "latest (lookup)": ("lookup", lambda: _latest(pg.get_latest("market_data", symbols))),
        "resample (connectorx)": ("connectorx", lambda: _volumes(
            pg.get_market_data(symbols, T0, end, resample="1h"))),
        "iter_market_data (connectorx stream)": ("connectorx stream", lambda: stream(
            list(pg.iter_market_data(symbols, T0, end, batch_rows=1000, return_type="arrow")))),
        "scan (adbc stream)": ("adbc stream", lambda: _counts(
            pg.scan("bars").filter(pl.col("symbol").is_in(symbols)).collect())),
    }
    # The table above is true: each reader is served by its driver (PRE, stored first, is
    # outside the symbols read).
    pg.save_market_data(batch_of("PRE"))
    for kind, (driver, read) in readers.items():
        if driver is None:
            continue
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="regime_io"):
            read()
        assert driver in drivers_reading(caplog.records, pg.settings.table_name("market_data")), kind

    done = threading.Event()
    halfway = threading.Event()
    errors: list[BaseException] = []
    seen: dict[str, list[dict[str, int]]] = {kind: [] for kind in readers}
    at_halfway: dict[str, list[dict[str, int]]] = {kind: [] for kind in readers}
    read_at_halfway = {kind: threading.Event() for kind in readers}
    parts = [symbols[i::4] for i in range(4)]
    pause = threading.Barrier(len(parts), action=halfway.set)

    def write(part: list[str], how: str) -> None:
        try:
            for n, symbol in enumerate(part):
                if n == len(part) // 2:  # halfway: wait until every reader has read this state
                    pause.wait(timeout=60)
                    for event in read_at_halfway.values():
                        assert event.wait(timeout=60), "a reader did not read at halfway"
                frame = batch_of(symbol)
                if how == "stream":  # several chunks, merged once at the end
                    pg.save_market_data(iter(frame.iter_slices(BATCH_ROWS // 4)), chunk_rows=50)
                else:  # one COPY per 64 rows, one transaction
                    pg.save_market_data(frame, chunk_rows=64)
        except BaseException as err:  # asserted below
            errors.append(err)
            halfway.set()
            for event in read_at_halfway.values():
                event.set()

    def read(kind: str) -> None:
        try:
            conn = psycopg.connect(server.url(), autocommit=True) if kind.startswith("psycopg") else None
            while not done.is_set():
                started_at_halfway = halfway.is_set() and not read_at_halfway[kind].is_set()
                if conn is not None:
                    counts = {str(k): int(v) for k, v in conn.execute(
                        f"SELECT symbol, count(*) FROM {sql_table} WHERE symbol <> 'PRE' GROUP BY symbol").fetchall()}
                else:
                    counts = readers[kind][1]()
                seen[kind].append(counts)
                if started_at_halfway:
                    at_halfway[kind].append(counts)
                    read_at_halfway[kind].set()
                time.sleep(0.01)
            if conn is not None:
                conn.close()
        except BaseException as err:  # asserted below
            errors.append(err)
            read_at_halfway[kind].set()

    writers = [threading.Thread(target=write, args=(part, "stream" if i % 2 else "batch"))
               for i, part in enumerate(parts)]
    threads = [threading.Thread(target=read, args=(k,)) for k in readers]
    for t in threads + writers:
        t.start()
    for t in writers:
        t.join(120)
    done.set()
    for t in threads:
        t.join(60)
    assert errors == []
    first_halves = {s for part in parts for s in part[:len(part) // 2]}
    for kind, observations in seen.items():
        assert observations, kind
        for counts in observations:
            assert set(counts.values()) <= {BATCH_ROWS}, (kind, counts)  # whole batches only
        # The forced interleaving: a read at halfway saw exactly the first halves, whole.
        assert at_halfway[kind] and set(at_halfway[kind][0]) == first_halves, (kind, at_halfway[kind])
    assert pg.get_market_data(symbols, T0, end).height == len(symbols) * BATCH_ROWS


def test_creating_a_partition_does_not_block_readers(pg: PostgreSQLIntegration, server: Any) -> None:
    """A stream creates its partitions inside its own transaction. Readers of the table must
    not wait for that transaction: a connectorx stream (iter_market_data) holds the GIL while
    it waits for the server, so in one process such a wait was a deadlock (seen in
    test_readers_see_whole_batches_or_nothing before partitions were attached)."""
    pg.save_market_data(batch_of("S0"))
    table = f'"{pg.settings.schema}"."{pg.settings.table_name("market_data")}"'
    spec = TABLES["market_data"]
    with pg.db.connection() as conn:
        created = pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, dt.datetime(2025, 2, 1),
                                          dt.datetime(2025, 3, 31), conn=conn)
        assert created == 2  # and this transaction stays open while a reader reads
        with psycopg.connect(server.url(), autocommit=True) as reader:
            reader.execute("SET lock_timeout = '1s'")
            assert reader.execute(f"SELECT count(*) FROM {table}").fetchone() == (BATCH_ROWS,)
        # the stream reader itself
        frames = list(pg.iter_market_data("S0", T0, T0 + dt.timedelta(days=1), return_type="arrow"))
        assert sum(f.num_rows for f in frames) == BATCH_ROWS


# -- initialize_database and cleanup_old_data ---------------------------------------------


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)


@pytest.fixture
def fresh(server: Any) -> Iterator[Settings]:
    schema = f"t_cc_{uuid.uuid4().hex[:10]}"
    yield settings_replace(server.settings, schema=schema)
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.slow
def test_concurrent_initialize_cleanup_writes_and_reads(fresh: Settings, sql: Any) -> None:
    # Eight first-time initialize_database calls at once, each with its own pool.
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def init() -> None:
        try:
            with PostgreSQLIntegration(settings=fresh) as own:
                barrier.wait(timeout=60)
                assert own.initialize_database() == SCHEMA_VERSION
        except BaseException as err:  # asserted below
            errors.append(err)

    threads = [threading.Thread(target=init) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    tables = sql("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE n.nspname = %s AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1",
                 (fresh.schema,))
    # The five tables, their sealed-tier chunk tables and the schema version table (plus
    # whatever bookkeeping tables later schema versions add), each created once.
    names = {name for (name,) in tables}
    expected = {fresh.table_name(k) for k in TABLES} | {f"{fresh.table_name(k)}_chunks" for k, s in TABLES.items()
                                                         if s.sealable} | {"mr_schema_version"}
    assert expected <= names
    assert sql(f'SELECT count(*) FROM "{fresh.schema}"."mr_schema_version"') == [(SCHEMA_VERSION,)]

    # Old history (three months, a year ago) and recent rows; then cleanups, writers,
    # initialisers and a reader all at once.
    now = _utc_now()
    old_start = (now - dt.timedelta(days=400)).replace(hour=0, minute=0, second=0)
    with PostgreSQLIntegration(settings=fresh) as pg:
        old = pl.DataFrame({
            "symbol": ["OLD"] * 2000,
            "timestamp": [old_start + dt.timedelta(hours=i) for i in range(2000)],  # ~83 days
            "open": [1.0] * 2000, "high": [2.0] * 2000, "low": [0.5] * 2000, "close": [1.5] * 2000,
            "volume": [1] * 2000, "timeframe": ["1h"] * 2000,
        })
        pg.save_market_data(old)
        recent_start = (now - dt.timedelta(days=2)).replace(second=0)
        reports: list[Any] = []
        written: list[int] = []
        stop_reading = threading.Event()
        barrier = threading.Barrier(9)

        def cleanup() -> None:
            with PostgreSQLIntegration(settings=fresh) as own:
                barrier.wait(timeout=60)
                reports.append(own.cleanup_old_data(days_to_keep=30, tables=["market_data"]))

        def write(i: int) -> None:
            with PostgreSQLIntegration(settings=fresh) as own:
                barrier.wait(timeout=60)
                for j in range(5):
                    frame = batch_of(f"NEW{i}").with_columns(
                        pl.Series("timestamp", [recent_start + dt.timedelta(minutes=j * BATCH_ROWS + k)
                                                for k in range(BATCH_ROWS)]))
                    written.append(own.save_market_data(frame).inserted)

        def initialise() -> None:
            with PostgreSQLIntegration(settings=fresh) as own:
                barrier.wait(timeout=60)
                own.initialize_database()

        def read() -> None:
            barrier.wait(timeout=60)
            while not stop_reading.is_set():
                pg.get_market_data(["OLD", "NEW0"], old_start, now + dt.timedelta(days=1))
                time.sleep(0.01)

        def guarded(target: Any, *args: Any) -> threading.Thread:
            def run() -> None:
                try:
                    target(*args)
                except BaseException as err:  # asserted below
                    errors.append(err)
            return threading.Thread(target=run)

        workers = ([guarded(cleanup) for _ in range(3)] + [guarded(write, i) for i in range(3)]
                   + [guarded(initialise) for _ in range(2)])
        reader = guarded(read)
        for t in [*workers, reader]:
            t.start()
        for t in workers:
            t.join(120)
        stop_reading.set()
        reader.join(60)
        assert errors == []
        cutoff = now - dt.timedelta(days=30)
        table = f'"{fresh.schema}"."mr_market_data"'
        assert sql(f"SELECT count(*) FROM {table} WHERE timestamp < %s", (cutoff,)) == [(0,)]
        # Each old row was removed exactly once, whichever cleanup got to it.
        assert sum(r.rows_removed for r in reports) == old.height
        assert written == [BATCH_ROWS] * 15
        assert sql(f"SELECT count(*) FROM {table}") == [(3 * 5 * BATCH_ROWS,)]
        # The writers' process-local partition caches are still good for new writes.
        assert pg.save_market_data(batch_of("LATE").with_columns(
            pl.Series("timestamp", [now - dt.timedelta(minutes=k) for k in range(BATCH_ROWS)]))).inserted == BATCH_ROWS
