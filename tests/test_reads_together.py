"""Large reads of several symbols run as statements over groups of the symbols, at once,
in one snapshot (regime_io._conn.engines.read_adbc_together, chosen by the tier router's
``RowRead.run``): the same answer as one statement, the same rows as one snapshot."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration, ReadError
from regime_io._conn import database
from regime_io._conn.engines import read_adbc_together
from regime_io._read import readers
from regime_io._sql.query import Query
from regime_io._sql.quote import literal
from regime_io._tiers import router
from regime_io.config import Settings, settings_replace
from tests._reading_data import bars, options

T0 = dt.datetime(2024, 1, 29, 9, 15)
SYMBOLS = ["bbb", "AAA", "Ccc"]  # mixed case: the groups follow the server's collation, not Python's
RANGE = ("2024-01-01", "2024-03-31")


def together(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "regime_io._conn.engines" and r.getMessage().startswith("adbc (together)")]


@pytest.fixture
def small_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads of the test's few thousand rows split as a large one would."""
    monkeypatch.setattr(readers, "SPLIT_ROWS", 0)
    monkeypatch.setattr(router, "TOGETHER_ROWS", 1)


@pytest.fixture
def loaded(settings: Settings) -> Iterator[PostgreSQLIntegration]:
    # Symbols kept as written; over a month boundary (two partitions); one symbol with more rows.
    with PostgreSQLIntegration(settings=settings_replace(settings, symbol_case="keep")) as pg:
        pg.initialize_database()
        pg.save_market_data(pl.concat([bars(["bbb"], ["1m", "5m"], T0, 9000, seed=2),
                                       bars(["AAA", "Ccc"], ["1m"], T0, 3000, seed=3)]))
        yield pg


READS = {
    "every column": lambda pg, **kw: pg.get_market_data(SYMBOLS, *RANGE, **kw),
    "no symbol column": lambda pg, **kw: pg.get_market_data(SYMBOLS, *RANGE, columns=["timestamp", "close"], **kw),
    "symbol and a price": lambda pg, **kw: pg.get_market_data(SYMBOLS, *RANGE, columns=["symbol", "close"], **kw),
    "one timeframe, exact": lambda pg, **kw: pg.get_market_data(SYMBOLS, *RANGE, timeframe="1m", exact=True, **kw),
    "pandas": lambda pg, **kw: pl.from_pandas(pg.get_market_data(SYMBOLS, *RANGE, return_type="pandas", **kw)),
    "arrow": lambda pg, **kw: pl.from_arrow(pg.get_market_data(SYMBOLS, *RANGE, return_type="arrow", **kw)),
}


@pytest.mark.parametrize("name", list(READS))
def test_a_large_read_runs_at_once_and_answers_as_one_statement(loaded: PostgreSQLIntegration, small_split: None,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                caplog: pytest.LogCaptureFixture, name: str) -> None:
    read = READS[name]
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    got = read(loaded)
    sent = together(caplog)
    assert len(sent) == 2, sent
    monkeypatch.setattr(router, "TOGETHER_ROWS", float("inf"))
    caplog.clear()
    want = read(loaded)
    assert together(caplog) == []
    assert got.height == 9000 * 2 + 3000 * 2 or name == "one timeframe, exact"
    assert_frame_equal(got, want)


def test_the_groups_follow_the_collation_and_the_rows_expected(loaded: PostgreSQLIntegration,
                                                                small_split: None) -> None:
    db = loaded.db
    scope = router.Scope(SYMBOLS, readers.range_args(db, db.spec("market_data"), SYMBOLS, None, *RANGE)[1])
    groups = router._symbol_groups(db, db.spec("market_data"), scope)
    order = [r[0] for r in psycopg.connect(db.resolved.url(redact=False)).execute(
        "SELECT v FROM unnest(%s::text[]) AS u(v) ORDER BY v", [SYMBOLS]).fetchall()]
    assert [s for g in groups for s in g] == order
    # Two runs as even in rows as the order allows ("bbb" holds 18,000 of the 24,000).
    rows = {"AAA": 3000, "bbb": 18000, "Ccc": 3000}
    imbalance = [abs(sum(rows[s] for s in order[:k]) - sum(rows[s] for s in order[k:])) for k in (1, 2)]
    assert len(groups) == 2 and abs(sum(rows[s] for s in groups[0]) - sum(rows[s] for s in groups[1])) == min(
        imbalance)


def test_a_sealed_month_and_rows_are_merged_as_before(loaded: PostgreSQLIntegration, small_split: None,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    want = loaded.get_market_data(SYMBOLS, *RANGE)
    assert loaded.seal("2024-02-01", tables="bars").rows_moved > 0
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    got = loaded.get_market_data(SYMBOLS, *RANGE)
    assert len(together(caplog)) == 2
    assert_frame_equal(got, want)


def test_the_statements_share_one_snapshot(pg: PostgreSQLIntegration, settings: Settings,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pg.save_market_data(bars(["AAA"], ["1m"], T0, 10))
    table = f'"{settings.schema}"."{settings.table_name("market_data")}"'
    count = f"SELECT count(*) FROM {table}"

    def commit_in_between(value: str) -> str:
        # Quoting the exported snapshot's id for the second connection: the first one holds
        # its snapshot, the second has not taken one. A write commits right here.
        pg.save_market_data(bars(["BBB"], ["1m"], T0, 5))
        return literal(value)

    monkeypatch.setattr(database, "literal", commit_in_between)
    with pg.db.snapshot_connections(2) as conns:
        assert len(conns) == 2
        seen = []
        for conn in conns:
            cur = conn.cursor()
            cur.execute(count)
            seen.append(cur.fetchone()[0])
            cur.close()
    assert seen == [10, 10]  # the second connection too: it imported the first one's snapshot
    with psycopg.connect(pg.db.resolved.url(redact=False)) as conn:
        assert conn.execute(count).fetchone() == (15,)  # the write did commit while they were set up


def test_with_one_connection_free_the_statements_run_in_turn(settings: Settings, small_split: None,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    with PostgreSQLIntegration(settings=settings_replace(settings, max_connections=1,
                                                         connection_timeout=1)) as pg:
        pg.initialize_database()
        pg.save_market_data(bars(SYMBOLS, ["1m"], T0, 500))
        with pg.db.snapshot_connections(2) as conns:
            assert len(conns) == 1  # the second was not waited for: no deadlock at max_connections
        caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
        got = pg.get_market_data(SYMBOLS, *RANGE)
        assert len(together(caplog)) == 2
        assert got.height == 1500 and got["symbol"].unique(maintain_order=True).to_list() == ["AAA", "BBB", "CCC"]


@pytest.mark.parametrize("bad", [0, 1])
def test_a_failing_statement_is_a_read_error_and_leaves_the_pool_clean(pg: PostgreSQLIntegration, bad: int) -> None:
    statements: list[tuple[Query, str]] = [(Query(), "SELECT 1 AS x"), (Query(), "SELECT 1 AS x")]
    statements[bad] = (Query(), "SELECT 1 / (x - 1) AS x FROM (SELECT 1 AS x) s")
    with pytest.raises(ReadError, match="division by zero"):
        read_adbc_together(pg.db, statements, what="test read", table="market_data")
    # Every connection went back out of its failed transaction, in the pool's mode.
    for _ in range(3):
        tables = read_adbc_together(pg.db, [(Query(), "SELECT 2 AS x")] * 2, what="test read")
        assert [t.column("x").to_pylist() for t in tables] == [[2], [2]]
    assert pg.db.pool.open_connections == pg.db.pool.idle_connections


@pytest.mark.citus
def test_citus_reads_in_one_statement(citus_pg: PostgreSQLIntegration, small_split: None,
                                      caplog: Any) -> None:
    citus_pg.save_market_data(bars(SYMBOLS, ["1m"], T0, 500))
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    got = citus_pg.get_market_data(SYMBOLS, *RANGE)
    assert got.height == 1500
    assert together(caplog) == []  # an exported snapshot would not reach the workers' transactions



def test_a_large_read_of_a_schema_never_initialised_names_the_table(settings: Settings, small_split: None) -> None:
    with PostgreSQLIntegration(settings=settings) as pg, pytest.raises(ReadError) as info:
        pg.get_market_data(SYMBOLS, *RANGE)
    message = str(info.value)
    assert "get_market_data failed" in message and "mr_market_data" in message and "initialize_database()" in message


def test_option_bars_of_several_symbols_read_at_once_as_in_one_statement(pg: PostgreSQLIntegration,
                                                                         small_split: None,
                                                                         monkeypatch: pytest.MonkeyPatch,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Option bars come symbol first, then time (then the contract): runs of symbols still
    answer in order."""
    expiries = [dt.date(2024, 2, 29), dt.date(2024, 3, 28)]
    pg.save_options_data(pl.concat([options(s, expiries, [100.0, 105.0], T0, 200, seed=k)
                                    for k, s in enumerate(["AAA", "BBB", "CCC"])]))
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    got = pg.get_options_data(["AAA", "BBB", "CCC"], *RANGE)
    assert len(together(caplog)) == 2
    monkeypatch.setattr(router, "TOGETHER_ROWS", float("inf"))
    want = pg.get_options_data(["AAA", "BBB", "CCC"], *RANGE)
    assert got.height == 3 * 2 * 2 * 2 * 200
    assert_frame_equal(got, want)
