"""Property test: any valid generated batch round-trips exactly (after the documented rounding)."""

from __future__ import annotations

import datetime as dt
import decimal

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regime_io import PostgreSQLIntegration

D = decimal.Decimal

# Symbols as stored under the default symbol_case (stripped, upper-cased: docs/writing.md);
# their normalisation has its own tests (tests/test_vendor_data.py).
symbols = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                  min_size=1, max_size=20).map(lambda s: s.strip().upper()).filter(lambda s: 0 < len(s) <= 20)
minutes = st.integers(min_value=0, max_value=60 * 24 * 400)
confidence = st.decimals(min_value=D("-999.99"), max_value=D("999.99"), places=2, allow_nan=False)
component = st.one_of(st.none(), st.decimals(min_value=D("-999999.9999"), max_value=D("999999.9999"), places=4,
                                             allow_nan=False))
regime = st.text(min_size=1, max_size=50).filter(lambda s: "\x00" not in s)


@st.composite
def regime_batches(draw: st.DrawFn) -> list[dict[str, object]]:
    keys = draw(st.lists(st.tuples(symbols, minutes), min_size=1, max_size=25, unique=True))
    return [{
        "symbol": sym,
        "timestamp": dt.datetime(2023, 6, 1) + dt.timedelta(minutes=m, microseconds=draw(st.integers(0, 999_999))),
        "regime": draw(regime),
        "confidence": draw(confidence),
        "directional_component": draw(component),
    } for sym, m in keys]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=regime_batches())
def test_any_valid_1min_batch_round_trips(pg: PostgreSQLIntegration, sql, batch: list[dict[str, object]]) -> None:
    table = f'"{pg.settings.schema}"."{pg.settings.table_name("market_regimes_1min")}"'
    sql(f"TRUNCATE {table}")
    frame = pl.DataFrame(batch, schema_overrides={"confidence": pl.Decimal(5, 2),
                                                  "directional_component": pl.Decimal(10, 4)})
    result = pg.save_1min_market_regime(frame)
    assert result.inserted == len(batch)
    got = sql(f"SELECT symbol, timestamp, regime, confidence, directional_component FROM {table} "
              "ORDER BY symbol COLLATE \"C\", timestamp")
    want = sorted(((r["symbol"], r["timestamp"], r["regime"], r["confidence"], r["directional_component"])
                   for r in batch), key=lambda r: (r[0].encode(), r[1]))  # type: ignore[union-attr]
    assert got == want
    # Idempotent: the same batch again changes nothing.
    again = pg.save_1min_market_regime(frame)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, len(batch))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prices=st.lists(st.floats(min_value=-99_999_999.994, max_value=99_999_999.994, allow_nan=False),
                       min_size=1, max_size=20))
def test_float_prices_round_like_the_server_cast(pg: PostgreSQLIntegration, sql, prices: list[float]) -> None:
    table = f'"{pg.settings.schema}"."{pg.settings.table_name("market_data")}"'
    sql(f"TRUNCATE {table}")
    n = len(prices)
    frame = pl.DataFrame({"symbol": ["P"] * n, "timestamp": [dt.datetime(2024, 1, 1) + dt.timedelta(minutes=i)
                                                             for i in range(n)],
                          "open": prices, "high": prices, "low": prices, "close": prices, "volume": [1] * n,
                          "timeframe": ["1m"] * n})
    pg.save_market_data(frame)
    ours = [r[0] for r in sql(f"SELECT open FROM {table} ORDER BY timestamp")]
    server = [r[0] for r in sql("SELECT v::float8::numeric(10,2) FROM unnest(%s::float8[]) WITH ORDINALITY AS u(v, i) "
                                "ORDER BY i", (prices,))]
    assert ours == server
