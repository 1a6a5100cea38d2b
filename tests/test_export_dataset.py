"""``export_dataset`` and ``regime-io export --partition-by``: a hive-partitioned Parquet
dataset of both tiers that polars (and DuckDB, when installed) read back as the table."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from regime_io import PostgreSQLIntegration, UsageError
from regime_io.cli import app
from regime_io.config import Settings
from regime_io.files import export_dataset
from tests._reading_data import bars, regimes_1min

SYMBOLS = ["AAA", "M&M", "NIFTY 50"]  # a symbol a path must percent-encode, one with a space


@pytest.fixture
def stored(pg: PostgreSQLIntegration) -> PostgreSQLIntegration:
    """Bars of three symbols in January and February (1m and 5m), January sealed."""
    for month in (1, 2):
        pg.save_market_data(bars(SYMBOLS, ["1m", "5m"], dt.datetime(2024, month, 2, 9, 15), 50, seed=month))
    pg.seal("2024-02-01", tables="bars")
    return pg


def _table(pg: PostgreSQLIntegration) -> pl.DataFrame:
    return pg.get_market_data(SYMBOLS, "2024-01-01", "2024-12-31")


def test_polars_reads_the_dataset_back_as_the_table(stored: PostgreSQLIntegration, tmp_path: Path) -> None:
    out = tmp_path / "bars"
    result = export_dataset(stored, "bars", out, partition_by="symbol,month")
    want = _table(stored)
    assert result.rows == want.height == 3 * 2 * 2 * 50
    dirs = sorted(str(p.relative_to(out)) for p in out.glob("*/*"))
    assert dirs == sorted(f"symbol={s}/month=2024-0{m}-01" for s in ("AAA", "M%26M", "NIFTY%2050") for m in (1, 2))
    back = pl.scan_parquet(out, hive_partitioning=True).collect()
    assert back.columns == [*(c for c in want.columns if c != "symbol"), "symbol", "month"]
    assert back.schema["month"] == pl.Date
    assert_frame_equal(back.select(want.columns).sort("symbol", "timeframe", "timestamp"), want)
    assert (back["month"] == back["timestamp"].dt.truncate("1mo").dt.date()).all()
    # A filter on a partition column reads only its directories.
    one = pl.scan_parquet(out, hive_partitioning=True).filter(pl.col("symbol") == "M&M").collect()
    assert one.height == want.filter(pl.col("symbol") == "M&M").height


def test_duckdb_reads_what_polars_reads(stored: PostgreSQLIntegration, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    out = tmp_path / "bars"
    export_dataset(stored, "bars", out, partition_by=["symbol", "timeframe", "month"])
    by_polars = pl.scan_parquet(out, hive_partitioning=True).collect()
    by_duckdb = duckdb.sql(f"SELECT * FROM read_parquet('{out}/**/*.parquet', hive_partitioning = true)").pl()
    order = ["symbol", "timeframe", "timestamp"]
    assert_frame_equal(by_duckdb.select(by_polars.columns).sort(order), by_polars.sort(order), check_dtypes=False)


def test_filters_and_other_tables(pg: PostgreSQLIntegration, tmp_path: Path) -> None:
    pg.save_1min_market_regime(regimes_1min(["AAA", "BBB"], dt.datetime(2024, 1, 31, 23, 0), 120))
    out = tmp_path / "regimes"
    result = export_dataset(pg, "1min", out, partition_by="month", symbols=["BBB"], start="2024-02-01")
    want = pg.get_1min_market_regimes("BBB", "2024-02-01", "2024-12-31")
    assert result.rows == want.height > 0
    back = pl.read_parquet(out, hive_partitioning=True)
    assert_frame_equal(back.select(want.columns), want)
    assert sorted(p.name for p in out.iterdir()) == ["month=2024-02-01"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"partition_by": "symbol,week"}, r"'week' is not a partition key of market_regimes_1min; allowed: symbol, month"),
    ({"partition_by": "timeframe"}, r"'timeframe' is not a partition key of market_regimes_1min"),
    ({"partition_by": "month,month"}, r"names no key or one twice"),
    ({"symbols": ["ZZZ"]}, r"no rows of market_regimes_1min for ZZZ; nothing written"),
])
def test_misuse_is_a_usage_error_and_writes_nothing(pg: PostgreSQLIntegration, tmp_path: Path,
                                                    kwargs: dict[str, Any], message: str) -> None:
    pg.save_1min_market_regime(regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 5))
    with pytest.raises(UsageError, match=message):
        export_dataset(pg, "1min", tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_dataset_is_replaced_only_when_asked(pg: PostgreSQLIntegration, tmp_path: Path) -> None:
    pg.save_1min_market_regime(regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 5))
    out = tmp_path / "out"
    export_dataset(pg, "1min", out)
    with pytest.raises(UsageError, match="exists and is not empty"):
        export_dataset(pg, "1min", out)
    pg.save_1min_market_regime(regimes_1min(["AAA"], dt.datetime(2024, 3, 2, 9, 15), 5))
    assert export_dataset(pg, "1min", out, overwrite=True).rows == 10
    assert sorted(p.name for p in (out / "symbol=AAA").iterdir()) == ["month=2024-01-01", "month=2024-03-01"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary directory left


def test_cli_export_partition_by(server: Any, settings: Settings, stored: PostgreSQLIntegration,
                                 tmp_path: Path) -> None:
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, ["--dsn", server.url(), "--schema", settings.schema, "export", "-t", "bars",
                                      "--partition-by", "symbol,month", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"600 rows of market_data written to {out}" in result.output
    assert pl.scan_parquet(out, hive_partitioning=True).collect().height == 600
