"""Streaming readers: same rows and schema as the range readers, bounded memory."""

from __future__ import annotations

import datetime as dt
import gc
import threading
import time
from typing import Any

import polars as pl
import psutil
import pyarrow as pa
import pytest
from _reading_data import bars, insert, options
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, UsageError
from regime_io.tables import TABLES
from tests._helpers import insert_ten_second_bars

T0 = dt.datetime(2024, 1, 2, 9, 15)


def test_stream_equals_range_read(pg: PostgreSQLIntegration, sql: Any) -> None:
    insert(pg, sql, "market_data", bars(["NIFTY", "BANKNIFTY"], ["1m", "5m"], T0, 700))
    batches = list(pg.iter_market_data(["NIFTY", "BANKNIFTY"], T0, "2024-01-02", batch_rows=256,
                                      return_type="arrow"))
    assert all(b.schema == TABLES["market_data"].read_schema() for b in batches)
    assert all(0 < b.num_rows <= 256 for b in batches)
    streamed = pl.from_arrow(pa.Table.from_batches(batches))
    assert_frame_equal(streamed, pg.get_market_data(["NIFTY", "BANKNIFTY"], T0, "2024-01-02"))  # type: ignore[arg-type]
    exact = list(pg.iter_market_data("NIFTY", T0, "2024-01-02", timeframe="5m", exact=True, return_type="arrow"))
    assert exact[0].schema == TABLES["market_data"].read_schema(exact=True)
    assert sum(b.num_rows for b in exact) == 700
    assert list(pg.iter_market_data("NOPE", T0, "2024-01-02")) == []


def test_options_stream_equals_range_read(pg: PostgreSQLIntegration, sql: Any) -> None:
    insert(pg, sql, "options_data", options("NIFTY", [dt.date(2024, 1, 25)], [21500.0, 21600.0], T0, 50))
    streamed = pl.from_arrow(pa.Table.from_batches(list(pg.iter_options_data("NIFTY", T0, "2024-01-02",
                                                                             batch_rows=64, return_type="arrow"))))
    assert_frame_equal(streamed, pg.get_options_data("NIFTY", T0, "2024-01-02"))  # type: ignore[arg-type]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"batch_rows": 0}, "batch_rows"),
    ({"start": "2024-02-01"}, "after"),
])
def test_stream_arguments_are_checked_when_called(pg: PostgreSQLIntegration, kwargs: dict[str, Any],
                                                  match: str) -> None:
    args = {"start": "2024-01-01", "end": "2024-01-02"} | kwargs
    batch_rows = args.pop("batch_rows", 1000)
    with pytest.raises(UsageError, match=match):
        pg.iter_market_data("NIFTY", args["start"], args["end"], batch_rows=batch_rows)  # no next() needed


class PeakRSS:
    """Samples this process's RSS every few milliseconds in a thread."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = self.baseline = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


@pytest.mark.slow
def test_streaming_three_million_rows_keeps_memory_bounded(pg: PostgreSQLIntegration, sql: Any) -> None:
    rows = 3_000_000
    first = insert_ten_second_bars(pg, sql, rows)
    gc.collect()
    seen = 0
    data_bytes = 0
    with PeakRSS() as rss:
        for batch in pg.iter_market_data("NIFTY", first, "2024-12-31", batch_rows=100_000, return_type="arrow"):
            seen += batch.num_rows
            data_bytes += batch.nbytes
            del batch
    assert seen == rows
    # The whole result is ~190 MB as Arrow; streaming must hold a small part of it at a time.
    # (Measured here: ~40 MB of growth, mostly the driver's buffers; a full read grows >200 MB.)
    assert data_bytes > 150_000_000
    assert rss.growth < data_bytes / 2, f"peak RSS grew {rss.growth / 1e6:.0f} MB for {data_bytes / 1e6:.0f} MB"
