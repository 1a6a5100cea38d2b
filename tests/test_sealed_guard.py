"""The sealed-month guard: other tools cannot write rows into sealed series-months;
regime_io's own paths (writes, seal, unseal, backfills) still can; pre-guard duplicates
are found by doctor and merged by repair_sealed."""

from __future__ import annotations

import datetime as dt

import polars as pl
import psycopg
import pytest
from typer.testing import CliRunner

from regime_io import PostgreSQLIntegration
from regime_io._schema.doctor import diagnose
from regime_io.cli import app
from tests._reading_data import bars

COLUMNS = "symbol, timestamp, open, high, low, close, volume, timeframe"


def _sealed_jan(pg: PostgreSQLIntegration) -> pl.DataFrame:
    """NIFTY 1m bars, 2024-01-02 .. early March; January sealed."""
    data = bars(["NIFTY"], ["1m"], dt.datetime(2024, 1, 2, 9, 15), 1500, step=dt.timedelta(hours=1))
    pg.save_market_data(data)
    assert pg.seal(dt.date(2024, 2, 1)).rows_moved > 0
    return data


def _refused(sql, query: str, params: object = None) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        sql(query, params)
    return caught.value


def test_a_foreign_insert_into_a_sealed_month_is_refused_with_what_to_do(pg: PostgreSQLIntegration, sql) -> None:
    _sealed_jan(pg)
    table = pg.db.table("market_data")
    err = _refused(sql, f"INSERT INTO {table} ({COLUMNS}) VALUES ('NIFTY', '2024-01-02 09:15', 1, 1, 1, 1, 1, '1m')")
    assert err.sqlstate == "RIO01"
    message, hint = err.diag.message_primary or "", err.diag.message_hint or ""
    assert message.startswith("mr_market_data: series (symbol=NIFTY, timeframe=1m), month 2024-01 is sealed")
    assert "mr_market_data_chunks" in message
    assert "through regime_io" in hint
    assert "regime-io unseal 2024-01-01 2024-01-31 --table market_data --symbol NIFTY" in hint
    # Still one row per key.
    got = pg.get_market_data("NIFTY", "2024-01-02 09:15", "2024-01-02 09:15", timeframe="1m")
    assert got.height == 1


def test_foreign_copy_update_and_partition_writes_are_refused(pg: PostgreSQLIntegration, sql, server) -> None:
    _sealed_jan(pg)
    table = pg.db.table("market_data")
    with psycopg.connect(server.url(), autocommit=True) as conn:
        with (pytest.raises(psycopg.Error) as caught, conn.cursor() as cur,
              cur.copy(f"COPY {table} ({COLUMNS}) FROM STDIN") as copy):
            copy.write_row(("NIFTY", dt.datetime(2024, 2, 5, 10), 1, 1, 1, 1, 1, "1m"))  # unsealed month
            copy.write_row(("NIFTY", dt.datetime(2024, 1, 9, 10), 1, 1, 1, 1, 1, "1m"))  # sealed
        assert caught.value.sqlstate == "RIO01"
    # The whole COPY was refused, the unsealed row too.
    assert sql(f"SELECT count(*) FROM {table} WHERE timestamp = '2024-02-05 10:00'") == [(0,)]
    # An UPDATE that moves a February row into sealed January.
    err = _refused(sql, f"UPDATE {table} SET timestamp = '2024-01-31 23:00' "
                        "WHERE symbol = 'NIFTY' AND timestamp = (SELECT min(timestamp) FROM " + table + ")")
    assert err.sqlstate == "RIO01"
    # Straight into the month's partition.
    partition = table[:-1] + '_p2024_01"'
    err = _refused(sql, f"INSERT INTO {partition} ({COLUMNS}) VALUES ('NIFTY', '2024-01-20', 1, 1, 1, 1, 1, '1m')")
    assert err.sqlstate == "RIO01"


def test_other_series_and_unsealed_months_stay_writable(pg: PostgreSQLIntegration, sql) -> None:
    _sealed_jan(pg)
    table = pg.db.table("market_data")
    sql(f"INSERT INTO {table} ({COLUMNS}) VALUES ('NIFTY', '2024-01-05 10:00', 1, 1, 1, 1, 1, '5m'), "
        "('BANKNIFTY', '2024-01-05 10:00', 1, 1, 1, 1, 1, '1m'), ('NIFTY', '2024-02-29 10:30', 1, 1, 1, 1, 1, '1m')")
    sql(f"UPDATE {table} SET volume = volume + 1 WHERE timestamp >= '2024-02-01'")
    assert sql(f"SELECT count(*) FROM {table} WHERE timestamp < '2024-02-01'") == [(2,)]


def test_regime_io_still_writes_seals_and_unseals_sealed_months(pg: PostgreSQLIntegration, sql) -> None:
    data = _sealed_jan(pg)
    table = pg.db.table("market_data")
    jan = data.filter(pl.col("timestamp") < dt.datetime(2024, 2, 1))
    restated = jan.head(5).with_columns(pl.col("volume") + 7)
    result = pg.save_market_data(restated)  # merges into the chunk
    assert (result.inserted, result.updated) == (0, 5)
    backfill = bars(["NIFTY"], ["1m"], dt.datetime(2023, 11, 1), 200, step=dt.timedelta(hours=1))
    pg.save("bars", backfill, tier="sealed")
    report = pg.unseal("2024-01-01", "2024-01-31")
    assert [(p.period, p.rows) for p in report] == [(dt.date(2024, 1, 1), jan.height)]  # January only
    assert sql(f"SELECT count(*) FROM {table} WHERE timestamp < '2024-02-01' AND timestamp >= '2024-01-01'") == [
        (jan.height,)]
    assert pg.unseal("2023-11-01", "2023-12-31").rows_moved == backfill.height
    assert pg.seal(dt.date(2024, 2, 1)).rows_moved == jan.height + backfill.height
    got = pg.get_market_data("NIFTY", "2023-11-01", "2024-01-31", timeframe="1m")
    assert got.height == jan.height + backfill.height
    assert got.filter(pl.col("timestamp") == restated["timestamp"][0])["volume"][0] == restated["volume"][0]


def test_the_horizon_follows_sealing_and_survives_initialize(pg: PostgreSQLIntegration, sql) -> None:
    horizon = pg.db.table("market_data")[:-1] + '_sealed_horizon"()'
    assert sql(f"SELECT {horizon}") == [(dt.datetime(1, 1, 1),)]
    _sealed_jan(pg)
    assert sql(f"SELECT {horizon}") == [(dt.datetime(2024, 2, 1),)]
    pg.unseal("2024-01-01", "2024-01-31")
    assert sql(f"SELECT {horizon}") == [(dt.datetime(2024, 2, 1),)]  # only moves forward
    pg.seal(dt.date(2024, 2, 1))
    # A schema sealed before the guard existed: its horizon comes from the chunks on the next init.
    sql(f"CREATE OR REPLACE FUNCTION {horizon} RETURNS timestamp LANGUAGE sql IMMUTABLE AS "
        "$$ SELECT '0001-01-01'::timestamp $$")
    pg.initialize_database()
    assert sql(f"SELECT {horizon}") == [(dt.datetime(2024, 2, 1),)]
    err = _refused(sql, f"INSERT INTO {pg.db.table('market_data')} ({COLUMNS}) "
                        "VALUES ('NIFTY', '2024-01-20', 1, 1, 1, 1, 1, '1m')")
    assert err.sqlstate == "RIO01"


def test_the_guard_covers_partitions_created_after_it(pg: PostgreSQLIntegration, sql) -> None:
    later = bars(["NIFTY"], ["1m"], dt.datetime(2025, 6, 2), 50, step=dt.timedelta(hours=1))
    pg.save_market_data(later)  # a partition created after initialize_database
    pg.seal(dt.date(2025, 7, 1))
    err = _refused(sql, f"INSERT INTO {pg.db.table('market_data')} ({COLUMNS}) "
                        "VALUES ('NIFTY', '2025-06-20', 1, 1, 1, 1, 1, '1m')")
    assert err.sqlstate == "RIO01"


def test_every_sealable_table_is_guarded(pg: PostgreSQLIntegration, sql) -> None:
    rows = sql("SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
               "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND t.tgname LIKE '%%sealed_guard' "
               "AND c.relkind = 'p'", (pg.settings.schema,))
    assert sorted(r[0] for r in rows) == ["mr_market_data", "mr_market_regimes", "mr_market_regimes_1min",
                                          "mr_options_data"]


# ---------------------------------------------------------------------------------------
# Rows written before the guard existed: doctor finds them, repair_sealed merges them


def _pre_guard_duplicate(pg: PostgreSQLIntegration, sql) -> dt.datetime:
    data = _sealed_jan(pg)
    table = pg.db.table("market_data")
    ts = data["timestamp"][3]
    sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")  # as before schema version 7
    sql(f"INSERT INTO {table} ({COLUMNS}) VALUES ('NIFTY', %s, 1, 1, 1, 1, 4242, '1m'), "
        "('NIFTY', '2024-01-31 23:59', 1, 1, 1, 1, 1, '1m')", (ts,))
    sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    return ts


def test_doctor_reports_rows_in_sealed_months_and_repair_merges_them(pg: PostgreSQLIntegration, sql) -> None:
    ts = _pre_guard_duplicate(pg, sql)
    sealed_check = [c for c in diagnose(pg.settings).checks if c.name == "sealed months"]
    assert sealed_check and sealed_check[0].status == "warn"
    assert "market_data: 2 row(s) in 1 sealed series-month(s)" in sealed_check[0].detail
    assert "regime-io repair-sealed" in sealed_check[0].detail
    assert pg.repair_sealed(dry_run=True).rows_moved == 2
    report = pg.repair_sealed()
    assert [(p.table, p.period, p.rows) for p in report] == [("market_data", dt.date(2024, 1, 1), 2)]
    table = pg.db.table("market_data")
    assert sql(f"SELECT count(*) FROM {table} WHERE timestamp < '2024-02-01'") == [(0,)]
    got = pg.get_market_data("NIFTY", ts, ts, timeframe="1m")
    assert got.height == 1 and got["volume"][0] == 4242  # the later (row-table) version won
    assert pg.get_market_data("NIFTY", "2024-01-31 23:59", "2024-01-31 23:59", timeframe="1m").height == 1
    catalog = pg.catalog("bars")
    assert catalog["row_count"][0] == pg.get_market_data("NIFTY", "2024-01-01", "2024-12-31").height
    assert [c.status for c in diagnose(pg.settings).checks if c.name == "sealed months"] == ["ok"]
    assert pg.repair_sealed().rows_moved == 0


def test_repair_sealed_cli(pg: PostgreSQLIntegration, sql, settings, server) -> None:
    _pre_guard_duplicate(pg, sql)
    base = ["--dsn", server.url(), "--schema", settings.schema]
    runner = CliRunner()
    dry = runner.invoke(app, [*base, "repair-sealed", "--dry-run"], env={"COLUMNS": "200"})
    assert dry.exit_code == 0, dry.output
    assert "would move 2 rows in 1 table-month" in dry.output
    done = runner.invoke(app, [*base, "repair-sealed", "--table", "bars"], env={"COLUMNS": "200"})
    assert done.exit_code == 0, done.output
    assert "merged into their chunks 2 rows" in done.output
    assert pg.repair_sealed(dry_run=True).rows_moved == 0
