"""One count everywhere (issue 25 item 3): doctor, partitions, cleanup --dry-run, symbols
and catalog() agree on the rows per table and show the row tables and the sealed chunks
separately; a sealed month shows no stale row estimate."""

from __future__ import annotations

import datetime as dt

import polars as pl
from typer.testing import CliRunner

from regime_io import PostgreSQLIntegration
from regime_io._schema.doctor import diagnose
from regime_io.cli import app
from tests._reading_data import bars, regimes_1min


def _truth(pg: PostgreSQLIntegration, sql, key: str) -> tuple[int, int]:
    """(rows in the row table, rows in its chunks), counted with plain SQL."""
    table = pg.db.table(key)
    rows = sql(f"SELECT count(*) FROM {table}")[0][0]
    sealed = sql(f'SELECT coalesce(sum(row_count), 0) FROM {table[:-1]}_chunks"')[0][0]
    return int(rows), int(sealed)


def _stored(pg: PostgreSQLIntegration, sql) -> dict[str, tuple[int, int]]:
    """January and February of bars and 1-minute regimes, January sealed; and the truth."""
    pg.save_market_data(bars(["AAA", "BBB"], ["1m", "5m"], dt.datetime(2024, 1, 20), 60, step=dt.timedelta(hours=8)))
    pg.save_1min_market_regime(regimes_1min(["AAA"], dt.datetime(2024, 1, 30, 9, 15), 3000))
    sql(f"ANALYZE {pg.db.table('market_data')}")  # estimates of the rows before the seal
    assert pg.seal(dt.date(2024, 2, 1)).rows_moved > 0
    truth = {key: _truth(pg, sql, key) for key in ("market_data", "market_regimes_1min")}
    assert all(rows and sealed for rows, sealed in truth.values()), truth
    return truth


def test_doctor_catalog_partitions_and_cleanup_agree_per_tier(pg: PostgreSQLIntegration, sql) -> None:
    truth = _stored(pg, sql)
    report = diagnose(pg.settings)
    tables = {r["table"]: r for r in report.tables.iter_rows(named=True)}  # type: ignore[union-attr]
    catalog = pg.catalog().group_by("table").agg(pl.col("rows", "sealed", "row_count").sum())
    by_table = {r["table"]: r for r in catalog.iter_rows(named=True)}
    partitions = pg.list_partitions().group_by("table").agg(pl.col("sealed_rows").sum())
    sealed_parts = dict(partitions.iter_rows())
    cleanup = {t.table: t for t in pg.cleanup_old_data(0, dry_run=True)}  # everything is older than today
    for key, (rows, sealed) in truth.items():
        assert (tables[key]["rows"], tables[key]["sealed"], tables[key]["total"]) == (rows, sealed, rows + sealed)
        assert (by_table[key]["rows"], by_table[key]["sealed"], by_table[key]["row_count"]) == (
            rows, sealed, rows + sealed)
        assert sealed_parts[key] == sealed
        assert (cleanup[key].rows_dropped + cleanup[key].rows_deleted, cleanup[key].sealed_rows_removed) == (
            rows, sealed)
    total = sum(r + s for r, s in truth.values())
    line = next(c.detail for c in report.checks if c.name == "tables")
    assert line == (f"all 5 present, {total:,} rows: {sum(r for r, _ in truth.values()):,} in the row tables, "
                    f"{sum(s for _, s in truth.values()):,} sealed")


def test_a_sealed_month_shows_no_stale_estimate(pg: PostgreSQLIntegration, sql) -> None:
    truth = _stored(pg, sql)
    parts = pg.list_partitions("bars")
    jan = parts.filter(pl.col("partition").str.ends_with("_p2024_01")).row(0, named=True)
    feb = parts.filter(pl.col("partition").str.ends_with("_p2024_02")).row(0, named=True)
    assert (jan["estimated_rows"], jan["sealed_rows"]) == (0, truth["market_data"][1])
    assert feb["sealed_rows"] == 0 and feb["estimated_rows"] == truth["market_data"][0]
    pg.unseal("2024-01-01", "2024-01-31", tables="bars")
    jan = pg.list_partitions("bars").filter(pl.col("partition").str.ends_with("_p2024_01")).row(0, named=True)
    assert (jan["estimated_rows"], jan["sealed_rows"]) == (truth["market_data"][1], 0)


def test_the_cli_shows_both_tiers(pg: PostgreSQLIntegration, sql, server) -> None:
    truth = _stored(pg, sql)
    base = ["--dsn", server.url(), "--schema", pg.settings.schema]
    runner = CliRunner()
    env = {"COLUMNS": "250"}
    rows, sealed = truth["market_data"]
    doctor = runner.invoke(app, [*base, "doctor"], env=env)
    assert doctor.exit_code == 0, doctor.output
    line = next(ln for ln in doctor.output.splitlines() if ln.lstrip().startswith("market_data "))
    assert [c for c in line.split() if c != "│"][-3:] == [f"{rows:,}", f"{sealed:,}", f"{rows + sealed:,}"]
    symbols = runner.invoke(app, [*base, "symbols", "--table", "bars"], env=env)
    assert symbols.exit_code == 0, symbols.output
    header = next(ln for ln in symbols.output.splitlines() if "row_count" in ln)
    assert [c for c in header.split() if c != "┃"][-3:] == ["row_count", "rows", "sealed"]
    cleanup = runner.invoke(app, [*base, "cleanup", "--days", "1", "--dry-run"], env=env)
    assert cleanup.exit_code == 0, cleanup.output
    total_rows = sum(r for r, _ in truth.values())
    total_sealed = sum(s for _, s in truth.values())
    assert (f"would remove {total_rows + total_sealed:,} rows: {total_rows:,} from the row tables"
            in cleanup.output)
    assert f"{total_sealed:,} sealed" in cleanup.output
    partitions = runner.invoke(app, [*base, "partitions", "bars"], env=env)
    assert "sealed_rows" in partitions.output
