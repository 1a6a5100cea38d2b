"""Real vendor data gives the right answer or says why not (issue 24): symbol spelling,
one date rule, timeframes, time zones, precision. One behaviour per test, on a real server."""

from __future__ import annotations

import datetime as dt
import warnings
import zoneinfo
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

from regime_io import (
    ConfigError,
    PostgreSQLIntegration,
    UnknownSymbolWarning,
    UnknownTimeframeWarning,
    UsageError,
    ValidationError,
)
from regime_io.config import load_settings, settings_replace
from regime_io.tables import TABLES

T0 = dt.datetime(2023, 1, 3, 9, 30)


def _bars(symbol: str, times: list[dt.datetime], *, timeframe: str = "1m", price: float = 100.0) -> pl.DataFrame:
    n = len(times)
    return pl.DataFrame({"symbol": [symbol] * n, "timestamp": times, "open": [price] * n,
                         "high": [price + 1] * n, "low": [price - 1] * n, "close": [price] * n,
                         "volume": [10] * n, "timeframe": [timeframe] * n})


def _minutes(start: dt.datetime, n: int) -> list[dt.datetime]:
    return [start + dt.timedelta(minutes=i) for i in range(n)]


@pytest.fixture
def quiet() -> Any:
    """Fail on any regime_io warning the test did not ask for."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownSymbolWarning)
        warnings.simplefilter("error", UnknownTimeframeWarning)
        yield


# -- symbols -----------------------------------------------------------------------------------


def test_symbol_spellings_are_one_series(pg: PostgreSQLIntegration, quiet: Any) -> None:
    pg.save_market_data(_bars("aapl", [T0]))
    pg.save_market_data(_bars(" AAPL ", [T0 + dt.timedelta(minutes=1)]))
    pg.save_market_data(_bars("Aapl", [T0 + dt.timedelta(minutes=2)]))
    for asked in ("AAPL", "aapl", " AAPL", ["aapl"]):
        frame = pg.get_market_data(asked, "2023-01-03", "2023-01-03")
        assert frame.height == 3, asked
        assert frame.get_column("symbol").unique().to_list() == ["AAPL"]
    assert pg.catalog("bars").get_column("symbol").to_list() == ["AAPL"]
    assert pg.get_latest("bars", "aapl").get_column("timestamp").to_list() == [T0 + dt.timedelta(minutes=2)]
    assert pg.scan("bars").filter(pl.col("symbol") == "aapl").collect().height == 3
    assert pg.scan("bars").filter(pl.col("symbol").is_in([" aapl"])).collect().height == 3


def test_two_spellings_in_one_batch_are_one_key(pg: PostgreSQLIntegration) -> None:
    with pytest.raises(ValidationError, match="duplicate natural key"):
        pg.save_market_data(pl.concat([_bars("aapl", [T0]), _bars("AAPL", [T0])]))


def test_blank_symbol_is_refused(pg: PostgreSQLIntegration) -> None:
    with pytest.raises(ValidationError, match=r"symbol: is empty.*first bad row 0"):
        pg.save_market_data(_bars("   ", [T0]))
    with pytest.raises(UsageError, match="blank"):
        pg.get_market_data("  ")


def test_asof_regimes_matches_lower_case_bars(pg: PostgreSQLIntegration) -> None:
    regimes = pl.DataFrame({"symbol": ["NIFTY"] * 2, "timestamp": [T0, T0 + dt.timedelta(minutes=1)],
                            "regime": ["bull", "bear"], "confidence": [80.0, 70.0]})
    pg.save_1min_market_regime(regimes)
    bars = _bars("nifty", _minutes(T0, 3))
    joined = pg.asof_regimes(bars)
    assert joined.get_column("regime").to_list() == ["bull", "bear", "bear"]
    assert joined.get_column("symbol").to_list() == ["nifty"] * 3, "the bars keep their own spelling"
    by_name = pg.asof_regimes(bars.drop("symbol"), symbol=" nifty")
    assert by_name.get_column("regime").to_list() == ["bull", "bear", "bear"]


def test_symbol_case_keep_keeps_case(settings: Any) -> None:
    with PostgreSQLIntegration(settings=settings_replace(settings, symbol_case="keep")) as pg:
        pg.initialize_database()
        pg.save_market_data(_bars(" BRK.b ", [T0]))
        assert pg.get_market_data("BRK.b").get_column("symbol").to_list() == ["BRK.b"]
        with pytest.warns(UnknownSymbolWarning, match=r"'BRK\.B'.*closest stored: 'BRK\.b'"):
            assert pg.get_market_data("BRK.B").height == 0


def test_symbol_case_setting_from_every_source() -> None:
    assert load_settings(env={}).symbol_case == "upper"
    assert load_settings(config={"database": {"symbol_case": "Keep"}}, env={}).symbol_case == "keep"
    assert load_settings(env={"REGIME_IO_SYMBOL_CASE": "keep"}).symbol_case == "keep"
    with pytest.raises(ConfigError, match=r"symbol_case \(REGIME_IO_SYMBOL_CASE\): must be one of upper, keep, "
                                          r"got 'lower'"):
        load_settings(env={"REGIME_IO_SYMBOL_CASE": "lower"})


def test_misspelled_symbol_warns_with_the_closest(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(pl.concat([_bars("AAPL", [T0]), _bars("MSFT", [T0])]))
    with pytest.warns(UnknownSymbolWarning, match=r"market_data: no rows were ever stored for symbol 'AAPLL' "
                                                  r"\(closest stored: 'AAPL'\)") as record:
        assert pg.get_market_data("AAPLL", "2023-01-03", "2023-01-03").height == 0
    assert len(record) == 1
    assert record[0].filename == __file__, "the warning points at the caller's line"
    assert record[0].message.suggestions == {"AAPLL": ["AAPL"]}  # type: ignore[union-attr]
    with pytest.warns(UnknownSymbolWarning, match="'ZZZZ'"):
        pg.get_latest("bars", ["MSFT", "ZZZZ"])


def test_known_symbol_with_no_rows_in_range_does_not_warn(pg: PostgreSQLIntegration, quiet: Any) -> None:
    pg.save_market_data(_bars("AAPL", [T0]))
    assert pg.get_market_data("AAPL", "2024-01-01", "2024-01-02").height == 0


def test_rows_stored_in_another_case_are_named(pg: PostgreSQLIntegration, sql: Any) -> None:
    # Rows written by another tool (or before normalisation) in lower case.
    pg.save_market_data(_bars("MSFT", [T0]))
    pg.db.partitions.ensure(pg.db.pool, pg.settings, TABLES["market_data"], T0, T0)
    sql(f"INSERT INTO {pg.db.table('market_data')} (symbol, timestamp, open, high, low, close, volume, timeframe) "
        "VALUES ('aapl', %s, 1, 2, 0.5, 1.5, 10, '1m')", (T0,))
    pg.refresh_catalog("bars")
    with pytest.warns(UnknownSymbolWarning, match=r"'AAPL' \(closest stored: 'aapl'\).*differs only by case"):
        pg.get_market_data("aapl")


# -- one date rule -----------------------------------------------------------------------------


@pytest.fixture
def two_days(pg: PostgreSQLIntegration) -> PostgreSQLIntegration:
    pg.save_market_data(_bars("AAPL", [*_minutes(T0, 5), T0 + dt.timedelta(days=1)]))
    return pg


@pytest.mark.parametrize("day", ["2023-01-03", "20230103", " 20230103 ", dt.date(2023, 1, 3),
                                 np.datetime64("2023-01-03")], ids=repr)
def test_a_day_as_end_includes_the_day_in_any_form(two_days: PostgreSQLIntegration, day: Any) -> None:
    assert two_days.get_market_data("AAPL", day, day).height == 5
    assert two_days.get_market_data("AAPL", "2023-01-03", day).height == 5


def test_compact_times_mean_what_the_dashed_form_means(two_days: PostgreSQLIntegration) -> None:
    compact = two_days.get_market_data("AAPL", "20230103T0931", "20230103 093300")
    dashed = two_days.get_market_data("AAPL", "2023-01-03 09:31", "2023-01-03 09:33:00")
    assert compact.height == 3
    assert compact.equals(dashed)
    chain_at = two_days.get_market_data("AAPL", end_date="20230103T0930")
    assert chain_at.height == 1


@pytest.mark.parametrize("midnight", [pd.Timestamp("2023-01-03"), dt.datetime(2023, 1, 3),
                                      np.datetime64("2023-01-03T00:00"), "2023-01-03 00:00"], ids=repr)
def test_same_midnight_instant_at_both_ends_is_refused(two_days: PostgreSQLIntegration, midnight: Any) -> None:
    with pytest.raises(UsageError, match=r"start_date and end_date are both the instant 2023-01-03 00:00.*"
                                         r"pass the date \(end_date='2023-01-03' or datetime\.date\(2023, 1, 3\)\)"):
        two_days.get_market_data("AAPL", midnight, midnight)


def test_writers_read_compact_iso_like_readers(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_bars("AAPL", ["20230103 093100", "20230103T0932", "2023-01-03 09:33",  # type: ignore[list-item]
                                       "20230103T093400"]))
    stored = pg.get_market_data("AAPL").get_column("timestamp").to_list()
    assert stored == _minutes(dt.datetime(2023, 1, 3, 9, 31), 4)
    options = pl.DataFrame({
        "symbol": ["SPX"], "expiry_date": ["20240125"], "strike_price": [4800.0], "option_type": ["C"],
        "timestamp": ["20240102T1530"], "open": [10.0], "high": [11.0], "low": [9.0], "close": [10.5],
        "volume": [1], "open_interest": [5]})
    pg.save_options_data(options)
    row = pg.get_options_data("SPX", expiry="20240125").row(0, named=True)
    assert (row["expiry_date"], row["timestamp"]) == (dt.date(2024, 1, 25), dt.datetime(2024, 1, 2, 15, 30))


def test_cli_export_end_day_in_compact_form(two_days: PostgreSQLIntegration, server: Any, tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from regime_io.cli import app

    out = tmp_path / "day.csv"
    result = CliRunner().invoke(app, ["--dsn", server.url(), "--schema", two_days.settings.schema, "export",
                                      "-t", "bars", "-s", "aapl", "--start", "20230103", "--end", "20230103",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert pl.read_csv(out).height == 5


# -- timeframes --------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["1Min", "1MIN", "1 Minute", "1T"])
def test_timeframe_vocabulary_is_case_insensitive(pg: PostgreSQLIntegration, spelling: str) -> None:
    pg.save_market_data(_bars("AAPL", [T0], timeframe=spelling))
    assert pg.get_market_data("AAPL", timeframe=spelling.upper()).get_column("timeframe").to_list() == ["1m"]


def test_a_timeframe_not_stored_says_which_are_and_points_to_resample(pg: PostgreSQLIntegration, quiet: Any) -> None:
    pg.save_market_data(_bars("AAPL", _minutes(T0, 10)))
    with pytest.warns(UnknownTimeframeWarning, match=r"market_data: 'AAPL' has no '5m' rows; stored timeframe\(s\): "
                                                     r"'1m'; pass resample='5m' to aggregate") as record:
        assert pg.get_market_data("AAPL", "2023-01-03", "2023-01-03", timeframe="5min").height == 0
    assert record[0].filename == __file__
    assert record[0].message.stored == ["1m"]  # type: ignore[union-attr]
    five = pg.get_market_data("AAPL", "2023-01-03", "2023-01-03", resample="5m")  # the way to ask: no warning
    assert five.get_column("volume").to_list() == [50, 50]
    with pytest.warns(UnknownTimeframeWarning, match="no '1h' rows"):
        assert pg.get_latest("bars", "AAPL", timeframe="1H").height == 0


def test_a_timeframe_stored_with_no_rows_in_range_does_not_warn(pg: PostgreSQLIntegration, quiet: Any) -> None:
    pg.save_market_data(_bars("AAPL", [T0], timeframe="5m"))
    assert pg.get_market_data("AAPL", "2024-01-01", "2024-01-02", timeframe="5m").height == 0


# -- time zones --------------------------------------------------------------------------------


def _new_york_bars() -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.date_range("2023-01-03 09:31", periods=3, freq="1min", tz="America/New_York"),
                             name="timestamp")
    return pd.DataFrame({"symbol": "AAPL", "open": 125.0, "high": 126.0, "low": 124.0, "close": 125.5,
                         "volume": 100, "timeframe": "1m"}, index=index)


def test_zone_aware_input_reads_back_zone_aware(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_new_york_bars())
    bars = pg.get_market_data("AAPL", "2023-01-03", "2023-01-03")
    assert bars.schema["timestamp"] == pl.Datetime("us", "UTC")
    first = bars.get_column("timestamp")[0]
    assert first == dt.datetime(2023, 1, 3, 14, 31, tzinfo=dt.timezone.utc)  # the 09:31 New York bar, said as such
    as_pandas = pg.get_market_data("AAPL", return_type="pandas")
    assert as_pandas["timestamp"].iloc[0] == pd.Timestamp("2023-01-03 09:31", tz="America/New_York")
    assert pg.get_latest("bars", "AAPL").schema["timestamp"] == pl.Datetime("us", "UTC")
    batches = list(pg.iter_market_data("AAPL", return_type="arrow"))
    assert batches[0].schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    empty = pg.get_market_data("AAPL", "2024-01-01", "2024-01-01")
    assert empty.schema == bars.schema, "empty and non-empty results share one schema"


def test_zone_aware_bars_still_join_their_regimes(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_new_york_bars())
    stamps = pd.date_range("2023-01-03 09:31", periods=2, freq="1min", tz="America/New_York")
    pg.save_1min_market_regime(pd.DataFrame({"symbol": "AAPL", "timestamp": stamps, "regime": ["a", "b"],
                                             "confidence": 80.0}))
    joined = pg.asof_regimes(symbol="AAPL", start_date="2023-01-03", end_date="2023-01-03")
    assert joined.get_column("regime").to_list() == ["a", "b", "b"]


def test_naive_input_reads_back_naive(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_bars("AAPL", [T0]))
    assert pg.get_market_data("AAPL").schema["timestamp"] == pl.Datetime("us")


def test_tz_asks_for_the_zone_and_is_refused_on_naive_tables(pg: PostgreSQLIntegration) -> None:
    from regime_io._read.zones import check_tz, zoned

    pg.save_market_data(_new_york_bars())
    spec = TABLES["market_data"]
    table = pg.get_market_data("AAPL", return_type="arrow").cast(TABLES["market_data"].read_schema())
    local = pl.from_arrow(zoned(pg.db, spec, table, check_tz("America/New_York")))
    assert local.get_column("timestamp").dt.hour().to_list() == [9, 9, 9]  # type: ignore[union-attr]
    with pytest.raises(UsageError, match="not a time zone"):
        check_tz("New York")
    pg.save_1min_market_regime(pl.DataFrame({"symbol": ["AAPL"], "timestamp": [T0], "regime": ["a"],
                                             "confidence": [1.0]}))
    with pytest.raises(UsageError, match=r"tz='UTC': market_regimes_1min was written with naive timestamps"):
        zoned(pg.db, TABLES["market_regimes_1min"], table, "UTC")


def test_nanoseconds_that_would_be_cut_warn_or_are_refused(pg: PostgreSQLIntegration) -> None:
    from regime_io import DataQualityWarning

    frame = _bars("AAPL", [T0, T0 + dt.timedelta(minutes=1)]).with_columns(
        pl.Series("timestamp", ["2023-01-03 09:30:00.123456789", "2023-01-03 09:31:00"]).str.to_datetime(
            time_unit="ns"))
    with pytest.raises(ValidationError, match=r"timestamp have digits below a microsecond.*row 0.*"
                                              r"09:30:00\.123456789 is stored as 2023-01-03 09:30:00\.123456"):
        pg.save_market_data(frame, strict=True)
    with pytest.warns(DataQualityWarning, match=r"1 value\(s\) of timestamp have digits below a microsecond"):
        pg.save_market_data(frame)
    with pytest.warns(DataQualityWarning, match=r"09:30:00\.1234567 is stored as 2023-01-03 09:30:00\.123456"):
        pg.save_market_data(_bars("MSFT", ["2023-01-03 09:30:00.1234567"]))  # type: ignore[list-item]
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        pg.save_market_data(_bars("IBM", ["2023-01-03 09:30:00.123456000"]))  # type: ignore[list-item]  # zeros only


def test_zone_aware_tables_scan_zone_aware(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_new_york_bars())
    lf = pg.scan("bars")
    assert lf.collect_schema()["timestamp"] == pl.Datetime("us", "UTC")
    after = dt.datetime(2023, 1, 3, 9, 32, tzinfo=zoneinfo.ZoneInfo("America/New_York")).astimezone(dt.timezone.utc)
    got = lf.filter((pl.col("symbol") == "aapl") & (pl.col("timestamp") >= after)).collect()
    assert got.equals(pg.get_market_data("AAPL").filter(pl.col("timestamp") >= after))
    assert got.height == 2


# -- precision ---------------------------------------------------------------------------------


def test_prices_that_lose_digits_warn_once_per_column(pg: PostgreSQLIntegration) -> None:
    from regime_io import DataQualityWarning

    frame = _bars("AAPL", _minutes(T0, 3)).with_columns(
        pl.Series("close", [129.76819, 130.5, 130.123]), pl.Series("high", [131.00001, 131.0, 131.0]))
    with pytest.warns(DataQualityWarning) as record:
        pg.save_market_data(frame)
    assert len(record) == 1
    text = str(record[0].message)
    assert "2 value(s) of close have digits NUMERIC(10,2) cannot store and are rounded (first: row 0, " \
           "close=129.76819 \u2192 129.77)" in text
    assert "1 value(s) of high have digits" in text and "high=131.00001 \u2192 131.00" in text
    assert record[0].filename == __file__
    assert pg.get_market_data("AAPL").get_column("close").to_list() == [129.77, 130.5, 130.12]


def test_lost_digits_are_refused_with_strict(pg: PostgreSQLIntegration) -> None:
    frame = _bars("AAPL", _minutes(T0, 2)).with_columns(pl.Series("close", [100.5, 99.995]))
    with pytest.raises(ValidationError, match=r"close=99\.995 \u2192 100\.00\); strict=True rejects them") as info:
        pg.save_market_data(frame, strict=True)
    assert (info.value.table, info.value.column, info.value.row) == ("market_data", "close", 1)
    assert pg.catalog("bars").height == 0  # nothing written


def test_confidences_and_decimal_inputs_warn_too(pg: PostgreSQLIntegration) -> None:
    from decimal import Decimal

    from regime_io import DataQualityWarning

    regimes = pl.DataFrame({"symbol": ["AAPL"], "timestamp": [T0], "regime": ["bull"],
                            "confidence": pl.Series([Decimal("87.456")], dtype=pl.Decimal(10, 3))})
    with pytest.warns(DataQualityWarning, match=r"confidence=Decimal\('87\.456'\) \u2192 87\.46"):
        pg.save_1min_market_regime(regimes)


def test_values_that_fit_the_scale_do_not_warn(pg: PostgreSQLIntegration) -> None:
    from regime_io import DataQualityWarning

    prices = [0.1 + 0.2, 100.5, 21705.5, 0.0]  # binary noise below the scale is not a lost digit
    frame = _bars("AAPL", _minutes(T0, 4)).with_columns(
        *(pl.Series(name, prices) for name in ("open", "high", "low", "close")))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        pg.save_market_data(frame)
    assert pg.get_market_data("AAPL").get_column("close").to_list() == [0.3, 100.5, 21705.5, 0.0]


# -- vendor files and the command line ---------------------------------------------------------


def _vendor_file(tmp_path: Any, suffix: str, *, close: float = 125.5, rows: int = 3) -> Any:
    """A one-symbol vendor file: columns t,o,h,l,c,v, no symbol or timeframe column."""
    frame = pl.DataFrame({"t": [f"{t:%Y-%m-%d %H:%M:%S}" for t in _minutes(T0, rows)], "o": [125.0] * rows,
                          "h": [126.0] * rows, "l": [124.0] * rows, "c": [close] * rows, "v": [448825] * rows})
    path = tmp_path / f"AAPL_1min{suffix}"
    if suffix == ".parquet":
        frame.write_parquet(path)
    else:
        data = frame.write_csv().encode()
        with pa.CompressedOutputStream(str(path), "gzip" if suffix.endswith(".gz") else "zstd") as out:
            out.write(data)
    return path


def _cli(server: Any, schema: str, *args: str) -> Any:
    from typer.testing import CliRunner

    from regime_io.cli import app

    return CliRunner().invoke(app, ["--dsn", server.url(), "--schema", schema, *args])


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.zst", ".parquet"])
def test_cli_ingests_a_vendor_file_as_it_comes(pg: PostgreSQLIntegration, server: Any, tmp_path: Any,
                                               suffix: str) -> None:
    path = _vendor_file(tmp_path, suffix)
    result = _cli(server, pg.settings.schema, "ingest", str(path), "--table", "bars", "--symbol", "aapl",
                  "--timeframe", "1Min", "--rename", "t=timestamp,o=open,h=high,l=low,c=close,v=volume")
    assert result.exit_code == 0, result.output
    bars = pg.get_market_data("AAPL", "20230103", "20230103")
    assert bars.select("symbol", "timeframe", "volume").unique().rows() == [("AAPL", "1m", 448825)]
    assert bars.get_column("timestamp").to_list() == _minutes(T0, 3)


def test_read_file_says_what_does_not_fit(tmp_path: Any) -> None:
    from regime_io.files import read_file

    path = _vendor_file(tmp_path, ".parquet")
    with pytest.raises(UsageError, match=r"rename: .* has no column 'open'; its columns: t, o, h, l, c, v"):
        read_file(path, "bars", rename={"open": "o"})
    with pytest.raises(UsageError, match=r"rename: 'h' is not FILE_COLUMN=TABLE_COLUMN"):
        read_file(path, "bars", rename="o=open,h")
    with pytest.raises(UsageError, match=r"market_regimes_1min has no timeframe column; drop timeframe='1m'"):
        read_file(path, "1min", timeframe="1m")
    with pytest.raises(UsageError, match=r"already has a symbol column; drop symbol='AAPL'"):
        read_file(path, "bars", rename="t=symbol", symbol="AAPL")


def test_cli_prints_a_data_quality_warning_as_one_line(pg: PostgreSQLIntegration, server: Any,
                                                       tmp_path: Any) -> None:
    path = _vendor_file(tmp_path, ".csv.gz", close=125.50001)
    result = _cli(server, pg.settings.schema, "ingest", str(path), "-t", "bars", "-s", "AAPL", "--timeframe", "1m",
                  "--rename", "t=timestamp,o=open,h=high,l=low,c=close,v=volume")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["warning: market_data: accepted with data-quality warnings: 3 value(s) of close have digits "
                     "NUMERIC(10,2) cannot store and are rounded (first: row 0, close=125.50001 \u2192 125.50)"]


def test_cli_tail_piped_prints_plain_numbers(pg: PostgreSQLIntegration, server: Any) -> None:
    pg.save_market_data(_bars("AAPL", [T0], price=1250.5).with_columns(pl.lit(448825).alias("volume")))
    result = _cli(server, pg.settings.schema, "follow", "bars", "--since", "20230103", "--timeout", "0.3")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert dict(zip(header.split("\t"), row.split("\t"), strict=True)) == {
        "symbol": "AAPL", "timestamp": "2023-01-03 09:30:00", "open": "1250.5", "high": "1251.5", "low": "1249.5",
        "close": "1250.5", "volume": "448825", "timeframe": "1m"}


def test_cli_tail_into_a_closed_pipe_ends_quietly(pg: PostgreSQLIntegration, server: Any) -> None:
    import subprocess
    import sys

    pg.save_market_data(_bars("AAPL", _minutes(T0, 5000)))  # ~350 kB of lines: more than a pipe holds
    tail = subprocess.Popen([sys.executable, "-m", "regime_io", "--dsn", server.url(), "--schema",
                             pg.settings.schema, "follow", "bars", "--since", "2023-01-03", "--timeout", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert tail.stdout is not None and tail.stderr is not None
    assert tail.stdout.readline().startswith(b"symbol\t")
    tail.stdout.close()  # `| head -1`
    stderr = tail.stderr.read().decode()
    assert tail.wait(timeout=60) == 0, stderr
    assert "Broken pipe" not in stderr and "Traceback" not in stderr and "error" not in stderr


# -- an unreachable server ---------------------------------------------------------------------


def test_waiting_for_an_unreachable_server_says_so_at_the_first_attempt(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from regime_io import ServerUnavailableError

    settings = load_settings(config={"database": {"host": "127.0.0.1", "port": "1"},
                                     "connection": {"retry_attempts": "1", "retry_delay": "0.2"}}, env={})
    with caplog.at_level(logging.WARNING, logger="regime_io"), pytest.raises(ServerUnavailableError):
        PostgreSQLIntegration(settings=settings).get_latest("bars")
    first = next(r.getMessage() for r in caplog.records)
    # Logged before the retry's wait, saying where, what failed and what happens next.
    assert "(127.0.0.1:1 " in first and "failed (attempt 1/2)" in first and first.endswith("retrying in 0.2s")


def test_a_script_without_logging_set_up_sees_the_first_failed_attempt() -> None:
    """No logging configured (a plain script): the first failed attempt still reaches stderr,
    before the retries' wait, through logging's last-resort handler."""
    import subprocess
    import sys

    script = ("from regime_io import PostgreSQLIntegration, ServerUnavailableError\n"
              "pg = PostgreSQLIntegration(config={'database': {'host': '127.0.0.1', 'port': '1'},\n"
              "                                   'connection': {'retry_attempts': '1', 'retry_delay': '0.2'}})\n"
              "try:\n    pg.get_latest('bars')\nexcept ServerUnavailableError:\n    print('gave up')\n")
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("REGIME_IO_")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout.strip() == "gave up", done.stderr
    first = done.stderr.splitlines()[0]
    assert "(127.0.0.1:1 " in first and "failed (attempt 1/2)" in first and first.endswith("retrying in 0.2s")
