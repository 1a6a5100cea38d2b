"""Sealing gives the row tier's space back when seal() returns (issue 23: storage right
after seal(), no VACUUM by the user): after the move commits, an emptied partition is
truncated when no snapshot older than the move exists, else vacuumed and reindexed.
TRUNCATE is not MVCC-safe: a reader whose snapshot is older than the seal (COPY (query)
TO takes its snapshot before it locks the partitions) must still see the month's rows."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
import psycopg
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from tests._reading_data import bars


def _partition(pg: PostgreSQLIntegration, month: str) -> str:
    return pg.db.table("market_data")[:-1] + f'_p{month}"'


def _bytes(sql: Any, relation: str) -> int:
    return int(sql(f"SELECT pg_total_relation_size('{relation}')")[0][0])


def _month(symbols: list[str]) -> pl.DataFrame:
    return bars(symbols, ["1m"], dt.datetime(2024, 1, 2, 9, 15), 3000, step=dt.timedelta(minutes=10))


def test_a_partition_the_seal_emptied_gives_its_space_back(pg: PostgreSQLIntegration, sql: Any) -> None:
    data = _month(["NIFTY", "BANKNIFTY"])
    pg.save_market_data(data)
    jan = _partition(pg, "2024_01")
    before = _bytes(sql, jan)
    frame = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31", exact=True)
    files = sql(f"SELECT pg_relation_filenode('{jan}')")[0][0]
    report = pg.seal(dt.date(2024, 2, 1))
    assert report.rows_moved == frame.height > 0
    # Truncated (nobody could see the rows any more: a new, empty file), so no heap pages
    # left and the indexes empty.
    assert sql(f"SELECT pg_relation_filenode('{jan}')")[0][0] != files
    assert sql(f"SELECT pg_relation_size('{jan}')")[0][0] == 0
    assert sql(f"SELECT reltuples FROM pg_class WHERE oid = '{jan}'::regclass")[0][0] == 0  # analyzed
    assert _bytes(sql, jan) < before / 10
    assert_frame_equal(pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31", exact=True), frame)


def test_a_partition_with_other_series_keeps_them(pg: PostgreSQLIntegration, sql: Any) -> None:
    pg.save_market_data(_month(["NIFTY", "BANKNIFTY"]))
    kept = pg.get_market_data("BANKNIFTY", "2024-01-01", "2024-01-31", exact=True)
    report = pg.seal(dt.date(2024, 2, 1), symbols="NIFTY")
    assert report.rows_moved > 0
    jan = _partition(pg, "2024_01")
    assert sql(f"SELECT count(*) FROM {jan}")[0][0] == kept.height
    assert_frame_equal(pg.get_market_data("BANKNIFTY", "2024-01-01", "2024-01-31", exact=True), kept)


def test_a_snapshot_older_than_the_seal_still_sees_the_months_rows(pg: PostgreSQLIntegration,
                                                                   server: Any) -> None:
    """The reader's snapshot is taken before the seal and before it touches the table (as
    COPY (query) TO does): with TRUNCATE it read the partition empty -- and the chunk was
    not in its snapshot either, so the month was missing (60 of 90 rows in a seal/unseal
    loop beside readers)."""
    data = _month(["NIFTY"])
    pg.save_market_data(data)
    table = pg.db.table("market_data")
    reader = psycopg.connect(server.url())
    try:
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT 1")  # the snapshot, no lock on the table
        report = pg.seal(dt.date(2024, 2, 1))
        assert report.rows_moved > 0
        seen = reader.execute(f"SELECT count(*) FROM {table} WHERE timestamp < '2024-02-01'").fetchone()
        assert seen is not None and seen[0] == report.rows_moved
    finally:
        reader.close()
    assert pg.get_market_data("NIFTY", "2024-01-01", "2024-01-31").height == report.rows_moved


def test_a_partition_locked_elsewhere_is_skipped_and_the_others_still_vacuumed(
        pg: PostgreSQLIntegration, sql: Any, server: Any, caplog: Any) -> None:
    """VACUUM waits up to 2 s for a partition's lock (an autovacuum worker at work on it is
    cancelled after deadlock_timeout, 1 s); a lock held longer skips that partition only,
    with a warning naming it -- before, the first lock timeout skipped every partition."""
    pg.save_market_data(bars(["NIFTY"], ["1m"], dt.datetime(2024, 1, 2, 9, 15), 6000,
                             step=dt.timedelta(minutes=10)))  # January and February
    jan, feb = _partition(pg, "2024_01"), _partition(pg, "2024_02")
    before = _bytes(sql, jan)
    holder = psycopg.connect(server.url())
    try:
        holder.execute(f"LOCK TABLE {feb} IN SHARE UPDATE EXCLUSIVE MODE")  # as autovacuum holds it
        caplog.set_level("WARNING", logger="regime_io._schema.maintenance")
        report = pg.seal(dt.date(2024, 3, 1))
    finally:
        holder.close()
    assert report.rows_moved == 6000
    assert sql(f"SELECT pg_relation_size('{jan}')")[0][0] == 0 and _bytes(sql, jan) < before / 10  # truncated
    assert sql(f"SELECT pg_relation_size('{feb}')")[0][0] > 0  # left to autovacuum
    assert any("2024_02" in r.getMessage() and "not vacuumed" in r.getMessage() for r in caplog.records)
    assert pg.get_market_data("NIFTY", "2024-01-01", "2024-02-29 23:59").height == 6000


def test_an_emptied_heap_vacuum_did_not_give_back_is_named_in_a_warning(
        pg: PostgreSQLIntegration, sql: Any, server: Any, caplog: Any) -> None:
    """VACUUM gives an emptied heap back only when it can, and says nothing when it
    cannot (5 benchmark seals of ~60 kept 14-55 MB so). The seal looks at the heap: here
    a transaction older than the seal still sees the rows, so the space stays, and the
    warning names the partition and the snapshot's holder; a seal that gives the space
    back warns of nothing."""
    caplog.set_level("WARNING", logger="regime_io._schema.maintenance")
    pg.save_market_data(_month(["NIFTY"]))
    reader = psycopg.connect(server.url())
    try:
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        reader.execute("SELECT 1")  # a snapshot older than the seal
        assert pg.seal(dt.date(2024, 2, 1)).rows_moved > 0
        assert sql(f"SELECT pg_relation_size('{_partition(pg, '2024_01')}')")[0][0] > 0
        pid = reader.info.backend_pid
        assert any("2024_01" in r.getMessage() and "heap" in r.getMessage() and f"pid {pid}" in r.getMessage()
                   for r in caplog.records)
    finally:
        reader.close()
    caplog.clear()
    pg.save_market_data(_month(["NIFTY"]).with_columns(pl.col("timestamp") + dt.timedelta(days=40)))
    assert pg.seal(dt.date(2024, 4, 1)).rows_moved > 0
    assert sql(f"SELECT pg_relation_size('{_partition(pg, '2024_02')}')")[0][0] == 0
    assert not [r for r in caplog.records if "heap" in r.getMessage()]
