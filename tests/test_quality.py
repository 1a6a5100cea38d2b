"""``quality_report`` on two NSE sessions with gaps and bad bars inserted by hand."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _reading_data import bars
from polars.testing import assert_frame_equal

from regime_io import DataQualityWarning, PostgreSQLIntegration, UsageError

pytest.importorskip("pandas_market_calendars")

DAY1, DAY2 = dt.datetime(2024, 1, 2, 9, 15), dt.datetime(2024, 1, 3, 9, 15)
MIN = dt.timedelta(minutes=1)


def _damaged() -> pl.DataFrame:
    clean = pl.concat([bars(["NIFTY"], ["1m"], DAY1, 375, seed=1), bars(["NIFTY"], ["1m"], DAY2, 375, seed=2),
                       bars(["BANKNIFTY"], ["1m"], DAY1, 375, seed=3)])
    ts = pl.col("timestamp")
    nifty1 = (pl.col("symbol") == "NIFTY") & (ts < DAY2)
    # Day 1 of NIFTY: a 10-minute gap from 10:00, 6 zero-volume bars from 11:00, 2 bars with
    # low > high at 12:00 and 12:01, 7 stale bars from 13:00, a 20% jump at 14:00.
    frame = clean.filter(~(nifty1 & ts.is_between(DAY1 + 45 * MIN, DAY1 + 54 * MIN)))
    frame = frame.with_columns(
        volume=pl.when(nifty1 & ts.is_between(DAY1 + 105 * MIN, DAY1 + 110 * MIN)).then(0).otherwise("volume"),
        low=pl.when(nifty1 & ts.is_between(DAY1 + 165 * MIN, DAY1 + 166 * MIN)).then(pl.col("high") + 1)
        .otherwise("low"),
    )
    stale = nifty1 & ts.is_between(DAY1 + 225 * MIN, DAY1 + 231 * MIN)
    frozen = frame.filter(nifty1 & (ts == DAY1 + 224 * MIN))["close"][0]
    frame = frame.with_columns(*(pl.when(stale).then(frozen).otherwise(c).alias(c)
                                 for c in ("open", "high", "low", "close")))
    jump = nifty1 & (ts >= DAY1 + 285 * MIN)
    frame = frame.with_columns(*(pl.when(jump).then((pl.col(c) * 1.2).round(2)).otherwise(c).alias(c)
                                 for c in ("open", "high", "low", "close")))
    # BANKNIFTY's first 3 minutes also stored as "5m" bars with the same values: duplicates.
    dupes = frame.filter((pl.col("symbol") == "BANKNIFTY") & (ts < DAY1 + 3 * MIN)).with_columns(timeframe=pl.lit("5m"))
    return pl.concat([frame, dupes])


def test_gaps_and_bad_bars_are_reported(pg: PostgreSQLIntegration) -> None:
    pg.initialize_database()
    with pytest.warns(DataQualityWarning, match="low <= high"):  # the writers warn, and store them
        pg.save_market_data(_damaged())
    report = pg.quality_report("bars", start_date="2024-01-01", end_date="2024-01-03")
    # 2024-01-01 is a session too (NSE trades on New Year's Day): nothing stored then.
    assert report["session"].unique().sort().to_list() == [dt.date(2024, 1, d) for d in (1, 2, 3)]
    nifty = report.filter(pl.col("symbol") == "NIFTY").drop("symbol")
    want = pl.DataFrame({
        "session": [dt.date(2024, 1, 1), dt.date(2024, 1, 2), dt.date(2024, 1, 3)],
        "expected_minutes": [375, 375, 375], "present_minutes": [0, 365, 375], "missing_minutes": [375, 10, 0],
        "first_missing": [dt.datetime(2024, 1, 1, 9, 15), DAY1 + 45 * MIN, None],
        "ohlc_violations": [0, 2, 0], "zero_volume_runs": [0, 1, 0], "longest_zero_volume_run": [0, 6, 0],
        "stale_runs": [0, 1, 0], "jumps": [0, 1, 0], "duplicate_bars": [0, 0, 0],
    }, schema_overrides={"first_missing": pl.Datetime("us")})
    got = nifty.select(want.columns).with_columns(pl.col(c).fill_null(0) for c in ("longest_zero_volume_run",))
    # A random walk has a few quiet minutes of its own: only the inserted run is 5+ long.
    assert_frame_equal(got, want, check_dtypes=False)
    assert nifty["coverage"].to_list() == [0.0, 365 / 375, 1.0]
    banknifty = report.filter((pl.col("symbol") == "BANKNIFTY") & (pl.col("session") == dt.date(2024, 1, 2)))
    assert banknifty["duplicate_bars"].to_list() == [3] and banknifty["missing_minutes"].to_list() == [0]


def test_symbols_ranges_return_types_and_misuse(pg: PostgreSQLIntegration) -> None:
    pg.initialize_database()
    with pytest.warns(DataQualityWarning):
        pg.save_market_data(_damaged())
    one = pg.quality_report("bars", "NIFTY", "2024-01-02", "2024-01-02")
    assert one.height == 1 and one["missing_minutes"].to_list() == [10]
    default = pg.quality_report("market_data", ["NIFTY"])  # the catalogued span: 2 sessions
    assert default["session"].to_list() == [dt.date(2024, 1, 2), dt.date(2024, 1, 3)]
    assert pg.quality_report("bars", "NIFTY", "2024-01-02", "2024-01-02", return_type="pandas").shape[0] == 1
    assert pg.quality_report("bars", "NO_SUCH").height == 0
    with pytest.raises(UsageError, match="time column"):
        pg.quality_report("results")
    with pytest.raises(UsageError, match="calendar 'NOWHERE'"):
        pg.quality_report("bars", "NIFTY", "2024-01-02", "2024-01-02", calendar="NOWHERE")


def test_regime_tables_report_coverage_only(pg: PostgreSQLIntegration) -> None:
    from _reading_data import regimes_1min

    pg.initialize_database()
    pg.save_1min_market_regime(regimes_1min(["NIFTY"], DAY1, 300))
    report = pg.quality_report("1min", "NIFTY", "2024-01-02", "2024-01-02")
    assert report["missing_minutes"].to_list() == [75] and report["jumps"].to_list() == [None]


def test_cli_prints_the_report_and_writes_the_heatmap(pg: PostgreSQLIntegration, server: Any, settings: Any,
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from regime_io.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    pg.initialize_database()
    with pytest.warns(DataQualityWarning):
        pg.save_market_data(_damaged())
    png = tmp_path / "coverage.png"
    result = CliRunner().invoke(app, ["--dsn", server.url(), "--schema", settings.schema, "quality", "bars",
                                      "--symbol", "NIFTY", "--start", "2024-01-02", "--end", "2024-01-03",
                                      "--plot", str(png)])
    assert result.exit_code == 0, result.output
    print(result.output)
    assert "NIFTY" in result.output and "97.3%" in result.output and "coverage heatmap written" in result.output
    assert png.stat().st_size > 5_000
    bad = CliRunner().invoke(app, ["--dsn", server.url(), "--schema", settings.schema, "quality", "prices"])
    assert bad.exit_code != 0 and "unknown table 'prices'" in bad.output


def test_option_contracts_are_separate_series(pg: PostgreSQLIntegration) -> None:
    """Runs and returns never mix contracts: two contracts with different price levels are no jump."""
    from _reading_data import options

    pg.initialize_database()
    pg.save_options_data(options("NIFTY", [dt.date(2024, 1, 25)], [21500.0, 21600.0], DAY1, 375))
    report = pg.quality_report("options", "NIFTY", "2024-01-02", "2024-01-02")
    assert report["present_minutes"].to_list() == [375] and report["ohlc_violations"].to_list() == [0]
    assert report["jumps"].to_list() == [0] and report["duplicate_bars"].to_list() == [0]
