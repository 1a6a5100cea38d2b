"""Sealing gives the row tier's space back at once (issue 23: storage right after seal()
returns, no VACUUM): a partition that held only the sealed rows is emptied with TRUNCATE in
the sealing transaction -- only when nobody holds it (TRUNCATE is not MVCC-safe), else the
rows are deleted as before. Either way every row is in exactly one tier."""

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


def test_a_partition_of_only_sealed_rows_is_emptied_at_once(pg: PostgreSQLIntegration, sql: Any) -> None:
    data = _month(["NIFTY", "BANKNIFTY"])
    pg.save_market_data(data)
    jan = _partition(pg, "2024_01")
    before = _bytes(sql, jan)
    frame = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31", exact=True)
    report = pg.seal(dt.date(2024, 2, 1))
    assert report.rows_moved == frame.height > 0
    # Emptied by TRUNCATE: no heap pages, no dead tuples, index roots only (8 kB each).
    assert sql(f"SELECT pg_relation_size('{jan}')")[0][0] == 0
    assert _bytes(sql, jan) < before / 10
    assert sql(f"SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = '{jan}'::regclass")[0][0] == 0
    assert_frame_equal(pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-01-31", exact=True), frame)


def test_a_partition_with_other_series_is_not_truncated(pg: PostgreSQLIntegration, sql: Any) -> None:
    pg.save_market_data(_month(["NIFTY", "BANKNIFTY"]))
    kept = pg.get_market_data("BANKNIFTY", "2024-01-01", "2024-01-31", exact=True)
    report = pg.seal(dt.date(2024, 2, 1), symbols="NIFTY")
    assert report.rows_moved > 0
    jan = _partition(pg, "2024_01")
    assert sql(f"SELECT count(*) FROM {jan}")[0][0] == kept.height
    assert_frame_equal(pg.get_market_data("BANKNIFTY", "2024-01-01", "2024-01-31", exact=True), kept)


def test_a_partition_someone_holds_is_deleted_from_not_truncated(pg: PostgreSQLIntegration, sql: Any,
                                                                 server: Any) -> None:
    """An open REPEATABLE READ transaction that read January keeps seeing January after the
    seal commits (TRUNCATE would have shown it an empty partition): the seal falls back to
    DELETE, which is MVCC-safe."""
    data = _month(["NIFTY"])
    pg.save_market_data(data)
    jan = _partition(pg, "2024_01")
    reader = psycopg.connect(server.url())
    try:
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        seen = reader.execute(f"SELECT count(*) FROM {pg.db.table('market_data')}").fetchone()
        assert seen is not None and seen[0] == data.height
        report = pg.seal(dt.date(2024, 2, 1))
        assert report.rows_moved > 0
        again = reader.execute(f"SELECT count(*) FROM {pg.db.table('market_data')}").fetchone()
        assert again == seen  # its snapshot still holds January's rows
    finally:
        reader.close()
    assert sql(f"SELECT count(*) FROM {jan}")[0][0] == 0
    assert pg.get_market_data("NIFTY", "2024-01-01", "2024-01-31").height == report.rows_moved
