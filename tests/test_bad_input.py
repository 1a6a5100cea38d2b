"""The bad-input catalogue: every bad batch, bad reader call, bad configuration and bad
address gives a specific RegimeIOError subclass that names what is wrong, and changes
no row.

Writer cases run against one schema whose five tables already hold rows with the same
natural keys as the bad batches, so a batch that slipped through would show up as a
changed row. After every case the full contents of all five tables (including ``id``
and ``created_at``) are compared with psycopg.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import polars as pl
import psycopg
import pytest
from _auth import password_role

from regime_io import (
    ConfigError,
    PostgreSQLIntegration,
    RegimeIOError,
    Secret,
    ServerError,
    ServerUnavailableError,
    UsageError,
    ValidationError,
    load_settings,
)
from regime_io.config import settings_replace
from regime_io.tables import TABLES

T0 = dt.datetime(2024, 1, 2, 9, 15)
N = 4


# -- valid batches (the seeded rows) ------------------------------------------------------


def market_data(n: int = N) -> pl.DataFrame:
    return pl.DataFrame({
        "symbol": ["NIFTY"] * n,
        "timestamp": [T0 + dt.timedelta(minutes=i) for i in range(n)],
        "open": [100.0 + i for i in range(n)],
        "high": [101.0 + i for i in range(n)],
        "low": [99.0 + i for i in range(n)],
        "close": [100.5 + i for i in range(n)],
        "volume": [1000 + i for i in range(n)],
        "timeframe": ["1m"] * n,
    })


def options_data(n: int = N) -> pl.DataFrame:
    return pl.DataFrame({
        "symbol": ["NIFTY"] * n,
        "expiry_date": [dt.date(2024, 1, 25)] * n,
        "strike_price": [21000.0 + 50 * i for i in range(n)],
        "option_type": ["CE", "PE"] * (n // 2),
        "timestamp": [T0] * n,
        "open": [10.0] * n, "high": [12.0] * n, "low": [9.0] * n, "close": [11.0] * n,
        "volume": [100] * n, "open_interest": [5000] * n,
        "implied_volatility": [0.15] * n, "delta": [0.5] * n, "gamma": [0.001] * n,
        "theta": [-1.5] * n, "vega": [3.0] * n,
    })


def market_regimes(n: int = N) -> pl.DataFrame:
    return pl.DataFrame({
        "symbol": ["NIFTY"] * n,
        "timestamp": [T0 + dt.timedelta(minutes=5 * i) for i in range(n)],
        "timeframe": ["5m"] * n,
        "regime": ["Bullish"] * n,
        "confidence": [80.0 + i for i in range(n)],
        "atr_value": [12.5] * n,
    })


def regimes_1min(n: int = N) -> pl.DataFrame:
    return pl.DataFrame({
        "symbol": ["NIFTY"] * n,
        "timestamp": [T0 + dt.timedelta(minutes=i) for i in range(n)],
        "regime": ["Bullish"] * n,
        "confidence": [70.0 + i for i in range(n)],
        "directional_confidence": [60.0] * n,
        "greek_sentiment": ["positive"] * n,
    })


def optimization_results(n: int = 2) -> list[dict[str, Any]]:
    return [{"symbol": "NIFTY", "algorithm": "genetic", "parameters": {"ema": 9 + i, "atr": 14.5},
             "fitness_value": 1.5 + i, "start_date": dt.datetime(2024, 1, 1), "end_date": dt.datetime(2024, 3, 31),
             "timeframe": "5m", "run_id": f"run-{i}"} for i in range(n)]


VALID: dict[str, Callable[[], Any]] = {
    "market_data": market_data, "options_data": options_data, "market_regimes": market_regimes,
    "market_regimes_1min": regimes_1min, "optimization_results": optimization_results,
}


# -- mutations ----------------------------------------------------------------------------


def put(frame: pl.DataFrame, name: str, values: list[Any], dtype: Any = None) -> pl.DataFrame:
    """``frame`` with column ``name`` replaced (or added) by ``values``."""
    return frame.with_columns(pl.Series(name, values, dtype=dtype, strict=dtype is not None))


def at(frame: pl.DataFrame, name: str, row: int, value: Any) -> pl.DataFrame:
    """``frame`` with one cell changed (the column keeps its dtype)."""
    values = frame.get_column(name).to_list()
    values[row] = value
    return frame.with_columns(pl.Series(name, values, dtype=frame.schema[name]))


def pandas_at(frame: pl.DataFrame, name: str, row: int, value: Any) -> pd.DataFrame:
    """A pandas frame (as read from a messy CSV) with one odd value in an object column."""
    df = frame.to_pandas()
    df[name] = df[name].astype(object)
    df.loc[row, name] = value
    return df


def dict_rows_at(frame: pl.DataFrame, name: str, row: int, value: Any) -> list[dict[str, Any]]:
    rows = frame.to_dicts()
    rows[row][name] = value
    return rows


def opt_at(row: int, **changes: Any) -> list[dict[str, Any]]:
    rows = optimization_results()
    rows[row].update(changes)
    return rows


def opt_params(row: int, parameters: Any) -> list[dict[str, Any]]:
    return opt_at(row, parameters=parameters)


def mixed_zone_pandas() -> pd.DataFrame:
    df = market_data().to_pandas()
    kolkata = ZoneInfo("Asia/Kolkata")
    df["timestamp"] = pd.Series([dt.datetime(2024, 1, 2, 9, 15, tzinfo=dt.timezone.utc),
                                 dt.datetime(2024, 1, 2, 14, 46, tzinfo=kolkata),
                                 dt.datetime(2024, 1, 2, 9, 17),  # naive: which zone?
                                 dt.datetime(2024, 1, 2, 9, 18, tzinfo=dt.timezone.utc)], dtype=object)
    return df


@dataclass(frozen=True)
class Case:
    id: str
    table: str
    make: Callable[[], Any]
    column: str | None
    row: int | None
    match: str  # a fragment of the message saying why
    error: type[RegimeIOError] = ValidationError
    options: dict[str, Any] = field(default_factory=dict)


md, od, mr, m1 = market_data, options_data, market_regimes, regimes_1min

CASES = [
    # columns
    Case("missing-column", "market_data", lambda: md().drop("close"), "close", None, "missing required column"),
    Case("extra-column", "market_data", lambda: md().with_columns(pl.lit("x").alias("note")), "note", None,
         "unknown column"),
    Case("misspelled-column", "market_data", lambda: md().rename({"close": "clsoe"}), "close", None, "misspelled"),
    Case("zero-column-frame", "market_data", lambda: pl.DataFrame(), None, None, "no columns"),
    Case("zero-column-pandas", "options_data", lambda: pd.DataFrame(), None, None, "no columns"),
    Case("list-of-non-dicts", "market_regimes", lambda: [1, 2, 3], None, None, "one dict per row"),
    Case("none", "market_regimes_1min", lambda: None, None, None, "nothing to write"),
    # wrong dtypes
    Case("text-prices", "market_data", lambda: put(md(), "open", ["100", "101", "x", "103"]), "open", 0,
         "expected numbers"),
    Case("text-in-price-pandas", "market_data", lambda: pandas_at(md(), "open", 2, "abc"), "open", 2,
         "mixes number and text"),
    Case("text-in-price-dicts", "market_data", lambda: dict_rows_at(md(), "high", 3, "n/a"), "high", 3,
         "mixes number and text"),
    Case("fractional-volume", "market_data", lambda: put(md(), "volume", [1.0, 2.0, 2.5, 3.0]), "volume", 2,
         "whole numbers"),
    Case("boolean-volume", "market_data", lambda: put(md(), "volume", [True, False, True, True]), "volume", 0,
         "whole numbers"),
    Case("boolean-in-close-pandas", "market_data", lambda: pandas_at(md(), "close", 1, True), "close", 1,
         "mixes number and bool"),
    Case("text-in-delta", "options_data", lambda: dict_rows_at(od(), "delta", 1, "0.5x"), "delta", 1,
         "mixes number and text"),
    Case("boolean-confidence", "market_regimes_1min", lambda: put(m1(), "confidence", [True] * N),
         "confidence", 0, "expected numbers"),
    Case("integer-timestamps", "market_data", lambda: put(md(), "timestamp", [1, 2, 3, 4]), "timestamp", 0,
         "expected datetimes"),
    # NaN and infinity
    Case("nan-price", "market_data", lambda: at(md(), "open", 1, float("nan")), "open", 1, "NaN"),
    Case("inf-price", "market_data", lambda: at(md(), "high", 3, float("inf")), "high", 3, "infinity"),
    Case("minus-inf-price", "options_data", lambda: at(od(), "low", 0, float("-inf")), "low", 0, "infinity"),
    Case("nan-in-nullable-greek", "options_data", lambda: at(od(), "implied_volatility", 2, float("nan")),
         "implied_volatility", 2, "NaN"),
    # decimal overflow
    Case("overflow-10-2", "market_data", lambda: at(md(), "close", 2, 1e8), "close", 2, "overflows NUMERIC(10,2)"),
    Case("overflow-10-2-after-rounding", "market_data", lambda: at(md(), "close", 1, 99999999.995), "close", 1,
         "after rounding"),
    Case("overflow-strike", "options_data", lambda: at(od(), "strike_price", 0, -1e8), "strike_price", 0,
         "overflows NUMERIC(10,2)"),
    Case("confidence-1000", "market_regimes", lambda: at(mr(), "confidence", 1, 1000.0), "confidence", 1,
         "overflows NUMERIC(5,2)"),
    Case("confidence-1000-1min", "market_regimes_1min", lambda: at(m1(), "confidence", 3, 1000.0), "confidence", 3,
         "overflows NUMERIC(5,2)"),
    Case("confidence-rounds-to-1000", "market_regimes_1min",
         lambda: at(m1(), "directional_confidence", 0, 999.999), "directional_confidence", 0, "after rounding"),
    Case("overflow-10-4", "market_regimes", lambda: at(mr(), "atr_value", 2, 1e6), "atr_value", 2,
         "overflows NUMERIC(10,4)"),
    Case("overflow-fitness", "optimization_results", lambda: opt_at(1, fitness_value=-2e6), "fitness_value", 1,
         "overflows NUMERIC(10,4)"),
    # negative counts (documented as invalid: no real feed has them)
    Case("negative-volume", "market_data", lambda: at(md(), "volume", 3, -1), "volume", 3, "negative"),
    Case("negative-open-interest", "options_data", lambda: at(od(), "open_interest", 2, -5), "open_interest", 2,
         "negative"),
    # NULLs in NOT NULL columns
    Case("null-symbol", "market_data", lambda: at(md(), "symbol", 3, None), "symbol", 3, "NOT NULL"),
    # Empty key text: readers refuse "" as an argument, so it could never be read back
    Case("empty-symbol", "market_data", lambda: at(md(), "symbol", 2, ""), "symbol", 2, "is empty"),
    Case("empty-timeframe", "market_regimes", lambda: at(mr(), "timeframe", 1, ""), "timeframe", 1, "is empty"),
    Case("null-timestamp", "market_data", lambda: at(md(), "timestamp", 1, None), "timestamp", 1, "NOT NULL"),
    Case("null-regime", "market_regimes", lambda: at(mr(), "regime", 0, None), "regime", 0, "NOT NULL"),
    Case("null-open-interest", "options_data", lambda: at(od(), "open_interest", 1, None), "open_interest", 1,
         "NOT NULL"),
    Case("null-parameters", "optimization_results", lambda: opt_params(1, None), "parameters", 1, "NOT NULL"),
    # text
    Case("symbol-21-chars", "market_data", lambda: at(md(), "symbol", 2, "X" * 21), "symbol", 2, "VARCHAR(20)"),
    Case("regime-51-chars", "market_regimes", lambda: at(mr(), "regime", 1, "R" * 51), "regime", 1, "VARCHAR(50)"),
    Case("greek-sentiment-51-chars", "market_regimes_1min", lambda: at(m1(), "greek_sentiment", 2, "g" * 51),
         "greek_sentiment", 2, "VARCHAR(50)"),
    Case("bad-option-type", "options_data", lambda: at(od(), "option_type", 1, "XX"), "option_type", 1,
         "allowed"),
    Case("nul-in-symbol", "market_data", lambda: at(md(), "symbol", 1, "NIF\x00TY"), "symbol", 1, "NUL"),
    # timestamps and dates
    Case("unparsable-timestamp", "market_data",
         lambda: put(md(), "timestamp", ["2024-01-02 09:15", "yesterday", "2024-01-02 09:17", "2024-01-02 09:18"]),
         "timestamp", 1, "not ISO 8601"),
    # A day-first/month-first string is refused, never guessed: "04/03/2024" once stored 4 March.
    Case("day-first-timestamp", "market_data",
         lambda: put(md(), "timestamp", ["2024-01-02 09:15", "04/03/2024 09:15", "2024-01-02 09:17",
                                         "2024-01-02 09:18"]),
         "timestamp", 1, "date_format="),
    Case("month-first-expiry", "options_data",
         lambda: put(od(), "expiry_date", ["2024-01-25", "2024-01-25", "01/02/2024", "2024-01-25"]),
         "expiry_date", 2, "not ISO 8601"),
    Case("mixed-zone-strings", "market_data",
         lambda: put(md(), "timestamp", ["2024-01-02 09:15", "2024-01-02T09:16+05:30", "2024-01-02 09:17",
                                         "2024-01-02 09:18"]),
         "timestamp", 1, "with and without a UTC offset"),
    Case("mixed-zone-pandas-objects", "market_data", mixed_zone_pandas, "timestamp", 2,
         "zoned datetime and naive datetime"),
    Case("expiry-with-time-of-day", "options_data",
         lambda: put(od(), "expiry_date", [dt.datetime(2024, 1, 25)] * 3 + [dt.datetime(2024, 1, 25, 15, 30)]),
         "expiry_date", 3, "time of day"),
    Case("unparsable-start-date", "optimization_results", lambda: opt_at(0, start_date="01/02/2024 9am"),
         "start_date", 0, "not ISO 8601"),
    # duplicate keys in one batch
    Case("duplicate-keys", "market_data",
         lambda: at(md(), "timestamp", 3, T0 + dt.timedelta(minutes=2)), "symbol", 2, "duplicate natural key"),
    Case("duplicate-keys-1min", "market_regimes_1min", lambda: pl.concat([m1(), m1().head(1)]), "symbol", 0,
         "duplicate natural key"),
    # JSON parameters
    Case("parameters-set", "optimization_results", lambda: opt_params(1, {"windows": {9, 21}}), "parameters", 1,
         "not JSON-serialisable"),
    Case("parameters-top-level-set", "optimization_results", lambda: opt_params(1, {9, 21}), "parameters", 1,
         "not JSON-serialisable"),
    Case("parameters-object", "optimization_results", lambda: opt_params(0, {"model": object()}), "parameters", 0,
         "not JSON-serialisable"),
    Case("parameters-nan", "optimization_results", lambda: opt_params(0, {"atr": float("nan")}), "parameters", 0,
         "not JSON-serialisable"),
    Case("parameters-invalid-json-text", "optimization_results", lambda: opt_params(1, "{'ema': 9"), "parameters",
         1, "not valid JSON"),
    # unknown table
    Case("unknown-table", "nope", lambda: md(), None, None, "unknown table", error=UsageError),
]


# -- fixtures -----------------------------------------------------------------------------


def snapshot(sql: Any, pg: PostgreSQLIntegration) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the five tables, every column (id and created_at included)."""
    return {key: sql(f'SELECT * FROM "{pg.settings.schema}"."{pg.settings.table_name(key)}" ORDER BY id')
            for key in TABLES}


@pytest.fixture(scope="module")
def filled(server: Any) -> Iterator[PostgreSQLIntegration]:
    """One schema for the whole catalogue, its tables holding the valid versions of the batches."""
    schema = f"t_bad_{uuid.uuid4().hex[:10]}"
    pg = PostgreSQLIntegration(settings=settings_replace(server.settings, schema=schema))
    pg.initialize_database()
    for key, make in VALID.items():
        assert pg.save(key, make()).inserted > 0
    yield pg
    pg.close()
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_the_catalogue_is_big_enough() -> None:
    assert len(CASES) >= 30
    assert {c.table for c in CASES} >= set(TABLES)
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_batch_is_refused_by_name_and_changes_nothing(filled: PostgreSQLIntegration, sql: Any,
                                                          case: Case) -> None:
    before = snapshot(sql, filled)
    with pytest.raises(RegimeIOError) as info:
        filled.save(case.table, case.make(), **case.options)
    err = info.value
    assert type(err) is case.error, f"{type(err).__name__}: {err}"
    text = str(err)
    assert case.match in text, text
    assert err.table == case.table
    assert case.table in text, text
    assert err.column == case.column, text
    if case.column is not None:
        assert any(form in text for form in (repr(case.column), f"{case.table}.{case.column}:",
                                             f"{case.column}=")), text
    assert err.row == case.row, text
    if case.row is not None:
        assert f"first bad row {case.row}" in text, text
    assert snapshot(sql, filled) == before


# -- empty input --------------------------------------------------------------------------


@pytest.mark.parametrize("table", list(TABLES))
@pytest.mark.parametrize("kind", ["polars", "pandas", "list"])
def test_an_empty_batch_is_a_no_op(filled: PostgreSQLIntegration, sql: Any, table: str, kind: str) -> None:
    valid = VALID[table]()
    frame = valid if isinstance(valid, pl.DataFrame) else pl.DataFrame(valid)
    data = {"polars": frame.head(0), "pandas": frame.head(0).to_pandas(), "list": []}[kind]
    before = snapshot(sql, filled)
    if kind == "list":
        # An empty list carries no columns: it is still an error to mistake it for data.
        with pytest.raises(ValidationError, match="no columns") as info:
            filled.save(table, data)
        assert info.value.table == table
    else:
        result = filled.save(table, data)
        assert (result.rows, result.inserted, result.updated, result.method) == (0, 0, 0, "empty")
    assert snapshot(sql, filled) == before


def test_a_refused_stream_into_a_new_month_can_be_retried(pg: PostgreSQLIntegration, sql: Any) -> None:
    # The stream's partitions are created inside its transaction; when the merge is refused
    # they roll back with it, and the corrected retry must create them again.
    september = market_data(10).with_columns(pl.col("timestamp") + dt.timedelta(days=250))
    with pytest.raises(ValidationError, match="two chunks") as info:
        pg.save_market_data(iter([september, september.head(2)]))
    assert info.value.table == "market_data"
    assert snapshot(sql, pg)["market_data"] == []
    assert pg.save_market_data(iter([september])).inserted == 10
    assert len(snapshot(sql, pg)["market_data"]) == 10


def test_a_valid_batch_after_the_catalogue_still_writes(filled: PostgreSQLIntegration, sql: Any) -> None:
    # The refusals left no aborted transaction or broken pooled connection behind.
    before = snapshot(sql, filled)
    result = filled.save_market_data(market_data().with_columns(pl.col("close") + 0.25))
    assert (result.inserted, result.updated) == (0, N)
    after = snapshot(sql, filled)
    assert len(after["market_data"]) == len(before["market_data"]) == N
    assert after["market_data"] != before["market_data"]


# -- readers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReaderCase:
    id: str
    call: Callable[[PostgreSQLIntegration], Any]
    names: tuple[str, ...]  # what the message must name (argument, table, value)
    table: str | None = None


READER_CASES = [
    ReaderCase("start-after-end", lambda pg: pg.get_market_data("NIFTY", "2024-01-03", "2024-01-02 10:00"),
               ("start", "end", "'2024-01-03'")),
    ReaderCase("start-after-end-datetimes",
               lambda pg: pg.get_1min_market_regimes("NIFTY", T0, T0 - dt.timedelta(seconds=1)),
               ("start_date", "end_date")),
    ReaderCase("start-is-an-int", lambda pg: pg.get_market_regimes("NIFTY", 20240101, "2024-01-02"),
               ("start", "int", "20240101")),
    ReaderCase("end-is-a-float", lambda pg: pg.get_options_data("NIFTY", "2024-01-01", 1.7e9),
               ("end", "float")),
    ReaderCase("end-unparsable", lambda pg: pg.get_market_data("NIFTY", "2024-01-01", "tomorrow"),
               ("end", "'tomorrow'")),
    ReaderCase("symbol-not-text", lambda pg: pg.get_1min_market_regimes(42, "2024-01-01", "2024-01-02"),  # type: ignore[arg-type]
               ("symbol", "42")),
    ReaderCase("symbol-nul", lambda pg: pg.get_market_data("NIF\x00TY", "2024-01-01", "2024-01-02"),
               ("symbol", "NUL")),
    ReaderCase("unknown-column", lambda pg: pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02",
                                                               columns=["open", "vwap"]),
               ("market_data", "'vwap'"), table="market_data"),
    ReaderCase("latest-of-an-unknown-table", lambda pg: pg.get_latest("nope", "NIFTY"), ("'nope'",)),
    ReaderCase("top-zero", lambda pg: pg.get_optimization_results("NIFTY", top=0), ("top", "0"),
               table="optimization_results"),
    ReaderCase("bad-resample", lambda pg: pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02",
                                                             resample="5 parsecs"), ("resample", "'5 parsecs'")),
    ReaderCase("strike-not-a-number", lambda pg: pg.get_options_data("NIFTY", "2024-01-01", "2024-01-02",
                                                                    strikes=["21000x"]), ("strikes", "21000x"),
               table="options_data"),
    ReaderCase("bad-distribution-table",
               lambda pg: pg.get_market_regime_distribution("NIFTY", "2024-01-01", "2024-01-02",
                                                            table="weekly"),  # type: ignore[arg-type]
               ("'weekly'",)),
]


@pytest.mark.parametrize("case", READER_CASES, ids=[c.id for c in READER_CASES])
def test_reader_misuse_is_a_read_error_naming_the_argument(filled: PostgreSQLIntegration, sql: Any,
                                                           case: ReaderCase) -> None:
    before = snapshot(sql, filled)
    with pytest.raises(UsageError) as info:
        case.call(filled)
    text = str(info.value)
    for name in case.names:
        assert name in text, text
    if case.table is not None:
        assert info.value.table == case.table
    assert snapshot(sql, filled) == before


# -- configuration and connecting ---------------------------------------------------------


def test_bad_configuration_lists_every_problem() -> None:
    config = {
        "database": {"port": "54x32", "schema": "a b", "storage_timezone": "Mars/Olympus",
                     "partition_interval": "hour", "enabled": "perhaps"},
        "connection": {"max_connections": 0, "connection_timeout": -1, "retry_attempts": 1.5, "retry_delay": "soon"},
        "tables": {"market_data": "md; DROP TABLE x"},
    }
    with pytest.raises(ConfigError) as info:
        load_settings(config=config, env={})
    problems = info.value.problems
    expected = ["port", "schema", "storage_timezone", "partition_interval", "enabled", "max_connections",
                "connection_timeout", "retry_attempts", "retry_delay", "tables.market_data"]
    for key in expected:
        assert any(p.startswith(key) for p in problems), (key, problems)
    assert len(problems) == len(expected)
    assert f"({len(expected)} problems)" in str(info.value)


def _closed_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the block ends: nothing listens


def test_unreachable_host_is_retried_as_configured_then_reported(
        settings: Any, caplog: pytest.LogCaptureFixture) -> None:
    port = _closed_tcp_port()
    unreachable = settings_replace(settings, host="127.0.0.1", port=port, retry_attempts=2, retry_delay=0.1,
                                   connection_timeout=2, password=Secret("s3cret-unreach"))
    with PostgreSQLIntegration(settings=unreachable) as pg, caplog.at_level(logging.DEBUG):
        with pytest.raises(ServerUnavailableError) as info:
            pg.save_market_data(market_data())
        attempts = [r.getMessage() for r in caplog.records if "failed (attempt" in r.getMessage()]
        assert len(attempts) == 3, attempts  # 1 + retry_attempts
        assert [m.split("attempt ")[1][:3] for m in attempts] == ["1/3", "2/3", "3/3"]
        text = str(info.value)
        assert f"127.0.0.1:{port}" in text and "after 3 attempts" in text and "0.1s apart" in text
        # Readers give the same class of error for the same cause.
        with pytest.raises(ServerUnavailableError) as read_info:
            pg.get_market_data("NIFTY", "2024-01-01", "2024-01-02")
        assert f"127.0.0.1:{port}" in str(read_info.value)
    assert "s3cret-unreach" not in caplog.text + text + str(read_info.value)


def test_wrong_password_is_a_server_error_for_writers_and_readers(server: Any, settings: Any, sql: Any,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    with password_role(server, "correct horse") as role:
        sql(f'CREATE SCHEMA "{settings.schema}" AUTHORIZATION "{role}"')
        right = settings_replace(settings, user=role, password=Secret("correct horse"), retry_attempts=2,
                                 retry_delay=30)  # a retry would hang the test: it must not happen
        with PostgreSQLIntegration(settings=right) as pg:
            pg.initialize_database()
            pg.save_market_data(market_data())
        before = sql(f'SELECT * FROM "{settings.schema}"."mr_market_data" ORDER BY id')
        wrong = settings_replace(right, password=Secret("wr0ng@pass#word"))
        with PostgreSQLIntegration(settings=wrong) as pg, caplog.at_level(logging.DEBUG):
            with pytest.raises(ServerError) as write_info:
                pg.save_market_data(market_data().with_columns(pl.col("close") - 0.25))
            with pytest.raises(ServerError) as read_info:
                pg.get_market_data("NIFTY", "2024-01-01", "2024-01-03")
        for info in (write_info, read_info):
            assert not isinstance(info.value, ServerUnavailableError), info.value  # not retry-safe: fix the config
            assert "password authentication failed" in str(info.value)
            assert "wr0ng" not in str(info.value)
        assert "wr0ng" not in caplog.text
        assert not [r for r in caplog.records if "attempt 2/3" in r.getMessage()]
        assert sql(f'SELECT * FROM "{settings.schema}"."mr_market_data" ORDER BY id') == before


def test_unknown_role_and_database_are_server_errors(settings: Any) -> None:
    for changes, fragment in (({"user": "no_such_role_x"}, "no_such_role_x"),
                              ({"database": "no_such_db_x"}, "no_such_db_x")):
        bad = settings_replace(settings, retry_attempts=2, retry_delay=30, **changes)
        with PostgreSQLIntegration(settings=bad) as pg, pytest.raises(ServerError) as info:
            pg.save_market_data(market_data())
        assert not isinstance(info.value, ServerUnavailableError)
        assert fragment in str(info.value) and "does not exist" in str(info.value)
