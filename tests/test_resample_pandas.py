"""pandas' period aliases in ``resample=``: ``W``, ``ME``, ``QE`` labelled and closed as pandas
does (the bucket's last day), ``MS``/``QS`` by the first day; ``M``/``Q`` refused with the
spelling that says which is meant."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, UsageError
from tests._reading_data import bars

pd = pytest.importorskip("pandas")


@pytest.fixture
def daily(pg: PostgreSQLIntegration) -> pl.DataFrame:
    """Bars every 6 hours over seven months, Sundays and month ends included."""
    frame = bars(["AAA"], ["1m"], dt.datetime(2024, 1, 1, 0, 0), 4 * 213, step=dt.timedelta(hours=6))
    pg.save_market_data(frame)
    return frame


def _pandas(frame: pl.DataFrame, rule: str) -> pl.DataFrame:
    pdf = frame.to_pandas().set_index("timestamp")
    agg = pdf.resample(rule).agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
    agg = agg.dropna(subset=["open"]).reset_index()
    return pl.from_pandas(agg).with_columns(pl.col("timestamp").cast(pl.Datetime("us")),
                                            pl.col("volume").cast(pl.Int64))


@pytest.mark.parametrize("rule", ["W", "W-SUN", "ME", "QE", "MS", "QS"])
def test_pandas_aliases_label_and_close_as_pandas(pg: PostgreSQLIntegration, daily: pl.DataFrame, rule: str) -> None:
    got = pg.get_market_data("AAA", "2024-01-01", "2024-12-31", resample=rule)
    want = _pandas(daily, rule)
    assert_frame_equal(got.select(want.columns), want)


def test_the_lower_case_spellings_keep_the_start_label(pg: PostgreSQLIntegration, daily: pl.DataFrame) -> None:
    weeks = pg.get_market_data("AAA", "2024-01-01", "2024-01-31", resample="1w")["timestamp"].to_list()
    assert weeks[0] == dt.datetime(2024, 1, 1) and all(t.weekday() == 0 for t in weeks)  # Mondays
    sundays = pg.get_market_data("AAA", "2024-01-01", "2024-01-31", resample="W")["timestamp"].to_list()
    assert sundays == [t + dt.timedelta(days=6) for t in weeks]
    months = pg.get_market_data("AAA", "2024-01-01", "2024-03-31", resample="1mo")["timestamp"].to_list()
    assert months == [dt.datetime(2024, m, 1) for m in (1, 2, 3)]


@pytest.mark.parametrize(("rule", "message"), [
    ("M", r"'M' is ambiguous .* use 'ME' .* or 'MS'/'1mo'"),
    ("Q", r"'Q' is ambiguous .* use 'QE' .* or 'QS'/'3mo'"),
    ("2W", r"'2W': pandas anchors multiples of 'W' .* use 'W' or '2w'"),
    ("3ME", r"use 'ME' or '3mo'"),
    ("W-MON", r"weeks end on Sunday \('W'\)"),
])
def test_ambiguous_aliases_are_refused_with_the_spelling_meant(pg: PostgreSQLIntegration, rule: str,
                                                               message: str) -> None:
    with pytest.raises(UsageError, match=message):
        pg.get_market_data("AAA", "2024-01-01", "2024-01-31", resample=rule)


def test_pandas_is_what_the_test_compares_with() -> None:
    """The reference itself: pandas labels a Sunday's rows with that Sunday, a month by its last day."""
    s = pd.Series([1, 2, 3], index=pd.to_datetime(["2024-01-07 10:00", "2024-01-08 00:00", "2024-01-31 23:59"]))
    assert [str(t.date()) for t in s.resample("W").sum().index] == ["2024-01-07", "2024-01-14", "2024-01-21",
                                                                    "2024-01-28", "2024-02-04"]
    assert [str(t.date()) for t in s.resample("ME").sum().index] == ["2024-01-31"]
