"""SQL over both tiers (issue 25 item 2): ``pg.sql()`` and ``regime-io sql`` over sealed
months give what plain PostgreSQL gives on the same data unsealed."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from regime_io import PostgreSQLIntegration, UsageError
from regime_io.cli import app
from tests._reading_data import bars, regimes_1min

T0 = dt.datetime(2024, 1, 29, 9, 15)

QUERIES = {
    "aggregate": "SELECT symbol, timeframe, count(*) AS n, min(low) AS lo, max(high) AS hi, sum(volume) AS v "
                 "FROM mr_market_data GROUP BY symbol, timeframe ORDER BY symbol, timeframe",
    "filtered": "SELECT timestamp, close FROM mr_market_data WHERE symbol = 'AAA' AND timeframe = '5m' "
                "AND timestamp >= '2024-01-31 12:00' AND timestamp < '2024-02-01 10:00' ORDER BY timestamp",
    "join": "SELECT b.symbol, r.regime, count(*) AS n, avg(b.close) AS c FROM mr_market_data b "
            "JOIN mr_market_regimes_1min r ON r.symbol = b.symbol AND r.timestamp = b.timestamp "
            "WHERE b.timeframe = '1m' GROUP BY b.symbol, r.regime ORDER BY b.symbol, r.regime",
    "window": "SELECT symbol, timestamp, close - lag(close) OVER (PARTITION BY symbol ORDER BY timestamp) AS d "
              "FROM mr_market_data WHERE timeframe = '1m' ORDER BY symbol, timestamp",
    "cte": "WITH daily AS (SELECT symbol, max(high) AS hi FROM mr_market_data WHERE timeframe = '1m' "
           "GROUP BY symbol) SELECT symbol, hi FROM daily WHERE hi > 0 ORDER BY symbol",
}


def _floats(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col(pl.Decimal, pl.Int32, pl.Int64).cast(pl.Float64))


@pytest.fixture
def stored(pg: PostgreSQLIntegration) -> PostgreSQLIntegration:
    """Bars and 1-minute regimes over the end of January and the start of February;
    January sealed."""
    pg.save_market_data(bars(["AAA", "BBB"], ["1m", "5m"], T0, 4 * 375, step=dt.timedelta(minutes=5)))
    pg.save_1min_market_regime(regimes_1min(["AAA", "BBB"], T0, 4 * 375))
    assert pg.seal("2024-02-01").rows_moved > 0
    return pg


def test_sql_over_sealed_months_equals_postgresql_on_the_rows(stored: PostgreSQLIntegration, sql) -> None:
    pg = stored
    ours = {name: pg.sql(query, return_type="polars") for name, query in QUERIES.items()}
    pg.unseal("2024-01-01", "2024-12-31")
    assert sql(f'SELECT count(*) FROM "{pg.settings.schema}".mr_market_data_chunks') == [(0,)]
    sql(f'SET search_path = "{pg.settings.schema}"')
    for name, query in QUERIES.items():
        rows = sql(query)
        expected = pl.DataFrame(rows, schema=ours[name].columns, orient="row", infer_schema_length=None)
        assert ours[name].height > 1, name
        assert_frame_equal(_floats(ours[name]), _floats(expected), check_dtypes=False, rel_tol=1e-9)


def test_every_table_name_reaches_the_same_table(stored: PostgreSQLIntegration) -> None:
    pg = stored
    want = pg.sql("SELECT count(*) AS n FROM mr_market_data", return_type="polars")
    assert want["n"][0] == 2 * 2 * 4 * 375
    for name in ("bars", "market_data", "BARS"):
        assert_frame_equal(pg.sql(f"SELECT count(*) AS n FROM {name}", return_type="polars"), want)
    assert pg.sql('SELECT count(*) AS n FROM "1min"', return_type="polars")["n"][0] == 2 * 4 * 375
    assert pg.sql("SELECT count(*) AS n FROM results", return_type="polars")["n"][0] == 0
    assert pg.sql("SELECT symbol FROM bars LIMIT 1", return_type="arrow").num_rows == 1


@pytest.mark.parametrize(("query", "message"), [
    ("SELECT 1", "names none of the tables"),
    ("SELECT nonexistent_column FROM bars", "sql: "),
    ("", "expected a non-empty SELECT"),
])
def test_bad_queries_are_usage_errors(pg: PostgreSQLIntegration, query: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        pg.sql(query)


def test_the_sql_command(stored: PostgreSQLIntegration, server, tmp_path: Path) -> None:
    base = ["--dsn", server.url(), "--schema", stored.settings.schema]
    runner = CliRunner()
    query = "SELECT symbol, count(*) AS n FROM bars WHERE timestamp < '2024-02-01' GROUP BY symbol ORDER BY symbol"
    shown = runner.invoke(app, [*base, "sql", query], env={"COLUMNS": "120"})
    assert shown.exit_code == 0, shown.output
    expected = stored.sql(query, return_type="polars")
    assert all(f"{n:,}" in shown.output for n in expected["n"])
    out = tmp_path / "out.csv"
    written = runner.invoke(app, [*base, "sql", query, "-o", str(out)])
    assert written.exit_code == 0, written.output
    assert_frame_equal(pl.read_csv(out), expected, check_dtypes=False)
