"""Hostile text is data, never SQL: quotes, semicolons, backslashes, ``'; DROP TABLE x; --``,
placeholders, control characters, very long and non-ASCII text are stored and read back
literally, by psycopg (independent) and by the library's own readers (connectorx, which
renders literals, and ADBC, which binds them). NUL bytes are refused clearly. Hostile
schema and table names are refused by ``load_settings`` and, if they reach the library
some other way, stay quoted identifiers.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from typing import Any

import polars as pl
import psycopg
import pytest

from regime_io import ConfigError, PostgreSQLIntegration, UsageError, ValidationError, load_settings
from regime_io._read import readers as reading
from regime_io.config import settings_replace

T0 = dt.datetime(2024, 1, 2, 9, 15)

# Each fits VARCHAR(20) (symbol); several are made to be exactly 20 characters.
HOSTILE_SYMBOLS = [
    "O'Neil",
    "''",
    'dq"uote',
    "semi;colon",
    "back\\slash\\",
    "\\'",
    "'; DROP TABLE x; --",
    "x'); DELETE FROM t;",
    "E'\\x41'",
    "$1",
    "$$;$tag$",
    "%s %(name)s",
    "?",
    "{}[]",
    "\\N",  # COPY text format's NULL marker
    "NULL",
    "a\tb\nc\rd",
    "  padded  ",
    "निफ्टी",
    "📈🐻‍❄️",
    "न" * 20,  # 20 characters, 60 bytes
    "\u2028\u2029\ufeff",
    "ÄÖÜ" + "ß" * 17,
]
# Stored without surrounding whitespace (symbols are stripped on every path).
STRIPPED = [s.strip() for s in HOSTILE_SYMBOLS]
HOSTILE_REGIMES = [
    "Strong_Bullish'; DROP TABLE x; --",
    "\\\\server\\share",
    "'" * 50,  # exactly VARCHAR(50)
    "🐂" * 50,
    "मजबूत तेजी; --",
    "tab\tnew\nline",
]
HOSTILE_JSON: dict[str, Any] = {
    "'; DROP TABLE x; --": "value with ' and \" and \\",
    "नि": ["😀", "\u2028", "$1", "%s"],
    "nested": {"$$": "E'\\x00-not-a-nul'", "semi;": ["a;", "b'", "c\\"]},
    "": "empty key",
    "long": "x" * 10_000,
}


@pytest.fixture
def canary(pg: PostgreSQLIntegration, sql: Any) -> Iterator[str]:
    """A table named ``x`` in the test schema (the target of the hostile strings): it must survive."""
    name = f'"{pg.settings.schema}"."x"'
    sql(f"CREATE TABLE {name} (v int)")
    sql(f"INSERT INTO {name} VALUES (42)")
    yield name
    assert sql(f"SELECT v FROM {name}") == [(42,)]


def _qualified(pg: PostgreSQLIntegration, key: str) -> str:
    return f'"{pg.settings.schema}"."{pg.settings.table_name(key)}"'  # type: ignore[arg-type]


def test_hostile_symbols_round_trip_literally(settings: Any, sql: Any, canary: str) -> None:
    # symbol_case = keep: the symbols' case round-trips too (only surrounding spaces go).
    with PostgreSQLIntegration(settings=settings_replace(settings, symbol_case="keep")) as pg:
        pg.initialize_database()
        _hostile_symbols_round_trip(pg, sql)


def _hostile_symbols_round_trip(pg: PostgreSQLIntegration, sql: Any) -> None:
    n = len(HOSTILE_SYMBOLS)
    regimes = [HOSTILE_REGIMES[i % len(HOSTILE_REGIMES)] for i in range(n)]
    frame = pl.DataFrame({
        "symbol": HOSTILE_SYMBOLS,
        "timestamp": [T0] * n,
        "regime": regimes,
        "confidence": [50.0] * n,
        "greek_sentiment": list(reversed(HOSTILE_SYMBOLS)),
        "trending_oi_pa": regimes,
    })
    assert pg.save_1min_market_regime(frame).inserted == n
    # Independent check: psycopg reads exactly what was given.
    stored = sql(f"SELECT symbol, regime, greek_sentiment, trending_oi_pa FROM {_qualified(pg, 'market_regimes_1min')}")
    expected = list(zip(STRIPPED, regimes, reversed(HOSTILE_SYMBOLS), regimes, strict=True))
    assert sorted(stored) == sorted(expected)
    # The library's readers, symbol by symbol: range reads (connectorx renders the symbol as a
    # literal) and latest rows (ADBC binds it). Each finds exactly its own row.
    for symbol, regime in zip(HOSTILE_SYMBOLS, regimes, strict=True):
        rows = pg.get_1min_market_regimes(symbol, T0, T0)
        assert rows.get_column("symbol").to_list() == [symbol.strip()]
        assert rows.get_column("regime").to_list() == [regime]
        latest = pg.get_latest_1min_market_regime(symbol)
        assert latest.get_column("symbol").to_list() == [symbol.strip()]
        assert latest.get_column("regime").to_list() == [regime]
    # All at once, through the ADBC reader's symbol list.
    every = pg.get_latest_1min_market_regime(symbols=HOSTILE_SYMBOLS)
    assert sorted(every.get_column("symbol").to_list()) == sorted(STRIPPED)


def test_hostile_values_in_market_data_filters(pg: PostgreSQLIntegration, sql: Any, canary: str) -> None:
    symbols = ["'; DROP TABLE x; --", "\\", "$2", "५मि"]
    frame = pl.DataFrame({
        "symbol": symbols,
        "timestamp": [T0] * 4,
        "open": [1.0] * 4, "high": [2.0] * 4, "low": [0.5] * 4, "close": [1.5] * 4,
        "volume": [10, 20, 30, 40],
        "timeframe": ["1m"] * 4,
    })
    assert pg.save_market_data(frame).inserted == 4
    for symbol, volume in zip(symbols, [10, 20, 30, 40], strict=True):
        bars = pg.get_market_data(symbol, T0, T0, timeframe="1m")
        assert bars.get_column("volume").to_list() == [volume]
        assert bars.get_column("symbol").to_list() == [symbol.upper()]  # symbol_case = upper, the default
    # Timeframes are a vocabulary now: hostile text is refused before any SQL is written.
    for tf in ["1m';--", "$2", "५मि"]:
        with pytest.raises(UsageError, match="timeframe"):
            pg.get_market_data(symbols[0], T0, T0, timeframe=tf)
    assert sql(f"SELECT count(*) FROM {_qualified(pg, 'market_data')}") == [(4,)]


def test_hostile_regimes_in_distribution_and_transitions(pg: PostgreSQLIntegration, canary: str) -> None:
    regimes = HOSTILE_REGIMES * 2
    frame = pl.DataFrame({
        "symbol": ["S"] * len(regimes),
        "timestamp": [T0 + dt.timedelta(minutes=i) for i in range(len(regimes))],
        "regime": regimes,
        "confidence": [50.0] * len(regimes),
    })
    pg.save_1min_market_regime(frame)
    dist = pg.get_market_regime_distribution("S", T0, T0 + dt.timedelta(hours=1))
    assert sorted(dist.get_column("regime").to_list()) == sorted(HOSTILE_REGIMES)
    assert dist.get_column("count").to_list() == [2] * len(HOSTILE_REGIMES)


def test_hostile_json_parameters_round_trip(pg: PostgreSQLIntegration, sql: Any, canary: str) -> None:
    result = {"symbol": "'; DROP TABLE x; --", "algorithm": "ga\\'; --", "parameters": HOSTILE_JSON,
              "fitness_value": 1.5, "start_date": T0, "end_date": T0, "timeframe": "5m"}
    assert pg.save_optimization_result(result).inserted == 1
    stored = sql(f"SELECT symbol, algorithm, parameters FROM {_qualified(pg, 'optimization_results')}")
    assert stored == [("'; DROP TABLE X; --", "ga\\'; --", HOSTILE_JSON)]  # symbols upper-cased (symbol_case)
    # The library's reader (bound parameters): the JSON text as stored, and decoded.
    raw = reading.get_optimization_results(pg.db, "'; DROP TABLE x; --", algorithm="ga\\'; --", parameters="json")
    assert raw.height == 1
    assert json.loads(raw.get_column("parameters")[0]) == HOSTILE_JSON
    decoded = pg.get_optimization_results("'; DROP TABLE x; --", algorithm="ga\\'; --")
    assert decoded.get_column("parameters").to_list() == [HOSTILE_JSON]


def test_json_given_as_text_keeps_its_content(pg: PostgreSQLIntegration, sql: Any) -> None:
    text = '{"q": "it\'s \\"quoted\\"", "u": "\\u0928\\u093f", "b": "\\\\"}'
    pg.save_optimization_result({"symbol": "S", "algorithm": "a", "parameters": text, "fitness_value": 1,
                                 "start_date": T0, "end_date": T0, "timeframe": "5m"})
    [(stored,)] = sql(f"SELECT parameters FROM {_qualified(pg, 'optimization_results')}")
    assert stored == {"q": 'it\'s "quoted"', "u": "नि", "b": "\\"}


def test_text_at_the_varchar_limit_is_kept_and_one_more_is_refused(pg: PostgreSQLIntegration, sql: Any) -> None:
    ok = {"symbol": "🐻" * 20, "timestamp": T0, "regime": "'" * 50, "confidence": 1.0}
    assert pg.save_1min_market_regime(ok).inserted == 1
    assert sql(f"SELECT symbol, regime FROM {_qualified(pg, 'market_regimes_1min')}") == [("🐻" * 20, "'" * 50)]
    with pytest.raises(ValidationError, match=r"VARCHAR\(20\)") as info:
        pg.save_1min_market_regime(dict(ok, symbol="🐻" * 21))
    assert (info.value.column, info.value.row) == ("symbol", 0)


@pytest.mark.parametrize(("column", "value"), [
    ("symbol", "NIF\x00TY"),
    ("regime", "\x00"),
    ("greek_sentiment", "pos\x00itive"),
])
def test_nul_bytes_in_text_are_refused_clearly(pg: PostgreSQLIntegration, sql: Any, column: str, value: str) -> None:
    row = {"symbol": "S", "timestamp": T0, "regime": "r", "confidence": 1.0, column: value}
    with pytest.raises(ValidationError, match="NUL") as info:
        pg.save_1min_market_regime([{"symbol": "S", "timestamp": T0 - dt.timedelta(minutes=1), "regime": "r",
                                     "confidence": 1.0}, row])
    assert (info.value.table, info.value.column, info.value.row) == ("market_regimes_1min", column, 1)
    assert sql(f"SELECT count(*) FROM {_qualified(pg, 'market_regimes_1min')}") == [(0,)]


@pytest.mark.parametrize("parameters", [{"k": "a\x00b"}, {"a\x00": 1}, '{"k": "\\u0000"}'])
def test_nul_in_json_is_refused_clearly(pg: PostgreSQLIntegration, sql: Any, parameters: Any) -> None:
    with pytest.raises(ValidationError, match="NUL") as info:
        pg.save_optimization_result({"symbol": "S", "algorithm": "a", "parameters": parameters, "fitness_value": 1,
                                     "start_date": T0, "end_date": T0, "timeframe": "5m"})
    assert (info.value.column, info.value.row) == ("parameters", 0)
    assert sql(f"SELECT count(*) FROM {_qualified(pg, 'optimization_results')}") == [(0,)]


@pytest.mark.parametrize("call", [
    lambda pg: pg.get_1min_market_regimes("NIF\x00TY", T0, T0),
    lambda pg: pg.get_latest_1min_market_regime("NIF\x00TY"),
    lambda pg: pg.get_market_data("S", T0, T0, timeframe="1\x00m"),
    lambda pg: pg.get_optimization_results("S", algorithm="a\x00"),
], ids=["range", "latest", "timeframe", "optimisation"])
def test_nul_bytes_in_reader_arguments_are_refused(pg: PostgreSQLIntegration, call: Any) -> None:
    with pytest.raises(UsageError, match="NUL"):
        call(pg)


# -- names from configuration -------------------------------------------------------------

HOSTILE_NAMES = ['x"; DROP TABLE x; --', "x; DROP SCHEMA public CASCADE", "x' OR '1'='1", "a.b", "ok\x00"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_in_configuration_are_refused(name: str) -> None:
    # (tests/test_identifiers.py covers many more spellings; this is the end-to-end view.)
    config = {"database": {"schema": name, "table_prefix": name}, "tables": {"1min_market_regimes": name}}
    with pytest.raises(ConfigError) as info:
        load_settings(config=config, env={})
    keys = {p.split(":")[0].split(" ")[0] for p in info.value.problems}
    assert keys == {"schema", "table_prefix", "tables.1min_market_regimes"}


def test_a_hostile_schema_that_bypasses_validation_stays_one_quoted_name(server: Any, sql: Any) -> None:
    """Second line of defence: Settings built without load_settings (settings_replace skips
    the checks) still quote every identifier, so the 'name' creates a strangely named
    schema and table instead of running SQL."""
    tag = uuid.uuid4().hex[:6]
    victim = f"victim_{tag}"
    sql(f'CREATE SCHEMA "{victim}"')
    sql(f'CREATE TABLE "{victim}"."x" (v int)')
    schema = f'h{tag}"; DROP TABLE {victim}.x; --'
    prefix = 'p"; DROP TABLE x; --_'
    hostile = settings_replace(server.settings, schema=schema, table_prefix=prefix)
    try:
        with PostgreSQLIntegration(settings=hostile) as pg:
            pg.initialize_database()
            pg.save_1min_market_regime({"symbol": "S", "timestamp": T0, "regime": "r", "confidence": 1.0})
            assert pg.get_1min_market_regimes("S", T0, T0).height == 1
            assert pg.get_latest_1min_market_regime("S").height == 1
        assert sql("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (schema,)) == [(1,)]
        tables = sql("SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = %s AND c.relkind = 'p'", (schema,))
        assert (prefix + "market_regimes_1min",) in tables
        assert sql(f'SELECT count(*) FROM "{victim}"."x"') == [(0,)]  # still there
    finally:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema)))
            conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(victim)))
