"""``last=N`` on the range readers: the last N rows of each symbol at or before ``end_date``,
over both tiers, in the range read's schema and order, without reading the whole range."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, UnknownSymbolWarning, UsageError
from regime_io._tiers import sealed_format
from tests._reading_data import bars, options, regimes, regimes_1min

T0 = dt.datetime(2024, 1, 8, 9, 15)
DAY = dt.timedelta(days=1)


def reference(full: pl.DataFrame, n: int, key: list[str]) -> pl.DataFrame:
    """The last ``n`` rows of each symbol of a range read (greatest time, ties by the rest
    of ``key``), in the range read's order."""
    return (full.with_row_index("_i").sort(["symbol", "timestamp", *key])
            .group_by("symbol", maintain_order=True).tail(n).sort("_i").drop("_i"))


@pytest.fixture
def three_months(pg: PostgreSQLIntegration) -> PostgreSQLIntegration:
    """AAA and BBB, 1m and 5m bars: 40 bars a day on 20 days of January, February and March."""
    for month in (1, 2, 3):
        for day in range(20):
            start = dt.datetime(2024, month, 1 + day, 9, 15)
            pg.save_market_data(bars(["AAA", "BBB"], ["1m", "5m"], start, 40, seed=month * 100 + day))
    return pg


@pytest.mark.parametrize("n", [1, 7, 40, 41, 2000, 10_000])
@pytest.mark.parametrize("timeframe", [None, "1m"])
def test_last_n_bars_are_the_tail_of_the_range_read(three_months: PostgreSQLIntegration, n: int,
                                                    timeframe: str | None) -> None:
    pg = three_months
    full = pg.get_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-10 10:00", timeframe=timeframe)
    got = pg.get_market_data(["BBB", "AAA"], end_date="2024-03-10 10:00", timeframe=timeframe, last=n)
    assert_frame_equal(got, reference(full, n, ["timeframe"]))


def test_last_n_reads_both_tiers_and_decodes_only_the_newest_months(three_months: PostgreSQLIntegration,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pg = three_months
    full = pg.get_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31")
    want = {n: reference(full, n, ["timeframe"]) for n in (5, 900, 1700, 5000)}
    want_feb = reference(pg.get_market_data(["AAA", "BBB"], "2024-01-01", "2024-02-10"), 50, ["timeframe"])
    assert pg.seal("2024-03-01", tables="bars").rows_moved == 2 * 2 * 2 * 20 * 40  # January and February
    decoded: list[int] = []
    real = sealed_format.decode

    def counting(*args: Any, **kwargs: Any) -> Any:
        decoded.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(sealed_format, "decode", counting)
    # March (rows) holds the last 5 and 900 of each symbol: no chunk is decoded.
    assert_frame_equal(pg.get_market_data(["AAA", "BBB"], end_date="2024-03-31", last=5), want[5])
    assert_frame_equal(pg.get_market_data(["AAA", "BBB"], end_date="2024-03-31", last=900), want[900])
    assert decoded == []
    # 1700 rows of a symbol reach into February: its chunks are decoded, January's are not.
    decoded.clear()
    assert_frame_equal(pg.get_market_data(["AAA", "BBB"], end_date="2024-03-31", last=1700), want[1700])
    assert len(decoded) == 2 * 2  # February's chunk of each (symbol, timeframe)
    assert_frame_equal(pg.get_market_data(["AAA", "BBB"], end_date="2024-03-31", last=5000), want[5000])
    # The end inside a sealed month: the newest sealed rows before it.
    decoded.clear()
    assert_frame_equal(pg.get_market_data(["AAA", "BBB"], end_date="2024-02-10", last=50), want_feb)
    assert len(decoded) == 2 * 2


def test_last_n_when_the_newest_sealed_month_holds_too_few_rows_of_the_window(pg: PostgreSQLIntegration) -> None:
    """A chunk's row count is only a bound: a timeframe filter (or the window's end) leaves
    fewer rows, and older months are then decoded too."""
    for month in (1, 2):
        pg.save_market_data(bars(["AAA"], ["1m"], dt.datetime(2024, month, 2, 9, 15), 10, seed=month))
        pg.save_market_data(bars(["AAA"], ["5m"], dt.datetime(2024, month, 3, 9, 15), 300, seed=month + 5))
    full = pg.get_market_data("AAA", "2024-01-01", "2024-02-28", timeframe="1m")
    pg.seal("2024-03-01", tables="bars")
    got = pg.get_market_data("AAA", end_date="2024-02-28", timeframe="1m", last=15)
    assert got.height == 15
    assert_frame_equal(got, reference(full, 15, ["timeframe"]))


def test_start_date_bounds_the_last_rows(three_months: PostgreSQLIntegration) -> None:
    pg = three_months
    pg.seal("2024-02-01", tables="bars")
    full = pg.get_market_data("AAA", "2024-01-20", "2024-02-02", timeframe="5m")
    got = pg.get_market_data("AAA", "2024-01-20", "2024-02-02", timeframe="5m", last=10_000)
    assert_frame_equal(got, full)
    assert_frame_equal(pg.get_market_data("AAA", "2024-01-20", "2024-02-02", timeframe="5m", last=3),
                       full.tail(3))


def test_the_other_range_readers(pg: PostgreSQLIntegration) -> None:
    pg.save_options_data(options("NIFTY", [dt.date(2024, 1, 25), dt.date(2024, 2, 29)], [21500.0, 21600.0],
                                 T0, 30))
    pg.save_market_regime(regimes(["AAA", "BBB"], ["5m", "15m"], T0, 50))
    pg.save_1min_market_regime(regimes_1min(["AAA", "BBB"], T0, 50))
    cases = [
        (pg.get_options_data, ("NIFTY",), ["expiry_date", "strike_price", "option_type"], 13),
        (pg.get_market_regimes, (["AAA", "BBB"],), ["timeframe"], 17),
        (pg.get_1min_market_regimes, (["AAA", "BBB"],), [], 9),
    ]
    for reader, args, key, n in cases:
        want = reference(reader(*args, "2024-01-01", "2024-01-31"), n, key)
        assert_frame_equal(reader(*args, end_date="2024-01-31", last=n), want)
    pg.seal("2024-02-01")
    for reader, args, key, n in cases:
        want = reference(reader(*args, "2024-01-01", "2024-01-31"), n, key)
        assert_frame_equal(reader(*args, end_date="2024-01-31", last=n), want)


def test_schema_columns_exact_and_return_types(three_months: PostgreSQLIntegration) -> None:
    pg = three_months
    pg.seal("2024-03-01", tables="bars")
    for kwargs in ({"exact": True}, {"columns": ["close", "volume"]}, {"columns": ["timestamp", "close"],
                                                                        "exact": True}):
        full = pg.get_market_data("AAA", "2024-02-19", "2024-03-31", timeframe="5m", **kwargs)  # type: ignore[arg-type]
        got = pg.get_market_data("AAA", end_date="2024-03-31", timeframe="5m", last=50, **kwargs)  # type: ignore[arg-type]
        assert got.schema == full.schema
        assert_frame_equal(got, full.tail(50))
    with pytest.warns(UnknownSymbolWarning):
        empty = pg.get_market_data("ZZZ", end_date="2024-03-31", last=5)
        assert empty.schema == pg.get_market_data("ZZZ", "2024-01-01", "2024-03-31").schema and empty.height == 0
    arrow = pg.get_market_data("AAA", end_date="2024-03-31", last=5, return_type="arrow")
    assert arrow.num_rows == 5 and arrow.schema == pg.get_market_data("AAA", "2024-03-01", "2024-03-31",
                                                                        return_type="arrow").schema


def test_last_n_as_of(pg: PostgreSQLIntegration, settings: Any) -> None:
    frame = regimes_1min(["AAA"], T0, 20)
    pg.save_1min_market_regime(frame, known_at=dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc))
    pg.save_1min_market_regime(frame.with_columns(pl.lit(1.0).alias("confidence")),
                               known_at=dt.datetime(2024, 7, 1, tzinfo=dt.timezone.utc))
    then = dt.datetime(2024, 6, 15, tzinfo=dt.timezone.utc)
    want = pg.get_1min_market_regimes("AAA", "2024-01-01", "2024-01-31", as_of=then).tail(4)
    got = pg.get_1min_market_regimes("AAA", end_date="2024-01-31", as_of=then, last=4)
    assert_frame_equal(got, want)
    assert got.get_column("confidence").to_list() != [1.0] * 4


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "5"])
def test_bad_last_is_a_usage_error(pg: PostgreSQLIntegration, bad: Any) -> None:
    with pytest.raises(UsageError, match=r"last: expected a positive integer .*got " + repr(bad).replace(".", r"\.")):
        pg.get_market_data("AAA", end_date="2024-01-31", last=bad)


def test_last_with_resample_is_refused(pg: PostgreSQLIntegration) -> None:
    with pytest.raises(UsageError, match="last=5 and resample='1h' cannot be combined"):
        pg.get_market_data("AAA", end_date="2024-01-31", last=5, resample="1h")


def test_the_row_read_stops_after_n_rows(three_months: PostgreSQLIntegration,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """One statement, each symbol read backwards with a LIMIT (not the whole range)."""
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    three_months.get_market_data(["AAA", "BBB"], last=3)
    sent = [r.getMessage() for r in caplog.records if r.name == "regime_io._conn.engines"
            and "market_data" in r.getMessage()]
    assert len(sent) == 1 and "DESC" in sent[0] and "LIMIT" in sent[0], sent


def test_tail_is_the_last_n_rows_and_follow_is_the_live_follower(three_months: PostgreSQLIntegration) -> None:
    pg = three_months
    want = pg.get_market_data(["AAA", "BBB"], end_date="2024-03-31", timeframe="5m", last=4)
    assert_frame_equal(pg.tail("bars", ["AAA", "BBB"], 4, timeframe="5m"), want)
    assert pg.tail("bars", "AAA").height == 5
    assert pg.tail("bars", "AAA", 2, return_type="arrow").num_rows == 2
    # The habit that used to follow forever returns at once now: a symbol is asked for.
    with pytest.raises(UsageError, match="pass symbol="):
        pg.tail("1min")
    with pytest.raises(UsageError, match=r"n: expected a positive integer .*got 0"):
        pg.tail("bars", "AAA", 0)
    with pytest.raises(UsageError, match="optimization_results has no time column"):
        pg.tail("results", "AAA")
    with pytest.raises(UsageError, match="market_regimes_1min has no timeframe column"):
        pg.tail("1min", "AAA", timeframe="1m")
    with pg.follow("bars", timeout=0.1, poll_interval=0.05) as batches:
        assert list(batches) == []
