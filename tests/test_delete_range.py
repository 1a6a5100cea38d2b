"""``delete_range`` and ``regime-io delete``: a time range of some symbols removed from both
tiers in one transaction; history kept for tables that keep it; catalog and tail follow."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from regime_io import PostgreSQLIntegration, UsageError
from regime_io.cli import app
from regime_io.config import Settings, settings_replace
from tests._reading_data import bars, regimes_1min

ALL = ("2023-01-01", "2024-12-31")


def _three_months(pg: PostgreSQLIntegration) -> pl.DataFrame:
    """AAA and BBB, 1m bars on 10 days of each of January, February and March (30 a day)."""
    frames = [bars(["AAA", "BBB"], ["1m"], dt.datetime(2024, m, 1 + d, 9, 15), 30, seed=m * 50 + d)
              for m in (1, 2, 3) for d in range(10)]
    frame = pl.concat(frames)
    pg.save_market_data(frame)
    return frame


def _outside(frame: pl.DataFrame, symbol: str, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    inside = (pl.col("symbol") == symbol) & pl.col("timestamp").is_between(start, end)
    return frame.filter(~inside)


def _chunk_rows(sql: Any, settings: Settings, symbol: str) -> dict[dt.date, int]:
    rows = sql(f'SELECT period_start, row_count FROM "{settings.schema}"."{settings.table_prefix}market_data_chunks" '
               "WHERE symbol = %s ORDER BY period_start", (symbol,))
    return {r[0]: r[1] for r in rows}


@pytest.mark.parametrize("sealed", [False, True], ids=["rows", "both-tiers"])
def test_a_range_goes_from_both_tiers_and_the_count_is_returned(pg: PostgreSQLIntegration, sql: Any,
                                                                settings: Settings, sealed: bool) -> None:
    frame = _three_months(pg)
    if sealed:
        assert pg.seal("2024-03-01", tables="bars").rows_moved == 2 * 2 * 10 * 30
    start, end = dt.datetime(2024, 1, 5, 9, 30), dt.datetime(2024, 2, 3, 9, 20)
    want = _outside(frame, "AAA", start, end)
    expected = frame.height - want.height
    assert pg.delete_range("bars", "AAA", start, end, dry_run=True) == expected
    assert pg.get_market_data(["AAA", "BBB"], *ALL).height == frame.height  # the dry run changed nothing
    assert pg.delete_range("bars", "AAA", start, end) == expected
    got = pg.get_market_data(["AAA", "BBB"], *ALL)
    assert_frame_equal(got, want.sort("symbol", "timeframe", "timestamp").select(got.columns), check_dtypes=False)
    if sealed:
        # The chunks were rewritten without the rows; BBB's were not touched.
        aaa = want.filter(pl.col("symbol") == "AAA")
        assert _chunk_rows(sql, settings, "AAA") == {
            dt.date(2024, 1, 1): aaa.filter(pl.col("timestamp").dt.month() == 1).height,
            dt.date(2024, 2, 1): aaa.filter(pl.col("timestamp").dt.month() == 2).height}
        assert _chunk_rows(sql, settings, "BBB") == {dt.date(2024, 1, 1): 300, dt.date(2024, 2, 1): 300}
    assert pg.delete_range("bars", "AAA", start, end) == 0


def test_a_chunk_left_empty_is_removed_and_the_catalog_follows(pg: PostgreSQLIntegration, sql: Any,
                                                                settings: Settings) -> None:
    frame = _three_months(pg)
    pg.seal("2024-03-01", tables="bars")
    # All of AAA's February and March: its newest rows go, so last_ts moves back.
    assert pg.delete_range("bars", "AAA", "2024-02-01", "2024-03-31") == 2 * 10 * 30
    assert list(_chunk_rows(sql, settings, "AAA")) == [dt.date(2024, 1, 1)]
    catalog = pg.catalog("bars").sort("symbol")
    pg.refresh_catalog("bars")
    assert_frame_equal(catalog, pg.catalog("bars").sort("symbol"))  # as if rebuilt from the data
    aaa = catalog.filter(pl.col("symbol") == "AAA").row(0, named=True)
    assert aaa["row_count"] == 300 and aaa["last_timestamp" if "last_timestamp" in catalog.columns else "last_ts"] \
        == frame.filter((pl.col("symbol") == "AAA") & (pl.col("timestamp").dt.month() == 1))["timestamp"].max()
    # Everything of a symbol: its series leaves the catalog.
    assert pg.delete_range("bars", "BBB") == 3 * 10 * 30
    assert pg.catalog("bars")["symbol"].to_list() == ["AAA"]
    assert _chunk_rows(sql, settings, "BBB") == {}


@pytest.fixture
def pg_history(settings: Settings) -> Iterator[PostgreSQLIntegration]:
    integration = PostgreSQLIntegration(settings=settings_replace(settings, history_tables=("market_regimes_1min",)))
    integration.initialize_database()
    yield integration
    integration.close()


@pytest.mark.parametrize("sealed", [False, True], ids=["rows", "sealed"])
def test_history_tables_keep_the_deleted_rows_last_versions(pg_history: PostgreSQLIntegration, sealed: bool) -> None:
    pg = pg_history
    data = regimes_1min(["AAA", "BBB"], dt.datetime(2024, 1, 2, 9, 15), 20)
    pg.save_1min_market_regime(data, known_at=dt.datetime(2024, 6, 1, tzinfo=dt.timezone.utc))
    if sealed:
        pg.seal("2024-02-01")
    before = pg.get_1min_market_regimes(["AAA", "BBB"], "2024-01-02", "2024-01-02")
    between = dt.datetime.now(dt.timezone.utc)
    assert pg.delete_range("1min", "AAA", "2024-01-02 09:20", "2024-01-02 09:24") == 5
    now = pg.get_1min_market_regimes(["AAA", "BBB"], "2024-01-02", "2024-01-02")
    assert now.height == before.height - 5
    assert_frame_equal(pg.get_1min_market_regimes(["AAA", "BBB"], "2024-01-02", "2024-01-02", as_of=between),
                       before)
    versions = pg.history("1min", "AAA", "2024-01-02 09:20", "2024-01-02 09:24")
    assert versions.height == 5 and versions["known_to"].is_not_null().all()
    assert (versions["known_to"] >= between).all()


def test_the_tail_delivers_the_deleted_range(pg: PostgreSQLIntegration) -> None:
    data = regimes_1min(["AAA", "BBB"], dt.datetime(2024, 1, 2, 9, 15), 20)
    pg.save_1min_market_regime(data)
    with pg.follow("1min", timeout=2.0, poll_interval=0.05) as tail:
        pg.delete_range("1min", ["AAA", "BBB"], "2024-01-02 09:20", "2024-01-02 09:24")
        pg.save_1min_market_regime(data.filter(pl.col("timestamp") == dt.datetime(2024, 1, 2, 9, 22)))
        batch = next(tail)
    assert batch.deleted.to_dicts() == [
        {"symbol": s, "start": dt.datetime(2024, 1, 2, 9, 20), "end": dt.datetime(2024, 1, 2, 9, 24)}
        for s in ("AAA", "BBB")]
    assert batch.frame.height == 2  # written again after the delete: a consumer applies deleted first


def test_the_tail_drops_sealed_changes_a_later_delete_removed(pg: PostgreSQLIntegration) -> None:
    data = regimes_1min(["AAA"], dt.datetime(2024, 1, 2, 9, 15), 20)
    pg.save_1min_market_regime(data)
    pg.seal("2024-02-01")
    with pg.follow("1min", timeout=2.0, poll_interval=0.05) as tail:
        pg.save_1min_market_regime(data.with_columns(pl.lit("changed").alias("regime")))  # into the chunk
        pg.delete_range("1min", "AAA", "2024-01-02 09:15", "2024-01-02 09:24")
        batch = next(tail)
    assert batch.deleted.height == 1
    assert batch.frame["timestamp"].min() == dt.datetime(2024, 1, 2, 9, 25) and batch.frame.height == 10


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    (("results", "AAA"), {}, r"optimization_results has no time column"),
    (("bars",), {}, r"pass symbol="),
    (("bars", "AAA", "2024-02-01", "2024-01-01"), {}, r"start_date .* after end_date"),
    (("nonsense", "AAA"), {}, r"nonsense"),
])
def test_misuse_is_a_usage_error(pg: PostgreSQLIntegration, args: tuple[Any, ...], kwargs: dict[str, Any],
                                 message: str) -> None:
    with pytest.raises(UsageError, match=message):
        pg.delete_range(*args, **kwargs)


def test_disabled_mode_deletes_nothing(settings: Settings) -> None:
    with PostgreSQLIntegration(settings=settings_replace(settings, enabled=False)) as off:
        assert off.delete_range("bars", "AAA") == 0


def test_cli_asks_first(server: Any, settings: Settings, pg: PostgreSQLIntegration) -> None:
    frame = _three_months(pg)
    runner = CliRunner()
    base = ["--dsn", server.url(), "--schema", settings.schema, "delete", "-t", "bars", "-s", "AAA",
            "--start", "2024-01-01", "--end", "2024-01-31"]
    for answer in ("n\n", ""):
        kept = runner.invoke(app, base, input=answer)
        assert kept.exit_code == 1, kept.output
        assert "market_data: would delete 300 rows of AAA in [2024-01-01, 2024-01-31]" in kept.output
        assert "Delete 300 rows?" in kept.output
        assert "not confirmed: nothing deleted" in kept.stderr
    assert pg.get_market_data("AAA", *ALL).height == frame.height // 2
    done = runner.invoke(app, [*base, "--yes"])
    assert done.exit_code == 0, done.output
    assert "✓ market_data: deleted 300 rows" in done.output
    assert pg.get_market_data("AAA", *ALL).height == frame.height // 2 - 300
    again = runner.invoke(app, [*base, "--yes"])
    assert "nothing to delete" in again.output
