"""Behind PgBouncer in transaction pooling (issue 26 item 6): ``[CONNECTION] pooler = transaction``.

The tier (``tests/_pgbouncer.py``) puts Debian's PgBouncer 1.18 (installed with apt-get
when missing) in front of the test server, ``pool_mode = transaction`` with two server
connections, so state one client leaves in a server session (a prepared statement, a
session setting, a lock) is met by the others. Every reader, writer and the sealing run
through it, several clients at once; what cannot work there fails at once with the
setting to change: a pooler met while ``pooler = none`` (the default), ``follow()``
(LISTEN) and ``cleanup_old_data()`` (a session lock).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from regime_io import ConfigError, PostgreSQLIntegration, UnknownSymbolWarning, UsageError
from regime_io._read import readers
from regime_io._tiers import router
from regime_io.config import Settings, load_settings
from tests import _pgbouncer
from tests._helpers import drivers_reading
from tests._reading_data import bars, options, regimes_1min

pytestmark = pytest.mark.pgbouncer

ALL = ("2023-01-01", "2024-12-31")
TROUBLE_MD = (Path(__file__).resolve().parent.parent / "docs" / "troubleshooting.md").read_text()
# An integration through PgBouncer (the ``through`` fixture).
Through = Callable[..., PostgreSQLIntegration]


@pytest.fixture
def through(bouncer: Any, server: Any) -> Iterator[Through]:
    """``through(pooler=...)``: an integration on one fresh schema, through PgBouncer
    (``direct=True``: the same schema on the server itself). Closed and dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    made: list[PostgreSQLIntegration] = []
    base = {key: str(getattr(server.settings, key)) for key in
            ("max_connections", "connection_timeout", "retry_attempts", "retry_delay")}

    def make(pooler: str | None = "transaction", *, direct: bool = False) -> PostgreSQLIntegration:
        connection = dict(base)
        if pooler is not None:
            connection["pooler"] = pooler
        if direct:
            s = server.settings
            database = {"host": s.host, "port": str(s.port), "user": s.user, "database": s.database}
        else:
            database = {"host": "127.0.0.1", "port": str(bouncer.port), "user": bouncer.user,
                        "database": bouncer.database}
        # A storage zone other than the server's: a session's TimeZone that went astray shows.
        settings = load_settings(config={"database": {**database, "schema": schema, "storage_timezone":
                                                      "Asia/Kolkata"}, "connection": connection}, env={})
        made.append(PostgreSQLIntegration(settings=settings))
        return made[-1]

    yield make
    for pg in made:
        pg.close()
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def pgb(through: Through) -> PostgreSQLIntegration:
    """An initialised integration through PgBouncer with ``pooler = transaction``."""
    pg = through()
    pg.initialize_database()
    return pg


def _in_threads(work: Callable[[int], None], n: int) -> list[str]:
    """Run ``work(0..n-1)`` in ``n`` threads at once; the errors, one line each."""
    errors: list[str] = []
    start = threading.Barrier(n)

    def run(k: int) -> None:
        try:
            start.wait()
            work(k)
        except Exception as err:
            errors.append(f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _three_months() -> pl.DataFrame:
    return pl.concat([bars(["AAA", "BBB"], ["1m", "5m"], dt.datetime(2024, m, d, 9, 15), 40, seed=m * 40 + d)
                      for m in (1, 2, 3) for d in (2, 3, 4)])


# -- the setting --------------------------------------------------------------------------


def test_the_pooler_setting_is_read_and_checked() -> None:
    assert Settings().pooler == "none"
    assert load_settings(config={"connection": {"pooler": " Transaction "}}, env={}).pooler == "transaction"
    assert load_settings(env={"REGIME_IO_POOLER": "session"}).pooler == "session"
    with pytest.raises(ConfigError, match=r"pooler \(REGIME_IO_POOLER\): must be one of none, session, "
                                          r"transaction .*got 'pgbouncer'"):
        load_settings(env={"REGIME_IO_POOLER": "pgbouncer"})


def test_a_pooler_met_with_pooler_none_fails_at_once_naming_the_setting(through: Through) -> None:
    """Without the setting, the first connection finds PgBouncer (the server process is not
    the one the login announced) and says which setting to change, before any prepared
    statement can land in another client's session."""
    through("transaction").initialize_database()
    pg = through(None)
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        pg.get_latest("bars", "AAA")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "answers through a connection pooler" in message
    assert "pooler = transaction (REGIME_IO_POOLER=transaction)" in message and "Behind PgBouncer" in message

    # docs/troubleshooting.md shows it (numbers and the schema differ from run to run).
    def same(text: str) -> str:
        return re.sub(r"schema='[^']*'", "schema=...", re.sub(r"-?\d+", "9", text))

    assert same(f"regime_io.errors.ConfigError: {message}\n") in same(TROUBLE_MD)
    # A session pooler is allowed for: nothing changes, and nothing fails.
    with pytest.warns(UnknownSymbolWarning):
        assert through("session").get_latest("bars", "AAA").height == 0


def test_the_same_integration_connected_directly_is_not_taken_for_a_pooler(through: Through) -> None:
    direct = through(None, direct=True)
    direct.initialize_database()
    with pytest.warns(UnknownSymbolWarning):
        assert direct.get_latest("bars", "AAA").height == 0


# -- reads --------------------------------------------------------------------------------


def test_every_reader_answers_through_pgbouncer_as_directly(pgb: PostgreSQLIntegration, through: Through,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """Range reads, resampling, latest rows, the last rows, streams, scan() and sql(), over
    both tiers, equal the same reads on a direct connection; the drivers behind PgBouncer are
    ADBC and the unprepared lookups, never connectorx (its named prepared statements run in
    later transactions: "prepared statement s8 does not exist")."""
    pgb.save_market_data(_three_months())
    minutes = pl.concat([regimes_1min(["AAA"], dt.datetime(2024, m, 2, 9, 15), 40, seed=m) for m in (1, 3)])
    pgb.save("1min", minutes, known_at=dt.datetime(2024, 4, 1))
    pgb.save("1min", minutes.head(20).with_columns(pl.col("confidence") / 2), known_at=dt.datetime(2024, 4, 2))
    pgb.save_options_data(options("AAA", [dt.date(2024, 3, 28)], [100.0, 110.0], dt.datetime(2024, 3, 2, 9, 15), 5))
    assert pgb.seal("2024-02-01", tables=["bars", "1min"]).rows_moved > 0
    direct = through(None, direct=True)

    def reads(pg: PostgreSQLIntegration) -> dict[str, Any]:
        return {
            "range": pg.get_market_data(["AAA", "BBB"], *ALL),
            "range 5m": pg.get_market_data("AAA", *ALL, timeframe="5m"),
            "resample": pg.get_market_data("AAA", *ALL, timeframe="1m", resample="1h", calendar="24/7"),
            "latest": pg.get_latest("bars", ["AAA", "BBB"]).sort("symbol", "timeframe"),
            "tail": pg.tail("bars", "AAA", 3),
            "last": pg.get_market_data("BBB", *ALL, timeframe="1m", last=5),
            "iter": pl.concat(list(pg.iter_market_data("AAA", *ALL, batch_rows=100))),
            # Nothing sealed in March: one statement, connectorx's on a direct connection.
            "resample rows": pg.get_market_data("BBB", "2024-03-01", "2024-03-31", timeframe="5m", resample="1h",
                                                calendar="24/7"),
            "iter rows": pl.concat(list(pg.iter_market_data("BBB", "2024-03-01", "2024-03-31", batch_rows=50))),
            "scan": pg.scan("bars").filter(pl.col("symbol") == "AAA").collect().sort("timeframe", "timestamp"),
            "asof": pg.asof_regimes(symbol="AAA", start_date="2024-01-01", end_date="2024-03-31"),
            "asof known": pg.asof_regimes(symbol="AAA", start_date="2024-01-01", end_date="2024-03-31",
                                          point_in_time=True),
            "1min as of": pg.get_1min_market_regimes("AAA", *ALL, as_of=dt.datetime(2024, 4, 1, 12)),
            "history": pg.history("1min", "AAA"),
            "chain": pg.get_option_chain("AAA", dt.datetime(2024, 3, 2, 9, 17)),
            "sql": pg.sql("SELECT symbol, timeframe, count(*) AS n, sum(volume) AS v FROM bars "
                          "GROUP BY symbol, timeframe ORDER BY symbol, timeframe"),
        }

    caplog.set_level(logging.DEBUG, logger="regime_io")
    got = reads(pgb)
    drivers = set(drivers_reading(caplog.records, "mr_market_data"))
    caplog.clear()
    want = reads(direct)
    assert {"adbc", "lookup"} <= drivers and not any(d.startswith("connectorx") for d in drivers), drivers
    assert "connectorx" in set(drivers_reading(caplog.records, "mr_market_data"))  # the direct reads use it
    for name, frame in want.items():
        assert frame.height > 0, name
        assert_frame_equal(got[name], frame, check_dtypes=True), name


def test_readers_and_writers_at_once_share_two_server_connections(pgb: PostgreSQLIntegration) -> None:
    """Six clients write, read, resample and look up at once through two server
    connections: nothing one left in a session (a prepared statement, a staging table) is
    met by another. Prepared lookups fail here: "prepared statement "_pg3_2" does not
    exist" / "already exists"."""
    pgb.save_market_data(bars(["S0"], ["1m"], dt.datetime(2024, 3, 1, 9, 15), 5))
    symbols = [f"S{k}" for k in range(6)]

    def work(k: int) -> None:
        symbol = symbols[k]
        for day in range(1, 7):
            frame = bars([symbol], ["1m"], dt.datetime(2024, 4, day, 9, 15), 30, seed=k * 10 + day)
            pgb.save_market_data(frame)
            assert pgb.get_latest("bars", symbol)["timestamp"][0] == frame["timestamp"].max()
            assert pgb.get_market_data(symbol, "2024-04-01", "2024-04-30").height == 30 * day
            assert pgb.get_market_data(symbol, "2024-04-01", "2024-04-30", resample="1h",
                                       calendar="24/7")["volume"].sum() == pgb.get_market_data(
                symbol, "2024-04-01", "2024-04-30")["volume"].sum()

    assert _in_threads(work, len(symbols)) == []
    assert pgb.get_market_data(symbols, "2024-04-01", "2024-04-30").height == 6 * 6 * 30


def test_a_large_read_is_one_statement_behind_the_pooler(pgb: PostgreSQLIntegration, through: Through,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Statements run at once share a snapshot opened by a ``BEGIN`` the driver sends in two
    exchanges, which the pooler may hand to two server sessions: behind it, one statement."""
    monkeypatch.setattr(readers, "SPLIT_ROWS", 0)
    monkeypatch.setattr(router, "TOGETHER_ROWS", 1)
    pgb.save_market_data(_three_months())
    caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
    got = pgb.get_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31")
    assert got.height == _three_months().height
    assert not [r for r in caplog.records if r.getMessage().startswith("adbc (together)")]
    direct = through(None, direct=True)
    caplog.clear()
    assert_frame_equal(direct.get_market_data(["AAA", "BBB"], "2024-01-01", "2024-03-31"), got)
    assert [r for r in caplog.records if r.getMessage().startswith("adbc (together)")]  # the same read, directly


# -- writes and sealing -------------------------------------------------------------------


def test_writes_deletes_and_seals_through_pgbouncer(pgb: PostgreSQLIntegration, through: Through) -> None:
    """Append, upsert, known_at= writes, delete_range, seal and unseal through PgBouncer,
    four clients at once (one symbol each), then read back on a direct connection."""
    symbols = ["W0", "W1", "W2", "W3"]

    def work(k: int) -> None:
        symbol = symbols[k]
        frame = pl.concat([bars([symbol], ["1m"], dt.datetime(2024, m, 2, 9, 15), 30, seed=k + m) for m in (1, 2, 3)])
        assert pgb.save_market_data(frame).inserted == 90
        changed = frame.head(10).with_columns(pl.col("volume") + 1)
        assert pgb.save_market_data(changed, on_conflict="update").updated == 10
        regimes = regimes_1min([symbol], dt.datetime(2024, 1, 2, 9, 15), 20, seed=k)
        pgb.save("1min", regimes, known_at=dt.datetime(2024, 1, 3))
        pgb.save("1min", regimes.with_columns(pl.col("confidence") + 1), known_at=dt.datetime(2024, 1, 4))
        assert pgb.delete_range("bars", symbol, dt.datetime(2024, 3, 2, 9, 15), dt.datetime(2024, 3, 2, 9, 24)) == 10

    assert _in_threads(work, len(symbols)) == []
    assert pgb.seal("2024-03-01", tables=["bars", "1min"]).rows_moved == 4 * 60 + 4 * 20
    assert pgb.unseal("2024-02-01", "2024-03-01", tables="bars").rows_moved == 4 * 30
    direct = through(None, direct=True)
    stored = direct.get_market_data(symbols, *ALL)
    assert stored.height == 4 * 80
    assert stored.filter(pl.col("timestamp") < dt.datetime(2024, 1, 2, 9, 25))["volume"].to_list() == [
        v + 1 for v in pl.concat([bars([s], ["1m"], dt.datetime(2024, 1, 2, 9, 15), 30, seed=k + 1)
                                  for k, s in enumerate(symbols)]).filter(
            pl.col("timestamp") < dt.datetime(2024, 1, 2, 9, 25))["volume"].to_list()]
    as_known = direct.get_1min_market_regimes("W0", *ALL, as_of=dt.datetime(2024, 1, 3, 12))
    now = direct.get_1min_market_regimes("W0", *ALL)
    assert (now["confidence"] - as_known["confidence"]).to_list() == pytest.approx([1.0] * 20)
    months = direct.sql("SELECT count(*) AS n FROM bars WHERE timestamp < '2024-02-01'")["n"][0]
    assert months == 4 * 30


def test_seal_vacuums_the_moved_partitions_without_a_session_setting(pgb: PostgreSQLIntegration, server: Any) -> None:
    """After a seal the moved month's partition is vacuumed while it keeps other series
    (``SKIP_LOCKED`` instead of a session's ``lock_timeout``, which would stay in a server
    session the pooler lends), and truncated once emptied (``SET LOCAL`` in its own
    transaction)."""
    pgb.save_market_data(bars(["V", "W"], ["1m"], dt.datetime(2024, 1, 2, 9, 15), 50))

    def partition() -> tuple[Any, ...] | None:
        with psycopg.connect(server.url(), autocommit=True) as conn:
            return conn.execute("SELECT last_vacuum IS NOT NULL, last_analyze IS NOT NULL, pg_relation_size(relid) "
                                "FROM pg_stat_user_tables WHERE schemaname = %s "
                                "AND relname LIKE 'mr_market_data_p2024_01%%'", (pgb.settings.schema,)).fetchone()

    assert pgb.seal("2024-02-01", tables="bars", symbols="V").rows_moved == 50
    vacuumed, _, size = partition() or (None, None, None)
    assert vacuumed and size  # W's rows are still there
    assert pgb.seal("2024-02-01", tables="bars").rows_moved == 50
    assert partition() == (True, True, 0)  # W's rows moved too: truncated and analysed
    assert pgb.get_market_data(["V", "W"], "2024-01-01", "2024-01-31").height == 100


# -- what needs a session -----------------------------------------------------------------


def test_follow_says_it_needs_a_direct_connection(pgb: PostgreSQLIntegration) -> None:
    started = time.monotonic()
    with pytest.raises(UsageError) as caught:
        pgb.follow("bars", timeout=5)
    assert time.monotonic() - started < 1
    assert "follow needs a direct connection to PostgreSQL" in str(caught.value)
    assert "pooler = none" in str(caught.value) and "Behind PgBouncer" in str(caught.value)


def test_cleanup_says_it_needs_a_direct_connection_and_dry_runs_work(pgb: PostgreSQLIntegration) -> None:
    pgb.save_market_data(bars(["C"], ["1m"], dt.datetime(2024, 1, 2, 9, 15), 10))
    assert pgb.cleanup_old_data(30, dry_run=True).rows_removed == 10
    with pytest.raises(UsageError, match="cleanup_old_data needs a direct connection"):
        pgb.cleanup_old_data(30)
    assert pgb.get_market_data("C", *ALL).height == 10


# -- the tier's own rule ------------------------------------------------------------------


def test_the_tier_is_skipped_only_when_opted_out(monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[Any] = []
    monkeypatch.setenv(_pgbouncer.SKIP_VARIABLE, "1")
    state = _pgbouncer.tier("a server", started.append)  # type: ignore[arg-type]
    assert state.skip == f"{_pgbouncer.SKIP_VARIABLE}=1" and state.header().startswith("SKIPPED") and not started
    monkeypatch.setenv(_pgbouncer.SKIP_VARIABLE, "0")

    def cannot(_: Any) -> Any:
        raise _pgbouncer.PgBouncerUnavailable("apt-get install pgbouncer failed (100): E: no space")

    failed = _pgbouncer.tier("a server", cannot)
    assert failed.skip is None and failed.bouncer is None
    assert failed.header() == ("FAILED to start (the pgbouncer tests fail): tests._pgbouncer.PgBouncerUnavailable: "
                               "apt-get install pgbouncer failed (100): E: no space")
