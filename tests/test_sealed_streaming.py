"""A sealed read that may span many chunks receives them on a worker thread while it decodes
the first ones (``engines.stream_records``); a narrow one keeps one prepared round trip.

Either way the answer is the row tier's; errors surface as the library's; a connection the
server killed is met once and the read runs again.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, ReadError
from regime_io._conn import engines
from regime_io._sql.query import Query
from regime_io.config import Settings, settings_replace
from tests._reading_data import bars

SYMBOLS = ["NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "SENSEX"]
START, END = dt.datetime(2024, 1, 1), dt.datetime(2024, 2, 29, 23, 59)


def _stored(pg: PostgreSQLIntegration) -> pl.DataFrame:
    """Five symbols x two months of hourly bars, January sealed (5 chunks) and February in rows."""
    data = bars(SYMBOLS, ["1h"], START, 24 * 60, seed=3, step=dt.timedelta(hours=1))
    pg.save_market_data(data)
    pg.seal(dt.date(2024, 2, 1))
    return data


def _streamed(caplog: pytest.LogCaptureFixture) -> list[bool]:
    return [r.getMessage().startswith("lookup (streamed)") for r in caplog.records
            if r.name == "regime_io._conn.engines" and r.getMessage().startswith("lookup") and "_chunks" in
            r.getMessage()]


def test_a_wide_read_streams_its_chunks_and_answers_as_the_rows(pg: PostgreSQLIntegration,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    data = _stored(pg)
    got = {}
    for exact in (False, True):
        with caplog.at_level(logging.DEBUG, logger="regime_io._conn.engines"):
            caplog.clear()
            got[exact] = pg.get_market_data(SYMBOLS, START, END, exact=exact)
        assert _streamed(caplog) == [True]
        assert got[exact].height == data.height
    pg.unseal(START, END)  # the same rows, all in the row tier now
    for exact in (False, True):
        assert_frame_equal(got[exact], pg.get_market_data(SYMBOLS, START, END, exact=exact))


def test_a_narrow_read_keeps_one_round_trip(pg: PostgreSQLIntegration, caplog: pytest.LogCaptureFixture) -> None:
    data = _stored(pg)
    with caplog.at_level(logging.DEBUG, logger="regime_io._conn.engines"):
        got = pg.get_market_data("NIFTY", START, dt.datetime(2024, 1, 31, 23))
    assert _streamed(caplog) == [False]
    assert got.height == data.filter((pl.col("symbol") == "NIFTY") & (pl.col("timestamp") < dt.datetime(2024, 2, 1))
                                     ).height


def test_a_driver_error_in_the_worker_is_the_librarys(pg: PostgreSQLIntegration) -> None:
    with pytest.raises(ReadError, match="no_such_table"):
        list(engines.stream_records(pg.db, Query(), "SELECT * FROM no_such_table", what="a test read"))


def test_a_streamed_read_on_a_killed_connection_runs_again(settings: Settings, sql: Any,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    # Pings only after an hour idle: the pool hands out the connection the server killed.
    with PostgreSQLIntegration(settings=settings_replace(settings, health_check_interval=3600.0)) as pg:
        pg.initialize_database()
        data = _stored(pg)
        pg.get_market_data(SYMBOLS, START, END)  # warms the lookup connection
        killed = sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                     "AND backend_type = 'client backend'")
        assert killed[0][0] >= 1
        with caplog.at_level(logging.INFO, logger="regime_io"):
            got = pg.get_market_data(SYMBOLS, START, END)
        assert got.height == data.height
        assert any(r.getMessage() == "market_data sealed chunks: its connection had died; running the read once more"
                   for r in caplog.records), caplog.text


def test_pipelined_lookups_after_a_streamed_read_work(pg: PostgreSQLIntegration) -> None:
    """libpq kept single-row mode for the next pipelined query after a stream when a pipeline
    had run on the connection before it: the lookups failed with "unexpected result status
    from query: SINGLE_TUPLE" (first seen as a get_latest after a wide sealed read)."""
    two = [(Query(), "SELECT 1 AS x"), (Query(), "SELECT 2 AS x")]
    for _ in range(2):
        assert [t.column("x")[0].as_py() for t in engines.read_lookups(pg.db, two, what="a test")] == [1, 2]
        got = engines.stream_records(pg.db, Query(), "SELECT generate_series(1, 3) AS n", what="a test")
        assert [r["n"] for r in got] == [1, 2, 3]
