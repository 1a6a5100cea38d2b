"""Point-in-time join: each bar gets the latest regime at or before it, never a later one."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from _reading_data import bars, insert, regimes, regimes_1min
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regime_io import PostgreSQLIntegration, UsageError

T0 = dt.datetime(2024, 3, 4, 9, 0)


def brute_force(bar_times: list[dt.datetime], regime_times: list[dt.datetime],
                tolerance: dt.timedelta | None) -> list[dt.datetime | None]:
    """For each bar, the latest regime time <= the bar (within tolerance), by plain search."""
    out: list[dt.datetime | None] = []
    for t in bar_times:
        known = [r for r in regime_times if r <= t and (tolerance is None or t - r <= tolerance)]
        out.append(max(known) if known else None)
    return out


@pytest.fixture
def stored(pg: PostgreSQLIntegration, sql: Any) -> pl.DataFrame:
    frame = pl.concat([
        regimes_1min(["NIFTY"], T0 + dt.timedelta(minutes=15), 6, step=dt.timedelta(minutes=5)),
        regimes_1min(["NIFTY"], T0 - dt.timedelta(days=3), 1, seed=7),  # long before the first bar
        regimes_1min(["BANKNIFTY"], T0 + dt.timedelta(minutes=17), 4, step=dt.timedelta(minutes=7), seed=8),
    ])
    insert(pg, sql, "market_regimes_1min", frame)
    return frame


def test_asof_attaches_the_latest_known_regime(pg: PostgreSQLIntegration, stored: pl.DataFrame) -> None:
    times = [T0 + dt.timedelta(minutes=m) for m in range(10, 50, 3)]
    frame = pl.DataFrame({"symbol": ["NIFTY"] * len(times) + ["BANKNIFTY"] * len(times),
                          "timestamp": times + times, "close": [float(i) for i in range(2 * len(times))]})
    got = pg.asof_regimes(frame)
    assert got.columns[:3] == ["symbol", "timestamp", "close"]
    assert got.columns[3:5] == ["regime_timestamp", "regime"]
    for symbol in ("NIFTY", "BANKNIFTY"):
        mine = got.filter(pl.col("symbol") == symbol)
        regime_times = stored.filter(pl.col("symbol") == symbol)["timestamp"].to_list()
        assert mine["regime_timestamp"].to_list() == brute_force(times, regime_times, None)
    # The regime values are those of the attached row.
    joined = got.drop_nulls("regime_timestamp").join(
        stored.select("symbol", pl.col("timestamp").alias("regime_timestamp"), pl.col("regime").alias("want")),
        on=["symbol", "regime_timestamp"])
    assert joined.height == got["regime_timestamp"].count()
    assert (joined["regime"] == joined["want"]).all()
    # NIFTY bars before 09:15 see the row three days earlier: no tolerance means no limit.
    assert got["regime_timestamp"][0] == T0 - dt.timedelta(days=3)


def test_tolerance_drops_stale_regimes(pg: PostgreSQLIntegration, stored: pl.DataFrame) -> None:
    times = [T0 + dt.timedelta(minutes=m) for m in range(0, 60)]
    frame = pl.DataFrame({"timestamp": times})
    got = pg.asof_regimes(frame, symbol="NIFTY", tolerance="2m")
    assert got.columns[0] == "timestamp" and "symbol" not in got.columns
    regime_times = stored.filter(pl.col("symbol") == "NIFTY")["timestamp"].to_list()
    assert got["regime_timestamp"].to_list() == brute_force(times, regime_times, dt.timedelta(minutes=2))
    assert got["regime"][0] is None  # the 3-day-old row is too old now
    assert got["regime"].null_count() > 0 and got["regime"].null_count() < got.height


def test_bars_read_from_market_data(pg: PostgreSQLIntegration, sql: Any, stored: pl.DataFrame) -> None:
    insert(pg, sql, "market_data", bars(["NIFTY"], ["1m"], T0 + dt.timedelta(minutes=10), 30))
    got = pg.asof_regimes(symbol="NIFTY", start_date=T0, end_date=T0 + dt.timedelta(hours=1),
                          tolerance=dt.timedelta(minutes=4))
    assert got.height == 30 and got.columns[:8] == ["symbol", "timestamp", "open", "high", "low", "close", "volume",
                                                    "timeframe"]
    regime_times = stored.filter(pl.col("symbol") == "NIFTY")["timestamp"].to_list()
    assert got["regime_timestamp"].to_list() == brute_force(got["timestamp"].to_list(), regime_times,
                                                            dt.timedelta(minutes=4))


def test_pandas_bars_zoned_and_unsorted(pg: PostgreSQLIntegration, stored: pl.DataFrame) -> None:
    import pandas as pd

    utc = [T0 + dt.timedelta(minutes=m) for m in (40, 16, 29, 5)]
    bars_pd = pd.DataFrame({"symbol": ["NIFTY"] * 4,
                            "timestamp": pd.to_datetime(utc).tz_localize("UTC").tz_convert("Asia/Kolkata")})
    got = pg.asof_regimes(bars_pd)
    assert got["timestamp"].to_list() == utc  # input order kept, converted to storage time (UTC)
    regime_times = stored.filter(pl.col("symbol") == "NIFTY")["timestamp"].to_list()
    assert got["regime_timestamp"].to_list() == brute_force(utc, regime_times, None)


def test_empty_bars_and_unknown_symbols(pg: PostgreSQLIntegration, stored: pl.DataFrame) -> None:
    empty = pg.asof_regimes(pl.DataFrame({"symbol": [], "timestamp": []},
                                         schema={"symbol": pl.String, "timestamp": pl.Datetime("us")}))
    full = pg.asof_regimes(pl.DataFrame({"symbol": ["NOPE"], "timestamp": [T0]}))
    assert empty.height == 0 and full.height == 1
    assert empty.schema == full.schema
    assert full["regime"][0] is None


def test_regimes_table_needs_a_timeframe_when_it_holds_several(pg: PostgreSQLIntegration, sql: Any) -> None:
    insert(pg, sql, "market_regimes", regimes(["NIFTY"], ["5m", "15m"], T0, 6))
    frame = pl.DataFrame({"symbol": ["NIFTY"], "timestamp": [T0 + dt.timedelta(minutes=20)]})
    with pytest.raises(UsageError, match="pass timeframe"):
        pg.asof_regimes(frame, table="regimes")
    got = pg.asof_regimes(frame, table="regimes", timeframe="15m")
    assert got["regime_timestamp"].to_list() == [T0 + dt.timedelta(minutes=20)]
    assert "timeframe" not in got.columns and "atr_value" in got.columns


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"bars": None}, "needs symbol="),
    ({"bars": pl.DataFrame({"ts": [T0]}), "symbol": "NIFTY"}, "no 'timestamp' column"),
    ({"bars": pl.DataFrame({"timestamp": [T0]})}, "pass symbol"),
    ({"bars": pl.DataFrame({"symbol": ["A"], "timestamp": [T0]}), "symbol": "A"}, "drop symbol"),
    ({"bars": pl.DataFrame({"symbol": ["A"], "timestamp": ["x"]})}, "must be a datetime"),
    ({"bars": pl.DataFrame({"symbol": ["A"], "timestamp": [T0]}), "tolerance": "-5m"}, "tolerance"),
    ({"bars": [1, 2]}, "expected a polars/pandas frame"),
])
def test_asof_bad_arguments(pg: PostgreSQLIntegration, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        pg.asof_regimes(**kwargs)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(regime_minutes=st.sets(st.integers(0, 240), max_size=25),
       bar_seconds=st.lists(st.integers(-600, 16_000), min_size=1, max_size=40),
       tolerance_minutes=st.sampled_from([None, 1, 5, 30]))
def test_no_look_ahead_property(pg: PostgreSQLIntegration, sql: Any, regime_minutes: set[int],
                                bar_seconds: list[int], tolerance_minutes: int | None) -> None:
    sql(f"DELETE FROM {pg.db.table('market_regimes_1min')}")
    regime_times = sorted(T0 + dt.timedelta(minutes=m) for m in regime_minutes)
    if regime_times:
        insert(pg, sql, "market_regimes_1min",
               pl.DataFrame({"symbol": ["NIFTY"] * len(regime_times), "timestamp": regime_times,
                             "regime": [f"r{i}" for i in range(len(regime_times))],
                             "confidence": [1.0] * len(regime_times)}))
    bar_times = [T0 + dt.timedelta(seconds=s) for s in bar_seconds]  # unsorted, with duplicates
    tolerance = dt.timedelta(minutes=tolerance_minutes) if tolerance_minutes else None
    got = pg.asof_regimes(pl.DataFrame({"timestamp": bar_times}), symbol="NIFTY", tolerance=tolerance)
    attached = got["regime_timestamp"].to_list()
    assert got["timestamp"].to_list() == bar_times
    for bar, stamp in zip(bar_times, attached, strict=True):
        assert stamp is None or stamp <= bar  # never a regime from the future
    assert attached == brute_force(bar_times, regime_times, tolerance)
