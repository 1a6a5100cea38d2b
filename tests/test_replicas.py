"""Read replicas, for real: a primary and a streaming replica started on this machine from
the embedded server's binaries (``pg_basebackup -R``), readers on the replica, writers on
the primary, read-your-writes against a paused replay, and fallback when the replica stops."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import connectorx as cx
import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from regime_io import PostgreSQLIntegration
from regime_io._conn import embedded as embedded
from regime_io._conn import replicas as replicas
from regime_io._read import readers
from regime_io._tiers import router
from regime_io.config import Secret, Settings, load_settings, settings_replace
from regime_io.database import Database
from regime_io.tables import TABLES
from tests._reading_data import bars

REPLICA_PORT = 5433


def _run_as_owner(cmd: list[str], owner: str | None) -> None:
    # Output goes to a file, not a pipe: a postmaster started by pg_ctl inherits the pipe
    # and would keep subprocess.run waiting.
    with tempfile.TemporaryFile("w+") as out:
        done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, user=owner, check=False)
        out.seek(0)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(cmd[0]).name} failed: {out.read()}")


@dataclass
class Cluster:
    base: Path
    primary: embedded.EmbeddedServer
    replica_dir: Path
    replica_sockets: Path
    owner: str | None

    @property
    def primary_url(self) -> str:
        return f"postgresql://postgres@localhost:{self.primary.port}/postgres?host={self.primary.socket_dir}"

    @property
    def replica_url(self) -> str:
        return f"postgresql://postgres@localhost:{REPLICA_PORT}/postgres?host={self.replica_sockets}"

    def pg_ctl(self, *args: str) -> None:
        _run_as_owner([str(embedded.pg_bin_dir() / "pg_ctl"), "-D", str(self.replica_dir), *args], self.owner)

    def start_replica(self) -> None:
        self.pg_ctl("start", "-w", "-l", str(self.base / "replica.log"),
                    "-o", f"-h '' -k {self.replica_sockets} -p {REPLICA_PORT}")

    def stop_replica(self) -> None:
        self.pg_ctl("stop", "-w", "-m", "fast")

    def replica_sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.replica_url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def wait_for_replay(self, timeout: float = 30.0) -> None:
        """Until the replica has replayed everything the primary has written so far."""
        with psycopg.connect(self.primary_url, autocommit=True) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        assert row is not None
        deadline = time.monotonic() + timeout
        while not self.replica_sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (row[0],))[0][0]:
            assert time.monotonic() < deadline, "the replica did not catch up"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    base = Path(tempfile.mkdtemp(prefix="rio-replica-"))
    primary = embedded.start(base / "primary")
    owner = None
    if os.geteuid() == 0:  # postgres refuses root; the wheel runs it as the data dir's owner
        import pwd

        stat = (base / "primary").stat()
        owner = pwd.getpwuid(stat.st_uid).pw_name
        os.chown(base, stat.st_uid, stat.st_gid)
    sockets = base / "replica-sockets"
    sockets.mkdir()
    if owner is not None:
        shutil.chown(sockets, owner)
    c = Cluster(base, primary, base / "replica", sockets, owner)
    try:
        # initdb --auth=trust allows local replication connections; wal_level=replica and
        # max_wal_senders=10 are the defaults.
        _run_as_owner([str(embedded.pg_bin_dir() / "pg_basebackup"), "-h", primary.socket_dir,
                       "-p", str(primary.port), "-U", "postgres", "-D", str(c.replica_dir),
                       "-R", "-X", "stream", "-c", "fast"], owner)
        c.start_replica()
        assert c.replica_sql("SELECT pg_is_in_recovery()") == [(True,)]
        yield c
    finally:
        for stop in (c.stop_replica, lambda: embedded.stop(base / "primary", mode="immediate")):
            with contextlib.suppress(Exception):  # already stopped by a test, or never started
                stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def primary_settings(cluster: Cluster) -> Iterator[Settings]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    settings = load_settings(config={
        "database": {"host": cluster.primary.socket_dir, "port": cluster.primary.port, "schema": schema},
        "connection": {"connection_timeout": 5, "retry_attempts": 0},
    }, env={})
    yield settings
    with psycopg.connect(cluster.primary_url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def db(cluster: Cluster, primary_settings: Settings) -> Iterator[Database]:
    settings = settings_replace(primary_settings, read_replicas=(Secret(cluster.replica_url),))
    pg = PostgreSQLIntegration(settings=settings)
    pg.initialize_database()
    yield pg.db
    pg.close()


def _write_bars(cluster: Cluster, db: Database, symbol: str, n: int) -> pl.DataFrame:
    start = dt.datetime(2024, 3, 1, 9, 15)
    frame = pl.DataFrame({
        "symbol": [symbol] * n,
        "timestamp": [start + dt.timedelta(minutes=i) for i in range(n)],
        "close": [100.0 + i / 4 for i in range(n)],
    })
    db.partitions.ensure(db.pool, db.resolved, TABLES["market_data"], start, start + dt.timedelta(minutes=n))
    with psycopg.connect(cluster.primary_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {db.table('market_data')} (symbol, timestamp, open, high, low, close, volume, timeframe) "
            "VALUES (%s, %s, %s, %s, %s, %s, 1, '1min')",
            [(r["symbol"], r["timestamp"], r["close"], r["close"], r["close"], r["close"])
             for r in frame.iter_rows(named=True)],
        )
    return frame


def _select(db: Database, symbol: str) -> str:
    return (f"SELECT symbol, timestamp, close::float8 AS close FROM {db.table('market_data')} "
            f"WHERE symbol = '{symbol}' ORDER BY timestamp")


def test_readers_use_the_replica_and_writers_the_primary(cluster: Cluster, db: Database) -> None:
    written = _write_bars(cluster, db, "NIFTY", 50)
    cluster.wait_for_replay()

    url = db.read_url()
    assert str(cluster.replica_sockets) in url
    recovery = cx.read_sql(url, "SELECT pg_is_in_recovery() AS r", return_type="polars")
    assert recovery["r"].to_list() == [True]
    read = cx.read_sql(url, _select(db, "NIFTY"), return_type="polars")
    assert_frame_equal(read, written, check_dtypes=False)

    with db.read_connection() as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT pg_is_in_recovery(), count(*) FROM {db.table('market_data')}")
        assert cur.fetchone() == (True, 50)
        cur.close()
    with db.connection() as conn:
        cur = conn.cursor()
        cur.execute("SELECT pg_is_in_recovery()")
        assert cur.fetchone() == (False,)
        cur.close()


def test_a_large_read_shares_one_snapshot_on_the_replica(cluster: Cluster, db: Database) -> None:
    """A large read's statements run at once share a snapshot exported on the replica
    (a hot standby exports and imports snapshots, as ``pg_dump --jobs`` relies on)."""
    _write_bars(cluster, db, "NIFTY", 50)
    cluster.wait_for_replay()
    with db.snapshot_connections(2) as conns:
        assert len(conns) == 2
        for conn in conns:
            cur = conn.cursor()
            cur.execute(f"SELECT pg_is_in_recovery(), count(*) FROM {db.table('market_data')}")
            assert cur.fetchone() == (True, 50)
            cur.close()


def test_a_large_read_from_the_replica_runs_together_and_answers_as_the_primary(
        cluster: Cluster, primary_settings: Settings, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The seam: writes (and the catalog) on the primary, a large read on the replica split
    into two statements in one snapshot there, the same frame as the primary's one statement."""
    monkeypatch.setattr(readers, "SPLIT_ROWS", 0)
    monkeypatch.setattr(router, "TOGETHER_ROWS", 1)
    with PostgreSQLIntegration(settings=primary_settings) as primary, PostgreSQLIntegration(
            settings=settings_replace(primary_settings, read_replicas=(Secret(cluster.replica_url),))) as pg:
        pg.initialize_database()
        pg.save_market_data(bars(["AAA", "BBB", "CCC"], ["1m"], dt.datetime(2024, 3, 1, 9, 15), 400))
        cluster.wait_for_replay()
        caplog.set_level(logging.DEBUG, logger="regime_io._conn.engines")
        got = pg.get_market_data(["AAA", "BBB", "CCC"], "2024-03-01", "2024-03-31")
        assert len([r for r in caplog.records if r.getMessage().startswith("adbc (together)")]) == 2
        with pg.db.read_connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT pg_is_in_recovery()")
            assert cur.fetchone() == (True,)  # the reads went to the replica
            cur.close()
        assert got.height == 1200
        assert_frame_equal(got, primary.get_market_data(["AAA", "BBB", "CCC"], "2024-03-01", "2024-03-31"))


def test_round_robin_spreads_reads_over_the_replicas(cluster: Cluster, primary_settings: Settings) -> None:
    # The same replica twice (two spellings of its address) is enough to see the rotation.
    second = f"postgresql://localhost:{REPLICA_PORT}/postgres?host={cluster.replica_sockets}&application_name=r2"
    db = Database(settings_replace(primary_settings, read_replicas=(Secret(cluster.replica_url), Secret(second))))
    try:
        urls = []
        for _ in range(4):
            # A point-read connection taken in between (as readers do to fail fast) does not
            # disturb the rotation of the URLs.
            with db.read_connection():
                pass
            urls.append(db.read_url())
        assert urls[0] == urls[2] and urls[1] == urls[3] and urls[0] != urls[1]
        assert "application_name=r2" in urls[1] or "application_name=r2" in urls[0]
        assert [r.pool.open_connections for r in db.replicas.replicas] == [1, 1]  # type: ignore[union-attr]
    finally:
        db.close()
    assert db.replicas is None


def test_read_your_writes_waits_for_the_replica_to_replay(cluster: Cluster, db: Database,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    count_sql = f"SELECT pg_is_in_recovery(), count(*) FROM {db.table('market_data')} WHERE symbol = 'BANKNIFTY'"
    ryw = Database(settings_replace(db.settings, read_your_writes=True))
    cluster.wait_for_replay()  # the table exists on the replica
    cluster.replica_sql("SELECT pg_wal_replay_pause()")
    try:
        _write_bars(cluster, db, "BANKNIFTY", 5)
        # Plain reads: the paused replica does not have the rows yet.
        with db.read_connection() as conn:
            cur = conn.cursor()
            cur.execute(count_sql)
            assert cur.fetchone() == (True, 0)
            cur.close()
        # Read-your-writes with a short wait: the replica lags, the primary answers.
        monkeypatch.setattr(replicas, "READ_YOUR_WRITES_TIMEOUT", 0.2)
        with caplog.at_level(logging.WARNING, logger="regime_io._conn.replicas"), ryw.read_connection() as conn:
            cur = conn.cursor()
            cur.execute(count_sql)
            assert cur.fetchone() == (False, 5)
            cur.close()
        assert "did not replay the primary's position" in caplog.text
        # With a long wait, the read waits for replay (resumed meanwhile) and uses the replica.
        monkeypatch.setattr(replicas, "READ_YOUR_WRITES_TIMEOUT", 30.0)
        resume = threading.Timer(0.3, cluster.replica_sql, ("SELECT pg_wal_replay_resume()",))
        resume.start()
        with ryw.read_connection() as conn:
            cur = conn.cursor()
            cur.execute(count_sql)
            assert cur.fetchone() == (True, 5)
            cur.close()
        resume.join()
        assert cx.read_sql(ryw.read_url(), count_sql, return_type="arrow").to_pylist() == [
            {"pg_is_in_recovery": True, "count": 5}]
    finally:
        cluster.replica_sql("SELECT pg_wal_replay_resume()")
        ryw.close()


def test_replica_down_falls_back_to_the_primary_with_one_warning(cluster: Cluster, db: Database,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    written = _write_bars(cluster, db, "FINNIFTY", 10)
    cluster.wait_for_replay()
    assert str(cluster.replica_sockets) in db.read_url()  # warm: the replica pool has a connection
    cluster.stop_replica()
    try:
        with caplog.at_level(logging.INFO, logger="regime_io._conn.replicas"):
            for _ in range(3):
                url = db.read_url()
                assert url == db.resolved.url(redact=False)
                assert_frame_equal(cx.read_sql(url, _select(db, "FINNIFTY"), return_type="polars"), written,
                                   check_dtypes=False)
                with db.read_connection() as conn:
                    cur = conn.cursor()
                    cur.execute("SELECT pg_is_in_recovery()")
                    assert cur.fetchone() == (False,)
                    cur.close()
        warnings = [r for r in caplog.records if r.name == "regime_io._conn.replicas" and r.levelno == logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert "replica 1" in warnings[0].getMessage() and "reading from the primary" in warnings[0].getMessage()
    finally:
        cluster.start_replica()
    # Back: the next read after RECHECK_AFTER uses the replica again, with an info line.
    monkeypatch.setattr(replicas, "RECHECK_AFTER", 0.0)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="regime_io._conn.replicas"):
        deadline = time.monotonic() + 30
        while str(cluster.replica_sockets) not in db.read_url():
            assert time.monotonic() < deadline, "reads did not return to the replica"
            time.sleep(0.1)
    assert "replica 1" in caplog.text and "is back" in caplog.text
    with db.read_connection() as conn:
        cur = conn.cursor()
        cur.execute("SELECT pg_is_in_recovery()")
        assert cur.fetchone() == (True,)
        cur.close()


def test_replica_settings_inherit_the_primary_credentials() -> None:
    primary = load_settings(config={"database": {"host": "db1", "user": "quant", "password": "s3cret",
                                                 "database": "market", "sslmode": "require"}}, env={})
    replica = replicas.replica_settings(primary, "postgresql://db2:6432?application_name=reader")
    assert (replica.host, replica.port, replica.user, replica.database) == ("db2", 6432, "quant", "market")
    assert replica.password.get() == "s3cret"
    assert replica.libpq_options == {"sslmode": "require", "application_name": "reader"}
    assert replica.retry_attempts == 0
    own = replicas.replica_settings(primary, "postgresql://reader:pw2@db3/other")
    assert (own.user, own.password.get(), own.database) == ("reader", "pw2", "other")
    assert "pw2" not in own.url() and "pw2" not in repr(own)


def test_tail_on_a_replica_delivers_replayed_rows_by_polling(cluster: Cluster, primary_settings: Settings) -> None:
    """A consumer pointed at the standby: its snapshots and the replayed rows come from the
    same server, so delivery is exact; LISTEN is refused there (notifications are not
    replicated) and the tail polls instead."""
    writer = PostgreSQLIntegration(settings=primary_settings)
    writer.initialize_database()
    standby = load_settings(config={"database": {"dsn": cluster.replica_url, "schema": primary_settings.schema},
                                    "connection": {"connection_timeout": 5, "retry_attempts": 0}}, env={})
    reader = PostgreSQLIntegration(settings=standby)
    try:
        t0 = dt.datetime(2024, 5, 6, 9, 15)
        frame = pl.DataFrame({"symbol": ["A", "B"], "timestamp": [t0, t0], "regime": ["UP", "DOWN"],
                              "confidence": [0.5, 0.6]})
        writer.save_1min_market_regime(frame)
        cluster.wait_for_replay()
        tail = reader.follow("1min", timeout=1.0, poll_interval=0.1)
        writer.save_1min_market_regime(frame.with_columns(pl.lit(0.9).alias("confidence")))
        writer.save_1min_market_regime(frame.with_columns(pl.col("timestamp") + dt.timedelta(minutes=1)))
        got = pl.concat([b.frame for b in tail]).select("symbol", "timestamp", "confidence")
        assert sorted(got.iter_rows()) == [("A", t0, 0.9), ("A", t0 + dt.timedelta(minutes=1), 0.5),
                                           ("B", t0, 0.9), ("B", t0 + dt.timedelta(minutes=1), 0.6)]
    finally:
        reader.close()
        writer.close()
