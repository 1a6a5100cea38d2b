"""Calendars that fit the data (issue 24 item 3): the calendar of resampling and quality
reports comes from configuration (a default and a per-symbol mapping), bars outside its
sessions warn or are refused, bars labelled by their end, sessions from each date's schedule."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Iterator

import polars as pl
import pytest

from regime_io import CalendarMismatchWarning, ConfigError, PostgreSQLIntegration, UsageError
from regime_io.config import Settings, load_settings, settings_replace

pytest.importorskip("pandas_market_calendars")

US_OPEN = dt.datetime(2023, 1, 3, 9, 30)  # a regular NYSE session, 09:30-16:00 New York (naive wall clock)


def _bars(symbol: str, start: dt.datetime, n: int, *, shift: int = 0) -> pl.DataFrame:
    times = [start + dt.timedelta(minutes=i + shift) for i in range(n)]
    return pl.DataFrame({"symbol": [symbol] * n, "timestamp": times, "open": [100.0] * n, "high": [101.0] * n,
                         "low": [99.0] * n, "close": [100.0] * n, "volume": [10] * n, "timeframe": ["1m"] * n})


def _pg(settings: Settings, **database: str) -> Iterator[PostgreSQLIntegration]:
    configured = load_settings(config={"database": database}, env={})
    pg = PostgreSQLIntegration(settings=settings_replace(settings, calendar=configured.calendar,
                                                         calendars=configured.calendars))
    pg.initialize_database()
    yield pg
    pg.close()


@pytest.fixture
def us(settings: Settings) -> Iterator[PostgreSQLIntegration]:
    """Bars of a full NYSE session of AAPL, with calendar = XNYS configured."""
    for pg in _pg(settings, calendar="XNYS"):
        pg.save_market_data(_bars("AAPL", US_OPEN, 390))
        yield pg


@pytest.fixture
def nse_default(pg: PostgreSQLIntegration) -> PostgreSQLIntegration:
    pg.save_market_data(_bars("AAPL", US_OPEN, 390))
    return pg


def test_settings_from_every_source_and_problems_all_listed() -> None:
    assert load_settings(env={}).calendar == "XNSE" and load_settings(env={}).calendars == {}
    ini = load_settings(config={"database": {"calendar": "xnys", "calendars": "aapl:XNYS, VOD:xlon"}}, env={})
    assert ini.calendar == "XNYS" and ini.calendars == {"AAPL": "XNYS", "VOD": "XLON"}
    env = load_settings(env={"REGIME_IO_CALENDAR": "XNYS", "REGIME_IO_CALENDARS": "AAPL:XNYS"})
    assert env.calendar == "XNYS" and env.calendars == {"AAPL": "XNYS"}
    assert load_settings(config={"database": {"calendars": {"msft": "XNYS"}}}, env={}).calendars == {"MSFT": "XNYS"}
    with pytest.raises(ConfigError) as err:
        load_settings(config={"database": {"calendar": "NOPE", "calendars": "AAPL, MSFT:FOO, X:XNYS x:XLON"}}, env={})
    assert len(err.value.problems) == 4
    text = str(err.value)
    assert "'NOPE'" in text and "SYMBOL:CALENDAR" in text and "'FOO'" in text and "two calendars" in text


def test_us_bars_with_xnys_configured_resample_at_0930(us: PostgreSQLIntegration) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalendarMismatchWarning)
        hourly = us.get_market_data("AAPL", "2023-01-03", "2023-01-03", resample="1h")
    assert hourly["timestamp"].dt.strftime("%H:%M").to_list() == [f"{h:02d}:30" for h in range(9, 16)]
    assert hourly["volume"].sum() == 3900


def test_us_bars_on_the_default_nse_calendar_warn(nse_default: PostgreSQLIntegration) -> None:
    with pytest.warns(CalendarMismatchWarning, match=r"'XNSE'.*calendar=") as caught:
        nse_default.get_market_data("AAPL", "2023-01-03", "2023-01-03", resample="1h")
    warning = caught[0].message
    assert isinstance(warning, CalendarMismatchWarning)
    # NSE's session ends 15:30: 15:30-15:59 New York are outside it.
    assert warning.calendar == "XNSE" and warning.outside == 30
    assert warning.example == dt.datetime(2023, 1, 3, 15, 30) and "2023-01-03 15:30" in str(warning)
    with pytest.warns(CalendarMismatchWarning, match=r"30 bar\(s\).*'XNSE'.*2023-01-03 15:30"):
        nse_default.quality_report("bars", "AAPL", "2023-01-03", "2023-01-03")


def test_strict_refuses(nse_default: PostgreSQLIntegration) -> None:
    with pytest.raises(UsageError, match=r"'XNSE'.*2023-01-03 15:30.*calendar="):
        nse_default.get_market_data("AAPL", "2023-01-03", "2023-01-03", resample="1h", strict=True)
    with pytest.raises(UsageError, match="'XNSE'"):
        nse_default.quality_report("bars", "AAPL", "2023-01-03", "2023-01-03", strict=True)


def test_explicit_calendar_overrides_configuration(nse_default: PostgreSQLIntegration) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalendarMismatchWarning)
        hourly = nse_default.get_market_data("AAPL", "2023-01-03", "2023-01-03", resample="1h", calendar="XNYS")
        report = nse_default.quality_report("bars", "AAPL", "2023-01-03", "2023-01-03", calendar="XNYS")
    assert hourly["timestamp"].dt.strftime("%H:%M").to_list()[0] == "09:30"
    assert report["coverage"].to_list() == [1.0]


def test_per_symbol_mapping_picks_the_calendar(settings: Settings) -> None:
    for pg in _pg(settings, calendars="AAPL:XNYS"):
        pg.save_market_data(pl.concat([_bars("AAPL", US_OPEN, 390),
                                       _bars("NIFTY", dt.datetime(2023, 1, 3, 9, 15), 375)]))
        with warnings.catch_warnings():
            warnings.simplefilter("error", CalendarMismatchWarning)
            hourly = pg.get_market_data(["AAPL", "NIFTY"], "2023-01-03", "2023-01-03", resample="1h")
            report = pg.quality_report("bars", ["AAPL", "NIFTY"], "2023-01-03", "2023-01-03")
        first = hourly.group_by("symbol").agg(pl.col("timestamp").min().dt.strftime("%H:%M")).sort("symbol")
        assert first.rows() == [("AAPL", "09:30"), ("NIFTY", "09:15")]
        assert hourly["symbol"].to_list() == sorted(hourly["symbol"].to_list())
        assert report.select("symbol", "expected_minutes", "coverage").rows() == [("AAPL", 390, 1.0),
                                                                                 ("NIFTY", 375, 1.0)]


def test_bars_labelled_by_their_end(settings: Settings) -> None:
    for pg in _pg(settings, calendar="XNYS"):
        pg.save_market_data(_bars("AAPL", US_OPEN, 390, shift=1))  # 09:31 ... 16:00
        with warnings.catch_warnings():
            warnings.simplefilter("error", CalendarMismatchWarning)
            report = pg.quality_report("bars", "AAPL", "2023-01-03", "2023-01-03", bar_label="end")
        assert report["coverage"].to_list() == [1.0] and report["first_missing"].to_list() == [None]
        with pytest.warns(CalendarMismatchWarning):  # 16:00 is outside when read as a start
            start = pg.quality_report("bars", "AAPL", "2023-01-03", "2023-01-03")
        assert start["first_missing"].to_list() == [US_OPEN]
        with pytest.raises(UsageError, match="bar_label"):
            pg.quality_report("bars", "AAPL", bar_label="middle")  # type: ignore[call-overload]


def test_an_early_close_has_its_shorter_session(settings: Settings) -> None:
    day = dt.datetime(2023, 11, 24, 9, 30)  # the day after Thanksgiving: NYSE closes at 13:00
    for pg in _pg(settings, calendar="XNYS"):
        pg.save_market_data(_bars("AAPL", day, 210))
        with warnings.catch_warnings():
            warnings.simplefilter("error", CalendarMismatchWarning)
            report = pg.quality_report("bars", "AAPL", "2023-11-24", "2023-11-24")
        assert report.select("expected_minutes", "coverage").rows() == [(210, 1.0)]
        assert report["session_close"].to_list() == [dt.datetime(2023, 11, 24, 13, 0)]
        pg.save_market_data(_bars("AAPL", day + dt.timedelta(minutes=210), 5))  # 13:00-13:04: after the close
        with pytest.warns(CalendarMismatchWarning, match=r"5 bar\(s\).*2023-11-24 13:00"):
            pg.get_market_data("AAPL", "2023-11-24", "2023-11-24", resample="1h")


def test_historical_hours_anchor_the_buckets(pg: PostgreSQLIntegration) -> None:
    # NSE opened at 09:55 until 2010: hourly buckets of 2009 start then, not at 09:15.
    pg.save_market_data(_bars("NIFTY", dt.datetime(2009, 6, 1, 9, 55), 335))
    with warnings.catch_warnings():
        warnings.simplefilter("error", CalendarMismatchWarning)
        hourly = pg.get_market_data("NIFTY", "2009-06-01", "2009-06-01", resample="1h")
    assert hourly["timestamp"].dt.strftime("%H:%M").to_list()[:2] == ["09:55", "10:55"]


