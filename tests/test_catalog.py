"""The series catalog: kept exact by every writer path, trims and cleanup; refresh for other tools."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from _reading_data import bars, options, regimes_1min
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, UsageError
from regime_io._tiers.catalog import CATALOG_SCHEMA, SERIES_TABLES, series_stats
from regime_io._write.validate import validate
from regime_io.tables import TABLES

T0 = dt.datetime(2024, 1, 30, 15, 0)


def truth(pg: PostgreSQLIntegration, sql: Any) -> pl.DataFrame:
    """The catalog as a GROUP BY over the stored rows and sealed chunks computes it
    (independent of regime_io)."""
    parts = []
    for key in SERIES_TABLES:
        spec = TABLES[key]
        timeframe = "timeframe" if "timeframe" in spec.column_names else "NULL::text"
        parts.append(f"SELECT '{key}'::text AS t, symbol::text AS s, {timeframe}::text AS tf, timestamp AS lo, "
                     f"timestamp AS hi, 1::int8 AS n, 0::int8 AS sealed FROM {pg.db.table(key)}")
        if spec.sealable:
            parts.append(f"SELECT '{key}'::text, symbol::text, {timeframe}::text, first_ts, last_ts, row_count::int8, "
                         f"row_count::int8 FROM {pg.db.table(key)[:-1]}_chunks\" WHERE row_count > 0")
    # row_count: both tiers; rows: the row table's; sealed: the chunks' (one count everywhere, issue 25).
    rows = sql(f"SELECT t, s, tf, min(lo), max(hi), sum(n)::int8, sum(n - sealed)::int8, sum(sealed)::int8 "
               f"FROM ({' UNION ALL '.join(parts)}) u "
               'GROUP BY 1, 2, 3 ORDER BY t COLLATE "C", s COLLATE "C", tf COLLATE "C"')
    return pl.DataFrame(rows, schema=pl.from_arrow(CATALOG_SCHEMA.empty_table()).schema, orient="row")  # type: ignore[union-attr]


@pytest.mark.parametrize("key", SERIES_TABLES)
def test_series_stats_equal_a_hash_aggregation(key: str) -> None:
    """Per-series counts read from key-ordered runs (or hashed, for options) equal a plain
    GROUP BY, for shuffled input split into many Arrow chunks."""
    # market_data: 18 series (read with take), the others a few (read as scalars); options hashed.
    frame = {"market_data": lambda: bars(["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"], ["1m", "5m", "1d"], T0, 40),
             "options_data": lambda: pl.concat([options(s, [dt.date(2024, 2, 1), dt.date(2024, 2, 8)], [100.0, 110.0],
                                                         T0, 6) for s in ("AAA", "BBB")]),
             "market_regimes": lambda: bars(["AAA", "BBB"], ["1m", "5m"], T0, 3),
             "market_regimes_1min": lambda: regimes_1min(["AAA", "BBB", "CCC"], T0, 40)}[key]()
    spec = TABLES[key]
    if key == "market_regimes":
        frame = frame.select("symbol", "timeframe", "timestamp").with_columns(
            pl.lit("bull").alias("regime"), pl.lit(50.0).alias("confidence"))
    batch = validate(spec, frame.sample(fraction=1.0, shuffle=True, seed=3))
    batch = pa.Table.from_batches(batch.to_batches(max_chunksize=7))
    cols = ["symbol", "timeframe"] if "timeframe" in spec.column_names else ["symbol"]
    expected = (pl.from_arrow(batch).group_by(cols)  # type: ignore[union-attr]
                .agg(pl.col("timestamp").min().alias("first"), pl.col("timestamp").max().alias("last"), pl.len())
                .sort(cols).rows())
    got = sorted(series_stats(spec, batch))
    assert [(*k[:len(cols)], first, last, n) for k, first, last, n in got] == expected
    assert len(got) > 1


def test_writers_keep_the_catalog_exact(pg: PostgreSQLIntegration, sql: Any) -> None:
    frame = bars(["AAA", "BBB"], ["1m", "5m"], T0, 30)
    pg.save_market_data(frame)  # COPY path
    assert_frame_equal(pg.catalog(), truth(pg, sql))
    # Mixed: updates, new rows in a new month and an earlier start: the staged merge path.
    later = bars(["AAA", "CCC"], ["1m"], dt.datetime(2024, 3, 1, 9, 15), 10, seed=4)
    earlier = bars(["BBB"], ["5m"], dt.datetime(2023, 12, 29, 9, 15), 5, seed=5)
    pg.save_market_data(pl.concat([frame.head(7).with_columns(pl.col("volume") + 1), later, earlier]))
    assert_frame_equal(pg.catalog(), truth(pg, sql))
    pg.save_market_data(frame, on_conflict="ignore")  # nothing new: nothing changes
    pg.save_market_data(iter([later.head(3), bars(["DDD"], ["1m"], T0, 4, seed=6)]))  # a stream
    pg.save_options_data(options("NIFTY", [dt.date(2024, 2, 29)], [21000.0], T0, 6))  # no timeframe
    catalog = pg.catalog()
    assert_frame_equal(catalog, truth(pg, sql))
    aaa = catalog.filter((pl.col("symbol") == "AAA") & (pl.col("timeframe") == "1m")).row(0, named=True)
    assert (aaa["row_count"], aaa["first_timestamp"], aaa["last_timestamp"]) == (
        40, T0, dt.datetime(2024, 3, 1, 9, 24))
    assert catalog.filter(pl.col("table") == "options_data")["timeframe"].to_list() == [None]


def test_rolling_trim_and_cleanup_correct_the_catalog(pg: PostgreSQLIntegration, sql: Any) -> None:
    pg.save_1min_market_regime(regimes_1min(["AAA", "BBB"], T0, 30))
    pg.save_rolling_market_regime(regimes_1min(["AAA"], T0 + dt.timedelta(minutes=30), 1, seed=7),
                                  window_minutes=10)
    got = pg.catalog("1min")
    assert_frame_equal(got, truth(pg, sql).filter(pl.col("table") == "market_regimes_1min"))
    assert got.filter(pl.col("symbol") == "AAA")["first_timestamp"].item() == T0 + dt.timedelta(minutes=20)
    daily = bars(["AAA", "BBB"], ["1d"], dt.datetime(2024, 1, 20), 50, step=dt.timedelta(days=1))
    pg.save_market_data(daily)
    keep = (dt.date.today() - dt.date(2024, 2, 15)).days  # drops January, deletes half of February
    pg.cleanup_old_data(keep, tables="bars")
    assert_frame_equal(pg.catalog("bars"), truth(pg, sql).filter(pl.col("table") == "market_data"))
    pg.cleanup_old_data(0, tables="bars")  # everything: the series leave the catalog
    assert pg.catalog("bars").height == 0


def test_rows_from_other_tools_appear_after_refresh(pg: PostgreSQLIntegration, sql: Any) -> None:
    pg.save_market_data(bars(["AAA"], ["1m"], T0, 5))
    pg.db.partitions.ensure(pg.db.pool, pg.settings, TABLES["market_data"], T0, T0)
    sql(f"INSERT INTO {pg.db.table('market_data')} (symbol, timestamp, open, high, low, close, volume, timeframe) "
        "VALUES ('ZZZ', %s, 1, 2, 0.5, 1.5, 10, '1m')", (T0,))
    sql(f"DELETE FROM {pg.db.table('market_data')} WHERE symbol = 'AAA' AND timestamp = %s", (T0,))
    assert pg.catalog()["symbol"].to_list() == ["AAA"]  # not seen yet
    assert pg.get_latest("bars").height == 1
    assert pg.refresh_catalog("bars") == {"market_data": 2}
    assert_frame_equal(pg.catalog(), truth(pg, sql))
    assert pg.get_latest("bars")["symbol"].to_list() == ["AAA", "ZZZ"]


def test_catalog_arguments_and_return_types(pg: PostgreSQLIntegration) -> None:
    pg.save_1min_market_regime(regimes_1min(["AAA"], T0, 3))
    assert pg.catalog(["1min", "market_regimes_1min"]).height == 1
    assert pg.catalog("bars").height == 0
    assert pg.catalog(return_type="arrow").schema == CATALOG_SCHEMA
    assert list(pg.catalog(return_type="pandas").columns) == CATALOG_SCHEMA.names
    with pytest.raises(UsageError, match=r"optimization_results.*no time column"):
        pg.catalog("optimization_results")
    with pytest.raises(UsageError, match="unknown table"):
        pg.refresh_catalog("nope")


def test_initialize_catalogues_rows_stored_before_the_catalog(pg: PostgreSQLIntegration, sql: Any) -> None:
    """An existing schema upgraded to the catalog's schema version gets its rows catalogued once."""
    pg.save_market_data(bars(["AAA", "BBB"], ["1m"], T0, 5))
    sql(f"DELETE FROM {pg.db.table('market_data').rsplit('.', 1)[0]}.\"mr_series\"")
    sql(f"DELETE FROM {pg.db.table('market_data').rsplit('.', 1)[0]}.\"mr_schema_version\" WHERE version >= 4")
    pg.initialize_database()
    assert_frame_equal(pg.catalog(), truth(pg, sql))
    assert pg.catalog().height == 2


def test_sealing_keeps_and_cleanup_of_sealed_months_corrects_the_catalog(pg: PostgreSQLIntegration,
                                                                        sql: Any) -> None:
    pg.save_market_data(bars(["AAA", "BBB"], ["1d"], dt.datetime(2024, 1, 20), 50, step=dt.timedelta(days=1)))
    before = pg.catalog()
    pg.seal("2024-04-01", tables="bars")  # January and February move into chunks
    assert sql(f"SELECT count(*) FROM {pg.db.table('market_data')[:-1]}_chunks\"")[0][0] > 0
    # Moving rows between tiers changes nothing but the split between them.
    assert_frame_equal(pg.catalog().drop("rows", "sealed"), before.drop("rows", "sealed"))
    assert pg.catalog()["sealed"].to_list() == before["rows"].to_list() == [50, 50]
    assert_frame_equal(pg.catalog(), truth(pg, sql))
    keep = (dt.date.today() - dt.date(2024, 2, 15)).days  # January's chunks go, February's is cut
    pg.cleanup_old_data(keep, tables="bars")
    after = pg.catalog()
    assert_frame_equal(after, truth(pg, sql))
    assert after["row_count"].sum() < before["row_count"].sum()


def test_cli_symbols_prints_the_catalog(pg: PostgreSQLIntegration, server: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from regime_io.cli import app

    monkeypatch.setenv("COLUMNS", "200")
    pg.save_market_data(bars(["AAA", "BBB"], ["1m"], T0, 4))
    pg.save_1min_market_regime(regimes_1min(["CCC"], T0, 3))
    result = CliRunner().invoke(app, ["--dsn", server.url(), "--schema", pg.settings.schema, "symbols",
                                      "--table", "bars"])
    assert result.exit_code == 0, result.output
    assert "AAA" in result.output and "BBB" in result.output and "CCC" not in result.output
    assert "2024-01-30 15:03:00" in result.output  # the last timestamp
    everything = CliRunner().invoke(app, ["--dsn", server.url(), "--schema", pg.settings.schema, "symbols"])
    assert everything.exit_code == 0 and "CCC" in everything.output
    bad = CliRunner().invoke(app, ["--dsn", server.url(), "--schema", pg.settings.schema, "symbols", "-t", "results"])
    assert bad.exit_code != 0 and "no time column" in bad.output and "Traceback" not in bad.output
