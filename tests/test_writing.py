"""Writers on a real server: exact round trips, idempotent upserts, atomicity, every input type."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import logging
import re
import threading
import warnings

import numpy as np
import pandas as pd
import polars as pl
import psycopg
import pyarrow as pa
import pytest

from regime_io import PostgreSQLIntegration, SchemaError, ValidationError, WriteError
from regime_io._write.validate import DataQualityWarning
from regime_io.tables import TABLES, table_spec

D = decimal.Decimal
T0 = dt.datetime(2024, 1, 31, 23, 58)  # crosses a month (partition) boundary


def bars(n: int = 4, *, symbol: str = "NIFTY", start: dt.datetime = T0, close: float = 100.0) -> pl.DataFrame:
    return pl.DataFrame({
        "symbol": [symbol] * n,
        "timestamp": [start + dt.timedelta(minutes=i) for i in range(n)],
        "open": [close + i for i in range(n)],
        "high": [close + i + 1.0 for i in range(n)],
        "low": [close + i - 1.0 for i in range(n)],
        "close": [close + i + 0.5 for i in range(n)],
        "volume": [1000 + i for i in range(n)],
        "timeframe": ["1m"] * n,
    })


def stored(sql, pg: PostgreSQLIntegration, table: str, columns: str = "*", order: str = "1") -> list[tuple]:
    return sql(f'SELECT {columns} FROM "{pg.settings.schema}"."{pg.settings.table_name(table)}" ORDER BY {order}')


def count(sql, pg: PostgreSQLIntegration, table: str) -> int:
    return stored(sql, pg, table, "count(*)")[0][0]


def test_market_data_round_trip_is_exact(pg: PostgreSQLIntegration, sql) -> None:
    frame = pl.DataFrame({
        "symbol": ["X"] * 5,
        "timestamp": [dt.datetime(2024, 1, 2, 9, 15, 0, 123456) + dt.timedelta(minutes=i) for i in range(5)],
        "open": [0.05, 0.00, -0.05, 99999999.99, 1.005],
        "high": [0.05, 0.00, -0.05, 99999999.99, 1.005],
        "low": [0.05, 0.00, -0.05, 99999999.99, 1.005],
        "close": [0.05, 0.00, -0.05, 99999999.99, 1.005],
        "volume": [0, 1, 2**62, 3, 4],
        "timeframe": ["1m"] * 5,
    })
    result = pg.save_market_data(frame)
    assert (result.inserted, result.updated, result.unchanged, result.method) == (5, 0, 0, "copy")
    rows = stored(sql, pg, "market_data", "timestamp, open, volume", "timestamp")
    assert [r[1] for r in rows] == [D("0.05"), D("0.00"), D("-0.05"), D("99999999.99"), D("1.01")]
    assert rows[0][0] == dt.datetime(2024, 1, 2, 9, 15, 0, 123456)
    assert rows[2][2] == 2**62


def test_rounding_matches_postgres_float_to_numeric_cast(pg: PostgreSQLIntegration, sql) -> None:
    values = [1.005, -0.125, 2.675, 0.015, 1e-9, 12345.675, -99.995]
    frame = bars(len(values)).with_columns(pl.Series("open", values))
    pg.save_market_data(frame)
    ours = [r[0] for r in stored(sql, pg, "market_data", "open", "timestamp")]
    server = [sql("SELECT %s::float8::numeric(10,2)", (v,))[0][0] for v in values]
    assert ours == server


def test_same_batch_twice_is_a_no_op_and_changes_are_updates(pg: PostgreSQLIntegration, sql) -> None:
    frame = bars(6)
    first = pg.save_market_data(frame)
    before = stored(sql, pg, "market_data", "symbol, timestamp, close, created_at, id")
    again = pg.save_market_data(frame)
    assert (again.inserted, again.updated, again.unchanged, again.method) == (0, 0, 6, "staged")
    assert stored(sql, pg, "market_data", "symbol, timestamp, close, created_at, id") == before
    changed = frame.with_columns(pl.when(pl.int_range(pl.len()) < 2).then(pl.col("close") + 1)
                                 .otherwise(pl.col("close")).alias("close"))
    extra = bars(2, start=T0 + dt.timedelta(minutes=6))
    result = pg.save_market_data(pl.concat([changed, extra]))
    assert (result.inserted, result.updated, result.unchanged) == (2, 2, 4)
    assert first.inserted == 6
    closes = [r[0] for r in stored(sql, pg, "market_data", "close", "timestamp")]
    assert closes[:2] == [D("101.50"), D("102.50")]
    assert count(sql, pg, "market_data") == 8


def test_on_conflict_ignore_and_error(pg: PostgreSQLIntegration, sql) -> None:
    pg.save_market_data(bars(3))
    changed = bars(3, close=500.0)
    ignored = pg.save_market_data(changed, on_conflict="ignore")
    assert (ignored.inserted, ignored.updated, ignored.unchanged) == (0, 0, 3)
    assert stored(sql, pg, "market_data", "max(close)")[0][0] == D("102.50")
    with pytest.raises(WriteError, match="already exists") as info:
        pg.save_market_data(pl.concat([bars(2, start=T0 + dt.timedelta(days=1)), changed]), on_conflict="error")
    assert info.value.table == "market_data"
    assert count(sql, pg, "market_data") == 3  # the two new rows were rolled back too


@pytest.mark.parametrize("kind", ["polars", "lazy", "pandas", "arrow", "record_batch"])
def test_every_input_type_stores_the_same_rows(pg: PostgreSQLIntegration, sql, kind: str) -> None:
    frame = bars(3)
    data = {"polars": frame, "lazy": frame.lazy(), "pandas": frame.to_pandas(), "arrow": frame.to_arrow(),
            "record_batch": frame.to_arrow().to_batches()[0]}[kind]
    assert pg.save_market_data(data).inserted == 3
    assert stored(sql, pg, "market_data", "symbol, timestamp, open, high, low, close, volume, timeframe") == [
        ("NIFTY", T0 + dt.timedelta(minutes=i), D(f"{100 + i}.00"), D(f"{101 + i}.00"), D(f"{99 + i}.00"),
         D(f"{100 + i}.50"), 1000 + i, "1m") for i in range(3)
    ]


def test_pandas_with_nan_volume_like_floats_and_zoned_timestamps(pg: PostgreSQLIntegration, sql) -> None:
    frame = bars(2).to_pandas()
    frame["volume"] = frame["volume"].astype("float64")
    frame["timestamp"] = pd.to_datetime(["2024-03-01 09:15", "2024-03-01 09:16"]).tz_localize("Asia/Kolkata")
    pg.save_market_data(frame)
    assert [r[0] for r in stored(sql, pg, "market_data", "timestamp", "1")] == [
        dt.datetime(2024, 3, 1, 3, 45), dt.datetime(2024, 3, 1, 3, 46)]


def test_options_data_round_trip_with_option_type_spellings(pg: PostgreSQLIntegration, sql) -> None:
    n = 6
    frame = pl.DataFrame({
        "symbol": ["NIFTY"] * n,
        "expiry_date": [dt.datetime(2024, 1, 25)] * 3 + [dt.datetime(2024, 2, 29)] * 3,  # date-like timestamps
        "strike_price": [21000.0, 21050.5, 21100.0, 21000.0, 21050.5, 21100.0],
        "option_type": ["CE", "call", "P", "PUT", "pe", "C"],
        "timestamp": [dt.datetime(2024, 1, 2, 9, 15)] * n,
        "open": [10.0] * n, "high": [12.0] * n, "low": [9.0] * n, "close": [11.0] * n,
        "volume": [100] * n, "open_interest": [5000] * n,
        "implied_volatility": [0.1234, None, 0.2, 0.3, 0.4, 0.5],
        "delta": [0.5, -0.5, 0.0, -0.05, 0.05, 0.99994],
        "gamma": [0.0001] * n, "theta": [-1.2345] * n, "vega": [3.0] * n,
    })
    assert pg.save_options_data(frame).inserted == n
    rows = stored(sql, pg, "options_data", "expiry_date, strike_price, option_type, implied_volatility, delta",
                  "expiry_date, strike_price, option_type")
    assert [r[2] for r in rows] == ["CE", "CE", "PE", "PE", "PE", "CE"]
    assert rows[0] == (dt.date(2024, 1, 25), D("21000.00"), "CE", D("0.1234"), D("0.5000"))
    assert rows[1][3] is None
    assert D("0.9999") in [r[4] for r in rows]


def test_regimes_and_1min_regimes(pg: PostgreSQLIntegration, sql) -> None:
    regimes = pl.DataFrame({"symbol": ["NIFTY"] * 2, "timestamp": [T0, T0 + dt.timedelta(minutes=5)],
                            "timeframe": ["5m"] * 2, "regime": ["Strong_Bullish", "Neutral"],
                            "confidence": [87.456, 100], "atr_value": [12.34567, None]})
    assert pg.save_market_regime(regimes).inserted == 2
    assert stored(sql, pg, "market_regimes", "confidence, atr_value, dte_value", "timestamp") == [
        (D("87.46"), D("12.3457"), None), (D("100.00"), None, None)]
    one = pl.DataFrame({"symbol": ["NIFTY"], "timestamp": ["2024-01-02T09:15:00"], "regime": ["Bullish"],
                        "confidence": [55.5], "greek_sentiment": ["positive"], "trending_oi_pa": ["long_build_up"]})
    assert pg.save_1min_market_regime(one).inserted == 1
    assert stored(sql, pg, "market_regimes_1min", "timestamp, regime, greek_sentiment") == [
        (dt.datetime(2024, 1, 2, 9, 15), "Bullish", "positive")]


def test_optimization_results_from_dicts_are_idempotent(pg: PostgreSQLIntegration, sql) -> None:
    result = {"symbol": "NIFTY", "algorithm": "genetic", "parameters": {"ema": [9, 21], "atr": 14.5, "name": "x'\";"},
              "fitness_value": 1.23456, "start_date": dt.datetime(2024, 1, 1), "end_date": dt.datetime(2024, 3, 31),
              "timeframe": "5m"}
    first = pg.save_optimization_result(result)
    again = pg.save_optimization_result(result)  # a retry after a lost acknowledgement
    assert (first.inserted, again.inserted, again.unchanged) == (1, 0, 1)
    rows = stored(sql, pg, "optimization_results", "parameters, fitness_value, run_id")
    assert len(rows) == 1
    assert rows[0][0] == {"ema": [9, 21], "atr": 14.5, "name": "x'\";"}
    assert rows[0][1] == D("1.2346")
    assert len(rows[0][2]) == 64
    # A list of dicts, a JSON string and an explicit run id.
    more = [dict(result, parameters=json.dumps({"a": 1}), run_id="run-42"), dict(result, fitness_value=2.0)]
    assert pg.save_optimization_result(more).inserted == 2
    assert count(sql, pg, "optimization_results") == 3


def test_computed_run_ids_key_a_ranked_batch(pg: PostgreSQLIntegration, sql) -> None:
    """A batch of more than 128 results (key order by numpy ranks) whose run ids are
    partly given and partly computed (filled after the text checks): the key is read as
    filled, so the batch is stored whole and saving it again changes nothing."""
    results = [{"symbol": "NIFTY", "algorithm": "genetic", "parameters": {"i": i}, "fitness_value": i / 7,
                "start_date": dt.datetime(2024, 1, 1), "end_date": dt.datetime(2024, 3, 31), "timeframe": "5m",
                "run_id": f"given-{i:03d}" if i % 2 else None} for i in range(200)]
    assert pg.save_optimization_result(results).inserted == 200
    again = pg.save_optimization_result(results)
    assert (again.inserted, again.unchanged) == (0, 200)
    assert count(sql, pg, "optimization_results") == 200


def test_validation_error_leaves_the_table_unchanged(pg: PostgreSQLIntegration, sql) -> None:
    pg.save_market_data(bars(3))
    before = stored(sql, pg, "market_data")
    bad = bars(5, start=T0 + dt.timedelta(days=3)).with_columns(
        pl.Series("open", [1.0, 2.0, float("inf"), 4.0, 5.0]))
    with pytest.raises(ValidationError) as info:
        pg.save_market_data(bad)
    err = info.value
    assert (err.table, err.column, err.row) == ("market_data", "open", 2)
    assert "first bad row 2" in str(err) and "inf" in str(err)
    assert stored(sql, pg, "market_data") == before


def test_a_bad_last_chunk_of_a_stream_leaves_nothing(pg: PostgreSQLIntegration, sql) -> None:
    good = [bars(50, start=T0 + dt.timedelta(hours=h)) for h in range(3)]
    bad = bars(5, start=T0 + dt.timedelta(hours=5)).with_columns(pl.Series("symbol", ["X" * 30] * 5))
    done: list[int] = []
    with pytest.raises(ValidationError, match="VARCHAR") as info:
        pg.save_market_data(iter([*good, bad]), chunk_rows=20, progress=lambda d, t: done.append(d))
    assert info.value.row == 150  # row number within the whole stream
    assert done and done[-1] == 150  # the good chunks were sent...
    assert count(sql, pg, "market_data") == 0  # ...and rolled back


def test_a_stream_of_frames_lands_in_one_transaction(pg: PostgreSQLIntegration, sql) -> None:
    chunks = [bars(100, symbol=s, start=dt.datetime(2024, m, 1)) for s in ("A", "B") for m in (1, 4)]
    result = pg.save_market_data(iter(chunks), chunk_rows=64)
    assert (result.rows, result.inserted, result.method) == (400, 400, "staged")
    assert count(sql, pg, "market_data") == 400
    again = pg.save_market_data(iter(chunks))
    assert (again.inserted, again.unchanged) == (0, 400)


def test_server_error_on_the_last_chunk_rolls_back_earlier_chunks(pg: PostgreSQLIntegration, sql) -> None:
    pg.save_market_data(bars(1, start=T0 + dt.timedelta(minutes=299)))  # collides with the last chunk
    progress: list[int] = []
    with pytest.raises(WriteError, match=r"^market_data: a row with this natural key already exists "
                                         r".*on_conflict='error' refuses it; nothing was written$"):
        pg.save_market_data(bars(300), on_conflict="error", chunk_rows=100, progress=lambda d, t: progress.append(d))
    assert progress == [100, 200]
    assert count(sql, pg, "market_data") == 1


def test_duplicate_keys_in_a_batch(pg: PostgreSQLIntegration, sql) -> None:
    frame = pl.concat([bars(3), bars(1, close=7.0)])
    with pytest.raises(ValidationError, match="duplicate natural key") as info:
        pg.save_market_data(frame)
    assert info.value.row == 0
    assert count(sql, pg, "market_data") == 0
    result = pg.save_market_data(frame, on_duplicate="keep_last")
    assert result.rows == 3
    assert stored(sql, pg, "market_data", "close", "timestamp")[0][0] == D("7.50")


@pytest.mark.parametrize("n", [4, 1_500])
def test_time_major_batches_and_duplicates_small_and_large(pg: PostgreSQLIntegration, sql, n: int) -> None:
    # Batches up to key_order.SMALL_FRAME_ROWS (128) are sorted in Python; larger ones are put
    # in key order by symbol groups first. Both must find the same duplicates and store
    # the same rows (2 symbols, time-major: the symbols alternate row by row).
    frame = pl.concat([bars(n, symbol="NIFTY"), bars(n, symbol="BANKNIFTY", close=50.0)])
    frame = frame.with_columns(pl.int_range(pl.len()).alias("i")).sort(["timestamp", "i"]).drop("i")
    dup = pl.concat([frame, frame.slice(3, 1).with_columns(pl.col("close") + 0.25)])
    with pytest.raises(ValidationError, match="duplicate natural key") as info:
        pg.save_market_data(dup)
    assert info.value.row == 3
    assert count(sql, pg, "market_data") == 0
    result = pg.save_market_data(dup, on_duplicate="keep_last")
    assert (result.rows, result.inserted) == (2 * n, 2 * n)
    rows = stored(sql, pg, "market_data", "symbol, timestamp, close", "symbol, timestamp")
    expected = sorted(frame.select("symbol", "timestamp", "close").rows())
    changed = frame.row(3, named=True)
    expected = [(s, t, D(f"{c + (0.25 if (s, t) == (changed['symbol'], changed['timestamp']) else 0):.2f}"))
                for s, t, c in expected]
    assert rows == expected


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("rows", [40, 600])
def test_key_order_routes_agree(monkeypatch: pytest.MonkeyPatch, seed: int, rows: int) -> None:
    """Key order is found three ways by size (Python's sort up to 128 rows, numpy's ranks
    up to 100,000, polars' grouping above): each route, forced on the same frames, puts
    them in the same order and finds the same duplicates -- options' five-column key
    (text, date, decimal, text, time) with non-ASCII and mixed-case text included."""
    from regime_io._write import key_order

    rng = np.random.default_rng(seed)
    pick = lambda values: [values[i] for i in rng.integers(0, len(values), rows)]  # noqa: E731
    frame = pl.DataFrame({
        "symbol": pick(["NIFTY", "BANKNIFTY", "Zeta", "ÉCLAIR", "a", "nifty"]),
        "expiry_date": pick([dt.date(2024, 1, 25), dt.date(2023, 12, 28), dt.date(2024, 2, 29)]),
        "strike_price": pl.Series(pick([decimal.Decimal(v) for v in ("-1.50", "21000.00", "9.99", "100.00")]),
                                  dtype=pl.Decimal(10, 2)),
        "option_type": pick(["CE", "PE"]),
        "timestamp": pick([dt.datetime(2024, 1, 2, 9, 15) + dt.timedelta(minutes=int(m)) for m in range(30)]),
    })
    key = ["symbol", "expiry_date", "strike_price", "option_type", "timestamp"]
    unique = frame.unique(subset=key, maintain_order=True)
    shuffled = unique.sample(fraction=1.0, shuffle=True, seed=seed)
    expected = unique.sort(key)

    def ordered(route: str, given: pl.DataFrame) -> pl.DataFrame | None:
        monkeypatch.setattr(key_order, "SMALL_FRAME_ROWS", 10**9 if route == "python" else 1)
        monkeypatch.setattr(key_order, "RANKED_FRAME_ROWS", 10**9 if route.startswith("numpy") else 1)
        # "numpy codes": the text columns' ranks from TextCodes taken once (as validate does).
        texts = ({c: key_order.TextCodes.of(given.get_column(c)) for c in ("symbol", "option_type")}
                 if route == "numpy codes" else None)
        found = key_order.in_key_order(given, key, texts=texts)
        if found is None:
            return None
        out, order = found
        return out if order is None else pl.from_arrow(out.to_arrow().take(order))  # type: ignore[return-value]

    for route in ("python", "numpy", "numpy codes", "polars"):
        got = ordered(route, shuffled)
        assert got is not None and got.equals(expected), route
        assert ordered(route, expected) is not None
        assert ordered(route, pl.concat([shuffled, shuffled.slice(rows // 7, 1)])) is None, route
    # A key column with one value (a timeframe): the numpy route skips it when sorting.
    one_type = frame.with_columns(pl.lit("CE").alias("option_type")).unique(subset=key, maintain_order=True)
    for route in ("python", "numpy", "numpy codes", "polars"):
        got = ordered(route, one_type.sample(fraction=1.0, shuffle=True, seed=seed))
        assert got is not None and got.equals(one_type.sort(key)), route


def test_low_above_high_warns_by_default_and_fails_when_strict(pg: PostgreSQLIntegration, sql) -> None:
    frame = bars(2).with_columns(pl.Series("low", [500.0, 100.0]))
    with pytest.raises(ValidationError, match="low <= high"):
        pg.save_market_data(frame, strict=True)
    assert count(sql, pg, "market_data") == 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pg.save_market_data(frame).inserted == 2
    assert any(issubclass(w.category, DataQualityWarning) for w in caught)


@pytest.mark.parametrize("seed", range(6))
def test_soft_checks_on_float_prices_judge_the_stored_values_as_the_decimal_path(seed: int) -> None:
    """Float prices are checked (low <= open <= high...) on their stored units in numpy;
    the same rows given as exact decimals go through polars: the same warnings, and
    values that round equal are not a violation."""
    from regime_io._write.validate import validate

    rng = np.random.default_rng(seed)
    n = 200
    base = np.round(rng.uniform(100, 200, n), 2)
    prices = {c: base + rng.choice([0.0, 0.001, -0.004, 0.5, -0.5], n) for c in ("open", "high", "low", "close")}
    frame = pl.DataFrame({"symbol": ["AAA"] * n, "timeframe": ["1m"] * n,
                          "timestamp": [dt.datetime(2024, 1, 2) + dt.timedelta(minutes=i) for i in range(n)],
                          **prices,
                          "volume": [1] * n})
    exact = frame.with_columns(pl.col(c).round(2).cast(pl.Decimal(10, 2)) for c in prices)
    messages = []
    for given in (frame, exact):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            validate(table_spec("market_data"), given)
        messages.append(re.findall(r"\d+ row\(s\) violate [^;]*", " ".join(
            str(w.message) for w in caught if issubclass(w.category, DataQualityWarning))))
    assert messages[0] == messages[1]
    assert messages[0]  # the data has violations to find


@pytest.mark.parametrize("given", ["float", "decimal"])
def test_prices_with_inner_zero_digit_groups_survive_the_bulk_copy(pg: PostgreSQLIntegration, given: str) -> None:
    """NUMERIC travels in base-10000 digit groups; ADBC's driver 1.11 dropped the inner zero
    groups on COPY without an error (20000.07 stored as 20700.00): the floor is 1.12."""
    values = ["20000.07", "20000.40", "10000.01", "100000.50", "1.00", "30000.00", "12.34", "90000000.01"]
    n = 100  # past SMALL_BATCH_ROWS: the bulk COPY, not the pipelined insert
    prices = [values[i % len(values)] for i in range(n)]
    column = (pl.Series(prices).cast(pl.Float64) if given == "float"
              else pl.Series([decimal.Decimal(p) for p in prices], dtype=pl.Decimal(10, 2)))
    frame = pl.DataFrame({"symbol": ["X"] * n, "timestamp": [T0 + dt.timedelta(minutes=i) for i in range(n)],
                          "open": column, "high": column, "low": column, "close": column, "volume": [1] * n,
                          "timeframe": ["1m"] * n})
    result = pg.save_market_data(frame)
    assert result.method == "copy"
    got = pg.get_market_data("X", T0, T0 + dt.timedelta(minutes=n), exact=True)
    assert [str(v) for v in got["open"]] == [str(decimal.Decimal(p).quantize(decimal.Decimal("0.01")))
                                             for p in prices]


def test_empty_frame_is_a_no_op(pg: PostgreSQLIntegration) -> None:
    result = pg.save_market_data(bars(0))
    assert (result.rows, result.written, result.method) == (0, 0, "empty")


def test_extra_columns_error_or_ignore_and_generated_columns_are_dropped(pg: PostgreSQLIntegration, sql) -> None:
    frame = bars(2).with_columns(pl.lit("x").alias("note"), pl.lit(1).alias("id"))
    with pytest.raises(ValidationError, match="'note'"):
        pg.save_market_data(frame)
    assert pg.save_market_data(frame, extra_columns="ignore").inserted == 2


def test_missing_tables_give_a_schema_error(settings) -> None:
    with PostgreSQLIntegration(settings=settings) as pg, pytest.raises(SchemaError, match="initialize_database"):
        pg.save_1min_market_regime({"symbol": "A", "timestamp": T0, "regime": "x", "confidence": 1})


def test_disabled_config_writes_nothing(settings, sql) -> None:
    from regime_io.config import settings_replace

    with PostgreSQLIntegration(settings=settings_replace(settings, enabled=False)) as pg:
        result = pg.save_market_data(bars(2))
        assert (result.method, result.written) == ("disabled", 0)
        assert pg.initialize_database() == 0
    assert sql("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (settings.schema,))[0][0] == 0


def test_rolling_saves_upsert_and_trim_the_window(pg: PostgreSQLIntegration, sql) -> None:
    start = dt.datetime(2024, 1, 2, 9, 15)
    for minute in range(10):
        rows = [{"symbol": s, "timestamp": start + dt.timedelta(minutes=minute), "regime": "Bullish",
                 "confidence": 50 + minute} for s in ("A", "B")]
        result = pg.save_rolling_market_regime(rows, window_minutes=5)
        assert result.inserted == 2
    # Re-sending the last minute with a new value updates it.
    resent = pg.save_rolling_market_regime([{"symbol": "A", "timestamp": start + dt.timedelta(minutes=9),
                                             "regime": "Bearish", "confidence": 1}], window_minutes=5)
    assert (resent.inserted, resent.updated) == (0, 1)
    rows = stored(sql, pg, "market_regimes_1min", "symbol, timestamp", "symbol, timestamp")
    assert rows == [(s, start + dt.timedelta(minutes=m)) for s in ("A", "B") for m in range(4, 10)]


@pytest.mark.parametrize("symbols", [2, 80])  # the pipelined small write; ADBC (> 64 rows)
def test_rolling_trim_reports_and_catalogues_what_it_deleted(pg: PostgreSQLIntegration, sql, symbols: int) -> None:
    # The trim deletes and does the catalog's bookkeeping in one statement, its count
    # read after the commit: the count, the rows left and the catalog must all agree.
    names = [f"S{i:03d}" for i in range(symbols)]
    start = dt.datetime(2024, 1, 2, 9, 15)
    pg.save_1min_market_regime([{"symbol": s, "timestamp": start + dt.timedelta(minutes=m), "regime": "Bullish",
                                 "confidence": 50} for s in names for m in range(10)])
    newest = start + dt.timedelta(minutes=12)
    result = pg.save_rolling_market_regime([{"symbol": s, "timestamp": newest, "regime": "Bearish",
                                             "confidence": 40} for s in names], window_minutes=5)
    assert (result.inserted, result.trimmed) == (symbols, 7 * symbols)  # minutes 0-6 fell out
    assert count(sql, pg, "market_regimes_1min") == 4 * symbols  # minutes 7, 8, 9 and 12
    catalog = pg.catalog("1min")
    assert catalog["symbol"].to_list() == names
    assert set(catalog["row_count"]) == {4}
    assert set(catalog["first_timestamp"]) == {start + dt.timedelta(minutes=7)}
    assert set(catalog["last_timestamp"]) == {newest}


def test_bulk_writes_give_new_partitions_statistics_on_their_key_columns(pg: PostgreSQLIntegration, sql) -> None:
    # Right after a bulk load the planner would otherwise guess (docs/performance.md:
    # a 10-symbol read sorted on disk, the rolling trim scanned the whole window).
    def analysed() -> dict[str, float]:
        return dict(sql("SELECT c.relname, c.reltuples FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "WHERE i.inhparent = %s::regclass", (pg.db.table("market_data"),)))

    pg.save_market_data(bars(100))  # a small write: the planner's defaults cost little, nothing analysed
    assert set(analysed().values()) == {-1.0}
    frame = pl.concat([bars(6_000, symbol=s, start=T0 + dt.timedelta(days=40)) for s in ("A", "B")])
    result = pg.save_market_data(frame, on_conflict="ignore")  # T0 + 40 days: a new month and its partition
    assert result.inserted == 12_000
    # Every partition gets statistics: the two the small write made too (never analysed).
    assert all(n >= 0 for n in analysed().values()), analysed()
    assert analysed()[f"{pg.settings.table_prefix}market_data_p2024_03"] == 12_000
    stats = sql("SELECT DISTINCT attname FROM pg_stats WHERE schemaname = %s AND tablename LIKE %s",
                (pg.settings.schema, f"{pg.settings.table_prefix}market_data_p%"))
    assert sorted(r[0] for r in stats) == sorted(TABLES["market_data"].primary_key)  # key columns only


def test_a_backfilled_vintage_analyses_new_partitions_too(pg: PostgreSQLIntegration, sql) -> None:
    # Writes with known_at take their own path (regime_io._write.vintages.save_vintages).
    start = dt.datetime(2024, 3, 4, 9, 15)
    frame = pl.DataFrame({"symbol": [s for s in ("A", "B") for _ in range(6_000)],
                          "timestamp": [start + dt.timedelta(minutes=m) for _ in range(2) for m in range(6_000)],
                          "regime": "bull", "confidence": 50.0})
    assert pg.save("market_regimes_1min", frame, known_at=dt.datetime(2024, 3, 10)).inserted == 12_000
    part = f'"{pg.settings.schema}"."{pg.settings.table_prefix}market_regimes_1min_p2024_03"'
    assert sql("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (part,))[0][0] == 12_000


def test_a_partition_that_cannot_be_analysed_now_is_left_to_autovacuum(pg: PostgreSQLIntegration, sql, server,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    # The write has committed when the analysis runs: a lock held elsewhere costs it a
    # warning and lock_timeout, never the write; the next bulk write tries again.
    pg.save_market_data(bars(100))  # makes the partitions, analyses nothing
    part = f'"{pg.settings.schema}"."{pg.settings.table_prefix}market_data_p2024_02"'

    def reltuples() -> float:
        return float(sql("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", (part,))[0][0])

    frame = pl.concat([bars(6_000, symbol=s, start=T0 + dt.timedelta(days=1)) for s in ("A", "B")])
    with psycopg.connect(server.url()) as holder:
        holder.execute(f"LOCK TABLE {part} IN SHARE UPDATE EXCLUSIVE MODE")  # what ANALYZE and VACUUM take
        with caplog.at_level(logging.WARNING, logger="regime_io"):
            assert pg.save_market_data(frame).inserted == 12_000
        assert "could not analyse its new partitions" in caplog.text
        assert reltuples() == -1.0
    assert pg.save_market_data(frame.with_columns(pl.col("volume") + 1)).updated == 12_000
    assert reltuples() >= 12_000


def test_partitions_dropped_by_someone_else_are_recreated(pg: PostgreSQLIntegration, sql) -> None:
    pg.save_market_data(bars(2, start=dt.datetime(2024, 5, 1)))
    sql(f'DROP TABLE "{pg.settings.schema}"."mr_market_data_p2024_05"')  # cache now stale
    assert pg.save_market_data(bars(2, start=dt.datetime(2024, 5, 1))).inserted == 2


def test_concurrent_overlapping_writers_end_in_the_expected_table(pg: PostgreSQLIntegration, sql) -> None:
    # Eight threads write overlapping batches with identical values: no error, no duplicate.
    frames = [bars(200, symbol=s, start=T0 + dt.timedelta(minutes=50 * i)) for i in range(4) for s in ("A", "B")]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(frames))

    def write(frame: pl.DataFrame) -> None:
        try:
            barrier.wait()
            pg.save_market_data(frame)
        except BaseException as err:  # asserted below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(f,)) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    expected = pl.concat(frames).unique(subset=["symbol", "timestamp"])
    assert count(sql, pg, "market_data") == expected.height == 2 * 350


def test_arrow_input_with_exact_decimals_and_date32(pg: PostgreSQLIntegration, sql) -> None:
    table = pa.table({
        "symbol": ["S"], "expiry_date": pa.array([dt.date(2024, 1, 25)], pa.date32()),
        "strike_price": pa.array([D("21000.50")], pa.decimal128(12, 2)), "option_type": ["PE"],
        "timestamp": pa.array([T0], pa.timestamp("ns")), "open": [1.0], "high": [1.0], "low": [1.0],
        "close": [1.0], "volume": pa.array([1], pa.int32()), "open_interest": pa.array([2], pa.uint32()),
    })
    assert pg.save_options_data(table).inserted == 1
    assert stored(sql, pg, "options_data", "strike_price, volume, open_interest") == [(D("21000.50"), 1, 2)]


@pytest.mark.parametrize("path", ["copy", "staged"])
def test_a_write_spanning_many_copy_batches_stores_every_row_once(pg: PostgreSQLIntegration, sql,
                                                                   path: str) -> None:
    # Writers feed ADBC's COPY in small record batches (a few hundred rows); a write of
    # thousands of rows crosses dozens of batch boundaries, in one COPY per chunk.
    n = 7_001
    close = pl.Series("close", [100.0 + i / 100 for i in range(n)])
    frame = bars(n).with_columns(close, open=close, high=close + 1, low=close - 1)
    if path == "staged":  # rows already stored: the write goes through the staging table
        pg.save_market_data(frame.head(10))
    result = pg.save_market_data(frame, chunk_rows=3_000)
    assert result.method == path
    assert (result.inserted, result.updated) == ((n, 0) if path == "copy" else (n - 10, 0))
    rows = stored(sql, pg, "market_data", "timestamp, close", "timestamp")
    assert len(rows) == n
    assert [r[1] for r in rows] == [D(f"{100 + i / 100:.2f}") for i in range(n)]
    assert [r[0] for r in rows] == frame.get_column("timestamp").to_list()


def test_small_writes_commit_and_leave_no_transaction_open(pg: PostgreSQLIntegration, sql) -> None:
    """Writes of a few rows run pipelined on a lookup connection (regime_io._conn.pipeline):
    their rows are visible to another session at once, the connection goes back to the
    pool outside any transaction, and a refused write leaves nothing behind."""
    table = f'"{pg.settings.schema}"."{pg.settings.table_name("market_data")}"'
    assert pg.save_market_data(bars(3)).inserted == 3
    assert sql(f"SELECT count(*) FROM {table}") == [(3,)]  # another session sees the commit
    pg.save_rolling_market_regime(pl.DataFrame({"symbol": ["A"], "timestamp": [T0], "regime": ["bull"],
                                                "confidence": [50.0]}), window_minutes=5)
    with pg.db.lookup_pool.connection() as conn:
        assert conn.info.transaction_status == 0  # IDLE: nothing left open by the writes
    later = bars(2, start=T0 + dt.timedelta(minutes=10))
    assert pg.save_market_data(later, on_conflict="error").inserted == 2
    # The same rows again: refused at the pipeline's commit.
    with pytest.raises(WriteError, match=r"^market_data: a row with this natural key already exists "
                                         r".*on_conflict='error' refuses it; nothing was written$"):
        pg.save_market_data(later, on_conflict="error")
    assert sql(f"SELECT count(*) FROM {table}") == [(5,)]
    # No session of the pool holds a lock on the table (a transaction left open would).
    sql(f"BEGIN; SET LOCAL lock_timeout = '5s'; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE; COMMIT")


@pytest.mark.parametrize("key", ["market_data", "options_data", "market_regimes", "optimization_results"])
def test_small_and_large_writes_store_the_same_rows(pg: PostgreSQLIntegration, sql, key: str) -> None:
    """Writes of at most SMALL_BATCH_ROWS rows travel pipelined over psycopg as
    ``INSERT ... unnest`` (regime_io._conn.pipeline), larger ones over ADBC COPY: every
    table stores the same rows (every column, as text) either way, NULLs included."""
    from regime_io._conn.pipeline import SMALL_BATCH_ROWS
    from tests._reading_data import bars as random_bars
    from tests._reading_data import options, regimes

    t0 = dt.datetime(2024, 3, 4, 9, 15)
    frame = {
        "market_data": lambda: random_bars(["X"], ["1m", "5m"], t0, 60),
        "options_data": lambda: options("X", [dt.date(2024, 3, 28)], [21000.0, 21500.5], t0, 20),
        "market_regimes": lambda: regimes(["X"], ["5m", "1h"], t0, 60),
        "optimization_results": lambda: pl.DataFrame({
            "symbol": ["X"] * 80, "algorithm": [f"ga{i % 3}" for i in range(80)],
            "parameters": [json.dumps({"k": i, "w": [0.5, None], "s": "x\"y"}) for i in range(80)],
            "fitness_value": [i / 7 for i in range(80)],
            "start_date": [t0] * 80, "end_date": [t0 + dt.timedelta(days=i) for i in range(80)],
            "timeframe": ["1d"] * 80, "run_id": [f"run{i}" for i in range(80)]}),
    }[key]()
    assert frame.height > SMALL_BATCH_ROWS
    spec_columns = [c.name for c in table_spec(key).columns if c.name != "symbol"]
    big = pg.save(key, frame.with_columns(pl.lit("BIG").alias("symbol")))
    small = [pg.save(key, part.with_columns(pl.lit("SMALL").alias("symbol")))
             for part in frame.iter_slices(SMALL_BATCH_ROWS // 2)]
    assert big.inserted == sum(r.inserted for r in small) == frame.height
    # Both small paths ran: rows straight in, and (JSON, or a probe that met stored rows) merged.
    assert "copy" in {r.method for r in small} or key == "optimization_results"
    listed = ", ".join(f'"{c}"::text' for c in spec_columns)
    table = f'"{pg.settings.schema}"."{pg.settings.table_name(key)}"'
    rows = {way: sql(f"SELECT {listed} FROM {table} WHERE symbol = %s ORDER BY {listed}", (way,))
            for way in ("BIG", "SMALL")}
    assert rows["BIG"] == rows["SMALL"] and len(rows["BIG"]) == frame.height


def test_refused_small_writes_leave_the_connection_and_catalog_exact(pg: PostgreSQLIntegration, sql) -> None:
    """Pipelined small writes that the server refuses mid-transaction (a collision with
    on_conflict='error'), mixed with rolling saves, staged updates and inserts on the same
    pooled connections: every refusal is a WriteError, later writes still work (prepared
    statements intact), and the series catalog matches the stored rows exactly."""
    import random

    rng = random.Random(7)
    t0 = dt.datetime(2024, 3, 4, 9, 15)

    def minute(i: int, confidence: float = 1.0) -> pl.DataFrame:
        t = t0 + dt.timedelta(minutes=i)
        return pl.DataFrame({"symbol": ["A", "B"], "timestamp": [t, t], "regime": ["x", "y"],
                             "confidence": [confidence, 2.0]})

    refused = 0
    for i in range(80):
        kind = rng.random()
        try:
            if kind < 0.35:
                pg.save("1min", minute(rng.randint(0, i)), on_conflict="error")
            elif kind < 0.6:
                pg.save_rolling_market_regime(minute(i), window_minutes=20)
            elif kind < 0.8:
                pg.save("1min", minute(rng.randint(0, i), confidence=float(rng.randint(0, 90))))
            else:
                pg.save_market_data(bars(1, start=t0 + dt.timedelta(minutes=rng.randint(0, i))),
                                    on_conflict=rng.choice(["error", "update", "ignore"]))
        except WriteError:
            refused += 1
    assert refused > 0
    for key in ("market_regimes_1min", "market_data"):
        table = f'"{pg.settings.schema}"."{pg.settings.table_name(key)}"'
        stored = sql(f"SELECT symbol, min(timestamp), max(timestamp), count(*) FROM {table} GROUP BY 1 ORDER BY 1")
        cat = pg.catalog(key)
        assert list(zip(cat["symbol"], cat["first_timestamp"], cat["last_timestamp"], cat["row_count"],
                        strict=True)) == stored


def test_a_single_connection_pool_writes_and_reads(pg: PostgreSQLIntegration) -> None:
    """max_connections = 1: a small write reads what it needs (the recorded time kinds)
    before it takes the pool's only lookup connection, so it never waits on itself."""
    from regime_io.config import settings_replace

    pg.save_market_data(bars(2))  # the table's time kind is recorded
    single = PostgreSQLIntegration(settings=settings_replace(pg.settings, max_connections=1, connection_timeout=5))
    try:
        assert single.save_market_data(bars(2, start=T0 + dt.timedelta(minutes=5))).inserted == 2
        assert single.save_rolling_market_regime(pl.DataFrame({"symbol": ["A"], "timestamp": [T0], "regime": ["x"],
                                                                "confidence": [1.0]})).inserted == 1
        assert single.get_latest("bars", "NIFTY")["timestamp"].to_list() == [T0 + dt.timedelta(minutes=6)]
    finally:
        single.close()


def test_spellings_of_one_key_in_a_ranked_batch_are_one_key(pg: PostgreSQLIntegration) -> None:
    """A batch of 129 to 100,000 rows reads each text key column once (key_order.TextCodes):
    symbols and timeframes respelled to their stored form rank as that form, so rows that
    differ only by spelling are one key (refused as duplicates, or the last kept) and the
    rest go in key order."""
    n = 150
    frame = pl.concat([bars(n, symbol=s).with_columns(pl.lit(tf).alias("timeframe"))
                       for s, tf in (("nifty", "1min"), ("BANKNIFTY", "1m"))])
    assert pg.save_market_data(frame.sample(fraction=1.0, shuffle=True, seed=3)).inserted == 2 * n
    got = pg.get_market_data(["NIFTY", "BANKNIFTY"], T0, T0 + dt.timedelta(days=1), timeframe="1m")
    assert got.height == 2 * n and sorted(set(got["symbol"])) == ["BANKNIFTY", "NIFTY"]
    clash = pl.concat([bars(n, symbol="NIFTY").with_columns(pl.lit("1m").alias("timeframe")),
                       bars(1, symbol=" nifty").with_columns(pl.lit("1T").alias("timeframe"))])
    with pytest.raises(ValidationError, match="duplicate natural key"):
        pg.save_market_data(clash)
    kept = pg.save_market_data(clash.with_columns(pl.col("close") + 1), on_duplicate="keep_last")
    assert kept.rows == n and kept.updated == n
