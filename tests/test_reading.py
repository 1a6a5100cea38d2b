"""Range readers on a real server: values, dtypes, boundaries, filters, return types, errors.

Rows are inserted with psycopg (``_reading_data.insert``), independent of the writers;
expected frames are computed from the same source frames in Polars.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from _reading_data import REGIMES, bars, insert, options, regimes, regimes_1min
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, ReadError, UsageError
from regime_io._read import decode as _decode
from regime_io._read import readers as reading
from regime_io._read import streams
from regime_io._sql.query import Query, sql_value
from regime_io.config import settings_replace
from regime_io.tables import TABLES

T0 = dt.datetime(2024, 1, 2, 9, 15)


@pytest.fixture(autouse=True, params=["copy", "adbc"])
def range_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with range reads on each path: small ranges bind their values on the
    warm ADBC connection, larger ones inline them and stream through COPY
    (``reading.SMALL_RANGE_ROWS``); both must return the same frames."""
    monkeypatch.setattr(reading, "SMALL_RANGE_ROWS", 0 if request.param == "copy" else 10**12)
    return str(request.param)


def expected(frame: pl.DataFrame, key: str, *, exact: bool = False, columns: list[str] | None = None) -> pl.DataFrame:
    """The source rows as a reader must return them: reader dtypes, table column order."""
    spec = TABLES[key]  # type: ignore[index]
    names = columns or list(spec.column_names)
    out = []
    for name in names:
        col = spec.column(name)
        series = frame.get_column(name)
        if col.kind == "decimal" and exact:
            series = pl.Series(name, [None if v is None else Decimal(str(v)) for v in series.to_list()],
                               dtype=pl.Decimal(col.precision, col.scale))
        elif col.kind == "decimal":
            series = series.cast(pl.Float64)
        elif col.kind == "timestamp":
            series = series.cast(pl.Datetime("us"))
        out.append(series)
    return pl.DataFrame(out)


@pytest.fixture
def market(pg: PostgreSQLIntegration, sql: Any) -> pl.DataFrame:
    # Two symbols, two timeframes, spanning a month boundary (two partitions).
    frame = pl.concat([
        bars(["NIFTY", "BANKNIFTY"], ["1m"], dt.datetime(2024, 1, 31, 23, 50), 30),
        bars(["NIFTY"], ["5m"], dt.datetime(2024, 1, 31, 23, 0), 20, step=dt.timedelta(minutes=5), seed=9),
    ])
    insert(pg, sql, "market_data", frame)
    return frame


def test_market_data_single_symbol_range_is_inclusive(pg: PostgreSQLIntegration, market: pl.DataFrame) -> None:
    start, end = dt.datetime(2024, 1, 31, 23, 55), dt.datetime(2024, 2, 1, 0, 5)
    got = pg.get_market_data("NIFTY", start, end, timeframe="1m")
    want = expected(market.filter((pl.col("symbol") == "NIFTY") & (pl.col("timeframe") == "1m")
                                  & pl.col("timestamp").is_between(start, end, closed="both")), "market_data")
    assert got.height == 11  # both ends included
    assert_frame_equal(got, want)


def test_market_data_many_symbols_and_timeframes(pg: PostgreSQLIntegration, market: pl.DataFrame) -> None:
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-31", "2024-02-01")
    want = expected(market.sort("symbol", "timeframe", "timestamp"), "market_data")
    assert_frame_equal(got, want)
    assert set(got["timeframe"]) == {"1m", "5m"}


def test_date_end_includes_the_whole_day(pg: PostgreSQLIntegration, market: pl.DataFrame) -> None:
    got = pg.get_market_data("NIFTY", "2024-01-31", dt.date(2024, 1, 31), timeframe="1m")
    want = market.filter((pl.col("symbol") == "NIFTY") & (pl.col("timeframe") == "1m")
                         & (pl.col("timestamp").dt.date() == dt.date(2024, 1, 31)))
    assert got.height == want.height == 10
    assert got["timestamp"].max() == dt.datetime(2024, 1, 31, 23, 59)


def test_columns_subset_in_given_order(pg: PostgreSQLIntegration, market: pl.DataFrame) -> None:
    got = pg.get_market_data("BANKNIFTY", "2024-01-31", "2024-02-01", columns=["close", "timestamp", "symbol"])
    want = expected(market.filter(pl.col("symbol") == "BANKNIFTY").sort("timestamp"), "market_data",
                    columns=["close", "timestamp", "symbol"])
    assert_frame_equal(got, want)


def test_exact_decimals(pg: PostgreSQLIntegration, market: pl.DataFrame) -> None:
    got = pg.get_market_data("NIFTY", "2024-01-31", "2024-02-01", timeframe="5m", exact=True)
    want = expected(market.filter((pl.col("symbol") == "NIFTY") & (pl.col("timeframe") == "5m")),
                    "market_data", exact=True)
    assert got.schema["open"] == pl.Decimal(10, 2)
    assert_frame_equal(got, want)


def test_exact_decimal_edge_values_round_trip(pg: PostgreSQLIntegration, sql: Any) -> None:
    values = [0.0, 0.05, -0.05, 99999999.99, -99999999.99, 0.01]
    frame = pl.DataFrame({"symbol": ["X"] * 6, "timestamp": [T0 + dt.timedelta(minutes=i) for i in range(6)],
                          "open": values, "high": values, "low": values, "close": values,
                          "volume": [0, 1, 2, 3, 4, 2**62], "timeframe": ["1m"] * 6})
    insert(pg, sql, "market_data", frame)
    got = pg.get_market_data("X", T0, T0 + dt.timedelta(hours=1), exact=True)
    assert got["close"].to_list() == [Decimal(str(v)).quantize(Decimal("0.01")) for v in values]
    assert_frame_equal(pg.get_market_data("X", T0, T0 + dt.timedelta(hours=1)), expected(frame, "market_data"))


@pytest.mark.parametrize("key", ["market_data", "options_data", "market_regimes", "market_regimes_1min"])
@pytest.mark.parametrize("exact", [False, True])
def test_unknown_symbol_gives_empty_frame_with_full_schema(pg: PostgreSQLIntegration, market: pl.DataFrame,
                                                           key: str, exact: bool) -> None:
    readers = {
        "market_data": lambda **kw: pg.get_market_data("NOPE", "2024-01-01", "2024-03-01", **kw),
        "options_data": lambda **kw: pg.get_options_data("NOPE", "2024-01-01", "2024-03-01", **kw),
        "market_regimes": lambda **kw: pg.get_market_regimes("NOPE", "2024-01-01", "2024-03-01", **kw),
        "market_regimes_1min": lambda **kw: pg.get_1min_market_regimes("NOPE", "2024-01-01", "2024-03-01", **kw),
    }
    got = readers[key](exact=exact)
    assert got.height == 0
    assert got.schema == pl.from_arrow(TABLES[key].read_schema(exact=exact).empty_table()).schema  # type: ignore[union-attr]
    assert got.schema == reading.empty_frame(key, exact=exact).schema


def test_empty_and_non_empty_schemas_are_identical(pg: PostgreSQLIntegration, market: pl.DataFrame) -> None:
    full = pg.get_market_data("NIFTY", "2024-01-31", "2024-02-01")
    empty = pg.get_market_data("NIFTY", "2030-01-01", "2030-01-02")
    assert full.height > 0 and empty.height == 0
    assert full.schema == empty.schema
    assert list(full.schema.items()) == [
        ("symbol", pl.String), ("timestamp", pl.Datetime("us")), ("open", pl.Float64), ("high", pl.Float64),
        ("low", pl.Float64), ("close", pl.Float64), ("volume", pl.Int64), ("timeframe", pl.String)]


@pytest.mark.parametrize("rows", ["full", "empty"])
def test_pandas_and_arrow_outputs_match_polars(pg: PostgreSQLIntegration, market: pl.DataFrame, rows: str) -> None:
    end = "2024-02-01" if rows == "full" else "2024-01-01"
    start = "2024-01-31" if rows == "full" else "2023-12-31"
    polars_frame = pg.get_market_data(["NIFTY", "BANKNIFTY"], start, end)
    arrow = pg.get_market_data(["NIFTY", "BANKNIFTY"], start, end, return_type="arrow")
    pandas_frame = pg.get_market_data(["NIFTY", "BANKNIFTY"], start, end, return_type="pandas")
    assert isinstance(arrow, pa.Table)
    assert arrow.schema == TABLES["market_data"].read_schema()
    assert_frame_equal(pl.from_arrow(arrow), polars_frame)  # type: ignore[arg-type]
    assert list(pandas_frame.columns) == list(TABLES["market_data"].column_names)
    assert str(pandas_frame["timestamp"].dtype) == "datetime64[us]"
    assert str(pandas_frame["open"].dtype) == "float64" and str(pandas_frame["volume"].dtype) == "int64"
    assert_frame_equal(pl.from_pandas(pandas_frame), polars_frame)


def test_options_filters(pg: PostgreSQLIntegration, sql: Any) -> None:
    expiries = [dt.date(2024, 1, 25), dt.date(2024, 2, 29)]
    frame = options("NIFTY", expiries, [21500.0, 21550.5, 21600.0], T0, 5)
    insert(pg, sql, "options_data", frame)
    order = ["timestamp", "expiry_date", "strike_price", "option_type"]
    got = pg.get_options_data("NIFTY", T0, T0 + dt.timedelta(minutes=3))
    want = frame.filter(pl.col("timestamp") <= T0 + dt.timedelta(minutes=3)).sort(order)
    assert_frame_equal(got, expected(want, "options_data"))
    got = pg.get_options_data("NIFTY", T0, "2024-01-02", expiry="2024-01-25", strikes=[21550.5, 21600],
                              option_type="PE", exact=True)
    want = frame.filter((pl.col("expiry_date") == dt.date(2024, 1, 25)) & (pl.col("option_type") == "PE")
                        & pl.col("strike_price").is_in([21550.5, 21600.0])).sort(order)
    assert got.height == 10
    assert_frame_equal(got, expected(want, "options_data", exact=True))
    got = pg.get_options_data("NIFTY", T0, "2024-01-02", expiry=expiries, option_type=["CE", "PE"],
                              columns=["strike_price", "delta"])
    assert got.height == frame.height and got.columns == ["strike_price", "delta"]
    assert pg.get_options_data("NIFTY", T0, "2024-01-02", strikes=[]).height == 0


def test_market_regimes_by_timeframe(pg: PostgreSQLIntegration, sql: Any) -> None:
    frame = regimes(["NIFTY", "BANKNIFTY"], ["5m", "15m"], T0, 12)
    insert(pg, sql, "market_regimes", frame)
    got = pg.get_market_regimes("NIFTY", T0, T0 + dt.timedelta(minutes=30), timeframe="15m")
    want = frame.filter((pl.col("symbol") == "NIFTY") & (pl.col("timeframe") == "15m")
                        & (pl.col("timestamp") <= T0 + dt.timedelta(minutes=30)))
    assert got.height == 7
    assert_frame_equal(got, expected(want, "market_regimes"))
    both = pg.get_market_regimes("NIFTY", T0, "2024-01-02")
    assert_frame_equal(both, expected(frame.filter(pl.col("symbol") == "NIFTY").sort("timeframe", "timestamp"),
                                      "market_regimes"))


def test_1min_regimes_seed_reader(pg: PostgreSQLIntegration, sql: Any) -> None:
    frame = regimes_1min(["NIFTY", "BANKNIFTY"], T0, 50)
    insert(pg, sql, "market_regimes_1min", frame)
    got = pg.get_1min_market_regimes("BANKNIFTY", "2024-01-02 09:20", "2024-01-02T09:40:00")
    want = frame.filter((pl.col("symbol") == "BANKNIFTY")
                        & pl.col("timestamp").is_between(T0 + dt.timedelta(minutes=5), T0 + dt.timedelta(minutes=25)))
    assert_frame_equal(got, expected(want, "market_regimes_1min"))
    assert set(got["regime"]) <= set(REGIMES)


def test_optimization_results_best_first_with_decoded_parameters(pg: PostgreSQLIntegration, sql: Any) -> None:
    frame = pl.DataFrame({
        "symbol": ["NIFTY", "NIFTY", "NIFTY", "BANKNIFTY"],
        "algorithm": ["bayesian", "grid", "bayesian", "grid"],
        # JSON text: a polars struct column would drop the keys its first row lacks.
        "parameters": [json.dumps(p) for p in ({"window": 20, "k": 1.5}, {"window": 10, "mode": "fast"},
                                               {"window": 30, "k": 2.0}, {"window": 5})],
        "fitness_value": [0.5, 0.9, 0.7, 0.1],
        "start_date": [dt.datetime(2024, 1, 1)] * 4, "end_date": [dt.datetime(2024, 1, 31)] * 4,
        "timeframe": ["1m", "1m", "5m", "1m"], "run_id": ["a", "b", "c", "d"],
    })
    insert(pg, sql, "optimization_results", frame)
    got = pg.get_optimization_results("NIFTY")
    assert got["fitness_value"].to_list() == [0.9, 0.7, 0.5]
    fields = {f.name: f.dtype for f in got.schema["parameters"].fields}  # type: ignore[union-attr]
    assert fields == {"k": pl.Float64, "mode": pl.String, "window": pl.Int64}
    assert got["parameters"].struct.field("window").to_list() == [10, 30, 20]
    assert got["parameters"].struct.field("mode").to_list() == ["fast", None, None]
    top = pg.get_optimization_results("NIFTY", algorithm="bayesian", top=1)
    assert top["run_id"].to_list() == ["c"]
    assert pg.get_optimization_results(timeframe="1m")["run_id"].to_list() == ["b", "a", "d"]
    text = reading.get_optimization_results(pg.db, "BANKNIFTY", parameters="json")
    assert text.schema["parameters"] == pl.String and text["parameters"].to_list() == ['{"window": 5}']
    empty = pg.get_optimization_results("NOPE")
    assert empty.height == 0 and empty.schema == reading.empty_frame("optimization_results").schema
    as_pandas = pg.get_optimization_results("NIFTY", return_type="pandas")
    assert as_pandas["parameters"].iloc[0]["mode"] == "fast"


def test_symbols_with_quotes_and_backslashes_are_values_not_sql(pg: PostgreSQLIntegration, sql: Any) -> None:
    odd = ["O'NEIL", "BACK\\SLASH", "X' OR '1'='1", "$1"]  # upper case: stored as readers spell them
    frame = bars(odd, ["1m"], T0, 3)
    insert(pg, sql, "market_data", frame)
    for symbol in odd:
        got = pg.get_market_data(symbol, T0, "2024-01-02")
        assert got["symbol"].to_list() == [symbol] * 3
    assert pg.get_market_data("X' OR 'A'='A", T0, "2024-01-02").height == 0
    assert set(pg.get_market_data(odd, T0, "2024-01-02")["symbol"]) == set(odd)
    with pytest.raises(UsageError, match="NUL"):
        pg.get_market_data("A\x00B", T0, "2024-01-02")


def test_sql_value_renders_safe_literals() -> None:
    assert sql_value("a'b\\c") == "E'a''b\\\\c'"
    assert sql_value(dt.date(2024, 1, 2)) == "DATE '2024-01-02'"
    assert sql_value(Decimal("21550.50")) == "21550.50"
    assert sql_value(1e-7) == "0.0000001"
    with pytest.raises(UsageError, match=r"^value nan is not a finite number$"):
        sql_value(float("nan"))
    with pytest.raises(UsageError, match=r"^cannot use a object \(<object object at 0x[0-9a-f]+>\) as an SQL value$"):
        sql_value(object())
    q = Query()
    text = f"a = {q.param('$2')} AND b = {q.param('x')}"
    assert q.inline(text) == "a = E'$2' AND b = E'x'"


def test_literals_survive_standard_conforming_strings_off(sql: Any) -> None:
    # E'' literals mean the same under either setting; a plain '' literal would not.
    for setting in ("on", "off"):
        sql(f"SET standard_conforming_strings = {setting}")
        for value in ["a'b", "back\\slash\\", "\\'; SELECT 1; --"]:
            assert sql(f"SELECT {sql_value(value)}")[0][0] == value
    sql("SET standard_conforming_strings = on")


def test_zoned_datetimes_are_converted_to_storage_time(pg: PostgreSQLIntegration, market: pl.DataFrame) -> None:
    ist = dt.timezone(dt.timedelta(hours=5, minutes=30))
    start = dt.datetime(2024, 2, 1, 5, 30, tzinfo=ist)  # 00:00 UTC
    got = pg.get_market_data("NIFTY", start, "2024-02-01T00:05:00Z", timeframe="1m")
    assert got["timestamp"].to_list() == [dt.datetime(2024, 2, 1, 0, m) for m in range(6)]


@pytest.mark.parametrize(("start", "end", "match"), [
    ("2024-02-02", "2024-02-01", "after"),
    (dt.datetime(2024, 2, 1, 12), dt.datetime(2024, 2, 1, 11), "after"),
    (dt.date(2024, 2, 2), dt.date(2024, 2, 1), "after"),
    (20240101, "2024-02-01", "expected a datetime"),
    ("yesterday", "2024-02-01", "not an ISO"),
    ("2024-01-01", b"2024-02-01", "expected a datetime"),
])
def test_bad_ranges_raise_read_error(pg: PostgreSQLIntegration, start: Any, end: Any, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        pg.get_market_data("NIFTY", start, end)


def test_open_bounds_read_the_whole_side(pg: PostgreSQLIntegration, market: pl.DataFrame) -> None:
    everything = pg.get_market_data("NIFTY", timeframe="1m")
    assert everything.equals(pg.get_market_data("NIFTY", "1900-01-01", "2100-01-01", timeframe="1m"))
    assert everything.height > 0
    since = pg.get_market_data("NIFTY", "2024-02-01", None, timeframe="1m")
    assert since["timestamp"].min() >= dt.datetime(2024, 2, 1)


def test_same_instant_and_same_day_ranges_are_valid(pg: PostgreSQLIntegration, market: pl.DataFrame) -> None:
    t = dt.datetime(2024, 2, 1, 0, 3)
    assert pg.get_market_data("NIFTY", t, t, timeframe="1m")["timestamp"].to_list() == [t]
    assert pg.get_market_data("NIFTY", "2024-02-01", "2024-02-01", timeframe="1m").height == 20


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"columns": ["close", "nope"]}, "unknown column 'nope'"),
    ({"columns": ["close", "close"]}, "twice"),
    ({"columns": []}, "empty"),
    ({"return_type": "numpy"}, "return_type 'numpy'"),
    ({"timeframe": 5}, "timeframe"),
    ({"resample": "5x"}, "resample"),
    ({"resample": "25h"}, "resample"),
    ({"resample": "5ms"}, "resample"),
    ({"resample": "5m", "calendar": "NOWHERE"}, "calendar"),
])
def test_bad_options_raise_read_error(pg: PostgreSQLIntegration, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(UsageError, match=match):
        pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02", **kwargs)


@pytest.mark.parametrize("symbol", [None, 42, "", ["A", 3]])
def test_bad_symbols_raise_read_error(pg: PostgreSQLIntegration, symbol: Any) -> None:
    with pytest.raises(UsageError, match="symbol"):
        pg.get_market_data(symbol, "2024-01-01", "2024-01-02")


def test_missing_tables_give_a_read_error_with_a_hint(db: Any) -> None:
    with pytest.raises(ReadError, match="initialize_database"):
        reading.get_market_data(db, "NIFTY", "2024-01-01", "2024-01-02")
    with pytest.raises(ReadError, match="initialize_database"):
        reading.get_latest(db, "market_regimes_1min", "NIFTY")


def test_disabled_integration_returns_empty_frames_with_schema(settings: Any) -> None:
    pg = PostgreSQLIntegration(settings=settings_replace(settings, enabled=False))
    assert pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02").schema == reading.empty_frame("market_data").schema
    assert pg.get_1min_market_regimes("NIFTY", "2024-01-01", "2024-01-02", return_type="arrow").schema == \
        TABLES["market_regimes_1min"].read_schema()
    assert pg.get_market_regime_distribution("NIFTY", "2024-01-01", "2024-01-02").columns == \
        reading.DISTRIBUTION_SCHEMA.names
    assert pg.get_regime_transitions("NIFTY", "2024-01-01", "2024-01-02").height == 0
    assert pg.get_latest_1min_market_regime("NIFTY").height == 0
    assert list(pg.iter_market_data("NIFTY", "2024-01-01", "2024-01-02")) == []
    assert list(pg.iter_options_data("NIFTY", "2024-01-01", "2024-01-02")) == []
    tagged = pg.asof_regimes(pl.DataFrame({"symbol": ["NIFTY"], "timestamp": [T0]}))
    assert tagged.height == 1 and tagged["regime"].to_list() == [None]
    assert pg.asof_regimes(symbol="NIFTY", start_date="2024-01-01", end_date="2024-01-02").height == 0
    assert pg.db._pool is None  # nothing connected


@pytest.mark.parametrize("key", ["market_data", "options_data", "market_regimes", "market_regimes_1min"])
def test_rows_written_by_the_writers_read_back_unchanged(pg: PostgreSQLIntegration, key: str) -> None:
    frames = {
        "market_data": lambda: bars(["NIFTY", "BANKNIFTY"], ["1m"], T0, 40),
        "options_data": lambda: options("NIFTY", [dt.date(2024, 1, 25)], [21500.0, 21550.5], T0, 10),
        "market_regimes": lambda: regimes(["NIFTY"], ["5m", "15m"], T0, 10),
        "market_regimes_1min": lambda: regimes_1min(["NIFTY", "BANKNIFTY"], T0, 40),
    }
    frame = frames[key]()
    pg.save(key, frame)
    readers = {
        "market_data": lambda **kw: pg.get_market_data(["NIFTY", "BANKNIFTY"], T0, "2024-01-02", **kw),
        "options_data": lambda **kw: pg.get_options_data("NIFTY", T0, "2024-01-02", **kw),
        "market_regimes": lambda **kw: pg.get_market_regimes("NIFTY", T0, "2024-01-02", **kw),
        "market_regimes_1min": lambda **kw: pg.get_1min_market_regimes("NIFTY", T0, "2024-01-02", **kw),
    }
    order = {"market_data": ["symbol", "timeframe", "timestamp"],
             "options_data": ["timestamp", "expiry_date", "strike_price", "option_type"],
             "market_regimes": ["timeframe", "timestamp"], "market_regimes_1min": ["timestamp"]}[key]
    want = frame if key == "market_data" else frame.filter(pl.col("symbol") == "NIFTY")
    for exact in (False, True):
        assert_frame_equal(readers[key](exact=exact), expected(want.sort(order), key, exact=exact))


def test_unreachable_server_fails_fast_without_the_password(settings: Any) -> None:
    from regime_io import ServerUnavailableError
    from regime_io.config import Secret
    from regime_io.database import Database

    # A port nobody listens on; connectorx alone would retry for a fixed 30 s.
    dead = Database(settings_replace(settings, port=1, password=Secret("sekret#pw"), connection_timeout=1.0,
                                     retry_attempts=0, retry_delay=0.1))
    calls = [
        lambda: reading.get_market_data(dead, "NIFTY", "2024-01-01", "2024-01-02"),
        lambda: reading.get_latest(dead, "market_data", "NIFTY"),
        lambda: next(streams.iter_market_data(dead, "NIFTY", "2024-01-01", "2024-01-02")),
    ]
    try:
        for call in calls:
            with pytest.raises(ServerUnavailableError, match=r"^cannot reach the primary server .* after 1 attempt") \
                    as info:
                call()
            assert "sekret" not in str(info.value)
    finally:
        dead.close()


def test_a_large_read_parses_prices_exactly_like_the_servers_float8_cast(pg: PostgreSQLIntegration,
                                                                         sql: Any) -> None:
    # Above _decode.PARALLEL_PARSE_ROWS the DECIMAL text columns parse on several threads:
    # the floats must still be the server's own numeric -> float8 values, in row order.
    n = _decode.PARALLEL_PARSE_ROWS // 2 + 1_000
    start = dt.datetime(2024, 3, 1)
    pg.db.partitions.ensure(pg.db.pool, pg.settings, TABLES["market_data"], start,
                            start + dt.timedelta(minutes=n))
    table = pg.db.table("market_data")
    sql(f"INSERT INTO {table} (symbol, timestamp, open, high, low, close, volume, timeframe) "
        "SELECT s, %s::timestamp + i * interval '1 minute', "
        "round((random() * 50000)::numeric, 2), round((random() * 50000)::numeric, 2), "
        "round((random() * 50000)::numeric, 2), round((random() * 50000)::numeric, 2), i, '1m' "
        "FROM generate_series(1, %s) AS i, unnest(ARRAY['AAA', 'BBB']) AS s", (start, n))
    got = pg.get_market_data(["AAA", "BBB"], start, start + dt.timedelta(days=365))
    assert got.height == 2 * n > _decode.PARALLEL_PARSE_ROWS
    server = sql(f'SELECT open::float8, high::float8, low::float8, close::float8 FROM {table} '
                 "WHERE symbol IN ('AAA', 'BBB') ORDER BY symbol, timeframe, timestamp")
    assert got.select("open", "high", "low", "close").rows() == server
