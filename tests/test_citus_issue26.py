"""last=N and delete_range on a real Citus cluster, compared with the plain server: the
per-symbol subqueries of the last rows, the range delete's history, chunk rewrite and
catalog statements (tests/_citus.py starts the cluster)."""

from __future__ import annotations

import datetime as dt

import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from tests._reading_data import bars

pytestmark = pytest.mark.citus

T0 = dt.datetime(2024, 1, 8, 9, 15)
SYMBOLS = ["AAA", "BBB", "CCC"]


@pytest.fixture
def both(pg: PostgreSQLIntegration, citus_pg: PostgreSQLIntegration) -> list[PostgreSQLIntegration]:
    """Both engines with January's bars sealed and February's in rows."""
    for p in (pg, citus_pg):
        p.save_market_data(bars(SYMBOLS, ["1m", "5m"], T0, 40))
        p.save_market_data(bars(SYMBOLS, ["1m", "5m"], T0 + dt.timedelta(days=31), 40))
        p.seal("2024-02-01", tables="bars")
    return [pg, citus_pg]


def test_last_rows_on_the_cluster(both: list[PostgreSQLIntegration]) -> None:
    for n in (3, 60, 500):
        plain, cluster = (p.get_market_data(SYMBOLS, end_date="2024-03-31", last=n) for p in both)
        assert plain.height == 3 * min(n, 160)
        assert_frame_equal(plain, cluster)


def test_delete_range_on_the_cluster(both: list[PostgreSQLIntegration]) -> None:
    counts = [p.delete_range("bars", ["AAA", "CCC"], "2024-01-08 09:30", "2024-02-08 09:20") for p in both]
    assert counts[0] == counts[1] > 0
    plain, cluster = (p.get_market_data(SYMBOLS, "2024-01-01", "2024-03-31") for p in both)
    assert_frame_equal(plain, cluster)
    catalogs = [p.catalog("bars").drop("updated_at", strict=False).sort("symbol", "timeframe") for p in both]
    assert_frame_equal(*catalogs)
