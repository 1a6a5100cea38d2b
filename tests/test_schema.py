"""DDL on a real server: columns, types, keys, partitions, idempotent and concurrent init."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from regime_io import PostgreSQLIntegration
from regime_io._conn.partitions import buckets
from regime_io._schema.ddl import SCHEMA_VERSION, initialize_database, schema_sql
from regime_io.database import Database
from regime_io.tables import TABLES

# The seed's column types, as information_schema spells them, for every table.
SEED_TYPES = {
    "market_data": {"symbol": "character varying(20)", "timestamp": "timestamp without time zone",
                    "open": "numeric(10,2)", "high": "numeric(10,2)", "low": "numeric(10,2)",
                    "close": "numeric(10,2)", "volume": "bigint", "timeframe": "character varying(10)"},
    "options_data": {"symbol": "character varying(20)", "expiry_date": "date", "strike_price": "numeric(10,2)",
                     "option_type": "character varying(4)", "open_interest": "bigint",
                     "implied_volatility": "numeric(10,4)", "delta": "numeric(10,4)", "vega": "numeric(10,4)"},
    "market_regimes": {"regime": "character varying(50)", "confidence": "numeric(5,2)",
                       "oi_trend_value": "numeric(10,4)", "timeframe": "character varying(10)"},
    "market_regimes_1min": {"confidence": "numeric(5,2)", "directional_confidence": "numeric(5,2)",
                            "greek_sentiment": "character varying(50)", "vwap_signal": "numeric(10,4)"},
    "optimization_results": {"parameters": "jsonb", "fitness_value": "numeric(10,4)",
                             "start_date": "timestamp without time zone", "algorithm": "character varying(50)"},
}


def _column_types(sql, schema: str, table: str) -> dict[str, str]:
    rows = sql(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped""",
        (schema, table),
    )
    return {r[0]: r[1] for r in rows}


@pytest.mark.parametrize("key", list(TABLES))
def test_tables_have_the_seed_columns_and_types(pg: PostgreSQLIntegration, sql, key: str) -> None:
    types = _column_types(sql, pg.settings.schema, pg.settings.table_name(key))
    # Every seed column exists, plus id and created_at.
    assert set(TABLES[key].column_names) | {"id", "created_at"} <= set(types)
    for column, expected in SEED_TYPES[key].items():
        assert types[column] == expected, (key, column)
    assert types["id"] == "bigint"
    assert types["created_at"] == "timestamp without time zone"


@pytest.mark.parametrize("key", list(TABLES))
def test_primary_key_is_the_natural_key_and_includes_symbol(pg: PostgreSQLIntegration, sql, key: str) -> None:
    rows = sql(
        """SELECT a.attname FROM pg_index i
           JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, ord) ON true
           JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
           WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s ORDER BY k.ord""",
        (pg.settings.schema, pg.settings.table_name(key)),
    )
    assert tuple(r[0] for r in rows) == TABLES[key].primary_key
    assert "symbol" in TABLES[key].primary_key


def test_time_series_tables_are_range_partitioned_on_timestamp(pg: PostgreSQLIntegration, sql) -> None:
    rows = sql(
        """SELECT c.relname, pg_get_partkeydef(c.oid) FROM pg_partitioned_table p
           JOIN pg_class c ON c.oid = p.partrelid JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s""",
        (pg.settings.schema,),
    )
    got = dict(rows)
    for key, spec in TABLES.items():
        name = pg.settings.table_name(key)
        if spec.partitioned:
            assert got[name] == 'RANGE ("timestamp")'
        else:
            assert name not in got


def test_partitions_are_created_on_demand(pg: PostgreSQLIntegration, sql) -> None:
    spec = TABLES["market_data"]
    created = pg.db.partitions.ensure(pg.db.pool, pg.settings, spec,
                                      dt.datetime(2024, 1, 31, 23, 59), dt.datetime(2024, 3, 1, 0, 0))
    assert created == 3
    parts = sql(
        """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
           JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
           JOIN pg_namespace n ON n.oid = p.relnamespace WHERE n.nspname = %s AND p.relname = %s
           ORDER BY 1""",
        (pg.settings.schema, pg.settings.table_name("market_data")),
    )
    assert [p[0] for p in parts] == ["mr_market_data_p2024_01", "mr_market_data_p2024_02", "mr_market_data_p2024_03"]
    assert "FROM ('2024-02-01 00:00:00') TO ('2024-03-01 00:00:00')" in parts[1][1]
    # Warm: the cache answers without creating anything; a fresh cache finds them in the catalog.
    assert pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, dt.datetime(2024, 2, 5), dt.datetime(2024, 2, 6)) == 0
    pg.db.partitions.forget()
    assert pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, dt.datetime(2024, 2, 5), dt.datetime(2024, 3, 6)) == 0


@pytest.mark.parametrize(("interval", "expected"), [
    ("day", [dt.date(2024, 2, 28), dt.date(2024, 2, 29), dt.date(2024, 3, 1)]),
    ("week", [dt.date(2024, 2, 26)]),
    ("month", [dt.date(2024, 2, 1), dt.date(2024, 3, 1)]),
    ("year", [dt.date(2024, 1, 1)]),
])
def test_bucket_boundaries(interval: str, expected: list[dt.date]) -> None:
    assert buckets(dt.datetime(2024, 2, 28, 10), dt.datetime(2024, 3, 1, 9), interval) == expected  # type: ignore[arg-type]


def test_initialize_twice_is_idempotent(pg: PostgreSQLIntegration, sql) -> None:
    before = sql("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
                 (pg.settings.schema,))
    assert pg.initialize_database() == SCHEMA_VERSION
    after = sql("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s",
                (pg.settings.schema,))
    assert before == after
    versions = sql(f'SELECT version FROM "{pg.settings.schema}"."mr_schema_version" ORDER BY 1')
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]  # every migration recorded once


def test_concurrent_initialize_is_safe(settings, sql) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def init() -> None:
        db = Database(settings)
        try:
            barrier.wait()
            initialize_database(db.pool, db.resolved)
        except BaseException as err:  # collected and asserted below
            errors.append(err)
        finally:
            db.close()

    threads = [threading.Thread(target=init) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    tables = sql("SELECT count(*) FROM pg_tables WHERE schemaname = %s", (settings.schema,))
    created = sum(s.startswith("CREATE TABLE") for s in schema_sql(settings))  # parents, chunks, bookkeeping
    assert tables[0][0] == created


def test_changing_the_partition_interval_later_fills_only_the_gaps(pg: PostgreSQLIntegration, sql) -> None:
    import polars as pl

    from regime_io.config import settings_replace

    frame = pl.DataFrame({"symbol": ["A"] * 2, "timestamp": [dt.datetime(2024, 1, 15), dt.datetime(2024, 2, 3)],
                          "regime": ["x", "y"], "confidence": [1.0, 2.0]})
    assert pg.save_1min_market_regime(frame).inserted == 2  # monthly partitions for January, February
    daily = PostgreSQLIntegration(settings=settings_replace(pg.settings, partition_interval="day"))
    try:
        later = frame.with_columns(pl.Series("timestamp", [dt.datetime(2024, 1, 20), dt.datetime(2024, 3, 2)]))
        assert daily.save_1min_market_regime(later).inserted == 2  # January is covered; March 2 gets a day
    finally:
        daily.close()
    names = {r[0] for r in sql(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace
           WHERE n.nspname = %s AND p.relname = %s""", (pg.settings.schema, "mr_market_regimes_1min"))}
    assert {"mr_market_regimes_1min_p2024_01", "mr_market_regimes_1min_p2024_02",
            "mr_market_regimes_1min_p2024_03_02"} <= names


def test_gaps() -> None:
    from regime_io._conn.partitions import _gaps

    d = dt.date
    assert _gaps(d(2024, 1, 1), d(2024, 2, 1), [(d(2024, 1, 10), d(2024, 1, 11))]) == [
        (d(2024, 1, 1), d(2024, 1, 10)), (d(2024, 1, 11), d(2024, 2, 1))]
    assert _gaps(d(2024, 1, 5), d(2024, 1, 6), [(d(2024, 1, 1), d(2024, 2, 1))]) == []
    assert _gaps(d(2024, 1, 5), d(2024, 1, 6), []) == [(d(2024, 1, 5), d(2024, 1, 6))]


def test_compressed_payloads_are_stored_external(pg: PostgreSQLIntegration, sql) -> None:
    """Sealed payloads, patches and change-log payloads are compressed already: TOAST keeps
    them as they are (storage 'e') instead of running pglz over them (0.3 s of a 1M-bar
    backfill; 5 ms of a 10-patch restatement)."""
    schema = pg.settings.schema
    got = sql("SELECT c.relname, a.attname, a.attstorage FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
              "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s "
              "AND a.attname IN ('payload', 'patch') AND c.relkind IN ('r', 'p') ORDER BY 1, 2", (schema,))
    assert {r[:2] for r in got} >= {("mr_market_data_chunks", "payload"), ("mr_market_data_chunks", "patch"),
                                   ("mr_sealed_changes", "payload")}
    assert all(r[2] == "e" for r in got), got


def test_an_upgraded_patch_column_is_stored_external(pg: PostgreSQLIntegration, sql) -> None:
    """A chunk table whose patch column came with the default storage (schema version 9
    before this was set) gets EXTERNAL from the next initialize_database."""
    table = f'"{pg.settings.schema}"."mr_market_data_chunks"'
    sql(f"ALTER TABLE {table} ALTER COLUMN patch SET STORAGE EXTENDED")
    pg.initialize_database()
    got = sql(f"SELECT attstorage FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attname = 'patch'")
    assert got == [("e",)]
