"""Real vendor data gives the right answer or says why not (issue 24): symbol spelling,
one date rule, timeframes, time zones, precision. One behaviour per test, on a real server."""

from __future__ import annotations

import datetime as dt
import warnings
from typing import Any

import polars as pl
import pytest

from regime_io import (
    ConfigError,
    PostgreSQLIntegration,
    UnknownSymbolWarning,
    UnknownTimeframeWarning,
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
    from regime_io import ValidationError

    with pytest.raises(ValidationError, match="duplicate natural key"):
        pg.save_market_data(pl.concat([_bars("aapl", [T0]), _bars("AAPL", [T0])]))


def test_blank_symbol_is_refused(pg: PostgreSQLIntegration) -> None:
    from regime_io import UsageError, ValidationError

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
