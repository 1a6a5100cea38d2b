"""``index_col=`` on the range readers with ``return_type="pandas"``, as ``pandas.read_sql``:
``"timestamp"`` gives a ``DatetimeIndex``, ``["symbol", "timestamp"]`` a ``MultiIndex``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from regime_io import PostgreSQLIntegration, UsageError
from tests._reading_data import bars, options, regimes_1min

pd = pytest.importorskip("pandas")
T0 = dt.datetime(2024, 1, 2, 9, 15)


@pytest.fixture
def stored(pg: PostgreSQLIntegration) -> PostgreSQLIntegration:
    pg.save_market_data(bars(["AAA", "BBB"], ["1m"], T0, 30))
    return pg


def test_timestamp_becomes_a_datetime_index(stored: PostgreSQLIntegration) -> None:
    frame = stored.get_market_data("AAA", "2024-01-02", "2024-01-02", return_type="pandas", index_col="timestamp")
    assert isinstance(frame.index, pd.DatetimeIndex) and frame.index.name == "timestamp"
    assert "timestamp" not in frame.columns and len(frame) == 30
    plain = stored.get_market_data("AAA", "2024-01-02", "2024-01-02", return_type="pandas")
    pd.testing.assert_frame_equal(frame, plain.set_index("timestamp"))
    assert frame.resample("5min")["close"].last().index[0] == pd.Timestamp(T0)  # what backtests start from


def test_symbol_and_timestamp_become_a_multi_index(stored: PostgreSQLIntegration) -> None:
    frame = stored.get_market_data(["AAA", "BBB"], "2024-01-02", "2024-01-02", return_type="pandas",
                                   index_col=["symbol", "timestamp"])
    assert isinstance(frame.index, pd.MultiIndex) and list(frame.index.names) == ["symbol", "timestamp"]
    assert len(frame.loc["BBB"]) == 30 and isinstance(frame.loc["BBB"].index, pd.DatetimeIndex)


def test_the_other_readers_and_last_and_resample(pg: PostgreSQLIntegration) -> None:
    pg.save_market_data(bars(["AAA"], ["1m"], T0, 30))
    pg.save_options_data(options("AAA", [dt.date(2024, 1, 25)], [100.0], T0, 5))
    pg.save_1min_market_regime(regimes_1min(["AAA"], T0, 5))
    assert isinstance(pg.get_options_data("AAA", "2024-01-02", "2024-01-02", return_type="pandas",
                                          index_col=["timestamp", "option_type"]).index, pd.MultiIndex)
    assert isinstance(pg.get_1min_market_regimes("AAA", "2024-01-02", "2024-01-02", return_type="pandas",
                                                 index_col="timestamp").index, pd.DatetimeIndex)
    assert pg.get_market_regimes("AAA", "2024-01-02", "2024-01-02", return_type="pandas",
                                 index_col="timestamp").index.name == "timestamp"
    last = pg.get_market_data("AAA", end_date="2024-01-02", last=3, return_type="pandas", index_col="timestamp")
    assert list(last.index) == [pd.Timestamp(T0 + dt.timedelta(minutes=m)) for m in (27, 28, 29)]
    hourly = pg.get_market_data("AAA", "2024-01-02", "2024-01-02", resample="1h", return_type="pandas",
                                index_col="timestamp")
    assert isinstance(hourly.index, pd.DatetimeIndex) and len(hourly) == 1
    empty = pg.get_market_data("ZZZ", "2024-01-02", "2024-01-02", return_type="pandas", index_col="timestamp")
    assert isinstance(empty.index, pd.DatetimeIndex) and len(empty) == 0


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"index_col": "timestamp", "return_type": "polars"}, r"index_col='timestamp' applies to return_type='pandas'"),
    ({"index_col": "timestamp", "return_type": "arrow"}, r"applies to return_type='pandas'"),
    ({"index_col": "when", "return_type": "pandas"}, r"index_col: 'when' is not a column of the result; allowed: "),
    ({"index_col": "timestamp", "columns": ["close"], "return_type": "pandas"},
     r"'timestamp' is not a column of the result; allowed: close"),
    ({"index_col": ["timestamp", "timestamp"], "return_type": "pandas"}, r"names a column twice"),
    ({"index_col": 3, "return_type": "pandas"}, r"expected a column name or a list of them, got 3"),
])
def test_misuse_is_a_usage_error(stored: PostgreSQLIntegration, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        stored.get_market_data("AAA", "2024-01-02", "2024-01-02", **kwargs)
