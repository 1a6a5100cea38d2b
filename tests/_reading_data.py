"""Test data for the reader tests, inserted with psycopg (independent of the writers).

``insert(pg, sql, key, frame)`` creates the partitions the rows need, then inserts the
frame in one ``INSERT ... SELECT FROM unnest(...)`` statement, decimals passed as exact
``Decimal`` values and JSON as text cast to JSONB; then it refreshes the series catalog
(``refresh_catalog``), as a user does after loading rows with another tool.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from typing import Any

import polars as pl

from regime_io import PostgreSQLIntegration
from regime_io.tables import TABLES

_ARRAY_TYPES = {"text": "text[]", "decimal": "numeric[]", "timestamp": "timestamp[]", "date": "date[]",
                "bigint": "int8[]", "json": "text[]"}


def insert(pg: PostgreSQLIntegration, sql: Any, key: str, frame: pl.DataFrame) -> None:
    spec = TABLES[key]  # type: ignore[index]
    if frame.height == 0:
        return
    if spec.time_column is not None:
        times = frame.get_column(spec.time_column)
        pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, times.min(), times.max())
    columns = [c for c in spec.columns if c.name in frame.columns]
    arrays = []
    for c in columns:
        values = frame.get_column(c.name).to_list()
        if c.kind == "decimal":
            values = [None if v is None else Decimal(str(v)) for v in values]
        elif c.kind == "json":
            values = [v if isinstance(v, str) else json.dumps(v) for v in values]
        arrays.append(values)
    aliases = [f"c{i}" for i in range(len(columns))]
    unnest = ", ".join(f"%s::{_ARRAY_TYPES[c.kind]}" for c in columns)
    select = ", ".join(f"{a}::{c.pg_type}" for a, c in zip(aliases, columns, strict=True))
    names = ", ".join(f'"{c.name}"' for c in columns)
    sql(f"INSERT INTO {pg.db.table(key)} ({names}) SELECT {select} FROM unnest({unnest}) AS u({', '.join(aliases)})",
        arrays)
    if spec.time_column is not None:
        pg.refresh_catalog(key)  # rows written by another tool: the documented way to catalogue them


def bars(symbols: list[str], timeframes: list[str], start: dt.datetime, n: int, *, step: dt.timedelta =
         dt.timedelta(minutes=1), seed: int = 1) -> pl.DataFrame:
    """Random-walk OHLCV bars with two-decimal prices (exactly representable as NUMERIC(10,2))."""
    rng = random.Random(seed)
    rows = []
    for symbol in symbols:
        for tf in timeframes:
            price = rng.uniform(100, 20000)
            for i in range(n):
                o = round(price, 2)
                c = round(max(1.0, price + rng.uniform(-5, 5)), 2)
                h = round(max(o, c) + rng.uniform(0, 3), 2)
                low = round(max(0.01, min(o, c) - rng.uniform(0, 3)), 2)
                rows.append((symbol, start + i * step, o, h, low, c, rng.randint(0, 10_000), tf))
                price = c
    return pl.DataFrame(rows, schema={"symbol": pl.String, "timestamp": pl.Datetime("us"), "open": pl.Float64,
                                      "high": pl.Float64, "low": pl.Float64, "close": pl.Float64,
                                      "volume": pl.Int64, "timeframe": pl.String}, orient="row")


REGIMES = ["bullish_trending", "bearish_trending", "sideways", "high_volatility"]


def regimes_1min(symbols: list[str], start: dt.datetime, n: int, *, step: dt.timedelta = dt.timedelta(minutes=1),
                 seed: int = 2) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for symbol in symbols:
        for i in range(n):
            rows.append((symbol, start + i * step, rng.choice(REGIMES), round(rng.uniform(0, 100), 2),
                         round(rng.uniform(-1, 1), 4), None if i % 3 else round(rng.uniform(0, 1), 4),
                         round(rng.uniform(0, 100), 2), None, rng.choice(["bullish", "bearish", None]), "neutral",
                         round(rng.uniform(-5, 5), 4), None))
    return pl.DataFrame(rows, schema={"symbol": pl.String, "timestamp": pl.Datetime("us"), "regime": pl.String,
                                      "confidence": pl.Float64, "directional_component": pl.Float64,
                                      "volatility_component": pl.Float64, "directional_confidence": pl.Float64,
                                      "volatility_confidence": pl.Float64, "greek_sentiment": pl.String,
                                      "trending_oi_pa": pl.String, "ema_signal": pl.Float64,
                                      "vwap_signal": pl.Float64}, orient="row")


def regimes(symbols: list[str], timeframes: list[str], start: dt.datetime, n: int, *,
            step: dt.timedelta = dt.timedelta(minutes=5), seed: int = 3) -> pl.DataFrame:
    rng = random.Random(seed)
    value_names = [c.name for c in TABLES["market_regimes"].columns[5:]]
    rows = []
    for symbol in symbols:
        for tf in timeframes:
            for i in range(n):
                values = [None if rng.random() < 0.2 else round(rng.uniform(-100, 100), 4) for _ in value_names]
                rows.append((symbol, start + i * step, tf, rng.choice(REGIMES), round(rng.uniform(0, 100), 2),
                             *values))
    schema: dict[str, Any] = {"symbol": pl.String, "timestamp": pl.Datetime("us"), "timeframe": pl.String,
                              "regime": pl.String, "confidence": pl.Float64}
    schema.update({n: pl.Float64 for n in value_names})
    return pl.DataFrame(rows, schema=schema, orient="row")


def options(symbol: str, expiries: list[dt.date], strikes: list[float], start: dt.datetime, n: int, *,
            step: dt.timedelta = dt.timedelta(minutes=1), seed: int = 4) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for expiry in expiries:
        for strike in strikes:
            for kind in ("CE", "PE"):
                for i in range(n):
                    o = round(rng.uniform(1, 500), 2)
                    c = round(rng.uniform(1, 500), 2)
                    greeks = [None if rng.random() < 0.1 else round(rng.uniform(-1, 1), 4) for _ in range(5)]
                    rows.append((symbol, expiry, strike, kind, start + i * step, o, round(max(o, c) + 1, 2), min(o, c),
                                 c, rng.randint(0, 5000), rng.randint(0, 100_000), *greeks))
    return pl.DataFrame(rows, schema={
        "symbol": pl.String, "expiry_date": pl.Date, "strike_price": pl.Float64, "option_type": pl.String,
        "timestamp": pl.Datetime("us"), "open": pl.Float64, "high": pl.Float64, "low": pl.Float64,
        "close": pl.Float64, "volume": pl.Int64, "open_interest": pl.Int64, "implied_volatility": pl.Float64,
        "delta": pl.Float64, "gamma": pl.Float64, "theta": pl.Float64, "vega": pl.Float64}, orient="row")
