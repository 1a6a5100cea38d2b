"""Regime distribution and transitions (hand-computed series) and server-side resampling."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from _reading_data import bars, insert
from polars.testing import assert_frame_equal
from test_reading import expected

from regime_io import PostgreSQLIntegration, UsageError
from regime_io._read import decode

D1 = dt.datetime(2024, 3, 4, 9, 15)
D2 = dt.datetime(2024, 3, 5, 9, 15)
# (minutes after D1 or D2, regime): bull bull bear bull | overnight | bear bear flat
SERIES = [(D1, 0, "bull"), (D1, 1, "bull"), (D1, 3, "bear"), (D1, 4, "bull"),
          (D2, 0, "bear"), (D2, 1, "bear"), (D2, 2, "flat")]


@pytest.fixture
def series(pg: PostgreSQLIntegration, sql: Any) -> None:
    rows = [("NIFTY", day + dt.timedelta(minutes=m), regime) for day, m, regime in SERIES]
    # Another symbol interleaved in time, which must not leak into NIFTY's statistics.
    rows += [("BANKNIFTY", D1 + dt.timedelta(minutes=m, seconds=30), "flat") for m in range(6)]
    frame = pl.DataFrame(rows, schema={"symbol": pl.String, "timestamp": pl.Datetime("us"), "regime": pl.String},
                         orient="row").with_columns(confidence=pl.lit(50.0))
    insert(pg, sql, "market_regimes_1min", frame)


def distribution(rows: list[tuple[str, int, float, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"regime": pl.String, "count": pl.Int64, "share": pl.Float64,
                                      "seconds": pl.Float64, "time_share": pl.Float64}, orient="row")


def test_distribution_counts_and_time_weights(pg: PostgreSQLIntegration, series: None) -> None:
    got = pg.get_market_regime_distribution("NIFTY", "2024-03-04", "2024-03-05")
    # Gaps (min): 1, 2, 1, overnight, 1, 1 -> median 1 min. The overnight gap (> 10 min) is a
    # break and the last row has no successor: both weigh one median gap (60 s).
    # bull: 60 + 120 + 60 = 240 s; bear: 60 + 60 + 60 = 180 s; flat: 60 s; total 480 s.
    want = distribution([("bear", 3, 3 / 7, 180.0, 180 / 480), ("bull", 3, 3 / 7, 240.0, 240 / 480),
                         ("flat", 1, 1 / 7, 60.0, 60 / 480)])
    assert_frame_equal(got, want)


def test_distribution_with_max_gap_counts_the_overnight_gap(pg: PostgreSQLIntegration, series: None) -> None:
    got = pg.get_market_regime_distribution("NIFTY", D1, D2 + dt.timedelta(hours=1), max_gap="2d")
    overnight = (D2 - (D1 + dt.timedelta(minutes=4))).total_seconds()
    bull = 60 + 120 + overnight
    total = bull + 180 + 60
    want = distribution([("bear", 3, 3 / 7, 180.0, 180 / total), ("bull", 3, 3 / 7, bull, bull / total),
                         ("flat", 1, 1 / 7, 60.0, 60 / total)])
    assert_frame_equal(got, want)


def test_distribution_of_one_day_and_of_a_single_row(pg: PostgreSQLIntegration, series: None) -> None:
    got = pg.get_market_regime_distribution("NIFTY", "2024-03-04", "2024-03-04", return_type="arrow")
    assert got.schema == decode.DISTRIBUTION_SCHEMA
    assert got.to_pylist() == [
        {"regime": "bull", "count": 3, "share": 0.75, "seconds": 240.0, "time_share": 0.8},
        {"regime": "bear", "count": 1, "share": 0.25, "seconds": 60.0, "time_share": 0.2}]
    single = pg.get_market_regime_distribution("NIFTY", D2 + dt.timedelta(minutes=2), "2024-03-05")
    assert single.to_dicts() == [{"regime": "flat", "count": 1, "share": 1.0, "seconds": 0.0, "time_share": 1.0}]
    empty = pg.get_market_regime_distribution("NOPE", "2024-03-04", "2024-03-05")
    assert empty.height == 0 and empty.schema == decode.empty_distribution().schema


def test_transitions_and_mean_run_length(pg: PostgreSQLIntegration, series: None) -> None:
    got = pg.get_regime_transitions("NIFTY", "2024-03-04", "2024-03-05")
    # bull bull bear bull bear bear flat: runs bull(2) bear(1) bull(1) bear(2) flat(1).
    want = pl.DataFrame([("bear", "bear", 1, 1 / 3, 1.5), ("bear", "bull", 1, 1 / 3, 1.5),
                         ("bear", "flat", 1, 1 / 3, 1.5), ("bull", "bear", 2, 2 / 3, 1.5),
                         ("bull", "bull", 1, 1 / 3, 1.5)],
                        schema={"from_regime": pl.String, "to_regime": pl.String, "count": pl.Int64,
                                "probability": pl.Float64, "mean_run_length": pl.Float64}, orient="row")
    assert_frame_equal(got, want)
    sums = got.group_by("from_regime").agg(pl.col("probability").sum())
    assert all(abs(v - 1) < 1e-12 for v in sums["probability"])
    assert pg.get_regime_transitions("NOPE", "2024-03-04", "2024-03-05").schema == decode.empty_transitions().schema


def test_regimes_table_series_are_per_timeframe(pg: PostgreSQLIntegration, sql: Any) -> None:
    rows = [("NIFTY", D1 + dt.timedelta(minutes=5 * i), "5m", r) for i, r in enumerate(["bull", "bear", "bear"])]
    rows += [("NIFTY", D1 + dt.timedelta(minutes=15 * i, seconds=1), "15m", r) for i, r in enumerate(["flat", "flat"])]
    frame = pl.DataFrame(rows, schema={"symbol": pl.String, "timestamp": pl.Datetime("us"),
                                       "timeframe": pl.String, "regime": pl.String},
                         orient="row").with_columns(confidence=pl.lit(60.0))
    insert(pg, sql, "market_regimes", frame)
    pooled = pg.get_regime_transitions("NIFTY", "2024-03-04", "2024-03-04", table="regimes")
    assert list(zip(pooled["from_regime"], pooled["to_regime"], pooled["count"], strict=True)) == [
        ("bear", "bear", 1), ("bull", "bear", 1), ("flat", "flat", 1)]
    five = pg.get_regime_transitions("NIFTY", "2024-03-04", "2024-03-04", table="regimes", timeframe="5m")
    assert five["to_regime"].to_list() == ["bear", "bear"]
    dist = pg.get_market_regime_distribution("NIFTY", "2024-03-04", "2024-03-04", table="regimes",
                                             timeframe="15m")
    assert dist.to_dicts() == [{"regime": "flat", "count": 2, "share": 1.0, "seconds": 1800.0, "time_share": 1.0}]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"table": "options"}, "not a regime table"),
    ({"timeframe": "5m"}, "no timeframe column"),
    ({"max_gap": "soon"}, "max_gap"),
])
def test_statistics_bad_arguments(pg: PostgreSQLIntegration, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        pg.get_market_regime_distribution("NIFTY", "2024-03-04", "2024-03-05", **kwargs)


# ---------------------------------------------------------------------------------------
# Resampling


def polars_resample(frame: pl.DataFrame, every: str) -> pl.DataFrame:
    """Buckets computed by hand: intraday sizes from each day's NSE session open (09:15),
    never before that day's midnight; a day is its date."""
    size = pl.duration(minutes={"5m": 5, "7m": 7, "1h": 60, "1d": 1440}[every])
    day = pl.col("timestamp").dt.truncate("1d")
    opened = day + pl.duration(hours=9, minutes=15)
    steps = (pl.col("timestamp") - opened).dt.total_microseconds().floordiv(size.dt.total_microseconds())
    bucket = day if every == "1d" else pl.max_horizontal(opened + size * steps, day)
    return (frame.sort("symbol", "timestamp").with_columns(bucket.alias("bucket"))
            .group_by("symbol", "bucket", maintain_order=True)
            .agg(pl.col("open").first(), pl.col("high").max(), pl.col("low").min(), pl.col("close").last(),
                 pl.col("volume").sum())
            .rename({"bucket": "timestamp"})
            .with_columns(timeframe=pl.lit(every)).sort("symbol", "timestamp"))


@pytest.mark.parametrize("every", ["5m", "7m", "1h", "1d"])
def test_resample_matches_session_buckets_computed_in_polars(pg: PostgreSQLIntegration, sql: Any, every: str) -> None:
    minute = bars(["NIFTY", "BANKNIFTY"], ["1m"], dt.datetime(2024, 3, 4, 9, 13), 400)
    minute = minute.filter(~pl.col("timestamp").dt.minute().is_between(20, 31))  # a hole in the data
    insert(pg, sql, "market_data", minute)
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-03-04", "2024-03-04", timeframe="1m", resample=every)
    want = expected(polars_resample(minute, every), "market_data")
    assert_frame_equal(got.sort("symbol", "timestamp"), want)
    exact = pg.get_market_data("NIFTY", "2024-03-04", "2024-03-04", resample=every, exact=True)
    assert_frame_equal(exact, expected(polars_resample(minute.filter(pl.col("symbol") == "NIFTY"), every),
                                       "market_data", exact=True))


def test_resample_respects_the_range_and_columns(pg: PostgreSQLIntegration, sql: Any) -> None:
    minute = bars(["NIFTY"], ["1m"], dt.datetime(2024, 3, 4, 9, 15), 60)
    insert(pg, sql, "market_data", minute)
    start, end = dt.datetime(2024, 3, 4, 9, 17), dt.datetime(2024, 3, 4, 9, 31)
    got = pg.get_market_data("NIFTY", start, end, resample=dt.timedelta(minutes=5), columns=["timestamp", "volume"])
    within = minute.filter(pl.col("timestamp").is_between(start, end))
    want = polars_resample(within, "5m").select("timestamp", "volume")
    assert_frame_equal(got, want)
    assert got["timestamp"][0] == dt.datetime(2024, 3, 4, 9, 15)  # labelled by bucket start
