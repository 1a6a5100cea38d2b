"""Every combination of tiers on a real Citus cluster, sealed first: knowledge-time writes
into sealed months, as-of reads over sealed months, and the SQL readers over sealed
chunks, compared with the plain server (tests/_citus.py starts the cluster)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, SchemaError, WriteError
from regime_io._tiers import chunk_bytes
from tests._reading_data import bars, regimes_1min

pytestmark = pytest.mark.citus

T0 = dt.datetime(2024, 1, 8, 9, 15)
SYMBOLS = ["AAA", "BBB", "CCC"]


@pytest.fixture
def sealed(pg: PostgreSQLIntegration, citus_pg: PostgreSQLIntegration) -> list[PostgreSQLIntegration]:
    """Both engines with January's 1-minute regimes and bars sealed, February's in rows."""
    both = [pg, citus_pg]
    for p in both:
        p.save_1min_market_regime(regimes_1min(SYMBOLS, T0, 40))
        p.save_1min_market_regime(regimes_1min(SYMBOLS, T0 + dt.timedelta(days=31), 40, seed=3))
        p.save_market_data(bars(SYMBOLS, ["1m"], T0, 40))
        p.save_market_data(bars(SYMBOLS, ["1m"], T0 + dt.timedelta(days=31), 40))
        report = p.seal("2024-02-01", tables=["1min", "bars"])
        assert report.rows_moved == 2 * 3 * 40, report.to_frame()  # January of both tables, nothing of February
    return both


def _same(frames: list[pl.DataFrame]) -> pl.DataFrame:
    plain, cluster = frames
    assert plain.height > 0, "an empty answer proves nothing"
    assert_frame_equal(plain, cluster)
    return plain


def test_known_at_write_and_as_of_read_over_sealed_months(sealed: list[PostgreSQLIntegration]) -> None:
    restated = regimes_1min(SYMBOLS[:2], T0, 10, seed=9)
    before = dt.datetime.now(dt.timezone.utc)
    results = [p.save_1min_market_regime(restated, known_at=dt.datetime(2030, 1, 1)) for p in sealed]
    assert results[0].rows == results[1].rows == 20
    assert (results[0].inserted, results[0].updated) == (results[1].inserted, results[1].updated)
    assert results[0].updated > 0  # the restatement changed sealed rows
    window = ("2024-01-01", "2024-03-01")
    # Before the restatement was known: January as sealed; after: the restated rows.
    old = _same([p.get_1min_market_regimes(SYMBOLS, *window, as_of=before) for p in sealed])
    new = _same([p.get_1min_market_regimes(SYMBOLS, *window, as_of=dt.datetime(2030, 1, 2)) for p in sealed])
    assert old.height == new.height == 240
    assert not old.equals(new)
    _same([p.get_latest_1min_market_regime(SYMBOLS, as_of=before) for p in sealed])
    # A later vintage restating other minutes (a second segment of each patch, appended):
    # as of between the vintages, only the first is seen; after both, both.
    later = regimes_1min(SYMBOLS[:2], T0 + dt.timedelta(minutes=25), 10, seed=13)
    results = [p.save_1min_market_regime(later, known_at=dt.datetime(2031, 1, 1)) for p in sealed]
    assert (results[0].inserted, results[0].updated) == (results[1].inserted, results[1].updated)
    between = _same([p.get_1min_market_regimes(SYMBOLS, *window, as_of=dt.datetime(2030, 6, 1)) for p in sealed])
    after = _same([p.get_1min_market_regimes(SYMBOLS, *window, as_of=dt.datetime(2031, 1, 2)) for p in sealed])
    assert between.equals(new) and not after.equals(new)
    _same([p.history("1min", SYMBOLS[:2], *window).drop("known_from", "known_to").sort("symbol", "timestamp",
                                                                                         "regime")
           for p in sealed])


def test_sql_readers_over_sealed_months(sealed: list[PostgreSQLIntegration]) -> None:
    window = ("2024-01-01", "2024-03-01")
    _same([p.get_market_data(SYMBOLS, *window, resample="1h") for p in sealed])
    _same([p.get_market_regime_distribution("AAA", *window, table="1min") for p in sealed])
    _same([p.get_regime_transitions("AAA", *window, table="1min") for p in sealed])
    _same([p.asof_regimes(symbol="AAA", start_date=window[0], end_date=window[1]) for p in sealed])
    _same([p.quality_report("bars", SYMBOLS[:2], "2024-01-08", "2024-01-09") for p in sealed])


def test_as_of_sql_readers_over_sealed_months(sealed: list[PostgreSQLIntegration]) -> None:
    known = dt.datetime.now(dt.timezone.utc)
    window: Any = ("2024-01-01", "2024-03-01")
    _same([p.get_market_regime_distribution("AAA", *window, table="1min", as_of=known) for p in sealed])


def test_restatements_into_sealed_months_patch_the_chunks_alike(sealed: list[PostgreSQLIntegration], sql,
                                                                citus: Any) -> None:
    """A restatement of a few sealed rows goes to the chunk's patch on both engines (one
    statement per symbol locks the chunk rows on Citus), reads and the latest row agree,
    and the next write past PATCH_ROWS folds the patch into the payload."""
    restated = bars(SYMBOLS[:2], ["1m"], T0, 40, seed=11).head(50)
    results = [p.save_market_data(restated) for p in sealed]
    assert (results[0].inserted, results[0].updated) == (results[1].inserted, results[1].updated) == (0, 50)
    with psycopg.connect(citus.url(), autocommit=True) as conn:
        for run, p in ((sql, sealed[0]), (lambda q: conn.execute(q).fetchall(), sealed[1])):
            table = p.db.table("market_data")[:-1] + '_chunks"'
            assert run(f"SELECT count(*) FROM {table} WHERE patch IS NOT NULL")[0][0] == 2
    window = ("2024-01-01", "2024-03-01")
    _same([p.get_market_data(SYMBOLS, *window) for p in sealed])
    _same([p.get_market_data(SYMBOLS, *window, exact=True) for p in sealed])
    _same([p.get_latest("market_data", symbols=SYMBOLS) for p in sealed])
    # New bars between the sealed ones: inserted into the patches, counted alike.
    added = restated.with_columns(pl.col("timestamp") + dt.timedelta(seconds=30))
    results = [p.save_market_data(added) for p in sealed]
    assert (results[0].inserted, results[1].inserted) == (50, 50)
    _same([p.get_market_data(SYMBOLS, *window).sort("symbol", "timestamp") for p in sealed])
    _same([p.catalog("market_data") for p in sealed])
    # Later bars of January, apart from the patch's rows: a second segment appended alike.
    later = bars(SYMBOLS[:2], ["1m"], T0 + dt.timedelta(hours=3), 5, seed=12)
    results = [p.save_market_data(later) for p in sealed]
    assert (results[0].inserted, results[1].inserted) == (10, 10)
    with psycopg.connect(citus.url(), autocommit=True) as conn:
        for run, p in ((sql, sealed[0]), (lambda q: conn.execute(q).fetchall(), sealed[1])):
            table = p.db.table("market_data")[:-1] + '_chunks"'
            patch = run(f"SELECT patch FROM {table} WHERE symbol = 'AAA'")[0][0]
            assert [s.rows for s in chunk_bytes.patch_segments(patch) or []] == [80, 5]
    _same([p.get_market_data(SYMBOLS, *window).sort("symbol", "timestamp") for p in sealed])
    _same([p.get_latest("market_data", symbols=SYMBOLS) for p in sealed])


def test_patches_are_stored_external_on_every_shard(citus_pg: PostgreSQLIntegration, citus: Any) -> None:
    """A chunk table created on Citus gets EXTERNAL storage for payload and patch before it
    is distributed (its shards copy it); a patch column an upgrade adds to a distributed
    table keeps the default -- Citus refuses SET STORAGE there -- and initialize_database
    still succeeds."""
    table = citus_pg.db.table("market_data")[:-1] + '_chunks"'
    storage = ("SELECT result FROM run_command_on_shards('{t}', $$SELECT string_agg(attstorage::text, '' "
               "ORDER BY attname) FROM pg_attribute WHERE attrelid = '%s'::regclass "
               "AND attname IN ('patch', 'payload')$$)")
    with psycopg.connect(citus.url(), autocommit=True) as conn:
        assert {r[0] for r in conn.execute(storage.format(t=table.replace("'", "''"))).fetchall()} == {"ee"}
        conn.execute(f"ALTER TABLE {table} DROP COLUMN patch")  # a version 8 schema
        citus_pg.initialize_database()
        got = {r[0] for r in conn.execute(storage.format(t=table.replace("'", "''"))).fetchall()}
        assert got == {"xe"}, got  # patch: the default (x), payload: still EXTERNAL


@pytest.fixture
def unsealed_bars(pg: PostgreSQLIntegration, citus_pg: PostgreSQLIntegration, sql,
                  citus: Any) -> Iterator[list[tuple[Callable[[str], list[Any]], PostgreSQLIntegration]]]:
    """Both engines with three minutes of January's bars in the row tier, each with a
    function running SQL on its server (as another tool would)."""
    with psycopg.connect(citus.url(), autocommit=True) as conn:
        def on_citus(query: str) -> list[Any]:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

        both = [(sql, pg), (on_citus, citus_pg)]
        for _, p in both:
            p.save_market_data(bars(SYMBOLS, ["1m"], T0, 3))
        yield both


def test_a_seal_names_a_nan_another_tool_stored_on_both_engines(
        unsealed_bars: list[tuple[Callable[[str], list[Any]], PostgreSQLIntegration]]) -> None:
    """The seal's NaN lookup (after the rollback) runs on the coordinator as on a plain
    server: the same WriteError, the rows left in the row tier."""
    for run, p in unsealed_bars:
        table = p.db.table("market_data")
        run(f"UPDATE {table} SET low = 'NaN' WHERE symbol = 'BBB' AND timestamp = '{T0 + dt.timedelta(minutes=1)}'")
        with pytest.raises(WriteError, match=r"market_data: cannot seal 2024-01: column low holds 'NaN' \(symbol "
                                             r"BBB, timeframe 1m, timestamp 2024-01-08 09:16:00\)"):
            p.seal("2024-02-01", tables=["bars"])
        assert run(f"SELECT count(*) FROM {table}")[0][0] == 9


def test_a_seal_refuses_a_price_column_altered_by_hand_on_both_engines(
        unsealed_bars: list[tuple[Callable[[str], list[Any]], PostgreSQLIntegration]]) -> None:
    """The declared-type check reads the coordinator's catalog, as a plain server's: a
    close widened to NUMERIC(14,4) by hand is refused before a month moves (the seal
    would round 100.1234 to 100.12)."""
    for run, p in unsealed_bars:
        table = p.db.table("market_data")
        run(f"ALTER TABLE {table} ALTER COLUMN close TYPE NUMERIC(14,4)")
        run(f"UPDATE {table} SET close = 100.1234 WHERE symbol = 'AAA'")
        with pytest.raises(SchemaError, match=r"column close of table '\w+' is numeric\(14,4\), but regime_io "
                                              r"declares NUMERIC\(10,2\)"):
            p.seal("2024-02-01", tables=["bars"])
        assert run(f"SELECT count(*) FROM {table}")[0][0] == 9
