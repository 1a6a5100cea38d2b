"""The price scale (issue 24 item 1): the decimals of the price columns are a setting,
applied by initialize_database, recorded in the schema and used by every reader and
writer of that schema, whatever the reading client is configured with."""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from regime_io import ConfigError, DataQualityWarning, PostgreSQLIntegration, ReadError, SchemaError, WriteError
from regime_io.config import Settings, load_settings, settings_replace
from regime_io.server import diagnose
from regime_io.tables import TABLES, table_spec

T0 = dt.datetime(2024, 1, 2, 9, 15)
PRICE = 129.76819


def _bars(prices: list[float], *, start: dt.datetime = T0, symbol: str = "AAPL") -> pl.DataFrame:
    n = len(prices)
    return pl.DataFrame({"symbol": [symbol] * n, "timestamp": [start + dt.timedelta(minutes=i) for i in range(n)],
                         "open": prices, "high": prices, "low": prices, "close": prices, "volume": [10] * n,
                         "timeframe": ["1m"] * n})


@pytest.fixture
def scale6(settings: Settings) -> Iterator[PostgreSQLIntegration]:
    """A fresh schema initialised with price_scale 6."""
    integration = PostgreSQLIntegration(settings=settings_replace(settings, price_scale=6))
    integration.initialize_database()
    yield integration
    integration.close()


def _quiet_save(pg: PostgreSQLIntegration, frame: pl.DataFrame) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)  # no digit lost at this scale
        pg.save_market_data(frame)


# -- configuration -------------------------------------------------------------------------


def test_price_scale_from_every_source(tmp_path: Path) -> None:
    ini = tmp_path / "config.ini"
    ini.write_text("[DATABASE]\nprice_scale = 6\n")
    assert load_settings(ini, env={}).price_scale == 6
    assert load_settings(config={"database": {"price_scale": 4}}, env={}).price_scale == 4
    assert load_settings(env={"REGIME_IO_PRICE_SCALE": "8"}).price_scale == 8
    assert load_settings(ini, env={"REGIME_IO_PRICE_SCALE": "0"}).price_scale == 0  # the environment wins
    assert load_settings(env={}).price_scale == 2  # the seed's NUMERIC(10,2)


@pytest.mark.parametrize("value", ["9", "-1", "two", "2.5", True])
def test_a_bad_price_scale_is_refused_with_the_range(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"price_scale") as info:
        load_settings(config={"database": {"price_scale": value}}, env={})
    assert "NUMERIC(8 + price_scale, price_scale)" in str(info.value)
    if value in ("9", "-1"):
        assert "between 0 and 8" in str(info.value)


def test_a_bad_price_scale_in_the_environment_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"price_scale \(REGIME_IO_PRICE_SCALE\): must be between 0 and 8"):
        load_settings(env={"REGIME_IO_PRICE_SCALE": "12"})


def test_the_declaration_is_derived_once_per_scale() -> None:
    spec = table_spec("bars", price_scale=6)
    assert spec is table_spec("market_data", price_scale=6)
    assert [spec.column(c).pg_type for c in ("open", "high", "low", "close")] == ["NUMERIC(14,6)"] * 4
    assert spec.column("open").max_abs == TABLES["market_data"].column("open").max_abs == 10**8
    options = table_spec("options", price_scale=4)
    assert options.column("strike_price").pg_type == "NUMERIC(12,4)"
    assert options.column("delta").pg_type == "NUMERIC(10,4)"  # greeks keep their own scale
    assert table_spec("1min", price_scale=6) is TABLES["market_regimes_1min"]  # no prices there
    assert spec.arrow_schema().field("close").type == pa.decimal128(14, 6)


# -- a scale-6 schema ----------------------------------------------------------------------------


def test_columns_are_created_at_the_scale(scale6: PostgreSQLIntegration, sql: Any) -> None:
    schema = scale6.settings.schema
    rows = sql("SELECT table_name, column_name, numeric_precision, numeric_scale FROM information_schema.columns "
               "WHERE table_schema = %s AND column_name IN ('close', 'strike_price', 'delta', 'max_close', "
               "'max_strike_price', 'max_delta') ORDER BY 1, 2", (schema,))
    got = {(t, c): (p, s) for t, c, p, s in rows if "_p" not in t[len("mr_"):]}  # partitions aside
    assert got == {
        ("mr_market_data", "close"): (14, 6), ("mr_market_data_history", "close"): (14, 6),
        ("mr_market_data_chunks", "max_close"): (14, 6),
        ("mr_options_data", "close"): (14, 6), ("mr_options_data", "strike_price"): (14, 6),
        ("mr_options_data", "delta"): (10, 4), ("mr_options_data_history", "close"): (14, 6),
        ("mr_options_data_history", "strike_price"): (14, 6), ("mr_options_data_history", "delta"): (10, 4),
        ("mr_options_data_chunks", "max_close"): (14, 6), ("mr_options_data_chunks", "max_strike_price"): (14, 6),
        ("mr_options_data_chunks", "max_delta"): (10, 4),
    }
    assert sql(f'SELECT value FROM "{schema}".mr_metadata WHERE key = %s', ("price_scale",)) == [("6",)]


def test_doctor_shows_the_stored_scale_and_warns_of_another_configured(scale6: PostgreSQLIntegration) -> None:
    checks = {c.name: c for c in diagnose(scale6.settings).checks}
    assert (checks["price scale"].status, checks["price scale"].detail) == ("ok", "6 (NUMERIC(14,6))")
    other = {c.name: c for c in diagnose(settings_replace(scale6.settings, price_scale=2)).checks}["price scale"]
    assert other.status == "warn"
    assert other.detail.startswith("the schema stores prices at scale 6 (NUMERIC(14,6)) but price_scale is 2: "
                                   "reads use 6; initialize_database refuses 2")


def test_prices_keep_their_digits_in_the_row_tier(scale6: PostgreSQLIntegration) -> None:
    _quiet_save(scale6, _bars([PRICE, 0.000001, 99999999.999999]))
    got = scale6.get_market_data("AAPL", "2024-01-02", "2024-01-02")
    assert got.get_column("close").to_list() == [PRICE, 0.000001, 99999999.999999]
    exact = scale6.get_market_data("AAPL", "2024-01-02", "2024-01-02", exact=True)
    assert exact.schema["close"] == pl.Decimal(14, 6)
    assert exact.get_column("close").to_list() == [Decimal("129.768190"), Decimal("0.000001"),
                                                   Decimal("99999999.999999")]


def test_prices_keep_their_digits_after_sealing(scale6: PostgreSQLIntegration, sql: Any) -> None:
    _quiet_save(scale6, _bars([PRICE, 1.234567]))
    scale6.seal(dt.date(2024, 3, 1))
    table = scale6.db.table("market_data")
    assert sql(f"SELECT count(*) FROM {table}") == [(0,)]  # every row is in the sealed tier
    assert sql(f"SELECT max_close FROM {table[:-1]}_chunks\"") == [(Decimal("129.768190"),)]
    got = scale6.get_market_data("AAPL", "2024-01-02", "2024-01-02")
    assert got.get_column("close").to_list() == [PRICE, 1.234567]
    exact = scale6.get_market_data("AAPL", "2024-01-02", "2024-01-02", exact=True)
    assert exact.get_column("close").to_list() == [Decimal("129.768190"), Decimal("1.234567")]
    latest = scale6.get_latest("bars", "AAPL", exact=True)
    assert latest.get_column("close").to_list() == [Decimal("1.234567")]
    # A restatement merged into the sealed chunk keeps its digits too.
    _quiet_save(scale6, _bars([130.000001]))
    assert scale6.get_market_data("AAPL", "2024-01-02", "2024-01-02").get_column("close").to_list() == [
        130.000001, 1.234567]


def test_follow_delete_and_options_keep_the_digits(scale6: PostgreSQLIntegration) -> None:
    _quiet_save(scale6, _bars([PRICE, 1.234567, 2.345678]))
    batches = list(scale6.follow("bars", since="2024-01-02", timeout=0.3, exact=True, return_type="polars"))
    assert batches[0].frame.get_column("close").to_list() == [Decimal("129.768190"), Decimal("1.234567"),
                                                              Decimal("2.345678")]
    scale6.seal(dt.date(2024, 3, 1))
    assert scale6.delete_range("bars", "AAPL", "2024-01-02 09:16", "2024-01-02 09:16") == 1  # rewrites the chunk
    exact = scale6.get_market_data("AAPL", "2024-01-02", "2024-01-02", exact=True)
    assert exact.get_column("close").to_list() == [Decimal("129.768190"), Decimal("2.345678")]
    chain = pl.DataFrame({"symbol": ["AAPL"], "expiry_date": [dt.date(2024, 1, 19)], "strike_price": [127.5],
                          "option_type": ["PE"], "timestamp": [T0], "open": [0.012345], "high": [0.012345],
                          "low": [0.012345], "close": [0.012345], "volume": [5], "open_interest": [7]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)
        scale6.save_options_data(chain)
    got = scale6.get_option_chain("AAPL", T0, exact=True)
    assert got.select("strike_price", "close").rows() == [(Decimal("127.500000"), Decimal("0.012345"))]


@pytest.mark.parametrize("sealed", [False, True], ids=["rows", "sealed"])
def test_scan_and_sql_keep_the_digits(scale6: PostgreSQLIntegration, sealed: bool) -> None:
    _quiet_save(scale6, _bars([PRICE, 1.234567]))
    if sealed:
        scale6.seal(dt.date(2024, 3, 1))
    lazy = scale6.scan("bars").filter(pl.col("symbol") == "AAPL")
    assert lazy.collect().get_column("close").to_list() == [PRICE, 1.234567]
    exact = scale6.scan("bars", exact=True)
    assert exact.collect_schema()["close"] == pl.Decimal(14, 6)
    assert exact.collect().get_column("close").to_list() == [Decimal("129.768190"), Decimal("1.234567")]
    assert scale6.sql("SELECT close FROM bars ORDER BY timestamp").get_column("close").to_list() == [
        PRICE, 1.234567]
    assert scale6.sql("SELECT max(close) AS m FROM bars", exact=True).item() == Decimal("129.768190")


def test_option_strikes_and_prices_follow_the_scale(settings: Settings) -> None:
    with PostgreSQLIntegration(settings=settings_replace(settings, price_scale=4)) as pg:
        pg.initialize_database()
        strikes = [1.0825, 1.0850]  # EUR/USD options: one key each, not one rounded 1.08
        chain = pl.DataFrame({
            "symbol": ["EURUSD"] * 2, "expiry_date": [dt.date(2024, 1, 26)] * 2, "strike_price": strikes,
            "option_type": ["CE"] * 2, "timestamp": [T0] * 2, "open": [0.0012, 0.0008],
            "high": [0.0013, 0.0009], "low": [0.0011, 0.0007], "close": [0.0012, 0.0008],
            "volume": [5, 6], "open_interest": [7, 8]})
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataQualityWarning)
            pg.save_options_data(chain)
        got = pg.get_options_data("EURUSD", "2024-01-02", "2024-01-02", strikes=1.085)
        assert got.select("strike_price", "close").rows() == [(1.085, 0.0008)]


def test_lost_digits_follow_the_scale(scale6: PostgreSQLIntegration) -> None:
    # 129.76819 fits six decimals (no warning, tested above); a seventh does not.
    with pytest.warns(DataQualityWarning, match=r"1 value\(s\) of close have digits NUMERIC\(14,6\) cannot store "
                                                r"and are rounded \(first: row 1, close=129\.7681915 \u2192 "
                                                r"129\.768192\)"):
        scale6.save_market_data(_bars([PRICE, 129.7681915]).with_columns(
            pl.Series("open", [PRICE] * 2), pl.Series("high", [131.0] * 2), pl.Series("low", [128.0] * 2)))


def test_large_prices_at_a_wide_scale_are_not_noise(scale6: PostgreSQLIntegration) -> None:
    # 12,345,678.12 as a double is 12345678.1199999991...: past the 15 digits a double
    # holds, that is binary noise, not a digit the column drops.
    _quiet_save(scale6, _bars([12345678.12, 1234567.123456]))
    exact = scale6.get_market_data("AAPL", "2024-01-02", "2024-01-02", exact=True)
    assert exact.get_column("close").to_list() == [Decimal("12345678.120000"), Decimal("1234567.123456")]


# Above 2**26 a double's spacing is 1.5e-8: no float64 holds these prices' eighth decimal.
WIDE, WIDER = Decimal("99999999.12345601"), Decimal("99999999.12345604")


@pytest.mark.parametrize("sealed", [False, True], ids=["rows", "sealed"])
def test_exact_reads_of_any_length_keep_every_digit(settings: Settings, sealed: bool) -> None:
    # Two bars 20 days apart: the whole range is past SMALL_RANGE_ROWS minutes (streamed,
    # values inlined), an hour of it is a small read (bound parameters); every reader's
    # exact path must parse the stored text as a decimal, never through float64.
    assert [Decimal(float(p)).quantize(Decimal("1e-8")) == p for p in (WIDE, WIDER)] == [False, False]
    both = [WIDE, WIDER]
    frame = pl.DataFrame({
        "symbol": ["AAPL"] * 2, "timestamp": [T0, T0 + dt.timedelta(days=20)],
        **{c: pl.Series(both, dtype=pl.Decimal(16, 8)) for c in ("open", "high", "low", "close")},
        "volume": [10, 10], "timeframe": ["1m"] * 2})
    wide = settings_replace(settings, price_scale=8, history_tables=("market_data",))  # as_of reads too
    with PostgreSQLIntegration(settings=wide) as pg:
        pg.initialize_database()
        pg.save_market_data(frame)
        if sealed:
            pg.seal(dt.date(2024, 3, 1))
        now = dt.datetime.now(dt.timezone.utc)
        known = pg.get_market_data("AAPL", T0, T0 + dt.timedelta(days=20), exact=True, as_of=now)
        assert known.get_column("close").to_list() == both
        assert pg.scan("bars", exact=True, as_of=now).collect().get_column("close").to_list() == both
        whole = pg.get_market_data("AAPL", T0, T0 + dt.timedelta(days=20), exact=True)
        assert whole.get_column("close").to_list() == both
        hour = pg.get_market_data("AAPL", T0, T0 + dt.timedelta(hours=1), exact=True)
        assert hour.get_column("close").to_list() == [WIDE]
        assert pg.scan("bars", exact=True).collect().get_column("close").to_list() == both
        one = pg.scan("bars", exact=True).filter(pl.col("symbol") == "AAPL").collect()
        assert one.get_column("open").to_list() == both
        assert pg.get_latest("bars", "AAPL", exact=True).get_column("close").to_list() == [WIDER]
        assert pg.sql("SELECT close FROM bars ORDER BY timestamp", exact=True).get_column("close").to_list() == both
        floats = pg.get_market_data("AAPL", T0, T0 + dt.timedelta(days=20)).get_column("close").to_list()
        assert floats == [float(WIDE), float(WIDER)]  # the float read: the nearest doubles


@pytest.mark.parametrize("days", [0, 20], ids=["short", "long"])
def test_an_exact_read_of_a_nan_another_tool_stored_names_it(pg: PostgreSQLIntegration, sql: Any,
                                                            days: int) -> None:
    pg.save_market_data(_bars([100.25, 101.5]))
    table = pg.db.table("market_data")
    sql(f"UPDATE {table} SET close = 'NaN' WHERE timestamp = %s", (T0 + dt.timedelta(minutes=1),))
    end = T0 + dt.timedelta(days=days, hours=1)
    floats = pg.get_market_data("AAPL", T0, end).get_column("close").to_list()
    assert floats[0] == 100.25 and floats[1] != floats[1]  # NaN as a float
    with pytest.raises(ReadError, match=r"market_data: column close holds 'NaN' \(timestamp 2024-01-02 09:16:00\), "
                                        r"which no exact decimal holds .*read without exact=True") as info:
        pg.get_market_data("AAPL", T0, end, exact=True)
    assert (info.value.table, info.value.column, info.value.value) == ("market_data", "close", "NaN")
    with pytest.raises(ReadError, match="column close holds 'NaN'"):
        pg.get_latest("bars", "AAPL", exact=True)  # the newest row


def test_sealing_a_month_with_a_nan_another_tool_stored_names_the_row(pg: PostgreSQLIntegration, sql: Any) -> None:
    stored = "NaN"  # (a NUMERIC(p, s) column holds no infinity: only NaN gets in)
    pg.save_market_data(_bars([100.25, 101.5, 102.75]))
    table = pg.db.table("market_data")
    sql(f"UPDATE {table} SET high = %s WHERE timestamp >= %s", (stored, T0 + dt.timedelta(minutes=1)))
    with pytest.raises(WriteError, match=rf"market_data: cannot seal 2024-01: column high holds '{stored}' "
                                         r"\(symbol AAPL, timeframe 1m, timestamp 2024-01-02 09:16:00\), "
                                         r"which the sealed tier's exact decimals cannot hold .*"
                                         r"The rows this seal was moving stay in the row tier, unchanged") as info:
        pg.seal(dt.date(2024, 2, 1))
    assert (info.value.table, info.value.column, info.value.value) == ("market_data", "high", stored)
    assert sql(f"SELECT count(*) FROM {table}") == [(3,)]  # nothing moved
    assert sql(f"SELECT count(*) FROM {table[:-1]}_chunks\"") == [(0,)]
    sql(f"UPDATE {table} SET high = close")  # corrected: the seal goes through
    assert pg.seal(dt.date(2024, 2, 1)).rows_moved == 3
    assert pg.get_market_data("AAPL", T0, T0 + dt.timedelta(hours=1)).get_column("high").to_list() == [
        100.25, 101.5, 102.75]


def test_an_exact_read_of_a_column_widened_by_hand_says_so(pg: PostgreSQLIntegration, sql: Any) -> None:
    pg.save_market_data(_bars([100.25]))
    table = pg.db.table("market_data")
    sql(f"ALTER TABLE {table} ALTER COLUMN close TYPE NUMERIC(14,2)")
    sql(f"UPDATE {table} SET close = 123456789.5")  # past NUMERIC(10,2), the declared type
    assert pg.get_market_data("AAPL", T0, T0).get_column("close").to_list() == [123456789.5]
    with pytest.raises(ReadError, match=r"market_data: column close holds a value NUMERIC\(10,2\) cannot hold; "
                                        r"was the column altered by another tool\? read without exact=True"):
        pg.get_market_data("AAPL", T0, T0, exact=True)


@pytest.mark.parametrize(("altered", "value"), [("NUMERIC(14,2)", 123456789.5), ("NUMERIC(14,4)", 100.1234)],
                         ids=["wider", "more-decimals"])
def test_sealing_a_column_another_tool_altered_is_refused(pg: PostgreSQLIntegration, sql: Any, altered: str,
                                                          value: float) -> None:
    """A column altered by hand: the seal (and repair_sealed, which moves rows as a seal
    does) reads it as the declared NUMERIC(10,2), which would overflow on the wider value
    and round 100.1234 to 100.12 without a word."""
    feb = dt.datetime(2024, 2, 1, 9, 15)
    pg.save_market_data(pl.concat([_bars([100.25, 101.5]), _bars([102.0], start=feb)]))
    assert pg.seal(dt.date(2024, 2, 1)).rows_moved == 2  # January, before the ALTER
    table = pg.db.table("market_data")
    sql(f"ALTER TABLE {table} ALTER COLUMN close TYPE {altered}")
    sql(f"UPDATE {table} SET close = %s WHERE timestamp = %s", (value, feb))
    stored = re.escape(altered.lower())
    with pytest.raises(SchemaError, match=rf"market_data: column close of table 'mr_market_data' is {stored}, but "
                                          r"regime_io declares NUMERIC\(10,2\): sealing would round or refuse its "
                                          r"values .*nothing was moved") as info:
        pg.seal(dt.date(2024, 3, 1))
    assert (info.value.column, info.value.value) == ("close", altered.lower())
    # A row another tool wrote beside sealed January (before the guard existed): repair_sealed refuses too.
    sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
    sql(f"INSERT INTO {table} (symbol, timestamp, open, high, low, close, volume, timeframe) "
        "VALUES ('AAPL', '2024-01-03 09:15', 1, 1, 1, %s, 1, '1m')", (value,))
    sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    with pytest.raises(SchemaError, match="column close of table 'mr_market_data' is"):
        pg.repair_sealed()
    assert sql(f"SELECT count(*) FROM {table}") == [(2,)]  # nothing moved
    assert pg.get_market_data("AAPL", feb, feb).get_column("close").to_list() == [value]


def test_strict_refuses_digits_the_scale_cannot_store(scale6: PostgreSQLIntegration) -> None:
    from regime_io import ValidationError

    with pytest.raises(ValidationError, match=r"of open have digits NUMERIC\(14,6\) .*"
                                              r"open=1\.23456789 \u2192 1\.234568\); strict=True"):
        scale6.save_market_data(_bars([1.23456789]).with_columns(pl.lit(1.0).alias("low")), strict=True)


# -- the schema's scale wins over the client's ---------------------------------------------------


def test_a_client_with_the_default_scale_reads_a_scale6_schema_exactly(scale6: PostgreSQLIntegration) -> None:
    _quiet_save(scale6, _bars([PRICE], start=dt.datetime(2024, 1, 2, 9, 15)))
    _quiet_save(scale6, _bars([1.234567], start=dt.datetime(2024, 3, 4, 9, 15)))
    scale6.seal(dt.date(2024, 2, 1))  # January sealed, March in the row tier
    default = settings_replace(scale6.settings, price_scale=2)
    with PostgreSQLIntegration(settings=default) as pg:
        assert pg.db.price_scale == 6
        exact = pg.get_market_data("AAPL", "2024-01-01", "2024-03-31", exact=True)
        assert exact.schema["close"] == pl.Decimal(14, 6)
        assert exact.get_column("close").to_list() == [Decimal("129.768190"), Decimal("1.234567")]
        assert pg.get_market_data("AAPL", "2024-01-01", "2024-03-31").get_column("close").to_list() == [
            PRICE, 1.234567]
        assert pg.scan("bars", exact=True).collect().get_column("close").to_list() == [
            Decimal("129.768190"), Decimal("1.234567")]
        # Its writes keep six decimals as well: validation follows the schema, not the client.
        with warnings.catch_warnings():
            warnings.simplefilter("error", DataQualityWarning)
            pg.save_market_data(_bars([2.345678], start=dt.datetime(2024, 3, 5, 9, 15)))
        assert pg.get_latest("bars", "AAPL").get_column("close").to_list() == [2.345678]


def test_initialising_a_schema_with_another_scale_is_refused(pg: PostgreSQLIntegration, sql: Any) -> None:
    pg.save_market_data(_bars([100.25]))
    other = settings_replace(pg.settings, price_scale=4)
    with PostgreSQLIntegration(settings=other) as wider, pytest.raises(SchemaError) as info:
        wider.initialize_database()
    message = str(info.value)
    assert "price_scale is 4 (NUMERIC(12,4))" in message
    assert "stores prices with price_scale 2 (NUMERIC(10,2))" in message
    assert "set price_scale = 2" in message.lower() and "with initialize_database(widen_prices=True)" in message
    assert "initialize_database(widen_prices=True) in Python" in info.value.cli_message  # regime-io init does not widen
    schema = pg.settings.schema
    assert sql(f'SELECT value FROM "{schema}".mr_metadata WHERE key = %s', ("price_scale",)) == [("2",)]
    narrower = settings_replace(pg.settings, price_scale=1)
    with PostgreSQLIntegration(settings=narrower) as other, pytest.raises(SchemaError, match=r"a smaller scale"):
        other.initialize_database()


def test_a_schema_from_before_the_setting_counts_as_scale_2(pg: PostgreSQLIntegration, sql: Any) -> None:
    sql(f'DELETE FROM "{pg.settings.schema}".mr_metadata WHERE key = %s', ("price_scale",))
    wider = settings_replace(pg.settings, price_scale=4)
    with PostgreSQLIntegration(settings=wider) as other, pytest.raises(SchemaError, match=r"with price_scale 2"):
        other.initialize_database()
    assert pg.initialize_database()  # the default: recorded again from the columns


def test_widen_prices_migrates_rows_history_and_sealed_chunks(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(_bars([100.25, 101.5]))
    pg.save_market_data(_bars([102.75], start=dt.datetime(2024, 3, 4, 9, 15)))
    pg.seal(dt.date(2024, 2, 1))  # January sealed at scale 2
    with PostgreSQLIntegration(settings=settings_replace(pg.settings, price_scale=4)) as wider:
        wider.initialize_database(widen_prices=True)
        assert wider.db.price_scale == 4
        _quiet_save(wider, _bars([103.1234], start=dt.datetime(2024, 3, 4, 9, 16)))
        _quiet_save(wider, _bars([100.1234], start=dt.datetime(2024, 1, 2, 9, 17)))  # into the sealed month
        exact = wider.get_market_data("AAPL", "2024-01-01", "2024-03-31", exact=True)
        assert exact.schema["close"] == pl.Decimal(12, 4)
        assert exact.get_column("close").to_list() == [Decimal("100.2500"), Decimal("101.5000"),
                                                       Decimal("100.1234"), Decimal("102.7500"),
                                                       Decimal("103.1234")]
        assert wider.initialize_database() > 0  # now the schema's own scale


# -- on Citus ----------------------------------------------------------------------------------------


@pytest.mark.citus
def test_price_scale_on_citus_across_tiers_and_widening(citus_settings: Settings) -> None:
    """Distributed tables: created at the scale, widened in place (ALTER on distributed
    tables, their shards and the chunk tables), read exactly from both tiers."""
    with PostgreSQLIntegration(settings=citus_settings) as pg:
        pg.initialize_database()
        pg.save_market_data(_bars([100.25]))
        pg.seal(dt.date(2024, 2, 1))
    with PostgreSQLIntegration(settings=settings_replace(citus_settings, price_scale=6)) as wider:
        with pytest.raises(SchemaError, match=r"stores prices with price_scale 2"):
            wider.initialize_database()
        wider.initialize_database(widen_prices=True)
        _quiet_save(wider, _bars([PRICE], start=dt.datetime(2024, 3, 4, 9, 15)))
        _quiet_save(wider, _bars([1.234567], start=dt.datetime(2024, 1, 2, 9, 16)))  # into the sealed month
    with PostgreSQLIntegration(settings=citus_settings) as default:  # configured with 2: reads 6
        exact = default.get_market_data("AAPL", "2024-01-01", "2024-03-31", exact=True)
        assert exact.get_column("close").to_list() == [Decimal("100.250000"), Decimal("1.234567"),
                                                       Decimal("129.768190")]
        assert default.scan("bars").collect().get_column("close").to_list() == [100.25, 1.234567, PRICE]
