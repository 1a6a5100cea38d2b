"""The sealed-month guard on a real Citus cluster (tests/_citus.py): the trigger is
propagated to the shards, refuses a foreign write into a sealed month there as on a plain
server, and regime_io's own writes, seals and unseals still pass."""

from __future__ import annotations

import datetime as dt

import polars as pl
import psycopg
import pytest

from regime_io import PostgreSQLIntegration
from tests._reading_data import bars

pytestmark = pytest.mark.citus

COLUMNS = "symbol, timestamp, open, high, low, close, volume, timeframe"
T0 = dt.datetime(2024, 1, 8, 9, 15)


def test_the_guard_works_on_the_cluster(citus_pg: PostgreSQLIntegration, citus) -> None:
    pg = citus_pg
    data = bars(["AAA", "BBB"], ["1m"], T0, 60, step=dt.timedelta(hours=12))  # January and February
    pg.save_market_data(data)
    jan = data.filter(pl.col("timestamp") < dt.datetime(2024, 2, 1))
    assert pg.seal("2024-02-01", tables=["bars"]).rows_moved == jan.height
    table = pg.db.table("market_data")
    with psycopg.connect(citus.url(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(f"INSERT INTO {table} ({COLUMNS}) VALUES ('AAA', %s, 1, 1, 1, 1, 1, '1m')",
                         (jan["timestamp"][0],))
        assert caught.value.sqlstate == "RIO01"
        assert "series (symbol=AAA, timeframe=1m), month 2024-01 is sealed" in str(caught.value)
        # Unsealed months and other series stay writable.
        conn.execute(f"INSERT INTO {table} ({COLUMNS}) VALUES ('AAA', '2024-02-20 03:00', 1, 1, 1, 1, 1, '1m'), "
                     "('CCC', '2024-01-20', 1, 1, 1, 1, 1, '1m')")
    # regime_io's own paths: a restatement merges into the chunk, a later month is created and
    # written, unseal moves rows back (chunks deleted before the rows go in), seal again.
    result = pg.save_market_data(jan.head(3).with_columns(pl.col("volume") + 1))
    assert (result.inserted, result.updated) == (0, 3)
    pg.save_market_data(bars(["AAA"], ["1m"], dt.datetime(2024, 5, 6), 5))
    assert pg.unseal("2024-01-01", "2024-01-31", tables=["bars"]).rows_moved == jan.height
    assert pg.seal("2024-02-01", tables=["bars"]).rows_moved == jan.height + 1  # CCC's row too
    assert pg.get_market_data(["AAA", "BBB"], "2024-01-01", "2024-01-31").height == jan.height
    assert pg.repair_sealed(dry_run=True).rows_moved == 0
    # A partition created after initialize_database carries the guard too.
    assert pg.seal("2024-06-01", tables=["bars"]).rows_moved == 5 + 1 + data.height - jan.height
    with psycopg.connect(citus.url(), autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(f"INSERT INTO {table} ({COLUMNS}) VALUES ('AAA', '2024-05-30', 1, 1, 1, 1, 1, '1m')")
        assert caught.value.sqlstate == "RIO01"
        # Rows written before the guard existed: doctor's query finds them, repair merges them.
        conn.execute("SET citus.enable_unsafe_triggers = on")
        conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        conn.execute(f"INSERT INTO {table} ({COLUMNS}) VALUES ('BBB', %s, 1, 1, 1, 1, 4242, '1m')",
                     (jan.filter(pl.col("symbol") == "BBB")["timestamp"][0],))
        conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    assert pg.repair_sealed(dry_run=True).rows_moved == 1
    assert [(p.period, p.rows) for p in pg.repair_sealed()] == [(dt.date(2024, 1, 1), 1)]
    got = pg.get_market_data("BBB", "2024-01-01", "2024-01-31")
    assert got.height == jan.filter(pl.col("symbol") == "BBB").height and 4242 in got["volume"].to_list()


def test_an_earlier_known_at_in_a_sealed_month_is_the_documented_error_on_the_cluster(
        citus_pg: PostgreSQLIntegration) -> None:
    from regime_io import WriteError
    from tests._reading_data import regimes_1min

    pg = citus_pg
    rows = regimes_1min(["AAA"], T0, 5)
    pg.save_1min_market_regime(rows)
    assert pg.seal("2024-02-01", tables=["1min"]).rows_moved == 5
    restated = rows.head(1).with_columns(confidence=rows["confidence"][0] / 2)
    pg.save_1min_market_regime(restated)
    with pytest.raises(WriteError, match=r"known_at 2020-01-01 .* is not after the stored version's knowledge time"):
        pg.save_1min_market_regime(restated.with_columns(confidence=1.0), known_at=dt.datetime(2020, 1, 1))
    pg.save_1min_market_regime(restated.with_columns(confidence=2.0), known_at=dt.datetime.now() + dt.timedelta(days=9))
    pg.save_1min_market_regime(restated.with_columns(confidence=3.0))  # after a version dated in the future
    assert pg.get_1min_market_regimes("AAA", T0, T0)["confidence"].to_list() == [3.0]


def test_counts_and_sql_over_sealed_months_on_the_cluster(citus_pg: PostgreSQLIntegration,
                                                           pg: PostgreSQLIntegration) -> None:
    """One count everywhere and SQL over both tiers give the plain server's answers."""
    from polars.testing import assert_frame_equal

    from regime_io._schema.doctor import diagnose

    data = bars(["AAA", "BBB"], ["1m"], T0, 60, step=dt.timedelta(hours=12))
    query = ("SELECT symbol, count(*) AS n, min(low) AS lo, max(high) AS hi FROM bars "
             "WHERE timestamp >= '2024-01-10' GROUP BY symbol ORDER BY symbol")
    answers = []
    for p in (pg, citus_pg):
        p.save_market_data(data)
        sealed = p.seal("2024-02-01", tables=["bars"]).rows_moved
        assert sealed == data.filter(pl.col("timestamp") < dt.datetime(2024, 2, 1)).height
        tables = diagnose(p.settings).tables
        assert tables is not None
        row = tables.filter(pl.col("table") == "market_data").row(0, named=True)
        assert (row["rows"], row["sealed"], row["total"]) == (data.height - sealed, sealed, data.height)
        catalog = p.catalog("bars")
        assert (catalog["rows"].sum(), catalog["sealed"].sum()) == (data.height - sealed, sealed)
        answers.append(p.sql(query, return_type="polars"))
    assert answers[0].height == 2
    assert_frame_equal(answers[0], answers[1])
