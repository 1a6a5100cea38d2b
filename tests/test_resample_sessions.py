"""Session-aware resampling against buckets computed by hand from one NSE session.

Two sessions of one-minute bars (09:15-15:29, 375 bars each) on 2024-01-02 and
2024-01-03; the expected bars are slices of the source rows, picked by hand.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo

import polars as pl
import pytest
from _reading_data import bars
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, UsageError

DAY1, DAY2 = dt.datetime(2024, 1, 2, 9, 15), dt.datetime(2024, 1, 3, 9, 15)


def _sessions() -> pl.DataFrame:
    return pl.concat([bars(["NIFTY"], ["1m"], DAY1, 375, seed=1), bars(["NIFTY"], ["1m"], DAY2, 375, seed=2)])


def _bar(rows: pl.DataFrame, label: dt.datetime, timeframe: str) -> dict[str, object]:
    return {"symbol": "NIFTY", "timestamp": label, "open": rows["open"][0], "high": rows["high"].max(),
            "low": rows["low"].min(), "close": rows["close"][-1], "volume": rows["volume"].sum(),
            "timeframe": timeframe}


def _expected(source: pl.DataFrame, cuts: list[tuple[int, int, dt.datetime]], timeframe: str) -> pl.DataFrame:
    """Bars from row slices ``[lo, hi)`` of the source, labelled by hand."""
    rows = [_bar(source[lo:hi], label, timeframe) for lo, hi, label in cuts]
    return pl.DataFrame(rows, schema=source.schema)


@pytest.fixture
def nse(pg: PostgreSQLIntegration) -> PostgreSQLIntegration:
    pg.initialize_database()
    pg.save_market_data(_sessions())
    return pg


def _hourly(source: pl.DataFrame, timeframe: str) -> pl.DataFrame:
    cuts = []
    for day, base in ((0, DAY1), (375, DAY2)):
        # 09:15-10:14, 10:15-11:14, ..., 14:15-15:14, then 15:15-15:29 (cut at the close).
        cuts += [(day + 60 * i, day + min(60 * (i + 1), 375), base + dt.timedelta(hours=i)) for i in range(7)]
    return _expected(source, cuts, timeframe)


@pytest.mark.parametrize("every", ["1h", "60min", "1H", dt.timedelta(hours=1)])
def test_hourly_buckets_start_at_the_session_open(nse: PostgreSQLIntegration, every: object) -> None:
    got = nse.get_market_data("NIFTY", "2024-01-02", "2024-01-03", resample=every)
    assert got["timestamp"].dt.strftime("%H:%M").to_list()[:7] == ["09:15", "10:15", "11:15", "12:15", "13:15",
                                                                  "14:15", "15:15"]
    assert_frame_equal(got, _hourly(_sessions(), "1h"))


def test_two_hours_pandas_minutes_days_weeks_months(nse: PostgreSQLIntegration) -> None:
    source = _sessions()
    two = nse.get_market_data("NIFTY", resample="2h")
    cuts = [(day + 120 * i, day + min(120 * (i + 1), 375), base + dt.timedelta(hours=2 * i))
            for day, base in ((0, DAY1), (375, DAY2)) for i in range(4)]
    assert_frame_equal(two, _expected(source, cuts, "2h"))
    five = nse.get_market_data("NIFTY", "2024-01-02", "2024-01-02", resample="5T")
    assert five.height == 75 and five["timeframe"][0] == "5m"
    assert five.row(0) == tuple(_bar(source[0:5], DAY1, "5m").values())
    days = nse.get_market_data("NIFTY", resample="1D")
    assert_frame_equal(days, _expected(source, [(0, 375, dt.datetime(2024, 1, 2)), (375, 750, dt.datetime(2024, 1, 3))],
                                       "1d"))
    week = nse.get_market_data("NIFTY", resample="1w")  # Monday 2024-01-01
    assert_frame_equal(week, _expected(source, [(0, 750, dt.datetime(2024, 1, 1))], "1w"))
    month = nse.get_market_data("NIFTY", resample="1mo")
    assert_frame_equal(month, _expected(source, [(0, 750, dt.datetime(2024, 1, 1))], "1mo"))


def test_no_bucket_spans_two_sessions(pg: PostgreSQLIntegration) -> None:
    """Bars around midnight (a 24-hour feed): the day's first bucket starts at midnight."""
    pg.initialize_database()
    source = bars(["NIFTY"], ["1m"], dt.datetime(2024, 1, 2, 23, 0), 120)  # 23:00 to 00:59
    pg.save_market_data(source)
    got = pg.get_market_data("NIFTY", resample="1h")
    # 22:15-23:14 (23:00-23:14), 23:15-00:14 cut at midnight, then 00:00-00:14 and 00:15-01:14.
    cuts = [(0, 15, dt.datetime(2024, 1, 2, 22, 15)), (15, 60, dt.datetime(2024, 1, 2, 23, 15)),
            (60, 75, dt.datetime(2024, 1, 3)), (75, 120, dt.datetime(2024, 1, 3, 0, 15))]
    assert_frame_equal(got, _expected(source, cuts, "1h"))


def test_the_same_over_sealed_chunks(nse: PostgreSQLIntegration) -> None:
    rows = nse.get_market_data("NIFTY", resample="1h")
    assert nse.seal(dt.date(2030, 1, 1)).rows_moved == 750
    assert_frame_equal(nse.get_market_data("NIFTY", resample="1h"), rows)
    assert_frame_equal(rows, _hourly(_sessions(), "1h"))


def test_other_calendars_and_zone_aware_tables(pg: PostgreSQLIntegration) -> None:
    pg.initialize_database()
    pytest.importorskip("pandas_market_calendars")
    # Zone-aware IST bars are stored as UTC instants (03:45 UTC is 09:15 IST): the
    # buckets still start at the session open, 03:45 UTC.
    ist = zoneinfo.ZoneInfo("Asia/Kolkata")
    source = bars(["NIFTY"], ["1m"], DAY1, 375).with_columns(pl.col("timestamp").dt.replace_time_zone("Asia/Kolkata"))
    pg.save_market_data(source)
    got = pg.get_market_data("NIFTY", resample="1h")
    assert got["timestamp"][0] == DAY1.replace(tzinfo=ist).astimezone(dt.timezone.utc)  # read back zone-aware
    assert got.height == 7
    # New York opens at 09:30: the buckets of the same instants start at 03:30 UTC for XNYS.
    ny = pg.get_market_data("NIFTY", resample="1h", calendar="XNYS")
    assert ny["timestamp"].dt.strftime("%H:%M").to_list()[:2] == ["03:30", "04:30"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"resample": "1.5h"}, "not a bar size"),
    ({"resample": "24h30m"}, "more than a session"),
    ({"resample": "1h", "calendar": ""}, "calendar"),
])
def test_bad_sizes_and_calendars(nse: PostgreSQLIntegration, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        nse.get_market_data("NIFTY", **kwargs)  # type: ignore[arg-type]
