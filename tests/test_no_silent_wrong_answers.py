"""Each natural variant that once gave a silent wrong answer (issue 13) now gives the right
answer or a refusal that says how to ask: one test per case, on a real server."""

from __future__ import annotations

import datetime as dt
import warnings
import zoneinfo

import numpy as np
import pandas as pd
import polars as pl
import pytest

from regime_io import ConfigError, DataQualityWarning, PostgreSQLIntegration, UsageError, ValidationError

IST = zoneinfo.ZoneInfo("Asia/Kolkata")


def _bars(times: list[dt.datetime] | list[str], *, symbol: str = "NIFTY", timeframe: str = "1m") -> pl.DataFrame:
    n = len(times)
    return pl.DataFrame({"symbol": [symbol] * n, "timestamp": times, "open": [100.0 + i for i in range(n)],
                         "high": [101.0 + i for i in range(n)], "low": [99.0 + i for i in range(n)],
                         "close": [100.5 + i for i in range(n)], "volume": [10] * n, "timeframe": [timeframe] * n})


def _regimes(times: list[dt.datetime], regimes: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"symbol": ["NIFTY"] * len(times), "timestamp": times, "regime": regimes,
                         "confidence": [80.0] * len(times)})


def _options(option_types: list[str], *, gamma: float = 0.05) -> pl.DataFrame:
    n = len(option_types)
    return pl.DataFrame({
        "symbol": ["NIFTY"] * n, "expiry_date": [dt.date(2024, 1, 25)] * n,
        "strike_price": [21500.0 + 100 * i for i in range(n)], "option_type": option_types,
        "timestamp": [dt.datetime(2024, 1, 2, 9, 15)] * n, "open": [10.0] * n, "high": [11.0] * n,
        "low": [9.0] * n, "close": [10.5] * n, "volume": [1] * n, "open_interest": [5] * n,
        "implied_volatility": [0.15] * n, "delta": [0.5] * n, "gamma": [gamma] * n, "theta": [-3.0] * n,
        "vega": [12.0] * n,
    })


# -- dates -----------------------------------------------------------------------------------


def test_day_first_string_is_refused_and_nothing_is_overwritten(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_bars([dt.datetime(2024, 3, 4, 9, 15), dt.datetime(2024, 4, 3, 9, 15)]))
    before = pg.get_market_data("NIFTY")
    with pytest.raises(ValidationError, match=r"not ISO 8601.*date_format=") as info:
        pg.save_market_data(_bars(["04/03/2024 09:15"]))
    assert (info.value.column, info.value.row, info.value.value) == ("timestamp", 0, "04/03/2024 09:15")
    assert pg.get_market_data("NIFTY").equals(before)


def test_an_explicit_date_format_says_which_day(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_bars(["04/03/2024 09:15", "13/03/2024 09:15"]), date_format="%d/%m/%Y %H:%M")
    stored = pg.get_market_data("NIFTY").get_column("timestamp").to_list()
    assert stored == [dt.datetime(2024, 3, 4, 9, 15), dt.datetime(2024, 3, 13, 9, 15)]


def test_month_first_expiry_is_refused(pg: PostgreSQLIntegration) -> None:
    frame = _options(["CE"]).with_columns(pl.lit("01/02/2024").alias("expiry_date"))
    with pytest.raises(ValidationError, match=r"expiry_date.*not ISO 8601"):
        pg.save_options_data(frame)


def test_readers_refuse_ambiguous_bounds(pg: PostgreSQLIntegration) -> None:
    with pytest.raises(UsageError, match="ISO 8601"):
        pg.get_market_data("NIFTY", "04/03/2024", "2024-03-05")


def test_numpy_and_pandas_timestamps_are_bounds(pg: PostgreSQLIntegration) -> None:
    times = [dt.datetime(2024, 1, 2, 9, 15) + dt.timedelta(minutes=i) for i in range(5)]
    pg.save_market_data(_bars(times))
    by_numpy = pg.get_market_data("NIFTY", np.datetime64("2024-01-02T09:16"), np.datetime64("2024-01-02T09:18"))
    by_pandas = pg.get_market_data("NIFTY", pd.Timestamp("2024-01-02 09:16"), pd.Timestamp("2024-01-02 09:18"))
    assert by_numpy.height == 3
    assert by_numpy.equals(by_pandas)


# -- spellings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("asked", ["ce", "CALL", "c", "Ce"])
def test_option_type_filters_accept_what_writers_accept(pg: PostgreSQLIntegration, asked: str) -> None:
    pg.save_options_data(_options(["ce", "pe", "call"]))
    found = pg.get_options_data("NIFTY", "2024-01-02", "2024-01-02", option_type=asked)
    assert found.get_column("option_type").to_list() == ["CE", "CE"]


def test_option_type_stream_filter(pg: PostgreSQLIntegration) -> None:
    pg.save_options_data(_options(["ce", "pe", "put"]))
    rows = sum(f.height for f in pg.iter_options_data("NIFTY", option_type="pe"))
    assert rows == 2


def test_unknown_option_type_is_refused(pg: PostgreSQLIntegration) -> None:
    with pytest.raises(UsageError, match=r"option_type.*allowed"):
        pg.get_options_data("NIFTY", option_type="straddle")


@pytest.mark.parametrize(("written", "asked"), [("1min", "1m"), ("1m", "1min"), ("1T", "1min"), ("60min", "1H"),
                                                ("D", "1d")])
def test_timeframe_aliases_find_the_same_rows(pg: PostgreSQLIntegration, written: str, asked: str) -> None:
    pg.save_market_data(_bars([dt.datetime(2024, 1, 2, 9, 15)], timeframe=written))
    found = pg.get_market_data("NIFTY", "2024-01-02", "2024-01-02", timeframe=asked)
    assert found.height == 1
    assert found.get_column("timeframe")[0] == {"1m": "1m", "1min": "1m", "1T": "1m", "60min": "1h",
                                                 "D": "1d"}[written]
    assert pg.get_latest("bars", "NIFTY", timeframe=asked).height == 1


def test_unknown_timeframe_is_refused_on_write(pg: PostgreSQLIntegration) -> None:
    with pytest.raises(ValidationError, match=r"timeframe.*not an accepted value"):
        pg.save_market_data(_bars([dt.datetime(2024, 1, 2, 9, 15)], timeframe="minutely"))


# -- time zones --------------------------------------------------------------------------------


def test_aware_bars_against_naive_regimes_are_refused(pg: PostgreSQLIntegration) -> None:
    # The demo's convention: regimes as naive exchange-local times, storage zone UTC.
    times = [dt.datetime(2024, 1, 2, 9, 15), dt.datetime(2024, 1, 2, 9, 16)]
    pg.save_1min_market_regime(_regimes([dt.datetime(2024, 1, 1, 15, 29), *times], ["old", "a", "b"]))
    bars = _bars([t.replace(tzinfo=IST) for t in times])
    with pytest.raises(UsageError, match=r"zone-aware.*naive"):
        pg.asof_regimes(bars)
    # Said the agreed way (naive local times), the join attaches the same minute's regime.
    joined = pg.asof_regimes(_bars(times))
    assert joined.get_column("regime").to_list() == ["a", "b"]


def test_aware_rows_into_a_naive_table_are_refused(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_bars([dt.datetime(2024, 1, 2, 9, 15)]))
    with pytest.raises(UsageError, match="zone-aware"):
        pg.save_market_data(_bars([dt.datetime(2024, 1, 2, 9, 16, tzinfo=IST)]))
    assert pg.get_market_data("NIFTY").height == 1


def test_aware_bounds_against_a_naive_table_are_refused(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_bars([dt.datetime(2024, 1, 2, 9, 15)]))
    with pytest.raises(UsageError, match="zone-aware"):
        pg.get_market_data("NIFTY", dt.datetime(2024, 1, 2, tzinfo=IST), "2024-01-03")


def test_aware_tables_convert_every_input_the_same_way(pg: PostgreSQLIntegration) -> None:
    aware = [dt.datetime(2024, 1, 2, 9, 15, tzinfo=IST), dt.datetime(2024, 1, 2, 9, 16, tzinfo=IST)]
    pg.save_1min_market_regime(_regimes(aware, ["a", "b"]))
    stored = pg.get_1min_market_regimes("NIFTY").get_column("timestamp").to_list()
    utc = dt.timezone.utc  # written zone-aware, read back zone-aware (UTC), the same instants
    assert stored == [dt.datetime(2024, 1, 2, 3, 45, tzinfo=utc), dt.datetime(2024, 1, 2, 3, 46, tzinfo=utc)]
    joined = pg.asof_regimes(_bars(aware))
    assert joined.get_column("regime").to_list() == ["a", "b"]
    bounded = pg.get_1min_market_regimes("NIFTY", dt.datetime(2024, 1, 2, 9, 16, tzinfo=IST))
    assert bounded.get_column("regime").to_list() == ["b"]


def test_a_different_storage_zone_is_refused(pg: PostgreSQLIntegration) -> None:
    from regime_io.config import settings_replace

    other = PostgreSQLIntegration(settings=settings_replace(pg.settings, storage_timezone="Asia/Kolkata"))
    try:
        with pytest.raises(ConfigError, match=r"storage_timezone is 'Asia/Kolkata' but schema '\w+' stores its "
                           r"times in 'UTC': naive times would be read in the wrong zone; set storage_timezone = UTC"):
            other.initialize_database()
    finally:
        other.close()


# -- rounding, results -------------------------------------------------------------------------


def test_greeks_rounded_away_warn_naming_column_row_and_value(pg: PostgreSQLIntegration) -> None:
    with pytest.warns(DataQualityWarning, match=r"gamma.*row 0.*0\.00071.*0\.0007") as record:
        pg.save_options_data(_options(["CE"], gamma=0.00071))
    assert len(record) == 1
    assert record[0].filename == __file__, "the warning points at the caller's line"
    with pytest.raises(ValidationError, match="gamma") as info:
        pg.save_options_data(_options(["PE"], gamma=0.00004), strict=True)
    assert (info.value.column, info.value.row) == ("gamma", 0)


def test_prices_warn_only_when_digits_are_lost(pg: PostgreSQLIntegration) -> None:
    # Issue 24: any dropped non-zero digit warns (tests/test_vendor_data.py); binary noise does not.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        pg.save_market_data(_bars([dt.datetime(2024, 1, 2, 9, 15)]).with_columns(pl.col("close") + 0.1 + 0.2))
    with pytest.warns(DataQualityWarning, match=r"close.*row 0"):
        pg.save_market_data(_bars([dt.datetime(2024, 1, 2, 9, 16)]).with_columns(pl.col("close") + 0.004))


def test_rolling_save_prints_what_it_trimmed(pg: PostgreSQLIntegration) -> None:
    start = dt.datetime(2024, 1, 2, 9, 15)
    pg.save_1min_market_regime(_regimes([start + dt.timedelta(minutes=i) for i in range(120)], ["a"] * 120))
    result = pg.save_rolling_market_regime(_regimes([start + dt.timedelta(minutes=119)], ["b"]), window_minutes=60)
    assert result.trimmed == 59
    assert "59 trimmed" in str(result)
    assert str(result).startswith("market_regimes_1min: 1 row -> ")


# -- one public layer --------------------------------------------------------------------------


def test_writer_typos_name_the_method(pg: PostgreSQLIntegration) -> None:
    with pytest.raises(TypeError, match="save_market_data"):
        pg.save_market_data(_bars([dt.datetime(2024, 1, 2, 9, 15)]), symbol="NIFTY")  # type: ignore[call-arg]


def test_range_readers_take_symbols_and_seed_bound_names(pg: PostgreSQLIntegration) -> None:
    t = dt.datetime(2024, 1, 2, 9, 15)
    pg.save_market_data(pl.concat([_bars([t]), _bars([t], symbol="BANKNIFTY")]))
    frame = pg.get_market_data(symbols=["NIFTY", "BANKNIFTY"], start_date="2024-01-02", end_date="2024-01-02")
    assert sorted(frame.get_column("symbol").to_list()) == ["BANKNIFTY", "NIFTY"]
    with pytest.raises(UsageError, match="not both"):
        pg.get_market_data("NIFTY", symbols=["NIFTY"])


def test_return_type_defaults_per_instance(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_bars([dt.datetime(2024, 1, 2, 9, 15)]))
    with PostgreSQLIntegration(settings=pg.settings, return_type="pandas") as pd_pg:
        assert isinstance(pd_pg.get_market_data("NIFTY"), pd.DataFrame)
        assert isinstance(pd_pg.get_market_data("NIFTY", return_type="arrow"), __import__("pyarrow").Table)
        assert isinstance(pd_pg.asof_regimes(_bars([dt.datetime(2024, 1, 2, 9, 15)])), pd.DataFrame)


def test_table_aliases_work_everywhere(pg: PostgreSQLIntegration) -> None:
    pg.save("bars", _bars([dt.datetime(2024, 1, 2, 9, 15)]))
    assert pg.get_latest("bars").height == 1
    assert pg.list_partitions("bars").height >= 1
    assert pg.cleanup_old_data(100_000, tables="bars", dry_run=True).rows_removed == 0
    with pytest.raises(UsageError, match="unknown table 'barz'"):
        pg.get_latest("barz")


def test_pandas_datetime_index_counts_as_the_timestamp_column(pg: PostgreSQLIntegration) -> None:
    frame = _bars([dt.datetime(2024, 1, 2, 9, 15), dt.datetime(2024, 1, 2, 9, 16)]).to_pandas()
    pg.save_market_data(frame.set_index("timestamp"))
    assert pg.get_market_data("NIFTY").height == 2
    multi = frame.set_index(["symbol", "timestamp"])
    joined = pg.asof_regimes(multi)
    assert joined.height == 2


def test_closed_instance_says_so(pg: PostgreSQLIntegration) -> None:
    from regime_io import PoolClosedError

    other = PostgreSQLIntegration(settings=pg.settings)
    other.get_latest("bars")
    other.close()
    with pytest.raises(PoolClosedError, match=r"\) was closed; create a new one$"):
        other.get_latest("bars")
