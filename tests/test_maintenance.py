"""Retention and partition maintenance on a real server: several months of partitions,
a boundary partition with rows on both sides of the cutoff, dry runs, per-table
retention, and cleanup running while readers and writers hold the table."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
import time
import zoneinfo
from typing import Any

import psycopg
import pytest

from regime_io import PostgreSQLIntegration, SchemaError, UsageError, ValidationError
from regime_io._conn.partitions import bucket_start, next_bucket
from regime_io._schema.maintenance import CleanupReport, cleanup_old_data, list_partitions
from regime_io.config import settings_replace
from regime_io.database import Database
from regime_io.tables import TABLES


def _now(settings: Any) -> dt.datetime:
    return dt.datetime.now(zoneinfo.ZoneInfo(settings.storage_timezone)).replace(tzinfo=None, microsecond=0)


def _month(day: dt.date, offset: int) -> dt.date:
    """The first day of the month ``offset`` months after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + offset
    return dt.date(index // 12, index % 12 + 1, 1)


def _retention_landing_mid_month(settings: Any, months_back: int) -> tuple[int, dt.datetime]:
    """days_to_keep whose cutoff falls on the 15th of a month ``months_back`` ago, so the
    boundary partition can hold rows an hour either side of the cutoff."""
    now = _now(settings)
    target = _month(now.date(), -months_back).replace(day=15)
    days = (now.date() - target).days
    return days, dt.datetime.combine(target, now.time())


def _table(pg: PostgreSQLIntegration, key: str) -> str:
    return f'"{pg.settings.schema}"."{pg.settings.table_name(key)}"'  # type: ignore[arg-type]


def _insert_bars(pg: PostgreSQLIntegration, sql: Any, stamps: list[dt.datetime],
                 symbols: tuple[str, ...] = ("NIFTY", "BANKNIFTY")) -> None:
    pg.db.partitions.ensure(pg.db.pool, pg.settings, TABLES["market_data"], min(stamps), max(stamps))
    sql(f"INSERT INTO {_table(pg, 'market_data')} (symbol, timestamp, open, high, low, close, volume, timeframe) "
        "SELECT s, t, 100, 101, 99, 100.5, 1000, '1min' FROM unnest(%s::text[]) s, unnest(%s::timestamp[]) t",
        (list(symbols), stamps))


def _insert_1min(pg: PostgreSQLIntegration, sql: Any, stamps: list[dt.datetime], symbol: str = "NIFTY") -> None:
    pg.db.partitions.ensure(pg.db.pool, pg.settings, TABLES["market_regimes_1min"], min(stamps), max(stamps))
    sql(f"INSERT INTO {_table(pg, 'market_regimes_1min')} (symbol, timestamp, regime, confidence) "
        "SELECT %s, t, 'bull', 80 FROM unnest(%s::timestamp[]) t", (symbol, stamps))


def _partition_names(pg: PostgreSQLIntegration, sql: Any, key: str) -> list[str]:
    rows = sql("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
               "JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace n ON n.oid = p.relnamespace "
               "WHERE n.nspname = %s AND p.relname = %s ORDER BY 1",
               (pg.settings.schema, pg.settings.table_name(key)))  # type: ignore[arg-type]
    return [r[0] for r in rows]


def _stamps(sql: Any, pg: PostgreSQLIntegration, key: str) -> list[dt.datetime]:
    return [r[0] for r in sql(f"SELECT DISTINCT timestamp FROM {_table(pg, key)} ORDER BY 1")]


@pytest.fixture
def history(pg: PostgreSQLIntegration, sql: Any) -> dict[str, Any]:
    """Eight months of bars for two symbols; the cutoff is mid-month three months ago."""
    days, cutoff = _retention_landing_mid_month(pg.settings, 3)
    boundary = bucket_start(cutoff, "month")
    stamps = []
    for offset in range(-5, 3):  # five whole months before the boundary month, two after
        first = _month(boundary, offset)
        stamps += [dt.datetime.combine(first.replace(day=d), dt.time(9, 15)) for d in (3, 10, 25)]
    hour = dt.timedelta(hours=1)
    stamps += [cutoff - hour, cutoff + hour, cutoff - dt.timedelta(days=10), cutoff + dt.timedelta(days=9)]
    stamps = sorted(set(stamps))
    _insert_bars(pg, sql, stamps)
    return {"days": days, "cutoff": cutoff, "boundary": boundary, "stamps": stamps}


def test_cleanup_drops_whole_partitions_and_trims_only_the_boundary(pg: PostgreSQLIntegration, sql: Any,
                                                                    history: dict[str, Any]) -> None:
    cutoff, boundary, stamps = history["cutoff"], history["boundary"], history["stamps"]
    before = _partition_names(pg, sql, "market_data")
    assert len(before) == 8
    old_parts = [n for n in before if n < f"mr_market_data_p{boundary:%Y_%m}"]
    assert len(old_parts) == 5
    in_old = [s for s in stamps if s < dt.datetime.combine(boundary, dt.time())]
    in_boundary_before_cutoff = [s for s in stamps if dt.datetime.combine(boundary, dt.time()) <= s < cutoff]
    assert len(in_boundary_before_cutoff) == 4  # the 3rd, the 10th, cutoff - 10 days and cutoff - 1 hour

    report = cleanup_old_data(pg.db, history["days"], tables=["market_data"])

    entry = report["market_data"]
    assert entry.column == "timestamp"
    assert abs(entry.cutoff - cutoff) < dt.timedelta(minutes=5)
    assert sorted(entry.dropped) == old_parts
    assert entry.partitions_dropped == 5
    assert entry.rows_dropped == 2 * len(in_old)  # two symbols per timestamp
    assert entry.rows_deleted == 2 * len(in_boundary_before_cutoff)
    assert report.rows_removed == 2 * len([s for s in stamps if s < cutoff])
    # The partitions are gone, the boundary partition stays with only the rows after the cutoff.
    assert _partition_names(pg, sql, "market_data") == [n for n in before if n not in old_parts]
    assert _stamps(sql, pg, "market_data") == [s for s in stamps if s >= cutoff]
    assert cutoff + dt.timedelta(hours=1) in _stamps(sql, pg, "market_data")


def test_dry_run_reports_the_same_counts_and_changes_nothing(pg: PostgreSQLIntegration, sql: Any,
                                                             history: dict[str, Any]) -> None:
    parts_before = _partition_names(pg, sql, "market_data")
    rows_before = sql(f"SELECT count(*) FROM {_table(pg, 'market_data')}")[0][0]

    dry = cleanup_old_data(pg.db, history["days"], dry_run=True)

    assert dry.dry_run
    assert _partition_names(pg, sql, "market_data") == parts_before
    assert sql(f"SELECT count(*) FROM {_table(pg, 'market_data')}")[0][0] == rows_before
    assert dry["market_data"].partitions_dropped == 5 and dry["market_data"].rows_deleted == 8

    real = cleanup_old_data(pg.db, history["days"])

    assert not real.dry_run
    for d, r in zip(dry, real, strict=True):
        assert (d.table, d.dropped, d.rows_dropped, d.rows_deleted) == (r.table, r.dropped, r.rows_dropped,
                                                                        r.rows_deleted)
    assert real.rows_removed == rows_before - sql(f"SELECT count(*) FROM {_table(pg, 'market_data')}")[0][0]
    # Nothing left to do: a second run removes nothing.
    again = cleanup_old_data(pg.db, history["days"])
    assert again.rows_removed == 0 and again.partitions_dropped == 0


def test_dropping_partitions_resets_the_partition_cache(pg: PostgreSQLIntegration, sql: Any,
                                                        history: dict[str, Any]) -> None:
    oldest = history["stamps"][0]
    spec = TABLES["market_data"]
    assert pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, oldest, oldest) == 0  # cached
    cleanup_old_data(pg.db, history["days"], tables=["market_data"])
    # Without forget() the cache would still claim the dropped partition exists.
    assert pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, oldest, oldest) == 1
    _insert_bars(pg, sql, [oldest])  # a backfill of old data works again


def test_per_table_retention_from_the_configuration_wins(pg: PostgreSQLIntegration, sql: Any) -> None:
    now = _now(pg.settings)
    stamps = [now - dt.timedelta(days=d, minutes=1) for d in (1, 5, 20, 40)]
    _insert_bars(pg, sql, stamps)
    _insert_1min(pg, sql, stamps)
    db = Database(settings_replace(pg.settings, retention_days={"market_regimes_1min": 10}))
    try:
        report = cleanup_old_data(db, 30)
    finally:
        db.close()
    assert report["market_regimes_1min"].rows_removed == 2  # 20 and 40 days old: older than 10 days
    assert report["market_data"].rows_removed == 2  # 40 days old, two symbols: older than 30 days
    assert len(_stamps(sql, pg, "market_regimes_1min")) == 2
    assert len(_stamps(sql, pg, "market_data")) == 3
    assert report["market_regimes_1min"].cutoff < report["market_data"].cutoff + dt.timedelta(days=21)


def test_tables_limits_the_cleanup(pg: PostgreSQLIntegration, sql: Any) -> None:
    stamps = [_now(pg.settings) - dt.timedelta(days=100)]
    _insert_bars(pg, sql, stamps)
    _insert_1min(pg, sql, stamps)
    report = cleanup_old_data(pg.db, 30, tables=["1min_market_regimes"])  # the seed's config key works
    assert [t.table for t in report] == ["market_regimes_1min"]
    assert report.rows_removed == 1
    assert len(_stamps(sql, pg, "market_data")) == 1


def test_optimization_results_age_by_created_at_not_by_end_date(pg: PostgreSQLIntegration, sql: Any) -> None:
    now = _now(pg.settings)
    table = _table(pg, "optimization_results")
    rows = [  # (run_id, created_at, end_date)
        ("old-run-recent-period", now - dt.timedelta(days=60), now - dt.timedelta(days=1)),
        ("new-run-old-period", now - dt.timedelta(days=1), now - dt.timedelta(days=2000)),
        ("no-created-at", None, now - dt.timedelta(days=2000)),
    ]
    for run_id, created, end in rows:
        sql(f"INSERT INTO {table} (symbol, algorithm, parameters, fitness_value, start_date, end_date, timeframe, "
            "run_id, created_at) VALUES ('NIFTY', 'ga', '{}', 1.5, %s, %s, '1min', %s, %s)",
            (end - dt.timedelta(days=30), end, run_id, created))
    report = cleanup_old_data(pg.db, 30, tables=["optimization_results"])
    assert report["optimization_results"].column == "created_at"
    assert report["optimization_results"].rows_deleted == 1
    assert report["optimization_results"].partitions_dropped == 0
    assert sorted(r[0] for r in sql(f"SELECT run_id FROM {table}")) == ["new-run-old-period", "no-created-at"]


def test_a_default_partition_falls_back_to_a_blocking_detach(pg: PostgreSQLIntegration, sql: Any) -> None:
    # DETACH ... CONCURRENTLY is not allowed when the table has a DEFAULT partition.
    now = _now(pg.settings)
    table = _table(pg, "market_data")
    sql(f'CREATE TABLE "{pg.settings.schema}".md_default PARTITION OF {table} DEFAULT')
    old = [now - dt.timedelta(days=200), now - dt.timedelta(days=120)]
    _insert_bars(pg, sql, [*old, now - dt.timedelta(days=1)])
    # A row with no partition of its own lands in the DEFAULT partition.
    sql(f"INSERT INTO {table} (symbol, timestamp, open, high, low, close, volume, timeframe) "
        "VALUES ('NIFTY', '2001-01-01', 1, 1, 1, 1, 1, '1min')")
    report = cleanup_old_data(pg.db, 30, tables=["market_data"])
    assert report["market_data"].partitions_dropped >= 2
    assert report["market_data"].rows_removed == 5  # 2 old timestamps x 2 symbols + the 2001 row
    assert "md_default" in _partition_names(pg, sql, "market_data")
    assert len(_stamps(sql, pg, "market_data")) == 1


def _wait_until(condition: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_cleanup_blocks_neither_readers_nor_writers(pg: PostgreSQLIntegration, sql: Any, server: Any,
                                                   history: dict[str, Any]) -> None:
    table = _table(pg, "market_data")
    now = _now(pg.settings)
    pg.db.partitions.ensure(pg.db.pool, pg.settings, TABLES["market_data"], now, now)
    # A long reader holds the parent: the concurrent detach has to wait for it to finish...
    reader = psycopg.connect(server.url())
    reader.execute(f"SELECT count(*) FROM {table}").fetchall()
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["report"] = cleanup_old_data(pg.db, history["days"], tables=["market_data"])
        except BaseException as err:  # reported by the assertion below
            result["error"] = err

    worker = threading.Thread(target=run)
    worker.start()
    try:
        waiting = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND wait_event_type = 'Lock'"
        _wait_until(lambda: sql(waiting, ("%DETACH PARTITION%CONCURRENTLY%",))[0][0] == 1, "the detach to wait")
        # ...but while it waits, a writer and a reader go on; lock_timeout turns a wait into an error.
        with psycopg.connect(server.url(), autocommit=True) as writer:
            writer.execute("SET lock_timeout = '2s'")
            writer.execute(f"INSERT INTO {table} (symbol, timestamp, open, high, low, close, volume, timeframe) "
                           "VALUES ('LIVE', %s, 1, 1, 1, 1, 1, '1min')", (now,))
            assert writer.execute(f"SELECT count(*) FROM {table} WHERE symbol = 'LIVE'").fetchone() == (1,)
    finally:
        reader.commit()
        reader.close()
        worker.join(60)
    assert "error" not in result, result.get("error")
    assert result["report"]["market_data"].partitions_dropped == 5
    assert now in _stamps(sql, pg, "market_data")


def test_an_interrupted_concurrent_detach_is_finished(pg: PostgreSQLIntegration, sql: Any, server: Any,
                                                      history: dict[str, Any]) -> None:
    table = _table(pg, "market_data")
    oldest = _partition_names(pg, sql, "market_data")[0]
    reader = psycopg.connect(server.url())
    reader.execute(f"SELECT count(*) FROM {table}").fetchall()
    detacher = psycopg.connect(server.url(), autocommit=True)
    pid = detacher.info.backend_pid

    def detach() -> None:
        with contextlib.suppress(psycopg.errors.QueryCanceled):
            detacher.execute(f'ALTER TABLE {table} DETACH PARTITION "{pg.settings.schema}"."{oldest}" CONCURRENTLY')

    worker = threading.Thread(target=detach)
    worker.start()
    try:
        _wait_until(lambda: sql("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
                    == [("Lock",)], "the detach to wait")
        sql("SELECT pg_cancel_backend(%s)", (pid,))
        worker.join(30)
    finally:
        reader.commit()
        reader.close()
        detacher.close()
    pending = sql("SELECT i.inhdetachpending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                  "WHERE c.relname = %s", (oldest,))
    assert pending == [(True,)]
    report = cleanup_old_data(pg.db, history["days"], tables=["market_data"])
    assert oldest in report["market_data"].dropped
    assert oldest not in _partition_names(pg, sql, "market_data")


@pytest.mark.parametrize("days", [-1, 1.5, True, "30", None])
def test_days_to_keep_must_be_a_whole_number(pg: PostgreSQLIntegration, days: Any) -> None:
    with pytest.raises(ValidationError, match="days_to_keep must be a whole number"):
        cleanup_old_data(pg.db, days)


def test_a_retention_longer_than_the_calendar_removes_nothing(pg: PostgreSQLIntegration, sql: Any,
                                                              history: dict[str, Any]) -> None:
    report = cleanup_old_data(pg.db, 10**9, tables=["market_data"])
    assert report.rows_removed == 0 and report["market_data"].cutoff == dt.datetime.min
    assert len(_stamps(sql, pg, "market_data")) == len(history["stamps"])


def test_unknown_and_missing_tables(pg: PostgreSQLIntegration, db: Database, sql: Any) -> None:
    with pytest.raises(UsageError, match="unknown table 'prices'; allowed: market_data"):
        cleanup_old_data(pg.db, 30, tables=["prices"])
    sql(f"DROP TABLE {_table(pg, 'market_regimes')}")
    with pytest.raises(SchemaError, match=r"'market_regimes'.*does not exist"):
        cleanup_old_data(pg.db, 30, tables=["market_regimes"])
    # Every table: the missing one is skipped.
    assert "market_regimes" not in [t.table for t in cleanup_old_data(pg.db, 30)]


def test_report_repr_and_frame(pg: PostgreSQLIntegration, sql: Any, history: dict[str, Any]) -> None:
    report = cleanup_old_data(pg.db, history["days"], tables=["market_data", "market_regimes_1min"], dry_run=True)
    text = repr(report)
    assert text.startswith(f"<CleanupReport (dry run): would remove {report.rows_removed:,} rows, 5 partition(s)")
    first = text.splitlines()[1].split()
    assert first[:3] == ["market_data", "timestamp", "<"]
    assert f"{report['market_data'].rows_dropped:,} in 5 dropped partition(s)" in text
    frame = report.to_frame()
    assert frame["table"].to_list() == ["market_data", "market_regimes_1min"]
    assert frame["rows_removed"].to_list() == [report["market_data"].rows_removed, 0]
    assert frame["partitions_dropped"].to_list() == [5, 0]
    with pytest.raises(KeyError, match="options_data"):
        report["options_data"]


def test_disabled_integration_cleans_nothing() -> None:
    pg = PostgreSQLIntegration(config={"database": {"enabled": False}})
    report = pg.cleanup_old_data(30, dry_run=True)
    assert report == CleanupReport.empty(dry_run=True)
    assert repr(report) == "<CleanupReport (dry run): would remove 0 rows, 0 partition(s)>"


def test_list_partitions(pg: PostgreSQLIntegration, sql: Any, history: dict[str, Any]) -> None:
    sql(f"ANALYZE {_table(pg, 'market_data')}")
    frame = list_partitions(pg.db, "market_data")
    assert frame.columns == ["table", "partition", "from", "to", "estimated_rows", "sealed_rows", "total_bytes"]
    assert frame["sealed_rows"].to_list() == [0] * frame.height  # nothing sealed here (tests/test_counts.py)
    assert frame.height == 8
    assert frame["partition"].to_list() == _partition_names(pg, sql, "market_data")
    firsts = [dt.datetime.combine(_month(history["boundary"], k), dt.time()) for k in range(-5, 3)]
    assert frame["from"].to_list() == firsts
    assert frame["to"].to_list() == [dt.datetime.combine(next_bucket(f.date(), "month"), dt.time()) for f in firsts]
    counts = dict(sql(f"SELECT c.relname, count(*) FROM {_table(pg, 'market_data')} t "
                      "JOIN pg_class c ON c.oid = t.tableoid GROUP BY 1"))
    for name, estimate in zip(frame["partition"], frame["estimated_rows"], strict=True):
        assert estimate == counts[name]
    assert all(b > 0 for b in frame["total_bytes"])
    # Via the facade, every partitioned table (only market_data has partitions here).
    assert pg.list_partitions()["table"].unique().to_list() == ["market_data"]
    assert list_partitions(pg.db, "optimization_results").height == 0


def test_a_live_write_also_creates_the_next_partition(pg: PostgreSQLIntegration, sql: Any) -> None:
    now = _now(pg.settings)
    current = bucket_start(now, "month")
    spec = TABLES["market_regimes_1min"]
    # A backfill of past months creates only what it covers...
    past = dt.datetime.combine(_month(current, -3), dt.time(10))
    assert pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, past, past) == 1
    # ...a write reaching the current month also creates next month's partition.
    assert pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, now, now) == 2
    names = _partition_names(pg, sql, "market_regimes_1min")
    assert f"mr_market_regimes_1min_p{next_bucket(current, 'month'):%Y_%m}" in names
    assert len(names) == 3
    assert pg.db.partitions.ensure(pg.db.pool, pg.settings, spec, now, now) == 0  # cached
