"""Latest rows and option chains: correctness (gaps, ties, single rows) and index-driven plans."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pytest
from _reading_data import bars, insert, options, regimes, regimes_1min
from polars.testing import assert_frame_equal
from test_reading import expected

from regime_io import PostgreSQLIntegration, UsageError
from regime_io._read import readers as reading
from regime_io._read.sqltext import latest_query
from regime_io.tables import TABLES

T0 = dt.datetime(2024, 1, 2, 9, 15)


def latest_of(frame: pl.DataFrame, keys: list[str]) -> pl.DataFrame:
    """The reference answer, computed in Polars: last row by timestamp per key."""
    return frame.sort("timestamp").group_by(keys, maintain_order=True).last().sort(keys).select(frame.columns)


@pytest.fixture
def regimes_with_gaps(pg: PostgreSQLIntegration, sql: Any) -> pl.DataFrame:
    a = regimes_1min(["AAA"], T0, 30).filter(pl.col("timestamp").dt.minute() % 7 != 0)  # gaps
    b = regimes_1min(["BBB"], T0 + dt.timedelta(days=40), 1, seed=5)  # a single row, another partition
    c = regimes_1min(["CCC"], T0 + dt.timedelta(minutes=10), 20, seed=6)  # ends when AAA ends (a tie)
    frame = pl.concat([a, b, c])
    assert a["timestamp"].max() == c["timestamp"].max()
    insert(pg, sql, "market_regimes_1min", frame)
    return frame


def test_latest_1min_regime_of_one_symbol(pg: PostgreSQLIntegration, regimes_with_gaps: pl.DataFrame) -> None:
    got = pg.get_latest_1min_market_regime("AAA")
    want = latest_of(regimes_with_gaps.filter(pl.col("symbol") == "AAA"), ["symbol"])
    assert_frame_equal(got, expected(want, "market_regimes_1min"))
    assert got.height == 1


def test_latest_for_a_symbol_list_and_for_every_symbol(pg: PostgreSQLIntegration,
                                                       regimes_with_gaps: pl.DataFrame) -> None:
    want = expected(latest_of(regimes_with_gaps, ["symbol"]), "market_regimes_1min")
    assert_frame_equal(pg.get_latest_1min_market_regime(), want)
    got = pg.get_latest_1min_market_regime(symbols=["CCC", "NOPE", "AAA", "CCC"])
    assert_frame_equal(got, want.filter(pl.col("symbol").is_in(["AAA", "CCC"])))
    assert got["timestamp"][0] == got["timestamp"][1]  # the tie
    assert pg.get_latest_1min_market_regime(symbols=[]).height == 0
    assert pg.get_latest_1min_market_regime("NOPE").schema == want.schema


def test_latest_as_arrow_and_exact(pg: PostgreSQLIntegration, regimes_with_gaps: pl.DataFrame) -> None:
    arrow = pg.get_latest("market_regimes_1min", return_type="arrow")
    assert arrow.schema == TABLES["market_regimes_1min"].read_schema()
    exact = reading.get_latest(pg.db, "1min_market_regimes", "BBB", exact=True)
    want = expected(regimes_with_gaps.filter(pl.col("symbol") == "BBB"), "market_regimes_1min", exact=True)
    assert_frame_equal(exact, want)


def test_latest_market_data_per_timeframe(pg: PostgreSQLIntegration, sql: Any) -> None:
    frame = pl.concat([
        bars(["NIFTY", "BANKNIFTY"], ["1m"], T0, 25),
        bars(["NIFTY"], ["5m"], T0 - dt.timedelta(days=35), 7, step=dt.timedelta(minutes=5)),
    ])
    insert(pg, sql, "market_data", frame)
    both = pg.get_latest("market_data")
    assert_frame_equal(both, expected(latest_of(frame, ["symbol", "timeframe"]), "market_data"))
    assert both.height == 3
    five = pg.get_latest("market_data", symbols=["NIFTY", "BANKNIFTY"], timeframe="5m")
    assert_frame_equal(five, expected(latest_of(frame.filter(pl.col("timeframe") == "5m"), ["symbol"]), "market_data"))
    one = pg.get_latest("market_data", "NIFTY")
    assert one["timeframe"].to_list() == ["1m", "5m"]


def test_latest_market_regimes(pg: PostgreSQLIntegration, sql: Any) -> None:
    frame = regimes(["NIFTY", "BANKNIFTY"], ["5m", "15m"], T0, 9)
    insert(pg, sql, "market_regimes", frame)
    got = pg.get_latest("market_regimes", timeframe="15m")
    assert_frame_equal(got, expected(latest_of(frame.filter(pl.col("timeframe") == "15m"), ["symbol"]),
                                     "market_regimes"))


@pytest.mark.parametrize(("args", "kwargs", "match"), [
    (("options_data",), {}, "does not read 'options_data'"),
    (("market_regimes_1min",), {"timeframe": "1m"}, "no timeframe column"),
    (("market_regimes_1min", "A"), {"symbols": ["B"]}, "not both"),
    (("nope",), {}, "unknown table 'nope'"),
])
def test_latest_bad_arguments(pg: PostgreSQLIntegration, args: tuple[Any, ...], kwargs: dict[str, Any],
                              match: str) -> None:
    with pytest.raises(UsageError, match=match):
        pg.get_latest(*args, **kwargs)


def _plan(sql: Any, db: Any, key: str, wanted: list[str] | None, timeframe: str | None = None) -> str:
    q, text = latest_query(db, TABLES[key], wanted, timeframe=timeframe, exact=False)  # type: ignore[index]
    return "\n".join(r[0] for r in sql("EXPLAIN " + q.inline(text)))


def test_many_symbol_latest_plans_never_scan_the_whole_table(pg: PostgreSQLIntegration, sql: Any) -> None:
    regime_table, market_table = pg.db.table("market_regimes_1min"), pg.db.table("market_data")
    first, last = dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1) + dt.timedelta(hours=4 * 509)
    for key in ("market_regimes_1min", "market_data"):
        pg.db.partitions.ensure(pg.db.pool, pg.settings, TABLES[key], first, last)  # type: ignore[index]
    # 200 symbols x ~505 rows, three monthly partitions, generated on the server.
    sql(f"""INSERT INTO {regime_table} (symbol, timestamp, regime, confidence)
            SELECT 'S' || lpad(s::text, 3, '0'), timestamp '2024-01-01' + g * interval '4 hours',
                   (ARRAY['bull', 'bear', 'flat'])[1 + (g + s) % 3], (g % 100)::numeric
            FROM generate_series(1, 200) s, generate_series(0, 509 - (s % 7)) g""")
    sql(f"""INSERT INTO {market_table} (symbol, timestamp, open, high, low, close, volume, timeframe)
            SELECT 'S' || lpad(s::text, 3, '0'), timestamp '2024-01-01' + g * interval '4 hours', 1, 2, 0.5, 1.5,
                   g, (ARRAY['1m', '5m'])[1 + s % 2]
            FROM generate_series(1, 200) s, generate_series(0, 509 - (s % 7)) g""")
    sql(f"ANALYZE {regime_table}")
    sql(f"ANALYZE {market_table}")
    assert sql(f"SELECT count(*) FROM {regime_table}")[0][0] >= 100_000
    pg.refresh_catalog()  # rows written by SQL, not by regime_io's writers
    some = [f"S{i:03d}" for i in range(1, 200, 3)]
    for key, wanted, tf in [("market_regimes_1min", None, None), ("market_regimes_1min", some, None),
                            ("market_data", None, None), ("market_data", some, None), ("market_data", None, "5m")]:
        plan = _plan(sql, pg.db, key, wanted, tf)
        # The catalog (a few hundred rows) may be scanned; the data only by primary-key probes
        # on the exact key, timestamp included.
        table = pg.settings.table_name(key)
        assert f"Seq Scan on {table}" not in plan, (key, wanted is None, tf, plan)
        assert "last_ts" in plan and "Index Scan using" in plan, plan
    # And the answers agree with a DISTINCT ON reference.
    reference = sql(f"SELECT DISTINCT ON (symbol) symbol, timestamp, regime FROM {regime_table} "
                    "ORDER BY symbol, timestamp DESC")
    got = pg.get_latest_1min_market_regime()
    assert list(zip(got["symbol"], got["timestamp"], got["regime"], strict=True)) == reference
    assert pg.get_latest("market_data").height == 200


@pytest.fixture
def chain(pg: PostgreSQLIntegration, sql: Any) -> pl.DataFrame:
    frame = pl.concat([
        options("NIFTY", [dt.date(2024, 1, 4), dt.date(2024, 1, 25)], [21500.0, 21600.0], T0, 10),
        # A contract first traded after the snapshot time: absent from the chain.
        options("NIFTY", [dt.date(2024, 2, 29)], [22000.0], T0 + dt.timedelta(minutes=30), 3, seed=8),
        # An expired contract: absent too.
        options("NIFTY", [dt.date(2023, 12, 28)], [21000.0], T0 - dt.timedelta(days=7), 3, seed=9),
        options("BANKNIFTY", [dt.date(2024, 1, 25)], [47000.0], T0, 10, seed=10),
    ])
    # Drop a few rows so contracts have different last-trade times.
    frame = frame.filter(~((pl.col("strike_price") == 21600.0) & (pl.col("option_type") == "PE")
                           & (pl.col("timestamp") > T0 + dt.timedelta(minutes=3))))
    insert(pg, sql, "options_data", frame)
    return frame


def expected_chain(frame: pl.DataFrame, symbol: str, at: dt.datetime, *, exact: bool = False) -> pl.DataFrame:
    keys = ["expiry_date", "strike_price", "option_type"]
    live = frame.filter((pl.col("symbol") == symbol) & (pl.col("timestamp") <= at)
                        & (pl.col("expiry_date") >= at.date()))
    return expected(latest_of(live, keys), "options_data", exact=exact)


@pytest.mark.parametrize("minutes", [0, 5, 9, 60])
def test_option_chain_picks_the_latest_row_at_or_before(pg: PostgreSQLIntegration, chain: pl.DataFrame,
                                                        minutes: int) -> None:
    at = T0 + dt.timedelta(minutes=minutes)
    got = pg.get_option_chain("NIFTY", at)
    want = expected_chain(chain, "NIFTY", at)
    assert_frame_equal(got, want)
    assert got.height == (8 if minutes < 30 else 10)  # CE and PE of the late 22000 strike
    assert (got["timestamp"] <= at).all()


def test_option_chain_by_expiry_and_by_day(pg: PostgreSQLIntegration, chain: pl.DataFrame) -> None:
    got = pg.get_option_chain("NIFTY", "2024-01-02", expiry="2024-01-25", exact=True)
    end_of_day = dt.datetime(2024, 1, 2, 23, 59, 59, 999999)
    want = expected_chain(chain.filter(pl.col("expiry_date") == dt.date(2024, 1, 25)), "NIFTY", end_of_day,
                          exact=True)
    assert_frame_equal(got, want)
    assert got.height == 4 and got.schema["strike_price"] == pl.Decimal(10, 2)
    assert pg.get_option_chain("NIFTY", T0 - dt.timedelta(days=30)).height == 0
    assert pg.get_option_chain("NOPE", T0).schema == reading.empty_frame("options_data").schema
