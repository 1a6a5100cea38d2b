"""Every public call on a real Citus cluster (a coordinator and two workers, ``tests/_citus.py``).

Each test makes the same calls, with the same data, on the plain test server and on the
cluster, and compares the results: frames equal, write counts equal. Where the two
engines need one SQL form (latest rows, as-of joins, insert/update counts), the plan
shape is checked on both.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from tests._citus import SHARD_COUNT
from tests._reading_data import bars, options, regimes, regimes_1min

pytestmark = pytest.mark.citus

T0 = dt.datetime(2024, 1, 31, 23, 30)  # the data crosses a month boundary: two partitions
SYMBOLS = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]


@pytest.fixture
def both(pg: PostgreSQLIntegration, citus_pg: PostgreSQLIntegration) -> list[PostgreSQLIntegration]:
    """The plain server and the cluster, each on a fresh initialised schema."""
    return [pg, citus_pg]


@pytest.fixture
def coordinator(citus: Any) -> Iterator[Callable[..., list[tuple[Any, ...]]]]:
    conn = psycopg.connect(citus.url(), autocommit=True)

    def run(query: str, params: Any = None) -> list[tuple[Any, ...]]:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []

    yield run
    conn.close()


def same(results: list[Any], **kw: Any) -> None:
    """The plain server's answer equals the cluster's, and is not empty: two empty answers
    agree whatever either engine does. (A frame must have rows; a tuple of counts must not
    be all zeros; a dict or list must have entries.)"""
    plain, distributed = results
    if isinstance(plain, pl.DataFrame):
        assert plain.height > 0, "an empty answer proves nothing"
        assert_frame_equal(plain, distributed, **kw)
    else:
        assert plain, "an empty answer proves nothing"
        if isinstance(plain, tuple) and all(isinstance(v, int) for v in plain):
            assert any(plain), f"all-zero counts prove nothing: {plain}"
        assert plain == distributed


def test_initialize_distributes_every_table_colocated(citus_pg: PostgreSQLIntegration, coordinator: Any) -> None:
    rows = coordinator(
        "SELECT c.relname, d.partmethod, d.colocationid FROM pg_dist_partition d "
        "JOIN pg_class c ON c.oid = d.logicalrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s ORDER BY 1", (citus_pg.settings.schema,))
    kinds = {name: method for name, method, _ in rows}
    assert kinds["mr_schema_version"] == "n"  # reference table
    hashed = {name: group for name, method, group in rows if method == "h"}
    assert {"mr_market_data", "mr_options_data", "mr_market_regimes", "mr_market_regimes_1min",
            "mr_optimization_results"} <= set(hashed)
    assert len(set(hashed.values())) == 1  # one co-location group
    assert citus_pg.initialize_database() >= 1  # again: a no-op


def test_writers_append_collide_mixed_and_new_partitions(both: list[PostgreSQLIntegration]) -> None:
    first = bars(SYMBOLS, ["1min", "5min"], T0, 40)
    results = [pg.save_market_data(first) for pg in both]
    same([(r.inserted, r.updated, r.unchanged) for r in results])
    assert results[0].inserted == first.height
    # all colliding, unchanged
    same([(r.inserted, r.updated, r.unchanged) for r in (pg.save_market_data(first) for pg in both)])
    # mixed: half changed, half new, in a month that has no partition yet
    changed = first.head(100).with_columns(pl.col("volume") + 1)
    later = bars(SYMBOLS, ["1min"], dt.datetime(2024, 4, 2, 9, 15), 20, seed=9)
    mixed = pl.concat([changed, later])
    results = [pg.save_market_data(mixed) for pg in both]
    same([(r.inserted, r.updated, r.unchanged) for r in results])
    assert (results[0].inserted, results[0].updated) == (later.height, 100)
    same([pg.get_market_data(SYMBOLS, "2024-01-01", "2024-12-31") for pg in both])


def test_optimization_results_counts_are_exact(both: list[PostgreSQLIntegration]) -> None:
    result = {"symbol": "AAA", "algorithm": "grid", "parameters": {"fast": 5, "slow": 20}, "fitness_value": 1.5,
              "start_date": dt.date(2024, 1, 1), "end_date": dt.date(2024, 1, 31), "timeframe": "5m"}
    firsts = [pg.save_optimization_result(result) for pg in both]
    same([(r.inserted, r.updated, r.unchanged) for r in firsts])
    assert (firsts[0].inserted, firsts[0].updated, firsts[0].unchanged) == (1, 0, 0)
    again = [pg.save_optimization_result(result) for pg in both]
    same([(r.inserted, r.updated, r.unchanged) for r in again])
    assert again[0].inserted == 0
    given = {**result, "run_id": "r1"}
    same([(r.inserted, r.updated) for r in (pg.save_optimization_result(given) for pg in both)])
    changed = [pg.save_optimization_result({**given, "fitness_value": 2.5}) for pg in both]
    same([(r.inserted, r.updated, r.unchanged) for r in changed])
    assert (changed[0].inserted, changed[0].updated) == (0, 1)
    same([pg.get_optimization_results("AAA").drop("id", strict=False) for pg in both])


def test_rolling_save_with_trim(both: list[PostgreSQLIntegration]) -> None:
    frame = regimes_1min(SYMBOLS[:3], T0, 30)
    for pg in both:
        pg.save_1min_market_regime(frame)
    newest = regimes_1min(SYMBOLS[:3], T0 + dt.timedelta(minutes=30), 1, seed=7)
    results = [pg.save_rolling_market_regime(newest, window_minutes=10) for pg in both]
    same([(r.inserted, r.updated, r.unchanged, r.trimmed) for r in results])
    assert results[0].trimmed > 0
    same([pg.get_1min_market_regimes(SYMBOLS[:3], "2024-01-01", "2024-03-01") for pg in both])


def _load(both: list[PostgreSQLIntegration]) -> list[PostgreSQLIntegration]:
    for pg in both:
        pg.save_market_data(bars(SYMBOLS, ["1min", "5min"], T0, 60))
        pg.save_market_regime(regimes(SYMBOLS, ["5min", "15min"], T0, 12))
        pg.save_1min_market_regime(regimes_1min(SYMBOLS, T0, 60))
        pg.save_options_data(options("NIFTY", [dt.date(2024, 2, 29), dt.date(2024, 3, 28)],
                                     [21000.0, 21500.0], T0, 5))
    return both


@pytest.fixture(scope="module")
def loaded(server: Any, citus: Any) -> Iterator[list[PostgreSQLIntegration]]:
    """Both engines with the same bars, regimes, 1-minute regimes and an option chain, for
    the tests that only read (one load per module keeps the tier quick); dropped afterwards."""
    from regime_io.config import load_settings, settings_replace

    schema = f"t_{uuid.uuid4().hex[:12]}"
    plain = settings_replace(server.settings, schema=schema)
    base = {key: str(getattr(server.settings, key)) for key in
            ("max_connections", "connection_timeout", "retry_attempts", "retry_delay")}
    cluster = load_settings(config={"database": {"host": "127.0.0.1", "port": str(citus.coordinator.port),
                                                 "user": "postgres", "database": "postgres", "schema": schema,
                                                 "citus": "true"}, "connection": base}, env={})
    both = [PostgreSQLIntegration(settings=plain), PostgreSQLIntegration(settings=cluster)]
    try:
        for pg in both:
            pg.initialize_database()
        yield _load(both)
    finally:
        for pg, url in zip(both, (server.url(), citus.url()), strict=True):
            pg.close()
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def loaded_rw(both: list[PostgreSQLIntegration]) -> list[PostgreSQLIntegration]:
    """As ``loaded``, on this test's own schemas (for tests that write)."""
    return _load(both)


def test_range_readers_and_streams(loaded: list[PostgreSQLIntegration]) -> None:
    same([pg.get_market_data("AAA", "2024-01-31", "2024-02-02") for pg in loaded])
    same([pg.get_market_data(SYMBOLS[:4], "2024-01-31", "2024-02-02", timeframe="5min") for pg in loaded])
    same([pg.get_market_regimes(["BBB", "CCC"], "2024-01-01", "2024-03-01") for pg in loaded])
    same([pg.get_1min_market_regimes("DDD", "2024-01-01", "2024-03-01") for pg in loaded])
    same([pg.get_options_data("NIFTY", "2024-01-01", "2024-03-01", option_type="CE") for pg in loaded])
    streams = [pl.concat(list(pg.iter_market_data(SYMBOLS, "2024-01-01", "2024-03-01", batch_rows=97)))
               for pg in loaded]
    same(streams)
    same([pl.concat(list(pg.iter_options_data("NIFTY", "2024-01-01", "2024-03-01", batch_rows=7)))
          for pg in loaded])


def test_resample(loaded: list[PostgreSQLIntegration]) -> None:
    same([pg.get_market_data(SYMBOLS[:2], "2024-01-31", "2024-02-02", timeframe="1min", resample="15m")
          for pg in loaded])


def test_latest_one_many_all(loaded: list[PostgreSQLIntegration]) -> None:
    same([pg.get_latest_1min_market_regime("AAA") for pg in loaded])
    same([pg.get_latest_1min_market_regime(["AAA", "EEE"]) for pg in loaded])
    same([pg.get_latest_1min_market_regime() for pg in loaded])
    same([pg.get_latest("market_data", "BBB") for pg in loaded])
    same([pg.get_latest("market_data", timeframe="5min") for pg in loaded])
    same([pg.get_latest("market_data") for pg in loaded])
    same([pg.get_latest("market_regimes", ["CCC", "DDD"]) for pg in loaded])


def test_distribution_transitions_chain_asof(loaded: list[PostgreSQLIntegration]) -> None:
    same([pg.get_market_regime_distribution("AAA", "2024-01-01", "2024-03-01") for pg in loaded])
    same([pg.get_regime_transitions("BBB", "2024-01-01", "2024-03-01") for pg in loaded])
    same([pg.get_option_chain("NIFTY", T0 + dt.timedelta(minutes=3)) for pg in loaded])
    frame = loaded[0].get_market_data(SYMBOLS[:3], "2024-01-31", "2024-02-02", timeframe="1min")
    same([pg.asof_regimes(frame, table="market_regimes_1min") for pg in loaded])
    same([pg.asof_regimes(symbol="CCC", start_date="2024-01-31", end_date="2024-02-02", table="market_regimes",
                          timeframe="5min")
          for pg in loaded])


def test_maintenance(both: list[PostgreSQLIntegration]) -> None:
    daily = bars(SYMBOLS[:3], ["1day"], dt.datetime(2024, 1, 20), 50, step=dt.timedelta(days=1))
    for pg in both:
        pg.save_market_data(daily)
    same([pg.list_partitions("bars").select("partition", "from", "to") for pg in both])
    keep = (dt.date.today() - dt.date(2024, 2, 15)).days  # drops January, deletes half of February
    for dry_run in (True, False):
        reports = [pg.cleanup_old_data(keep, tables="bars", dry_run=dry_run)["market_data"] for pg in both]
        same([(r.rows_dropped, r.rows_deleted, len(r.dropped)) for r in reports])
        assert reports[0].rows_dropped == 3 * 12 and reports[0].rows_deleted > 0
    same([pg.get_market_data(SYMBOLS[:3], "2024-01-01", "2024-12-31") for pg in both])
    same([pg.list_partitions("bars").select("partition", "from", "to") for pg in both])


def test_catalog_matches_and_is_colocated(loaded_rw: list[PostgreSQLIntegration], coordinator: Any) -> None:
    loaded = loaded_rw
    same([pg.catalog() for pg in loaded])
    assert loaded[1].catalog("bars").height == len(SYMBOLS) * 2
    # Rolling trims and cleanup correct it alike on both engines.
    newest = regimes_1min(SYMBOLS[:2], T0 + dt.timedelta(minutes=60), 1, seed=8)
    same([pg.save_rolling_market_regime(newest, window_minutes=15).trimmed for pg in loaded])
    same([pg.catalog("1min") for pg in loaded])
    same([pg.refresh_catalog() for pg in loaded])
    same([pg.catalog() for pg in loaded])
    schema = loaded[1].settings.schema
    groups = coordinator(
        "SELECT c.relname, d.colocationid FROM pg_dist_partition d JOIN pg_class c ON c.oid = d.logicalrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND d.partmethod = 'h'", (schema,))
    by_name = dict(groups)
    assert by_name["mr_series"] == by_name["mr_market_data"] == by_name["mr_market_data_chunks"]


def _explain(pg: PostgreSQLIntegration, run: Callable[..., list[tuple[Any, ...]]], key: str,
             wanted: list[str] | None) -> str:
    from regime_io._read.sqltext import latest_query
    from regime_io.tables import TABLES

    q, text = latest_query(pg.db, TABLES[key], wanted, timeframe=None, exact=False)  # type: ignore[index]
    return "\n".join(r[0] for r in run("EXPLAIN " + q.inline(text)))


def test_latest_plan_shape_on_both_engines(loaded: list[PostgreSQLIntegration], sql: Any,
                                           coordinator: Any) -> None:
    plain, cluster = loaded
    for key in ("market_data", "market_regimes_1min"):
        for wanted in (["AAA"], None):
            # Plain server: the catalog joined on the exact key, no recursive skip scan
            # (index-driven at scale: tests/test_reading_latest.py; these tables are tiny)
            plan = _explain(plain, sql, key, wanted)
            assert "last_ts" in plan and "Recursive" not in plan, plan
            # Citus: the co-located join is pushed down whole: one shard for one symbol, every
            # shard in parallel for all of them; no recursive planning, no intermediate results.
            plan = _explain(cluster, coordinator, key, wanted)
            tasks = int(plan.split("Task Count: ")[1].split()[0])
            assert tasks == (1 if wanted else SHARD_COUNT), plan
            assert "Distributed Subplan" not in plan and "intermediate_result" not in plan, plan
            assert "last_ts" in plan


def test_many_symbol_reads_fan_out_and_batches_go_through_coordinator_copy(
        both: list[PostgreSQLIntegration], coordinator: Any, citus: Any) -> None:
    frame = bars(SYMBOLS, ["1m"], T0, 20)
    results = [pg.save_market_data(frame) for pg in both]
    assert [r.method for r in results] == ["copy", "copy"]  # one COPY through the coordinator, no row path
    same([(r.inserted, r.updated, r.unchanged) for r in results])
    cluster = both[1]
    # The rows went to shards on both workers.
    placed = coordinator(
        "SELECT s.nodeport, count(*) FROM citus_shards s WHERE s.table_name = %s::regclass GROUP BY 1",
        (f'"{cluster.settings.schema}"."mr_market_data"',))
    assert {port for port, _ in placed} == {w.port for w in citus.workers}
    per_worker = coordinator(
        "SELECT s.nodeport, sum(r.result::bigint) FROM run_command_on_shards(%s, 'SELECT count(*) FROM %%s') r "
        "JOIN citus_shards s USING (shardid) GROUP BY 1 ORDER BY 1",
        (f'"{cluster.settings.schema}"."mr_market_data"',))
    per_worker = [int(n) for _, n in per_worker]
    assert sum(per_worker) == frame.height and all(n > 0 for n in per_worker)
    # A range read of several symbols runs on every worker in parallel.
    from regime_io._read.sqltext import range_query
    from regime_io._sql.query import TimeRange
    from regime_io.tables import TABLES

    spec = TABLES["market_data"]
    q, text = range_query(cluster.db, spec, SYMBOLS, TimeRange(T0, T0 + dt.timedelta(hours=1), False),
                          names=list(spec.column_names), exact=False, extra=[], drop_symbol=False, engine="cx")
    plan = "\n".join(r[0] for r in coordinator("EXPLAIN " + q.inline(text)))
    assert int(plan.split("Task Count: ")[1].split()[0]) > 1, plan
    # EXPLAIN ANALYZE shows every task: they ran on both workers.
    coordinator("SET citus.explain_all_tasks = on")
    analyzed = "\n".join(r[0] for r in coordinator(
        "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + q.inline(text)))
    ports = {int(line.split("port=")[1].split()[0]) for line in analyzed.splitlines() if "port=" in line}
    assert ports == {w.port for w in citus.workers}, analyzed
    same([pg.get_market_data(SYMBOLS, T0, T0 + dt.timedelta(hours=1)) for pg in both])


def test_doctor_on_the_cluster(citus_pg: PostgreSQLIntegration) -> None:
    from regime_io._schema.doctor import diagnose

    citus_pg.save_market_data(bars(SYMBOLS[:2], ["1m"], T0, 5))
    report = diagnose(citus_pg.settings)
    assert report.ok, report.checks
    assert report.tables is not None
    counts = dict(zip(report.tables["table"], report.tables["rows"], strict=True))
    assert counts["market_data"] == 10


def test_sealing_on_both_engines(both: list[PostgreSQLIntegration], sql: Any, coordinator: Any) -> None:
    frame = bars(SYMBOLS[:3], ["1m"], dt.datetime(2024, 1, 30, 9, 15), 30, step=dt.timedelta(hours=6))
    for pg in both:
        pg.save_market_data(frame)
    reports = [pg.seal("2024-03-01", tables="bars") for pg in both]
    same([str(r).split("(")[0] for r in reports])
    # Every row was sealed on both engines (all are before March), none left in the row table.
    assert [r.rows_moved for r in reports] == [frame.height, frame.height]
    assert [len(r) for r in reports] == [len(reports[0])] * 2 and len(reports[0]) > 0
    for pg, run in zip(both, (sql, coordinator), strict=True):
        assert run(f'SELECT count(*) FROM "{pg.settings.schema}"."mr_market_data"') == [(0,)]
    same([pg.get_market_data(SYMBOLS[:3], "2024-01-01", "2024-03-31") for pg in both])
    same([pg.get_latest("bars") for pg in both])
    same([pg.catalog("bars") for pg in both])
    # A write into a sealed month merges into its chunk; counts and catalog stay exact.
    changed = frame.head(2).with_columns(pl.col("volume") + 7)
    results = [pg.save_market_data(pl.concat([changed, bars(["ZZZ"], ["1m"], dt.datetime(2024, 1, 31), 2)]))
               for pg in both]
    same([(r.inserted, r.updated, r.unchanged) for r in results])
    same([pg.catalog("bars") for pg in both])
    same([pg.get_market_data(SYMBOLS[:3], "2024-01-01", "2024-03-31") for pg in both])
    unsealed = [pg.unseal("2024-01-01", "2024-02-29", tables="bars") for pg in both]
    # The sealed rows come back (the two changed ones merged into their chunks; ZZZ, a new
    # series, was written to the row table), the same on both engines.
    assert [r.rows_moved for r in unsealed] == [frame.height] * 2
    same([pg.get_market_data(SYMBOLS[:3], "2024-01-01", "2024-03-31") for pg in both])


def test_tail_is_refused_with_the_reason(citus_pg: PostgreSQLIntegration, citus_settings: Any) -> None:
    """The live tail compares the rows' transaction ids with the coordinator's snapshots;
    each worker numbers its own transactions, so on Citus it is refused, not silently
    wrong (docs/live.md) -- whether or not the configuration says citus = true."""
    from regime_io import UsageError
    from regime_io.config import settings_replace

    with pytest.raises(UsageError, match="not supported on Citus"):
        citus_pg.follow("1min")
    unaware = PostgreSQLIntegration(settings=settings_replace(citus_settings, citus=False))
    try:
        with pytest.raises(UsageError, match="not supported on Citus"):
            unaware.follow("1min")
    finally:
        unaware.close()


def test_knowledge_time_scan_and_quality_on_both_engines(both: list[PostgreSQLIntegration]) -> None:
    """The calls added by later issues: versions as known at an instant, lazy scans, quality reports.
    (Restatements of history tables, which move versions into ``<table>_history``, are in
    the writer tests above: every upsert of the regime and optimisation tables takes that path.)"""
    first = regimes_1min(SYMBOLS[:3], T0, 20)
    for pg in both:
        pg.save_1min_market_regime(first)
    known = dt.datetime.now(dt.timezone.utc)  # after both writes (the engines stamp their own clocks)
    same([pg.history("1min", SYMBOLS[:3], "2024-01-01", "2024-03-01").drop("known_from", "known_to")
          for pg in both])
    same([pg.get_1min_market_regimes(SYMBOLS[:3], "2024-01-01", "2024-03-01", as_of=known) for pg in both])
    same([pg.get_latest_1min_market_regime(as_of=known) for pg in both])
    for pg in both:
        pg.save_market_data(bars(SYMBOLS, ["1m"], T0, 30))
    scans = [pg.scan("bars").filter(pl.col("symbol").is_in(["AAA", "DDD"]) & (pl.col("timestamp") >= T0))
             .select("symbol", "timestamp", "close").collect() for pg in both]
    same(scans)
    assert scans[0].height == 60
    same([pg.quality_report("bars", SYMBOLS[:2], "2024-01-31", "2024-02-01") for pg in both])
