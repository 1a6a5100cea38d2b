"""The sealed tier: seal/unseal move rows between tiers, once, atomically; readers see no difference."""

from __future__ import annotations

import datetime as dt

import polars as pl
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from regime_io import _sealing as sealing
from tests._reading_data import bars


def _counts(pg: PostgreSQLIntegration, sql, key: str = "market_data") -> tuple[int, int]:
    rows = sql(f"SELECT count(*) FROM {pg.db.table(key)}")[0][0]
    chunked = sql(f"SELECT coalesce(sum(row_count), 0) FROM {pg.db.table(key)[:-1]}_chunks\"")[0][0]
    return rows, chunked


def test_seal_moves_whole_months_once_and_unseal_puts_them_back(pg: PostgreSQLIntegration, sql) -> None:
    data = bars(["NIFTY", "BANKNIFTY"], ["1m", "5m"], dt.datetime(2024, 1, 30), 3000, step=dt.timedelta(minutes=30))
    pg.save_market_data(data)
    before = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-12-31", exact=True)
    report = sealing.seal_history(pg.db, dt.date(2024, 3, 15))
    assert report.tables == ("market_data",)
    assert [p.period for p in report] == [dt.date(2024, 1, 1), dt.date(2024, 2, 1)]
    jan_feb = data.filter(pl.col("timestamp") < dt.datetime(2024, 3, 1)).height
    assert report.rows_moved == jan_feb
    assert _counts(pg, sql) == (data.height - jan_feb, jan_feb)
    assert sealing.seal_history(pg.db, dt.date(2024, 3, 15)).rows_moved == 0  # idempotent
    unsealed = sealing.unseal_history(pg.db, "2024-01-01", "2024-12-31")
    assert unsealed.rows_moved == jan_feb
    assert _counts(pg, sql) == (data.height, 0)
    after = pg.get_market_data(["NIFTY", "BANKNIFTY"], "2024-01-01", "2024-12-31", exact=True)
    assert_frame_equal(before, after)
