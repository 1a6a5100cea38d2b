"""A server killed in the middle of a seal leaves every row exactly once, and sealing again finishes the job.

Stops and restarts the session's embedded server (see tests/test_server_faults.py).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from regime_io import PostgreSQLIntegration, ServerUnavailableError
from regime_io._conn.embedded import status
from regime_io._tiers import sealing as sealing
from regime_io.errors import RegimeIOError
from tests._reading_data import bars
from tests.test_server_faults import query


@pytest.fixture(autouse=True)
def controllable(server: Any, settings: Any) -> Iterator[None]:
    if not server.controllable:
        pytest.skip("the test server is an external DSN: it cannot be stopped from here")
    yield
    sealing._before_commit = None
    if status(server.pgdata) is None:
        server.start()


def _tiers(server: Any, pg: PostgreSQLIntegration) -> tuple[int, int, int]:
    table = pg.db.table("market_data")
    rows = query(server, f"SELECT count(*), count(DISTINCT (symbol, timeframe, timestamp)) FROM {table}")[0]
    chunked = query(server, f'SELECT coalesce(sum(row_count), 0) FROM {table[:-1]}_chunks"')[0][0]
    return int(rows[0]), int(rows[1]), int(chunked)


@pytest.mark.slow
def test_a_server_killed_mid_seal_leaves_every_row_exactly_once(server: Any, pg: PostgreSQLIntegration) -> None:
    data = bars(["NIFTY", "BANKNIFTY"], ["1m"], dt.datetime(2024, 1, 2), 6000, step=dt.timedelta(minutes=20))
    pg.save_market_data(data)
    inside = threading.Event()
    release = threading.Event()
    calls: list[str] = []

    def pause(table: str, period: dt.date) -> None:
        calls.append(f"{table} {period}")
        if len(calls) == 2:  # the second month: the first one is already committed
            inside.set()
            release.wait(30)

    sealing._before_commit = pause
    errors: list[BaseException] = []

    def seal() -> None:
        try:
            pg.seal(dt.date(2024, 6, 1))
        except BaseException as err:  # asserted below
            errors.append(err)

    thread = threading.Thread(target=seal)
    thread.start()
    assert inside.wait(60), "the seal never reached its second month"
    server.stop("immediate")  # the seal's transaction is open, its chunks written, its rows deleted
    release.set()
    thread.join(60)
    server.start()
    assert len(errors) == 1 and isinstance(errors[0], RegimeIOError), errors
    assert isinstance(errors[0], ServerUnavailableError) or "connection" in str(errors[0]).lower()
    rows, distinct, chunked = _tiers(server, pg)
    assert rows == distinct
    assert rows + chunked == data.height  # every row exactly once: the first month sealed, the second not
    assert chunked > 0
    sealing._before_commit = None
    pg.seal(dt.date(2024, 6, 1))  # sealing again finishes the job
    rows, _, chunked = _tiers(server, pg)
    assert chunked == data.filter(data.get_column("timestamp") < dt.datetime(2024, 6, 1)).height
    assert rows + chunked == data.height
